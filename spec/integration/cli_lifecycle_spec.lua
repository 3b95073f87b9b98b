-- The command line's lifecycle (docs/lifecycle.md): Ctrl-C (SIGINT, SIGTERM) in a batch, its
-- --state file and the resume, failed polls shown while waiting, and a server's relative
-- attachment URL. bin/faceswap runs as a real process against the simulator.
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"
local shell = require "spec.support.shell"
local write = shell.write

local records_of = fixture.records_of

-- Line of the batch file -> the last record of that item; and how many records have `state`.
local function last_records(path)
  local by_line, count = {}, {}
  for _, r in ipairs(records_of(path)) do
    by_line[r.line] = r
    count[r.state] = (count[r.state] or 0) + 1
  end
  return by_line, count
end

local function sorted_lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  table.sort(out)
  return out
end

describe("command line lifecycle #lua_only", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = false, tmp = true }
  local run, start = fx.run, fx.start

  it("Ctrl-C stops submitting, lists the jobs submitted, and a rerun with --state resumes", function()
    fx.sim:config { job_seconds = 600 } -- nothing ends during the first run
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "first\nsecond\n\nthird\nfourth\nfifth\n")
    local p = start { "batch", prompts, "--concurrency", "2", "--interval", "0.05", "--state", state }
    assert(sim.wait_for(function() return (select(2, last_records(state)).submitted or 0) == 2 end, 30))
    assert(compat.execute("kill -INT " .. p.pid))
    local code, out, err = p.finish()
    assert.equal(130, code)
    assert.equal("", out)
    local last = last_records(state)
    assert.same({ state = "submitted", line = 1, prompt = "first", jobid = last[1].jobid }, last[1])
    assert.same({ state = "submitted", line = 2, prompt = "second", jobid = last[2].jobid }, last[2])
    local j1, j2 = last[1].jobid, last[2].jobid
    assert.matches("^%x+$", j1)
    assert.truthy(err:find("faceswap: interrupted: stopped submitting; 2 submitted job(s) go on " ..
      "upstream (billed); follow each with:\n" ..
      "faceswap:   line 1: faceswap wait " .. j1 .. "\n" ..
      "faceswap:   line 2: faceswap wait " .. j2 .. "\n" ..
      "faceswap: rerun with --state " .. state .. " to wait for the jobs submitted and submit " ..
      "the prompts that never were\n", 1, true), err)
    assert.equal(2, fx.sim:count("POST"))

    -- the rerun waits for the two and submits the three others, once
    fx.sim:config { job_seconds = 0.2 }
    fx.sim:advance(j1, "completed")
    fx.sim:advance(j2, "completed")
    code, out, err = run { "batch", prompts, "--concurrency", "2", "--interval", "0.05", "--state", state }
    assert.equal(0, code, err)
    assert.truthy(err:find("faceswap: " .. state .. ": 5 prompts: 2 submitted, waited for, 3 to submit\n",
      1, true), err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(5, #lines)
    assert.equal(j1 .. " completed", lines[1])
    assert.equal(j2 .. " completed", lines[2])
    for k = 3, 5 do assert.matches("^%x+ completed$", lines[k]) end
    assert.equal(5, fx.sim:count("POST"))
    last = last_records(state)
    for _, line in ipairs { 1, 2, 4, 5, 6 } do
      assert.equal("done", last[line].state)
      assert.equal("completed", last[line].status)
    end
    assert.equal("fifth", last[6].prompt)

    -- a third run finds everything done: one line says so, nothing is asked or sent
    local requests = #fx.sim:requests()
    code, out, err = run { "batch", prompts, "--state", state }
    assert.equal(0, code, err)
    assert.equal(table.concat(lines, "\n") .. "\n", out)
    assert.equal("faceswap: " .. state .. ": 5 prompts: 5 done before (5 completed), nothing to submit\n" ..
      "5/5 done, 0 in flight, 0 failed, N.Ns\n", (err:gsub("%d+%.%ds\n$", "N.Ns\n")))
    assert.equal(requests, #fx.sim:requests())
  end)

  it("a headshot without an answer is listed on Ctrl-C (SIGTERM) and not resubmitted unless asked", function()
    fx.sim:config { job_seconds = 600 }
    fx.sim:script { action = "hang", match = "^POST", count = 1 } -- the first POST never gets an answer
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\ntwo\nthree\n")
    local p = start { "batch", prompts, "--concurrency", "3", "--interval", "0.05", "--state", state }
    assert(sim.wait_for(function()
      return (select(2, last_records(state)).submitted or 0) == 2 and fx.sim:count("POST") == 3
    end, 30))
    assert(compat.execute("kill -TERM " .. p.pid))
    local code, _, err = p.finish()
    assert.equal(130, code)
    local last, count = last_records(state)
    assert.same({ sending = 3, submitted = 2, unknown = 1 }, count)
    local line, prompt
    for l, r in pairs(last) do
      if r.state == "unknown" then line, prompt = l, r.prompt end
    end
    assert.truthy(err:find("faceswap: line " .. line .. ": " .. prompt .. ": fate unknown: its headshot " ..
      "may or may not have reached the server (no answer came)\n", 1, true), err)

    -- the rerun waits for the two submitted, and lists the third without sending it
    fx.sim:config { job_seconds = 0.2 }
    for l, r in pairs(last) do
      if l ~= line then fx.sim:advance(r.jobid, "completed") end
    end
    local out
    code, out, err = run { "batch", prompts, "--interval", "0.05", "--state", state }
    assert.equal(1, code)
    assert.truthy(err:find("faceswap: line " .. line .. ": " .. prompt .. ": fate unknown: its headshot " ..
      "may have reached the server; not resubmitted (--resubmit-unknown to submit it again)\n",
      1, true), err)
    assert.truthy(out:find("- error unknown: not resubmitted: its headshot may or may not have " ..
      "reached the server\n", 1, true), out)
    assert.equal(3, fx.sim:count("POST"))
    -- unless the user says so
    code, out, err = run { "batch", prompts, "--interval", "0.05", "--state", state, "--resubmit-unknown" }
    assert.equal(0, code, err)
    assert.equal(3, #sorted_lines(out))
    assert.equal(4, fx.sim:count("POST"))
  end)

  it("a state file of other prompts is refused", function()
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\n")
    write(state, "submitted\t1\tabc\tanother prompt\n")
    local code, out, err = run { "batch", prompts, "--state", state }
    assert.same({ 1, "", "faceswap: " .. state .. ":1: not a record of this batch's prompts " ..
      "(line 1 of the prompts differs)\n" }, { code, out, err })
    assert.equal(0, fx.sim:count("POST"))
  end)

  it("wait shows each failed poll and gives up after a few against a dead server", function()
    local code, out, err = run({ "wait", "abc", "--interval", "0.05" }, "http://127.0.0.1:1")
    assert.equal(1, code)
    assert.equal("", out)
    local refused = "transport: Failed to connect to 127.0.0.1 port 1 after N ms: Couldn't connect to server"
    assert.equal(table.concat({
      "faceswap: poll 1 failed: " .. refused, "faceswap: poll 2 failed: " .. refused,
      "faceswap: poll 3 failed: " .. refused, "faceswap: poll 4 failed: " .. refused,
      "faceswap: poll 5 failed: " .. refused, "faceswap: " .. refused, "" }, "\n"),
      (err:gsub("after %d+ ms", "after N ms")))
  end)

  it("on a terminal, failed polls are shown on the live status line", function()
    local cli = require "faceswap.cli"
    local out, err = {}, {}
    local function sink(t) return { write = function(_, ...) for _, v in ipairs { ... } do t[#t + 1] = v end end } end
    local code = cli.main({ "wait", "abc", "--interval", "0.05" }, {
      stdout = sink(out), stderr = sink(err), tty = true, catch_signals = false,
      getenv = function(name)
        return ({ USEAPI_TOKEN = fx.TOKEN, USEAPI_BASE_URL = "http://127.0.0.1:1" })[name]
      end,
    })
    assert.equal(1, code)
    assert.equal("", table.concat(out))
    local refused = "transport: Failed to connect to 127.0.0.1 port 1 after N ms: Couldn't connect to server"
    -- the live line (status, elapsed, polls), then each failed poll in its place
    local want = { "\rfaceswap: job abc: waiting, T, 0 polls\27[K" }
    for n = 1, 5 do
      want[#want + 1] = "\rfaceswap: job abc: waiting, T, " .. n .. " poll" .. (n == 1 and "" or "s") ..
        "\27[K\rfaceswap: poll " .. n .. " failed: " .. refused .. "\27[K"
    end
    want[#want + 1] = "\nfaceswap: " .. refused .. "\n"
    assert.equal(table.concat(want), (table.concat(err):gsub("after %d+ ms", "after N ms")
      :gsub("waiting, %d+%.%ds", "waiting, T")))
  end)

  it("a relative attachment URL from the server is a failed download, not a crash", function()
    fx.sim:script { action = "status", status = 200, match = "^GET /jobs",
               body = '{"jobid":"abc","verb":"faceswap-headshot","status":"completed",' ..
                 '"attachments":[{"url":"/relative/1.png"}]}' }
    local code, out, err = run { "wait", "abc", "--download", fx.tmp .. "/files" }
    assert.equal(1, code)
    assert.equal("jobid    abc\nstatus   completed\nurl      /relative/1.png\n", out)
    assert.equal('faceswap: job abc: completed\n' ..
      'faceswap: download of /relative/1.png failed: invalid_request: refused to fetch ' ..
      '"/relative/1.png" (not an absolute URL)\n', err)
  end)
end)
