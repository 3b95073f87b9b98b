-- The specs' nginx and Redis start on a port that was free a moment before. `make test` runs
-- its passes side by side, so another process can take that port first: the server then
-- cannot bind, and a readiness check that only connects would meet the other process's
-- server. Both helpers see it and start again on another port.
local nginx = require "spec.support.nginx"
local redis = require "spec.support.redis"

-- The next port the helper hands out as "free" is this one.
local function hand_out(helper, port)
  local free_port = helper.free_port
  helper.free_port = function()
    helper.free_port = free_port
    return port
  end
end

describe("the specs' servers on a port another one took meanwhile #external", function()
  it("nginx starts on another port, and the answers are its own", function()
    local first = nginx.start { server = "location /hi { return 200 'first\\n'; }" }
    hand_out(nginx, first.port)
    local second = nginx.start { server = "location /hi { return 200 'second\\n'; }" }
    local answers = { nginx.request(first.url .. "/hi"), (nginx.request(second.url .. "/hi")) }
    local _, body = nginx.request(second.url .. "/hi")
    first:stop()
    second:stop()
    assert.are_not.equal(first.port, second.port)
    assert.same({ 200, 200 }, answers)
    assert.equal("second\n", body)
  end)

  it("redis-server starts on another port, and the one answering is its own", function()
    local first = redis.start()
    hand_out(redis, first.port)
    local second = redis.start()
    first:cli("SET", "who", "first")
    local who = second:cli("GET", "who")
    first:close()
    second:close()
    assert.are_not.equal(first.port, second.port)
    assert.equal("", who)
    assert.equal("redis://127.0.0.1:" .. second.port .. "/0", second.url)
  end)
end)
