-- faceswap.simulator.sched: the scheduler (coroutines waiting on sockets or deadlines over
-- socket.select) and non-blocking socket I/O for use inside its tasks.
local socket = require "socket"
local util = require "faceswap.simulator.util"

local M = { running = true }   -- false: the main loop ends after this round

local now = util.now
local IO_TIMEOUT = 60          -- seconds without progress before a half-sent/half-read exchange is dropped
local TICK = 1                 -- longest select() wait, so the parent watch runs even when idle
M.IO_TIMEOUT, M.TICK = IO_TIMEOUT, TICK

---------------------------------------------------------------------------------------------
-- Scheduler: coroutines wait for a socket to become readable/writable or for a deadline.
---------------------------------------------------------------------------------------------
local waits = {}        -- coroutine -> { sock, mode ("r"|"w"|nil), deadline (or nil) }

local function report(what, err)
  io.stderr:write("simulator: ", what, ": ", tostring(err), "\n")
end

-- Suspends the running coroutine; returns "ready" or "timeout".
local function wait(sock, mode, deadline)
  waits[coroutine.running()] = { sock = sock, mode = mode, deadline = deadline }
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

-- One round: select over all waiting sockets until the nearest deadline, wake whoever is due.
local function step()
  local recvt, sendt, owner = {}, {}, {}
  local soonest
  for co, w in pairs(waits) do
    if w.mode == "r" then recvt[#recvt + 1] = w.sock elseif w.mode == "w" then sendt[#sendt + 1] = w.sock end
    if w.sock then owner[w.sock] = co end
    if w.deadline and (not soonest or w.deadline < soonest) then soonest = w.deadline end
  end
  local timeout = TICK
  if soonest then timeout = math.max(0, math.min(TICK, soonest - now())) end
  local readable, writable = socket.select(recvt, sendt, timeout)
  local due = {}
  for _, s in ipairs(readable) do due[owner[s]] = "ready" end
  for _, s in ipairs(writable) do due[owner[s]] = "ready" end
  local t = now()
  for co, w in pairs(waits) do
    if not due[co] and w.deadline and w.deadline <= t then due[co] = "timeout" end
  end
  for co, event in pairs(due) do
    if waits[co] then
      waits[co] = nil
      resume(co, event)
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

M.report, M.wait, M.sleep, M.spawn, M.step = report, wait, sleep, spawn, step
M.recv_some, M.send_all, M.reset = recv_some, send_all, reset

return M
