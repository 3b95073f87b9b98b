-- The Redis coordinator (lua/faceswap/coordinator/redis.lua, over faceswap.redis) against a real
-- redis-server each describe starts (spec/support/redis.lua): the contract every coordinator
-- keeps, and the client's loop carrying its connection; and the example of docs/fleet.md, run
-- as written by a child process with $FACESWAP_COORDINATOR naming that Redis.
local faceswap = require "faceswap"
local redis = require "spec.support.redis"
local sim = require "spec.support.sim"
local shell = require "spec.support.shell"
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
    assert.is_true(c:release("1100000000000000001", lease))
    assert.equal("", server:cli("ZRANGE", "faceswap:{1100000000000000001}:leases", "0", "-1"))
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

  it("runs docs/fleet.md's example as written, the coordinator from $FACESWAP_COORDINATOR", function()
    local s = sim.start { job_seconds = 0.2, token = "docs-token", channels = { "1100000000000000001" } }
    local code = shell.code_block("docs/fleet.md", "## Sharing accounts through Redis", "lua")
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(code)
    f:close()
    local root = shell.capture("pwd"):gsub("%s+$", "")
    local out = shell.capture(("FACESWAP_COORDINATOR=%s USEAPI_TOKEN=docs-token USEAPI_BASE_URL=%s " ..
      "LUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>&1"):format(shell.quote(server.url),
      shell.quote(s.base_url), shell.quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
      shell.quote(root .. "/build/5.4/?.so;;"), shell.quote(file)))
    os.remove(file)
    s:stop()
    assert.equal("1\tcompleted\n2\tcompleted\n3\tcompleted\n4\tcompleted\n5\tcompleted\n" ..
      "6\tcompleted\n", out)
    -- its slots were taken in Redis: the channel's leases key was made there
    assert.equal("", server:cli("ZRANGE", "faceswap:{1100000000000000001}:leases", "0", "-1"))
    assert.is_not_nil(server:cli("HGET", "faceswap:{1100000000000000001}:state", "next"):match("^%d+$"))
  end)
end)
