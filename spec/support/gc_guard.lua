-- The "guard object" pattern of the finalizer specs (spec/integration/finalizer_spec.lua and
-- review_authority_spec.lua): a __gc finalizer that acts only when it runs inside the place a
-- spec aims at (a frame of a given function on the stack), with the collector stepping all
-- the time (a step every 2^FACESWAP_GC_STEP bytes allocated, 1 when unset; `make test-asan`
-- sets it for its interpreter too) and each cycle at once after the last.
local M = {}

local GC_STEP = tonumber(os.getenv("FACESWAP_GC_STEP")) or 1
-- calls (or rounds) a guard may take to land where it is aimed: a count, not a time
M.MAX_TRIES = tonumber(os.getenv("FS_TRIES")) or 20000

-- The collector stepping all the time; returns what puts it back.
function M.collect_all_the_time()
  local v54 = _VERSION == "Lua 5.4"
  if v54 then collectgarbage("incremental", 0, 0, GC_STEP) end
  local pause = collectgarbage("setpause", 0)
  return function()
    collectgarbage("setpause", pause)
    if v54 then collectgarbage("incremental", 0, 0, tonumber(os.getenv("FACESWAP_GC_STEP")) or 13) end
  end
end

-- Whether a function of `targets` has a frame on the running coroutine's stack, above the
-- finalizer that asks.
local function inside(targets)
  local level = 3 -- 1 this function, 2 the finalizer
  while true do
    local info = debug.getinfo(level, "f")
    if not info then return false end
    if targets[info.func] then return true end
    level = level + 1
  end
end

-- An object whose finalizer is fn: a table on 5.2+, a userdata on 5.1 and LuaJIT (whose
-- tables have no __gc).
local newproxy = rawget(_G, "newproxy")
local function collectable(fn)
  if newproxy then
    local u = newproxy(true)
    getmetatable(u).__gc = fn
    return
  end
  setmetatable({}, { __gc = fn })
end

-- A guard: its finalizer calls action() when it runs inside one of `targets` (then hit.co is
-- the coroutine it ran in), and otherwise leaves another guard.
function M.guard(action, targets, hit)
  collectable(function()
    if hit.co ~= nil or hit.off then return end
    if inside(targets) then
      hit.co = coroutine.running() or "main"
      action()
    else
      M.guard(action, targets, hit)
    end
  end)
end

-- Some garbage of a random size: the loops allocate the same each time round, and without
-- this the collector's cycle can fall in step with them, its finalizers always running at the
-- same place.
function M.jitter()
  local t = {}
  for k = 1, math.random(0, 40) do t[k] = {} end
  return #t
end

return M
