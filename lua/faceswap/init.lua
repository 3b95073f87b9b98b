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
local protected = tasks.pcall -- (through's, read once: a pcall a task may yield through)
local logs = require "faceswap.log"
local authority = require "faceswap.channel"
local coordinators = require "faceswap.coordinator"

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
  retry = "table", log = "function", ca_file = "string", coordinator = "string",
  lease = "number",
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
  local lease = opts.lease
  if lease ~= nil and (lease ~= lease or lease < 1 or lease > 1e9) then
    error("bad argument #1 to 'new' (option 'lease' must be a number of seconds from 1 to 1e9)", 3)
  end
end

-- Whether this runs inside OpenResty, where requests must go through nginx's cosockets.
local in_nginx = coordinators.in_nginx

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
--  * `coordinator` (string): where the state of the accounts' channels lives (their slots,
--    holds, pauses, dead channels; docs/fleet.md): by default `$FACESWAP_COORDINATOR`, else this
--    process; `"shared:DICT"` (an nginx shared dict, inside nginx) and `"redis://HOST:PORT/DB"`
--    (Redis, shared by every process that names it); with either, `client:wait` returns as
--    soon as a callback endpoint sharing it publishes the job, polling three times less often
--  * `lease` (number): seconds after which a slot whose holder stopped renewing it is free
--    again, default 60
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
  local spec = opts.coordinator
  if spec == nil then spec = os.getenv("FACESWAP_COORDINATOR") end
  local made, coordinator = pcall(coordinators.new, spec, {
    lease = opts.lease or coordinators.DEFAULT_LEASE, sched = sched, log = log })
  if not made then
    transport:close()
    error("bad argument #1 to 'new' (" .. tostring(coordinator) .. ")", 2)
  end
  return setmetatable({
    _coordinator = coordinator,
    -- a coordinator other processes share: the callbacks they receive reach client:wait
    _published = coordinators.kind(spec) ~= "process" and coordinator or nil,
    _transport = transport,
    _sched = sched,
    _channel_of = authority.registry(sched, coordinator),
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

-- What a jobid the server sent gets when it cannot be sent back (`why`: the builder's raise).
local function unsendable(why)
  why = tostring(why):gsub("^[^\n]-:%d+: ", "", 1)
  return core.error {
    kind = "bad_response", sent = false, retryable = false,
    error = "the server sent a jobid that cannot be sent back (" ..
      (why:match("%((.*)%)$") or why) .. ")",
  }
end

-- One request: the transport moves the bytes (yielding inside a task), the core reads the
-- answer. `attempt` (1 when nil) is for the log; `xfer` (nil: none) the call's own transfer
-- options for the transport (`timeout`); `hold` (nil: none) the channel whose exclusive hold
-- the request is made under, renewed while it is on its way (the scheduler's transfer).
local function exchange(self, op, method, path, content_type, body, attempt, xfer, hold)
  local logged = self._log and logs.request(self._log, method, path, body, attempt)
  local status, headers, answer = self._sched:transfer(method, path, content_type, body, xfer,
    hold)
  if logged then logged(status, headers, answer) end
  if not status then return nil, self._redact(headers) end
  local value, err = read_response(op, status, headers, answer)
  if err ~= nil then self._redact(err) end
  return value, err
end

-- The jobid of an answer that is a job that runs on (its slot stays with it until it is seen
-- to end), else false: one C call (the job's type, status, done() and jobid read there).
local runs = core.job_runs

-- One attempt through the authority `ch` of the call's channel: takes a slot (`slot` true: a
-- job command; `refused` as for ch:acquire) or waits until the channel is ready (a blocking
-- command, which holds it already), then makes the exchange. Returns the answer or error, and
-- whether it was a queue-full 429 (the next attempt's `refused`).
local function through(self, ch, slot, refused, max_pause, op, method, path, content_type,
                       body, attempt, xfer)
  if not slot then
    local err = ch:ready(max_pause)
    if err then return nil, err, refused end
    local job
    job, err = exchange(self, op, method, path, content_type, body, attempt, xfer, ch)
    if not job then ch:observe(err) end
    return job, err, refused
  end
  local lease, err = ch:acquire(refused, max_pause)
  if not lease then return nil, err, refused end
  -- the slot is freed whatever the exchange does (a log function that raises)
  local ok, job, e = protected(exchange, self, op, method, path, content_type, body,
    attempt, xfer)
  if not ok then
    ch:release_slot(lease)
    error(job, 0)
  end
  return job, e, ch:answered(lease, job, e, runs(job))
end

-- The same, under the retry policy (the call's own when `o`, its checked options, has one,
-- else the client's). `ch`: the authority of the call's channel (lua/faceswap/channel.lua),
-- which every attempt goes through: `slot` true for a job command (it takes a slot, waiting
-- for one, which its job keeps), else a blocking command that holds the channel already: both
-- fail at once, unsent, on a dead channel and wait out a Discord pause. Either way the first
-- attempt is made here, so a call that succeeds at once pays nothing for the policy (no
-- closure, no packed results, no log label).
local function call(self, op, method, path, content_type, body, o, ch, slot)
  local policy, xfer = self._retry, nil
  if o then policy, xfer = o.policy, o.transfer end
  local started = policy and policy.deadline and M.now()
  if not ch then
    local job, err = exchange(self, op, method, path, content_type, body, 1, xfer)
    if job or not policy or not retry.retryable(err) then return job, err end
    local attempt = 1
    return retry.run(function()
      attempt = attempt + 1
      return exchange(self, op, method, path, content_type, body, attempt, xfer)
    end, policy, nil, err, started, method .. " " .. path)
  end
  local max_pause = (policy or retry.defaults).max_retry_after
  local job, err, refused = through(self, ch, slot, false, max_pause, op, method, path,
    content_type, body, 1, xfer)
  if job ~= nil or not policy or not retry.retryable(err) then return job, err end
  local attempt = 1
  return retry.run(function()
    attempt = attempt + 1
    local j, e
    j, e, refused = through(self, ch, slot, refused, max_pause, op, method, path,
      content_type, body, attempt, xfer)
    return j, e
  end, policy, function(e, n, opts)
    return ch:delay(e, n, opts)
  end, err, started, method .. " " .. path)
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
      elseif value:find("\0", 1, true) then -- the system would write the name's part before it
        bad_option(name, arg, "option 'path': a file name cannot contain a NUL byte")
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

-- GET /jobs/?jobid= for a job the server sent (client:wait's polls, `xfer` the call's
-- transfer options): a jobid inside a job that cannot be sent back is the server's doing, and
-- comes back as bad_response, as from client:job.
-- `path`: the request's path when an earlier poll of the same target built it (the third
-- value this returns then), else nil: a wait builds its GET once. The fourth value: whether
-- the job has ended (read once, for the wait's loop too).
local function get(self, target, xfer, path)
  if not path then
    local ok, method
    ok, method, path = pcall(build_get, "job", target)
    if not ok then return nil, unsendable(method) end
    if not method then return nil, path end
  end
  local job, err = exchange(self, "job", "GET", path, nil, nil, 1, xfer)
  -- a job of ours seen ended (or cancelled) frees its slot on its channel
  local done = job and job:done()
  if done then self._channel_of:ended(job.jobid) end
  return job, err, path, done
end

-- == The command methods: one per row of the core's command table (csrc/command.c,
-- core.commands("all"): headshot, job and cancel too), nothing written here per command; their
-- reference is docs/commands.luadoc, which tools/commands_luadoc.lua writes from the same rows
-- (`make docs-tables`). docs/commands.md describes the commands. ==

-- The channel lock. A blocking command holds its channel upstream for seconds, and a second
-- call meanwhile is refused; so the client runs one blocking command per channel at a time and
-- the others wait their turn (parked inside a task, driving the other tasks where the call
-- cannot yield). Calls that name no channel share one lock of their own. The lock is a
-- channel's exclusive hold (lua/faceswap/channel.lua), released whatever the call does.

M.commands = core.commands()

do
  local names = {}
  for _, cmd in ipairs(M.commands) do
    if cmd.mode == "job" or cmd.mode == "either" then names[#names + 1] = cmd.name end
  end
  table.sort(names)
  JOB_COMMANDS_TEXT = table.concat(names, ", ")
end

-- A method given more arguments than it takes (`client:headshot(p, nil, {timeout = 5})`: the
-- options after a nil) raises at the caller, nothing sent, rather than drop them; trailing nils
-- (a wrapper passing `...` on) are no arguments.
local function extra_argument(name, no_params, ...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v ~= nil then
      error("bad argument #" .. (i + 2) .. " to '" .. name .. "' (" .. name .. " takes " ..
        (no_params and "only the options (argument #1)" or "params and options (arguments #1 " ..
        "and #2)") .. ", got " .. type(v) .. " after them)", 3)
    end
  end
end

-- Makes the method of one row: `client:name(params, opts)`; a command that takes no params at
-- all (jobs, accounts) takes only the options, `client:jobs(opts)`. A row that takes both
-- encodings (headshot) is built in the client's `encoding`. Misuse raises at the caller's line
-- (not a tail call, so that on 5.1 too); a job given for a jobid that cannot be sent back is
-- the server's doing, and comes back as bad_response.
local function command_method(cmd)
  local name = cmd.name
  local blocking = cmd.mode == "blocking" or cmd.mode == "either"
  local kind = (cmd.mode == "job" or cmd.mode == "either") and "job" or
    cmd.common and "blocking" or "plain"
  local no_params = #cmd.params == 0
  local encoded = cmd.encodings ~= nil and #cmd.encodings > 1
  local takes_job = cmd.value == "jobid" -- a jobid, or a job (job, cancel)
  local files = false -- whether a body may be a reader of files (see below)
  for _, p in ipairs(cmd.params) do files = files or p.kind == "file" end
  return function(self, params, opts, ...)
    -- check_client's checks inline: a round trip makes no call it can spare
    if getmetatable(self) ~= client_mt or self._closed then check_client(self, name) end
    if select("#", ...) > 0 then extra_argument(name, no_params, ...) end
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
      o and o.channel or self._channel, self._reply_url, nil, encoded and self._encoding or nil)
    if not ok then
      if takes_job and M.type(params) == "job" then return nil, unsendable(method) end
      misuse(method)
    end
    if not method then return nil, path end
    local result, err
    if not blocking then
      -- a job command takes a slot of its channel's authority; the others name no channel
      -- (its authority read from the registry's map first: a call through its __call costs
      -- a metamethod lookup and a frame more)
      local reg = self._channel_of
      local ch = kind == "job" and (reg.by_key[channel or false] or reg(channel)) or nil
      result, err = call(self, name, method, path, content_type, body, o, ch, ch ~= nil)
      if err ~= nil and type(params) == "table" and type(params.discord) == "string" then
        err = logs.redact_error(err, { params.discord }) -- add_account's Discord token
      end
    else
      -- held alone, and released whatever happens (a log function or on_retry that raises)
      local ch = self._channel_of(channel)
      result, err = ch:exclusive(call, self, name, method, path, content_type, body, o, ch)
    end
    -- a body that reads a file as it is sent holds the file open: let go of it now, not at
    -- the next collection
    if files and type(body) == "userdata" then body:close() end
    -- a job of ours seen ended (or cancelled) frees its slot on its channel
    if takes_job and result and result:done() then self._channel_of:ended(result.jobid) end
    if not o then return result, err end
    result, err = answer(self, o, result, err)
    return result, err
  end
end

for _, cmd in ipairs(core.commands("all")) do client[cmd.name] = command_method(cmd) end

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

local wait_loop -- (below)

-- The loop of client:wait, for a target and options already checked; `xfer`: the transfer
-- options of each poll (a call's own `timeout`), nil for the client's. While it runs, the
-- job's slot (a job of ours) is watched: renewed, and freed when the job is seen to end.
function wait_for(self, target, opts, xfer)
  local jobid = core.type(target) == "job" and target.jobid or target
  local job, err = wait_loop(self, target, opts, xfer)
  self._channel_of:unwatch(jobid)
  return job, err
end

-- With a coordinator other processes share (shared:, redis://), a wait returns the job as
-- soon as a callback endpoint anywhere publishes it ended; polls go on as the fallback, three
-- times further apart unless the call sets its own interval.
local PUBLISHED_SLOWER = 3

-- The ended job `jobid` published to the coordinator meanwhile (wait up to `seconds`), or nil
-- once they passed. A text that is no ended job of that jobid is ignored (slept through).
local function published_job(coord, jobid, seconds)
  local deadline = M.now() + seconds
  local json = not coord.closed and coord:wait_published(jobid, seconds)
  local job = json and core.decode(json)
  if job and job.jobid == jobid and job:done() then return job end
  local left = deadline - M.now()
  if left > 0 then M.sleep(left) end
  return nil
end

function wait_loop(self, target, opts, xfer)
  local coord = self._published
  local slower = coord and PUBLISHED_SLOWER or 1
  local interval = opts.interval or wait_defaults.interval * slower
  local max_interval = math.max(opts.max_interval or wait_defaults.max_interval * slower, interval)
  local deadline = M.now() + (opts.timeout or wait_defaults.timeout)
  local max_failures = opts.max_failures or wait_defaults.max_failures
  local on_update, on_error = opts.on_update, opts.on_error
  local last, jobid, last_error, failures, path, status -- (status: last's)
  if core.type(target) == "job" then
    last, jobid, status = target, target.jobid, target.status
    -- a blocking command's finished result (picsi's, for one) has no status to wait for
    if status == nil or last:done() then return last end
  else
    jobid = target
  end
  -- a coordinator other processes share publishes ended jobs (see published_job)
  local published = coord and type(jobid) == "string"
  local now, sleep = M.now, tasks.sleep
  local delay = last and interval or 0
  failures = 0
  -- the slot of a job of ours stays its own while we wait: its lease is renewed meanwhile
  local slots = self._channel_of
  local piece = slots.lease / 4
  slots:renew(jobid, true)
  while true do
    -- never sleep past the deadline, and always poll once at it before giving up
    if delay > 0 then
      local left = deadline - now()
      if left > delay then left = delay elseif left < 0 then left = 0 end
      while left > 0 do
        local d = left
        if d > piece and slots:slot(jobid) then d = piece end
        if published then
          local ended = published_job(coord, jobid, d)
          if ended then
            slots:ended(jobid)
            if on_update and (not last or status ~= ended.status) then on_update(ended) end
            return ended
          end
        elseif not sleep(d) then -- (a task's sleep, else M.sleep's others)
          M.sleep(d)
        end
        left = left - d
        slots:renew(jobid)
      end
    end
    local job, err, done
    job, err, path, done = get(self, target, xfer, path) -- this loop is the retry policy
    if job then
      failures = 0
      local first, was = last == nil, status
      last, status = job, job.status
      if on_update and (first or was ~= status) then on_update(job) end
      if done then return job end
    else
      failures, last_error = failures + 1, err
      if on_error then on_error(err, failures) end
      if not err.retryable or failures >= max_failures then
        if err.job == nil then err.job = last end
        return nil, err
      end
    end
    if now() >= deadline then
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
function client:download(url, opts, ...)
  check_client(self, "download")
  for i = 1, select("#", ...) do
    if select(i, ...) ~= nil then
      error("bad argument #" .. (i + 2) .. " to 'download' (download takes a URL and options " ..
        "(arguments #1 and #2), got " .. type((select(i, ...))) .. " after them)", 2)
    end
  end
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

-- == The batch (lua/faceswap/batch.lua): a loop over the channels' authorities ==
local batch = require("faceswap.batch").method {
  M = M, exchange = exchange, wait_for = wait_for,
  check_wait_options = function(...) return check_wait_options(...) end,
}

--- Jobs for a list of prompts (headshots, or changebg items), several at once, over one
-- account or several.
-- client:batch(list, opts): a job (headshot, or changebg for {command = "changebg", ...}) for
-- each item of list, at most opts.concurrency at once, each waited for unless
-- opts.wait == false. Returns an array whose [i] is list[i]'s job or error object.
-- opts.channels spreads the items over several accounts ("all": every account of GET
-- /account); an item that names its channel runs there.
--
-- Each item goes through its channel's authority, as every call does: it takes a slot of the
-- account's queue (whose size is learned from its 429s), waiting for a job of the queue to end
-- instead of sleeping 10-30 s; blocking commands and Discord pauses on the channel are waited
-- out. An answer saying an account cannot work takes its channel out of use (for the client's
-- lifetime); its items go to the other channels.
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
  -- not a tail call: misuse raised in batch.lua names this method's caller, on 5.1 too
  local results, err = batch(self, list, opts)
  return results, err
end

-- Every task ends with a `cancelled` error (one running now, at its next yield), transfers in
-- flight are dropped, and any later use of the client raises. Idempotent.
local function close(self)
  if self._closed then return end
  self._closed = true
  self._sched:close()
  self._coordinator:close()
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
