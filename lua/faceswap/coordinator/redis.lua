-- faceswap.coordinator.redis: the coordinator whose state lives in Redis, shared by every
-- process of every machine that names the same Redis (`coordinator = "redis://HOST:PORT/DB"`).
-- The interface is documented in lua/faceswap/coordinator/init.lua; docs/fleet.md is the guide.
--
-- I/O: one connection through hiredis's asynchronous API (faceswap.redis, csrc/redis.c), its
-- epoll set watched by the client's transport (transport:watch), so `client:fd()` and
-- `next_wakeup()` cover it and `step(0)` never waits on Redis. Inside a task a call parks until
-- its reply comes; outside one it steps the client's loop (the other tasks and transfers run)
-- until it does, as a blocking HTTP call drives its own transfer. A handle made without a
-- scheduler (the specs, a program of its own) waits on its connection alone.
--
-- Atomicity: every method is one EVAL script, its check and its change together. Times are
-- Redis's: TIME inside the script; leases are members of a sorted set scored by their end.
--
-- Keys and scripts: faceswap.coordinator.redis_scripts (the same as the nginx coordinator's).
--
-- Faults: a call that cannot reach Redis (refused, lost, no answer in `timeout` seconds)
-- answers "no" (acquire and hold: nil, "unavailable", seconds until the next try), logs a
-- warning, and the connection is made again after a backoff (0.25 s doubling to 5 s); the
-- authority waits and asks again, so no request is sent without a slot. Redis restarted empty
-- (the epoch is gone) takes every channel out of use with an error that says so.
local core = require "faceswap.core"

local M = {}

M.PREFIX = require("faceswap.coordinator.redis_scripts").PREFIX
M.TIMEOUT = 5            -- seconds a reply may take before the connection counts as lost
local BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5

local Coordinator = {}
Coordinator.__index = Coordinator

-- The scripts and key layout every Redis coordinator shares (the one inside nginx too).
local scripts = require "faceswap.coordinator.redis_scripts"
-- Another module's scripts run through Coordinator:eval, the prelude before each (kept apart
-- from the shared table).
local SCRIPTS = setmetatable({}, { __index = scripts.SCRIPTS })

---------------------------------------------------------------------------------------------
-- The URL
---------------------------------------------------------------------------------------------

-- redis://HOST[:PORT][/DB][?timeout=SECONDS] -> host, port, db, timeout | nil, why
function M.parse(url)
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "not a redis:// URL" end
  local query
  rest, query = rest:match("^([^?]*)%??(.*)$")
  if rest:find("@", 1, true) then return nil, "a password in the URL is not supported" end
  local host, port, db = rest:match("^(%[[%x:]+%])(:?%d*)(/?%d*)$")
  if host then
    host = host:sub(2, -2)
  else
    host, port, db = rest:match("^([%w%.%-_]+)(:?%d*)(/?%d*)$")
  end
  if not host then return nil, "expected redis://HOST:PORT/DB" end
  port = port:sub(2)
  db = db:sub(2)
  port = port == "" and 6379 or tonumber(port)
  db = db == "" and 0 or tonumber(db)
  if port < 1 or port > 65535 then return nil, "the port must be from 1 to 65535" end
  local timeout = M.TIMEOUT
  for key, value in query:gmatch("([^&=]+)=([^&]*)") do
    if key ~= "timeout" then return nil, "unknown parameter '" .. key .. "'" end
    timeout = tonumber(value)
    if not timeout or timeout <= 0 or timeout ~= timeout then
      return nil, "timeout must be a number of seconds above 0"
    end
  end
  return host, port, db, timeout
end

---------------------------------------------------------------------------------------------
-- The connection
---------------------------------------------------------------------------------------------

local function log(self, level, message)
  if self.log then self.log(level, "coordinator " .. self.url .. ": " .. message, "coordinator") end
end

-- Takes connection `conn` out of use (closed, its descriptor unwatched) and ends the commands
-- waiting on it with `why`.
local function drop(self, conn, why)
  local link = self.links[conn]
  if not link then return end
  self.links[conn] = nil
  if self.conn == conn then self.conn = nil end
  if self.sub == conn then self.sub, self.subscribed = nil, false end
  if self.transport then self.transport:unwatch(conn:fd()) end
  conn:close()
  for _, w in pairs(link.pending) do
    w.done, w.lost = true, why
    if w.task then self.sched:wake(w.task) end
  end
end

-- A call could not reach Redis: the next connection waits for a backoff; logged.
local function failed(self, why)
  self.failures = self.failures + 1
  local backoff = math.min(BACKOFF_FIRST * 2 ^ (self.failures - 1), BACKOFF_MAX)
  self.retry_at = core.now() + backoff
  self.failure = why
  log(self, "warn", ("%s; no slot is taken until Redis answers, next try in %g s"):format(why, backoff))
  return nil, why
