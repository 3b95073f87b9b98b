-- faceswap.coordinator.shared: the coordinator whose state lives in an nginx shared dict
-- (`coordinator = "shared:DICT"`, with `lua_shared_dict DICT 1m;` in nginx.conf's http
-- block): every worker of one nginx shares each account's slots, hold, pause, death and
-- learned capacity, and the jobs the callback endpoint publishes. The interface is documented
-- in lua/faceswap/coordinator/init.lua; docs/fleet.md is the guide.
--
-- Atomicity: a shared dict's calls are each atomic across the workers, and none yields. A
-- fact that is one key is changed by one call (a death: add, the first reason wins; a
-- capacity: set; a lease id: incr). Where several keys must change together (the leases, the
-- hold, the pause), the method takes the channel's lock first: a key added with a short
-- expiry (dict:add fails while another worker has it), held only while the method runs
-- without yielding, so a worker that dies holding it frees it at once the expiry passes.
--
-- Keys, under the prefix ("faceswap:"), for a channel CH ("" for the calls naming none):
--   faceswap:{CH}:leases   the live leases, "ID END\n" each (END: ngx.now() seconds)
--   faceswap:{CH}:hold     "END HOLDER" while a blocking command holds it
--   faceswap:{CH}:pause    the end of Discord's pause
--   faceswap:{CH}:dead     why the channel is out of use
--   faceswap:{CH}:cap      the learned queue size
--   faceswap:{CH}:lock     the channel's lock
--   faceswap:next          the last lease id given
--   faceswap:job:JOBID     a published job's JSON, kept at least `lease` seconds
-- Writes never push other keys out of a full dict (safe_set); a dict too small to take one
-- raises an error that says so.
--
-- Time: ngx.now(), nginx's clock, the same for every worker of the machine.
local ngx = rawget(_G, "ngx")
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT

local M = {}

-- (the checks every coordinator makes)
local check, check_capacity, check_publish = require("faceswap.coordinator").check,
  require("faceswap.coordinator").check_capacity, require("faceswap.coordinator").check_publish
local check_until = require("faceswap.coordinator").check_until

M.PREFIX = "faceswap:"
M.KEEP_PUBLISHED = 600  -- seconds a published job is kept, at least the lease
local LOCK_SECONDS = 0.1 -- a lock a dead worker left ends after this

-- The phases where a request may wait (ngx.sleep): wait_published and a contended lock.
local CAN_SLEEP = { rewrite = true, access = true, content = true, timer = true,
                    ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }

local Coordinator = {}
Coordinator.__index = Coordinator

