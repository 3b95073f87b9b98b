-- faceswap.task: tasks, the coroutines that a client drives with step() and run().
--
-- A client call made inside one of the client's tasks starts its transfer on the client's
-- curl multi handle and yields; step() polls the handle and resumes each task whose transfer
-- ended or whose sleep is over. Outside a task the same call drives the handle itself until
-- its own transfer ends (transport:perform). Both are the core's start/finish underneath.
--
-- What a task yields says what it waits for:
--   TRANSFER, id   a transfer on the multi handle
--   SLEEP, at      the monotonic clock to reach `at`
--   PARK[, at]     somebody to call wake(task) (or `at`, if given)
--   anything else  (a plain coroutine.yield() in user code) the next pass of step()
local core = require "faceswap.core"

local now = core.now
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT

local M = {}

local TRANSFER, SLEEP, PARK = {}, {}, {}

-- coroutine -> its task, only while that task runs: so this table never keeps a task alive,
-- and a call knows whether it runs inside a task (and whose) with one lookup.
local running = {}

local function pack(...) return { n = select("#", ...), ... } end

---------------------------------------------------------------------------------------------
-- Tasks
---------------------------------------------------------------------------------------------
local task = {}
local task_mt = { __index = task, __name = "faceswap.task" }
M.task_mt = task_mt

task_mt.__tostring = function(t)
  return "faceswap.task: " .. (t._result and "done" or "running")
end

local function check_task(t, method)
  if getmetatable(t) ~= task_mt then
    error("bad argument #1 to '" .. method .. "' (faceswap.task expected, got " .. type(t) ..
      "; call it as task:" .. method .. "())", 3)
  end
end

function task:done()
  check_task(self, "done")
  return self._result ~= nil
end

-- What the task's function returned, or nil and what it raised.
function task:result()
  check_task(self, "result")
  local r = self._result
  if not r then
    error("bad argument #1 to 'result' (the task has not finished; step() or run() its client)", 2)
  end
  return unpack(r, 1, r.n)
end

---------------------------------------------------------------------------------------------
-- Sleepers: a binary heap on wake time. An entry whose token no longer matches its task's is
-- stale (the task was woken early) and is dropped when it reaches the top.
---------------------------------------------------------------------------------------------
local function heap_push(h, at, t)
  local n = #h + 1
  h[n] = { at = at, task = t, token = t._token }
  while n > 1 do
    local parent = math.floor(n / 2)
    if h[parent].at <= h[n].at then break end
    h[parent], h[n] = h[n], h[parent]
    n = parent
  end
end

