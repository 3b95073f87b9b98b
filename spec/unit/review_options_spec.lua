-- Hostile review (issue 21 items 2 and 6). Per-call options: a table after a nil options
-- argument is dropped without a word, and the call goes out with the client's timeout.
-- Types: the command methods' annotations have no options parameter, though every command
-- method takes one (docs/api.md, per-call options), so LuaLS flags
-- client:headshot(p, { wait = true }) as a redundant parameter and completes no option;
-- and batch_options gets fields named `false`, `cancelled` and `sent` taken from its prose.
local faceswap = require "faceswap"
local TYPES = require("tools.types").render()

describe("review: per-call options", function()
  it("a table after a nil options argument raises, nothing sent", function()
    local sent = 0
    local client = faceswap.new { token = "t", base_url = "http://127.0.0.1:9", retry = false,
      log = function(_, _, what) if what == "request" then sent = sent + 1 end end }
    local ok, err = pcall(client.headshot, client, "studio", nil, { timeout = 5 })
    client:close()
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #3 to 'headshot'", 1, true), tostring(err))
    assert.equal(0, sent)
  end)
end)

describe("review: the LuaLS types", function()
  it("give every command method its options parameter", function()
    for _, name in ipairs { "headshot", "saveid", "swapid", "listid", "setid", "delid", "delall",
        "inswapper", "picsi", "changebg", "add_account" } do
      assert.truthy(TYPES:find("function client:" .. name .. "(params, opts) end", 1, true), name)
    end
    assert.truthy(TYPES:find("function client:jobs(opts) end", 1, true), "jobs")
    assert.truthy(TYPES:find("function client:accounts(opts) end", 1, true), "accounts")
    assert.truthy(TYPES:find("function client:account(channel, opts) end", 1, true), "account")
    assert.truthy(TYPES:find("function client:delete_account(channel, opts) end", 1, true),
      "delete_account")
  end)

  it("give batch_options only the options client:batch takes", function()
    local fields = {}
    local class = TYPES:match("%-%-%-@class faceswap%.batch_options\n(.-)\n\n")
    for name in class:gmatch("%-%-%-@field ([%w_]+)") do fields[#fields + 1] = name end
    assert.same({ "concurrency", "wait", "channels", "on_send", "on_update", "stop", "ledger",
      "resubmit_unknown" }, fields)
  end)
end)
