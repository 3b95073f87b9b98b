--- Tasks: many client calls at once from one thread.
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
--
-- A task is made by @{faceswap.client:spawn}; in OpenResty it is an nginx light thread.
-- @module faceswap.task
local core = require "faceswap.core"

local now, interrupted = core.now, core.interrupted
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running

local M = {}

-- How many tasks one step(0) resumes at most (new ones, those whose transfer ended, those whose
-- sleep is over): the rest wait in their queues for the next step, and next_wakeup() is 0
-- meanwhile. A frame loop's step(0) then never starts 50 requests or reads 50 answers at once.
-- Only step(0) has a budget: a step that may wait (run(), a blocking call driving the others)
-- takes everything that is due.
M.STEP_BUDGET = 12

local TRANSFER, SLEEP, PARK = {}, {}, {}

-- coroutine -> its task, only while that task runs: so this table never keeps a task alive,
-- and a call knows whether it runs inside a task (and whose) with one lookup.
local running = {}

local function pack(...) return { n = select("#", ...), ... } end

-- pcall that a task may yield through. On 5.2+ and LuaJIT that is pcall itself; PUC 5.1's pcall
-- is a C call no coroutine can yield across, so there fn runs in a coroutine of its own that
-- counts as the same task, its yields handed on to whoever resumes the task. Where the task
-- itself cannot yield (a gsub callback above), fn runs under plain pcall: its calls see that
-- C boundary and block, instead of yielding out of their own coroutine into one that cannot.
M.pcall = pcall
if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
  function M.pcall(fn, ...)
    local outer = coroutine.running()
    local t = outer and running[outer]
    if not t or not M.can_yield() then return pcall(fn, ...) end
    local co, r = coroutine.create(fn), pack(...)
    while true do
      running[co] = t
      r = pack(coroutine.resume(co, unpack(r, 1, r.n)))
      running[co] = nil
      if coroutine.status(co) == "dead" then return unpack(r, 1, r.n) end
      r = pack(coroutine.yield(unpack(r, 2, r.n)))
    end
  end
end

-- Whether the running coroutine can yield here. A client call made where it cannot (inside a
-- string.gsub replacement function, a table.sort comparator, a __tostring: a C function
-- between the call and the task's body) must not start a transfer and then fail to yield: it
-- blocks instead, as outside a task. Lua 5.3, 5.4 and LuaJIT say so themselves.
local PROBE = {}
local can_yield = rawget(coroutine, "isyieldable") -- (luacheck: 5.1 has none)
if not can_yield then
  if _VERSION == "Lua 5.2" then
    -- pcall is yieldable in 5.2: a yield that cannot happen raises inside it, before anything
    -- was started, and one that can comes back at once (settle resumes a PROBE at once)
    can_yield = function() return (pcall(coroutine.yield, PROBE)) end
  else
    -- 5.1: neither pcall nor metamethods can yield, and a failed yield raises, so walk the
    -- coroutine's own stack: any C function on it, or a Lua function called from Lua in
    -- other than a plain call (a metamethod has no name, and no tail call below it), is a
    -- boundary. When in doubt it says no: blocking is always correct.
    can_yield = function()
      local level = 3 -- the caller of the client function that asks
      local info = debug.getinfo(level, "Sn")
      while info do
        local above = debug.getinfo(level + 1, "S")
        if info.what == "C" or
           (info.what ~= "tail" and info.namewhat == "" and above and above.what ~= "tail") then
          return false
        end
        level, info = level + 1, above and debug.getinfo(level + 1, "Sn")
      end
      return true
    end
  end
end
M.can_yield = can_yield

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

--- A task: a function running as a coroutine that its client drives. `tostring(task)` says
-- whether it is done.
-- @type task

--- Whether the task's function has returned (or raised).
-- @treturn boolean
function task:done()
  check_task(self, "done")
  return self._result ~= nil
end

--- Stops the task.
-- Stops the task: at once if it waits (its transfer is dropped), at its next yield if it is
-- the one running. True if this call stopped it, false if it had already finished.
-- A stopped task's @{result} is `nil` and an error of kind `cancelled`. In OpenResty, where
-- nginx lets only the light thread that spawned a task kill it, a task cancelled from
-- anywhere else stops at its next request or park.
-- @treturn boolean whether this call stopped it
function task:cancel()
  check_task(self, "cancel")
  if self._result then return false end
  self._sched:cancel(self, "task cancelled")
  return true
end

--- The task's results.
-- What the task's function returned, or nil and what it raised.
-- @return what the task's function returned, or `nil` and what it raised (a string with
-- its traceback, or the value raised)
-- @raise when the task has not finished: step or run its client first
function task:result()
  check_task(self, "result")
  local r = self._result
  if not r then
    error("bad argument #1 to 'result' (the task has not finished; step() or run() its client)", 2)
  end
  return unpack(r, 1, r.n)
