-- The fault matrix: everything the network or the server can do wrong, one spec a row, through
-- the simulator's scripted misbehaviour. Each row checks what the user sees (kind, code, the
-- exact message, retryable, sent), that it comes within the client's timeout, and that the same
-- client then carries on: the next headshot succeeds. The table of docs/faults.md "fault → what the user
-- sees" is this file in prose. Retries are off (retry = false), so each error is the first one.
-- Runs under Lua 5.4 and LuaJIT 2.1 alike.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"

local TIMEOUT = 0.5            -- the client's timeout in every row
local LIMIT = TIMEOUT + 1      -- no row may take longer than this (slack for slow machines)
-- took < bound, except under valgrind and ASan (make test-valgrind and test-asan set
-- SPEC_NO_TIME_BOUNDS), where each row asserts what the user sees and no upper bound on time
local function within(took, bound) return os.getenv("SPEC_NO_TIME_BOUNDS") ~= nil or took < bound end
local MAX = 65536              -- the client's max_response

local function elapsed(fn)
  local t0 = faceswap.now()
  local a, b = fn()
  return faceswap.now() - t0, a, b
end

-- A line of /proc/self/status (VmRSS, VmHWM) in bytes, or nil off Linux.
local function proc_status(name)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local kb = text:match(name .. ":%s*(%d+) kB")
  return kb and tonumber(kb) * 1024
end

-- Resets VmHWM, the peak resident memory, to the current VmRSS (Linux 4.0+); false if it cannot.
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok ~= nil
end

