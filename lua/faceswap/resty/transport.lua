--- The nginx transport: HTTP/1.1 over cosockets.
-- faceswap.resty.transport: moves a request's bytes through nginx's cosockets, so a call
-- yields to nginx instead of blocking the worker. It implements the transport contract of
-- docs/development.md ("The transport contract") with faceswap.resty.scheduler; its faults
-- take their kinds and words from the C core (core.fault, csrc/fault.c), as libcurl's do.
-- @module faceswap.resty.transport
local core = require "faceswap.core"
local url = require "faceswap.url"

local ngx = rawget(_G, "ngx")

-- The monotonic clock in seconds, as core.now reads it (CLOCK_MONOTONIC, seconds plus
-- nanoseconds / 1e9: the same values): through LuaJIT's FFI on 64-bit Linux, where the call
-- compiles into the trace, since a call to the core's C function ends LuaJIT's trace there;
-- else core.now. (Its own names, redirected to clock_gettime, so that no one's declaration of
-- clock_gettime or struct timespec meets this one.)
local now = core.now
do
  local has_ffi, ffi = pcall(require, "ffi")
  if has_ffi and ffi.os == "Linux" and ffi.abi("64bit") then
    local ready = pcall(ffi.typeof, "faceswap_timespec") or pcall(ffi.cdef, [[
      typedef struct { int64_t sec; long nsec; } faceswap_timespec;
      int faceswap_clock_gettime(int clock, faceswap_timespec *ts) __asm__("clock_gettime");
    ]])
    local C = ffi.C
    if ready and pcall(function() return C.faceswap_clock_gettime end) then
      local ts = ffi.new("faceswap_timespec")
      local clock_gettime, number = C.faceswap_clock_gettime, tonumber
      now = function()
        clock_gettime(1, ts) -- CLOCK_MONOTONIC
        return number(ts.sec) + number(ts.nsec) / 1e9
      end
    end
  end
end
local find, sub, byte, match, lower, gsub = string.find, string.sub, string.byte, string.match,
  string.lower, string.gsub
local concat = table.concat
local ceil, floor, min, most = math.ceil, math.floor, math.min, math.max

local M = {}

local MAX_HEADER_BYTES = 64 * 1024
local MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
local KEEPALIVE_MS = 30000 -- as with libcurl: a connection idle longer is not reused
local POOL_SIZE = 64
local USER_AGENT = "\r\nUser-Agent: lua-faceswap/" .. core._VERSION:match("%S+$") .. "\r\n"

---------------------------------------------------------------------------------------------
-- HTTP/1.1 over a cosocket
---------------------------------------------------------------------------------------------
-- nil and the error object of a fault (csrc/fault.c has its kind and words, the same under
-- libcurl): `sent` says whether any of the request left; `code` the status of an answer that
-- had begun to arrive; `...` fills in the fault's words.
local function failed(fault, sent, post, code, ...)
  return nil, core.fault(fault, sent, post, code, ...)
end

-- Milliseconds since `started`, for the words of a fault.
local function ms(started)
  return floor((now() - started) * 1000 + 0.5)
end

---------------------------------------------------------------------------------------------
-- Reading within a deadline
---------------------------------------------------------------------------------------------
-- A cosocket's timeout bounds each wait for bytes, and nginx re-arms it whenever some arrive,
-- so a server dripping a byte at a time would hold one receive("*l") for ever. The reader takes
-- what has arrived (receiveany), each wait bounded by what is left of the attempt's deadline,
-- and cuts lines and lengths from its own buffer: the whole attempt ends by the deadline.
-- The buffer is `buf` from index `pos` on: a line or a piece of body moves `pos` and copies
-- only itself. While `keep` is set (the header block) nothing read is dropped, so the block is
-- one slice of the buffer at its end. The reader also holds what the headers say of the
-- answer's framing (`length`, `chunked`, `keepalive`), where its body goes (`out`), and
-- whether a NUL came while the header block was read (`nul`).
local Reader = {}
Reader.__index = Reader

