-- spec/bench/batch_jobs.lua - lua-faceswap's side of the batch CPU benchmark
-- (spec/bench/batch_cpu.sh): one client:batch of JOBS headshots against spec/bench/server.c
-- started with POLLS (each job "completed" at its POLLS-th GET).
--
--   lua5.4 spec/bench/batch_jobs.lua BASE_URL JOBS CONCURRENCY INTERVAL
--
-- Every item must end as a completed job; prints "completed=N failed=M".
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath

local url, jobs, conc, interval = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
assert(url and jobs and conc and interval, "usage: batch_jobs.lua BASE_URL JOBS CONCURRENCY INTERVAL")
local faceswap = require "faceswap"
local client = faceswap.new { token = "test-token", base_url = url }
local list = {}
for i = 1, jobs do list[i] = "portrait of a cat" end
local results = client:batch(list, { concurrency = conc,
  wait = { interval = interval, max_interval = interval } })
local completed = 0
for i = 1, jobs do
  local r = results[i]
  if faceswap.type(r) == "job" and r.status == "completed" then completed = completed + 1 end
end
client:close()
print(("completed=%d failed=%d"):format(completed, jobs - completed))
os.exit(completed == jobs and 0 or 1)
