-- The client's retry policy against the simulator: on by default, the exact waits (sleep and
-- random are injected), Retry-After and Discord's retry_after, attempts, downloads; and that a
-- headshot whose body may have reached the server is never sent twice.
local fixture = require "spec.support.fixture"

describe("the client's retry policy", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = false }
  local function client(policy) return fx.new { retry = fx.retry(policy) } end

  it("is on by default: a headshot after a full queue goes through", function()
    fx.sim:script { action = "queue_full", match = "^POST /headshot$", count = 2 }
    local job, e = client():headshot("portrait")
    assert.is_nil(e)
    assert.equal("started", job.status)
    assert.same({ 20, 20 }, fx.slept)
    assert.equal(3, fx.sim:count("POST"))
  end)

  it("waits Discord's retry_after", function()
    fx.sim:script { action = "discord_429", retry_after = 1.5, match = "^POST /headshot$" }
    assert(client():headshot("portrait"))
    assert.same({ 1.5 }, fx.slept)
  end)

  -- issue 17, item 19: with max_delay = 0.02 these came back as errors instead of retries
  it("waits a Retry-After of 1 s, and Discord's retry_after of 0.3 s, whatever max_delay is", function()
    fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = "1" },
               body = "Too Many Requests", match = "^POST /headshot$" }
    fx.sim:script { action = "discord_429", retry_after = 0.3, match = "^POST /headshot$" }
    local c = client { min_delay = 0.01, max_delay = 0.02 }
    local job, e = c:headshot("portrait")
    assert.is_nil(e)
    assert.equal("started", job.status)
    assert.same({ 1, 0.3 }, fx.slept)
    assert.equal(3, fx.sim:count("POST"))
    c:close()
  end)

  it("returns a Retry-After past max_retry_after at once, retry_after telling how long", function()
    fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = "3" },
               body = "Too Many Requests", match = "^POST /headshot$" }
    local c = client { max_retry_after = 2 }
    local job, e = c:headshot("portrait")
    assert.is_nil(job)
    assert.same({ "rate_limited", 429, "HTTP 429: Too Many Requests", 3 },
      { e.kind, e.code, e.error, e.retry_after })
    assert.same({}, fx.slept)
    assert.equal(1, fx.sim:count("POST"))
    c:close()
  end)

  it("never resends a headshot whose body may have reached the server", function()
    fx.sim:script { action = "close_after_body", match = "^POST /headshot$" }
    local job, e = client():headshot("portrait")
    assert.is_nil(job)
    assert.equal("transport", e.kind)
    assert.is_true(e.sent)
    assert.is_false(e.retryable)
    assert.same({}, fx.slept)
    assert.equal(1, fx.sim:count("POST"))
    assert.equal(1, #fx.sim:jobs()) -- the one job the server made, and only that one
  end)

  it("does not resend a headshot answered with a 5xx", function()
    fx.sim:script { action = "html_502", match = "^POST /headshot$" }
    local _, e = client():headshot("portrait")
    assert.equal("server", e.kind)
    assert.equal(502, e.code)
    assert.same({}, fx.slept)
    assert.equal(1, fx.sim:count("POST"))
  end)

  it("retries a GET after 5xx answers, backing off", function()
    local c = client()
    local job = assert(c:headshot("portrait"))
    fx.sim:script { action = "html_502", match = "^GET /jobs/$" }
    fx.sim:script { action = "status", status = 503, match = "^GET /jobs/$" }
    local got = assert(c:job(job.jobid))
    assert.equal(job.jobid, got.jobid)
    assert.same({ 0.75, 1.5 }, fx.slept) -- 1/2 + 1/2 * 0.5, then 2/2 + 2/2 * 0.5
  end)

  it("returns the last error when attempts run out", function()
    fx.sim:script { action = "queue_full", match = "^POST /headshot$", count = 5 }
    local _, e = client { attempts = 3 }:headshot("portrait")
    assert.equal("rate_limited", e.kind)
    assert.equal("Unable to lock Discord after 3 attempts", e.error)
    assert.equal(3, fx.sim:count("POST"))
    assert.same({ 20, 20 }, fx.slept)
  end)

  it("is off with retry = false", function()
    fx.sim:script { action = "queue_full", match = "^POST /headshot$" }
    local c = fx.new { retry = false }
    local _, e = c:headshot("portrait")
    assert.equal("rate_limited", e.kind)
    assert.equal(1, fx.sim:count("POST"))
  end)

  it("retries a download after a 5xx", function()
    local c = client()
    local job = assert(c:headshot("portrait"))
    assert(c:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 5 }))
    local url = assert(c:job(job.jobid)):urls()[1]
    fx.sim:script { action = "status", status = 503, match = "^GET /attachments/" }
    local png = assert(c:download(url))
    assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    assert.same({ 0.75 }, fx.slept)
  end)

  it("does not follow a download's redirect: server, as for API calls, and not retried", function()
    local c = client()
    local job = assert(c:headshot("portrait"))
    assert(c:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 5 }))
    local url = assert(c:job(job.jobid)):urls()[1]
    fx.sim:script { action = "status", status = 302, headers = { Location = url }, match = "^GET /attachments/" }
    local png, e = c:download(url)
    assert.is_nil(png)
    assert.equal("server (302): download failed with HTTP 302", tostring(e))
    assert.is_false(e.retryable)
    assert.same({}, fx.slept)
  end)

  -- a wait past a day is still the server's instruction (issue 17, item 19): kept, so the
  -- retry returns the 429 at once instead of sending the headshot again after its own backoff
  for _, case in ipairs { { "86401", 86401 }, { "90000", 90000 }, { "99999999999999999999", 1e10 } } do
    local after, kept = case[1], case[2]
    it("returns the 429 at once, not sleeping or sending again, for Retry-After: " .. after, function()
      fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = after },
                 body = "Too Many Requests", match = "^POST /headshot$" }
      local c = client()
      local job, e = c:headshot("portrait")
      assert.is_nil(job)
      assert.same({ "rate_limited", 429, "HTTP 429: Too Many Requests" }, { e.kind, e.code, e.error })
      assert.equal(kept, e.retry_after)
      assert.same({}, fx.slept)
      assert.equal(1, fx.sim:count("POST"))
      c:close()
    end)
  end

  it("returns Discord's retry_after of two days at once", function()
    fx.sim:script { action = "discord_429", retry_after = 172800, match = "^POST /headshot$" }
    local c = client()
    local job, e = c:headshot("portrait")
    assert.is_nil(job)
    assert.equal("rate_limited", e.kind)
    assert.equal(172800, e.retry_after)
    assert.same({}, fx.slept)
    assert.equal(1, fx.sim:count("POST"))
    c:close()
  end)
end)
