-- faceswap.coordinator.redis_scripts: what every Redis coordinator shares: the key layout and
-- the EVAL scripts of the coordinator interface (lua/faceswap/coordinator/init.lua), and the
-- interface's methods built on them (M.methods), over each coordinator's own I/O. The
-- plain-Lua coordinator (hiredis) and the one inside nginx (lua-resty-redis on cosockets) run
-- these texts on these keys, so a process and an nginx worker naming the same Redis share
-- every channel's slots, hold, pause, death and learned capacity.
--
-- KEYS, all under one prefix (PREFIX, "faceswap:"), for a channel CH ("" for the calls that
-- name no channel); the braces make a channel's two keys one Redis Cluster hash slot:
--   faceswap:epoch          the epoch: written once, by the first client that connects (the
--                           EPOCH script); every script checks it, so a Redis restarted empty
--                           (or flushed) is noticed instead of silently starting over
--   faceswap:{CH}:leases    sorted set: lease id -> its end (Redis's clock, seconds)
--   faceswap:{CH}:state     hash: capacity, dead, pause, holder, hold_until, next
--   faceswap:job:JOBID      a published job's JSON, kept KEEP_PUBLISHED seconds (at least the
--                           lease)
--   faceswap:published      the pub/sub channel where each published jobid is announced
-- KEY holds these as string.format patterns to follow PREFIX (%s: the channel, or the jobid).
--
-- CALLING A SCRIPT: EVAL SCRIPTS[name] 3 KEYS[1..3] ARGV...
--   KEYS[1] the epoch key; KEYS[2], KEYS[3] a channel's leases and state keys (publish and
--   published: the job's key and the pub/sub channel)
--   ARGV[1] the epoch the caller read with EPOCH, ARGV[2] the lease (seconds), then the
--   method's own from ARGV[3] (ARGS names them)
-- A script answers {'epoch', current epoch or ''} when the epoch differs, else {'ok', value}
-- or, for acquire and hold, {why, retry_in} with why "dead", "paused", "held" or "full"
-- (retry_in a string number of seconds; none for "dead"). Times come from Redis's TIME.
-- EPOCH is called with 1 key (the epoch key) and answers {epoch, seconds, microseconds}.
local M = {}

M.PREFIX = "faceswap:"
M.KEEP_PUBLISHED = 600

M.KEY = {
  epoch = "epoch",
  leases = "{%s}:leases",
  state = "{%s}:state",
  job = "job:%s",
  published = "published",
}

-- Each script's own ARGV, from ARGV[3] on.
M.ARGS = {
  acquire = { "holder", "capacity" }, renew = { "lease_id" }, release = { "lease_id" },
  running = {}, hold = { "holder" }, unhold = { "holder" }, holder = {},
  pause = { "until" }, paused = {}, kill = { "reason" }, dead = {}, learn = { "capacity" },
  capacity = {}, publish = { "json", "seconds kept", "jobid", "pub/sub channel" },
  published = {},
}

-- Runs before every script's own text: the epoch check, the clock, and the helpers.
M.PRELUDE = [[
local e = redis.call('GET', KEYS[1])
if e ~= ARGV[1] then return {'epoch', e or ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[2])
local L, S = KEYS[2], KEYS[3]
local function num(x) return string.format('%.17g', x) end
local function touch() redis.call('EXPIRE', S, math.max(86400, math.ceil(2 * lease))) end
local function sweep()
  redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
  local h = redis.call('HMGET', S, 'holder', 'hold_until')
  if h[1] and tonumber(h[2]) <= now then redis.call('HDEL', S, 'holder', 'hold_until') end
end
local function refused(holder)
  local s = redis.call('HMGET', S, 'dead', 'pause', 'holder', 'hold_until')
  if s[1] then return {'dead'} end
  if s[2] then
    local p = tonumber(s[2])
    if p > now then return {'paused', num(p - now)} end
    redis.call('HDEL', S, 'pause')
  end
  if s[3] and s[3] ~= holder then return {'held', num(tonumber(s[4]) - now)} end
  return nil
end
local function keep_leases()
  local last = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', L, math.ceil(tonumber(last[2]) * 1000) + 1000) end
end
]]