-- new(name, { lease = seconds, prefix = keys' prefix }): raises (a message without position)
-- outside nginx, or when nginx.conf declares no such dict.
function M.new(name, opts)
  opts = opts or {}
  if not (ngx and ngx.shared) then
    error("a shared dict coordinator (\"shared:" .. name .. "\") works only inside nginx " ..
      "(an ngx.shared dict)", 0)
  end
  local dict = ngx.shared[name]
  if not dict then
    error("no lua_shared_dict '" .. name .. "' (add `lua_shared_dict " .. name ..
      " 1m;` to nginx.conf's http block)", 0)
  end
  return setmetatable({ name = name, dict = dict, lease = opts.lease or 60,
                        prefix = opts.prefix or M.PREFIX, closed = false }, Coordinator)
end

local function key(self, channel, what)
  return self.prefix .. "{" .. channel .. "}:" .. what
end

local function num(x) return string.format("%.17g", x) end

-- Writes value (nil: deletes); raises when the dict has no room left for it.
local function put(self, k, value, exptime)
  if value == nil then
    self.dict:delete(k)
    return
  end
  local ok, err = self.dict:safe_set(k, value, exptime or 0)
  if not ok then
    error("faceswap: lua_shared_dict '" .. self.name .. "' cannot take more (" ..
      tostring(err) .. "): make it larger in nginx.conf", 0)
  end
end

-- Runs fn(self, channel, now) holding the channel's lock, and releases the lock whatever fn
-- does; returns what fn returned. Another worker has the lock only while it runs one method.
local function locked(self, channel, fn, ...)
  local lock = key(self, channel, "lock")
  local dict = self.dict
  local spins = 0
  while not dict:add(lock, true, LOCK_SECONDS) do
    spins = spins + 1
    ngx.update_time() -- a lock left by a dead worker expires on the clock
    if spins > 8 and CAN_SLEEP[ngx.get_phase()] then ngx.sleep(0.001) end
  end
  local r = { pcall(fn, self, channel, ngx.now(), ...) }
  dict:delete(lock)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, 4)
end

-- The live leases of a channel at `now`: { [id] = end }, their number and the first end.
local function leases(self, channel, now)
  local text = self.dict:get(key(self, channel, "leases")) or ""
  local list, n, first = {}, 0, nil
  for id, ends in text:gmatch("(%S+) (%S+)\n") do
    ends = tonumber(ends)
    if ends > now then
      list[id], n = ends, n + 1
      if not first or ends < first then first = ends end
    end
  end
  return list, n, first
end

local function store_leases(self, channel, list)
  local parts = {}
  for id, ends in pairs(list) do parts[#parts + 1] = id .. " " .. num(ends) .. "\n" end
  put(self, key(self, channel, "leases"), #parts > 0 and table.concat(parts) or nil)
end

-- The hold in force at `now`: its end and holder, or nil.
local function hold_of(self, channel, now)
  local text = self.dict:get(key(self, channel, "hold"))
  if not text then return nil end
  local ends, holder = text:match("^(%S+) (.*)$")
  ends = tonumber(ends)
  if not ends or ends <= now then return nil end
  return ends, holder
end

-- Why the channel refuses anything now (dead, paused, held by someone else), if it does.
local function refused(self, channel, now, holder)
  if self.dict:get(key(self, channel, "dead")) then return "dead" end
  local pause = self.dict:get(key(self, channel, "pause"))
  if pause and pause > now then return "paused", pause - now end
  local ends, by = hold_of(self, channel, now)
  if ends and by ~= holder then return "held", ends - now end
  return nil
end

function Coordinator:now()
  if self.closed then error("faceswap: the coordinator is closed", 2) end
  return ngx.now()
end

local function acquire(self, channel, now, capacity)
  local why, retry_in = refused(self, channel, now, nil)
  if why then return nil, why, retry_in end
  local list, n, first = leases(self, channel, now)
  local cap = self.dict:get(key(self, channel, "cap")) or capacity or 3
  if n >= cap then return nil, "full", first - now end
  local id = "L" .. assert(self.dict:incr(self.prefix .. "next", 1, 0))
  list[id] = now + self.lease
  store_leases(self, channel, list)
  return id
end

function Coordinator:acquire(channel, _, capacity)
  check(self, channel)
  return locked(self, channel, acquire, capacity)
end

-- renew (keep true) and release: lease `id` ends `lease` seconds from now, or now; whether it
-- was live (a lease gone is not renewed)
local function end_lease(self, channel, now, id, keep)
  local list = leases(self, channel, now)
  local live = list[id] ~= nil
  if keep and not live then return false end
  list[id] = keep and now + self.lease or nil
  store_leases(self, channel, list)
  return live
end

function Coordinator:renew(channel, lease_id)
  check(self, channel)
  return locked(self, channel, end_lease, lease_id, true)
end

function Coordinator:release(channel, lease_id)
  check(self, channel)
  return locked(self, channel, end_lease, lease_id, false)
end

function Coordinator:running(channel)
  check(self, channel)
  return select(2, leases(self, channel, ngx.now()))
end

local function hold(self, channel, now, holder)
  local why, retry_in = refused(self, channel, now, holder)
  if why then return nil, why, retry_in end
  put(self, key(self, channel, "hold"), num(now + self.lease) .. " " .. holder)
  return true
end

function Coordinator:hold(channel, holder)
  check(self, channel)
  return locked(self, channel, hold, tostring(holder))
end

local function unhold(self, channel, now, holder)
  local ends, by = hold_of(self, channel, now)
  if not ends or by ~= holder then return false end
  put(self, key(self, channel, "hold"), nil)
  return true
end

function Coordinator:unhold(channel, holder)
  check(self, channel)
  return locked(self, channel, unhold, tostring(holder))
end

function Coordinator:holder(channel)
  check(self, channel)
  return select(2, hold_of(self, channel, ngx.now()))
end

local function pause(self, channel, _, until_)
  local k = key(self, channel, "pause")
  local p = self.dict:get(k)
  if not p or until_ > p then
    put(self, k, until_)
    p = until_
  end
  return p
end

function Coordinator:pause(channel, until_)
  check(self, channel)
  check_until(until_)
  return (locked(self, channel, pause, until_))
end

function Coordinator:paused(channel)
  check(self, channel)
  local p = self.dict:get(key(self, channel, "pause"))
  if p and p > ngx.now() then return p end
  return nil
end

function Coordinator:kill(channel, reason)
  check(self, channel)
  local k = key(self, channel, "dead")
  local ok, err = self.dict:safe_add(k, tostring(reason))
  if not ok and err ~= "exists" then put(self, k, tostring(reason)) end
  return self.dict:get(k)
end

function Coordinator:dead(channel)
  check(self, channel)
  return self.dict:get(key(self, channel, "dead"))
end

function Coordinator:learn(channel, capacity)
  check(self, channel)
  check_capacity(capacity)
  put(self, key(self, channel, "cap"), capacity)
end

function Coordinator:capacity(channel)
  check(self, channel)
  return self.dict:get(key(self, channel, "cap"))
end

function Coordinator:publish(jobid, json)
  check_publish(self, jobid, json)
  put(self, self.prefix .. "job:" .. jobid, json, math.max(M.KEEP_PUBLISHED, self.lease))
  return true
end

-- Looks at the dict until the job is there: every worker's publish writes it, and nothing
-- else can wake a waiter in another worker. The look is a hash lookup: done often at first
-- (5 ms), then every 50 ms.
function Coordinator:wait_published(jobid, timeout)
  check(self, jobid, "jobid")
  local k = self.prefix .. "job:" .. jobid
  local json = self.dict:get(k)
  if json or not (timeout and timeout > 0) then return json end
  if not CAN_SLEEP[ngx.get_phase()] then
    error("faceswap: coordinator: wait_published cannot wait in nginx's " .. ngx.get_phase() ..
      " phase (no ngx.sleep there)", 2)
  end
  ngx.update_time()
  local deadline, step = ngx.now() + timeout + 0.002, 0.005 -- (as nginx's timers may run early)
  while true do
    local left = deadline - ngx.now()
    if left <= 0 or self.closed then return nil end
    ngx.sleep(math.max(math.min(step, left), 0.001)) -- (below 1 ms nginx would not wait at all)
    ngx.update_time()
    step = math.min(step * 2, 0.05)
    json = self.dict:get(k)
    if json then return json end
  end
end

function Coordinator:close()
  self.closed = true
end

return M
