-- luacheck settings. The library, bin/faceswap and everything the spec process loads run on
-- Lua 5.1 to 5.4 and LuaJIT 2.1: "min" is what all of them have. "probes" names the
-- few newer functions used only behind a check for them, as in `table.unpack or _G.unpack`.
-- The simulator and the receiver run as lua5.4 child processes: 5.4 there.
stds.probes = { read_globals = { table = { fields = { "unpack" } }, math = { fields = { "type", "tointeger" } } } }
std = "min+probes"
max_line_length = 120
files["spec"] = { std = "min+probes+busted" }
files["spec/support/simulator.lua"] = { std = "lua54" }
-- the simulator's server (all of faceswap.simulator but its handle, init.lua) runs on lua5.4 too
files["lua/faceswap/simulator"] = { std = "lua54" }
files["lua/faceswap/simulator/init.lua"] = { std = "min+probes" }
files["bin/faceswap-sim"] = { std = "lua54" }
files["spec/support/receiver.lua"] = { std = "lua54" }
-- a JSON fixture line as upstream sends it
files["spec/unit/job_spec.lua"] = { std = "min+probes+busted", max_line_length = false }
-- scripts that run inside real hosts (spec/hosts/hosts_test.lua), with each host's globals
files["spec/hosts/love"] = { std = "min+probes", globals = { "love" } }
files["spec/hosts/nvim.lua"] = { std = "min+probes", read_globals = { "vim" } }
files["spec/hosts/weechat.lua"] = { std = "min+probes", read_globals = { "weechat" },
                                    globals = { "faceswap_host_fd", "faceswap_host_timer" } }
