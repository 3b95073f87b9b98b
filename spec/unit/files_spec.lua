-- core.link_new (csrc/files.c): how the command line's --download puts a finished file in
-- place without ever replacing a file that has the name already.
local core = require "faceswap.core"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("core.link_new #unit", function()
  local dir
  before_each(function()
    local p = assert(io.popen("mktemp -d"))
    dir = p:read("*l")
    p:close()
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

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
    assert(os.execute("ln -s nowhere '" .. dir .. "/dangling.png'"))
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
