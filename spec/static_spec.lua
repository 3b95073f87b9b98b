-- `make static` and examples/host.c: the library linked into a C program that embeds Lua 5.4,
-- its Lua layer compiled in (faceswap_preload), driving headshots from a 60 Hz frame loop
-- against the simulator.
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"

local TOKEN = "test-token"
local BUILD = "build/5.4" -- the example embeds Lua 5.4, whichever Lua runs the specs

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns its exit code and its output (stdout and stderr).
local function run(cmd)
  local out = os.tmpname()
  local _, _, code = compat.execute(cmd .. " >" .. out .. " 2>&1")
  local f = assert(io.open(out))
  local text = f:read("*a")
  f:close()
  os.remove(out)
  return code, text
end

describe("make static and examples/host.c", function()
  local s

  setup(function()
    -- a make of its own: nothing of an outer make (make test) may leak into it
    local code, out = run("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
      "make --no-print-directory -s LUA_VERSION=5.4 static examples")
    assert(code == 0, out)
    s = sim.start { job_seconds = 0.5, token = TOKEN }
  end)
  teardown(function() s:stop() end)

  it("the archive exports luaopen_faceswap_core and faceswap_preload, nothing else", function()
    local code, out = run("nm --defined-only -g " .. BUILD .. "/libfaceswap.a")
    assert.equal(0, code)
    local names = {}
    for name in out:gmatch("\n%x+ %u ([%w_]+)") do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "faceswap_preload", "luaopen_faceswap_core" }, names)
  end)

  -- Runs the host for 4 headshots; checks each one's line against the simulator and returns
  -- the summary line.
  local function run_host(mode)
    s:reset()
    local code, out = run("USEAPI_TOKEN=" .. TOKEN .. " " .. BUILD .. "/host " .. quote(s.base_url) .. " 4 " .. mode)
    assert.equal(0, code, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(5, #lines, out)
    for i = 1, 4 do
      local line = lines[i + 1]
      local jobid = line:match("^headshot " .. i .. ": job (%x+) completed, PNG of %d+ bytes$")
      assert.is_string(jobid, line)
      assert.equal("completed", s:job(jobid).status)
      assert.equal("portrait " .. i, s:job(jobid).prompt)
    end
    assert.equal(4, s:count("POST"))
    return lines[1]
  end

  it("the C host runs headshots as tasks in its frame loop and downloads every image", function()
    assert.matches("^%d+ frames in [%d.]+ s at 60 Hz; worst step%(0%) [%d.]+ ms wall, [%d.]+ ms CPU; " ..
      "mean [%d.]+ ms CPU; voluntary context switches in step%(0%): %d+$", run_host("frames"))
  end)

  it("the C host drives them from epoll on client:fd() and next_wakeup(), steps following requests", function()
    local summary = run_host("epoll")
    local steps, on_fd = summary:match("^(%d+) steps %((%d+) on the descriptor, the rest on next_wakeup's timer%)$")
    assert.is_string(steps, summary)
    local requests = #s:requests()
    assert.is_true(tonumber(on_fd) > 0, summary)
    assert.is_true(tonumber(steps) <= 5 * requests + 1, summary .. " for " .. requests .. " requests")
  end)

  it("a failure inside the host's Lua reaches the host as an error, exit status 1", function()
    local code, out = run("USEAPI_TOKEN=" .. TOKEN .. " " .. BUILD .. "/host ftp://127.0.0.1/ 1")
    assert.equal(1, code)
    assert.equal("host: host:3: bad argument #1 to 'new' (bad option 'base_url' (must start with https://))\n",
      out)
  end)
end)
