-- faceswap.simulator.server: the simulator's process: command-line options, the listening
-- socket, one task per connection, and the main loop. `main(argv)` never returns.
-- What it serves, its options and faults: docs/simulator.md.
local sched = require "faceswap.simulator.sched"
local http = require "faceswap.simulator.http"
local faults = require "faceswap.simulator.faults"
local control = require "faceswap.simulator.control"
local commands = require "faceswap.simulator.commands"
local S = require "faceswap.simulator.state"
local socket = require "socket"

local M = {}

local sleep, spawn, wait, report = sched.sleep, sched.spawn, sched.wait, sched.report
local TICK = sched.TICK
local read_request, send_response, parse_fields, Conn = http.read_request, http.send_response,
  http.parse_fields, http.Conn
local take_action, perform, ACTIONS = faults.take_action, faults.perform, faults.ACTIONS
local serve_control, handle_api = control.serve_control, commands.handle_api
local default_config, cli_value, check_setting, reset_state = S.default_config, S.cli_value,
  S.check_setting, S.reset_state

local USAGE = "usage: faceswap-sim [--host H] [--port N] [--token T] [--keepalive-timeout S]"
  .. " [--job-seconds S] [--latency S] [--channels a,b] [--subscription true|false]"
  .. " [--credits-total N] [--credits-used N] [--callback-timeout S] [--max-running N]"
  .. " [--blocking-seconds S] [--seed-identity NAME] [--picsi-async true|false] [--parent-pid PID]\n"

local function usage(message)
  io.stderr:write("simulator: ", message, "\n", USAGE)
  os.exit(2)
end

local function parse_args(argv)
  local opts = { host = "127.0.0.1", port = 0, config = default_config() }
  local i = 1
  while i <= #argv do
    if argv[i] == "--help" or argv[i] == "-h" then
      io.stdout:write(USAGE)
      os.exit(0)
    end
    local name = argv[i]:match("^%-%-([%w%-]+)$")
    local text = argv[i + 1]
    if not name or text == nil then usage("bad argument " .. argv[i]) end
    local key = name:gsub("%-", "_")
    if key == "host" then
      opts.host = text
    elseif key == "port" or key == "parent_pid" then
      opts[key] = tonumber(text) or usage("--" .. name .. " needs a number")
    else
      local value = cli_value(key, text)
      if value == nil then usage("bad value for --" .. name) end
      local checked, err = check_setting(key, value)
      if checked == nil then usage(err) end
      opts.config[key] = checked
    end
    i = i + 2
  end
  return opts
end

---------------------------------------------------------------------------------------------
-- Connections
---------------------------------------------------------------------------------------------
-- Records an API request; a connection gets its number with its first API request.
local function record(conn, req)
  if conn.epoch ~= S.state.epoch then
    S.state.connections = S.state.connections + 1
    conn.number, conn.epoch = S.state.connections, S.state.epoch
    S.state.open[conn] = true
  end
  parse_fields(req)
  req.conn = conn.number
  req.content_type = req.headers["content-type"]
  S.state.requests[#S.state.requests + 1] = req
end

local function should_process(action)
  if not action then return true end
  if action.process ~= nil then return action.process == true end
  return ACTIONS[action.action].process
end

local function serve_api(conn, req)
  record(conn, req)
  if req.framing_error then
    send_response(conn, req.framing_error, true)    -- cannot find the next request: close
    return false
  end
  local action = take_action(req)
  local resp
  if should_process(action) then resp = handle_api(req) end
  if S.config.latency > 0 then sleep(S.config.latency) end
  return perform(conn, req, action, resp)
end

local function serve(conn)
  while true do
    local req, failure = read_request(conn)
    if not req then
      if failure then send_response(conn, failure, true) end
      return
    end
    local keep
    if req.path:find("^/__sim/") or req.path == "/__sim" then
      keep = serve_control(conn, req)
    else
      keep = serve_api(conn, req)
    end
    if not keep then return end
  end
end

local function accept_loop(server)
  while sched.running do
    wait(server, "r")
    while true do
      local client = server:accept()
      if not client then break end
      client:settimeout(0)
      client:setoption("tcp-nodelay", true)
      spawn(function()
        local conn = Conn.new(client)
        local ok, err = xpcall(serve, debug.traceback, conn)
        if not ok then report("connection failed", err) end
        client:close()
        S.state.open[conn] = nil
      end)
    end
  end
end

-- Exits when the process that started us is gone, so a crashed spec run leaves no server behind.
local function watch_parent(pid)
  local probe = io.open("/proc/self/stat")
  if not probe then return end              -- no /proc: nothing to watch with
  probe:close()
  while true do
    sleep(TICK)
    local f = io.open("/proc/" .. pid .. "/stat")
    local stat = f and f:read("a")
    if f then f:close() end
    if not stat or stat:match("^%d+ %b() (%a)") == "Z" then os.exit(0) end
  end
end

local function main(argv)
  local opts = parse_args(argv)
  S.opts = opts
  reset_state()
  local server, err = socket.bind(opts.host, opts.port, 511)
  if not server then usage("cannot listen on " .. opts.host .. ":" .. opts.port .. ": " .. tostring(err)) end
  server:settimeout(0)
  local host, port = server:getsockname()
  if host == "0.0.0.0" then host = "127.0.0.1" end
  S.base_url = string.format("http://%s:%d", host, port)
  spawn(accept_loop, server)
  if opts.parent_pid then spawn(watch_parent, opts.parent_pid) end
  io.stdout:write("listening ", S.base_url, "\n")
  io.stdout:flush()
  while sched.running do sched.step() end
  server:close()
  os.exit(0)
end

M.main, M.parse_args = main, parse_args

return M
