-- Review of the channel authority's fast paths (issue 20): a client closed by a finalizer
-- while a job command is inside the fast path of its slot (taking it, or keeping it for the
-- job the POST answered) gets its answer or 'client closed', and later calls raise. The
-- collector steps all the time; a guard closes the client only once its finalizer runs with
-- a frame of the aimed function on the stack (see finalizer_spec.lua, whose pattern this is).
local fixture = require "spec.support.fixture"

local gc_guard = require "spec.support.gc_guard"
local MAX_TRIES, collect_all_the_time, guard, jitter = gc_guard.MAX_TRIES,
  gc_guard.collect_all_the_time, gc_guard.guard, gc_guard.jitter

describe("review: a finalizer that closes the client inside the authority's fast path #gc", function()
  local fx = fixture.simulator { job_seconds = 30, config = { latency = 0, credits_total = 1e9 } }

  local function aimed(name, fn_of)
    it("inside " .. name .. ": the call's answer or 'client closed', later calls raise", function()
      -- a guard still pending after the test does nothing more
      local hit, restore = {}, collect_all_the_time()
      finally(function()
        hit.off = true
        restore()
      end)
      local client = fx.client
      local target = fn_of(client)
      guard(function() client:close() end, { [target] = true }, hit)
      local i, ok, job, err = 0, true, nil, nil
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        ok, job, err = pcall(client.headshot, client, "aimed " .. i)
        if not hit.co then assert(ok and job, err) end
      end
      assert(hit.co, "the guard never ran inside " .. name)
      assert(ok, job)
      if job then
        assert.equal("aimed " .. i, job.prompt)
      else
        assert.equal("cancelled: client closed", tostring(err))
      end
      local ok2, msg = pcall(client.headshot, client, "after")
      assert.is_false(ok2)
      assert.equal("attempt to use a closed faceswap client", msg)
    end)
  end
  local function channel(client) return client._channel_of(nil) end
  aimed("Channel:acquire", function(c) return channel(c).acquire end)
  -- (take, answered and core.job_runs were aimed at too: no collector step ever ran inside
  -- them in 20,000 calls each, as they make no table, closure or string a collection can
  -- follow)
end)
