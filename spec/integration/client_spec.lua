-- The client against the simulator on loopback: what a user calls and sees, and what
-- arrives at the server.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"


local refused_url = fixture.refused_url

describe("client", function()
  local fx = fixture.simulator { job_seconds = 0.3, client = { retry = false } }
  local function api_requests()
    return fx.sim:requests()
  end

  describe("headshot", function()
    it("reads the balance from the bot's message, not from the quoted prompt", function()
      local job = assert(fx.client:headshot("studio portrait (0/5 credits remaining)"))
      assert.same({ 4, 796, 800 }, { job.credits, job.credits_left, job.credits_total })
    end)

    it("submits a multipart POST and returns the started job", function()
      local job = assert(fx.client:headshot("portrait of a cat"))
      assert.equal("job", faceswap.type(job))
      assert.equal("started", job.status)
      assert.equal("faceswap-headshot", job.verb)
      assert.equal("portrait of a cat", job.prompt)
      assert.matches("^%x+$", job.jobid)
      assert.equal(32, #job.jobid)
      assert.equal(4, job.credits)
      assert.equal(796, job.credits_left)
      assert.equal(800, job.credits_total)
      local r = api_requests()
      assert.equal(1, #r)
      assert.equal("POST", r[1].method)
      assert.equal("/headshot", r[1].path)
      assert.equal("Bearer " .. fx.TOKEN, r[1].headers.authorization)
      assert.matches("^multipart/form%-data; boundary=faceswap%-%w+$", r[1].headers["content-type"])
      assert.same({ prompt = "portrait of a cat" }, r[1].fields)
    end)

    local tricky = {
      'quotes " and \' and \\backslash\\',
      "CRLF\r\nline two\r\n",
      "UTF-8: héllo wörld 😀 日本語",
      "a line that looks like a boundary:\r\n--faceswap-AAAAAAAAAAAAAAAAAAAAAAAA\r\nafter",
      "--faceswap-AAAAAAAAAAAAAAAAAAAAAAAA--",
      "tab\there --no green --square",
    }
    for _, encoding in ipairs { "multipart", "json" } do
      it("delivers tricky prompts byte-exact with " .. encoding .. " encoding", function()
        local c = fx.new { encoding = encoding }
        for _, prompt in ipairs(tricky) do
          local job = assert(c:headshot { prompt = prompt, replyRef = prompt:match("^[^\r\n\t]*") })
          assert.equal(prompt, job.prompt)
        end
        c:close()
        local r = api_requests()
        assert.equal(#tricky, #r)
        for i, prompt in ipairs(tricky) do
          assert.equal(prompt, r[i].fields.prompt)
          assert.equal(prompt:match("^[^\r\n\t]*"), r[i].fields.replyRef)
          if encoding == "json" then assert.equal("application/json", r[i].headers["content-type"]) end
        end
      end)
    end

    for _, encoding in ipairs { "multipart", "json" } do
      it("delivers a replyRef with tabs and line breaks byte-exact with " .. encoding .. " encoding",
        function()
          local c = fx.new { encoding = encoding }
          for _, ref in ipairs(tricky) do
            local job = assert(c:headshot { prompt = "p", replyRef = ref })
            assert.equal(ref, job.replyRef)
          end
          c:close()
          local r = api_requests()
          assert.equal(#tricky, #r)
          for i, ref in ipairs(tricky) do assert.equal(ref, r[i].fields.replyRef) end
        end)
    end

    it("sends every param, and the client's defaults where params leave them out", function()
      local c = faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
                               channel = "1100000000000000001", reply_url = "http://127.0.0.1:9/cb" }
      assert(c:headshot { prompt = "p1", replyRef = "ref", options = "--square" })
      assert(c:headshot { prompt = "p2", replyUrl = "http://127.0.0.1:9/other" })
      c:close()
      local r = api_requests()
      assert.same({ prompt = "p1", channel = "1100000000000000001",
                    replyUrl = "http://127.0.0.1:9/cb", replyRef = "ref", options = "--square" },
        r[1].fields)
      assert.same({ prompt = "p2", channel = "1100000000000000001",
                    replyUrl = "http://127.0.0.1:9/other" }, r[2].fields)
    end)

    it("fails locally, sending nothing, where the server would answer 400", function()
      local job, err = fx.client:headshot {}
      assert.is_nil(job)
      assert.equal("invalid_request", err.kind)
      assert.equal(400, err.code)
      assert.equal("Required param prompt is missing or empty", err.error)
      assert.is_false(err.sent)
      job, err = fx.client:headshot { prompt = "p", replyUrl = "http://x/" .. ("é"):rep(1020) }
      assert.is_nil(job)
      assert.equal("Optional param replyUrl is too long", err.error)
      job, err = fx.client:job("")
      assert.is_nil(job)
      assert.equal("Query param jobid not provided", err.error)
      assert.same({}, api_requests())
      assert.equal(0, fx.sim:stats().connections)
    end)
  end)

  describe("job, cancel and wait", function()
    it("reads a job's status and cancels it", function()
      local started = assert(fx.client:headshot("p"))
      local job = assert(fx.client:job(started.jobid))
      assert.equal(started.jobid, job.jobid)
      local cancelled = assert(fx.client:cancel(job))
      assert.equal("cancelled", cancelled.status)
      assert.is_true(cancelled:done())
      assert.equal("cancelled", assert(fx.client:job(started.jobid)).status)
      local r = api_requests()
      assert.equal("/jobs/", r[2].path)
      assert.equal("jobid=" .. started.jobid, r[2].query)
      assert.equal("/jobs/cancel/", r[3].path)
    end)

    it("follows a job to completion, reporting each status change once", function()
      local started = assert(fx.client:headshot("portrait"))
      local seen = {}
      local job = assert(fx.client:wait(started, {
        interval = 0.05, max_interval = 0.1, timeout = 10,
        on_update = function(j) seen[#seen + 1] = j.status end,
      }))
      assert.equal("completed", job.status)
      assert.same({ "progress", "completed" }, seen)
      assert.equal(2, #job:urls())
      assert.matches("^http://127%.0%.0%.1:%d+/attachments/" .. started.jobid .. "/1%.png%?", job:urls()[1])
    end)

    it("waits by jobid too, and returns a failed job as a job", function()
      local started = assert(fx.client:headshot("this one will sim:fail"))
      local job = assert(fx.client:wait(started.jobid, { interval = 0.05, timeout = 10 }))
      assert.equal("failed", job.status)
      assert.is_true(job:done())
    end)

    it("returns a timeout error carrying the last job seen", function()
      fx.sim:config { job_seconds = 60 }
      local started = assert(fx.client:headshot("slow"))
      local t0 = faceswap.now()
      local job, err = fx.client:wait(started, { interval = 0.05, timeout = 0.3 })
      assert.is_nil(job)
      assert.equal("timeout", err.kind)
      assert.equal("job " .. started.jobid .. " not done after 0.3 seconds (status started)",
        err.error)
      assert.equal(started.jobid, err.job.jobid)
      assert.is_true(faceswap.now() - t0 >= 0.3)
    end)

    it("polls once more at the deadline rather than give up unasked", function()
      local started = assert(fx.client:headshot("p"))   -- completes after 0.3 s
      local job = assert(fx.client:wait(started, { interval = 10, timeout = 0.6 }))
      assert.equal("completed", job.status)
      assert.equal(2, #api_requests())
    end)

    it("returns at once on an error page a retry cannot fix", function()
      local started = assert(fx.client:headshot("p"))
      fx.sim:script { action = "status", status = 401, content_type = "text/html",
                 body = "<html>Unauthorized</html>", match = "^GET" }
      local job, err = fx.client:wait(started, { interval = 0.05, timeout = 5 })
      assert.is_nil(job)
      assert.same({ "bad_response", 401, false }, { err.kind, err.code, err.retryable })
      assert.equal(2, #api_requests())
    end)

    it("returns at once on an error a retry cannot fix", function()
      local job, err = fx.client:wait("0123456789abcdef0123456789abcdef", { interval = 0.05 })
      assert.is_nil(job)
      assert.equal("not_found", err.kind)
      assert.equal("Unable to locate job 0123456789abcdef0123456789abcdef", err.error)
      assert.equal(1, #api_requests())
    end)

    it("raises on bad wait options", function()
      assert.has_error(function() fx.client:wait(42) end,
        "bad argument #1 to 'wait' (jobid or job expected, got number)")
      assert.has_error(function() fx.client:wait("x", { intervall = 1 }) end,
        "bad argument #2 to 'wait' (unknown option 'intervall')")
      assert.has_error(function() fx.client:wait("x", { timeout = -1 }) end,
        "bad argument #2 to 'wait' (option 'timeout' must be a positive number of seconds, at most 1e9)")
    end)
  end)

  describe("connections", function()
    it("sends 20 sequential requests over one kept-alive connection", function()
      local started = assert(fx.client:headshot("p"))
      for _ = 1, 19 do assert(fx.client:job(started.jobid)) end
      local stats = fx.sim:stats()
      assert.equal(20, stats.requests)
      assert.equal(1, stats.connections)
    end)

    it("never resends a POST whose body may have reached the server", function()
      assert(fx.client:headshot("warm up the connection"))
      fx.sim:script { action = "close_after_body", match = "^POST /headshot" }
      local job, err = fx.client:headshot("the server takes this one, then drops the connection")
      assert.is_nil(job)
      assert.equal("transport", err.kind)
      assert.is_false(err.retryable)
      assert.is_true(err.sent)
      assert.equal(2, fx.sim:count("POST"))
      -- and the client carries on with a fresh connection
      assert(fx.client:headshot("next"))
    end)

    it("knows a POST was sent even when the resend's connection is refused", function()
      -- a server that answers one GET, takes the POST, then stops listening and hangs up:
      -- libcurl's silent resend finds no listener, and the error must still say "sent"
      local pipe = io.popen([[lua5.4 -e '
        local socket = require "socket"
        local srv = assert(socket.bind("127.0.0.1", 0))
        local _, port = srv:getsockname()
        print(port); io.stdout:flush()
        srv:settimeout(5)
        local c = assert(srv:accept()); c:settimeout(5)
        local function request()
          local line, len = c:receive("*l"), 0
          repeat
            local h = c:receive("*l")
            len = tonumber(h:lower():match("^content%-length:%s*(%d+)")) or len
          until h == ""
          if len > 0 then c:receive(len) end
          return line
        end
        request()
        local body = [=[{"jobid":"j1","status":"started"}]=]
        c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
        print(request()); io.stdout:flush()
        srv:close(); c:close()']])
      local port = pipe:read("*l")
      local c = faceswap.new { retry = false, token = fx.TOKEN, base_url = "http://127.0.0.1:" .. port }
      assert(c:job("j1"))
      local job, err = c:headshot("p")
      c:close()
      assert.equal("POST /headshot HTTP/1.1", pipe:read("*l"))
      pipe:close()
      assert.is_nil(job)
      assert.same({ "transport", true, false }, { err.kind, err.sent, err.retryable })
    end)

    it("lets libcurl resend a GET on a fresh connection, which is harmless", function()
      local started = assert(fx.client:headshot("p"))
      fx.sim:script { action = "close_after_body", match = "^GET /jobs" }
      assert.equal(started.jobid, assert(fx.client:job(started.jobid)).jobid)
      assert.equal(2, fx.sim:stats().connections)
    end)
  end)

  describe("errors", function()
    local function fails(job, err)
      assert.is_nil(job)
      assert.equal("error", faceswap.type(err))
      return err
    end

    it("maps each documented answer to its kind and the server's text", function()
      local bad = faceswap.new { retry = false, token = "wrong", base_url = fx.base_url }
      local err = fails(bad:headshot("p"))
      bad:close()
      assert.same({ "unauthorized", 401, "Unauthorized" }, { err.kind, err.code, err.error })
      err = fails(fx.client:headshot { prompt = "p", channel = "42" })
      assert.same({ "invalid_request", 400, "Configuration not found for channel 42, to " ..
                    "create POST v1/faceswap/account/42" }, { err.kind, err.code, err.error })
      fx.sim:config { subscription = false }
      err = fails(fx.client:headshot("p"))
      assert.same({ "payment_required", 402,
                    "Account has no subscription or subscription expired" },
        { err.kind, err.code, err.error })
      err = fails(fx.client:job("nope"))
      assert.same({ "not_found", 404, "Unable to locate job nope" },
        { err.kind, err.code, err.error })
    end)

    it("reads both kinds of 429", function()
      fx.sim:config { subscription = true }
      fx.sim:script { { action = "queue_full" }, { action = "discord_429", retry_after = 2.5 } }
      local err = fails(fx.client:headshot("p"))
      assert.same({ "rate_limited", 429, "Unable to lock Discord after 3 attempts", true },
        { err.kind, err.code, err.error, err.retryable })
      assert.is_nil(err.retry_after)
      err = fails(fx.client:headshot("p"))
      assert.same({ "rate_limited", 429, "Discord /interactions failed with HTTP status 429",
                    2.5, true }, { err.kind, err.code, err.error, err.retry_after, err.retryable })
      assert.equal('{"global":true,"message":"You are being rate limited.","retry_after":2.5}',
        err.errorDetails)
    end)

    it("reads a Retry-After header on a 429", function()
      fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = "17" },
                 body = '{"error":"Unable to lock Discord after 3 attempts","code":429}' }
      assert.equal(17, fails(fx.client:headshot("p")).retry_after)
    end)

    it("reads a CDN's text 429 as rate_limited with its Retry-After; a wait too long is not made #timing",
      function()
        fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = "7" },
                   body = "Too Many Requests" }
        local err = fails(fx.client:headshot("p"))
        assert.same({ "rate_limited", 429, "HTTP 429: Too Many Requests", 7, true },
          { err.kind, err.code, err.error, err.retry_after, err.retryable })
        -- the client's retry policy: 121 s is past max_retry_after (120 s), so no sleep at all
        local c = fx.new {}
        fx.sim:script { action = "status", status = 429, headers = { ["Retry-After"] = "121" },
                   body = "<html><title>Rate limited</title></html>" }
        local started = faceswap.now()
        local job, e = c:headshot("p")
        assert.is_nil(job)
        assert.same({ "rate_limited", "HTTP 429: Rate limited", 121 }, { e.kind, e.error, e.retry_after })
        assert.is_true(faceswap.now() - started < 60)
        assert.equal(2, fx.sim:count("POST")) -- one for each client: nothing was sent again
        c:close()
      end)

    it("reads an HTML 502 as server and invalid JSON as bad_response", function()
      local started = assert(fx.client:headshot("p"))
      fx.sim:script { { action = "html_502" }, { action = "invalid_json" } }
      local err = fails(fx.client:job(started.jobid))
      assert.same({ "server", 502, "HTTP 502: 502 Bad Gateway", true },
        { err.kind, err.code, err.error, err.retryable })
      err = fails(fx.client:job(started.jobid))
      assert.same({ "bad_response", 200,
                    "HTTP 200 answer: invalid JSON: unexpected end of text at byte 28" },
        { err.kind, err.code, err.error })
      assert(fx.client:job(started.jobid))
    end)

    it("fails a truncated or reset answer as transport, and goes on working", function()
      local started = assert(fx.client:headshot("p"))
      fx.sim:script { { action = "truncate" }, { action = "reset_during" }, { action = "reset_before" } }
      for _ = 1, 3 do
        local err = fails(fx.client:job(started.jobid))
        assert.equal("transport", err.kind)
        assert.is_true(err.retryable)
      end
      assert(fx.client:job(started.jobid))
    end)

    it("stops reading past max_response, with memory bounded", function()
      local c = fx.new { retry = false, max_response = 65536 }
      fx.sim:script { action = "oversized", bytes = 1048576 }
      local err = fails(c:headshot("p"))
      assert.same({ "bad_response", 200, "answer larger than max_response (65536 bytes)", false },
        { err.kind, err.code, err.error, err.retryable })
      assert(c:headshot("still works"))
      c:close()
    end)

    it("times out a server that never answers #timing", function()
      local c = fx.new { retry = false, timeout = 0.3 }
      fx.sim:script { action = "hang" }
      local t0 = faceswap.now()
      local err = fails(c:job("anything"))
      assert.equal("timeout", err.kind)
      assert.is_nil(err.code)
      assert.is_true(err.retryable)
      assert.is_true(faceswap.now() - t0 < 5)
      c:close()
    end)

    it("reports a refused connection as transport, surely not sent", function()
      local c = faceswap.new { retry = false, token = fx.TOKEN, base_url = refused_url() }
      local err = fails(c:headshot("p"))
      assert.equal("transport", err.kind)
      assert.is_nil(err.code)
      assert.is_false(err.sent)
      assert.is_true(err.retryable)
      assert.matches("^transport: .*127%.0%.0%.1", tostring(err))
      c:close()
    end)
  end)

  describe("the token", function()
    it("appears in no string the library makes", function()
      local secret = "tok-SECRET-8d1e"
      fx.sim:config { token = secret }
      local c = faceswap.new { retry = false, token = secret, base_url = fx.base_url, timeout = 0.3 }
      local seen = { tostring(c) }
      local job = assert(c:headshot("p"))
      seen[#seen + 1] = tostring(job)
      seen[#seen + 1] = job:json()
      fx.sim:script { { action = "queue_full" }, { action = "html_502" }, { action = "hang" } }
      for _ = 1, 3 do
        local _, err = c:job(job.jobid)
        seen[#seen + 1] = tostring(err)
        seen[#seen + 1] = err.error
      end
      local _, err = faceswap.new { retry = false, token = secret, base_url = refused_url() }:job("x")
      seen[#seen + 1] = tostring(err)
      for _, bad in ipairs { "http://example.com", "https://u:p@h/", "ftp://h" } do
        local ok, msg = pcall(faceswap.new, { token = secret, base_url = bad })
        assert.is_false(ok)
        seen[#seen + 1] = msg
      end
      c:close()
      for _, text in ipairs(seen) do
        assert.is_nil(text:find(secret, 1, true), text)
      end
    end)
  end)
end)

describe("faceswap.new", function()
  it("raises on bad options, naming them", function()
    assert.has_error(function() faceswap.new { token = "t", tokn = "x" } end,
      "bad argument #1 to 'new' (unknown option 'tokn')")
    assert.has_error(function() faceswap.new { token = 5 } end,
      "bad argument #1 to 'new' (option 'token' must be a string, got number)")
    assert.has_error(function() faceswap.new { token = "t", encoding = "xml" } end,
      "bad argument #1 to 'new' (option 'encoding' must be \"multipart\" or \"json\")")
    assert.has_error(function() faceswap.new { token = "t", base_url = "http://example.com" } end,
      "bad argument #1 to 'new' (bad option 'base_url' (plain http:// is only for loopback hosts))")
    assert.has_error(function() faceswap.new { token = "t", base_url = "https://a:b@h" } end,
      "bad argument #1 to 'new' (bad option 'base_url' (credentials in the URL are not " ..
      "allowed; use token))")
    assert.has_error(function() faceswap.new { token = "a\r\nb" } end,
      "bad argument #1 to 'new' (bad option 'token' (contains a space or control byte))")
    assert.has_error(function() faceswap.new { token = "t", channel = "1\n2" } end,
      "bad argument #1 to 'new' (default channel contains control byte 0x0A)")
    assert.has_error(function() faceswap.new { token = "t", reply_url = ("u"):rep(1025) } end,
      "bad argument #1 to 'new' (option 'reply_url': Optional param replyUrl is too long)")
    assert.has_error(function() faceswap.new { token = "t", timeout = 0 } end,
      "bad argument #1 to 'new' (bad option 'timeout' (a number from 0.001 to 1e9 expected))")
  end)

  it("takes the token from USEAPI_TOKEN, and raises when there is none", function()
    local env = os.getenv("USEAPI_TOKEN")
    if env then
      assert.equal("client", faceswap.type(faceswap.new {}))
    else
      assert.has_error(function() faceswap.new {} end,
        "bad argument #1 to 'new' (no token: pass token= or set USEAPI_TOKEN)")
    end
    local pipe = io.popen("USEAPI_TOKEN=from-env " .. compat.lua .. [[ -e '
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./]] .. compat.build .. [[/?.so;" .. package.cpath
      print(require("faceswap").type(require("faceswap").new{}))' 2>&1]])
    assert.equal("client\n", pipe:read("*a"))
    pipe:close()
  end)

  it("raises when a method is called with a dot instead of a colon", function()
    assert.has_error(function() local c = faceswap.new { token = "t" }; c.job("x") end,
      "bad argument #1 to 'job' (faceswap.client expected, got string; call it as client:job(...))")
  end)

  it("closes: methods on a closed client raise, and closing twice is harmless", function()
    local c = faceswap.new { retry = false, token = "t", base_url = refused_url() }
    c:close()
    c:close()
    assert.has_error(function() c:job("x") end, "attempt to use a closed faceswap client")
    if _VERSION >= "Lua 5.4" then
      -- `<close>` is 5.4 syntax: compiled only there, so this file loads on every Lua
      c = assert(load([[
        local faceswap, url = ...
        local scoped <close> = faceswap.new { retry = false, token = "t", base_url = url }
        return scoped
      ]]))(faceswap, refused_url())
    else -- no to-be-closed variables: the same metamethod, called by hand
      c = faceswap.new { retry = false, token = "t", base_url = refused_url() }
      getmetatable(c).__close(c)
    end
    assert.has_error(function() c:headshot("x") end, "attempt to use a closed faceswap client")
  end)

  it("releases a collected client and its connection", function()
    local s = sim.start {}
    local weak = setmetatable({}, { __mode = "v" })
    do
      local c = faceswap.new { retry = false, token = "test-token", base_url = s.base_url }
      assert(c:headshot("p"))
      weak[1] = c
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.equal(0, sim.wait_for(function()
      local open = s:stats().open
      return open == 0 and open
    end, 5))
    s:stop()
  end)
end)

describe("module", function()
  it("tells types apart without raising", function()
    local c = faceswap.new { retry = false, token = "t", base_url = refused_url() }
    assert.equal("client", faceswap.type(c))
    assert.equal("job", faceswap.type(assert(faceswap.decode('{"jobid":"j"}'))))
    assert.equal("error", faceswap.type(select(2, faceswap.decode("x"))))
    assert.is_nil(faceswap.type(c._transport))
    assert.is_nil(faceswap.type({}))
    assert.is_nil(faceswap.type(nil))
    c:close()
  end)

  it("has a monotonic clock and a sleep on it", function()
    local t0 = faceswap.now()
    faceswap.sleep(0.05)
    local t1 = faceswap.now()
    assert.is_true(t1 - t0 >= 0.05)
    assert.has_error(function() faceswap.sleep(-1) end,
      "bad argument #1 to 'sleep' (a number of seconds from 0 to 1e9 expected, got -1)")
    -- its upper bound is a sleep, not the core's own argument error (a child, stopped by
    -- timeout(1): exit 124)
    local _, how, code = compat.execute(("timeout 0.5 %s -e 'package.path = \"lua/?.lua;" ..
      "lua/?/init.lua;\" .. package.path; package.cpath = \"%s/?.so;\" .. package.cpath; " ..
      "require(\"faceswap\").sleep(1e9)' 2>/dev/null"):format(compat.lua, compat.build))
    assert.same({ "exit", 124 }, { how, code })
  end)
end)
