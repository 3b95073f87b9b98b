-- HTTPS as users meet it, on loopback: nginx with TLS (certificates from a throwaway CA that
-- spec/support/tls.lua makes) in front of the simulator; `ca_file`; a self-signed server that
-- must be refused; and proxies, through a recording CONNECT proxy (spec/support/connect_proxy.lua)
-- that shows exactly which bytes a proxy gets.
local faceswap, sim, nginx, tls, proxy, shell =
  require "spec.support.uses" ("faceswap", "sim", "nginx", "tls", "connect_proxy", "shell")

local TOKEN = "https-spec-token-7f3a9c"
local LUA = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local BUILD = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

-- Runs `code` (Lua, with `faceswap` loaded) in a child process with `env` (NAME=value words)
-- and every proxy variable of this process unset, under `wrap` (a command prefix) if given;
-- returns what it printed.
local function child(env, code, wrap)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write('package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path\n',
          'package.cpath = "./build/', BUILD, '/?.so;" .. package.cpath\n',
          'local faceswap = require "faceswap"\n', code)
  f:close()
  local unset = "-u http_proxy -u https_proxy -u HTTPS_PROXY -u HTTP_PROXY -u all_proxy -u ALL_PROXY " ..
    "-u no_proxy -u NO_PROXY"
  local out = shell.capture(string.format("env %s %s %s %s %s 2>&1", unset, env, wrap or "", LUA, path))
  os.remove(path)
  return out
end

