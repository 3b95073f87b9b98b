-- A __gc finalizer that closes the client (the "guard object" pattern) while one of the
-- client's own calls is under way (docs/lifecycle.md, "Closing from a finalizer"). The
-- collector runs all the time here: a step every 2^FACESWAP_GC_STEP bytes allocated (1 when
-- unset; `make test-asan` sets it for its interpreter too) and each cycle at once after the
-- last. A guard closes the client only when its finalizer runs inside the place a test aims
-- at (a frame of a given function on the stack); run anywhere else it leaves a new guard
-- behind, so the collector tries again. Run under valgrind and ASan, it shows that nothing the
-- close frees is read afterwards.
local faceswap = require "faceswap"
local core = require "faceswap.core"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"

local SPEC = "spec/integration/finalizer_spec.lua"
local gc_guard = require "spec.support.gc_guard"
local MAX_TRIES, collect_all_the_time, guard, jitter = gc_guard.MAX_TRIES,
  gc_guard.collect_all_the_time, gc_guard.guard, gc_guard.jitter

local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

local function closer(client)
  return function() client:close() end
end

local function transport_method(client, name)
  return getmetatable(client._transport).__index[name]
end

-- What every call under way when the client closed must give: its answer, or this.
local function assert_closed_error(err, sent)
  assert.equal("cancelled", err.kind)
  assert.equal("cancelled: client closed", tostring(err))
  assert.is_false(err.retryable)
  if sent ~= nil then assert.equal(sent, err.sent) end
end

local function assert_later_calls_raise(client)
  local line = next_line()
  local ok, msg = pcall(function() client:headshot("after") end)
  assert.is_false(ok)
  assert.equal(SPEC .. ":" .. line .. ": attempt to use a closed faceswap client", msg)
  line = next_line()
  ok, msg = pcall(function() client:step(0) end)
  assert.is_false(ok)
  assert.equal(SPEC .. ":" .. line .. ": attempt to use a closed faceswap client", msg)
end

