-- Per-call options (issue 21, items 1 and 2): every command method takes one trailing options
-- table (`timeout`, `retry`, `channel`, and `wait` on the commands that start a job), checked
-- before anything is sent; `wait` returns the finished job or the call's own error, which
-- client:wait(client:headshot(p), opts) loses (and now says so).
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FACE = "spec/support/demo-face.png"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }
local SPEC = debug.getinfo(1, "S").source:match("^@(.*)$")

describe("per-call options", function()
  local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1, CH2 }, config = { blocking_seconds = 0.05 },
                                 client = { retry = false } }

  local function api_requests(pattern)
    local found = {}
    for _, r in ipairs(fx.sim:requests()) do
      if not pattern or (r.method .. " " .. r.path):find(pattern) then found[#found + 1] = r end
    end
    return found
  end

  describe("wait", function()
    it("returns the job once it has ended, for a prompt or a params table", function()
      local job = assert(fx.client:headshot("studio light", { wait = FAST }))
      assert.equal("completed", job.status)
      assert.equal(2, #job:urls())
      job = assert(fx.client:headshot({ prompt = "studio light" }, { wait = FAST }))
      assert.equal("completed", job.status)
      assert.equal("studio light", job.prompt)
    end)

    it("wait = true waits with the defaults (a first poll after 10 s)", function()
      local job = assert(fx.client:headshot("p", { wait = true }))
      assert.equal("completed", job.status)
      assert.equal(1, #api_requests("^GET /jobs/$")) -- one poll: the job ended long before
    end)

    it("keeps a failed call's error: a wrong token is unauthorized (401), not a raise", function()
      local wrong = faceswap.new { retry = false, token = "wrong-token", base_url = fx.base_url }
      local job, err = wrong:headshot("p", { wait = { interval = 5 } })
      wrong:close()
      assert.is_nil(job)
      assert.equal("unauthorized", err.kind)
      assert.equal(401, err.code)
      assert.equal("unauthorized (401): Unauthorized", tostring(err))
      assert.equal(1, #api_requests())
    end)

    it("returns the wait's own error: a timeout with the last job seen", function()
      fx.sim:config { job_seconds = 60 }
      local job, err = fx.client:headshot("p", { wait = { interval = 0.05, timeout = 0.2 } })
      assert.is_nil(job)
      assert.equal("timeout", err.kind)
      assert.equal("started", err.job.status)
    end)

    it("calls on_update on each change of status", function()
      local seen = {}
      local job = assert(fx.client:headshot("p", { wait = { interval = 0.02, max_interval = 0.02,
        on_update = function(j) seen[#seen + 1] = j.status end } }))
      assert.equal("completed", job.status)
      assert.equal("completed", seen[#seen])
    end)

    it("changebg and an asynchronous picsi wait too; a picsi result returns at once", function()
      local job = assert(fx.client:changebg({ image = FACE, a_background_photo_of = "a beach" },
        { wait = FAST }))
      assert.same({ "faceswap-changebg", "completed" }, { job.verb, job.status })
      job = assert(fx.client:picsi({ source_image = FACE, target_image_gif_or_video = FACE,
        options = "sim:async" }, { wait = FAST }))
      assert.same({ "faceswap-picsi", "completed" }, { job.verb, job.status })
      local before = #api_requests("^GET /jobs")
      job = assert(fx.client:picsi({ source_image = FACE, target_image_gif_or_video = FACE },
        { wait = FAST }))
      assert.equal("completed", job.status)
      assert.equal(before, #api_requests("^GET /jobs"))
    end)

    it("client:wait(nil, err) still returns nil, err", function()
      local wrong = faceswap.new { retry = false, token = "wrong-token", base_url = fx.base_url }
      local job, err = wrong:wait(wrong:headshot("p"))
      wrong:close()
      assert.is_nil(job)
      assert.equal("unauthorized", err.kind)
    end)
  end)

  describe("timeout", function()
    it("bounds that call's attempts only", function()
      fx.sim:script { action = "delay", seconds = 1, match = "^GET /jobs$", count = 2 }
      local ids, err = fx.client:jobs { timeout = 0.2 }
      assert.is_nil(ids)
      assert.equal("timeout", err.kind)
      ids = assert(fx.client:jobs())     -- the client's 60 s: the same delay is waited out
      assert.same({}, ids)
    end)

    it("may be longer than the client's", function()
      local short = faceswap.new { retry = false, token = fx.TOKEN, base_url = fx.base_url,
                                   timeout = 0.2 }
      fx.sim:script { action = "delay", seconds = 0.6, match = "^POST /listid$", count = 2 }
      local job, err = short:listid(nil, { channel = CH1 })
      assert.is_nil(job)
      assert.equal("timeout", err.kind)
      job = assert(short:listid(nil, { channel = CH1, timeout = 30 }))
      assert.equal("completed", job.status)
      short:close()
    end)

    it("applies to the polls of a wait", function()
      fx.sim:script { action = "delay", seconds = 1, match = "^GET /jobs/$", count = 5 }
      local done, err = fx.client:headshot("p", { timeout = 0.2, wait = { interval = 0.05,
        max_failures = 1 } })
      assert.is_nil(done)
      assert.equal("timeout", err.kind)
      assert.equal("started", err.job.status)
      assert.equal(1, #api_requests("^GET /jobs/$"))
    end)
  end)

  describe("retry", function()
    it("is merged over the client's policy for that call only", function()
      local c = faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
                               retry = { attempts = 1, min_delay = 0, max_delay = 0 } }
      fx.sim:script { action = "queue_full", match = "^POST /headshot$", count = 2 }
      local job = assert(c:headshot("p", { retry = { attempts = 3 } }))
      assert.equal("started", job.status)
      assert.equal(3, #api_requests("^POST /headshot$"))
      fx.sim:script { action = "queue_full", match = "^POST /headshot$", count = 1 }
      local none, err = c:headshot("p")   -- the client's single attempt again
      assert.is_nil(none)
      assert.equal("rate_limited", err.kind)
      assert.equal(4, #api_requests("^POST /headshot$"))
      c:close()
    end)

    it("false turns the client's retries off for that call", function()
      local c = faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
                               retry = { attempts = 5, min_delay = 0, max_delay = 0 } }
      fx.sim:script { action = "queue_full", match = "^GET /jobs$", count = 1 }
      local ids, err = c:jobs { retry = false }
      assert.is_nil(ids)
      assert.equal("rate_limited", err.kind)
      assert.equal(1, #api_requests("^GET /jobs$"))
      c:close()
    end)

    it("a table turns retries on where the client has none", function()
      fx.sim:script { action = "queue_full", match = "^GET /jobs/$", count = 1 }
      local job = assert(fx.client:headshot("p"))
      local again = assert(fx.client:job(job, { retry = { min_delay = 0, max_delay = 0 } }))
      assert.equal(job.jobid, again.jobid)
      assert.equal(2, #api_requests("^GET /jobs/$"))
    end)
  end)

  describe("channel", function()
    it("is that call's default channel", function()
      assert(fx.client:headshot("p", { channel = CH2 }))
      assert(fx.client:listid(nil, { channel = CH2 }))
      assert(fx.client:saveid({ idname = "bob", image = FACE }, { channel = CH2 }))
      local got = {}
      for _, r in ipairs(api_requests("^POST")) do got[#got + 1] = r.fields.channel end
      assert.same({ CH2, CH2, CH2 }, got)
      assert.truthy(fx.sim:accounts()[CH2].ids[2] == "bob")
    end)

    it("agrees with params.channel or raises", function()
      assert(fx.client:headshot({ prompt = "p", channel = CH1 }, { channel = CH1 }))
      assert.equal(CH1, api_requests("^POST")[1].fields.channel)
    end)
  end)

  describe("misuse raises at the caller's line, before anything is sent", function()
    local cases = {
      { function(c) c:headshot("p", { foo = 1 }) end,
        "bad argument #2 to 'headshot' (unknown option 'foo')" },
      { function(c) c:headshot({ prompt = "p" }, { timeout = 0 }) end,
        "bad argument #2 to 'headshot' (option 'timeout' must be a number of seconds from 0.001 to 1e9)" },
      { function(c) c:headshot("p", 5) end,
        "bad argument #2 to 'headshot' (table of options expected, got number)" },
      { function(c) c:headshot("p", { retry = { attemps = 2 } }) end,
        "bad argument #2 to 'headshot' (option 'retry': unknown option 'attemps')" },
      { function(c) c:headshot("p", { retry = true }) end,
        "bad argument #2 to 'headshot' (option 'retry' must be a table or false, got boolean)" },
      { function(c) c:headshot("p", { wait = { intervall = 1 } }) end,
        "bad argument #2 to 'headshot' (option 'wait': unknown option 'intervall')" },
      { function(c) c:headshot("p", { wait = { timeout = -1 } }) end,
        "bad argument #2 to 'headshot' (option 'wait': option 'timeout' must be a positive number of " ..
          "seconds, at most 1e9)" },
      { function(c) c:headshot("p", { wait = 5 }) end,
        "bad argument #2 to 'headshot' (option 'wait' must be true, false or a table of wait options, got number)" },
      { function(c) c:headshot({ prompt = "p", channel = CH1 }, { channel = CH2 }) end,
        "bad argument #2 to 'headshot' (option 'channel' and params.channel differ)" },
      { function(c) c:headshot("p", { channel = ".." }) end,
        "bad argument #2 to 'headshot' (option 'channel': channel \"..\" is not a channel id: a URL " ..
          "path cannot carry \".\" or \"..\")" },
      { function(c) c:changebg({ image = FACE, a_background_photo_of = "x" }, { bogus = true }) end,
        "bad argument #2 to 'changebg' (unknown option 'bogus')" },
      { function(c) c:saveid({ idname = "x", image = FACE }, { wait = true }) end,
        "bad argument #2 to 'saveid' (option 'wait' is only for the commands that start a job " ..
          "(changebg, headshot, picsi))" },
      { function(c) c:listid(nil, { foo = 1 }) end, "bad argument #2 to 'listid' (unknown option 'foo')" },
      { function(c) c:jobs { channel = CH1 } end, "bad argument #1 to 'jobs' (unknown option 'channel')" },
      { function(c) c:accounts { foo = 1 } end, "bad argument #1 to 'accounts' (unknown option 'foo')" },
      { function(c) c:jobs({}, { timeout = 1 }) end,
        "bad argument #2 to 'jobs' (jobs takes no params: its options are argument #1)" },
      { function(c) c:account(CH1, { channel = CH2 }) end,
        "bad argument #2 to 'account' (option 'channel': the channel is argument #1)" },
      { function(c) c:delete_account(CH1, { foo = 1 }) end,
        "bad argument #2 to 'delete_account' (unknown option 'foo')" },
      { function(c) c:add_account({ channel = CH1, server = "1", discord = "x" }, { channel = CH1 }) end,
        "bad argument #2 to 'add_account' (option 'channel': the channel is params.channel)" },
      { function(c) c:job("abc", { wait = true }) end,
        "bad argument #2 to 'job' (option 'wait' is only for the commands that start a job (changebg, " ..
          "headshot, picsi))" },
      { function(c) c:cancel("abc", { foo = 1 }) end, "bad argument #2 to 'cancel' (unknown option 'foo')" },
      { function(c) c:wait(c:headshot(""), { interval = 5 }) end,
        "bad argument #1 to 'wait' (jobid or job expected, got nil: to keep a failed call's error, pass " ..
          "{ wait = ... } to the call itself, or check its result first)" },
    }
    fx.misuse(SPEC, cases, function(i) assert.equal(0, #api_requests(), "case " .. i) end)
  end)
end)
