-- Spec-side handle on a real nginx (Debian's, with libnginx-mod-http-lua): writes a
-- configuration under a fresh prefix, starts nginx in the foreground on a loopback port with
-- one worker, and stops it. The module is loaded from this checkout: lua/ and the LuaJIT
-- build of the core (build/luajit, `make LUA_VERSION=luajit`).
--
--   local nginx = require "spec.support.nginx"
--   local n = nginx.start { server = "location = /x { return 204; }", http = "..." }
--   ... n.url .. "/x" ...
--   n:stop()
-- With tls = {cert =, key =} (spec/support/tls.lua makes them) the server speaks HTTPS
-- (TLS 1.3 and 1.2) and n.url is https://. With workers = N it runs N workers (each new
-- connection goes to one of them at random: reuseport); shared = { NAME = "1m", ... } declares
-- lua_shared_dicts. Several may run at once (each its own prefix and port).
local socket = require "socket"
local compat = require "spec.support.compat"

local M = {}

M.root = (function()
  local source = debug.getinfo(1, "S").source:match("^@(.*)$") or "spec/support/nginx.lua"
  local dir = source:match("^(.*)/spec/support/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local pwd = io.popen("pwd")
    local cwd = pwd:read("*l")
    pwd:close()
    dir = dir == "." and cwd or (cwd .. "/" .. dir)
  end
  return dir
end)()

M.binary = "/usr/sbin/nginx"
M.modules = "/usr/lib/nginx/modules"

local function run(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function free_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end
M.free_port = free_port

local CONF = [[
worker_processes @WORKERS@;
daemon off;
pid @PREFIX@/logs/nginx.pid;
error_log @PREFIX@/logs/error.log info;
@USER@
load_module @MODULES@/ndk_http_module.so;
load_module @MODULES@/ngx_http_lua_module.so;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path @PREFIX@/tmp/body;
  proxy_temp_path @PREFIX@/tmp/proxy;
  fastcgi_temp_path @PREFIX@/tmp/fastcgi;
  uwsgi_temp_path @PREFIX@/tmp/uwsgi;
  scgi_temp_path @PREFIX@/tmp/scgi;
  lua_package_path "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;;";
  lua_package_cpath "@ROOT@/build/luajit/?.so;;";
  @SHARED@
  @HTTP@
  server {
    listen 127.0.0.1:@PORT@@LISTEN@;
    @TLS@
    @SERVER@
  }
}
]]

local Nginx = {}
Nginx.__index = Nginx

-- The error log so far (for failure messages).
function Nginx:log()
  local f = io.open(self.prefix .. "/logs/error.log")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

function Nginx:stop()
  local pipe = self.pipe
  if not pipe then return end
  self.pipe = nil
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  pipe:read("*a")
  pipe:close()
  os.execute("rm -rf '" .. self.prefix .. "'")
end

Nginx.__gc = function(self) pcall(Nginx.stop, self) end

-- nginx runs LuaJIT: the core must be built for it (a fresh checkout has only its own Lua's).
local function ensure_luajit_build()
  local so = M.root .. "/build/luajit/faceswap/core.so"
  local f = io.open(so)
  if f then
    f:close()
    return
  end
  local cmd = "cd '" .. M.root .. "' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
    "make --no-print-directory -s LUA_VERSION=luajit all >/dev/null 2>&1"
  os.execute(cmd)
  f = io.open(so)
  if not f then error("cannot build " .. so .. " (make LUA_VERSION=luajit)", 3) end
  f:close()
end

-- opts.server: the server block's body; opts.http: more lines for the http block; opts.tls:
-- a certificate and key to serve HTTPS with.
function M.start(opts, attempt)
  ensure_luajit_build()
  local prefix = run("mktemp -d /tmp/faceswap-nginx.XXXXXX")
  os.execute("mkdir -p '" .. prefix .. "/logs' '" .. prefix .. "/conf' '" .. prefix .. "/tmp'")
  os.execute("chmod 755 '" .. prefix .. "'")
  local port = M.free_port()
  local values = {
    PREFIX = prefix, MODULES = M.modules, ROOT = M.root, PORT = tostring(port),
    HTTP = opts.http or "", SERVER = opts.server or "",
    LISTEN = (opts.tls and " ssl" or "") .. ((opts.workers or 1) > 1 and " reuseport" or ""),
    WORKERS = tostring(opts.workers or 1),
    SHARED = (function()
      local lines = {}
      for name, size in pairs(opts.shared or {}) do
        lines[#lines + 1] = ("lua_shared_dict %s %s;"):format(name, size)
      end
      table.sort(lines)
      return table.concat(lines, "\n  ")
    end)(),
    TLS = opts.tls and string.format("ssl_certificate %s; ssl_certificate_key %s; " ..
      "ssl_protocols TLSv1.2 TLSv1.3;", opts.tls.cert, opts.tls.key) or "",
    -- as root nginx would run its worker as nobody, who cannot read a checkout under /root
    USER = run("id -u") == "0" and "user root;" or "",
  }
  local conf = CONF:gsub("@(%u+)@", function(k) return values[k] end)
  local f = assert(io.open(prefix .. "/conf/nginx.conf", "w"))
  f:write(conf)
  f:close()
  -- nginx in the foreground, killed with the spec process if that dies first
  local cmd = string.format("%s -p '%s' -c conf/nginx.conf 2>>'%s/logs/stderr' & n=$!; echo $n; " ..
    "while kill -0 $PPID 2>/dev/null && kill -0 $n 2>/dev/null; do sleep 0.5; done; " ..
    "kill $n 2>/dev/null; wait $n", M.binary, prefix, prefix)
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("*l"))
  local self = setmetatable({ pipe = pipe, pid = pid, prefix = prefix, port = port,
                              url = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. port },
                             Nginx)
  -- Up once it has written its pid file (it does so after binding the port) and accepts. The
  -- port was free a moment ago; another process of a `make test` run may have taken it since
  -- (nginx then exits: "Address already in use"): start again on another port.
  local deadline = socket.gettime() + 10
  repeat
    local pidfile = io.open(prefix .. "/logs/nginx.pid")
    if pidfile then
      pidfile:close()
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect("127.0.0.1", port)
      c:close()
      if ok then return self end
    elseif not compat.execute("kill -0 " .. pid .. " 2>/dev/null") then
      break
    end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  local log = self:log() .. run("cat '" .. prefix .. "/logs/stderr' 2>/dev/null")
  self:stop()
  if log:find("Address already in use", 1, true) and (attempt or 1) < 5 then
    return M.start(opts, (attempt or 1) + 1)
  end
  error("nginx did not start: " .. log, 2)
end

-- One HTTP/1.0 exchange with nginx: status and body.
function M.request(url, method, body)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(.*)$")
  local c = socket.tcp()
  c:settimeout(30)
  assert(c:connect(host, tonumber(port)))
  body = body or ""
  c:send(string.format("%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n" ..
    "Content-Length: %d\r\n\r\n%s", method or "GET", path ~= "" and path or "/", host, #body, body))
  local answer, _, partial = c:receive("*a")
  c:close()
  answer = answer or partial or ""
  return tonumber(answer:match("^HTTP/1%.%d (%d+)")), answer:match("\r\n\r\n(.*)$") or ""
end

-- N requests `GET /headshot?prompt=pI` (HTTP/1.0) sent at once to 127.0.0.1:port, every answer
-- read to its end: the wall time and how many answers' bodies are `word` (the benches'
-- handlers print a job's status).
function M.burst(port, n, word)
  local t0 = socket.gettime()
  local conns, pending, answers = {}, {}, {}
  for i = 1, n do
    local c = socket.tcp()
    assert(c:connect("127.0.0.1", port))
    c:send("GET /headshot?prompt=p" .. i .. " HTTP/1.0\r\nHost: x\r\n\r\n")
    c:settimeout(0)
    conns[i], pending[#pending + 1], answers[c] = c, c, {}
  end
  while #pending > 0 do
    local ready = socket.select(pending, nil, 10)
    for _, c in ipairs(ready) do
      local data, err, partial = c:receive(8192)
      local part = data or partial
      if part and #part > 0 then table.insert(answers[c], part) end
      if err == "closed" then
        for k, p in ipairs(pending) do
          if p == c then table.remove(pending, k) break end
        end
      end
    end
  end
  local wall, matched = socket.gettime() - t0, 0
  for i = 1, n do
    if table.concat(answers[conns[i]]):match("\r\n\r\n" .. word .. "\n$") then matched = matched + 1 end
    conns[i]:close()
  end
  return wall, matched
end

return M
