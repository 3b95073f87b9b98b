-- client:batch against the simulator: order of results, concurrency, on_update, a full queue
-- learned from 429s instead of fx.slept through, errors per item, and misuse.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

local SPEC = "spec/integration/batch_spec.lua"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 10 }

describe("client:batch", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = function(f) return { retry = f.retry() } end }

  local function prompts(n)
    local list = {}
    for i = 1, n do list[i] = "prompt " .. i end
    return list
  end

  it("follows every job to the end and returns them in the list's order", function()
    local updates = {}
    local list = prompts(5)
    list[3] = { prompt = "with params", replyRef = "ref-3" }
    local results = fx.client:batch(list, { concurrency = 2, wait = FAST, on_update = function(i, v)
      updates[i] = updates[i] or {}
      table.insert(updates[i], v.status)
    end })
    assert.equal(5, #results)
    for i = 1, 5 do
      assert.equal("job", faceswap.type(results[i]))
      assert.equal("completed", results[i].status)
      assert.same({ "started", "progress", "completed" }, updates[i])
    end
    assert.equal("prompt 1", results[1].prompt)
    assert.equal("with params", results[3].prompt)
    assert.equal("ref-3", results[3].replyRef)
    assert.equal("prompt 5", results[5].prompt)
  end)

  it("keeps at most `concurrency` jobs going at once", function()
    local active, most = 0, 0
    fx.client:batch(prompts(7), { concurrency = 3, wait = FAST, on_update = function(_, v)
      if v.status == "started" then active = active + 1 end
      if v.status == "completed" then active = active - 1 end
      most = math.max(most, active)
    end })
    assert.equal(3, most)
    assert.equal(3, fx.sim:stats().connections)
  end)

  it("keeps its connections: no more than it has requests in flight", function()
    local results = fx.client:batch(prompts(48), { concurrency = 16, wait = FAST })
    assert.equal("completed", results[48].status)
    -- at most one per request in flight; fewer when the account's slots (3 at first, raised
    -- by one per start until a 429 is met) let the first requests go before the others
    local connections = fx.sim:stats().connections
    assert.is_true(connections >= 3 and connections <= 16, tostring(connections))
  end)

  it("with wait = false returns the started jobs without polling", function()
    local results = fx.client:batch(prompts(3), { wait = false })
    for i = 1, 3 do assert.equal("started", results[i].status) end
    for _, r in ipairs(fx.sim:requests()) do assert.equal("POST", r.method) end
  end)

  it("gives each item its own result: a job, a failed job, or an error", function()
    local results = fx.client:batch({ "fine", "", "sim:fail please", { prompt = "x", replyRef = ("r"):rep(1025) } },
      { wait = FAST })
    assert.equal("completed", results[1].status)
    assert.equal("error", faceswap.type(results[2]))
    assert.equal("invalid_request (400): Required param prompt is missing or empty", tostring(results[2]))
    assert.equal("job", faceswap.type(results[3]))
    assert.equal("failed", results[3].status)
    assert.equal("Optional param replyRef is too long", results[4].error)
  end)

  it("learns the queue's size from a 429 and waits for a slot instead of sleeping", function()
    fx.sim:config { max_running = 2 }
    local results = fx.client:batch(prompts(8), { concurrency = 5, wait = FAST })
    for i = 1, 8 do assert.equal("completed", results[i].status) end
    local rejected = fx.sim:stats().rejected
    assert.is_true(rejected >= 1, "no 429 at all: the queue limit was not reached")
    assert.is_true(rejected <= 8, rejected .. " 429s for 8 jobs")
    assert.same({}, fx.slept) -- no 10-30 s waits: every retry waited for one of its own jobs
  end)

  it("frees a job's slot as soon as it ends, before on_update returns", function()
    fx.sim:config { max_running = 1 }
    local events, first = {}, nil -- which item gets the one slot first is a race
    fx.client:batch(prompts(2), { concurrency = 2, wait = FAST, on_update = function(i, v)
      if v.status == "started" then
        events[#events + 1] = "started"
        first = first or i
      end
      if i == first and v.status == "completed" then
        faceswap.sleep(0.5) -- say, a download: the queue has room meanwhile
        events[#events + 1] = "first on_update returned"
      end
    end })
    assert.same({ "started", "started", "first on_update returned" }, events)
  end)

  it("sleeps as the policy says when none of its jobs runs to free a slot", function()
    fx.sim:script { action = "queue_full", match = "^POST /headshot$" }
    local results = fx.client:batch({ "only" }, { wait = FAST })
    assert.equal("completed", results[1].status)
    assert.same({ 20 }, fx.slept)
  end)

  it("runs inside a task too", function()
    local t = fx.client:spawn(function() return fx.client:batch(prompts(2), { wait = FAST }) end)
    fx.client:run()
    local results = t:result()
    assert.equal("completed", results[1].status)
    assert.equal("completed", results[2].status)
  end)

  it("returns an empty array for an empty list", function()
    assert.same({}, fx.client:batch({}))
  end)

  it("raises what on_update raised, once the other items are done", function()
    local seen = {}
    assert.has_error(function()
      fx.client:batch(prompts(3), { concurrency = 3, wait = FAST, on_update = function(i, v)
        seen[i] = v.status
        if i == 2 then error("callback broke", 0) end
      end })
    end, "callback broke")
    assert.equal("completed", seen[1])
    assert.equal("completed", seen[3])
  end)

  describe("checks every item before the first POST", function()
    -- The line after the one that calls here: for errors that must point at the caller.
    local function next_line()
      return debug.getinfo(2, "l").currentline + 1
    end

    it("raises at the caller's line naming the item, and sends nothing", function()
      local list = prompts(6)
      list[5] = "caf\233 au lait" -- Latin-1
      local line = next_line()
      local ok, msg = pcall(function() fx.client:batch(list, { concurrency = 1, wait = FAST }) end)
      assert.is_false(ok)
      assert.equal(SPEC .. ":" .. line .. ": bad item #5 to 'batch' (prompt is not valid UTF-8)", msg)
      assert.equal(0, fx.sim:count("POST"))
      assert.same({}, fx.sim:requests())
    end)

    it("with the core's own checks, for params tables, changebg items and channels", function()
      assert.has_error(function() fx.client:batch({ "a", { prompt = "b", seed = 1 } }) end,
        "bad item #2 to 'batch' (unknown param 'seed')")
      assert.has_error(function() fx.client:batch({ "a", "b", { prompt = "c", replyRef = "x\0y" } }) end,
        "bad item #3 to 'batch' (replyRef contains control byte 0x00)")
      assert.has_error(function()
        fx.client:batch({ "a", { command = "changebg", image = { data = "x" }, a_background_photo_of = "b" } })
      end, "bad item #2 to 'batch' (image.filename is missing)")
      assert.has_error(function() fx.client:batch({ "a" }, { channels = { "1", "caf\233" } }) end,
        "bad argument #2 to 'batch' (option 'channels': item 2: channel is not valid UTF-8)")
      assert.equal(0, fx.sim:count("POST"))
    end)

    it("gives an item's local problem as its result, unsent, and runs the others", function()
      local updates = {}
      local results = fx.client:batch({ "a", { prompt = "" }, "c" }, { wait = FAST,
        on_update = function(i, v) if i == 2 then updates[#updates + 1] = tostring(v) end end })
      assert.equal("completed", results[1].status)
      assert.same({ "invalid_request", 400, "Required param prompt is missing or empty", false },
        { results[2].kind, results[2].code, results[2].error, results[2].sent })
      assert.equal("completed", results[3].status)
      assert.same({ "invalid_request (400): Required param prompt is missing or empty" }, updates)
      assert.equal(2, fx.sim:count("POST"))
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() fx.client:batch("p") end,
      "bad argument #1 to 'batch' (table expected, got string)")
    assert.has_error(function() fx.client:batch({ "a", 5 }) end,
      "bad argument #1 to 'batch' (item 2 is a number, not a prompt or params table)")
    assert.has_error(function() fx.client:batch({}, { concurrency = 0 }) end,
      "bad argument #2 to 'batch' (option 'concurrency' must be a whole number from 1)")
    assert.has_error(function() fx.client:batch({}, { parallel = 2 }) end,
      "bad argument #2 to 'batch' (unknown option 'parallel')")
    assert.has_error(function() fx.client:batch({}, { wait = { every = 1 } }) end,
      "bad argument #2 to 'batch' (option 'wait': unknown option 'every')")
    assert.has_error(function() fx.client:batch({}, { wait = { on_update = print } }) end,
      "bad argument #2 to 'batch' (option 'wait': use the batch's own on_update)")
    assert.has_error(function() fx.client:batch({}, { wait = 5 }) end,
      "bad argument #2 to 'batch' (option 'wait' must be a table of wait options, true or false)")
    assert.has_error(function() fx.client:batch({}, { on_update = true }) end,
      "bad argument #2 to 'batch' (option 'on_update' must be a function)")
  end)
end)
