-- faceswap.channel: one authority per channel (an account's Discord channel) of a client.
--
-- What a channel allows is decided here, in one object per channel that every call passes
-- through: the exclusive hold of a blocking command (saveid, listid...: upstream refuses a
-- second call on the channel while one runs), and whether an answer says the account cannot
-- work at all (a dead channel, which a batch takes out of use). The state lives in this
-- process; the batch's learned queue sizes are still its own (lua/faceswap/init.lua).
local tasks = require "faceswap.task"
local core = require "faceswap.core"

local M = {}

local Channel = {}
Channel.__index = Channel

-- The holder of a hold taken where no task can yield: outside every task, or inside a task at
-- a C boundary (a gsub callback). Such a holder blocks until its call ends and releases the
-- hold whatever happens (see exclusive), so it is never left holding.
local BLOCKING = setmetatable({}, { __tostring = function() return "blocking caller" end })

-- The channels of one client, made as they are first named; `key` nil: the calls that name no
-- channel (and have no client default), which share one object of their own.
function M.registry(sched)
  local by_key, NONE = {}, {}
  return function(channel)
    local key = channel or NONE
    local ch = by_key[key]
    if not ch then
      ch = setmetatable({ id = channel, sched = sched, holder = nil, waiters = {},
                          on_release = setmetatable({}, { __mode = "k" }) }, Channel)
      by_key[key] = ch
    end
    return ch
  end
end

-- Whether the holder is gone without releasing: a task that ended (cancelled while it waited,
-- which no pcall sees).
local function gone(holder)
  return holder ~= BLOCKING and holder:done()
end

-- Whether a blocking command of someone else holds the channel now.
function Channel:held()
  local holder = self.holder
  if holder and gone(holder) then
    self:release()
    holder = self.holder
  end
  return holder ~= nil
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
    return
  end
  if self:held() then
    local waiters = self.waiters
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
  end
  self.holder = me
end

-- Ends the hold: hands it to the first waiter still alive, else frees the channel and tells
-- whoever asked to know (a batch waiting to post there).
function Channel:release()
  local waiters = self.waiters
  while waiters[1] do
    local t = table.remove(waiters, 1)
    if not t:done() then
      self.holder = t
      self.sched:wake(t)
      return
    end
  end
  self.holder = nil
  for _, fn in pairs(self.on_release) do fn(self) end
end

local function after(self, ok, ...)
  self:release()
  if not ok then error((...), 0) end
  return ...
end

-- Runs fn(...) holding the channel alone, and releases it whatever fn does: returns what fn
-- returned, or raises again what it raised, once the channel is free.
function Channel:exclusive(fn, ...)
  self:hold()
  return after(self, tasks.pcall(fn, ...))
end

-- Whether an answer says that the account behind the channel cannot work: the API token is
-- refused (401), the account has no subscription (402), or the channel has no configuration
-- (400 or 404 "Configuration not found for channel ..."). Nothing was created upstream for it.
function M.dead_answer(err)
  if type(err) ~= "table" then return false end
  if err.code == 401 or err.code == 402 then return true end
  return (err.code == 400 or err.code == 404) and type(err.error) == "string" and
    err.error:find("^Configuration not found") ~= nil
end

return M