-- (every field the reader will hold is made here, false until set, so that setting one later
-- never grows the table)
local function reader(sock, deadline, armed)
  return setmetatable({ sock = sock, deadline = deadline, armed = armed, buf = "", pos = 1,
                        body_bytes = 0, keep = false, bare = false, length = false,
                        chunked = false, keepalive = false, limit = 0, out = false,
                        answer = false, parts = false, stream = false, nul = false }, Reader)
end

-- More bytes into the buffer, or nil and "timeout" / the cosocket's error.
function Reader:fill()
  local left = self.deadline - now()
  if left <= 0 then return nil, "timeout" end
  local sock = self.sock
  local wait, armed = most(ceil(left * 1000), 1), self.armed
  if wait < armed - 1 or wait > armed then -- (what is armed, or a millisecond over it, stands)
    sock:settimeout(wait)
    self.armed = wait
  end
  local data, err = sock:receiveany(65536)
  if not data then return nil, err end
  -- (a NUL among the bytes of a head: read_head looks for it line by line, else not at all)
  if self.keep and not self.nul and find(data, "\0", 1, true) then self.nul = true end
  local buf, pos = self.buf, self.pos
  if buf == "" then
    self.buf = data
  elseif self.keep or pos == 1 then
    self.buf = buf .. data
  elseif pos > #buf then
    self.buf, self.pos = data, 1
  else
    self.buf, self.pos = sub(buf, pos) .. data, 1
  end
  return true
end

-- As a cosocket's receive("*l"): a line without its CRLF (or LF: then `bare` is set); on
-- failure nil and the error (what had arrived of the line is dropped).
function Reader:line()
  while true do
    local buf, pos = self.buf, self.pos
    local i = find(buf, "\n", pos, true)
    if i then
      self.pos = i + 1
      if i > pos and byte(buf, i - 1) == 13 then return sub(buf, pos, i - 2) end
      self.bare = true
      return sub(buf, pos, i - 1)
    end
    if #buf - pos + 1 > MAX_HEADER_BYTES then return nil, "big_headers" end
    local ok, err = self:fill()
    if not ok then
      self.buf, self.pos = "", 1
      return nil, err
    end
  end
end

