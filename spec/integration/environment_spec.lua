-- The library's defaults from the environment: $USEAPI_BASE_URL is the default base_url, as
-- $USEAPI_TOKEN is the default token (API.md), for the library as for the command line.
local fixture = require "spec.support.fixture"
local compat = require "spec.support.compat"
local shell = require "spec.support.shell"

-- Runs `code` in a child Lua with the library on its paths and env (name -> value, false
-- unsets) over USEAPI_TOKEN and USEAPI_BASE_URL unset; returns what it printed (stderr too).
local function child(env, code)
  local words = { "env", "-u", "USEAPI_TOKEN", "-u", "USEAPI_BASE_URL" }
  for name, value in pairs(env) do words[#words + 1] = name .. "=" .. shell.quote(value) end
  local prelude = 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path; ' ..
    'package.cpath = "./' .. compat.build .. '/?.so;" .. package.cpath; ' ..
    'local faceswap = require "faceswap"; '
  words[#words + 1] = compat.lua .. " -e " .. shell.quote(prelude .. code) .. " 2>&1"
  return shell.capture(table.concat(words, " "))
end

describe("faceswap.new's defaults from the environment #lua_only", function()
  local fx = fixture.simulator { token = "env-token", client = false }

  it("sends to $USEAPI_BASE_URL when no base_url is given", function()
    assert.equal("started\n", child({ USEAPI_TOKEN = "env-token", USEAPI_BASE_URL = fx.base_url },
      'print(faceswap.new{ retry = false }:headshot("a cat").status)'))
    assert.equal(1, fx.sim:count("POST"))
  end)

  it("prefers the base_url option to $USEAPI_BASE_URL", function()
    assert.equal("started\n", child({ USEAPI_BASE_URL = "http://127.0.0.1:9/nowhere" },
      'print(faceswap.new{ token = "env-token", retry = false, base_url = "' .. fx.base_url ..
      '" }:headshot("a cat").status)'))
    assert.equal(1, fx.sim:count("POST"))
  end)

  it("uses useapi.net's URL when $USEAPI_BASE_URL is empty or unset", function()
    local line = "faceswap.client: (https://api.useapi.net/v1/faceswap)\n"
    assert.equal(line, child({ USEAPI_BASE_URL = "" }, 'print(faceswap.new{ token = "t" })'))
    assert.equal(line, child({}, 'print(faceswap.new{ token = "t" })'))
  end)

  it("names $USEAPI_BASE_URL when it is the URL that is wrong", function()
    assert.equal("false\tbad argument #1 to 'new' (bad USEAPI_BASE_URL (plain http:// is only " ..
      "for loopback hosts))\n", child({ USEAPI_BASE_URL = "http://example.com" },
      'print(pcall(faceswap.new, { token = "t" }))'))
  end)
end)
