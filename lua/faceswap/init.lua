--- Client for useapi.net's InsightFaceSwap API.
-- faceswap: the module users require. A thin layer over the C core (faceswap.core): client
-- options, the client object, waiting for a job, retries, tasks and the batch. Requests are
-- validated and built, and answers read, by the core; this file only decides what to call when.
--
-- `local faceswap = require "faceswap"`. Misuse raises an error naming the argument; what the
-- network or the server does returns `nil, err`, `err` an @{objects.error|error object}.
-- @module faceswap
local core = require "faceswap.core"
local retry = require "faceswap.retry"
local tasks = require "faceswap.task"
local logs = require "faceswap.log"
local authority = require "faceswap.channel"

local M = { _VERSION = core._VERSION }

local build_headshot, build_get, read_response = core.build_headshot, core.build_get,
  core.read_response
local build_command = core.build_command

--- Makes a job of job JSON: a callback's body, or what `job:json()` gave.
-- @function decode
-- @tparam string json the job as JSON text
-- @treturn[1] objects.job the job
-- @return[2] nil
-- @treturn[2] objects.error an error of kind `bad_response`, saying what is wrong with the text
M.decode = core.decode
--- Monotonic seconds: a clock for measuring time, which no change of the date moves.
-- @function now
-- @treturn number seconds (with a fraction) since an arbitrary point
M.now = core.now

--- Sleeps on the monotonic clock.
-- Sleeps without blocking a host that has its own scheduler: inside a task it yields to the
-- client's step(); in OpenResty it is ngx.sleep.
-- @tparam number seconds from 0 to 1e9
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 or seconds > 1e9 then
    error("bad argument #1 to 'sleep' (a number of seconds from 0 to 1e9 expected, got " ..
      tostring(seconds) .. ")", 2)
  end
  if tasks.sleep(seconds) then return end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.sleep then return ngx.sleep(seconds) end
  return core.sleep(seconds)
end

--- Calls `fn` until it returns a non-nil first value, an error that is not retryable, or the
-- attempts or deadline run out.
-- faceswap.retry(fn, opts): see retry.lua.
-- @tparam function fn called with no arguments; returns a value, or `nil, err`
-- @tparam[opt] table opts the retry options: `attempts` (5), `deadline` (seconds, none),
-- `min_delay` (10) and `max_delay` (30), the range of a 429's wait when the answer names none;
-- `base_delay` (1), the first backoff after a transport error, timeout or 5xx;
-- `max_retry_after` (120), the longest wait a 429 may ask for and get; `sleep`,
-- `random`, and `on_retry(err, attempt, delay)`, called before each wait
-- @return what `fn` returned last
-- @see faceswap.retry
function M.retry(fn, opts)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'retry' (function expected, got " .. type(fn) .. ")", 2)
  end
  local o = retry.options(opts or {}, "retry")
  o.sleep = o.sleep or M.sleep
  return retry.run(fn, o)
end

---------------------------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------------------------

local client = {}
local client_mt = { __index = client, __name = "faceswap.client" }

--- What kind of faceswap object `v` is, like `io.type`.
-- @param v any value
-- @treturn ?string `"client"`, `"job"`, `"error"`, `"task"`, or nil for anything else
function M.type(v)
  local mt = getmetatable(v)
  if mt == client_mt then return "client" end
  if mt == tasks.task_mt then return "task" end
  local t = core.type(v)
  if t == "transport" then return nil end
  return t
end

