-- Error objects read well: one line from tostring, and `..` joins that line with strings, on
-- either side, as a user writing `print("failed: " .. err)` expects.
local faceswap = require "faceswap"
local core = require "faceswap.core"

-- An error as the server's 429 makes it, its text on two lines.
local function rate_limited()
  local _, err = core.read_response("headshot", 429, "",
    '{"error":"Unable to lock Discord\\nafter 3 attempts","code":429}')
  return err
end

describe("error objects #unit", function()
  it("are one line in tostring", function()
    assert.equal("rate_limited (429): Unable to lock Discord after 3 attempts",
      tostring(rate_limited()))
  end)

  it("concatenate with a string on their right or their left", function()
    local err = rate_limited()
    assert.equal("failed: rate_limited (429): Unable to lock Discord after 3 attempts",
      "failed: " .. err)
    assert.equal("rate_limited (429): Unable to lock Discord after 3 attempts; giving up",
      err .. "; giving up")
    assert.equal("[rate_limited (429): Unable to lock Discord after 3 attempts]",
      "[" .. err .. "]")
  end)

  it("concatenate with numbers and with each other", function()
    local err = rate_limited()
    local timeout = core.error { kind = "timeout", error = "no answer in time" }
    assert.equal("3 rate_limited (429): Unable to lock Discord after 3 attempts",
      3 .. " " .. err)
    assert.equal("timeout: no answer in time / timeout: no answer in time",
      timeout .. " / " .. timeout)
    assert.equal("timeout: no answer in timetimeout: no answer in time", timeout .. timeout)
  end)

  it("concatenate as errors a client returns", function()
    local client = faceswap.new { token = "t", retry = false }
    local _, err = client:headshot { prompt = "" }
    client:close()
    assert.equal("failed: invalid_request (400): Required param prompt is missing or empty",
      "failed: " .. err)
  end)

  it("still refuse to join what a string cannot, as Lua's own `..` does", function()
    local err = rate_limited()
    assert.has_error(function() return err .. nil end, "attempt to concatenate a nil value")
    assert.has_error(function() return {} .. err end, "attempt to concatenate a table value")
    local ok, message = pcall(function() return err .. true end)
    assert.is_false(ok)
    assert.matches("error_spec%.lua:%d+: attempt to concatenate a boolean value$", message)
  end)
end)
