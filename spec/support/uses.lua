-- The modules a spec file uses, required in one line (so spec files do not open with the same
-- run of require lines):
--
--   local faceswap, sim, shell = require "spec.support.uses" ("faceswap", "sim", "shell")
--
-- A name of a module of spec/support (sim, shell, compat, fixture, nginx, tls, ...) stands for
-- spec.support.<name>; any other name is required as it is. Loaded in the order given.
local SUPPORT = {}
for _, name in ipairs { "sim", "shell", "compat", "fixture", "nginx", "tls", "connect_proxy", "contract",
                        "coordinator_contract" } do
  SUPPORT[name] = true
end

return function(...)
  local n, modules = select("#", ...), {}
  for i = 1, n do
    local name = select(i, ...)
    modules[i] = require(SUPPORT[name] and "spec.support." .. name or name)
  end
  return (table.unpack or _G.unpack)(modules, 1, n) -- _G.unpack: LuaJIT, 5.1
end
