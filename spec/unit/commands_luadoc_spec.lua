-- The client's command methods and their reference come from the core's command table alone
-- (csrc/command.c, core.commands("all")): lua/faceswap/init.lua makes one method per row
-- (headshot, job and cancel too) and writes none by hand; docs/commands.luadoc, which LDoc
-- merges into the module faceswap, is what tools/commands_luadoc.lua makes of the same rows
-- (`make docs-tables`); the batch runs the rows whose mode is a job.
local core = require "faceswap.core"
local faceswap = require "faceswap"
local luadoc = require "tools.commands_luadoc"
local model = require "tools.model"

local read = require("spec.support.shell").contents

local ROWS = core.commands("all")

describe("the command methods #unit", function()
  it("are one per row of core.commands(\"all\"), none written by hand in init.lua", function()
    local client = faceswap.new { token = "t", base_url = "http://127.0.0.1:9" }
    local names = {}
    for _, row in ipairs(ROWS) do
      names[#names + 1] = row.name
      assert.equal("function", type(client[row.name]), row.name)
    end
    assert.same({ "headshot", "saveid", "swapid", "listid", "setid", "delid", "delall", "inswapper",
      "picsi", "changebg", "jobs", "accounts", "account", "add_account", "delete_account", "job",
      "cancel" }, names)
    local by_hand = {}
    for name in read("lua/faceswap/init.lua"):gmatch("\nfunction client[:.]([%w_]+)%(") do
      for _, row in ipairs(ROWS) do
        if row.name == name then by_hand[#by_hand + 1] = name end
      end
    end
    assert.same({}, by_hand)
    client:close()
  end)

  it("build by the row, and take a job's jobid for job and cancel", function()
    local c = faceswap.new { token = "t", base_url = "http://127.0.0.1:9", encoding = "json",
                             retry = false }
    -- a local 400 comes back before anything is sent, built by the row
    local job, err = c:headshot { prompt = "" }
    assert.is_nil(job)
    assert.same({ "invalid_request", 400, "Required param prompt is missing or empty", false },
      { err.kind, err.code, err.error, err.sent })
    -- a jobid the server sent that cannot go back into a URL is the server's doing
    local sent = assert(faceswap.decode('{"jobid":"a\\nb","status":"started"}'))
    job, err = c:cancel(sent)
    assert.is_nil(job)
    assert.same({ "bad_response", false, "the server sent a jobid that cannot be sent back " ..
      "(jobid contains control byte 0x0A)" }, { err.kind, err.sent, err.error })
    -- the same jobid passed in by the caller is misuse, raised at the caller's line
    assert.has_error(function() c:job("a\nb") end,
      "bad argument #1 to 'job' (jobid contains control byte 0x0A)")
    -- and a job given to a command that takes no jobid is misuse too, whatever its jobid
    assert.has_error(function() c:saveid(sent) end,
      "bad argument #1 to 'saveid' (table expected, got userdata)")
    c:close()
  end)

  it("let a batch take the rows whose mode is a job, and say which", function()
    local c = faceswap.new { token = "t", base_url = "http://127.0.0.1:9" }
    local jobs = {}
    for _, row in ipairs(ROWS) do
      if row.mode == "job" then jobs[#jobs + 1] = row.name end
    end
    assert.same({ "headshot", "changebg" }, jobs)
    assert.has_error(function() c:batch { { command = "picsi" } } end,
      "bad argument #1 to 'batch' (item 1: command must be \"headshot\" or \"changebg\", got \"picsi\")")
    c:close()
  end)
end)

describe("docs/commands.luadoc #unit", function()
  it("is what tools/commands_luadoc.lua makes of the core's rows (make docs-tables)", function()
    assert.equal(luadoc.render(ROWS), read("docs/commands.luadoc"), "run make docs-tables")
  end)

  it("documents each row's method once, in the table's order, and nothing else", function()
    local documented = {}
    for name in read("docs/commands.luadoc"):gmatch("\n%-%- @function client:([%w_]+)\n") do
      documented[#documented + 1] = name
    end
    local names = {}
    for _, row in ipairs(ROWS) do names[#names + 1] = row.name end
    assert.same(names, documented)
  end)

  it("gives each method its params, options and answer from its row", function()
    local blocks = {}
    for _, b in ipairs(model.ldoc_text(luadoc.render(ROWS))) do
      if b.name then blocks[b.name] = b end
    end
    local function params(name)
      local out = {}
      for _, p in ipairs(blocks["client:" .. name].params) do
        out[#out + 1] = (p.opt and "[opt] " or "") .. p.type .. " " .. p.name
      end
      return table.concat(out, ", ")
    end
    assert.equal("string|table params, [opt] table opts", params("headshot"))
    assert.equal("table params, [opt] table opts", params("saveid"))
    assert.equal("[opt] table params, [opt] table opts", params("listid"))
    assert.equal("[opt] table opts", params("jobs"))
    assert.equal("string channel, [opt] table opts", params("account"))
    assert.equal("string|objects.job jobid, [opt] table opts", params("cancel"))
    local saveid = blocks["client:saveid"]
    assert.equal("`idname` (required), `image` (required, a file); `channel`, `replyUrl`, " ..
      "`replyRef` (at most 1024 characters each)", saveid.params[1].desc)
    assert.truthy(table.concat(saveid.text, " "):find("A file param is a path or `{data = " ..
      "bytes, filename = name[, content_type = type]}`", 1, true), table.concat(saveid.text, " "))
    -- `wait` for the rows that start a job, `channel` for those that post to Discord
    assert.truthy(blocks["client:picsi"].params[2].desc:find("`channel` (this call's default " ..
      "channel), `wait` (true", 1, true))
    assert.is_nil(blocks["client:saveid"].params[2].desc:find("`wait`", 1, true))
    assert.is_nil(blocks["client:job"].params[2].desc:find("`channel`", 1, true))
    assert.same({ "{string,...}", "nil", "objects.error" }, {
      blocks["client:jobs"].returns[1].type, blocks["client:jobs"].returns[2].type,
      blocks["client:jobs"].returns[3].type })
    assert.equal("boolean", blocks["client:delete_account"].returns[1].type)
  end)

  it("keeps its lines within 100 columns", function()
    for line in read("docs/commands.luadoc"):gmatch("[^\n]+") do
      assert.truthy(#line <= 100, line)
    end
  end)
end)
