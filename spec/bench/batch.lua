-- spec/bench/batch.lua - one client:batch() run against the simulator, timed, for the
-- concurrency and queue-full benchmarks (see spec/bench/concurrency.sh).
--
--   lua5.4 spec/bench/batch.lua JOBS CONCURRENCY JOB_SECONDS LATENCY INTERVAL [MAX_RUNNING]
--
-- Starts spec/support/simulator.lua with job_seconds, latency (seconds before every answer)
-- and max_running (0 or absent: no limit; K: a channel's K+1st unfinished job gets the 429
-- "queue full"), then runs, on a fresh client with its default retry policy,
--
--   client:batch(JOBS prompts, { concurrency = CONCURRENCY,
--                                wait = { interval = INTERVAL, max_interval = INTERVAL } })
--
-- and checks that every item ended as a completed job. The wall time is the batch call alone
-- (monotonic clock), not the simulator's start. Prints one line of key=value pairs:
--
--   wall       seconds the batch took
--   slots      jobs that can run at once: min(CONCURRENCY, MAX_RUNNING or CONCURRENCY)
--   ideal      ceil(JOBS / slots) * (JOB_SECONDS + INTERVAL + LATENCY): rounds of jobs, each
--              round one job's run plus the polling granularity, one poll interval and one
--              request latency (the time between two looks at a job's status)
--   ratio      wall / ideal
--   requests, connections, rejected   the simulator's /__sim/stats after the batch
--   posts, polls                      POST /headshot and GET /jobs/ among those requests
--   job_mean, job_max                 seconds from a headshot's acceptance to the client seeing
--                                     it completed, over all jobs
--   retries, retry_sleep, retry_sleep_max   calls the retry policy repeated (on_retry), the
--                                     seconds it chose to wait in all and at most
--   failed     items that did not end as a completed job
--
-- With BATCH_LOG set, every retry is also written to stderr. Exits 1 if any item failed,
-- after printing the line.

local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" ..
  package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local jobs, concurrency = tonumber(arg[1]), tonumber(arg[2])
local job_seconds, latency, interval = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
local max_running = tonumber(arg[6] or "0")
if not (jobs and concurrency and job_seconds and latency and interval and max_running) then
  io.stderr:write("usage: lua5.4 spec/bench/batch.lua JOBS CONCURRENCY JOB_SECONDS LATENCY ",
    "INTERVAL [MAX_RUNNING]\n")
  os.exit(2)
end

local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local server = sim.start { job_seconds = job_seconds, latency = latency, max_running = max_running }
-- the default retry policy; on_retry only watches it
local retries, retry_sleep, retry_sleep_max, retry_log = 0, 0, 0, {}
local client = faceswap.new {
  token = "test-token", base_url = server.base_url .. "/v1/faceswap",
  retry = { on_retry = function(err, attempt, delay)
    retries = retries + 1
    retry_sleep = retry_sleep + delay
    if delay > retry_sleep_max then retry_sleep_max = delay end
    if os.getenv("BATCH_LOG") then
      retry_log[#retry_log + 1] = ("%.3f %s attempt %d, then %.3f s"):format(
        faceswap.now(), err.kind, attempt, delay)
    end
  end },
}

local list = {}
for i = 1, jobs do list[i] = "bench portrait " .. i end

-- when each job was accepted and when the client saw it completed
local now = faceswap.now
local accepted, seen_done = {}, {}
local function on_update(i, v)
  if faceswap.type(v) ~= "job" then return end
  accepted[i] = accepted[i] or now()
  if v:done() then seen_done[i] = seen_done[i] or now() end
end

local t0 = now()
local results = client:batch(list, {
  concurrency = concurrency, on_update = on_update,
  wait = { interval = interval, max_interval = interval },
})
local wall = now() - t0

local failed, problems = 0, {}
local job_sum, job_max = 0, 0
for i = 1, jobs do
  local r = results[i]
  if faceswap.type(r) == "job" and r.status == "completed" and accepted[i] and seen_done[i] then
    local d = seen_done[i] - accepted[i]
    job_sum = job_sum + d
    if d > job_max then job_max = d end
  else
    failed = failed + 1
    if #problems < 3 then problems[#problems + 1] = i .. ": " .. tostring(r) end
  end
end

local stats = server:stats()
local posts, polls = 0, 0
for _, req in ipairs(server:requests()) do
  if req.method == "POST" then posts = posts + 1 else polls = polls + 1 end
end
client:close()
server:stop()

local slots = concurrency
if max_running > 0 and max_running < slots then slots = max_running end
local ideal = math.ceil(jobs / slots) * (job_seconds + interval + latency)
local done = jobs - failed
for _, line in ipairs(retry_log) do io.stderr:write(line, "\n") end
print(("wall=%.3f slots=%d ideal=%.3f ratio=%.3f requests=%d connections=%d rejected=%d " ..
  "posts=%d polls=%d job_mean=%.3f job_max=%.3f retries=%d retry_sleep=%.3f " ..
  "retry_sleep_max=%.3f failed=%d"):format(wall, slots, ideal, wall / ideal, stats.requests,
  stats.connections, stats.rejected, posts, polls, done > 0 and job_sum / done or 0, job_max,
  retries, retry_sleep, retry_sleep_max, failed))
if failed > 0 then
  io.stderr:write("batch.lua: ", failed, " item(s) not completed, e.g. ",
    table.concat(problems, "; "), "\n")
  os.exit(1)
end
