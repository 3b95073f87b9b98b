-- spec/bench/headshot.lua - lua-faceswap side of the round-trip benchmark
-- (see spec/bench/run.sh).
--
--   lua5.4 spec/bench/headshot.lua URL N
--
-- Creates one client against URL (the loopback bench server) and performs N
-- headshot jobs, each a full round trip: submit, receive, decode into a job
-- object.  Every job's jobid is checked against the server's fixed answer.
-- Finds lua/ and build/<its Lua>/ relative to the repository root, which is located
-- from this script's own path, so it can be started from any directory.
-- FACESWAP_CA_FILE, when set, is the client's ca_file (for HTTPS, spec/bench/https.sh).

local script = debug.getinfo(1, "S").source
script = script:sub(1, 1) == "@" and script:sub(2) or (arg and arg[0]) or ""
local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
local root = dir .. "/../.."

package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
-- the build of the Lua running this script (build/5.4, build/5.1, build/luajit...)
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath

local url, n = arg[1], tonumber(arg[2])
if not url or not n or n < 0 or n % 1 ~= 0 then
  io.stderr:write("usage: lua5.4 spec/bench/headshot.lua URL N\n")
  os.exit(2)
end

local EXPECTED = "8a1f574fdbf79e8cd57e070476d9d5f3"

local faceswap = require "faceswap"
local c = faceswap.new{ token = "test-token", base_url = url, ca_file = os.getenv("FACESWAP_CA_FILE") }

for i = 1, n do
  local job = assert(c:headshot("portrait of a cat"))
  if job.jobid ~= EXPECTED then
    error(("request %d: unexpected jobid %s"):format(i, tostring(job.jobid)))
  end
end

c:close()