describe("https", function()
  local certs, s, front, self_signed

  setup(function()
    certs = tls.make()
    s = sim.start { token = TOKEN, job_seconds = 600 }
    local pass = string.format([[
      location = /attachment.png { return 200 "png bytes over https"; }
      location / { proxy_pass http://127.0.0.1:%d; proxy_http_version 1.1; proxy_set_header Connection ""; }
    ]], s.port)
    front = nginx.start { tls = { cert = certs.cert, key = certs.key }, server = pass }
    self_signed = nginx.start { tls = { cert = certs.self_cert, key = certs.self_key }, server = pass }
  end)
  teardown(function()
    front:stop()
    self_signed:stop()
    s:stop()
    certs:remove()
  end)
  before_each(function() s:reset() end)

  describe("ca_file", function()
    it("verifies a server whose CA is in it: the API works over TLS", function()
      local c = faceswap.new { token = TOKEN, base_url = front.url, ca_file = certs.ca, retry = false }
      local job = assert(c:headshot("over https"))
      assert.equal("started", job.status)
      assert.equal(job, assert(c:job(job.jobid)))
      assert.equal("png bytes over https", assert(c:download(front.url .. "/attachment.png")))
      c:close()
    end)

    it("several connections at once, each verified", function()
      local c = faceswap.new { token = TOKEN, base_url = front.url, ca_file = certs.ca, retry = false }
      local tasks = {}
      for i = 1, 6 do tasks[i] = c:spawn(function() return c:headshot("at once " .. i) end) end
      c:run()
      for i = 1, 6 do
        local job, err = tasks[i]:result()
        assert.is_nil(err and tostring(err))
        assert.equal("at once " .. i, job.prompt)
      end
      c:close()
    end)

    it("without it, a server signed by an unknown CA is refused: transport, not sent, not retryable", function()
      local c = faceswap.new { token = TOKEN, base_url = front.url, retry = false }
      local job, err = c:headshot("refused")
      assert.is_nil(job)
      assert.same({ "transport", nil, false, false,
                    "SSL certificate problem: unable to get local issuer certificate" },
        { err.kind, err.code, err.sent, err.retryable, err.error })
      assert.equal(0, #s:requests())
      c:close()
    end)

    it("a self-signed certificate is refused even with a ca_file", function()
      local c = faceswap.new { token = TOKEN, base_url = self_signed.url, ca_file = certs.ca, retry = false }
      local job, err = c:headshot("refused")
      assert.is_nil(job)
      assert.same({ "transport", nil, false, false, "SSL certificate problem: self-signed certificate" },
        { err.kind, err.code, err.sent, err.retryable, err.error })
      assert.equal("transport: SSL certificate problem: self-signed certificate", tostring(err))
      assert.equal(0, #s:requests())
      c:close()
    end)

    it("the CA file replaces the system store rather than adding to it", function()
      -- the system bundle does not vouch for the throwaway CA, and the CA file does not vouch
      -- for the self-signed server: each alone is what counts
      local c = faceswap.new { token = TOKEN, base_url = front.url,
                               ca_file = certs.self_cert, retry = false }
      local _, err = c:job("0123456789abcdef0123456789abcdef")
      assert.equal("SSL certificate problem: unable to get local issuer certificate", err.error)
      c:close()
    end)

    it("a file that cannot be read, or holds no PEM certificate, raises at new()", function()
      assert.has_error(function() faceswap.new { token = TOKEN, ca_file = certs.dir .. "/none.pem" } end,
        "bad argument #1 to 'new' (bad option 'ca_file' (cannot read " .. certs.dir ..
          "/none.pem: No such file or directory))")
      assert.has_error(function() faceswap.new { token = TOKEN, ca_file = certs.key } end,
        "bad argument #1 to 'new' (bad option 'ca_file' (no PEM certificate in " .. certs.key .. "))")
      assert.has_error(function() faceswap.new { token = TOKEN, ca_file = true } end,
        "bad argument #1 to 'new' (option 'ca_file' must be a string, got boolean)")
    end)
  end)

  -- The CA store is parsed once per client, not once per connection: libcurl's multi-handle CA
  -- cache works only with no CA directory set. Counted as opens of the CA file (strace) over
  -- five requests that each need a new connection.
  describe("the CA store", function()
    local closing
    local traced = os.execute("strace -o /dev/null true >/dev/null 2>&1")
    traced = traced == true or traced == 0
    local run = traced and it or pending

    setup(function()
      closing = nginx.start { tls = { cert = certs.cert, key = certs.key }, server = string.format(
        "keepalive_timeout 0; location / { proxy_pass http://127.0.0.1:%d; }", s.port) }
    end)
    teardown(function() closing:stop() end)

    local function opens(file, ca_file)
      local out = os.tmpname()
      local code = string.format([[
        local c = faceswap.new { token = %q, base_url = %q, ca_file = %s, retry = false }
        for _ = 1, 5 do
          local _, err = c:job("0123456789abcdef0123456789abcdef")
          io.write(err.kind, " ")
        end
      ]], TOKEN, closing.url, ca_file and string.format("%q", ca_file) or "nil")
      local printed = child("", code, "strace -f -qq -e trace=openat -o " .. out)
      local count = 0
      for line in io.lines(out) do
        if line:find(file, 1, true) and not line:find("ENOENT", 1, true) then count = count + 1 end
      end
      os.remove(out)
      return count, printed
    end

    run("with ca_file: the file is read when new() checks it and once for the store", function()
      local count, printed = opens(certs.ca, certs.ca)
      assert.equal(string.rep("not_found ", 5), printed)
      assert.equal(2, count)
    end)

    run("by default: the system bundle is parsed once for five connections", function()
      local bundle = "/etc/ssl/certs/ca-certificates.crt"
      local f = io.open(bundle)
      if not f then return pending("no " .. bundle) end
      f:close()
      local count, printed = opens(bundle, nil)
      assert.equal(string.rep("transport ", 5), printed)   -- the throwaway CA is not in it
      assert.equal(1, count)
    end)
  end)

  describe("proxies", function()
    local log, p

    before_each(function()
      log = os.tmpname()
      p = proxy.start(log)
    end)
    after_each(function()
      p.stop()
      os.remove(log)
    end)

    it("https goes through https_proxy's CONNECT tunnel: the proxy sees host and port, never the token", function()
      local out = child("https_proxy=" .. p.url, string.format([[
        local c = faceswap.new { token = %q, base_url = %q, ca_file = %q, retry = false }
        local job = assert(c:headshot("through a proxy"))
        print(job.status, assert(c:job(job.jobid)).prompt)
      ]], TOKEN, front.url, certs.ca))
      assert.equal("started\tthrough a proxy\n", out)
      local seen = shell.read(log)
      local head = seen:match("^(.-\r\n\r\n)")
      assert.matches("^CONNECT 127%.0%.0%.1:" .. front.port .. " HTTP/1%.1\r\n", head)
      assert.is_nil(head:lower():find("authorization", 1, true))
      assert.is_nil(seen:find(TOKEN, 1, true))
      assert.equal(1, select(2, seen:gsub("CONNECT ", "")))   -- one tunnel, kept alive for both
      assert.equal(2, #s:requests())
    end)

    it("plain http never goes through a proxy, whatever the environment says", function()
      local env = "http_proxy=%s HTTP_PROXY=%s all_proxy=%s ALL_PROXY=%s https_proxy=%s"
      local out = child(env:gsub("%%s", p.url), string.format([[
        local c = faceswap.new { token = %q, base_url = %q, retry = false }
        local job = assert(c:headshot("straight to loopback"))
        local url = %q .. "/attachments/0123456789abcdef0123456789abcdef/1.png"
        local _, err = c:download(url)
        print(job.status, err and err.code)
      ]], TOKEN, s.base_url, s.base_url))
      assert.equal("started\t404\n", out)
      assert.equal("", shell.read(log))
      assert.equal(2, #s:requests())
    end)

    it("an http download from an https client does not use the proxy either", function()
      local out = child("http_proxy=" .. p.url .. " https_proxy=" .. p.url, string.format([[
        local c = faceswap.new { token = %q, base_url = %q, ca_file = %q, retry = false }
        local _, err = c:download(%q .. "/attachments/0123456789abcdef0123456789abcdef/1.png")
        local bytes = assert(c:download(%q .. "/attachment.png"))
        print(err and err.code, bytes)
      ]], TOKEN, front.url, certs.ca, s.base_url, front.url))
      assert.equal("404\tpng bytes over https\n", out)
      local seen = shell.read(log)
      assert.matches("^CONNECT 127%.0%.0%.1:" .. front.port .. " ", seen)
      assert.is_nil(seen:find("attachments/", 1, true))
    end)

    -- the same through a proxy the project did not write: Debian's tinyproxy, whose log names
    -- each request it was asked to forward
    local has_tinyproxy = os.execute("command -v tinyproxy >/dev/null 2>&1")
    has_tinyproxy = has_tinyproxy == true or has_tinyproxy == 0
    local real = has_tinyproxy and it or pending
    real("through Debian's tinyproxy: https as one CONNECT, plain http not at all", function()
      local socket = require "socket"
      local probe = assert(socket.bind("127.0.0.1", 0))
      local _, port = probe:getsockname()
      probe:close()
      local dir = shell.capture("mktemp -d /tmp/faceswap-tinyproxy.XXXXXX"):gsub("%s+$", "")
      local f = assert(io.open(dir .. "/tinyproxy.conf", "w"))
      f:write("Port ", port, "\nListen 127.0.0.1\nTimeout 30\nLogFile \"", dir, "/log\"\n",
              "LogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n")
      f:close()
      local pipe = io.popen("echo $$; exec tinyproxy -d -c " .. dir .. "/tinyproxy.conf >/dev/null 2>&1")
      local pid = pipe:read("*l")
      local up = sim.wait_for(function()
        local c = socket.connect("127.0.0.1", port)
        if c then c:close() end
        return c ~= nil
      end, 5)
      local url = "http://127.0.0.1:" .. port
      local out = up and child("https_proxy=" .. url .. " http_proxy=" .. url, string.format([[
        local tls = faceswap.new { token = %q, base_url = %q, ca_file = %q, retry = false }
        local plain = faceswap.new { token = %q, base_url = %q, retry = false }
        print(assert(tls:headshot("via tinyproxy")).status, assert(plain:headshot("direct")).status)
      ]], TOKEN, front.url, certs.ca, TOKEN, s.base_url))
      os.execute("kill " .. pid .. " 2>/dev/null")
      pipe:close()
      local seen = shell.read(dir .. "/log") or ""
      os.execute("rm -rf '" .. dir .. "'")
      assert.is_true(up, "tinyproxy did not start")
      assert.equal("started\tstarted\n", out)
      local requests = {}
      for line in seen:gmatch("Request %(file descriptor %d+%): ([^\n]*)") do requests[#requests + 1] = line end
      assert.same({ "CONNECT 127.0.0.1:" .. front.port .. " HTTP/1.1" }, requests)
      assert.equal(2, #s:requests())
    end)

    it("no_proxy is honoured for https", function()
      local out = child("https_proxy=" .. p.url .. " no_proxy=127.0.0.1", string.format([[
        local c = faceswap.new { token = %q, base_url = %q, ca_file = %q, retry = false }
        print(assert(c:headshot("not through the proxy")).status)
      ]], TOKEN, front.url, certs.ca))
      assert.equal("started\n", out)
      assert.equal("", shell.read(log))
    end)
  end)
end)
