--- The nginx transport: HTTP/1.1 over cosockets.
-- faceswap.resty.transport: moves a request's bytes through nginx's cosockets, so a call
-- yields to nginx instead of blocking the worker. It implements the transport contract of
-- docs/development.md ("The transport contract") with faceswap.resty.scheduler; its faults
-- take their kinds and words from the C core (core.fault, csrc/fault.c), as libcurl's do.
-- @module faceswap.resty.transport
local core = require "faceswap.core"
local url = require "faceswap.url"

local ngx = rawget(_G, "ngx")
local now = core.now

local M = {}

local MAX_HEADER_BYTES = 64 * 1024
local MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
local KEEPALIVE_MS = 30000 -- as with libcurl: a connection idle longer is not reused
local POOL_SIZE = 64

---------------------------------------------------------------------------------------------
-- HTTP/1.1 over a cosocket
---------------------------------------------------------------------------------------------
---------------------------------------------------------------------------------------------
-- HTTP/1.1 over a cosocket
---------------------------------------------------------------------------------------------
-- nil and the error object of a fault (csrc/fault.c has its kind and words, the same under
-- libcurl): `sent` says whether any of the request left; `code` the status of an answer that
-- had begun to arrive; `...` fills in the fault's words.
local function failed(fault, sent, post, code, ...)
  return nil, core.fault(fault, sent, post, code, ...)
end

---------------------------------------------------------------------------------------------
-- Reading within a deadline
---------------------------------------------------------------------------------------------
-- A cosocket's timeout bounds each wait for bytes, and nginx re-arms it whenever some arrive,
-- so a server dripping a byte at a time would hold one receive("*l") for ever. The reader takes
-- what has arrived (receiveany), each wait bounded by what is left of the attempt's deadline,
-- and cuts lines and lengths from its own buffer: the whole attempt ends by the deadline.
local Reader = {}
Reader.__index = Reader

local function reader(sock, deadline)
  return setmetatable({ sock = sock, deadline = deadline, buf = "", body_bytes = 0, total = 0 }, Reader)
end

-- More bytes into the buffer, or nil and "timeout" / the cosocket's error.
function Reader:fill()
  local left = self.deadline - now()
  if left <= 0 then return nil, "timeout" end
  self.sock:settimeout(math.max(math.ceil(left * 1000), 1))
  local data, err = self.sock:receiveany(65536)
  if not data then return nil, err end
  self.buf, self.total = self.buf .. data, self.total + #data
  return true
end

