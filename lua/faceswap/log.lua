--- Log lines: what a client tells its operator.
--
-- A client's `log` option (see @{faceswap.new}) receives `log(level, message, what)`:
--
--  * `"debug"`, `"request"`: `POST /headshot: sending 1234 bytes, attempt 1`
--  * `"info"`, `"answer"`: `POST /headshot: 429 in 312 ms, 62 bytes, attempt 1`, or
--    `GET /jobs/?jobid=…: no answer after 10003 ms, attempt 1: timeout: no answer in time`
--  * `"warn"`, `"retry"`: `POST /headshot: 429 queue full, waiting 17.2 s, attempt 2 of 5`
--  * `"warn"`, `"give_up"`: `POST /headshot: giving up after 5 attempts: rate_limited (429): …`
--
-- Without a function, `$FACESWAP_LOG=debug|info|warn` writes the lines at that level and above
-- to stderr as `faceswap LEVEL: MESSAGE`; inside OpenResty they go to nginx's error log through
-- `ngx.log` (at `ngx.DEBUG`, `ngx.INFO`, `ngx.WARN`), where `error_log`'s level filters them.
-- `log = false` turns them off. A download is named by its URL without the query.
-- @module faceswap.log

-- faceswap.log: what a client tells its operator. A line per request (method, path with its
-- query, status, milliseconds, attempt), per retry wait and per give-up, at the levels "debug",
-- "info" and "warn", to the client's `log` function, else to nginx's error log (inside
-- OpenResty), else to stderr when $FACESWAP_LOG names a level. The token never appears: the
-- lines are made from what the Lua layer sees (no request headers), and a server that echoes
-- the token back in its error text has it replaced before the line is handed on.
local core = require "faceswap.core"

local M = {}

local LEVELS = { debug = 1, info = 2, warn = 3 }

-- The level $FACESWAP_LOG asks for (1 to 3), or nil: unset or empty logs nothing, and a
-- value that is not a level name logs at info and above.
local function env_threshold()
  local value = os.getenv("FACESWAP_LOG")
  if not value or value == "" then return nil end
  return LEVELS[value:lower()] or LEVELS.info
end

-- Logs that can tell when their info lines (and so their debug ones) would go nowhere: log
-- -> a function that says whether they would now.
local drops_info = setmetatable({}, { __mode = "k" })

-- The default sink: nginx's error log (nginx's error_log level filters it further), or stderr.
-- Inside nginx also a function that says whether an info line would go nowhere now: the
-- error_log level of the request running (set per location) is below info.
local function default_sink(in_nginx)
  local threshold = env_threshold()
  if in_nginx then
    local ngx = rawget(_G, "ngx")
    local NGX = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN }
    local drops
    if threshold and threshold > LEVELS.info then
      drops = function() return true end
    else
      local has, errlog = pcall(require, "ngx.errlog")
      if has and errlog.get_sys_filter_level then
        local level, INFO = errlog.get_sys_filter_level, ngx.INFO
        drops = function() return level() < INFO end
      end
    end
    return function(level, message)
      if threshold and LEVELS[level] < threshold then return end
      ngx.log(NGX[level], "faceswap: ", message)
    end, drops
  end
  if not threshold then return nil end
  return function(level, message)
    if LEVELS[level] >= threshold then
      io.stderr:write("faceswap ", level, ": ", message, "\n")
    end
  end
end

--- The stderr sink of `$FACESWAP_LOG`, or nil when it is unset: for a program with its own
-- log function that wants those lines too (the command line does).
-- @treturn ?function `sink(level, message)`
function M.default()
  return default_sink(false)
end

-- A secret shorter than this is too short to be a real token (as in examples) and would match
-- ordinary words: it is left alone.
local MIN_SECRET = 8

