-- A channel's authority (lua/faceswap/channel.lua) against the simulator: the exclusive hold of
-- a blocking command is released whatever the call does, a call that cannot yield waits for a
-- task's hold and returns its answer, and a batch waits out a hold instead of meeting its 429.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }

describe("a channel's hold", function()
  local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1, CH2 }, config = { blocking_seconds = 0.2 },
                                 client = { retry = false, channel = CH1 } }
  local sent = fx.sent

  -- Steps until `t` is done; a bound only so that a defect fails instead of hanging the suite.
  local function finish(c, t)
    local deadline = faceswap.now() + 60
    while not t:done() and faceswap.now() < deadline do c:step(0.1) end
    assert.is_true(t:done(), "the task never finished")
  end

  describe("is released whatever the call does", function()
    -- fx.client made again with a log sink that raises at the first answer only.
    local function break_first_answer()
      local broken = true
      fx.client:close()
      fx.client = fx.new { retry = false, channel = CH1,
        log = function(_, _, what)
          if broken and what == "answer" then
            broken = false
            error("log sink failed", 0)
          end
        end }
    end

    it("a blocking command that raised outside a task leaves the channel free", function()
      break_first_answer()
      assert.has_error(function() fx.client:listid() end, "log sink failed")
      local t = fx.client:spawn(function() return fx.client:listid() end)
      finish(fx.client, t)
      local job, err = t:result()
      assert.is_nil(err)
      assert.equal("completed", job.status)
      assert.equal(2, #sent("/listid"))
      -- and outside a task too
      assert.equal("completed", assert(fx.client:listid()).status)
    end)

    it("a task whose blocking command raised hands the channel on at once", function()
      break_first_answer()
      local a = fx.client:spawn(function() return fx.client:listid() end)
      local b = fx.client:spawn(function() return fx.client:listid() end)
      finish(fx.client, b)
      local none, why = a:result()
      assert.is_nil(none)
      assert.equal("log sink failed", why:match("^[^\n]*")) -- (and the task's traceback)
      assert.equal("completed", b:result().status)
    end)
  end)

  describe("a blocking command where its task cannot yield", function()
    it("waits for the task holding the channel and returns its answer", function()
      local holder = fx.client:spawn(function() return fx.client:listid() end)
      local t = fx.client:spawn(function()
        local got
        -- a gsub replacement function: a C call the task cannot yield across
        ("x"):gsub("x", function() got = fx.client:listid() end)
        return got
      end)
      fx.client:run()
      assert.equal("completed", holder:result().status)
      local job, err = t:result()
      assert.is_nil(err)
      assert.same({ "faceswap-listid", "completed", CH1 }, { job.verb, job.status, job.channel })
      assert.equal(0, fx.sim:stats().rejected)
      assert.equal(2, #sent("/listid"))
    end)

    it("runs the task the channel was just handed to, queued in the same pass", function()
      -- a holds the channel, b waits for it; c yields every pass until a is done, then asks
      -- from inside a gsub callback: b, woken by a's release, is queued after c in one pass
      local a_done = false
      local a = fx.client:spawn(function()
        local job = fx.client:listid()
        a_done = true
        return job
      end)
      local b = fx.client:spawn(function() return fx.client:listid() end)
      local c = fx.client:spawn(function()
        while not a_done do coroutine.yield() end
        local got
        ("x"):gsub("x", function() got = fx.client:listid() end)
        return got
      end)
      fx.client:run()
      fx.all_completed({ a, b, c }, "/listid")
    end)
  end)

  describe("in a batch", function()
    it("waits out a blocking command on its channel instead of meeting its 429", function()
      local slept = {}
      fx.client:close()
      fx.client = fx.new { channel = CH1, retry = {
        sleep = function(d) slept[#slept + 1] = d end, random = function() return 0.5 end } }
      fx.sim:config { blocking_seconds = 0.5 }
      local saved = fx.client:spawn(function() return fx.client:listid() end)
      fx.client:step(0) -- the task holds CH1 and has sent its request
      local results = fx.client:batch({ "one", "two", "three" }, { wait = FAST })
      finish(fx.client, saved)
      assert.equal("completed", saved:result().status)
      for i = 1, 3 do assert.equal("completed", results[i].status) end
      assert.equal(0, fx.sim:stats().rejected)
      assert.same({}, slept)
    end)
  end)
end)
