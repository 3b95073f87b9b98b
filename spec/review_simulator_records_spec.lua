-- Hostile review of issue 17, item 20 (docs/simulator.md, "Large bodies, many connections"):
-- "Once the request is answered, a longer one [body, field value past 1 MiB] is left out: body
-- is then nil, and omitted says what it was." Over a keep-alive connection (what the library
-- uses) the answer goes out before the record is compacted, and the compaction checksums the
-- body in slices, yielding between them: a test that reads s:requests() right after its upload
-- was answered gets the whole body back (a 25 MiB upload: a 14 s control call, past its 10 s
-- timeout on a loaded machine) and no `omitted`.
local faceswap = require "faceswap"
local sim = require "spec.support.sim"

local TOKEN = "test-token"

describe("review: the simulator's record of an answered upload", function()
  local s, path

  setup(function()
    s = sim.start { blocking_seconds = 0, token = TOKEN }
    local png = assert(io.open("spec/support/demo-face.png", "rb")):read("*a")
    path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(png, string.rep("\0", 4 * 1024 * 1024 - #png))
    f:close()
  end)
  teardown(function()
    s:stop()
    os.remove(path)
  end)

  it("leaves out a body past 1 MiB as soon as the upload is answered", function()
    local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
    local job, e = c:saveid { idname = "big", image = path }
    assert.is_nil(e)
    assert.equal("completed", job.status)
    local r = s:requests()[1]
    -- (not assert.is_nil: it would print the 4 MiB it found)
    assert.is_true(r.body == nil, "the body kept: " .. #(r.body or "") .. " bytes")
    assert.is_true(r.fields.image == nil, "the file field kept: " .. #(r.fields.image or "") .. " bytes")
    assert.equal(r.body_size, type(r.omitted) == "table" and r.omitted.body and r.omitted.body.size)
    c:close()
  end)
end)