describe("a finalizer that closes the client #gc", function()
  local restore, hit
  local fx = fixture.simulator { job_seconds = 30, config = { latency = 0, credits_total = 1e9 },
    after = function()
      hit.off = true -- a guard still pending does nothing more
      restore()
    end }
  before_each(function()
    hit = {}
    restore = collect_all_the_time()
  end)

  -- after the close: no connection is left open
  local function connections_closed()
    assert(sim.wait_for(function() return fx.sim:stats().open == 0 end, 30))
  end

  describe("during a blocking call", function()
    it("inside perform, as it pushes the answer: the call returns its answer", function()
      guard(closer(fx.client), { [transport_method(fx.client, "perform")] = true }, hit)
      local i, job = 0, nil
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        job = assert(fx.client:headshot("blocking " .. i))
      end
      assert(hit.co, "the guard never ran inside perform")
      -- the answer the closing finalizer interrupted, whole
      assert.equal("blocking " .. i, job.prompt)
      assert.equal("started", job.status)
      assert.equal(i, fx.sim:count("POST"))
      assert_later_calls_raise(fx.client)
      connections_closed()
    end)

    it("before anything is sent (building the request): nil and 'client closed', nothing sent", function()
      -- (client:headshot builds its request with its row, as every command method does)
      guard(closer(fx.client), { [core.build_command] = true }, hit)
      local i, job, err = 0, nil, nil
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        job, err = fx.client:headshot("early " .. i)
        if not hit.co then assert(job, err) end
      end
      assert(hit.co, "the guard never ran inside build_command")
      assert.is_nil(job)
      assert_closed_error(err, false)
      assert.equal(i - 1, fx.sim:count("POST")) -- the last one never left
      assert_later_calls_raise(fx.client)
      connections_closed()
    end)

    it("anywhere inside the call: its answer or 'client closed', or, entering, the closed raise", function()
      guard(closer(fx.client), { [fx.client.headshot] = true }, hit)
      local i, ok, job, err = 0, true, nil, nil
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        -- called by pcall itself: a raise at the caller's line carries no position then
        ok, job, err = pcall(fx.client.headshot, fx.client, "anywhere " .. i)
        if not hit.co then assert(ok and job, err) end
      end
      assert(hit.co, "the guard never ran inside headshot")
      if not ok then
        -- the close came as the call was entered, before it checked its client (on 5.2 and
        -- 5.3 a call can step the collector): it raised as a later call would, sent nothing
        assert.equal("attempt to use a closed faceswap client", job)
        assert.equal(i - 1, fx.sim:count("POST"))
      elseif job then
        assert.equal("anywhere " .. i, job.prompt)
      else
        assert_closed_error(err)
      end
      assert_later_calls_raise(fx.client)
      connections_closed()
    end)
  end)

  -- Rounds of tasks: three headshots and a sleeper, run until the guard lands.
  local function rounds(targets)
    guard(closer(fx.client), targets, hit)
    local round, tasks, cos, sleeper = 0, nil, nil, nil
    while not hit.co and round < MAX_TRIES do
      round = round + 1
      jitter()
      tasks, cos = {}, {}
      for k = 1, 3 do
        local prompt = "round " .. round .. " task " .. k
        tasks[k] = fx.client:spawn(function()
          cos[k] = coroutine.running()
          return fx.client:headshot(prompt)
        end)
      end
      sleeper = fx.client:spawn(function() faceswap.sleep(3600) return "slept" end)
      -- until the headshots are done, or the client closed (step then returns, and the
      -- next one would raise)
      while not hit.co and not (tasks[1]:done() and tasks[2]:done() and tasks[3]:done()) do
        fx.client:step(1)
      end
      if not hit.co then sleeper:cancel() end
    end
    assert(hit.co, "the guard never ran where it was aimed")
    return round, tasks, cos, sleeper
  end

  -- Every task ended: with its answer, or 'client closed'; the sleeper with 'client closed'.
  local function assert_tasks_ended(round, tasks, sleeper)
    local answered = 0
    for k = 1, 3 do
      assert.is_true(tasks[k]:done())
      local job, err = tasks[k]:result()
      if job then
        assert.equal("round " .. round .. " task " .. k, job.prompt)
        answered = answered + 1
      else
        assert_closed_error(err)
      end
    end
    local v, err = sleeper:result()
    assert.is_nil(v)
    assert_closed_error(err, false)
    return answered
  end

  describe("during a task's call", function()
    it("inside finish, as it pushes the answer: that task gets its answer", function()
      local round, tasks, cos, sleeper = rounds { [transport_method(fx.client, "finish")] = true }
      assert_tasks_ended(round, tasks, sleeper)
      local closing
      for k = 1, 3 do
        if cos[k] == hit.co then closing = k end
      end
      assert(closing, "the guard ran in none of the round's tasks")
      local job = tasks[closing]:result()
      assert.equal("round " .. round .. " task " .. closing, job.prompt)
      assert.equal("started", job.status)
      assert_later_calls_raise(fx.client)
      connections_closed()
    end)
  end)

  describe("during the multi step", function()
    it("in step's own code (polling, resuming, recording): step returns, every task has ended", function()
      local step = getmetatable(fx.client._sched).step
      local round, tasks, _, sleeper = rounds { [step] = true }
      assert_tasks_ended(round, tasks, sleeper)
      assert.equal(0, fx.client._sched.count)
      assert_later_calls_raise(fx.client)
      connections_closed()
    end)
  end)

  describe("while a request is built", function()
    it("a param dropped from the table (and collected) is still sent as it was", function()
      local text = ("a long prompt "):rep(200) .. "end"
      local params, built = {}, nil
      guard(function()
        params.prompt = nil
        collectgarbage() -- Lua 5.4 refuses inside a finalizer; 5.1 to 5.3 collect the value
      end, { [core.build_headshot] = true }, hit)
      local i = 0
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        params.prompt = text .. i -- a new string each time: the table its only reference
        local _, _, _, body = core.build_headshot(params)
        built = body
      end
      assert(hit.co, "the guard never ran inside build_headshot")
      assert.is_nil(params.prompt)
      assert.truthy(built:find("\r\n\r\n" .. text .. i .. "\r\n", 1, true))
    end)
  end)
end)
