-- One redaction of the tokens everywhere (faceswap.log's redact): a server or proxy that echoes
-- the API token or a Discord token back in its error text gets it replaced by [token] in the
-- log lines, in tostring(err) and the error's fields, in what the command line prints (stderr,
-- --json) and in what it records in a --state file.
local fixture, faceswap, logs, shell, cjson =
  require "spec.support.uses" ("fixture", "faceswap", "faceswap.log", "shell", "cjson")

local TOKEN = "secret-api-token-0123456789"
local DISCORD = "discord-secret-token-ABCDEF"

describe("redaction of echoed tokens", function()
  local fx = fixture.simulator { job_seconds = 0.05, token = TOKEN, client = false, tmp = true }

  -- The next answer to `match` echoes both tokens.
  local function echo(match, status)
    fx.sim:script { action = "status", status = status or 401, match = match,
               body = cjson.encode { error = "token " .. TOKEN .. " refused",
                                     errorDetails = "Authorization: Bearer " .. TOKEN .. "; discord " .. DISCORD } }
  end

  local function run(args, env)
    return fx.cli(args, { catch_signals = false, env = { DISCORD_TOKEN = (env or {}).DISCORD_TOKEN } })
  end

  it("redact replaces every occurrence of each secret, and leaves short ones alone", function()
    assert.equal("a [token] b [token] [token]",
      logs.redact("a " .. TOKEN .. " b " .. TOKEN .. " " .. DISCORD, { TOKEN, DISCORD }))
    assert.equal("the word tok stays", logs.redact("the word tok stays", { "tok" }))
    assert.equal("100% [token]", logs.redact("100% a.b-c%d+e", { "a.b-c%d+e" }))
  end)

  it("an error object's text and tostring(err) never carry the API token", function()
    local lines = {}
    local client = faceswap.new { token = TOKEN, base_url = fx.base_url, retry = false,
                                  log = function(_, message) lines[#lines + 1] = message end }
    echo("^POST /headshot")
    local job, err = client:headshot("a portrait")
    assert.is_nil(job)
    assert.equal("unauthorized (401): token [token] refused", tostring(err))
    assert.equal("token [token] refused", err.error)
    assert.equal("Authorization: Bearer [token]; discord " .. DISCORD, err.errorDetails)
    assert.equal("failed: unauthorized (401): token [token] refused", "failed: " .. err)
    client:close()
  end)

  it("add_account's error never carries the Discord token it sent", function()
    local client = faceswap.new { token = TOKEN, base_url = fx.base_url, retry = false }
    echo("^POST /account", 400)
    local ok, err = client:add_account { channel = "123", server = "456", discord = DISCORD }
    assert.is_nil(ok)
    assert.equal("invalid_request (400): token [token] refused", tostring(err))
    assert.equal("Authorization: Bearer [token]; discord [token]", err.errorDetails)
    client:close()
  end)

  it("the command line's last line, with or without --json, never carries a token", function()
    echo("^POST /headshot")
    assert.same({ 1, "", "faceswap: unauthorized (401): token [token] refused\n" },
      { run { "headshot", "a portrait" } })
    echo("^POST /headshot")
    assert.same({ 1, "", '{"error":{"kind":"unauthorized","code":401,"text":"unauthorized (401): ' ..
      'token [token] refused"}}\n' }, { run { "headshot", "a portrait", "--json" } })
    -- a server that puts both tokens in its error text
    fx.sim:script { action = "status", status = 400, match = "^POST /account",
               body = cjson.encode { error = "bad discord " .. DISCORD .. " for " .. TOKEN } }
    assert.same({ 1, "", "faceswap: invalid_request (400): bad discord [token] for [token]\n" },
      { run({ "account", "add", "123", "--server", "456" }, { DISCORD_TOKEN = DISCORD }) })
    -- a job whose error echoes the token, as --json prints it
    fx.sim:script { action = "status", status = 200, match = "^GET /jobs",
               body = cjson.encode { jobid = "abc", verb = "faceswap-headshot", status = "failed",
                                     error = "upstream said " .. TOKEN } }
    local code, out = run { "job", "abc", "--json" }
    assert.equal(0, code)
    assert.is_nil(out:find(TOKEN, 1, true), out)
    assert.truthy(out:find("upstream said [token]", 1, true), out)
  end)

  it("a --state file records the error without the token", function()
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    local f = assert(io.open(prompts, "wb"))
    f:write("a portrait\n")
    f:close()
    echo("^POST /headshot", 400)
    local code, out, err = run { "batch", prompts, "--state", state }
    assert.equal(1, code, err)
    assert.equal("- error invalid_request (400): token [token] refused\n", out)
    assert.is_nil(err:find(TOKEN, 1, true), err)
    local text = shell.read(state)
    assert.is_nil(text:find(TOKEN, 1, true), text)
    local records = {}
    for line in text:gmatch("[^\n]+") do records[#records + 1] = cjson.decode(line) end
    assert.same({ state = "failed", line = 1, prompt = "a portrait",
                  error = "invalid_request (400): token [token] refused" }, records[2])
  end)
end)
