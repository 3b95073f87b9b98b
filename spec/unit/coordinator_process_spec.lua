-- The in-process coordinator (lua/faceswap/coordinator/process.lua) under many live leases: a
-- client that starts jobs without waiting for them keeps a lease per job until it expires, so
-- what each call costs must not grow with the leases (it walked every lease on every call: a
-- loop of N headshots cost N squared), and the leases still end in the order of their ends,
-- renewed or released ones too. A clock of the spec's own, so no time passes by itself.
local process = require "faceswap.coordinator.process"

local instructions = require("spec.support.count").instructions

describe("the in-process coordinator", function()
  local now
  local function open() return process.new { lease = 60, clock = function() return now end } end
  before_each(function() now = 1000 end)

  it("takes, releases and counts a slot at a cost that does not grow with the live leases", function()
    local function cost(live)
      local c = open()
      for k = 1, live do assert(c:acquire("ch", "h" .. k, live + 1000)) end
      return instructions(function()
        for k = 1, 50 do
          local id = assert(c:acquire("ch", "x" .. k, live + 1000))
          c:running("ch")
          c:release("ch", id)
        end
      end)
    end
    local few, many = cost(20), cost(2000)
    -- a walk over the leases would make `many` about 100 times `few`; the heap's depth grows
    -- from 5 to 11
    assert.is_true(many < 2 * few, ("%d instructions with 20 leases, %d with 2000"):format(few, many))
  end)

  it("answers nil for what a channel has not had (a size, a pause, a hold, a death), then the value", function()
    -- (its record keeps them as false, which the fast paths read without a miss: the methods
    -- still answer nil)
    local c = open()
    assert.is_nil(c:capacity("ch"))
    assert.is_nil(c:paused("ch"))
    assert.is_nil(c:holder("ch"))
    assert.is_nil(c:dead("ch"))
    assert.equal(1, c:running("ch") + 1)
    c:learn("ch", 4)
    assert.equal(4, c:capacity("ch"))
    assert.equal(1030, c:pause("ch", 1030))
    assert.equal(1030, c:paused("ch"))
    now = 1030
    assert.is_nil(c:paused("ch"))
    assert.is_true(c:hold("ch", "me"))
    assert.equal("me", c:holder("ch"))
    assert.is_true(c:unhold("ch", "me"))
    assert.is_nil(c:holder("ch"))
    assert.equal("gone", c:kill("ch", "gone"))
    assert.equal("gone", c:dead("ch"))
    local why = select(2, c:acquire("ch", "h", 3))
    assert.equal("dead", why)
  end)

  it("ends leases in the order of their ends, renewed and released ones too", function()
    local c = open()
    local ids = {}
    for k = 1, 10 do
      now = 1000 + k -- lease k ends at 1060 + k
      ids[k] = assert(c:acquire("ch", "h" .. k, 100))
    end
    now = 1020
    assert.is_true(c:renew("ch", ids[2])) -- ends at 1080 now
    assert.is_true(c:release("ch", ids[5]))
    assert.are.equal(9, c:running("ch"))
    now = 1063 -- leases 1 and 3 ended (2 was renewed, 5 released)
    assert.are.equal(7, c:running("ch"))
    assert.is_false(c:renew("ch", ids[1]))
    assert.is_false(c:release("ch", ids[3]))
    assert.is_true(c:renew("ch", ids[4])) -- ends at 1123
    assert.is_false(c:release("ch", ids[5]))
    -- full at 7: told when the first live one ends, lease 6 at 1066
    local lease, why, retry_in = c:acquire("ch", "y", 7)
    assert.are.same({ nil, "full", 3 }, { lease, why, retry_in })
    now = 1070.5 -- 6..10 ended; 2 (1080) and 4 (1123) live
    assert.are.equal(2, c:running("ch"))
    lease, why, retry_in = c:acquire("ch", "y", 2)
    assert.are.same({ nil, "full", 9.5 }, { lease, why, retry_in })
    now = 1080
    assert.are.equal(1, c:running("ch"))
    now = 1123
    assert.are.equal(0, c:running("ch"))
  end)

  it("keeps its heap of ends near the leases' count while leases come and go", function()
    local c = open()
    local keep = {}
    for k = 1, 10 do keep[k] = assert(c:acquire("ch", "k" .. k, 100)) end
    for k = 1, 5000 do
      assert.is_true(c:release("ch", assert(c:acquire("ch", "t" .. k, 100))))
      assert.is_true(c:renew("ch", keep[k % 10 + 1]))
    end
    local record = c:store().channels.ch
    assert.are.equal(10, c:running("ch"))
    assert.is_true(#record.ends <= 2 * 10 + 32, "heap of " .. #record.ends)
  end)
end)
