-- client:fd() and client:next_wakeup(): a host with its own event loop (here libuv, through
-- luv) watches the descriptor, arms one timer from next_wakeup(), and calls step(0) when either
-- fires. The specs count those calls: they follow the events (requests, sleeps), not the time
-- the work takes, and the work finishes with no polling timer.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local uv = require "luv"

local WATCHDOG_MS = 30000 -- a wakeup missed: nothing would ever call step again

-- The host: runs the loop until the client has no task left. Returns the number of step(0)
-- calls and whether the watchdog had to end the loop.
local function drive(client)
  local steps, missed = 0, false
  local poll, timer, watchdog = uv.new_poll(client:fd()), uv.new_timer(), uv.new_timer()
  local tick
  local function finish()
    poll:stop()
    timer:stop()
    watchdog:stop()
  end
  local function arm()
    timer:stop()
    local due = client:next_wakeup()
    if due then
      uv.update_time() -- libuv's clock is read once per loop turn: let the timer start from now
      timer:start(math.ceil(due * 1000) + 1, 0, tick) -- +1: milliseconds never end early
    end
  end
  tick = function()
    steps = steps + 1
    watchdog:again()
    if client:step(0) == 0 then return finish() end
    arm()
  end
  poll:start("r", tick)
  watchdog:start(WATCHDOG_MS, WATCHDOG_MS, function()
    missed = true
    finish()
  end)
  arm()
  uv.run("default")
  poll:close()
  timer:close()
  watchdog:close()
  uv.run("nowait") -- lets the handles close
  return steps, missed
end

