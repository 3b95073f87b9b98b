-- Lifecycles a host can rely on (docs/lifecycle.md): a client call where its task cannot
-- yield, close() and task:cancel(), what the server sends never raising, waiting that says
-- why it failed, and misuse raised at the caller's line.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"

local SPEC = "spec/integration/lifecycle_spec.lua"

-- The line after the one that calls here: for errors that must point at the caller.
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

describe("lifecycle", function()
  local fx = fixture.simulator { job_seconds = 0.2, config = { latency = 0 }, client = { retry = false } }

  describe("a call where its task cannot yield", function()
    it("blocks instead of raising, sends once, and the other tasks finish", function()
      fx.sim:config { latency = 0.1 }
      local others = {}
      for i = 1, 3 do others[i] = fx.client:spawn(function() return fx.client:job("nope" .. i) end) end
      local t = fx.client:spawn(function()
        local got = {}
        -- a string.gsub replacement function, a table.sort comparator, a __tostring: C calls
        ("ab"):gsub("%a", function(c) got[#got + 1] = assert(fx.client:headshot("gsub " .. c)).prompt end)
        local sorted = false
        table.sort({ 2, 1, 3 }, function(a, b)
          if not sorted then
            sorted = true
            got[#got + 1] = assert(fx.client:headshot("sort")).prompt
            faceswap.sleep(0.01) -- sleeps block there too
          end
          return a < b
        end)
        tostring(setmetatable({}, { __tostring = function()
          got[#got + 1] = assert(fx.client:headshot("tostring")).prompt
          return "x"
        end }))
        -- and back in the task's body, calls yield again
        got[#got + 1] = assert(fx.client:headshot("body")).prompt
        return got
      end)
      fx.client:run()
      assert.same({ "gsub a", "gsub b", "sort", "tostring", "body" }, t:result())
      for i = 1, 3 do
        local _, err = others[i]:result()
        assert.equal("not_found (404): Unable to locate job nope" .. i, tostring(err))
      end
      assert.equal(5, fx.sim:count("POST"))
    end)

    it("step() drops a transfer that has no task, and resumes the others of the same poll", function()
      fx.sim:config { latency = 0.2 }
      -- a transfer started behind the scheduler's back (as a failed yield once left one)
      local orphan = fx.client._transport:start("GET", "/jobs/?jobid=orphan")
      local tasks = {}
      -- each task ends once no transfer runs (the orphan's ended too, and step dropped it), or
      -- after 10 s: the orphan, started first, can end after the tasks' own on a loaded machine
      for i = 1, 3 do
        tasks[i] = fx.client:spawn(function()
          local job, err = fx.client:job("t" .. i)
          for _ = 1, 1000 do
            if fx.client._transport:running() == 0 then break end
            faceswap.sleep(0.01)
          end
          return job, err
        end)
      end
      fx.client:run()
      for i = 1, 3 do assert.equal("not_found", select(2, tasks[i]:result()).kind) end
      assert.has_error(function() fx.client._transport:finish(orphan) end,
        "bad argument #1 to 'finish' (no such transfer)")
      assert.equal(0, fx.client._transport:running())
    end)

    it("runs a batch there to the end", function()
      local t = fx.client:spawn(function()
        local out
        ("x"):gsub("x", function()
          out = fx.client:batch({ "one", "two" }, { wait = { interval = 0.05, timeout = 10 } })
        end)
        return out
      end)
      fx.client:run()
      local out = t:result()
      assert.equal("completed", out[1].status)
      assert.equal("two", out[2].prompt)
    end)
  end)

  describe("close()", function()
    it("inside a task ends every task with 'cancelled', and run() returns", function()
      fx.sim:script { action = "hang", match = "^POST" } -- answers nothing until the client closes
      local posting = fx.client:spawn(function() return fx.client:headshot("in flight") end)
      local sleeping = fx.client:spawn(function() faceswap.sleep(30) return "slept" end)
      while fx.sim:count("POST") < 1 do fx.client:step(0.05) end
      local reached
      local closer = fx.client:spawn(function()
        fx.client:close()
        reached = true
        faceswap.sleep(0.01) -- its next yield: it stops here
        return "not this"
      end)
      fx.client:run()
      assert.is_true(reached)
      local v, err = posting:result()
      assert.is_nil(v)
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled: client closed", tostring(err))
      assert.is_true(err.sent)     -- its POST had gone out
      assert.is_false(err.retryable)
      v, err = sleeping:result()
      assert.is_nil(v)
      assert.equal("cancelled", err.kind)
      assert.is_false(err.sent)
      assert.equal("cancelled: client closed", tostring(select(2, closer:result())))
      assert(sim.wait_for(function() return fx.sim:stats().open == 0 end, 5))
    end)

    it("then spawn, step and every method raise at the caller's line", function()
      fx.client:close()
      fx.client:close() -- closing again is fine
      local line = next_line()
      local ok, msg = pcall(function() fx.client:spawn(print) end)
      assert.is_false(ok)
      assert.equal(SPEC .. ":" .. line .. ": attempt to use a closed faceswap client", msg)
      line = next_line()
      ok, msg = pcall(function() fx.client:step(0) end)
      assert.equal(SPEC .. ":" .. line .. ": attempt to use a closed faceswap client", msg)
      assert.is_false(ok)
      line = next_line()
      ok, msg = pcall(function() fx.client:headshot("p") end)
      assert.equal(SPEC .. ":" .. line .. ": attempt to use a closed faceswap client", msg)
      assert.is_false(ok)
    end)
  end)

  describe("task:cancel()", function()
    it("stops a sleeping task; sent is false; a second cancel does nothing", function()
      local t = fx.client:spawn(function() faceswap.sleep(30) return "slept" end)
      local other = fx.client:spawn(function() faceswap.sleep(0.05) return "other" end)
      fx.client:step(0)
      assert.is_true(t:cancel())
      assert.is_true(t:done())
      local v, err = t:result()
      assert.is_nil(v)
      assert.equal("cancelled: task cancelled", tostring(err))
      assert.is_false(err.sent)
      assert.is_false(t:cancel())
      fx.client:run()
      assert.equal("other", other:result())
    end)

    it("drops the transfer of a task mid-request; sent is true", function()
      fx.sim:script { action = "hang", match = "^POST" }
      local t = fx.client:spawn(function() return fx.client:headshot("dropped") end)
      while fx.sim:count("POST") < 1 do fx.client:step(0.05) end
      assert.equal(1, fx.sim:stats().open)
      assert.is_true(t:cancel())
      local _, err = t:result()
      assert.equal("cancelled", err.kind)
      assert.is_true(err.sent)
      assert.equal(0, fx.client:step(0))
      assert(sim.wait_for(function() return fx.sim:stats().open == 0 end, 5))
      -- the client goes on working
      assert.equal("next", assert(fx.client:headshot("next")).prompt)
    end)

    it("a task never started never runs", function()
      local ran = false
      local t = fx.client:spawn(function() ran = true end)
      t:cancel()
      fx.client:run()
      assert.is_false(ran)
      assert.is_false(select(2, t:result()).sent)
    end)

    it("a task that cancels itself stops at its next yield", function()
      local t, marks = nil, {}
      t = fx.client:spawn(function()
        marks[#marks + 1] = "before"
        assert.is_true(t:cancel())
        marks[#marks + 1] = "after"
        faceswap.sleep(0.01)
        marks[#marks + 1] = "never"
      end)
      fx.client:run()
      assert.same({ "before", "after" }, marks)
      assert.equal("cancelled: task cancelled", tostring(select(2, t:result())))
    end)

    it("leaves a finished task's result alone", function()
      local t = fx.client:spawn(function() return 1, 2 end)
      fx.client:run()
      assert.is_false(t:cancel())
      assert.same({ n = 2, 1, 2 }, compat.pack(t:result()))
    end)
  end)

  describe("batch stop", function()
    it("drops the items in flight and begins no other; on_update hears of neither", function()
      local submitted, updates = 0, {}
      local out = fx.client:batch({ "a", "b", "c", "d", "e" }, {
        concurrency = 2, wait = { interval = 30, timeout = 60 },
        on_update = function(i, x)
          updates[#updates + 1] = i
          if faceswap.type(x) == "job" then submitted = submitted + 1 end
        end,
        stop = function() return submitted >= 2 end,
      })
      table.sort(updates) -- the two answers may come in either order
      assert.same({ 1, 2 }, updates)
      for i = 1, 2 do
        assert.equal("cancelled: batch stopped", tostring(out[i]))
        assert.is_true(out[i].sent)
        assert.equal(({ "a", "b" })[i], out[i].job.prompt)
      end
      for i = 3, 5 do
        assert.equal("cancelled: batch stopped before this item", tostring(out[i]))
        assert.is_false(out[i].sent)
      end
      assert.equal(2, fx.sim:count("POST"))
      assert.equal(0, fx.client:step(0))
    end)
  end)

  describe("what the server sends", function()
    local BAD = '{"jobid":"j\\n1","verb":"faceswap-headshot","status":"started","prompt":"p"}'

    it("a jobid that cannot be sent back: wait gives bad_response", function()
      fx.sim:script { action = "status", status = 200, body = BAD, match = "^POST /headshot$" }
      local job = assert(fx.client:headshot("p"))
      assert.equal("j\n1", job.jobid)
      local v, err = fx.client:wait(job, { interval = 0.05 })
      assert.is_nil(v)
      assert.equal("bad_response: the server sent a jobid that cannot be sent back " ..
        "(jobid contains control byte 0x0A)", tostring(err))
      assert.is_false(err.sent)
      v, err = fx.client:job(job)
      assert.is_nil(v)
      assert.equal("bad_response", err.kind)
    end)

    it("a batch keeps every other result", function()
      fx.sim:script { action = "status", status = 200, body = BAD, match = "^POST /headshot$" }
      local out = fx.client:batch({ "a", "b", "c" }, { concurrency = 1,
                                                      wait = { interval = 0.05, timeout = 10 } })
      assert.equal("bad_response", out[1].kind)
      assert.equal("completed", out[2].status)
      assert.equal("c", out[3].prompt)
      assert.equal("completed", out[3].status)
    end)

    it("a relative attachment URL: download gives nil, err", function()
      local v, err = fx.client:download("/attachments/1.png")
      assert.is_nil(v)
      assert.equal('invalid_request: refused to fetch "/attachments/1.png" (not an absolute URL)',
        tostring(err))
      assert.is_false(err.sent)
      assert.equal(0, #fx.sim:requests())
    end)
  end)

  describe("wait", function()
    it("wait(nil, err) returns them: wait(headshot(p)) reports the headshot's error", function()
      local v, err = fx.client:wait(fx.client:headshot(""))
      assert.is_nil(v)
      assert.equal("invalid_request (400): Required param prompt is missing or empty", tostring(err))
    end)

    it("a timeout carries the job and the last error met", function()
      local job = assert(fx.client:headshot("p"))
      fx.sim:script { action = "html_502", match = "^GET", count = 1000 }
      local v, err = fx.client:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 0.3,
                                        max_failures = 1000 })
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      assert.equal(job, err.job)
      assert.equal("server (502): HTTP 502: 502 Bad Gateway", tostring(err.last_error))
      assert.equal("timeout: job " .. job.jobid .. " not done after 0.3 seconds (status started)" ..
        "; last poll: server (502): HTTP 502: 502 Bad Gateway", tostring(err))
    end)

    it("gives up after max_failures failed polls in a row (default 5), with that error", function()
      local job = assert(fx.client:headshot("p"))
      fx.sim:script { action = "html_502", match = "^GET", count = 1000 }
      local seen = {}
      local v, err = fx.client:wait(job, { interval = 0.01, max_interval = 0.01, timeout = 60,
                                        on_error = function(e, n) seen[#seen + 1] = n .. " " .. e.kind end })
      assert.is_nil(v)
      assert.equal("server (502): HTTP 502: 502 Bad Gateway", tostring(err))
      assert.equal(job, err.job)
      assert.same({ "1 server", "2 server", "3 server", "4 server", "5 server" }, seen)
      assert.equal(5, fx.sim:count("GET"))
      v, err = fx.client:wait(job.jobid, { interval = 0.01, max_failures = 2 })
      assert.is_nil(v)
      assert.equal("server", err.kind)
      assert.equal(7, fx.sim:count("GET"))
    end)

    it("a poll that succeeds starts the count again", function()
      local job = assert(fx.client:headshot("p"))
      fx.sim:script { { action = "html_502", match = "^GET", count = 2 },
                 { action = "delay", seconds = 0, match = "^GET", count = 1 },
                 { action = "html_502", match = "^GET", count = 2 } }
      local done = assert(fx.client:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 30,
                                             max_failures = 3 }))
      assert.equal("completed", done.status)
    end)
  end)

  describe("misuse raises at the caller's line", function()
    local cases = {
      { function(c) c:headshot(5) end, "bad argument #1 to 'headshot' (string or table expected, got number)" },
      { function(c) c:headshot { prompt = "p", bogus = 1 } end,
        "bad argument #1 to 'headshot' (unknown param 'bogus')" },
      { function(c) c:job(5) end, "bad argument #1 to 'job' (jobid must be a string or a job, got number)" },
      { function(c) c:cancel("a\nb") end, "bad argument #1 to 'cancel' (jobid contains control byte 0x0A)" },
      { function(c) c:wait(5) end, "bad argument #1 to 'wait' (jobid or job expected, got number)" },
      { function(c) c:wait("x", { max_failures = 0 }) end,
        "bad argument #2 to 'wait' (option 'max_failures' must be a whole number from 1)" },
      { function(c) c:download(5) end, "bad argument #1 to 'download' (absolute URL expected, got number)" },
      { function(c) c:spawn(5) end, "bad argument #1 to 'spawn' (function expected, got number)" },
      { function(c) c:batch(5) end, "bad argument #1 to 'batch' (table expected, got number)" },
      { function(c) c.job(5) end,
        "bad argument #1 to 'job' (faceswap.client expected, got number; call it as client:job(...))" },
      { function() faceswap.new { bogus = 1 } end, "bad argument #1 to 'new' (unknown option 'bogus')" },
    }
    fx.misuse(SPEC, cases)
  end)
end)
