-- step(0)'s budget: a frame loop's step(0) resumes at most 12 tasks (new ones, those whose
-- sleep is over), the rest at the next steps, with next_wakeup() 0 meanwhile; a step that may
-- wait takes everything that is due. No simulator: the tasks make no request.
local faceswap = require "faceswap"

local new_client = require("spec.support.fixture").offline_client

describe("step(0)'s budget", function()
  it("starts 50 tasks spawned together 12 per step(0), next_wakeup() 0 until all ran", function()
    local client = new_client()
    finally(function() client:close() end)
    local ran = 0
    for _ = 1, 50 do client:spawn(function() ran = ran + 1 end) end
    local per_step, left = {}, {}
    while ran < 50 and #per_step < 10 do
      local before = ran
      left[#left + 1] = client:step(0)
      per_step[#per_step + 1] = ran - before
      if ran < 50 then assert.equal(0, client:next_wakeup()) end
    end
    assert.same({ 12, 12, 12, 12, 2 }, per_step)
    assert.same({ 38, 26, 14, 2, 0 }, left)
    assert.is_nil(client:next_wakeup())
  end)

  it("wakes 30 sleepers due together 12 per step(0)", function()
    local client = new_client()
    finally(function() client:close() end)
    local woke = 0
    for _ = 1, 30 do
      client:spawn(function()
        faceswap.sleep(0.05)
        woke = woke + 1
      end)
    end
    client:step(0)
    client:step(0)
    client:step(0) -- the 30 have started (12, 12, 6) and sleep
    assert.equal(0, woke)
    faceswap.sleep(0.2) -- every sleep is over
    local per_step = {}
    while woke < 30 and #per_step < 10 do
      local before = woke
      client:step(0)
      per_step[#per_step + 1] = woke - before
    end
    assert.same({ 12, 12, 6 }, per_step)
  end)

  it("a step that may wait, and run(), take every task that is due", function()
    local client = new_client()
    finally(function() client:close() end)
    local ran = 0
    for _ = 1, 50 do client:spawn(function() ran = ran + 1 end) end
    assert.equal(0, client:step(1))
    assert.equal(50, ran)
    for _ = 1, 50 do client:spawn(function() ran = ran + 1 end) end
    client:run()
    assert.equal(100, ran)
  end)
end)
