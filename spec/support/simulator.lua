-- The simulator's start script, kept for everything that starts it by this path: the simulator
-- itself is the module faceswap.simulator (lua/faceswap/simulator/), also `bin/faceswap-sim`.
--
-- Usage: lua5.4 spec/support/simulator.lua [--port N] [--token T] [--job-seconds S] ...
-- (the options of `bin/faceswap-sim --help`).
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../../lua/?.lua;" .. dir .. "/../../lua/?/init.lua;" .. package.path
require("faceswap.simulator.server").main(arg)
