-- faceswap.simulator.http: HTTP/1.1 on the simulator's side: responses, reading requests
-- (keep-alive, Expect: 100-continue), multipart/form-data and JSON bodies, and the small client
-- that POSTs callbacks.
local cjson = require "cjson"
local socket = require "socket"
local util, sched, S, png = require "faceswap.simulator.parts" ("util", "sched", "state", "png")

local M = {}

local encode, decode, now, number_text = util.encode, util.decode, util.now, util.number_text
local recv_some, send_all, wait, sleep = sched.recv_some, sched.send_all, sched.wait, sched.sleep
local crc32_update, crc32_shift = png.crc32_update, png.crc32_shift
local IO_TIMEOUT = sched.IO_TIMEOUT
local MAX_HEAD = 64 * 1024
local MAX_BODY = 64 * 1024 * 1024
local SLICE = 256 * 1024      -- body bytes checksummed between two yields to the other tasks

---------------------------------------------------------------------------------------------
-- HTTP responses
---------------------------------------------------------------------------------------------
local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified", [400] = "Bad Request",
  [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Content Too Large", [422] = "Unprocessable Content", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error", [501] = "Not Implemented",
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

-- A scripted header's value as text: a number as the script wrote it (555, not the 555.0 of
-- the float its JSON made).
local function header_text(v) return type(v) == "number" and number_text(v) or tostring(v) end