--- A text with every secret in it replaced by `[token]`: the one redaction that log lines,
-- error objects (their `error` and `errorDetails`), and what the command line prints or
-- records all go through, for a server or proxy that echoes a token back in its text.
-- @tparam string text
-- @tparam {string,...} secrets the API token, a Discord token...; those shorter than 8 bytes
-- are left alone
-- @treturn string
function M.redact(text, secrets)
  for k = 1, #secrets do
    local secret = secrets[k]
    if #secret >= MIN_SECRET and text:find(secret, 1, true) then
      local from, parts = 1, {}
      while true do
        local s, e = text:find(secret, from, true)
        if not s then break end
        parts[#parts + 1] = text:sub(from, s - 1)
        parts[#parts + 1] = "[token]"
        from = e + 1
      end
      parts[#parts + 1] = text:sub(from)
      text = table.concat(parts)
    end
  end
  return text
end

-- The strings of a value (a table's, a few levels down) redacted in place.
local function redact_value(value, secrets, depth)
  if type(value) == "string" then return M.redact(value, secrets) end
  if type(value) == "table" and depth < 4 then
    for k, v in pairs(value) do
      if type(v) == "string" or type(v) == "table" then value[k] = redact_value(v, secrets, depth + 1) end
    end
  end
  return value
end

--- An error object with the secrets redacted from its texts (`error`, `errorDetails`), in
-- place; returns it. Anything else is returned as it is.
function M.redact_error(err, secrets)
  if type(err) == "table" then
    if type(err.error) == "string" then err.error = M.redact(err.error, secrets) end
    if err.errorDetails ~= nil then err.errorDetails = redact_value(err.errorDetails, secrets, 1) end
  end
  return err
end

-- The log function of a client: `option` is its `log` option (a function, false for none, nil
-- for the default); `token` is replaced wherever it would appear.
function M.new(option, token, in_nginx)
  local sink, drops
  if option == false then return nil end
  if option == nil then sink, drops = default_sink(in_nginx) else sink = option end
  if not sink then return nil end
  local log = sink
  if #token >= MIN_SECRET then
    local secrets = { token }
    log = function(level, message, what)
      sink(level, M.redact(message, secrets), what)
    end
  end
  drops_info[log] = drops
  return log
end

-- What a request is called in the lines: "METHOD /path?query" for the API; for a download, the
-- URL without its query (signed CDN links carry their signature there).
local function request_name(method, target)
  if target:sub(1, 1) ~= "/" then target = target:match("^[^?#]*") end
  return method .. " " .. target
end
M.request_name = request_name

-- The lines of one request (M.request's work).
local function request(log, method, target, body, attempt)
  local name = request_name(method, target)
  attempt = attempt or 1
  log("debug", string.format("%s: sending%s, attempt %d", name,
    body and (" " .. #body .. " bytes") or "", attempt), "request")
  local started = core.now()
  return function(status, headers_or_err, answer)
    local ms = math.floor((core.now() - started) * 1000 + 0.5)
    if status then
      log("info", string.format("%s: %d in %d ms, %d bytes, attempt %d", name, status, ms,
        type(answer) == "number" and answer or answer and #answer or 0, attempt), "answer")
    else
      log("info", string.format("%s: no answer after %d ms, attempt %d: %s", name, ms, attempt,
        tostring(headers_or_err)), "answer")
    end
  end
end

-- Called before a request is sent; returns the function to call with what transfer returned
-- (the answer's body, or for a download streamed to a file or a sink its byte count), or nil
-- when neither of its lines would go anywhere (nginx's error_log above info): then nothing is
-- formatted. (The lines are made in another function: an early return from one that makes a
-- closure is a bytecode LuaJIT does not compile.)
function M.request(log, method, target, body, attempt)
  local drops = drops_info[log]
  if drops and drops() then return nil end
  return request(log, method, target, body, attempt)
end

-- Why a retry waits, short: "429 queue full", "429 rate limited", else the error's line.
local function reason(err)
  if err.kind == "rate_limited" then
    local queue = type(err.error) == "string" and err.error:find("^Unable to lock Discord")
    return tostring(err.code or 429) .. (queue and " queue full" or " rate limited")
  end
  return tostring(err)
end

-- Before a retry's wait: "POST /headshot: 429 queue full, waiting 17.2 s, attempt 2 of 5".
function M.retry(log, what, err, next_attempt, attempts, delay)
  local wait = delay > 0 and string.format("waiting %.1f s", delay) or "trying again"
  log("warn", string.format("%s%s, %s, attempt %d of %d", what and (what .. ": ") or "",
    reason(err), wait, next_attempt, attempts), "retry")
end

-- When the policy stops retrying an error it could have retried.
function M.give_up(log, what, err, attempts)
  log("warn", string.format("%sgiving up after %d attempt%s: %s", what and (what .. ": ") or "",
    attempts, attempts == 1 and "" or "s", tostring(err)), "give_up")
end

return M
