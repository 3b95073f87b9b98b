-- Connection opens spread over steps: a step(0) lets only a few transfers that need a new
-- connection join the multi handle (4 plain http, or 1 https: a TLS handshake costs about as
-- much as four), the rest wait in order for the next steps, so that many tasks started in one
-- frame do not put every connect and handshake into one step. An https one also waits until
-- the last one's handshake is done, or, for a server that does not finish it, two steps and
-- 5 ms. Counted as the client's TCP sockets to a listener that never answers (/proc/net/tcp),
-- and checked end to end against the simulator.
local faceswap = require "faceswap"
local socket = require "socket"
local sim = require "spec.support.sim"

local TOKEN = "opens-spec-token"

-- The sockets this process holds, by inode: the client's connections are told from those
-- of the other processes `make test` runs side by side (another pass's client can be
-- connecting to a port that was free a moment ago, and is now this spec's listener).
local function own_sockets()
  local stat = assert(io.open("/proc/self/stat"))
  local pid = stat:read("*l"):match("^%d+")
  stat:close()
  local inodes = {}
  local p = assert(io.popen("find /proc/" .. pid .. "/fd -lname 'socket:*' -printf '%l\\n' 2>/dev/null"))
  for link in p:lines() do inodes[link:match("%d+")] = true end
  p:close()
  return inodes
end

-- The TCP connections of this process to 127.0.0.1:port open now (connecting or established,
-- not closing): the client's. /proc/net/tcp is read in pages while the machine's other
-- sockets come and go, so one reading can list a socket twice or miss one: each is counted
-- once by its inode, and the count is taken when two readings in a row agree.
local function connections(port)
  local hex, own = string.format("%04X", port), own_sockets()
  local function read()
    local seen, n = {}, 0
    for line in io.lines("/proc/net/tcp") do
      local rem, st, inode = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) (%x+) %S+ %S+ %S+ +%d+ +%d+ +(%d+)")
      if rem == hex and (st == "01" or st == "02") and own[inode] and not seen[inode] then
        seen[inode], n = true, n + 1
      end
    end
    return n
  end
  local n = read()
  for _ = 1, 10 do
    local again = read()
    if again == n then break end
    n = again
  end
  return n
end

describe("connection opens", function()
  local listener, port

  setup(function()
    listener = assert(socket.bind("127.0.0.1", 0, 64)) -- never accepts: nothing is answered
    port = select(2, listener:getsockname())
  end)
  teardown(function() listener:close() end)

  local function spread(scheme, tasks)
    local c = faceswap.new { token = TOKEN, base_url = scheme .. "://127.0.0.1:" .. port,
                             retry = false, timeout = 600, connect_timeout = 600 }
    local started = {}
    -- polls: they take no slot of an account (headshots would, three at a time: lua/faceswap/channel.lua)
    for i = 1, tasks do started[i] = c:spawn(function() return c:job("spread" .. i) end) end
    local seen = {}
    for step = 1, 6 do
      c:step(0)
      seen[step] = connections(port)
      if step == 1 then assert.equal(0, c:next_wakeup()) end -- held transfers: step again soon
    end
    c:close()
    for i = 1, tasks do
      local job, err = started[i]:result()
      assert.is_nil(job)
      assert.same({ "cancelled", "client closed" }, { err.kind, err.error })
    end
    return seen
  end

  it("plain http: four new connections a step(0), in the order the tasks started", function()
    assert.same({ 4, 8, 10, 10, 10, 10 }, spread("http", 10))
  end)

  it("https: one new connection at a time, the next two steps and 5 ms on when no handshake ends", function()
    local c = faceswap.new { token = TOKEN, base_url = "https://127.0.0.1:" .. port,
                             retry = false, timeout = 600, connect_timeout = 600 }
    local started = {}
    for i = 1, 4 do started[i] = c:spawn(function() return c:job("spread" .. i) end) end
    -- seen[k]: connections after step k; before[k], after[k]: the clock around it
    local seen, before, after, wakeup = {}, {}, {}, nil
    local deadline = socket.gettime() + 30
    repeat
      local k = #seen + 1
      before[k] = socket.gettime()
      c:step(0)
      after[k] = socket.gettime()
      seen[k] = connections(port)
      if k == 2 then wakeup = c:next_wakeup() end
    until seen[k] == 4 or after[k] > deadline
    c:close()
    for i = 1, 4 do
      local job, err = started[i]:result()
      assert.is_nil(job)
      assert.same({ "cancelled", "client closed" }, { err.kind, err.error })
    end
    assert.same({ 1, 1 }, { seen[1], seen[2] })  -- the second waits two steps at least
    assert.equal(4, seen[#seen])
    -- the client asks to be stepped again within the wait, not at libcurl's 600 s timeout
    assert.is_true(wakeup >= 0 and wakeup <= 0.005, tostring(wakeup))
    local joined = { 1 }                           -- the step where connection n appeared
    for k = 2, #seen do
      assert.is_true(seen[k] - seen[k - 1] <= 1, "two joined in step " .. k)
      if seen[k] > seen[k - 1] then joined[seen[k]] = k end
    end
    for n = 2, 4 do                                -- 5 ms at least after the one before
      assert.is_true(joined[n] - joined[n - 1] >= 2, "connection " .. n)
      assert.is_true(after[joined[n]] - before[joined[n - 1]] >= 0.005, "connection " .. n)
    end
  end)

  describe("against the simulator", function()
    local s
    setup(function() s = sim.start { token = TOKEN, job_seconds = 600 } end)
    teardown(function() s:stop() end)

    it("every held transfer runs and gets its own answer; a held one cancelled sends nothing", function()
      local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
      local tasks = {}
      for i = 1, 12 do tasks[i] = c:spawn(function() return c:headshot("held " .. i) end) end
      c:step(0)                                      -- four joined, eight held
      assert.is_true(tasks[12]:cancel())
      while c:step(0) > 0 do end
      for i = 1, 11 do
        local job, err = tasks[i]:result()
        assert.is_nil(err and tostring(err))
        assert.same({ "started", "held " .. i }, { job.status, job.prompt })
      end
      local _, err = tasks[12]:result()
      assert.same({ "cancelled", "task cancelled", false }, { err.kind, err.error, err.sent })
      assert.equal(11, #s:requests())
      c:close()
    end)
  end)
end)
