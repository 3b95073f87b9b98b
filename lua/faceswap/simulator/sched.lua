-- faceswap.simulator.sched: the scheduler (coroutines waiting on sockets or deadlines) and
-- non-blocking socket I/O for use inside its tasks. Two event loops: libuv through lua-luv
-- (epoll: any number of sockets) when it loads, else LuaSocket's select(), which can only
-- watch descriptors below FD_SETSIZE, so that loop refuses (closes at once) a connection whose
-- descriptor is too high instead of dying on it.
local socket = require "socket"
local util = require "faceswap.simulator.util"

local M = { running = true }   -- false: the main loop ends after this round

local now = util.now
local IO_TIMEOUT = 60          -- seconds without progress before a half-sent/half-read exchange is dropped
local TICK = 1                 -- longest select() wait, so the parent watch runs even when idle
local FD_LIMIT = 1024          -- FD_SETSIZE on Linux: select() raises on a descriptor >= this
M.IO_TIMEOUT, M.TICK, M.FD_LIMIT = IO_TIMEOUT, TICK, FD_LIMIT

local function report(what, err)
  io.stderr:write("simulator: ", what, ": ", tostring(err), "\n")
end

---------------------------------------------------------------------------------------------
-- Scheduler: coroutines wait for a socket to become readable/writable or for a deadline.
---------------------------------------------------------------------------------------------
local waits = {}        -- coroutine -> { sock, mode ("r"|"w"|nil), deadline (or nil), poll, timer }
local due = {}          -- coroutine -> "ready" | "timeout": woken, resumed by the next step()
local uv                -- lua-luv's module while the libuv loop is in use

local function fd_of(sock)
  local fd = sock:getfd()
  return fd and math.floor(fd) or -1
end

-- Whether the loop can watch this socket (select(): only descriptors below FD_SETSIZE).
local function can_watch(sock)
  return uv ~= nil or fd_of(sock) < FD_LIMIT
end

-- Ends a wait (from a libuv callback or a select round): its handles closed, so a socket that
-- its task closes next is never watched, and the task queued for resumption.
local function wake(co, w, event)
  if waits[co] ~= w then return end
  waits[co] = nil
  if w.poll then uv.close(w.poll) end
  if w.timer then uv.close(w.timer) end
  due[co] = event
end

-- libuv: one poll handle on the socket's descriptor and one timer per wait, closed when it ends.
local function watch_uv(co, w)
  if w.sock then
    local fd = fd_of(w.sock)
    local poll = fd >= 0 and uv.new_poll(fd)
    if poll then
      w.poll = poll
      local ok = uv.poll_start(poll, w.mode == "w" and "w" or "r", function() wake(co, w, "ready") end)
      if not ok then uv.close(poll) w.poll = nil end
    end
    if not w.poll then                -- a closed socket: its next call says so
      if fd >= 0 then report("cannot watch descriptor", fd) end
      due[co], waits[co] = "ready", nil
      return
    end
  end
  if w.deadline then
    uv.update_time()                  -- the loop's clock stands still while tasks run
    -- (+1: libuv's clock is whole milliseconds, truncated, so a timer of exactly the time left
    -- could fire up to a millisecond before the deadline: a 0.3 s delay answered in 0.2998 s)
    local ms = math.max(0, math.ceil((w.deadline - now()) * 1000)) + 1
    w.timer = uv.new_timer()
    uv.timer_start(w.timer, ms, 0, function() wake(co, w, "timeout") end)
  end
end

-- Suspends the running coroutine; returns "ready" or "timeout".
local function wait(sock, mode, deadline)
  local co = coroutine.running()
  local w = { sock = sock, mode = mode, deadline = deadline }
  if sock and not can_watch(sock) then        -- select() cannot: give up on this socket
    w.sock, w.deadline = nil, now()
  end
  waits[co] = w
  if uv then watch_uv(co, w) end
  return coroutine.yield()
end

local function sleep(seconds)
  wait(nil, nil, now() + seconds)
