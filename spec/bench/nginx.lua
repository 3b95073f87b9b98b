-- Proof that nothing blocks inside nginx: N concurrent requests to ONE nginx worker, each
-- submitting a headshot through the client to a simulator that answers after L seconds.
-- A worker that blocked on each call would need N x L; cosockets need about L.
-- Usage (from the repository root, after `make` and `make LUA_VERSION=luajit`):
--   lua5.4 spec/bench/nginx.lua [N=50] [L=0.2] [RUNS=5]
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath
local sim = require "spec.support.sim"
local nginx = require "spec.support.nginx"

local N, L, RUNS = tonumber(arg[1]) or 50, tonumber(arg[2]) or 0.2, tonumber(arg[3]) or 5

local s = sim.start { job_seconds = 60, latency = L, token = "bench-token" }
local n = nginx.start { server = ([[
    location = /headshot {
      content_by_lua_block {
        local client = require("faceswap").new { token = "bench-token", base_url = "@SIM@" }
        local job, err = client:headshot(ngx.var.arg_prompt)
        ngx.say(job and job.status or tostring(err))
      }
    }]]):gsub("@SIM@", s.base_url) }

-- Sends N requests at once and reads every answer: the wall time and how many started.
local function burst() return nginx.burst(n.port, N, "started") end

burst() -- warm-up: worker start, module load, connection pool
local walls = {}
for r = 1, RUNS do
  local wall, started = burst()
  assert(started == N, started .. " of " .. N .. " headshots started in run " .. r)
  walls[r] = wall
  s:reset()
end
table.sort(walls)
local median = walls[math.floor((RUNS + 1) / 2)]
n:stop()
s:stop()

print(string.format("| concurrent requests, one worker | answer time L | wall (median of %d) | wall / L |", RUNS))
print("|--:|--:|--:|--:|")
print(string.format("| %d | %.0f ms | %.0f ms | **%.2f** |", N, L * 1000, median * 1000, median / L))
print()
print("Command: `lua5.4 spec/bench/nginx.lua " .. N .. " " .. L .. " " .. RUNS .. "`")
