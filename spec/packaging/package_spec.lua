-- Packaging: the version is written once, in the rockspec's name, and everything agrees.
local faceswap = require "faceswap"

describe("the version #unit", function()
  it("is the rockspec's, in its name and in its version field", function()
    local pipe = io.popen("ls rockspec")
    local names = pipe:read("*a")
    pipe:close()
    local version, revision = names:match("^lua%-faceswap%-(%d+%.%d+%.%d+)%-(%d+)%.rockspec\n$")
    assert.is_string(version, "exactly one rockspec expected, found: " .. names)
    assert.equal("lua-faceswap " .. version, faceswap._VERSION)
    local spec = {}
    local chunk = assert(loadfile("rockspec/lua-faceswap-" .. version .. "-" .. revision ..
      ".rockspec", "t", spec))
    if rawget(_G, "setfenv") then _G.setfenv(chunk, spec) end -- 5.1: loadfile takes no env
    chunk()
    assert.equal(version .. "-" .. revision, spec.version)
    assert.equal("lua-faceswap", spec.package)
  end)

  it("has its changelog section, and the LICENSE is the rockspec's MIT", function()
    local read = require("spec.support.shell").read
    local version = faceswap._VERSION:match("%S+$")
    local changelog = assert(read("CHANGELOG.md"), "CHANGELOG.md is missing")
    assert.truthy(changelog:find("\n## %[" .. version:gsub("%.", "%%.") .. "%] %- %d%d%d%d%-%d%d%-%d%d\n"),
      "CHANGELOG.md has no section for " .. version)
    local license = assert(read("LICENSE"), "LICENSE is missing")
    assert.equal("MIT License\n\nCopyright (c) ", license:sub(1, 27))
    assert.truthy(read("rockspec/lua-faceswap-" .. version .. "-1.rockspec"):find('license = "MIT"', 1, true))
  end)
end)