-- Status line and headers. content_length may differ from #body (truncate claims the whole);
-- "chunked" sends Transfer-Encoding: chunked instead of a Content-Length.
local function render_head(resp, close, content_length)
  local lines = { string.format("HTTP/1.1 %d %s", resp.status, REASONS[resp.status] or "Unknown") }
  local function add(name, value)
    if not has_header(resp.headers, name:lower()) then lines[#lines + 1] = name .. ": " .. value end
  end
  if resp.status ~= 204 then                  -- 204: no body, so neither type nor length (RFC 9110)
    add("Content-Type", resp.content_type or "application/json")
    if content_length == "chunked" then
      add("Transfer-Encoding", "chunked")
    else
      add("Content-Length", number_text(content_length or #resp.body))
    end
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
      for _, v in ipairs(value) do lines[#lines + 1] = name .. ": " .. header_text(v) end
    else
      lines[#lines + 1] = name .. ": " .. header_text(value)
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

-- Takes what stands in the buffer before the first sep (sep consumed with it), reading more
-- while there is none; skip, a pattern, is cut from the buffer's start before each look. nil
-- and "too large" past MAX_HEAD bytes; nil and the read's error when the peer ends or is
-- silent: the first read may wait until first_deadline, each further one IO_TIMEOUT.
function Conn:read_to(sep, first_deadline, skip)
  local deadline = first_deadline
  while true do
    if skip then self.buf = self.buf:gsub(skip, "") end
    local e = self.buf:find(sep, 1, true)
    if e then
      local text = self.buf:sub(1, e - 1)
      self.buf = self.buf:sub(e + #sep)
      return text
    end
    if #self.buf > MAX_HEAD then return nil, "too large" end
    local chunk, err = recv_some(self.sock, deadline)
    if not chunk then return nil, err end
    self.buf = self.buf .. chunk
    deadline = now() + IO_TIMEOUT
  end
end

-- Reads the header block. The first byte may take up to first_deadline (the keep-alive idle
-- timeout); after that each further piece gets IO_TIMEOUT. RFC 9112: a CRLF before a request
-- line is ignored.
function Conn:read_head(first_deadline)
  return self:read_to("\r\n\r\n", first_deadline, "^\r\n")
end

-- A request body as it comes off the socket: its pieces (one concat at the end), its size, and
-- its CRC-32 (zlib's) carried along piece by piece, with the running value noted at each
-- piece's end. So the CRC-32 of the whole body is known once its last byte is read, and that of
-- any stretch of it (a multipart field) costs at most two pieces' bytes (Body:crc32): nothing
-- reads a large body again to checksum it. It yields every SLICE bytes, so a fast upload does
-- not hold up the other connections while it is checksummed.
local Body = {}
Body.__index = Body

function Body.new()
  return setmetatable({ parts = {}, size = 0, crc = 0xFFFFFFFF, ends = { 0 }, crcs = { 0xFFFFFFFF },
                        unyielded = 0 }, Body)
end

function Body:add(piece)
  self.crc = crc32_update(self.crc, piece, 1, #piece)
  self.parts[#self.parts + 1] = piece
  self.size = self.size + #piece
  self.ends[#self.ends + 1], self.crcs[#self.crcs + 1] = self.size, self.crc
  self.unyielded = self.unyielded + #piece
  if self.unyielded >= SLICE then
    self.unyielded = 0
    sleep(0)
  end
end

-- The body's bytes; the pieces go (the text is needed for Body:crc32 from now on).
function Body:finish()
  self.text = table.concat(self.parts)
  self.parts = nil
  return self.text
end

-- The running CRC register after the body's first n bytes: from the last piece ending at or
-- before n, on over the bytes after it.
function Body:register_at(n)
  local ends, lo, hi = self.ends, 1, #self.ends
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if ends[mid] <= n then lo = mid else hi = mid - 1 end
  end
  return crc32_update(self.crcs[lo], self.text, ends[lo] + 1, n)
end

-- CRC-32 of the body's bytes i..j (all of it without arguments).
function Body:crc32(i, j)
  if not i then return self.crc ~ 0xFFFFFFFF end
  local before = self:register_at(i - 1) ~ 0xFFFFFFFF
  local through = self:register_at(j) ~ 0xFFFFFFFF
  return through ~ crc32_shift(before, j - i + 1)
end

-- Reads exactly n bytes into body, piece by piece as they arrive. Returns true, or nil and why.
function Conn:read_into(n, body)
  while n > 0 do
    if self.buf == "" then
      local chunk, err = recv_some(self.sock, now() + IO_TIMEOUT)
      if not chunk then return nil, err end
      self.buf = chunk
    end
    if #self.buf <= n then
      n = n - #self.buf
      body:add(self.buf)
      self.buf = ""
    else
      body:add(self.buf:sub(1, n))
      self.buf = self.buf:sub(n + 1)
      n = 0
    end
  end
  return true
end

-- Reads exactly n bytes (a few: a chunk's CRLF).
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

-- Reads a chunked body (RFC 9112 7.1): hex sizes (extensions ignored), data, CRLF, then a
-- zero-size chunk and optional trailer lines up to a blank line, the data going into body.
-- Returns true, or nil and an error response (nil when the connection failed).
function Conn:read_chunked(body)
  local total = 0
  while true do
    local line, err = self:read_line()
    if not line then return nil, err end
    local hex = line:match("^(%x+)[ \t]*;?.*$")
    if not hex or #hex > 8 then return nil, error_response(400, "Malformed chunked body") end
    local size = tonumber(hex, 16)
    if size == 0 then break end
    total = total + size
    if total > MAX_BODY then return nil, error_response(413, "Request body too large") end
    if not self:read_into(size, body) then return nil end
    local crlf = self:read_exact(2)
    if not crlf then return nil end
    if crlf ~= "\r\n" then return nil, error_response(400, "Malformed chunked body") end
  end
  repeat                                           -- trailer fields, ignored
    local line, err = self:read_line()
    if not line then return nil, err end
  until line == ""
  return true
end

-- Reads one CRLF-terminated line (without it); nil and an error response when too long, nil
-- alone when the connection failed.
function Conn:read_line()
  local line, err = self:read_to("\r\n", now() + IO_TIMEOUT)
  if line then return line end
  if err == "too large" then return nil, error_response(400, "Malformed chunked body") end
  return nil
end

-- Reads one whole request including its body. Returns the request, or nil and an optional
-- error response (sent before closing). A body is framed by Content-Length or by
-- Transfer-Encoding: chunked (as Python's generators, httpx iterators and Node's streams send
-- it, and as upstream's CDN accepts it); another transfer coding gets req.framing_error.
-- req.received is the Body it came in (its CRC-32s, Body:crc32).
local function read_request(conn)
  local head, err = conn:read_head(now() + S.config.keepalive_timeout)
  if not head then
    if err == "too large" then return nil, error_response(431, "Request header fields too large") end
    return nil
  end
  local req, perr = parse_head(head)
  if not req then return nil, error_response(400, perr) end
  local te = req.headers["transfer-encoding"]
  local chunked = te and te:lower():gsub("%s", "") == "chunked"
  if te and (not chunked or req.headers["content-length"]) then
    req.body, req.framing_error = "", error_response(501, "Unsupported Transfer-Encoding")
    return req
  end
  local n = 0
  if not chunked then
    local cl = req.headers["content-length"] or "0"
    if not cl:match("^%d+$") then return nil, error_response(400, "Invalid Content-Length") end
    n = tonumber(cl)
    if n > MAX_BODY then return nil, error_response(413, "Request body too large") end
  end
  -- curl waits up to a second for this before sending a large body
  if (chunked or n > 0) and (req.headers.expect or ""):lower() == "100-continue" then
    if not send_all(conn.sock, "HTTP/1.1 100 Continue\r\n\r\n") then return nil end
  end
  local body = Body.new()
  if chunked then
    local ok, failure = conn:read_chunked(body)
    if not ok then return nil, failure end
  elseif not conn:read_into(n, body) then
    return nil
  end
  req.body, req.received = body:finish(), body
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

-- Returns a table name -> value (first occurrence wins), one name -> file for the parts
-- that carry a filename ({filename, content_type (nil when the part has none), data}) and one
-- name -> {first, last}, where each value lies in the body; or nil when malformed. A part's value
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
  local fields, files, spans = {}, {}, {}
  while true do
    local after = pos + #dash
    if body:sub(after, after + 1) == "--" then return fields, files, spans end   -- close delimiter
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
      spans[dparams.name] = { content_start, next_delim - 1 }
      if dparams.filename then
        local ct = headers["content-type"] and parse_params(headers["content-type"])
        files[dparams.name] = { filename = dparams.filename, content_type = ct,
                                data = fields[dparams.name] }
      end
    end
    pos = next_delim + 2
  end
end

-- Returns the JSON object's fields as text (the record of what arrived), or nil when the body
-- is not a JSON object; and the set of names whose values are not strings (nor null).
local function parse_json_fields(body)
  if not body:match("^%s*{") then return nil end
  local value = decode(body)
  if type(value) ~= "table" then return nil end
  local fields, not_strings = {}, {}
  for k, v in pairs(value) do
    if type(v) == "string" then
      fields[k] = v
    elseif type(v) == "table" then
      fields[k] = encode(v)
    elseif v ~= cjson.null then
      fields[k] = tostring(v)
    end
    if type(v) ~= "string" and v ~= cjson.null then not_strings[k] = true end
  end
  return fields, not_strings
end

-- Fills req.fields (or req.parse_error) for multipart and JSON bodies: the fields as they
-- arrived, for the record. The commands read req.params: the text fields decoded as a
-- JavaScript server decodes them (invalid UTF-8 becomes U+FFFD), so no answer echoes invalid
-- UTF-8; req.files: the file parts; req.not_strings: JSON fields that are not strings;
-- req.spans: where each multipart value lies in the body.
local function parse_fields(req)
  local media = media_type(req)
  req.files, req.not_strings = {}, {}
  if media == "multipart/form-data" then
    req.fields, req.files, req.spans = parse_multipart(req.body, req.headers["content-type"])
    if not req.fields then req.parse_error = error_response(400, "Malformed multipart/form-data body") end
  elseif media == "application/json" then
    req.fields, req.not_strings = parse_json_fields(req.body)
    if not req.fields then req.parse_error = error_response(400, "Malformed JSON body") end
  end
  req.files, req.not_strings = req.files or {}, req.not_strings or {}
  if req.fields then
    req.params = {}
    for k, v in pairs(req.fields) do
      if not req.files[k] and not req.not_strings[k] then req.params[util.to_utf8(k)] = util.to_utf8(v) end
    end
  end
end

-- The address to connect to for a URL's host: an IP literal as it is (no resolver, which may
-- not even have /etc/hosts), a name through DNS. Returns the address and "inet" or "inet6",
-- or nil and why.
local function resolve_host(host)
  if host:match("^%d+%.%d+%.%d+%.%d+$") then return host, "inet" end
  local v6 = host:match("^%[([%x:.]+)%]$")
  if v6 then return v6, "inet6" end
  local ip = socket.dns.toip(host)
  if not ip then return nil, "cannot resolve " .. host end
  return ip, "inet"
end

-- POSTs body to an http:// URL from a task and returns the receiver's status, or nil and why.
local function http_post(url, body)
  local host, port, path = url:match("^http://(%[[%x:.]+%])(:?%d*)([^#]*)")
  if not host then host, port, path = url:match("^http://([^/:?#%[]+)(:?%d*)([^#]*)") end
  if not host then return nil, "unsupported URL" end
  port = tonumber(port:sub(2)) or 80
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  local deadline = now() + S.config.callback_timeout
  local ip, family = resolve_host(host)
  if not ip then return nil, family end
  local sock = family == "inet6" and socket.tcp6() or socket.tcp()
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

M.REASONS, M.response, M.json_response, M.error_response, M.queue_full_response =
  REASONS, response, json_response, error_response, queue_full_response
M.response_closes, M.render_head, M.send_response = response_closes, render_head, send_response
M.parse_params, M.parse_head, M.media_type, M.client_closes, M.Conn, M.read_request =
  parse_params, parse_head, media_type, client_closes, Conn, read_request
M.parse_multipart, M.parse_json_fields, M.parse_fields = parse_multipart, parse_json_fields, parse_fields
M.Body, M.SLICE = Body, SLICE
M.http_post, M.resolve_host = http_post, resolve_host

return M
