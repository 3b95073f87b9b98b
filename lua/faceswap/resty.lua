--- The client inside OpenResty.
-- faceswap.resty: the client inside OpenResty. nginx's cosockets move the bytes, so a call
-- yields to nginx instead of blocking the worker; tasks are nginx light threads and sleeping
-- is ngx.sleep. Requests are still checked and built, and answers read, by the C core: only
-- the transport and the scheduler differ from plain Lua. faceswap.new picks these by itself
-- when it runs inside nginx. Also here: callback(handler), a replyUrl endpoint.
--
-- `faceswap.new` picks this transport by itself inside nginx; a program calls only @{callback}.
-- @module faceswap.resty
local core = require "faceswap.core"
local task = require "faceswap.task"

local ngx = rawget(_G, "ngx")
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT
local now = core.now

local M = {}

local MAX_HEADER_BYTES = 64 * 1024
local MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
local KEEPALIVE_MS = 30000 -- as with libcurl: a connection idle longer is not reused
local POOL_SIZE = 64

local function pack(...) return { n = select("#", ...), ... } end

---------------------------------------------------------------------------------------------
-- HTTP/1.1 over a cosocket
---------------------------------------------------------------------------------------------
local function split_url(url)
  local scheme, authority, path = url:match("^(https?)://([^/?#]+)(.*)$")
  local host, port = authority:match("^%[(.-)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if path == "" then path = "/" end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), path, authority
end

-- The error object for a failed exchange: `sent` says whether any of the request left; `code`
-- the status of an answer that had begun to arrive. The texts are libcurl's for the same
-- faults (the README's fault table holds for both transports).
local function failed(kind, message, sent, post, code)
  return nil, core.error { kind = kind, error = message, sent = sent, code = code,
                           retryable = kind ~= "bad_response" and (not sent or not post) }
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
      if #self.buf > MAX_HEADER_BYTES then return nil, "headers too large" end
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

-- Reads the answer body as its headers frame it, at most `limit` bytes.
local function read_body(sock, framing, limit)
  if framing.chunked then
    local parts, total = {}, 0
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%s*(%x+)"), 16)
      if not size then return nil, "Illegal or missing hexadecimal sequence in chunked-encoding" end
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
    if framing.length > limit then return nil, "oversize" end
    if framing.length == 0 then return "" end
    local data, err, partial = sock:receive(framing.length)
    if data then return data end
    sock.body_bytes = #(partial or "")
    if err == "closed" then
      return nil, "transfer closed with " .. (framing.length - sock.body_bytes) .. " bytes remaining to read"
    end
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
-- or nil, the error, and the status if its line had come (and "cut" when the connection
-- closed after some of the header block).
local function read_head(sock)
  while true do
    local line, err, partial = sock:receive("*l")
    if not line then return nil, err, nil, partial ~= nil and partial ~= "" end
    local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
    if not status then return nil, "Received HTTP/0.9 when not allowed" end
    local block, framing = { line }, { keepalive = not line:find("^HTTP/1%.0") }
    local bytes = #line
    while true do
      line, err = sock:receive("*l")
      if not line then return nil, err, status >= 200 and status or nil, true end
      if line == "" then break end
      bytes = bytes + #line + 2
      if bytes > MAX_HEADER_BYTES then return nil, "headers too large", status end
      block[#block + 1] = line
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      name = name and name:lower()
      if name == "content-length" then
        local length = tonumber(value:match("^%d+$"))
        if not length then return nil, "Invalid Content-Length: value", status end
        if framing.length and framing.length ~= length then -- RFC 9112, 6.3: end unknown
          return nil, "answer with Content-Length headers that disagree", status
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
  local base = o.base_url
  local why = core.url_problem(base, true)
  if why then error("bad option 'base_url' (" .. why .. ")", 2) end
  if type(o.token) ~= "string" or o.token == "" or o.token:find("[%z\1-\32\127]") then
    error("bad option 'token' (a non-empty string without spaces or control bytes expected)", 2)
  end
  if o.ca_file ~= nil then
    -- cosockets verify with nginx's own store, which a client cannot replace
    error("bad option 'ca_file' (inside nginx the CA file is lua_ssl_trusted_certificate in nginx.conf)", 2)
  end
  local auth = "Authorization: Bearer " .. o.token .. "\r\n" -- kept in this closure only
  local self = setmetatable({
    base = base:gsub("/+$", ""),
    timeout = o.timeout or 60,
    connect_timeout = o.connect_timeout or 10,
    max_response = o.max_response or 256 * 1024,
  }, Transport)

  -- One exchange; `fresh` forces a new connection (after a reused one died unanswered), within
  -- the same attempt: `started` and `deadline` are the first try's.
  local function exchange(method, url, content_type, body, download, fresh, started, deadline)
    local post = method ~= "GET" -- POST, DELETE: the server may have acted on them
    local scheme, host, port, path, authority = split_url(url)
    started = started or now()
    deadline = deadline or started + self.timeout
    local function ms() return math.floor((now() - started) * 1000 + 0.5) end
    local sock = ngx.socket.tcp()
    sock:settimeout(math.max(math.ceil(math.min(self.connect_timeout, deadline - now()) * 1000), 1))
    local pool = scheme .. "://" .. authority .. (fresh and ("#" .. now()) or "")
    local ok, err = sock:connect(host, port, { pool = pool })
    if not ok then
      if err == "timeout" then
        return failed("timeout", "Connection timed out after " .. ms() .. " milliseconds", false, post)
      elseif err == "connection refused" then
        return failed("transport", "Failed to connect to " .. host .. " port " .. port .. " after " ..
          ms() .. " ms: Couldn't connect to server", false, post)
      end
      return failed("transport", "connect: " .. tostring(err), false, post)
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
        return failed("timeout", by_connect and "SSL connection timeout" or
          ("Connection timed out after " .. ms() .. " milliseconds"), false, post)
      elseif not ok then
        sock:close()
        -- "20: unable to get local issuer certificate": OpenSSL's verify result, as libcurl words it
        local reason = tostring(err):match("^%d+: (.*)$")
        local _, e = failed("transport", reason and ("SSL certificate problem: " .. reason) or
          ("TLS: " .. tostring(err)), false, post)
        e.retryable = false -- the same certificate fails the same way
        return nil, e
      end
    end
    local request = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. authority ..
      "\r\nUser-Agent: lua-faceswap/" .. core._VERSION:match("%S+$") .. "\r\n" ..
      (download and "" or auth) ..
      (body and ("Content-Type: " .. content_type .. "\r\nContent-Length: " .. #body ..
        "\r\n\r\n" .. body) or "\r\n")
    local function timed_out(code, r, length)
      return failed("timeout", "Operation timed out after " .. ms() .. " milliseconds with " ..
        (r and r.body_bytes or 0) .. (length and (" out of " .. length) or "") .. " bytes received",
        true, post, code)
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
        if not post then return exchange(method, url, content_type, body, download, true, started, deadline) end
        local _, e = failed("transport", "connection lost after the request was sent; not resent, " ..
          "since the server may have acted on it", true, post)
        e.retryable = false
        return nil, e
      end
      if not sent then
        return failed("transport", "Send failure: " .. tostring(err):gsub("^%l", string.upper), true, post)
      elseif err == "closed" then
        return failed("transport", cut and "connection closed before the answer's headers ended" or
          "Empty reply from server", true, post)
      elseif tostring(err):find("reset by peer", 1, true) then
        return failed("transport", "Recv failure: Connection reset by peer", true, post, status)
      elseif err == "Received HTTP/0.9 when not allowed" then
        local _, e = failed("transport", err, true, post)
        e.retryable = false
        return nil, e
      end
      return failed("transport", tostring(err), true, post, status)
    end
    local limit = download and MAX_DOWNLOAD_BYTES or self.max_response
    local answer
    if method == "HEAD" or status == 204 or status == 304 then
      answer = ""
    else
      answer, err = read_body(r, framing, limit)
    end
    if not answer then
      sock:close()
      if err == "oversize" then
        return failed("bad_response", download and ("answer larger than a download may be (" ..
          limit .. " bytes)") or ("answer larger than max_response (" .. limit .. " bytes)"), true, post)
      elseif err == "timeout" then
        return timed_out(status, r, framing.length)
      elseif err == "closed" then
        err = "transfer closed with outstanding read data remaining"
      elseif tostring(err):find("reset by peer", 1, true) then
        err = "Recv failure: Connection reset by peer"
      end
      return failed("transport", tostring(err), true, post, status)
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
    local problem = core.url_problem(target, false)
    if problem or method ~= "GET" then
      return nil, core.error { kind = "invalid_request", sent = false, retryable = false,
        error = "refused to fetch " .. (problem and ("a URL (" .. problem .. ")") or
          "with POST (downloads are GET)") }
    end
    return exchange("GET", target, nil, nil, true)
  end
  return self
end

function Transport.close() end -- connections belong to nginx's pool

Transport.__tostring = function(self) return "faceswap.transport (" .. self.base .. ", nginx)" end

--
---------------------------------------------------------------------------------------------
-- Tasks as light threads
---------------------------------------------------------------------------------------------
local semaphore

local Scheduler = {}
Scheduler.__index = Scheduler

local running = {} -- coroutine -> task, while its thread lives

function M.scheduler(transport)
  semaphore = semaphore or require "ngx.semaphore"
  return setmetatable({ transport = transport, count = 0, ended = semaphore.new() }, Scheduler)
end

function Scheduler:current()
  local t = running[coroutine.running()]
  if t and t._sched == self then return t end
  return nil
end

local function traceback(e)
  if type(e) == "string" then return debug.traceback(e, 2) end
  return e
end

-- Starts fn(...) in a light thread at once (nginx runs it until it first waits).
function Scheduler:spawn(fn, ...)
  local t = setmetatable({ _sched = self }, task.task_mt)
  local args = pack(...)
  self.count = self.count + 1
  ngx.thread.spawn(function()
    local co = coroutine.running()
    running[co] = t
    local r = pack(xpcall(fn, traceback, unpack(args, 1, args.n)))
    running[co] = nil
    t._result = r[1] and pack(unpack(r, 2, r.n)) or { n = 2, nil, r[2] }
    self.count = self.count - 1
    self.ended:post(1)
  end)
  return t
end

-- Lets the threads run: until one ends or `timeout` is over; 0 only yields once.
function Scheduler:step(timeout)
  if self:current() then error("bad argument #1 to 'step' (called from inside one of its tasks)", 3) end
  if timeout <= 0 then
    ngx.sleep(0)
  elseif self.count > 0 then
    self.ended:wait(timeout)
  end
  return self.count
end

function Scheduler:run()
  while self.count > 0 do self.ended:wait(3600) end
end

function Scheduler:transfer(method, target, content_type, body)
  return self.transport:perform(method, target, content_type, body)
end

function Scheduler:park(at)
  local t = assert(self:current(), "park outside the scheduler's tasks")
  t._sema = t._sema or semaphore.new()
  t._parked = true
  t._sema:wait(at and math.max(at - now(), 0) or 86400)
  t._parked = false
end

function Scheduler.wake(_, t)
  if t._parked then
    t._parked = false
    t._sema:post(1)
  end
end

--
---------------------------------------------------------------------------------------------
-- The callback endpoint
---------------------------------------------------------------------------------------------
local seen_here, seen_count = {}, 0

-- Whether this callback (jobid and status) came before; remembered in the shared dict named
-- `dict` (lua_shared_dict, all workers) when given, else in this worker.
local function first_time(key, dict)
  if dict then
    local shared = ngx.shared[dict]
    if not shared then error("faceswap.resty.callback: no lua_shared_dict '" .. dict .. "'", 3) end
    return (shared:add(key, true, 86400)) == true
  end
  if seen_here[key] then return false end
  if seen_count >= 10000 then seen_here, seen_count = {}, 0 end
  seen_here[key], seen_count = true, seen_count + 1
  return true
end

--- A replyUrl endpoint, for a `content_by_lua` handler.
-- In a content_by_lua handler: reads a replyUrl POST, answers 400 to a body that is not a
-- job, else 204 at once, then calls handler(job) once per jobid and status.
-- @tparam function handler called as `handler(job)` after the answer has gone; what it
-- raises is logged
-- @tparam[opt] table opts `dict`: the name of a `lua_shared_dict` that remembers the callbacks
-- seen, for all workers (without it, each worker remembers its own)
function M.callback(handler, opts)
  opts = opts or {}
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return ngx.exit(405)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    ngx.status = 413
    ngx.say("callback body too large (raise client_body_buffer_size)")
    return ngx.exit(413)
  end
  local job, err = core.decode(body or "")
  if not job then
    ngx.status = 400
    ngx.header.content_type = "text/plain"
    ngx.say(tostring(err))
    return ngx.exit(400)
  end
  ngx.status = 204
  ngx.send_headers()
  ngx.eof() -- answered: upstream waits for nobody's handler
  if first_time(job.jobid .. " " .. tostring(job.status), opts.dict) then
    local ok, problem = pcall(handler, job)
    if not ok then ngx.log(ngx.ERR, "faceswap callback handler: ", tostring(problem)) end
  end
end

return M
