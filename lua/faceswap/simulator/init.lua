-- faceswap.simulator: a stand-in for api.useapi.net's InsightFaceSwap API on loopback, for
-- developing and testing without a token or credits (docs/simulator.md). This module is the
-- handle a test uses: it starts the simulator as a child process (Lua 5.4), talks to its
-- /__sim/ control endpoints, and stops and reaps it. It runs on any Lua the library runs on.
--
--   local simulator = require "faceswap.simulator"
--   local s = simulator.start { job_seconds = 0.1 } -- any simulator setting, see start()
--   client.base_url = s.base_url                    -- http://127.0.0.1:PORT, no trailing slash
--   s:script { action = "queue_full", match = "^POST /headshot$" }
--   ... s:requests(), s:stats(), s:job(id), s:advance(id, "completed"), s:reset() ...
--   s:stop()                                        -- also on garbage collection or <close>
--
-- The server itself is faceswap.simulator.server (`bin/faceswap-sim` starts it by hand) and its
-- parts: http, commands, jobs, accounts, faults, control, sched, state, util, png (each module
-- takes its siblings from faceswap.simulator.parts in one line).
-- Control calls are blocking (the spec process is a plain Lua process) and raise an error
-- when the simulator answers anything but 200. Only luasocket and lua-cjson are needed.

local socket = require "socket"
local cjson = require "cjson"

local M = {}

-- The directory this module was loaded from (.../faceswap/simulator), absolute, so the child
-- finds the same modules whatever its cwd.
local function module_root()
  local source = debug.getinfo(1, "S").source:match("^@(.*)$") or "lua/faceswap/simulator/init.lua"
  local dir = source:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local pwd = io.popen("pwd")
    local cwd = pwd:read("*l")
    pwd:close()
    dir = cwd .. "/" .. dir
  end
  return dir .. "/../.."
end

M.root = module_root()

-- Settings start() passes on the command line; they are also what reset() restores.
local OPTIONS = { "host", "port", "token", "job_seconds", "keepalive_timeout", "latency", "channels",
                  "subscription", "credits_total", "credits_used", "callback_timeout", "max_running",
                  "blocking_seconds", "seed_identity", "picsi_async", "event_loop" }

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- cjson.null -> nil everywhere, so specs can write `assert.is_nil(r.fields)`; whole numbers
-- become integers (cjson decodes every number as a float), so messages print 2, not 2.0.
local function strip_null(value)
  if value == cjson.null then return nil end
  -- (Lua 5.4 only: LuaJIT has one number type and no math.type)
  if math.type and math.type(value) == "float" and math.tointeger(value) then return math.tointeger(value) end
  if type(value) == "table" then
    for k, v in pairs(value) do value[k] = strip_null(v) end
  end
  return value
end

local Sim = {}
Sim.__index = Sim

