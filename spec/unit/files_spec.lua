-- core.link_new (csrc/files.c): how the command line's --download puts a finished file in
-- place without ever replacing a file that has the name already.
local core = require "faceswap.core"

local shell = require "spec.support.shell"
local read, write = shell.read, shell.write

describe("core.link_new #unit", function()
  local dir
  before_each(function()
    dir = shell.tmpdir()
  end)
  after_each(function() os.execute("rm -rf " .. shell.quote(dir)) end)

  it("gives the file the new name when nothing has it: the old name is gone", function()
    write(dir .. "/part", "image bytes")
    assert.is_true(core.link_new(dir .. "/part", dir .. "/final.png"))
    assert.same({ nil, "image bytes" }, { read(dir .. "/part"), read(dir .. "/final.png") })
  end)

  it("never replaces what has the name, even a link to nowhere; both stay as they were", function()
    write(dir .. "/part", "image bytes")
    write(dir .. "/final.png", "someone else's")
    assert.same({ nil, dir .. "/final.png: File exists", "exists" },
      { core.link_new(dir .. "/part", dir .. "/final.png") })
    assert.same({ "image bytes", "someone else's" }, { read(dir .. "/part"), read(dir .. "/final.png") })
    assert(os.execute("ln -s nowhere " .. shell.quote(dir .. "/dangling.png")))
    assert.same({ nil, dir .. "/dangling.png: File exists", "exists" },
      { core.link_new(dir .. "/part", dir .. "/dangling.png") })
    assert.equal("image bytes", read(dir .. "/part"))
  end)

  it("says why it cannot: a missing file, a NUL byte in a name", function()
    assert.same({ nil, dir .. "/b: No such file or directory", "error" },
      { core.link_new(dir .. "/a", dir .. "/b") })
    assert.same({ nil, "a file name cannot contain a NUL byte", "error" },
      { core.link_new(dir .. "/a\0x", dir .. "/b") })
  end)
end)