local option_checks = {
  token = "string", base_url = "string", channel = "string", reply_url = "string",
  encoding = "string", timeout = "number", connect_timeout = "number", max_response = "number",
  retry = "table", log = "function", ca_file = "string",
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
    local or_false = name == "retry" or name == "log"
    if type(value) ~= want and not (or_false and value == false) then
      error("bad argument #1 to 'new' (option '" .. name .. "' must be a " .. want ..
        (or_false and " or false" or "") .. ", got " .. type(value) .. ")", 3)
    end
  end
  if opts.encoding and opts.encoding ~= "multipart" and opts.encoding ~= "json" then
    error("bad argument #1 to 'new' (option 'encoding' must be \"multipart\" or \"json\")", 3)
  end
end

-- Whether this runs inside OpenResty, where requests must go through nginx's cosockets.
local function in_nginx()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.config ~= nil and
    ngx.config.ngx_lua_version ~= nil
end

--- Makes a client.
-- faceswap.new{token=, base_url=, ...}: a client. The token is handed to the C transport and
-- kept nowhere else, so no string this library makes can contain it.
-- @tparam[opt] table opts the options, all optional:
--
--  * `token` (string): the API token; default `$USEAPI_TOKEN`, and none at all raises
--  * `base_url` (string): default `$USEAPI_BASE_URL`, else `https://api.useapi.net/v1/faceswap`;
--    plain `http://` only for loopback hosts
--  * `channel`, `reply_url` (string): defaults for every command's `channel` and `replyUrl`
--  * `encoding` (string): `"multipart"` (the default) or `"json"`, for headshot bodies
--  * `timeout` (number): seconds for a whole attempt, default 60
--  * `connect_timeout` (number): seconds, default 10
--  * `max_response` (number): bytes, default 256 KiB; a larger answer is `bad_response`
--  * `retry` (table or false): the client's retry policy (the options of @{retry}), or false
--  * `log` (function or false): `log(level, message, what)` gets a line per request and
--    answer, retry wait and give-up; levels `"debug"`, `"info"`, `"warn"`; `what` one of
--    `"request"`, `"answer"`, `"retry"`, `"give_up"`. Without one, `$FACESWAP_LOG=debug|info|warn`
--    writes the lines to stderr, and inside OpenResty they go to nginx's error log
-- @treturn client the client
-- @raise on a bad option, naming it
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
  -- inside nginx the bytes go through nginx's cosockets: libcurl would block the worker
  local backend = in_nginx() and require("faceswap.resty") or nil
  local log = logs.new(opts.log, token, backend ~= nil)
  local policy
  if opts.retry ~= false then
    policy = retry.options(opts.retry or {}, "new", true)
    policy.sleep = policy.sleep or M.sleep
    policy.log = log
  end
  local transport
  local env_url = not opts.base_url and os.getenv("USEAPI_BASE_URL")
  if env_url == "" then env_url = nil end
  ok, transport = pcall(backend and backend.transport or core.transport, {
    token = token,
    base_url = opts.base_url or env_url or "https://api.useapi.net/v1/faceswap",
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    max_response = opts.max_response, ca_file = opts.ca_file,
  })
  if not ok then
    if env_url then transport = transport:gsub("^bad option 'base_url'", "bad USEAPI_BASE_URL") end
    error("bad argument #1 to 'new' (" .. transport .. ")", 2)
  end
  local sched = (backend or tasks).scheduler(transport)
  return setmetatable({
    _transport = transport,
    _sched = sched,
    _channel_of = authority.registry(sched),
    _retry = policy,
    _retry_opts = opts.retry or nil, -- what a call's own `retry` option is merged over
    _channel = opts.channel,
    _reply_url = opts.reply_url,
    _encoding = encoding,
    _log = log,
    -- a server or proxy that echoes the token gets it replaced in the error's text
    _redact = function(e) return logs.redact_error(e, { token }) end,
    _closed = false,
  }, client_mt)
end

-- Misuse raises at the line that called the client method (level 3 from here).
local function check_client(self, method)
  if getmetatable(self) ~= client_mt then
    error("bad argument #1 to '" .. method .. "' (faceswap.client expected, got " ..
      type(self) .. "; call it as client:" .. method .. "(...))", 3)
  end
  if self._closed then error("attempt to use a closed faceswap client", 3) end
end

-- What a core request builder raised on misuse, raised again at the line that called the
-- client method (the core's message carries a position inside this file).
local function misuse(msg)
  error((tostring(msg):gsub("^[^\n]-:%d+: ", "", 1)), 3)
end

-- One request: the transport moves the bytes (yielding inside a task), the core reads the
-- answer. `attempt` (1 when nil) is for the log; `xfer` (nil: none) the call's own transfer
-- options for the transport (`timeout`).
local function exchange(self, op, method, path, content_type, body, attempt, xfer)
  local logged = self._log and logs.request(self._log, method, path, body, attempt)
  local status, headers, answer = self._sched:transfer(method, path, content_type, body, xfer)
  if logged then logged(status, headers, answer) end
  if not status then return nil, self._redact(headers) end
  local value, err = read_response(op, status, headers, answer)
  if err ~= nil then self._redact(err) end
  return value, err
end

-- The same, under the retry policy (the call's own when `o`, its checked options, has one,
-- else the client's); the first call is made here, so a call that succeeds at once pays
-- nothing for the policy.
local function call(self, op, method, path, content_type, body, o)
  local policy, xfer = self._retry, nil
  if o then policy, xfer = o.policy, o.transfer end
  local started = policy and policy.deadline and M.now()
  local job, err = exchange(self, op, method, path, content_type, body, 1, xfer)
  if job or not policy or not retry.retryable(err) then return job, err end
  local attempt = 1
  return retry.run(function()
    attempt = attempt + 1
    return exchange(self, op, method, path, content_type, body, attempt, xfer)
  end, policy, nil, err, started, method .. " " .. path)
end

-- == Per-call options: one trailing table on every command method. ==

-- The options each kind of method takes: `timeout` and `retry` everywhere; `channel` where
-- the command has the common params; `wait` where the answer is a job to wait for.
local TAKES = {
  job = { timeout = true, retry = true, channel = true, wait = true },
  blocking = { timeout = true, retry = true, channel = true },
  plain = { timeout = true, retry = true },
  download = { timeout = true, retry = true, path = true, sink = true, max = true },
}
local JOB_COMMANDS_TEXT -- "changebg, headshot, picsi", from the command table (below)

-- What a call's options may not say, raised at the line that called the method (level 4
-- from here: bad_option, call_options, the method, its caller).
local function bad_option(name, arg, why)
  error("bad argument #" .. arg .. " to '" .. name .. "' (" .. why .. ")", 4)
end

local check_wait_options -- (below, with wait)

-- Checks a call's options table, argument `arg` of method `name` (of kind `kind`, a key of
-- TAKES; `params` its params, to compare channels). Returns what call() and the method use:
-- `policy` (the retry policy: the call's `retry` merged over the client's, nil for none),
-- `transfer` (options for the transport: `timeout`, and a download's `max`, `path`, `sink`),
-- `wait` (the wait options, when the call is to wait for its job), `channel`.
local function call_options(self, name, opts, arg, kind, params)
  if type(opts) ~= "table" then
    bad_option(name, arg, "table of options expected, got " .. type(opts))
  end
  local takes = TAKES[kind]
  local o = { policy = self._retry }
  for key, value in pairs(opts) do
    if not takes[key] then
      if key == "wait" then
        bad_option(name, arg, "option 'wait' is only for the commands that start a job (" ..
          JOB_COMMANDS_TEXT .. ")")
      elseif key == "channel" and (name == "account" or name == "delete_account") then
        bad_option(name, arg, "option 'channel': the channel is argument #1")
      elseif key == "channel" and name == "add_account" then
        bad_option(name, arg, "option 'channel': the channel is params.channel")
      end
      bad_option(name, arg, "unknown option '" .. tostring(key) .. "'")
    elseif key == "timeout" then
      if type(value) ~= "number" or value ~= value or value < 0.001 or value > 1e9 then
        bad_option(name, arg, "option 'timeout' must be a number of seconds from 0.001 to 1e9")
      end
      o.transfer = o.transfer or {}
      o.transfer.timeout = value
    elseif key == "retry" then
      if value == false then
        o.policy = nil
      elseif type(value) ~= "table" then
        bad_option(name, arg, "option 'retry' must be a table or false, got " .. type(value))
      else
        local merged = {}
        for k, v in pairs(self._retry_opts or {}) do merged[k] = v end
        for k, v in pairs(value) do merged[k] = v end
        local ok, policy = pcall(retry.options, merged, name, arg)
        if not ok then error((tostring(policy):gsub("^[^\n]-:%d+: ", "", 1)), 3) end
        policy.sleep = policy.sleep or M.sleep
        policy.log = self._log
        o.policy = policy
      end
    elseif key == "channel" then
      local ok, problem = pcall(build_headshot, "check", self._encoding, value)
      if not ok then
        bad_option(name, arg, "option 'channel': " .. tostring(problem):match("%((.*)%)$"))
      end
      local own = type(params) == "table" and params.channel or nil
      if own ~= nil and own ~= value then
        bad_option(name, arg, "option 'channel' and params.channel differ")
      end
      o.channel = value
    elseif key == "wait" then
      if type(value) == "table" then
        local ok, problem = pcall(check_wait_options, value, 1)
        if not ok then
          bad_option(name, arg, "option 'wait': " .. tostring(problem):match("%((.*)%)$"))
        end
        o.wait = value
      elseif value == true then
        o.wait = {}
      elseif value ~= false then
        bad_option(name, arg, "option 'wait' must be true, false or a table of wait " ..
          "options, got " .. type(value))
      end
    elseif key == "path" then
      if type(value) ~= "string" or value == "" then
        bad_option(name, arg, "option 'path' must be a file name")
      end
      o.transfer = o.transfer or {}
      o.transfer.path = value
    elseif key == "sink" then
      if type(value) ~= "function" then
        bad_option(name, arg, "option 'sink' must be a function, got " .. type(value))
      end
      o.transfer = o.transfer or {}
      o.transfer.sink = value
    else -- max
      if type(value) ~= "number" or value < 1 or value % 1 ~= 0 or value > 2 ^ 53 then
        bad_option(name, arg, "option 'max' must be a whole number of bytes from 1")
      end
      o.transfer = o.transfer or {}
      o.transfer.max = value
    end
  end
  if o.transfer and o.transfer.path and o.transfer.sink then
    bad_option(name, arg, "options 'path' and 'sink' exclude each other")
  end
  return o
end

local wait_for -- (below, with client:wait)

-- What a job command returns: its answer, or (with the `wait` option) the job once it has
-- ended, the polls under the call's timeout.
local function answer(self, o, job, err)
  if not (job and o and o.wait) then return job, err end
  return wait_for(self, job, o.wait, o.transfer)
end

--- A client, made by @{new}. Its methods block outside a task; inside one of its tasks (see
-- @{client:spawn}) they yield, so that many run at once. A closed client raises on every method
-- but `close`. `tostring(client)` names its base URL, never its token.
-- @type client

--- Starts a headshot job (POST /headshot).
-- @tparam string|table params the prompt, or a table: `prompt` (required), `channel`,
-- `replyUrl`, `replyRef` (at most 1024 characters each), `options`
-- @tparam[opt] table opts this call's options: `timeout` (seconds per attempt), `retry` (retry
-- options merged over the client's, or false), `channel` (this call's default channel),
-- `wait` (true, or the options of @{client:wait}: return the job once it has ended)
-- @treturn[1] objects.job the job, `status` `"started"` (with `wait`: once it has ended)
-- @return[2] nil
-- @treturn[2] objects.error what went wrong; a request the server would refuse with 400 fails
-- before anything is sent, with the server's own text
function client:headshot(params, opts)
  -- the checks of check_client and build inline: a round trip makes no call it can spare
  if getmetatable(self) ~= client_mt or self._closed then check_client(self, "headshot") end
  local o = opts ~= nil and call_options(self, "headshot", opts, 2, "job", params) or nil
  local ok, method, path, content_type, body = pcall(build_headshot, params, self._encoding,
    o and o.channel or self._channel, self._reply_url)
  if not ok then misuse(method) end
  if not method then return nil, path end
  if not o then return call(self, "headshot", method, path, content_type, body) end
  return answer(self, o, call(self, "headshot", method, path, content_type, body, o))
end

-- GET /jobs/ ("job") or /jobs/cancel/ ("cancel") for a jobid or a job.
-- A jobid is checked before it is sent: a bad one passed in is misuse (raised at the line
-- that called client:job or client:cancel, through their tail call), but one inside a job the
-- server sent is the server's doing, and comes back as bad_response. `o`: the call's options
-- (with_retry), or its transfer options (without).
local function get(self, op, target, with_retry, level, o)
  local ok, method, path = pcall(build_get, op, target)
  if not ok then
    local why = tostring(method):gsub("^[^\n]-:%d+: ", "", 1)
    if M.type(target) ~= "job" then error(why, level or 2) end
    return nil, core.error {
      kind = "bad_response", sent = false, retryable = false,
      error = "the server sent a jobid that cannot be sent back (" ..
        (why:match("%((.*)%)$") or why) .. ")",
    }
  end
  if not method then return nil, path end
  if with_retry then return call(self, op, method, path, nil, nil, o) end
  return exchange(self, op, method, path, nil, nil, 1, o)
end

--- Fetches a job (GET /jobs/?jobid=).
-- @tparam string|objects.job jobid the jobid, or a job
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] objects.job the job as the server has it now
-- @return[2] nil
-- @treturn[2] objects.error
function client:job(jobid, opts)
  check_client(self, "job")
  local o = opts ~= nil and call_options(self, "job", opts, 2, "plain") or nil
  -- not a tail call, so that misuse points at the caller on 5.1 too (its tail calls leave no line)
  local job, err = get(self, "job", jobid, true, 3, o)
  return job, err
