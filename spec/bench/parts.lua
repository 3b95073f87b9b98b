-- spec/bench/parts.lua - the C parts of a headshot round trip, each called alone in a loop
-- (issue 20, target 1; what spec/bench/roundtrip.sh measures whole). No network.
--
--   lua5.4 spec/bench/parts.lua PART N        (from the repository's root)
--
-- PART is one of:
--   read     core.read_response("headshot", 200, headers, answer): the answer read into a job
--   decode   cjson.decode(answer): lua-cjson alone on the same bytes (what `read` is against)
--   build    core.build_command("headshot", "portrait of a cat", nil, nil): the request built
--   none     the loop alone
-- The answer is spec/bench/server.c's 586 bytes with its headers. Measure the instructions as
-- a slope between two N (callgrind, so that start-up cancels out), e.g.
--   for n in 1000 6000; do valgrind --tool=callgrind lua5.4 spec/bench/parts.lua read $n; done
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath

local ANSWER = '{"jobid":"8a1f574fdbf79e8cd57e070476d9d5f3","verb":"faceswap-headshot",' ..
  '"status":"started","prompt":"portrait of a cat","created":"2023-09-09T02:04:49.667Z",' ..
  '"updated":"2023-09-09T02:04:49.667Z","discord":"ABC\226\128\166secured\226\128\166xyz",' ..
  '"server":"1000000000000000001","channel":"1100000000000000001",' ..
  '"messageId":"1149891234567890123","timestamp":"2023-09-09T02:04:50.123000+00:00",' ..
  '"content":"<@100000000000000001> Picsi.Ai Headshot Job Submitted ' ..
  '[jobid: 8a1f574fdbf79e8cd57e070476d9d5f3] [credits: 4] [prompt: \'portrait of a cat\'] ' ..
  '[time: 12s] [SaveID: \'me\'] (796/800 credits remaining)","code":200}'
local HEADERS = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " ..
  #ANSWER .. "\r\n\r\n"

local part, n = arg[1], tonumber(arg[2])
local core = require "faceswap.core"
local f
if part == "read" then
  local read = core.read_response
  f = function() return read("headshot", 200, HEADERS, ANSWER) end
elseif part == "decode" then
  local decode = require("cjson").decode
  f = function() return decode(ANSWER) end
elseif part == "build" then
  local build = core.build_command
  f = function() return build("headshot", "portrait of a cat", nil, nil) end
elseif part == "none" then
  f = function() return true end
end
if not f or not n then
  io.stderr:write("usage: lua5.4 spec/bench/parts.lua read|decode|build|none N\n")
  os.exit(2)
end
assert(f())
for _ = 1, n do
  f()
end
