-- A hostile review of both transports' strict reading of the status line and Content-Length
-- (nginx_faults_spec has the fault table's rows): where the check applies. A Content-Length in
-- a chunked answer's trailers says nothing of a body already read whole; a fault inside a 1xx's
-- header block has no status to report (the answer never came); a status line is one line: a
-- CR inside it is not its end; a NUL anywhere in the head refuses the answer. For each, the
-- libcurl transport and the nginx one must give the same error a user sees, word for word.
local faceswap, sim, nginx = require "spec.support.uses" ("faceswap", "sim", "nginx")

local TOKEN = "review-headers-token"
local JOBID = "0123456789abcdef0123456789abcdef"

-- One GET of a job, after a cancel that opens the kept-alive connection (as nginx_faults_spec's
-- warm calls; none when `cold`): the error's fields, or "ok STATUS". Run as it is by libcurl and
-- inside nginx.
local CALL = [==[
  local faceswap, base, token, jobid, cold = ...
  local c = faceswap.new { token = token, base_url = base, retry = false, timeout = 5 }
  if not cold then c:cancel(jobid) end
  local job, err = c:job(jobid)
  c:close()
  if job then return "ok " .. job.status end
  return table.concat({ err.kind, tostring(err.code), tostring(err.retryable), tostring(err.sent), err.error }, "|")
]==]
local SERVER = string.format([[location = /call { content_by_lua_block {
  local args = ngx.req.get_uri_args()
  ngx.say(load(%q)(require "faceswap", args.base, %q, %q, args.cold)) } }]], CALL, TOKEN, JOBID)
local function outside(base, cold)
  return assert((rawget(_G, "loadstring") or load)(CALL))(faceswap, base, TOKEN, JOBID, cold)
end

local function escape(s) return (s:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end

local NOT_A_JOB = "bad_response|200|true|true|HTTP 200 answer: not a job: no jobid string"
local STATUS_LINE = "transport|nil|false|true|answer with an invalid status line"
local JOB = '{"jobid":"' .. JOBID .. '","status":"started"}'
local function chunked(trailers)
  return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" .. trailers .. "\r\n"
end

describe("review: where the transports' strict header reading applies #external", function()
  -- the simulator scripted with each answer, and the nginx whose /call reads it
  local s, n = nil, nil
  setup(function() s, n = sim.start { token = TOKEN }, nginx.start { server = SERVER } end)
  teardown(function() n:stop(); s:stop() end)

  -- Plays `data` as the answer to the job's GET for a client in nginx and one outside: both
  -- must give `want`. `cold`: the GET is the client's first request.
  local function agree(data, want, cold)
    local script = { action = "raw", match = "^GET /jobs/$", data = data }
    s:reset()
    s:script(script)
    local status, inside = nginx.request(n.url .. "/call?base=" .. escape(s.base_url) .. (cold and "&cold=1" or ""))
    assert.equal(200, status, inside .. n:log())
    s:reset()
    s:script(script)
    assert.equal(want, outside(s.base_url, cold), "libcurl")
    assert.equal(want, (inside:gsub("\n$", "")), "nginx")
  end

  describe("a chunked answer's trailers are not its framing", function()
    it("a Content-Length trailer that is not a number: the body was read whole", function()
      agree(chunked "Content-Length: x\r\n", NOT_A_JOB)            -- libcurl refused it on main
    end)

    it("a Content-Length trailer that disagrees with a header's: the chunks framed it", function()
      agree("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "2\r\n{}\r\n0\r\nContent-Length: 7\r\n\r\n", NOT_A_JOB)    -- libcurl refused it on main
    end)

    it("a job answer with trailers is the job (held)", function()
      agree("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. string.format("%x", #JOB) ..
        "\r\n" .. JOB .. "\r\n0\r\nContent-Length: 99\r\nX-Trailer: 1\r\n\r\n", "ok started")
      agree(chunked "Content-Length: 5\r\n", NOT_A_JOB)
    end)
  end)

  describe("a 1xx before the answer", function()
    it("a bad Content-Length in a 100's block: the fault, with no status (the answer never came)", function()
      agree("HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "transport|nil|true|true|Invalid Content-Length: value")    -- nginx said 100 on main
    end)

    it("a 1xx's Content-Length is not the answer's (held)", function()
      agree("HTTP/1.1 100 Continue\r\nContent-Length: 7\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        NOT_A_JOB)
    end)

    it("a 103 then a bad status line, and a bad 1xx status line (held)", function()
      agree("HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n{}",
        STATUS_LINE)
      agree("HTTP/1.1 1 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)
    end)
  end)

  describe("a status line is one line", function()
    it("a CR inside it, or two before its LF, is not its end", function()
      agree("HTTP/1.1 200\rOK\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)    -- libcurl took it on main
      agree("HTTP/1.1 200\r\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)      -- libcurl took it on main
    end)

    it("ends in CRLF or a bare LF right after the status (held)", function()
      agree("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n{}", NOT_A_JOB)
      agree("HTTP/1.1 200\nContent-Length: 2\n\n{}", NOT_A_JOB)
    end)
  end)

  -- RFC 9110, 5.5 and RFC 9112, 4: a NUL is in no field's name or value, nor in a status line's
  -- reason; the answer is malformed (a recipient must reject it), as one with a bad status line
  -- is, and asking again gets the same bytes: not retryable. In a status line it makes that line
  -- invalid; in any other line of the head it is libcurl's "Nul byte in header", with the status
  -- of the answer it came in (none inside a 1xx's block).
  describe("a NUL byte in the head", function()
    local NUL = "transport|200|false|true|Nul byte in header"

    it("in a status line: an invalid status line", function()
      agree("HTTP/1.1 200 O\0K\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)    -- nginx took it on main
      agree("HTTP/1.1 200\0\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)       -- libcurl: Nul byte on main
      agree("HTTP/1.1 100 Cont\0inue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        STATUS_LINE)                                                                -- nginx took it on main
      agree("HTTP/1.1 2\0\0 OK\r\nContent-Length: 2\r\n\r\n{}", STATUS_LINE)  -- (held)
    end)

    it("in a header's value or name, or between its CR and LF", function()
      agree("HTTP/1.1 200 OK\r\nContent-Length: 2\0\r\n\r\n{}", NUL)          -- nginx: Invalid Content-Length on main
      agree("HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 2\r\n\r\n{}", NUL) -- nginx took it on main
      agree("HTTP/1.1 200 OK\r\nX-\0A: b\r\nContent-Length: 2\r\n\r\n{}", NUL)
      agree("HTTP/1.1 200 OK\r\nX-A: b\r\n \0c\r\nContent-Length: 2\r\n\r\n{}", NUL)
      agree("HTTP/1.1 200 OK\r\nContent-Length: 2\r\0\n\r\n{}", NUL)
    end)

    it("in an error answer's head, and in a 1xx's (no status: the answer never came)", function()
      agree("HTTP/1.1 503 Busy\r\nRetry-After: 1\0\r\nContent-Length: 2\r\n\r\n{}",
        "transport|503|false|true|Nul byte in header")
      agree("HTTP/1.1 100 Continue\r\nX-A: \0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "transport|nil|false|true|Nul byte in header")
    end)

    it("the first faulty line of the head decides", function()
      agree("HTTP/1.1 200 OK\r\nX-A: \0\r\nContent-Length: x\r\n\r\n{}", NUL)
      agree("HTTP/1.1 200 OK\r\nContent-Length: x\r\nX-A: \0\r\n\r\n{}",         -- (held)
        "transport|200|true|true|Invalid Content-Length: value")
      agree("HTTP/1.1 200 O\0K\r\nContent-Length: x\r\n\r\n{}", STATUS_LINE)
    end)

    it("in the body: the body's, not the head's (held)", function()
      agree("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\0}",
        "bad_response|200|true|true|HTTP 200 answer: invalid JSON: JSON parser does not support UTF-16 or UTF-32")
    end)
  end)

  -- RFC 9112, 5: a field line is a name, a colon, then its value; a line without a colon makes
  -- the head malformed, and asking again gets the same bytes: not retryable, as a NUL. A line
  -- that starts with a space or a tab continues the field line before it (obs-fold, RFC 9112,
  -- 5.2); as the first line of a block it continues nothing (RFC 9112, 2.2 lets a recipient
  -- refuse it): the same fault. libcurl's words, "Header without colon", for both.
  describe("a header line without a colon", function()
    local COLON = "transport|200|false|true|Header without colon"

    it("a name and a value without one between them", function()
      agree("HTTP/1.1 200 OK\r\nX-A b\r\nContent-Length: 2\r\n\r\n{}", COLON)     -- nginx took it on main
      agree("HTTP/1.1 200 OK\r\nContent-Length 5\r\nContent-Length: 2\r\n\r\n{}", COLON)
      agree("HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\n{}", COLON)
      agree("HTTP/1.1 200 OK\nX-A b\nContent-Length: 2\n\n{}", COLON)
      agree("HTTP/1.1 200 OK\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", COLON)
    end)

    it("a line of white space, or a folded line, first after the status line", function()
      agree("HTTP/1.1 200 OK\r\n   \r\nContent-Length: 2\r\n\r\n{}", COLON)       -- nginx took it on main
      agree("HTTP/1.1 200 OK\r\n\t\r\nContent-Length: 2\r\n\r\n{}", COLON)
      agree("HTTP/1.1 200 OK\r\n x\r\nContent-Length: 2\r\n\r\n{}", COLON)
      -- (as a client's first request too: libcurl's header store has nothing to unfold it
      -- into then; after one, see review_fold_spec)
      agree("HTTP/1.1 200 OK\r\n a: b\r\nContent-Length: 2\r\n\r\n{}", COLON, true) -- libcurl: a bad argument on main
      agree("HTTP/1.1 200 OK\r\n a: b\r\nContent-Length: 2\r\n\r\n{}", COLON)
      agree("HTTP/1.1 100 Continue\r\nX-A: b\r\n\r\nHTTP/1.1 200 OK\r\n a: b\r\nContent-Length: 2\r\n\r\n{}",
        COLON)                                                                            -- libcurl took it on main
    end)

    it("in an error answer's head, and in a 1xx's (no status: the answer never came)", function()
      agree("HTTP/1.1 503 Busy\r\nRetry-After 1\r\nContent-Length: 2\r\n\r\n{}",
        "transport|503|false|true|Header without colon")
      agree("HTTP/1.1 100 Continue\r\nX-A b\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "transport|nil|false|true|Header without colon")
      agree("HTTP/1.1 100 Continue\r\n x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "transport|nil|false|true|Header without colon")
    end)

    it("the first faulty line of the head decides", function()
      agree("HTTP/1.1 200 OK\r\nX-A b\r\nContent-Length: x\r\n\r\n{}", COLON)
      agree("HTTP/1.1 200 OK\r\nX-A b\r\nX-B: \0\r\nContent-Length: 2\r\n\r\n{}", COLON)
      agree("HTTP/1.1 200 OK\r\nContent-Length: x\r\nX-A b\r\n\r\n{}",                -- (held)
        "transport|200|true|true|Invalid Content-Length: value")
      agree("HTTP/1.1 200 OK\r\nX-B: \0\r\nX-A b\r\n\r\n{}", "transport|200|false|true|Nul byte in header")
    end)

    it("a colon with no name before it, and a folded line after a field line, are read (held)", function()
      agree("HTTP/1.1 200 OK\r\n:\r\n: x\r\nContent-Length: 2\r\n\r\n{}", NOT_A_JOB)
      agree("HTTP/1.1 200 OK\r\nX-A: b\r\n   \r\n\t\r\n c d\r\nContent-Length: 2\r\n\r\n{}", NOT_A_JOB)
      agree("HTTP/1.1 100 Continue\r\nX-A: b\r\n c\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        NOT_A_JOB)
    end)
  end)

  -- RFC 9110, 6.5: a recipient may discard trailer fields, and this client uses none: once the
  -- last chunk came, the body is whole. A trailer line with a NUL, or without a colon (one that
  -- is not folded), ends the answer there: the body is read, the connection not kept (what
  -- follows that line is unknown). libcurl refuses such a line after the body came ("Failed
  -- reading the chunked-encoded stream"), which the libcurl transport reads as that same end.
  describe("a malformed line in a chunked answer's trailers", function()
    it("a trailer line without a colon, or with a NUL: the body was read whole", function()
      agree(chunked "X-A b\r\n", NOT_A_JOB)                                    -- libcurl refused it on main
      agree(chunked "X-A: b\0c\r\n", NOT_A_JOB)                                -- libcurl refused it on main
      agree(chunked "X-A: b\r\n \0\r\n", NOT_A_JOB)
      agree(chunked "X-A: b\nX-B c\n", NOT_A_JOB)
      agree("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. string.format("%x", #JOB) ..
        "\r\n" .. JOB .. "\r\n0\r\nX-Trailer 1\r\n\r\n", "ok started")
    end)

    it("the answer ends at that line: a close before the trailers' end cuts nothing", function()
      agree("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-A b\r\n",
        NOT_A_JOB)                                           -- nginx: closed with outstanding data on main
    end)

    it("a colon with no name, a folded line, and a close before the trailers' end of good ones (held)", function()
      agree(chunked ":\r\n   \r\n x\r\n", NOT_A_JOB)
      agree("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-A: b\r\n",
        "transport|200|true|true|transfer closed with outstanding read data remaining")
    end)
  end)

  -- RFC 9112, 7.1: a chunk is its size in hex digits first on its line (an extension after
  -- them is ignored), the data, then CRLF. libcurl's reading decides, word for word: no digit
  -- first is "Illegal or missing hexadecimal sequence", more than 16 digits "Too long
  -- hexadecimal number", a size past what a 64-bit offset holds illegal again, and anything
  -- but CRs before the LF after the data "Malformed encoding found". The nginx transport
  -- raised on a size line without a digit (tonumber of nil), and took a size after spaces, 17
  -- digits and bytes after a chunk's data.
  describe("a chunked answer's chunk lines", function()
    local function body(chunks)
      return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. chunks
    end
    local ILLEGAL = "transport|200|true|true|Illegal or missing hexadecimal sequence in chunked-encoding"

    it("a size line without a hex digit first", function()
      agree(body "{}", ILLEGAL)                                                    -- nginx raised on main
      agree(body "\r\n{}\r\n0\r\n\r\n", ILLEGAL)                             -- nginx raised on main
      agree(body " 2\r\n{}\r\n0\r\n\r\n", ILLEGAL)                            -- nginx took it on main
      agree(body "2\r\n{}\r\n;x\r\n\r\n", ILLEGAL)                            -- nginx raised on main
    end)

    it("a size too long or too large", function()
      agree(body "00000000000000002\r\n{}\r\n0\r\n\r\n",
        "transport|200|true|true|Too long hexadecimal number in chunked-encoding") -- nginx took it on main
      agree(body "8000000000000000\r\n{}\r\n0\r\n\r\n", ILLEGAL)
    end)

    it("bytes after a chunk's data", function()
      agree(body "2\r\n{}XX\r\n0\r\n\r\n",
        "transport|200|true|true|Malformed encoding found in chunked-encoding")    -- nginx took it on main
    end)

    it("an extension, 16 digits, CRs before the LF (held)", function()
      agree(body "2;ext=1 x\r\n{}\r\n0\r\n\r\n", NOT_A_JOB)
      agree(body "0000000000000002\r\n{}\r\n0\r\n\r\n", NOT_A_JOB)
      agree(body "2\r\n{}\r\r\n0\r\n\r\n", NOT_A_JOB)
      agree(body "2\n{}\n0\n\n", NOT_A_JOB)
    end)
  end)

  describe("held", function()
    it("a folded Content-Length line is read as the line it is", function()
      agree("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 3\r\n\r\n{}", NOT_A_JOB)
      agree("HTTP/1.1 200 OK\r\nContent-Length:\r\n 2\r\n\r\n{}",
        "transport|200|true|true|Invalid Content-Length: value")
    end)

    it("a 204 or 304 with a Content-Length", function()
      agree("HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n{}",
        "bad_response|204|true|true|HTTP 204 answer: invalid JSON: unexpected end of text at byte 1")
      agree("HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n",
        "server|304|false|true|unexpected HTTP 304 (redirects are not followed)")
    end)
  end)
end)

-- Through an https proxy, libcurl hands the header callback the proxy's answer to CONNECT
-- before the server's: its header lines are not the answer's (RFC 9110, 9.3.6: a 2xx to CONNECT
-- has no Content-Length, which some proxies send anyway and libcurl ignores).
describe("review: a proxy's answer to CONNECT is not the server's #external", function()
  local tls, proxy, shell = require "spec.support.uses" ("tls", "connect_proxy", "shell")
  local certs, s, front

  setup(function()
    certs = tls.make()
    s = sim.start { token = TOKEN, job_seconds = 600 }
    front = nginx.start { tls = { cert = certs.cert, key = certs.key },
      server = string.format([[
        location = /jobs/ { if ($arg_jobid = "twice") { add_header Content-Length 9; return 200 "{}"; }
          proxy_pass http://127.0.0.1:%d; }
        location / { proxy_pass http://127.0.0.1:%d; }]], s.port, s.port) }
  end)
  teardown(function()
    front:stop()
    s:stop()
    certs:remove()
  end)

  -- A headshot and its GET through a proxy whose CONNECT answer has `lines`, in a child process
  -- (libcurl reads https_proxy from the environment): what it printed.
  local function through(lines, op)
    local log = os.tmpname()
    local p = proxy.start(log, lines)
    local code = string.format([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./build/5.4/?.so;" .. package.cpath
      local c = require("faceswap").new { token = %q, base_url = %q, ca_file = %q, retry = false }
      local job, err = c:headshot("via proxy")
      if job then job, err = c:job(%s) end
      print(job and job.prompt or err.kind .. "|" .. tostring(err.code) .. "|" .. err.error)
    ]], TOKEN, front.url, certs.ca, op or "job.jobid")
    local out = shell.capture("env -u no_proxy -u NO_PROXY https_proxy=" .. p.url .. " lua5.4 -e " ..
      shell.quote(code) .. " 2>&1")
    p.stop()
    os.remove(log)
    return out
  end

  it("a Content-Length: 0 in the proxy's 200 does not frame the server's answers", function()
    assert.equal("via proxy\n", through "Content-Length: 0\\r\\nProxy-Agent: review\\r\\n")   -- framing on main
  end)

  it("the server's own Content-Length headers are still read after a proxy's", function()
    assert.equal("transport|200|answer with Content-Length headers that disagree\n",
      through("Content-Length: 0\\r\\n", '"twice"'))
  end)

  it("a plain CONNECT 200 (held)", function()
    assert.equal("via proxy\n", through(nil))
  end)
end)
