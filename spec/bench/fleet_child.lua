-- spec/bench/fleet_child.lua - one process of the fleet benchmark (spec/bench/fleet.lua): the
-- command line, `faceswap batch ...` as bin/faceswap runs it, through faceswap.cli's main with
-- the client's `lease` set (the command line has no option for it; faceswap.cli.main's
-- `options` is its embedding interface), and the coordinator when one is given.
--
--   lua5.4 spec/bench/fleet_child.lua ROOT LEASE COORDINATOR|- batch FILE --channels all ...
--
-- Writes "start T" before and "end T STATUS CPU" after the batch on stderr (T: the monotonic
-- clock, shared by the processes of a machine; CPU: this process's user + system seconds), so
-- that the bench reads the makespan and the client CPU without timing the processes itself.
local root, lease, coordinator = arg[1], tonumber(arg[2]), arg[3]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local faceswap = require "faceswap"
local cli = require "faceswap.cli"

local args = {}
for i = 4, #arg do args[#args + 1] = arg[i] end
local options = { lease = lease }
if coordinator ~= "-" then options.coordinator = coordinator end
io.stderr:write(("start %.6f\n"):format(faceswap.now()))
io.stderr:flush()
local status = cli.main(args, { options = options })
io.stderr:write(("end %.6f %d %.4f\n"):format(faceswap.now(), status, os.clock()))
io.stderr:flush()
os.exit(status)
