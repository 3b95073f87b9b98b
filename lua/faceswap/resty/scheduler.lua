--- The nginx scheduler: tasks as nginx light threads.
-- faceswap.resty.scheduler: the glue between a client's tasks and nginx. A task is an nginx
-- light thread (made with faceswap.task's constructor, so it is the one shape of task), a
-- request moves through faceswap.resty.transport in the thread that asks, waiting is an nginx
-- semaphore, and nginx's own event loop drives everything: there is no descriptor to watch and
-- no timer to arm. It implements the transport contract of docs/development.md.
-- @module faceswap.resty.scheduler
local core = require "faceswap.core"
local task = require "faceswap.task"

local ngx = rawget(_G, "ngx")
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT
local now = core.now

local M = {}

local semaphore

local Scheduler = {}
Scheduler.__index = Scheduler

local running = {} -- coroutine -> task, while its thread lives

-- Raised through a task's own code to end it where it asked to be cancelled.
local CANCELLED = setmetatable({}, { __tostring = function() return "faceswap: task cancelled" end })

local function pack(...) return { n = select("#", ...), ... } end

function M.new(transport)
  semaphore = semaphore or require "ngx.semaphore"
  return setmetatable({
    transport = transport,
    count = 0,       -- tasks not finished
    tasks = {},      -- every task not finished
    semas = setmetatable({}, { __mode = "k" }), -- task -> the semaphore it parks on
    ended = semaphore.new(),
    closed = false,
  }, Scheduler)
end

-- The task running now, if it is one of this scheduler's. With none unfinished (a handler's
-- own call, the common case) there is nothing to look up: coroutine.running is a call that
-- LuaJIT does not compile (its trace stops there), and the channel's authority asks for the
-- current task several times a request.
function Scheduler:current()
  if self.count == 0 then return nil end
  local t = running[coroutine.running()]
  if t and t._sched == self then return t end
  return nil
end

local function traceback(e)
  if type(e) == "string" then return debug.traceback(e, 2) end
  return e
end

local function cancelled_error(why, sent)
  return core.error { kind = "cancelled", error = why, sent = sent or false, retryable = false }
end

local function finished(self, t, result)
  self.count = self.count - 1
  self.tasks[t] = nil
  t._result = result
  self.ended:post(1)
end

-- A task that was asked to stop while it could not be killed stops at its next wait.
local function stop_if_cancelled(t)
  if t and t._cancel then error(CANCELLED, 0) end
end

-- Starts fn(...) in a light thread at once (nginx runs it until it first waits).
function Scheduler:spawn(fn, ...)
  local t = task.new(self, nil, pack(...))
  self.count = self.count + 1
  self.tasks[t] = true
  local thread = ngx.thread.spawn(function()
    local co = coroutine.running()
    t._co = co
    running[co] = t
    local args = t._args
    t._args = nil
    local r = pack(xpcall(fn, traceback, unpack(args, 1, args.n)))
    running[co] = nil
    if t._result then return end -- cancelled meanwhile
    if t._cancel then
      finished(self, t, { n = 2, nil, cancelled_error(t._cancel, t._sent) })
    else
      finished(self, t, r[1] and pack(unpack(r, 2, r.n)) or { n = 2, nil, r[2] })
    end
  end)
  t._co = t._co or thread
  return t
end

-- Lets the threads run: until one ends or `timeout` is over; 0 only yields once. `nested`:
-- the library's own wait outside a task (a call waiting for its channel's slot): with no task
-- to end, it sleeps the timeout, as the plain scheduler does, so that what it waits for (other
-- requests, other workers) can happen meanwhile instead of the worker spinning.
function Scheduler:step(timeout, nested)
  if self.closed then error("attempt to use a closed faceswap client", 3) end
  if self:current() then error("bad argument #1 to 'step' (called from inside one of its tasks)", 3) end
  if timeout <= 0 then
    ngx.sleep(0)
  elseif self.count > 0 then
    self.ended:wait(timeout)
  elseif nested then
    ngx.sleep(timeout)
  end
  return self.count
end

function Scheduler:run()
  while self.count > 0 and not self.closed do self.ended:wait(3600) end
end

-- Whether a transfer's request may have reached the server, from what it returned.
local function reached(status, err)
  return status ~= nil or (type(err) == "table" and err.sent ~= false)
end

-- The request, in the thread that asks: the cosocket yields to nginx while it waits. `opts`:
-- the transfer's own options (timeout; for a download max, path, sink), as for libcurl's.
-- `hold` (nil: none): the channel whose exclusive hold the request is made under, renewed
-- while it is on its way by a light thread of its own (faceswap.task's keep_hold), ended
-- with the request.
function Scheduler:transfer(method, target, content_type, body, opts, hold)
  local t = self:current()
  stop_if_cancelled(t)
  if t then t._transfer = true end
  local keeper
  if hold and hold:renewal() then
    keeper = task.renewer(self, hold)
    if t then t._renewer = keeper end -- (ended with its command: cancel)
  end
  local status, headers, answer = self.transport:perform(method, target, content_type, body, opts)
  if keeper then
    if t then t._renewer = false end
    keeper.done = true
    self:wake(keeper.task)
  end
  if t then
    t._transfer = false
    if reached(status, headers) then t._sent = true end
    stop_if_cancelled(t)
  end
  return status, headers, answer
end

function Scheduler:park(at)
  local t = assert(self:current(), "park outside the scheduler's tasks")
  stop_if_cancelled(t)
  local sema = self.semas[t]
  if not sema then
    sema = semaphore.new()
    self.semas[t] = sema
  end
  t._parked = true
  sema:wait(at and math.max(at - now(), 0) or 86400)
  t._parked = false
  stop_if_cancelled(t)
end

function Scheduler:wake(t)
  if t._parked then
    t._parked = false
    self.semas[t]:post(1)
  end
end

-- Ends a task that has not finished with nil and a `cancelled` error. nginx lets only the
-- light thread that spawned a task kill it: from there (and when it waits) the task ends at
-- once; from anywhere else, and when it is the one running, it ends at its next request or
-- park (a sleep does not end early). Returns whether a request it dropped may have
-- reached the server.
function Scheduler:cancel(t, why)
  if t._result or t._cancel then return false end
  local co = coroutine.running()
  if t._co ~= co and ngx.thread.kill(t._co) then
    local dropped = t._transfer -- killed inside a request: it may have reached the server
    if dropped then self.transport:abandon(t._co) end -- (a download's temporary file goes)
    running[t._co] = nil
    t._transfer, t._parked = false, false
    finished(self, t, { n = 2, nil, cancelled_error(why, t._sent or dropped) })
    local keeper = t._renewer -- (the renewer of the hold its request was made under)
    if keeper then
      t._renewer = false
      keeper.done = true
      self:wake(keeper.task)
    end
    return dropped
  end
  t._cancel = why
  self:wake(t)
  return false
end

-- close(): every task ends with a `cancelled` error (see cancel), and step() refuses to run
-- (faceswap.task's, which needs only `closed`, `tasks` and this cancel).
Scheduler.close = task.close_scheduler

-- nil: nginx's event loop wakes the threads itself; a host has no timer to arm.
function Scheduler.next_wakeup() return nil end

-- nil and why: nginx watches the cosockets itself; there is no descriptor for a host.
function Scheduler.fd() return nil, "nginx drives the requests itself" end

return M
