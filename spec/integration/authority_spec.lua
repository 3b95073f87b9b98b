-- One authority per channel (lua/faceswap/channel.lua), against the simulator: every call on
-- a channel goes through it. Slots learned from 429s (24 headshots at once on one account draw
-- few of them), a hold that a batch waits out without reading it as a full queue, Discord's
-- retry_after pausing every caller, a dead channel refusing later calls at once, and the slot
-- of a job started without a wait.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"
local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 60 }

describe("a channel's authority", function()
  local s, client, slept

  setup(function() s = sim.start { job_seconds = 0.3, token = TOKEN, channels = { CH1, CH2 } } end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    s:config { max_running = 3, job_seconds = 0.3, blocking_seconds = 0.3 }
    slept = {}
    client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH1, retry = {
      sleep = function(d) slept[#slept + 1] = d end, random = function() return 0.5 end } }
  end)
  after_each(function() client:close() end)

  local function posts(path, channel)
    local count = 0
    for _, r in ipairs(s:requests()) do
      if r.method == "POST" and r.path == path and (not channel or r.fields.channel == channel) then
        count = count + 1
      end
    end
    return count
  end

  it("runs 24 headshots at once on one account with at most 0.5 429s per accepted job", function()
    s:config { job_seconds = 1 }
    local list = {}
    for i = 1, 24 do
      list[i] = client:spawn(function() return client:headshot("prompt " .. i, { wait = FAST }) end)
    end
    client:run()
    for i = 1, 24 do
      local job, err = list[i]:result()
      assert.is_nil(err)
      assert.equal("completed", job.status)
    end
    local rejected = s:stats().rejected
    assert.equal(24 + rejected, posts("/headshot"))
    assert.is_true(rejected / 24 <= 0.5, rejected .. " 429s for 24 jobs")
    assert.same({}, slept) -- each 429 was waited out by a job ending, never slept through
  end)

  it("makes a headshot outside a task wait for a slot while tasks fill the queue", function()
    s:config { job_seconds = 0.5 }
    for i = 1, 3 do
      client:spawn(function() return client:headshot("task " .. i, { wait = FAST }) end)
    end
    client:step(0) -- the three take the queue's three slots and send their POSTs
    local job, err = client:headshot("outside", { wait = FAST })
    assert.is_nil(err)
    assert.equal("completed", job.status)
    client:run()
    -- its one probe beyond the 3 met the full queue and taught its size; it then waited for
    -- one of the tasks' jobs to end instead of sleeping
    assert.equal(1, s:stats().rejected)
    assert.same({}, slept)
  end)

  it("lets a batch wait out a blocking command started mid-batch, never reading it as a full queue", function()
    s:config { max_running = 0, blocking_seconds = 0.5 }
    local saved
    local results = client:batch((function()
      local l = {}
      for i = 1, 12 do l[i] = "prompt " .. i end
      return l
    end)(), { concurrency = 8, wait = FAST, on_update = function(i, job)
      if i == 1 and job.status == "started" then
        saved = client:spawn(function() return client:listid() end)
      end
    end })
    client:run()
    for i = 1, 12 do assert.equal("completed", results[i].status) end
    assert.equal("completed", saved:result().status)
    assert.equal(0, s:stats().rejected) -- no POST met the hold upstream
    assert.equal(12, posts("/headshot"))
    assert.equal(1, posts("/listid"))
    assert.same({}, slept)
    assert.is_nil(client._coordinator:capacity(CH1)) -- nothing learned from a hold
  end)

  it("pauses every caller on the channel for a retry_after one of them met", function()
    local times, answered = {}, nil
    client:close()
    client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH1,
      retry = { sleep = function(d) slept[#slept + 1] = d end },
      log = function(_, message, what)
        if what == "request" and message:find("POST /headshot", 1, true) then
          times[#times + 1] = faceswap.now()
        elseif what == "answer" and message:find("429", 1, true) and not answered then
          answered = faceswap.now()
        end
      end }
    s:config { max_running = 0 }
    s:script { action = "discord_429", retry_after = 1, match = "^POST /headshot$" }
    local first = client:spawn(function() return client:headshot("first") end)
    while not answered do client:step(0.05) end
    local others = {}
    for i = 1, 3 do others[i] = client:spawn(function() return client:headshot("other " .. i) end) end
    client:run()
    local fjob, ferr = first:result()
    assert.is_nil(ferr)
    assert.equal("started", fjob.status)
    for i = 1, 3 do assert.equal("started", others[i]:result().status) end
    assert.equal(5, #times) -- the one that met the 429, then each of the four once
    for k = 2, 5 do
      assert.is_true(times[k] - answered >= 0.99, "a POST " .. (times[k] - answered) ..
        " s after the 429, inside its pause")
    end
    -- the caller that met it waited retry_after (its retry policy's sleep, a stand-in here);
    -- the others waited in the authority
    assert.same({ 1 }, slept)
  end)

  it("gives a caller whose policy will not wait that long the pause at once, unsent", function()
    client:close()
    client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH1,
      retry = { max_retry_after = 5 } }
    s:script { action = "discord_429", retry_after = 30, match = "^POST /headshot$" }
    local _, err = client:headshot("first")
    assert.equal("rate_limited", err.kind)
    assert.equal(30, err.retry_after)
    local none, paused = client:headshot("second")
    assert.is_nil(none)
    assert.same({ "rate_limited", false, 30 },
      { paused.kind, paused.sent, paused.error:match("for (%d+) more seconds") + 0 })
    assert.equal("channel " .. CH1 .. " paused by Discord's rate limit for 30 more seconds",
      paused.error)
    assert.equal(1, posts("/headshot"))
    assert.is_not_nil(assert(client:headshot("elsewhere", { channel = CH2 })).jobid)
  end)

  it("refuses every later call on a dead channel at once with the error that killed it", function()
    assert(client:delete_account(CH2))
    local text = "Configuration not found for channel " .. CH2 ..
      ", to create POST v1/faceswap/account/" .. CH2
    local _, err = client:headshot({ prompt = "one", channel = CH2 })
    assert.same({ "invalid_request", 400, text, true }, { err.kind, err.code, err.error, err.sent })
    -- configured again upstream: this client keeps it out of use for its lifetime
    assert(client:add_account { channel = CH2, server = "1100000000000000000",
      discord = "discord-token-for-the-spec" })
    local none, again = client:headshot({ prompt = "two", channel = CH2 })
    assert.is_nil(none)
    assert.same({ "invalid_request", 400, text, false, false },
      { again.kind, again.code, again.error, again.sent, again.retryable })
    local _, held = client:listid({ channel = CH2 })
    assert.equal("invalid_request (400): " .. text, tostring(held))
    local results = client:batch({ "a", "b" }, { channels = { CH1, CH2 }, wait = FAST })
    assert.same({ "completed", "completed" }, { results[1].status, results[2].status })
    assert.same({ CH1, CH1 }, { results[1].channel, results[2].channel })
    assert.equal(CH2, results.dead_channels[1].channel)
    assert.equal(1, posts("/headshot", CH2))
    assert.equal(0, posts("/listid"))
    -- another client has its own authority
    local other = faceswap.new { token = TOKEN, base_url = s.base_url }
    assert.equal("started", assert(other:headshot({ prompt = "three", channel = CH2 })).status)
    other:close()
  end)

  describe("a job started without a wait", function()
    it("keeps its slot until a poll of this client sees it end", function()
      s:config { job_seconds = 0.4 }
      -- one job waited for: the channel's jobs are seen to take about 0.4 s
      assert.equal("completed", client:headshot("measure", { wait = FAST }).status)
      local started = {}
      for i = 1, 3 do started[i] = assert(client:headshot("no wait " .. i)) end
      -- the queue holds 3: a fourth probes once, learns it is full while the 3 still count as
      -- running, and waits for one of them (as long as the measured job) instead of sleeping
      -- 10-30 s as it would if their slots had been freed after their POSTs
      local job = assert(client:headshot("fourth", { wait = FAST }))
      assert.equal("completed", job.status)
      assert.equal(1, s:stats().rejected)
      for i = 1, 3 do assert.equal("completed", client:wait(started[i], FAST).status) end
      assert.same({}, slept)
    end)

    it("frees its slot once the POST is answered when no job was seen end yet", function()
      s:config { max_running = 0 }
      for i = 1, 5 do assert(client:headshot("no wait " .. i)) end
      assert.equal(5, posts("/headshot"))
      assert.equal(0, client._channel_of(CH1):load())
    end)
  end)
end)
