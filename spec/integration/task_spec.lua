-- Tasks: client calls inside a task yield to the client's step(), many transfers share the
-- client's multi handle, step(0) never blocks, errors stay inside their task, and a client
-- that goes away takes its transfers with it.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"

local compat = require "spec.support.compat"

describe("tasks", function()
  local fx = fixture.simulator { job_seconds = 0.2, config = { latency = 0 }, client = { retry = false } }

  it("runs client calls inside tasks and returns what the function returned", function()
    local t1 = fx.client:spawn(function(prompt)
      local job = assert(fx.client:headshot(prompt))
      return fx.client:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 5 })
    end, "first")
    local t2 = fx.client:spawn(function(a, b) return a + b, "two values", nil end, 1, 2)
    assert.equal("task", faceswap.type(t1))
    assert.equal("faceswap.task: running", tostring(t1))
    assert.is_false(t1:done())
    fx.client:run()
    assert.is_true(t1:done())
    assert.equal("faceswap.task: done", tostring(t1))
    local job = t1:result()
    assert.equal("completed", job.status)
    assert.equal("first", job.prompt)
    assert.same({ n = 3, 3, "two values", nil }, compat.pack(t2:result()))
  end)

  it("has transfers of many tasks in flight at once", function()
    fx.sim:config { latency = 0.5 }
    local tasks = {}
    -- three headshots (an account's queue gives three slots until a 429 teaches otherwise)
    -- and a call that takes no slot
    for i = 1, 3 do tasks[i] = fx.client:spawn(function() return fx.client:headshot("p" .. i) end) end
    tasks[4] = fx.client:spawn(function() return fx.client:jobs() end)
    -- all four requests reach the server while none has been answered
    while #fx.sim:requests() < 4 do
      assert.equal(4, fx.client:step(0.05))
    end
    for i = 1, 4 do assert.is_false(tasks[i]:done()) end
    fx.client:run()
    for i = 1, 3 do assert.equal("p" .. i, tasks[i]:result().prompt) end
    assert.equal("table", type(tasks[4]:result()))
    assert.equal(4, fx.sim:stats().connections)
  end)

  it("step(0) returns at once while transfers and sleeps are pending #timing", function()
    fx.sim:config { latency = 3 }
    local slept = fx.client:spawn(function() faceswap.sleep(3) return "awake" end)
    local asked = fx.client:spawn(function() return fx.client:job("0123") end)
    local t0 = faceswap.now()
    for _ = 1, 100 do assert.equal(2, fx.client:step(0)) end
    assert.is_true(faceswap.now() - t0 < 1) -- a blocking step would take 3 s
    assert.is_false(slept:done())
    assert.is_false(asked:done())
  end)

  it("step(timeout) waits at most that long, and returns the tasks still running #timing", function()
    local t = fx.client:spawn(function() faceswap.sleep(0.3) return "late" end)
    assert.equal(1, fx.client:step(0)) -- started; now asleep
    local t0 = faceswap.now()
    assert.equal(1, fx.client:step(0.05))
    assert.is_true(faceswap.now() - t0 < 0.25)
    assert.is_false(t:done())
    fx.client:run()
    assert.equal("late", t:result())
  end)

  it("faceswap.sleep inside a task lets the other tasks run", function()
    local order = {}
    fx.client:spawn(function() faceswap.sleep(0.2) order[#order + 1] = "slow" end)
    fx.client:spawn(function() faceswap.sleep(0.05) order[#order + 1] = "fast" end)
    fx.client:spawn(function() order[#order + 1] = "none" end)
    fx.client:run()
    assert.same({ "none", "fast", "slow" }, order)
  end)

  it("resumes a task that yields on its own on the next step", function()
    local steps = {}
    local t = fx.client:spawn(function()
      for i = 1, 3 do
        steps[#steps + 1] = i
        coroutine.yield()
      end
      return "done"
    end)
    assert.equal(1, fx.client:step(0))
    assert.same({ 1 }, steps)
    assert.equal(1, fx.client:step(0))
    assert.same({ 1, 2 }, steps)
    fx.client:run()
    assert.equal("done", t:result())
  end)

  it("catches what a task raises, and goes on with the others", function()
    local bad = fx.client:spawn(function() error("boom") end)
    local obj = setmetatable({}, { __tostring = function() return "custom" end })
    local raised = fx.client:spawn(function() error(obj) end)
    local good = fx.client:spawn(function() return fx.client:job("nope") end)
    fx.client:run()
    local v, msg = bad:result()
    assert.is_nil(v)
    assert.matches("^spec/integration/task_spec%.lua:%d+: boom\nstack traceback:", msg)
    assert.same({ nil, obj }, { raised:result() })
    local _, e = good:result()
    assert.equal("not_found (404): Unable to locate job nope", tostring(e))
  end)

  it("blocks outside tasks, while tasks exist, and they still finish", function()
    fx.sim:config { latency = 0.1 }
    local t = fx.client:spawn(function() return fx.client:job("abc") end)
    assert.equal(1, fx.client:step(0)) -- its request is on the way
    local job = assert(fx.client:headshot("blocking")) -- drives the multi handle meanwhile
    assert.equal("blocking", job.prompt)
    fx.client:run()
    local _, e = t:result()
    assert.equal("not_found", e.kind)
  end)

  it("raises on misuse", function()
    assert.has_error(function() fx.client:spawn("f") end,
      "bad argument #1 to 'spawn' (function expected, got string)")
    assert.has_error(function() fx.client:step(-1) end,
      "bad argument #1 to 'step' (a number of seconds from 0 expected, got -1)")
    assert.has_error(function() fx.client.step(1) end,
      "bad argument #1 to 'step' (faceswap.client expected, got number; call it as client:step(...))")
    local t = fx.client:spawn(function() return 1 end)
    assert.has_error(function() t:result() end,
      "bad argument #1 to 'result' (the task has not finished; step() or run() its client)")
    assert.has_error(function() t.done() end,
      "bad argument #1 to 'done' (faceswap.task expected, got nil; call it as task:done())")
    local inner = fx.client:spawn(function() fx.client:step(0) end)
    local runner = fx.client:spawn(function() fx.client:run() end)
    fx.client:run()
    assert.matches("bad argument #1 to 'step' %(called from inside one of its tasks%)",
      select(2, inner:result()))
    assert.matches("bad argument #1 to 'run' %(called from inside one of its tasks%)",
      select(2, runner:result()))
  end)

  it("a closed client drops its transfers and refuses to step", function()
    fx.sim:config { latency = 5 }
    for i = 1, 3 do fx.client:spawn(function() return fx.client:headshot("p" .. i) end) end
    while #fx.sim:requests() < 3 do fx.client:step(0.05) end
    -- (the simulator may still be noticing connections an earlier spec closed)
    assert(sim.wait_for(function() return fx.sim:stats().open == 3 end, 30), fx.sim:stats().open)
    fx.client:close()
    assert(sim.wait_for(function() return fx.sim:stats().open == 0 end, 30))
    assert.has_error(function() fx.client:step(0) end, "attempt to use a closed faceswap client")
  end)

  it("a collected client cancels its transfers cleanly", function()
    fx.sim:config { latency = 5 }
    do
      local c = fx.new { retry = false }
      for i = 1, 3 do c:spawn(function() return c:headshot("p" .. i) end) end
      while #fx.sim:requests() < 3 do c:step(0.05) end
    end
    assert(sim.wait_for(function() return fx.sim:stats().open == 3 end, 30), fx.sim:stats().open)
    collectgarbage()
    collectgarbage()
    assert(sim.wait_for(function() return fx.sim:stats().open == 0 end, 30))
  end)
end)
