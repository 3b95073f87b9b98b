-- faceswap.coordinator.resty_redis: the Redis coordinator inside nginx
-- (`coordinator = "redis://HOST:PORT/DB"` in a client made inside nginx). Its state is the
-- one every Redis coordinator shares: the keys and the EVAL scripts of
-- faceswap.coordinator.redis_scripts, so nginx workers on any number of machines, and
-- plain-Lua processes naming the same Redis, share each account. The interface is documented
-- in lua/faceswap/coordinator/init.lua; docs/fleet.md is the guide.
--
-- I/O: lua-resty-redis (Debian's lua-nginx-redis, `require "nginx.redis"`) on nginx's
-- cosockets, so a call yields to nginx instead of blocking the worker. A cosocket belongs to
-- the request that made it, so each call takes a connection from the worker's keepalive pool
-- (one per URL) and puts it back: one round trip per method (EVALSHA, EVAL once per
-- connection when Redis does not know the script yet). Cosockets exist only in some phases:
-- a client made in init_by_lua, set_by_lua, a header or body filter or the log phase gets a
-- clear error (at faceswap.new, or at the call made there).
--
-- Atomicity: every method is one script, its check and its change together, on Redis's clock
-- (TIME inside the script); leases are members of a sorted set scored by their end.
--
-- Faults: a call that cannot reach Redis answers "no" (acquire and hold: nil, "unavailable",
-- seconds until the next try; the others their "nothing" value), logs a warning to nginx's
-- error log; the authority waits and asks again, so no request is sent without a slot. Redis
-- restarted empty (its epoch key is gone) takes every channel out of use with an error that
-- says so.
--
-- wait_published: the job's key is read; while it is not there, a connection of its own
-- SUBSCRIBEs to faceswap:published and reads the announcements until the jobid comes (or the
-- timeout), looking at the key again each second in case an announcement came between.
local scripts = require "faceswap.coordinator.redis_scripts"

local ngx = rawget(_G, "ngx")
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT

local M = {}

-- (the check every coordinator makes first)
local check = require("faceswap.coordinator").check

M.TIMEOUT = 5 -- seconds a reply may take before the connection counts as lost
local BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5

-- The phases where nginx allows cosockets.
local COSOCKETS = { rewrite = true, access = true, content = true, timer = true,
                    ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }

local Coordinator = {}
Coordinator.__index = Coordinator

-- redis://HOST[:PORT][/DB] -> host, port, db | nil, why
function M.parse(url)
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "not a redis:// URL" end
  if rest:find("@", 1, true) then return nil, "a password in the URL is not supported" end
  local host, port, db = rest:match("^([%w%.%-_]+)(:?%d*)(/?%d*)$")
  if not host then return nil, "expected redis://HOST:PORT/DB" end
  port = port == "" and 6379 or tonumber(port:sub(2))
  db = db == "" and 0 or tonumber(db:sub(2))
  if not port or port < 1 or port > 65535 then return nil, "the port must be from 1 to 65535" end
  if not db then return nil, "expected redis://HOST:PORT/DB" end
  return host, port, db
end

-- The error of a call made where nginx has no cosockets.
local function no_cosockets(url)
  return ("the Redis coordinator (%s) needs nginx's cosockets, which the %s phase does " ..
    "not have (init_by_lua, set_by_lua, header and body filters, log): make the client " ..
    "and call it in a rewrite, access or content handler, or a timer"):format(url, ngx.get_phase())
end

local function log(self, level, message)
  ngx.log(level, "faceswap coordinator ", self.url, ": ", message)
end

-- A connection from the worker's pool, in the right db; nil and why.
local function connect(self)
  local redis = require "nginx.redis"
  local red = redis:new()
  red:set_timeout(self.timeout * 1000)
  local ok, err = red:connect(self.host, self.port, { pool = self.pool })
  if not ok then return nil, "cannot connect: " .. tostring(err) end
  if self.db ~= 0 and (red:get_reused_times() or 0) == 0 then
    local res
    res, err = red:select(self.db)
    if not res then
      red:close()
      return nil, "SELECT " .. self.db .. ": " .. tostring(err)
    end
  end
  return red
end

-- A call could not reach Redis: the next waits for a backoff; logged.
local function failed(self, why)
  self.failures = self.failures + 1
  self.retry_at = ngx.now() + math.min(BACKOFF_FIRST * 2 ^ (self.failures - 1), BACKOFF_MAX)
  self.failure = why
  log(self, ngx.WARN, why .. "; no slot is taken until Redis answers")
  return nil, why
end

-- Runs one command on a pooled connection: the reply, or nil and why (Redis out of reach, or
-- an error reply). fn(red) makes the command.
local function call(self, fn)
  if not COSOCKETS[ngx.get_phase()] then error(no_cosockets(self.url), 0) end
  if self.retry_at and ngx.now() < self.retry_at then return nil, self.failure end
  local red, why = connect(self)
  if not red then return failed(self, why) end
  -- lua-resty-redis answers nil and why when the connection fails, false and Redis's text
  -- for an error reply
  local res, err = fn(red)
  if res == nil then
    red:close()
    return failed(self, tostring(err))
  end
  red:set_keepalive(60000, 64)
  if res == false then return nil, "Redis: " .. tostring(err) end
  if self.failures > 0 then
    log(self, ngx.NOTICE, "Redis answers again")
    self.failures, self.retry_at = 0, nil
  end
  self.calls = self.calls + 1
  return res
end

local function fmt(x) return ("%.17g"):format(x) end

-- ngx.null (a nil reply) as nil.
local function value(v)
  if v == ngx.null or v == false then return nil end
  return v
end

-- The state is gone (the epoch differs): every channel is out of use from now on.
local function lost_state(self)
  if not self.lost then
    self.lost, self.lost_reason = scripts.lost(self.url, self.epoch_key)
    log(self, ngx.WARN, self.lost)
  end
  return nil, self.lost
end

-- Runs script `name` on `channel`'s keys (or on `keys`, a table): {status, ...}, or nil and
-- why. EVALSHA, and EVAL when Redis does not know the script (a restart, SCRIPT FLUSH).
local function script(self, name, channel, ...)
  if self.lost then return nil, self.lost end
  local k2, k3 = scripts.keys(self.prefix, channel)
  local text, sha = scripts.SCRIPTS[name], M.sha[name]
  local n = select("#", ...)
  local args = { ... }
  local r, why = call(self, function(red)
    local res, err = red:evalsha(sha, 3, self.epoch_key, k2, k3, self.epoch, fmt(self.lease),
      unpack(args, 1, n))
    if res == false and tostring(err):find("^NOSCRIPT") then
      res, err = red:eval(text, 3, self.epoch_key, k2, k3, self.epoch, fmt(self.lease),
        unpack(args, 1, n))
    end
    return res, err
  end)
  if not r then return nil, why end
  if type(r) ~= "table" then return nil, "Redis: an answer that is no list" end
  if r[1] == "epoch" then return lost_state(self) end
  return r
end

---------------------------------------------------------------------------------------------
-- The interface (lua/faceswap/coordinator/init.lua)
---------------------------------------------------------------------------------------------

function Coordinator:now()
  if self.closed then error("faceswap: the coordinator is closed", 2) end
  local r = not self.lost and call(self, function(red) return red:time() end)
  if type(r) == "table" and r[2] then
    local t = tonumber(r[1]) + tonumber(r[2]) / 1e6
    self.offset = t - ngx.now()
    return t
  end
  return ngx.now() + self.offset
end

scripts.methods(Coordinator, script, function() return ngx.now() end)

-- The published job, read with the script: its JSON, or nil.
local function published(self, keys)
  local r = script(self, "published", keys)
  return r and value(r[2]) or nil
end

function Coordinator:wait_published(jobid, timeout)
  check(self, jobid, "jobid")
  local keys = scripts.job_keys(self.prefix, jobid)
  local json = published(self, keys)
  if json or not (timeout and timeout > 0) or self.lost then return json end
  ngx.update_time()
  -- (2 ms more: nginx's timers fire on its millisecond clock, which may run behind Redis's)
  local deadline = ngx.now() + timeout + 0.002
  local sub
  while not self.closed do
    local left = deadline - ngx.now()
    if left <= 0 then break end
    if not sub then
      -- a connection of its own: a subscribed one cannot go back to the pool
      local red = connect(self)
      if red and red:subscribe(keys[2]) then
        sub = red
        json = published(self, keys) -- published before the subscription took
        if json then break end
      else
        if red then red:close() end
        ngx.sleep(math.min(left, 0.25))
      end
    else
      sub:set_timeout(math.max(math.min(left, 1), 0.001) * 1000)
      local msg, err = sub:read_reply()
      if type(msg) == "table" and msg[1] == "message" and msg[3] == jobid then
        json = published(self, keys)
        if json then break end
      elseif not msg and err ~= "timeout" then
        sub:close()
        sub = nil
      elseif not msg then
        json = published(self, keys) -- each second: an announcement lost is no wait lost
        if json then break end
      end
    end
    ngx.update_time()
  end
  if sub then sub:close() end
  return json
end

function Coordinator:close()
  self.closed = true
end

---------------------------------------------------------------------------------------------
-- Making one
---------------------------------------------------------------------------------------------

-- The scripts' SHA1s, for EVALSHA.
M.sha = setmetatable({}, { __index = function(t, name)
  local text = scripts.SCRIPTS[name]
  local digest = ngx.sha1_bin(text):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  rawset(t, name, digest)
  return digest
end })

-- new(url, { lease = seconds, prefix = the keys' prefix, timeout = seconds }): connects at
-- once to read the epoch; raises (a message without position, naming the URL) when it cannot,
-- and where nginx has no cosockets.
function M.new(url, opts)
  opts = opts or {}
  local host, port, db = M.parse(url)
  if not host then error(("bad Redis URL \"%s\": %s"):format(url:sub(1, 200), port), 0) end
  if not (ngx and ngx.get_phase) then
    error("faceswap.coordinator.resty_redis runs only inside nginx", 0)
  end
  if not COSOCKETS[ngx.get_phase()] then error(no_cosockets(url), 0) end
  local ok = pcall(require, "nginx.redis")
  if not ok then
    error("the Redis coordinator inside nginx needs lua-resty-redis (Debian's " ..
      "lua-nginx-redis: `require \"nginx.redis\"`)", 0)
  end
  local prefix = opts.prefix or scripts.PREFIX
  local self = setmetatable({
    url = url, host = host, port = port, db = db, timeout = opts.timeout or M.TIMEOUT,
    lease = opts.lease or 60, prefix = prefix, epoch_key = prefix .. scripts.KEY.epoch,
    pool = ("faceswap:%s:%d:%d"):format(host, port, db),
    killed = {}, failures = 0, calls = 0, offset = 0, closed = false,
  }, Coordinator)
  local r, why = call(self, function(red) return red:eval(scripts.EPOCH, 1, self.epoch_key) end)
  return scripts.started(self, r, why, ngx.now())
end

return M
