-- spec/bench/frames.lua - the frame budget benchmark (spec/bench/frames.sh runs it twice:
-- natively for CPU time, under callgrind for instructions).
--
--   lua5.4 spec/bench/frames.lua [N] [PER_FRAME] [IDLE]
--
-- Starts the simulator (jobs take 2 s) and runs a 60 Hz frame loop whose only work is
-- client:step(0), until N headshots (default 50) are done: tasks of one client over plain
-- http, each waited for (polling every 0.5 s) and its first image downloaded. PER_FRAME
-- (default 0) is how many the loop spawns per frame before its step; 0 spawns all N before
-- the first frame, so they submit, poll and download in lockstep. Each
-- step(0) is timed in CPU time (os.clock) and wall time; under callgrind (cgmark) each one is
-- also its own part file ("frame K"). Then IDLE (default 20000) step(0) calls on the idle
-- client (no task, its connections kept alive): the cost of stepping when nothing happens,
-- part "idle IDLE" under callgrind.
-- Prints "key value" lines; exits non-zero unless every headshot completed with its image.

local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. root .. "/build/bench/?.so;" .. package.cpath

local faceswap = require "faceswap"
local sim = require "spec.support.sim"
local has_cg, cg = pcall(require, "cgmark")
local measured = has_cg and cg.on_valgrind()

local N, PER_FRAME, IDLE = tonumber(arg[1] or 50), tonumber(arg[2] or 0), tonumber(arg[3] or 20000)
local HZ = 60
local PNG = "\137PNG\r\n\26\n"

local server = sim.start { job_seconds = 2, token = "bench-token" }
local client = faceswap.new { token = "bench-token", base_url = server.base_url }

local ok_count, problems, spawned = 0, {}, 0
local function spawn()
  spawned = spawned + 1
  local i = spawned
  client:spawn(function()
    local job, err = client:headshot("frame budget " .. i,
      { wait = { interval = 0.5, max_interval = 0.5, timeout = 600 } })
    local image
    if job and job.status == "completed" then image, err = client:download(job:urls()[1]) end
    if image and image:sub(1, #PNG) == PNG then
      ok_count = ok_count + 1
    else
      problems[#problems + 1] = ("headshot %d: %s"):format(i, tostring(err or (job and job.status)))
    end
  end)
end
if PER_FRAME == 0 then
  for _ = 1, N do spawn() end
end

-- the frame loop
local frames, cpu, wall = 0, {}, {}
local left = N
local next_frame = faceswap.now()
while left > 0 or spawned < N do
  frames = frames + 1
  for _ = 1, math.min(PER_FRAME, N - spawned) do spawn() end
  if measured then cg.toggle() end
  local c0, w0 = os.clock(), faceswap.now()
  left = client:step(0)
  local c1, w1 = os.clock(), faceswap.now()
  if measured then
    cg.toggle()
    cg.dump("frame " .. frames)
  end
  cpu[frames], wall[frames] = c1 - c0, w1 - w0
  next_frame = next_frame + 1 / HZ
  local rest = next_frame - faceswap.now()
  if rest > 0 then faceswap.sleep(rest) end
end

-- the idle client
collectgarbage()
if measured then cg.toggle() end
local i0 = os.clock()
for _ = 1, IDLE do client:step(0) end
local idle = os.clock() - i0
if measured then
  cg.toggle()
  cg.dump("idle " .. IDLE)
end
client:close()
server:stop()

-- the worst three frames by CPU time
local order = {}
for k = 1, frames do order[k] = k end
table.sort(order, function(a, b) return cpu[a] > cpu[b] end)
local total = 0
for k = 1, frames do total = total + cpu[k] end

print(("headshots %d completed %d"):format(N, ok_count))
print(("frames %d"):format(frames))
for rank = 1, math.min(3, frames) do
  local k = order[rank]
  print(("worst%d frame %d cpu_ms %.3f wall_ms %.3f"):format(rank, k, cpu[k] * 1e3, wall[k] * 1e3))
end
print(("mean_cpu_ms %.4f"):format(total / frames * 1e3))
print(("idle_step_us %.3f"):format(idle / IDLE * 1e6))
for _, p in ipairs(problems) do io.stderr:write(p, "\n") end
os.exit(ok_count == N and 0 or 1)
