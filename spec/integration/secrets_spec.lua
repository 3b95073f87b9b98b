-- Secrets and hostile input: the token goes out in the Authorization header and nowhere else
-- (no error, no tostring, no command-line output, no other part of a request); bytes that could
-- split a header or a request line are refused before anything is sent; a jobid cannot change
-- the path or the query; plain http:// only to loopback; redirects are never followed; TLS
-- verification has no switch. Runs under Lua 5.4 and LuaJIT 2.1 alike.
local faceswap, fixture, sim, socket, shell =
  require "spec.support.uses" ("faceswap", "fixture", "sim", "socket", "shell")
local shell_quote, capture, read_file = shell.quote, shell.capture, shell.read

local SECRET = "tok-SECRET-5f0c9a17"




local ROOT = capture("pwd"):gsub("\n$", "")
local BIN = ROOT .. "/bin/faceswap"

local refused_url = fixture.refused_url

-- The shell command that runs bin/faceswap with env (name -> value) and args, its stdout and
-- stderr into files under dir, and prints its exit status.
local function cli_command(dir, env, args)
  local words = { "env", "-u", "USEAPI_TOKEN", "-u", "USEAPI_BASE_URL" }
  for k, v in pairs(env) do words[#words + 1] = shell_quote(k .. "=" .. v) end
  words[#words + 1] = shell_quote(BIN)
  for _, a in ipairs(args) do words[#words + 1] = shell_quote(a) end
  return table.concat(words, " ") .. " >" .. shell_quote(dir .. "/out") .. " 2>" ..
    shell_quote(dir .. "/err") .. "; echo $?"
end

local function cli_result(dir, status_text)
  return { status = tonumber(status_text), out = read_file(dir .. "/out"), err = read_file(dir .. "/err") }
end

-- Runs bin/faceswap; returns { status, out, err }.
local function cli(env, args)
  local dir = capture("mktemp -d"):gsub("\n$", "")
  local result = cli_result(dir, capture(cli_command(dir, env, args)))
  os.execute("rm -rf " .. shell_quote(dir))
  return result
end

-- Every string reachable from v (tables, keys, jobs through tostring and json), for scanning.
local function strings_in(v, out, seen)
  out, seen = out or {}, seen or {}
  local kind = faceswap.type(v)
  if type(v) == "string" then
    out[#out + 1] = v
  elseif kind == "job" then
    out[#out + 1] = tostring(v)
    out[#out + 1] = v:json()
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    if kind == "error" then out[#out + 1] = tostring(v) end
    for k, x in pairs(v) do
      strings_in(k, out, seen)
      strings_in(x, out, seen)
    end
  elseif v ~= nil then
    out[#out + 1] = tostring(v)
  end
  return out
end

local function assert_no_secret(v, what)
  for _, text in ipairs(strings_in(v)) do
    assert.is_nil(text:find(SECRET, 1, true), (what or "") .. ": the token is in " .. string.format("%q", text))
  end
end

describe("secrets", function()
  local fx = fixture.simulator { token = SECRET, job_seconds = 0.2, client = false }
  local function new(opts)
    local o = { retry = false, timeout = 0.5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return fx.new(o)
  end

  describe("the token", function()
    it("is in no error, no field of one, and no tostring of a client, job or error", function()
      local c = new { max_response = 4096 }
      local seen = { tostring(c), c }
      local function keep(...)
        local n = select("#", ...)
        for i = 1, n do seen[#seen + 1] = (select(i, ...)) end
      end
      local started = assert(c:headshot("p"))
      keep(started, c:headshot {})                               -- a local 400
      keep(c:headshot { prompt = "p", channel = "42" })          -- the server's 400
      keep(c:job("no-such-job"))                                 -- 404
      fx.sim:script {
        { action = "queue_full" }, { action = "discord_429" }, { action = "html_502" },
        { action = "reset_before", count = 2 }, { action = "reset_during" }, { action = "truncate" },
        { action = "hang" }, { action = "invalid_json" }, { action = "oversized", bytes = 8192 },
        { action = "flood" }, { action = "status", status = 302, headers = { Location = fx.base_url .. "/x" } },
        { action = "status", status = 403, body = "<html>no</html>", content_type = "text/html" },
      }
      for _ = 1, 12 do keep(c:job(started.jobid)) end
      keep(c:headshot("p"))                                      -- reset_before on a POST
      fx.sim:script { action = "reset_before", match = "^POST" }
      keep(c:headshot("p"))
      fx.sim:config { job_seconds = 60 }
      local slow = assert(c:headshot("slow"))
      keep(c:wait(slow, { interval = 0.05, timeout = 0.2 }))     -- a timeout carrying the job
      keep(c:download("http://example.com/a.png"))               -- refused locally
      keep(c:download(fx.base_url .. "/attachments/" .. slow.jobid .. "/1.png"))   -- 404
      -- last: a 402 takes the channel out of use for the client's lifetime
      fx.sim:config { subscription = false }
      keep(c:headshot("p"))                                      -- 402
      keep(c:headshot("p"))                                      -- the dead channel's answer
      fx.sim:config { subscription = true }
      keep(faceswap.decode("{"))
      local other = new { token = SECRET, base_url = refused_url() }
      keep(other:headshot("p"), tostring(other))
      other:close()
      fx.sim:config { token = "another-token" }
      keep(c:job(started.jobid))                                 -- 401
      -- raises: the messages of misuse
      keep(select(2, pcall(faceswap.new, { token = SECRET, base_url = "http://example.com" })))
      keep(select(2, pcall(faceswap.new, { token = SECRET, base_url = "ftp://h" })))
      keep(select(2, pcall(faceswap.new, { token = SECRET, tokn = SECRET })))
      keep(select(2, pcall(faceswap.new, { token = SECRET .. "\r\n" })))
      keep(select(2, pcall(faceswap.new, { token = SECRET, timeout = -1 })))
      keep(select(2, pcall(c.job, c, 42)))
      c:close()
      keep(tostring(c), select(2, pcall(c.job, c, "x")))
      assert.is_true(#seen >= 35, #seen .. " values")
      local errors = 0
      for _, v in ipairs(seen) do
        if faceswap.type(v) == "error" then errors = errors + 1 end
      end
      assert.is_true(errors >= 20, errors .. " errors")
      assert_no_secret(seen)
    end)

    it("goes out in the Authorization header of API requests and nowhere else", function()
      local c = new { timeout = 5 }
      local json = new { timeout = 5, encoding = "json", channel = "1100000000000000001",
                         reply_url = "http://127.0.0.1:9/cb" }
      local job = assert(c:headshot { prompt = "p", replyRef = "ref" })
      assert(json:headshot("q"))
      assert(c:job(job))
      local done = assert(c:wait(job, { interval = 0.05, timeout = 10 }))
      for _, url in ipairs(done:urls()) do assert(c:download(url)) end
      assert(c:cancel(job.jobid))
      assert.is_nil((c:job("missing")))
      c:close()
      json:close()
      local api, downloads = 0, 0
      for _, r in ipairs(fx.sim:requests()) do
        if r.path:find("^/attachments/") then
          downloads = downloads + 1
          assert.is_nil(r.headers.authorization)         -- not the API: sent without the token
        else
          api = api + 1
          assert.equal("Bearer " .. SECRET, r.headers.authorization)
        end
        local copy = {}
        for k, v in pairs(r.headers) do
          if k ~= "authorization" then copy[k] = v end
        end
        assert_no_secret({ r.method, r.path, r.query, r.body, r.fields, copy }, r.method .. " " .. r.path)
      end
      assert.equal(2, downloads)
      assert.is_true(api >= 6, api .. " API requests")   -- wait polls as often as it needs
    end)

    describe("on the command line", function()
      local refused_pipe, refused_dir

      -- bin/faceswap retries a refused connection with its default policy (some 10 s of
      -- backoff), so that run starts here, in the background, and is read by the last spec
      setup(function()
        refused_dir = capture("mktemp -d"):gsub("\n$", "")
        refused_pipe = io.popen(cli_command(refused_dir,
          { USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = refused_url() }, { "job", "0123abcd" }))
      end)
      teardown(function()
        if refused_pipe then       -- its spec did not run: wait for it all the same
          refused_pipe:read("*a")
          refused_pipe:close()
        end
        os.execute("rm -rf " .. shell_quote(refused_dir))
      end)

      it("is not in the output of a success", function()
        local r = cli({ USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = fx.base_url }, { "headshot", "p", "--json" })
        assert.same({ 0, "" }, { r.status, r.err })
        assert.matches('^{.*"jobid":"%x+".*}\n$', r.out)
        assert_no_secret({ r.out, r.err })
      end)

      it("is not in the output of a 401", function()
        fx.sim:config { token = "another-token" }
        local r = cli({ USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = fx.base_url }, { "job", "0123abcd" })
        assert.same({ 1, "", "faceswap: unauthorized (401): Unauthorized\n" }, { r.status, r.out, r.err })
        assert_no_secret({ r.out, r.err })
      end)

      it("is not in the output of a 404", function()
        local r = cli({ USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = fx.base_url }, { "cancel", "0123abcd" })
        assert.same({ 1, "", "faceswap: not_found (404): Unable to locate job 0123abcd\n" },
          { r.status, r.out, r.err })
        assert_no_secret({ r.out, r.err })
      end)

      it("is not in the output of a usage error or a refused base URL", function()
        local r = cli({ USEAPI_TOKEN = SECRET }, { "job" })
        assert.same({ 2, "" }, { r.status, r.out })
        assert.equal("faceswap: job needs a JOBID\nTry 'faceswap --help' for usage.\n", r.err)
        r = cli({ USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = "http://example.com" }, { "job", "x" })
        assert.same({ 2, "" }, { r.status, r.out })
        assert.equal("faceswap: bad base URL 'http://example.com': plain http:// is only for loopback " ..
          "hosts\nTry 'faceswap --help' for usage.\n", r.err)
        assert_no_secret({ r.out, r.err })
      end)

      it("is not echoed when it holds a control byte, and nothing is sent", function()
        local r = cli({ USEAPI_TOKEN = SECRET .. "\r" .. SECRET, USEAPI_BASE_URL = fx.base_url }, { "job", "x" })
        assert.same({ 2, "" }, { r.status, r.out })
        assert_no_secret({ r.out, r.err })
        assert.equal(0, fx.sim:stats().connections)
      end)

      -- found by this spec: every error of faceswap.new was reported as a bad base URL
      it("says that USEAPI_TOKEN, not the base URL, is what is wrong", function()
        local r = cli({ USEAPI_TOKEN = "tok\rSECRET", USEAPI_BASE_URL = fx.base_url }, { "job", "x" })
        assert.equal(2, r.status)
        assert.equal("faceswap: bad USEAPI_TOKEN: contains a space or control byte\n" ..
          "Try 'faceswap --help' for usage.\n", r.err)
      end)

      it("is not in the output of a refused connection (after the CLI's own retries)", function()
        local r = cli_result(refused_dir, refused_pipe:read("*a"))
        refused_pipe:close()
        refused_pipe = nil
        assert.same({ 1, "" }, { r.status, r.out })
        -- (the CLI shows each retry's wait on a line of its own)
        local rest = r.err:gsub("faceswap: GET /jobs/%?jobid=0123abcd: transport: [^\n]*, waiting " ..
          "[%d.]+ s, attempt %d of 5\n", "")
        assert.matches("^faceswap: transport: Failed to connect to 127%.0%.0%.1 port %d+ after %d+ ms: " ..
          "Couldn't connect to server\n$", rest)
        assert_no_secret({ r.out, r.err })
      end)
    end)
  end)

  describe("control bytes", function()
    local BYTES = { 0, 1, 8, 9, 10, 13, 27, 31, 127 }
    -- check(prefix .. byte .. suffix, the byte as the errors name it) for each byte of BYTES.
    local function each_byte(prefix, suffix, check)
      for _, b in ipairs(BYTES) do check(prefix .. string.char(b) .. suffix, string.format("0x%02X", b)) end
    end

    local function refused_everything_sent()
      assert.same({}, fx.sim:requests())
      assert.equal(0, fx.sim:stats().connections)
    end

    it("in a token: new raises, before any connection", function()
      for _, b in ipairs(BYTES) do
        for _, token in ipairs { "tok" .. string.char(b) .. "en", string.char(b), SECRET .. string.char(b) } do
          assert.has_error(function() new { token = token } end,
            "bad argument #1 to 'new' (bad option 'token' (contains a space or control byte))")
        end
      end
      assert.has_error(function() new { token = SECRET .. "\r\nX-Injected: 1" } end,
        "bad argument #1 to 'new' (bad option 'token' (contains a space or control byte))")
      assert.has_error(function() new { token = "two words" } end,
        "bad argument #1 to 'new' (bad option 'token' (contains a space or control byte))")
      refused_everything_sent()
    end)

    it("in a channel: new and headshot raise, naming the byte, before any connection", function()
      local c = new()
      each_byte("1100000000000000001", "X", function(channel, hex)
        assert.has_error(function() new { channel = channel } end,
          "bad argument #1 to 'new' (default channel contains control byte " .. hex .. ")")
        assert.has_error(function() c:headshot { prompt = "p", channel = channel } end,
          "bad argument #1 to 'headshot' (channel contains control byte " .. hex .. ")")
      end)
      c:close()
      refused_everything_sent()
    end)

    it("in a jobid: job and cancel raise, naming the byte, before any connection", function()
      local c = new()
      each_byte("0123abcd", "Host: evil", function(jobid, hex)
        assert.has_error(function() c:job(jobid) end,
          "bad argument #1 to 'job' (jobid contains control byte " .. hex .. ")")
        assert.has_error(function() c:cancel(jobid) end,
          "bad argument #1 to 'cancel' (jobid contains control byte " .. hex .. ")")
        assert.has_error(function() c:wait(jobid) end,
          "bad argument #1 to 'wait' (jobid contains control byte " .. hex .. ")")
      end)
      -- a job object whose jobid holds one (a callback body decodes to any string): the
      -- server's doing, so nil, err and nothing sent (issue 11: server values never raise)
      local odd = assert(faceswap.decode('{"jobid":"a\\r\\nb"}'))
      local none, err = c:job(odd)
      assert.is_nil(none)
      assert.equal("bad_response: the server sent a jobid that cannot be sent back " ..
        "(jobid contains control byte 0x0D)", tostring(err))
      c:close()
      refused_everything_sent()
    end)

    -- found by this spec: the message named 'job', the internal call
    it("in a jobid given to wait: the message names 'wait'", function()
      local c = new()
      assert.has_error(function() c:wait("0123\r\nabcd") end,
        "bad argument #1 to 'wait' (jobid contains control byte 0x0D)")
      c:close()
    end)

    -- replyRef is free text like a prompt since issue 9: tabs and line breaks pass, nothing else
    it("in replyUrl or options: headshot raises; a prompt or replyRef may hold tabs and line breaks only",
      function()
      local c = new()
      for _, name in ipairs { "replyUrl", "options" } do
        assert.has_error(function() c:headshot { prompt = "p", [name] = "a\r\nb" } end,
          "bad argument #1 to 'headshot' (" .. name .. " contains control byte 0x0D)")
      end
      assert.has_error(function() c:headshot { prompt = "p", replyRef = "a\r\n\27b" } end,
        "bad argument #1 to 'headshot' (replyRef contains control byte 0x1B)")
      assert.has_error(function() new { reply_url = "http://127.0.0.1/\n" } end,
        "bad argument #1 to 'new' (default replyUrl contains control byte 0x0A)")
      for _, b in ipairs { 0, 1, 27, 127 } do
        assert.has_error(function() c:headshot("p" .. string.char(b)) end,
          string.format("bad argument #1 to 'headshot' (prompt contains control byte 0x%02X)", b))
      end
      c:close()
      refused_everything_sent()
    end)
  end)

  describe("a jobid", function()
    -- jobid -> the query sent: everything but unreserved characters percent-encoded
    local CASES = {
      { "a&jobid=b", "jobid=a%26jobid%3Db" },
      { "../headshot", "jobid=..%2Fheadshot" },
      { "..", "jobid=.." },
      { "/../../__sim/reset", "jobid=%2F..%2F..%2F__sim%2Freset" },
      { "x#fragment", "jobid=x%23fragment" },
      { "x?jobid=y", "jobid=x%3Fjobid%3Dy" },
      { "a b+c%20d", "jobid=a%20b%2Bc%2520d" },
      { "ünïcode", "jobid=%C3%BCn%C3%AFcode" },
      { "@evil.example:80", "jobid=%40evil.example%3A80" },
    }

    it("cannot change the path or the query of job, cancel or wait", function()
      local c = new()
      local want = {}
      for _, case in ipairs(CASES) do
        for _, call in ipairs { "job", "cancel", "wait" } do
          local job, err = c[call](c, case[1])
          assert.is_nil(job)
          assert.same({ "not_found", 404, "Unable to locate job " .. case[1] }, { err.kind, err.code, err.error })
          want[#want + 1] = { call == "cancel" and "/jobs/cancel/" or "/jobs/", case[2] }
        end
      end
      c:close()
      local got = {}
      for i, r in ipairs(fx.sim:requests()) do got[i] = { r.path, r.query } end
      assert.same(want, got)
    end)

    it("of a job object is encoded the same way", function()
      local c = new()
      local job = assert(faceswap.decode('{"jobid":"a&b/../c?d#e","status":"started"}'))
      local _, err = c:job(job)
      c:close()
      assert.equal("Unable to locate job a&b/../c?d#e", err.error)
      local r = fx.sim:requests()
      assert.same({ 1, "/jobs/", "jobid=a%26b%2F..%2Fc%3Fd%23e" }, { #r, r[1].path, r[1].query })
    end)
  end)

  describe("plain http://", function()
    local NOT_LOOPBACK = {
      "http://example.com", "http://10.0.0.1", "http://192.168.1.1:8080", "http://0.0.0.0:80",
      "http://127.0.0.1.nip.io", "http://localhost.example.com", "http://[::ffff:127.0.0.1]",
      "http://2130706433", "http://0x7f000001", "http://169.254.169.254/latest", "http://LOCALHOST",
      "http://api.useapi.net/v1/faceswap",
    }

    it("is refused for any host but loopback", function()
      for _, url in ipairs(NOT_LOOPBACK) do
        assert.has_error(function() new { base_url = url } end,
          "bad argument #1 to 'new' (bad option 'base_url' (plain http:// is only for loopback hosts))")
      end
    end)

    it("is accepted for loopback hosts", function()
      for _, url in ipairs { "http://127.0.0.1", "http://127.0.0.1:8080/v1/faceswap", "http://127.1.2.3",
                             "http://localhost:9", "http://[::1]:9" } do
        local c = new { base_url = url }
        assert.equal("client", faceswap.type(c))
        c:close()
      end
    end)

    it("is refused for downloads from any host but loopback, before anything is sent", function()
      local c = new()
      for _, url in ipairs(NOT_LOOPBACK) do
        local body, err = c:download(url .. "/a.png")
        assert.is_nil(body)
        assert.same({ "invalid_request", "refused to fetch a URL (plain http:// is only for loopback hosts)",
                      false, false }, { err.kind, err.error, err.sent, err.retryable })
        assert.is_nil(err.code)
      end
      c:close()
      assert.equal(0, fx.sim:stats().connections)
    end)

    it("keeps credentials out of URLs", function()
      for _, url in ipairs { "https://user:pass@api.useapi.net", "http://127.0.0.1@evil.example",
                             "https://" .. SECRET .. "@api.useapi.net/v1" } do
        local ok, msg = pcall(new, { base_url = url })
        assert.is_false(ok)
        assert.equal("bad argument #1 to 'new' (bad option 'base_url' (credentials in the URL are not " ..
          "allowed; use token))", msg)
      end
    end)
  end)

  describe("redirects", function()
    it("are not followed: server with the 3xx code, the Location never fetched", function()
      local c = new()
      local job = assert(c:headshot("p"))
      for _, status in ipairs { 301, 302, 303, 307, 308 } do
        fx.sim:script { action = "status", status = status,
                   headers = { Location = fx.base_url .. "/jobs/?jobid=" .. job.jobid } }
        local got, err = c:job(job.jobid)
        assert.is_nil(got)
        assert.same({ "server", status, "unexpected HTTP " .. status .. " (redirects are not followed)", false },
          { err.kind, err.code, err.error, err.retryable })
      end
      assert.equal(6, #fx.sim:requests())   -- the headshot and one GET each
      c:close()
    end)

    it("of a headshot are not followed: the body is not sent again", function()
      local c = new()
      for _, status in ipairs { 307, 308 } do
        fx.sim:script { action = "status", status = status, match = "^POST",
                   headers = { Location = fx.base_url .. "/headshot" } }
        local job, err = c:headshot("p")
        assert.is_nil(job)
        assert.same({ "server", status, false, true }, { err.kind, err.code, err.retryable, err.sent })
      end
      assert.same({ 2, 0 }, { #fx.sim:requests(), #fx.sim:jobs() })
      c:close()
    end)

    it("to another host are not followed either, so the token cannot go there", function()
      local c = new()
      fx.sim:script { action = "status", status = 302,
                      headers = { Location = "http://169.254.169.254/latest/meta-data/" } }
      local _, err = c:job("x")
      assert.same({ "server", 302 }, { err.kind, err.code })
      fx.sim:script { action = "status", status = 302, headers = { Location = refused_url() .. "/jobs/?jobid=x" } }
      _, err = c:job("x")
      assert.same({ "server", 302 }, { err.kind, err.code })
      c:close()
    end)
  end)

  describe("TLS verification", function()
    it("has no option to switch it off: such options raise as unknown", function()
      for _, name in ipairs { "insecure", "ssl_verify", "ssl_verifypeer", "ssl_verifyhost", "verify",
                              "verify_peer", "tls_verify", "no_verify", "cainfo", "capath" } do
        assert.has_error(function() new { [name] = false } end,
          "bad argument #1 to 'new' (unknown option '" .. name .. "')")
        assert.has_error(function() new { [name] = true } end,
          "bad argument #1 to 'new' (unknown option '" .. name .. "')")
      end
      -- ca_file chooses what to trust, never whether to verify
      assert.has_error(function() new { ca_file = false } end,
        "bad argument #1 to 'new' (option 'ca_file' must be a string, got boolean)")
    end)

    local has_openssl = os.execute("command -v openssl >/dev/null 2>&1")
    has_openssl = has_openssl == true or has_openssl == 0

    -- a TLS server with a self-signed certificate: the handshake must fail, and nothing be sent
    local run = has_openssl and it or pending
    run("refuses a server whose certificate does not verify", function()
      local dir = capture("mktemp -d"):gsub("\n$", "")
      local key, cert = dir .. "/key.pem", dir .. "/cert.pem"
      assert.is_true(capture("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes " ..
        "-subj /CN=127.0.0.1 -days 1 -keyout " .. shell_quote(key) .. " -out " .. shell_quote(cert) ..
        " >/dev/null 2>&1; echo $?") == "0\n")
      local port = require("spec.support.nginx").free_port()
      local server = io.popen("echo $$; exec openssl s_server -quiet -www -accept 127.0.0.1:" .. port ..
        " -cert " .. shell_quote(cert) .. " -key " .. shell_quote(key) .. " </dev/null >/dev/null 2>&1")
      local pid = tonumber(server:read("*l"))
      local up = sim.wait_for(function()
        local probe = socket.connect("127.0.0.1", port)
        if probe then probe:close() end
        return probe ~= nil
      end, 5)
      local c = new { base_url = "https://127.0.0.1:" .. port, timeout = 5 }
      local job, err = c:job("x")
      c:close()
      os.execute("kill " .. pid .. " 2>/dev/null")
      server:close()
      os.execute("rm -rf " .. shell_quote(dir))
      assert.is_true(up)
      assert.is_nil(job)
      assert.same({ "transport", "SSL certificate problem: self-signed certificate", false, false },
        { err.kind, err.error, err.retryable, err.sent })
    end)
  end)
end)
