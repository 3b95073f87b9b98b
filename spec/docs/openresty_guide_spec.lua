-- docs/openresty.md works as written: its nginx.conf, taken out of the markdown, runs in a real
-- nginx (`nginx -p PREFIX -c conf/nginx.conf`) over the library installed with
-- `make install LUA_VERSION=luajit`, beside the simulator; and the phases table says what nginx
-- really does. Only the install prefix (/usr/local, here a scratch directory) and the listen
-- port are changed; token and base URL come from the environment, as the guide says.
local socket = require "socket"
local sim = require "spec.support.sim"
local nginx = require "spec.support.nginx"
local shell = require "spec.support.shell"

local TOKEN = "guide-token-7d1c"

-- s with `from` replaced by `to` (plain text), which must occur `count` times.
local function replace(s, from, to, count)
  local pattern = from:gsub("%p", "%%%0")
  local out, n = s:gsub(pattern, (to:gsub("%%", "%%%%")))
  assert(n == count, string.format("expected %q %d times in the guide's configuration, found %d",
    from, count, n))
  return out
end

-- Runs the guide's nginx.conf as the guide says, under `dir` (installed there by setup), with
-- USEAPI_BASE_URL = base_url; returns a handle: url, prefix, stop().
local function start_guide(dir, base_url)
  local prefix = shell.capture("mktemp -d " .. shell.quote(dir .. "/nginx.XXXXXX")):gsub("\n$", "")
  os.execute("chmod 755 " .. shell.quote(prefix))
  os.execute("mkdir -p " .. shell.quote(prefix .. "/conf"))
  -- the commands after the configuration, as written: logs/, tmp/ and conf/resolver.conf
  local setup = replace(shell.code_block(nginx.root .. "/docs/openresty.md", "## A complete nginx.conf", "sh"),
    "PREFIX/", prefix .. "/", 3)
  local ran = shell.capture("sh -e -c " .. shell.quote(setup) .. " 2>&1; echo $?")
  assert(ran == "0\n", "the guide's commands failed:\n" .. setup .. "\n" .. ran)
  local port = nginx.free_port()
  local conf = shell.code_block(nginx.root .. "/docs/openresty.md", "## A complete nginx.conf", "nginx")
  conf = replace(conf, "/usr/local/", dir .. "/usr-local/", 3)
  conf = replace(conf, "listen 8080;", "listen 127.0.0.1:" .. port .. ";", 1)
  local f = assert(io.open(prefix .. "/conf/nginx.conf", "w"))
  f:write(conf)
  f:close()
  -- as the guide starts it, in the foreground, ended with this spec process if that dies first
  local pipe = assert(io.popen(string.format("env USEAPI_TOKEN=%s USEAPI_BASE_URL=%s %s -p %s " ..
    "-c conf/nginx.conf -g 'daemon off;' 2>>%s/logs/stderr & n=$!; echo $n; " ..
    "while kill -0 $PPID 2>/dev/null && kill -0 $n 2>/dev/null; do sleep 0.5; done; " ..
    "kill $n 2>/dev/null; wait $n", TOKEN, shell.quote(base_url), nginx.binary,
    shell.quote(prefix), shell.quote(prefix))))
  local h = { pid = tonumber(pipe:read("*l")), url = "http://127.0.0.1:" .. port, prefix = prefix }
  function h.stop()
    if not pipe then return end
    if h.pid then os.execute("kill " .. h.pid .. " 2>/dev/null") end
    pipe:read("*a")
    pipe:close()
    pipe = nil
  end
  function h.error_log() return shell.read(prefix .. "/logs/error.log") or "" end
  local up = sim.wait_for(function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok
  end, 20)
  if not up then
    h.stop()
    error("nginx did not start: " .. h.error_log() .. (shell.read(prefix .. "/logs/stderr") or ""))
  end
  return h
end

