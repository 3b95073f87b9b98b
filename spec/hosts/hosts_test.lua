-- The library inside real hosts that nobody here wrote: LÖVE 11.4 and Neovim 0.7 (LuaJIT),
-- WeeChat (Lua 5.3). Each runs spec/hosts/work.lua's headshots against the simulator and
-- writes a report; this file checks the report against what the simulator saw.
--   make test-hosts   (builds the LuaJIT and 5.3 cores first; `make test` runs it)
-- Not a _spec file: it needs those builds and the three hosts, so `busted` alone skips it.
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"

local TOKEN = "test-token"
local JOBS = 4
local TIMEOUT = 120 -- seconds: a host that hangs is killed and fails

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local root = io.popen("pwd"):read("*l")

-- Runs a host with the report's environment; returns its exit code and the report's lines.
local function run_host(command, base_url, first_prompt)
  local report = os.tmpname()
  local log = os.tmpname()
  local env = ("FACESWAP_ROOT=%s USEAPI_TOKEN=%s USEAPI_BASE_URL=%s HOST_REPORT=%s HOST_JOBS=%d " ..
    "ALSOFT_DRIVERS=null"):format(quote(root), TOKEN, quote(base_url), quote(report), JOBS)
  if first_prompt then env = env .. " HOST_PROMPT_1=" .. quote(first_prompt) end
  local _, _, code = compat.execute(("env %s timeout %d %s </dev/null >%s 2>&1"):format(env, TIMEOUT,
    command, quote(log)))
  local lines = {}
  local f = io.open(report)
  if f then
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
  end
  local l = io.open(log)
  local output = l and l:read("*a") or ""
  if l then l:close() end
  os.remove(report)
  os.remove(log)
  return code, lines, output
end

local HOSTS = {
  { name = "LÖVE 11.4", command = "love spec/hosts/love" },
  { name = "Neovim 0.7", command = "nvim --headless -u NONE -i NONE -n --noplugin -c " ..
    quote("luafile spec/hosts/nvim.lua"), event_loop = true },
  { name = "WeeChat", command = "weechat-headless -t -r " ..
    quote("/lua load " .. root .. "/spec/hosts/weechat.lua"), event_loop = true, quits_zero = true },
}

describe("inside real hosts", function()
  local s

  setup(function() s = sim.start { job_seconds = 0.5, token = TOKEN } end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  for _, host in ipairs(HOSTS) do
    it(host.name .. " runs a batch of headshots against the simulator and downloads each image", function()
      local code, lines, output = run_host(host.command, s.base_url)
      local text = table.concat(lines, "\n")
      assert.equal(0, code, output .. text)
      assert.equal("end", lines[#lines], text)
      for i = 1, JOBS do
        local jobid, bytes = lines[i]:match("^result " .. i .. " job (%x+) completed (%d+) png$")
        assert.is_string(jobid, text)
        local job = s:job(jobid)
        assert.equal("completed", job.status)
        assert.equal("host portrait " .. i, job.prompt)
        assert.is_true(tonumber(bytes) > 0)
      end
      assert.equal(JOBS, s:count("POST"))
      local values = {}
      for i = JOBS + 1, #lines - 1 do
        local key, value = lines[i]:match("^(%S+) (%S+)$")
        values[key] = tonumber(value)
      end
      if host.event_loop then
        -- the descriptor did its part, and the steps follow the requests: no polling
        local requests = #s:requests()
        assert.is_true(values.fd_wakeups > 0, text)
        assert.is_true(values.steps <= 5 * requests + 1, values.steps .. " steps for " .. requests .. " requests")
      else
        assert.is_true(values.frames > 0, text)
        assert.is_number(values.worst_update_ms, text)
      end
    end)

    it(host.name .. " reports a job that failed" .. (host.quits_zero and "" or ", and exits 2"), function()
      local code, lines, output = run_host(host.command, s.base_url, "host portrait sim:fail")
      if not host.quits_zero then assert.equal(2, code, output) end
      local jobid = lines[1]:match("^result 1 job (%x+) failed$")
      assert.is_string(jobid, table.concat(lines, "\n"))
      assert.equal("failed", s:job(jobid).status)
      for i = 2, JOBS do assert.matches("^result " .. i .. " job %x+ completed %d+ png$", lines[i]) end
    end)

    it(host.name .. " reports an error raised inside it, and ends" ..
      (host.quits_zero and "" or " with a non-zero status"), function()
      local code, lines, output = run_host(host.command, "ftp://127.0.0.1/")
      if not host.quits_zero then assert.is_not.equal(0, code, output) end
      assert.equal(1, #lines, output)
      assert.matches("^error .*bad argument #1 to 'new' %(bad option 'base_url' %(must start with https://%)%)",
        lines[1])
      assert.equal(0, #s:requests())
    end)
  end
end)
