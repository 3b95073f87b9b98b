-- Spec-side handle on a real redis-server (Debian's): started on 127.0.0.1 and a free port,
-- with no persistence (`--save '' --appendonly no`) unless asked, in a directory of its own,
-- and stopped afterwards (or, should the spec's process die first, by a watchdog beside it).
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
M.free_port = require("spec.support.nginx").free_port


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
  -- beside it a watchdog that kills it once this process is gone (a spec run that crashed
  -- or was killed leaves no server behind) or once it has stopped
  local p = assert(io.popen(table.concat(args, " ") .. " >/dev/null 2>&1 </dev/null & r=$!; " ..
    "echo $r; (while kill -0 $PPID 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 1; done; " ..
    "kill -9 $r 2>/dev/null; kill -0 $PPID 2>/dev/null || rm -rf " .. quote(self.dir) ..
    ") >/dev/null 2>&1 </dev/null &"))
  self.pid = tonumber(p:read("*l"))
  p:close()
  -- up once the server answering on the port is this one (another process of a `make test`
  -- run may have taken the port since it was free: this one then exits, and a first start
  -- moves to another port)
  local pid = tostring(self.pid)
  while self:cli("INFO", "server"):match("process_id:(%d+)") ~= pid do
    if not sh("kill -0 " .. pid .. " 2>/dev/null && echo alive"):find("alive") then
      local log = sh("cat " .. quote(self.dir .. "/redis.log"))
      if not self.started and log:find("Address already in use", 1, true) then
        self.port = M.free_port()
        self.url = "redis://127.0.0.1:" .. self.port .. "/0"
        return self:start()
      end
      error("redis-server did not start: " .. log)
    end
    socket.sleep(0.02)
  end
  self.started = true
  return self
end

-- What redis-cli prints for a command.
function Redis:cli(...)
  local words = {}
  for i = 1, select("#", ...) do words[i] = quote((select(i, ...))) end
  -- (bounded: a port taken by another process may have a listener that never answers)
  return sh("timeout 5 " .. M.cli_binary .. " -h 127.0.0.1 -p " .. self.port .. " " .. table.concat(words, " "))
end

-- Stops it (SIGKILL: the state goes, unless save = true wrote it first) and waits until the
-- port is free.
function Redis:stop(opts)
  if not self.pid then return end
  if opts and opts.save then self:cli("SAVE") end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  -- reaped by the shell that started it (it exited); wait for the port
  local deadline = socket.gettime() + 10
  while listening(self.port) and socket.gettime() < deadline do socket.sleep(0.02) end
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
  local port = M.free_port()
  local self = setmetatable({ port = port, dir = dir, persist = opts.persist,
    url = "redis://127.0.0.1:" .. port .. "/0" }, Redis)
  return self:start()
end

-- Runs a spec's cases(name, coordinator) against the in-process coordinator, then against
-- Redis (#external: a redis-server of its own); coordinator() gives the client's option.
function M.each_coordinator(cases)
  cases("in process", function() return nil end)
  local busted = require "busted"
  busted.describe("#external", function()
    local server
    busted.setup(function() server = M.start() end)
    busted.teardown(function() server:close() end)
    cases("Redis", function() return server.url end)
  end)
end

return M
