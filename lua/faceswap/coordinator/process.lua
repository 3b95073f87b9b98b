-- faceswap.coordinator.process: the coordinator whose state lives in this process (the
-- default). The interface is documented in lua/faceswap/coordinator/init.lua; this one keeps
-- it with plain tables, so every method is atomic by construction (nothing yields) and
-- returns at once, except wait_published, which waits.
--
-- new{ lease = seconds, sched = scheduler, clock = fn, store = other:store() }: `clock` (the
-- monotonic clock by default) is for specs; `store` makes a second handle over the same state,
-- as a second process would open the same Redis.
local core = require "faceswap.core"

local M = {}

local Coordinator = {}
Coordinator.__index = Coordinator

local KEEP_PUBLISHED = 600 -- seconds a published job is kept, at least the lease

function M.new(opts)
  opts = opts or {}
  local lease = opts.lease or 60
  return setmetatable({
    lease = lease,
    sched = opts.sched,
    clock = opts.clock or core.now,
    state = opts.store or { channels = {}, published = {}, waiters = {}, next_id = 0 },
    closed = false,
  }, Coordinator)
end

-- The state shared by every handle made with it (see new).
function Coordinator:store() return self.state end

function Coordinator:now() return self.clock() end

local check, check_capacity = require("faceswap.coordinator").check,
  require("faceswap.coordinator").check_capacity -- (the checks every coordinator makes)

-- A lease's record is an array whose [1] is the time its lease ends unless renewed; acquire's
-- hold its holder at [3] ([2] false); take's are the channel authority's, whose [2] is told
-- when the lease ends unrenewed (see take).
--
-- A channel's record, made as it is first named. Beside its leases by id it keeps `live`,
-- their count, and the leases' ends in a binary min-heap (two arrays: `ends` the times, `ids`
-- the lease ids), so that dropping the expired ones costs a look at the heap's top, not a walk
-- over every lease: a client that starts jobs without waiting for them keeps a lease per job
-- until it expires, and a walk per call made a loop of N headshots cost N squared. An entry
-- whose lease was released, or renewed since (a later entry holds its new end), is stale and
-- dropped when it comes to the top.
local function record(self, channel)
  local c = self.state.channels[channel]
  if not c then
    -- (hold, pause, dead and capacity false when unset, not absent: the fast path's take and
    -- the authority's answered read them on every slot, and a field the table lacks costs a
    -- miss through luaV_finishget a read; the methods answer nil for them as before)
    c = { leases = {}, live = 0, ends = {}, ids = {}, hold = false, pause = false, dead = false,
          capacity = false }
    self.state.channels[channel] = c
  end
  return c
end

-- The record of `channel` for a method of an open handle: the check and the lookup made inline
-- by the methods a request calls (acquire, release, running, capacity, dead), a call only
-- when the record is new or the call is wrong (which raises as check does, at the caller).
local function checked(self, channel)
  check(self, channel, nil, 4)
  return record(self, channel)
end

-- Adds the end `t` of lease `id` to the heap.
local function push_end(c, t, id)
  local ends, ids = c.ends, c.ids
  local k = #ends + 1
  while k > 1 do
    local up = (k - k % 2) / 2
    if ends[up] <= t then break end
    ends[k], ids[k] = ends[up], ids[up]
    k = up
  end
  ends[k], ids[k] = t, id
end

-- Removes the heap's top.
local function pop_end(c)
  local ends, ids = c.ends, c.ids
  local n = #ends
  local t, id = ends[n], ids[n]
  ends[n], ids[n] = nil, nil
  n = n - 1
  if n == 0 then return end
  local k = 1
  while true do
    local child = 2 * k
    if child > n then break end
    if child < n and ends[child + 1] < ends[child] then child = child + 1 end
    if t <= ends[child] then break end
    ends[k], ids[k] = ends[child], ids[child]
    k = child
  end
  ends[k], ids[k] = t, id
end

