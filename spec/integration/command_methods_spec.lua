-- The command methods made from the command table, against the simulator, where a row says
-- more than one thing: a row of two encodings (headshot) is built in the client's `encoding`,
-- by its method and as a batch item alike; job and cancel take a job.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 20 }

describe("the generated command methods", function()
  local s
  setup(function() s = sim.start { job_seconds = 0.05, token = TOKEN } end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  local function posts()
    local out = {}
    for _, r in ipairs(s:requests()) do
      if r.method == "POST" then out[#out + 1] = r end
    end
    return out
  end

  it("build headshot in the client's encoding, as a method and as a batch item", function()
    local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false, encoding = "json" }
    assert(c:headshot { prompt = "one" })
    local out = c:batch({ "two", { command = "headshot", prompt = "three" } }, { wait = false })
    assert.equal("job", faceswap.type(out[1]))
    assert.equal("job", faceswap.type(out[2]))
    c:close()
    local seen = {}
    for _, r in ipairs(posts()) do seen[#seen + 1] = r.content_type .. " " .. r.body end
    table.sort(seen)
    assert.same({ 'application/json {"prompt":"one"}', 'application/json {"prompt":"three"}',
      'application/json {"prompt":"two"}' }, seen)
  end)

  it("build it as multipart by default", function()
    local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
    assert(c:headshot("one"))
    c:close()
    local r = posts()[1]
    assert.truthy(r.content_type:find("^multipart/form%-data; boundary="), r.content_type)
    assert.same({ prompt = "one" }, r.fields)
  end)

  it("take a job for job and cancel, and give its jobid to the server", function()
    local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
    local job = assert(c:headshot("one"))
    local again = assert(c:job(job, { timeout = 10 }))
    assert.equal(job.jobid, again.jobid)
    local cancelled = assert(c:cancel(job))
    assert.same({ job.jobid, "cancelled" }, { cancelled.jobid, cancelled.status })
    local done = assert(c:wait(job, FAST))
    assert.equal("cancelled", done.status)
    c:close()
  end)
end)
