-- spec/bench/soak.lua - does memory stay flat under load, and come back after many jobs?
--
--   make && lua5.4 spec/bench/soak.lua [N [URL]]
--
-- 1. N requests (default 100,000) over ONE client against a fast loopback server: headshots
--    and job reads in turn, each a full round trip (request built, sent, answer read into a job
--    object that is then dropped). The process's resident memory (VmRSS, /proc/self/status)
--    is sampled every N/10 requests; the verdict is that it is flat after warm-up: under 5%
--    growth from the 20% sample to the end.
-- 2. 10,000 job objects made with faceswap.decode (each from its own JSON text) and held, then
--    dropped and collected; five rounds. The verdict is that memory returns: the Lua heap
--    (which holds the jobs: userdata and JSON text) comes back to within 5% of its baseline
--    each round, and VmRSS does not creep from round to round (under 5% over round 1's peak).
--    The allocator (glibc's malloc under PUC Lua, LuaJIT's own under LuaJIT) keeps freed pages
--    for reuse rather than giving them back, so VmRSS after a collection stays near the peak.
--
-- The server is spec/bench/server.c (the round-trip benchmark's, see run.sh), built into
-- build/bench/server and started on a free port unless URL is given; it answers every request
-- with a fixed job JSON. Prints markdown tables and the verdicts; exits 1 if a verdict fails.
-- Runs under Lua 5.3, 5.4 and LuaJIT 2.1 (the module from build/<version>/ or build/luajit/).

local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath

local faceswap = require "faceswap"

local N = tonumber(arg[1] or "100000")
local URL = arg[2]
if not N or N < 10 or N % 10 ~= 0 then
  io.stderr:write("usage: lua5.4 spec/bench/soak.lua [N (a multiple of 10)] [URL]\n")
  os.exit(2)
end

local function status(name)
  local f = assert(io.open("/proc/self/status"), "soak.lua needs Linux's /proc")
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(name .. ":%s*(%d+) kB"))
end

local function heap_kb()
  return collectgarbage("count")
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local function mib(kb) return string.format("%.2f", kb / 1024) end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

---------------------------------------------------------------------------------------------
-- The server
---------------------------------------------------------------------------------------------
local server_pid, server_pipe
if not URL then
  local binary = root .. "/build/bench/server"
  local cc = os.getenv("CC") or "cc"
  assert(sh("mkdir -p " .. root .. "/build/bench && " .. cc .. " -O2 -Wall -Wextra -o " .. binary .. " " ..
    root .. "/spec/bench/server.c"), "could not build spec/bench/server.c")
  -- the shell prints its pid, then becomes the server (same pid), which prints its port
  server_pipe = assert(io.popen("echo $$; exec " .. binary .. " 0 2>/dev/null"))
  server_pid = tonumber(server_pipe:read("*l"))
  local port = tonumber(server_pipe:read("*l"))
  assert(server_pid and port, "the bench server did not start")
  URL = "http://127.0.0.1:" .. port .. "/v1/faceswap"
end

local function stop_server()
  if server_pid then
    os.execute("kill " .. server_pid .. " 2>/dev/null")
    server_pipe:close()
    server_pid = nil
  end
end

---------------------------------------------------------------------------------------------
-- 1. N requests over one client
---------------------------------------------------------------------------------------------
local EXPECTED = "8a1f574fdbf79e8cd57e070476d9d5f3"
local client = faceswap.new { token = "test-token", base_url = URL, timeout = 10 }   -- retries on, as users have it

local function request(i)
  local job, err
  if i % 2 == 1 then
    job, err = client:headshot("portrait of a cat, number " .. i)
  else
    job, err = client:job(EXPECTED)
  end
  if not job then
    stop_server()
    error("request " .. i .. ": " .. tostring(err))
  end
  if job.jobid ~= EXPECTED then error("request " .. i .. ": jobid " .. tostring(job.jobid)) end
end

local step = N / 10
full_gc()
local samples = { { n = 0, rss = status("VmRSS"), heap = heap_kb(), t = faceswap.now() } }
local t0 = samples[1].t
for i = 1, N do
  request(i)
  if i % step == 0 then
    samples[#samples + 1] = { n = i, rss = status("VmRSS"), heap = heap_kb(), t = faceswap.now() }
  end
end
local seconds = faceswap.now() - t0
client:close()
stop_server()

print(string.format("## Soak: %d requests over one client (%s, %s)", N, faceswap._VERSION,
  rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION))
print()
print(string.format("Server: %s. %.1f s, %.0f requests/s; headshots and job reads in turn.", URL, seconds,
  N / seconds))
print()
print("| requests | VmRSS (MiB) | Lua heap (MiB) | VmRSS vs the 20% sample |")
print("|--:|--:|--:|--:|")
local warm = samples[3]     -- after 20% of the requests
for _, sample in ipairs(samples) do
  print(string.format("| %d | %s | %s | %s |", sample.n, mib(sample.rss), mib(sample.heap),
    sample.n >= warm.n and string.format("%+.2f%%", (sample.rss - warm.rss) / warm.rss * 100) or ""))
end
local growth = (samples[#samples].rss - warm.rss) / warm.rss * 100
local flat = growth < 5
print()
print(string.format("Verdict: VmRSS grew %+.2f%% from %d to %d requests (limit 5%%): %s.", growth, warm.n, N,
  flat and "flat after warm-up" or "NOT FLAT"))

---------------------------------------------------------------------------------------------
-- 2. 10,000 job objects, made and collected
---------------------------------------------------------------------------------------------
local JOBS = 10000
local TEMPLATE = '{"jobid":"%032x","verb":"faceswap-headshot","status":"completed",' ..
  '"prompt":"portrait of a cat %d","created":"2023-09-09T02:04:49.667Z",' ..
  '"updated":"2023-09-09T02:05:01.102Z","discord":"ABC\\u2026secured\\u2026xyz",' ..
  '"server":"1000000000000000001","channel":"1100000000000000001","messageId":"1149891234567890123",' ..
  '"timestamp":"2023-09-09T02:04:50.123000+00:00","content":"<@100000000000000001> Picsi.Ai ' ..
  'Headshot Job Completed [jobid: %032x] [credits: 4] [prompt: \'portrait of a cat %d\'] ' ..
  '[time: 12s] [SaveID: \'me\'] (796/800 credits remaining)","code":200,' ..
  '"attachments":[{"id":"1149891234567890124","filename":"%032x_1.png","size":1234567,' ..
  '"url":"https://cdn.discordapp.com/attachments/1/2/%032x_1.png?ex=65f1&is=65de&hm=abc",' ..
  '"proxy_url":"https://media.discordapp.net/attachments/1/2/%032x_1.png","width":1024,' ..
  '"height":1024,"content_type":"image/png"}],"embeds":[]}'

local ROUNDS = 5
print()
print(string.format("## %d job objects (faceswap.decode, each of its own JSON text): made, held, dropped, " ..
  "collected; %d rounds", JOBS, ROUNDS))
print()
print("| round | baseline VmRSS | held VmRSS | collected VmRSS | baseline heap | held heap | collected heap | " ..
  "heap given back |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|")
-- Makes and holds JOBS jobs; returns VmRSS and the Lua heap while they are held.
local function make_jobs(round)
  local jobs = {}
  for i = 1, JOBS do
    local id = round * 100000 + i
    local job = faceswap.decode(string.format(TEMPLATE, id, i, id, i, id, id, id))
    if not job or job.credits_left ~= 796 or #job:urls() ~= 1 then error("job " .. i .. " did not decode") end
    jobs[i] = job
  end
  return status("VmRSS"), heap_kb(), #jobs
end

local rounds = {}
for round = 1, ROUNDS do
  full_gc()
  local r = { rss = status("VmRSS"), heap = heap_kb() }
  r.held_rss, r.held_heap = make_jobs(round)  -- the jobs are garbage once it returns
  full_gc()
  r.after_rss, r.after_heap = status("VmRSS"), heap_kb()
  r.given_back = (r.held_heap - r.after_heap) / (r.held_heap - r.heap) * 100
  rounds[round] = r
  print(string.format("| %d | %s | %s | %s | %s | %s | %s | %.1f%% |", round, mib(r.rss), mib(r.held_rss),
    mib(r.after_rss), mib(r.heap), mib(r.held_heap), mib(r.after_heap), r.given_back))
end
-- Collected: every round gives its heap back (within 5% of what it added), and VmRSS does not
-- creep from round to round (the later rounds reuse what the first one left with the
-- allocator: within 5% of round 1's high-water mark).
local first, returned = rounds[1], true
local worst_back, top_held, top_after = 100, 0, 0
for _, r in ipairs(rounds) do
  returned = returned and r.given_back >= 95
  worst_back = math.min(worst_back, r.given_back)
  top_held, top_after = math.max(top_held, r.held_rss), math.max(top_after, r.after_rss)
end
local creep = (top_held - first.held_rss) / first.held_rss * 100
returned = returned and creep < 5
print()
print(string.format("Verdict: the Lua heap, which holds the jobs (userdata and JSON text alike), came back to " ..
  "its baseline in every round (at least %.1f%% of what the round added was given back); VmRSS peaked at %s " ..
  "MiB in round 1 and at most %+.2f%% over that in later rounds (limit 5%%), ending at %s MiB after " ..
  "collection against %s MiB before round 1%s: %s.", worst_back, mib(first.held_rss), creep,
  mib(rounds[ROUNDS].after_rss), mib(first.rss),
  " (the difference is free memory the allocator keeps for reuse: the later rounds use it without growing)",
  returned and "memory returns" or "MEMORY DOES NOT RETURN"))
print()
print("Command: `" .. (arg[-1] or "lua") .. " spec/bench/soak.lua" .. (arg[1] and (" " .. arg[1]) or "") .. "`")

os.exit((flat and returned) and 0 or 1)
