-- The coordinator contract (lua/faceswap/coordinator/init.lua): what every place a client's
-- channel state can live in (this process, an ngx.shared dict, Redis) must do alike.
--
-- Reusable: a spec file calls
--   require("spec.support.coordinator_contract")(name, open)
-- where `open(opts)` returns a fresh coordinator handle: opts.lease (seconds), and
-- opts.share = a handle opened before, for a second handle over the SAME state (as a second
-- process or nginx worker would open it); without share, a state no other test sees (a new
-- key prefix, a new dict namespace...). Times are read from the coordinator's own clock, and
-- the one test that needs a lease to run out waits for it without an upper bound.
local busted = require "busted"
local assert = require "luassert"
local describe, it = busted.describe, busted.it
local before_each, after_each = busted.before_each, busted.after_each

return function(name, open)
  describe("coordinator contract: " .. name, function()
    local c
    local handles = {}
    local function new(opts)
      local h = open(opts or {})
      handles[#handles + 1] = h
      return h
    end
    before_each(function() c = new { lease = 60 } end)
    after_each(function()
      for k = #handles, 1, -1 do handles[k]:close() handles[k] = nil end
    end)

    it("gives as many slots as the capacity passed, then says full and when one ends", function()
      local a = c:acquire("ch", "h1", 2)
      local b = c:acquire("ch", "h2", 2)
      assert.is_string(a)
      assert.is_string(b)
      assert.are_not.equal(a, b)
      local none, why, retry_in = c:acquire("ch", "h3", 2)
      assert.is_nil(none)
      assert.equal("full", why)
      assert.is_true(retry_in > 0 and retry_in <= 60, tostring(retry_in))
      assert.equal(2, c:running("ch"))
    end)

    it("keeps each channel apart, \"\" (no channel named) too", function()
      assert.is_string(c:acquire("a", "h", 1))
      assert.is_string(c:acquire("b", "h", 1))
      assert.is_string(c:acquire("", "h", 1))
      assert.equal("full", select(2, c:acquire("a", "h", 1)))
      assert.same({ 1, 1, 1, 0 }, { c:running("a"), c:running("b"), c:running(""), c:running("z") })
    end)

    it("uses the learned capacity over the one passed", function()
      assert.is_nil(c:capacity("ch"))
      c:learn("ch", 1)
      assert.equal(1, c:capacity("ch"))
      assert.is_string(c:acquire("ch", "h1", 3))
      assert.equal("full", select(2, c:acquire("ch", "h2", 3)))
      c:learn("ch", 4)
      assert.equal(4, c:capacity("ch"))
      assert.is_string(c:acquire("ch", "h2", 3))
    end)

    it("frees a released slot at once, and says a lease released twice was gone", function()
      local a = c:acquire("ch", "h1", 1)
      assert.is_nil(c:acquire("ch", "h2", 1))
      assert.is_true(c:release("ch", a))
      assert.is_false(c:release("ch", a))
      assert.equal(0, c:running("ch"))
      assert.is_string(c:acquire("ch", "h2", 1))
    end)

    it("renews a live lease and refuses to renew one that is gone", function()
      local a = c:acquire("ch", "h1", 1)
      assert.is_true(c:renew("ch", a))
      assert.is_true(c:release("ch", a))
      assert.is_false(c:renew("ch", a))
      assert.equal(0, c:running("ch"))
    end)

    it("frees a slot whose holder stopped renewing it once `lease` seconds pass", function()
      local short = new { lease = 1 }
      local started = short:now()
      local kept = short:acquire("ch", "dead-process", 1)
      assert.is_string(kept)
      assert.equal("full", select(2, short:acquire("ch", "h2", 1)))
      local got
      repeat
        got = short:acquire("ch", "h2", 1)
        if not got then require("faceswap").sleep(0.05) end
      until got
      assert.is_true(short:now() - started >= 1, "freed before its lease ended")
      assert.is_false(short:renew("ch", kept))
      assert.equal(1, short:running("ch"))
    end)

    it("holds a channel for one holder: others, and slots, are refused until unhold", function()
      assert.is_nil(c:holder("ch"))
      assert.is_true(c:hold("ch", "saver"))
      assert.equal("saver", c:holder("ch"))
      assert.is_true(c:hold("ch", "saver")) -- again by the same holder: renewed
      local none, why, retry_in = c:hold("ch", "other")
      assert.same({ nil, "held" }, { none, why })
      assert.is_true(retry_in > 0 and retry_in <= 60)
      none, why = c:acquire("ch", "job", 3)
      assert.same({ nil, "held" }, { none, why })
      assert.is_false(c:unhold("ch", "other"))
      assert.equal("saver", c:holder("ch"))
      assert.is_true(c:unhold("ch", "saver"))
      assert.is_nil(c:holder("ch"))
      assert.is_string(c:acquire("ch", "job", 3))
      assert.is_true(c:hold("ch", "other")) -- a hold does not wait for the slots taken
    end)

    it("pauses a channel until a time on its clock, keeping the later pause", function()
      local t = c:now()
      assert.is_nil(c:paused("ch"))
      assert.equal(t + 30, c:pause("ch", t + 30))
      assert.equal(t + 30, c:pause("ch", t + 5))
      assert.equal(t + 30, c:paused("ch"))
      local none, why, retry_in = c:acquire("ch", "h", 3)
      assert.same({ nil, "paused" }, { none, why })
      assert.is_true(retry_in > 29 and retry_in <= 30, tostring(retry_in))
      assert.equal("paused", select(2, c:hold("ch", "h")))
      assert.is_nil(c:paused("other"))
      c:pause("gone", c:now() - 1)
      assert.is_nil(c:paused("gone"))
      assert.is_string(c:acquire("gone", "h", 3))
    end)

    it("kills a channel for good: the first reason stays, slots and holds are refused", function()
      assert.is_nil(c:dead("ch"))
      assert.equal('{"code":402}', c:kill("ch", '{"code":402}'))
      assert.equal('{"code":402}', c:kill("ch", '{"code":401}'))
      assert.equal('{"code":402}', c:dead("ch"))
      local none, why, retry_in = c:acquire("ch", "h", 3)
      assert.same({ nil, "dead", nil }, { none, why, retry_in })
      assert.same({ nil, "dead" }, { c:hold("ch", "h") })
      assert.is_nil(c:dead("other"))
    end)

    it("shares every fact between two handles on the same state", function()
      local d = new { lease = 60, share = c }
      local a = c:acquire("ch", "p1", 2)
      assert.is_string(d:acquire("ch", "p2", 2))
      assert.equal("full", select(2, c:acquire("ch", "p1", 2)))
      assert.equal(2, d:running("ch"))
      assert.is_true(d:release("ch", a))
      assert.equal(1, c:running("ch"))
      c:learn("ch", 5)
      assert.equal(5, d:capacity("ch"))
      assert.is_true(d:hold("x", "p2"))
      assert.equal("p2", c:holder("x"))
      assert.equal("held", select(2, c:hold("x", "p1")))
      c:kill("y", "gone")
      assert.equal("gone", d:dead("y"))
      d:pause("z", d:now() + 20)
      assert.is_number(c:paused("z"))
    end)

    it("never gives more slots than the capacity to handles taking turns", function()
      local d = new { lease = 60, share = c }
      local got = 0
      for k = 1, 20 do
        if (k % 2 == 0 and c or d):acquire("ch", "h" .. k, 3) then got = got + 1 end
      end
      assert.equal(3, got)
      assert.equal(3, c:running("ch"))
    end)

    it("hands a published job to whoever waits on it, and nil after the timeout", function()
      local d = new { lease = 60, share = c }
      c:publish("job-1", '{"jobid":"job-1","status":"completed"}')
      assert.equal('{"jobid":"job-1","status":"completed"}', d:wait_published("job-1", 5))
      local t = c:now()
      assert.is_nil(d:wait_published("job-2", 0.2))
      assert.is_true(c:now() - t >= 0.2)
    end)

    it("refuses use after close", function()
      local h = new {}
      h:close()
      h:close() -- twice is harmless
      assert.has_error(function() h:acquire("ch", "h", 3) end, "faceswap: the coordinator is closed")
    end)
  end)
end
