-- Hostile review of issue 17, item 18, inside nginx (faceswap.resty): "A 500 whose body is
-- larger than max_response ... Correct: kind server, 'HTTP 500 answer of N bytes not read'",
-- as the libcurl transport now answers (spec/response_spec.lua "an error answer past
-- max_response"). Inside nginx the same answers are still bad_response with no code, not
-- retryable: a 429 queue-full page past max_response is never retried, a 500's status is lost.
local sim = require "spec.support.sim"
local nginx = require "spec.support.nginx"

local TOKEN = "test-token"

local SERVER = [[
  location = /call {
    content_by_lua_block {
      local faceswap = require "faceswap"
      local client = faceswap.new { token = "@TOKEN@", base_url = ngx.req.get_uri_args().base, retry = false,
                                    max_response = 65536 }
      local job, err = client:job("abc")
      if job then ngx.say("ok ", job.status) return end
      ngx.say(table.concat({ err.kind, tostring(err.code), tostring(err.retryable),
        tostring(err.retry_after), err.error }, "|"))
    }
  }
]]

local function escape(s) return (s:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end

describe("review: an error answer past max_response inside nginx #external", function()
  local s, n
  -- 100,012 bytes of documented JSON: it would be read, were it not too large
  local BIG = '{"error":"' .. ("x"):rep(100000) .. '"}'

  setup(function()
    s = sim.start { token = TOKEN, job_seconds = 600 }
    n = nginx.start { server = SERVER:gsub("@TOKEN@", TOKEN) }
  end)
  teardown(function()
    n:stop()
    s:stop()
  end)

  local function inside()
    local status, body = nginx.request(n.url .. "/call?base=" .. escape(s.base_url))
    assert.equal(200, status, body .. n:log())
    return (body:gsub("\n$", ""))
  end

  it("a 500 is server, with its status and size", function()
    s:reset()
    s:script { action = "status", status = 500, body = BIG }
    assert.equal("server|500|true|nil|HTTP 500 answer of 100012 bytes not read " ..
      "(an error answer is read up to 65536 bytes)", inside())
  end)

  it("a 429 is rate_limited and retryable, with its Retry-After", function()
    s:reset()
    s:script { action = "status", status = 429, headers = { ["Retry-After"] = "7" }, body = BIG }
    assert.equal("rate_limited|429|true|7|HTTP 429 answer of 100012 bytes not read " ..
      "(an error answer is read up to 65536 bytes)", inside())
  end)
end)
