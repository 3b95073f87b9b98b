-- The `batch --state FILE` ledger (lua/faceswap/ledger.lua, docs/cli.md): a record written and
-- fsync'd before each POST, the fate of each headshot recorded the moment it is known, one
-- writer at a time, a full disk that stops the batch, records the core cannot send back, and
-- the batch file's comments. bin/faceswap runs as a real process against the simulator.
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"
local shell = require "spec.support.shell"
local quote, capture, write = shell.quote, shell.capture, shell.write

local records_of = fixture.records_of

-- How many records of the state file have `state`.
local function count(path, state)
  local n = 0
  for _, r in ipairs(records_of(path)) do
    if r.state == state then n = n + 1 end
  end
  return n
end

describe("batch --state", function()
  -- nothing ends unless a spec says so
  local fx = fixture.simulator { job_seconds = 600, config = { job_seconds = 600 }, client = false, tmp = true }
  local run, start = fx.run, fx.start

  -- The prompts of the headshots the simulator received, in order.
  local function posted()
    local out = {}
    for _, r in ipairs(fx.sim:requests()) do
      if r.method == "POST" then out[#out + 1] = r.fields and r.fields.prompt end
    end
    return out
  end

  it("writes a record before each POST: a kill -9 mid-POST, then the rerun does not send it again", function()
    fx.sim:script { action = "hang", process = true, match = "^POST", count = 1 } -- made, never answered
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\n")
    local p = start { "batch", prompts, "--state", state }
    assert(sim.wait_for(function() return fx.sim:count("POST") == 1 end, 30))
    assert(compat.execute("kill -KILL " .. p.pid))
    assert.equal(137, (p.finish()))
    assert.same({ { state = "sending", line = 1, prompt = "one", attempt = 1 } }, records_of(state))

    local code, out, err = run { "batch", prompts, "--state", state }
    assert.equal(1, code)
    assert.equal("- error unknown: not resubmitted: its headshot may or may not have reached the " ..
      "server\n", out)
    assert.truthy(err:find("faceswap: line 1: one: fate unknown: its headshot may have reached the " ..
      "server; not resubmitted (--resubmit-unknown to submit it again)\n", 1, true), err)
    assert.same({ "one" }, posted())
  end)

  it("records an unknown fate the moment it is known, not when the batch ends", function()
    -- the job is made upstream, and the connection reset before any answer
    fx.sim:script { action = "reset_before", process = true, match = "^POST", count = 1 }
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\ntwo\n")
    local p = start { "batch", prompts, "--concurrency", "1", "--interval", "0.05", "--state", state }
    -- the batch still runs (two's job takes 600 s) when the record is there
    assert(sim.wait_for(function() return count(state, "unknown") == 1 and count(state, "submitted") == 1 end, 30))
    local unknown = records_of(state)[2]
    assert.equal("unknown", unknown.state)
    assert.equal("one", unknown.prompt)
    assert.matches("^transport: ", unknown.error)
    assert(compat.execute("kill -KILL " .. p.pid))
    p.finish()

    local jobid = records_of(state)[4].jobid -- sending one, unknown, sending two, submitted two
    fx.sim:advance(jobid, "completed")
    local code, out = run { "batch", prompts, "--interval", "0.05", "--state", state }
    assert.equal(1, code)
    assert.equal("- error unknown: not resubmitted: its headshot may or may not have reached the " ..
      "server\n" .. jobid .. " completed\n", out)
    assert.same({ "one", "two" }, posted())
  end)

  it("has one writer: a second batch on the same state file refuses at once with exit status 2", function()
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\ntwo\n")
    local first = start({ "batch", prompts, "--interval", "0.05", "--state", state }, "first")
    assert(sim.wait_for(function() return count(state, "submitted") == 2 end, 30))
    local code, out, err = run { "batch", prompts, "--state", state }
    assert.same({ 2, "", "faceswap: " .. state .. ": in use by another process (locked); nothing " ..
      "was sent\n" }, { code, out, err })
    assert.equal(2, fx.sim:count("POST"))
    assert(compat.execute("kill -INT " .. first.pid))
    assert.equal(130, (first.finish()))
    -- once the first has ended, the file is free
    for _, r in ipairs(records_of(state)) do
      if r.jobid then fx.sim:advance(r.jobid, "completed") end
    end
    code = run { "batch", prompts, "--interval", "0.05", "--state", state }
    assert.equal(0, code)
    assert.equal(2, fx.sim:count("POST"))
  end)

  it("gives a failed line naming the record for a recorded jobid the core refuses", function()
    fx.sim:config { job_seconds = 0.2 }
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "one\ntwo\nthree\n")
    -- 0.2.0's form, with a control byte; and a JSON record, not UTF-8
    write(state, "submitted\t1\tab\1c\tone\n" ..
      '{"state":"submitted","line":2,"prompt":"two","jobid":"x\233y"}\n')
    local code, out, err = run { "batch", prompts, "--interval", "0.05", "--state", state }
    assert.equal(1, code, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(3, #lines, out)
    assert.equal("- error " .. state .. ":1: the recorded jobid cannot be asked for (jobid contains " ..
      "control byte 0x01)", lines[1])
    assert.equal("- error " .. state .. ":2: the recorded jobid cannot be asked for (jobid is not " ..
      "valid UTF-8)", lines[2])
    assert.matches("^%x+ completed$", lines[3])
    assert.same({ "three" }, posted())
    assert.is_nil(err:find("traceback", 1, true), err)
  end)

  it("skips comments and blank lines of the batch file, and keeps their line numbers", function()
    fx.sim:config { job_seconds = 0.2 }
    local prompts, state = fx.tmp .. "/prompts.txt", fx.tmp .. "/state"
    write(prompts, "# portraits for the team\n\nfirst\n   # not this one either\n\t\nsecond\n")
    local code, out, err = run { "batch", prompts, "--interval", "0.05", "--state", state }
    assert.equal(0, code, err)
    local completed = 0
    for _ in out:gmatch("%x+ completed\n") do completed = completed + 1 end
    assert.equal(2, completed, out)
    local sent = posted()
    table.sort(sent) -- (the two go out at once, in either order)
    assert.same({ "first", "second" }, sent)
    local lines = {}
    for _, r in ipairs(records_of(state)) do
      if r.state == "submitted" then lines[#lines + 1] = ("%d %s"):format(r.line, r.prompt) end
    end
    table.sort(lines)
    assert.same({ "3 first", "6 second" }, lines)
  end)

  describe("on a full file system", function()
    local mnt
    before_each(function()
      mnt = fx.tmp .. "/full"
      os.execute("mkdir -p " .. quote(mnt))
    end)
    after_each(function() os.execute("umount " .. quote(mnt) .. " 2>/dev/null") end)

    it("stops submitting at the first write that fails, exits 1 naming the file, lists the jobs submitted", function()
      if capture("id -u") ~= "0\n" then
        return pending("mounting a 64 KiB tmpfs needs root")
      end
      assert(compat.execute("mount -t tmpfs -o size=64k tmpfs " .. quote(mnt)))
      -- all but one page of the tmpfs taken: the state file gets that page, about three records
      local pages = tonumber(capture("df -B4096 --output=avail " .. quote(mnt) .. " | tail -1"))
      assert(compat.execute("dd if=/dev/zero of=" .. quote(mnt .. "/filler") .. " bs=4096 count=" ..
        (pages - 1) .. " 2>/dev/null"))
      local prompts, state = fx.tmp .. "/prompts.txt", mnt .. "/state"
      local text = {}
      for k = 1, 6 do text[k] = k .. " " .. ("a portrait, "):rep(100) end -- ~1260 bytes a record
      write(prompts, table.concat(text, "\n") .. "\n")
      local code, out, err = run { "batch", prompts, "--concurrency", "4", "--interval", "0.05",
                                   "--state", state }
      assert.equal(1, code, err)
      assert.equal(3, fx.sim:count("POST"))
      -- what is on disk is whole records: the three sendings
      local on_disk = records_of(state)
      assert.equal(3, #on_disk)
      for k = 1, 3 do assert.equal("sending", on_disk[k].state) end
      -- the next was not sent, nor any after it (those that began before the batch stopped
      -- say so; the others never began)
      local not_sent = 0
      for line in out:gmatch("[^\n]+") do
        assert.equal("- error cancelled: not sent: " .. state .. ": No space left on device", line)
        not_sent = not_sent + 1
      end
      -- (none when the write that failed was a submitted job's record, before a 4th item had
      -- its turn: an account's slots start at 3)
      assert.truthy(not_sent <= 3, out)
      local jobs = {}
      for _, r in ipairs(fx.sim:jobs()) do jobs[#jobs + 1] = r.jobid end
      assert.equal(3, #jobs)
      table.sort(jobs)
      local listed = {}
      for jobid in err:gmatch("faceswap:   line %d+: faceswap wait (%x+)\n") do listed[#listed + 1] = jobid end
      table.sort(listed)
      assert.same(jobs, listed)
      assert.truthy(err:find("faceswap: " .. state .. ": No space left on device: the state file cannot " ..
        "be written: stopped submitting\nfaceswap: stopped submitting; 3 submitted job(s) go on upstream " ..
        "(billed); follow each with:\n", 1, true), err)
    end)
  end)
end)

describe("faceswap.ledger", function()
  local ledger = require "faceswap.ledger"
  local tmp
  before_each(function() tmp = capture("mktemp -d"):gsub("\n$", "") end)
  after_each(function() os.execute("rm -rf " .. quote(tmp)) end)

  it("appends whole records, reads them back, and has one writer at a time", function()
    local path = tmp .. "/state"
    local book = assert(ledger.open(path))
    assert.is_true(book:write { state = "sending", line = 2, prompt = "two", attempt = 1 })
    assert.is_true(book:write { state = "submitted", line = 2, prompt = "two", jobid = "abc" })
    -- a second opener, even in this process, is refused while the first holds the file
    assert.same({ nil, path .. ": in use by another process (locked)", "locked" }, { ledger.open(path) })
    local records = assert(book:load { [2] = "two" })
    assert.same({ state = "submitted", line = 2, prompt = "two", jobid = "abc", n = 2 }, records[2])
    book:close()
    book:close() -- twice is harmless
    -- a last line a crash cut short is left out; another batch's record is refused
    local f = assert(io.open(path, "ab"))
    f:write('{"state":"done","line":2,"pro')
    f:close()
    book = assert(ledger.open(path))
    assert.equal("submitted", assert(book:load { [2] = "two" })[2].state)
    assert.same({ nil, path .. ":1: not a record of this batch's prompts (line 2 of the prompts differs)" },
      { book:load { [2] = "other" } })
    book:close()
    collectgarbage()
  end)

  it("refuses what is not a regular file, and a name with a NUL byte", function()
    assert.same({ nil, "/dev/null: not a regular file", "not_regular" }, { ledger.open("/dev/null") })
    assert.same({ nil, tmp .. ": Is a directory", "error" }, { ledger.open(tmp) })
    assert.same({ nil, "a file name cannot contain a NUL byte", "error" }, { ledger.open(tmp .. "/a\0b") })
  end)
end)
