-- The simulator: a loopback stand-in for api.useapi.net's InsightFaceSwap API (v1).
--
-- It owns everything the specs, the demo and users' own tests need from "the server": real
-- HTTP/1.1 with keep-alive over TCP, strict request checks (Authorization, content types,
-- multipart and JSON bodies, the 1024-character limits), the documented answers with their
-- exact error texts, jobs that advance over (scalable) time, callbacks to replyUrl, scripted
-- misbehaviour (429s, resets, truncation, slow or huge answers...) and control endpoints under
-- /__sim/ through which a test configures it and reads back what it received.
--
-- Usage: lua5.4 spec/support/simulator.lua [--host 127.0.0.1] [--port 0] [--token TOKEN]
--          [--keepalive-timeout 5] [--job-seconds 2] [--latency 0] [--channels a,b]
--          [--subscription true] [--credits-total 800] [--credits-used 0]
--          [--callback-timeout 10] [--max-running 0] [--parent-pid PID]
-- Prints one line "listening http://HOST:PORT" on stdout, then serves until SIGTERM or
-- POST /__sim/shutdown. Needs only Lua 5.4, luasocket and lua-cjson.
--
-- API (also under /v1/faceswap): POST /headshot, GET /jobs/?jobid=, GET /jobs/cancel/?jobid=,
-- and GET /attachments/<jobid>/<n>.png (+ /proxy/...) for completed jobs' PNGs (no auth).
-- A prompt containing "sim:fail" or "sim:moderate" makes the job end failed or moderated.
-- With max_running N > 0, a headshot whose channel already has N unfinished jobs gets the
-- queue-full 429 (after the 400/402 checks), creates no job and is counted in stats.rejected.
-- Control (JSON, never recorded or counted): GET /__sim/requests, /__sim/stats,
-- /__sim/callbacks, /__sim/jobs, /__sim/job?jobid=, /__sim/config, /__sim/script;
-- POST /__sim/reset, /__sim/config (merge settings), /__sim/script (append actions),
-- /__sim/advance ({jobid, status}), /__sim/shutdown. Actions: see ACTIONS below.
--
-- Shape: one coroutine per connection (and per job timer and callback), driven by a small
-- scheduler over socket.select with deadlines, so nothing ever blocks the process.

local socket = require "socket"
local cjson = require "cjson"

local CREDITS_PER_JOB = 4
local MAX_HEAD = 64 * 1024
local MAX_BODY = 64 * 1024 * 1024
local IO_TIMEOUT = 60          -- seconds without progress before a half-sent/half-read exchange is dropped
local TICK = 1                 -- longest select() wait, so the parent watch runs even when idle
local TERMINAL = { completed = true, failed = true, moderated = true, cancelled = true }
local STATUSES = { created = true, started = true, progress = true, completed = true,
                   failed = true, moderated = true, cancelled = true }
local DISCORD_USER = "<@100000000000000001>"

---------------------------------------------------------------------------------------------
-- JSON: cjson cannot tell an empty array from an empty object, so tables that must come out
-- as arrays carry the ARRAY metatable and go through this small encoder (keys sorted, so the
-- output is stable and readable).
---------------------------------------------------------------------------------------------
local ARRAY = {}

local function array(t) return setmetatable(t or {}, ARRAY) end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  if t[1] == nil then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function encode(value)
  if type(value) ~= "table" then return cjson.encode(value) end
  local out = {}
  if is_array(value) then
    for i = 1, #value do out[i] = encode(value[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do out[i] = cjson.encode(k) .. ":" .. encode(value[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

local function decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  return nil
end

---------------------------------------------------------------------------------------------
-- Command line and configuration
---------------------------------------------------------------------------------------------
-- Every run-time setting with its type; the command line and POST /__sim/config both use it.
local CONFIG_TYPES = {
  token = "string", job_seconds = "number", channels = "array", subscription = "boolean",
  keepalive_timeout = "number", latency = "number", credits_total = "number",
  credits_used = "number", callback_timeout = "number", max_running = "integer",
}

local function default_config()
  return {
    token = "test-token", job_seconds = 2, channels = array { "1100000000000000001" },
    subscription = true, keepalive_timeout = 5, latency = 0, credits_total = 800,
    credits_used = 0, callback_timeout = 10, max_running = 0,
  }
end

local function copy_config(c)
  local out = {}
  for k, v in pairs(c) do out[k] = v end
  local channels = array {}
  for i, ch in ipairs(c.channels) do channels[i] = ch end
  out.channels = channels
  return out
end

-- Checks one setting's type; returns the value (arrays marked) or nil and a message.
local function check_setting(key, value)
  local want = CONFIG_TYPES[key]
  if not want then return nil, "Unknown config key " .. tostring(key) end
  if want == "array" then
    if type(value) ~= "table" then return nil, "Config key " .. key .. " must be an array" end
    local out = array {}
    for i, v in ipairs(value) do out[i] = tostring(v) end
    return out
  end
  if want == "integer" then      -- JSON numbers arrive as floats: 2.0 is fine, 1.5 is not
    local n = type(value) == "number" and math.tointeger(value)
    if not n or n < 0 then return nil, "Config key " .. key .. " must be a whole number >= 0" end
    return n
  end
  if type(value) ~= want then return nil, "Config key " .. key .. " must be a " .. want end
  if want == "number" and value < 0 then return nil, "Config key " .. key .. " must be >= 0" end
  return value
end

