-- The cost of a headshot round trip inside nginx (issue 20, target 2): faceswap.resty against
-- the least a program would write for the same POST and decode (spec/bench/nginx_peer.lua: one
-- pooled cosocket, the request as one string, lines and a Content-Length body, cjson.decode),
-- both measured in the same run against the same loopback server (spec/bench/server.c, which
-- reads each whole request before it answers the same 620-byte job).
--
-- Instructions of the nginx process (one worker, master_process off, under valgrind's
-- callgrind), as the slope between N1 and N2 round trips made in one content handler, after a
-- warm-up of W round trips in the same process (module loading, LuaJIT's traces, the first
-- connection), so that start-up, the handler's request and the warm-up cancel out.
--
-- Usage (from the repository root, after `make LUA_VERSION=luajit all` and `make all`):
--   lua5.4 spec/bench/nginx_roundtrip.lua [N1=200] [N2=1200] [W=300]
-- NGINX_BENCH_KINDS="peer pn d rr t tr tb ts nolog us" measures the parts (see HANDLERS) too.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath
local socket, core, nginx = require "spec.support.uses" ("socket", "faceswap.core", "nginx")

local N1, N2, W = tonumber(arg[1]) or 200, tonumber(arg[2]) or 1200, tonumber(arg[3]) or 300
assert(N2 > N1 and N1 >= 0 and W >= 0, "usage: lua5.4 spec/bench/nginx_roundtrip.lua [N1] [N2] [W]")

local root = nginx.root
local out = root .. "/build/bench"
local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == true or ok == 0, "failed: " .. cmd)
end
local read = require("spec.support.shell").contents

-- the loopback server
sh("mkdir -p '" .. out .. "'")
sh(string.format("gcc -O2 -Wall -Wextra -Werror -o '%s/server' '%s/spec/bench/server.c'", out, root))
local server = assert(io.popen(string.format("echo $$; exec '%s/server' 0", out), "r"))
local server_pid = assert(tonumber(server:read("*l")))
local server_port = assert(tonumber(server:read("*l")))

-- The same request for both: the client's own multipart body for the prompt, with its boundary.
local PROMPT = "portrait of a cat"
local _, path, content_type, body = core.build_headshot(PROMPT, "multipart")
local TOKEN = "bench-token"
local EXPECTED = "8a1f574fdbf79e8cd57e070476d9d5f3"

