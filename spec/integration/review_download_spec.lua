-- Hostile review (issue 21 item 4): client:download(url, { path = FILE }) with paths a hostile
-- or careless caller gives. A NUL inside the name: the file is written under the name's part
-- before the NUL, and the call succeeds. A FILE that exists and is not a regular file (a FIFO
-- here; /dev/null or /dev/full for root) is replaced by the image: the node is gone.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"

local function scratch()
  local p = io.popen("mktemp -d")
  local dir = p:read("*l")
  p:close()
  return dir
end

local function exists(path)
  local ok = os.execute("test -e '" .. path .. "'")
  return ok == true or ok == 0
end

local function is_fifo(path)
  local ok = os.execute("test -p '" .. path .. "'")
  return ok == true or ok == 0
end

describe("review: download to a path", function()
  local s, client, dir, url

  setup(function()
    s = sim.start { job_seconds = 0.1, token = TOKEN }
    client = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
    local job = assert(client:headshot("studio", { wait = { interval = 0.05, timeout = 30 } }))
    url = job:urls()[1]
  end)
  teardown(function()
    client:close()
    s:stop()
  end)
  before_each(function() dir = scratch() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("refuses a name with a NUL byte, and writes nothing under another name", function()
    local ok, err = pcall(client.download, client, url, { path = dir .. "/a\0b.png" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #2 to 'download'", 1, true), tostring(err))
    assert.is_false(exists(dir .. "/a"))
  end)

  it("leaves a FILE that is not a regular file as it was (a FIFO)", function()
    local fifo = dir .. "/out.png"
    assert.truthy(os.execute("mkfifo '" .. fifo .. "'"))
    local n, err = client:download(url, { path = fifo })
    assert.is_nil(n)
    assert.equal("invalid_request", err and err.kind)
    assert.is_true(is_fifo(fifo))
  end)

  it("replaces a symbolic link itself, as rename does, leaving its target alone", function()
    local fifo, link = dir .. "/fifo", dir .. "/out.png"
    assert.truthy(os.execute("mkfifo '" .. fifo .. "' && ln -s fifo '" .. link .. "'"))
    local n = assert(client:download(url, { path = link }))
    local f = assert(io.open(link, "rb"))
    assert.equal(n, #f:read("*a"))
    f:close()
    assert.is_true(is_fifo(fifo))
    assert.is_false(os.execute("test -L '" .. link .. "'") == true or
      os.execute("test -L '" .. link .. "'") == 0)
  end)
end)
