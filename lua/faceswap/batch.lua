-- faceswap.batch: client:batch, a loop over the channels' authorities (lua/faceswap/channel.lua).
--
-- Each item is one job (a headshot, or a changebg) started through the authority of the
-- channel it goes to: the authority gives it a slot (the channel's queue learned from its
-- 429s, holds and Discord pauses waited out), takes a channel whose account cannot work out
-- of use, and keeps the slot with the job until its wait sees it end. What is the batch's own
-- is only which channel an item goes to (its own, else the least busy of opts.channels that
-- has room, the item waiting longest first), what a channel dead during the batch did to its
-- items (they go to the others), the workers, stop() and on_send/on_update.
-- The method is documented in lua/faceswap/init.lua, which installs it (method, below).
local core = require "faceswap.core"
local retry = require "faceswap.retry"
local tasks = require "faceswap.task"
local authority = require "faceswap.channel"
-- faceswap.ledger (and lua-cjson with it) is loaded when a batch first needs it: a client that
-- runs no ledger needs only the core's own cjson (spec/unit/cjson_instance_spec.lua)
local ledgers = setmetatable({}, { __index = function(self, name)
  setmetatable(self, { __index = require "faceswap.ledger" })
  return self[name]
end })

local M = {}

local build_headshot, build_command = core.build_headshot, core.build_command
local NO_RETRY = { attempts = 1 }
local unpack = table.unpack or _G.unpack -- _G.unpack: LuaJIT
local function pack(...) return { n = select("#", ...), ... } end

local check_wait_options -- (given by init.lua: method)

