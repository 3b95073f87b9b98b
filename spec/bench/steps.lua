-- spec/bench/steps.lua - the client side of the step(0) cost benchmark (see
-- spec/bench/concurrency.sh).
--
--   valgrind --tool=callgrind --collect-atstart=no lua5.4 spec/bench/steps.lua URL T M1 M2
--
-- URL is a spec/bench/hold.c server, which reads requests and answers none until told to.
-- The script spawns T tasks, each making one client:headshot() to it, and steps the client
-- until the server holds all T requests, whole, on T connections: every transfer is then
-- connected, sent, and idle until an answer comes. Then it counts (callgrind collects only
-- between cgmark.toggle() calls; each cgmark.dump() writes one numbered part file):
--
--   "timers"               one step(0), CONNECT_TIMEOUT + 0.5 s after setup ended (without
--                          steps in between): libcurl's timers from the connects are all due
--                          and fire in it; no transfer changes
--   "idle M1", "idle M2"   M1 and M2 calls of client:step(0) in a loop; nothing may change
--   "loop M1", "loop M2"   the same loop calling a stand-in method that only returns: the
--                          loop's own cost, to take off
--   "end 1 old"            after the server has answered the request it has held longest,
--                          the one step(0) that finishes it: work for one transfer that changed
--   "end 1 new"            the same for the request it received last
--   "end 8 old"            the same for the 8 requests held longest: 8 transfers changed
--
-- What it asserts (and exits non-zero for): during the idle loops every step(0) returned T,
-- no task finished, the transport kept T transfers running and the server still holds T
-- requests on T connections (no reconnect, nothing resent); the idle loops allocated nothing;
-- each "end k" step finished exactly k tasks, each with the server's job.
-- Prints one line per window ("window NAME STEPS"), in dump order, then "ok". With T = 10 the
-- last window ends the last 8 transfers; with more, idle ones stay beside them throughout.

local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. root .. "/build/bench/?.so;" .. package.cpath

local url, T, M1, M2 = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
if not (url and T and M1 and M2) or T < 10 or M2 <= M1 then
  io.stderr:write("usage: lua5.4 spec/bench/steps.lua URL T M1 M2   (T >= 10, M2 > M1)\n")
  os.exit(2)
end

local socket = require "socket"
local faceswap = require "faceswap"
local cg = require "cgmark"

local JOBID = "0123456789abcdef0123456789abcdef" -- what hold.c answers

local host, port = url:match("^http://([^:/]+):(%d+)")
assert(host, "URL must be http://HOST:PORT")

local function fail(fmt, ...)
  io.stderr:write("steps.lua (T=", T, "): ", fmt:format(...), "\n")
  os.exit(1)
end

-- One control request to the hold server on a fresh connection; its answer's body.
local function control(path)
  local sock = socket.tcp()
  sock:settimeout(10)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then fail("control connection: %s", tostring(err)) end
  sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nConnection: close\r\n\r\n")
  local answer, _, partial = sock:receive("*a")
  sock:close()
  answer = answer or partial or ""
  return answer:match("\r\n\r\n(.*)$") or ""
end

local function held()
  local open, count = control("/__hold/stats"):match("^open (%d+) held (%d+)")
  return tonumber(open), tonumber(count)
end

-- connect_timeout is the library's default, written out: libcurl (7.88) leaves a timer per
-- transfer at that time after its connect began, connected or not (see "timers" above).
local CONNECT_TIMEOUT = 10
local c = faceswap.new { token = "bench-token", base_url = url .. "/v1/faceswap", timeout = 3600,
                         connect_timeout = CONNECT_TIMEOUT }
local transport = c._transport -- read-only use: running() counts transfers in flight

local finished, results = 0, {}
for i = 1, T do
  c:spawn(function()
    local job, err = c:headshot("held request " .. i)
    finished = finished + 1
    results[#results + 1] = job or err
  end)
end

-- Setup (not counted): step until the server holds all T requests.
local deadline = faceswap.now() + 300
repeat
  c:step(0.02)
  local open, count = held()
  if faceswap.now() > deadline then fail("server holds %s of %d requests", tostring(count), T) end
until open == T and count == T
if finished ~= 0 then fail("%d task(s) finished before the measurement", finished) end
if transport:running() ~= T then fail("%d transfers running, want %d", transport:running(), T) end

-- Wait, without stepping, until every timer libcurl set while connecting is due; the one
-- step(0) after that meets them all at once.
socket.sleep(CONNECT_TIMEOUT + 0.5)
do
  collectgarbage()
  cg.toggle()
  local n = c:step(0)
  cg.toggle()
  cg.dump("timers")
  if n ~= T or finished ~= 0 then fail("the step after the connect timers changed a task") end
  print("window timers 1")
end

local bad = 0

-- A stand-in with the same call shape as c:step(0), for the loop's own cost.
local stand_in = setmetatable({}, { __index = { step = function() return T end } })

local function loop(obj, m)
  for _ = 1, m do
    if obj:step(0) ~= T then bad = bad + 1 end
  end
end

local function idle(name, obj, m)
  local label = name .. " " .. m -- made before the count: the loop itself allocates nothing
  collectgarbage()
  loop(obj, 1) -- after a collection Lua shrinks its stack; this grows it back
  local before = collectgarbage("count")
  cg.toggle()
  loop(obj, m)
  cg.toggle()
  cg.dump(label)
  local grew = collectgarbage("count") - before
  if grew ~= 0 then fail("%s %d: the loop allocated %.3f KiB", name, m, grew) end
  print(("window %s %d %d"):format(name, m, m))
end

idle("idle", c, M1)
idle("idle", c, M2)
idle("loop", stand_in, M1)
idle("loop", stand_in, M2)

if bad ~= 0 then fail("%d idle step(0) calls returned a count other than %d", bad, T) end
if finished ~= 0 then fail("%d task(s) finished during the idle steps", finished) end
if transport:running() ~= T then fail("%d transfers running after the idle steps", transport:running()) end
do
  local open, count = held()
  if open ~= T or count ~= T then
    fail("after the idle steps the server has %s connections holding %s requests, want %d",
      tostring(open), tostring(count), T)
  end
end

-- One step(0) that finds k answers waiting: the server answers the k requests it has held
-- longest ("old"), or the k it received last ("new").
local function ending(k, which)
  local path = "/__hold/release?n=" .. k .. (which == "new" and "&newest=1" or "")
  local released = tonumber(control(path):match("^released (%d+)"))
  if released ~= k then fail("server released %s of %d", tostring(released), k) end
  socket.sleep(0.05) -- loopback: the answers are in the client's buffers well before this
  local label = "end " .. k .. " " .. which
  collectgarbage()
  local before = finished
  cg.toggle()
  c:step(0)
  cg.toggle()
  cg.dump(label)
  if finished - before ~= k then
    fail("one step(0) finished %d task(s) after %d answers", finished - before, k)
  end
  print(("window end %d %s 1"):format(k, which))
end

ending(1, "old")
ending(1, "new")
ending(8, "old")
for i = 1, #results do
  local r = results[i]
  if faceswap.type(r) ~= "job" or r.jobid ~= JOBID then
    fail("result %d is not the server's job: %s", i, tostring(r))
  end
end

c:close()
print("ok")
