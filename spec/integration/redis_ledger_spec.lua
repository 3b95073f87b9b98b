-- `faceswap batch FILE --state redis://HOST:PORT/DB/NAME` (lua/faceswap/ledger.lua, docs/cli.md,
-- docs/fleet.md): a ledger in a real redis-server that several bin/faceswap processes share
-- against the simulator: each prompt claimed with a lease, a write-ahead record before each
-- POST, a killed process's prompts finished by the others, unknown fates never resent without
-- --resubmit-unknown, another list refused, a Redis restarted empty noticed. #external: the
-- work is done by child processes.
local fixture, sim, redis, compat, shell =
  require "spec.support.uses" ("fixture", "sim", "spec.support.redis", "compat", "shell")
local write, capture = shell.write, shell.capture

local CH1, CH2 = "1100000000000000001", "1100000000000000002"

describe("batch --state redis:// #external", function()
  local fx = fixture.simulator { job_seconds = 0.5, channels = { CH1, CH2 }, client = false,
    tmp = true }
  local server
  setup(function() server = redis.start() end)
  teardown(function() server:close() end)

  -- The POSTs the simulator received, per prompt.
  local function posts()
    local per = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" and r.fields and r.fields.prompt then
        per[r.fields.prompt] = (per[r.fields.prompt] or 0) + 1
      end
    end
    return per
  end

  local function lines_of(text)
    local out = {}
    for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = line end
    return out
  end

  it("three processes share 30 prompts on two accounts, one killed with SIGKILL: each sent once", function()
    local prompts, names = fx.tmp .. "/prompts.txt", {}
    for k = 1, 30 do names[k] = "prompt " .. k end
    write(prompts, table.concat(names, "\n") .. "\n")
    local ledger = server.url .. "/fleet"
    local args = { "batch", prompts, "--channels", "all", "--state", ledger, "--lease", "2",
      "--interval", "0.1" }
    local p = {}
    for k = 1, 3 do p[k] = fx.start(args, "p" .. k) end
    -- the first is killed once the fleet has sent a few, with prompts of its own claimed
    assert(sim.wait_for(function() return fx.sim:count("POST") >= 6 end, 60))
    assert(compat.execute("kill -KILL " .. p[1].pid))
    assert.equal(137, (p[1].finish()))
    local outs = {}
    for k = 2, 3 do
      local code, out = p[k].finish()
      outs[k] = lines_of(out)
      assert.equal(30, #outs[k])
      assert.is_true(code == 0 or code == 1)
    end
    -- both survivors print the same result for each prompt, whoever sent it
    assert.same(outs[2], outs[3])
    local per, jobids, unknown = posts(), {}, 0
    for k = 1, 30 do
      local line = outs[2][k]
      local jobid = line:match("^(%x+) completed$")
      if jobid then
        assert.is_nil(jobids[jobid], "a job twice: " .. line)
        jobids[jobid] = true
        assert.equal(1, per[names[k]], names[k])
      else
        -- killed between its "sending" record and the answer: listed, never resent
        assert.equal("- error unknown: not resubmitted: its headshot may or may not have " ..
          "reached the server", line)
        assert.is_true((per[names[k]] or 0) <= 1, names[k])
        unknown = unknown + 1
      end
    end
    -- every prompt is sent at most once, and every one not of unknown fate exactly once
    for name, n in pairs(per) do assert.equal(1, n, name) end
    assert.is_true(unknown < 8, unknown .. " of unknown fate") -- at most the killed one's in flight

    -- a rerun anywhere prints where the batch stands and sends nothing
    local before = fx.sim:count("POST")
    local code, out, err = fx.run(args)
    assert.equal(unknown > 0 and 1 or 0, code)
    assert.same(outs[2], lines_of(out))
    assert.truthy(err:find("faceswap: " .. ledger .. ": 30 prompts: " .. (30 - unknown) ..
      " done before" .. (unknown > 0 and (", " .. unknown .. " of unknown fate") or "") ..
      ", nothing to submit\n", 1, true), err)
    assert.equal(before, fx.sim:count("POST"))
  end)

  it("kill -9 between the sending record and the answer: unknown, not resent; " ..
    "--resubmit-unknown sends it once", function()
    fx.sim:script { action = "hang", process = true, match = "^POST", count = 1 } -- made, never answered
    local prompts, ledger = fx.tmp .. "/one.txt", server.url .. "/unknown"
    write(prompts, "one\n")
    local p = fx.start { "batch", prompts, "--state", ledger, "--lease", "1" }
    assert(sim.wait_for(function() return fx.sim:count("POST") == 1 end, 30))
    assert(compat.execute("kill -KILL " .. p.pid))
    assert.equal(137, (p.finish()))
    assert.equal("sending", server:cli("HGET", "faceswap:ledger:{unknown}:items", "s:1"))

    -- the rerun waits for the killed one's claim to end (1 s), then lists it
    local code, out, err = fx.run { "batch", prompts, "--state", ledger, "--lease", "1" }
    assert.equal(1, code)
    assert.equal("- error unknown: not resubmitted: its headshot may or may not have reached the " ..
      "server\n", out)
    assert.truthy(err:find("faceswap: line 1: one: fate unknown: its headshot may have reached " ..
      "the server; not resubmitted (--resubmit-unknown to submit it again)\n", 1, true), err)
    assert.same({ one = 1 }, posts())

    code, out, err = fx.run { "batch", prompts, "--state", ledger, "--lease", "1",
      "--resubmit-unknown", "--interval", "0.1" }
    assert.equal(0, code, err)
    assert.truthy(out:find("^%x+ completed\n$"), out)
    assert.truthy(err:find("faceswap: " .. ledger .. ": 1 prompts: 1 of unknown fate (submitted " ..
      "again: --resubmit-unknown), 1 to submit\n", 1, true), err)
    assert.same({ one = 2 }, posts())

    -- and then it is done: nothing more is sent
    code, out = fx.run { "batch", prompts, "--state", ledger, "--resubmit-unknown" }
    assert.equal(0, code)
    assert.truthy(out:find("^%x+ completed\n$"), out)
    assert.same({ one = 2 }, posts())
  end)

  it("refuses another list under the same NAME, sending nothing", function()
    local a, b, ledger = fx.tmp .. "/a.txt", fx.tmp .. "/b.txt", server.url .. "/lists"
    write(a, "cat\ndog\n")
    write(b, "cat\nbird\n")
    assert.equal(0, (fx.run { "batch", a, "--state", ledger, "--interval", "0.1" }))
    local sent = fx.sim:count("POST")
    local code, out, err = fx.run { "batch", b, "--state", ledger }
    local function sha1(text)
      return (capture("printf '%s' " .. shell.quote(text) .. " | sha1sum"):match("^(%x+)"))
    end
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("faceswap: ledger " .. ledger .. " belongs to another list (2 items, SHA-1 " ..
      sha1("s3:cats3:dog") .. "; this one: 2 items, SHA-1 " .. sha1("s3:cats4:bird") ..
      "): nothing was sent; use another NAME\n", err)
    assert.equal(sent, fx.sim:count("POST"))
  end)

  it("stops with a clear error when Redis restarts empty, instead of resubmitting", function()
    fx.sim:config { job_seconds = 3, max_running = 3 }
    local prompts, ledger = fx.tmp .. "/six.txt", server.url .. "/restart"
    write(prompts, "p1\np2\np3\np4\np5\np6\n")
    local p = fx.start { "batch", prompts, "--channels", CH1, "--state", ledger, "--interval", "0.1",
      "--lease", "1" }
    -- the account's 3 slots taken, the other 3 prompts waiting for room
    assert(sim.wait_for(function() return fx.sim:count("POST") >= 3 end, 30))
    server:stop()
    server:start()
    local code, out, err = p.finish()
    assert.equal(1, code)
    assert.truthy(err:find("faceswap: ledger " .. ledger .. ": Redis lost its state (the key " ..
      "faceswap:epoch is gone: Redis restarted empty, or was flushed), and the ledger's records " ..
      "with it: nothing more is sent: stopped submitting\n", 1, true), err)
    -- the three jobs made before are followed to their end; nothing else was made
    assert.equal(3, fx.sim:count("POST") - fx.sim:stats().rejected)
    local completed = 0
    for _, line in ipairs(lines_of(out)) do
      if line:find("^%x+ completed$") then completed = completed + 1 end
    end
    assert.equal(3, completed)
    assert.equal(6, #lines_of(out))
  end)

  it("client:batch{ledger = ...}: a second run, file or Redis, returns the recorded jobs and sends nothing", function()
    local faceswap = require "faceswap"
    local client = faceswap.new { token = fx.TOKEN, base_url = fx.base_url, retry = false }
    local list = { "red", { prompt = "blue", replyRef = "b" } }
    for _, ledger in ipairs { "file:" .. fx.tmp .. "/ledger", server.url .. "/api" } do
      local before = fx.sim:count("POST")
      local first = client:batch(list, { ledger = ledger, wait = { interval = 0.05 } })
      assert.equal(before + 2, fx.sim:count("POST"))
      local again = client:batch(list, { ledger = ledger, wait = { interval = 0.05 } })
      assert.equal(before + 2, fx.sim:count("POST"))
      for i = 1, 2 do
        assert.equal("completed", first[i].status)
        assert.equal(first[i].jobid, again[i].jobid)
        assert.equal(first[i]:json(), again[i]:json())
      end
    end
    local ok, err = pcall(client.batch, client, list, { ledger = "redis://127.0.0.1:1/0" })
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #2 to 'batch' (option 'ledger': expected " ..
      "redis://HOST:PORT/DB/NAME)", 1, true), err)
    client:close()
  end)
end)