-- Builds the heap anew from the live leases once stale entries (released or renewed leases)
-- outnumber them, so that it holds at most about twice the leases.
local function compact(c)
  if #c.ends <= 2 * c.live + 32 then return end
  c.ends, c.ids = {}, {}
  for id, l in pairs(c.leases) do push_end(c, l[1], id) end
end

-- Drops the expired leases (and an expired hold); returns the live count and the soonest end.
local function sweep(c, now)
  local ends, ids, leases = c.ends, c.ids, c.leases
  while ends[1] do
    local t = ends[1]
    local l = leases[ids[1]]
    if l and l[1] == t then
      if t > now then break end
      leases[ids[1]] = nil
      c.live = c.live - 1
      pop_end(c)
      if l[2] then l[2]:lease_ended(l, now) end
    else
      pop_end(c)
    end
  end
  if c.hold and c.hold.expires <= now then c.hold = false end
  return c.live, ends[1]
end

-- Why the channel refuses anything now (dead, paused, held by someone else), if it does.
local function refused(c, now, holder)
  if c.dead then return "dead" end
  if c.pause then
    if c.pause > now then return "paused", c.pause - now end
    c.pause = false
  end
  if c.hold and c.hold.holder ~= holder then return "held", c.hold.expires - now end
  return nil
end

function Coordinator:acquire(channel, holder, capacity)
  local c = not self.closed and self.state.channels[channel] or checked(self, channel)
  local now = self.clock()
  local n, first = sweep(c, now)
  if c.dead or c.pause or c.hold then
    local why, retry_in = refused(c, now, nil)
    if why then return nil, why, retry_in end
  end
  if n >= (c.capacity or capacity or 3) then return nil, "full", first - now end
  local state = self.state
  state.next_id = state.next_id + 1
  local id = "L" .. state.next_id
  local expires = now + self.lease
  c.leases[id] = { expires, false, holder }
  c.live = n + 1
  push_end(c, expires, id)
  return id
end

