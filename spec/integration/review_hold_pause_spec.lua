-- Review of "a blocking command takes its hold once the pause ends" (channel.lua: ready,
-- ask_hold, hold_upstream, hold_taken): the hold a blocking command took must still be the
-- coordinator's when it is sent again after Discord's retry_after (its lease may have run out
-- meanwhile), and a command cancelled, refused (max_pause) or queued behind another while the
-- pause runs leaves no hold behind: a later command and the jobs still run. In process and
-- through Redis.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local redis = require "spec.support.redis"

local CH1 = "1100000000000000001"

local function cases(name, coordinator)
  describe("a blocking command and a pause, " .. name, function()
    local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1 }, config = { blocking_seconds = 0.5 },
                                   client = false }
    local c
    after_each(function() if c then c:close() c = nil end end)

    -- Steps c until ok() holds, 60 s at most: a defect fails instead of hanging the suite.
    local function until_(ok)
      local give_up = faceswap.now() + 60
      repeat c:step(0.02) until ok() or faceswap.now() > give_up
      return ok()
    end

    local function client(over)
      local o = { retry = false, channel = CH1, coordinator = coordinator(), lease = 1 }
      for k, v in pairs(over or {}) do o[k] = v end
      c = fx.new(o)
      return c, c._coordinator, c._channel_of(CH1).key
    end

    it("a hold whose lease ran out during the pause is taken again before the command goes again", function()
      local _, coord, key = client { retry = fx.retry { attempts = 3 } }
      fx.sim:script { action = "discord_429", retry_after = 1.5, match = "/listid" }
      local listed = c:spawn(function() return c:listid() end)
      assert.is_true(until_(function() return coord:paused(key) ~= nil end), "never paused")
      local started = c:spawn(function() return c:headshot("during the pause") end)
      assert.is_true(until_(function() return #fx.sent("/listid") == 2 end), "listid never sent again")
      assert.is_not_nil(coord:holder(key), "listid sent again without the channel's hold")
      assert.is_true(until_(function() return listed:done() and started:done() end), "never finished")
      assert.equal("completed", assert(listed:result()).status)
      assert.equal("started", assert(started:result()).status)
      assert.equal(0, fx.sim:stats().rejected)
      assert.is_nil(coord:holder(key))
    end)

    it("a command cancelled while it waits out the pause leaves no hold: the next one and a job run", function()
      local _, coord, key = client()
      coord:pause(key, coord:now() + 0.4)
      local first = c:spawn(function() return c:listid() end)
      c:step(0.05)
      assert.is_true(first:cancel())
      assert.is_true(until_(function() return first:done() end))
      local second = c:spawn(function() return c:listid() end)
      local job = c:spawn(function() return c:headshot("after the cancelled one") end)
      assert.is_true(until_(function() return second:done() and job:done() end), "a later command waits forever")
      assert.equal(1, #fx.sent("/listid"))
      assert.equal("completed", assert(second:result()).status)
      assert.equal("started", assert(job:result()).status)
      assert.equal(0, fx.sim:stats().rejected)
      assert.is_nil(coord:holder(key))
    end)

    it("a pause longer than max_retry_after: rate_limited at once, unsent, no hold kept", function()
      local _, coord, key = client { retry = fx.retry { max_retry_after = 5 } }
      coord:pause(key, coord:now() + 30)
      local _, err = c:listid()
      assert.same({ "rate_limited", false, true }, { err.kind, err.sent, err.retry_after > 5 })
      assert.equal(0, #fx.sent("/listid"))
      assert.is_nil(coord:holder(key))
      assert.is_nil(c._channel_of(CH1).holder)
    end)

    it("two commands and jobs queued on a paused channel: each command runs alone, none leaks its hold", function()
      local _, coord, key = client()
      coord:pause(key, coord:now() + 0.3)
      local t = {
        c:spawn(function() return c:listid() end),
        c:spawn(function() return c:headshot("one") end),
        c:spawn(function() return c:listid() end),
        c:spawn(function() return c:headshot("two") end),
      }
      assert.is_true(until_(function()
        for k = 1, #t do if not t[k]:done() then return false end end
        return true
      end), "never finished")
      for k = 1, #t do
        local r, err = t[k]:result()
        assert.is_nil(err and tostring(err))
        assert.is_true(r.status == "completed" or r.status == "started", r.status)
      end
      assert.equal(2, #fx.sent("/listid"))
      assert.equal(0, fx.sim:stats().rejected)
      assert.is_nil(coord:holder(key))
      -- and a later blocking call outside every task takes the channel at once
      assert.equal("completed", assert(c:listid()).status)
    end)
  end)
end

-- the in-process coordinator, then Redis (#external: a redis-server of the spec's own)
redis.each_coordinator(cases)