end

--- Cancels a job (GET /jobs/cancel/?jobid=).
-- @tparam string|objects.job jobid the jobid, or a job
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] objects.job the job, `status` `"cancelled"`
-- @return[2] nil
-- @treturn[2] objects.error
function client:cancel(jobid, opts)
  check_client(self, "cancel")
  local o = opts ~= nil and call_options(self, "cancel", opts, 2, "plain") or nil
  local job, err = get(self, "cancel", jobid, true, 3, o)
  return job, err
end

-- == The other commands: one method per row of the core's command table (csrc/command.c);
-- == docs/commands.md describes them. ==

-- The channel lock. A blocking command holds its channel upstream for seconds, and a second
-- call meanwhile is refused; so the client runs one blocking command per channel at a time and
-- the others wait their turn (parked inside a task, driving the other tasks where the call
-- cannot yield). Calls that name no channel share one lock of their own. The lock is a
-- channel's exclusive hold (lua/faceswap/channel.lua), released whatever the call does.

-- The methods below are made from the table; their reference:

--- Saves the face in an image under a name (POST /saveid). Blocking: it holds its channel.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:saveid
-- @tparam[opt] table params `idname`, `image`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job `"faceswap-saveid"`, `completed` or `failed` (read `content`)
-- @return[2] nil
-- @treturn[2] objects.error

--- Puts saved faces (names separated by commas) on an image (POST /swapid). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:swapid
-- @tparam[opt] table params `idname`, `image`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the swapped image in `attachments`
-- @return[2] nil
-- @treturn[2] objects.error

--- Lists the saved faces' names (POST /listid). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:listid
-- @tparam[opt] table params none required; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the names in `content`
-- @return[2] nil
-- @treturn[2] objects.error

--- Makes a saved face the default (POST /setid). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:setid
-- @tparam[opt] table params `idname`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the bot's reply in `content`
-- @return[2] nil
-- @treturn[2] objects.error

--- Deletes a saved face (DELETE /delid, form body). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:delid
-- @tparam[opt] table params `idname`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the bot's reply in `content`
-- @return[2] nil
-- @treturn[2] objects.error

--- Deletes every saved face (DELETE /delall, form body). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:delall
-- @tparam[opt] table params none required; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the bot's reply in `content`
-- @return[2] nil
-- @treturn[2] objects.error

--- Swaps the default face onto an image posted in the channel (POST /inswapper). Blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:inswapper
-- @tparam[opt] table params `targetMessageId`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry` and `channel` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the image in `attachments`
-- @return[2] nil
-- @treturn[2] objects.error

--- Puts the face of `source_image` on `target_image_gif_or_video` (POST /picsi). Counts as blocking.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:picsi
-- @tparam[opt] table params `source_image`, `target_image_gif_or_video`, `options`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry`, `channel` and `wait` (as for
-- @{client:headshot})
-- @treturn[1] objects.job a finished result, or a job (`status` `"started"`) for @{client:wait}
-- @return[2] nil
-- @treturn[2] objects.error

