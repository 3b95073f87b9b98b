-- Reading answers in the C core: every documented status and body becomes the job or the error
-- object of API.md, and anything else is bad_response; nothing raises.
local core = require "faceswap.core"

local JOB = '{"jobid":"8a1f574fdbf79e8cd57e070476d9d5f3","verb":"faceswap-headshot",' ..
  '"status":"started","prompt":"a cat","code":200}'

-- The error's fields as a plain table, for assert.same.
local function fields(err)
  assert.equal("error", core.type(err))
  local t = {}
  for k, v in pairs(err) do t[k] = v end
  return t
end

local function read(op, status, body, headers)
  local job, err = core.read_response(op, status, headers or "", body)
  assert.is_nil(job)
  return fields(err)
end

describe("core.read_response #unit", function()
  it("turns a 200 into a job", function()
    local job = core.read_response("headshot", 200, "", JOB)
    assert.equal("job", core.type(job))
    assert.equal("8a1f574fdbf79e8cd57e070476d9d5f3", job.jobid)
    assert.equal("started", job.status)
    assert.equal(200, job.code)
    assert.equal(JOB, job:json())
  end)

  it("reads the cancel answer as a job", function()
    local job = core.read_response("cancel", 200, "",
      '{"jobid":"abc","status":"cancelled","code":200}')
    assert.equal("cancelled", job.status)
    assert.is_true(job:done())
  end)

  it("maps each documented headshot error to its kind and text", function()
    assert.same({ kind = "invalid_request", code = 400, retryable = false, sent = true,
                  error = "Configuration not found for channel 42, to create POST " ..
                    "v1/faceswap/account/42" },
      read("headshot", 400, '{"error":"Configuration not found for channel 42, to create ' ..
        'POST v1/faceswap/account/42","code":400}'))
    assert.same({ kind = "unauthorized", code = 401, error = "Unauthorized", retryable = false,
                  sent = true }, read("headshot", 401, '{"error":"Unauthorized","code":401}'))
    assert.same({ kind = "payment_required", code = 402, retryable = false, sent = true,
                  error = "Account has no subscription or subscription expired" },
      read("headshot", 402, '{"error":"Account has no subscription or subscription expired",' ..
        '"code":402}'))
    assert.same({ kind = "not_found", code = 404, error = "Unable to locate job x",
                  retryable = false, sent = true },
      read("job", 404, '{"error":"Unable to locate job x","code":404}'))
  end)

  it("reads a queue-full 429 as retryable with no known wait", function()
    assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true,
                  error = "Unable to lock Discord after 3 attempts" },
      read("headshot", 429, '{"error":"Unable to lock Discord after 3 attempts","code":429}'))
  end)

  it("takes retry_after from Discord's JSON inside errorDetails", function()
    local details = '{"global":true,"message":"You are being rate limited.","retry_after":2.5}'
    local body = '{"error":"Discord /interactions failed with HTTP status 429","errorDetails":' ..
      '"{\\"global\\":true,\\"message\\":\\"You are being rate limited.\\",' ..
      '\\"retry_after\\":2.5}","code":429}'
    assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true,
                  error = "Discord /interactions failed with HTTP status 429",
                  errorDetails = details, retry_after = 2.5 }, read("headshot", 429, body))
  end)

  it("takes retry_after from a Retry-After header, in seconds or as a date", function()
    local body = '{"error":"Unable to lock Discord after 3 attempts","code":429}'
    assert.equal(12, read("headshot", 429, body,
      "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 12\r\n\r\n").retry_after)
    assert.equal(0, read("headshot", 429, body,
      "HTTP/1.1 429 Too Many Requests\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n")
      .retry_after)
    assert.is_nil(read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: soon\r\n\r\n")
      .retry_after)
  end)

  it("keeps a wait past a day, one too long for a double capped at 1e10 s; not plain seconds is unknown", function()
    local function details(v)
      return '{"error":"Discord /interactions failed with HTTP status 429","errorDetails":' ..
        '"{\\"retry_after\\":' .. v .. '}","code":429}'
    end
    assert.equal(1e10, read("headshot", 429, details("1e999")).retry_after)
    assert.equal(1e10, read("headshot", 429, details("1e308")).retry_after)
    assert.equal(90000, read("headshot", 429, details("90000")).retry_after)
    assert.equal(86400, read("headshot", 429, details("86400")).retry_after)
    local body = '{"error":"Unable to lock Discord after 3 attempts","code":429}'
    assert.is_nil(read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: 0x10\r\n\r\n")
      .retry_after)
    assert.is_nil(read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: 1e9\r\n\r\n")
      .retry_after)
    assert.equal(86401, read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: 86401\r\n\r\n")
      .retry_after)
    assert.equal(1e10, read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: " ..
      ("9"):rep(400) .. "\r\n\r\n").retry_after)
    assert.equal(1e10, read("headshot", 429, body, "HTTP/1.1 429 x\r\nRetry-After: " ..
      "Fri, 31 Dec 9999 23:59:59 GMT\r\n\r\n").retry_after)
  end)

  -- Each case { command, status, body, retryable, error }: read as an error of that kind.
  local function reads(kind, cases)
    for _, c in ipairs(cases) do
      assert.same({ kind = kind, code = c[2], retryable = c[4], sent = true, error = c[5] },
        read(c[1], c[2], c[3]))
    end
  end

  it("reads any 5xx as server, whatever its body, retryable only for a GET", function()
    reads("server", {
      { "headshot", 502, "<html><body>Bad Gateway</body></html>", false, "HTTP 502: Bad Gateway" },
      { "job", 503, "", true, "HTTP 503" },
      { "job", 500, '{"error":"boom","code":500}', true, "boom" },
    })
  end)

  it("reads a redirect as server: redirects are not followed", function()
    reads("server", { { "job", 302, "", false, "unexpected HTTP 302 (redirects are not followed)" } })
  end)

  describe("a 429 or 5xx that is not useapi's JSON (a CDN's page)", function()
    it("a text 429: rate_limited and retryable, retry_after from Retry-After", function()
      assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true,
                    error = "HTTP 429: Too many requests, slow down", retry_after = 7 },
        read("headshot", 429, "Too many requests,\r\n\tslow down\n",
          "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nRetry-After: 7\r\n\r\n"))
      -- JSON that is not useapi's error is the same: the status decides
      assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true,
                    error = 'HTTP 429: {"message":"quota"}' },
        read("job", 429, '{"message":"quota"}'))
      assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true, error = "HTTP 429" },
        read("job", 429, ""))
    end)

    it("a Retry-After as an HTTP date: the seconds until then", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 60)
      local after = read("headshot", 429, "<html>slow down</html>",
        "HTTP/1.1 429 x\r\nRetry-After: " .. date .. "\r\n\r\n").retry_after
      assert.is_true(after >= 30 and after <= 60, tostring(after)) -- a loaded machine is slow
    end)

    it("an HTML 502, 503 or 520: server, its title or text after the status", function()
      local page = "<!DOCTYPE html>\r\n<html><head><TITLE>503 Service\r\n Unavailable</TITLE>" ..
        "<style>body{color:red}</style></head><body><h1>Down</h1></body></html>"
      assert.same({ kind = "server", code = 503, retryable = true, sent = true,
                    error = "HTTP 503: 503 Service Unavailable", retry_after = 5 },
        read("job", 503, page, "HTTP/1.1 503 x\r\nRetry-After: 5\r\n\r\n"))
      assert.equal("HTTP 502: Bad Gateway nginx",
        read("job", 502, "<html><body><h1>Bad Gateway</h1><hr>nginx</body></html>").error)
      assert.equal("HTTP 520: error code: 520", read("job", 520, "error code: 520").error)
    end)

    it("shows at most 100 bytes of the page, control bytes and invalid UTF-8 made harmless", function()
      -- ESC leaves no terminal escape behind: it is a space like every control byte
      assert.equal("HTTP 500: a b [31m ? é 😀", read("job", 500, "a\0b\27[31m \255 é\r\n😀").error)
      local long = read("job", 500, ("é"):rep(80)).error
      assert.equal("HTTP 500: " .. ("é"):rep(50) .. "…", long)
    end)

    it("an error body over 64 KiB is not read: the status's kind, a text saying so", function()
      local big = '{"error":"' .. ("x"):rep(8 * 1024 * 1024) .. '","code":500}'
      local note = function(status)
        return "HTTP " .. status .. " answer of " .. #big .. " bytes not read (an error answer " ..
          "is read up to 65536 bytes)"
      end
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local err = read("job", 500, big)
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      assert.same({ kind = "server", code = 500, retryable = true, sent = true, error = note(500) }, err)
      assert.is_true(grew < 64, grew .. " KiB") -- decoding it would take 8 MiB and more
      assert.same({ kind = "unauthorized", code = 401, retryable = false, sent = true, error = note(401) },
        read("job", 401, big))
      assert.same({ kind = "rate_limited", code = 429, retryable = true, sent = true, error = note(429),
                    retry_after = 3 }, read("headshot", 429, big, "HTTP/1.1 429 x\r\nRetry-After: 3\r\n\r\n"))
      assert.same({ kind = "bad_response", code = 403, retryable = false, sent = true, error = note(403) },
        read("job", 403, big))
      -- up to the cap, the documented error is read as ever
      local fits = '{"error":"' .. ("y"):rep(65000) .. '","code":400}'
      assert.equal(("y"):rep(65000), read("headshot", 400, fits).error)
    end)
  end)

  it("reads a 2xx that is not a job as bad_response with the status", function()
    reads("bad_response", {
      { "job", 200, '{"jobid": "abc", "status": ', true,
        "HTTP 200 answer: invalid JSON: unexpected end of text at byte 28" },
      { "headshot", 200, '{"error":"Unauthorized","code":200}', false,
        "HTTP 200 answer: not a job: no jobid string" },
      { "job", 200, '{"jobid":"a","status":7}', true, "HTTP 200 answer: field status is not a string" },
      { "job", 200, '{"jobid":"a","attachments":["x"]}', true,
        "HTTP 200 answer: field attachments is not an array of objects" },
      { "job", 200, '{"jobid":"a","code":"200"}', true, "HTTP 200 answer: field code is not a number" },
    })
  end)

  it("reads a 4xx that is not the documented error JSON as bad_response", function()
    reads("bad_response", {
      { "headshot", 404, "<html>Not Found</html>", false, "HTTP 404 answer is not a documented error (not JSON)" },
      -- not retryable for a GET either: a proxy's error page does not change when asked again
      { "job", 401, "<html>Unauthorized</html>", false, "HTTP 401 answer is not a documented error (not JSON)" },
      { "headshot", 400, '{"error":"x","code":"400"}', false,
        "HTTP 400 answer is not a documented error (no error string, or a field of the wrong type)" },
    })
  end)

  it("treats invalid UTF-8 inside a JSON string as not JSON", function()
    assert.equal("HTTP 200 answer: invalid JSON: invalid UTF-8 in string at byte 11",
      read("job", 200, '{"jobid":"a\255","status":"started"}').error)
  end)

  it("gives errors a one-line tostring", function()
    local _, err = core.read_response("headshot", 429, "",
      '{"error":"line one\\nline two","code":429}')
    assert.equal("rate_limited (429): line one line two", tostring(err))
  end)

  it("raises only on misuse", function()
    assert.has_error(function() core.read_response("upload", 200, "", "{}") end,
      "bad argument #1 to 'read_response' (invalid option 'upload')")
  end)
end)
