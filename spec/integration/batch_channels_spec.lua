-- client:batch over several accounts (opts.channels) and with changebg items, against the
-- simulator: each channel's queue learned on its own, jobs that say where they ran.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

local CH1, CH2, CH3 = "1100000000000000001", "1100000000000000002", "1100000000000000003"
local FACE = "spec/support/demo-face.png"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }

describe("client:batch over channels", function()
  local fx = fixture.simulator { job_seconds = 0.3, channels = { CH1, CH2, CH3 }, max_running = 2,
                                 client = function(f) return { retry = f.retry() } end }

  local function prompts(n)
    local list = {}
    for i = 1, n do list[i] = "prompt " .. i end
    return list
  end

  local function per_channel(results)
    local count = {}
    for _, job in ipairs(results) do
      assert.equal("job", faceswap.type(job))
      assert.equal("completed", job.status)
      count[job.channel] = (count[job.channel] or 0) + 1
    end
    return count
  end

  it("spreads the list over the given channels, learning each queue's size", function()
    local results = fx.client:batch(prompts(12), { channels = { CH1, CH2 }, wait = FAST })
    assert.equal(12, #results)
    local count = per_channel(results)
    assert.is_nil(count[CH3])
    assert.is_true(count[CH1] >= 2 and count[CH2] >= 2)
    assert.equal(12, count[CH1] + count[CH2])
    -- every 429 was waited out by a job of ours ending, never slept through
    assert.same({}, fx.slept)
    local posts = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" then posts[r.fields.channel] = (posts[r.fields.channel] or 0) + 1 end
    end
    assert.is_nil(posts[""])
    assert.equal(12 + fx.sim:stats().rejected, (posts[CH1] or 0) + (posts[CH2] or 0))
  end)

  it("hands a freed slot to the item waiting longest: none is the probe twice running", function()
    fx.sim:config { max_running = 3 }
    local results = fx.client:batch(prompts(40), { channels = { CH1 }, wait = FAST })
    per_channel(results)
    assert.same({}, fx.slept)
    -- an item is sent again only after a 429, and a queue learned probes with one item a round
    local posts = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" then posts[r.fields.prompt] = (posts[r.fields.prompt] or 0) + 1 end
    end
    for i = 1, 40 do assert.is_true(posts["prompt " .. i] <= 2, "prompt " .. i) end
  end)

  it("runs more items at once than a queue holds without one of them running out of attempts", function()
    -- 8 at once on a queue of 2: the item a full queue refused waits ahead of the items not
    -- sent yet, so the one more the batch tries after each round is not its again and again
    local results = fx.client:batch(prompts(20), { channels = { CH1 }, concurrency = 8, wait = FAST })
    assert.same({ [CH1] = 20 }, per_channel(results))
    assert.same({}, fx.slept)
  end)

  it("takes every configured account for \"all\"", function()
    local results = fx.client:batch(prompts(9), { channels = "all", wait = FAST })
    local count = per_channel(results)
    assert.is_true(count[CH1] >= 1 and count[CH2] >= 1 and count[CH3] >= 1)
  end)

  it("returns nil, err when the accounts cannot be listed", function()
    local stranger = faceswap.new { token = "wrong", base_url = fx.base_url, retry = false }
    local results, err = stranger:batch(prompts(2), { channels = "all" })
    stranger:close()
    assert.is_nil(results)
    assert.same({ "unauthorized", 401 }, { err.kind, err.code })
    assert.equal(0, fx.sim:count("POST"))
  end)

  it("runs an item that names its channel there", function()
    local list = prompts(4)
    list[2] = { prompt = "mine", channel = CH3 }
    local results = fx.client:batch(list, { channels = { CH1 }, wait = FAST })
    assert.same({ CH1, CH3, CH1, CH1 }, { results[1].channel, results[2].channel,
      results[3].channel, results[4].channel })
  end)

  it("takes changebg items beside headshots", function()
    local results = fx.client:batch({
      "a headshot",
      { command = "changebg", image = FACE, a_background_photo_of = "a beach" },
      { command = "headshot", prompt = "another" },
    }, { channels = { CH1, CH2 }, wait = FAST })
    assert.same({ "faceswap-headshot", "faceswap-changebg", "faceswap-headshot" },
      { results[1].verb, results[2].verb, results[3].verb })
    for i = 1, 3 do assert.equal("completed", results[i].status) end
    assert.equal("a beach", results[2].prompt)
  end)

  it("reports an item's local problem as its error", function()
    local results = fx.client:batch({ { command = "changebg", image = "/no/such.png",
      a_background_photo_of = "x" }, "fine" }, { channels = { CH1 }, wait = FAST })
    assert.equal("image: cannot read /no/such.png: No such file or directory", results[1].error)
    assert.equal("completed", results[2].status)
  end)

  describe("a dead account", function()
    local function not_configured(channel)
      return "Configuration not found for channel " .. channel ..
        ", to create POST v1/faceswap/account/" .. channel
    end
    local function posts_to(channel)
      local count = 0
      for _, r in ipairs(fx.sim:requests()) do
        if r.method == "POST" and r.path == "/headshot" and r.fields.channel == channel then
          count = count + 1
        end
      end
      return count
    end

    it("is taken out of the batch: its items, the one it refused too, go to the others", function()
      assert(fx.client:delete_account(CH2))
      local lines = {}
      fx.client = fx.new { log = function(level, message, what)
        if what == "dead_channel" then lines[#lines + 1] = level .. " " .. message end
      end, retry = { sleep = function(d) fx.slept[#fx.slept + 1] = d end, random = function() return 0.5 end } }
      local results = fx.client:batch(prompts(20), { channels = { CH1, CH2 }, wait = FAST })
      assert.equal(20, #results)
      assert.same({ [CH1] = 20 }, per_channel(results))
      -- each prompt became one job: none was billed twice, none was lost
      assert.equal(20, posts_to(CH1) - fx.sim:stats().rejected)
      assert.is_true(posts_to(CH2) >= 1)
      -- reported once: a field of the result and one log line
      assert.equal(1, #results.dead_channels)
      assert.equal(CH2, results.dead_channels[1].channel)
      assert.equal("invalid_request (400): " .. not_configured(CH2),
        tostring(results.dead_channels[1].error))
      assert.same({ "warn channel " .. CH2 .. " taken out of the batch: invalid_request (400): " ..
        not_configured(CH2) }, lines)
    end)

    it("fails the items that name it with its answer, and lets the others run", function()
      assert(fx.client:delete_account(CH2))
      local list = prompts(4)
      list[2] = { prompt = "mine", channel = CH2 }
      local results = fx.client:batch(list, { channels = { CH1 }, wait = FAST })
      assert.equal(not_configured(CH2), results[2].error)
      assert.equal(true, results[2].sent)
      for _, i in ipairs { 1, 3, 4 } do assert.equal("completed", results[i].status) end
      assert.equal(CH2, results.dead_channels[1].channel)
    end)

    it("when every channel is dead, fails the remaining items with its answer, unsent", function()
      assert(fx.client:delete_account(CH2))
      local updates = {}
      local results = fx.client:batch(prompts(5), { channels = { CH2 }, concurrency = 1, wait = FAST,
        on_update = function(i, v) updates[#updates + 1] = i .. " " .. tostring(v) end })
      for i = 1, 5 do
        assert.equal("error", faceswap.type(results[i]))
        assert.same({ "invalid_request", 400, not_configured(CH2) },
          { results[i].kind, results[i].code, results[i].error })
        assert.equal(i == 1, results[i].sent) -- the first was answered; the others never left
      end
      assert.equal(1, posts_to(CH2))
      assert.equal(5, #updates)
      assert.equal("5 invalid_request (400): " .. not_configured(CH2), updates[5])
      assert.equal(1, #results.dead_channels)
    end)

    it("takes out every channel whose subscription ended (402), each once", function()
      fx.sim:config { subscription = false }
      local results = fx.client:batch(prompts(6), { channels = { CH1, CH2 }, concurrency = 1,
        wait = FAST })
      for i = 1, 6 do
        assert.equal("payment_required (402): Account has no subscription or subscription expired",
          tostring(results[i]))
      end
      assert.same({ 1, 1 }, { posts_to(CH1), posts_to(CH2) })
      assert.equal(2, #results.dead_channels)
      assert.equal(nil, results.dead_channels[3])
    end)
  end)

  it("raises for misuse of channels and items", function()
    assert.has_error(function() fx.client:batch({}, { channels = {} }) end,
      "bad argument #2 to 'batch' (option 'channels' must be \"all\" or an array of channel ids)")
    assert.has_error(function() fx.client:batch({}, { channels = { 5 } }) end,
      "bad argument #2 to 'batch' (option 'channels' must be \"all\" or an array of channel ids)")
    assert.has_error(function() fx.client:batch({ { command = "saveid" } }) end,
      "bad argument #1 to 'batch' (item 1: command must be \"headshot\" or \"changebg\", " ..
      "got \"saveid\")")
  end)
end)
