-- spec/bench/https_steps.lua - what a game loop's step(0) costs while TLS connections open
-- (see spec/bench/https.sh).
--
--   lua5.4 spec/bench/https_steps.lua BASE_URL T [CA_FILE]
--   valgrind --tool=callgrind --collect-atstart=no lua5.4 spec/bench/https_steps.lua ...
--
-- BASE_URL answers every request with Connection: close (nginx in front of the bench
-- server), so every request opens a new connection. A new client makes one headshot first
-- ("first": faceswap.new and that request, where the CA store is parsed once); then T tasks
-- each make one headshot at once, and the script calls client:step(0) until all have ended,
-- timing each step with os.clock (process CPU time). Prints
--   first_cpu_ms X  steps N  worst_step_cpu_ms Y  total_cpu_ms Z
-- Under callgrind it also counts instructions: "first" is dumped as its own part; for the
-- steps, every step is counted alone (zeroed before) and dumped only when it is the longest
-- so far in CPU time, so the last part "worst K" is the worst step's instructions.
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. root .. "/build/bench/https/?.so;" .. package.cpath

local url, T, ca_file = arg[1], tonumber(arg[2]), arg[3]
if not url or not T then
  io.stderr:write("usage: lua5.4 spec/bench/https_steps.lua BASE_URL T [CA_FILE]\n")
  os.exit(2)
end

local faceswap = require "faceswap"
local ok, cg = pcall(require, "cgmark")
if not ok then cg = { on_valgrind = function() return false end } end
local counting = cg.on_valgrind()
local clock = os.clock

local t0 = clock()
if counting then cg.toggle() end
local c = faceswap.new { token = "test-token", base_url = url, ca_file = ca_file, retry = false }
assert(c:headshot("portrait of a cat"))
if counting then
  cg.toggle()
  cg.dump("first")
end
local first = clock() - t0

local tasks = {}
for i = 1, T do
  tasks[i] = c:spawn(function() return assert(c:headshot("portrait of a cat")) end)
end
local steps, worst, total = 0, 0, 0
repeat
  if counting then
    cg.zero()
    cg.toggle()
  end
  local a = clock()
  local left = c:step(0)
  local took = clock() - a
  if counting then cg.toggle() end
  steps, total = steps + 1, total + took
  if took > worst then
    worst = took
    if counting then cg.dump("worst " .. steps) end
  end
until left == 0
for i = 1, T do
  local job, err = tasks[i]:result()
  if not job then error("task " .. i .. ": " .. tostring(err)) end
end
c:close()
print(string.format("first_cpu_ms %.2f  steps %d  worst_step_cpu_ms %.2f  total_cpu_ms %.2f",
  first * 1000, steps, worst * 1000, total * 1000))