--- Replaces an image's background with the one described (POST /changebg). A job, like a headshot.
-- A file param is a path or `{data = bytes, filename = name[, content_type = type]}`
-- (docs/commands.md).
-- @function client:changebg
-- @tparam[opt] table params `image`, `a_background_photo_of`, `options`; `channel`, `replyUrl`, `replyRef`
-- @tparam[opt] table opts this call's `timeout`, `retry`, `channel` and `wait` (as for
-- @{client:headshot})
-- @treturn[1] objects.job the job, `status` `"started"`, for @{client:wait}
-- @return[2] nil
-- @treturn[2] objects.error

--- The ids of the jobs running now (GET /jobs).
-- @function client:jobs
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] {string,...} the jobids
-- @return[2] nil
-- @treturn[2] objects.error

--- Every configured account (GET /account).
-- @function client:accounts
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] table accounts keyed by channel: `{channel, server, discord, credits = {timestamp,
-- total, used}}`
-- @return[2] nil
-- @treturn[2] objects.error

--- One account (GET /account/<channel>).
-- @function client:account
-- @tparam string channel
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] table `{channel, server, discord, credits = {timestamp, total, used}}`
-- @return[2] nil
-- @treturn[2] objects.error

--- Configures an account (POST /account/<channel>, JSON).
-- @function client:add_account
-- @tparam table params `channel`, `server`, `discord` (the account's Discord token), all
-- required
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] objects.error

--- Removes an account's configuration (DELETE /account/<channel>).
-- @function client:delete_account
-- @tparam string channel
-- @tparam[opt] table opts this call's `timeout` and `retry` (as for @{client:headshot})
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] objects.error

M.commands = core.commands()