end

-- The replies and messages of a connection, handed on: a reply to the command waiting for it
-- (its task woken), a pub/sub message to whoever waits on that job.
local function drive(self, conn)
  local link = self.links[conn]
  if not link then return end
  conn:drive(link.on_reply)
  if self.links[conn] and conn:state() == "closed" then
    drop(self, conn, select(2, conn:state()) or "connection lost")
  end
end

-- A new connection (to the coordinator's db), watched by the transport.
local function open(self)
  local conn, why = self.native.connect(self.host, self.port)
  if not conn then return nil, why end
  local link = { pending = {} }
  link.on_reply = function(id, value, err, lost)
    if self.sub == conn and (value or lost) then
      if type(value) == "table" and value[1] == "message" then
        local waiting = self.listeners[value[3]]
        for w in pairs(waiting or {}) do
          w.done = true
          if w.task then self.sched:wake(w.task) end
        end
        return
      end
    end
    local w = link.pending[id]
    if not w then return end
    link.pending[id] = nil
    if w.on_reply then return w.on_reply(value, err, lost) end
    w.done, w.value, w.err, w.lost = true, value, err, lost
    if w.task then self.sched:wake(w.task) end
  end
  self.links[conn] = link
  if self.transport then
    self.transport:watch(conn:fd(), function() drive(self, conn) end)
  end
  if self.db ~= 0 then
    -- queued first: every later command of this connection runs in the db; a db Redis
    -- refuses ends the connection
    local id = conn:command("SELECT", tostring(self.db))
    if id then
      link.pending[id] = { on_reply = function(_, err)
        if err then drop(self, conn, "SELECT " .. self.db .. ": " .. err) end
      end }
    end
  end
  return conn
end

-- Waits until w.done, at most until `deadline` (core.now()); false when it did not come,
-- nil when the client was closed meanwhile. Inside a task it parks; outside one (or where the
-- task cannot yield) it steps the client's loop, the other tasks running, with a helper task
-- parked until the deadline that the answer wakes, so that the step ends as soon as it comes.
local function await(self, w, deadline)
  local sched = self.sched
  local helper
  while not w.done do
    local left = deadline - core.now()
    if left <= 0 then break end
    if sched and sched.closed then return nil end
    local me = sched and sched:current()
    if me then
      w.task = me
      sched:park(core.now() + left)
      w.task = nil
    elseif sched then
      if not helper then
        helper = sched:spawn(function() sched:park(deadline) end)
        w.task = helper
      end
      sched:step(left, true)
    elseif w.conn and self.links[w.conn] then
      w.conn:wait(left)
      drive(self, w.conn)
    else
      core.sleep(math.min(left, 0.05))
    end
  end
  if helper then
    w.task = nil
    if not helper:done() and not sched.closed then sched:cancel(helper, "answered") end
  end
  return w.done == true
end

-- Sends one command on the main connection (made if there is none, unless a backoff runs)
-- and waits for its reply: the reply, or nil and why (an error reply, or Redis out of reach).
local call
function call(self, ...)
  local conn = self.conn
  if not conn then
    if self.retry_at and core.now() < self.retry_at then return nil, self.failure end
    local why
    conn, why = open(self)
    if not conn then return failed(self, why) end
    self.conn = conn
  end
  local id, why = conn:command(...)
  if not id and why == "forked" then
    -- a child of fork(): the connection is the parent's; this process makes its own
    drop(self, conn, why)
    return call(self, ...)
  end
  if not id then
    drop(self, conn, why)
    return failed(self, why)
  end
  local w = { conn = conn }
  self.links[conn].pending[id] = w
  local came = await(self, w, core.now() + self.timeout)
  if came == nil then return nil, "client closed" end
  if not came then
    local msg = ("no answer from Redis in %g s"):format(self.timeout)
    drop(self, conn, msg)
    return failed(self, msg)
  end
  if w.lost then
    drop(self, conn, w.lost)
    return failed(self, w.lost)
  end
  if w.err then return failed(self, "Redis: " .. w.err) end
  if self.failures > 0 then
    log(self, "info", "Redis answers again")
    self.failures, self.retry_at = 0, nil
  end
  return w.value
end

-- The state is gone (the epoch differs): every channel is out of use from now on.
local function lost_state(self)
  if not self.lost then
    self.lost, self.lost_reason = scripts.lost(self.url, self.epoch_key)
    log(self, "warn", self.lost)
  end
  return nil, self.lost
end

-- (the check every coordinator makes first)
local check = require("faceswap.coordinator").check

local function fmt(x) return ("%.17g"):format(x) end

-- Runs script `name` on `channel`'s keys (or on `keys` given): {status, ...}, or nil and why.
local function script(self, name, channel, ...)
  if self.lost then return nil, self.lost end
  local k2, k3 = scripts.keys(self.prefix, channel)
  local r, why = call(self, "EVAL", SCRIPTS[name], "3", self.epoch_key, k2, k3, self.epoch,
    fmt(self.lease), ...)
  if not r then return nil, why end
  if type(r) ~= "table" then return failed(self, "Redis: an answer that is no list") end
  if r[1] == "epoch" then return lost_state(self) end
  return r
end

---------------------------------------------------------------------------------------------
-- The interface (lua/faceswap/coordinator/init.lua)
---------------------------------------------------------------------------------------------

function Coordinator:now()
  if self.closed then error("faceswap: the coordinator is closed", 2) end
  local r = not self.lost and call(self, "TIME")
  local sec, usec = type(r) == "table" and tonumber(r[1]), type(r) == "table" and tonumber(r[2])
  if sec and usec then
    local t = sec + usec / 1e6
    self.offset = t - core.now()
    return t
  end
  return core.now() + (self.offset or 0)
end

scripts.methods(Coordinator, script, core.now)

-- Subscribes (once, on a connection of its own) to the announcements of published jobs.
local function subscribe(self)
  if self.sub then return self.sub end
  if self.retry_at and core.now() < self.retry_at then return nil end
  local conn, why = open(self)
  if not conn then
    failed(self, why)
    return nil
  end
  self.sub = conn
  if not conn:command("SUBSCRIBE", self.prefix .. scripts.KEY.published) then drop(self, conn, "SUBSCRIBE refused") end
  return self.sub
end

function Coordinator:wait_published(jobid, timeout)
  check(self, jobid, "jobid")
  local deadline = core.now() + (tonumber(timeout) or 0)
  local key = scripts.job_keys(self.prefix, jobid)
  while true do
    local r = script(self, "published", key)
    if r and r[2] then return r[2] end
    if self.closed then return nil end
    local left = deadline - core.now()
    if left <= 0 then return nil end
    -- woken by the announcement; looked again at least each second (an announcement made
    -- before the subscription took, or a subscription lost)
    local w = { conn = subscribe(self) }
    local waiting = self.listeners[jobid] or {}
    self.listeners[jobid] = waiting
    waiting[w] = true
    local came = await(self, w, core.now() + math.min(left, 1))
    waiting[w] = nil
    if not next(waiting) then self.listeners[jobid] = nil end
    if came == nil then return nil end
  end
end

-- Runs another module's script (the batch ledger's, lua/faceswap/ledger.lua) after the same
-- prelude: the epoch checked, `now` and `lease` (this handle's), `num`, L = k2 and S = k3;
-- ARGV[3] on are `...`. Returns its list, or nil and why (Redis out of reach, its state lost).
function Coordinator:eval(body, k2, k3, ...)
  check(self, k2, "key")
  if not SCRIPTS[body] then SCRIPTS[body] = scripts.PRELUDE .. body end
  return script(self, body, { k2, k3 }, ...)
end

function Coordinator:close()
  if self.closed then return end
  self.closed = true
  local conns = {}
  for conn in pairs(self.links) do conns[#conns + 1] = conn end
  for _, conn in ipairs(conns) do drop(self, conn, "the coordinator is closed") end
end

---------------------------------------------------------------------------------------------
-- Making one
---------------------------------------------------------------------------------------------

-- new(url, { lease = seconds, sched = the client's scheduler, log = fn, prefix = keys' prefix })
-- Connects at once (blocking until Redis answers, at most its timeout): raises a message
-- naming the URL when it cannot.
function M.new(url, opts)
  opts = opts or {}
  local host, port, db, timeout = M.parse(url)
  if not host then error(("bad Redis URL \"%s\": %s"):format(url:sub(1, 200), port), 0) end
  local ok, native = pcall(require, "faceswap.redis")
  if not ok then
    error("the Redis coordinator needs the module faceswap.redis, which `make` builds when " ..
      "libhiredis-dev is installed", 0)
  end
  local sched = opts.sched
  local transport = sched and sched.transport
  if sched and not (transport and transport.watch) then
    error("the Redis coordinator (\"redis://\") is not available inside nginx yet", 0)
  end
  local prefix = opts.prefix or M.PREFIX
  local self = setmetatable({
    url = url, host = host, port = port, db = db, timeout = timeout, native = native,
    lease = opts.lease or 60, sched = sched, transport = transport, log = opts.log,
    prefix = prefix, epoch_key = prefix .. scripts.KEY.epoch,
    links = {}, listeners = {}, killed = {}, failures = 0, closed = false,
  }, Coordinator)
  local r, why = call(self, "EVAL", scripts.EPOCH, "1", self.epoch_key)
  return scripts.started(self, r, why, core.now())
end

return M
