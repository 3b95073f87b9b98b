-- Request building and local validation in the C core (faceswap.core), with no network:
-- the exact bytes of bodies and paths, the server's own 400 texts, and raises for misuse.
local core = require "faceswap.core"

local function expect_400(text, ...)
  local method, err = core.build_headshot(...)
  assert.is_nil(method)
  assert.equal("error", core.type(err))
  assert.same({ kind = "invalid_request", code = 400, error = text, retryable = false,
                sent = false }, setmetatable(err, nil))
end

describe("core.build_headshot #unit", function()
  it("builds a multipart body with the given boundary, fields in a fixed order", function()
    local method, path, ctype, body = core.build_headshot({
      prompt = "a cat", channel = "123", replyUrl = "https://r.example/cb", replyRef = "ref-1",
      options = "--square",
    }, "multipart", nil, nil, "BOUNDARY")
    assert.equal("POST", method)
    assert.equal("/headshot", path)
    assert.equal("multipart/form-data; boundary=BOUNDARY", ctype)
    assert.equal(table.concat({
      "--BOUNDARY\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n",
      "--BOUNDARY\r\nContent-Disposition: form-data; name=\"channel\"\r\n\r\n123\r\n",
      "--BOUNDARY\r\nContent-Disposition: form-data; name=\"replyUrl\"\r\n\r\n" ..
        "https://r.example/cb\r\n",
      "--BOUNDARY\r\nContent-Disposition: form-data; name=\"replyRef\"\r\n\r\nref-1\r\n",
      "--BOUNDARY\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n--square\r\n",
      "--BOUNDARY--\r\n",
    }), body)
  end)

  it("accepts a bare prompt string", function()
    local _, _, _, body = core.build_headshot("hello", "multipart", nil, nil, "B")
    assert.equal("--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhello\r\n--B--\r\n",
      body)
  end)

  it("replaces a boundary that occurs inside a part", function()
    local prompt = "line one\r\n--COLLIDE\r\nnot a boundary"
    local _, _, ctype, body = core.build_headshot(prompt, "multipart", nil, nil, "COLLIDE")
    local boundary = ctype:match("boundary=(.*)$")
    assert.not_equal("COLLIDE", boundary)
    assert.matches("^faceswap%-[%w]+$", boundary)
    assert.is_nil(prompt:find(boundary, 1, true))
    assert.equal("--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n"
      .. prompt .. "\r\n--" .. boundary .. "--\r\n", body)
  end)

  it("makes a fresh random boundary for each request", function()
    local _, _, a = core.build_headshot("x")
    local _, _, b = core.build_headshot("x")
    assert.matches("^multipart/form%-data; boundary=faceswap%-%w%w%w%w%w%w%w%w%w%w%w%w%w%w%w%w" ..
      "%w%w%w%w%w%w%w%w$", a)
    assert.not_equal(a, b)
  end)

  it("fills channel and replyUrl from the client's defaults, params first", function()
    local _, _, _, body = core.build_headshot({ prompt = "p" }, "json", "111", "https://d/cb")
    assert.equal('{"prompt":"p","channel":"111","replyUrl":"https://d/cb"}', body)
    _, _, _, body = core.build_headshot({ prompt = "p", channel = "222" }, "json", "111")
    assert.equal('{"prompt":"p","channel":"222"}', body)
  end)

  it("builds JSON with every character escaped as JSON requires", function()
    local method, path, ctype, body = core.build_headshot(
      { prompt = 'say "hi"\\\r\n\tend é 😀' }, "json")
    assert.equal("POST", method)
    assert.equal("/headshot", path)
    assert.equal("application/json", ctype)
    assert.equal('{"prompt":"say \\"hi\\"\\\\\\r\\n\\tend é 😀"}', body)
  end)

  it("lets replyRef carry tabs and line breaks, as a prompt may, in both encodings", function()
    local ref = '{"note": "a\tb"}\r\nsecond line\n'
    local _, _, _, body = core.build_headshot({ prompt = "p", replyRef = ref }, "json")
    assert.equal('{"prompt":"p","replyRef":"{\\"note\\": \\"a\\tb\\"}\\r\\nsecond line\\n"}', body)
    local _, _, ctype, form = core.build_headshot({ prompt = "p", replyRef = ref }, "multipart")
    local boundary = ctype:match("boundary=(.*)$")
    assert.truthy(form:find('name="replyRef"\r\n\r\n' .. ref .. "\r\n--" .. boundary, 1, true))
    -- other control bytes stay refused; channel and replyUrl take no line breaks at all
    assert.has_error(function() core.build_headshot({ prompt = "p", replyRef = "a\1b" }) end,
      "bad argument #1 to 'headshot' (replyRef contains control byte 0x01)")
    assert.has_error(function() core.build_headshot({ prompt = "p", replyUrl = "http://x/\t" }) end,
      "bad argument #1 to 'headshot' (replyUrl contains control byte 0x09)")
  end)

  it("writes a slash as a slash in JSON, a backslash before it escaped", function()
    local _, _, _, body = core.build_headshot({ prompt = "a\\/b /\\" }, "json")
    assert.equal('{"prompt":"a\\\\/b /\\\\"}', body)
    assert.equal("a\\/b /\\", require("cjson").decode(body).prompt)
  end)

  it("answers a missing or empty prompt with the server's 400", function()
    expect_400("Required param prompt is missing or empty", {})
    expect_400("Required param prompt is missing or empty", "")
    expect_400("Required param prompt is missing or empty", { prompt = "", channel = "1" })
  end)

  it("counts the 1024-character limits in UTF-8 characters, not bytes", function()
    local ok = core.build_headshot({ prompt = "p", replyRef = ("é"):rep(1024) })
    assert.equal("POST", ok)
    expect_400("Optional param replyRef is too long", { prompt = "p", replyRef = ("é"):rep(1025) })
    assert.equal("POST", core.build_headshot({ prompt = "p", replyUrl = ("u"):rep(1024) }))
    expect_400("Optional param replyUrl is too long", { prompt = "p", replyUrl = ("u"):rep(1025) })
    expect_400("Optional param replyUrl is too long", { prompt = "p" }, "multipart", nil,
      ("u"):rep(1025))
  end)

  it("reports problems in the server's order: prompt, replyRef, replyUrl", function()
    local long = ("x"):rep(1025)
    expect_400("Required param prompt is missing or empty", { replyRef = long, replyUrl = long })
    expect_400("Optional param replyRef is too long", { prompt = "p", replyRef = long,
                                                        replyUrl = long })
  end)

  it("raises on misuse, naming the argument", function()
    assert.has_error(function() core.build_headshot(42) end,
      "bad argument #1 to 'headshot' (string or table expected, got number)")
    assert.has_error(function() core.build_headshot({ promt = "typo" }) end,
      "bad argument #1 to 'headshot' (unknown param 'promt')")
    assert.has_error(function() core.build_headshot({ prompt = "p", channel = 5 }) end,
      "bad argument #1 to 'headshot' (channel must be a string, got number)")
    assert.has_error(function() core.build_headshot({ prompt = "p", channel = "1\r\nX: y" }) end,
      "bad argument #1 to 'headshot' (channel contains control byte 0x0D)")
    assert.has_error(function() core.build_headshot({ prompt = "nul\0byte" }) end,
      "bad argument #1 to 'headshot' (prompt contains control byte 0x00)")
    assert.has_error(function() core.build_headshot({ prompt = "bad \255 utf8" }) end,
      "bad argument #1 to 'headshot' (prompt is not valid UTF-8)")
    assert.has_error(function() core.build_headshot({ prompt = "p" }, "xml") end,
      "bad argument #1 to 'headshot' (encoding must be \"multipart\" or \"json\", got \"xml\")")
  end)
end)

