-- Each advertised make target works on its own in a fresh checkout: it builds what its specs
-- need. Checked with `make -n` (what would run) in a copy of the tree without build/.
local shell = require "spec.support.shell"
local quote, capture = shell.quote, shell.capture

describe("make targets in a fresh checkout #external", function()
  local tmp

  setup(function()
    tmp = capture("mktemp -d"):gsub("\n$", "")
    -- the tracked files, as a fresh clone has them (no build/)
    assert(os.execute("git ls-files -z | xargs -0 cp --parents -t " .. quote(tmp) ..
      " 2>/dev/null || cp -r Makefile csrc lua bin rockspec spec " .. quote(tmp)))
  end)
  teardown(function() os.execute("rm -rf " .. quote(tmp)) end)

  local function dry_run(target)
    return capture("make -n -C " .. quote(tmp) .. " " .. target .. " 2>&1")
  end

  it("test-asan also builds build/5.4/faceswap/core.so, which bin/faceswap loads", function()
    local plan = dry_run("test-asan")
    assert.truthy(plan:find("-o build/asan/faceswap/core.so", 1, true), plan)
    assert.truthy(plan:find("-o build/5.4/faceswap/core.so", 1, true), plan)
  end)
end)
