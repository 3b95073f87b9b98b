-- tools/bench_readme.lua: the README's Benchmarks rows are docs/benchmarks.md's summary table,
-- generated, never copied by hand.
package.path = "./?.lua;" .. package.path
local gen = require "tools.bench_readme"

local read = require("spec.support.shell").contents

describe("the README's Benchmarks rows #unit", function()
  it("are what tools/bench_readme.lua makes of docs/benchmarks.md's summary", function()
    local readme = read("README.md")
    assert.equal(gen.rewrite(readme, read("docs/benchmarks.md")), readme)
  end)

  it("a stale block is rewritten in place, links made relative to the checkout", function()
    local doc = "# B\n<!-- bench-summary -->\n| a | b |\n|---|---|\n" ..
      "| x ([t](benchmarks.md#one)) | [h](https.md#b) [s](#self) [w](https://example.com/) |\n" ..
      "<!-- /bench-summary -->\nrest\n"
    local readme = "intro\n<!-- bench-summary -->\n| old |\n<!-- /bench-summary -->\n\n## Install\n"
    assert.equal("intro\n<!-- bench-summary -->\n| a | b |\n|---|---|\n" ..
      "| x ([t](docs/benchmarks.md#one)) | [h](docs/https.md#b) [s](docs/benchmarks.md#self) " ..
      "[w](https://example.com/) |\n<!-- /bench-summary -->\n\n## Install\n",
      gen.rewrite(readme, doc))
  end)

  it("says which file lacks the markers", function()
    local ok, err = pcall(gen.rewrite, "no markers", "<!-- bench-summary -->\n<!-- /bench-summary -->")
    assert.is_false(ok)
    assert.equal("README.md: no <!-- bench-summary --> ... <!-- /bench-summary --> block", err)
  end)
end)
