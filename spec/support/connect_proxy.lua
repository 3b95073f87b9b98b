-- A minimal HTTP proxy for specs that records every byte its clients send, so a spec can see
-- exactly what a proxy would see. CONNECT host:port opens a tunnel (as corporate proxies do for
-- https); any other request is recorded and answered 502. Loopback only, one process, select().
--
--   lua5.4 spec/support/connect_proxy.lua LOGFILE [--parent-pid PID]
-- prints "port N" once listening; exits when PID (default: its parent) is gone.
-- Start it from a spec with M.start(log) in this file's Lua (require "spec.support.connect_proxy");
-- M.start(log, lines) adds header lines (each ending CRLF) to its CONNECT's 200, as some proxies do.
local socket = require "socket"

local function serve(logfile, parent, extra)
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0)
  local _, port = server:getsockname()
  io.stdout:write("port ", port, "\n")
  io.stdout:flush()
  local log = assert(io.open(logfile, "ab"))
  local peer = {}   -- socket -> the other end of its tunnel
  local head = {}   -- client socket -> bytes of its request head so far (before the tunnel)
  local client = {} -- the sockets of clients (not of the servers they tunnel to)
  local watch = { server }
  local function drop(s)
    for i = #watch, 1, -1 do
      if watch[i] == s then table.remove(watch, i) end
    end
    s:close()
    head[s], client[s] = nil, nil
  end
  local function close_pair(s)
    local other = peer[s]
    peer[s] = nil
    drop(s)
    if other then
      peer[other] = nil
      drop(other)
    end
  end
  local checked = socket.gettime()
  while true do
    local ready = socket.select(watch, nil, 0.5)
    for _, s in ipairs(ready) do
      if s == server then
        local c = server:accept()
        if c then
          c:settimeout(0)
          head[c], client[c] = "", true
          watch[#watch + 1] = c
        end
      else
        local data, err, partial = s:receive(65536)
        data = data or partial
        if data and #data > 0 then
          if head[s] then
            log:write(data)
            log:flush()
            local h = head[s] .. data
            local target = h:match("^CONNECT ([^ ]+) HTTP/1%.%d\r\n")
            if h:find("\r\n\r\n", 1, true) then
              local host, p = (target or ""):match("^([^:]+):(%d+)$")
              local up = host and socket.tcp()
              if up and up:connect(host, tonumber(p)) then
                up:settimeout(0)
                head[s] = nil
                peer[s], peer[up] = up, s
                watch[#watch + 1] = up
                s:settimeout(5)
                s:send("HTTP/1.1 200 Connection established\r\n" .. (extra or "") .. "\r\n")
                s:settimeout(0)
                local rest = h:sub(h:find("\r\n\r\n", 1, true) + 4)
                if #rest > 0 then up:send(rest) end
              else
                if up then up:close() end
                s:settimeout(5)
                s:send("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                drop(s)
              end
            else
              head[s] = h
            end
          elseif peer[s] then
            if client[s] then -- the client's bytes inside the tunnel are recorded too
              log:write(data)
              log:flush()
            end
            local other = peer[s]
            other:settimeout(5)
            other:send(data)
            other:settimeout(0)
          end
        end
        if err == "closed" then
          if peer[s] then close_pair(s) else drop(s) end
        end
      end
    end
    if socket.gettime() - checked > 0.5 then
      checked = socket.gettime()
      if not os.execute("kill -0 " .. parent .. " 2>/dev/null") then break end
    end
  end
end

local M = {}

-- Starts the proxy as a child process recording into `log`; returns {port =, stop = fn}.
function M.start(log, lines)
  local source = debug.getinfo(1, "S").source:match("^@(.*)$")
  local cmd = string.format("echo $$; exec lua5.4 '%s' '%s' --parent-pid $PPID %q", source, log,
    lines or "")
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("*l"))
  local port = tonumber((pipe:read("*l") or ""):match("^port (%d+)$"))
  assert(port, "the proxy did not start")
  return {
    port = port, url = "http://127.0.0.1:" .. port,
    stop = function()
      os.execute("kill " .. pid .. " 2>/dev/null")
      pipe:close()
    end,
  }
end

if arg and arg[0] and arg[0]:match("connect_proxy%.lua$") and arg[1] then
  local parent = arg[2] == "--parent-pid" and arg[3] or "1"
  serve(arg[1], parent, (arg[4] or ""):gsub("\\r\\n", "\r\n"))
  os.exit(0)
end

return M