-- Each method's own text (PRELUDE goes before it: see below).
local BODIES = {
  acquire = [[
sweep()
local r = refused(nil)
if r then return r end
local n = redis.call('ZCARD', L)
local cap = math.max(tonumber(redis.call('HGET', S, 'capacity') or ARGV[4]) or 3, 1)
if n >= cap then
  local first = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')
  return {'full', num(tonumber(first[2]) - now)}
end
local id = t[1] .. '.' .. t[2] .. '-' .. redis.call('HINCRBY', S, 'next', 1)
redis.call('ZADD', L, num(now + lease), id)
keep_leases()
touch()
return {'ok', id}
]],
  renew = [[
sweep()
if not redis.call('ZSCORE', L, ARGV[3]) then return {'ok', 0} end
redis.call('ZADD', L, 'XX', num(now + lease), ARGV[3])
keep_leases()
return {'ok', 1}
]],
  release = [[
sweep()
return {'ok', redis.call('ZREM', L, ARGV[3])}
]],
  running = [[
sweep()
return {'ok', redis.call('ZCARD', L)}
]],
  hold = [[
sweep()
local r = refused(ARGV[3])
if r then return r end
redis.call('HSET', S, 'holder', ARGV[3], 'hold_until', num(now + lease))
touch()
return {'ok', 1}
]],
  unhold = [[
sweep()
if redis.call('HGET', S, 'holder') ~= ARGV[3] then return {'ok', 0} end
redis.call('HDEL', S, 'holder', 'hold_until')
return {'ok', 1}
]],
  holder = [[
sweep()
return {'ok', redis.call('HGET', S, 'holder')}
]],
  pause = [[
local p = redis.call('HGET', S, 'pause')
if not p or tonumber(ARGV[3]) > tonumber(p) then
  redis.call('HSET', S, 'pause', ARGV[3])
  touch()
  p = ARGV[3]
end
return {'ok', p}
]],
  paused = [[
local p = redis.call('HGET', S, 'pause')
if p and tonumber(p) > now then return {'ok', p} end
if p then redis.call('HDEL', S, 'pause') end
return {'ok', false}
]],
  kill = [[
redis.call('HSETNX', S, 'dead', ARGV[3])
touch()
return {'ok', redis.call('HGET', S, 'dead')}
]],
  dead = [[
return {'ok', redis.call('HGET', S, 'dead')}
]],
  learn = [[
redis.call('HSET', S, 'capacity', ARGV[3])
touch()
return {'ok', 1}
]],
  capacity = [[
return {'ok', redis.call('HGET', S, 'capacity')}
]],
  -- KEYS[2] the job's key, KEYS[3] the pub/sub channel (as a key, unused as one); ARGV[3] its
  -- JSON, ARGV[4] seconds kept, ARGV[5] the jobid, ARGV[6] the pub/sub channel
  publish = [[
redis.call('SET', L, ARGV[3], 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[6], ARGV[5])
return {'ok', 1}
]],
  published = [[
return {'ok', redis.call('GET', L)}
]],
}

-- The whole text of each script: PRELUDE then its body.
M.SCRIPTS = {}
for name, body in pairs(BODIES) do M.SCRIPTS[name] = M.PRELUDE .. body end

-- A script's KEYS[2] and KEYS[3]: `channel`'s leases and state keys under `prefix`, or the
-- two of `channel` when it is a list (a published job's, another module's).
function M.keys(prefix, channel)
  if type(channel) == "table" then return channel[1], channel[2] end
  return prefix .. M.KEY.leases:format(channel), prefix .. M.KEY.state:format(channel)
end

-- The keys of a published job: its JSON's and the pub/sub channel's, under `prefix`.
function M.job_keys(prefix, jobid)
  return { prefix .. M.KEY.job:format(jobid), prefix .. M.KEY.published }
end

-- When a coordinator finds the epoch gone: the error its calls answer from then on, and the
-- flat JSON a dead channel's reason is (lua/faceswap/channel.lua reads it).
function M.lost(url, epoch_key)
  local why = ("Redis at %s lost the coordinator's state (its key %s is gone: Redis " ..
    "restarted empty, or was flushed); this client sends no more commands: make a new one")
    :format(url, epoch_key)
  return why, '{"kind":"transport","error":"' .. why:gsub('[%c"\\]', function(c)
    return c == '"' and '\\"' or c == "\\" and "\\\\" or ("\\u%04x"):format(c:byte())
  end) .. '"}'
end

-- The end of a coordinator's new(): `r` the EPOCH script's answer (or nil and why), `now` the
-- coordinator's clock. Takes the epoch and Redis's clock in; raises, naming the URL, when
-- there is no answer.
function M.started(self, r, why, now)
  if type(r) ~= "table" then
    self:close()
    error(("cannot reach Redis at %s: %s"):format(self.url, why or "an answer that is no list"), 0)
  end
  self.epoch = r[1]
  self.offset = tonumber(r[2]) + tonumber(r[3]) / 1e6 - now
  self.failures, self.retry_at = 0, nil
  return self
