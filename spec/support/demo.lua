-- demo.lua: what `make demo` runs. Starts the bundled simulator on loopback and runs the
-- command line, bin/faceswap, as a user would: a batch of prompts, three at once, downloading
-- each job's images as soon as it completes. On a terminal the batch shows one live status
-- line; elsewhere a line per finished job. Then it lists the files. No token or credits needed.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" .. package.path
local compat = require "spec.support.compat" -- `make demo LUA_VERSION=...`: this Lua's build
package.cpath = root .. "/" .. compat.build .. "/?.so;" .. package.cpath

local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local pipe = assert(io.popen(cmd))
  local out = pipe:read("*a")
  pipe:close()
  return out
end

local prompts = {
  "studio portrait, soft light --square",
  "outdoor portrait, golden hour",
  "corporate headshot, grey backdrop",
  "black and white portrait, film grain",
  "portrait in a library, warm tones",
  "headshot, blue background --no glasses",
}

if root:sub(1, 1) ~= "/" then root = capture("pwd"):gsub("\n$", "") .. "/" .. root end

local server = sim.start { job_seconds = 1, latency = 0.05, token = "demo-token" }
local work = capture("mktemp -d"):gsub("\n$", "")
print(("simulator listening on %s (%s)"):format(server.base_url, faceswap._VERSION))
print(("$ cd %s && faceswap batch - --concurrency 3 --download results   # %d prompts on stdin")
  :format(work, #prompts))
io.stdout:flush()

-- the prompts go to the command's stdin; its stdout and stderr are ours. bin/faceswap runs on
-- this Lua; its exit status comes back through a file (a 5.1 pipe's close() does not tell it).
local status_file = work .. "/.exit"
local lua = compat.lua == "lua5.4" and "" or compat.lua .. " "
local cmd = ("cd %s && env USEAPI_TOKEN=demo-token USEAPI_BASE_URL=%s %s%s batch - " ..
  "--concurrency 3 --interval 0.25 --download results; echo $? >%s"):format(quote(work),
  quote(server.base_url), lua, quote(root .. "/bin/faceswap"), quote(status_file))
local batch = assert(io.popen(cmd, "w"))
batch:write(table.concat(prompts, "\n"), "\n")
batch:close()
server:stop()
local code = tonumber(capture("cat " .. quote(status_file)))
os.remove(status_file)

local dir = work .. "/results"
print(("\nexit status %d; files in %s:"):format(code, dir))
for name in capture("ls " .. quote(dir)):gmatch("[^\n]+") do
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  print(("  %-42s %6d bytes"):format(name, f:seek("end")))
  f:close()
end
os.exit(code)
