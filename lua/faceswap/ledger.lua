--- The file ledger of `faceswap batch --state FILE`: a write-ahead log of a batch's items.
--
-- One JSON object per line, appended, each written and fsync'd before the call that wrote it
-- returns. Every record names its item by `line` (its line in the batch file) and `prompt`,
-- and says where the item stands (`state`):
--
--  * `sending`: its headshot is about to be sent (written before each POST, `attempt` n);
--  * `submitted`: the server answered with a job, `jobid`;
--  * `done`: that job has ended, `jobid` and `status`;
--  * `failed`: the server answered that no job was made (`error`): nothing was billed;
--  * `unknown`: the POST may have reached the server but no answer came (`error`);
--  * `refused`: (client:batch's ledger) an attempt the server answered without a job (a 429):
--    nothing was billed, the item may be sent again.
--
-- The last record of an item wins. An item whose last record is `sending` or `unknown` is of
-- unknown fate. The file is locked (flock, exclusive) while it is open: one writer at a time.
--
-- The same module opens the ledger of `client:batch(list, { ledger = ... })` (M.open_batch,
-- below): "file:PATH" (this file, one writer) or "redis://HOST:PORT/DB/NAME", a ledger in
-- Redis that any number of processes on any machines share (docs/fleet.md).
-- @module faceswap.ledger
local core = require "faceswap.core"
local cjson = require("cjson").new() -- a private instance: its settings are ours alone
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT

local M = {}

local STATES = { sending = true, submitted = true, done = true, failed = true, unknown = true,
                 refused = true }

local Ledger = {}
Ledger.__index = Ledger

--- Opens (or creates) a ledger and locks it.
-- @tparam string path
-- @treturn[1] table the ledger
-- @return[2] nil
-- @treturn[2] string `"PATH: why"`
-- @treturn[2] string `"locked"` (another process has it open), `"not_regular"` or `"error"`
function M.open(path)
  local file, message, why = core.open_append(path)
  if not file then return nil, message, why end
  -- a last line without its newline is a write a crash cut short (load leaves it out): cut it
  -- off the file, or the next record would be appended onto it and make the line unreadable
  local text, err = file:read()
  local whole = text and (text:find("\n[^\n]*$") or 0)
  if text and whole < #text then text, err = file:truncate(whole) end
  if not text then
    file:close()
    return nil, err, "error"
  end
  return setmetatable({ path = path, file = file }, Ledger)
end

-- A record of the 0.2.0 form: "submitted<TAB>LINE<TAB>JOBID<TAB>PROMPT" or
-- "unknown<TAB>LINE<TAB>-<TAB>PROMPT".
local function old_record(text)
  local state, line, jobid, prompt = text:match("^(%l+)\t(%d+)\t([^\t]*)\t(.*)$")
  if state ~= "submitted" and state ~= "unknown" then return nil end
  return { state = state, line = tonumber(line), jobid = state == "submitted" and jobid or nil,
           prompt = prompt }
end

--- Reads the records back.
-- @tparam {[int]=string} prompts the batch's prompts by line number
-- @treturn[1] table line number -> its last record, with `n`, the record's line in the file
-- @return[2] nil
-- @treturn[2] string `"PATH:N: why"` for a record that is not one of this batch's
function Ledger:load(prompts)
  local text, err = self.file:read()
  if not text then return nil, err end
  local records, n = {}, 0
  -- a last line without its newline is a write a crash cut short: what it announced was never
  -- done (each record is on disk before the step it announces), so it is left out
  for body in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local ok, r = pcall(cjson.decode, body)
    if not ok or type(r) ~= "table" then r = old_record(body) end
    local problem
    if type(r) ~= "table" or not STATES[r.state] or type(r.line) ~= "number" or
        r.line % 1 ~= 0 or r.line < 1 or type(r.prompt) ~= "string" or
        (r.jobid ~= nil and type(r.jobid) ~= "string") then
      problem = "unreadable"
    elseif (r.state == "submitted" or r.state == "done") and not r.jobid then
      problem = "no jobid"
    elseif prompts[r.line] ~= r.prompt then
      problem = ("line %d of the prompts differs"):format(r.line)
    end
    if problem then
      return nil, self.path .. ":" .. n .. ": not a record of this batch's prompts (" ..
        problem .. ")"
    end
    r.n, r.line = n, math.floor(r.line) -- (5.3+: cjson decodes every number as a float)
    records[r.line] = r
  end
  return records
end

--- Appends a record, on disk when it returns.
-- @tparam table record `state`, `line`, `prompt`, and `jobid`, `status`, `error`, `attempt`
-- as the state has them
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string `"PATH: why"`; the file is left as it was
function Ledger:write(record)
  return self.file:append(cjson.encode(record) .. "\n")
end

--- Closes the file, releasing the lock. Closing twice is harmless.
function Ledger:close()
  if self.file then self.file:close() end
  self.file = nil
end

---------------------------------------------------------------------------------------------
-- The batch ledger: client:batch(list, { ledger = "file:PATH" | "redis://HOST:PORT/DB/NAME" })
--
-- A book has the items' states when it was opened (`states`: index -> "done", "submitted",
-- "failed", "unknown" or nil; `before`, their counts) and:
--   claim(candidates) -> { i = index | nil, state, record, retry_in, settled = {{i, state,
--       record}...} } | nil, why
--     takes the first candidate nobody holds that is still to do (no record, refused, failed
--     before this run, submitted by a holder gone: its job is waited for; sending or unknown
--     only with resubmit_unknown), as a lease of `lease` seconds; reports the candidates that
--     are settled (done, failed in this run, of unknown fate); `retry_in`: seconds until the
--     first claim of another ends, when none could be taken
--   send(i, attempt) -> true | nil, why     the write-ahead record, checked against the claim
--                                           in the same step (a claim lost: not sent)
--   record(i, state, fields, release) -> true | nil, why
--   renew() -> true | nil, why               pushes this process's claims `lease` on
--   close()
---------------------------------------------------------------------------------------------

