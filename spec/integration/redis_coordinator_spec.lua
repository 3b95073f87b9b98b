-- The Redis coordinator (lua/faceswap/coordinator/redis.lua, over faceswap.redis) against a real
-- redis-server each describe starts (spec/support/redis.lua): the contract every coordinator
-- keeps, and the client's loop carrying its connection.
local faceswap = require "faceswap"
local redis = require "spec.support.redis"
local coordinator = require "faceswap.coordinator.redis"

describe("the Redis coordinator", function()
  local server
  setup(function() server = redis.start() end)
  teardown(function() server:close() end)

  local n = 0
  require("spec.support.coordinator_contract")("redis", function(opts)
    local prefix
    if opts.share then
      prefix = opts.share.prefix
    else
      n = n + 1
      prefix = "spec" .. n .. ":"
    end
    return coordinator.new(server.url, { lease = opts.lease, prefix = prefix })
  end)

  it("keeps its keys under faceswap:, leases scored by their end on Redis's clock", function()
    local client = faceswap.new { token = "t", base_url = "http://127.0.0.1:9/v1/faceswap",
      coordinator = server.url, lease = 30 }
    local c = client._coordinator
    local lease = c:acquire("1100000000000000001", "h", 3)
    local score = tonumber(server:cli("ZSCORE", "faceswap:{1100000000000000001}:leases", lease))
    local now = c:now()
    assert.is_true(score > now + 29 and score <= now + 30, score .. " vs " .. now)
    assert.equal(c.epoch, server:cli("GET", "faceswap:epoch"))
    c:learn("1100000000000000001", 4)
    assert.equal("4", server:cli("HGET", "faceswap:{1100000000000000001}:state", "capacity"))
    client:close()
  end)

  it("answers inside a task by parking it: step(0) never waits on Redis", function()
    local client = faceswap.new { token = "t", base_url = "http://127.0.0.1:9/v1/faceswap",
      coordinator = server.url }
    local c = client._coordinator
    local steps = 0
    local t = client:spawn(function() return c:acquire("task-ch", "h", 3), c:running("task-ch") end)
    while not t:done() do
      client:step(0)
      steps = steps + 1
      if not t:done() then
        -- what a host's loop does: wait for the client's descriptor or its next wakeup
        local wake = client:next_wakeup()
        assert.is_not_nil(wake)
        client:step(math.min(wake, 1))
      end
    end
    local lease, running = t:result()
    assert.is_string(lease)
    assert.equal(1, running)
    assert.is_true(steps >= 2, "answered inside the first step(0)")
    client:close()
  end)
end)
