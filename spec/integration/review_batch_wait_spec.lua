-- Review of the wait path (issue 20): a batch item's wait goes straight into client:wait's loop
-- (wait_for) with the options checked when the batch began. Those options must then be the
-- ones the items use: a table the caller changes while the batch runs cannot slip a value
-- client:wait would refuse (or the batch's own on_update) past the check.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

describe("client:batch's wait options (review)", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = function(f) return { retry = f.retry() } end }

  it("are the ones checked when it began, whatever the caller's table becomes meanwhile", function()
    local w = { interval = 0.05, max_interval = 0.05, timeout = 10 }
    local updates = {}
    local results = fx.client:batch({ "prompt 1", "prompt 2" }, { concurrency = 1, wait = w,
      on_update = function(i, v)
        updates[i] = updates[i] or {}
        table.insert(updates[i], v.status)
        -- values client:wait refuses, and an on_update of the wait's own
        w.timeout, w.interval, w.on_update = "soon", 0, function() end
      end })
    for i = 1, 2 do
      assert.equal("job", faceswap.type(results[i]))
      assert.equal("completed", results[i].status)
      assert.same({ "started", "progress", "completed" }, updates[i])
    end
  end)
end)
