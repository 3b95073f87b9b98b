-- faceswap.simulator.server: the simulator's process: command-line options, the listening
-- socket, one task per connection, and the main loop. `main(argv)` never returns.
-- What it serves, its options and faults: docs/simulator.md.
local sched, http, faults, control, commands, S, png =
  require "faceswap.simulator.parts" ("sched", "http", "faults", "control", "commands", "state", "png")
local socket = require "socket"

local M = {}

local sleep, spawn, wait, report = sched.sleep, sched.spawn, sched.wait, sched.report
local TICK = sched.TICK
local crc32_update = png.crc32_update
local read_request, send_response, parse_fields, Conn = http.read_request, http.send_response,
  http.parse_fields, http.Conn
local take_action, perform, ACTIONS = faults.take_action, faults.perform, faults.ACTIONS
local serve_control, handle_api = control.serve_control, commands.handle_api
local default_config, cli_value, check_setting, reset_state = S.default_config, S.cli_value,
  S.check_setting, S.reset_state

local USAGE = "usage: faceswap-sim [--host H] [--port N] [--token T] [--keepalive-timeout S]"
  .. " [--job-seconds S] [--latency S] [--channels a,b] [--subscription true|false]"
  .. " [--credits-total N] [--credits-used N] [--callback-timeout S] [--max-running N]"
  .. " [--blocking-seconds S] [--seed-identity NAME] [--picsi-async true|false] [--parent-pid PID]"
  .. " [--event-loop luv|select]\n"

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
    elseif key == "event_loop" then
      if text ~= "luv" and text ~= "select" then usage("--event-loop is luv or select") end
      opts.event_loop = text
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
local KEEP = 1024 * 1024      -- bytes of a body or field value the record keeps whole
local SLICE = http.SLICE      -- bytes checksummed between two yields to the other tasks
M.KEEP = KEEP

-- CRC-32 of a field value past KEEP: a multipart value from the CRC-32s taken as the body
-- arrived (no second pass); a JSON member's (decoded, so not a stretch of the body) in slices,
-- so other connections go on.
local function field_crc(req, name, value)
  local span = req.spans and req.spans[name]
  if span then return req.received:crc32(span[1], span[2]) end
  local c = 0xFFFFFFFF
  for i = 1, #value, SLICE do
    c = crc32_update(c, value, i, math.min(#value, i + SLICE - 1))
    sleep(0)
  end
  return c ~ 0xFFFFFFFF
end

-- Records an API request, as it arrived; a connection gets its number with its first API
-- request. The record is its own table, bounded from the start whatever the connection does
-- next: the body and each field value up to KEEP bytes, a longer one left out, its size and
-- CRC-32 in omitted; the file parts' name, type and size. The request itself (every byte, the
-- decoded params) goes to the command and is dropped once answered: a record costs at most a
-- few MiB however large the upload, and a reset frees it all.
local function record(conn, req)
  local state = S.state
  if conn.epoch ~= state.epoch then
    state.connections = state.connections + 1
    conn.number, conn.epoch = state.connections, state.epoch
    state.open[conn] = true
  end
  parse_fields(req)
  local r = { method = req.method, path = req.path, query = req.query, headers = req.headers,
              conn = conn.number, content_type = req.headers["content-type"], body_size = #req.body }
  local omitted = {}
  if #req.body > KEEP then
    omitted.body = { size = #req.body, crc32 = req.received:crc32() }
  else
    r.body = req.body
  end
  if req.fields then
    r.fields = {}
    for name, value in pairs(req.fields) do
      if #value > KEEP then
        omitted.fields = omitted.fields or {}
        omitted.fields[name] = { size = #value, crc32 = field_crc(req, name, value) }
      else
        r.fields[name] = value
      end
    end
  end
  if next(req.files) then
    r.files = {}
    for name, f in pairs(req.files) do
      r.files[name] = { filename = f.filename, content_type = f.content_type, size = #f.data }
    end
  end
  r.omitted = next(omitted) and omitted or nil
  state.requests[#state.requests + 1] = r
  return r
end

local function should_process(action)
  if not action then return true end
  if action.process ~= nil then return action.process == true end
  return ACTIONS[action.action].process
end

local function handle(conn, req)
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

local function serve_api(conn, req)
  local r = record(conn, req)
  local keep = handle(conn, req)
  if r.omitted then collectgarbage() end      -- give the upload's memory back now
  return keep
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

-- One connection's task: its exchanges, then the socket closed whatever happened.
local function connection(client)
  local conn = Conn.new(client)
  local ok, err = xpcall(serve, debug.traceback, conn)
  if not ok then report("connection failed", err) end
  client:close()
  S.state.open[conn] = nil
  S.live.clients = S.live.clients - 1
end

-- Takes one accepted socket: a task of its own, or refused (closed at once) when the event
-- loop cannot watch its descriptor. Nothing here can end the accept loop.
local function admit(client)
  if not sched.can_watch(client) then
    client:close()
    S.live.refused = S.live.refused + 1
    return
  end
  client:settimeout(0)
  client:setoption("tcp-nodelay", true)
  S.live.clients = S.live.clients + 1
  spawn(connection, client)
end

local BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1    -- seconds between accept() tries after a failure

-- Accepts every pending connection each time the listening socket is readable. When accept()
-- fails (EMFILE: out of descriptors; ENFILE, ENOMEM...) the pending connections stay in the
-- kernel's backlog and the socket stays readable, so it waits (doubling up to a second) before
-- trying again instead of spinning, and says so once per episode.
local function accept_loop(server)
  local backoff
  while sched.running do
    wait(server, "r")
    while true do
      local client, err = server:accept()
      if client then
        if backoff then
          report("accept", "accepting again")
          backoff = nil
        end
        local ok, aerr = pcall(admit, client)
        if not ok then
          report("accept", aerr)
          pcall(client.close, client)
        end
      elseif err == "timeout" then
        break
      else
        if not backoff then report("accept", tostring(err) .. " (retrying, waiting up to "
                                   .. BACKOFF_MAX .. " s between tries)") end
        S.live.accept_errors = S.live.accept_errors + 1
        backoff = math.min(BACKOFF_MAX, (backoff or BACKOFF_FIRST / 2) * 2)
        sleep(backoff)
      end
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
    local f, _, code = io.open("/proc/" .. pid .. "/stat")
    if f then
      local stat = f:read("a")
      f:close()
      if not stat or stat:match("^%d+ %b() (%a)") == "Z" then os.exit(0) end
    elseif code == 2 then             -- ENOENT: gone (EMFILE, out of descriptors, is not)
      os.exit(0)
    end
  end
end

local function main(argv)
  local opts = parse_args(argv)
  S.opts = opts
  local loop, lerr = sched.use(opts.event_loop)
  if not loop then usage(lerr) end
  S.live.event_loop = loop
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
  sched.run()
  server:close()
  os.exit(0)
end

M.main, M.parse_args = main, parse_args

return M
