-- A hostile review of read_response's UTF-8 pre-pass, which tests 32 bytes a step, then 16, 8,
-- then one (csrc/cjson.c), and of the member walk that takes every key as a string
-- (csrc/job.c): every text length from 0 to 100 bytes of string, a bad byte (a control byte, a
-- NUL, a byte no UTF-8 has, a cut sequence) at every place of it, and good multibyte
-- characters across every block edge, each read exactly as the careful pass reads it.
local faceswap = require "faceswap"

-- (the error's words; a text that decodes has no error to index, and the spec fails there)
local function decode_error(text) return select(2, faceswap.decode(text)).error end

local HEAD = '{"jobid":"' -- the string's first byte is byte 11 of the text

describe("review: the 32-byte UTF-8 pass at every length and place", function()
  it("takes good text of every length, a multibyte character straddling each block edge", function()
    for len = 0, 100 do
      local plain = ("a"):rep(len)
      assert.equal(plain, assert(faceswap.decode(HEAD .. plain .. '"}')).jobid)
      for _, char in ipairs { "\195\169", "\226\130\172", "\240\159\152\128" } do
        if #char <= len then
          for at = 1, len - #char + 1 do
            local s = ("a"):rep(at - 1) .. char .. ("b"):rep(len - #char - at + 1)
            assert.equal(s, assert(faceswap.decode(HEAD .. s .. '"}')).jobid)
          end
        end
      end
    end
  end)

  it("refuses a bad byte at every place of every length, at the byte the careful pass names", function()
    for len = 1, 100 do
      for at = 1, len do
        local before, after = ("a"):rep(at - 1), ("b"):rep(len - at)
        local place = #HEAD + at
        assert.equal("invalid JSON: control character in string at byte " .. place,
          decode_error(HEAD .. before .. "\0" .. after .. '"}'))
        assert.equal("invalid JSON: control character in string at byte " .. place,
          decode_error(HEAD .. before .. "\n" .. after .. '"}'))
        for _, bad in ipairs { "\128", "\192\128", "\237\160\128", "\244\144\128\128", "\226\130" } do
          assert.equal("invalid JSON: invalid UTF-8 in string at byte 11",
            decode_error(HEAD .. before .. bad .. after .. '"}'))
        end
      end
    end
  end)

  it("a sequence cut by the text's end, and a NUL or bad byte outside any string", function()
    for len = 0, 40 do
      local text = HEAD .. ("a"):rep(len)
      assert.equal("invalid JSON: unexpected end of text at byte " .. (#text + 1), decode_error(text))
      assert.equal("invalid JSON: invalid UTF-8 in string at byte 11", decode_error(text .. "\226\130"))
      local pad = (" "):rep(len)
      assert.is_not_nil(decode_error('{"jobid":"a",' .. pad .. '\0"x":1}'):find("^invalid JSON: "))
      assert.is_not_nil(decode_error('{"jobid":"a",' .. pad .. '\255"x":1}'):find("^invalid JSON: "))
    end
  end)

  it("sees an empty object at every place: attachments {} against []", function()
    for len = 0, 70 do
      local pad = ("a"):rep(len)
      assert.equal("field attachments is not an array",
        decode_error('{"jobid":"' .. pad .. '","attachments":{}}'))
      assert.equal("field attachments is not an array",
        decode_error('{"jobid":"' .. pad .. '","attachments":{' .. (" "):rep(len % 37) .. '}}'))
      assert.equal(pad, assert(faceswap.decode('{"jobid":"' .. pad .. '","attachments":[]}')).jobid)
    end
  end)

  it("a top-level array, or an object after white space or a NUL, never reaches the member walk as one", function()
    assert.equal("not a job: JSON is not an object", decode_error('[1,2,3]'))
    assert.equal("not a job: JSON is not an object", decode_error('["jobid"]'))
    assert.equal("not a job: JSON is not an object", decode_error(' \n []'))
    assert.is_not_nil(decode_error('\0{"jobid":"a"}'):find("^invalid JSON: "))
    assert.equal("a", assert(faceswap.decode(' \t\r\n{"jobid":"a","1":2,"":3}')).jobid)
  end)
end)
