-- The records a channel's authority (lua/faceswap/channel.lua) keeps of its slots, driven
-- directly over the in-process coordinator with a clock of the spec's own (no time passes by
-- itself): a client that starts jobs without waiting for them keeps a record per job only
-- while its lease can be live, not for its lifetime.
local fixture = require "spec.support.fixture"

local CH = "1100000000000000001"

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("a channel's records of its slots", function()
  local now, coord, reg, ch
  before_each(function()
    now = 1000
    coord, reg, ch = fixture.authority(10, function() return now end, CH)
  end)

  -- One headshot started without a wait, as the client makes it: a slot, a POST answered with
  -- a running job that keeps it.
  local function start(jobid)
    local lease = assert(ch:acquire())
    assert.is_false(ch:answered(lease, { jobid = jobid, status = "started" }, nil, true))
  end

  it("keeps a record per job started without a wait only while its lease can be live", function()
    for i = 1, 300 do
      now = now + 1
      start("job" .. i)
    end
    -- a lease of 10 s, a start each second: the last 10 are live, as the coordinator counts
    assert.equal(10, coord:running(CH))
    assert.equal(10, count(ch.leases))
    assert.equal(10, count(reg.jobs))
    assert.is_nil(reg:slot("job290"))
    assert.is_table(reg:slot("job291"))
  end)

  it("keeps the record of a request still on its way when its lease ends, until it is answered", function()
    local lease = assert(ch:acquire())
    now = now + 11 -- the lease (10 s) ended while the POST was on its way
    assert.equal(0, coord:running(CH))
    assert.equal(1, count(ch.leases))
    assert.equal(1, ch.posting)
    assert.is_false(ch:answered(lease, { jobid = "late", status = "started" }, nil, "late"))
    assert.equal(0, ch.posting)
    assert.is_table(reg:slot("late"))
    now = now + 10 -- kept as long again, then dropped as the next slot is taken
    start("next")
    assert.is_nil(reg:slot("late"))
    assert.is_table(reg:slot("next"))
    assert.equal(1, count(ch.leases))
    assert.equal(1, count(reg.jobs))
  end)

  -- The coordinator's renew, counted.
  local function count_renews()
    local n, renew = { 0 }, coord.renew
    coord.renew = function(...) n[1] = n[1] + 1 return renew(...) end
    return n
  end

  it("renews a job's lease only once a quarter of it has passed since it was taken", function()
    local renews = count_renews()
    start("fast") -- the in-process coordinator's take
    local lease = assert(ch:try(false, true)) -- the path every coordinator takes
    assert.is_false(ch:answered(lease, { jobid = "general", status = "started" }, nil, true))
    now = now + 2 -- a wait beginning 2 s after its POST: nothing to ask (lease 10 s)
    reg:renew("fast", true)
    reg:renew("general", true)
    assert.equal(0, renews[1])
    now = now + 0.5
    reg:renew("fast")
    reg:renew("general")
    assert.equal(2, renews[1])
    now = now + 1
    reg:renew("fast")
    reg:renew("general")
    assert.equal(2, renews[1])
    now = now + 8 -- 11.5 s after the take, 9 s after the renewal: both live
    assert.equal(2, coord:running(CH))
    assert.is_table(reg:slot("fast"))
    assert.is_table(reg:slot("general"))
  end)

  it("counts a lease's age from before the coordinator was asked, however late its answer", function()
    local renews = count_renews()
    -- a coordinator whose answer this process reads 7 s after it took the slot (a stall
    -- between Redis running its script and the reply being read): of the lease's 10 s, 3 are
    -- left when the answer is read
    local acquire = coord.acquire
    coord.acquire = function(...)
      local lease, why, retry_in = acquire(...)
      now = now + 7
      return lease, why, retry_in
    end
    local lease = assert(ch:try(false, true))
    coord.acquire = acquire
    assert.is_false(ch:answered(lease, { jobid = "late answer", status = "started" }, nil, true))
    reg:renew("late answer", true) -- 7 s old: renewed now, before its 10 s end
    assert.equal(1, renews[1])
    now = now + 5 -- 12 s after the take: live, as it was renewed
    assert.equal(1, coord:running(CH))
  end)

  it("asks the coordinator at once for the lease of a record kept past its end", function()
    local renews = count_renews()
    local lease = assert(ch:acquire())
    now = now + 11 -- the lease (10 s) ended while the POST was on its way
    assert.equal(0, coord:running(CH))
    assert.is_false(ch:answered(lease, { jobid = "late", status = "started" }, nil, "late"))
    reg:renew("late", true)
    assert.equal(1, renews[1])
    assert.is_nil(reg:slot("late"))
  end)

  it("keeps the record of a job whose waiter renews its lease", function()
    now = now + 1
    start("watched")
    for i = 1, 40 do
      now = now + 1
      reg:renew("watched")
      start("job" .. i)
    end
    assert.equal(11, coord:running(CH))
    assert.equal(11, count(ch.leases))
    assert.is_table(reg:slot("watched"))
    reg:ended("watched")
    assert.is_nil(reg:slot("watched"))
    assert.equal(10, count(ch.leases))
    assert.equal(10, coord:running(CH))
  end)
end)