-- The commands a batch runs: the rows whose mode is a job to wait for (headshot, changebg),
-- each with whether it uploads a file (its request is then built again at its turn, not kept);
-- and the words that list them in a misuse's text ("headshot" or "changebg").
local BATCH_COMMANDS, BATCH_TEXT = {} -- (BATCH_TEXT: below)
do
  local names = {}
  for _, cmd in ipairs(core.commands("all")) do
    if cmd.mode == "job" then
      local files = false
      for _, f in ipairs(cmd.params) do files = files or f.kind == "file" end
      BATCH_COMMANDS[cmd.name] = { files = files, encoded = #(cmd.encodings or {}) > 1 }
      names[#names + 1] = "\"" .. cmd.name .. "\""
    end
  end
  BATCH_TEXT = #names > 1 and table.concat(names, ", ", 1, #names - 1) .. " or " ..
    names[#names] or names[1]
end

local function check_batch(list, opts)
  if type(list) ~= "table" then
    error("bad argument #1 to 'batch' (table expected, got " .. type(list) .. ")", 4)
  end
  for i = 1, #list do
    local kind = type(list[i])
    if kind ~= "string" and kind ~= "table" then
      error("bad argument #1 to 'batch' (item " .. i .. " is a " .. kind ..
        ", not a prompt or params table)", 4)
    end
    local command = kind == "table" and list[i].command or nil
    if command ~= nil and not BATCH_COMMANDS[command] then
      error("bad argument #1 to 'batch' (item " .. i .. ": command must be " .. BATCH_TEXT ..
        ", got " .. (type(command) == "string" and ("\"" .. command .. "\"") or
        type(command)) .. ")", 4)
    end
  end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'batch' (table expected, got " .. type(opts) .. ")", 4)
  end
  for name, value in pairs(opts) do
    if name == "concurrency" then
      if type(value) ~= "number" or value < 1 or value % 1 ~= 0 then
        error("bad argument #2 to 'batch' (option 'concurrency' must be a whole number from 1)", 4)
      end
    elseif name == "on_update" or name == "stop" or name == "on_send" then
      if type(value) ~= "function" then
        error("bad argument #2 to 'batch' (option '" .. name .. "' must be a function)", 4)
      end
    elseif name == "ledger" then
      -- (or a ledger faceswap.ledger.open_batch opened for this list: the command line's)
      local opened = type(value) == "table" and value.claim ~= nil
      if not opened and (type(value) ~= "string" or
          not (value:find("^file:.") or value:find("^redis://"))) then
        error("bad argument #2 to 'batch' (option 'ledger' must be \"file:PATH\" or " ..
          "\"redis://HOST:PORT/DB/NAME\")", 4)
      end
      if not opened and value:find("^redis://") and not ledgers.parse_redis(value) then
        error("bad argument #2 to 'batch' (option 'ledger': " ..
          select(2, ledgers.parse_redis(value)) .. ")", 4)
      end
    elseif name == "resubmit_unknown" then
      if type(value) ~= "boolean" then
        error("bad argument #2 to 'batch' (option 'resubmit_unknown' must be a boolean)", 4)
      end
    elseif name == "channels" then
      local ok = value == "all" or (type(value) == "table" and #value > 0)
      for k = 1, ok and value ~= "all" and #value or 0 do
        ok = ok and type(value[k]) == "string" and value[k] ~= ""
      end
      if not ok then
        error("bad argument #2 to 'batch' (option 'channels' must be \"all\" or an array " ..
          "of channel ids)", 4)
      end
    elseif name == "wait" then
      if type(value) == "table" then
        local ok, msg = pcall(check_wait_options, value, 1)
        if not ok or value.on_update then
          error("bad argument #2 to 'batch' (option 'wait': " .. (ok and
            "use the batch's own on_update" or msg:match("%((.*)%)$")) .. ")", 4)
        end
      elseif type(value) ~= "boolean" then
        error("bad argument #2 to 'batch' (option 'wait' must be a table of wait options, " ..
          "true or false)", 4)
      end
    else
      error("bad argument #2 to 'batch' (unknown option '" .. tostring(name) .. "')", 4)
    end
  end
end

-- The request for one batch item on one channel (nil: the client's default), built by its
-- row of the command table: a headshot for a prompt or params table, or an item naming one of
-- BATCH_COMMANDS. The item's own channel wins.
local function build_item(self, item, channel)
  local command, params = "headshot", item
  if type(item) == "table" and item.command ~= nil then
    command, params = item.command, {}
    for k, v in pairs(item) do if k ~= "command" then params[k] = v end end
  end
  return command, build_command(command, params, channel or self._channel, self._reply_url, nil,
    BATCH_COMMANDS[command].encoded and self._encoding or nil)
end

-- The file params of each command, by name: { changebg = { image = true }, ... }.
local FILE_PARAMS = {}
for _, cmd in ipairs(core.commands()) do
  for _, f in ipairs(cmd.fields) do
    if f.kind == "file" then
      FILE_PARAMS[cmd.name] = FILE_PARAMS[cmd.name] or {}
      FILE_PARAMS[cmd.name][f.name] = true
    end
  end
end

-- A batch item whose files are opened once, at its turn: a copy of it whose file paths are
-- files opened (core.upload_file), and the files, or the item itself when it has none. Every
-- request built for it (on each account it is tried on, on each retry) sends from the same
-- descriptor, and what was checked is what is sent. A path that cannot be opened is left as
-- it is: the build says why, as for any other item.
local function open_files(item)
  local fields = type(item) == "table" and FILE_PARAMS[item.command]
  if not fields then return item, nil end
  local copy, files = {}, {}
  for k, v in pairs(item) do
    if fields[k] and type(v) == "string" then
      local f = core.upload_file(v)
      if f then v, files[#files + 1] = f, f end
    end
    copy[k] = v
  end
  return copy, files
end

-- Lets go of an item's files and of the bodies built to send them, once it has its result.
local function close_files(files, built)
  if not files then return end
  for _, f in ipairs(files) do f:close() end
  for _, r in pairs(built) do
    if type(r[5]) == "userdata" then r[5]:close() end
  end
end

-- The key of the client's default channel in a batch's tables.
local NO_CHANNEL = {}

-- Checks every item with the core's own request builders before anything is sent: misuse
-- raises at the line that called client:batch, naming the item ("bad item #5 to 'batch'
-- (prompt is not valid UTF-8)"). Returns, per item, the request built (kept when its row
-- uploads no file, as headshot's, whose bodies are small; a changebg item's file is read again
-- at its turn) or the item's
-- local error (a required param missing, a file that cannot be read), which is its result.
-- An item is checked with its own channel, else the batch's first (nil: the client's default).
local function check_items(self, list, channels)
  for k = 1, type(channels) == "table" and #channels or 0 do
    local ok, problem = pcall(build_headshot, "check", self._encoding, channels[k])
    if not ok then
      error("bad argument #2 to 'batch' (option 'channels': item " .. k .. ": " ..
        tostring(problem):match("%((.*)%)$") .. ")", 4)
    end
  end
  local first = type(channels) == "table" and channels[1] or nil
  local prebuilt, local_errors = {}, {}
  for i = 1, #list do
    local item = list[i]
    local channel = type(item) == "table" and item.channel or first
    local r = pack(pcall(build_item, self, item, channel))
    if not r[1] then
      local why = tostring(r[2]):gsub("^[^\n]-:%d+: ", "", 1)
      error("bad item #" .. i .. " to 'batch' (" .. (why:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or why) ..
        ")", 4)
    elseif r[3] == nil then
      local_errors[i] = r[4]
    elseif not BATCH_COMMANDS[r[2]].files then
      prebuilt[i] = { key = channel or NO_CHANNEL, request = pack(unpack(r, 2, r.n)) }
    elseif type(r[6]) == "userdata" then
      r[6]:close() -- its file is opened again at the item's turn, once for every account
    end
  end
  return prebuilt, local_errors
end

-- What an item that could not be sent anywhere gets: the dead channel's answer, not sent.
local function unsent(err)
  return core.error { kind = err.kind, code = err.code, error = err.error,
    errorDetails = err.errorDetails, retryable = false, sent = false }
end

-- Whether an answer is a job that runs on (its slot stays with it).
local function runs(job)
  return core.type(job) == "job" and job.status ~= nil and not job:done()
end

-- The order in which an item tries the shared channels: the least busy first, then the first
-- named.
local function by_load(a, b)
  if a.load ~= b.load then return a.load < b.load end
  return a.k < b.k
end

-- client:batch(list, opts), for init.lua to install: `internals` gives what it shares with the
-- client's other methods (M: the faceswap module; exchange, check_wait_options, wait_for:
-- client:wait's loop, for a job and options already checked).
function M.method(internals)
  local faceswap, exchange, wait_job = internals.M, internals.exchange, internals.wait_for
  check_wait_options = internals.check_wait_options

  -- (called by client:batch, which checks its client: a misuse raised here names the line
  -- that called client:batch, level 4 from check_batch and check_items)
  return function(self, list, opts)
    opts = opts or {}
    check_batch(list, opts)
    local n, results = #list, {}
    if n == 0 then return results end
    local channels = opts.channels
    local prebuilt, local_errors = check_items(self, list, channels)
    if channels == "all" then
      local accounts, err = self:accounts()
      if not accounts then return nil, err end
      channels = {}
      for channel in pairs(accounts) do channels[#channels + 1] = channel end
      table.sort(channels)
      if #channels == 0 then
        return nil, core.error { kind = "invalid_request", sent = true, retryable = false,
          error = "no accounts configured (GET /account is empty)" }
      end
    end
    local sched, policy = self._sched, self._retry or NO_RETRY
    -- the ledger (opts.ledger): claims, write-ahead records, results, shared with whoever
    -- opens the same one (lua/faceswap/ledger.lua)
    local book, ledger_error
    if type(opts.ledger) == "table" then
      book = opts.ledger
    elseif opts.ledger then
      local why, kind
      book, why, kind = ledgers.open_batch(opts.ledger, list, { sched = sched,
        lease = self._coordinator and self._coordinator.lease or 60, log = self._log,
        resubmit_unknown = opts.resubmit_unknown })
      if not book then
        return nil, core.error { kind = kind == "unavailable" and "transport" or
          "invalid_request", sent = false, retryable = false, error = why }
      end
    end
    -- A ledger that could not be read or written: its file, or a Redis that lost its state,
    -- stops the batch's submissions; a Redis out of reach for now is waited for (logged).
    local function ledger_failed(why)
      if book:fatal() then
        ledger_error = ledger_error or why
      elseif self._log then
        self._log("warn", tostring(why), "ledger")
      end
    end
    local max_pause = (self._retry or retry.defaults).max_retry_after
    local on_update = opts.on_update or function() end
    local on_send = opts.on_send
    -- the wait options as checked now: a copy, since the items' waits skip client:wait's
    -- checks (a caller's table changed meanwhile cannot slip a refused value past them)
    local wait_opts = {}
    if type(opts.wait) == "table" then
      for k, v in pairs(opts.wait) do wait_opts[k] = v end
    end
    local follow = opts.wait ~= false

    -- The channels the batch uses, each with its authority (`ch`); the items waiting for room
    -- on the shared ones (those without a channel of their own), in order: the first of them
    -- is woken whenever a channel says room may have come.
    local queues, by_channel, waiters = {}, {}, {}
    local function wake_first()
      while waiters[1] and waiters[1].task:done() do table.remove(waiters, 1) end
      if waiters[1] then sched:wake(waiters[1].task) end
    end
    local function queue_of(channel)
      local key = channel or NO_CHANNEL
      local q = by_channel[key]
      if not q then
        q = { channel = channel, ch = self._channel_of(channel or self._channel) }
        q.ch.on_release[queues] = wake_first -- (weak: gone with the batch)
        by_channel[key] = q
        queues[#queues + 1] = q
      end
      return q
    end
    for _, channel in ipairs(channels or { false }) do queue_of(channel or nil) end
    local shared = #queues

    -- A channel out of use (now, or for the client since earlier): its error, reported once
    -- by the batch (results.dead_channels and a log line).
    local dead, reported, last_dead = {}, {}, nil
    local function is_dead(q)
      local err = q.ch:dead()
      if err and not reported[q] then
        reported[q], last_dead = true, err
        dead[#dead + 1] = { channel = q.channel, error = err }
        if self._log then
          self._log("warn", "channel " .. (q.channel or "(the default)") .. " taken out of " ..
            "the batch: " .. tostring(err), "dead_channel")
        end
      end
      return err
    end
    -- Why an item cannot be sent anywhere any more (its own channel, or every shared one, is
    -- dead: the answer of the last to die), nil while it can.
    local function nowhere(own)
      if own then return is_dead(own) end
      for k = 1, shared do if not is_dead(queues[k]) then return nil end end
      return last_dead
    end

    -- A slot for an item's next request: the queue and its lease, or nil and the error the
    -- item gets. An item with its own channel waits in that channel's authority; the others
    -- wait in the batch's line for the least busy shared channel with room. An item that a
    -- full queue refused (`refused`) waits ahead of the items not sent yet.
    local function enter(own, refused)
      if own then
        local lease, err = own.ch:acquire(refused, max_pause)
        if not lease then return nil, err end
        return own, lease
      end
      local me, entry = sched:current(), nil
      local function leave()
        for k = #waiters, 1, -1 do if waiters[k] == entry then table.remove(waiters, k) end end
      end
      while true do
        local gone = nowhere(nil)
        if gone then
          leave()
          wake_first()
          return nil, unsent(gone)
        end
        while waiters[1] and waiters[1].task:done() do table.remove(waiters, 1) end
        local soonest = 1
        if waiters[1] == nil or waiters[1] == entry then
          local order = {}
          for k = 1, shared do
            local q = queues[k]
            if not is_dead(q) then order[#order + 1] = { q = q, k = k } end
          end
          -- the loads (each a sweep of the channel's leases) only where there is a choice: a
          -- single channel's try sweeps when its coordinator says full
          if order[2] then
            for _, c in ipairs(order) do c.load = c.q.ch:load() end
            table.sort(order, by_load)
          end
          local paused, first_end -- (the channels paused longer than max_pause, the first to end)
          for _, c in ipairs(order) do
            local lease, why, retry_in = c.q.ch:try(me, false)
            if lease then
              leave()
              wake_first() -- the next may find room too
              return c.q, lease
            end
            if why == "paused" and retry_in > max_pause then
              paused = (paused or 0) + 1
              if not first_end or retry_in < first_end[2] then first_end = { c.q, retry_in } end
            end
            if retry_in and retry_in < soonest then soonest = retry_in end
          end
          if paused == #order then
            -- every channel left is paused by Discord for longer than the policy waits: the
            -- item gets what a call there gets, the error its authority gives (rate_limited,
            -- unsent), from the channel whose pause ends first
            leave()
            wake_first()
            local lease, err = first_end[1].ch:acquire(refused, max_pause)
            if lease then return first_end[1], lease end
            return nil, err
          end
        end
        entry = entry or authority.queue_waiter(waiters, me, refused)
        sched:park(faceswap.now() + math.max(soonest, 0.001))
      end
    end

    local function start(i)
      local item, files = open_files(list[i])
      local own = type(item) == "table" and item.channel and queue_of(item.channel) or nil
      local built = {} -- the request per channel, built once
      local function request(q)
        local key = q.channel or NO_CHANNEL
        if not built[key] then built[key] = pack(build_item(self, item, q.channel)) end
        return unpack(built[key], 1, built[key].n)
      end
      local pre = prebuilt[i]
      if pre then built[pre.key], prebuilt[i] = pre.request, nil end
      local op, method, path = request(own or queues[1])
      if not method then return nil, path end
      local q -- the queue of the latest attempt
      local attempt, refused = 0, false
      local function once()
        local got, lease = enter(own, refused)
        if not got then return nil, lease end
        q = got
        attempt = attempt + 1
        local _, m, p, content_type, body = request(q)
        local job, err, wrote
        if not m then -- built again for this channel, it failed (its file is gone since): not sent
          err = p
        else
          local go, why = true, nil
          if book then
            go, why = book:send(i, attempt)
            wrote = go
            if not go then
              ledger_failed(why)
              go = false
            end
          end
          if go and on_send then go, why = on_send(i, attempt) end
          if go == false and book and not wrote and not ledger_error then
            -- Redis out of reach for now: not sent, tried again as the retry policy says
            err = core.error { kind = "transport", sent = false, retryable = true,
                               error = "not sent: " .. tostring(why) }
          elseif go == false then -- the caller could not record the request: it is not sent
            err = core.error { kind = "cancelled", sent = false, retryable = false,
                               error = tostring(why or "not sent (on_send said no)") }
          else
            job, err = exchange(self, op, m, p, content_type, body, attempt)
          end
        end
        refused = q.ch:answered(lease, job, err, runs(job))
        if not job then is_dead(q) end
        if wrote and core.type(job) == "job" then
          local ok, why = book:record(i, "submitted", { jobid = job.jobid })
          if not ok then ledger_failed(why) end
        elseif wrote and err and not ledgers.fate_unknown(err) then
          -- answered without a job (a 429...): nothing billed, the item may go again
          local ok, why = book:record(i, "refused", { kind = err.kind, code = err.code,
            error = tostring(err) })
          if not ok then ledger_failed(why) end
        end
        return job, err
      end
      local job, err
      repeat
        -- the first attempt made here (as client calls make theirs): one that is answered
        -- costs nothing for the policy (no closure, no packed results, no log label)
        local started = policy.deadline and faceswap.now()
        job, err = once()
        if job == nil and policy ~= NO_RETRY and retry.retryable(err) then
          job, err = retry.run(once, policy, function(e, k, o) return q.ch:delay(e, k, o) end,
            err, started, method .. " " .. path)
        end
      until job or own or not (q and q.ch:dead() and authority.dead_answer(err)) or nowhere(nil)
      close_files(files, built)
      return job, err
    end

    -- opts.stop: checked before each item is started, and (outside a task) after each step,
    -- which a caught signal cuts short. Once it says true, the items in flight are dropped.
    local stop, stopped, inflight, workers_of = opts.stop, false, {}, {}
    local next_item, workers, failure, parent = 0, 0, nil, nil
    -- With a ledger: the items to settle here, in order, but those a worker of ours took.
    local pending = {}
    for i = 1, book and n or 0 do
      if not local_errors[i] then pending[#pending + 1] = i end
    end
    local function unpend(i)
      for k = 1, #pending do
        if pending[k] == i then return table.remove(pending, k) end
      end
    end
    -- The next item for a worker, claimed in the ledger: its index, the state and record the
    -- ledger had for it; nil when none is left. Items another process settled meanwhile get
    -- its result; while every item left is another's claim, it looks again each second (or
    -- when the first claim ends, if sooner): a killed process's claims come back after them.
    local function take()
      local scanned = 0
      while pending[1] and not failure and not ledger_error and not (stop and stop()) do
        local cand = {}
        for k = 1, math.min(#pending, 64) do cand[k] = pending[k] end
        local got, why = book:claim(cand)
        if not got then
          ledger_failed(why)
          if ledger_error then return nil end
          got = { settled = {}, retry_in = 0.5 } -- Redis out of reach: asked again
        end
        for _, st in ipairs(got.settled) do
          unpend(st[1])
          results[st[1]] = ledgers.result_of(st[2], st[3], book.where)
          on_update(st[1], results[st[1]])
        end
        if got.i then
          unpend(got.i)
          return got.i, got.state, got.record
        end
        local busy = #cand - #got.settled -- (now the first of pending: to the end of the line)
        for _ = 1, math.min(busy, #pending) do
          local first = table.remove(pending, 1) -- (before the # of the next line is read)
          pending[#pending + 1] = first
        end
        scanned = scanned + busy
        if scanned >= #pending and pending[1] then
          scanned = 0
          sched:park(faceswap.now() + math.max(math.min(got.retry_in or 1, 1), 0.01))
        end
      end
    end
    -- What the ledger keeps of an item's end: done (with the job), failed (no job was made),
    -- unknown (no answer to a request that may have reached the server), refused (nothing was
    -- sent: another may send it); a job still running
    -- (its wait failed, or wait = false) stays submitted. Its claim is released.
    local function settle(i, job, err)
      local ok, why
      if core.type(job) == "job" and job:done() then
        ok, why = book:record(i, "done", { jobid = job.jobid, status = job.status,
          job = job:json() }, true)
      elseif core.type(job) == "job" or (err and err.job) then
        local jobid = job and job.jobid or err.job.jobid
        ok, why = book:record(i, "submitted", { jobid = jobid }, true)
      elseif err and ledgers.fate_unknown(err) then
        ok, why = book:record(i, "unknown", { error = tostring(err) }, true)
      elseif err then
        -- (nothing sent: "refused", which another process may send)
        ok, why = book:record(i, err.sent == false and "refused" or "failed", { kind = err.kind,
          code = err.code, error = tostring(err), sent = err.sent }, true)
      end
      if ok == nil and why then ledger_failed(why) end
    end

    local function work()
      -- what a worker makes once for all its items: its record in `inflight`, and the wait
      -- options of its items, whose on_update names the item it works on (`i`)
      local i, state, record
      local mine = { task = sched:current(), job = nil }
      local w = { on_update = function(j) on_update(i, j) end }
      for k, v in pairs(wait_opts) do w[k] = v end
      local function wait_for(job)
        -- the slot frees as soon as the job is seen to end (client:wait's poll), before
        -- on_update (which may download); a job the batch started: its wait options were
        -- checked with the batch's
        if core.type(job) == "job" then return wait_job(self, job, w) end
        return self:wait(job, w)
      end
      local function claim() i, state, record = take() end
      local function item() -- yields inside (5.1: see task.lua)
        local job, err
        if local_errors[i] then
          err = local_errors[i]
        elseif state == "submitted" and type(record) == "table" and
            type(record.jobid) == "string" then
          -- submitted by a process gone since: its job is waited for, not sent again
          mine.job = record.jobid
          if follow then job, err = wait_for(record.jobid) else job, err = self:job(record.jobid) end
        else
          job, err = start(i)
          mine.job = job
          if job then
            on_update(i, job)
            if follow then job, err = wait_for(job) end
          end
        end
        if book and not local_errors[i] then settle(i, job, err) end
        results[i] = job or err
        if not job then on_update(i, err) end
      end
      while not failure and not (stop and stop()) do
        i, state, record = nil, nil, nil
        if book then
          local ok, problem = tasks.pcall(claim)
          if not ok then failure = problem end
          if not i then break end
        else
          if next_item >= n then break end
          next_item = next_item + 1
          i = next_item
        end
        mine.job = nil
        inflight[i] = mine
        local ok, problem = tasks.pcall(item)
        inflight[i] = nil
        if not ok then failure = problem end -- on_update raised: hand it on once all are out
      end
      workers = workers - 1
      if workers == 0 and parent then sched:wake(parent) end
    end

    -- After stop(): each item in flight is a `cancelled` error (with `job` once submitted, and
    -- `sent` whether its headshot may have reached the server), each item not begun one with
    -- sent = false. on_update is not called for them.
    local function stop_all()
      stopped = true
      for i, f in pairs(inflight) do
        local sent = sched:cancel(f.task, "batch stopped")
        results[i] = core.error { kind = "cancelled", error = "batch stopped", retryable = false,
                                  sent = f.job ~= nil or sent, job = f.job }
      end
      for k = 1, #workers_of do sched:cancel(workers_of[k], "batch stopped") end
      for i = 1, n do
        results[i] = results[i] or core.error { kind = "cancelled", retryable = false,
          sent = false, error = "batch stopped before this item" }
      end
      workers = 0
    end

    for _ = 1, math.min(opts.concurrency or 4 * shared, n) do
      workers = workers + 1
      workers_of[#workers_of + 1] = sched:spawn(work)
    end
    -- a Redis ledger's claims live while this process works on them
    local renewer = book and book.kind == "redis" and sched:spawn(function()
      while true do
        sched:park(faceswap.now() + book.lease / 3)
        local ok, why = book:renew()
        if not ok then ledger_failed(why) end
      end
    end)
    if sched:current() then
      parent = sched:current()
      while workers > 0 do sched:park() end
    else
      while workers > 0 do
        sched:step(3600, true) -- true: also from a task that cannot yield
        if stop and not stopped and workers > 0 and stop() then stop_all() end
      end
    end
    if stop and not stopped and stop() then stop_all() end -- stopped before anything began
    for k = 1, #queues do queues[k].ch.on_release[queues] = nil end
    if renewer and not renewer:done() then sched:cancel(renewer, "batch ended") end
    if book then
      if book ~= opts.ledger then book:close() end
      if ledger_error then
        for i = 1, n do
          results[i] = results[i] or core.error { kind = "transport", sent = false,
            retryable = false, error = "not sent: " .. ledger_error }
        end
        results.ledger_error = ledger_error
      end
    end
    if failure then error(failure, 0) end
    if dead[1] then results.dead_channels = dead end
    return results
  end
end

return M