end

-- The first call of a connection: the epoch (made from Redis's clock when there is none yet),
-- and Redis's clock.
M.EPOCH = [[
local t = redis.call('TIME')
local e = redis.call('GET', KEYS[1])
if not e then
  e = t[1] .. '.' .. t[2]
  redis.call('SET', KEYS[1], e)
end
return {e, t[1], t[2]}
]]


local coordinator = require "faceswap.coordinator"
local check, check_capacity = coordinator.check, coordinator.check_capacity

-- A nil reply as nil, whatever the client makes of it (nil, false or ngx.null).
local function value(v)
  local ngx = rawget(_G, "ngx")
  if v == false or (ngx and v == ngx.null) then return nil end
  return v
end

local function fmt(x) return ("%.17g"):format(x) end

-- Puts the interface's methods that are one script each (acquire to capacity, publish) on
-- Coordinator, over `script(self, name, channel, ...)` -> {status, value} | nil, why, and
-- `clock()` (the seconds retry_at is on). A handle has lease, prefix, killed, lost,
-- lost_reason and retry_at.
function M.methods(C, script, clock)
  -- what acquire and hold answer when Redis cannot say
  local function unavailable(self, why)
    if self.lost then return nil, "dead" end
    return nil, "unavailable", math.max((self.retry_at or clock()) - clock(), 0.05), why
  end

  -- acquire and hold: script `name` run unless this process knows the channel dead; `ok`
  -- what a success answers (nil: the script's value)
  local function take(self, ok, name, channel, ...)
    if self.killed[channel] then return nil, "dead" end
    local r, why = script(self, name, channel, ...)
    if not r then return unavailable(self, why) end
    if r[1] == "ok" then return ok == nil and r[2] or ok end
    return nil, r[1], tonumber(value(r[2]))
  end

  -- renew, release and unhold: whether the script changed something
  local function changed(self, name, channel, id)
    local r, why = script(self, name, channel, tostring(id))
    if not r then return false, why end
    return r[2] == 1
  end

  function C:acquire(channel, holder, capacity)
    check(self, channel)
    return take(self, nil, "acquire", channel, tostring(holder), tostring(capacity or 3))
  end

  function C:renew(channel, lease_id)
    check(self, channel)
    return changed(self, "renew", channel, lease_id)
  end

  function C:release(channel, lease_id)
    check(self, channel)
    return changed(self, "release", channel, lease_id)
  end

  function C:unhold(channel, holder)
    check(self, channel)
    return changed(self, "unhold", channel, holder)
  end

  function C:running(channel)
    check(self, channel)
    local r, why = script(self, "running", channel)
    if not r then return 0, why end
    return r[2]
  end

  function C:hold(channel, holder)
    check(self, channel)
    return take(self, true, "hold", channel, tostring(holder))
  end

  function C:holder(channel)
    check(self, channel)
    local r = script(self, "holder", channel)
    return r and value(r[2]) or nil
  end

  -- pause, paused and capacity: the script's value as a number, `default` when it has none
  local function number(self, default, name, channel, ...)
    local r = script(self, name, channel, ...)
    return r and tonumber(value(r[2])) or default
  end

  function C:pause(channel, until_)
    check(self, channel)
    coordinator.check_until(until_)
    return number(self, until_, "pause", channel, fmt(until_))
  end

  -- paused(channel) and capacity(channel): a number, or nil
  for _, name in ipairs { "paused", "capacity" } do
    C[name] = function(self, channel)
      check(self, channel)
      return number(self, nil, name, channel)
    end
  end

  function C:kill(channel, reason)
    check(self, channel)
    reason = tostring(reason)
    local r = script(self, "kill", channel, reason)
    local first = r and value(r[2]) or self.killed[channel] or reason
    self.killed[channel] = first -- this process keeps it out of use even while Redis is away
    return first
  end

  function C:dead(channel)
    check(self, channel)
    if self.lost then return self.lost_reason end
    local r = script(self, "dead", channel)
    if self.lost then return self.lost_reason end
    return r and value(r[2]) or self.killed[channel]
  end

  function C:learn(channel, capacity)
    check(self, channel)
    check_capacity(capacity)
    script(self, "learn", channel, ("%d"):format(capacity))
  end

  function C:publish(jobid, json)
    coordinator.check_publish(self, jobid, json)
    local keys = M.job_keys(self.prefix, jobid)
    local keep = math.max(M.KEEP_PUBLISHED, math.ceil(self.lease))
    local r, why = script(self, "publish", keys, json, tostring(keep), jobid, keys[2])
    return r ~= nil, why
  end
end

return M
