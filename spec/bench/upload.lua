-- spec/bench/upload.lua - lua-faceswap side of the upload benchmark (spec/bench/upload.sh).
--
--   lua5.4 spec/bench/upload.lua URL N FILE          N saveid uploads of FILE by its path
--   lua5.4 spec/bench/upload.lua --batch URL K FILE  one batch of K changebg items of FILE
--
-- Uploads: one client against URL (the loopback bench server), each call checking, opening
-- and sending FILE as a user's call would; each answer is read into a job and its jobid
-- checked. After two warm-up uploads the other N-2 are timed with os.clock (user + system CPU
-- of the process): prints cpu_us_per_upload, the context switches per upload over the same
-- uploads (voluntary + involuntary, from /proc/self/status) as csw_per_upload, then the
-- process's peak resident memory (VmHWM) in KiB as peak_kib.
--
-- Batch: prints the peak resident memory of the idle client (made, one request answered) as
-- idle_kib, then runs client:batch over K items {command = "changebg", image = FILE} at
-- concurrency K (wait = false: the bench server's jobs never end) and prints peak_kib.
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local root = (script:match("^(.*)[/\\][^/\\]*$") or ".") .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local batch = arg[1] == "--batch"
local url, n, file = arg[batch and 2 or 1], tonumber(arg[batch and 3 or 2]), arg[batch and 4 or 3]
if not (url and n and file) then
  io.stderr:write("usage: lua5.4 spec/bench/upload.lua [--batch] URL N FILE\n")
  os.exit(2)
end

local function peak_kib()
  local status = assert(io.open("/proc/self/status"))
  local kib = status:read("*a"):match("VmHWM:%s*(%d+)")
  status:close()
  return kib
end

local JOBID = "8a1f574fdbf79e8cd57e070476d9d5f3"
local faceswap = require "faceswap"
local c = faceswap.new { token = "test-token", base_url = url, retry = false }

if batch then
  assert(c:headshot("the idle client's one request"))
  print("idle_kib=" .. peak_kib())
  local list = {}
  for i = 1, n do
    list[i] = { command = "changebg", image = file, a_background_photo_of = "a beach " .. i }
  end
  local results = c:batch(list, { concurrency = n, wait = false })
  for i = 1, n do
    if faceswap.type(results[i]) ~= "job" then
      error(("item %d: %s"):format(i, tostring(results[i])))
    end
  end
  print("peak_kib=" .. peak_kib())
  c:close()
  return
end

-- context switches of the process so far (getrusage's ru_nvcsw + ru_nivcsw, as /proc shows them)
local function switches()
  local status = assert(io.open("/proc/self/status"))
  local text = status:read("*a")
  status:close()
  return tonumber(text:match("\nvoluntary_ctxt_switches:%s*(%d+)"))
    + tonumber(text:match("nonvoluntary_ctxt_switches:%s*(%d+)"))
end

local started, csw
for i = 1, n do
  if i == 3 then started, csw = os.clock(), switches() end
  local job = assert(c:saveid { idname = "me", image = file })
  if job.jobid ~= JOBID then
    error(("request %d: unexpected jobid %s"):format(i, tostring(job.jobid)))
  end
end
if n >= 3 then
  local cpu = os.clock() - started
  print(("cpu_us_per_upload=%.1f"):format(cpu * 1e6 / (n - 2)))
  print(("csw_per_upload=%.1f"):format((switches() - csw) / (n - 2)))
end
c:close()
print("peak_kib=" .. peak_kib())
