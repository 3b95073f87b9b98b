-- spec/bench/channels.lua - the several-accounts benchmark: one client:batch of N headshots
-- spread over M channels (opts.channels), against the simulator with M accounts whose queues
-- each take K unfinished jobs (429 "queue full" beyond), for each M of a list.
--
--   lua5.4 spec/bench/channels.lua [N] [K] [SCALE] [MS]     (defaults 200 3 0.5 "1,2,4")
--
-- Jobs take J = 1 s, answers come after L = 0.1 s, the batch polls every P = 0.1 s, all times
-- SCALE. For each M:
--   ideal  = ceil(N / (M*K)) * (J + G), G = P + L: rounds of M*K jobs, each a job's run plus
--            the polling granularity (two looks at a status are a poll and a latency apart)
--   ratio  = wall / ideal (target: at most 1.15)
--   429s   = the simulator's rejected requests, and per job (target: at most 1 on average)
-- The batch uses the client's default retry policy and its default concurrency (4 per
-- channel); every item must end completed. Prints a Markdown table and the command line.
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local root = (script:match("^(.*)[/\\][^/\\]*$") or ".") .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" ..
  package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local N, K, SCALE = tonumber(arg[1] or 200), tonumber(arg[2] or 3), tonumber(arg[3] or 0.5)
local MS = {}
for m in (arg[4] or "1,2,4"):gmatch("%d+") do MS[#MS + 1] = tonumber(m) end
local J, L, P = 1 * SCALE, 0.1 * SCALE, 0.1 * SCALE

print(("several accounts: N = %d headshots, K = %d per channel, J = %g s, L = %g s, P = %g s")
  :format(N, K, J, L, P))
print("| M channels | wall (s) | ideal (s) | ratio | 429s | 429s per job | retry sleeps (s) |")
print("|---:|---:|---:|---:|---:|---:|---:|")
local worst = 0
for _, M in ipairs(MS) do
  local channels = {}
  for i = 1, M do channels[i] = ("11000000000000000%02d"):format(i) end
  local server = sim.start { job_seconds = J, latency = L, max_running = K, channels = channels }
  local slept = 0
  local client = faceswap.new { token = "test-token", base_url = server.base_url,
    retry = { on_retry = function(_, _, delay) slept = slept + delay end } }
  local list = {}
  for i = 1, N do list[i] = "bench portrait " .. i end
  local started = faceswap.now()
  local results = client:batch(list, { channels = channels, wait = { interval = P, max_interval = P,
    timeout = 3600 } })
  local wall = faceswap.now() - started
  local failed = 0
  for i = 1, N do
    if faceswap.type(results[i]) ~= "job" or results[i].status ~= "completed" then
      failed = failed + 1
      io.stderr:write(("item %d: %s\n"):format(i, tostring(results[i].status or results[i])))
    end
  end
  local rejected = server:stats().rejected
  client:close()
  server:stop()
  local ideal = math.ceil(N / (M * K)) * (J + P + L)
  worst = math.max(worst, wall / ideal)
  print(("| %d | %.2f | %.2f | %.3f | %d | %.3f | %.2f |"):format(M, wall, ideal, wall / ideal,
    rejected, rejected / N, slept))
  io.stdout:flush()
  if failed > 0 then
    io.stderr:write(("channels.lua: %d items of M = %d did not complete\n"):format(failed, M))
    os.exit(1)
  end
end
print(("worst ratio %.3f; command: lua5.4 spec/bench/channels.lua %d %d %g %s"):format(worst,
  N, K, SCALE, table.concat(MS, ",")))
