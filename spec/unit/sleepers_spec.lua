-- The scheduler's sleepers (lua/faceswap/task.lua): a lane for sleeps that end in the order
-- they began, a heap for the others; tasks wake in the order of their wake times, and an entry
-- left by a task woken early never resumes it. No simulator: the tasks make no request.
local faceswap = require "faceswap"

local new_client = require("spec.support.fixture").offline_client

describe("the scheduler's sleepers #unit", function()
  it("wake in the order of their wake times, longer sleeps first begun or not", function()
    local client = new_client()
    finally(function() client:close() end)
    -- 0.12, 0.02, 0.10, 0.04, 0.08, 0.06 s: in the lane and in the heap, mixed
    local sleeps, order = { 12, 2, 10, 4, 8, 6 }, {}
    for _, d in ipairs(sleeps) do
      client:spawn(function()
        faceswap.sleep(d / 100)
        order[#order + 1] = d
      end)
    end
    client:run()
    assert.same({ 2, 4, 6, 8, 10, 12 }, order)
  end)

  it("keep their order over many rounds of the same interval (the lane moved down)", function()
    local client = new_client()
    finally(function() client:close() end)
    local order, expected = {}, {}
    for i = 1, 50 do
      client:spawn(function()
        for _ = 1, 3 do
          faceswap.sleep(0.01)
          order[#order + 1] = i
        end
      end)
    end
    for _ = 1, 3 do for i = 1, 50 do expected[#expected + 1] = i end end
    client:run()
    assert.same(expected, order)
  end)

  it("never resume a task through the entry it left when it was woken early", function()
    local client = new_client()
    finally(function() client:close() end)
    local sched, marks = client._sched, {}
    local parked = client:spawn(function()
      sched:park(faceswap.now() + 0.05) -- an entry due in 0.05 s
      marks[#marks + 1] = "woken"
      faceswap.sleep(30)
      marks[#marks + 1] = "slept"
    end)
    client:spawn(function() sched:wake(parked) end)
    client:step(0)
    client:step(0)
    assert.same({ "woken" }, marks)
    faceswap.sleep(0.1) -- the park's entry is due now, and stale
    client:step(0)
    client:step(0)
    assert.same({ "woken" }, marks)
    assert.is_true(parked:cancel())
  end)
end)
