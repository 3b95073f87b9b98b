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

describe("JSON #unit", function()
  describe("the host's own cjson settings", function()
    -- lua-cjson 2.1.0's defaults, restored after each test
    local function defaults()
      for _, c in ipairs { cjson, (require "cjson.safe") } do
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
      for _, c in ipairs { cjson, (require "cjson.safe") } do
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

  -- lua-cjson reads numbers with strtod, whose decimal point is LC_NUMERIC's; the core calls it
  -- under the C locale. A child process with a de_DE.UTF-8 locale made by localedef (Debian's
  -- `locales` package has its source) into build/locale, found through LOCPATH: no root needed.
  describe("under a decimal-comma LC_NUMERIC", function()
    local LOCALES = "build/locale"
    setup(function()
      local f = io.open(LOCALES .. "/de_DE.UTF-8/LC_NUMERIC")
      if f then f:close() return end
      assert(compat.execute("mkdir -p " .. LOCALES .. " && localedef -i de_DE -f UTF-8 " .. LOCALES ..
        "/de_DE.UTF-8 >/dev/null 2>&1; test -f " .. LOCALES .. "/de_DE.UTF-8/LC_NUMERIC"),
        "localedef could not make de_DE.UTF-8: apt-get install locales")
    end)

    local CHILD = [[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./%s/?.so;" .. package.cpath
      local host = %q
      if host == "cjson first" then require "cjson" end -- loaded before the locale was set
      assert(os.setlocale("de_DE.UTF-8"), "no de_DE.UTF-8")
      assert(os.setlocale(nil, "numeric") == "de_DE.UTF-8", "the locale is not in force")
      local faceswap = require "faceswap"
      -- lua-cjson keeps one decimal point for the process, learnt by the last new()
      if host == "cjson.new() after" then require("cjson").new() end
      local core = require "faceswap.core"
      local job = assert(faceswap.decode('{"jobid":"a","code":200,"attachments":[{"size":1.5,' ..
        '"width":2.5e1,"height":-0.25}]}'))
      local a = job.attachments[1]
      local _, err = core.read_response("headshot", 429, "Retry-After: 2.5\r\n", "slow down")
      local _, _, _, body = core.build_headshot({ prompt = "1.5" }, "json")
      io.write(table.concat({ tostring(a.size == 1.5), tostring(a.width == 25),
        tostring(a.height == -0.25), tostring(job.code == 200), tostring(err.retry_after == 2.5),
        body }, " "))
    ]]
    for _, host in ipairs { "nothing", "cjson first", "cjson.new() after" } do
      it("numbers read the same (the host's cjson: " .. host .. ")", function()
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write(CHILD:format(compat.build, host))
        f:close()
        local p = io.popen("LOCPATH=" .. LOCALES .. " LC_ALL= " .. compat.lua .. " " .. path .. " 2>&1")
        local out = p:read("*a")
        p:close()
        os.remove(path)
        assert.equal('true true true true true {"prompt":"1.5"}', out)
      end)
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

  it("looks at every byte of a long text, whichever block of the fast pass holds it", function()
    -- the pass reads 32, 16, 8 bytes at a time, then one: a bad byte at each place of a
    -- 100-byte string, and the byte after a good multibyte character, is still refused
    for at = 1, 100 do
      local before, after = ("a"):rep(at - 1), ("b"):rep(100 - at)
      local start = #'{"jobid":"' + at
      assert.equal("invalid JSON: control character in string at byte " .. start,
        decode_error('{"jobid":"' .. before .. "\31" .. after .. '"}'))
      assert.equal("invalid JSON: invalid UTF-8 in string at byte 11",
        decode_error('{"jobid":"' .. before .. "\255" .. after .. '"}'))
      assert.equal("invalid JSON: invalid UTF-8 in string at byte 11",
        decode_error('{"jobid":"' .. before .. "\226\128\166\192" .. after .. '"}'))
      assert.equal(before .. "\226\128\166" .. after,
        assert(faceswap.decode('{"jobid":"' .. before .. "\226\128\166" .. after .. '"}')).jobid)
    end
  end)
end)
