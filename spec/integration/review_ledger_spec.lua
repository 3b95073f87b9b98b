-- Hostile review (issue 17 items 2-6): a state file whose last line a crash cut short.
-- ledger.lua's load leaves such a line out ("a write a crash cut short"), but the next run
-- appends its first record right after it, on the same line: from then on the file is
-- unreadable and every rerun refuses it, so the jobs that run submitted can no longer be
-- waited for through the ledger.
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"
local shell = require "spec.support.shell"
local quote, capture, read = shell.quote, shell.capture, shell.read

local TOKEN = "test-token"
local ROOT = capture("pwd"):gsub("\n$", "")
local BIN = (compat.lua == "lua5.4" and "" or compat.lua .. " ") .. quote(ROOT .. "/bin/faceswap")

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("review: batch --state after a record cut short", function()
  local s, tmp

  setup(function() s = sim.start { job_seconds = 0.2, token = TOKEN } end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    tmp = capture("mktemp -d"):gsub("\n$", "")
  end)
  after_each(function() os.execute("rm -rf " .. quote(tmp)) end)

  local function run(args)
    local words = { "env", "USEAPI_TOKEN=" .. TOKEN, "USEAPI_BASE_URL=" .. quote(s.base_url), BIN }
    for _, a in ipairs(args) do words[#words + 1] = quote(a) end
    local out, err = tmp .. "/.out", tmp .. "/.err"
    local _, _, code = compat.execute(table.concat(words, " ") .. " >" .. quote(out) .. " 2>" ..
      quote(err))
    return code, read(out), read(err)
  end

  it("stays readable: the rerun after the rerun says where the batch stands", function()
    local prompts, state = tmp .. "/prompts.txt", tmp .. "/state"
    write(prompts, "p one\np two\np three\n")
    -- line 1 went out (its POST's fate unknown), then a crash cut the next record short
    write(state, '{"state":"sending","line":1,"prompt":"p one","attempt":1}\n{"state":"submi')
    local code, _, err = run { "batch", prompts, "--state", state, "--interval", "0.05" }
    assert.equal(1, code) -- line 1 of unknown fate, not resubmitted
    assert.truthy(err:find("3 prompts: 1 of unknown fate, 2 to submit", 1, true))
    code, _, err = run { "batch", prompts, "--state", state, "--interval", "0.05" }
    assert.equal(1, code)
    assert.equal(state .. ": 3 prompts: 2 done before (2 completed), 1 of unknown fate, " ..
      "nothing to submit", err:match("faceswap: ([^\n]*)"))
  end)
end)