end

-- A new task of scheduler `sched`, run by coroutine `co` with the arguments `args` (a packed
-- list): the one shape of a task, whichever transport's scheduler drives it (faceswap.resty's
-- sets `co` once its light thread has started).
function M.new(sched, co, args)
  return setmetatable({ _sched = sched, _co = co, _token = 0, _args = args, _transfer = false,
                        _renewer = false, _sent = false, _parked = false, _cancel = false }, task_mt)
end

---------------------------------------------------------------------------------------------
-- Sleepers: a lane, and a binary heap on wake time. A sleep that ends no sooner than the last
-- in the lane joins the lane's tail (three parallel arrays: no table made), which then stays
-- in wake order; the others (a shorter sleep after a longer one) go to the heap. The first
-- due is the sooner of the lane's head and the heap's top: tasks that sleep the same interval
-- (a batch's polls) never sift. An entry whose token no longer matches its task's is stale
-- (the task was woken early: wake, cancel) and is dropped when it reaches the front.
---------------------------------------------------------------------------------------------
local function heap_push(h, at, t)
  local e = { at = at, task = t, token = t._token }
  local n = #h + 1
  -- sift up by moving parents down into the hole, then place the entry once
  while n > 1 do
    local parent = (n - n % 2) / 2
    local p = h[parent]
    if p.at <= at then break end
    h[n] = p
    n = parent
  end
  h[n] = e
end

local function heap_pop(h)
  local top, n = h[1], #h
  local last = h[n]
  h[n] = nil
  n = n - 1
  if n > 0 then
    -- sift the last entry down from the root: the smaller child moves up into the hole
    local at, i = last.at, 1
    while true do
      local l = 2 * i
      if l > n then break end
      local c, ca = h[l], h[l].at
      if l < n then
        local r = h[l + 1]
        if r.at < ca then l, c, ca = l + 1, r, r.at end
      end
      if ca >= at then break end
      h[i] = c
      i = l
    end
    h[i] = last
  end
  return top
end

local function push_sleeper(self, at, t)
  local tail, lane_at = self.lane_tail, self.lane_at
  if tail < self.lane_head or at >= lane_at[tail] then
    tail = tail + 1
    lane_at[tail], self.lane_task[tail], self.lane_token[tail] = at, t, t._token
    self.lane_tail = tail
  else
    heap_push(self.sleepers, at, t)
  end
end

-- The wake time of the first sleeper (stale or not), nil when none sleeps.
local function first_at(self)
  local h, top = self.lane_head, self.sleepers[1]
  if h <= self.lane_tail then
    local at = self.lane_at[h]
    if top and top.at < at then return top.at end
    return at
  end
  return top and top.at
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
    -- the queues below live here, not in step()'s locals: a call that cannot yield steps the
    -- scheduler from inside a task (nested), and must find what the outer step had not done yet
    ready = {},     -- tasks for the next pass, a queue from ready_head to ready_tail
    ready_head = 1, ready_tail = 0,
    ended = {},     -- transfer ids the transport reported ended, not yet handed to their tasks
    ended_head = 1, ended_tail = 0,
    waiting = {},   -- transfer id -> task
    sleepers = {},  -- the heap
    lane_at = {}, lane_task = {}, lane_token = {}, -- the lane (see Sleepers), its head and tail
    lane_head = 1, lane_tail = 0,
    tasks = {},     -- every task not finished
    closed = false, -- (set here: a field the instance lacks costs a miss in Scheduler too)
  }, Scheduler)