-- Hands the next `want` bytes of body (math.huge: up to the end of the connection) to
-- `self:out(piece)` as they arrive, counting them in body_bytes: true, or nil and the
-- cosocket's error ("closed" at the end of the connection) or what `out` returned on refusing
-- a piece.
function Reader:pass(want)
  while true do
    local buf, pos = self.buf, self.pos
    local have = #buf - pos + 1
    if have > 0 then
      local piece
      if have <= want then
        piece = pos == 1 and buf or sub(buf, pos)
        self.buf, self.pos = "", 1
      else
        piece = sub(buf, pos, pos + want - 1)
        self.pos = pos + want
      end
      local n = #piece
      want, self.body_bytes = want - n, self.body_bytes + n
      local ok, err = self:out(piece)
      if not ok then return nil, err end
    end
    if want == 0 then return true end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Where a body goes (the reader's `out`): kept (in `answer`, or `parts` once there are
-- several pieces), handed to a streamed download's stream, or read and dropped (a streamed
-- download's error answer); any of them refuses a piece past `limit` with "oversize".
local function keep(r, piece)
  if r.body_bytes > r.limit then return nil, "oversize" end
  local parts = r.parts
  if parts then
    parts[#parts + 1] = piece
  elseif r.answer then
    r.parts = { r.answer, piece }
  else
    r.answer = piece
  end
  return true
end

local function to_stream(r, piece)
  if r.body_bytes > r.limit then return nil, "oversize" end
  return r.stream:write(piece)
end

local function drop(r)
  if r.body_bytes > r.limit then return nil, "oversize" end
  return true
end

-- A chunk's size line read as libcurl reads it (lib/http_chunks.c), deciding on each byte as
-- it arrives: hex digits first, at most 16 and below 2^63, then anything up to the LF (an
-- extension). The size, or nil and "chunk_size" (no digit first, or too large), "chunk_long"
-- (a 17th digit) or the cosocket's error.
local function chunk_size(r)
  while true do
    local buf, pos = r.buf, r.pos
    local _, last = find(buf, "^%x*", pos)
    local digits = last - pos + 1
    if digits > 16 then return nil, "chunk_long" end
    if last < #buf then -- the byte after the digits came
      if digits == 0 or (digits == 16 and byte(buf, pos) > 55) then return nil, "chunk_size" end
      local hex = sub(buf, pos, last)
      local line, err = r:line()
      if not line then return nil, err end
      return tonumber(hex, 16)
    end
    local ok, err = r:fill()
    if not ok then return nil, err end
  end
end

-- The end of a chunk's data: CRs, then an LF; true, or nil and "bad_chunk" at the first other
-- byte (libcurl's "Malformed encoding"), or the cosocket's error.
local function chunk_end(r)
  while true do
    local buf, pos = r.buf, r.pos
    local _, last = find(buf, "^\r*", pos)
    local c = byte(buf, last + 1)
    if c == 10 then
      r.pos = last + 2
      return true
    elseif c then
      return nil, "bad_chunk"
    end
    local ok, err = r:fill()
    if not ok then return nil, err end
  end
end

-- Reads the answer body as its headers frame it, handing it to `r:out(piece)` as it arrives;
-- true, or nil and a fault's name (and what fills in its words: for "oversize" the
-- Content-Length, when there is one; for "cut_body" the bytes missing) or the cosocket's error.
local function read_body(r, limit)
  if r.chunked then
    while true do
      local size, err = chunk_size(r)
      if not size then return nil, err end
      local line
      if size == 0 then
        -- trailers: none is used (RFC 9110, 6.5); one with a NUL, or without a colon and not
        -- folded, ends the answer there (libcurl refuses it after the body came, and the
        -- libcurl transport reads that so): what follows it is unknown, the connection not kept
        repeat
          line, err = r:line()
          if not line then return nil, err end
          local c = byte(line, 1)
          if c and (find(line, "\0", 1, true) or
                    (c ~= 32 and c ~= 9 and not find(line, ":", 1, true))) then
            r.keepalive = false
            return true
          end
        until line == ""
        return true
      end
      if size > limit - r.body_bytes then return nil, "oversize" end
      local ok
      ok, err = r:pass(size)
      if not ok then return nil, err end
      ok, err = chunk_end(r)
      if not ok then return nil, err end
    end
  end
  local length = r.length
  if length then
    if length > limit then return nil, "oversize", length end
    if length == 0 then return true end
    local ok, err = r:pass(length)
    if ok then return true end
    if err == "closed" then return nil, "cut_body", length - r.body_bytes end
    return nil, err
  end
  -- neither: the body runs to the end of the connection
  local ok, err = r:pass(math.huge)
  if ok or err == "closed" then return true end
  return nil, err
end

-- The status of a status line ("HTTP/1.0" or "HTTP/1.1", a space, three digits from 100, then
-- a space or the line's end: RFC 9112, 4) and whether its version keeps the connection (1.1);
-- for anything else nil and its fault: "http09" when it does not start "HTTP/", else
-- "status_line" (the rule of the libcurl transport's status_line_fault, csrc/transport_curl.c).
local function status_line(line)
  if sub(line, 1, 7) ~= "HTTP/1." then
    return nil, sub(line, 1, 5) == "HTTP/" and "status_line" or "http09"
  end
  local minor, space, a, b, c, after = byte(line, 8, 13)
  if not (c and (minor == 48 or minor == 49) and space == 32 and a >= 49 and a <= 57 and
          b >= 48 and b <= 57 and c >= 48 and c <= 57 and (after == nil or after == 32)) then
    return nil, "status_line"
  end
  return a * 100 + b * 10 + c - 5328, minor == 49 -- (5328: "000")
end

-- A header's value from index `from` of `line` when it is digits between optional spaces and
-- tabs (RFC 9110, 8.6, as the libcurl transport's length_value), as a number; else nil.
local function digits(line, from)
  local i, last = from, #line
  local c = byte(line, i)
  while c == 32 or c == 9 do
    i = i + 1
    c = byte(line, i)
  end
  local first = i
  while c and c >= 48 and c <= 57 do
    i = i + 1
    c = byte(line, i)
  end
  if i == first then return nil end
  local stop = i - 1
  while c == 32 or c == 9 do
    i = i + 1
    c = byte(line, i)
  end
  if i <= last then return nil end
  return tonumber(sub(line, first, stop))
end

-- Status line and headers: status and the header block (as libcurl gives it: its lines ended
-- by CRLF), the framing set on `r`; or nil, a fault's name or the cosocket's error, the status
-- if its line had come, "cut" when the connection closed after a whole line of the answer's
-- head (before one, libcurl's "Empty reply from server"), and "unanswered" when no whole line
-- of any head had come (libcurl's test for a resend on a new connection).
local function read_head(r)
  r.keep = true
  while true do
    local start = r.pos
    r.bare = false
    local line, err = r:line()
    if not line then return nil, err, nil, false, start == 1 end
    local status, keepalive = status_line(line)
    if not status then return nil, keepalive end -- (its fault)
    -- a NUL in any line of the head: in a status line it is an invalid one, in another line
    -- the "nul" fault (csrc/fault.c), each line checked before what it says is read, as libcurl does
    if r.nul and find(line, "\0", 1, true) then return nil, "status_line" end
    r.length, r.chunked, r.keepalive = false, false, keepalive
    local bytes = #line
    local final = status >= 200 and status or nil -- (a fault inside a 1xx's block has no code)
    local field = false -- (a field line of this block came: a folded line continues it)
    while true do
      line, err = r:line()
      if not line then return nil, err, final, true end
      if line == "" then break end
      if r.nul and find(line, "\0", 1, true) then return nil, "nul", final end
      bytes = bytes + #line + 2
      if bytes > MAX_HEADER_BYTES then return nil, "big_headers", final end
      -- a field line has a colon (RFC 9112, 5); a folded one (obs-fold: it starts with a space
      -- or a tab) continues the one before, and first in its block continues nothing (RFC
      -- 9112, 2.2): the "colon" fault (csrc/fault.c), as libcurl reads them
      local c = byte(line, 1)
      local colon = false
      if c == 32 or c == 9 then
        if not field then return nil, "colon", final end
      else
        colon = find(line, ":", 1, true)
        if not colon then return nil, "colon", final end
        field = true
      end
      -- only Content-Length, Transfer-Encoding and Connection matter here
      if c == 67 or c == 99 or c == 84 or c == 116 then -- C c T t
        -- (by their length first, then by plain finds: no pattern per line, which LuaJIT
        -- would not compile)
        local name = (colon == 15 or colon == 18 or colon == 11) and lower(sub(line, 1, colon - 1))
        if name == "content-length" then
          local length = digits(line, colon + 1)
          if not length then return nil, "bad_length", final end
          if r.length and r.length ~= length then -- RFC 9112, 6.3: end unknown
            return nil, "framing", final
          end
          r.length = length
        elseif name == "transfer-encoding" and find(lower(sub(line, 19)), "chunked", 1, true) then
          r.chunked = true
        elseif name == "connection" and find(lower(sub(line, 12)), "close", 1, true) then
          r.keepalive = false
        end
      end
    end
    if status >= 200 or status == 101 then
      local head = sub(r.buf, start, r.pos - 1)
      if r.bare then head = gsub(head, "\r?\n", "\r\n") end
      r.keep = false
      return status, head
    end -- a 1xx before the answer: read on
  end
end

-- The error of an attempt that ran out of time (`r` the reader, if the request was sent).
local function timed_out(started, post, code, r, length)
  if length then return failed("timeout_of", true, post, code, ms(started), r.body_bytes, length) end
  return failed("timeout", true, post, code, ms(started), r and r.body_bytes or 0)
end

-- One exchange of a request: `head` is what follows the target in the request (the request
-- line's end, Host, User-Agent, Authorization unless a download), `base` its URL's parts
-- (a table of scheme, host, port, authority, prefix, pool; nil: `target` is a whole URL).
-- `fresh` forces a new connection (after a reused one died unanswered), within the same
-- attempt: `started` and `deadline` are the first try's.
local function exchange(self, base, head, method, target, content_type, body, timeout, limit, stream,
                        fresh, started, deadline)
  local download = base == nil
  if body and type(body) ~= "string" then
    -- a body whose file stays on disk (the core's upload body): read whole here, where
    -- cosockets take strings; a file no longer what was checked is its error, unsent
    local text, err = body:read()
    if not text then return nil, err end
    body = text
  end
  local post = method ~= "GET" -- POST, DELETE: the server may have acted on them
  local scheme, host, port, prefix, path, authority, pool
  if download then
    scheme, host, port, path, authority = url.split(target)
    prefix, head = "", " HTTP/1.1\r\nHost: " .. authority .. USER_AGENT
  else
    scheme, host, port, authority, pool = base.scheme, base.host, base.port, base.authority, base.pool
    prefix, path = base.prefix, target
  end
  local t = now()
  started = started or t
  deadline = deadline or started + (timeout or self.timeout)
  local sock = ngx.socket.tcp()
  -- connecting within connect_timeout, sending and reading within what is left: one call
  local wait = most(ceil((deadline - t) * 1000), 1)
  sock:settimeouts(most(ceil(min(self.connect_timeout, deadline - t) * 1000), 1), wait, wait)
  if fresh then
    pool = { pool = scheme .. "://" .. authority .. "#" .. now() }
  elseif not pool then
    pool = { pool = scheme .. "://" .. authority }
  end
  local ok, err = sock:connect(host, port, pool)
  if not ok then
    if err == "timeout" then
      return failed("connect_timeout", false, post, nil, ms(started))
    elseif err == "connection refused" then
      return failed("refused", false, post, nil, host, port, ms(started))
    end
    return failed("connect", false, post, nil, tostring(err))
  end
  local reused = sock:getreusedtimes() > 0
  if scheme == "https" and not reused then
    local fine
    local by_connect = self.connect_timeout < deadline - now() -- which limit a stall meets
    sock:settimeout(most(ceil(min(self.connect_timeout, deadline - now()) * 1000), 1))
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
      return failed("connect_timeout", false, post, nil, ms(started))
    elseif not ok then
      sock:close()
      -- "20: unable to get local issuer certificate": OpenSSL's verify result, as libcurl words it
      local verify = match(tostring(err), "^%d+: (.*)$")
      if verify then return failed("certificate", false, post, nil, verify) end
      return failed("tls", false, post, nil, tostring(err))
    end
  end
  local request
  if body then
    request = method .. " " .. prefix .. path .. head .. "Content-Type: " .. content_type ..
      "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  else
    request = method .. " " .. prefix .. path .. head .. "\r\n"
  end
  if not reused then
    -- a new connection waited for its connect (and handshake): what is left now. (A pooled
    -- one came at once: the wait set above stands.)
    t = now()
    if deadline <= t then return timed_out(started, post) end
    wait = most(ceil((deadline - t) * 1000), 1)
    sock:settimeout(wait)
  end
  local sent
  sent, err = sock:send(request)
  local r = reader(sock, deadline, wait)
  local status, headers, cut, unanswered
  if sent then
    status, headers, err, cut, unanswered = read_head(r)
  else
    headers, unanswered = err, true
  end
  if not status then
    err, status = headers, err -- on failure: the error, and the status if one had come
    sock:close()
    if err == "timeout" then return timed_out(started, post) end
    -- (not one whole line of the answer came back, as libcurl's Curl_retry_request counts
    -- them: a part of a status line is lost with the connection; after even a 1xx libcurl does
    -- not resend)
    local lost = unanswered and (err == "closed" or find(tostring(err), "reset", 1, true))
    if reused and lost then
      -- a kept-alive connection the server had closed: a GET goes again on a new one; a POST
      -- may not, as the server may have acted on it
      if not post then
        return exchange(self, base, head, method, target, content_type, body, timeout, limit, stream,
                        true, started, deadline)
      end
      return failed("not_resent", true, post)
    end
    if not sent then
      return failed("send", true, post, nil, (gsub(tostring(err), "^%l", string.upper)))
    elseif err == "closed" then
      return failed(cut and "cut_headers" or "empty", true, post)
    elseif find(tostring(err), "reset by peer", 1, true) then
      return failed("reset", true, post, status)
    elseif err == "http09" or err == "status_line" then
      return failed(err, true, post)
    elseif err == "big_headers" or err == "bad_length" or err == "framing" or err == "nul" or
           err == "colon" then
      return failed(err, true, post, status)
    end
    return failed("other", true, post, status, tostring(err))
  end
  -- the body: kept, or for a streamed download's 2xx handed to its stream, and for its
  -- error answer read and dropped; any of them at most `limit` bytes
  r.limit = limit
  if not stream then
    r.out = keep
  elseif status >= 200 and status <= 299 then
    r.out, r.stream = to_stream, stream
  else
    r.out = drop
  end
  local whole, left = true, nil
  if method ~= "HEAD" and status ~= 204 and status ~= 304 then
    whole, err, left = read_body(r, limit)
  end
  if not whole then
    sock:close()
    if err == "oversize" and not download and status >= 300 then
      -- an error answer past max_response: its status decides its kind, as for any other;
      -- the error and its words are libcurl's (csrc/response.c), `left` the Content-Length
      return core.read_unread(status, headers, left or limit, left ~= nil, limit, post)
    elseif err == "oversize" and limit > 0x7fffffff then -- past what the words' %d holds
      return nil, core.error { kind = "bad_response", code = status, sent = true, retryable = false,
        error = string.format("answer larger than a download may be (%.0f bytes)", limit) }
    elseif err == "oversize" then
      return failed("oversize", true, post, status, download and "a download may be" or "max_response", limit)
    elseif err == "stream" then
      return nil, stream:error(status)
    elseif err == "timeout" then
      return timed_out(started, post, status, r, r.length)
    elseif err == "closed" then
      return failed("cut_chunked", true, post, status)
    elseif err == "cut_body" then
      return failed("cut_body", true, post, status, left)
    elseif err == "chunk_size" or err == "chunk_long" or err == "bad_chunk" or err == "big_headers" then
      return failed(err, true, post, status)
    elseif find(tostring(err), "reset by peer", 1, true) then
      return failed("reset", true, post, status)
    end
    return failed("other", true, post, status, tostring(err))
  end
  -- (a fresh connection's pool name is its own, so it is not kept: no pool per retry; nor is
  -- one with bytes past the answer)
  if r.keepalive and (r.chunked or r.length) and not fresh and r.pos > #r.buf then
    sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  else
    sock:close()
  end
  if stream then return status, headers, status <= 299 and r.body_bytes or "" end
  local parts = r.parts
  if parts then return status, headers, concat(parts) end
  return status, headers, r.answer or ""
end

---------------------------------------------------------------------------------------------
-- A call's own options, and streamed downloads
---------------------------------------------------------------------------------------------
-- The call's options (the 5th argument of transfer), checked as the C transport checks them:
-- timeout, max, path, sink.
local function options(opts, download)
  if opts == nil then return nil end
  local function bad(why) error("bad argument #6 to 'perform' (" .. why .. ")", 4) end
  if type(opts) ~= "table" then bad("table expected, got " .. type(opts)) end
  local timeout, max, path, sink = opts.timeout, opts.max, opts.path, opts.sink
  if timeout ~= nil and not (type(timeout) == "number" and timeout >= 0.001 and timeout <= 1e9) then
    bad("timeout must be a number of seconds from 0.001 to 1e9")
  end
  if max ~= nil and not (download and type(max) == "number" and max >= 1 and max <= 2 ^ 53 and
                         max == math.floor(max)) then
    bad("max is for downloads: a whole number of bytes from 1")
  end
  if path ~= nil and not (download and type(path) == "string" and path ~= "" and
                          not path:find("\0", 1, true)) then
    bad("path is for downloads: a file name (without a NUL byte)")
  end
  if sink ~= nil and not (download and path == nil and type(sink) == "function") then
    bad("sink is for downloads without a path: a function")
  end
  return timeout, max, path, sink
end

-- coroutine -> what it does now, for as long as it does it: the stream of the download it
-- makes (so a killed request's temporary can be removed), or true while it runs a sink.
local streams = setmetatable({}, { __mode = "k" })
local sinking = setmetatable({}, { __mode = "k" })
-- How many sinks may be running (a sink's thread killed inside it leaves this high: then
-- perform looks its coroutine up, as it does whenever this is not 0). At 0, perform need not
-- ask which coroutine runs it: coroutine.running is a call LuaJIT does not compile.
local sinks = 0

-- An error message of io's ("name: reason") without the name.
local function reason(msg, name)
  msg = tostring(msg)
  if msg:sub(1, #name + 2) == name .. ": " then return msg:sub(#name + 3) end
  return msg
end

-- What a sink raised, in words (as the C transport words it).
local function raised(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return string.format("%.14g", e) end
  return "(error object is a " .. type(e) .. " value)"
end

-- A streamed download's destination: a temporary file beside `path`, renamed to it once the
-- body is whole, or a sink. write(piece) is true, or nil and "stream" with error(status) then
-- saying why.
local Stream = {}
Stream.__index = Stream

local counter = 0

-- A new stream; for a path, nil and an invalid_request error (nothing sent) when its
-- temporary cannot be made, or `path` may not be replaced: a directory (the rename would
-- fail) or another node that is not a regular file (core.download_path_problem, the C
-- transport's own check).
local function new_stream(path, sink)
  if sink then return setmetatable({ sink = sink }, Stream) end
  local function cannot(why)
    return nil, core.error { kind = "invalid_request", sent = false, retryable = false,
      error = "cannot write " .. path .. ": " .. why }
  end
  local problem = core.download_path_problem(path)
  if problem then return cannot(problem) end
  local pid = ngx and ngx.worker.pid() or 0
  for _ = 1, 100 do
    counter = counter + 1
    local tmp = string.format("%s.part-%d-%d", path, pid, counter)
    local other = io.open(tmp, "rb") -- (io.open has no O_EXCL: never write over another file)
    if other then
      other:close()
    else
      local file, why = io.open(tmp, "wb")
      if not file then return cannot(reason(why, tmp)) end
      return setmetatable({ path = path, tmp = tmp, file = file }, Stream)
    end
  end
  return cannot("File exists")
end

function Stream:write(piece)
  if self.sink then
    local co = coroutine.running()
    sinking[co], sinks = true, sinks + 1
    local ok, more = pcall(self.sink, piece)
    sinking[co], sinks = nil, sinks - 1
    if not ok then
      self.kind, self.why = "cancelled", "download stopped by its sink: " .. raised(more)
    elseif more == false then
      self.kind, self.why = "cancelled", "download stopped by its sink (it returned false)"
    else
      return true
    end
    return nil, "stream"
  end
  local ok, why = self.file:write(piece)
  if ok then return true end
  self.kind, self.why = "invalid_request", "cannot write " .. self.path .. ": " .. reason(why, self.tmp)
  return nil, "stream"
end

-- The error of a stream that stopped its download (the answer's status, if one came).
function Stream:error(status)
  return core.error { kind = self.kind, code = status, sent = true, retryable = false, error = self.why }
end

-- A whole body: the file flushed, closed and renamed into place. true, or nil and the error.
function Stream:commit(status)
  if not self.file then return true end
  local file = self.file
  self.file = nil
  local ok, why = file:flush()
  local closed, cwhy = file:close()
  if ok and closed then ok, why = os.rename(self.tmp, self.path) else why = why or cwhy end
  if ok then return true end
  os.remove(self.tmp)
  self.kind, self.why = "invalid_request", "cannot write " .. self.path .. ": " .. reason(why, self.tmp)
  return nil, self:error(status)
end

-- No whole body: the temporary closed and removed, the final name left as it was.
function Stream:discard()
  if not self.file then return end
  self.file:close()
  self.file = nil
  os.remove(self.tmp)
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
  local self = setmetatable({
    base = base,
    timeout = o.timeout or 60,
    connect_timeout = o.connect_timeout or 10,
    max_response = o.max_response or 256 * 1024,
  }, Transport)
  -- the base URL's parts, split once: every API call goes to it, over one pool
  local scheme, host, port, _, authority = url.split(base)
  local parts = { scheme = scheme, host = host, port = port, authority = authority,
                  prefix = base:match("^https?://[^/?#]+(.*)$"), pool = { pool = scheme .. "://" .. authority } }
  -- what follows an API call's target in its request (the Authorization header is kept in
  -- this closure only)
  local head = " HTTP/1.1\r\nHost: " .. authority .. USER_AGENT .. "Authorization: Bearer " .. o.token .. "\r\n"

  -- transport:perform(method, path_or_url, content_type, body, opts), as in the C transport:
  -- `opts` (nil: none) the call's own `timeout`, and for a download `max` (bytes), `path` (a
  -- file to stream the body to, through a temporary renamed into place) or `sink` (a function
  -- that gets each piece as it arrives). A streamed download's 2xx returns its byte count.
  function self.perform(_, method, target, content_type, body, opts)
    if sinks > 0 and sinking[coroutine.running()] then
      error("attempt to use a faceswap client from inside its download's sink", 0)
    end
    local download = byte(target, 1) ~= 47 -- not "/"
    local timeout, max, path, sink
    if opts ~= nil then timeout, max, path, sink = options(opts, download) end
    if not download then
      return exchange(self, parts, head, method, target, content_type, body, timeout, self.max_response)
    end
    local co = coroutine.running()
    local problem = url.problem(target, false)
    if problem or method ~= "GET" then
      return failed("refused_url", false, true, nil, problem and "a URL" or "with POST",
        problem or "downloads are GET")
    end
    local stream
    if path or sink then
      local err
      stream, err = new_stream(path, sink)
      if not stream then return nil, err end
      streams[co] = stream
    end
    local status, headers, answer = exchange(self, nil, nil, "GET", target, nil, nil, timeout,
      max or MAX_DOWNLOAD_BYTES, stream)
    if not stream then return status, headers, answer end
    streams[co] = nil
    if status and status <= 299 then
      local ok, err = stream:commit(status)
      if not ok then return nil, err end
    else
      stream:discard()
    end
    return status, headers, answer
  end
  return self
end

-- A request that nginx killed (its task cancelled from the thread that spawned it) leaves no
-- temporary file behind: the scheduler calls this with its coroutine.
function Transport.abandon(_, co)
  local stream = streams[co]
  streams[co] = nil
  if stream then stream:discard() end
end

function Transport.close() end -- connections belong to nginx's pool

Transport.__tostring = function(self) return "faceswap.transport (" .. self.base .. ", nginx)" end

return M
