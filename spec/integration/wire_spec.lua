-- What the bytes of an answer's header block decide: answers cut short inside it, and lines
-- that look like a status line inside it. Raw bytes from the simulator's `raw` action (sent,
-- then the connection closed). Retries off, so each error is the first one.
local fixture = require "spec.support.fixture"


describe("the header block", function()
  local fx = fixture.simulator { job_seconds = 600, client = { retry = false, timeout = 10 } }
  local started
  before_each(function() started = assert(fx.client:headshot("the job the answers are read for")) end)

  local function get_fails(data)
    fx.sim:script { action = "raw", data = data }
    local job, err = fx.client:job(started.jobid)
    assert.is_nil(job)
    return err
  end

  local function headshot_fails(data)
    fx.sim:script { action = "raw", data = data, match = "^POST" }
    local job, err = fx.client:headshot("cut short")
    assert.is_nil(job)
    return err
  end

  describe("cut short", function()
    for name, data in pairs {
      ["in a header line"] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le",
      ["after a whole header line"] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
      ["after the status line"] = "HTTP/1.1 200 OK\r\n",
      ["after a 100 Continue, in the answer's headers"] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConte",
    } do
      it("closed " .. name .. ": transport, no code (not a 200 with an empty body)", function()
        local err = get_fails(data)
        assert.same({ "transport", nil, true, true,
                      "connection closed before the answer's headers ended" },
          { err.kind, err.code, err.sent, err.retryable, err.error })
        assert.equal("transport: connection closed before the answer's headers ended", tostring(err))
      end)
    end

    it("closed inside the headers of a headshot's answer: transport, no code, not retryable", function()
      local err = headshot_fails("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
      assert.same({ "transport", nil, true, false,
                    "connection closed before the answer's headers ended" },
        { err.kind, err.code, err.sent, err.retryable, err.error })
    end)

    it("100 Continue, then closed: transport with no code (a 1xx is no answer)", function()
      local err = get_fails("HTTP/1.1 100 Continue\r\n\r\n")
      assert.same({ "transport", nil, true, true, "Empty reply from server" },
        { err.kind, err.code, err.sent, err.retryable, err.error })
      assert.equal("transport: Empty reply from server", tostring(err))
    end)

    it("100 Continue, then the answer: the job", function()
      local body = started:json()
      fx.sim:script { action = "raw", data = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" ..
        "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body }
      assert.equal(started, assert(fx.client:job(started.jobid)))
    end)

    it("the same client works after each", function()
      get_fails("HTTP/1.1 200 OK\r\n")
      get_fails("HTTP/1.1 100 Continue\r\n\r\n")
      assert.equal(started, assert(fx.client:job(started.jobid)))
    end)
  end)

  describe("a header line that starts with HTTP/", function()
    it("does not reset the header state: two Content-Length headers around it still disagree", function()
      local body = started:json()
      local err = get_fails("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\nHTTP/1.1: x\r\n" ..
        "Content-Length: " .. (#body + 5) .. "\r\n\r\n" .. body)
      assert.same({ "transport", 200, "answer with Content-Length headers that disagree" },
        { err.kind, err.code, err.error })
    end)

    it("does not drop a Retry-After before it", function()
      local err = get_fails("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nHTTP/1.1: x\r\n" ..
        "Content-Type: application/json\r\nContent-Length: 52\r\n\r\n" ..
        '{"error":"Unable to lock Discord after 3 attempts"}\n')
      assert.same({ "rate_limited", 429, 7, "Unable to lock Discord after 3 attempts" },
        { err.kind, err.code, err.retry_after, err.error })
    end)

    it("a real status line after a 1xx does reset it: only the final answer's headers count", function()
      local body = started:json()
      fx.sim:script { action = "raw", data = "HTTP/1.1 100 Continue\r\nRetry-After: 99\r\nContent-Length: 1\r\n\r\n" ..
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body }
      assert.equal(started, assert(fx.client:job(started.jobid)))
    end)
  end)
end)
