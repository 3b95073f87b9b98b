-- A minimal callback receiver for the specs: what a user's replyUrl endpoint would be.
--
-- Usage: lua5.4 spec/support/receiver.lua [--parent-pid PID]
-- Listens on 127.0.0.1, a port the kernel picks, and prints "listening http://127.0.0.1:PORT".
-- Every request except GET /received is kept ({method, path, headers, body}; header names
-- lowercased) and answered 204 at once. GET /received answers the kept requests as a JSON
-- array, oldest first. One connection at a time, Connection: close, Content-Length bodies only:
-- enough for the simulator's callbacks and the specs' polling. Stops on SIGTERM, or when the
-- parent process is gone. Needs only Lua 5.4, luasocket and lua-cjson.

local socket = require "socket"
local cjson = require "cjson"

local IO_TIMEOUT = 5     -- seconds a connected client gets to send its request
local TICK = 1           -- longest wait for a connection, so the parent check runs when idle

local received = {}

-- Reads one request; returns {method, path, headers, body} or nil.
local function read_request(c)
  local line = c:receive("*l")
  local method, path = (line or ""):match("^(%u+) (%S+) HTTP/1%.%d$")
  if not method then return nil end
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h then return nil end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local n = tonumber(headers["content-length"] or "0")
  if not n then return nil end
  local body = n > 0 and c:receive(n) or ""
  if not body then return nil end
  return { method = method, path = path, headers = headers, body = body }
end

local function answer(c, status, body, content_type)
  c:send(string.format("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
    status, content_type or "text/plain", #body, body))
end

local function serve(c)
  c:settimeout(IO_TIMEOUT)
  local req = read_request(c)
  if not req then
    answer(c, "400 Bad Request", "")
  elseif req.method == "GET" and req.path == "/received" then
    -- cjson would print an empty table as {}
    answer(c, "200 OK", #received == 0 and "[]" or cjson.encode(received), "application/json")
  else
    received[#received + 1] = req
    answer(c, "204 No Content", "")
  end
end

local function parent_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function main(argv)
  local parent = argv[1] == "--parent-pid" and tonumber(argv[2])
  local proc = io.open("/proc/self/stat")      -- without /proc there is nothing to watch with
  if proc then proc:close() else parent = nil end
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(TICK)
  local host, port = server:getsockname()
  io.stdout:write(string.format("listening http://%s:%d\n", host, port))
  io.stdout:flush()
  while not parent or parent_alive(parent) do
    local c = server:accept()
    if c then
      serve(c)
      c:close()
    end
  end
  server:close()
end

main(arg)