describe("docs/openresty.md #external", function()
  local s, scratch, guide, url

  local function get(path) return nginx.request(url .. path) end
  local function error_log() return guide.error_log() end

  setup(function()
    s = sim.start { token = TOKEN, job_seconds = 0.2 }
    scratch = shell.capture("mktemp -d /tmp/faceswap-guide.XXXXXX"):gsub("\n$", "")
    os.execute("chmod 755 " .. scratch) -- nginx's workers run as nobody when started as root
    -- the guide's install step: its packages are the ones installed here, and its make line
    -- runs as written, into a scratch prefix instead of /usr/local
    local install = shell.code_block(nginx.root .. "/docs/openresty.md", "## Install", "sh")
    local packages, make = install:match("^apt%-get install ([^#\n]-)%s*#[^\n]*\n(make [^\n]*)$")
    assert(packages and make, "the install block is not an apt-get line and a make line:\n" .. install)
    for name in packages:gmatch("%S+") do
      assert.matches("install ok installed", shell.capture("dpkg-query -W -f='${Status}' " .. name ..
        " 2>&1"), nil, true)
    end
    local made = shell.capture("cd " .. shell.quote(nginx.root) .. " && env -u MAKEFLAGS -u MFLAGS " ..
      "-u MAKELEVEL -u LUA -u LUA_INCDIR " .. make .. " --no-print-directory -s " ..
      "PREFIX=" .. shell.quote(scratch .. "/usr-local") .. " >/dev/null 2>&1; echo $?")
    assert(made == "0\n", make .. " failed")
    guide = start_guide(scratch, s.base_url)
    url = guide.url
  end)

  teardown(function()
    if guide then guide.stop() end
    if scratch then os.execute("rm -rf " .. shell.quote(scratch)) end
    s:stop()
  end)

  before_each(function() s:reset() end)

  it("starts a headshot, then acts on its callback after confirming it with client:job", function()
    local status, body = get("/portrait?prompt=a%20cat&ref=guide-1")
    assert.equal(200, status)
    local jobid = body:match("^(%x+)\n$")
    assert.is_string(jobid, body)
    assert.equal(url .. "/faceswap/callback", s:job(jobid).replyUrl)
    s:advance(jobid, "completed")
    local urls = {}
    for i, a in ipairs(s:job(jobid).attachments) do urls[i] = a.url end
    local stored = sim.wait_for(function()
      local _, r = get("/result?ref=guide-1")
      return r ~= "none yet\n" and r
    end, 20)
    assert.equal("completed " .. table.concat(urls, " ") .. "\n", stored)
    assert.matches("^" .. s.base_url:gsub("%p", "%%%0") .. "/attachments/" .. jobid .. "/1%.png", urls[1])
    local confirmed = false
    for _, r in ipairs(s:requests()) do
      if r.method == "GET" and r.path == "/jobs/" then confirmed = true end
    end
    assert.is_true(confirmed, "the callback was not confirmed with GET /jobs/")
  end)

  it("waits for a job inside a request, with the client made in init_by_lua", function()
    local status, body = get("/portrait/wait?prompt=a%20dog&interval=0.05")
    assert.equal(200, status)
    assert.matches("^completed " .. s.base_url:gsub("%p", "%%%0") .. "/attachments/%x+/1%.png[^\n]*\n$", body)
  end)

  it("answers /portrait/wait with the headshot's own error when it fails (not a 500)", function()
    -- (not a 401, 402 or "Configuration not found": those take the shared client's channel
    -- out of use for its lifetime, and the next tests use it)
    s:script { action = "status", status = 400, body = '{"error":"Prompt refused","code":400}',
               match = "^POST /headshot$" }
    assert.same({ 502, "invalid_request (400): Prompt refused\n" },
      { get("/portrait/wait?prompt=a%20dog&interval=0.05") })
  end)

  it("serves requests side by side with the one shared client: each waits without blocking", function()
    s:config { job_seconds = 1 }
    local socks = {}
    for i = 1, 3 do
      local c = socket.tcp()
      c:settimeout(30)
      assert(c:connect("127.0.0.1", tonumber(url:match(":(%d+)$"))))
      c:send("GET /portrait/wait?prompt=p" .. i .. "&interval=0.05 HTTP/1.0\r\nHost: x\r\n\r\n")
      socks[i] = c
    end
    for i = 1, 3 do
      local answer = socks[i]:receive("*a")
      socks[i]:close()
      assert.matches("\r\n\r\ncompleted http", answer)
    end
    -- all three jobs were created before the first ended: no request waited for another's
    local last_created, first_ended = "", "~"
    for _, job in ipairs(s:jobs()) do
      if job.created > last_created then last_created = job.created end
      assert.equal("completed", job.status)
      if job.updated < first_ended then first_ended = job.updated end -- when it completed
    end
    assert.equal(3, #s:jobs())
    assert.is_true(last_created < first_ended, last_created .. " is not before " .. first_ended)
  end)

  it("runs a batch with a client of the request's own", function()
    assert.same({ 200, "1 completed\n2 completed\n3 completed\n" },
      { get("/portraits?n=3&interval=0.05") })
  end)

  it("says what went wrong as one line, with `..`", function()
    assert.same({ 502, "headshot failed: invalid_request (400): Required param prompt is " ..
      "missing or empty\n" }, { get("/portrait") })
  end)

  it("answers /portrait/wait without a prompt with 400 and its usage", function()
    assert.same({ 400, "usage: /portrait/wait?prompt=...\n" }, { get("/portrait/wait") })
    assert.same({ 400, "usage: /portrait/wait?prompt=...\n" }, { get("/portrait/wait?prompt=") })
    assert.equal(0, s:count("POST"))
  end)

  it("gives nginx the name servers of /etc/resolv.conf", function()
    local servers = {}
    for line in (shell.read("/etc/resolv.conf") or ""):gmatch("[^\n]+") do
      local address = line:match("^%s*nameserver%s+(%S+)")
      if address then servers[#servers + 1] = address:find(":") and "[" .. address .. "]" or address end
    end
    if #servers == 0 then servers[1] = "127.0.0.1" end
    assert.equal("resolver " .. table.concat(servers, " ") .. " ipv6=off;\n",
      shell.read(guide.prefix .. "/conf/resolver.conf"))
  end)

  it("answers anything but a POST to the callback with 405", function()
    assert.equal(405, (get("/faceswap/callback")))
  end)

  it("logs a line per answer to nginx's error log, without the token", function()
    assert.equal(200, (get("/portrait?prompt=logged")))
    local log = sim.wait_for(function()
      local text = error_log()
      return text:find("faceswap: POST /headshot: 200 in %d+ ms") and text
    end, 10)
    assert.matches("%[info%] [^\n]*faceswap: POST /headshot: 200 in %d+ ms, %d+ bytes, attempt 1", log)
    assert.is_nil(log:find(TOKEN, 1, true))
  end)
end)

describe("docs/openresty.md's table of phases #external", function()
  local n

  setup(function()
    n = nginx.start {
      http = [[
        lua_shared_dict phases 1m;
        init_by_lua_block {
          local c = require("faceswap").new { token = "t", base_url = "http://127.0.0.1:9",
                                              retry = false }
          phase_client = c
          init_error = select(2, pcall(c.job, c, "x"))
        }
        init_worker_by_lua_block {
          worker_error = select(2, pcall(phase_client.job, phase_client, "x"))
          ngx.timer.at(0, function()
            ngx.shared.phases:set("timer", tostring(select(2, phase_client:job("x"))))
          end)
        }]],
      server = [[
        location = /init { content_by_lua_block { ngx.print(init_error) } }
        location = /paths { content_by_lua_block { ngx.print(package.path, "\n", package.cpath) } }
        location = /worker { content_by_lua_block { ngx.print(worker_error) } }
        location = /timer { content_by_lua_block { ngx.print(ngx.shared.phases:get("timer")) } }
        location = /content { content_by_lua_block { ngx.print(tostring(select(2, phase_client:job("x")))) } }
        location = /say { content_by_lua_block {
          local _, err = phase_client:job("x")
          ngx.print(select(2, pcall(ngx.say, err)), " | ", tostring(err), " | ", "failed: " .. err)
        } }
        location = /set {
          set_by_lua_block $e { return select(2, pcall(phase_client.job, phase_client, "x")) }
          content_by_lua_block { ngx.print(ngx.var.e) }
        }
        location = /header {
          content_by_lua_block { ngx.print("body") }
          header_filter_by_lua_block {
            ngx.header["X-Error"] = select(2, pcall(phase_client.job, phase_client, "x"))
          }
        }
        location = /log {
          content_by_lua_block { ngx.print("body") }
          log_by_lua_block {
            ngx.log(ngx.ERR, "log phase: ", select(2, pcall(phase_client.job, phase_client, "x")))
          }
        }]],
    }
  end)
  teardown(function() if n then n:stop() end end)

  -- What a call raised there, without the position nginx's Lua put before it.
  local function raised(text) return (text:gsub("^[^\n]-resty/transport%.lua:%d+: ", "")) end

  it("is right that /usr/local (make install's default PREFIX) is on nginx's own Lua paths", function()
    local paths = select(2, nginx.request(n.url .. "/paths"))
    assert.truthy(paths:find(";/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;", 1, true), paths)
    assert.truthy(paths:find(";/usr/local/lib/lua/5.1/?.so;", 1, true), paths)
  end)

  it("raises 'no request found' in init_by_lua, where making a client works", function()
    assert.equal("no request found", raised(select(2, nginx.request(n.url .. "/init"))))
  end)

  -- What a call answers in content_by_lua (nothing listens at its base URL): one line, with
  -- the time libcurl took ("after 0 ms") as N, since two calls need not take the same.
  local function untimed(text) return (text:gsub("after %d+ ms", "after N ms")) end
  local function refused()
    local line = select(2, nginx.request(n.url .. "/content"))
    assert.matches("^transport: [^\n]*[Cc]onnect", line)
    return untimed(line)
  end

  it("raises in init_worker_by_lua, and works from a timer started there", function()
    assert.equal("API disabled in the context of init_worker_by_lua*",
      raised(select(2, nginx.request(n.url .. "/worker"))))
    assert.equal(refused(), sim.wait_for(function()
      local body = select(2, nginx.request(n.url .. "/timer"))
      return body ~= "nil" and untimed(body)
    end, 10))
  end)

  it("works in content_by_lua, with the client made in init_by_lua", function()
    refused()
  end)

  it("raises 'API disabled' in set_by_lua, header_filter_by_lua and log_by_lua", function()
    assert.equal("API disabled in the context of set_by_lua*", raised(select(2, nginx.request(n.url .. "/set"))))
    local c = socket.tcp()
    c:settimeout(10)
    assert(c:connect("127.0.0.1", n.port))
    c:send("GET /header HTTP/1.0\r\nHost: x\r\n\r\n")
    local answer = c:receive("*a")
    c:close()
    assert.equal("API disabled in the context of header_filter_by_lua*",
      raised(answer:match("\r\nX%-Error: ([^\r]*)\r\n")))
    nginx.request(n.url .. "/log")
    local line = sim.wait_for(function() return n:log():match("log phase: ([^\n]-) while logging") end, 10)
    assert.equal("API disabled in the context of log_by_lua*", raised(line))
  end)

  it("raises on ngx.say(err), where tostring(err) and `..` give the one line", function()
    local line = refused()
    assert.equal("bad argument #1 to '?' (non-array table found) | " .. line .. " | failed: " .. line,
      untimed(select(2, nginx.request(n.url .. "/say"))))
  end)
end)