describe("client:fd() and client:next_wakeup()", function()
  local fx = fixture.simulator { job_seconds = 0.6 }

  it("fd() is the transport's epoll descriptor, the same from new to close", function()
    local fd = fx.client:fd()
    assert.equal("number", type(fd))
    assert.equal("anon_inode:[eventpoll]", uv.fs_readlink("/proc/self/fd/" .. fd))
    fx.client:spawn(function() return fx.client:headshot("one") end)
    fx.client:run()
    assert.equal(fd, fx.client:fd())
  end)

  it("next_wakeup() is nil with nothing pending, 0 with a task to run, a sleep's time left", function()
    assert.is_nil(fx.client:next_wakeup())
    fx.client:spawn(function() faceswap.sleep(5) end)
    assert.equal(0, fx.client:next_wakeup())
    assert.equal(1, fx.client:step(0))
    local due = fx.client:next_wakeup()
    assert.is_true(due > 4 and due <= 5, "due in " .. tostring(due))
  end)

  it("next_wakeup() follows libcurl's timer while a transfer runs", function()
    fx.sim:config { latency = 5 }
    local c = fx.new { timeout = 3, connect_timeout = 2 }
    c:spawn(function() return c:job("0123456789abcdef0123456789abcdef") end)
    assert.equal(1, c:step(0)) -- the task starts its transfer and yields
    local due = c:next_wakeup()
    assert.is_true(due >= 0 and due <= 3, "due in " .. tostring(due))
    c:close()
  end)

  -- n polls sent, each answered 2 s later: returns once the simulator has them all and their
  -- answers are in the socket buffers (`meanwhile` runs after the sending)
  local function answers_waiting(n, meanwhile)
    fx.sim:config { latency = 2 }
    for _ = 1, n do fx.client:spawn(function() return fx.client:job("0123456789abcdef0123456789abcdef") end) end
    assert(sim.wait_for(function()
      fx.client:step(0.01)
      return #fx.sim:requests() == n
    end, 60), "the simulator did not receive every request")
    local sent = faceswap.now()
    if meanwhile then meanwhile() end
    faceswap.sleep(math.max(0, sent + 3.5 - faceswap.now()))
  end

  it("next_wakeup() is 0 while answers wait that the last step could not take", function()
    -- an edge-triggered watch of fd() would not fire again for them: the timer must
    local n = 100
    answers_waiting(n, function()
      -- until libcurl's next timer is its connect timeout's (10 s), so none fires in the wait
      while (fx.client:next_wakeup() or 10) < 5 do fx.client:step(0.05) end
    end)
    local steps, left = 1, fx.client:step(0)
    while left > 0 and steps < 10 do
      assert.equal(0, fx.client:next_wakeup())
      left, steps = fx.client:step(0), steps + 1
    end
    assert.equal(0, left)
    assert.is_true(steps > 1, "one step took all " .. n .. " answers")
  end)

  it("step(0) reads at most 12 answers, the rest at the next steps", function()
    answers_waiting(30)
    local left = {}
    repeat
      left[#left + 1] = fx.client:step(0)
      if left[#left] > 0 then assert.equal(0, fx.client:next_wakeup()) end
    until left[#left] == 0 or #left == 10
    assert.same({ 18, 6, 0 }, left)
  end)

  it("an idle client's fd stays quiet when the server closes the kept-alive connections", function()
    fx.sim:config { keepalive_timeout = 0.3 }
    for _ = 1, 3 do fx.client:spawn(function() return fx.client:job("0123456789abcdef0123456789abcdef") end) end
    fx.client:run()
    assert.equal(3, fx.sim:stats().open)
    local wakes, poll, timer = 0, uv.new_poll(fx.client:fd()), uv.new_timer()
    poll:start("r", function()
      wakes = wakes + 1
      fx.client:step(0)
      if wakes == 20 then poll:stop() end -- a busy host: enough to fail
    end)
    -- the spec (not the host) looks every 0.2 s whether the server has closed them; then
    -- watches 0.5 s more
    local closed_at, started = nil, uv.now()
    timer:start(200, 200, function()
      if not closed_at and fx.sim:stats().open == 0 then closed_at = uv.now() end
      if (closed_at and uv.now() - closed_at >= 500) or uv.now() - started > 20000 then
        poll:stop()
        timer:stop()
      end
    end)
    uv.run("default")
    poll:close()
    timer:close()
    uv.run("nowait")
    assert.is_number(closed_at, "the server did not close its connections")
    assert.equal(0, wakes)
    assert.is_nil(fx.client:next_wakeup())
  end)

  it("a sleep woken early leaves no wakeup behind", function()
    local sleeper
    fx.client:spawn(function()
      sleeper = fx.client._sched:current()
      fx.client._sched:park(faceswap.now() + 60)
    end)
    fx.client:step(0)
    assert.is_true(fx.client:next_wakeup() > 59)
    fx.client._sched:wake(sleeper)
    assert.equal(0, fx.client:next_wakeup())
    assert.equal(0, fx.client:step(0))
    assert.is_nil(fx.client:next_wakeup())
  end)

  it("drives sleeping tasks with one step per wakeup", function()
    local woke = 0
    fx.client:spawn(function()
      for _ = 1, 3 do
        faceswap.sleep(0.2)
        woke = woke + 1
      end
    end)
    local steps, missed = drive(fx.client)
    assert.is_false(missed)
    assert.equal(3, woke)
    assert.equal(4, steps) -- the start, then one per sleep's end
  end)

  it("drives a whole batch with steps in proportion to its requests, not its duration", function()
    local results
    fx.client:spawn(function()
      results = fx.client:batch({ "a", "b", "c", "d", "e", "f" }, { concurrency = 3,
        wait = { interval = 0.25, max_interval = 0.25, timeout = 30 } })
    end)
    local steps, missed = drive(fx.client)
    assert.is_false(missed)
    assert.equal(6, #results)
    for i = 1, 6 do
      assert.equal("job", faceswap.type(results[i]))
      assert.equal("completed", results[i].status)
    end
    local requests = #fx.sim:requests()
    assert.equal(6, fx.sim:count("POST"))
    -- per request: the start (libcurl's timer), the socket turning writable and readable, and
    -- the task's sleep before its next poll. A 60 Hz poll would take ~60 steps a second.
    assert.is_true(steps <= 5 * requests, steps .. " steps for " .. requests .. " requests")
  end)

  it("are nil inside nginx, which drives the requests itself", function()
    local nginx = require "spec.support.nginx"
    local n = nginx.start { server = ([[
      location = /hooks {
        content_by_lua_block {
          local client = require("faceswap").new { token = "t", base_url = "@SIM@" }
          client:spawn(function() end)
          ngx.say(tostring(client:fd()), " ", tostring(client:next_wakeup()))
        }
      }]]):gsub("@SIM@", fx.base_url) }
    finally(function() n:stop() end)
    local status, body = nginx.request(n.url .. "/hooks")
    assert.equal(200, status, body .. n:log())
    assert.equal("nil nil\n", body)
  end)

  it("nil and misuse", function()
    assert.has_error(function() fx.client.fd() end,
      "bad argument #1 to 'fd' (faceswap.client expected, got nil; call it as client:fd(...))")
    assert.has_error(function() fx.client.next_wakeup(1) end,
      "bad argument #1 to 'next_wakeup' (faceswap.client expected, got number; call it as " ..
      "client:next_wakeup(...))")
    fx.client:close()
    assert.has_error(function() fx.client:fd() end, "attempt to use a closed faceswap client")
    assert.has_error(function() fx.client:next_wakeup() end, "attempt to use a closed faceswap client")
  end)
end)
