-- What a slot costs on the authority's fast path (lua/faceswap/channel.lua): the in-process
-- coordinator, nobody of ours waiting, the channel neither dead, paused nor held. Every job
-- command takes a slot there and keeps it while its job runs, so this is paid by every
-- headshot round trip. Counted, not timed: Lua VM instructions through a count hook and the
-- bytes allocated with the collector stopped, the same on every run whatever the load. A
-- clock of the spec's own, so no lease ends meanwhile (the records stay live, as in a loop of
-- headshots started without a wait).
local fixture = require "spec.support.fixture"

local CH = "1100000000000000001"
local jit = rawget(_G, "jit")
local JIT = jit ~= nil

local instructions = require("spec.support.count").instructions

describe("a slot on the authority's fast path #unit", function()
  local now, coord, reg, ch, jobs
  before_each(function()
    now = 1000
    coord, reg, ch = fixture.authority(60, function() return now end, CH)
    jobs = {}
    for k = 1, 400 do jobs[k] = { jobid = ("job-%06d"):format(k), status = "started" } end
  end)

  -- k's headshot, as the client makes it: a slot, a POST answered with a job that runs and
  -- keeps it (its jobid handed over, as the client's call does). Nothing else in the loop (no
  -- luassert: its calls would be counted too); what it did is checked after.
  local function start(k)
    local job = jobs[k]
    ch:answered(ch:acquire(false, 30), job, nil, job.jobid)
  end

  it("takes and keeps a slot in a bounded number of VM instructions", function()
    for k = 1, 100 do start(k) end -- the channel's record made, the first tables grown
    if JIT then jit.off() end -- (a compiled loop runs no hook: LuaJIT interprets it here: 168)
    local n = instructions(function() for k = 101, 200 do start(k) end end) / 100
    if JIT then jit.on() end
    -- (154 on Lua 5.4 and 5.1; 155 before the coordinator's channel record kept its unset
    -- fields as false; 168 before the owner was told outside every coroutine by one C call,
    -- answered read the channel's own flags for watchers and no type() of the jobid; 256 on
    -- 5.4 before a slot made one record, its end kept in the coordinator's queue alone, and
    -- answered asked the coordinator through no closure)
    assert.is_true(n <= 158, ("%g instructions a slot"):format(n))
    assert.equal(200, coord:running(CH))
    for k = 1, 200 do assert.is_table(reg:slot(jobs[k].jobid), jobs[k].jobid) end
    assert.equal(0, ch.posting)
  end)

  it("makes one table a slot: its record, shared by the channel and the coordinator", function()
    if JIT then return end -- (LuaJIT's allocations differ, and its compiled loops too)
    for k = 1, 100 do start(k) end
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    for k = 101, 400 do start(k) end
    local bytes = (collectgarbage("count") - before) * 1024 / 300
    collectgarbage("restart")
    -- a 9-slot array and its share of the maps' growth: 313 bytes on Lua 5.4, 341 on 5.1; the
    -- three tables a slot made before (the channel's record, the coordinator's, the job's
    -- slot) and the lease id string: 591
    assert.is_true(bytes <= 345, ("%g bytes a slot"):format(bytes))
    assert.equal(400, coord:running(CH))
  end)
end)

describe("the authority a job command looks up #unit", function()
  it("is found in the registry's map for the default channel too, with no call to make it", function()
    local _, reg = fixture.authority(60, nil, CH)
    local default = reg(nil)
    -- (a job command reads by_key[channel or false] before calling the registry: a request on
    -- the client's default channel, nil, made that call every time when nil had no key there)
    assert.equal(default, reg.by_key[false])
    assert.equal(reg(CH), reg.by_key[CH])
    assert.equal(default, reg(nil))
    assert.is_nil(default.id)
    assert.equal("", default.key)
  end)
end)