-- A loop of N round trips made with `via` (a request's method, path, content type and body in,
-- status, headers and answer out), each body built and each answer read by the core.
local TRANSFER_LOOP = [[
    local core = require "faceswap.core"
    local resty = require("faceswap.resty")
    local tr = resty.transport { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    local via = %s
    for _ = 1, tonumber(ngx.var.arg_n) do
      local m, p, ct, b = core.build_command("headshot", { prompt = %q }, nil, nil, nil, "multipart")
      local status, headers, answer = via(m, p, ct, b)
      local job = core.read_response("headshot", status, headers, answer)
      if job.jobid ~= %q then error("transfer") end
    end]]
local HANDLERS = {
  -- faceswap.resty: one client per request, as a handler makes it
  us = string.format([[
    local client = require("faceswap").new { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job, err = client:headshot(%q)
      if not job or job.jobid ~= %q then error("headshot: " .. tostring(err)) end
    end]], TOKEN, server_port, PROMPT, EXPECTED),
  -- The parts, added one at a time (NGINX_BENCH_KINDS, for docs/benchmarks.md's table of where
  -- a round trip goes): the client without its default log; the transport alone; + the core's
  -- read_response; + build_command; + the scheduler's transfer; the peer without cjson.decode;
  -- read_response and cjson.decode alone on one answer.
  nolog = string.format([[
    local client = require("faceswap").new { log = false, token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job, err = client:headshot(%q)
      if not job or job.jobid ~= %q then error("headshot: " .. tostring(err)) end
    end]], TOKEN, server_port, PROMPT, EXPECTED),
  t = string.format([[
    local tr = require("faceswap.resty").transport { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    for _ = 1, tonumber(ngx.var.arg_n) do
      local status = tr:perform("POST", %q, %q, %q)
      if status ~= 200 then error("t") end
    end]], TOKEN, server_port, path, content_type, body),
  tr = string.format([[
    local core = require "faceswap.core"
    local tr = require("faceswap.resty").transport { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    for _ = 1, tonumber(ngx.var.arg_n) do
      local status, headers, answer = tr:perform("POST", %q, %q, %q)
      local job = core.read_response("headshot", status, headers, answer)
      if job.jobid ~= %q then error("tr") end
    end]], TOKEN, server_port, path, content_type, body, EXPECTED),
  -- the transport alone (tb), and through the scheduler's transfer (ts): build, send, read
  tb = string.format(TRANSFER_LOOP, TOKEN, server_port, "function(...) return tr:perform(...) end",
    PROMPT, EXPECTED),
  ts = string.format(TRANSFER_LOOP, TOKEN, server_port,
    "(function() local s = resty.scheduler(tr) return function(...) return s:transfer(...) end end)()",
    PROMPT, EXPECTED),
  pn = string.format([[
    local peer = require "spec.bench.nginx_peer"
    local cjson = require "cjson"
    local decode = cjson.decode
    cjson.decode = function(s) return s end
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job, status = peer.post("127.0.0.1", %d, %q, %q, %q, %q)
      if status ~= 200 or type(job) ~= "string" then error("peer: " .. tostring(status)) end
    end
    cjson.decode = decode]], server_port, "/v1/faceswap" .. path, TOKEN, content_type, body),
  rr = string.format([[
    local core = require "faceswap.core"
    local tr = require("faceswap.resty").transport { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    local status, headers, answer = tr:perform("POST", %q, %q, %q)
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job = core.read_response("headshot", status, headers, answer)
      if job.jobid ~= %q then error("rr") end
    end]], TOKEN, server_port, path, content_type, body, EXPECTED),
  d = string.format([[
    local cjson = require "cjson"
    local tr = require("faceswap.resty").transport { token = %q, base_url = "http://127.0.0.1:%d/v1/faceswap" }
    local status, headers, answer = tr:perform("POST", %q, %q, %q)
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job = cjson.decode(answer)
      if job.jobid ~= %q then error("d") end
    end]], TOKEN, server_port, path, content_type, body, EXPECTED),
  peer = string.format([[
    local peer = require "spec.bench.nginx_peer"
    for _ = 1, tonumber(ngx.var.arg_n) do
      local job, status = peer.post("127.0.0.1", %d, %q, %q, %q, %q)
      if status ~= 200 or job.jobid ~= %q then error("peer: " .. tostring(status)) end
    end]], server_port, "/v1/faceswap" .. path, TOKEN, content_type, body, EXPECTED),
}

local CONF = [[
master_process off;
daemon off;
worker_processes 1;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path @PREFIX@/body;
  proxy_temp_path @PREFIX@/proxy;
  fastcgi_temp_path @PREFIX@/fastcgi;
  uwsgi_temp_path @PREFIX@/uwsgi;
  scgi_temp_path @PREFIX@/scgi;
  lua_package_path "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;@ROOT@/?.lua;;";
  lua_package_cpath "@ROOT@/build/luajit/?.so;;";
  init_by_lua_block { @INIT@ }
  server {
    listen 127.0.0.1:@PORT@;
    location = /run { content_by_lua_block { @HANDLER@
      ngx.say("done") } }
  }
}
]]

-- GET /run?n=COUNT on nginx at `port`: its status line and body.
local function get(port, count)
  local c = socket.tcp()
  c:settimeout(600)
  assert(c:connect("127.0.0.1", port))
  c:send("GET /run?n=" .. count .. " HTTP/1.0\r\nHost: x\r\n\r\n")
  local answer, _, partial = c:receive("*a")
  c:close()
  return answer or partial or ""
end

-- Instructions of one nginx process that made W and then n round trips of `kind`.
local function measure(kind, n)
  local prefix = out .. "/nginx-" .. kind .. "-" .. n
  sh("rm -rf '" .. prefix .. "' && mkdir -p '" .. prefix .. "'")
  local port = nginx.free_port()
  local values = { PREFIX = prefix, ROOT = root, PORT = tostring(port), HANDLER = HANDLERS[kind],
                   INIT = os.getenv("NGINX_BENCH_INIT") or "" }
  local f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write((CONF:gsub("@(%u+)@", function(k) return values[k] end)))
  f:close()
  local cg = prefix .. "/callgrind.out"
  -- LuaJIT patches the machine code of its traces: --smc-check=all-non-file sees that
  local pipe = assert(io.popen(string.format("valgrind --tool=callgrind --smc-check=all-non-file " ..
    "--callgrind-out-file='%s' %s -p '%s' -c '%s/nginx.conf' >'%s/valgrind.log' 2>&1 & echo $!; wait",
    cg, nginx.binary, prefix, prefix, prefix), "r"))
  local pid = assert(tonumber(pipe:read("*l")))
  local ok, err = pcall(function()
    local deadline = socket.gettime() + 120
    while true do
      local c = socket.tcp()
      c:settimeout(0.5)
      local up = c:connect("127.0.0.1", port)
      c:close()
      if up then break end
      if socket.gettime() > deadline then error("nginx did not start: " .. read(prefix .. "/valgrind.log")) end
      socket.sleep(0.1)
    end
    for _, count in ipairs { W, n } do
      local answer = get(port, count)
      if not answer:find("^HTTP/1%.%d 200") then
        error(kind .. " " .. count .. ": " .. answer .. read(prefix .. "/error.log"))
      end
    end
  end)
  os.execute("kill -TERM " .. pid) -- (with master_process off, QUIT waits on the kept connections)
  pipe:read("*a")
  pipe:close()
  if not ok then
    os.execute("kill " .. server_pid)
    error(err, 0)
  end
  local text = read(cg)
  local total = text:match("\nsummary: (%d+)") or text:match("\ntotals: (%d+)")
  return assert(tonumber(total), "no total in " .. cg)
end

local rows = {}
for kind in (os.getenv("NGINX_BENCH_KINDS") or "peer us"):gmatch("%S+") do
  local i1, i2 = measure(kind, N1), measure(kind, N2)
  rows[kind] = (i2 - i1) / (N2 - N1)
end
os.execute("kill " .. server_pid)
server:close()

local function commas(x)
  local s = string.format("%.0f", x)
  repeat
    local n
    s, n = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until n == 0
  return s
end
for kind in (os.getenv("NGINX_BENCH_KINDS") or ""):gmatch("%S+") do
  print(string.format("%-6s %s", kind, commas(rows[kind])))
end
if not (rows.peer and rows.us) then return end
print("| inside nginx, one worker, per headshot round trip | instructions | ratio |")
print("|---|--:|--:|")
print(string.format("| minimal cosocket client + cjson.decode (`spec/bench/nginx_peer.lua`) | %s | 1.00 |",
  commas(rows.peer)))
print(string.format("| faceswap.resty `client:headshot()` | %s | **%.2f** |", commas(rows.us), rows.us / rows.peer))
print()
print(string.format("Command: `lua5.4 spec/bench/nginx_roundtrip.lua %d %d %d`", N1, N2, W))
