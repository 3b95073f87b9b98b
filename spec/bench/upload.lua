-- spec/bench/upload.lua - lua-faceswap side of the upload benchmark (spec/bench/upload.sh).
--
--   lua5.4 spec/bench/upload.lua URL N FILE
--
-- One client against URL (the loopback bench server); N saveid calls uploading FILE by its
-- path (read, checked and put in the multipart body on every call, as a user's call would).
-- Each answer is read into a job object and its jobid checked. Then prints the process's peak
-- resident memory (VmHWM of /proc/self/status) in KiB, for the peak-memory-per-upload figure.
local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local root = (script:match("^(.*)[/\\][^/\\]*$") or ".") .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local url, n, file = arg[1], tonumber(arg[2]), arg[3]
if not (url and n and file) then
  io.stderr:write("usage: lua5.4 spec/bench/upload.lua URL N FILE\n")
  os.exit(2)
end

local faceswap = require "faceswap"
local c = faceswap.new { token = "test-token", base_url = url }
for i = 1, n do
  local job = assert(c:saveid { idname = "me", image = file })
  if job.jobid ~= "8a1f574fdbf79e8cd57e070476d9d5f3" then
    error(("request %d: unexpected jobid %s"):format(i, tostring(job.jobid)))
  end
end
c:close()
local status = assert(io.open("/proc/self/status"))
print("peak_kib=" .. status:read("*a"):match("VmHWM:%s*(%d+)"))
status:close()
