-- The commands' client methods (generated from the core's command table) against the
-- simulator: each command's success, its local validation, the server's errors, the channel
-- lock, picsi's two answers, and the accounts.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"

local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FACE = "spec/support/demo-face.png"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 10 }

describe("client commands", function()
  local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1, CH2 }, config = { blocking_seconds = 0.1 },
                                 client = { retry = false, channel = CH1 } }
  local sent = fx.sent_under

  describe("identities", function()
    it("saves a face from a path, lists, sets the default, deletes", function()
      local job = assert(fx.client:saveid { idname = "alice", image = FACE })
      assert.equal("job", faceswap.type(job))
      assert.same({ "faceswap-saveid", "completed", CH1 }, { job.verb, job.status, job.channel })
      local r = sent("/saveid")[1]
      assert.equal("POST", r.method)
      job = assert(fx.client:listid())
      assert.equal("faceswap-listid", job.verb)
      assert.truthy(job.content:find("'alice'", 1, true))
      assert.truthy(job.content:find("'me'", 1, true))
      job = assert(fx.client:setid { idname = "alice" })
      assert.equal("completed", job.status)
      assert.truthy(fx.client:listid().content:find("[default: 'alice']", 1, true))
      job = assert(fx.client:delid { idname = "alice" })
      assert.equal("completed", job.status)
      assert.equal("DELETE", sent("/delid")[1].method)
      assert.is_nil(fx.client:listid().content:find("'alice'", 1, true))
      job = assert(fx.client:delall { channel = CH1 })
      assert.equal("completed", job.status)
      assert.truthy(fx.client:listid().content:find("no saved ID", 1, true))
    end)

    it("saves a face from {data, filename}, with the type taken from the bytes", function()
      local f = assert(io.open(FACE, "rb"))
      local png = f:read("*a")
      f:close()
      local job = assert(fx.client:saveid { idname = "bob", image = { data = png, filename = "b.png" } })
      assert.equal("completed", job.status)
      assert.truthy(fx.client:listid().content:find("'bob'", 1, true))
    end)

    it("answers the bot's failure as a failed result, not an error", function()
      local job = assert(fx.client:setid { idname = "nobody" })
      assert.equal("failed", job.status)
      assert.truthy(job.content:find("ID 'nobody' not found", 1, true))
    end)

    it("swaps a saved face onto an image: the result is in attachments, downloadable", function()
      local job = assert(fx.client:swapid { idname = "me", image = FACE })
      assert.same({ "faceswap-swapid", "completed" }, { job.verb, job.status })
      local urls = job:urls()
      assert.equal(1, #urls)
      local png = assert(fx.client:download(urls[1]))
      assert.equal("\137PNG", png:sub(1, 4))
    end)

    it("inswapper swaps onto a completed job's message in the channel", function()
      local shot = assert(fx.client:wait(fx.client:headshot("portrait"), FAST))
      local job = assert(fx.client:inswapper { targetMessageId = shot.messageId })
      assert.same({ "faceswap-inswapper", "completed", 1 }, { job.verb, job.status, #job:urls() })
    end)
  end)

  describe("local validation", function()
    it("fails before sending, with the server's texts", function()
      local job, err = fx.client:saveid { idname = "x" }
      assert.is_nil(job)
      assert.same({ "invalid_request", 400, "Required param image is missing or empty", false },
        { err.kind, err.code, err.error, err.sent })
      job, err = fx.client:saveid { idname = "x", image = "/no/such.png" }
      assert.is_nil(job)
      assert.equal("image: cannot read /no/such.png: No such file or directory", err.error)
      job, err = fx.client:changebg { image = FACE }
      assert.is_nil(job)
      assert.equal("Required param a_background_photo_of is missing or empty", err.error)
      job, err = fx.client:add_account { discord = "t", server = "1", channel = "c" }
      assert.is_nil(job)
      assert.equal("Required param channel (c) is not valid Discord channel id", err.error)
      assert.same({}, fx.sim:requests())
    end)

    it("raises for misuse, pointing at the caller", function()
      local ok, message = pcall(function() fx.client:saveid { idname = "x", picture = FACE } end)
      assert.is_false(ok)
      assert.equal("spec/integration/commands_client_spec.lua:" .. debug.getinfo(1, "l").currentline - 2 ..
        ": bad argument #1 to 'saveid' (unknown param 'picture')", message)
      assert.has_error(function() fx.client.listid({}) end,
        "bad argument #1 to 'listid' (faceswap.client expected, got table; call it as " ..
        "client:listid(...))")
    end)

    it("refuses a FIFO, a device and a HEIC before anything is sent", function()
      local dir = require("spec.support.shell").tmpdir()
      local fifo = dir .. "/face.png"
      assert(os.execute("mkfifo " .. fifo))
      local heic = dir .. "/face.heic"
      local f = assert(io.open(heic, "wb"))
      f:write("\0\0\0\24ftypheic\0\0\0\0mif1heic", ("\0"):rep(64))
      f:close()
      local cases = {
        { fifo, "image: cannot read " .. fifo .. ": not a regular file (a FIFO)" },
        { "/dev/zero", "image: cannot read /dev/zero: not a regular file (a character device)" },
        { heic, 'image: face.heic is a HEIC image (ISO-BMFF brand "heic"), not a PNG, JPEG, ' ..
          "GIF, WebP or MP4 file" },
      }
      -- a writer holds the FIFO open, so that code opening it fails here instead of blocking
      -- (commands_spec.lua tries it with no writer too)
      local holder = assert(io.open(fifo, "r+"))
      for _, c in ipairs(cases) do
        local job, err = fx.client:saveid { idname = "x", image = c[1] }
        assert.is_nil(job)
        assert.same({ "invalid_request", c[2], false }, { err.kind, err.error, err.sent })
      end
      holder:close()
      os.remove(fifo)
      os.remove(heic)
      os.remove(dir)
      assert.same({}, fx.sim:requests())
    end)
  end)

  describe("paths", function()
    it("refuses \".\" and \"..\" as a channel at the caller's line; nothing is sent", function()
      for _, dots in ipairs { ".", ".." } do
        for _, call in ipairs {
          function() fx.client:account(dots) end, -- not tail calls: the line is the caller's
          function() fx.client:delete_account(dots) end,
          function() fx.client:listid { channel = dots } end,
          function() fx.client:headshot { prompt = "p", channel = dots } end,
        } do
          local ok, message = pcall(call)
          assert.is_false(ok)
          assert.truthy(message:find("^spec/integration/commands_client_spec.lua:%d+: bad argument #1 to " ..
            "'[%w_]+' %(channel \"" .. dots:gsub("%.", "%%.") .. "\" is not a channel id: a URL " ..
            "path cannot carry \"%.\" or \"%.%.\"%)$"), message)
        end
      end
      assert.has_error(function() faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
        channel = ".." } end, "bad argument #1 to 'new' (default channel \"..\" is not a " ..
        "channel id: a URL path cannot carry \".\" or \"..\")")
      assert.same({}, fx.sim:requests())
    end)

    it("sends a channel as one percent-encoded segment, and the path as it was built", function()
      local none, err = fx.client:account("../" .. CH2)
      assert.is_nil(none)
      assert.equal("not_found", err.kind)
      none, err = fx.client:delete_account("a/./b")
      assert.is_nil(none)
      assert.equal("not_found", err.kind)
      -- libcurl keeps dot segments (CURLOPT_PATH_AS_IS): a base URL's own ones included
      local other = faceswap.new { retry = false, token = fx.TOKEN, base_url = fx.base_url .. "/x/.." }
      assert.is_nil(other:accounts())
      other:close()
      local got = {}
      for _, r in ipairs(fx.sim:requests()) do got[#got + 1] = r.method .. " " .. r.path end
      assert.same({ "GET /account/..%2F" .. CH2, "DELETE /account/a%2F.%2Fb", "GET /x/../account" },
        got)
      assert(fx.client:account(CH2)) -- CH2 was not deleted by any of these
    end)
  end)

  describe("server errors", function()
    it("reads a channel that has no configuration as the server's 400", function()
      local job, err = fx.client:listid { channel = "999" }
      assert.is_nil(job)
      assert.same({ "invalid_request", 400, true }, { err.kind, err.code, err.sent })
      assert.equal("Configuration not found for channel 999, to create POST " ..
        "v1/faceswap/account/999", err.error)
    end)

    it("reads each blocking command's failure as the bot's failed result", function()
      local cases = {
        { "saveid", { idname = "no spaces allowed", image = FACE }, "Invalid idname" },
        { "swapid", { idname = "nobody", image = FACE }, "ID 'nobody' not found" },
        { "delid", { idname = "nobody" }, "ID 'nobody' not found" },
        { "inswapper", { targetMessageId = "123" }, "Message 123 with an image not found" },
      }
      for _, c in ipairs(cases) do
        local result = assert(fx.client[c[1]](fx.client, c[2]))
        assert.same({ "faceswap-" .. c[1], "failed" }, { result.verb, result.status })
        assert.truthy(result.content:find(c[3], 1, true), c[1] .. ": " .. result.content)
      end
    end)

    it("a changebg of an account without a saved face fails as a job", function()
      assert(fx.client:delall())
      local job = assert(fx.client:changebg { image = FACE, a_background_photo_of = "a beach" })
      job = assert(fx.client:wait(job, FAST))
      assert.same({ "faceswap-changebg", "failed" }, { job.verb, job.status })
    end)

    it("a headshot of an account without a saved face fails as a job", function()
      assert(fx.client:delall())
      local job = assert(fx.client:wait(fx.client:headshot("portrait"), FAST))
      assert.equal("failed", job.status)
    end)
  end)

  describe("the channel lock", function()
    it("runs one blocking command per channel at a time: no 429 of its own making", function()
      fx.sim:config { blocking_seconds = 0.3 }
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = fx.client:spawn(function() return fx.client:listid() end)
      end
      fx.client:run()
      fx.all_completed(tasks, "/listid")
    end)

    it("makes a call outside any task wait, driving the tasks, while a task holds the channel", function()
      fx.sim:config { blocking_seconds = 0.3 }
      local t = fx.client:spawn(function() return fx.client:listid() end)
      fx.client:step(0) -- the task has taken the lock and sent its request
      local job = assert(fx.client:listid())
      assert.equal("completed", job.status)
      assert.is_true(t:done())
      assert.equal("completed", t:result().status)
      assert.equal(0, fx.sim:stats().rejected)
      assert.equal(2, #sent("/listid"))
    end)

    it("passes the channel on when the task holding it is cancelled", function()
      fx.sim:config { blocking_seconds = 0.3 }
      local a = fx.client:spawn(function() return fx.client:listid() end)
      local b = fx.client:spawn(function() return fx.client:listid() end)
      fx.client:step(0) -- a holds the channel, b waits for it
      a:cancel()
      local deadline = faceswap.now() + 20
      while not b:done() and faceswap.now() < deadline do fx.client:step(0.1) end
      assert.is_true(b:done())
      assert.equal("cancelled", select(2, a:result()).kind)
      assert.equal("completed", b:result().status)
    end)

    it("runs blocking commands on different channels side by side", function()
      fx.sim:config { blocking_seconds = 1.5 }
      -- CH1, CH1, CH2: with one lock for all, CH2 would wait for both CH1 calls
      local tasks = {}
      for i, channel in ipairs { CH1, CH1, CH2 } do
        tasks[i] = fx.client:spawn(function() return fx.client:listid { channel = channel } end)
      end
      fx.client:run()
      for _, t in ipairs(tasks) do assert.equal("completed", t:result().status) end
      local arrived = {}
      for _, r in ipairs(sent("/listid")) do arrived[#arrived + 1] = r.fields.channel end
      -- CH2's call went before the second CH1 call (the first two may arrive in either order)
      assert.equal(CH1, arrived[3])
      table.sort(arrived)
      assert.same({ CH1, CH1, CH2 }, arrived)
      assert.equal(0, fx.sim:stats().rejected)
    end)

    it("retries per the policy a 429 from a channel another client keeps busy", function()
      fx.sim:config { blocking_seconds = 0.4 }
      local slept = {}
      local other = fx.new { retry = false }
      local me = fx.new { retry = {
        min_delay = 0.5, max_delay = 0.5, sleep = function(d)
          slept[#slept + 1] = d
          faceswap.sleep(d)
        end } }
      local busy = other:spawn(function() return other:listid { channel = CH1 } end)
      -- until its request is in: the channel is held
      sim.wait_for(function() other:step(0.01) return #sent("/listid") == 1 end, 10)
      local job = me:listid { channel = CH1 }
      other:run()
      assert.equal("completed", busy:result().status)
      assert.equal("completed", job.status)
      assert.same({ 0.5 }, slept)
      assert.equal(1, fx.sim:stats().rejected)
      other:close()
      me:close()
    end)
  end)

  describe("picsi and changebg", function()
    it("picsi answers a finished result, which wait returns as it is", function()
      local job = assert(fx.client:picsi { source_image = FACE, target_image_gif_or_video = FACE })
      assert.same({ "faceswap-picsi", "completed" }, { job.verb, job.status })
      assert.equal(job, fx.client:wait(job))
      assert.equal(1, #job:urls())
    end)

    it("wait returns a result without a status as it is, asking nothing", function()
      local result = assert(faceswap.decode('{"jobid":"x1","verb":"faceswap-picsi"}'))
      assert.equal(result, fx.client:wait(result))
      assert.same({}, fx.sim:requests())
    end)

    it("picsi answers a job to wait for when the target takes longer", function()
      local job = assert(fx.client:picsi { source_image = FACE, options = "sim:async",
        target_image_gif_or_video = { data = "GIF89a" .. ("\0"):rep(20), filename = "t.gif" } })
      assert.equal("started", job.status)
      job = assert(fx.client:wait(job, FAST))
      assert.same({ "faceswap-picsi", "completed", 1 }, { job.verb, job.status, #job:urls() })
    end)

    it("changebg is a job like headshot", function()
      local job = assert(fx.client:changebg { image = FACE, a_background_photo_of = "a beach" })
      assert.same({ "faceswap-changebg", "started" }, { job.verb, job.status })
      job = assert(fx.client:wait(job, FAST))
      assert.equal("completed", job.status)
    end)
  end)

  describe("jobs and accounts", function()
    it("lists the running jobs' ids", function()
      assert.same({}, fx.client:jobs())
      local a = assert(fx.client:headshot("one"))
      local b = assert(fx.client:headshot { prompt = "two", channel = CH2 })
      local ids = assert(fx.client:jobs())
      table.sort(ids)
      local want = { a.jobid, b.jobid }
      table.sort(want)
      assert.same(want, ids)
    end)

    it("adds, reads and deletes accounts; credits move per job", function()
      local all = assert(fx.client:accounts())
      assert.same({ CH1, CH2 }, { all[CH1].channel, all[CH2].channel })
      local before = assert(fx.client:account(CH1)).credits.used
      assert(fx.client:wait(fx.client:headshot("portrait"), FAST))
      assert.is_true(fx.client:account(CH1).credits.used > before)
      local CH3 = "1100000000000000003"
      assert.is_true(fx.client:add_account { channel = CH3, server = "2200000000000000003",
        discord = "discord-token-three" })
      local three = assert(fx.client:account(CH3))
      assert.equal(CH3, three.channel)
      assert.equal("2200000000000000003", three.server)
      assert.is_nil(three.discord:find("discord-token-three", 1, true))
      assert.is_true(fx.client:delete_account(CH3))
      local none, err = fx.client:account(CH3)
      assert.is_nil(none)
      assert.equal("not_found", err.kind)
    end)

    it("answers add_account's server-side 400s", function()
      assert.is_true(fx.client:add_account { channel = "1100000000000000004", server = "2200000000000000004",
        discord = "tok-4" })
      local ok, err = fx.client:add_account { channel = "1100000000000000005",
        server = "2200000000000000005", discord = "tok-4" }
      assert.is_nil(ok)
      assert.same({ "invalid_request", 400, "Channel 1100000000000000004 configuration has same discord value" },
        { err.kind, err.code, err.error })
    end)
  end)
end)