end

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then report("task failed", err) end
end

-- Starts fn as a task; errors are reported (with a traceback) instead of killing the server.
local function spawn(fn, ...)
  local args = table.pack(...)
  resume(coroutine.create(function()
    local ok, err = xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
    if not ok then report("task failed", err) end
  end))
end

-- Resumes every woken task.
local function run_due()
  local batch = due
  due = {}
  for co, event in pairs(batch) do resume(co, event) end
end

-- One round over select(): every waiting socket until the nearest deadline.
local function step_select()
  local recvt, sendt, owner = {}, {}, {}
  local soonest
  for co, w in pairs(waits) do
    if w.mode == "r" then recvt[#recvt + 1] = w.sock elseif w.mode == "w" then sendt[#sendt + 1] = w.sock end
    if w.sock then owner[w.sock] = co end
    if w.deadline and (not soonest or w.deadline < soonest) then soonest = w.deadline end
  end
  local timeout = TICK
  if soonest then timeout = math.max(0, math.min(TICK, soonest - now())) end
  if next(due) then timeout = 0 end
  local readable, writable = socket.select(recvt, sendt, timeout)
  for _, s in ipairs(readable) do wake(owner[s], waits[owner[s]], "ready") end
  for _, s in ipairs(writable) do wake(owner[s], waits[owner[s]], "ready") end
  local t = now()
  for co, w in pairs(waits) do
    if w.deadline and w.deadline <= t then wake(co, w, "timeout") end
  end
  run_due()
end

-- One round over libuv: blocks until a socket or a timer fires (nothing waits: a TICK).
local function step_uv()
  if not next(due) and not uv.run("once") and not next(due) then socket.sleep(TICK) end
  run_due()
end

local function step()
  if uv then return step_uv() end
  return step_select()
end

-- Picks the event loop before the first task: "luv" (fails without lua-luv), "select", or nil
-- for luv when it loads. Returns the loop's name, or nil and why.
local function use(name)
  if name == "select" then
    uv = nil
    return "select"
  end
  local ok, mod = pcall(require, "luv")
  if ok and type(mod) == "table" then
    uv = mod
    return "luv"
  end
  if name == "luv" then return nil, "lua-luv cannot be loaded: " .. tostring(mod) end
  uv = nil
  return "select"
end

-- The main loop: rounds until `running` is false; an error in a round (a bug, or a socket
-- library raising) is reported and the loop goes on after a short pause, so nothing that one
-- connection does ends the server.
local function run()
  while M.running do
    local ok, err = xpcall(step, debug.traceback)
    if not ok then
      report("main loop", err)
      socket.sleep(0.05)
    end
  end
end

---------------------------------------------------------------------------------------------
-- Non-blocking socket I/O for use inside tasks
---------------------------------------------------------------------------------------------
-- Returns some bytes, or nil and "closed"/"timeout"/an error.
local function recv_some(sock, deadline)
  while true do
    local data, err, partial = sock:receive(65536)
    local chunk = data or partial
    if chunk and #chunk > 0 then return chunk end
    if err ~= "timeout" then return nil, err end
    if wait(sock, "r", deadline) == "timeout" then return nil, "timeout" end
  end
end

-- Sends all of data, waiting for writability in between; partial sends never block the loop.
local function send_all(sock, data)
  local i = 1
  while i <= #data do
    local last, err, lastpart = sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = lastpart + 1
      if wait(sock, "w", now() + IO_TIMEOUT) == "timeout" then return nil, "timeout" end
    else
      return nil, err
    end
  end
  return true
end

-- Abortive close: SO_LINGER 0 makes close() send RST instead of FIN.
local function reset(sock)
  sock:setoption("linger", { on = true, timeout = 0 })
  sock:close()
end

M.report, M.wait, M.sleep, M.spawn, M.step, M.run, M.use, M.can_watch =
  report, wait, sleep, spawn, step, run, use, can_watch
M.recv_some, M.send_all, M.reset = recv_some, send_all, reset

return M
