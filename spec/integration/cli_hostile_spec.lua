-- Hostile input on the command line: every subcommand, each of its arguments and options, and
-- the environment it reads, given control bytes, Latin-1, empty strings, dot segments and
-- paths that are no files. The user gets a usage error (exit status 2) or one line (1), never
-- a Lua traceback.
local fixture = require "spec.support.fixture"
local faceswap = require "faceswap"
local shell = require "spec.support.shell"

local unpack = table.unpack or _G.unpack
local TOKEN = "test-token-for-hostile-input"
local HOSTILE = { "a\1b", "caf\233", "", "..", "x\127y", "\239\187\191\0" }
local IMAGE = "spec/support/demo-face.png"

-- Each subcommand and its arguments in order (valid values), as the CLI's help names them.
local function subcommands()
  local list = {
    { "headshot", "a portrait" }, { "job", "abc" }, { "wait", "abc" }, { "cancel", "abc" },
    { "batch", "PROMPTS" }, { "jobs" }, { "account" }, { "account", "ch1" },
    { "account", "add", "ch1" }, { "account", "delete", "ch1" },
  }
  local seen = { headshot = true }
  for _, c in ipairs(faceswap.commands) do
    if c.common and not seen[c.name] then
      local args = { c.name }
      for _, f in ipairs(c.fields) do
        if f.required then args[#args + 1] = f.kind == "file" and IMAGE or "text" end
      end
      list[#list + 1] = args
    end
  end
  return list
end

describe("command line: hostile input", function()
  local fx = fixture.simulator { job_seconds = 0.05, blocking_seconds = 0.01, token = TOKEN, client = false }
  local tmp
  setup(function() tmp = shell.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. shell.quote(tmp)) end)

  -- Runs the CLI in this process: exit status, stdout, stderr; a raise is returned as status
  -- "raised" with its message as stderr.
  local function run(args, env)
    env = env or {}
    local vars = { DISCORD_TOKEN = "discord-token-1234" }
    for k, v in pairs(env) do vars[k] = v end
    return fx.cli(args, { catch_signals = false, raised = true, env = vars,
                          stdin = { read = function() return env.stdin or "" end } })
  end

  local function check(label, code, out, err)
    local where = label .. "\n" .. tostring(err)
    assert.is_nil((out .. err):find("stack traceback", 1, true), where)
    assert.is_true(code == 0 or code == 1 or code == 2, where)
    if code == 1 and not label:find("batch", 1, true) then -- one line, "faceswap: ..." (a batch adds its progress)
      assert.matches("^faceswap: [^\n]+\n", err, nil, nil, where)
    end
  end

  it("gives the exact message for the inputs that raised before", function()
    local prompts = tmp .. "/latin1.txt"
    local f = assert(io.open(prompts, "wb"))
    f:write("fine\ncaf\233\n")
    f:close()
    local cases = {
      { { "headshot", "a\1b" }, 2, "faceswap: prompt contains control byte 0x01\n" },
      { { "headshot", "caf\233" }, 2, "faceswap: prompt is not valid UTF-8\n" },
      { { "saveid", "caf\233", IMAGE }, 2, "faceswap: idname is not valid UTF-8\n" },
      { { "headshot", "x", "--channel", "c\1" }, 2, "faceswap: option '--channel': channel contains " ..
        "control byte 0x01\n" },
      { { "wait", "a\1b" }, 2, "faceswap: jobid contains control byte 0x01\n" },
      { { "job", "caf\233" }, 2, "faceswap: jobid is not valid UTF-8\n" },
      { { "batch", prompts }, 1, "faceswap: " .. prompts .. ":2: prompt is not valid UTF-8; nothing " ..
        "was sent\n" },
      { { "batch", prompts, "--state", tmp }, 1, "faceswap: " .. prompts .. ":2: prompt is not valid " ..
        "UTF-8; nothing was sent\n" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = run(c[1])
      local want = c[3] .. (c[2] == 2 and "Try 'faceswap --help' for usage.\n" or "")
      assert.same({ c[2], "", want }, { code, out, err })
    end
    -- a directory as the state file
    local fine = tmp .. "/fine.txt"
    f = assert(io.open(fine, "wb"))
    f:write("fine\n")
    f:close()
    assert.same({ 1, "", "faceswap: " .. tmp .. ": Is a directory\n" },
      { run { "batch", fine, "--state", tmp } })
    -- a Discord token with a control byte
    local code, out, err = run({ "account", "add", "ch1", "--server", "1" }, { DISCORD_TOKEN = "tok\1en-1234" })
    assert.same({ 2, "", "faceswap: discord contains control byte 0x01\nTry 'faceswap --help' for usage.\n" },
      { code, out, err })
    assert.equal(0, fx.sim:count("POST"))
  end)

  it("never shows a traceback, whatever argument of whatever subcommand is hostile", function()
    local n = 0
    for _, base in ipairs(subcommands()) do
      for k = 2, #base + 1 do -- each argument in turn (k = #base + 1: an extra one)
        for _, bad in ipairs(HOSTILE) do
          local args = { unpack(base) }
          args[k] = bad
          if args[1] == "batch" and k == 2 then
            -- the file's line is hostile, and so is its name
            local path = tmp .. "/prompts.txt"
            local f = assert(io.open(path, "wb"))
            f:write("fine\n", bad, "\n")
            f:close()
            check("batch line " .. ("%q"):format(bad), run { "batch", path, "--interval", "0.05" })
          end
          check(table.concat(args, " "), run(args))
          n = n + 1
        end
      end
    end
    assert.truthy(n > 100)
  end)

  it("never shows a traceback for a hostile option or environment variable", function()
    local options = { "--channel", "--channels", "--reply-url", "--reply-ref", "--options",
      "--server", "--interval", "--concurrency", "--download", "--state", "--base-url" }
    local prompts = tmp .. "/ok.txt"
    local f = assert(io.open(prompts, "wb"))
    f:write("fine\n")
    f:close()
    local hostile = { unpack(HOSTILE) }
    hostile[#hostile + 1] = tmp -- a directory
    hostile[#hostile + 1] = "/dev/null/x"
    for _, base in ipairs(subcommands()) do
      if base[1] == "batch" then base = { "batch", prompts, "--interval", "0.05" } end
      for _, option in ipairs(options) do
        for _, bad in ipairs(hostile) do
          local args = { unpack(base) }
          args[#args + 1] = option
          -- paths under the temporary directory, not the checkout ("" stays the empty path)
          local path = (option == "--download" or option == "--state") and bad ~= "" and bad ~= tmp
          args[#args + 1] = path and (tmp .. "/" .. bad) or bad
          if option == "--base-url" and bad == "" then args[#args] = "." end -- (see below)
          if ({ headshot = true, wait = true, changebg = true, picsi = true })[args[1]] then
            -- (--download waits)
            args[#args + 1] = option == "--interval" and "--json" or "--interval"
            args[#args + 1] = option ~= "--interval" and "0.05" or nil
          end
          check(table.concat(args, " "), run(args))
        end
      end
      for _, name in ipairs { "USEAPI_TOKEN", "USEAPI_BASE_URL", "DISCORD_TOKEN" } do
        for _, bad in ipairs(hostile) do
          -- (an empty base URL is the default one, useapi.net's: not asked for here)
          if bad == "" and name == "USEAPI_BASE_URL" then bad = "." end
          check(name .. "=" .. bad .. " " .. table.concat(base, " "), run(base, { [name] = bad }))
        end
      end
    end
  end)
end)
