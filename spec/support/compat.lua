-- What the specs need that differs between the Luas they run on (5.1 to 5.4, LuaJIT 2.1 with the
-- 5.1 API): `make test` runs the whole suite on 5.4 and LuaJIT. The library has no use for
-- this file; only specs (and spec/support/sim.lua) require it.
--
--   local compat = require "spec.support.compat"
--   compat.lua, compat.build   -- "lua5.4" / "build/5.4", or "luajit" / "build/luajit", ...
--   compat.interpreter         -- the interpreter running this process (ASan's Lua too)
--   compat.execute(cmd)        -- os.execute as 5.2+ returns it: true|nil, "exit"|"signal", code
--   compat.pack, compat.unpack -- table.pack and table.unpack (5.2+)
local M = {}

M.jit = rawget(_G, "jit") ~= nil

-- The interpreter running the specs, as a shell command, and where `make` put its build: a
-- child process that loads the library runs on the same Lua as the spec that starts it.
M.lua = M.jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
M.build = "build/" .. (M.jit and "luajit" or _VERSION:match("%d+%.%d+"))
-- The interpreter running this process as a command (ASan's own Lua under `make test-asan`,
-- which loads its own build), for a child that must run on the same: else M.lua.
M.interpreter = rawget(_G, "arg") and arg[-1] or M.lua

M.unpack = table.unpack or _G.unpack -- _G.unpack: 5.1
function M.pack(...) return { n = select("#", ...), ... } end

-- os.execute(cmd) with 5.2's results everywhere; 5.1 returns the wait status alone.
function M.execute(cmd)
  local status, how, code = os.execute(cmd)
  if type(status) ~= "number" then return status, how, code end
  if status % 256 == 0 then
    code = math.floor(status / 256)
    return code == 0 or nil, "exit", code
  end
  return nil, "signal", status % 128
end

return M
