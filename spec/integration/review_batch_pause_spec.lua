-- Review of a batch on a channel Discord paused (retry_after) for longer than the retry
-- policy's max_retry_after. docs/fleet.md: "a call whose policy would not wait that long gets a
-- `rate_limited` error at once, unsent, saying how long is left", and docs/api.md: each item
-- "goes through its channel's authority, as every call does". An item with a channel of its own
-- got that error; one on the batch's shared channels (the client's default included) waited
-- the whole pause. And batch.lua's retry closure (`q.ch:delay`, `q` nil while no attempt got
-- a slot) meets the one retryable error an item's first attempt can get before any slot, with
-- a retry policy set: it must not raise. In process and through Redis.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local redis = require "spec.support.redis"

-- (each case its own channels: Redis keeps a pause from one case to the next)
local CH = {}
for k = 1, 8 do CH[k] = "110000000000000000" .. k end
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 20 }
local MAX = 2 -- the policy's max_retry_after; the pauses are longer

local function cases(name, coordinator)
  describe("a batch on a paused channel, " .. name, function()
    local fx = fixture.simulator { job_seconds = 0.1, channels = CH, client = false }
    local c
    after_each(function() if c then c:close() c = nil end end)

    local function client(over)
      local o = { retry = fx.retry { attempts = 3, max_retry_after = MAX },
                  coordinator = coordinator(), lease = 5 }
      for k, v in pairs(over or {}) do o[k] = v end
      c = fx.new(o)
      return c, c._coordinator
    end
    local function pause(channel, seconds)
      local coord, key = c._coordinator, c._channel_of(channel).key
      coord:pause(key, coord:now() + seconds)
    end

    -- the error every item gets: rate_limited, unsent, naming the channel and what is left
    local function assert_paused(err, channel, i)
      assert.equal("error", faceswap.type(err), "item " .. i .. ": " .. tostring(err and err.status))
      assert.same({ "rate_limited", 429, false, true, true },
        { err.kind, err.code, err.sent, err.retryable, err.retry_after > MAX }, "item " .. i)
      assert.matches("^rate_limited %(429%): channel " .. channel ..
        " paused by Discord's rate limit for %d+ more seconds$", tostring(err))
    end

    it("the client's default channel: every item rate_limited at once, nothing sent", function()
      client { channel = CH[1] }
      pause(CH[1], 8)
      local updates = {}
      local results = c:batch({ "one", "two", { prompt = "own", channel = CH[1] } }, { wait = FAST,
        on_update = function(i, v) updates[#updates + 1] = i .. " " .. faceswap.type(v) end })
      assert.equal(3, #results)
      for i = 1, 3 do assert_paused(results[i], CH[1], i) end
      table.sort(updates)
      assert.same({ "1 error", "2 error", "3 error" }, updates)
      assert.equal(0, #fx.sent("/headshot"))
      assert.same({}, fx.slept) -- the policy slept nothing either (and its delay raised nothing)
    end)

    it("with retry = false: the default max_retry_after (120 s) is what it may wait", function()
      client { retry = false, channel = CH[2] }
      pause(CH[2], 200)
      local results = c:batch({ "one" }, { wait = FAST })
      assert.equal("rate_limited", results[1].kind)
      assert.is_true(results[1].retry_after > 120)
      assert.equal(0, #fx.sent("/headshot"))
    end)

    it("every shared channel paused too long: the error of the one whose pause ends first", function()
      client()
      pause(CH[3], 9)
      pause(CH[4], 6)
      local results = c:batch({ "one", "two" }, { wait = FAST, channels = { CH[3], CH[4] } })
      for i = 1, 2 do assert_paused(results[i], CH[4], i) end
      assert.equal(0, #fx.sent("/headshot"))
    end)

    -- what held: a shared channel paused too long is passed over while another has room
    it("one shared channel paused too long, the other free: every item runs on the other", function()
      client()
      pause(CH[5], 9)
      local results = c:batch({ "one", "two", "three" }, { wait = FAST, channels = { CH[5], CH[6] } })
      for i = 1, 3 do
        assert.equal("completed", results[i].status, "item " .. i)
        assert.equal(CH[6], results[i].channel)
      end
      assert.equal(3, #fx.sent("/headshot"))
      assert.is_nil(results.dead_channels)
    end)

    -- what held: a pause the policy may wait is waited out, and the items then run
    it("a pause shorter than max_retry_after is waited out: the items run after it", function()
      client { channel = CH[7] }
      pause(CH[7], 0.5)
      local results = c:batch({ "one", "two" }, { wait = FAST })
      for i = 1, 2 do assert.equal("completed", results[i].status, "item " .. i) end
      assert.equal(2, #fx.sent("/headshot"))
      assert.same({}, fx.slept)
    end)
  end)
end

-- the in-process coordinator, then Redis (#external: a redis-server of the spec's own)
redis.each_coordinator(cases)
