-- Callbacks reach every node (issue 19 item 4): the replyUrl endpoint
-- (faceswap.resty.callback) publishes each ended job to the coordinator, and a client:wait
-- on another nginx (one Redis between them), or on another worker of the same nginx (a
-- shared dict), returns as soon as the callback lands, without a poll.
local nginx = require "spec.support.nginx"
local redis = require "spec.support.redis"
local sim = require "spec.support.sim"

local TOKEN = "callbacks-token"

-- /headshot: starts a headshot whose replyUrl is ?reply=, then waits on it with the client's
-- defaults (polls 30 s apart with a coordinator) and answers the job's status, the time it
-- returned (ngx.now(), the epoch) and this worker's pid. /callback: the endpoint, its handler
-- noting when each job came. /came: when job ?id= came, and to which worker.
local SERVER = [[
    location = /headshot {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", coordinator = "@COORD@" }
        local job, err = client:headshot { prompt = "p", replyUrl = ngx.var.arg_reply }
        if job then job, err = client:wait(job, { timeout = 60 }) end
        ngx.update_time()
        ngx.say(job and job.status or tostring(err), " ", string.format("%.3f", ngx.now()), " ",
          ngx.worker.pid(), " ", job and job.jobid or "")
        client:close()
      }
    }
    location = /callback {
      content_by_lua_block {
        require("faceswap.resty").callback(function(job)
          ngx.update_time()
          ngx.shared.came:set(job.jobid, string.format("%.3f %d", ngx.now(), ngx.worker.pid()))
        end, { coordinator = "@COORD@" })
      }
    }
    location = /came {
      content_by_lua_block { ngx.say(ngx.shared.came:get(ngx.var.arg_id) or "") }
    }
]]

local function server(values)
  return (SERVER:gsub("@(%u+)@", values))
end

-- The GETs of /jobs the simulator answered (a client's polls).
local function polls(s)
  local n = 0
  for _, r in ipairs(s:requests()) do
    if r.method == "GET" and r.path:find("/jobs", 1, true) then n = n + 1 end
  end
  return n
end

-- One headshot-and-wait on `a`, its callback sent to `b`: what each said.
local function round(s, a, b)
  local status, body = nginx.request(a.url .. "/headshot?reply=" .. b.url .. "/callback")
  assert.equal(200, status, body)
  local job_status, done_at, pid, jobid = body:match("^(%S+) (%S+) (%d+) (%S*)\n$")
  assert.equal("completed", job_status, body)
  local came = sim.wait_for(function()
    local _, text = nginx.request(b.url .. "/came?id=" .. jobid)
    return text ~= "\n" and text or nil
  end, 10)
  local came_at, came_pid = came:match("^(%S+) (%d+)\n$")
  return { waited = tonumber(done_at) - tonumber(came_at), wait_pid = pid, came_pid = came_pid,
           polls = polls(s), jobid = jobid }
end

describe("callbacks reach every node", function()
  local s, r
  setup(function()
    s = sim.start { token = TOKEN, job_seconds = 1 }
    r = redis.start()
  end)
  teardown(function()
    if s then s:stop() end
    if r then r:close() end
  end)
  before_each(function() s:reset() end)

  it("a wait on nginx A returns within 0.5 s of the callback landing on nginx B, no poll (Redis)", function()
    local values = { TOKEN = TOKEN, SIM = s.base_url, COORD = r.url }
    local a = nginx.start { shared = { came = "1m" }, server = server(values) }
    local b = nginx.start { shared = { came = "1m" }, server = server(values) }
    local ok, result = pcall(round, s, a, b)
    a:stop()
    b:stop()
    assert(ok, result)
    assert.equal(0, result.polls)
    assert.is_true(result.waited < 0.5, "returned " .. result.waited .. " s after the callback")
    assert.equal("1", r:cli("EXISTS", "faceswap:job:" .. result.jobid)) -- kept for later waits
  end)

  it("a wait on one worker returns within 0.5 s of the callback landing on another (shared dict)", function()
    local values = { TOKEN = TOKEN, SIM = s.base_url, COORD = "shared:faceswap" }
    local n = nginx.start { workers = 2, shared = { came = "1m", faceswap = "1m" }, server = server(values) }
    -- each connection goes to a worker at random (reuseport): rounds until one crossed
    local crossed, rounds = nil, 0
    local ok, err = pcall(function()
      repeat
        s:reset()
        local result = round(s, n, n)
        rounds = rounds + 1
        assert.equal(0, result.polls)
        assert.is_true(result.waited < 0.5, "returned " .. result.waited .. " s after the callback")
        if result.wait_pid ~= result.came_pid then crossed = result end
      until crossed or rounds >= 20
    end)
    n:stop()
    assert(ok, err)
    assert.is_table(crossed, "no callback landed on the other worker in 20 rounds")
  end)
end)
