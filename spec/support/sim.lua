-- The specs' handle on the simulator: the module faceswap.simulator (lua/faceswap/simulator/
-- init.lua, the checkout's own copy), plus `simulator`, the path of the start script beside
-- this file.
local source = debug.getinfo(1, "S").source:match("^@(.*)$") or "spec/support/sim.lua"
local dir = source:match("^(.*)/[^/]*$") or "."
if dir:sub(1, 1) ~= "/" then
  local pwd = io.popen("pwd")
  dir = pwd:read("*l") .. "/" .. dir
  pwd:close()
end
local lua = dir .. "/../../lua/"
if not package.path:find(lua, 1, true) then
  package.path = lua .. "?.lua;" .. lua .. "?/init.lua;" .. package.path
end

return setmetatable({ simulator = dir .. "/simulator.lua" }, { __index = require "faceswap.simulator" })
