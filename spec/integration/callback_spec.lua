-- Callbacks end to end: the client sends replyUrl/replyRef, the simulator POSTs the finished
-- job there, and a receiver (spec/support/receiver.lua, a child process, so this blocking spec
-- can poll it) keeps what arrived. faceswap.decode must read the body back into the same job
-- that polling returned.
local faceswap = require "faceswap"
local cjson = require "cjson"
local http = require "socket.http"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"

local WAIT = { interval = 0.05, max_interval = 0.05, timeout = 10 }

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Starts the receiver next to the simulator; returns {url, pid, pipe}.
local function start_receiver()
  local script = sim.simulator:gsub("simulator%.lua$", "receiver.lua")
  -- the shell prints its pid, then becomes the receiver (same pid) through exec
  local pipe = assert(io.popen("echo $$; exec lua5.4 " .. shell_quote(script) .. " --parent-pid $PPID", "r"))
  local pid = tonumber(pipe:read("*l"))
  local line = pipe:read("*l")
  local url = (line or ""):match("^listening (http://127%.0%.0%.1:%d+)$")
  if not (pid and url) then
    pipe:close()
    error("receiver did not start: " .. tostring(line))
  end
  return { pipe = pipe, pid = pid, url = url }
end

local function stop_receiver(r)
  os.execute("kill " .. r.pid .. " 2>/dev/null")
  r.pipe:read("*a")     -- EOF: the child has exited
  r.pipe:close()       -- and is reaped
end

describe("callbacks", function()
  local receiver, hook
  local hooks = 0
  local fx = fixture.simulator { job_seconds = 0.1, client = function()
    hooks = hooks + 1                 -- a path of its own per spec: no strays from earlier ones
    hook = receiver.url .. "/hook/" .. hooks
    return { reply_url = hook }
  end }
  setup(function() receiver = start_receiver() end)
  teardown(function() stop_receiver(receiver) end)

  -- What the receiver kept for this spec's hook, oldest first.
  local function received()
    local body, code = http.request(receiver.url .. "/received")
    assert.equal(200, code)
    local path = hook:match("^http://[^/]+(/.*)$")
    local out = {}
    for _, r in ipairs(cjson.decode(body)) do
      if r.path == path then out[#out + 1] = r end
    end
    return out
  end

  -- Waits for n callbacks at the receiver and for the simulator to have finished every delivery
  -- it started, so that counting what arrived is meaningful; returns what arrived.
  local function delivered(n)
    assert.truthy(sim.wait_for(function() return #received() >= n end, 5), "no callback arrived")
    assert.truthy(sim.wait_for(function()
      for _, cb in ipairs(fx.sim:callbacks()) do
        if not cb.done then return false end
      end
      return true
    end, 5), "the simulator is still delivering")
    return received()
  end

  -- The one callback for a job, decoded; checks how it was sent.
  local function only_callback()
    local got = delivered(1)
    assert.equal(1, #got)
    assert.equal("POST", got[1].method)
    assert.equal("application/json", got[1].headers["content-type"])
    local job = assert(faceswap.decode(got[1].body))
    assert.equal("job", faceswap.type(job))
    return job
  end

  it("delivers the completed job, equal to the one polling returned", function()
    local job = assert(fx.client:headshot { prompt = "studio portrait", replyRef = "order-1" })
    assert.equal(hook, job.replyUrl)
    local polled = assert(fx.client:wait(job, WAIT))
    assert.equal("completed", polled.status)
    local decoded = only_callback()
    assert.is_true(decoded == polled, "callback " .. decoded:json() .. " ~= polled " .. polled:json())
    assert.equal("order-1", decoded.replyRef)
    assert.equal(hook, decoded.replyUrl)
    assert.equal("completed", decoded.status)
    assert.is_true(decoded:done())
    assert.equal(2, #decoded:urls())
    assert.same(polled:urls(), decoded:urls())
  end)

  it("delivers a failed job", function()
    local job = assert(fx.client:headshot { prompt = "portrait sim:fail", replyRef = "order-2" })
    local polled = assert(fx.client:wait(job, WAIT))
    assert.equal("failed", polled.status)
    local decoded = only_callback()
    assert.equal("failed", decoded.status)
    assert.equal("Job failed", decoded.error)
    assert.equal("order-2", decoded.replyRef)
    assert.is_true(decoded == polled)
    assert.same({}, decoded:urls())
  end)

  it("delivers a cancelled job", function()
    fx.sim:config { job_seconds = 60 }
    local job = assert(fx.client:headshot { prompt = "portrait", replyRef = "order-3" })
    assert.equal("cancelled", assert(fx.client:cancel(job.jobid)).status)
    local decoded = only_callback()
    assert.equal("cancelled", decoded.status)
    assert.equal(job.jobid, decoded.jobid)
    assert.equal("order-3", decoded.replyRef)
    assert.is_true(decoded == assert(fx.client:job(job.jobid)))
  end)

  it("lets a receiver match callbacks to jobs by replyRef, whatever their order", function()
    fx.sim:config { job_seconds = 60 }
    local a = assert(fx.client:headshot { prompt = "first", replyRef = "order-a" })
    local b = assert(fx.client:headshot { prompt = "second sim:fail", replyRef = "order-b" })
    fx.sim:advance(b.jobid, "failed")          -- b finishes first
    fx.sim:advance(a.jobid, "completed")
    local by_ref = {}
    for _, r in ipairs(delivered(2)) do
      local job = assert(faceswap.decode(r.body))
      assert.is_nil(by_ref[job.replyRef], "two callbacks for " .. tostring(job.replyRef))
      by_ref[job.replyRef] = job
    end
    assert.equal(a.jobid, by_ref["order-a"].jobid)
    assert.equal(b.jobid, by_ref["order-b"].jobid)
    assert.equal("completed", by_ref["order-a"].status)
    assert.equal("failed", by_ref["order-b"].status)
    assert.is_true(by_ref["order-a"] == assert(fx.client:job(a.jobid)))
    assert.is_true(by_ref["order-b"] == assert(fx.client:job(b.jobid)))
  end)
end)
