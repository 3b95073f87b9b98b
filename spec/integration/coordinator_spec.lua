-- The in-process coordinator (lua/faceswap/coordinator/process.lua) against the contract every
-- coordinator keeps (spec/support/coordinator_contract.lua), and faceswap.new's `coordinator`
-- and `lease` options.
local faceswap = require "faceswap"
local process = require "faceswap.coordinator.process"

require("spec.support.coordinator_contract")("in process", function(opts)
  return process.new { lease = opts.lease, store = opts.share and opts.share:store() }
end)

describe("faceswap.new's coordinator option", function()
  local base = { token = "t", base_url = "http://127.0.0.1:9/v1/faceswap" }
  local function with(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end

  it("says that a shared dict works only inside nginx", function()
    assert.has_error(function() faceswap.new(with { coordinator = "shared:faceswap" }) end,
      "bad argument #1 to 'new' (option 'coordinator': a shared dict coordinator " ..
      "(\"shared:faceswap\") works only inside nginx (an ngx.shared dict))")
  end)

  it("refuses a coordinator it cannot read, and a bad lease", function()
    assert.has_error(function() faceswap.new(with { coordinator = "memcached://x" }) end,
      "bad argument #1 to 'new' (option 'coordinator' must be \"shared:DICT\" or " ..
      "\"redis://HOST:PORT/DB\", got \"memcached://x\")")
    assert.has_error(function() faceswap.new(with { lease = 0 }) end,
      "bad argument #1 to 'new' (option 'lease' must be a number of seconds from 1 to 1e9)")
  end)

  it("takes the in-process coordinator by default", function()
    local c = faceswap.new(with { lease = 5 })
    assert.equal(5, c._coordinator.lease)
    c:close()
  end)
end)