do
  local names = {}
  for _, cmd in ipairs(M.commands) do
    if cmd.mode == "job" or cmd.mode == "either" then names[#names + 1] = cmd.name end
  end
  table.sort(names)
  JOB_COMMANDS_TEXT = table.concat(names, ", ")
end

-- Every command's method: `client:name(params, opts)`; the commands that take no params at
-- all (jobs, accounts) take only the options, `client:jobs(opts)`.
for _, cmd in ipairs(M.commands) do
  local name = cmd.name
  local blocking = cmd.mode == "blocking" or cmd.mode == "either"
  local kind = (cmd.mode == "job" or cmd.mode == "either") and "job" or
    cmd.common and "blocking" or "plain"
  local no_params = not cmd.common and not cmd.path_channel and #cmd.fields == 0
  client[name] = client[name] or function(self, params, opts)
    check_client(self, name)
    if no_params then
      if opts ~= nil then
        error("bad argument #2 to '" .. name .. "' (" .. name .. " takes no params: its " ..
          "options are argument #1)", 2)
      end
      params, opts = nil, params
    end
    local o = opts ~= nil and call_options(self, name, opts, no_params and 1 or 2, kind,
      params) or nil
    local ok, method, path, content_type, body, channel = pcall(build_command, name, params,
      o and o.channel or self._channel, self._reply_url)
    if not ok then error(method, 2) end
    if not method then return nil, path end
    local result, err
    if not blocking then
      result, err = call(self, name, method, path, content_type, body, o)
      if err ~= nil and type(params) == "table" and type(params.discord) == "string" then
        err = logs.redact_error(err, { params.discord }) -- add_account's Discord token
      end
    else
      -- held alone, and released whatever happens (a log function or on_retry that raises)
      result, err = self._channel_of(channel):exclusive(call, self, name, method, path,
        content_type, body, o)
    end
    -- a body that reads a file as it is sent holds the file open: let go of it now, not at
    -- the next collection
    if type(body) == "userdata" then body:close() end
    return answer(self, o, result, err)
  end
end

local wait_defaults = { interval = 10, max_interval = 30, timeout = 900, max_failures = 5 }

function check_wait_options(opts, level)
  for name, value in pairs(opts) do
    if name == "on_update" or name == "on_error" then
      if type(value) ~= "function" then
        error("bad argument #2 to 'wait' (option '" .. name .. "' must be a function)", level)
      end
    elseif name == "max_failures" then
      if type(value) ~= "number" or value < 1 or value % 1 ~= 0 or value > 1e9 then
        error("bad argument #2 to 'wait' (option 'max_failures' must be a whole number " ..
          "from 1)", level)
      end
    elseif not wait_defaults[name] then
      error("bad argument #2 to 'wait' (unknown option '" .. tostring(name) .. "')", level)
    elseif type(value) ~= "number" or value ~= value or value <= 0 or value > 1e9 then
      error("bad argument #2 to 'wait' (option '" .. name .. "' must be a positive number " ..
        "of seconds, at most 1e9)", level)
    end
  end
end

--- Waits until a job has ended.
-- client:wait(job_or_jobid, opts): polls until the job's status is terminal. The interval
-- grows by half each poll up to max_interval (upstream refreshes every 15-60 s, so fast
-- polling only spends requests). Errors a retry could fix (a 429, a dropped connection) do not
-- end the wait unless max_failures polls in a row meet one (then the last is returned, with
-- `job` the last job seen); others return at once. Running out of time returns a timeout
-- error whose `job` is the last job seen and `last_error` the last error met.
-- client:wait(nil, err) returns nil, err: client:wait(client:headshot(p)) reports the headshot's.
-- @tparam string|objects.job target a jobid or a job (or `nil, err`, which come back as they are)
-- @tparam[opt] table opts `interval` (the first poll's delay, 10 s), `max_interval` (30 s),
-- `timeout` (overall, 900 s), `max_failures` (5 polls in a row that fail), `on_update(job)`
-- (called on every change of status)
-- @treturn[1] objects.job the job once its status is terminal (`completed`, `failed`,
-- `moderated` or `cancelled`)
-- @return[2] nil
-- @treturn[2] objects.error kind `timeout` (with `err.job` the last job seen and `err.last_error`)
-- or the error that ended it
-- @raise on bad options, and on a nil target without an error object:
-- `client:wait(client:headshot(p), opts)` has lost the headshot's error (pass `{wait = opts}`
-- to the call instead)
function client:wait(target, opts)
  check_client(self, "wait")
  if target == nil and M.type(opts) == "error" then return nil, opts end
  if target == nil then
    -- client:wait(client:headshot(p), {...}): a call that is not last in an argument list
    -- gives only its first value, so the headshot's error is gone by now
    error("bad argument #1 to 'wait' (jobid or job expected, got nil: to keep a failed " ..
      "call's error, pass { wait = ... } to the call itself, or check its result first)", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'wait' (table expected, got " .. type(opts) .. ")", 2)
  end
  check_wait_options(opts, 3)
  if M.type(target) ~= "job" and type(target) ~= "string" then
    error("bad argument #1 to 'wait' (jobid or job expected, got " .. type(target) .. ")", 2)
  elseif type(target) == "string" then
    local ok, problem = pcall(build_get, "job", target) -- misuse is reported as wait's
    if not ok then error((tostring(problem):gsub("^.-bad argument #1 to 'job'", "bad argument #1 to 'wait'")), 2) end
  end
  local job, err = wait_for(self, target, opts)
  return job, err
end

-- The loop of client:wait, for a target and options already checked; `xfer`: the transfer
-- options of each poll (a call's own `timeout`), nil for the client's.
function wait_for(self, target, opts, xfer)
  local interval = opts.interval or wait_defaults.interval
  local max_interval = math.max(opts.max_interval or wait_defaults.max_interval, interval)
  local deadline = M.now() + (opts.timeout or wait_defaults.timeout)
  local max_failures = opts.max_failures or wait_defaults.max_failures
  local on_update, on_error = opts.on_update, opts.on_error
  local last, jobid, last_error, failures
  if M.type(target) == "job" then
    last, jobid = target, target.jobid
    -- a blocking command's finished result (picsi's, for one) has no status to wait for
    if last:done() or last.status == nil then return last end
  else
    jobid = target
  end
  local delay = last and interval or 0
  failures = 0
  while true do
    -- never sleep past the deadline, and always poll once at it before giving up
    if delay > 0 then M.sleep(math.min(delay, math.max(deadline - M.now(), 0))) end
    local job, err = get(self, "job", target, false, nil, xfer) -- this loop is the retry policy
    if job then
      failures = 0
      if on_update and (not last or last.status ~= job.status) then on_update(job) end
      last = job
      if job:done() then return job end
    else
      failures, last_error = failures + 1, err
      if on_error then on_error(err, failures) end
      if not err.retryable or failures >= max_failures then
        if err.job == nil then err.job = last end
        return nil, err
      end
    end
    if M.now() >= deadline then
      return nil, core.error {
        kind = "timeout", retryable = true, sent = true, job = last, last_error = last_error,
        error = string.format("job %s not done after %g seconds%s%s", tostring(jobid),
          opts.timeout or wait_defaults.timeout,
          last and (" (status " .. tostring(last.status) .. ")") or "",
          failures > 0 and ("; last poll: " .. tostring(last_error)) or ""),
      }
    end
    delay = delay == 0 and interval or math.min(delay * 1.5, max_interval)
  end
end

--- Downloads a result.
-- client:download(url[, opts]): the bytes at an attachment URL, or nil, err. The token is not
-- sent (the URL is not the API's); https only, or plain http to a loopback host. With
-- `path`, the body goes to a temporary file in the same directory as it arrives, renamed to
-- `path` once complete (on any failure it is removed and `path` is left as it was); with
-- `sink`, each piece goes to `sink(chunk)` as it arrives, in order (`false` or an error from
-- the sink stops the transfer: a `cancelled` error). Neither holds the body in memory.
-- @tparam string url an attachment URL (`job:urls()`)
-- @tparam[opt] table opts `path` (a file name) or `sink` (a function), `max` (bytes, default
-- 64 MiB: a larger body is `bad_response`), and this call's `timeout` and `retry` (as for
-- @{client:headshot}; a sink that has had a piece is never retried)
-- @treturn[1] string|integer the bytes, or with `path` or `sink` their number
-- @return[2] nil
-- @treturn[2] objects.error
function client:download(url, opts)
  check_client(self, "download")
  if type(url) ~= "string" then
    error("bad argument #1 to 'download' (absolute URL expected, got " .. type(url) .. ")", 2)
  end
  local o = opts ~= nil and call_options(self, "download", opts, 2, "download") or nil
  if not url:find("^%a[%w+.-]*://") then -- URLs come from the server: its mistake is no raise
    return nil, core.error { kind = "invalid_request", sent = false, retryable = false,
      error = string.format("refused to fetch %q (not an absolute URL)", url:sub(1, 60)) }
  end
  local policy, xfer = self._retry, nil
  if o then policy, xfer = o.policy, o.transfer end
  local sink = xfer and xfer.sink
  local delivered = false -- a piece went to the sink: the download cannot start again
  if sink then
    xfer = { timeout = xfer.timeout, max = xfer.max, sink = function(chunk)
      delivered = true
      return sink(chunk)
    end }
  end
  local attempt = 0
  local function once()
    attempt = attempt + 1
    local logged = self._log and logs.request(self._log, "GET", url, nil, attempt)
    local status, headers, body = self._sched:transfer("GET", url, nil, nil, xfer)
    if logged then logged(status, headers, body) end -- (streamed: the byte count)
    if not status then
      if delivered then headers.retryable = false end
      return nil, headers
    end
    if status >= 200 and status < 300 then return body end
    return nil, core.error { -- as for API calls: 3xx (never followed) and 5xx are server
      kind = status == 404 and "not_found" or (status >= 500 or status < 400) and "server" or
        "bad_response",
      code = status, error = "download failed with HTTP " .. status, sent = true,
      retryable = status >= 500 and not delivered,
    }
  end
  if not policy then return once() end
  return retry.run(once, policy, nil, nil, nil, logs.request_name("GET", url))
end

--
---------------------------------------------------------------------------------------------
-- Tasks
---------------------------------------------------------------------------------------------

--- Starts `fn(...)` as a task of this client: its calls yield instead of blocking.
-- @tparam function fn the task's body
-- @param ... its arguments
-- @treturn faceswap.task.task the task
function client:spawn(fn, ...)
  check_client(self, "spawn")
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  return self._sched:spawn(fn, ...)
end

--- Drives the transfers and tasks for at most `timeout` seconds.
-- @tparam[opt=0] number timeout seconds; 0 never blocks
-- @treturn integer the number of tasks still running
function client:step(timeout)
  check_client(self, "step")
  if timeout == nil then timeout = 0 end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to 'step' (a number of seconds from 0 expected, got " ..
      tostring(timeout) .. ")", 2)
  end
  return self._sched:step(math.min(timeout, 1e9))
end

--- Steps until no task of this client runs.
-- @raise when called from inside one of its tasks
function client:run()
  check_client(self, "run")
  if self._sched:current() then
    error("bad argument #1 to 'run' (called from inside one of its tasks)", 2)
  end
  self._sched:run()
end

--- The descriptor a host's event loop watches for readability: it turns readable when `step`
-- has work. It is the transport's epoll descriptor, the same from `new` to `close`. A host
-- watches it, arms one timer from `next_wakeup()`, and calls `step(0)` when either fires.
-- @treturn ?integer the descriptor; nil in OpenResty, where nginx drives the requests itself
-- @treturn[opt] string why there is none
function client:fd()
  check_client(self, "fd")
  return self._sched:fd()
end

--- The seconds until `step` is due even if `fd()` stays quiet: 0 when a task can run now, else
-- the sooner of libcurl's next timer and the end of the first task sleep.
-- @treturn ?number nil when nothing is pending (and in OpenResty)
function client:next_wakeup()
  check_client(self, "next_wakeup")
  return self._sched:next_wakeup()
end

---------------------------------------------------------------------------------------------
-- The batch
---------------------------------------------------------------------------------------------

local NO_RETRY = { attempts = 1 }
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT
local function pack(...) return { n = select("#", ...), ... } end

-- The commands a batch runs: those whose answer is a job to wait for.
local BATCH_COMMANDS = { headshot = true, changebg = true }

local function check_batch(list, opts)
  if type(list) ~= "table" then
    error("bad argument #1 to 'batch' (table expected, got " .. type(list) .. ")", 3)
  end
  for i = 1, #list do
    local kind = type(list[i])
    if kind ~= "string" and kind ~= "table" then
      error("bad argument #1 to 'batch' (item " .. i .. " is a " .. kind ..
        ", not a prompt or params table)", 3)
    end
    local command = kind == "table" and list[i].command or nil
    if command ~= nil and not BATCH_COMMANDS[command] then
      error("bad argument #1 to 'batch' (item " .. i .. ": command must be \"headshot\" or " ..
        "\"changebg\", got " .. (type(command) == "string" and ("\"" .. command .. "\"") or
        type(command)) .. ")", 3)
    end
  end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'batch' (table expected, got " .. type(opts) .. ")", 3)
  end
  for name, value in pairs(opts) do
    if name == "concurrency" then
      if type(value) ~= "number" or value < 1 or value % 1 ~= 0 then
        error("bad argument #2 to 'batch' (option 'concurrency' must be a whole number from 1)", 3)
      end
    elseif name == "on_update" or name == "stop" or name == "on_send" then
      if type(value) ~= "function" then
        error("bad argument #2 to 'batch' (option '" .. name .. "' must be a function)", 3)
      end
    elseif name == "channels" then
      local ok = value == "all" or (type(value) == "table" and #value > 0)
      for k = 1, ok and value ~= "all" and #value or 0 do
        ok = ok and type(value[k]) == "string" and value[k] ~= ""
      end
      if not ok then
        error("bad argument #2 to 'batch' (option 'channels' must be \"all\" or an array " ..
          "of channel ids)", 3)
      end
    elseif name == "wait" then
      if type(value) == "table" then
        local ok, msg = pcall(check_wait_options, value, 1)
        if not ok or value.on_update then
          error("bad argument #2 to 'batch' (option 'wait': " .. (ok and
            "use the batch's own on_update" or msg:match("%((.*)%)$")) .. ")", 3)
        end
      elseif type(value) ~= "boolean" then
        error("bad argument #2 to 'batch' (option 'wait' must be a table of wait options, " ..
          "true or false)", 3)
      end
    else
      error("bad argument #2 to 'batch' (unknown option '" .. tostring(name) .. "')", 3)
    end
  end
end

-- The request for one batch item on one channel (nil: the client's default): a headshot for a
-- prompt or params table, or {command = "changebg", ...}. The item's own channel wins.
local function build_item(self, item, channel)
  local command = type(item) == "table" and item.command or "headshot"
  if command == "headshot" then
    if type(item) == "table" and item.command then
      local copy = {}
      for k, v in pairs(item) do if k ~= "command" then copy[k] = v end end
      item = copy
    end
    return "headshot", build_headshot(item, self._encoding, channel or self._channel,
      self._reply_url)
  end
  local params = {}
  for k, v in pairs(item) do if k ~= "command" then params[k] = v end end
  return command, build_command(command, params, channel or self._channel, self._reply_url)
end

-- The key of the client's default channel in a batch's tables.
local NO_CHANNEL = {}

-- The file params of each command, by name: { changebg = { image = true }, ... }.
local FILE_PARAMS = {}
for _, cmd in ipairs(core.commands()) do
  for _, f in ipairs(cmd.fields) do
    if f.kind == "file" then
      FILE_PARAMS[cmd.name] = FILE_PARAMS[cmd.name] or {}
      FILE_PARAMS[cmd.name][f.name] = true
    end
  end
end

-- A batch item whose files are opened once, at its turn: a copy of it whose file paths are
-- files opened (core.upload_file), and the files, or the item itself when it has none. Every
-- request built for it (on each account it is tried on, on each retry) sends from the same
-- descriptor, and what was checked is what is sent. A path that cannot be opened is left as
-- it is: the build says why, as for any other item.
local function open_files(item)
  local fields = type(item) == "table" and FILE_PARAMS[item.command]
  if not fields then return item, nil end
  local copy, files = {}, {}
  for k, v in pairs(item) do
    if fields[k] and type(v) == "string" then
      local f = core.upload_file(v)
      if f then v, files[#files + 1] = f, f end
    end
    copy[k] = v
  end
  return copy, files
end

-- Lets go of an item's files and of the bodies built to send them, once it has its result.
local function close_files(files, built)
  if not files then return end
  for _, f in ipairs(files) do f:close() end
  for _, r in pairs(built) do
    if type(r[5]) == "userdata" then r[5]:close() end
  end
end

-- Checks every item with the core's own request builders before anything is sent: misuse
-- raises at the line that called client:batch, naming the item ("bad item #5 to 'batch'
-- (prompt is not valid UTF-8)"). Returns, per item, the request built (kept for headshots,
-- whose bodies are small; a changebg item's file, opened and sniffed here, is let go of at
-- once and opened again at its turn, so a long batch holds no descriptor per item) or the
-- item's local error (a required param missing, a file that cannot be read), its result.
-- An item is checked with its own channel, else the batch's first (nil: the client's default).
local function check_items(self, list, channels)
  for k = 1, type(channels) == "table" and #channels or 0 do
    local ok, problem = pcall(build_headshot, "check", self._encoding, channels[k])
    if not ok then
      error("bad argument #2 to 'batch' (option 'channels': item " .. k .. ": " ..
        tostring(problem):match("%((.*)%)$") .. ")", 3)
    end
  end
  local first = type(channels) == "table" and channels[1] or nil
  local prebuilt, local_errors = {}, {}
  for i = 1, #list do
    local item = list[i]
    local channel = type(item) == "table" and item.channel or first
    local r = pack(pcall(build_item, self, item, channel))
    if not r[1] then
      local why = tostring(r[2]):gsub("^[^\n]-:%d+: ", "", 1)
      error("bad item #" .. i .. " to 'batch' (" .. (why:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or why) ..
        ")", 3)
    elseif r[3] == nil then
      local_errors[i] = r[4]
    elseif r[2] == "headshot" then
      prebuilt[i] = { key = channel or NO_CHANNEL, request = pack(unpack(r, 2, r.n)) }
    elseif type(r[6]) == "userdata" then
      r[6]:close() -- its file is opened again at the item's turn, once for every account
    end
  end
  return prebuilt, local_errors
end

-- The batch's record of a dead channel and the error it answered, as `results.dead_channels`
-- gives it; a log line says it once.
local function dead_channel(self, dead, q, err)
  dead[#dead + 1] = { channel = q.channel, error = err }
  if self._log then
    self._log("warn", "channel " .. (q.channel or "(the default)") .. " taken out of the " ..
      "batch: " .. tostring(err), "dead_channel")
  end
end

-- What an item that could not be sent anywhere gets: the dead channel's answer, not sent.
local function unsent(err)
  return core.error { kind = err.kind, code = err.code, error = err.error,
    errorDetails = err.errorDetails, retryable = false, sent = false }
end

--- Jobs for a list of prompts (headshots, or changebg items), several at once, over one
-- account or several.
-- client:batch(list, opts): a job (headshot, or changebg for {command = "changebg", ...}) for
-- each item of list, at most opts.concurrency at once, each waited for unless
-- opts.wait == false. Returns an array whose [i] is list[i]'s job or error object.
-- opts.channels spreads the items over several accounts ("all": every account of GET
-- /account); an item that names its channel runs there.
--
-- Each account's queue has room for a few running jobs; beyond that upstream answers 429. The
-- batch learns each queue's size: a 429 while some of its own jobs run there means the queue
-- holds that many, so the next item waits until one of the jobs of some queue ends instead of
-- sleeping 10-30 s. After that many starts in a row on a queue it tries one more there, in
-- case room has grown. An answer saying an account cannot work takes its channel out of the
-- batch; its items go to the other channels.
-- @tparam {string|table,...} list prompts, params tables as for @{client:headshot}, or
-- `{command = "changebg", image = ..., a_background_photo_of = ...}`
-- @tparam[opt] table opts `concurrency` (4 per channel), `wait` (wait options, or false to
-- return the started jobs), `on_update(i, job_or_err)`, `channels` (an array of channel ids,
-- or `"all"`), `stop`, `on_send(i, attempt)` (called just before each request of item i
-- leaves, in its task; returning `false, message` keeps it from being sent: the item ends
-- with a `cancelled` error, `sent = false`, of that message)
-- @treturn table `[i]` the job of `list[i]`, or its error object (nil and an error object
-- when `channels = "all"` and the accounts cannot be listed); `dead_channels`, when an answer
-- took a channel out of the batch (401, 402, "Configuration not found"): `{channel = id,
-- error = err}` for each, once
-- @raise on misuse, before anything is sent: `bad item #5 to 'batch' (...)` for an item
function client:batch(list, opts)
  check_client(self, "batch")
  opts = opts or {}
  check_batch(list, opts)
  local n, results = #list, {}
  if n == 0 then return results end
  local channels = opts.channels
  local prebuilt, local_errors = check_items(self, list, channels)
  if channels == "all" then
    local accounts, err = self:accounts()
    if not accounts then return nil, err end
    channels = {}
    for channel in pairs(accounts) do channels[#channels + 1] = channel end
    table.sort(channels)
    if #channels == 0 then
      return nil, core.error { kind = "invalid_request", sent = true, retryable = false,
        error = "no accounts configured (GET /account is empty)" }
    end
  end
  local sched, policy = self._sched, self._retry or NO_RETRY
  local on_update = opts.on_update or function() end
  local on_send = opts.on_send
  local wait_opts = opts.wait
  if wait_opts == nil or wait_opts == true then wait_opts = {} end
  local follow = wait_opts ~= false

  -- one queue per channel: jobs of ours that run there, requests on their way, its size once
  -- known, the tasks waiting for those requests to be answered, and the answer that took it
  -- out of the batch (dead); `ch` is the channel's authority, whose hold (a blocking command
  -- running there) the batch waits out instead of meeting its 429
  local queues, by_channel, dead = {}, {}, {}
  local room -- (below)
  local function queue_of(channel)
    local key = channel or NO_CHANNEL
    local q = by_channel[key]
    if not q then
      q = { channel = channel, running = 0, posting = 0, capacity = nil, streak = 0,
            settling = {}, dead = nil, ch = self._channel_of(channel or self._channel) }
      q.ch.on_release[queues] = function() room() end -- (weak: gone with the batch)
      by_channel[key] = q
      queues[#queues + 1] = q
    end
    return q
  end
  for _, channel in ipairs(channels or { false }) do queue_of(channel or nil) end
  local shared = #queues -- the queues items without a channel of their own are spread over

  local waiters = {} -- items waiting for room: { task, own queue or nil, queue given }
  local function has_room(q)
    return not q.dead and (not q.capacity or q.running + q.posting < q.capacity) and
      not q.ch:held()
  end
  -- Why an item cannot be sent anywhere any more: its own channel, or every shared one, is
  -- dead (the answer of the last to die); nil while it can.
  local last_dead
  local function nowhere(own)
    if own then return own.dead end
    for k = 1, shared do if not queues[k].dead then return nil end end
    return last_dead
  end
  -- Takes a channel out of the batch on an answer that says its account cannot work: no item
  -- is sent there any more, and the items that can go nowhere else are told.
  local function kill(q, err)
    if q.dead then return end
    q.dead, last_dead = err, err
    dead_channel(self, dead, q, err)
    room()
  end
  -- The queue for an item's next request: its own, or the least busy one with room; nil: none.
  local function pick(own)
    if own then return has_room(own) and own or nil end
    local best
    for k = 1, shared do
      local q = queues[k]
      if has_room(q) and (not best or q.running + q.posting < best.running + best.posting) then
        best = q
      end
    end
    return best
  end
  -- Hands the room there is to the waiting items, longest waiting first, reserving each its
  -- slot (a request on its way) so that no item arriving meanwhile takes it.
  function room()
    local k = 1
    while waiters[k] do
      local w = waiters[k]
      local gone = nowhere(w.own)
      local q = not gone and pick(w.own)
      if gone or q then
        if q then q.posting = q.posting + 1 end
        w.queue, w.gone = q, gone
        table.remove(waiters, k)
        sched:wake(w.task)
      else
        k = k + 1
      end
    end
  end
  -- A queue with room for the item's next request, reserved (nil and the error when it can go
  -- nowhere). An item that a full queue refused (`refused`) waits ahead of the items not sent
  -- yet, behind the others refused before it: else, the slot that opens after each round of
  -- starts (the batch trying one more) would be its again and again, each costing an attempt.
  local function enter(own, refused)
    local gone = nowhere(own)
    if gone then return nil, gone end
    local q = pick(own)
    if q then
      q.posting = q.posting + 1
      return q
    end
    local w = { task = sched:current(), own = own, refused = refused }
    local at = #waiters + 1
    if refused then
      at = 1
      while waiters[at] and waiters[at].refused do at = at + 1 end
    end
    table.insert(waiters, at, w)
    -- room() reserves the slot it wakes us for; a hold whose task was cancelled ends unseen,
    -- so while a channel is held, look again each second
    repeat
      local held = false
      for k = 1, #queues do held = held or queues[k].ch.holder ~= nil end
      sched:park(held and M.now() + 1 or nil)
      if not (w.queue or w.gone) then room() end
    until w.queue or w.gone
    return w.queue, w.gone
  end

  local function start(i)
    local item, files = open_files(list[i])
    local own = type(item) == "table" and item.channel and queue_of(item.channel) or nil
    local built = {} -- the request per channel, built once
    local function request(q)
      local key = q.channel or NO_CHANNEL
      if not built[key] then built[key] = pack(build_item(self, item, q.channel)) end
      return unpack(built[key], 1, built[key].n)
    end
    local pre = prebuilt[i]
    if pre then built[pre.key], prebuilt[i] = pre.request, nil end
    local op, method, path = request(own or queues[1])
    if not method then return nil, path end
    local q -- the queue of the latest attempt
    -- After a 429 "queue full": once our other requests on their way there have been
    -- answered, the queue holds the jobs of ours that run. With some running, the next call
    -- waits for room (a delay of 0); with none, it waits as the retry policy says.
    local function delay(err, attempt, o)
      if follow and err.kind == "rate_limited" and err.retry_after == nil then
        while q.posting > 0 do
          q.settling[#q.settling + 1] = sched:current()
          sched:park()
        end
        if q.running > 0 then
          q.capacity, q.streak = q.running, 0
          return 0
        end
      end
      return retry.delay(err, attempt, o)
    end
    local attempt, refused = 0, false
    local function once()
      local gone
      q, gone = enter(own, refused)
      if not q then return nil, unsent(gone) end
      attempt = attempt + 1
      local _, m, p, content_type, body = request(q)
      local job, err
      if not m then -- built again for this channel, it failed (its file is gone since): not sent
        err = p
      else
        local go, why = true, nil
        if on_send then go, why = on_send(i, attempt) end
        if go == false then -- the caller could not record the request: it is not sent
          err = core.error { kind = "cancelled", sent = false, retryable = false,
                             error = tostring(why or "not sent (on_send said no)") }
        else
          job, err = exchange(self, op, m, p, content_type, body, attempt)
        end
      end
      q.posting = q.posting - 1
      -- an account that cannot work: nothing was created, so the item goes elsewhere
      if not job and authority.dead_answer(err) then kill(q, err) end
      if job then
        if follow then q.running = q.running + 1 end
        -- the queue holds at least what it took; after that many starts in a row, try one more
        if q.capacity and q.running > q.capacity then q.capacity = q.running end
        q.streak = q.streak + 1
        if q.capacity and q.streak >= q.capacity then q.capacity, q.streak = q.capacity + 1, 0 end
      elseif follow and err.kind == "rate_limited" and err.retry_after == nil then
        q.capacity, q.streak = math.max(q.running, 1), 0 -- no more until delay() knows better
        refused = true
      end
      if q.posting == 0 then
        for k = #q.settling, 1, -1 do sched:wake(table.remove(q.settling, k)) end
      end
      room()
      return job, err
    end
    local job, err
    repeat
      job, err = retry.run(once, policy, delay, nil, nil, method .. " " .. path)
    until job or own or not (q and q.dead and authority.dead_answer(err)) or nowhere(nil)
    close_files(files, built)
    return job, err, q
  end

  -- opts.stop: checked before each item is started, and (outside a task) after each step,
  -- which a caught signal cuts short. Once it says true, the items in flight are dropped.
  local stop, stopped, inflight, workers_of = opts.stop, false, {}, {}
  local next_item, workers, failure, parent = 0, 0, nil, nil
  local function work()
    while not failure and next_item < n and not (stop and stop()) do
      next_item = next_item + 1
      local i = next_item
      inflight[i] = { task = sched:current() }
      local holding -- the queue one of whose running jobs is this item's
      local function release()
        if holding then
          holding.running = holding.running - 1
          holding = nil
          room()
        end
      end
      local ok, problem = tasks.pcall(function() -- yields inside (5.1: see task.lua)
        local job, err, q
        if local_errors[i] then err = local_errors[i] else job, err, q = start(i) end
        holding = job ~= nil and follow and q or nil
        inflight[i].job = job
        if job then
          on_update(i, job)
          if follow then
            -- the slot frees as soon as the job ends, before on_update (which may download)
            local w = { on_update = function(j)
              if j:done() then release() end
              on_update(i, j)
            end }
            for k, v in pairs(wait_opts) do w[k] = v end
            job, err = self:wait(job, w)
          end
        end
        release()
        results[i] = job or err
        if not job then on_update(i, err) end
      end)
      inflight[i] = nil
      if not ok then -- on_update raised: hand on the error once all workers are out
        failure = problem
        release()
      end
    end
    workers = workers - 1
    if workers == 0 and parent then sched:wake(parent) end
  end

  -- After stop(): each item in flight is a `cancelled` error (with `job` once submitted, and
  -- `sent` whether its headshot may have reached the server), each item not begun one with
  -- sent = false. on_update is not called for them.
  local function stop_all()
    stopped = true
    for i, f in pairs(inflight) do
      local sent = sched:cancel(f.task, "batch stopped")
      results[i] = core.error { kind = "cancelled", error = "batch stopped", retryable = false,
                                sent = f.job ~= nil or sent, job = f.job }
    end
    for k = 1, #workers_of do sched:cancel(workers_of[k], "batch stopped") end
    for i = 1, n do
      results[i] = results[i] or core.error { kind = "cancelled", retryable = false, sent = false,
                                              error = "batch stopped before this item" }
    end
    workers = 0
  end

  for _ = 1, math.min(opts.concurrency or 4 * shared, n) do
    workers = workers + 1
    workers_of[#workers_of + 1] = sched:spawn(work)
  end
  if sched:current() then
    parent = sched:current()
    while workers > 0 do sched:park() end
  else
    while workers > 0 do
      sched:step(3600, true) -- true: also from a task that cannot yield
      if stop and not stopped and workers > 0 and stop() then stop_all() end
    end
  end
  if stop and not stopped and stop() then stop_all() end -- stopped before anything began
  for k = 1, #queues do queues[k].ch.on_release[queues] = nil end
  if failure then error(failure, 0) end
  if dead[1] then results.dead_channels = dead end
  return results
end

-- Every task ends with a `cancelled` error (one running now, at its next yield), transfers in
-- flight are dropped, and any later use of the client raises. Idempotent.
local function close(self)
  if self._closed then return end
  self._closed = true
  self._sched:close()
  self._transport:close()
end

--- Frees the client's handles; also `__gc` and `__close`. Closing twice is harmless.
function client:close()
  if getmetatable(self) ~= client_mt then check_client(self, "close") end
  close(self)
end

client_mt.__close = close
client_mt.__tostring = function(self)
  return "faceswap.client: " .. tostring(self._transport):gsub("^faceswap%.transport ", "")
end

return M
