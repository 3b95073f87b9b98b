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

    run("by default: the system store, and never the bundle parsed per connection", function()
      local bundle = "/etc/ssl/certs/ca-certificates.crt"
      local f = io.open(bundle)
      if not f then return pending("no " .. bundle) end
      f:close()
      local count, printed = opens(bundle, nil)
      assert.equal(string.rep("transport ", 5), printed)   -- the throwaway CA is not in it
      -- Debian's store has a hash link for every certificate of the bundle: the directory is
      -- the store, and the bundle is opened once, by new(), to count its certificates
      assert.equal(1, count)
    end)
  end)

  -- Which of the system's two forms of its store verifies: the hashed directory (OpenSSL opens
  -- the one issuer it needs) when it has a hash link for every certificate of the bundle, else
  -- the bundle. Each layout is bind-mounted over /etc/ssl/certs in a mount namespace of the
  -- child alone (root and unshare needed), with strace showing which file is read after the
  -- client connects.
  describe("the system store's two forms", function()
    local ok = os.execute("unshare -m --propagation private true >/dev/null 2>&1")
    local usable = (ok == true or ok == 0) and
      (os.execute("strace -o /dev/null true >/dev/null 2>&1") == true or
       os.execute("strace -o /dev/null true >/dev/null 2>&1") == 0) and
      io.open("/etc/ssl/certs/ca-certificates.crt") ~= nil
    local run = usable and it or pending
    local SYSTEM = "/etc/ssl/certs/ca-certificates.crt"
    local dirs = {}

    teardown(function()
      for _, d in ipairs(dirs) do os.execute("rm -rf " .. shell.quote(d)) end
    end)

    -- A store directory: the system's certificates, each a file, plus `extra` (a PEM file or
    -- nil); hashed (openssl rehash) or not; its ca-certificates.crt the system's bundle plus
    -- `extra`, plus `appended` (another PEM file, in the bundle only).
    local function store(opts)
      local d = shell.capture("mktemp -d /tmp/faceswap-store.XXXXXX"):gsub("%s+$", "")
      dirs[#dirs + 1] = d
      local q = shell.quote(d)
      local sh = {}
      if opts.hashed then
        sh[#sh + 1] = "cp -L /etc/ssl/certs/*.pem " .. q .. "/"
        if opts.extra then sh[#sh + 1] = "cp " .. shell.quote(opts.extra) .. " " .. q .. "/zz-extra.pem" end
        sh[#sh + 1] = "openssl rehash " .. q
      end
      local parts = { shell.quote(SYSTEM) }
      if opts.extra then parts[#parts + 1] = shell.quote(opts.extra) end
      if opts.appended then parts[#parts + 1] = shell.quote(opts.appended) end
      sh[#sh + 1] = "cat " .. table.concat(parts, " ") .. " > " .. q .. "/ca-certificates.crt"
      assert(os.execute("(" .. table.concat(sh, " && ") .. ") >/dev/null 2>&1"))
      return d
    end

    local function mounted(d)
      return "unshare -m --propagation private sh -c 'mount --bind \"$0\" /etc/ssl/certs && exec \"$@\"' " ..
        shell.quote(d) .. " "
    end

    -- Runs one headshot against `url` with the default store (or `ca_file`) inside the store
    -- `d` (nil: the real one); returns what it printed and, from strace, how often the bundle
    -- and a hash link were opened after the client first connected.
    local function headshot(d, url, ca_file)
      local trace = os.tmpname()
      local out = child("", string.format([[
        local c = faceswap.new { token = %q, base_url = %q, ca_file = %s, retry = false }
        local job, err = c:headshot("which store")
        print(job and job.status or err.kind .. ": " .. err.error)
      ]], TOKEN, url, ca_file and string.format("%q", ca_file) or "nil"),
        (d and mounted(d) or "") .. "strace -f -qq -e trace=openat,connect -o " .. trace .. " ")
      local connected, bundle_after, hash_after = false, 0, 0
      for line in io.lines(trace) do
        if line:find("connect(", 1, true) and line:find("127.0.0.1", 1, true) then connected = true end
        if connected and not line:find("ENOENT", 1, true) then
          if line:find(SYSTEM, 1, true) or (ca_file and line:find(ca_file, 1, true)) then
            bundle_after = bundle_after + 1
          elseif line:find('"/etc/ssl/certs/%x%x%x%x%x%x%x%x%.%d+"') then
            hash_after = hash_after + 1
          end
        end
      end
      os.remove(trace)
      return out, bundle_after, hash_after
    end

    run("update-ca-certificates' layout: the directory verifies, opening only the issuer", function()
      local d = store { hashed = true, extra = certs.ca }
      local out, bundle, hashes = headshot(d, front.url)
      assert.equal("started\n", out)
      assert.same({ 0, 1 }, { bundle, hashes })
    end)

    run("a certificate appended to the bundle by hand: the bundle verifies, so trust does not shrink", function()
      local d = store { hashed = true, appended = certs.ca }
      local out, bundle, hashes = headshot(d, front.url)
      assert.equal("started\n", out)
      assert.same({ 1, 0 }, { bundle, hashes })
    end)

    run("a bundle copied without its hash links: the bundle verifies", function()
      local d = store { hashed = false, extra = certs.ca }
      local out, bundle, hashes = headshot(d, front.url)
      assert.equal("started\n", out)
      assert.same({ 1, 0 }, { bundle, hashes })
    end)

    run("a self-signed server fails with the same error under each choice", function()
      local expected = "transport: SSL certificate problem: self-signed certificate\n"
      assert.equal(expected, (headshot(store { hashed = true, extra = certs.ca }, self_signed.url)))
      assert.equal(expected, (headshot(store { hashed = true, appended = certs.ca }, self_signed.url)))
      assert.equal(expected, (headshot(store { hashed = false, extra = certs.ca }, self_signed.url)))
      assert.equal(expected, (headshot(nil, self_signed.url, certs.ca)))
      assert.equal(0, #s:requests())
    end)

    run("a server signed by a CA the store lacks fails with the same error under each choice", function()
      local expected = "transport: SSL certificate problem: unable to get local issuer certificate\n"
      local out, bundle = headshot(nil, front.url)                       -- the real store: directory
      assert.same({ expected, 0 }, { out, bundle })
      out, bundle = headshot(nil, front.url, SYSTEM)                     -- the bundle, as ca_file
      assert.same({ expected, 1 }, { out, bundle })
      out, bundle = headshot(store { hashed = true, appended = certs.self_cert }, front.url)
      assert.same({ expected, 1 }, { out, bundle })                      -- the bundle, by default
      out, bundle = headshot(store { hashed = false }, front.url)
      assert.same({ expected, 1 }, { out, bundle })
      assert.equal(0, #s:requests())
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
