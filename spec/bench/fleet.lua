-- spec/bench/fleet.lua - accounts shared by processes (issue 19 item 7): P processes (each a
-- `faceswap batch FILE --channels all --state STATE`, its share of the prompts) against the
-- simulator with M accounts whose queues each take K jobs (the queue-full 429 beyond), for
-- each P of a list, in three runs:
--
--   redis     the processes share the accounts through a Redis coordinator (a redis-server
--             this bench starts on a free port, without persistence, and stops);
--   killed    the same, and at half the ideal time the first process is killed (SIGKILL) and
--             its command run again at once (same prompt file, same --state: it resumes);
--   alone     no coordinator: each process learns the accounts' queues by itself.
--
--   lua5.4 spec/bench/fleet.lua [N] [PS] [J] [RUNS]   (defaults 400 "1,2,4,8" 0.5
--                                                       "redis,killed,alone")
--
-- Environment: FLEET_LEASE (the clients' `lease`, 3 s: a killed process's slots come back
-- after it), FLEET_INTERVAL (the batch's --interval, 0.062 s: the wait grows its interval by
-- half each poll, so the fourth poll comes 0.504 s after the POST's answer, as a 0.5 s job
-- has just ended; scale it with J).
--
-- For each P and run:
--   makespan  from before the first process starts to the end of the last one's batch (the
--             processes write the monotonic clock, shared by a machine's processes)
--   ideal     N / (M*K) * J: every slot of every account busy all the time, nothing between
--             jobs
--   429s      the simulator's queue-full answers (stats().rejected), per job
--   billed twice  prompts with more than one job made at the simulator (its job records);
--             not run: prompts with none (a prompt of unknown fate, its POST on its way when
--             the process was killed and no job made, is not resubmitted: by design)
--   Redis     commands Redis ran (INFO commandstats, the bench's own left out) per job, and
--             what they were
--   CPU       the processes' user + system time per job (not for the killed run)
-- It asserts nothing; it prints a Markdown table and the command line.
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local root = (script:match("^(.*)[/\\][^/\\]*$") or ".") .. "/../.."
do
  local p = io.popen("cd '" .. root .. "' && pwd")
  root = p:read("*l")
  p:close()
end
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" ..
  package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local faceswap = require "faceswap"
local core = require "faceswap.core"
local sim = require "spec.support.sim"
local redis = require "spec.support.redis"

local N = tonumber(arg[1] or 400)
local PS = {}
for p in (arg[2] or "1,2,4,8"):gmatch("%d+") do PS[#PS + 1] = tonumber(p) end
local J = tonumber(arg[3] or 0.5)
local RUNS = {}
for r in (arg[4] or "redis,killed,alone"):gmatch("[%w]+") do RUNS[#RUNS + 1] = r end
local M, K = 4, 3
local LEASE = tonumber(os.getenv("FLEET_LEASE") or 3)
local INTERVAL = tonumber(os.getenv("FLEET_INTERVAL") or 0.062 * J / 0.5)
local IDEAL = N / (M * K) * J
local TOKEN = "test-token"

local shell = require "spec.support.shell"
local quote, sh = shell.quote, shell.capture
local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

local channels = {}
for i = 1, M do channels[i] = ("11000000000000000%02d"):format(i) end
local s = sim.start { job_seconds = J, max_running = K, channels = channels, token = TOKEN,
  credits_total = 1000000 }
local r = redis.start()
local dir = sh("mktemp -d /tmp/faceswap-fleet.XXXXXX"):gsub("%s+$", "")

-- The prompts, and each process's share of them (a contiguous block) in a file of its own.
local prompts = {}
for i = 1, N do prompts[i] = ("fleet portrait %d"):format(i) end
local function share_file(P, k)
  local path = ("%s/prompts-%d-%d.txt"):format(dir, P, k)
  local f = assert(io.open(path, "w"))
  for i = math.floor((k - 1) * N / P) + 1, math.floor(k * N / P) do f:write(prompts[i], "\n") end
  f:close()
  return path
end

-- Starts one process; returns its pid and the file its stderr goes to.
local function spawn(P, k, coordinator, tag)
  local base = ("%s/%s-%d-%d"):format(dir, tag, P, k)
  local cmd = ("cd %s && USEAPI_TOKEN=%s USEAPI_BASE_URL=%s FACESWAP_COORDINATOR= " ..
    "lua5.4 spec/bench/fleet_child.lua %s %s %s batch %s --channels all --state %s " ..
    "--interval %s >%s 2>%s & echo $!"):format(quote(root), TOKEN, quote(s.base_url),
    quote(root), LEASE, quote(coordinator or "-"), quote(share_file(P, k)),
    quote(("%s/state-%d-%d"):format(dir, P, k)), INTERVAL, quote(base .. ".out"),
    quote(base .. ".err"))
  return { pid = tonumber(sh(cmd):match("%d+")), err = base .. ".err" }
end

local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

-- Its "end T STATUS CPU" line, once written; or false once it is gone without one.
local function ended(child)
  local t, status, cpu = read(child.err):match("\nend (%S+) (%d+) (%S+)")
  if t then return { t = tonumber(t), status = tonumber(status), cpu = tonumber(cpu) } end
  if not alive(child.pid) then
    t, status, cpu = read(child.err):match("\nend (%S+) (%d+) (%S+)")
    if t then return { t = tonumber(t), status = tonumber(status), cpu = tonumber(cpu) } end
    return false
  end
end

-- Redis's command counts since the last CONFIG RESETSTAT, the bench's own left out: every
-- command Redis ran (those the scripts call included), and the round trips, the commands the
-- clients sent: EVAL, SELECT, SUBSCRIBE and their TIMEs (each script calls TIME once).
local OWN = { info = true, config = true, flushall = true, ping = true }
local function commandstats()
  local counts, total, calls = {}, 0, {}
  for name, n in r:cli("INFO", "commandstats"):gmatch("cmdstat_([%w|_]+):calls=(%d+)") do
    if not OWN[name] then
      counts[#counts + 1] = { name = name, calls = tonumber(n) }
      calls[name] = tonumber(n)
      total = total + tonumber(n)
    end
  end
  table.sort(counts, function(a, b) return a.calls > b.calls end)
  local evals = (calls.eval or 0) + (calls.evalsha or 0)
  local trips = evals + (calls.select or 0) + (calls.subscribe or 0) +
    math.max(0, (calls.time or 0) - evals)
  return total, counts, trips, calls
end

local function run(P, kind)
  s:reset()
  local coordinator = kind ~= "alone" and r.url or nil
  if coordinator then
    r:cli("FLUSHALL")
    r:cli("CONFIG", "RESETSTAT")
  end
  os.execute("rm -f " .. quote(dir) .. "/state-* " .. quote(dir) .. "/*.err " .. quote(dir) ..
    "/*.out")
  local started = faceswap.now()
  local children = {}
  for k = 1, P do children[k] = spawn(P, k, coordinator, "run") end
  local killed, rerun = kind == "killed", nil
  local ends, unknown, bad = {}, 0, {}
  while true do
    if killed and not rerun and faceswap.now() - started >= IDEAL / 2 then
      os.execute("kill -9 " .. children[1].pid)
      while alive(children[1].pid) do core.sleep(0.01) end
      rerun = spawn(P, 1, coordinator, "rerun")
      children[1] = rerun
    end
    local open = 0
    for k = 1, P do
      if ends[k] == nil then
        local e = ended(children[k])
        if e == nil then open = open + 1 else ends[k] = e end
      end
    end
    if open == 0 and (rerun or not killed) then break end
    if faceswap.now() - started > 10 * IDEAL + 60 then -- stuck: say so, go on
      for k = 1, P do
        if ends[k] == nil then
          os.execute("kill -9 " .. children[k].pid .. " 2>/dev/null")
          bad[#bad + 1] = ("process %d stopped after %.0f s"):format(k, faceswap.now() - started)
        end
      end
      break
    end
    core.sleep(0.02)
  end
  local last, cpu = 0, 0
  for k = 1, P do
    if not ends[k] then
      bad[#bad + 1] = ("process %d died: %s"):format(k, read(children[k].err):sub(-400))
    else
      last = math.max(last, ends[k].t)
      cpu = cpu + ends[k].cpu
      if ends[k].status ~= 0 then
        bad[#bad + 1] = ("process %d exit %d"):format(k, ends[k].status)
      end
    end
  end
  if rerun then
    local _, n = read(rerun.err):gsub(": fate unknown: ", "")
    unknown = n
  end
  local count = {}
  for _, job in ipairs(s:jobs()) do
    if job.prompt then count[job.prompt] = (count[job.prompt] or 0) + 1 end
  end
  local twice, none = 0, 0
  for i = 1, N do
    local c = count[prompts[i]] or 0
    if c > 1 then twice = twice + 1 elseif c == 0 then none = none + 1 end
  end
  local commands, counts, trips, calls = 0, {}, 0, {}
  if coordinator then commands, counts, trips, calls = commandstats() end
  return { makespan = last - started, rejected = s:stats().rejected, twice = twice, none = none,
    unknown = unknown, commands = commands, counts = counts, trips = trips, calls = calls, cpu = cpu, bad = bad }
end

print(("accounts shared by processes: N = %d headshots, M = %d accounts, K = %d a queue, " ..
  "J = %g s, --interval %g, lease %g s; ideal N / (M*K) * J = %.2f s"):format(N, M, K, J,
  INTERVAL, LEASE, IDEAL))
local results = {}
for _, P in ipairs(PS) do
  results[P] = {}
  for _, kind in ipairs(RUNS) do
    local res = run(P, kind)
    results[P][kind] = res
    local mix = {}
    for i = 1, math.min(4, #res.counts) do
      mix[i] = ("%s %.2f"):format(res.counts[i].name, res.counts[i].calls / N)
    end
    io.stderr:write(("P = %d %s: makespan %.2f s, %d 429s, billed twice %d, not run %d, " ..
      "unknown %d, Redis %.2f round trips and %.2f commands a job (%s), CPU %.0f us a job%s\n")
      :format(P, kind, res.makespan, res.rejected, res.twice, res.none, res.unknown,
      res.trips / N, res.commands / N, table.concat(mix, ", "),
      res.cpu / N * 1e6, #res.bad > 0 and ("; " .. table.concat(res.bad, "; ")) or ""))
  end
end
r:close()
s:stop()
os.execute("rm -rf " .. quote(dir))

local function cell(res, f) return res and f(res) or "" end
print("| P | Redis: makespan | / ideal | 429s per job | Redis round trips (commands) per job | " ..
  "CPU per job | " ..
  "one killed: makespan | billed twice | not run (fate unknown) | no coordinator: makespan | " ..
  "/ ideal | 429s per job |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for _, P in ipairs(PS) do
  local c, k, a = results[P].redis, results[P].killed, results[P].alone
  print(("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(P,
    cell(c, function(x) return ("%.2f s"):format(x.makespan) end),
    cell(c, function(x) return ("%.2f"):format(x.makespan / IDEAL) end),
    cell(c, function(x) return ("%.2f"):format(x.rejected / N) end),
    cell(c, function(x) return ("%.1f (%.1f)"):format(x.trips / N, x.commands / N) end),
    cell(c, function(x) return ("%.0f us"):format(x.cpu / N * 1e6) end),
    cell(k, function(x) return ("%.2f s"):format(x.makespan) end),
    cell(k, function(x) return tostring(x.twice) end),
    cell(k, function(x) return ("%d (%d)"):format(x.none, x.unknown) end),
    cell(a, function(x) return ("%.2f s"):format(x.makespan) end),
    cell(a, function(x) return ("%.2f"):format(x.makespan / IDEAL) end),
    cell(a, function(x) return ("%.2f"):format(x.rejected / N) end)))
end
print(("command: lua5.4 spec/bench/fleet.lua %d %s %g %s (FLEET_LEASE=%g FLEET_INTERVAL=%g)")
  :format(N, table.concat(PS, ","), J, table.concat(RUNS, ","), LEASE, INTERVAL))
