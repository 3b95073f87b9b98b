-- Adding a command is one row (docs/development.md, "Adding a command"): csrc/command.c's
-- test-only row `ping` (one text field and channel, replyUrl, replyRef; a job), compiled in
-- with -DFACESWAP_TEST_COMMAND by `make testrow` into build/testrow, gets with no other edit a
-- client method that builds and sends its request, a batch item, a subcommand of `faceswap`
-- with its help, a row of docs/commands.md's table, its LDoc and its LuaLS types. The
-- simulator has the row's twin only with FACESWAP_SIM_TEST_COMMAND set. Each check runs a
-- child lua5.4 on the test core, beside the plain build/5.4 that has no such command.
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- the checkout's root
local sim = require "spec.support.sim"

local ROOT = nginx.root
local quote, capture = shell.quote, shell.capture

-- Runs a shell command in the checkout; returns its output (stdout and stderr) and status.
local function run(command)
  local out = capture("cd " .. quote(ROOT) .. " && (" .. command .. ") 2>&1; echo \"exit $?\"")
  return (out:gsub("exit %d+\n$", "")), tonumber(out:match("exit (%d+)\n$"))
end

-- lua5.4 running `code` with the checkout's Lua layer and the core of `build`, arguments `...`.
local function lua(build, code, ...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = quote((select(i, ...))) end
  return "lua5.4 -e " .. quote("package.path = './lua/?.lua;./lua/?/init.lua;./?.lua;' .. " ..
    "package.path; package.cpath = './" .. build .. "/?.so;' .. package.cpath; " .. code) ..
    " /dev/null " .. table.concat(args, " ")
end

-- The command line on the core of `build`.
local function faceswap(build, ...)
  return lua(build, "os.exit(require('faceswap.cli').main(arg))", ...)
end

local function lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

describe("a command added as one row of the command table #external", function()
  setup(function()
    local out, status = run("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
      "make --no-print-directory testrow LUA_VERSION=5.4 && make --no-print-directory all LUA_VERSION=5.4")
    assert.equal(0, status, out)
  end)

  it("is in core.commands() of the test build alone", function()
    local code = "local t = {} for _, c in ipairs(require('faceswap.core').commands()) do " ..
      "t[#t + 1] = c.name end print(table.concat(t, ' '))"
    local plain = "headshot saveid swapid listid setid delid delall inswapper picsi changebg " ..
      "jobs accounts account add_account delete_account"
    assert.same({ plain .. " ping\n", 0 }, { run(lua("build/testrow", code)) })
    assert.same({ plain .. "\n", 0 }, { run(lua("build/5.4", code)) })
  end)

  it("gets a client method that builds and sends its request, and a batch item", function()
    -- the child starts the simulator (which inherits FACESWAP_SIM_TEST_COMMAND), then prints
    -- what the client answers and what the simulator received
    local script = [[
      local faceswap = require "faceswap"
      local simulator = require "faceswap.simulator"
      local s = simulator.start { job_seconds = 0.05, token = "t", channels = { "1100000000000000001" } }
      local c = faceswap.new { token = "t", base_url = s.base_url, retry = false }
      local FAST = { interval = 0.05, max_interval = 0.05, timeout = 20 }
      local job, err = c:ping({ text = "hello" }, { wait = FAST })
      print("method", job and job.verb, job and job.status, job and job.prompt, err)
      local r = s:requests()[1]
      print("sent", r.method, r.path, (r.content_type:match("^[^;]*")), r.fields.text)
      local before = #s:requests()
      job, err = c:ping { channel = "1100000000000000001" }
      print("local", job, err.kind, err.code, err.error, err.sent, #s:requests() - before)
      print("misuse", select(2, pcall(c.ping, c, { text = "x", colour = "red" })))
      local out = c:batch({ { command = "ping", text = "a" }, { command = "ping", text = "b" } },
        { wait = FAST })
      print("batch", out[1].verb, out[1].status, out[1].prompt, out[2].prompt)
      print("batch misuse", select(2, pcall(c.batch, c, { { command = "picsi" } })))
      c:close()
      s:stop()
    ]]
    local out, status = run("FACESWAP_SIM_TEST_COMMAND=1 " .. lua("build/testrow", script))
    assert.equal(0, status, out)
    assert.same({
      "method\tfaceswap-ping\tcompleted\thello\tnil",
      "sent\tPOST\t/ping\tmultipart/form-data\thello",
      "local\tnil\tinvalid_request\t400\tRequired param text is missing or empty\tfalse\t0",
      "misuse\tbad argument #1 to 'ping' (unknown param 'colour')",
      "batch\tfaceswap-ping\tcompleted\ta\tb",
      "batch misuse\tbad argument #1 to 'batch' (item 1: command must be \"headshot\", " ..
        "\"changebg\" or \"ping\", got \"picsi\")",
    }, lines(out))
  end)

  it("is a route of the simulator only with FACESWAP_SIM_TEST_COMMAND set", function()
    local s = sim.start { token = "t" }
    local status, body = s:request("POST", "/ping", {})
    s:stop()
    assert.same({ 404, { error = "Not found", code = 404 } }, { status, body })
  end)

  it("gets a subcommand of faceswap, with its help", function()
    local out, status = run(faceswap("build/testrow", "help", "ping"))
    assert.equal(0, status, out)
    assert.same({ "usage: faceswap ping TEXT [OPTIONS]", "A job that answers the text (a test " ..
      "build's command).", "options:", "  --channel ID      Discord channel of the account to use" },
      { table.unpack(lines(out), 1, 4) })
    assert.truthy(out:find("\n  --wait            wait until the job has ended\n", 1, true), out)
    out = run(faceswap("build/testrow", "--help"))
    assert.truthy(out:find("\n  ping TEXT         a job that answers the text (a test build's command)\n",
      1, true), out)
    assert.same({ "faceswap: unknown command 'ping'\nTry 'faceswap --help' for usage.\n", 2 },
      { run(faceswap("build/5.4", "help", "ping")) })
  end)

  it("runs as a subcommand against the simulator", function()
    local script = [[
      local s = require("faceswap.simulator").start { job_seconds = 0.05, token = "t" }
      local p = io.popen("USEAPI_TOKEN=t USEAPI_BASE_URL=" .. s.base_url .. " " .. arg[1] ..
        " 2>&1; echo \"exit $?\"")
      io.write(p:read("*a"))
      p:close()
      s:stop()
    ]]
    local cli = faceswap("build/testrow", "ping", "hello there", "--wait", "--interval", "0.05", "--json")
    local out, status = run("FACESWAP_SIM_TEST_COMMAND=1 " .. lua("build/5.4", script, cli))
    assert.equal(0, status, out)
    assert.truthy(out:find('"verb":"faceswap-ping"', 1, true), out)
    assert.truthy(out:find('"status":"completed"', 1, true), out)
    assert.truthy(out:find('"prompt":"hello there"', 1, true), out)
    assert.truthy(out:find("\nexit 0\n$"), out)
  end)

  it("gets a row of docs/commands.md's table and its LDoc", function()
    local row = "| ping | `client:ping{...}` | `POST /ping` | **`text`**, `channel`, `replyUrl`, " ..
      "`replyRef` | a job to `wait` for | job (`verb` `faceswap-<command>`) |\n"
    local out, status = run("lua5.4 tools/gen.lua commands-table build/testrow")
    assert.equal(0, status, out)
    assert.truthy(out:find("\n" .. row, 1, true), out)
    assert.is_nil((run("lua5.4 tools/gen.lua commands-table build/5.4")):find("| ping |", 1, true))
    out, status = run("lua5.4 tools/gen.lua commands-luadoc build/testrow")
    assert.equal(0, status, out)
    assert.truthy(out:find("\n\n--- A job that answers the text (a test build's command) (POST /ping).\n" ..
      "-- Starts a job: wait for its end with @{client:wait}, or pass `wait`.\n" ..
      "-- @function client:ping\n" ..
      "-- @tparam table params `text` (required); `channel`, `replyUrl`, `replyRef` (at most 1024\n" ..
      "-- characters each)\n", 1, true), out)
  end)

  it("gets its LuaLS types", function()
    local out, status = run("lua5.4 tools/gen.lua types build/testrow")
    assert.equal(0, status, out)
    assert.truthy(out:find("\n--- The params of `client:ping` (POST /ping).\n" ..
      "---@class faceswap.params.ping\n---@field text string required\n", 1, true), out)
    assert.truthy(out:find("\n---@param params faceswap.params.ping\n" ..
      "---@return faceswap.job? # the answer, or nil and the error\n---@return faceswap.error? err\n" ..
      "function client:ping(params) end\n", 1, true), out)
    assert.is_nil((run("lua5.4 tools/gen.lua types build/5.4")):find("client:ping", 1, true))
  end)
end)
