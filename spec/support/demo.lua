-- demo.lua: what `make demo` runs. Starts the bundled simulator on loopback, submits a
-- headshot, follows it to completion with a status line, prints the result URLs, and stops
-- the simulator. No token or credits needed.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]*$") or "."
local version = _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" .. package.path
package.cpath = root .. "/build/" .. version .. "/?.so;" .. package.cpath

local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local server = sim.start { job_seconds = 3, token = "demo-token" }
print(("simulator listening on %s (%s)"):format(server.base_url, faceswap._VERSION))

local client = faceswap.new { token = "demo-token", base_url = server.base_url }
local prompt = "studio portrait, soft light --no green --square"
local job, err = client:headshot(prompt)
if not job then
  server:stop()
  io.stderr:write("headshot failed: ", tostring(err), "\n")
  os.exit(1)
end
print(("submitted job %s: %q, %d credits, %d of %d left"):format(job.jobid, job.prompt,
  job.credits, job.credits_left, job.credits_total))

-- On a terminal the status line rewrites itself; elsewhere each change gets its own line.
local tty = os.execute("test -t 1") == true
local t0 = faceswap.now()
local function status_line(j)
  io.write((tty and "\r" or "") .. ("  %-10s %5.1fs"):format(j.status, faceswap.now() - t0),
    tty and "" or "\n")
  io.flush()
end
status_line(job)
local done
done, err = client:wait(job, { interval = 0.25, max_interval = 0.5, timeout = 30,
                                on_update = status_line })
if tty then io.write("\n") end
client:close()
server:stop()
if not done then
  io.stderr:write("wait failed: ", tostring(err), "\n")
  os.exit(1)
end
print(("job %s %s after %.1fs; results:"):format(done.jobid, done.status, faceswap.now() - t0))
for _, url in ipairs(done:urls()) do print("  " .. url) end
