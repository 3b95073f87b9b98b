-- faceswap.retry: which errors are retried, the exact waits (sleep and random are injected),
-- attempts, deadline, on_retry. The client's own policy against the simulator is
-- spec/integration/retry_policy_spec.lua.
local faceswap = require "faceswap"
local core = require "faceswap.core"

local function err(fields) return core.error(fields) end

local queue_full = err { kind = "rate_limited", code = 429, retryable = true, sent = true,
                         error = "Unable to lock Discord after 3 attempts" }
local function discord_429(after)
  return err { kind = "rate_limited", code = 429, retryable = true, sent = true, retry_after = after,
               error = "Discord /interactions failed with HTTP status 429" }
end
local reset = err { kind = "transport", retryable = true, sent = false, error = "Connection refused" }
local bad = err { kind = "invalid_request", code = 400, retryable = false, sent = false,
                  error = "Required param prompt is missing or empty" }

-- fn answering from a script of results, one per call; records the waits.
local function scripted(results)
  local calls, slept, retries = 0, {}, {}
  local fn = function()
    calls = calls + 1
    local r = results[calls]
    if r == "job" then return "job", "second value" end
    return nil, r
  end
  local opts = {
    sleep = function(d) slept[#slept + 1] = d end,
    random = function() return 0.25 end,
    on_retry = function(e, attempt, d) retries[#retries + 1] = { e, attempt, d } end,
  }
  return fn, opts, function() return calls end, slept, retries
end

describe("faceswap.retry #unit", function()
  it("returns the first success at once, with all of fn's values", function()
    local fn, opts, calls, slept = scripted { "job" }
    assert.same({ "job", "second value" }, { faceswap.retry(fn, opts) })
    assert.equal(1, calls())
    assert.same({}, slept)
  end)

  it("waits retry_after when the 429 gives one", function()
    local fn, opts, calls, slept, retries = scripted { discord_429(2.5), discord_429(0.75), "job" }
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.equal(3, calls())
    assert.same({ 2.5, 0.75 }, slept)
    assert.equal(2, #retries)
    assert.equal(1, retries[1][2])
    assert.equal(2.5, retries[1][3])
    assert.equal(2, retries[2][2])
    assert.equal("Discord /interactions failed with HTTP status 429", retries[1][1].error)
  end)

  it("does not sleep on a retry_after past max_retry_after (120 s): the error comes back at once", function()
    local fn, opts, calls, slept = scripted { discord_429(86400), "job" }
    local job, e = faceswap.retry(fn, opts)
    assert.is_nil(job)
    assert.same({ "rate_limited", 86400 }, { e.kind, e.retry_after })
    assert.equal(1, calls())
    assert.same({}, slept)
    fn, opts, calls, slept = scripted { discord_429(120), "job" }
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.same({ 120 }, slept)
    assert.equal(2, calls())
    fn, opts, calls, slept = scripted { discord_429(120.5), "job" }
    assert.is_nil((faceswap.retry(fn, opts)))
    assert.same({ 1, {} }, { calls(), slept })
    -- a cap of one's own
    fn, opts, calls, slept = scripted { discord_429(6), "job" }
    opts.max_retry_after = 5
    local _, e6 = faceswap.retry(fn, opts)
    assert.same({ 1, {}, 6 }, { calls(), slept, e6.retry_after })
    fn, opts, calls, slept = scripted { discord_429(5), "job" }
    opts.max_retry_after = 5
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.same({ 2, { 5 } }, { calls(), slept })
  end)

  -- issue 17, item 19: the wait the server asks for is its instruction, not our backoff
  it("waits the server's retry_after whatever max_delay is", function()
    local fn, opts, calls, slept = scripted { discord_429(1), discord_429(0.3), "job" }
    opts.min_delay, opts.max_delay = 0.01, 0.02
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.same({ 1, 0.3 }, slept)
    assert.equal(3, calls())
    fn, opts, calls, slept = scripted { discord_429(41), "job" }
    opts.min_delay, opts.max_delay = 1, 10
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.same({ 2, { 41 } }, { calls(), slept })
  end)

  it("waits a random time in [min_delay, max_delay] for a 429 without retry_after", function()
    local fn, opts, _, slept = scripted { queue_full, queue_full, "job" }
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.same({ 15, 15 }, slept) -- 10 + (30 - 10) * 0.25
    fn, opts, _, slept = scripted { queue_full, "job" }
    opts.min_delay, opts.max_delay = 2, 4
    faceswap.retry(fn, opts)
    assert.same({ 2.5 }, slept)
  end)

  it("backs off exponentially with jitter from base_delay, up to max_delay", function()
    local fn, opts, calls, slept = scripted { reset, reset, reset, reset, reset, reset, "job" }
    opts.attempts, opts.base_delay, opts.min_delay, opts.max_delay = 10, 1, 1, 6
    assert.equal("job", (faceswap.retry(fn, opts)))
    assert.equal(7, calls())
    -- d = min(2^(n-1), 6), waited d/2 + d/2 * 0.25
    assert.same({ 0.625, 1.25, 2.5, 3.75, 3.75, 3.75 }, slept)
  end)

  it("returns a non-retryable error at once, unchanged", function()
    local fn, opts, calls, slept = scripted { bad, "job" }
    local v, e = faceswap.retry(fn, opts)
    assert.is_nil(v)
    assert.equal(bad, e)
    assert.is_true(rawequal(bad, e))
    assert.equal(1, calls())
    assert.same({}, slept)
  end)

  it("gives up after `attempts` calls and returns the last error unchanged", function()
    local last = discord_429(1)
    local fn, opts, calls, slept = scripted { discord_429(1), discord_429(1), last, "job" }
    opts.attempts = 3
    local v, e = faceswap.retry(fn, opts)
    assert.is_nil(v)
    assert.is_true(rawequal(last, e))
    assert.equal(3, calls())
    assert.same({ 1, 1 }, slept)
  end)

  it("starts no wait that would end past the deadline", function()
    local fn, opts, calls, slept = scripted { discord_429(4), discord_429(4), discord_429(4), "job" }
    opts.deadline = 10
    local _, e = faceswap.retry(fn, opts)
    assert.equal("rate_limited", e.kind)
    assert.equal(3, calls()) -- waits of 4 and 4 fit in 10 s, a third would end at 12
    assert.same({ 4, 4 }, slept)
  end)

  it("treats anything but an error with retryable = true as final", function()
    local n = 0
    local v, e = faceswap.retry(function() n = n + 1; return nil, "plain string" end, {
      sleep = function() error("must not sleep") end })
    assert.same({ nil, "plain string", 1 }, { v, e, n })
    local v2, e2 = faceswap.retry(function() return false, "x" end)
    assert.same({ false, "x" }, { v2, e2 })
  end)

  it("lets what fn raises through", function()
    assert.has_error(function() faceswap.retry(function() error("boom", 0) end) end, "boom")
  end)

  it("raises on misuse, naming the argument", function()
    assert.has_error(function() faceswap.retry("f") end,
      "bad argument #1 to 'retry' (function expected, got string)")
    assert.has_error(function() faceswap.retry(print, { tries = 3 }) end,
      "bad argument #2 to 'retry' (unknown option 'tries')")
    assert.has_error(function() faceswap.retry(print, { attempts = 0 }) end,
      "bad argument #2 to 'retry' (option 'attempts' must be a whole number from 1 to 1e9)")
    assert.has_error(function() faceswap.retry(print, { attempts = 2.5 }) end,
      "bad argument #2 to 'retry' (option 'attempts' must be a whole number from 1 to 1e9)")
    assert.has_error(function() faceswap.retry(print, { min_delay = -1 }) end,
      "bad argument #2 to 'retry' (option 'min_delay' must be a number of seconds from 0 to 1e9)")
    assert.has_error(function() faceswap.retry(print, { min_delay = 40 }) end,
      "bad argument #2 to 'retry' (min_delay is larger than max_delay)")
    assert.has_error(function() faceswap.retry(print, { max_retry_after = -1 }) end,
      "bad argument #2 to 'retry' (option 'max_retry_after' must be a number of seconds from 0 to 1e9)")
    assert.has_error(function() faceswap.new { token = "t", retry = { max_retry_after = "2" } } end,
      "bad argument #1 to 'new' (option 'retry': option 'max_retry_after' must be a number of " ..
      "seconds from 0 to 1e9)")
    assert.has_error(function() faceswap.retry(print, { sleep = 1 }) end,
      "bad argument #2 to 'retry' (option 'sleep' must be a function)")
    assert.has_error(function() faceswap.new { token = "t", retry = { attempt = 1 } } end,
      "bad argument #1 to 'new' (option 'retry': unknown option 'attempt')")
    assert.has_error(function() faceswap.new { token = "t", retry = true } end,
      "bad argument #1 to 'new' (option 'retry' must be a table or false, got boolean)")
  end)
end)
