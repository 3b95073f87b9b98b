--- The retry policy.
-- faceswap.retry: the retry policy, for faceswap.retry(fn, opts) and the client's own `retry`
-- option. Whether an error may be retried at all is the error's own `retryable` field, which
-- the core sets: false for a POST that may have reached the server, so a headshot whose fate
-- is unknown is never sent twice. This file only decides how long to wait and when to stop.
--
-- Programs use it through @{faceswap.retry} and the `retry` option of @{faceswap.new}.
-- @module faceswap.retry
local core = require "faceswap.core"
local logs = require "faceswap.log"

local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT

local M = {}

--- The options and their defaults: `attempts` (5, calls in all, the first included),
-- `deadline` (none: seconds from the first call; no wait starts that would end past it),
-- `min_delay` (10) and `max_delay` (30: a 429's wait range, as upstream advises, when the answer
-- names none; also the longest backoff), `base_delay` (1: the first backoff after a transport
-- error, timeout or 5xx), `max_retry_after` (120: the longest wait the server may ask for and
-- get, whatever `max_delay` is; a longer one returns the error at once). Also `sleep`, `random`
-- and `on_retry(err, attempt, delay)`.
-- @table defaults
M.defaults = {
  attempts = 5,     -- calls of fn in all, the first included
  deadline = nil,   -- seconds from the first call; no wait is started that would end past it
  min_delay = 10,   -- the 429 wait range, as upstream advises, when the answer gives no wait
  max_delay = 30,   -- also the longest backoff
  base_delay = 1,   -- the first backoff after a transport error, timeout or 5xx
  max_retry_after = 120, -- the longest retry_after waited on (the server's, not our backoff)
}

local CHECKS = {
  attempts = "count", deadline = "seconds", min_delay = "seconds", max_delay = "seconds",
  base_delay = "seconds", max_retry_after = "seconds", sleep = "function", random = "function",
  on_retry = "function",
}

-- Checks opts and returns them merged over the defaults. `where` names the caller for the
-- error message ("retry" or "new"), `option` is set when opts is a `retry` option: true for
-- a client's (argument #1 of new), or the number of the argument (a call's options table).
function M.options(opts, where, option)
  local arg = option == true and 1 or option or 2
  local prefix = "bad argument #" .. arg .. " to '" .. where .. "' (" ..
    (option and "option 'retry': " or "")
  if type(opts) ~= "table" then
    error(prefix .. "table expected, got " .. type(opts) .. ")", 3)
  end
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for name, value in pairs(opts) do
    local want = CHECKS[name]
    if not want then error(prefix .. "unknown option '" .. tostring(name) .. "')", 3) end
    if want == "function" then
      if type(value) ~= "function" then
        error(prefix .. "option '" .. name .. "' must be a function)", 3)
      end
    elseif type(value) ~= "number" or value ~= value or value < 0 or value > 1e9 or
        (want == "count" and (value < 1 or value % 1 ~= 0)) then
      error(prefix .. "option '" .. name .. "' must be " .. (want == "count" and
        "a whole number from 1" or "a number of seconds from 0") .. " to 1e9)", 3)
    end
    o[name] = value
  end
  if o.min_delay > o.max_delay then
    error(prefix .. "min_delay is larger than max_delay)", 3)
  end
  return o
end

local function retryable(err)
  return type(err) == "table" and err.retryable == true
end
M.retryable = retryable

--- How long to wait before the next call.
-- The wait before the next call, after the call number `attempt` failed with err.
-- A 429 waits its `retry_after` when known, else a random time between `min_delay` and
-- `max_delay`; other errors back off exponentially from `base_delay`, with jitter.
-- @tparam objects.error err the error of the call that failed
-- @tparam integer attempt the number of that call (1 for the first)
-- @tparam table o the options, as @{defaults}
-- @treturn number seconds
function M.delay(err, attempt, o)
  local random = o.random or math.random
  if err.kind == "rate_limited" then
    if type(err.retry_after) == "number" then return err.retry_after end
    return o.min_delay + (o.max_delay - o.min_delay) * random()
  end
  -- exponential, with the upper half jittered so that many clients do not retry in step
  local d = math.min(o.base_delay * 2 ^ (attempt - 1), o.max_delay)
  return d / 2 + d / 2 * random()
end

local function pack(...) return { n = select("#", ...), ... } end

-- Calls fn until it returns a non-nil first value, an error that is not retryable, or the
-- attempts or deadline run out; returns what fn returned last. `delay(err, attempt, o)`
-- (M.delay by default) says how long to wait before the next call; the batch passes its own,
-- which answers 0 when the next call waits for a free slot instead. A caller that has made
-- the first call itself passes its error and when it started, so a call that succeeds at
-- once costs nothing here. `what` names the request in the log lines (o.log, a client's).
function M.run(fn, o, delay, first_err, started, what)
  started = started or core.now()
  delay = delay or M.delay
  local attempt, slept = 1, 0
  local r = first_err == nil and pack(fn()) or { n = 2, nil, first_err }
  while r[1] == nil and retryable(r[2]) and attempt < o.attempts do
    -- the wait a server (or a CDN) asks for is its instruction, not our backoff: made up to
    -- max_retry_after whatever max_delay is; a longer one (days, years) is not slept on: the
    -- error goes back at once, its retry_after telling the caller how long
    local asked = r[2].kind == "rate_limited" and r[2].retry_after
    if type(asked) == "number" and asked > o.max_retry_after then break end
    local d = delay(r[2], attempt, o)
    -- time spent is at least what was slept, also when `sleep` is a stand-in that sleeps not
    if o.deadline and math.max(core.now() - started, slept) + d > o.deadline then break end
    if o.on_retry then o.on_retry(r[2], attempt, d) end
    if o.log then logs.retry(o.log, what, r[2], attempt + 1, o.attempts, d) end
    if d > 0 then o.sleep(d) end
    slept = slept + d
    attempt = attempt + 1
    r = pack(fn())
  end
  if o.log and r[1] == nil and retryable(r[2]) then logs.give_up(o.log, what, r[2], attempt) end
  return unpack(r, 1, r.n)
end

return M