-- For the channel authority of this process (lua/faceswap/channel.lua), its fast path:
-- M.channel(handle, channel) is the record of `channel` (a string, the authority's keys), made
-- if new, which the authority keeps (a channel's record is never replaced); M.take(handle, c,
-- capacity, rec) takes a slot of the channel whose record is `c` as acquire does, with an
-- integer lease id (acquire's are strings: "L" and the same counter), and `rec`, an array of
-- the caller's, as the lease's record: [1] is set here, the rest is the authority's, so that a
-- slot makes one table, not two, and the leases' ends are kept in one queue, this heap, not
-- two: rec[2] is an object whose method lease_ended(rec, now) is called once the lease ends
-- unrenewed (its record dropped here; not when it is released). Returns the id, or nil where
-- acquire would refuse or check (a closed handle, dead, paused, held, full): the caller then
-- asks acquire.
M.channel = record
function M.take(self, c, capacity, rec)
  if self.closed or c.dead or c.pause or c.hold then return nil end
  local now = self.clock()
  local n, ends = c.live, c.ends
  if ends[1] and ends[1] <= now then n = sweep(c, now) end
  if n >= (c.capacity or capacity) then return nil end
  local state = self.state
  local id = state.next_id + 1
  state.next_id = id
  local expires = now + self.lease
  rec[1] = expires
  c.leases[id] = rec
  c.live = n + 1
  push_end(c, expires, id)
  return id
end

-- The authority's fast path for a blocking command's hold (lua/faceswap/channel.lua's
-- exclusive), as take is for a slot: `c` the channel's record, `holder` the hold's id. Takes
-- the hold as hold does and returns true when nothing would refuse it (the handle closed, the
-- channel dead or paused, or held by another whose hold has not expired); else nil, and the
-- caller takes the slow path, which says why. No sweep of the leases: a hold counts none.
function M.hold(self, c, holder)
  if self.closed or c.dead or c.pause then return nil end
  local now, h = self.clock(), c.hold
  if h and h.holder ~= holder and h.expires > now then return nil end
  c.hold = { holder = holder, expires = now + self.lease }
  return true
end

-- Its end, as unhold without the sweep: drops `holder`'s hold of the open handle's record `c`.
function M.unhold(c, holder)
  local h = c.hold
  if h and h.holder == holder then c.hold = false end
end

function Coordinator:renew(channel, lease_id)
  check(self, channel)
  local c, now = record(self, channel), self.clock()
  sweep(c, now)
  local l = c.leases[lease_id]
  if not l then return false end
  l[1] = now + self.lease
  push_end(c, l[1], lease_id)
  compact(c)
  return true
end

function Coordinator:release(channel, lease_id)
  local c = not self.closed and self.state.channels[channel] or checked(self, channel)
  sweep(c, self.clock())
  local live = c.leases[lease_id] ~= nil
  if live then
    c.leases[lease_id] = nil
    c.live = c.live - 1
    compact(c)
  end
  return live
end

function Coordinator:running(channel)
  local c = not self.closed and self.state.channels[channel] or checked(self, channel)
  return (sweep(c, self.clock()))
end
M.running = Coordinator.running -- (for the authority's fast path, as take)

function Coordinator:hold(channel, holder)
  check(self, channel)
  local c, now = record(self, channel), self.clock()
  sweep(c, now)
  local why, retry_in = refused(c, now, holder)
  if why then return nil, why, retry_in end
  c.hold = { holder = holder, expires = now + self.lease }
  return true
end

function Coordinator:unhold(channel, holder)
  check(self, channel)
  local c = record(self, channel)
  sweep(c, self.clock())
  if c.hold and c.hold.holder == holder then
    c.hold = false
    return true
  end
  return false
end

function Coordinator:holder(channel)
  check(self, channel)
  local c = record(self, channel)
  sweep(c, self.clock())
  return c.hold and c.hold.holder or nil
end

function Coordinator:pause(channel, until_)
  check(self, channel)
  local c = record(self, channel)
  if not c.pause or until_ > c.pause then c.pause = until_ end
  return c.pause
end

function Coordinator:paused(channel)
  check(self, channel)
  local c = record(self, channel)
  if c.pause and c.pause <= self.clock() then c.pause = false end
  return c.pause or nil
end

function Coordinator:kill(channel, reason)
  check(self, channel)
  local c = record(self, channel)
  c.dead = c.dead or tostring(reason)
  return c.dead
end

function Coordinator:dead(channel)
  local c = not self.closed and self.state.channels[channel] or checked(self, channel)
  return c.dead or nil
end

function Coordinator:learn(channel, capacity)
  check(self, channel)
  check_capacity(capacity)
  record(self, channel).capacity = capacity
end

function Coordinator:capacity(channel)
  local c = not self.closed and self.state.channels[channel] or checked(self, channel)
  return c.capacity or nil
end

function Coordinator:publish(jobid, json)
  check(self, jobid, "jobid")
  local state = self.state
  state.published[jobid] = { json = json, expires = self.clock() + math.max(KEEP_PUBLISHED, self.lease) }
  local waiting = state.waiters[jobid]
  state.waiters[jobid] = nil
  for t in pairs(waiting or {}) do t.sched:wake(t.task) end
end

local function published(self, jobid)
  local p = self.state.published[jobid]
  if p and p.expires <= self.clock() then
    self.state.published[jobid], p = nil, nil
  end
  return p and p.json or nil
end

function Coordinator:wait_published(jobid, timeout)
  check(self, jobid, "jobid")
  local deadline = self.clock() + timeout
  local json = published(self, jobid)
  local sched = self.sched
  local me = sched and sched:current()
  while not json and self.clock() < deadline do
    if me then
      local w = self.state.waiters[jobid] or {}
      self.state.waiters[jobid] = w
      local entry = { sched = sched, task = me }
      w[entry] = true
      sched:park(core.now() + (deadline - self.clock()))
      w[entry] = nil
    elseif sched then
      sched:step(math.max(deadline - self.clock(), 0), true)
    else
      core.sleep(math.min(math.max(deadline - self.clock(), 0), 0.05))
    end
    json = published(self, jobid)
  end
  return json
end

function Coordinator:close()
  self.closed = true
end

return M
