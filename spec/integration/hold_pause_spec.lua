-- A blocking command (listid, saveid...) that meets its channel paused by Discord's retry_after
-- waits the pause out and then takes its hold in the coordinator like any other: it never runs
-- without it, so a job started while it runs waits for it instead of meeting the 429 of a
-- channel busy upstream. The same with a coordinator other processes share (Redis).
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local redis = require "spec.support.redis"

local CH1 = "1100000000000000001"

local function cases(name, coordinator)
  describe("a blocking command on a paused channel, " .. name, function()
    local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1 }, config = { blocking_seconds = 0.5 },
                                   client = { retry = false, channel = CH1 } }

    -- Steps until ok() holds; a bound only so that a defect fails instead of hanging the suite.
    local function until_(c, ok)
      local deadline = faceswap.now() + 60
      while not ok() and faceswap.now() < deadline do c:step(0.02) end
      return ok()
    end

    it("waits for the pause, holds the channel while it runs, and a job waits for it", function()
      fx.client:close()
      fx.client = fx.new { retry = false, channel = CH1, coordinator = coordinator() }
      local c = fx.client
      local coord, key = c._coordinator, c._channel_of(CH1).key
      coord:pause(key, coord:now() + 0.3)
      local listed = c:spawn(function() return c:listid() end)
      assert.is_true(until_(c, function() return #fx.sent("/listid") == 1 end), "listid never sent")
      assert.is_nil(coord:paused(key))
      assert.is_not_nil(coord:holder(key), "listid runs without the channel's hold")
      local started = c:spawn(function() return c:headshot("while listid runs") end)
      assert.is_true(until_(c, function() return listed:done() and started:done() end), "never finished")
      assert.equal("completed", assert(listed:result()).status)
      local job, err = started:result()
      assert.is_nil(err)
      assert.equal("started", job.status)
      assert.equal(0, fx.sim:stats().rejected)
      assert.is_nil(coord:holder(key))
    end)
  end)
end

redis.each_coordinator(cases)
