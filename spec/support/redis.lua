-- Spec-side handle on a real redis-server (Debian's): started on 127.0.0.1 and a free port,
-- with no persistence (`--save '' --appendonly no`) unless asked, in a directory of its own,
-- and stopped afterwards.
--
--   local redis = require "spec.support.redis"
--   local r = redis.start()           -- r.url "redis://127.0.0.1:PORT/0", r.port
--   r:cli("GET", "faceswap:epoch")    -- what redis-cli prints
--   r:stop()                          -- killed: its state is gone
--   r:start()                         -- again on the same port: empty
-- With { persist = true }, stop{ save = true } writes the data to its directory first and the
-- next start() loads it back: a Redis that was away and came back with its state.
local socket = require "socket"

local M = {}

M.binary = "/usr/bin/redis-server"
M.cli_binary = "/usr/bin/redis-cli"

local function free_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Redis = {}
Redis.__index = Redis

-- Whether something accepts connections on the port.
local function listening(port)
  local c = socket.tcp()
  c:settimeout(0.5)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

-- Starts (or starts again) the server; waits until it answers PING.
function Redis:start()
  local args = {
    M.binary, "--port", tostring(self.port), "--bind", "127.0.0.1", "--save", "''",
    "--appendonly", "no", "--dir", quote(self.dir), "--dbfilename", "dump.rdb",
    "--daemonize", "no", "--logfile", quote(self.dir .. "/redis.log"),
  }
  if not self.persist then os.remove(self.dir .. "/dump.rdb") end
  local p = assert(io.popen(table.concat(args, " ") .. " >/dev/null 2>&1 & echo $!"))
  self.pid = tonumber(p:read("*l"))
  p:close()
  while self:cli("PING") ~= "PONG" do
    if not sh("kill -0 " .. self.pid .. " && echo alive"):find("alive") then
      error("redis-server did not start: " .. sh("cat " .. quote(self.dir .. "/redis.log")))
    end
    socket.sleep(0.02)
  end
  return self
end

-- What redis-cli prints for a command.
function Redis:cli(...)
  local words = {}
  for i = 1, select("#", ...) do words[i] = quote((select(i, ...))) end
  return sh(M.cli_binary .. " -h 127.0.0.1 -p " .. self.port .. " " .. table.concat(words, " "))
end

-- Stops it (SIGKILL: the state goes, unless save = true wrote it first) and waits until the
-- port is free.
function Redis:stop(opts)
  if not self.pid then return end
  if opts and opts.save then self:cli("SAVE") end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  -- reaped by the shell that started it (it exited); wait for the port
  while listening(self.port) do socket.sleep(0.02) end
  self.pid = nil
end

-- Stops it for good and removes its directory.
function Redis:close()
  self:stop()
  os.execute("rm -rf " .. quote(self.dir))
end

function M.start(opts)
  opts = opts or {}
  local dir = sh("mktemp -d /tmp/faceswap-redis.XXXXXX")
  local port = free_port()
  local self = setmetatable({ port = port, dir = dir, persist = opts.persist,
    url = "redis://127.0.0.1:" .. port .. "/0" }, Redis)
  return self:start()
end

M.free_port = free_port

return M
