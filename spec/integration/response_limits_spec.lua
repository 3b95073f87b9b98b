-- Reading answers through the client (the C core reads them: spec/unit/response_spec.lua): an
-- error answer larger than max_response, from the simulator.
local fixture = require "spec.support.fixture"
local fields = fixture.fields

-- Issue 17, item 18: an error answer larger than max_response is not even received (the
-- transport stops at max_response), and its status still decides its kind, with the wording of
-- the 64 KiB rule (spec/unit/response_spec.lua); a 2xx past it stays bad_response "answer larger than max_response".
describe("an error answer past max_response", function()
  local fx = fixture.simulator { job_seconds = 600, client = { retry = false, max_response = 65536 },
    -- the client goes on
    after = function(f) assert(f.client:job(assert(f.client:headshot("still works")).jobid)) end }
  -- 100,012 bytes of documented JSON: it would be read, were it not too large
  local BIG = '{"error":"' .. ("x"):rep(100000) .. '"}'

  local function err_of(status, call, headers)
    fx.sim:script { action = "status", status = status, headers = headers, body = BIG }
    local job, err = call()
    assert.is_nil(job)
    return fields(err)
  end
  local function note(status, more, cap)
    return "HTTP " .. status .. " answer of " .. (more or "100012") .. " bytes not read " ..
      "(an error answer is read up to " .. (cap or 65536) .. " bytes)"
  end
  local get = function() return fx.client:job("abc") end
  local post = function() return fx.client:headshot("p") end

  it("a 500 is server, retried when a GET, with its Retry-After", function()
    assert.same({ kind = "server", code = 500, retryable = true, sent = true, retry_after = 3,
                  error = note(500) }, err_of(500, get, { ["Retry-After"] = "3" }))
    assert.same({ kind = "server", code = 503, retryable = false, sent = true, error = note(503) },
      err_of(503, post))
  end)

  it("a 429 is rate_limited and retryable, with its Retry-After", function()
    assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true, retry_after = 7,
                  error = note(429) }, err_of(429, post, { ["Retry-After"] = "7" }))
  end)

  it("a 401 is unauthorized and another 4xx bad_response, as the 64 KiB rule reads them", function()
    assert.same({ kind = "unauthorized", code = 401, retryable = false, sent = true, error = note(401) },
      err_of(401, get))
    assert.same({ kind = "bad_response", code = 403, retryable = false, sent = true, error = note(403) },
      err_of(403, get))
  end)

  it("a chunked 500 (no Content-Length) says it was more than max_response", function()
    fx.sim:script { action = "raw", data = "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n" ..
      "Retry-After: 2\r\n\r\n" .. string.format("%x\r\n", 70000) .. ("y"):rep(70000) .. "\r\n0\r\n\r\n" }
    local job, err = fx.client:job("abc")
    assert.is_nil(job)
    assert.same({ kind = "server", code = 500, retryable = true, sent = true, retry_after = 2,
                  error = note(500, "more than 65536") }, fields(err))
  end)

  it("a Retry-After after the Content-Length still counts", function()
    fx.sim:script { action = "raw", data = "HTTP/1.1 429 x\r\nContent-Length: 100000\r\nRetry-After: 4\r\n\r\n" ..
      ("z"):rep(100000) }
    local job, err = fx.client:headshot("p")
    assert.is_nil(job)
    assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true, retry_after = 4,
                  error = note(429, "100000") }, fields(err))
  end)

  it("under a max_response below 64 KiB, names that cap", function()
    fx.client:close()
    fx.client = fx.new { retry = false, max_response = 4096 }
    assert.same({ kind = "server", code = 500, retryable = true, sent = true, error = note(500, nil, 4096) },
      err_of(500, get))
  end)
end)