end

-- The running task, if it is one of this scheduler's and can yield here (see can_yield): a
-- call that finds none blocks, as outside a task.
function Scheduler:current()
  local t = running[co_running()]
  if t and t._sched == self and can_yield() then return t end
  return nil
end

local function push_ready(self, t)
  local tail = self.ready_tail + 1
  self.ready[tail], self.ready_tail = t, tail
end

local function finished(self, t, result)
  -- once: a close() from a finalizer run while a task's end is being recorded ends it first
  if t._result then return end
  self.count = self.count - 1
  self.tasks[t] = nil
  t._result = result
  if t._on_done then t._on_done(t) end
end

local function cancelled_error(why, sent)
  return core.error { kind = "cancelled", error = why, sent = sent or false, retryable = false }
end

-- Records how a resume ended: the task finished, or what it now waits for.
-- A yield of TRANSFER, SLEEP or PARK (private values no task returns) needs no co_status.
local function settle(self, t, ok, ...)
  local co = t._co
  running[co] = nil
  local what, arg, at = ...
  if not ok then
    local err = what
    if type(err) == "string" then err = debug.traceback(co, err) end
    return finished(self, t, { n = 2, nil, err })
  end
  if what ~= TRANSFER and what ~= SLEEP and what ~= PARK then
    if co_status(co) == "dead" then return finished(self, t, pack(...)) end
    if what == PROBE then -- can_yield() asking (Lua 5.2): go on at once
      running[co] = t
      return settle(self, t, co_resume(co))
    end
  end
  if t._cancel then -- cancelled while it ran: it stops at this yield
    local sent = t._sent
    if what == TRANSFER and self.transport:cancel(arg) then sent = true end
    return finished(self, t, { n = 2, nil, cancelled_error(t._cancel, sent) })
  end
  if what == TRANSFER then
    t._transfer = arg
    self.waiting[arg] = t
    if at then push_sleeper(self, at, t) end -- (a hold to renew then: see transfer)
  elseif what == SLEEP then
    push_sleeper(self, arg, t)
  elseif what == PARK then
    t._parked = true
    if arg then push_sleeper(self, arg, t) end
  else
    push_ready(self, t)
  end
end

-- (the token changes only where a task is woken early, wake and cancel: a sleeper is resumed
-- once its entry left the front, and a task has at most one entry that is not stale)
local function resume(self, t, ...)
  local co = t._co
  running[co] = t
  return settle(self, t, co_resume(co, ...))
end

function Scheduler:spawn(fn, ...)
  local t = M.new(self, co_create(fn), pack(...))
  self.count = self.count + 1
  self.tasks[t] = true
  push_ready(self, t)
  return t
end

-- Ends a task that has not finished with nil and a `cancelled` error: at once if it waits
-- (dropping its transfer, and its sleep or park), at its next yield if it is running. Returns
-- whether the request of the transfer it dropped may have reached the server.
function Scheduler:cancel(t, why)
  if t._result or t._cancel then return false end
  if running[t._co] then
    t._cancel = why
    return false
  end
  local sent, dropped = t._sent, false
  if t._transfer then
    self.waiting[t._transfer] = nil
    dropped = self.transport:cancel(t._transfer)
    if dropped then sent = true end
    t._transfer = false
  end
  t._token = t._token + 1 -- its heap entry, if any, is stale now
  t._parked = false -- in `ready`, it is skipped (it has a result)
  finished(self, t, { n = 2, nil, cancelled_error(why, sent) })
  local renewer = t._renewer -- (the renewer of the hold its request was made under)
  if renewer then
    t._renewer = false
    self:cancel(renewer, why)
  end
  local close = rawget(coroutine, "close") -- 5.4: runs the task's pending __close handlers
  if close then close(t._co) end
  return dropped
