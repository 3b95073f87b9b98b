-- faceswap: the module users require. A thin layer over the C core (faceswap.core): client
-- options, the client object, waiting for a job, sleep and the clock. Requests are validated
-- and built, and answers read, by the core; this file only decides what to call when.
local core = require "faceswap.core"

local M = { _VERSION = core._VERSION }

local build_headshot, build_get, read_response = core.build_headshot, core.build_get,
  core.read_response

M.decode = core.decode
M.now = core.now

-- Sleeps without blocking a host that has its own scheduler (OpenResty's ngx.sleep).
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("bad argument #1 to 'sleep' (non-negative number expected, got " ..
      tostring(seconds) .. ")", 2)
  end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep then return ngx.sleep(seconds) end
  return core.sleep(seconds)
end

---------------------------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------------------------

local client = {}
local client_mt = { __index = client, __name = "faceswap.client" }

function M.type(v)
  if getmetatable(v) == client_mt then return "client" end
  local t = core.type(v)
  if t == "transport" then return nil end
  return t
end

local option_checks = {
  token = "string", base_url = "string", channel = "string", reply_url = "string",
  encoding = "string", timeout = "number", connect_timeout = "number", max_response = "number",
}

local function check_options(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 3)
  end
  for name, value in pairs(opts) do
    local want = option_checks[name]
    if not want then
      error("bad argument #1 to 'new' (unknown option '" .. tostring(name) .. "')", 3)
    end
    if type(value) ~= want then
      error("bad argument #1 to 'new' (option '" .. name .. "' must be a " .. want ..
        ", got " .. type(value) .. ")", 3)
    end
  end
  if opts.encoding and opts.encoding ~= "multipart" and opts.encoding ~= "json" then
    error("bad argument #1 to 'new' (option 'encoding' must be \"multipart\" or \"json\")", 3)
  end
end

-- faceswap.new{token=, base_url=, ...}: a client. The token is handed to the C transport and
-- kept nowhere else, so no string this library makes can contain it.
function M.new(opts)
  opts = opts or {}
  check_options(opts)
  local token = opts.token or os.getenv("USEAPI_TOKEN")
  if not token or token == "" then
    error("bad argument #1 to 'new' (no token: pass token= or set USEAPI_TOKEN)", 2)
  end
  -- the defaults go through the core's own param checks now, so a bad one fails here and
  -- not on every headshot
  local encoding = opts.encoding or "multipart"
  local ok, method, err = pcall(build_headshot, "check", encoding, opts.channel, opts.reply_url)
  if not ok then
    error("bad argument #1 to 'new' (default " .. method:match("%((.*)%)$") .. ")", 2)
  elseif not method then -- only a too long replyUrl can fail with a fixed prompt
    error("bad argument #1 to 'new' (option 'reply_url': " .. err.error .. ")", 2)
  end
  local transport
  ok, transport = pcall(core.transport, {
    token = token,
    base_url = opts.base_url or "https://api.useapi.net/v1/faceswap",
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    max_response = opts.max_response,
  })
  if not ok then error("bad argument #1 to 'new' (" .. transport .. ")", 2) end
  return setmetatable({
    _transport = transport,
    _channel = opts.channel,
    _reply_url = opts.reply_url,
    _encoding = encoding,
  }, client_mt)
end

local function check_client(self, method)
  if getmetatable(self) ~= client_mt then
    error("bad argument #1 to '" .. method .. "' (faceswap.client expected, got " ..
      type(self) .. "; call it as client:" .. method .. "(...))", 3)
  end
end

-- One request: the transport moves the bytes, the core reads the answer.
local function exchange(self, op, method, path, content_type, body)
  local status, headers, answer = self._transport:perform(method, path, content_type, body)
  if not status then return nil, headers end
  return read_response(op, status, headers, answer)
end

function client:headshot(params)
  check_client(self, "headshot")
  local method, path, content_type, body = build_headshot(params, self._encoding,
    self._channel, self._reply_url)
  if not method then return nil, path end
  return exchange(self, "headshot", method, path, content_type, body)
end

-- GET /jobs/ ("job") or /jobs/cancel/ ("cancel") for a jobid or a job.
local function get(self, op, target)
  local method, path = build_get(op, target)
  if not method then return nil, path end
  return exchange(self, op, method, path)
end

function client:job(jobid)
  check_client(self, "job")
  return get(self, "job", jobid)
end

function client:cancel(jobid)
  check_client(self, "cancel")
  return get(self, "cancel", jobid)
end

local wait_defaults = { interval = 10, max_interval = 30, timeout = 900 }

local function check_wait_options(opts)
  for name, value in pairs(opts) do
    if name == "on_update" then
      if type(value) ~= "function" then
        error("bad argument #2 to 'wait' (option 'on_update' must be a function)", 3)
      end
    elseif not wait_defaults[name] then
      error("bad argument #2 to 'wait' (unknown option '" .. tostring(name) .. "')", 3)
    elseif type(value) ~= "number" or value ~= value or value <= 0 or value > 1e9 then
      error("bad argument #2 to 'wait' (option '" .. name .. "' must be a positive number " ..
        "of seconds, at most 1e9)", 3)
    end
  end
end

-- client:wait(job_or_jobid, opts): polls until the job's status is terminal. The interval
-- grows by half each poll up to max_interval (upstream refreshes every 15-60 s, so fast
-- polling only spends requests). Errors a retry could fix (a 429, a dropped connection) do not
-- end the wait; others return at once. Running out of time returns a timeout error whose
-- `job` is the last job seen.
function client:wait(target, opts)
  check_client(self, "wait")
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'wait' (table expected, got " .. type(opts) .. ")", 2)
  end
  check_wait_options(opts)
  local interval = opts.interval or wait_defaults.interval
  local max_interval = math.max(opts.max_interval or wait_defaults.max_interval, interval)
  local deadline = M.now() + (opts.timeout or wait_defaults.timeout)
  local on_update = opts.on_update
  local last, jobid
  if M.type(target) == "job" then
    last, jobid = target, target.jobid
    if last:done() then return last end
  elseif type(target) == "string" then
    jobid = target
  else
    error("bad argument #1 to 'wait' (jobid or job expected, got " .. type(target) .. ")", 2)
  end
  local delay = last and interval or 0
  while true do
    -- never sleep past the deadline, and always poll once at it before giving up
    if delay > 0 then M.sleep(math.min(delay, math.max(deadline - M.now(), 0))) end
    local job, err = self:job(jobid)
    if job then
      if on_update and (not last or last.status ~= job.status) then on_update(job) end
      last = job
      if job:done() then return job end
    elseif not err.retryable then
      return nil, err
    end
    if M.now() >= deadline then
      return nil, core.error {
        kind = "timeout", retryable = true, sent = true, job = last,
        error = string.format("job %s not done after %g seconds%s", tostring(jobid),
          opts.timeout or wait_defaults.timeout,
          last and (" (status " .. tostring(last.status) .. ")") or ""),
      }
    end
    delay = delay == 0 and interval or math.min(delay * 1.5, max_interval)
  end
end

function client:close()
  check_client(self, "close")
  self._transport:close()
end

client_mt.__close = function(self) self._transport:close() end
client_mt.__tostring = function(self)
  return "faceswap.client: " .. tostring(self._transport):gsub("^faceswap%.transport ", "")
end

return M
