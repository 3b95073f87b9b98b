-- A blocking command (listid here) holds its channel alone for as long as its request is on its
-- way, however much longer than the `lease` that takes: the hold is renewed meanwhile (every
-- quarter of the lease), so no job is given a slot while the command runs and none meets the
-- server's 429 "Unable to lock Discord". Lease 1 s, a command the simulator answers after
-- 2.5 s. In process and through Redis; as a task, and as a blocking call outside every task
-- (through Redis, whose other processes may take the channel while it runs: a child process's
-- headshot).
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local redis = require "spec.support.redis"
local shell = require "spec.support.shell"

local CH1 = "1100000000000000001"
local ROOT = shell.capture("pwd"):gsub("%s+$", "")

local function cases(name, coordinator)
  describe("a blocking command longer than the lease, " .. name, function()
    local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1 },
                                   config = { blocking_seconds = 2.5 }, client = false }
    local c
    after_each(function() if c then c:close() c = nil end end)

    local function client()
      c = fx.new { retry = false, channel = CH1, coordinator = coordinator(), lease = 1 }
      return c._coordinator, c._channel_of(CH1).key
    end

    it("as a task: held throughout, and a job spawned meanwhile is sent only once it ended", function()
      local coord, key = client()
      local listed = c:spawn(function() return c:listid() end)
      local give_up = faceswap.now() + 60
      repeat c:step(0.02) until #fx.sent("/listid") == 1 or faceswap.now() > give_up
      assert.equal(1, #fx.sent("/listid"), "listid never sent")
      local started = c:spawn(function() return c:headshot("while listid runs") end)
      -- sampled while stepping, until the command has ended (the channel's holder, this
      -- process's own account, is unset when its hold ends: the coordinator's unhold follows,
      -- which may take a Redis round trip)
      local ch = c._channel_of(CH1)
      local samples, unheld, early = 0, 0, 0
      while not listed:done() and faceswap.now() < give_up do
        c:step(0.05)
        local who = coord:holder(key)
        if not listed:done() and ch.holder ~= nil then -- (still held here after the look)
          samples = samples + 1
          if who == nil then unheld = unheld + 1 end
          if #fx.sent_under("headshot") > 0 then early = early + 1 end
        end
      end
      repeat c:step(0.05) until started:done() or faceswap.now() > give_up
      assert.is_true(samples >= 10, samples .. " samples")
      assert.equal(0, unheld, ("the hold was nobody's in %d of %d samples"):format(unheld, samples))
      assert.equal(0, early, "the headshot was sent while listid ran")
      assert.equal("completed", assert(listed:result()).status)
      local job, err = started:result()
      assert.is_nil(err and tostring(err.error or err))
      assert.equal("started", job.status)
      assert.equal(0, fx.sim:stats().rejected)
      assert.is_nil(coord:holder(key))
    end)

    it("a command cancelled while its request is on its way leaves no renewer running", function()
      local coord, key = client()
      local listed = c:spawn(function() return c:listid() end)
      local give_up = faceswap.now() + 60
      -- past a quarter of the lease, so the renewer runs
      local sent_at
      repeat
        c:step(0.02)
        if not sent_at and #fx.sent("/listid") == 1 then sent_at = faceswap.now() end
      until (sent_at and faceswap.now() > sent_at + 0.5) or faceswap.now() > give_up
      assert.equal(2, c:step(0), "the command and its renewer") -- (a renewer ran)
      listed:cancel()
      -- the renewer ends with its command, not at its next renewal a quarter lease later
      assert.equal(0, c:step(0))
      local _, err = listed:result()
      assert.equal("cancelled", err.kind)
      repeat c:step(0.02) until coord:holder(key) == nil or faceswap.now() > give_up
      assert.is_nil(coord:holder(key))
    end)

    if name == "Redis" then
      it("outside every task: held throughout, another process's headshot waits for it", function()
        local coord, key = client()
        -- a sampler task, run while the blocking call steps the client's other tasks
        local samples, unheld, stop = 0, 0, false
        local sampler = c:spawn(function()
          while not stop do
            if #fx.sent("/listid") == 1 then
              samples = samples + 1
              if coord:holder(key) == nil then unheld = unheld + 1 end
            end
            faceswap.sleep(0.1)
          end
        end)
        local child = assert(io.popen(
          ("lua5.4 %s/spec/support/redis_child.lua %s headshots %s %s %s %s 1")
          :format(shell.quote(ROOT), shell.quote(ROOT), shell.quote(coordinator()),
            shell.quote(fx.base_url), fx.TOKEN, CH1)))
        local listed = assert(c:listid())
        stop = true
        local ended = #fx.sim:requests()
        assert.equal("done 1", child:read("*l"))
        child:close()
        c:run()
        assert.is_true(sampler:done())
        assert.equal("completed", listed.status)
        -- the child's headshot was sent after listid was answered, and met no busy channel
        local first
        for k, r in ipairs(fx.sim:requests()) do
          if r.method == "POST" and r.path:find("headshot", 1, true) then first = first or k end
        end
        assert.equal(0, fx.sim:stats().rejected)
        assert.is_true(first > ended, "the child's headshot was sent while listid ran")
        assert.is_true(samples >= 10, samples .. " samples")
        assert.equal(0, unheld, ("the hold was nobody's in %d of %d samples"):format(unheld, samples))
        assert.is_nil(coord:holder(key))
      end)
    end
  end)
end

-- the in-process coordinator, then Redis (#external: a redis-server of the spec's own)
redis.each_coordinator(cases)
