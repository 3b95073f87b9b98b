-- Hostile review of issue 17, item 19: "honour retry_after up to an absolute cap
-- (max_retry_after), longer ones return the error at once". A Retry-After past a day
-- (csrc/response.c MAX_RETRY_AFTER) is dropped as unknown, so the retry waits its own 429
-- backoff (10 to 30 s) and sends the headshot again, though the server asked for a day.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"

describe("review: a Retry-After longer than a day", function()
  local s, slept

  setup(function() s = sim.start { job_seconds = 0.2, token = TOKEN } end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    slept = {}
  end)

  local function client()
    return faceswap.new { token = TOKEN, base_url = s.base_url, retry = {
      sleep = function(d) slept[#slept + 1] = d end,
      random = function() return 0.5 end,
    } }
  end

  for _, after in ipairs { "86401", "90000", "99999999999999999999" } do
    it("returns the 429 at once, not sleeping or sending again, for Retry-After: " .. after, function()
      s:script { action = "status", status = 429, headers = { ["Retry-After"] = after },
                 body = "Too Many Requests", match = "^POST /headshot$" }
      local c = client()
      local job, e = c:headshot("portrait")
      assert.is_nil(job)
      assert.same({ "rate_limited", 429, "HTTP 429: Too Many Requests" }, { e.kind, e.code, e.error })
      assert.same({}, slept)
      assert.equal(1, s:count("POST"))
      c:close()
    end)
  end

  it("returns Discord's retry_after of two days at once", function()
    s:script { action = "discord_429", retry_after = 172800, match = "^POST /headshot$" }
    local c = client()
    local job, e = c:headshot("portrait")
    assert.is_nil(job)
    assert.equal("rate_limited", e.kind)
    assert.same({}, slept)
    assert.equal(1, s:count("POST"))
    c:close()
  end)
end)
