-- The Redis coordinator's faults, each against a real redis-server the spec starts
-- (spec/support/redis.lua) and the simulator: Redis unreachable at new, lost mid-use and back,
-- restarted empty, the slots of a killed process, and a client used on both sides of fork().
local faceswap = require "faceswap"
local sim = require "spec.support.sim"
local redis = require "spec.support.redis"
local shell = require "spec.support.shell"
local compat = require "spec.support.compat"

local TOKEN = "test-token"
local CH = "1100000000000000001"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 60 }
local ROOT = shell.capture("pwd"):gsub("%s+$", "")

describe("the Redis coordinator's faults", function()
  local s

  setup(function() s = sim.start { job_seconds = 0.3, token = TOKEN, channels = { CH } } end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    s:config { max_running = 3, job_seconds = 0.3 }
  end)

  local function posts()
    local count = 0
    for _, r in ipairs(s:requests()) do
      if r.method == "POST" and r.path == "/headshot" then count = count + 1 end
    end
    return count
  end

  it("says at new that Redis cannot be reached, naming the URL", function()
    local url = require("spec.support.fixture").refused_url():gsub("^http", "redis") .. "/0"
    assert.has_error(function()
      faceswap.new { token = TOKEN, base_url = s.base_url, coordinator = url }
    end, "bad argument #1 to 'new' (option 'coordinator': cannot reach Redis at " .. url ..
      ": Connection refused)")
    assert.has_error(function()
      faceswap.new { token = TOKEN, base_url = s.base_url, coordinator = "redis://127.0.0.1:99999/0" }
    end, "bad argument #1 to 'new' (option 'coordinator': bad Redis URL " ..
      "\"redis://127.0.0.1:99999/0\": the port must be from 1 to 65535)")
  end)

  it("sends no POST while Redis is away, polls the jobs in flight, and goes on once it is back", function()
    local server = redis.start { persist = true }
    finally(function() server:close() end)
    local lines = {}
    local client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH,
      coordinator = server.url, lease = 5, log = function(level, message, what)
        if what == "coordinator" then lines[#lines + 1] = level .. ": " .. message end
      end }
    s:config { job_seconds = 1.5 }
    local jobs = {}
    for i = 1, 3 do
      jobs[i] = client:spawn(function() return client:headshot("before " .. i, { wait = FAST }) end)
    end
    while posts() < 3 do client:step(0.05) end
    server:stop { save = true }
    local late = client:spawn(function() return client:headshot("late", { wait = FAST }) end)
    while not (jobs[1]:done() and jobs[2]:done() and jobs[3]:done()) do client:step(0.1) end
    for i = 1, 3 do
      local job, err = jobs[i]:result()
      assert.is_nil(err)
      assert.equal("completed", job.status)
    end
    -- a few more turns of the loop: the late headshot still waits for a slot
    local until_ = faceswap.now() + 1
    while faceswap.now() < until_ do client:step(0.1) end
    assert.equal(3, posts())
    assert.is_false(late:done())
    -- lost as refused, or (a command in flight as it stopped, on a loaded machine) unanswered
    local lost = {
      ["warn: coordinator " .. server.url ..
        ": Connection refused; no slot is taken until Redis answers, next try in N s"] = true,
      ["warn: coordinator " .. server.url ..
        ": no answer from Redis in N s; no slot is taken until Redis answers, next try in N s"] = true,
    }
    local seen = false
    for _, line in ipairs(lines) do
      if lost[line:gsub("[%d.]+ s", "N s")] then seen = true end
    end
    assert.is_true(seen, table.concat(lines, "\n"))

    server:start() -- back, with what it held
    while not late:done() do client:step(0.1) end
    local job, err = late:result()
    assert.is_nil(err)
    assert.equal("completed", job.status)
    assert.equal(4, posts())
    assert.equal("info: coordinator " .. server.url .. ": Redis answers again", lines[#lines])
    client:close()
  end)

  it("counts a Redis that stops answering as lost after the URL's timeout, and goes on once it answers", function()
    local server = redis.start()
    finally(function() server:close() end)
    local url = server.url .. "?timeout=0.5"
    local lines = {}
    local c = require("faceswap.coordinator.redis").new(url, { lease = 60,
      log = function(level, message) lines[#lines + 1] = level .. ": " .. message end })
    assert.is_string(c:acquire("stopped", "h", 3))
    os.execute("kill -STOP " .. server.pid)
    local none, why, retry_in, err = c:acquire("stopped", "h", 3)
    os.execute("kill -CONT " .. server.pid)
    assert.same({ nil, "unavailable", "no answer from Redis in 0.5 s" }, { none, why, err })
    assert.is_true(retry_in > 0 and retry_in <= 0.25, tostring(retry_in))
    assert.same({ "warn: coordinator " .. url .. ": no answer from Redis in 0.5 s; no slot is " ..
      "taken until Redis answers, next try in 0.25 s" }, lines)
    local lease
    repeat
      lease = c:acquire("stopped", "h", 3)
      if not lease then faceswap.sleep(0.05) end
    until lease
    assert.equal("info: coordinator " .. url .. ": Redis answers again", lines[#lines])
    -- the command that got no answer may have run: at most that one slot more, until its lease
    local running = c:running("stopped")
    assert.is_true(running == 2 or running == 3, tostring(running))
    c:close()
  end)

  it("stops with a clear error when Redis restarted empty, sending nothing", function()
    local server = redis.start()
    finally(function() server:close() end)
    local client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH,
      coordinator = server.url, log = false }
    assert.equal("completed", client:headshot("before", { wait = FAST }).status)
    server:stop()
    server:start() -- empty: the epoch is gone
    local job, err = client:headshot("after", { wait = FAST })
    assert.is_nil(job)
    assert.same({ kind = "transport", sent = false, retryable = false,
      error = "Redis at " .. server.url .. " lost the coordinator's state (its key " ..
        "faceswap:epoch is gone: Redis restarted empty, or was flushed); this client sends " ..
        "no more commands: make a new one" },
      { kind = err.kind, sent = err.sent, retryable = err.retryable, error = err.error })
    assert.equal(1, posts())
    client:close()
    -- a client made now starts afresh, with an epoch of its own
    local fresh = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH,
      coordinator = server.url, log = false }
    assert.equal("completed", fresh:headshot("fresh", { wait = FAST }).status)
    assert.equal(2, posts())
    fresh:close()
  end)

  it("gives a killed process's slots back once its lease ends, on Redis's clock", function()
    local server = redis.start()
    finally(function() server:close() end)
    local pipe = assert(io.popen(("sh -c %s"):format(shell.quote(
      ("lua5.4 %s/spec/support/redis_child.lua %s hold %s 2 killed 3 & echo $!; wait")
        :format(shell.quote(ROOT), shell.quote(ROOT), shell.quote(server.url))))))
    local pid = tonumber(pipe:read("*l"))
    local ready = pipe:read("*l") or ""
    local before, after = tonumber(ready:match("^ready (%S+)")), tonumber(ready:match(" (%S+)$"))
    assert.is_number(before)
    assert.is_number(after)
    os.execute("kill -9 " .. pid)
    pipe:close()
    local c = require("faceswap.coordinator.redis").new(server.url, { lease = 60 })
    local none, why, retry_in = c:acquire("killed", "me", 3)
    assert.same({ nil, "full" }, { none, why })
    assert.is_true(retry_in > 0 and retry_in <= 2, tostring(retry_in))
    local got
    repeat
      got = c:acquire("killed", "me", 3)
      if not got then faceswap.sleep(0.05) end
    until got
    assert.is_true(c:now() >= before + 2, "a slot came back before its lease ended")
    -- (the child's three were taken one after another: on a loaded machine their leases end
    -- apart; once the last has ended, only ours runs)
    while c:now() < after + 2 do faceswap.sleep(0.05) end
    assert.equal(1, c:running("killed"))
    c:close()
  end)

  it("lets parent and child of fork() both use the coordinator, each on a connection of its own", function()
    local version = compat.build:match("^build/(.*)$")
    local so = compat.build .. "/spec/forkhelp.so"
    assert(compat.execute("make --no-print-directory -s LUA_VERSION=" .. version .. " " .. so ..
      " >/dev/null"), "cannot build " .. so)
    local fh = assert(package.loadlib(so, "luaopen_forkhelp"))()
    local server = redis.start()
    finally(function() server:close() end)
    local client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH,
      coordinator = server.url, log = false }
    local c = client._coordinator
    assert.equal(0, c:running("forked")) -- connected before the fork
    local pid = fh.fork()
    if pid == 0 then
      local ok, good = pcall(function()
        for _ = 1, 20 do
          local lease = c:acquire("forked", "child", 100)
          if not (lease and c:release("forked", lease)) then return false end
        end
        return client:headshot("child", { wait = FAST }).status == "completed"
      end)
      fh.exit(ok and good and 0 or 1)
    end
    local wrong = {}
    for i = 1, 20 do
      local lease = c:acquire("forked", "parent", 100)
      if not (lease and c:release("forked", lease)) then wrong[#wrong + 1] = i end
    end
    assert.same({}, wrong)
    assert.equal(0, fh.wait(pid))
    assert.equal("completed", client:headshot("parent", { wait = FAST }).status)
    assert.equal(0, c:running("forked"))
    assert.equal("40", server:cli("HGET", "faceswap:{forked}:state", "next")) -- 20 leases each
    client:close()
  end)
end)
