-- Hostile review (issue 17 items 2-6): a state file whose last line a crash cut short.
-- ledger.lua's load leaves such a line out ("a write a crash cut short"), but the next run
-- appends its first record right after it, on the same line: from then on the file is
-- unreadable and every rerun refuses it, so the jobs that run submitted can no longer be
-- waited for through the ledger.
local fixture = require "spec.support.fixture"
local write = require("spec.support.shell").write

describe("review: batch --state after a record cut short", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = false, tmp = true }

  it("stays readable: the rerun after the rerun says where the batch stands", function()
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "p one\np two\np three\n")
    -- line 1 went out (its POST's fate unknown), then a crash cut the next record short
    write(state, '{"state":"sending","line":1,"prompt":"p one","attempt":1}\n{"state":"submi')
    local code, _, err = fx.run { "batch", prompts, "--state", state, "--interval", "0.05" }
    assert.equal(1, code) -- line 1 of unknown fate, not resubmitted
    assert.truthy(err:find("3 prompts: 1 of unknown fate, 2 to submit", 1, true))
    code, _, err = fx.run { "batch", prompts, "--state", state, "--interval", "0.05" }
    assert.equal(1, code)
    assert.equal(state .. ": 3 prompts: 2 done before (2 completed), 1 of unknown fate, " ..
      "nothing to submit", err:match("faceswap: ([^\n]*)"))
  end)
end)