-- A canonical text of a list: equal for equal lists, whatever the order of their tables'
-- keys. Each value is tagged and strings carry their length, so no two lists read alike.
local function canon(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "number" then
    out[#out + 1] = ("n%.17g;"):format(v)
  elseif t == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      canon(k, out)
      canon(v[k], out)
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "?" .. t
  end
end

--- The canonical text of one item (a prompt is itself).
function M.item_key(item)
  if type(item) == "string" then return item end
  local out = {}
  canon(item, out)
  return table.concat(out)
end

--- Whether an error says a request got no answer but may have reached the server.
function M.fate_unknown(err)
  return type(err) == "table" and err.sent == true and err.job == nil and
    (err.kind == "transport" or err.kind == "timeout" or err.kind == "cancelled")
end

-- "redis://HOST:PORT/DB/NAME[?timeout=S]" -> the coordinator's URL (without NAME), NAME
function M.parse_redis(spec)
  local base, name, query = spec:match("^(redis://[^?]*)/([^/?]*)(%??.*)$")
  if not base or not base:find("^redis://[^/]+/%d+$") then
    return nil, "expected redis://HOST:PORT/DB/NAME"
  end
  if not name:find("^[%w_%.:%-]+$") or #name > 200 then
    return nil, "the NAME must be 1 to 200 letters, digits, '_', '.', ':' or '-'"
  end
  return base .. query, name
end

local KINDS = { invalid_request = true, unauthorized = true, payment_required = true,
  not_found = true, rate_limited = true, server = true, transport = true, timeout = true,
  bad_response = true, cancelled = true }

--- What a record of another process stands for in a batch's results: the job it ended with,
-- the error it failed with, or an error whose fate is unknown (`unknown = true`).
function M.result_of(state, record, where)
  if state == "done" and type(record.job) == "string" then
    local job = core.read_response("job", 200, "", record.job)
    if core.type(job) == "job" then return job end
  end
  if state == "failed" or state == "done" then
    return core.error { kind = KINDS[record.kind] and record.kind or "server",
      code = type(record.code) == "number" and record.code or nil, retryable = false,
      sent = record.sent == true, error = type(record.error) == "string" and record.error or
        ("recorded as " .. state .. " in " .. where) }
  end
  local err = core.error { kind = "transport", sent = true, retryable = false,
    error = "fate unknown: its request may have reached the server and no answer was " ..
      "recorded (" .. where .. "); not resubmitted (resubmit_unknown to send it again)" }
  err.unknown = true
  return err
end

-- The record of an answer, as both ledgers write it.
local function fields_of(state, fields)
  local r = { state = state }
  for k, v in pairs(fields or {}) do r[k] = v end
  return r
end

local function count(states, n)
  local before = { done = 0, submitted = 0, failed = 0, unknown = 0, todo = 0 }
  for i = 1, n do
    local st = states[i]
    if st == "sending" then st = "unknown" end
    if st == "refused" or st == nil then st = "todo" end
    before[st] = (before[st] or 0) + 1
  end
  return before
end

---------------------------------------------------------------------------------------------
-- "file:PATH": the file ledger, one writer
---------------------------------------------------------------------------------------------
local FileBook = {}
FileBook.__index = FileBook

local function open_file(path, list, opts)
  local book, message, why = M.open(path)
  if not book then return nil, message, why == "locked" and "locked" or "error" end
  local keys = {}
  for i = 1, #list do keys[i] = M.item_key(list[i]) end
  local records, err = book:load(keys)
  if not records then
    book:close()
    return nil, err .. " (a ledger is for one list: use another PATH)", "other_list"
  end
  local states = {}
  for i = 1, #list do states[i] = records[i] and records[i].state end
  return setmetatable({ kind = "file", where = "file:" .. path, book = book, keys = keys,
    records = records, states = states, before = count(states, #list), n = #list,
    resubmit = opts.resubmit_unknown == true, lease = 60 }, FileBook)
end

function FileBook:claim(candidates)
  local got = { settled = {} }
  for _, i in ipairs(candidates) do
    local r = self.records[i]
    local st = r and r.state
    if st == "done" or ((st == "sending" or st == "unknown") and not self.resubmit) then
      got.settled[#got.settled + 1] = { i, st == "sending" and "unknown" or st, r }
    elseif not got.i then
      got.i, got.state, got.record = i, st, r
      self.records[i] = nil -- this run's records are its own from now on
    end
  end
  return got
end

function FileBook:write(i, state, fields)
  local r = fields_of(state, fields)
  r.line, r.prompt = i, self.keys[i]
  return self.book:write(r)
end

function FileBook:send(i, attempt) return self:write(i, "sending", { attempt = attempt }) end
function FileBook:record(i, state, fields) return self:write(i, state, fields) end
function FileBook.renew() return true end
function FileBook.fatal() return true end -- (a file that cannot be written stops the batch)
function FileBook:close() self.book:close() end

---------------------------------------------------------------------------------------------
-- "redis://HOST:PORT/DB/NAME": a ledger in Redis, shared
--
-- Keys (the coordinator's prefix, "faceswap:"): faceswap:ledger:{NAME}:items, a hash (`list`
-- the SHA-1 of the list's canonical text, `n`, `holders` a counter; per item i: `s:i` its
-- state, `r:i` its last record's JSON, `h:i` who claims it, `at:i` when it failed) and
-- faceswap:ledger:{NAME}:claims, a sorted set (item -> the end of its claim, on Redis's clock).
-- Every script checks the epoch first (a Redis restarted empty stops the batch).
---------------------------------------------------------------------------------------------
local OPEN = [[
local h = redis.sha1hex(ARGV[3])
local have = redis.call('HGET', S, 'list')
if not have then
  redis.call('HSET', S, 'list', h, 'n', ARGV[4])
elseif have ~= h then
  return {'other', have, redis.call('HGET', S, 'n') or '?', h}
end
local out = {'ok', 'p' .. redis.call('HINCRBY', S, 'holders', 1), num(now)}
for i = 1, tonumber(ARGV[4]) do
  local st = redis.call('HGET', S, 's:' .. i) or ''
  if st == 'sending' or st == 'submitted' then
    local e = tonumber(redis.call('ZSCORE', L, i) or '0')
    if e > now then st = st .. '+' end
  end
  out[#out + 1] = st
end
return out
]]

local CLAIM = [[
local me, resub, since = ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local out = {'none', '', '', '', '-1'}
local soonest
for k = 6, #ARGV do
  local i = ARGV[k]
  local st = redis.call('HGET', S, 's:' .. i)
  local e = tonumber(redis.call('ZSCORE', L, i) or '0')
  local live = e > now
  local settled = st == 'done' or
    (st == 'failed' and tonumber(redis.call('HGET', S, 'at:' .. i) or '0') >= since) or
    ((st == 'sending' or st == 'unknown') and not live and not resub)
  if settled then
    out[#out + 1] = i
    out[#out + 1] = st == 'sending' and 'unknown' or st
    out[#out + 1] = redis.call('HGET', S, 'r:' .. i) or ''
  elseif live then
    if not soonest or e - now < soonest then soonest = e - now end
  elseif out[1] == 'none' then
    redis.call('ZADD', L, num(now + lease), i)
    redis.call('HSET', S, 'h:' .. i, me)
    out[1], out[2], out[3] = 'mine', i, st or ''
    out[4] = redis.call('HGET', S, 'r:' .. i) or ''
  end
end
if soonest then out[5] = num(soonest) end
return out
]]

local SEND = [[
local i = ARGV[4]
local e = tonumber(redis.call('ZSCORE', L, i) or '0')
if e <= now or redis.call('HGET', S, 'h:' .. i) ~= ARGV[3] then return {'lost'} end
local st = redis.call('HGET', S, 's:' .. i)
if st == 'done' or st == 'submitted' then return {'settled', st} end
redis.call('HSET', S, 's:' .. i, 'sending', 'r:' .. i, ARGV[5])
redis.call('ZADD', L, num(now + lease), i)
return {'ok', 1}
]]

local RECORD = [[
local i, st = ARGV[4], ARGV[5]
local mine = redis.call('HGET', S, 'h:' .. i) == ARGV[3]
-- a job's facts are always kept; a failure only by the claim's holder (another may be sending)
local fact = st == 'submitted' or st == 'done'
if redis.call('HGET', S, 's:' .. i) ~= 'done' and (fact or mine) then
  redis.call('HSET', S, 's:' .. i, st, 'r:' .. i, ARGV[6])
  if st == 'failed' then redis.call('HSET', S, 'at:' .. i, num(now)) end
end
if ARGV[7] == '1' and mine then
  redis.call('ZREM', L, i)
  redis.call('HDEL', S, 'h:' .. i)
end
return {'ok', 1}
]]

local RENEW = [[
local n = 0
for k = 4, #ARGV do
  local i = ARGV[k]
  if redis.call('HGET', S, 'h:' .. i) == ARGV[3] and redis.call('ZSCORE', L, i) then
    redis.call('ZADD', L, num(now + lease), i)
    n = n + 1
  end
end
return {'ok', n}
]]

local RedisBook = {}
RedisBook.__index = RedisBook

local function open_redis(spec, list, opts)
  local url, name = M.parse_redis(spec)
  if not url then return nil, ("bad ledger \"%s\": %s"):format(spec:sub(1, 200), name), "usage" end
  local ok, handle = pcall(require("faceswap.coordinator.redis").new, url,
    { sched = opts.sched, lease = opts.lease, log = opts.log })
  if not ok then return nil, "ledger " .. spec .. ": " .. tostring(handle), "unavailable" end
  local base = handle.prefix .. "ledger:{" .. name .. "}:"
  local self = setmetatable({ kind = "redis", where = spec, handle = handle, n = #list,
    items = base .. "items", claims = base .. "claims", lease = handle.lease,
    resubmit = opts.resubmit_unknown == true, held = {} }, RedisBook)
  local text = {}
  for i = 1, #list do canon(list[i], text) end
  local r, why = handle:eval(OPEN, self.claims, self.items, table.concat(text), tostring(#list))
  if not r then
    handle:close()
    return nil, "ledger " .. spec .. ": " .. tostring(why), "unavailable"
  end
  if r[1] == "other" then
    handle:close()
    return nil, ("ledger %s belongs to another list (%s items, SHA-1 %s; this one: %d items, " ..
      "SHA-1 %s): nothing was sent; use another NAME"):format(spec, tostring(r[3]),
      tostring(r[2]), #list, tostring(r[4])), "other_list"
  end
  self.holder, self.since = r[2], r[3]
  local states, elsewhere = {}, 0
  for i = 1, #list do
    local st = r[3 + i]
    if st and st:sub(-1) == "+" then
      elsewhere = elsewhere + 1
      st = st:sub(1, -2)
    end
    states[i] = st ~= "" and st or nil
  end
  self.states, self.before = states, count(states, #list)
  self.before.elsewhere = elsewhere
  return self
end

-- Runs one of the scripts: its list, or nil and why (named with the ledger).
function RedisBook:eval(body, ...)
  local r, why = self.handle:eval(body, self.claims, self.items, ...)
  if not r and self.handle.lost then
    return nil, ("ledger %s: Redis lost its state (the key %s is gone: Redis restarted " ..
      "empty, or was flushed), and the ledger's records with it: nothing more is sent"):format(
      self.where, self.handle.epoch_key)
  end
  if not r then return nil, "ledger " .. self.where .. ": " .. tostring(why) end
  return r
end

local function decode(text)
  if type(text) ~= "string" or text == "" then return nil end
  local ok, r = pcall(cjson.decode, text)
  return ok and type(r) == "table" and r or nil
end

function RedisBook:claim(candidates)
  local args = {}
  for k, i in ipairs(candidates) do args[k] = tostring(i) end
  local r, why = self:eval(CLAIM, self.holder, self.resubmit and "1" or "0", self.since,
    unpack(args))
  if not r then return nil, why end
  local got = { settled = {}, retry_in = tonumber(r[5]) }
  if got.retry_in and got.retry_in < 0 then got.retry_in = nil end
  if r[1] == "mine" then
    got.i, got.state, got.record = tonumber(r[2]), r[3] ~= "" and r[3] or nil, decode(r[4])
    self.held[got.i] = true
  end
  for k = 6, #r, 3 do
    got.settled[#got.settled + 1] = { tonumber(r[k]), r[k + 1], decode(r[k + 2]) or {} }
  end
  return got
end

function RedisBook:send(i, attempt)
  local r, why = self:eval(SEND, self.holder, tostring(i),
    cjson.encode { state = "sending", item = i, attempt = attempt })
  if not r then return nil, why end
  if r[1] == "ok" then return true end
  if r[1] == "lost" then
    self.held[i] = nil
    return nil, "ledger " .. self.where .. ": the claim on item " .. i .. " ended (lease) " ..
      "before its request left"
  end
  return nil, "ledger " .. self.where .. ": item " .. i .. " is " .. tostring(r[2]) .. " already"
end

function RedisBook:record(i, state, fields, release)
  local rec = fields_of(state, fields)
  rec.item = i
  local r, why = self:eval(RECORD, self.holder, tostring(i), state, cjson.encode(rec),
    release and "1" or "0")
  if release then self.held[i] = nil end
  if not r then return nil, why end
  return true
end

function RedisBook:renew()
  local args = {}
  for i in pairs(self.held) do args[#args + 1] = tostring(i) end
  if not args[1] then return true end
  local r, why = self:eval(RENEW, self.holder, unpack(args))
  if not r then return nil, why end
  return true
end

-- Whether the ledger cannot go on: Redis lost its state (out of reach is waited for).
function RedisBook:fatal() return self.handle == nil or self.handle.lost ~= nil end

function RedisBook:close()
  if self.handle then self.handle:close() end
  self.handle = nil
end

--- Opens a batch's ledger.
-- @tparam string spec `"file:PATH"` or `"redis://HOST:PORT/DB/NAME"`
-- @tparam table list the batch's items (the ledger is for this list: another is refused)
-- @tparam table opts `sched` (the client's scheduler), `lease` (seconds a claim lasts unless
-- renewed), `log`, `resubmit_unknown`
-- @treturn[1] table the book
-- @return[2] nil
-- @treturn[2] string why
-- @treturn[2] string `"usage"`, `"locked"`, `"other_list"`, `"unavailable"` or `"error"`
function M.open_batch(spec, list, opts)
  opts = opts or {}
  if type(spec) == "string" and spec:find("^file:") and #spec > 5 then
    return open_file(spec:sub(6), list, opts)
  elseif type(spec) == "string" and spec:find("^redis://") then
    return open_redis(spec, list, opts)
  end
  return nil, "must be \"file:PATH\" or \"redis://HOST:PORT/DB/NAME\"", "usage"
end
return M
