-- A child process of the Redis specs: `lua5.4 spec/support/redis_child.lua ROOT MODE URL ...`
-- with this checkout's lua/ and build/5.4 (ROOT its top). Modes:
--   hold URL LEASE CHANNEL N    takes N slots with a `lease` of LEASE seconds, prints
--                               "ready BEFORE AFTER" (Redis's clock before the first and after
--                               the last), then sleeps until killed, never renewing them
--   headshots URL BASE TOKEN CHANNEL N
--                               N headshots at once (tasks) with a wait, coordinated through
--                               URL; prints "done COMPLETED" with how many completed
local root, mode = arg[1], arg[2]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
io.stdout:setvbuf("line")

if mode == "hold" then
  local url, lease, channel, n = arg[3], tonumber(arg[4]), arg[5], tonumber(arg[6])
  local c = require("faceswap.coordinator.redis").new(url, { lease = lease })
  local before = c:now()
  for _ = 1, n do assert(c:acquire(channel, "child", n)) end
  print(("ready %.6f %.6f"):format(before, c:now()))
  while true do require("faceswap.core").sleep(1) end
elseif mode == "headshots" then
  local url, base, token, channel, n = arg[3], arg[4], arg[5], arg[6], tonumber(arg[7])
  local faceswap = require "faceswap"
  local client = faceswap.new { token = token, base_url = base, channel = channel,
    coordinator = url }
  local wait = { interval = 0.05, max_interval = 0.05, timeout = 120 }
  local list = {}
  for i = 1, n do
    list[i] = client:spawn(function() return client:headshot("prompt " .. i, { wait = wait }) end)
  end
  client:run()
  local completed = 0
  for i = 1, n do
    local job, err = list[i]:result()
    if job and job.status == "completed" then
      completed = completed + 1
    else
      io.stderr:write("headshot ", i, ": ", tostring(err and (err.error or err) or job.status), "\n")
    end
  end
  print("done " .. completed)
  client:close()
end
