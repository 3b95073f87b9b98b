-- docs/development.md works as written: its example of a spec on the shared fixture
-- (spec/support/fixture.lua), saved as a spec file and run by busted from the checkout's root,
-- as an engineer would add it.
local shell = require "spec.support.shell"

describe("docs/development.md's fixture example #external", function()
  it("passes as a spec file of its own", function()
    local dir = shell.tmpdir()
    finally(function() os.execute("rm -rf " .. shell.quote(dir)) end)
    local block = shell.code_block("docs/development.md", "### The specs", "lua")
    shell.write(dir .. "/example_spec.lua", block .. "\n")
    local out = shell.capture("lua5.4 /usr/bin/busted -o plainTerminal " .. shell.quote(dir .. "/example_spec.lua") ..
      " 2>&1")
    assert.matches("1 success / 0 failures / 0 errors", out)
  end)
end)