local function heap_pop(h)
  local top, n = h[1], #h
  h[1] = h[n]
  h[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and h[l].at < h[m].at then m = l end
    if r <= n and h[r].at < h[m].at then m = r end
    if m == i then break end
    h[i], h[m] = h[m], h[i]
    i = m
  end
  return top
end

---------------------------------------------------------------------------------------------
-- The scheduler: one per client
---------------------------------------------------------------------------------------------
local Scheduler = {}
Scheduler.__index = Scheduler

function M.scheduler(transport)
  return setmetatable({
    transport = transport,
    count = 0,      -- tasks not finished
    ready = {},     -- tasks for the next pass
    waiting = {},   -- transfer id -> task
    sleepers = {},  -- the heap
  }, Scheduler)
end

-- The running task, if it is one of this scheduler's.
function Scheduler:current()
  local t = running[coroutine.running()]
  if t and t._sched == self then return t end
  return nil
end

-- Records how a resume ended: the task finished, or what it now waits for.
local function settle(self, t, ok, ...)
  running[t._co] = nil
  if coroutine.status(t._co) == "dead" then
    self.count = self.count - 1
    if ok then
      t._result = pack(...)
    else
      local err = ...
      if type(err) == "string" then err = debug.traceback(t._co, err) end
      t._result = { n = 2, nil, err }
    end
    if t._on_done then t._on_done(t) end
    return
  end
  local what, arg = ...
  if what == TRANSFER then
    self.waiting[arg] = t
  elseif what == SLEEP then
    heap_push(self.sleepers, arg, t)
  elseif what == PARK then
    t._parked = true
    if arg then heap_push(self.sleepers, arg, t) end
  else
    self.ready[#self.ready + 1] = t
  end
end

local function resume(self, t, ...)
  t._token = t._token + 1
  running[t._co] = t
  return settle(self, t, coroutine.resume(t._co, ...))
end

function Scheduler:spawn(fn, ...)
  local t = setmetatable({ _sched = self, _co = coroutine.create(fn), _token = 0,
                           _args = pack(...) }, task_mt)
  self.count = self.count + 1
  self.ready[#self.ready + 1] = t
  return t
end

-- Resumes the tasks whose transfers have ended; false when there were none.
local function transfers_ended(self, ...)
  local n = select("#", ...)
  if n == 0 then return false end
  local ids, waiting = { ... }, self.waiting
  for i = 1, n do
    local t = waiting[ids[i]]
    waiting[ids[i]] = nil
    resume(self, t)
  end
  return true
end

-- One pass or more, until something ran or `timeout` seconds are over; 0 never blocks.
function Scheduler:step(timeout)
  if self:current() then error("bad argument #1 to 'step' (called from inside one of its tasks)", 3) end
  local deadline = now() + timeout
  local sleepers = self.sleepers
  repeat
    local progressed = false
    local ready = self.ready
    if #ready > 0 then
      self.ready = {}
      for i = 1, #ready do
        local t, args = ready[i], ready[i]._args
        if args then -- a new task: its first resume passes spawn's arguments
          t._args = nil
          resume(self, t, unpack(args, 1, args.n))
        else
          resume(self, t)
        end
      end
      progressed = true
    end
    -- wait for transfers only while nothing else is due
    local wait = 0
    if not progressed and #self.ready == 0 then
      local t = now()
      wait = deadline - t
      if sleepers[1] and sleepers[1].at - t < wait then wait = sleepers[1].at - t end
      if wait < 0 then wait = 0 end
      if wait > 0 and self.count > 0 and not sleepers[1] and not next(self.waiting) then
        error("faceswap: " .. self.count .. " task(s) wait for nothing that can happen", 3)
      end
    end
    if transfers_ended(self, self.transport:poll(wait)) then progressed = true end
    local t = now()
    while sleepers[1] and sleepers[1].at <= t do
      local e = heap_pop(sleepers)
      if e.token == e.task._token then
        e.task._parked = false
        resume(self, e.task)
        progressed = true
      end
    end
  until progressed or t >= deadline
  return self.count
end

function Scheduler:run()
  while self.count > 0 do self:step(3600) end
end

-- Inside a task: starts the transfer and yields until it ends. Outside: blocks on it.
function Scheduler:transfer(method, target, content_type, body)
  local transport = self.transport
  if not self:current() then return transport:perform(method, target, content_type, body) end
  local id, err = transport:start(method, target, content_type, body)
  if not id then return nil, err end
  coroutine.yield(TRANSFER, id)
  return transport:finish(id)
end

-- Parks the running task (of this scheduler) until wake() or, if given, time `at`.
function Scheduler:park(at)
  assert(self:current(), "park outside the scheduler's tasks")
  coroutine.yield(PARK, at)
end

-- Seconds until step() is due even if the transport's descriptor stays quiet: 0 when a task
-- can run now, else the sooner of libcurl's timer and the first sleep's end; nil for never.
function Scheduler:next_wakeup()
  local due = self.transport:next_timer() -- first: a closed client raises
  if #self.ready > 0 then return 0 end
  local sleepers = self.sleepers
  -- a task woken early left a stale entry: dropped here, it cannot cause a needless wakeup
  while sleepers[1] and sleepers[1].token ~= sleepers[1].task._token do heap_pop(sleepers) end
  if sleepers[1] then
    local left = sleepers[1].at - now()
    if left < 0 then left = 0 end
    if not due or left < due then due = left end
  end
  return due
end

function Scheduler:wake(t)
  if t._parked then
    t._parked = false
    t._token = t._token + 1 -- its heap entry, if any, is stale now
    self.ready[#self.ready + 1] = t
  end
end

-- Sleeps by yielding when running inside any client's task; returns false otherwise.
function M.sleep(seconds)
  local t = running[coroutine.running()]
  if not t then return false end
  coroutine.yield(SLEEP, now() + seconds)
  return true
end

return M
