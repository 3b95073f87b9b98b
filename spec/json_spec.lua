-- JSON through lua-cjson (csrc/cjson.c): the module's private instance, unaffected by what the
-- host does to its own cjson; the nesting limit; numbers under any LC_NUMERIC.
local faceswap = require "faceswap"
local core = require "faceswap.core"
local cjson = require "cjson"
local compat = require "spec.support.compat"

local function decode_error(text)
  local job, err = faceswap.decode(text)
  assert.is_nil(job)
  return err.error
end

local function nest(n, inner)
  return ("["):rep(n - 1) .. inner .. ("]"):rep(n - 1)
end

describe("JSON", function()
  describe("the host's own cjson settings", function()
    -- lua-cjson 2.1.0's defaults, restored after each test
    local function defaults()
      for _, c in ipairs { cjson, require "cjson.safe" } do
        c.encode_max_depth(1000)
        c.decode_max_depth(1000)
        c.encode_number_precision(14)
        c.encode_invalid_numbers(false)
        c.decode_invalid_numbers(true)
        if c.encode_escape_forward_slash then c.encode_escape_forward_slash(true) end
      end
    end
    after_each(defaults)

    local function meddle()
      for _, c in ipairs { cjson, require "cjson.safe" } do
        c.encode_max_depth(1)
        c.decode_max_depth(1)
        c.encode_number_precision(1)
        c.encode_invalid_numbers(true)
        c.decode_invalid_numbers(true)
        if c.encode_escape_forward_slash then c.encode_escape_forward_slash(false) end
      end
    end

    it("change nothing the library decodes", function()
      meddle()
      local job = assert(faceswap.decode('{"jobid":"a","code":200,"attachments":[{"size":1.5,' ..
        '"url":"https://x/a.png","deep":' .. nest(10, "1") .. '}]}'))
      assert.equal(200, job.code)
      assert.equal(1.5, job.attachments[1].size)
      assert.same({ "https://x/a.png" }, job:urls())
      -- the global instance now reads NaN; the library still refuses it
      assert.is_not_nil(cjson.decode('{"a":NaN}'))
      assert.equal("invalid JSON: unexpected character at byte 18", decode_error('{"jobid":"a","x":NaN}'))
    end)

    it("change nothing the library encodes", function()
      meddle()
      local _, _, _, body = core.build_headshot({ prompt = "a/b \"q\"", replyUrl = "https://d/cb" },
        "json")
      assert.equal('{"prompt":"a/b \\"q\\"","replyUrl":"https://d/cb"}', body)
    end)
  end)

  -- The default max_response is 256 KiB because of this: a job's text becomes tables, and the
  -- worst shape (a table every 3 bytes, in attachments, read twice to tell [] from {}) costs
  -- about 70 times its bytes. spec/bench/memory.lua measures VmHWM in a child process.
  it("reading the largest job answer max_response allows peaks under 24 MiB #novalgrind", function()
    for _, shape in ipairs { "attachments", "objects", "numbers", "text" } do
      local p = io.popen(compat.lua .. " spec/bench/memory.lua " .. shape .. " 262144")
      local out = p:read("*a")
      p:close()
      local kib = tonumber(out:match("%+(%d+) KiB peak %(job%)"))
      assert.is_not_nil(kib, out)
      assert.is_true(kib < 24 * 1024, out)
    end
  end)

  it("reads 65 arrays and objects inside each other; 66 are bad_response", function()
    -- the job's object and 64 arrays in it
    local job = assert(faceswap.decode('{"jobid":"a","future":' .. nest(65, "1") .. "}"))
    assert.equal("a", job.jobid)
    -- 22 bytes before the arrays: the 65th array, the 66th level, begins at byte 22 + 65
    assert.equal("invalid JSON: nested too deeply at byte 87",
      decode_error('{"jobid":"a","future":' .. nest(66, "1") .. "}"))
  end)

  it("tells [] from {} for the fields that must be arrays of objects", function()
    assert.equal("a", assert(faceswap.decode('{"jobid":"a","attachments":[],"embeds":[{}]}')).jobid)
    assert.equal("field attachments is not an array", decode_error('{"jobid":"a","attachments":{}}'))
    assert.equal("field embeds is not an array of objects",
      decode_error('{"jobid":"a","x":{},"embeds":[[]]}'))
    assert.equal("not a job: no jobid string", decode_error(" {}"))
  end)

  it("refuses what lua-cjson alone would pass: raw control bytes, lone surrogates", function()
    assert.equal("invalid JSON: control character in string at byte 13",
      decode_error('{"jobid":"ab\1"}'))
    assert.equal("invalid JSON: unexpected end of text at byte 16", decode_error('{"jobid":"ab\\"}'))
    assert.equal("invalid JSON: lone surrogate in \\u escape at byte 11",
      decode_error('{"jobid":"\\udc00"}'))
    assert.equal("invalid JSON: bad \\u escape at byte 11", decode_error('{"jobid":"\\u12"}'))
  end)
end)
