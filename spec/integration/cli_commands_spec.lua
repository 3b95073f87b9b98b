-- The command line's subcommands made from the command table (saveid ... changebg, jobs,
-- account), run in-process through faceswap.cli.main against the simulator: exact output,
-- errors and exit status.
local fixture = require "spec.support.fixture"

local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FACE = "spec/support/demo-face.png"

describe("faceswap command line: the commands #lua_only", function()
  local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1, CH2 }, config = { blocking_seconds = 0.05 },
                                 client = false }
  local run = fx.cli

  it("saveid, listid, setid, delid: the bot's reply as content", function()
    local code, out, err = run { "saveid", "alice", FACE, "--channel", CH1 }
    assert.same({ 0, "" }, { code, err })
    assert.truthy(out:find("^jobid    %x+\nstatus   completed\ncontent  <@%d+> ID 'alice' saved"))
    code, out = run { "listid", "--channel", CH1 }
    assert.equal(0, code)
    assert.truthy(out:find("content  <@%d+> Saved IDs %(2%): 'me', 'alice' %[default: 'me'%]\n$"))
    assert.equal(0, (run { "setid", "alice", "--channel", CH1 }))
    code, out = run { "delid", "alice", "--channel", CH1 }
    assert.equal(0, code)
    assert.truthy(out:find("ID 'alice' deleted", 1, true))
  end)

  it("prints --json as the job's JSON", function()
    local code, out = run { "listid", "--channel", CH2, "--json" }
    assert.equal(0, code)
    assert.truthy(out:find('^{.*"verb":"faceswap%-listid".*}\n$'))
  end)

  it("exits 1 with the bot's reply when the result failed", function()
    local code, out, err = run { "setid", "nobody", "--channel", CH1 }
    assert.equal(1, code)
    assert.truthy(out:find("status   failed", 1, true))
    assert.truthy(err:find("^faceswap: job %x+ ended failed: Job failed\n$"))
    assert.truthy(out:find("content  <@%d+> ID 'nobody' not found"))
  end)

  it("exits 1 with one line for a local upload problem", function()
    local code, out, err = run { "saveid", "x", "/no/such.png" }
    assert.same({ 1, "", "faceswap: invalid_request: image: cannot read /no/such.png: " ..
      "No such file or directory\n" }, { code, out, err })
  end)

  it("downloads swapid's result with --download", function()
    local dir = os.tmpname()
    os.remove(dir)
    local code, out = run { "swapid", "me", FACE, "--download", dir }
    assert.equal(0, code)
    local path = out:match("file     (%S+)")
    assert.truthy(path and path:find("^" .. dir:gsub("%p", "%%%0") .. "/%x+%-1%.png$"))
    local f = assert(io.open(path, "rb"))
    assert.equal("\137PNG", f:read(4))
    f:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("changebg --wait follows the job to the end", function()
    local code, out = run { "changebg", FACE, "a beach", "--wait", "--interval", "0.05" }
    assert.equal(0, code)
    assert.truthy(out:find("^jobid    %x+\nstatus   completed\n"))
  end)

  it("jobs lists the running jobs' ids, one a line", function()
    local _, first = run { "headshot", "one" }
    local code, out = run { "jobs" }
    assert.equal(0, code)
    assert.equal(first:match("^(%x+)") .. "\n", out)
  end)

  it("account lists the accounts with credits left/total (as job does); account CHANNEL one", function()
    assert.equal(0, (run { "headshot", "a cat", "--channel", CH1 }))
    local code, out, err = run { "account" }
    assert.same({ 0, "" }, { code, err })
    local rows = {}
    for line in out:gmatch("[^\n]+") do rows[#rows + 1] = line end
    assert.equal(2, #rows)
    assert.truthy(rows[1]:find("^" .. CH1 .. "  server %d+  credits 796/800 left  discord %S+$"), rows[1])
    assert.truthy(rows[2]:find("^" .. CH2 .. "  server %d+  credits 800/800 left  discord %S+$"), rows[2])
    assert.truthy(rows[2]:find("^" .. CH2 .. "  server"))
    code, out = run { "account", CH2 }
    assert.equal(0, code)
    assert.equal(rows[2] .. "\n", out)
  end)

  it("account add reads the Discord token from DISCORD_TOKEN or stdin, then delete", function()
    local CH3, CH4 = "1100000000000000003", "1100000000000000004"
    local code, out, err = run({ "account", "add", CH3, "--server", "2200000000000000003" },
      { env = { DISCORD_TOKEN = "token-from-env" } })
    assert.same({ 0, "added account " .. CH3 .. "\n", "" }, { code, out, err })
    code, out = run({ "account", "add", CH4, "--server", "2200000000000000004" },
      { stdin = "token-from-stdin\n" })
    assert.same({ 0, "added account " .. CH4 .. "\n" }, { code, out })
    local posted = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" then posted[#posted + 1] = r.fields.discord end
    end
    assert.same({ "token-from-env", "token-from-stdin" }, posted)
    -- delete asks for --yes, as delall does: without it nothing is sent
    local before = #fx.sim:requests()
    code, out, err = run { "account", "delete", CH3 }
    assert.same({ 2, "", "faceswap: account delete removes an account's configuration: add --yes " ..
      "to confirm\nTry 'faceswap --help' for usage.\n" }, { code, out, err })
    assert.equal(before, #fx.sim:requests())
    code, out = run { "account", "delete", CH3, "--yes" }
    assert.same({ 0, "deleted account " .. CH3 .. "\n" }, { code, out })
  end)

  it("with no account, account and a 402 say how to add one", function()
    assert.equal(0, (run { "account", "delete", CH1, "--yes" }))
    assert.equal(0, (run { "account", "delete", CH2, "--yes" }))
    local hint = "faceswap: no account configured: add one with 'faceswap account add CHANNEL " ..
      "--server ID' (the Discord token from $DISCORD_TOKEN or standard input)\n"
    local code, out, err = run { "account" }
    assert.same({ 0, "", hint }, { code, out, err })
    code, out, err = run { "headshot", "a cat" }
    assert.same({ 1, "", "faceswap: payment_required (402): Account has no subscription or " ..
      "subscription expired\n" .. hint }, { code, out, err })
  end)

  it("account add without a token, or with one on the command line, is refused", function()
    local code, _, err = run { "account", "add", "1100000000000000005", "--server", "1" }
    assert.same({ 2, "faceswap: no Discord token: set DISCORD_TOKEN or write it on standard " ..
      "input\n" }, { code, err })
    code, _, err = run { "account", "add", "1100000000000000005", "--server", "1", "--discord", "t" }
    assert.same({ 2, "faceswap: unknown option '--discord'\nTry 'faceswap --help' for usage.\n" },
      { code, err })
  end)

  it("checks arguments: counts, delall --yes, account add --server", function()
    local cases = {
      { { "saveid", "me" }, "saveid needs an IMAGE" },
      { { "picsi" }, "picsi needs a SOURCE" },
      { { "listid", "x" }, "unexpected argument 'x'" },
      { { "delall" }, "delall deletes every saved face: add --yes to confirm" },
      { { "account", "add", "1" }, "account add needs --server ID" },
      { { "account", "delete" }, "account delete needs a CHANNEL" },
      { { "account", "1", "2" }, "unexpected argument '2'" },
      { { "account", "1", "--yes" }, "option '--yes' only applies to account delete" },
      { { "account", "add", "1", "--server", "2", "--yes" },
        "option '--yes' only applies to account delete" },
      { { "account", "delete", "1", "--server", "2" }, "option '--server' only applies to account add" },
      { { "setid", "me", "--wait" }, "option '--wait' does not apply to setid" },
      { { "batch", "f", "--channels", "," }, "option '--channels' needs all or channel ids " ..
        "separated by commas" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = run(c[1])
      assert.same({ 2, "", "faceswap: " .. c[2] .. "\nTry 'faceswap --help' for usage.\n" },
        { code, out, err })
    end
    local code, out = run { "delall", "--yes", "--channel", CH1 }
    assert.equal(0, code)
    assert.truthy(out:find("All saved IDs deleted (1)", 1, true))
  end)

  it("batch --channels spreads the prompts over the accounts", function()
    local list = os.tmpname()
    local f = assert(io.open(list, "w"))
    f:write("one\ntwo\nthree\nfour\n")
    f:close()
    local code, out = run { "batch", list, "--channels", CH1 .. "," .. CH2, "--interval", "0.05" }
    os.remove(list)
    assert.equal(0, code)
    local n = 0
    for _ in out:gmatch("%x+ completed\n") do n = n + 1 end
    assert.equal(4, n)
    local channels = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" then channels[r.fields.channel] = true end
    end
    assert.same({ [CH1] = true, [CH2] = true }, channels)
  end)

  it("make demo's script runs the first day to the end", function()
    local compat = require "spec.support.compat"
    local pipe = assert(io.popen(compat.lua .. " spec/support/demo.lua 2>&1; echo \"exit $?\""))
    local out = pipe:read("*a")
    pipe:close()
    assert.truthy(out:find("\nexit 0\n$"), out)
    for _, step in ipairs { "$ DISCORD_TOKEN=... faceswap account add 1100000000000000001",
      "$ faceswap saveid me face.png --channel 1100000000000000002",
      "8/8 done, 0 in flight, 0 failed", "$ faceswap delid me --channel 1100000000000000002" } do
      assert.truthy(out:find(step, 1, true), step)
    end
    local files = 0
    for _ in out:gmatch("%x+%-%d%.png +%d+ bytes") do files = files + 1 end
    assert.equal(16, files)
  end)
end)
