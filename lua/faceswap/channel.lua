-- faceswap.channel: one authority per channel (an account's Discord channel) of a client.
--
-- Everything that limits what a call may do on an account is decided here, in one object per
-- channel that every call with a channel passes through (headshot, every command, every batch
-- item):
--
--  * slots: the account's queue runs about 3 jobs at once and answers 429 "Unable to lock
--    Discord" beyond that. A job command takes a slot before its POST and waits for one when
--    none is free (a task parks; a call that cannot yield drives the client's other tasks). The
--    queue's size is learned: it starts at 3, and until a 429 is met each start raises it by
--    one (a slow start); a queue-full 429 while jobs run there means it holds that many; after
--    that many starts in a row one more is tried, in case room has grown. A slot is held from the POST
--    until the job is seen to end (the call's wait, a later client:wait or client:job, a
--    batch's wait). A job started without a wait keeps its
--    slot until a poll of this client sees it end, or for as long as the jobs this client saw
--    end on the channel took (the mean of the last 8, from the POST's answer to the poll that
--    saw the end); before any was seen, it is freed once the POST is answered, and the 429 that
--    may follow teaches the queue's size as above. Either way the slot is a lease of the
--    coordinator, renewed while its job is waited on, so a slot is never kept longer than
--    `lease` seconds by a holder that stopped (a cancelled task, a dead process).
--  * the exclusive hold of a blocking command (saveid, listid...): upstream refuses a second
--    call on the channel while one runs, so one holds it at a time; no slot is taken while it
--    is held.
--  * Discord's retry_after: a 429 that carries one pauses every caller on the channel until it
--    passes (a caller whose retry policy would not wait that long gets the error at once).
--  * a dead channel: an answer that says the account cannot work (401, 402, "Configuration not
--    found") takes the channel out of use for the client's lifetime; every later call there
--    fails at once, unsent, with the error that killed it.
--
-- The facts others must see live in the client's coordinator (lua/faceswap/coordinator/);
-- what belongs to this process (its waiting tasks, its requests on their way) lives here.
local tasks = require "faceswap.task"
local core = require "faceswap.core"
local retry = require "faceswap.retry"
local process = require "faceswap.coordinator.process"
local take, count = process.take, process.running -- (the fast paths' calls, without a lookup)
local hold_now, unhold_now = process.hold, process.unhold
local co_running = coroutine.running

local M = {}

M.START_CAPACITY = 3 -- a queue's size before any is learned
local DURATIONS = 8  -- job durations kept per channel, for a job started without a wait

local Channel = {}
Channel.__index = Channel

-- The holder of a slot or hold taken where no task can yield: outside every task, or inside
-- a task at a C boundary (a gsub callback). Such a holder blocks until its call ends and
-- releases what it took whatever happens, so it is never left holding.
local BLOCKING = setmetatable({}, { __tostring = function() return "blocking caller" end })

-- Whether an owner is gone without releasing: a task that ended (cancelled while it waited,
-- which no pcall sees).
local function gone(owner)
  -- (owner._result: what task:done() reads, without its check of the argument: an owner here
  -- is always a task of faceswap.task's shape, BLOCKING, or nil or false for none)
  return owner and owner ~= BLOCKING and owner._result ~= nil
end

local Registry = {}
Registry.__index = Registry
-- (Registry.of itself, set below: a call through the metatable, not a second one)

-- The channels of one client, made as they are first named (`channel` nil: the calls that
-- name no channel and have no client default, which share one object of their own, "" for
-- the coordinator). `coord` the client's coordinator.
-- What each coordinator method answers once the client is closed (a close from a finalizer
-- while a call runs): the call goes on to its answer or its 'client closed' error, and its
-- bookkeeping neither raises nor waits.
local WHEN_CLOSED = {
  acquire = function() return "closed" end, hold = function() return true end,
  renew = function() return false end, release = function() return false end,
  unhold = function() return false end, running = function() return 0 end,
  now = function() return core.now() end,
}
local function guarded(coord)
  return setmetatable({ lease = coord.lease }, { __index = function(t, name)
    local fn = function(_, ...)
      if coord.closed then
        local f = WHEN_CLOSED[name]
        if f then return f() end
        return nil
      end
      return coord[name](coord, ...)
    end
    rawset(t, name, fn)
    return fn
  end })
end

-- `clock` (core.now by default) is for specs: the time the records' ends are read in, the same
-- as the coordinator's (a spec gives both the same clock of its own).
-- (`raw`: the coordinator itself when it is an in-process one, for the fast paths of acquire
-- and answered.)
local PROCESS_MT = getmetatable(process.new())
function M.registry(sched, coord, clock)
  local raw = getmetatable(coord) == PROCESS_MT and coord or false
  clock = clock or core.now
  coord = guarded(coord)
  local prefix = ("p%s-"):format(tostring({}):match("0x(%x+)") or tostring(os.time()))
  return setmetatable({ sched = sched, coord = coord, by_key = {}, jobs = {}, ids = 0,
                        prefix = prefix, lease = coord.lease or 60, clock = clock,
                        raw = raw }, Registry)
end

-- A holder id, unique in this process (the coordinator sees several processes' holders).
function Registry:id()
  self.ids = self.ids + 1
  return self.prefix .. self.ids
end

-- A channel's `on_release`: who asked to hear of room (a batch sets its function there, and
-- nil when done; weak: gone with the batch). Kept in a table of its own behind an empty one,
-- so that a first watcher is told (ch.watched) and a request answered while nobody ever
-- watched makes no call to see whether the table is empty.
local function watchers(ch)
  local fns = setmetatable({}, { __mode = "k" })
  return setmetatable({}, {
    __newindex = function(_, k, v)
      if v ~= nil then ch.watched = true end
      fns[k] = v
    end,
    __index = fns, fns = fns })
end
local function watching(ch) return getmetatable(ch.on_release).fns end

-- (by_key's key for a nil channel is false: a job command looks its channel up there first,
-- `by_key[channel or false]`, before calling this)
function Registry.of(self, channel)
  local key = channel or false
  local ch = self.by_key[key]
  if not ch then
    ch = setmetatable({ id = channel, key = channel or "", reg = self, sched = self.sched,
      coord = self.coord,
      -- the exclusive hold, as this process has it (hold_taken: the coordinator gave it)
      holder = nil, hold_id = nil, hold_taken = false, hold_at = 0, hold_waiters = {},
      waiters = {},      -- callers waiting for a slot, in order: { task = t or BLOCKING, refused }
      leases = {},       -- lease id -> its record (see record below)
      end_at = {}, end_id = {}, end_head = 1, end_tail = 0, -- the leases' ends, in order (expire)
      posting = 0,       -- requests on their way with a slot of ours
      settling = {},     -- tasks waiting until none is on its way
      streak = 0,        -- starts in a row since the size was last learned
      guess = M.START_CAPACITY, -- the size used until a 429 teaches it (see answered)
      durations = {},    -- the last jobs' durations (seconds)
      on_release = nil,  -- who asked to hear of room (a batch): see watchers below
      watched = false,   -- whether anyone ever did (answered's fast path looks no further)
      raw = self.raw,    -- the registry's in-process coordinator, for the fast paths,
      crec = self.raw and process.channel(self.raw, channel or ""), -- and its record there
    }, Channel)
    ch.on_release = watchers(ch)
    -- (the methods every job command calls, on the object itself: no __index a call)
    ch.acquire, ch.answered = Channel.acquire, Channel.answered
    self.by_key[key] = ch
  end
  return ch
end
Registry.__call = Registry.of

-- The record of a slot of ours: one array, made with every field at once (a table of named
-- fields cost a hash insert each, about twice the table), its fields at these indices (false
-- when unset):
local CH = 2      -- its channel
local LEASE = 3   -- its lease id
local OWNER = 4   -- the caller that took it (false once a job has it)
local ENDS = 5    -- when the coordinator's lease ends unless renewed, as this process reads it
                  -- (false for a slot of the in-process coordinator's take, which tells
                  -- lease_ended: false until its request outlives the lease)
local JOBID = 6   -- the job's, once a job has the slot (jobs[jobid] is then this record)
local POSTED = 7  -- when the job's POST was answered
local WATCHER = 8 -- who waits on the job
local RENEWED = 9 -- when its waiter last renewed it
-- and [1] the in-process coordinator's own (the same table is the lease's record there: see
-- its take, and the fast path of acquire).
local function record(ch, lease, owner, ends)
  return { false, ch, lease, owner, ends, false, false, false, false }
end

-- The slot of a job of ours, if it still has one: its record.
function Registry:slot(jobid)
  local s = jobid ~= nil and self.jobs[jobid] -- (only strings are keys there)
  if s and s[CH].leases[s[LEASE]] ~= s then
    self.jobs[jobid], s = nil, nil
  end
  return s
end

-- A poll saw job `jobid` end: its slot is free.
function Registry:ended(jobid)
  local l = self:slot(jobid)
  if not l then return end
  local d = l[POSTED] and self.clock() - l[POSTED]
  if d then
    local list = l[CH].durations
    list[#list + 1] = d
    if #list > DURATIONS then table.remove(list, 1) end
  end
  l[CH]:release_slot(l[LEASE])
end

-- Someone waits on job `jobid`: its lease is renewed. `watch` true: the caller (the running
-- task, or a caller that cannot yield) starts watching it, until unwatch.
function Registry:renew(jobid, watch)
  local l = self:slot(jobid)
  if not l then return end
  if watch then l[WATCHER] = self.sched:current() or BLOCKING end
  local now = self.clock()
  -- (never renewed: the lease is as old as its end tells, the coordinator's at [1] or ENDS,
  -- so a wait that begins just after its POST asks nothing of the coordinator; a record kept
  -- past its lease's end has RENEWED 0, see expire)
  if now - (l[RENEWED] or (l[1] or l[ENDS] or 0) - self.lease) >= self.lease / 4 then
    l[RENEWED] = now
    local ch, id = l[CH], l[LEASE]
    if ch.coord:renew(ch.key, id) then
      if l[ENDS] then -- (else the in-process coordinator tells when it ends: lease_ended)
        l[ENDS] = self.clock() + self.lease
        ch:push_end(l[ENDS], id)
      end
    else
      ch:forget(id)
    end
  end
end

-- The wait on job `jobid` is over (it returned, or gave up): nobody watches its slot now, so
-- it is freed as a job started without a wait is (see the top of this file).
function Registry:unwatch(jobid)
  local l = self:slot(jobid)
  if l then l[WATCHER] = false end
end

---------------------------------------------------------------------------------------------
-- Dead channels
---------------------------------------------------------------------------------------------

-- Whether an answer says that the account behind the channel cannot work: the API token is
-- refused (401), the account has no subscription (402), or the channel has no configuration
-- (400 or 404 "Configuration not found for channel ..."). Nothing was created upstream for it.
function M.dead_answer(err)
  if type(err) ~= "table" then return false end
  if err.code == 401 or err.code == 402 then return true end
  return (err.code == 400 or err.code == 404) and type(err.error) == "string" and
    err.error:find("^Configuration not found") ~= nil
end

-- The reason a dead channel is recorded with, for every process to read: the error as one
-- flat JSON object {"kind":..,"code":..,"error":..,"errorDetails":..}, written and read here
-- (no JSON module: a C host of the static library has none but the core's private one).
local function quote(v)
  return '"' .. tostring(v):gsub('[%c"\\]', function(c)
    return c == '"' and '\\"' or c == "\\" and "\\\\" or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_reason(err)
  local parts = { '"kind":' .. quote(err.kind or "invalid_request") }
  if type(err.code) == "number" then parts[#parts + 1] = '"code":' .. string.format("%d", err.code) end
  parts[#parts + 1] = '"error":' .. quote(err.error or "")
  if type(err.errorDetails) == "string" then
    parts[#parts + 1] = '"errorDetails":' .. quote(err.errorDetails)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The string value of field `name` in a reason written by encode_reason, unescaped; nil if
-- it has none.
local function field(reason, name)
  local key = '"' .. name .. '":"'
  local at = reason:find(key, 1, true)
  if not at then return nil end
  local out, k = {}, at + #key
  while k <= #reason do
    local c = reason:sub(k, k)
    if c == '"' then return table.concat(out) end
    if c == "\\" then
      local e = reason:sub(k + 1, k + 1)
      if e == "u" then
        out[#out + 1] = string.char((tonumber(reason:sub(k + 2, k + 5), 16) or 63) % 256)
        k = k + 6
      else
        out[#out + 1] = e
        k = k + 2
      end
    else
      out[#out + 1] = c
      k = k + 1
    end
  end
  return nil
end

-- The error that took the channel out of use, as a later call gets it (unsent), or nil.
function Channel:dead()
  local reason = self.coord:dead(self.key)
  if not reason then return nil end
  if self.dead_reason ~= reason then
    self.dead_reason, self.dead_error = reason, core.error {
      kind = field(reason, "kind") or "invalid_request",
      code = tonumber(reason:match('"code":(%d+)')),
      error = field(reason, "error") or reason,
      errorDetails = field(reason, "errorDetails"),
      retryable = false, sent = false }
  end
  return self.dead_error
end

-- Takes the channel out of use for good on `err`, an answer that says it cannot work.
function Channel:kill(err)
  self.coord:kill(self.key, encode_reason(err))
  self:room()
end

---------------------------------------------------------------------------------------------
-- Waiting
---------------------------------------------------------------------------------------------

-- Waits up to `seconds` (at most 1: what others do elsewhere is seen by looking again) for a
-- wake: a task parks; a caller that cannot yield drives the client's other tasks meanwhile.
local function pause_for(self, me, seconds)
  seconds = math.max(math.min(seconds or 1, 1), 0.001)
  if me ~= BLOCKING then
    self.sched:park(core.now() + seconds)
  else
    self.sched:step(seconds, true) -- nested: the other tasks run, this caller not
  end
end

-- The error of a call that would wait longer for a pause than its policy lets it.
local function paused_error(self, left)
  return core.error { kind = "rate_limited", code = 429, retryable = true, sent = false,
    retry_after = left, error = string.format("channel %s paused by Discord's rate limit for %g " ..
      "more seconds", self.id or "(the default)", math.ceil(left)) }
end

-- Tells whoever waits that room may have come: the first slot waiter, the batches watching.
function Channel:room()
  local w = self.waiters
  while w[1] and gone(w[1].task) do table.remove(w, 1) end
  if w[1] and w[1].task ~= BLOCKING then self.sched:wake(w[1].task) end
  if not self.watched then return end
  local fns = watching(self)
  if next(fns) == nil then return end
  for _, fn in pairs(fns) do fn(self) end
end

---------------------------------------------------------------------------------------------
-- Slots
---------------------------------------------------------------------------------------------

-- Frees the leases whose owner is gone, and those of jobs started without a wait (or whose
-- waiter is gone) once they have run as long as the jobs seen end here took. True when any.
function Channel:sweep()
  local freed, now, estimate = false, self.reg.clock(), nil
  for id, l in pairs(self.leases) do
    local drop = not l[JOBID] and gone(l[OWNER])
    if not drop and l[JOBID] and (not l[WATCHER] or gone(l[WATCHER])) then
      if not estimate then
        estimate = 0
        for _, d in ipairs(self.durations) do estimate = estimate + d end
        estimate = #self.durations > 0 and estimate / #self.durations or 0
      end
      drop = now - l[POSTED] >= estimate
    end
    if drop then
      if not l[JOBID] then self.posting = self.posting - 1 end
      self:forget(id)
      self.coord:release(self.key, id)
      freed = true
    end
  end
  if freed then self:settled() end
  return freed
end

-- Queues the end `t` of lease `id`: every end is a time read then plus the lease, so the queue
-- stays in the order of the ends. A lease renewed since has a later entry too; the earlier
-- one is stale (its time is not the record's `ends`) and is dropped when it comes first.
function Channel:push_end(t, id)
  local tail = self.end_tail + 1
  self.end_at[tail], self.end_id[tail], self.end_tail = t, id, tail
end

-- Drops the records whose lease can no longer be live: the coordinator let it expire (its end
-- passed unrenewed), so the slot is back in the pool whatever this process still knew of it.
-- Else a client that starts jobs without waiting for them, whose queue size is still a guess
-- (never full), kept one record per job for its lifetime. A record whose request is still on
-- its way keeps its place for as long again (its answer settles it), unless its owner is gone.
-- Costs a look at the queue's first entry, and one step per entry dropped.
function Channel:expire(now)
  local at, ids, leases = self.end_at, self.end_id, self.leases
  local head = self.end_head
  while head <= self.end_tail and at[head] <= now do
    local t, id = at[head], ids[head]
    at[head], ids[head] = nil, nil
    head = head + 1
    self.end_head = head
    local l = leases[id]
    if l and l[ENDS] == t then
      if l[JOBID] then
        self:forget(id)
      elseif gone(l[OWNER]) then
        self.posting = self.posting - 1
        self:forget(id)
        self.coord:release(self.key, id)
        self:settled()
      else
        l[ENDS], l[RENEWED] = now + self.reg.lease, 0 -- (its lease is gone: renew asks)
        self:push_end(l[ENDS], id)
      end
    end
  end
end

-- The in-process coordinator dropped lease `l` of a slot its take gave (see the fast path of
-- acquire), whose end passed unrenewed: as expire does for the others, at its end.
function Channel:lease_ended(l, now)
  local id = l[LEASE]
  if self.leases[id] ~= l then return end
  if l[JOBID] then
    self:forget(id)
  elseif gone(l[OWNER]) then
    self.posting = self.posting - 1
    self:forget(id)
    self:settled()
  else
    -- its request is on its way: kept as long again, on this process's clock (expire)
    l[ENDS], l[RENEWED] = now + self.reg.lease, 0
    if self.reg.clock ~= self.reg.raw.clock then l[ENDS] = self.reg.clock() + self.reg.lease end
    self:push_end(l[ENDS], id)
  end
end

-- Drops a lease from this process's books (its job's too).
function Channel:forget(id)
  local l = self.leases[id]
  if not l then return end
  self.leases[id] = nil
  local jobs = self.reg.jobs
  local jobid = l[JOBID]
  if jobid and jobs[jobid] == l then jobs[jobid] = nil end
end

-- The slots taken here now, by every process (requests on their way and jobs running).
function Channel:load()
  self:sweep()
  return self.coord:running(self.key)
end

-- One try for a slot, without waiting: the lease, or nil, why, retry_in (why also "queued":
-- callers of this process wait for it before us). `ahead`: we are the first of them.
function Channel:try(owner, ahead)
  if not ahead and self.waiters[1] then
    self:room()
    if self.waiters[1] then return nil, "queued", 1 end
  end
  local coord, clock = self.coord, self.reg.clock
  local asked = clock()
  if self.end_head <= self.end_tail then self:expire(asked) end
  local lease, why, retry_in = coord:acquire(self.key, self.reg:id(), self.guess)
  if not lease and (why == "full" and self:sweep() or why == "held" and not self:held_by_other()) then
    asked = clock()
    lease, why, retry_in = coord:acquire(self.key, self.reg:id(), self.guess)
  end
  if not lease then return nil, why, retry_in end
  -- (the time read after the coordinator took it: its lease ends no later than this one; and
  -- its age, for a renewal, counted from before it was asked: it began no sooner than that,
  -- however late its answer was read)
  local ends = clock() + self.reg.lease
  local l = record(self, lease, owner, ends)
  l[RENEWED] = asked
  self.leases[lease] = l
  self:push_end(ends, lease)
  self.posting = self.posting + 1
  return lease
end

-- Queues task `me` among `waiters` (first served first) and returns its entry: one `refused`
-- (it met a full queue) goes ahead of those not sent yet, behind those refused before it.
-- A batch's wait for the first channel with room (faceswap.batch) queues the same way.
function M.queue_waiter(waiters, me, refused)
  local entry = { task = me, refused = refused }
  local at = #waiters + 1
  if refused then
    at = 1
    while waiters[at] and waiters[at].refused do at = at + 1 end
  end
  table.insert(waiters, at, entry)
  return entry
end

-- Waits for a slot: the lease, or nil and the error the call gets (the channel is dead, or
-- paused longer than `max_pause` seconds). `refused`: the caller met a full queue, and waits
-- ahead of the callers not sent yet (behind those refused before it): else the one more slot
-- tried after each round of starts would be its again and again, each costing an attempt.
function Channel:acquire(refused, max_pause)
  local raw = self.raw
  if raw and not self.waiters[1] then
    -- the fast path: an in-process coordinator (nothing yields, no guard closure: its take
    -- refuses a closed handle itself) and nobody of ours waiting. A slot there is taken as try
    -- takes it, its record the coordinator's too, with an integer lease id, and its end kept in
    -- the coordinator's queue alone (it calls lease_ended); anything else (full, held, paused,
    -- dead, closed) takes the path below.
    if self.end_head <= self.end_tail then self:expire(self.reg.clock()) end -- (the others')
    -- (the owner: outside every coroutine no task runs, which one C call tells)
    local co, main = co_running()
    local owner = BLOCKING
    if co and not main then owner = self.sched:current() or BLOCKING end
    local l = { false, self, false, owner, false, false, false, false, false } -- (record's)
    local lease = take(raw, self.crec, self.guess, l)
    if lease then
      l[LEASE] = lease
      self.leases[lease] = l
      self.posting = self.posting + 1
      return lease
    end
  end
  local me = self.sched:current() or BLOCKING
  local entry
  while true do
    local dead = self:dead()
    if dead then break end
    local w = self.waiters
    while w[1] and gone(w[1].task) do table.remove(w, 1) end
    local lease, why, retry_in = self:try(me, entry == nil and not w[1] or w[1] == entry)
    if lease then
      if entry then
        for k = #w, 1, -1 do if w[k] == entry then table.remove(w, k) end end
        self:room() -- the next may have room too
      end
      return lease
    end
    if why == "paused" and retry_in > (max_pause or 120) then
      if entry then
        for k = #w, 1, -1 do if w[k] == entry then table.remove(w, k) end end
      end
      return nil, paused_error(self, retry_in)
    end
    if why ~= "dead" then
      entry = entry or M.queue_waiter(w, me, refused)
      pause_for(self, me, retry_in)
    end
  end
  if entry then
    local w = self.waiters
    for k = #w, 1, -1 do if w[k] == entry then table.remove(w, k) end end
    self:room()
  end
  return nil, self:dead()
end

-- Frees a slot now.
function Channel:release_slot(id)
  local l = self.leases[id]
  if not l then return end
  if not l[JOBID] then self.posting = self.posting - 1 end
  self:forget(id)
  self.coord:release(self.key, id)
  self:settled()
  self:room()
end

-- Wakes the tasks waiting until no request of ours is on its way here.
function Channel:settled()
  if self.posting > 0 then return end
  local s = self.settling
  for k = #s, 1, -1 do self.sched:wake(table.remove(s, k)) end
end

-- What an answer to a request made with slot `lease` teaches: a job started (the queue holds
-- at least what runs; after as many starts in a row as it holds, one more is tried), a
-- queue-full 429 (it holds what runs now: no more until delay() knows better), Discord's
-- retry_after (every caller pauses), an account that cannot work (dead). The slot stays with
-- the job when `keep` (a job that runs: true, or its jobid); else it is free. Returns true for
-- a queue-full 429.
function Channel:answered(lease, job, err, keep)
  local l = self.leases[lease]
  local raw = self.raw
  if keep and l and raw then
    -- the fast path: a job that runs keeps the slot of an in-process coordinator whose queue's
    -- size is still a guess (its record read directly, no guard closure: the handle may be
    -- closed, whose state stays readable). (`keep` true or a jobid, which a job has as a
    -- string: no type check here)
    local jobid = keep
    if jobid == true then jobid = job.jobid end
    if not self.crec.capacity and jobid then
      self.guess = self.guess + 1 -- a slow start (below)
      local posting = self.posting - 1
      self.posting = posting
      local reg = self.reg
      l[OWNER], l[JOBID], l[POSTED] = false, jobid, reg.clock()
      reg.jobs[jobid] = l
      if posting <= 0 and self.settling[1] then self:settled() end
      if self.waiters[1] or self.watched then self:room() end -- the next may go
      return false
    end
  end
  local coord, key = self.coord, self.key
  -- an in-process coordinator is asked without its guard closure: its record read directly,
  -- and its running() called only just after its handle is seen open (a client closed by a
  -- finalizer meanwhile then counts 0, as the guard answers)
  local c = self.crec
  local full, wake = false, false
  if job then
    local capacity
    if c then capacity = c.capacity else capacity = coord:capacity(key) end
    if not capacity then
      -- no 429 met yet: the size is a guess, which each start raises by one (a slow start)
      self.guess = self.guess + 1
      wake = true
    else
      local run
      if c and not raw.closed then run = count(raw, key) else run = coord:running(key) end
      if run > capacity then capacity = run coord:learn(key, capacity) end
      self.streak = self.streak + 1
      if self.streak >= capacity then
        coord:learn(key, capacity + 1)
        self.streak = 0
      end
    end
  end
  if not job and type(err) == "table" and err.kind == "rate_limited" and err.retry_after == nil then
    -- a queue full: it holds what runs, our slot left out. Learned before that slot is freed:
    -- where coordinator calls yield (Redis), others would take it meanwhile at the old size
    coord:learn(key, math.max(coord:running(key) - (l and 1 or 0), 1))
    self.streak, full = 0, true
  end
  local jobid = l and job and keep and (keep == true and job.jobid or keep)
  if type(jobid) == "string" then
    local posting = self.posting - 1
    self.posting = posting
    l[OWNER], l[JOBID], l[POSTED], l[WATCHER] = false, jobid, self.reg.clock(), false
    self.reg.jobs[jobid] = l
    if posting <= 0 then self:settled() end
    -- the next probe may go
    if wake and (self.waiters[1] or self.watched) then self:room() end
  elseif l then
    self:release_slot(lease)
  end
  if not job then self:observe(err) end
  return full
end

-- What any answer on the channel says about it: dead, or paused by Discord.
function Channel:observe(err)
  if type(err) ~= "table" then return end
  if M.dead_answer(err) then
    self:kill(err)
  elseif err.kind == "rate_limited" and type(err.retry_after) == "number" and err.retry_after > 0 then
    self.coord:pause(self.key, self.coord:now() + err.retry_after)
  end
end

local ask_hold -- (with the exclusive hold, below)

-- Whether the caller may go on now: nil, or the error it gets (dead; paused longer than
-- `max_pause`). Waits out a pause that is not, then takes the hold the pause kept the caller
-- from, or renews one older than a quarter of its lease, which nothing else renews (a
-- blocking command never runs without it). For the calls that take no slot (blocking).
function Channel:ready(max_pause)
  local c = self.crec
  -- the fast path: the hold taken less than a quarter of its lease ago, the in-process
  -- coordinator open, the channel neither dead nor paused there (what the lookups below would
  -- find; an older hold is asked again below, which renews it)
  if c and self.hold_taken and not (c.dead or c.pause or self.raw.closed) and
      core.now() - self.hold_at < self.reg.lease / 4 then
    return nil
  end
  local me = self.sched:current() or BLOCKING
  while true do
    local dead = self:dead()
    if dead then return dead end
    local until_ = self.coord:paused(self.key)
    if not until_ then
      -- (a hold taken a quarter of its lease ago is asked again, which renews it: it may have
      -- run out during the pause, a retry's backoff, or the command it was handed over from)
      if not self.hold_id or self.hold_taken and core.now() - self.hold_at < self.reg.lease / 4 or
          ask_hold(self, me) then
        return nil
      end
      until_ = self.coord:paused(self.key) or self.coord:now() -- (paused again, or dead: look again)
    end
    local left = until_ - self.coord:now()
    if left > (max_pause or 120) then return paused_error(self, left) end
    pause_for(self, me, left)
  end
end

-- Waits until no request of ours is on its way here (settled() wakes the waiting tasks): the
-- task `me` parks, a second at a time; a caller that cannot park (me false or nil) drives the
-- client's other tasks and transfers meanwhile.
local function settle(self, me)
  while self.posting > 0 do
    if me then
      self.settling[#self.settling + 1] = me
      self.sched:park(core.now() + 1)
      for k = #self.settling, 1, -1 do
        if self.settling[k] == me then table.remove(self.settling, k) end
      end
    else
      self.sched:step(1, true)
    end
    self:sweep()
  end
end

-- The wait before the next try after `err` (the retry policy's delay): after a queue-full 429,
-- once our other requests on their way here are answered, the queue holds the jobs that run;
-- with some running the next try waits for a slot (a delay of 0), with none it waits as the
-- policy says.
function Channel:delay(err, attempt, o)
  if err.kind == "rate_limited" then
    -- the caller that met Discord's retry_after waits it as its policy says (the others wait
    -- in acquire or ready, for what is left of the pause)
    if err.retry_after ~= nil then return retry.delay(err, attempt, o) end
    local me = self.sched:current()
    settle(self, me)
    local running = self.coord:running(self.key)
    if running > 0 then
      self.coord:learn(self.key, running)
      self.streak = 0
      return 0
    end
  end
  return retry.delay(err, attempt, o)
end

---------------------------------------------------------------------------------------------
-- The exclusive hold
---------------------------------------------------------------------------------------------

-- Whether a blocking command of someone else in this process holds the channel now (a
-- holder that ended without releasing it is dropped).
function Channel:held()
  local holder = self.holder
  if holder and gone(holder) then
    self:release()
    holder = self.holder
  end
  return holder ~= nil
end

-- Whether someone holds the channel that is not a caller of this process that is gone.
function Channel:held_by_other()
  if self.holder then return self:held() end
  return self.coord:holder(self.key) ~= nil
end

-- Asks the coordinator for the hold (self.hold_id) until it gives it, waiting while another
-- process has it: true, or false while the channel is dead or paused (the call sees the one
-- and waits the other out in ready(), within its max_pause, then asks again). Once it has the
-- hold, no slot is given; the requests of ours already on their way there are let land first,
-- so the command never meets them upstream (each would be a 429 there).
function ask_hold(self, me)
  while true do
    local ok, why, retry_in = self.coord:hold(self.key, self.hold_id)
    if ok then break end
    if why == "dead" or why == "paused" then return false end
    pause_for(self, me, retry_in)
  end
  self.hold_taken, self.hold_at = true, core.now()
  settle(self, me ~= BLOCKING and me)
  return true
end

-- Takes the hold in the coordinator for the local holder (see ask_hold).
local function hold_upstream(self, me)
  self.hold_id, self.hold_taken = self.reg:id(), false
  if not ask_hold(self, me) then settle(self, me ~= BLOCKING and me) end
end

-- Takes the exclusive hold, waiting for the holder to release it. A task that can yield parks
-- (the holder's release hands the hold over and wakes it); a caller that cannot yield (outside
-- every task, or inside one at a C boundary) drives the client's other tasks and transfers
-- meanwhile, without resuming itself, until the hold is free.
function Channel:hold()
  local sched = self.sched
  local me = sched:current()
  if not me then
    while self:held() do
      -- nested: also from inside a task that cannot yield; the other tasks run, this one not
      sched:step(1, true)
    end
    self.holder = BLOCKING
    return hold_upstream(self, BLOCKING)
  end
  if self:held() then
    local waiters = self.hold_waiters
    waiters[#waiters + 1] = me
    -- release() hands the hold over and wakes us; a holder that ended without releasing it (a
    -- cancelled task) is noticed within a second
    repeat
      sched:park(core.now() + 1)
      if self.holder ~= me then self:held() end -- takes it back from a holder that is gone
    until self.holder == me or self.holder == nil
    for k = #waiters, 1, -1 do
      if waiters[k] == me then table.remove(waiters, k) end
    end
    if self.holder == me then return end -- handed over with the coordinator's hold
  end
  self.holder = me
  return hold_upstream(self, me)
end

-- Ends the hold: hands it to the first waiter still alive, else frees the channel and tells
-- whoever waits for room.
function Channel:release()
  local waiters = self.hold_waiters
  while waiters[1] do
    local t = table.remove(waiters, 1)
    if not t:done() then
      self.holder = t
      self.sched:wake(t)
      return
    end
  end
  self.holder = nil
  local id, raw = self.hold_id, self.raw
  if id then
    if raw and not raw.closed then unhold_now(self.crec, id) else self.coord:unhold(self.key, id) end
    self.hold_id = nil
  end
  self:room()
end

-- The renewal of the hold while the command's request is on its way (the scheduler's
-- transfer asks, given the channel as its `hold`): nothing else renews it then, and a hold
-- that outlived its lease lets a job (of this process or another) take a slot while the
-- command still runs upstream, where it meets the 429 of a busy channel.
--
-- renewal(): when the hold must next be renewed (core.now's clock: a quarter of the lease
-- after it was last taken), or nil when no renewal is needed: no hold, or a caller that cannot
-- yield on the in-process coordinator (nothing else of this process runs while its request
-- does, and no other process shares that coordinator).
function Channel:renewal()
  if not self.hold_id or self.raw and self.holder == BLOCKING then return nil end
  return self.hold_at + self.reg.lease / 4
end

-- renew_hold(): renews the hold if a quarter of its lease has passed since it was last taken
-- (as a wait renews a job's slot: Registry:renew), as ready() does before a request; returns
-- when the next renewal is due, or nil once there is no hold to keep (it ended, or its holder
-- is gone: a cancelled task). A renewal refused (the channel paused or dead meanwhile,
-- another holder's since the hold ran out, the coordinator out of reach) is tried again a
-- quarter of the lease later, and the next ready() asks for the hold again.
function Channel:renew_hold()
  local id, holder = self.hold_id, self.holder
  if not id or holder == nil or gone(holder) then return nil end
  local quarter, now = self.reg.lease / 4, core.now()
  if now - self.hold_at < quarter then return self.hold_at + quarter end
  local raw, ok = self.raw
  if raw and not raw.closed then ok = hold_now(raw, self.crec, id) else ok = self.coord:hold(self.key, id) end
  if self.hold_id ~= id then return nil end -- (ended while the coordinator answered)
  if not ok then
    self.hold_taken = false
    return now + quarter
  end
  self.hold_taken, self.hold_at = true, core.now()
  return self.hold_at + quarter
end

local function after(self, ok, ...)
  self:release()
  if not ok then error((...), 0) end
  return ...
end

-- Runs fn(...) holding the channel alone, and releases it whatever fn does: returns what fn
-- returned, or raises again what it raised, once the channel is free.
function Channel:exclusive(fn, ...)
  local raw = self.raw
  if raw and not self.holder and self.posting == 0 then
    -- the fast path: an in-process coordinator, nobody of ours holding the channel and no
    -- request of ours on its way (nothing to wait for or settle): the hold taken there at
    -- once, under this channel's own id (one holder of it at a time in this process, as when
    -- release hands the hold over), and the owner told as acquire tells it. Anything else
    -- (held, dead, paused, closed) takes hold()'s path.
    local id = self.own_hold_id or self.reg:id()
    if hold_now(raw, self.crec, id) then
      local co, main = co_running()
      local me = BLOCKING
      if co and not main then me = self.sched:current() or BLOCKING end
      self.own_hold_id, self.holder, self.hold_id, self.hold_taken = id, me, id, true
      self.hold_at = core.now()
      return after(self, tasks.pcall(fn, ...))
    end
  end
  self:hold()
  return after(self, tasks.pcall(fn, ...))
end

return M
