-- Review of the channel authority's fast paths (issue 20): a client closed by a finalizer
-- while a job command is inside the fast path of its slot (taking it, or keeping it for the
-- job the POST answered) gets its answer or 'client closed', and later calls raise. The
-- collector steps all the time; a guard closes the client only once its finalizer runs with
-- a frame of the aimed function on the stack (see finalizer_spec.lua, whose pattern this is).
local fixture = require "spec.support.fixture"

local MAX_TRIES = tonumber(os.getenv("FS_TRIES")) or 20000
local GC_STEP = tonumber(os.getenv("FACESWAP_GC_STEP")) or 1

local function collect_all_the_time()
  local v54 = _VERSION == "Lua 5.4"
  if v54 then collectgarbage("incremental", 0, 0, GC_STEP) end
  local pause = collectgarbage("setpause", 0)
  return function()
    collectgarbage("setpause", pause)
    if v54 then collectgarbage("incremental", 0, 0, tonumber(os.getenv("FACESWAP_GC_STEP")) or 13) end
  end
end

local function inside(targets)
  local level = 3
  while true do
    local info = debug.getinfo(level, "f")
    if not info then return false end
    if targets[info.func] then return true end
    level = level + 1
  end
end

local newproxy = rawget(_G, "newproxy")
local function collectable(fn)
  if newproxy then
    local u = newproxy(true)
    getmetatable(u).__gc = fn
    return
  end
  setmetatable({}, { __gc = fn })
end

local function guard(action, targets, hit)
  collectable(function()
    if hit.co ~= nil or hit.off then return end
    if inside(targets) then
      hit.co = coroutine.running() or "main"
      action()
    else
      guard(action, targets, hit)
    end
  end)
end

local function jitter()
  local t = {}
  for k = 1, math.random(0, 40) do t[k] = {} end
  return #t
end

describe("review: a finalizer that closes the client inside the authority's fast path #gc", function()
  local restore, hit
  local fx = fixture.simulator { job_seconds = 30, config = { latency = 0, credits_total = 1e9 },
    after = function()
      hit.off = true
      restore()
    end }
  before_each(function()
    hit = {}
    restore = collect_all_the_time()
  end)

  local function aimed(name, fn_of)
    it("inside " .. name .. ": the call's answer or 'client closed', later calls raise", function()
      local client = fx.client
      local target = fn_of(client)
      guard(function() client:close() end, { [target] = true }, hit)
      local i, ok, job, err = 0, true, nil, nil
      while not hit.co and i < MAX_TRIES do
        i = i + 1
        jitter()
        ok, job, err = pcall(client.headshot, client, "aimed " .. i)
        if not hit.co then assert(ok and job, err) end
      end
      assert(hit.co, "the guard never ran inside " .. name)
      assert(ok, job)
      if job then
        assert.equal("aimed " .. i, job.prompt)
      else
        assert.equal("cancelled: client closed", tostring(err))
      end
      local ok2, msg = pcall(client.headshot, client, "after")
      assert.is_false(ok2)
      assert.equal("attempt to use a closed faceswap client", msg)
    end)
  end
  local function channel(client) return client._channel_of(nil) end
  aimed("Channel:acquire", function(c) return channel(c).acquire end)
  -- (take, answered and core.job_runs were aimed at too: no collector step ever ran inside
  -- them in 20,000 calls each, as they make no table, closure or string a collection can
  -- follow)
end)
