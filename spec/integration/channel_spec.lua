-- A channel's authority (lua/faceswap/channel.lua) against the simulator: the exclusive hold of
-- a blocking command is released whatever the call does, a call that cannot yield waits for a
-- task's hold and returns its answer, and a batch waits out a hold instead of meeting its 429.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"
local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }

describe("a channel's hold", function()
  local s, client

  setup(function() s = sim.start { job_seconds = 0.2, token = TOKEN, channels = { CH1, CH2 } } end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    s:config { blocking_seconds = 0.2 }
    client = faceswap.new { retry = false, token = TOKEN, base_url = s.base_url, channel = CH1 }
  end)
  after_each(function() client:close() end)

  local function sent(path)
    local list = {}
    for _, r in ipairs(s:requests()) do
      if r.path == path then list[#list + 1] = r end
    end
    return list
  end

  -- Steps until `t` is done; a bound only so that a defect fails instead of hanging the suite.
  local function finish(c, t)
    local deadline = faceswap.now() + 60
    while not t:done() and faceswap.now() < deadline do c:step(0.1) end
    assert.is_true(t:done(), "the task never finished")
  end

  describe("is released whatever the call does", function()
    it("a blocking command that raised outside a task leaves the channel free", function()
      local broken = true
      client:close()
      client = faceswap.new { retry = false, token = TOKEN, base_url = s.base_url, channel = CH1,
        log = function(_, _, what)
          if broken and what == "answer" then
            broken = false
            error("log sink failed", 0)
          end
        end }
      assert.has_error(function() client:listid() end, "log sink failed")
      local t = client:spawn(function() return client:listid() end)
      finish(client, t)
      local job, err = t:result()
      assert.is_nil(err)
      assert.equal("completed", job.status)
      assert.equal(2, #sent("/listid"))
      -- and outside a task too
      assert.equal("completed", assert(client:listid()).status)
    end)

    it("a task whose blocking command raised hands the channel on at once", function()
      local broken = true
      client:close()
      client = faceswap.new { retry = false, token = TOKEN, base_url = s.base_url, channel = CH1,
        log = function(_, _, what)
          if broken and what == "answer" then
            broken = false
            error("log sink failed", 0)
          end
        end }
      local a = client:spawn(function() return client:listid() end)
      local b = client:spawn(function() return client:listid() end)
      finish(client, b)
      local none, why = a:result()
      assert.is_nil(none)
      assert.equal("log sink failed", why:match("^[^\n]*")) -- (and the task's traceback)
      assert.equal("completed", b:result().status)
    end)
  end)

  describe("a blocking command where its task cannot yield", function()
    it("waits for the task holding the channel and returns its answer", function()
      local holder = client:spawn(function() return client:listid() end)
      local t = client:spawn(function()
        local got
        -- a gsub replacement function: a C call the task cannot yield across
        ("x"):gsub("x", function() got = client:listid() end)
        return got
      end)
      client:run()
      assert.equal("completed", holder:result().status)
      local job, err = t:result()
      assert.is_nil(err)
      assert.same({ "faceswap-listid", "completed", CH1 }, { job.verb, job.status, job.channel })
      assert.equal(0, s:stats().rejected)
      assert.equal(2, #sent("/listid"))
    end)

    it("runs the task the channel was just handed to, queued in the same pass", function()
      -- a holds the channel, b waits for it; c yields every pass until a is done, then asks
      -- from inside a gsub callback: b, woken by a's release, is queued after c in one pass
      local a_done = false
      local a = client:spawn(function()
        local job = client:listid()
        a_done = true
        return job
      end)
      local b = client:spawn(function() return client:listid() end)
      local c = client:spawn(function()
        while not a_done do coroutine.yield() end
        local got
        ("x"):gsub("x", function() got = client:listid() end)
        return got
      end)
      client:run()
      for _, t in ipairs { a, b, c } do
        local job, err = t:result()
        assert.is_nil(err)
        assert.equal("completed", job.status)
      end
      assert.equal(0, s:stats().rejected)
      assert.equal(3, #sent("/listid"))
    end)
  end)

  describe("in a batch", function()
    it("waits out a blocking command on its channel instead of meeting its 429", function()
      local slept = {}
      client:close()
      client = faceswap.new { token = TOKEN, base_url = s.base_url, channel = CH1, retry = {
        sleep = function(d) slept[#slept + 1] = d end, random = function() return 0.5 end } }
      s:config { blocking_seconds = 0.5 }
      local saved = client:spawn(function() return client:listid() end)
      client:step(0) -- the task holds CH1 and has sent its request
      local results = client:batch({ "one", "two", "three" }, { wait = FAST })
      finish(client, saved)
      assert.equal("completed", saved:result().status)
      for i = 1, 3 do assert.equal("completed", results[i].status) end
      assert.equal(0, s:stats().rejected)
      assert.same({}, slept)
    end)
  end)
end)