-- As a cosocket's receive: "*l" (a line without its CRLF) or a byte count; on failure nil, the
-- error and what had arrived.
function Reader:receive(want)
  if want == "*l" then
    while true do
      local i = self.buf:find("\n", 1, true)
      if i then
        local line = self.buf:sub(1, i - 1)
        self.buf = self.buf:sub(i + 1)
        return (line:gsub("\r$", ""))
      end
      if #self.buf > MAX_HEADER_BYTES then return nil, "big_headers" end
      local ok, err = self:fill()
      if not ok then
        local partial = self.buf
        self.buf = ""
        return nil, err, partial
      end
    end
  end
  local parts, have = { self.buf }, #self.buf
  self.buf = ""
  while have < want do
    local ok, err = self:fill()
    if not ok then return nil, err, table.concat(parts) end
    parts[#parts + 1], have, self.buf = self.buf, have + #self.buf, ""
  end
  local all = table.concat(parts)
  self.buf = all:sub(want + 1)
  return all:sub(1, want)
end

-- Reads the answer body as its headers frame it, at most `limit` bytes; on failure nil and a
-- fault's name (and what fills in its words: for "oversize" the Content-Length, when there is
-- one) or the cosocket's error.
local function read_body(sock, framing, limit)
  if framing.chunked then
    local parts, total = {}, 0
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%s*(%x+)"), 16)
      if not size then return nil, "chunk_size" end
      if size == 0 then
        repeat -- trailers
          line, err = sock:receive("*l")
          if not line then return nil, err end
        until line == ""
        return table.concat(parts)
      end
      if size > limit - total then return nil, "oversize" end
      local data, partial
      data, err, partial = sock:receive(size)
      if not data then
        sock.body_bytes = total + #(partial or "")
        return nil, err
      end
      parts[#parts + 1], total = data, total + size
      line, err = sock:receive("*l")
      if not line then return nil, err end
    end
  elseif framing.length then
    if framing.length > limit then return nil, "oversize", framing.length end
    if framing.length == 0 then return "" end
    local data, err, partial = sock:receive(framing.length)
    if data then return data end
    sock.body_bytes = #(partial or "")
    if err == "closed" then return nil, "cut_body", framing.length - sock.body_bytes end
    return nil, err
  end
  -- neither: the body runs to the end of the connection
  local parts, total = {}, 0
  while true do
    local data, err, partial = sock:receive(8192)
    data = data or partial
    if data and #data > 0 then
      if #data > limit - total then return nil, "oversize" end
      parts[#parts + 1], total = data, total + #data
    end
    if err == "closed" then return table.concat(parts) end
    if err then
      sock.body_bytes = total
      return nil, err
    end
  end
end

-- Status line and headers: status, the header block (as libcurl gives it), and the framing;
-- or nil, a fault's name or the cosocket's error, and the status if its line had come (and
-- "cut" when the connection closed after some of the header block).
local function read_head(sock)
  while true do
    local line, err, partial = sock:receive("*l")
    if not line then return nil, err, nil, partial ~= nil and partial ~= "" end
    local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
    if not status then return nil, "http09" end
    local block, framing = { line }, { keepalive = not line:find("^HTTP/1%.0") }
    local bytes = #line
    while true do
      line, err = sock:receive("*l")
      if not line then return nil, err, status >= 200 and status or nil, true end
      if line == "" then break end
      bytes = bytes + #line + 2
      if bytes > MAX_HEADER_BYTES then return nil, "big_headers", status end
      block[#block + 1] = line
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      name = name and name:lower()
      if name == "content-length" then
        local length = tonumber(value:match("^%d+$"))
        if not length then return nil, "bad_length", status end
        if framing.length and framing.length ~= length then -- RFC 9112, 6.3: end unknown
          return nil, "framing", status
        end
        framing.length = length
      elseif name == "transfer-encoding" and value:lower():find("chunked", 1, true) then
        framing.chunked = true
      elseif name == "connection" and value:lower():find("close", 1, true) then
        framing.keepalive = false
      end
    end
    if status >= 200 or status == 101 then
      return status, table.concat(block, "\r\n") .. "\r\n\r\n", framing
    end -- a 1xx before the answer: read on
  end
end

local Transport = {}
Transport.__index = Transport

-- resty.transport{token=, base_url=, timeout=, connect_timeout=, max_response=}: the same
-- checks and defaults as the C transport's.
function M.transport(o)
  local base = url.base(o.base_url, 2)
  if type(o.token) ~= "string" or o.token == "" or o.token:find("[%z\1-\32\127]") then
    error("bad option 'token' (a non-empty string without spaces or control bytes expected)", 2)
  end
  if o.ca_file ~= nil then
    -- cosockets verify with nginx's own store, which a client cannot replace
    error("bad option 'ca_file' (inside nginx the CA file is lua_ssl_trusted_certificate in nginx.conf)", 2)
  end
  local auth = "Authorization: Bearer " .. o.token .. "\r\n" -- kept in this closure only
  local self = setmetatable({
    base = base,
    timeout = o.timeout or 60,
    connect_timeout = o.connect_timeout or 10,
    max_response = o.max_response or 256 * 1024,
  }, Transport)

  -- One exchange; `fresh` forces a new connection (after a reused one died unanswered), within
  -- the same attempt: `started` and `deadline` are the first try's.
  local function exchange(method, target, content_type, body, download, fresh, started, deadline)
    local post = method ~= "GET" -- POST, DELETE: the server may have acted on them
    local scheme, host, port, path, authority = url.split(target)
    started = started or now()
    deadline = deadline or started + self.timeout
    local function ms() return math.floor((now() - started) * 1000 + 0.5) end
    local sock = ngx.socket.tcp()
    sock:settimeout(math.max(math.ceil(math.min(self.connect_timeout, deadline - now()) * 1000), 1))
    local pool = scheme .. "://" .. authority .. (fresh and ("#" .. now()) or "")
    local ok, err = sock:connect(host, port, { pool = pool })
    if not ok then
      if err == "timeout" then
        return failed("connect_timeout", false, post, nil, ms())
      elseif err == "connection refused" then
        return failed("refused", false, post, nil, host, port, ms())
      end
      return failed("connect", false, post, nil, tostring(err))
    end
    local reused = sock:getreusedtimes() > 0
    if scheme == "https" and not reused then
      local fine
      local by_connect = self.connect_timeout < deadline - now() -- which limit a stall meets
      sock:settimeout(math.max(math.ceil(math.min(self.connect_timeout, deadline - now()) * 1000), 1))
      fine, ok, err = pcall(sock.sslhandshake, sock, nil, host, true)
      if not fine then
        -- lua-resty-core 0.1.25 (Debian 12) fails an assertion instead of returning the error
        -- when a handshake that completed at once did not verify (lua-resty-core issue 499,
        -- fixed upstream in 2025); the reason then reaches nginx's error log only. Failing
        -- closed is what matters: nothing was sent.
        ok, err = nil, "0: certificate verify failed (the reason is in nginx's error log)"
      end
      if not ok and err == "timeout" then
        sock:close()
        if by_connect then return failed("tls_timeout", false, post) end
        return failed("connect_timeout", false, post, nil, ms())
      elseif not ok then
        sock:close()
        -- "20: unable to get local issuer certificate": OpenSSL's verify result, as libcurl words it
        local reason = tostring(err):match("^%d+: (.*)$")
        if reason then return failed("certificate", false, post, nil, reason) end
        return failed("tls", false, post, nil, tostring(err))
      end
    end
    local request = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. authority ..
      "\r\nUser-Agent: lua-faceswap/" .. core._VERSION:match("%S+$") .. "\r\n" ..
      (download and "" or auth) ..
      (body and ("Content-Type: " .. content_type .. "\r\nContent-Length: " .. #body ..
        "\r\n\r\n" .. body) or "\r\n")
    local function timed_out(code, r, length)
      if length then return failed("timeout_of", true, post, code, ms(), r.body_bytes, length) end
      return failed("timeout", true, post, code, ms(), r and r.body_bytes or 0)
    end
    if deadline <= now() then return timed_out() end
    sock:settimeout(math.max(math.ceil((deadline - now()) * 1000), 1))
    local sent
    sent, err = sock:send(request)
    local r = reader(sock, deadline)
    local status, head, framing, cut
    if sent then
      status, head, framing, cut = read_head(r)
    else
      head, framing = err, nil
    end
    if not status then
      err, status = head, framing -- on failure: the error, and the status if one had come
      sock:close()
      if err == "timeout" then return timed_out() end
      -- (nothing at all came back: after even a 1xx libcurl does not resend either)
      local lost = r.total == 0 and (err == "closed" or tostring(err):find("reset", 1, true))
      if reused and lost then
        -- a kept-alive connection the server had closed: a GET goes again on a new one; a POST
        -- may not, as the server may have acted on it
        if not post then return exchange(method, target, content_type, body, download, true, started, deadline) end
        return failed("not_resent", true, post)
      end
      if not sent then
        return failed("send", true, post, nil, (tostring(err):gsub("^%l", string.upper)))
      elseif err == "closed" then
        return failed(cut and "cut_headers" or "empty", true, post)
      elseif tostring(err):find("reset by peer", 1, true) then
        return failed("reset", true, post, status)
      elseif err == "http09" then
        return failed("http09", true, post)
      elseif err == "big_headers" or err == "bad_length" or err == "framing" then
        return failed(err, true, post, status)
      end
      return failed("other", true, post, status, tostring(err))
    end
    local limit = download and MAX_DOWNLOAD_BYTES or self.max_response
    local answer, left
    if method == "HEAD" or status == 204 or status == 304 then
      answer = ""
    else
      answer, err, left = read_body(r, framing, limit)
    end
    if not answer then
      sock:close()
      if err == "oversize" and not download and status >= 300 then
        -- an error answer past max_response: its status decides its kind, as for any other;
        -- the error and its words are libcurl's (csrc/response.c), `left` the Content-Length
        return core.read_unread(status, head, left or limit, left ~= nil, limit, post)
      elseif err == "oversize" then
        return failed("oversize", true, post, nil, download and "a download may be" or "max_response", limit)
      elseif err == "timeout" then
        return timed_out(status, r, framing.length)
      elseif err == "closed" then
        return failed("cut_chunked", true, post, status)
      elseif err == "cut_body" then
        return failed("cut_body", true, post, status, left)
      elseif err == "chunk_size" or err == "big_headers" then
        return failed(err, true, post, status)
      elseif tostring(err):find("reset by peer", 1, true) then
        return failed("reset", true, post, status)
      end
      return failed("other", true, post, status, tostring(err))
    end
    -- (a fresh connection's pool name is its own, so it is not kept: no pool per retry; nor is
    -- one with bytes past the answer)
    if framing.keepalive and (framing.chunked or framing.length) and not fresh and r.buf == "" then
      sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
    else
      sock:close()
    end
    return status, head, answer
  end

  -- transport:perform(method, path_or_url, content_type, body), as in the C transport
  function self.perform(_, method, target, content_type, body)
    if target:sub(1, 1) == "/" then
      return exchange(method, self.base .. target, content_type, body, false)
    end
    local problem = url.problem(target, false)
    if problem or method ~= "GET" then
      return failed("refused_url", false, true, nil, problem and "a URL" or "with POST",
        problem or "downloads are GET")
    end
    return exchange("GET", target, nil, nil, true)
  end
  return self
end

function Transport.close() end -- connections belong to nginx's pool

Transport.__tostring = function(self) return "faceswap.transport (" .. self.base .. ", nginx)" end

return M