-- Turns a command-line string into the setting's type.
local function cli_value(key, text)
  local want = CONFIG_TYPES[key]
  if want == "number" or want == "integer" then return tonumber(text) end
  if want == "boolean" then
    if text == "true" then return true elseif text == "false" then return false end
    return nil
  end
  if want == "array" then
    local out = {}
    for item in text:gmatch("[^,]+") do out[#out + 1] = item end
    return out
  end
  return text
end

local function usage(message)
  io.stderr:write("simulator: ", message, "\n",
    "usage: lua5.4 simulator.lua [--host H] [--port N] [--token T] [--keepalive-timeout S]",
    " [--job-seconds S] [--latency S] [--channels a,b] [--subscription true|false]",
    " [--credits-total N] [--credits-used N] [--callback-timeout S] [--max-running N]",
    " [--parent-pid PID]\n")
  os.exit(2)
end

local function parse_args(argv)
  local opts = { host = "127.0.0.1", port = 0, config = default_config() }
  local i = 1
  while i <= #argv do
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
-- Scheduler: coroutines wait for a socket to become readable/writable or for a deadline.
---------------------------------------------------------------------------------------------
local now = socket.gettime
local waits = {}        -- coroutine -> { sock, mode ("r"|"w"|nil), deadline (or nil) }
local running = true

local function report(what, err)
  io.stderr:write("simulator: ", what, ": ", tostring(err), "\n")
end

-- Suspends the running coroutine; returns "ready" or "timeout".
local function wait(sock, mode, deadline)
  waits[coroutine.running()] = { sock = sock, mode = mode, deadline = deadline }
  return coroutine.yield()
end

local function sleep(seconds)
  wait(nil, nil, now() + seconds)
end

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then report("task failed", err) end
end

-- Starts fn as a task; errors are reported (with a traceback) instead of killing the server.
local function spawn(fn, ...)
  local args = table.pack(...)
  resume(coroutine.create(function()
    local ok, err = xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
    if not ok then report("task failed", err) end
  end))
end

-- One round: select over all waiting sockets until the nearest deadline, wake whoever is due.
local function step()
  local recvt, sendt, owner = {}, {}, {}
  local soonest
  for co, w in pairs(waits) do
    if w.mode == "r" then recvt[#recvt + 1] = w.sock elseif w.mode == "w" then sendt[#sendt + 1] = w.sock end
    if w.sock then owner[w.sock] = co end
    if w.deadline and (not soonest or w.deadline < soonest) then soonest = w.deadline end
  end
  local timeout = TICK
  if soonest then timeout = math.max(0, math.min(TICK, soonest - now())) end
  local readable, writable = socket.select(recvt, sendt, timeout)
  local due = {}
  for _, s in ipairs(readable) do due[owner[s]] = "ready" end
  for _, s in ipairs(writable) do due[owner[s]] = "ready" end
  local t = now()
  for co, w in pairs(waits) do
    if not due[co] and w.deadline and w.deadline <= t then due[co] = "timeout" end
  end
  for co, event in pairs(due) do
    if waits[co] then
      waits[co] = nil
      resume(co, event)
    end
  end
end

---------------------------------------------------------------------------------------------
-- Non-blocking socket I/O for use inside tasks
---------------------------------------------------------------------------------------------
-- Returns some bytes, or nil and "closed"/"timeout"/an error.
local function recv_some(sock, deadline)
  while true do
    local data, err, partial = sock:receive(65536)
    local chunk = data or partial
    if chunk and #chunk > 0 then return chunk end
    if err ~= "timeout" then return nil, err end
    if wait(sock, "r", deadline) == "timeout" then return nil, "timeout" end
  end
end

-- Sends all of data, waiting for writability in between; partial sends never block the loop.
local function send_all(sock, data)
  local i = 1
  while i <= #data do
    local last, err, lastpart = sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = lastpart + 1
      if wait(sock, "w", now() + IO_TIMEOUT) == "timeout" then return nil, "timeout" end
    else
      return nil, err
    end
  end
  return true
end

-- Abortive close: SO_LINGER 0 makes close() send RST instead of FIN.
local function reset(sock)
  sock:setoption("linger", { on = true, timeout = 0 })
  sock:close()
end

---------------------------------------------------------------------------------------------
-- Helpers: time, randomness, text
---------------------------------------------------------------------------------------------
local function iso_ms(t)
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", math.floor((t - s) * 1000))
end

local function iso_us(t)
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%06d+00:00", math.floor((t - s) * 1e6))
end

local function random_hex(n)
  local out = {}
  for i = 1, n do out[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(out)
end

local function random_digits(n)
  local out = { tostring(math.random(1, 9)) }
  for i = 2, n do out[i] = tostring(math.random(0, 9)) end
  return table.concat(out)
end

-- Character count for the 1024-character limits; invalid UTF-8 counts bytes.
local function char_len(s)
  return utf8.len(s) or #s
end

local function nonempty(s)
  return type(s) == "string" and s ~= ""
end

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(query)
  local params = {}
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = url_decode(k)
    if params[k] == nil then params[k] = url_decode(v) end
  end
  return params
end

-- Numbers as JSON would print them: 10 not 10.0, 0.5 not 0.50000.
local function number_text(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  return string.format("%.14g", n)
end

---------------------------------------------------------------------------------------------
-- PNG files for attachments: 8x8 RGB, zlib "stored" block, real CRC-32 and Adler-32.
---------------------------------------------------------------------------------------------
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = CRC_TABLE[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end

local function png_chunk(kind, data)
  return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data))
end

local function make_png(size, r, g, b)
  local row = "\0" .. string.rep(string.char(r, g, b), size)   -- filter byte 0, then pixels
  local raw = string.rep(row, size)
  local zlib = "\x78\x01\x01" .. string.pack("<I2I2", #raw, ~#raw & 0xFFFF) .. raw
    .. string.pack(">I4", adler32(raw))
  return "\x89PNG\r\n\x1a\n"
    .. png_chunk("IHDR", string.pack(">I4I4BBBBB", size, size, 8, 2, 0, 0, 0))
    .. png_chunk("IDAT", zlib) .. png_chunk("IEND", "")
end

local PNG_SIZE = 8
local PNGS = { make_png(PNG_SIZE, 200, 120, 40), make_png(PNG_SIZE, 40, 120, 200) }

---------------------------------------------------------------------------------------------
-- State: what the control endpoints expose and reset
---------------------------------------------------------------------------------------------
local opts          -- command-line options (host, port, parent_pid, config = the defaults)
local base_url      -- http://host:port, for attachment URLs
local config        -- current settings
local state         -- recorded requests, counters, scripts, jobs, callbacks

local function reset_state()
  config = copy_config(opts.config)
  state = {
    requests = array {},
    connections = 0,
    open = {},         -- connections that carried an API request and are still open
    epoch = (state and state.epoch or 0) + 1,   -- connections seen before a reset get new numbers
    scripts = {},
    jobs = {},            -- jobid -> entry { data = public job table, final, left }
    job_order = {},
    active = {},          -- channel -> number of its jobs not in a terminal status
    rejected = 0,         -- headshots answered 429 because of max_running
    callbacks = array {},
  }
end

---------------------------------------------------------------------------------------------
-- HTTP responses
---------------------------------------------------------------------------------------------
local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified", [400] = "Bad Request",
  [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Content Too Large", [422] = "Unprocessable Content", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local function response(status, body, content_type, headers)
  return { status = status, body = body, content_type = content_type, headers = headers or {} }
end

local function json_response(status, value, headers)
  return response(status, encode(value), "application/json", headers)
end

local function error_response(status, message, headers)
  return json_response(status, { error = message, code = status }, headers)
end

-- Upstream's answer when it cannot get a Discord channel: the queue is full.
local function queue_full_response()
  return error_response(429, "Unable to lock Discord after 3 attempts")
end

local function has_header(headers, name)
  for k in pairs(headers) do
    if k:lower() == name then return true end
  end
  return false
end

-- Whether the response's own headers ask to close (e.g. a scripted "Connection: close").
local function response_closes(resp)
  for k, v in pairs(resp.headers) do
    if k:lower() == "connection" and type(v) == "string" and v:lower():find("close") then return true end
  end
  return false
end

-- Status line and headers. content_length may differ from #body (truncate claims the whole);
-- "chunked" sends Transfer-Encoding: chunked instead of a Content-Length.
local function render_head(resp, close, content_length)
  local lines = { string.format("HTTP/1.1 %d %s", resp.status, REASONS[resp.status] or "Unknown") }
  local function add(name, value)
    if not has_header(resp.headers, name:lower()) then lines[#lines + 1] = name .. ": " .. value end
  end
  add("Content-Type", resp.content_type or "application/json")
  if content_length == "chunked" then
    add("Transfer-Encoding", "chunked")
  else
    add("Content-Length", number_text(content_length or #resp.body))
  end
  add("Date", os.date("!%a, %d %b %Y %H:%M:%S GMT"))
  add("Server", "useapi-simulator")
  if close then add("Connection", "close") end
  local names = {}
  for name in pairs(resp.headers) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local value = resp.headers[name]
    if type(value) == "table" then            -- an array of values gives repeated header lines
      for _, v in ipairs(value) do lines[#lines + 1] = name .. ": " .. tostring(v) end
    else
      lines[#lines + 1] = name .. ": " .. tostring(value)
    end
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function send_response(conn, resp, close)
  local ok = send_all(conn.sock, render_head(resp, close))
  if ok and #resp.body > 0 then ok = send_all(conn.sock, resp.body) end
  return ok
end

---------------------------------------------------------------------------------------------
-- HTTP requests
---------------------------------------------------------------------------------------------
local TOKEN = "[!#$%%&'*+%-.^_`|~%w]+"

-- Parses "type; a=b; c=\"d\"" into the lowercased type and a table of parameters, or nil.
local function parse_params(value)
  local kind, rest = value:match("^%s*([^;%s]+)%s*(.*)$")
  if not kind then return nil end
  local params, pos = {}, 1
  while pos <= #rest do
    local name, p = rest:match("^;%s*(" .. TOKEN .. ")%s*=%s*()", pos)
    if not name then return nil end
    local val
    if rest:sub(p, p) == '"' then
      local buf, i = {}, p + 1
      while true do
        local c = rest:sub(i, i)
        if c == "" then return nil end
        if c == '"' then break end
        if c == "\\" then
          i = i + 1
          c = rest:sub(i, i)
          if c == "" then return nil end
        end
        buf[#buf + 1] = c
        i = i + 1
      end
      val, p = table.concat(buf), i + 1
    else
      val, p = rest:match("^([^;%s\"]+)()", p)
      if not val then return nil end
    end
    params[name:lower()] = val
    pos = rest:match("^%s*()", p)
  end
  return kind:lower(), params
end

-- Request line and header block (without the blank line) -> request table, or nil and why.
local function parse_head(head)
  local lines = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
  local method, target, version = (lines[1] or ""):match("^(" .. TOKEN .. ") (/%S*) HTTP/(%d%.%d)$")
  if not method then return nil, "Malformed request line" end
  local headers = {}
  for i = 2, #lines do
    local name, value = lines[i]:match("^(" .. TOKEN .. "):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "Malformed header line" end
    name = name:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
  if version == "1.1" and not headers.host then return nil, "Missing Host header" end
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  return { method = method, target = target, path = path, query = query, version = version,
           headers = headers }
end

local function media_type(req)
  local ct = req.headers["content-type"]
  if not ct then return nil end
  return (parse_params(ct))
end

-- Does the client want the connection closed after this exchange?
local function client_closes(req)
  local tokens = "," .. (req.headers.connection or ""):lower():gsub("%s", "") .. ","
  if req.version == "1.0" then return not tokens:find(",keep%-alive,") end
  return tokens:find(",close,") ~= nil
end

local Conn = {}
Conn.__index = Conn

function Conn.new(sock)
  return setmetatable({ sock = sock, buf = "" }, Conn)
end

-- Reads the header block. The first byte may take up to first_deadline (the keep-alive idle
-- timeout); after that each further piece gets IO_TIMEOUT.
function Conn:read_head(first_deadline)
  local deadline = first_deadline
  while true do
    self.buf = self.buf:gsub("^\r\n", "")   -- RFC 9112: ignore a CRLF before a request line
    local e = self.buf:find("\r\n\r\n", 1, true)
    if e then
      local head = self.buf:sub(1, e - 1)
      self.buf = self.buf:sub(e + 4)
      return head
    end
    if #self.buf > MAX_HEAD then return nil, "too large" end
    local chunk, err = recv_some(self.sock, deadline)
    if not chunk then return nil, err end
    self.buf = self.buf .. chunk
    deadline = now() + IO_TIMEOUT
  end
end

-- Reads exactly n bytes; chunks are gathered in a table so a 10 MiB body costs one concat.
function Conn:read_exact(n)
  if #self.buf >= n then
    local out = self.buf:sub(1, n)
    self.buf = self.buf:sub(n + 1)
    return out
  end
  local parts, have = { self.buf }, #self.buf
  while have < n do
    local chunk, err = recv_some(self.sock, now() + IO_TIMEOUT)
    if not chunk then return nil, err end
    parts[#parts + 1] = chunk
    have = have + #chunk
  end
  local all = table.concat(parts)
  self.buf = all:sub(n + 1)
  return all:sub(1, n)
end

-- Reads one whole request including its body. Returns the request, or nil and an optional
-- error response (sent before closing). A body without Content-Length gets req.framing_error.
local function read_request(conn)
  local head, err = conn:read_head(now() + config.keepalive_timeout)
  if not head then
    if err == "too large" then return nil, error_response(431, "Request header fields too large") end
    return nil
  end
  local req, perr = parse_head(head)
  if not req then return nil, error_response(400, perr) end
  if req.headers["transfer-encoding"] then
    req.body, req.framing_error = "", error_response(411, "Length Required")
    return req
  end
  local cl = req.headers["content-length"] or "0"
  if not cl:match("^%d+$") then return nil, error_response(400, "Invalid Content-Length") end
  local n = tonumber(cl)
  if n > MAX_BODY then return nil, error_response(413, "Request body too large") end
  -- curl waits up to a second for this before sending a large body
  if n > 0 and (req.headers.expect or ""):lower() == "100-continue" then
    if not send_all(conn.sock, "HTTP/1.1 100 Continue\r\n\r\n") then return nil end
  end
  req.body = conn:read_exact(n)
  if not req.body then return nil end
  return req
end

---------------------------------------------------------------------------------------------
-- Request bodies: multipart/form-data (RFC 7578 / RFC 2046) and JSON objects
---------------------------------------------------------------------------------------------
local function parse_part_headers(block)
  local headers = {}
  if block == "" then return headers end
  for line in (block .. "\r\n"):gmatch("(.-)\r\n") do
    local name, value = line:match("^(" .. TOKEN .. "):[ \t]*(.-)[ \t]*$")
    if not name then return nil end
    headers[name:lower()] = value
  end
  return headers
end

-- Returns a table name -> value (first occurrence wins), or nil when malformed. A part's value
-- is exactly the bytes between its blank line and the CRLF before the next delimiter.
local function parse_multipart(body, content_type)
  local _, params = parse_params(content_type)
  local boundary = params and params.boundary
  if not boundary or #boundary < 1 or #boundary > 70 then return nil end
  local dash = "--" .. boundary
  local pos
  if body:sub(1, #dash) == dash then
    pos = 1
  else                                   -- a preamble is allowed and ignored
    local s = body:find("\r\n" .. dash, 1, true)
    if not s then return nil end
    pos = s + 2
  end
  local fields = {}
  while true do
    local after = pos + #dash
    if body:sub(after, after + 1) == "--" then return fields end   -- close delimiter
    local start = body:match("^[ \t]*\r\n()", after)               -- transport padding, CRLF
    if not start then return nil end
    local block, content_start
    if body:sub(start, start + 1) == "\r\n" then
      block, content_start = "", start + 2
    else
      local e = body:find("\r\n\r\n", start, true)
      if not e then return nil end
      block, content_start = body:sub(start, e - 1), e + 4
    end
    local next_delim = body:find("\r\n" .. dash, content_start, true)
    if not next_delim then return nil end
    local headers = parse_part_headers(block)
    if not headers or not headers["content-disposition"] then return nil end
    local kind, dparams = parse_params(headers["content-disposition"])
    if kind ~= "form-data" or not dparams.name then return nil end
    if fields[dparams.name] == nil then
      fields[dparams.name] = body:sub(content_start, next_delim - 1)
    end
    pos = next_delim + 2
  end
end

-- Returns a table of string fields, or nil when the body is not a JSON object.
local function parse_json_fields(body)
  if not body:match("^%s*{") then return nil end
  local value = decode(body)
  if type(value) ~= "table" then return nil end
  local fields = {}
  for k, v in pairs(value) do
    if type(v) == "string" then
      fields[k] = v
    elseif type(v) == "table" then
      fields[k] = encode(v)
    elseif v ~= cjson.null then
      fields[k] = tostring(v)
    end
  end
  return fields
end

-- Fills req.fields (or req.parse_error) for multipart and JSON bodies.
local function parse_fields(req)
  local media = media_type(req)
  if media == "multipart/form-data" then
    req.fields = parse_multipart(req.body, req.headers["content-type"])
    if not req.fields then req.parse_error = error_response(400, "Malformed multipart/form-data body") end
  elseif media == "application/json" then
    req.fields = parse_json_fields(req.body)
    if not req.fields then req.parse_error = error_response(400, "Malformed JSON body") end
  end
end

---------------------------------------------------------------------------------------------
-- Jobs
---------------------------------------------------------------------------------------------
local function job_content(entry, word)
  local job = entry.data
  return string.format("%s Picsi.Ai Headshot Job %s [jobid: %s] [credits: %d] [prompt: '%s'] "
    .. "[time: 12s] [SaveID: 'me'] (%s/%s credits remaining)", DISCORD_USER, word, job.jobid,
    CREDITS_PER_JOB, job.prompt, number_text(entry.left), number_text(entry.total))
end

local function attachments(jobid)
  local list = array {}
  for n, png in ipairs(PNGS) do
    local tail = string.format("attachments/%s/%d.png?ex=65f1&is=65de&hm=abc123", jobid, n)
    list[n] = {
      id = random_digits(19), filename = string.format("%s_%d.png", jobid, n), size = #png,
      url = base_url .. "/" .. tail, proxy_url = base_url .. "/proxy/" .. tail,
      width = PNG_SIZE, height = PNG_SIZE, content_type = "image/png",
    }
  end
  return list
end

-- POSTs body to an http:// URL from a task and returns the receiver's status, or nil and why.
local function http_post(url, body)
  local host, port, path = url:match("^http://([^/:?#]+):?(%d*)([^#]*)")
  if not host then return nil, "unsupported URL" end
  port = tonumber(port) or 80
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  local deadline = now() + config.callback_timeout
  local ip = socket.dns.toip(host)
  if not ip then return nil, "cannot resolve " .. host end
  local sock = socket.tcp()
  sock:settimeout(0)
  local ok, err = sock:connect(ip, port)
  if not ok and err == "timeout" then
    if wait(sock, "w", deadline) == "timeout" then sock:close() return nil, "timeout" end
    ok, err = sock:connect(ip, port)
    if err == "already connected" then ok = true end
  end
  if not ok then sock:close() return nil, err end
  local request = string.format("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: useapi-simulator\r\n"
    .. "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
    path, host .. ":" .. port, #body, body)
  ok, err = send_all(sock, request)
  local got = ""
  while ok and not got:find("\r\n", 1, true) do
    local chunk, rerr = recv_some(sock, deadline)
    if not chunk then ok, err = false, rerr else got = got .. chunk end
  end
  sock:close()
  if not ok then return nil, err end
  local status = tonumber(got:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "malformed status line" end
  return status
end

local function send_callback(job)
  local record = { url = job.replyUrl, body = encode(job), done = false }
  state.callbacks[#state.callbacks + 1] = record
  spawn(function()
    local status, err = http_post(record.url, record.body)
    record.status, record.error, record.done = status, err, true
  end)
end

-- Keeps state.active right when a job enters or leaves the unfinished statuses.
local function count_active(channel, delta)
  state.active[channel] = (state.active[channel] or 0) + delta
end

-- Every change of status goes through here: timestamps, results, callbacks.
local function set_status(entry, status)
  local job = entry.data
  local was_active, is_active = not TERMINAL[job.status], not TERMINAL[status]
  if was_active ~= is_active then count_active(job.channel, is_active and 1 or -1) end
  -- "updated" must visibly change, even for two changes within one millisecond
  entry.updated_at = math.max(now(), entry.updated_at + 0.001)
  job.status, job.updated = status, iso_ms(entry.updated_at)
  if status == "completed" then
    job.attachments = attachments(job.jobid)
    job.embeds = array { { type = "rich", description = "Headshot done" } }
    job.content = job_content(entry, "Completed")
  elseif status == "failed" then
    job.error = "Job failed"
  end
  if TERMINAL[status] and type(job.replyUrl) == "string" and job.replyUrl:find("^http://") then
    send_callback(job)
  end
end

local function schedule_job(entry)
  local half = config.job_seconds / 2
  spawn(function()
    sleep(half)
    if state.jobs[entry.data.jobid] ~= entry then return end    -- forgotten by a reset
    if entry.data.status == "started" then set_status(entry, "progress") end
    sleep(half)
    if state.jobs[entry.data.jobid] ~= entry then return end
    if not TERMINAL[entry.data.status] then set_status(entry, entry.final) end
  end)
end

local function create_job(fields, channel)
  config.credits_used = config.credits_used + CREDITS_PER_JOB
  local t = now()
  local job = {
    jobid = random_hex(32), verb = "faceswap-headshot", status = "started", prompt = fields.prompt,
    created = iso_ms(t), updated = iso_ms(t), discord = "ABC\u{2026}secured\u{2026}xyz",
    server = "1000000000000000001", channel = channel, messageId = random_digits(19),
    timestamp = iso_us(t), code = 200,
  }
  if nonempty(fields.replyUrl) then job.replyUrl = fields.replyUrl end
  if nonempty(fields.replyRef) then job.replyRef = fields.replyRef end
  local final = "completed"
  if fields.prompt:find("sim:fail", 1, true) then
    final = "failed"
  elseif fields.prompt:find("sim:moderate", 1, true) then
    final = "moderated"
  end
  local entry = { data = job, final = final, updated_at = t,
                  left = config.credits_total - config.credits_used, total = config.credits_total }
  job.content = job_content(entry, "Submitted")
  state.jobs[job.jobid] = entry
  state.job_order[#state.job_order + 1] = job.jobid
  count_active(channel, 1)
  schedule_job(entry)
  return job
end

---------------------------------------------------------------------------------------------
-- The API
---------------------------------------------------------------------------------------------
local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function headshot(req)
  if req.parse_error then return req.parse_error end
  if not req.fields then
    return error_response(400, "Unsupported Content-Type " .. (req.headers["content-type"] or "undefined"))
  end
  local f = req.fields
  if not nonempty(f.prompt) then return error_response(400, "Required param prompt is missing or empty") end
  if nonempty(f.replyRef) and char_len(f.replyRef) > 1024 then
    return error_response(400, "Optional param replyRef is too long")
  end
  if nonempty(f.replyUrl) and char_len(f.replyUrl) > 1024 then
    return error_response(400, "Optional param replyUrl is too long")
  end
  local channel = f.channel
  if nonempty(channel) then
    if not contains(config.channels, channel) then
      return error_response(400, string.format(
        "Configuration not found for channel %s, to create POST v1/faceswap/account/%s", channel, channel))
    end
  else
    channel = config.channels[1]
  end
  if not channel or not config.subscription
      or config.credits_total - config.credits_used < CREDITS_PER_JOB then
    return error_response(402, "Account has no subscription or subscription expired")
  end
  if config.max_running > 0 and (state.active[channel] or 0) >= config.max_running then
    state.rejected = state.rejected + 1
    return queue_full_response()
  end
  return json_response(200, create_job(f, channel))
end

-- Looks the jobid query parameter up; returns the entry or an error response.
local function find_job(req)
  local jobid = parse_query(req.query).jobid
  if not nonempty(jobid) then return nil, error_response(400, "Query param jobid not provided") end
  local entry = state.jobs[jobid]
  if not entry then return nil, error_response(404, "Unable to locate job " .. jobid) end
  return entry
end

local function get_job(req)
  local entry, err = find_job(req)
  if not entry then return err end
  return json_response(200, entry.data)
end

local function cancel_job(req)
  local entry, err = find_job(req)
  if not entry then return err end
  if not TERMINAL[entry.data.status] then set_status(entry, "cancelled") end
  return json_response(200, { jobid = entry.data.jobid, status = entry.data.status, code = 200 })
end

-- GET /attachments/<jobid>/<n>.png and /proxy/attachments/...: the job's PNGs, no auth.
local function attachment(req)
  local jobid, n = req.path:match("^/attachments/(%x+)/(%d+)%.png$")
  if not jobid then jobid, n = req.path:match("^/proxy/attachments/(%x+)/(%d+)%.png$") end
  if not jobid then return nil end
  local entry = state.jobs[jobid]
  local png = PNGS[tonumber(n)]
  if req.method ~= "GET" or not entry or entry.data.status ~= "completed" or not png then
    return error_response(404, "Not found")
  end
  return response(200, png, "image/png")
end

local ROUTES = {
  ["/headshot"] = { "POST", headshot },
  ["/jobs"] = { "GET", get_job }, ["/jobs/"] = { "GET", get_job },
  ["/jobs/cancel"] = { "GET", cancel_job }, ["/jobs/cancel/"] = { "GET", cancel_job },
}

local function authorized(req)
  local scheme, token = (req.headers.authorization or ""):match("^(%S+) +(.+)$")
  return scheme ~= nil and scheme:lower() == "bearer" and token == config.token
end

local function handle_api(req)
  local image = attachment(req)
  if image then return image end
  local route = ROUTES[req.path:match("^/v1/faceswap(/.*)$") or req.path]
  if not route then return error_response(404, "Not found") end
  if not authorized(req) then return error_response(401, "Unauthorized") end
  if req.method ~= route[1] then return error_response(405, "Method not allowed", { Allow = route[1] }) end
  return route[2](req)
end

---------------------------------------------------------------------------------------------
-- Scripted misbehaviour
---------------------------------------------------------------------------------------------
-- process: whether the API handler runs when the request arrives (creating the job for
-- POST /headshot) although the answer is replaced or never sent. Actions that send "the
-- normal answer" compute it anyway when they need it.
local ACTIONS = {
  queue_full = { process = false }, discord_429 = { process = false }, status = { process = false },
  html_502 = { process = false }, delay = { process = true }, hang = { process = false },
  reset_before = { process = false }, close_after_body = { process = true },
  reset_during = { process = true }, truncate = { process = true }, invalid_json = { process = false },
  oversized = { process = false }, raw = { process = false }, drip = { process = true },
  chunked = { process = true }, flood = { process = false },
}

local function check_action(a)
  if type(a) ~= "table" or not ACTIONS[a.action] then
    return "Unknown action " .. tostring(type(a) == "table" and a.action or a)
  end
  if a.match ~= nil and (type(a.match) ~= "string" or not pcall(string.find, "", a.match)) then
    return "Invalid match pattern"
  end
  if a.count ~= nil and (math.type(a.count) == nil or a.count < 1 or a.count % 1 ~= 0) then
    return "count must be a positive integer"
  end
  if a.action == "status" and math.type(a.status) == nil then return "status needs a numeric status" end
  if a.action == "raw" and type(a.data) ~= "string" then return "raw needs a data string" end
  if (a.action == "delay" or a.action == "drip") and type(a.seconds) ~= "number" then
    return a.action .. " needs seconds"
  end
  if a.action == "chunked" and a.chunk_size ~= nil
      and (math.type(a.chunk_size) == nil or a.chunk_size < 1 or a.chunk_size % 1 ~= 0) then
    return "chunk_size must be a positive integer"
  end
  if a.action == "chunked" and a.seconds ~= nil and (type(a.seconds) ~= "number" or a.seconds < 0) then
    return "seconds must be a number >= 0"
  end
  if a.action == "flood" and a.bytes ~= nil
      and (math.type(a.bytes) == nil or a.bytes < 11 or a.bytes % 1 ~= 0) then
    return "flood bytes must be a whole number >= 11"
  end
  return nil
end

-- The first queued action matching "METHOD /path" is consumed for this request.
local function take_action(req)
  local key = req.method .. " " .. req.path
  for i, a in ipairs(state.scripts) do
    if a.match == nil or key:find(a.match) then
      a.remaining = a.remaining - 1
      if a.remaining <= 0 then table.remove(state.scripts, i) end
      return a
    end
  end
  return nil
end

local function oversized_body(n)
  if n < 11 then return "{}" .. string.rep(" ", math.max(0, n - 2)) end
  return '{"data":"' .. string.rep("x", n - 11) .. '"}'
end

local HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
  .. "</body>\r\n</html>\r\n"

-- Answers that replace the normal one; each returns a response table.
local REPLACE = {
  queue_full = queue_full_response,
  discord_429 = function(a)
    local details = string.format(
      '{"global":true,"message":"You are being rate limited.","retry_after":%s}',
      number_text(tonumber(a.retry_after) or 10))
    return json_response(429, { error = "Discord /interactions failed with HTTP status 429",
                                errorDetails = details, code = 429 })
  end,
  status = function(a)
    return response(a.status, a.body or "", a.content_type or "application/json", a.headers)
  end,
  html_502 = function() return response(502, HTML_502, "text/html") end,
  invalid_json = function() return response(200, '{"jobid": "abc", "status": ', "application/json") end,
  oversized = function(a)
    return response(200, oversized_body(math.floor(tonumber(a.bytes) or 9437184)), "application/json")
  end,
}

local FLOOD_PIECE = 65536
local FLOOD_FILL = string.rep("x", FLOOD_PIECE)

-- Bytes [from, from + n) of oversized_body(total), made piece by piece so a body of gigabytes
-- is never held in memory.
local function flood_piece(total, from, n)
  local to, head_end, tail_start = from + n, 9, total - 2
  local out = ""
  if from < head_end then out = ('{"data":"'):sub(from + 1, math.min(to, head_end)) end
  local xs = math.min(to, tail_start) - math.max(from, head_end)
  if xs > 0 then out = out .. FLOOD_FILL:sub(1, xs) end
  if to > tail_start then out = out .. ('"}'):sub(math.max(from, tail_start) - tail_start + 1, to - tail_start) end
  return out
end

-- Sends head plus the first half of the body (Content-Length still claims the whole).
local function send_half(conn, resp)
  local half = resp.body:sub(1, #resp.body // 2)
  return send_all(conn.sock, render_head(resp, false, #resp.body) .. half)
end

-- Misbehaviours that take over the connection; each returns whether to keep it open.
local TAKEOVER = {
  hang = function(conn)
    while recv_some(conn.sock, nil) do end     -- discard anything until the client closes
    return false
  end,
  reset_before = function(conn) reset(conn.sock) return false end,
  close_after_body = function(conn) conn.sock:close() return false end,
  reset_during = function(conn, resp)
    if send_half(conn, resp) then sleep(0.05) end   -- let the half arrive before the RST
    reset(conn.sock)
    return false
  end,
  truncate = function(conn, resp)
    send_half(conn, resp)
    conn.sock:close()
    return false
  end,
  raw = function(conn, _, a)
    send_all(conn.sock, a.data)
    conn.sock:close()
    return false
  end,
  -- the normal answer with Transfer-Encoding: chunked, chunk_size bytes a chunk (default 16),
  -- all at once or with a pause of seconds before each chunk after the first
  chunked = function(conn, resp, a, close)
    local size = math.floor(tonumber(a.chunk_size) or 16)
    local pause = tonumber(a.seconds) or 0
    local pieces = { render_head(resp, close, "chunked") }
    for i = 1, #resp.body, size do
      local chunk = resp.body:sub(i, i + size - 1)
      pieces[#pieces + 1] = string.format("%x\r\n", #chunk) .. chunk .. "\r\n"
    end
    pieces[#pieces + 1] = "0\r\n\r\n"
    if pause <= 0 then return send_all(conn.sock, table.concat(pieces)) and not close end
    for i, piece in ipairs(pieces) do
      if i > 2 then sleep(pause) end
      if not send_all(conn.sock, piece) then return false end
    end
    return not close
  end,
  -- a 200 claiming bytes (default 8 GiB) in its Content-Length, or chunked, then the body
  -- streamed 64 KiB at a time until all is sent or the client goes away; then closes
  flood = function(conn, _, a)
    local total = math.floor(tonumber(a.bytes) or 8 * 1024 * 1024 * 1024)
    local chunked = a.chunked == true
    local head = render_head(response(200, "", "application/json"), true, chunked and "chunked" or total)
    if not send_all(conn.sock, head) then return false end
    local sent = 0
    while sent < total do
      local n = math.min(FLOOD_PIECE, total - sent)
      local piece = flood_piece(total, sent, n)
      if chunked then piece = string.format("%x\r\n", n) .. piece .. "\r\n" end
      if not send_all(conn.sock, piece) then return false end
      sent = sent + n
    end
    if chunked then send_all(conn.sock, "0\r\n\r\n") end
    conn.sock:close()
    return false
  end,
  drip = function(conn, resp, a, close)
    local bytes = render_head(resp, close) .. resp.body
    for i = 1, #bytes do
      if not send_all(conn.sock, bytes:sub(i, i)) then return false end
      if i < #bytes then sleep(a.seconds) end
    end
    return not close
  end,
}

-- Actions that send (part of) the normal answer, computed late if not processed on arrival.
local SENDS_NORMAL = { none = true, delay = true, reset_during = true, truncate = true, drip = true,
                      chunked = true }

-- Sends the answer for an API request, honouring a scripted action; returns keep-alive.
local function perform(conn, req, action, resp)
  local close = client_closes(req)
  local name = action and action.action
  if name == "delay" then sleep(action.seconds) end
  if REPLACE[name] then
    resp = REPLACE[name](action)
  elseif not resp and SENDS_NORMAL[name or "none"] then
    resp = handle_api(req)
  end
  close = close or (resp ~= nil and response_closes(resp))
  if TAKEOVER[name] then return TAKEOVER[name](conn, resp, action, close) end
  return send_response(conn, resp, close) and not close
end

---------------------------------------------------------------------------------------------
-- Control endpoints (/__sim/...): configure the simulator and read back what it saw.
---------------------------------------------------------------------------------------------
local function record_json(r)
  return { method = r.method, path = r.path, query = r.query, headers = r.headers, body = r.body,
           fields = r.fields or cjson.null, conn = r.conn, content_type = r.content_type or cjson.null }
end

local function ok_response(extra)
  local body = { ok = true }
  for k, v in pairs(extra or {}) do body[k] = v end
  return json_response(200, body)
end

local CONTROL = {}

CONTROL["GET /__sim/requests"] = function()
  local out = array {}
  for i, r in ipairs(state.requests) do out[i] = record_json(r) end
  return json_response(200, out)
end

CONTROL["GET /__sim/stats"] = function()
  local open = 0
  for _ in pairs(state.open) do open = open + 1 end
  return json_response(200, { connections = state.connections, requests = #state.requests,
                              open = open, rejected = state.rejected })
end

CONTROL["GET /__sim/callbacks"] = function()
  local out = array {}
  for i, c in ipairs(state.callbacks) do
    out[i] = { url = c.url, body = c.body, status = c.status or cjson.null, error = c.error or cjson.null,
               done = c.done }
  end
  return json_response(200, out)
end

CONTROL["GET /__sim/jobs"] = function()
  local out = array {}
  for i, id in ipairs(state.job_order) do out[i] = state.jobs[id].data end
  return json_response(200, out)
end

CONTROL["GET /__sim/job"] = function(req)
  local entry, err = find_job(req)
  if not entry then return err end
  return json_response(200, entry.data)
end

CONTROL["GET /__sim/config"] = function()
  return json_response(200, config)
end

CONTROL["GET /__sim/script"] = function()
  local out = array {}
  for i, a in ipairs(state.scripts) do out[i] = a end
  return json_response(200, out)
end

CONTROL["POST /__sim/reset"] = function()
  reset_state()
  return ok_response()
end

CONTROL["POST /__sim/config"] = function(req)
  local changes = decode(req.body)
  if type(changes) ~= "table" then return error_response(400, "Config must be a JSON object") end
  local checked = {}
  for k, v in pairs(changes) do
    local value, err = check_setting(k, v)
    if value == nil then return error_response(400, err) end
    checked[k] = value
  end
  for k, v in pairs(checked) do config[k] = v end
  return json_response(200, config)
end

CONTROL["POST /__sim/script"] = function(req)
  local actions = decode(req.body)
  if type(actions) ~= "table" then return error_response(400, "Script must be a JSON array of actions") end
  if actions.action then actions = { actions } end     -- a single action is fine too
  for _, a in ipairs(actions) do
    local err = check_action(a)
    if err then return error_response(400, err) end
  end
  for _, a in ipairs(actions) do
    a.remaining = a.count or 1
    state.scripts[#state.scripts + 1] = a
  end
  return ok_response({ queued = #state.scripts })
end

CONTROL["POST /__sim/advance"] = function(req)
  local body = decode(req.body)
  if type(body) ~= "table" or type(body.jobid) ~= "string" or not STATUSES[body.status] then
    return error_response(400, "advance needs {jobid, status} with a known status")
  end
  local entry = state.jobs[body.jobid]
  if not entry then return error_response(404, "Unable to locate job " .. body.jobid) end
  set_status(entry, body.status)
  return json_response(200, entry.data)
end

CONTROL["POST /__sim/shutdown"] = function()
  running = false
  return ok_response()
end

local function serve_control(conn, req)
  local handler = CONTROL[req.method .. " " .. req.path:gsub("/$", "")]
  local resp = handler and handler(req) or error_response(404, "Not found")
  local close = client_closes(req) or not running
  return send_response(conn, resp, close) and not close
end

---------------------------------------------------------------------------------------------
-- Connections
---------------------------------------------------------------------------------------------
-- Records an API request; a connection gets its number with its first API request.
local function record(conn, req)
  if conn.epoch ~= state.epoch then
    state.connections = state.connections + 1
    conn.number, conn.epoch = state.connections, state.epoch
    state.open[conn] = true
  end
  parse_fields(req)
  req.conn = conn.number
  req.content_type = req.headers["content-type"]
  state.requests[#state.requests + 1] = req
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
  if config.latency > 0 then sleep(config.latency) end
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
  while running do
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
        state.open[conn] = nil
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
  opts = parse_args(argv)
  reset_state()
  local server, err = socket.bind(opts.host, opts.port, 511)
  if not server then usage("cannot listen on " .. opts.host .. ":" .. opts.port .. ": " .. tostring(err)) end
  server:settimeout(0)
  local host, port = server:getsockname()
  if host == "0.0.0.0" then host = "127.0.0.1" end
  base_url = string.format("http://%s:%d", host, port)
  spawn(accept_loop, server)
  if opts.parent_pid then spawn(watch_parent, opts.parent_pid) end
  io.stdout:write("listening ", base_url, "\n")
  io.stdout:flush()
  while running do step() end
  server:close()
  os.exit(0)
end

main(arg)