-- One HTTP exchange on a fresh connection; returns status and decoded body.
function Sim:request(method, path, payload)
  local body = payload ~= nil and cjson.encode(payload) or ""
  local sock = socket.tcp()
  sock:settimeout(10)
  local ok, err = sock:connect(self.host, self.port)
  if not ok then
    sock:close()
    return nil, "simulator control connection failed: " .. tostring(err)
  end
  sock:send(string.format("%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
    .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s", method, path, self.host, self.port, #body, body))
  local answer, rerr, partial = sock:receive("*a")
  sock:close()
  answer = answer or partial
  local status = tonumber(answer and answer:match("^HTTP/1%.1 (%d%d%d)"))
  if not status then return nil, "simulator control call failed: " .. tostring(rerr) end
  local text = answer:match("\r\n\r\n(.*)$") or ""
  local decoded_ok, decoded = pcall(cjson.decode, text)
  return status, decoded_ok and strip_null(decoded) or text
end

-- Like request() but raises unless the answer is 200.
function Sim:control(method, path, payload)
  local status, body = self:request(method, path, payload)
  if status ~= 200 then
    local message = type(body) == "table" and body.error or body
    error(string.format("%s %s: %s %s", method, path, tostring(status), tostring(message)), 2)
  end
  return body
end

-- Appends misbehaviour actions: one action table or an array of them.
function Sim:script(actions)
  if actions.action then actions = { actions } end
  if #actions == 0 then return end
  return self:control("POST", "/__sim/script", actions).queued
end

-- Merges settings into the running configuration; returns the whole configuration.
function Sim:config(settings)
  return self:control("POST", "/__sim/config", settings)
end

function Sim:requests() return self:control("GET", "/__sim/requests") end
function Sim:stats() return self:control("GET", "/__sim/stats") end

-- How many of the API requests received so far used `method` ("POST": headshots sent).
function Sim:count(method)
  local n = 0
  for _, r in ipairs(self:requests()) do
    if r.method == method then n = n + 1 end
  end
  return n
end
function Sim:callbacks() return self:control("GET", "/__sim/callbacks") end
function Sim:jobs() return self:control("GET", "/__sim/jobs") end
function Sim:reset() self:control("POST", "/__sim/reset") end

-- channel -> {channel, server, discord, credits, ids (saved faces, in order), default}
function Sim:accounts() return self:control("GET", "/__sim/accounts") end

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- The stored job table, or nil if the simulator does not know the jobid.
function Sim:job(jobid)
  local status, body = self:request("GET", "/__sim/job?jobid=" .. url_encode(jobid))
  if status == 200 then return body end
  if status == 404 then return nil end
  error("GET /__sim/job: " .. tostring(status) .. " " .. tostring(type(body) == "table" and body.error or body))
end

-- Forces a job's status (with the side effects of reaching it: attachments, callbacks).
function Sim:advance(jobid, status)
  return self:control("POST", "/__sim/advance", { jobid = jobid, status = status })
end

-- Polls until pred() is truthy or timeout seconds pass; returns pred's last value.
function M.wait_for(pred, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local v = pred()
    if v then return v end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  return pred()
end

-- Shuts the simulator down and reaps it; safe to call more than once.
function Sim:stop()
  local pipe = self.pipe
  if not pipe then return end
  self.pipe = nil
  local status = self:request("POST", "/__sim/shutdown")
  if status ~= 200 then os.execute("kill " .. self.pid .. " 2>/dev/null") end
  pipe:read("*a")               -- EOF: the child has exited
  return pipe:close()          -- pclose() waits for it, so no zombie is left
end

Sim.wait_for = M.wait_for

Sim.__gc = function(self) pcall(Sim.stop, self) end
Sim.__close = Sim.__gc

-- Starts a simulator. opts: any of OPTIONS (channels as an array), plus lua = the interpreter
-- (default "lua5.4") and max_files = its limit of open descriptors (`ulimit -n`; default: this
-- process's). Returns the handle with base_url, host, port and pid.
function M.start(opts)
  opts = opts or {}
  -- the child runs the server module from the directory this module came from: `-e` runs it
  -- with `arg` already set from the arguments after the (empty, never reached) script
  local code = string.format("package.path = %q .. package.path; require('faceswap.simulator.server').main(arg)",
    M.root .. "/?.lua;" .. M.root .. "/?/init.lua;")
  local args = { "exec", shell_quote(opts.lua or "lua5.4"), "-e", shell_quote(code), "/dev/null",
                 "--parent-pid", "$PPID" }
  for _, key in ipairs(OPTIONS) do
    local value = opts[key]
    if type(value) == "table" then value = table.concat(value, ",") end
    if value ~= nil then
      args[#args + 1] = "--" .. key:gsub("_", "-")
      args[#args + 1] = shell_quote(tostring(value))
    end
  end
  -- the shell prints its pid, then becomes the simulator (same pid) through exec
  local limit = ""
  if opts.max_files then
    limit = string.format("ulimit -n %d 2>&1 || { echo cannot set ulimit -n %d; exit 1; }; ",
                          opts.max_files, opts.max_files)
  end
  local pipe = assert(io.popen("echo $$; " .. limit .. table.concat(args, " "), "r"))
  local pid = tonumber(pipe:read("*l"))
  local line = pipe:read("*l")
  local host, port = (line or ""):match("^listening http://([^:]+):(%d+)$")
  if not (pid and port) then
    pipe:close()
    error("simulator did not start: " .. tostring(line), 2)
  end
  return setmetatable({ pipe = pipe, pid = pid, host = host, port = tonumber(port),
                        base_url = "http://" .. host .. ":" .. port }, Sim)
end

return M
