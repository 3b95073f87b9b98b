-- spec/hosts/work.lua: what each real host (LÖVE, Neovim, WeeChat; spec/hosts/hosts_test.lua
-- starts them) does with the library, so that only the driving differs: N headshots as tasks
-- of one client, each waited for and its first image downloaded, and a report file for the
-- spec to read. Settings come from the environment the spec gives the host:
--   FACESWAP_ROOT   the checkout (lua/ and build/<ver>/ are found under it)
--   USEAPI_TOKEN, USEAPI_BASE_URL   the simulator's
--   HOST_REPORT     the report file; HOST_JOBS the number of headshots; HOST_PROMPT_1 the
--                   first headshot's prompt (the simulator fails a job whose prompt says sim:fail)
-- Never writes to stdout or stderr (WeeChat 3.8 crashes on io.stderr from a script).
local M = {}

local PNG = "\137PNG\r\n\26\n"

-- Puts the checkout's Lua layer and the core built for `build` (a build/ directory name:
-- "luajit", "5.3", ...) first on the search paths; returns the root.
function M.paths(build)
  local root = assert(os.getenv("FACESWAP_ROOT"), "FACESWAP_ROOT not set")
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath
  return root
end

-- Spawns the headshots on a new client; returns the client and the results table (filled in
-- as tasks end: one line per headshot).
function M.start(faceswap)
  local client = faceswap.new { token = os.getenv("USEAPI_TOKEN"),
                                base_url = os.getenv("USEAPI_BASE_URL") }
  local results = {}
  for i = 1, tonumber(os.getenv("HOST_JOBS") or "3") do
    client:spawn(function()
      local prompt = i == 1 and os.getenv("HOST_PROMPT_1") or "host portrait " .. i
      local job, err = client:headshot(prompt,
        { wait = { interval = 0.2, max_interval = 0.2, timeout = 60 } })
      if not job then
        results[i] = "error " .. tostring(err)
        return
      elseif job.status ~= "completed" then
        results[i] = ("job %s %s"):format(job.jobid, job.status)
        return
      end
      local image, derr = client:download(job:urls()[1])
      if not image then
        results[i] = "error " .. tostring(derr)
        return
      end
      results[i] = ("job %s %s %d %s"):format(job.jobid, job.status, #image,
        image:sub(1, #PNG) == PNG and "png" or "not-png")
    end)
  end
  return client, results
end

-- Writes the report: "result I LINE" for each headshot, then "KEY VALUE" for each of extra
-- (an array of {key, value}), then "end". Returns how many headshots did not end with their
-- image, for the host's exit status.
function M.report(results, extra)
  local f = assert(io.open(assert(os.getenv("HOST_REPORT"), "HOST_REPORT not set"), "w"))
  local failed = 0
  for i = 1, tonumber(os.getenv("HOST_JOBS") or "3") do
    local line = tostring(results[i])
    if not line:find(" completed %d+ png$") then failed = failed + 1 end
    f:write("result ", i, " ", line, "\n")
  end
  for _, kv in ipairs(extra or {}) do f:write(kv[1], " ", tostring(kv[2]), "\n") end
  f:write("end\n")
  f:close()
  return failed
end

-- Writes a report that says only what went wrong.
function M.fail(message)
  local path = os.getenv("HOST_REPORT")
  local f = path and io.open(path, "w")
  if f then
    f:write("error ", tostring(message):gsub("\n", " | "), "\n")
    f:close()
  end
end

return M
