-- Two processes sharing one account through the Redis coordinator (a real redis-server and the
-- simulator): the behavioural spec of the in-process authority (24 headshots at once on one
-- account draw at most 0.5 429s per accepted job), with the 24 split between two processes
-- that know of each other only through Redis.
local sim = require "spec.support.sim"
local redis = require "spec.support.redis"
local shell = require "spec.support.shell"

local TOKEN = "test-token"
local CH = "1100000000000000001"
local ROOT = shell.capture("pwd"):gsub("%s+$", "")

describe("two processes on one account through Redis #external", function()
  local s, server

  setup(function()
    s = sim.start { job_seconds = 1, token = TOKEN, channels = { CH } }
    server = redis.start()
  end)
  teardown(function()
    server:close()
    s:stop()
  end)

  it("run 24 headshots at once with at most 0.5 429s per accepted job", function()
    s:config { max_running = 3, job_seconds = 1 }
    local pipes = {}
    for k = 1, 2 do
      pipes[k] = assert(io.popen(("lua5.4 %s/spec/support/redis_child.lua %s headshots %s %s %s %s 12")
        :format(shell.quote(ROOT), shell.quote(ROOT), shell.quote(server.url),
          shell.quote(s.base_url), TOKEN, CH)))
    end
    for k = 1, 2 do
      assert.equal("done 12", pipes[k]:read("*l"))
      pipes[k]:close()
    end
    local posts = 0
    for _, r in ipairs(s:requests()) do
      if r.method == "POST" and r.path == "/headshot" then posts = posts + 1 end
    end
    local rejected = s:stats().rejected
    assert.equal(24 + rejected, posts)
    assert.is_true(rejected / 24 <= 0.5, rejected .. " 429s for 24 jobs")
  end)
end)
