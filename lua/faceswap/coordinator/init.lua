-- faceswap.coordinator: where the state of a client's channels lives.
--
-- A channel's authority (lua/faceswap/channel.lua) decides what a call on an account may do:
-- take one of its slots (its queue holds about 3 jobs), hold it alone (a blocking command),
-- wait out Discord's retry_after, or fail at once because the account cannot work. The
-- authority keeps only what belongs to this process (its waiting tasks, its requests on their
-- way); every fact that others must see lives in a coordinator, chosen by `faceswap.new`'s
-- `coordinator` option:
--
--   nil             this process (faceswap.coordinator.process): the default, no dependency
--   "shared:DICT"   an ngx.shared dict: every nginx worker of one machine, inside nginx only
--                   (faceswap.coordinator.shared)
--   "redis://HOST:PORT/DB"  Redis: every process of every machine; in plain Lua through hiredis
--                   on the client's own loop (faceswap.coordinator.redis, the optional module
--                   faceswap.redis: docs/fleet.md), inside nginx through lua-resty-redis on
--                   cosockets (faceswap.coordinator.resty_redis); both run the scripts of
--                   faceswap.coordinator.redis_scripts on the keys it lays out ("faceswap:")
--
-- THE INTERFACE. A coordinator is an object with the methods below. `channel` is a channel id
-- (a string; "" for the calls that name no channel). `holder` is a string naming who holds a
-- slot or a hold (unique per process and task: the authority makes them). Every time is in
-- seconds on the coordinator's own clock (`now()`: Redis TIME, the dict's ngx.now(), or the
-- process's monotonic clock), never the hosts': a time handed back as `retry_in` is relative.
-- Every method may yield inside a task (Redis I/O through the client's event loop, cosockets
-- in nginx), never blocks a client's step(0), and is ATOMIC: the check and the change of each
-- method are one operation (Redis: one EVAL script; ngx.shared: add/incr/get with exptime, or
-- a lock key), so two processes can never both take the last slot.
--
--   now() -> seconds                       the coordinator's clock (fractional)
--   acquire(channel, holder, capacity) -> lease_id | nil, why, retry_in
--       Takes a slot: a lease that ends `lease` seconds from now unless renewed. `capacity`
--       is the queue's size to use when none was learned (learn()). Refused, with `why`:
--         "dead"    the channel is out of use (dead() tells why); retry_in nil
--         "paused"  Discord's retry_after runs; retry_in: seconds until it ends
--         "held"    a blocking command of another holder holds it; retry_in: seconds until
--                   that hold's lease ends (it may end sooner: unhold)
--         "full"    as many live leases as the capacity; retry_in: seconds until the first
--                   of them expires (it may be released sooner)
--       Expired leases are dropped before counting: a dead process's slots come back.
--   renew(channel, lease_id) -> boolean    pushes the lease's end to `lease` seconds from now;
--                                          false: it is gone (expired or released)
--   release(channel, lease_id) -> boolean  frees the slot now; false: it was gone already
--   running(channel) -> integer            the live leases
--   hold(channel, holder) -> true | nil, why, retry_in
--       Takes the channel alone for a blocking command (a lease of its own, `lease` seconds),
--       whatever slots are taken. Taken again by the same holder: renewed. Refused with why
--       "dead", "paused" or "held", retry_in as for acquire.
--   unhold(channel, holder) -> boolean     ends the hold if `holder` has it
--   holder(channel) -> holder | nil        who holds it now (an expired hold is nobody's)
--   pause(channel, until_) -> until        pauses the channel until `until_` (coordinator
--                                          clock); a later pause already set is kept; returns
--                                          the pause in force
--   paused(channel) -> until | nil         nil once it has passed
--   kill(channel, reason) -> reason        takes the channel out of use for good (the
--                                          coordinator's lifetime); `reason`: a string (the
--                                          authority stores the error as JSON); the first
--                                          reason wins and is returned
--   dead(channel) -> reason | nil
--   learn(channel, capacity)               records the queue's size (an integer from 1)
--   capacity(channel) -> integer | nil     nil: never learned
--   publish(jobid, json)                   a finished job, for any node waiting on it; kept at
--                                          least `lease` seconds
--   wait_published(jobid, timeout) -> json | nil
--       the job published for jobid (at once if it was already), or nil after `timeout`
--       seconds. Inside a task it parks; outside one it drives the client's other tasks.
--   close()                                frees the handle (idempotent); the state stays for
--                                          the others (a process coordinator's goes with it);
--                                          later calls raise "faceswap: the coordinator is
--                                          closed". A handle's field `closed` is true from then
--                                          on: a client closed mid-call (from a finalizer)
--                                          reads it and stops asking (channel.lua)
--
-- spec/support/coordinator_contract.lua checks all of this against any implementation; the
-- in-process one runs it in spec/integration/coordinator_spec.lua.
local M = {}

M.DEFAULT_LEASE = 60

-- learn()'s capacity: a whole number from 1 (level 3: the method's caller).
function M.check_capacity(capacity)
  if type(capacity) ~= "number" or capacity < 1 or capacity % 1 ~= 0 then
    error("faceswap: coordinator: capacity must be a whole number from 1", 3)
  end
end

-- The check every implementation makes first, in each method: a closed handle raises, and so
-- does a key that is not a string (level 3, the method's caller, unless given).
function M.check(self, key, what, level)
  if self.closed then error("faceswap: the coordinator is closed", level or 3) end
  if type(key) ~= "string" then
    error("faceswap: coordinator: " .. (what or "channel") .. " must be a string, got " ..
      type(key), level or 3)
  end
end

-- pause()'s time: a number (level 3: the method's caller).
function M.check_until(until_)
  if type(until_) ~= "number" then
    error("faceswap: coordinator: until must be a number, got " .. type(until_), 3)
  end
end

-- publish()'s checks: a string jobid (after check's), a string json (level 3: the caller).
function M.check_publish(self, jobid, json)
  M.check(self, jobid, "jobid", 4)
  if type(json) ~= "string" then
    error("faceswap: coordinator: json must be a string, got " .. type(json), 3)
  end