end

-- close(): every task ends with a `cancelled` error (the running one at its next yield), and
-- step() refuses to run from now on. Every scheduler's close (faceswap.resty.scheduler's too):
-- it needs only the scheduler's `closed` flag, its `tasks` set and its own `cancel`.
function M.close_scheduler(self)
  self.closed = true
  local list = {}
  for t in pairs(self.tasks) do list[#list + 1] = t end
  for i = 1, #list do self:cancel(list[i], "client closed") end
end
Scheduler.close = M.close_scheduler

-- Queues the ids of transfers that have ended.
local function transfers_ended(self, id, ...)
  if id == nil then return end -- (most polls: none, or one)
  local ended, tail = self.ended, self.ended_tail + 1
  ended[tail] = id
  for i = 1, select("#", ...) do
    tail = tail + 1
    ended[tail] = (select(i, ...))
  end
  self.ended_tail = tail
end

-- Resumes the tasks whose transfers have ended, one at a time off the queue (so that a
-- nested step resumes the rest), at most `left` of them (the rest stay queued for the next
-- step); returns how many it resumed, or false when there were none. An id with no task (its
-- task was cancelled meanwhile) is dropped; nothing stops the others.
local function resume_ended(self, left)
  local ended, waiting = self.ended, self.waiting
  if self.ended_head > self.ended_tail then return false end
  local resumed = 0
  while self.ended_head <= self.ended_tail and resumed < left do
    local head = self.ended_head
    local id = ended[head]
    ended[head], self.ended_head = nil, head + 1
    if head == self.ended_tail then -- drained: the queue starts at 1 again (array part)
      self.ended_head, self.ended_tail = 1, 0
    end
    local t = waiting[id]
    waiting[id] = nil
    if t then
      t._transfer = false
      resumed = resumed + 1
      resume(self, t)
    elseif not self.closed then
      self.transport:cancel(id)
    end
  end
  return resumed
end

-- One pass or more, until something ran or `timeout` seconds are over; 0 never blocks.
-- `nested`: driven from inside a task that cannot yield (a batch there, a blocking command
-- waiting for its channel): the other tasks run, that one (running) is never resumed.
function Scheduler:step(timeout, nested)
  if self.closed then error("attempt to use a closed faceswap client", 3) end
  if not nested and next(running) then
    local t = running[coroutine.running()]
    if t and t._sched == self then
      error("bad argument #1 to 'step' (called from inside one of its tasks)", 3)
    end
  end
  -- step(0) from the host (not nested) resumes at most STEP_BUDGET tasks: see STEP_BUDGET
  local left = (timeout == 0 and not nested) and M.STEP_BUDGET or math.huge
  local deadline = timeout > 0 and now() + timeout or 0 -- (step(0): one pass, no clock read)
  local sleepers, lane_at, lane_task, lane_token =
    self.sleepers, self.lane_at, self.lane_task, self.lane_token
  repeat
    local progressed = false
    local ready, last = self.ready, self.ready_tail
    if self.ready_head <= last then
      -- the tasks queued before this pass, taken off one at a time: a nested step takes on
      -- from where this one is
      while self.ready_head <= last and left > 0 do
        local head = self.ready_head
        local t = ready[head]
        ready[head], self.ready_head = nil, head + 1
        local args = t._args
        if t._result then -- cancelled meanwhile
          t._args = nil
        elseif args then -- a new task: its first resume passes spawn's arguments
          t._args = nil
          left = left - 1
          resume(self, t, unpack(args, 1, args.n))
        else
          left = left - 1
          resume(self, t)
        end
        if self.closed then return self.count end -- closed by the task just run
      end
      progressed = true
    end
    -- wait for transfers only while nothing else is due
    local wait = 0
    if timeout > 0 and not progressed and self.ready_head > self.ready_tail and
       self.ended_head > self.ended_tail then
      local t = now()
      wait = deadline - t
      local first = first_at(self)
      if first and first - t < wait then wait = first - t end
      if wait < 0 then wait = 0 end
      if wait > 0 and self.count > 0 and not first and not next(self.waiting) then
        error("faceswap: " .. self.count .. " task(s) wait for nothing that can happen", 3)
      end
    end
    transfers_ended(self, self.transport:poll(wait))
    local resumed = resume_ended(self, left)
    if resumed then
      progressed, left = true, left - resumed
    end
    if self.closed then return self.count end
    local t = now()
    while left > 0 do
      -- the first due: the lane's head, unless the heap's top is sooner
      local h, top, st, token = self.lane_head, sleepers[1]
      local at = h <= self.lane_tail and lane_at[h]
      if at and at <= t and not (top and top.at < at) then
        st, token = lane_task[h], lane_token[h]
        lane_at[h], lane_task[h], lane_token[h] = nil, nil, nil
        local tail = self.lane_tail
        if h == tail then
          self.lane_head, self.lane_tail = 1, 0
        elseif h < 32 or h <= tail - h then
          self.lane_head = h + 1
        else
          -- moved down to 1 once the spent head outgrows the live entries (so each entry moves
          -- at most about once: no cost per wake that grows with the sleepers): the indices
          -- stay in the arrays' array part, never hashed
          local n = tail - h
          for k = 1, n do
            lane_at[k], lane_task[k], lane_token[k] = lane_at[h + k], lane_task[h + k], lane_token[h + k]
            lane_at[h + k], lane_task[h + k], lane_token[h + k] = nil, nil, nil
          end
          self.lane_head, self.lane_tail = 1, n
        end
      elseif top and top.at <= t then
        heap_pop(sleepers)
        st, token = top.task, top.token
      else
        break
      end
      if token == st._token then
        st._parked = false
        left = left - 1
        resume(self, st)
        progressed = true
        if self.closed then return self.count end
      end
    end
  until progressed or t >= deadline or (interrupted and interrupted())
  return self.count
end

function Scheduler:run()
  local t = running[coroutine.running()]
  if t and t._sched == self then error("bad argument #1 to 'run' (called from inside one of its tasks)", 3) end
  while self.count > 0 and not self.closed do self:step(3600) end
end

-- Whether a transfer's request may have reached the server, from what it returned.
local function reached(status, err)
  return status ~= nil or (type(err) == "table" and err.sent ~= false)
end

-- What a transfer made under a hold runs while it is on its way, in a task of its own (a
-- coordinator's call may park): `hold:renew_hold()` renews the hold when due and tells when
-- it is next due (nil: nothing left to keep), until the transfer has ended (`state.done`,
-- and the transfer wakes it). Both schedulers' (faceswap.resty.scheduler's too).
function M.keep_hold(sched, hold, state)
  -- (its command's holder: the hold handed to another, or ended, ends this renewer too)
  local holder = hold.holder
  while not state.done and hold.holder == holder do
    local at = hold:renew_hold()
    if not at or state.done or hold.holder ~= holder then return end
    sched:park(at)
  end
end

-- Starts keep_hold for `hold` in a task of its own; returns its state (done: set by the
-- transfer once it ended, then the task woken).
function M.renewer(sched, hold)
  local state = { done = false }
  state.task = sched:spawn(M.keep_hold, sched, hold, state)
  return state
end

-- A transfer made where the caller cannot yield, under a hold that needs renewing meanwhile
-- (hold:renewal() told a time): made in a helper task while the caller steps the client (the
-- other tasks run, as while it waits for its channel), so that the hold's renewer runs too.
local function stepped(self, t, method, target, content_type, body, opts, hold)
  local h = self:spawn(self.transfer, self, method, target, content_type, body, opts, hold)
  while not h._result and not self.closed do self:step(1, true) end
  local r = h._result -- (a client closed meanwhile cancelled the helper: its error says so)
  if t and reached(r[1], r[2]) then t._sent = true end
  return unpack(r, 1, r.n)
end

-- Inside a task: starts the transfer and yields until it ends. Outside (or where the task
-- cannot yield): blocks on it. `opts`: the transfer's own options (the transport's). `hold`
-- (nil: none) a channel whose exclusive hold the request is made under (faceswap.channel):
-- hold:renewal() tells when the hold must be renewed, if ever; a transfer still on its way
-- then starts a task that renews it (keep_hold) until it ends. Outside a task, or where the
-- task cannot yield, such a transfer is made through the scheduler (stepped) instead of the
-- transport's perform, which runs no Lua until its transfer ends.
function Scheduler:transfer(method, target, content_type, body, opts, hold)
  local transport = self.transport
  local t = running[co_running()]
  if t and t._sched ~= self then t = nil end
  if not t then
    if hold and hold:renewal() then
      return stepped(self, nil, method, target, content_type, body, opts, hold)
    end
    return transport:perform(method, target, content_type, body, opts)
  end
  if not can_yield() then
    if hold and hold:renewal() then
      return stepped(self, t, method, target, content_type, body, opts, hold)
    end
    local status, headers, answer = transport:perform(method, target, content_type, body, opts)
    if reached(status, headers) then t._sent = true end
    return status, headers, answer
  end
  local id, err = transport:start(method, target, content_type, body, opts)
  if not id then return nil, err end
  if hold then
    local at = hold:renewal()
    co_yield(TRANSFER, id, at)
    if t._transfer then
      -- woken at `at` with the transfer still on its way: a renewer runs until it ends
      local state = M.renewer(self, hold)
      t._renewer = state.task -- (cancelled with its command: Scheduler:cancel)
      co_yield(TRANSFER, id)
      t._renewer = false
      state.done = true
      self:wake(state.task)
    elseif at then
      t._token = t._token + 1 -- (the transfer ended first: its entry among the sleepers is stale)
    end
  else
    co_yield(TRANSFER, id)
  end
  local status, headers, answer = transport:finish(id)
  -- (reached(), inline: this is every request of every task)
  if status ~= nil or (type(headers) == "table" and headers.sent ~= false) then t._sent = true end
  return status, headers, answer
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
  if self.ready_head <= self.ready_tail or self.ended_head <= self.ended_tail then return 0 end
  local sleepers, lane_task, lane_token = self.sleepers, self.lane_task, self.lane_token
  -- a task woken early left a stale entry: dropped here, it cannot cause a needless wakeup
  while sleepers[1] and sleepers[1].token ~= sleepers[1].task._token do heap_pop(sleepers) end
  local h = self.lane_head
  while h <= self.lane_tail and lane_token[h] ~= lane_task[h]._token do
    self.lane_at[h], lane_task[h], lane_token[h] = nil, nil, nil
    h = h + 1
  end
  if h > self.lane_tail then h, self.lane_tail = 1, 0 end
  self.lane_head = h
  local first = first_at(self)
  if first then
    local left = first - now()
    if left < 0 then left = 0 end
    if not due or left < due then due = left end
  end
  return due
end

-- The descriptor a host watches: the transport's epoll set.
function Scheduler:fd()
  return self.transport:fd()
end

function Scheduler:wake(t)
  if t._parked then
    t._parked = false
    t._token = t._token + 1 -- its heap entry, if any, is stale now
    push_ready(self, t)
  end
end

-- Sleeps by yielding when running inside any client's task; returns false otherwise (and
-- where the task cannot yield).
function M.sleep(seconds)
  local t = running[co_running()]
  if not t or not can_yield() then return false end
  co_yield(SLEEP, now() + seconds)
  return true
end

return M
