-- demo.lua: what `make demo` runs: a user's first day, with the command line (bin/faceswap)
-- against the bundled simulator on loopback, no token or credits needed. It configures two
-- accounts, saves a face on each from a small generated image (spec/support/demo-face.png, a
-- drawn smiley: no real person), runs a batch of headshots over both accounts with the live
-- status line (on a terminal; elsewhere a line per finished job), downloads the results, shows
-- the credits used, then lists and deletes the saved faces. Each step prints the command a user
-- would type; read it as the README's quick start.
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
  "portrait by a window, morning light",
  "headshot, dark studio, rim light",
}
local CH1, CH2 = "1100000000000000001", "1100000000000000002"

if root:sub(1, 1) ~= "/" then root = capture("pwd"):gsub("\n$", "") .. "/" .. root end

-- a simulator with no account configured yet: the first step adds them
local server = sim.start { job_seconds = 1, latency = 0.05, token = "demo-token", channels = {},
                           max_running = 3 }
server:config { blocking_seconds = 0.5 }
local work = capture("mktemp -d"):gsub("\n$", "")
assert(os.execute("cp " .. quote(root .. "/spec/support/demo-face.png") .. " " ..
  quote(work .. "/face.png")))
print(("simulator listening on %s (%s)"):format(server.base_url, faceswap._VERSION))
print(("$ cd %s && export USEAPI_TOKEN=demo-token USEAPI_BASE_URL=%s"):format(work,
  server.base_url))

-- Runs `faceswap ARGS` in the work directory as a user would, showing the command first;
-- `env` adds variables, `stdin` is piped in. Returns the exit status (from a file: a 5.1
-- pipe's close() does not tell it).
local lua = compat.lua == "lua5.4" and "" or compat.lua .. " "
local function faceswap_cmd(args, opts)
  opts = opts or {}
  print("\n$ " .. (opts.show_env or "") .. "faceswap " .. args ..
    (opts.stdin and ("   # " .. opts.stdin_note) or ""))
  io.stdout:flush()
  local status_file = work .. "/.exit"
  local cmd = ("cd %s && env USEAPI_TOKEN=demo-token USEAPI_BASE_URL=%s %s %s%s %s; echo $? >%s")
    :format(quote(work), quote(server.base_url), opts.env or "", lua,
      quote(root .. "/bin/faceswap"), args, quote(status_file))
  local pipe = assert(io.popen(cmd, "w"))
  if opts.stdin then pipe:write(opts.stdin) end
  pipe:close()
  local code = tonumber(capture("cat " .. quote(status_file)))
  os.remove(status_file)
  if code ~= 0 then
    server:stop()
    io.stderr:write(("demo: the step above exited %d\n"):format(code))
    os.exit(code)
  end
end

-- 1. the accounts: a Discord token each, from the environment (never on the command line)
for i, channel in ipairs { CH1, CH2 } do
  faceswap_cmd(("account add %s --server 220000000000000000%d"):format(channel, i),
    { env = "DISCORD_TOKEN=demo-discord-token-" .. i,
      show_env = "DISCORD_TOKEN=... " })
end
faceswap_cmd("account")
-- 2. the face, saved on each account (identities belong to an account)
for _, channel in ipairs { CH1, CH2 } do
  faceswap_cmd("saveid me face.png --channel " .. channel)
end
-- 3. the headshots, spread over both accounts, downloaded as they complete
faceswap_cmd("batch - --channels all --interval 0.25 --download results",
  { stdin = table.concat(prompts, "\n") .. "\n", stdin_note = #prompts .. " prompts on stdin" })
faceswap_cmd("account")
-- 4. the saved faces: list, then delete
faceswap_cmd("listid --channel " .. CH1)
for _, channel in ipairs { CH1, CH2 } do
  faceswap_cmd("delid me --channel " .. channel)
end
server:stop()

local dir = work .. "/results"
print(("\nfiles in %s:"):format(dir))
for name in capture("ls " .. quote(dir)):gmatch("[^\n]+") do
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  print(("  %-42s %6d bytes"):format(name, f:seek("end")))
  f:close()
end
