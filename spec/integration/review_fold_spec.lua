-- A hostile review of libcurl's header store on a reused easy handle: libcurl before 8.1.0
-- (Debian 12 has 7.88.1) frees the headers it stored for curl_easy_header as a handle's next
-- transfer starts but keeps a pointer to the last one, and unfolds a folded first field line
-- (" a: b", a line that continues the one before it) into that freed memory: the heap is
-- corrupted and the host process dies ("malloc_consolidate(): unaligned fastbin chunk
-- detected"), whatever the server's answer was meant to be. Every request here comes after
-- others on the same client, so on the same easy handles; each call runs in a child process,
-- so that a crash is a failure of this spec and not the end of the run. The answer is refused
-- as on a client's first request (review_headers_spec): "Header without colon", not retried
-- (the same request gets the same bytes), and the client goes on working.
local sim = require "spec.support.sim"
local shell = require "spec.support.shell"
local compat = require "spec.support.compat"

local TOKEN = "review-fold-token"
local JOBID = "0123456789abcdef0123456789abcdef"
local FOLDED = "HTTP/1.1 200 OK\r\n a: b\r\nContent-Length: 2\r\n\r\n{}"
local COLON = "transport|200|false|true|Header without colon"
local NOT_FOUND = "not_found|404|false|true|Unable to locate job " .. JOBID

-- Runs `body` (a chunk given faceswap, the base URL, the token and the job id) in a fresh
-- process of the Lua running the specs (ASan's own under make test-asan): what it printed,
-- then "exit N" (or the signal that ended it).
local function child(base, body)
  local path = os.tmpname()
  shell.write(path, "local faceswap = require 'faceswap'\n" ..
    "local base, token, jobid = ...\n" ..
    "local function line(x, err)\n" ..
    "  if x then return 'ok' end\n" ..
    "  return table.concat({ err.kind, tostring(err.code), tostring(err.retryable),\n" ..
    "                        tostring(err.sent), err.error }, '|')\n" ..
    "end\n" .. body)
  -- (leaks are the parent's to check: see upload_stream_spec)
  local out = shell.capture(string.format(
    "ASAN_OPTIONS=detect_leaks=0 LUA_PATH=%q LUA_CPATH=%q %s %s %s %s %s 2>&1; echo \"exit $?\"",
    package.path, package.cpath, compat.interpreter, path, base, TOKEN, JOBID))
  os.remove(path)
  return out
end

describe("review: a folded first field line on a reused easy handle #integration", function()
  local s
  setup(function() s = sim.start { token = TOKEN } end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  it("after requests on the same client: refused as on its first, and the client goes on", function()
    s:script { action = "raw", match = "^GET /jobs/$", data = FOLDED }
    assert.equal(table.concat({
      "cancel " .. NOT_FOUND,
      "cancel " .. NOT_FOUND,
      "job " .. COLON,
      "job " .. NOT_FOUND,
      "exit 0\n" }, "\n"), child(s.base_url, [[
      local c = faceswap.new { token = token, base_url = base, retry = false, timeout = 5 }
      print("cancel " .. line(c:cancel(jobid)))
      print("cancel " .. line(c:cancel(jobid)))
      print("job " .. line(c:job(jobid)))
      print("job " .. line(c:job(jobid)))
      c:close()
    ]]))
  end)

  it("after a POST, and in a 1xx's block", function()
    s:script { action = "raw", match = "^GET /jobs/$", count = 2, data = FOLDED }
    s:script { action = "raw", match = "^GET /jobs/$", count = 2,
               data = "HTTP/1.1 100 Continue\r\n a: b\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" }
    assert.equal(table.concat({
      "headshot ok",
      "job " .. COLON,
      "job " .. COLON,
      "job transport|nil|false|true|Header without colon",
      "job transport|nil|false|true|Header without colon",
      "exit 0\n" }, "\n"), child(s.base_url, [[
      local c = faceswap.new { token = token, base_url = base, retry = false, timeout = 5 }
      print("headshot " .. line(c:headshot("a portrait")))
      for _ = 1, 4 do print("job " .. line(c:job(jobid))) end
      c:close()
    ]]))
  end)

  it("in tasks running at once, each on a slot that made requests before", function()
    s:script { action = "raw", match = "^GET /jobs/$", count = 4, data = FOLDED }
    assert.equal(table.concat({
      "1 cancel " .. NOT_FOUND, "2 cancel " .. NOT_FOUND, "3 cancel " .. NOT_FOUND, "4 cancel " .. NOT_FOUND,
      "1 " .. COLON, "2 " .. COLON, "3 " .. COLON, "4 " .. COLON,
      "exit 0\n" }, "\n"), child(s.base_url, [[
      local c = faceswap.new { token = token, base_url = base, retry = false, timeout = 5 }
      local function all(f)
        local tasks = {}
        for i = 1, 4 do tasks[i] = c:spawn(f) end
        c:run()
        for i = 1, 4 do print(i .. " " .. tostring((tasks[i]:result()))) end
      end
      all(function() return "cancel " .. line(c:cancel(jobid)) end)
      all(function() return line(c:job(jobid)) end)
      c:close()
    ]]))
  end)
end)