describe("core.build_get #unit", function()
  it("builds the job and cancel paths", function()
    assert.same({ "GET", "/jobs/?jobid=8a1f574fdbf79e8cd57e070476d9d5f3" },
      { core.build_get("job", "8a1f574fdbf79e8cd57e070476d9d5f3") })
    assert.same({ "GET", "/jobs/cancel/?jobid=abc" }, { core.build_get("cancel", "abc") })
  end)

  it("percent-encodes a jobid so it cannot change the path or query", function()
    local _, path = core.build_get("job", "../a&b=c/#?d é")
    assert.equal("/jobs/?jobid=..%2Fa%26b%3Dc%2F%23%3Fd%20%C3%A9", path)
  end)

  it("takes a job object for its jobid", function()
    local job = assert(core.decode('{"jobid":"j1","status":"started"}'))
    assert.same({ "GET", "/jobs/cancel/?jobid=j1" }, { core.build_get("cancel", job) })
  end)

  it("answers an empty jobid with the server's 400", function()
    local method, err = core.build_get("job", "")
    assert.is_nil(method)
    assert.equal("invalid_request", err.kind)
    assert.equal(400, err.code)
    assert.equal("Query param jobid not provided", err.error)
    assert.is_false(err.sent)
  end)

  it("raises on a jobid that is not text", function()
    assert.has_error(function() core.build_get("job", nil) end,
      "bad argument #1 to 'job' (jobid must be a string or a job, got nil)")
    assert.has_error(function() core.build_get("cancel", "a\nb") end,
      "bad argument #1 to 'cancel' (jobid contains control byte 0x0A)")
  end)
end)