-- Escapes Lua pattern magic, for messages that embed a number the spec knows.
local function literal(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

describe("fault matrix", function()
  local fx = fixture.simulator { job_seconds = 600, client = { retry = false, timeout = TIMEOUT, max_response = MAX } }
  local started
  -- a job the simulator knows, read back by the GETs below; it also opens the connection
  -- that the client keeps alive, as in real use
  before_each(function() started = assert(fx.client:headshot("the job the faults are read for")) end)

  -- Calls fn (default: client:job(started.jobid)) and checks the error against want: kind,
  -- code, error (exact) or pattern (anchored), retryable and sent. Returns the error.
  local function fails(want, fn)
    local took, job, err = elapsed(fn or function() return fx.client:job(started.jobid) end)
    assert.is_nil(job, "expected an error, got " .. tostring(job))
    assert.equal("error", faceswap.type(err))
    assert.same({ want.kind, want.code, want.retryable, want.sent },
      { err.kind, err.code, err.retryable, err.sent })
    if want.pattern then
      assert.matches(want.pattern, err.error)
    else
      assert.equal(want.error, err.error)
    end
    assert.is_true(within(took, LIMIT), string.format("took %.3f s, limit %.3f s", took, LIMIT))
    return err, took
  end

  -- The same client goes on: a headshot right after the fault succeeds.
  local function still_works(c)
    local job, err = (c or fx.client):headshot("the next request")
    assert.is_nil(err and tostring(err))
    assert.equal("started", job.status)
    assert.equal("the next request", job.prompt)
  end

  -- A 200 carrying body, through the status action.
  local function answer(body, headers)
    fx.sim:script { action = "status", status = 200, body = body, headers = headers }
  end

  describe("no answer", function()
    it("connection refused: transport, surely not sent; the client works once the server is back", function()
      local down = sim.start { token = fx.TOKEN }
      local port = down.port
      local c = faceswap.new { token = fx.TOKEN, base_url = down.base_url, retry = false, timeout = TIMEOUT }
      assert(c:headshot("before the server goes away"))   -- a kept-alive connection to a dead server
      down:stop()
      fails({ kind = "transport", retryable = true, sent = false,
              pattern = "^Failed to connect to 127%.0%.0%.1 port " .. port ..
                " after %d+ ms: Couldn't connect to server$" },
        function() return c:headshot("refused") end)
      local back = sim.start { token = fx.TOKEN, port = port }
      still_works(c)
      c:close()
      back:stop()
    end)

    it("reset before any answer to a GET, on the kept-alive connection and on libcurl's fresh one", function()
      fx.sim:script { action = "reset_before", count = 2 }
      fails { kind = "transport", retryable = true, sent = true,
              error = "Recv failure: Connection reset by peer" }
      local r = fx.sim:requests()
      assert.equal(3, #r)   -- the headshot, the GET and libcurl's one resend of it
      assert.same({ "GET", "GET" }, { r[2].method, r[3].method })
      assert.same({ 1, 2 }, { r[2].conn, r[3].conn })
      still_works()
    end)

    it("one reset before the answer to a GET is not seen: libcurl resends a GET once", function()
      fx.sim:script { action = "reset_before" }
      local job = assert(fx.client:job(started.jobid))
      assert.equal(started.jobid, job.jobid)
      assert.equal(2, fx.sim:stats().connections)
      still_works()
    end)

    it("reset before any answer to a headshot: transport, sent, never resent, not retryable", function()
      fx.sim:script { action = "reset_before", match = "^POST" }
      fails({ kind = "transport", retryable = false, sent = true,
              error = "connection lost after the request was sent; not resent, since the server " ..
                "may have acted on it" },
        function() return fx.client:headshot("reset") end)
      assert.equal(2, fx.sim:count("POST"))   -- the first headshot and this one, once
      still_works()
    end)

    it("no bytes at all past the timeout: timeout, no code, after the timeout and not much later", function()
      fx.sim:script { action = "hang" }
      local _, took = fails { kind = "timeout", retryable = true, sent = true,
                              pattern = "^Operation timed out after %d+ milliseconds with 0 bytes received$" }
      assert.is_true(took >= TIMEOUT, "took " .. took)
      still_works()
    end)

    it("no answer to a headshot past the timeout: timeout, not retryable (the job may exist)", function()
      fx.sim:script { action = "hang", match = "^POST" }
      local _, took = fails({ kind = "timeout", retryable = false, sent = true,
                              pattern = "^Operation timed out after %d+ milliseconds with 0 bytes received$" },
        function() return fx.client:headshot("hang") end)
      assert.is_true(took >= TIMEOUT, "took " .. took)
      still_works()
    end)
  end)

  describe("cut short", function()
    it("reset in the middle of the body: transport with the status that arrived", function()
      fx.sim:script { action = "reset_during" }
      fails { kind = "transport", code = 200, retryable = true, sent = true,
              error = "Recv failure: Connection reset by peer" }
      still_works()
    end)

    it("reset in the middle of a headshot's body: transport, not retryable", function()
      fx.sim:script { action = "reset_during", match = "^POST" }
      fails({ kind = "transport", code = 200, retryable = false, sent = true,
              error = "Recv failure: Connection reset by peer" },
        function() return fx.client:headshot("reset during") end)
      assert.equal(2, #fx.sim:jobs())   -- the server did make this job: it is right not to retry
      still_works()
    end)

    it("the connection closed before the Content-Length was reached: transport", function()
      local n = #started:json()   -- the GET answers the same JSON (the job has not moved)
      fx.sim:script { action = "truncate" }
      fails { kind = "transport", code = 200, retryable = true, sent = true,
              error = "transfer closed with " .. (n - math.floor(n / 2)) .. " bytes remaining to read" }
      still_works()
    end)
  end)

  describe("slow", function()
    it("a drip of bytes that would end past the timeout: timeout", function()
      fx.sim:script { action = "drip", seconds = 0.1 }   -- not even the status line in time
      local _, took = fails { kind = "timeout", retryable = true, sent = true,
                              pattern = "^Operation timed out after %d+ milliseconds with 0 bytes received$" }
      assert.is_true(took >= TIMEOUT, "took " .. took)
      still_works()
    end)

    it("a drip of bytes that ends within the timeout works", function()
      local c = fx.new { retry = false, timeout = 10 }
      fx.sim:script { action = "drip", seconds = 0.001 }   -- some 700 bytes, one a millisecond or more
      local took, job = elapsed(function() return c:job(started.jobid) end)
      assert.equal(started, job)
      assert.is_true(took > TIMEOUT, "took " .. took)   -- longer than the other rows allow
      still_works(c)
      c:close()
    end)

    it("a chunked answer whose chunks come slowly, within the timeout, works", function()
      fx.sim:script { action = "chunked", chunk_size = 64, seconds = 0.02 }
      local took, job = elapsed(function() return fx.client:job(started.jobid) end)
      assert.equal(started, job)
      assert.is_true(took > 0.1 and within(took, TIMEOUT), "took " .. took)
      still_works()
    end)
  end)

  describe("bodies", function()
    it("truncated JSON in a complete answer: bad_response with the status", function()
      fx.sim:script { action = "invalid_json" }
      fails { kind = "bad_response", code = 200, retryable = true, sent = true,
              error = "HTTP 200 answer: invalid JSON: unexpected end of text at byte 28" }
      still_works()
    end)

    it("truncated JSON answering a headshot: bad_response, not retryable", function()
      fx.sim:script { action = "invalid_json", match = "^POST" }
      fails({ kind = "bad_response", code = 200, retryable = false, sent = true,
              error = "HTTP 200 answer: invalid JSON: unexpected end of text at byte 28" },
        function() return fx.client:headshot("invalid json") end)
      still_works()
    end)

    local BAD_UTF8 = {
      { "a lone continuation byte", "\128" },
      { "an overlong encoding", "\192\175" },
      { "a UTF-16 surrogate", "\237\160\128" },
      { "a sequence cut short", "\226\130" },
      { "a code point past U+10FFFF", "\244\144\128\128" },
      { "a byte that is never UTF-8", "\255" },
    }
    for _, case in ipairs(BAD_UTF8) do
      it("invalid UTF-8 in a JSON string (" .. case[1] .. "): bad_response at the string", function()
        local head = '{"jobid":"' .. started.jobid .. '","status":"started","prompt":"'
        answer(head .. "bad " .. case[2] .. ' byte"}')
        fails { kind = "bad_response", code = 200, retryable = true, sent = true,
                error = "HTTP 200 answer: invalid JSON: invalid UTF-8 in string at byte " .. (#head + 1) }
        still_works()
      end)
    end

    -- every documented field with values of the wrong type; jobid must be a string to be a job
    local STRING_FIELDS = { "verb", "status", "prompt", "created", "updated", "discord", "server",
                            "channel", "replyUrl", "replyRef", "messageId", "content", "timestamp",
                            "error", "errorDetails" }
    local WRONG = {
      jobid = { { "42", "not a job: no jobid string" }, { "true", "not a job: no jobid string" },
                { '{"id":"x"}', "not a job: no jobid string" }, { '["x"]', "not a job: no jobid string" } },
      code = { { '"200"', "field code is not a number" }, { "true", "field code is not a number" },
               { "{}", "field code is not a number" }, { "[200]", "field code is not a number" } },
      attachments = { { '"x"', "field attachments is not an array" },
                      { '{"url":"x"}', "field attachments is not an array" },
                      { "7", "field attachments is not an array" },
                      { '["http://x/a.png"]', "field attachments is not an array of objects" },
                      { '[{"url":"x"},3]', "field attachments is not an array of objects" } },
      embeds = { { '"x"', "field embeds is not an array" }, { "{}", "field embeds is not an array" },
                 { "false", "field embeds is not an array" },
                 { '["x"]', "field embeds is not an array of objects" } },
    }
    for _, name in ipairs(STRING_FIELDS) do
      WRONG[name] = { { "42", "field " .. name .. " is not a string" },
                      { "true", "field " .. name .. " is not a string" },
                      { '{"a":"b"}', "field " .. name .. " is not a string" },
                      { '["s"]', "field " .. name .. " is not a string" } }
    end
    local FIELDS = { "jobid", "verb", "status", "prompt", "created", "updated", "discord", "server",
                     "channel", "replyUrl", "replyRef", "messageId", "content", "timestamp", "error",
                     "errorDetails", "code", "attachments", "embeds" }
    for _, name in ipairs(FIELDS) do
      it("field " .. name .. " of the wrong type: bad_response naming the field", function()
        for _, case in ipairs(WRONG[name]) do
          local body
          if name == "jobid" then
            body = '{"jobid":' .. case[1] .. ',"status":"started","code":200}'
          else
            body = '{"jobid":"' .. started.jobid .. '","status":"started","' .. name .. '":' .. case[1] .. "}"
          end
          answer(body)
          fails { kind = "bad_response", code = 200, retryable = true, sent = true,
                  error = "HTTP 200 answer: " .. case[2] }
          still_works()
        end
      end)
    end

    it("a field that is null is absent, not of the wrong type", function()
      answer('{"jobid":"' .. started.jobid .. '","status":"started","error":null,"code":null,' ..
             '"attachments":null,"replyRef":null}')
      local job = assert(fx.client:job(started.jobid))
      assert.same({ started.jobid, "started" }, { job.jobid, job.status })
      assert.is_nil(job.error)
      assert.is_nil(job.code)
      assert.is_nil(job.attachments)
      assert.same({}, job:urls())
      still_works()
    end)

    it("a 200 that carries an error and no job: bad_response with the status", function()
      answer('{"error":"Unable to lock Discord after 3 attempts","code":429}')
      fails { kind = "bad_response", code = 200, retryable = true, sent = true,
              error = "HTTP 200 answer: not a job: no jobid string" }
      still_works()
    end)

    it("a 200 job that carries an error is a job: a failed job, with its error", function()
      answer('{"jobid":"' .. started.jobid .. '","status":"failed","error":"Job failed","code":200}')
      local job = assert(fx.client:job(started.jobid))
      assert.same({ "failed", "Job failed", true }, { job.status, job.error, job:done() })
      still_works()
    end)

    it("an HTML 502 from a proxy: server, 502, retryable for a GET", function()
      fx.sim:script { action = "html_502" }
      fails { kind = "server", code = 502, retryable = true, sent = true, error = "HTTP 502: 502 Bad Gateway" }
      still_works()
    end)

    it("an HTML 502 answering a headshot: server, 502, not retryable", function()
      fx.sim:script { action = "html_502", match = "^POST" }
      fails({ kind = "server", code = 502, retryable = false, sent = true, error = "HTTP 502: 502 Bad Gateway" },
        function() return fx.client:headshot("html") end)
      still_works()
    end)

    it("an HTML 4xx page from a proxy: bad_response, not retryable", function()
      fx.sim:script { action = "status", status = 403, content_type = "text/html",
                 body = "<html><body>403 Forbidden</body></html>" }
      fails { kind = "bad_response", code = 403, retryable = false, sent = true,
              error = "HTTP 403 answer is not a documented error (not JSON)" }
      still_works()
    end)

    it("not HTTP at all: transport, not retryable", function()
      fx.sim:script { action = "raw", data = "SSH-2.0-OpenSSH_9.2\r\n\r\n" }
      fails { kind = "transport", retryable = false, sent = true,
              error = "Received HTTP/0.9 when not allowed" }
      still_works()
    end)
  end)

  describe("size", function()
    it("a Content-Length of 8 GiB: bad_response at once, nothing read", function()
      fx.sim:script { action = "flood" }    -- claims 8 GiB and starts streaming it
      local err = fails { kind = "bad_response", code = 200, retryable = false, sent = true,
                          error = "answer larger than max_response (" .. MAX .. " bytes)" }
      assert.equal("bad_response (200): answer larger than max_response (65536 bytes)", tostring(err))
      still_works()
    end)

    for _, length in ipairs { "9223372036854775807", "9223372036854775808", "99999999999999999999999" } do
      it("a Content-Length of " .. length .. " (past what 64 bits hold): bad_response", function()
        fx.sim:script { action = "raw", data = "HTTP/1.1 200 OK\r\nContent-Length: " .. length .. "\r\n\r\n{}" }
        fails { kind = "bad_response", code = 200, retryable = false, sent = true,
                error = "answer larger than max_response (" .. MAX .. " bytes)" }
        still_works()
      end)
    end

    it("a negative Content-Length: transport", function()
      fx.sim:script { action = "raw", data = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}" }
      fails { kind = "transport", code = 200, retryable = true, sent = true,
              error = "Invalid Content-Length: value" }
      still_works()
    end)

    for _, size in ipairs { 1, 16, 4096 } do
      it("a chunked job in chunks of " .. size .. " bytes works", function()
        fx.sim:script { action = "chunked", chunk_size = size }
        assert.equal(started, assert(fx.client:job(started.jobid)))
        still_works()
      end)
    end

    it("a chunked headshot answer works", function()
      fx.sim:script { action = "chunked", match = "^POST" }
      local job = assert(fx.client:headshot("chunked"))
      assert.equal("chunked", job.prompt)
      assert.equal(4, job.credits)
      still_works()
    end)

    it("a chunked body over max_response: bad_response once max_response is passed", function()
      fx.sim:script { action = "flood", chunked = true, bytes = 4 * MAX }
      fails { kind = "bad_response", code = 200, retryable = false, sent = true,
              error = "answer larger than max_response (" .. MAX .. " bytes)" }
      still_works()
    end)

    it("a chunked body of exactly max_response is read", function()
      -- flood's body is valid JSON: {"data":"xxx..."}, but not a job
      fx.sim:script { action = "flood", chunked = true, bytes = MAX }
      fails { kind = "bad_response", code = 200, retryable = true, sent = true,
              error = "HTTP 200 answer: not a job: no jobid string" }
      still_works()
    end)

    -- The peak resident memory while a 64 MiB answer comes in stays within a few max_response:
    -- VmHWM is reset to VmRSS just before, so what it grows by is the transfer's high-water
    -- mark. #novalgrind: resident memory means nothing under valgrind.
    local MEMORY_ROWS = {
      { 1024 * 1024, false, "Content-Length 64 MiB, the body streaming" },
      { 1024 * 1024, true, "chunked, no length given" },
      { 256 * 1024, true, "chunked, the default max_response of 256 KiB", default = true },
    }
    for _, row in ipairs(MEMORY_ROWS) do
      local limit, chunked, how, default = row[1], row[2], row[3], row.default
      it("memory stays bounded by max_response: a 64 MiB answer (" .. how .. ") #novalgrind", function()
        local c = fx.new { retry = false, timeout = 5,
                                 max_response = not default and limit or nil }
        assert(c:job(started.jobid))       -- warm: connection, buffers
        collectgarbage()
        local peak_known = reset_peak()
        local before = proc_status("VmRSS")
        fx.sim:script { action = "flood", chunked = chunked, bytes = 64 * 1024 * 1024 }
        local took, job, err = elapsed(function() return c:job(started.jobid) end)
        local after = proc_status(peak_known and "VmHWM" or "VmRSS")
        assert.is_nil(job)
        assert.same({ "bad_response", 200, "answer larger than max_response (" .. limit .. " bytes)" },
          { err.kind, err.code, err.error })
        assert.is_true(within(took, LIMIT), "took " .. took)
        if before and after then
          -- 64 MiB held would be 64 times over; doubling the buffer may briefly hold
          -- one and a half times max_response, and libcurl has buffers of its own
          local bound = 2 * limit + 4 * 1024 * 1024
          assert.is_true(after - before < bound, string.format("%s grew by %.1f MiB, bound %.1f MiB",
            peak_known and "VmHWM" or "VmRSS", (after - before) / 1048576, bound / 1048576))
        end
        still_works(c)
        c:close()
      end)
    end
  end)

  describe("headers", function()
    it("two identical Content-Length headers: the answer is read", function()
      local body = started:json()
      answer(body, { ["Content-Length"] = { #body, #body } })
      assert.equal(started, assert(fx.client:job(started.jobid)))
      still_works()
    end)

    -- libcurl 7.88 takes the last of two Content-Length headers; RFC 9112 section 6.3 makes two
    -- that disagree a framing error a client must not read past (found by this spec: the call
    -- waited out the whole timeout, or read a cut body as truncated JSON)
    it("two Content-Length headers that disagree: transport at once, not a wait for the timeout", function()
      local body = started:json()
      answer(body, { ["Content-Length"] = { #body, #body + 5 } })
      local took, job, err = elapsed(function() return fx.client:job(started.jobid) end)
      assert.is_nil(job)
      assert.same({ "transport", 200 }, { err.kind, err.code })
      assert.equal("answer with Content-Length headers that disagree", err.error)
      assert.is_true(within(took, TIMEOUT / 2), "took " .. took)
      still_works()
    end)

    it("two Retry-After headers on a 429: the first counts", function()
      fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = { "5", "7" } },
                 body = '{"error":"Unable to lock Discord after 3 attempts","code":429}' }
      local err = fails { kind = "rate_limited", code = 429, retryable = true, sent = true,
                          error = "Unable to lock Discord after 3 attempts" }
      assert.equal(5, err.retry_after)
      still_works()
    end)

    it("two Retry-After headers on a 503: server, the first counts", function()
      fx.sim:script { action = "status", status = 503, headers = { ["Retry-After"] = { "12", "1" } } }
      local err = fails { kind = "server", code = 503, retryable = true, sent = true, error = "HTTP 503" }
      assert.equal(12, err.retry_after)
      still_works()
    end)

    it("Transfer-Encoding: chunked over a body that is not chunked: transport", function()
      answer(started:json(), { ["Transfer-Encoding"] = "chunked" })   -- a Content-Length too
      fails { kind = "transport", code = 200, retryable = true, sent = true,
              error = "Illegal or missing hexadecimal sequence in chunked-encoding" }
      still_works()
    end)

    it("a 302 redirect: server, 302, the Location not fetched", function()
      fx.sim:script { action = "status", status = 302,
                 headers = { Location = fx.base_url .. "/jobs/?jobid=" .. started.jobid } }
      fails { kind = "server", code = 302, retryable = false, sent = true,
              error = "unexpected HTTP 302 (redirects are not followed)" }
      assert.equal(2, #fx.sim:requests())
      still_works()
    end)
  end)

  it("every row's message is one line in tostring", function()
    fx.sim:script { action = "status", status = 503, body = '{"error":"line one\\r\\nline two","code":503}' }
    local _, err = fx.client:job(started.jobid)
    assert.equal("server (503): line one  line two", tostring(err))
    assert.matches(literal("line one\r\nline two"), err.error)
    still_works()
  end)
end)