end

-- Whether this code runs inside nginx (its lua module's API is there): OpenResty's requests
-- and Redis calls go through its cosockets.
function M.in_nginx()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.config ~= nil and
    ngx.config.ngx_lua_version ~= nil
end

-- What kind of coordinator a `coordinator` option names: "process", "shared" or "redis", and
-- nil plus why for anything else.
function M.kind(spec)
  if spec == nil then return "process" end
  if type(spec) ~= "string" then return nil, "must be a string, got " .. type(spec) end
  if spec == "" or spec == "process" then return "process" end
  if spec:find("^shared:[%w_%-]+$") then return "shared" end
  if spec:find("^redis://") then return "redis" end
  return nil, "must be \"shared:DICT\" or \"redis://HOST:PORT/DB\", got \"" ..
    spec:sub(1, 80) .. "\""
end

-- Makes the coordinator a client asked for: `spec` the `coordinator` option (nil: this
-- process), `opts` { lease = seconds, sched = the client's scheduler, log = its log
-- function }. Raises (a message
-- without position, for new() to wrap) when it cannot be made.
function M.new(spec, opts)
  local kind, why = M.kind(spec)
  if not kind then error("option 'coordinator' " .. why, 0) end
  if kind == "process" then return require("faceswap.coordinator.process").new(opts) end
  local module = kind == "shared" and "faceswap.coordinator.shared" or
    M.in_nginx() and "faceswap.coordinator.resty_redis" or "faceswap.coordinator.redis"
  local ok, made = pcall(require(module).new, kind == "shared" and spec:sub(8) or spec, opts)
  if not ok then error("option 'coordinator': " .. tostring(made), 0) end
  return made
end

return M
