-- Specs for the simulator itself (spec/support/simulator.lua and its helper sim.lua).
-- They talk raw HTTP/1.1 over luasocket so that what is checked is exactly what goes over the
-- wire: documented answers, strictness, keep-alive, job progression, callbacks and every
-- scripted misbehaviour. Run from the repository root: lua5.4 /usr/bin/busted spec/integration/simulator_spec.lua

local socket, cjson, sim, compat, shell =
  require "spec.support.uses" ("socket", "cjson", "sim", "compat", "shell")

local TOKEN = "test-token"

---------------------------------------------------------------------------------------------
-- A tiny raw HTTP client
---------------------------------------------------------------------------------------------
local s   -- the simulator shared by most specs (reset before each)

local function connect(timeout)
  local c = assert(socket.connect(s.host, s.port))
  c:settimeout(timeout or 5)
  return c
end

-- Builds request bytes. opts: headers (name -> value; false drops a default), body, token.
local function build(method, target, opts)
  opts = opts or {}
  local headers = { Host = s.host .. ":" .. s.port, Authorization = "Bearer " .. (opts.token or TOKEN) }
  if opts.body then headers["Content-Length"] = tostring(#opts.body) end
  for k, v in pairs(opts.headers or {}) do headers[k] = v or nil end
  local lines = { method .. " " .. target .. " HTTP/1.1" }
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. headers[k] end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

-- Reads one response; returns {status, headers, body, json} or nil and the receive error.
local function read_response(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local res = { status = tonumber(line:match("^HTTP/1%.1 (%d%d%d)")), headers = {} }
  while true do
    local h = assert(c:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    k = k:lower()
    res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. v) or v
  end
  local n = tonumber(res.headers["content-length"] or "0")
  if n == 0 then                  -- (receive(0) would wait for a byte that never comes: a 204)
    res.body = ""
    return res
  end
  local body, berr, partial = c:receive(n)
  res.body, res.err = body or partial, berr
  local ok, json = pcall(cjson.decode, res.body)
  if ok then res.json = json end
  return res
end

-- One request on a connection (a fresh one unless opts.conn); returns the response and conn.
local function http(method, target, opts)
  opts = opts or {}
  local c = opts.conn or connect()
  assert(c:send(build(method, target, opts)))
  local res, err = read_response(c)
  if not opts.conn and not opts.keep then c:close() end
  return res, err, c
end

local function multipart(parts, boundary)
  boundary = boundary or "sImBoUnDaRy42"
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. p[1]
      .. "\"\r\n\r\n" .. p[2] .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

local function headshot_form(parts, opts)
  local body, ct = multipart(parts)
  opts = opts or {}
  opts.body, opts.headers = body, opts.headers or {}
  opts.headers["Content-Type"] = ct
  return http("POST", opts.path or "/headshot", opts)
end

local function headshot_json(fields, opts)
  opts = opts or {}
  opts.body = type(fields) == "string" and fields or cjson.encode(fields)
  opts.headers = { ["Content-Type"] = "application/json" }
  return http("POST", "/headshot", opts)
end

local function get_job(jobid)
  return http("GET", "/jobs/?jobid=" .. jobid)
end

local function assert_error(res, status, message)
  assert.equals(status, res.status)
  assert.equals("application/json", res.headers["content-type"])
  assert.equals(#res.body, tonumber(res.headers["content-length"]))
  assert.same({ error = message, code = status }, res.json)
end

-- receive(1) without its third ("partial") result, for assert.same.
local function recv1(c)
  local data, err = c:receive(1)
  return { data, err }
end

local function elapsed(fn)
  local t = socket.gettime()
  local a, b, c = fn()
  return socket.gettime() - t, a, b, c
end

local function has_curl()
  return compat.execute("command -v curl >/dev/null 2>&1") == true
end

-- Runs curl; returns its exit code.
local function curl(args)
  local _, _, code = compat.execute("curl -s -o /dev/null --max-time 5 " .. args .. " 2>/dev/null")
  return code
end

---------------------------------------------------------------------------------------------
-- The stats once every connection the spec closed is seen closed by the simulator too.
-- The counters a reset clears (clients, refused, accept_errors and event_loop: the limits spec).
local function closed_stats()
  local got = sim.wait_for(function()
    local stats = s:stats()
    return stats.open == 0 and stats
  end, 5)
  return got and { connections = got.connections, requests = got.requests, open = got.open,
                   rejected = got.rejected }
end

describe("simulator #lua_only", function()
  setup(function() s = sim.start() end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  describe("startup and helper", function()
    it("exposes base_url without a trailing slash, port and pid", function()
      assert.matches("^http://127%.0%.0%.1:%d+$", s.base_url)
      assert.equals(s.base_url, "http://127.0.0.1:" .. s.port)
      assert.is_number(s.pid)
    end)

    it("stop() shuts the child down, reaps it and is safe twice", function()
      local other = sim.start { job_seconds = 0.1 }
      local pid = other.pid
      assert.is_true(compat.execute("kill -0 " .. pid .. " 2>/dev/null"))
      local ok, how, code = other:stop()
      if _VERSION == "Lua 5.1" then -- a 5.1 pipe's close() says nothing of the exit status
        assert.same({ true }, { ok, how, code })
      else
        assert.same({ true, "exit", 0 }, { ok, how, code })
      end
      assert.is_nil(other:stop())
      assert.is_falsy(compat.execute("kill -0 " .. pid .. " 2>/dev/null"))
    end)

    it("passes start options through and restores them on reset", function()
      local other = sim.start { token = "tok", channels = { "42" }, subscription = false }
      local cfg = other:config {}
      assert.equals("tok", cfg.token)
      assert.same({ "42" }, cfg.channels)
      assert.is_false(cfg.subscription)
      other:config { subscription = true, token = "x" }
      other:reset()
      cfg = other:config {}
      assert.is_false(cfg.subscription)
      assert.equals("tok", cfg.token)
      other:stop()
    end)

    it("works from any cwd", function()
      local cmd = "cd / && " .. compat.lua .. " -e 'package.path=\"" .. os.getenv("PWD") .. "/?.lua;\"..package.path; "
        .. "local s=require(\"spec.support.sim\").start(); print(s.port); s:stop()'"
      local p = io.popen(cmd)
      local out = p:read("*a")
      assert.is_true(p:close())
      assert.matches("^%d+\n$", out)
    end)

    it("is the module faceswap.simulator, started from its own directory", function()
      local module = require "faceswap.simulator"
      assert.equals(module.start, sim.start)
      local root = io.popen("cd " .. shell.quote(module.root) .. " && pwd")
      local dir = root:read("*l")
      root:close()
      local probe = io.open(dir .. "/faceswap/simulator/server.lua")
      assert.is_truthy(probe)
      probe:close()
    end)

    it("bin/faceswap-sim (on any Lua) and the old start script start it by hand", function()
      -- (luajit: as a luarocks tree of LuaJIT would wrap it; it runs itself again under lua5.4)
      for _, command in ipairs { "bin/faceswap-sim", "lua5.4 spec/support/simulator.lua", "luajit bin/faceswap-sim" } do
        local p = io.popen(command .. " --help")
        local usage = p:read("*a")
        assert.is_true(p:close())
        assert.matches("^usage: faceswap%-sim %[%-%-host H%] %[%-%-port N%]", usage)
        assert.matches("%[%-%-blocking%-seconds S%]", usage)
        local ok, _, code = compat.execute(command .. " --job-seconds soon 2>/dev/null")
        assert.same({ false, 2 }, { ok == true, code })
        local pipe = io.popen("exec " .. command .. " --port 0 --parent-pid $PPID --seed-identity ''")
        local line = pipe:read("*l")
        assert.matches("^listening http://127%.0%.0%.1:%d+$", line)
        local port = tonumber(line:match(":(%d+)$"))
        local c = assert(socket.connect("127.0.0.1", port))
        c:send("POST /__sim/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        c:settimeout(5)
        c:receive("*a")
        c:close()
        pipe:read("*a")
        pipe:close()
      end
    end)
  end)

  describe("authorization", function()
    it("answers 401 without, with a wrong, or with a non-Bearer Authorization", function()
      assert_error(http("GET", "/jobs/?jobid=x", { headers = { Authorization = false } }), 401, "Unauthorized")
      assert_error(http("GET", "/jobs/?jobid=x", { token = "nope" }), 401, "Unauthorized")
      assert_error(http("GET", "/jobs/?jobid=x", { headers = { Authorization = "Basic " .. TOKEN } }),
        401, "Unauthorized")
    end)

    it("accepts the scheme in any case and follows the configured token", function()
      assert.equals(404, http("GET", "/jobs/?jobid=x", { headers = { Authorization = "bearer " .. TOKEN } }).status)
      s:config { token = "other" }
      assert.equals(401, http("GET", "/jobs/?jobid=x").status)
      assert.equals(404, http("GET", "/jobs/?jobid=x", { token = "other" }).status)
    end)
  end)

  describe("POST /headshot", function()
    it("creates a job from a multipart body", function()
      local res = headshot_form { { "prompt", "hello world --no green" } }
      assert.equals(200, res.status)
      assert.equals("application/json", res.headers["content-type"])
      assert.equals(#res.body, tonumber(res.headers["content-length"]))
      local job = res.json
      assert.matches("^%x+$", job.jobid)
      assert.equals(32, #job.jobid)
      assert.equals(job.jobid:lower(), job.jobid)
      assert.equals("faceswap-headshot", job.verb)
      assert.equals("started", job.status)
      assert.equals("hello world --no green", job.prompt)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", job.created)
      assert.equals(job.created, job.updated)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%+00:00$", job.timestamp)
      assert.equals("ABC\226\128\166secured\226\128\166xyz", job.discord)
      assert.equals("1000000000000000001", job.server)
      assert.equals("1100000000000000001", job.channel)
      assert.matches("^%d+$", job.messageId)
      assert.equals(200, job.code)
      assert.is_nil(job.replyUrl)
      assert.is_nil(job.replyRef)
      assert.equals("<@100000000000000001> Picsi.Ai Headshot Job Submitted [jobid: " .. job.jobid
        .. "] [credits: 4] [prompt: 'hello world --no green'] [time: 12s] [SaveID: 'me'] "
        .. "(796/800 credits remaining)", job.content)
    end)

    it("counts credits down by 4 per job", function()
      headshot_form { { "prompt", "a" } }
      local job = headshot_form({ { "prompt", "b" } }).json
      assert.matches("%(792/800 credits remaining%)$", job.content)
    end)

    it("creates a job from a JSON body and echoes channel, replyUrl and replyRef", function()
      local res = headshot_json { prompt = "p", channel = "1100000000000000001",
                                  replyUrl = "https://example.com/cb", replyRef = "ref-1" }
      assert.equals(200, res.status)
      assert.equals("https://example.com/cb", res.json.replyUrl)
      assert.equals("ref-1", res.json.replyRef)
      assert.equals("1100000000000000001", res.json.channel)
    end)

    it("is also served under /v1/faceswap", function()
      assert.equals(200, headshot_form({ { "prompt", "p" } }, { path = "/v1/faceswap/headshot" }).status)
    end)

    it("keeps the exact bytes of multipart values", function()
      local value = "line1\r\nline2\0\255 --sImBoUnDaRy4 end\r\n"
      assert.equals(200, headshot_form({ { "prompt", "p" }, { "options", value } }).status)
      assert.equals(value, s:requests()[1].fields.options)
    end)

    it("accepts a preamble, a quoted boundary, file parts and an epilogue", function()
      local body = "preamble\r\n--a b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n"
        .. "Content-Type: text/plain\r\n\r\nhi\r\n--a b\r\nContent-Disposition: form-data; name=\"img\"; "
        .. "filename=\"x.png\"\r\n\r\n\137PNG\r\n--a b--\r\nepilogue"
      local res = http("POST", "/headshot", { body = body,
        headers = { ["Content-Type"] = 'multipart/form-data; boundary="a b"' } })
      assert.equals(200, res.status)
      assert.same({ prompt = "hi", img = "\137PNG" }, s:requests()[1].fields)
    end)

    local function malformed(body, ct)
      local res = http("POST", "/headshot", { body = body,
        headers = { ["Content-Type"] = ct or "multipart/form-data; boundary=B" } })
      assert_error(res, 400, "Malformed multipart/form-data body")
    end

    it("rejects malformed multipart bodies", function()
      local good = "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--B--\r\n"
      malformed(good, "multipart/form-data")                                  -- no boundary
      malformed((good:gsub("\r\n", "\n")))                                   -- bare LF
      malformed("--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n")  -- no close
      malformed("--B\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--B--\r\n")           -- no name
      malformed("--B\r\nContent-Disposition: attachment; name=\"p\"\r\n\r\nhi\r\n--B--\r\n")
      malformed("--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n")    -- no disposition
      malformed("--B\r\nContent-Disposition: form-data; name=\"prompt\r\n\r\nhi\r\n--B--\r\n")
      malformed("")
      assert.is_nil(s:requests()[1].fields)
    end)

    it("rejects malformed JSON and JSON that is not an object", function()
      assert_error(headshot_json('{"prompt": '), 400, "Malformed JSON body")
      assert_error(headshot_json('["prompt"]'), 400, "Malformed JSON body")
      assert_error(headshot_json('{"prompt":"a"} x'), 400, "Malformed JSON body")
    end)

    it("rejects other content types", function()
      assert_error(http("POST", "/headshot", { body = "prompt=a",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }),
        400, "Unsupported Content-Type application/x-www-form-urlencoded")
      assert_error(http("POST", "/headshot", { body = "" }), 400, "Unsupported Content-Type undefined")
    end)

    it("requires a non-empty prompt", function()
      assert_error(headshot_form { { "channel", "1100000000000000001" } }, 400,
        "Required param prompt is missing or empty")
      assert_error(headshot_json { prompt = "" }, 400, "Required param prompt is missing or empty")
    end)

    it("limits replyRef and replyUrl to 1024 characters, not bytes", function()
      local ok = headshot_json { prompt = "p", replyRef = string.rep("é", 1024), replyUrl = string.rep("ü", 1024) }
      assert.equals(200, ok.status)
      assert.equals(string.rep("é", 1024), ok.json.replyRef)
      assert_error(headshot_json { prompt = "p", replyRef = string.rep("é", 1025) }, 400,
        "Optional param replyRef is too long")
      assert_error(headshot_json { prompt = "p", replyUrl = "http://x/" .. string.rep("a", 1016) }, 400,
        "Optional param replyUrl is too long")
    end)

    it("only accepts configured channels", function()
      assert_error(headshot_json { prompt = "p", channel = "123" }, 400,
        "Configuration not found for channel 123, to create POST v1/faceswap/account/123")
      s:config { channels = { "123", "456" } }
      local res = headshot_json { prompt = "p", channel = "456" }
      assert.equals("456", res.json.channel)
      assert.equals("123", headshot_json({ prompt = "p" }).json.channel)
    end)

    it("answers 402 without subscription or credits", function()
      s:config { subscription = false }
      assert_error(headshot_json { prompt = "p" }, 402, "Account has no subscription or subscription expired")
      s:config { subscription = true, credits_used = 796 }
      assert.matches("%(0/800 credits remaining%)$", headshot_json({ prompt = "p" }).json.content)
      assert_error(headshot_json { prompt = "p" }, 402, "Account has no subscription or subscription expired")
      assert.equals(1, #s:jobs())
    end)

    it("validates in the documented order", function()
      local long = string.rep("x", 1025)
      assert_error(headshot_json { replyRef = long, replyUrl = long, channel = "9" }, 400,
        "Required param prompt is missing or empty")
      assert_error(headshot_json { prompt = "p", replyRef = long, replyUrl = long, channel = "9" }, 400,
        "Optional param replyRef is too long")
      assert_error(headshot_json { prompt = "p", replyUrl = long, channel = "9" }, 400,
        "Optional param replyUrl is too long")
      s:config { subscription = false }
      assert_error(headshot_json { prompt = "p", channel = "9" }, 400,
        "Configuration not found for channel 9, to create POST v1/faceswap/account/9")
    end)
  end)

  describe("GET /jobs and /jobs/cancel", function()
    it("needs a jobid and reports unknown ones", function()
      for _, path in ipairs { "/jobs/", "/jobs", "/jobs/cancel/", "/jobs/cancel", "/v1/faceswap/jobs/" } do
        -- (GET /jobs without any query lists the running jobs: issue 12)
        if path ~= "/jobs" then assert_error(http("GET", path), 400, "Query param jobid not provided") end
        assert_error(http("GET", path .. "?jobid="), 400, "Query param jobid not provided")
        assert_error(http("GET", path .. "?jobid=%41b+c%2f"), 404, "Unable to locate job Ab c/")
      end
    end)

    it("returns the job", function()
      local job = headshot_json({ prompt = "p" }).json
      local res = http("GET", "/jobs?x=1&jobid=" .. job.jobid)
      assert.equals(200, res.status)
      assert.same(job, res.json)
    end)

    it("cancels a running job, which then stays cancelled", function()
      s:config { job_seconds = 0.2 }
      local job = headshot_json({ prompt = "p" }).json
      local res = http("GET", "/jobs/cancel/?jobid=" .. job.jobid)
      assert.equals(200, res.status)
      assert.same({ jobid = job.jobid, status = "cancelled", code = 200 }, res.json)
      socket.sleep(0.3)
      local now = get_job(job.jobid).json
      assert.equals("cancelled", now.status)
      assert.is_nil(now.attachments)
      assert.is_true(now.updated > job.updated)
    end)

    it("leaves a finished job alone and reports its status", function()
      local job = headshot_json({ prompt = "p" }).json
      s:advance(job.jobid, "completed")
      assert.same({ jobid = job.jobid, status = "completed", code = 200 },
        http("GET", "/jobs/cancel/?jobid=" .. job.jobid).json)
    end)
  end)

  describe("max_running", function()
    local QUEUE_FULL = "Unable to lock Discord after 3 attempts"

    -- n headshots that must succeed; returns their jobs.
    local function start_jobs(n, fields)
      local jobs = {}
      for i = 1, n do
        local res = headshot_json(fields or { prompt = "p" .. i })
        assert.equals(200, res.status)
        jobs[i] = res.json
      end
      return jobs
    end

    it("is off by default, passes through start options and survives reset", function()
      assert.equals(0, s:config({}).max_running)
      start_jobs(20)
      assert.equals(0, s:stats().rejected)
      local other = sim.start { max_running = 3 }
      assert.equals(3, other:config({}).max_running)
      other:config { max_running = 5 }
      other:reset()
      assert.equals(3, other:config({}).max_running)
      other:stop()
    end)

    it("accepts only whole numbers >= 0", function()
      assert.equals(2, s:config({ max_running = 2.0 }).max_running)
      for _, bad in ipairs { 1.5, -1, "2", true } do
        assert.equals(400, (s:request("POST", "/__sim/config", { max_running = bad })))
      end
      assert.equals(2, s:config({}).max_running)
    end)

    it("answers the queue-full 429 once a channel has max_running unfinished jobs", function()
      s:config { max_running = 2, job_seconds = 60 }
      local jobs = start_jobs(2)
      local res = headshot_json { prompt = "third" }
      assert_error(res, 429, QUEUE_FULL)
      assert.equals(2, #s:jobs())
      assert.equals(8, s:config({}).credits_used)          -- the 429 charged nothing
      assert.equals(1, s:stats().rejected)
      s:script { action = "queue_full" }                  -- byte for byte the scripted answer,
      assert.equals(res.body, headshot_json({ prompt = "p" }).body)
      assert.equals(1, s:stats().rejected)                -- which is not counted as rejected
      s:advance(jobs[1].jobid, "completed")
      local fourth = headshot_json { prompt = "fourth" }
      assert.equals(200, fourth.status)
      assert.matches("%(788/800 credits remaining%)$", fourth.json.content)
      assert_error(headshot_json { prompt = "fifth" }, 429, QUEUE_FULL)
      assert.equals(2, s:stats().rejected)
    end)

    -- With one slot (max_running 1, jobs of job_seconds): a job that holds it, a headshot
    -- refused meanwhile.
    local function hold_the_slot(job_seconds)
      s:config { max_running = 1, job_seconds = job_seconds }
      local job = start_jobs(1)[1]
      assert.equals(429, headshot_json({ prompt = "p" }).status)
      return job
    end

    it("frees a slot when a job ends on its own", function()
      local job = hold_the_slot(0.1)
      assert.truthy(sim.wait_for(function() return get_job(job.jobid).json.status == "completed" end, 3))
      local failing = start_jobs(1, { prompt = "sim:fail" })[1]
      assert.truthy(sim.wait_for(function() return get_job(failing.jobid).json.status == "failed" end, 3))
      start_jobs(1)
      assert.equals(1, s:stats().rejected)
    end)

    it("frees the slot of a cancelled job, and a job forced back to running takes one again", function()
      local job = hold_the_slot(60)
      assert.equals("cancelled", http("GET", "/jobs/cancel/?jobid=" .. job.jobid).json.status)
      local second = start_jobs(1)[1]
      s:advance(second.jobid, "moderated")
      s:advance(job.jobid, "progress")
      assert_error(headshot_json { prompt = "p" }, 429, QUEUE_FULL)
      assert.equals(2, s:stats().rejected)
    end)

    it("counts each channel's jobs separately", function()
      s:config { max_running = 1, job_seconds = 60, channels = { "111", "222" } }
      start_jobs(1, { prompt = "p", channel = "111" })
      assert_error(headshot_json { prompt = "p", channel = "111" }, 429, QUEUE_FULL)
      local other = start_jobs(1, { prompt = "p", channel = "222" })[1]
      assert.equals("222", other.channel)
      assert_error(headshot_json { prompt = "p" }, 429, QUEUE_FULL)          -- no channel: the first
      assert_error(headshot_json { prompt = "p", channel = "222" }, 429, QUEUE_FULL)
      assert.equals(3, s:stats().rejected)
      assert.equals(2, #s:jobs())
    end)

    it("comes after the 400 and 402 checks", function()
      s:config { max_running = 1, job_seconds = 60 }
      start_jobs(1)
      assert_error(headshot_json { channel = "1100000000000000001" }, 400, "Required param prompt is missing or empty")
      assert_error(headshot_json { prompt = "p", channel = "9" }, 400,
        "Configuration not found for channel 9, to create POST v1/faceswap/account/9")
      s:config { subscription = false }
      assert_error(headshot_json { prompt = "p" }, 402, "Account has no subscription or subscription expired")
      assert.equals(0, s:stats().rejected)
      s:config { subscription = true }
      assert_error(headshot_json { prompt = "p" }, 429, QUEUE_FULL)
      assert.equals(1, s:stats().rejected)
    end)

    it("is cleared by reset, together with the jobs that held the slots", function()
      s:config { max_running = 1, job_seconds = 60 }
      start_jobs(1)
      assert.equals(429, headshot_json({ prompt = "p" }).status)
      assert.equals(1, s:stats().rejected)
      s:reset()
      assert.same({ connections = 0, requests = 0, open = 0, rejected = 0 }, closed_stats())
      s:config { max_running = 1, job_seconds = 60 }
      start_jobs(1)
      assert.equals(0, s:stats().rejected)
    end)
  end)

  describe("job progression", function()
    it("goes started -> progress -> completed, changing updated each time", function()
      s:config { job_seconds = 0.3 }
      local job = headshot_json({ prompt = "p" }).json
      local seen, updated = { job.status }, { job.updated }
      sim.wait_for(function()
        local cur = get_job(job.jobid).json
        if cur.status ~= seen[#seen] then
          seen[#seen + 1], updated[#updated + 1] = cur.status, cur.updated
        end
        return cur.status == "completed"
      end, 3)
      assert.same({ "started", "progress", "completed" }, seen)
      assert.is_true(updated[1] < updated[2] and updated[2] < updated[3])
      local done = get_job(job.jobid).json
      assert.equals(job.created, done.created)
      assert.equals(job.content:gsub("Submitted", "Completed"), done.content)
      assert.same({ { type = "rich", description = "Headshot done" } }, done.embeds)
      assert.equals(2, #done.attachments)
      for n, a in ipairs(done.attachments) do
        assert.equals(job.jobid .. "_" .. n .. ".png", a.filename)
        assert.equals(s.base_url .. "/attachments/" .. job.jobid .. "/" .. n .. ".png?ex=65f1&is=65de&hm=abc123", a.url)
        assert.equals(s.base_url .. "/proxy/attachments/" .. job.jobid .. "/" .. n .. ".png?ex=65f1&is=65de&hm=abc123",
          a.proxy_url)
        assert.same({ "image/png", 8, 8 }, { a.content_type, a.width, a.height })
        assert.is_string(a.id)
        assert.is_number(a.size)
      end
    end)

    it("ends failed or moderated on request of the prompt", function()
      s:config { job_seconds = 0.05 }
      local failed = headshot_json({ prompt = "x sim:fail" }).json
      local moderated = headshot_json({ prompt = "sim:moderate" }).json
      socket.sleep(0.2)
      local f = get_job(failed.jobid).json
      assert.equals("failed", f.status)
      assert.equals("Job failed", f.error)
      assert.equals("moderated", get_job(moderated.jobid).json.status)
    end)

    it("can be forced with advance()", function()
      local job = headshot_json({ prompt = "p" }).json
      assert.equals("progress", s:advance(job.jobid, "progress").status)
      assert.equals("progress", s:job(job.jobid).status)
      local done = s:advance(job.jobid, "completed")
      assert.equals(2, #done.attachments)
      assert.same(done, get_job(job.jobid).json)
      assert.is_nil(s:job("0123"))
    end)

    it("serves the attachments as PNG files without auth", function()
      local job = headshot_json({ prompt = "p" }).json
      local path = "/attachments/" .. job.jobid .. "/1.png?ex=65f1&is=65de&hm=abc123"
      assert.equals(404, http("GET", path).status)           -- not completed yet
      local done = s:advance(job.jobid, "completed")
      for n, a in ipairs(done.attachments) do
        for _, url in ipairs { a.url, a.proxy_url } do
          local res = http("GET", url:sub(#s.base_url + 1), { headers = { Authorization = false } })
          assert.equals(200, res.status)
          assert.equals("image/png", res.headers["content-type"])
          assert.equals(a.size, #res.body)
          assert.equals("\137PNG\r\n\26\n", res.body:sub(1, 8))
          assert.equals("IHDR", res.body:sub(13, 16))
        end
        assert.is_true(n <= 2)
      end
    end)
  end)

  describe("callbacks", function()
    local function receiver()
      local srv = assert(socket.bind("127.0.0.1", 0))
      srv:settimeout(5)
      local _, port = srv:getsockname()
      return srv, port
    end

    -- Accepts one callback and answers it with status; returns the request text.
    local function take_callback(srv, status)
      local c = assert(srv:accept())
      c:settimeout(5)
      local head = {}
      while true do
        local line = assert(c:receive("*l"))
        if line == "" then break end
        head[#head + 1] = line
      end
      local n = tonumber(table.concat(head, "\n"):match("[Cc]ontent%-[Ll]ength: (%d+)"))
      local body = c:receive(n)
      c:send("HTTP/1.1 " .. status .. " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      c:close()
      return head, body
    end

    it("POSTs the finished job to replyUrl and records the attempt", function()
      local srv, port = receiver()
      s:config { job_seconds = 0.05 }
      local url = "http://127.0.0.1:" .. port .. "/hook?ref=1"
      local job = headshot_json({ prompt = "p", replyUrl = url, replyRef = "r" }).json
      local head, body = take_callback(srv, 200)
      srv:close()
      assert.equals("POST /hook?ref=1 HTTP/1.1", head[1])
      assert.truthy(table.concat(head, "\n"):find("Content-Type: application/json", 1, true))
      local sent = cjson.decode(body)
      assert.equals(job.jobid, sent.jobid)
      assert.equals("completed", sent.status)
      assert.equals("r", sent.replyRef)
      local cbs = sim.wait_for(function()
        local list = s:callbacks()
        return list[1] and list[1].done and list
      end)
      assert.equals(1, #cbs)
      assert.same({ url, body, 200 }, { cbs[1].url, cbs[1].body, cbs[1].status })
      assert.is_nil(cbs[1].error)
    end)

    it("calls back on cancel and records the receiver's status", function()
      local srv, port = receiver()
      local job = headshot_json({ prompt = "p", replyUrl = "http://127.0.0.1:" .. port .. "/" }).json
      http("GET", "/jobs/cancel/?jobid=" .. job.jobid)
      local _, body = take_callback(srv, 500)
      srv:close()
      assert.equals("cancelled", cjson.decode(body).status)
      local cb = sim.wait_for(function() return s:callbacks()[1].done and s:callbacks()[1] end)
      assert.equals(500, cb.status)
    end)

    it("survives a receiver that refuses connections", function()
      local srv, port = receiver()
      srv:close()
      local job = headshot_json({ prompt = "p", replyUrl = "http://127.0.0.1:" .. port .. "/x" }).json
      s:advance(job.jobid, "failed")
      local cb = sim.wait_for(function() return s:callbacks()[1].done and s:callbacks()[1] end)
      assert.is_nil(cb.status)
      assert.is_string(cb.error)
      assert.equals(200, get_job(job.jobid).status)
    end)

    it("does not call non-http URLs", function()
      local job = headshot_json({ prompt = "p", replyUrl = "https://example.com/" }).json
      s:advance(job.jobid, "completed")
      assert.same({}, s:callbacks())
    end)
  end)

  describe("HTTP", function()
    it("serves many requests on one keep-alive connection and numbers connections", function()
      local c = connect()
      for _ = 1, 3 do
        local res = http("GET", "/jobs/?jobid=a", { conn = c })
        assert.equals(404, res.status)
        assert.is_nil(res.headers.connection)
      end
      http("GET", "/jobs/?jobid=b")
      c:close()
      assert.same({ connections = 2, requests = 4, open = 0, rejected = 0 }, closed_stats())
      local conns = {}
      for i, r in ipairs(s:requests()) do conns[i] = r.conn end
      assert.same({ 1, 1, 1, 2 }, conns)
    end)

    it("handles pipelined requests in order", function()
      local c = connect()
      c:send(build("GET", "/jobs/?jobid=one") .. build("GET", "/jobs/?jobid=two"))
      assert.equals("Unable to locate job one", read_response(c).json.error)
      assert.equals("Unable to locate job two", read_response(c).json.error)
      c:close()
    end)

    it("honours Connection: close", function()
      local res, _, c = http("GET", "/jobs/?jobid=a", { keep = true, headers = { Connection = "close" } })
      assert.equals("close", res.headers.connection)
      assert.same({ nil, "closed" }, recv1(c))
      c:close()
    end)

    it("closes idle connections after keepalive_timeout #timing", function()
      s:config { keepalive_timeout = 0.2 }
      local c = connect()
      assert.equals(404, http("GET", "/jobs/?jobid=a", { conn = c }).status)
      local t, data, err = elapsed(function() return c:receive(1) end)
      assert.same({ nil, "closed" }, { data, err })
      assert.is_true(t > 0.1 and t < 2, "closed after " .. t)
      c:close()
    end)

    it("reads the whole body before answering", function()
      local c = connect()
      local body = cjson.encode { prompt = "slow" }
      c:send(build("POST", "/headshot", { body = body, headers = { ["Content-Type"] = "application/json" } })
        :sub(1, -6))
      c:settimeout(0.3)
      assert.same({ nil, "timeout" }, recv1(c))
      c:settimeout(5)
      c:send(body:sub(-5))
      assert.equals(200, read_response(c).status)
      c:close()
      assert.equals(body, s:requests()[1].body)
    end)

    it("reads a 10 MiB request body", function()
      local big = string.rep("z", 10 * 1024 * 1024)
      local res = headshot_json { prompt = "p", options = big }
      assert.equals(200, res.status)
      local r = s:requests()[1]           -- past 1 MiB the record keeps its size, not its bytes
      assert.is_true(r.fields.options == nil, "the field kept: " .. #(r.fields.options or ""))
      assert.same({ "p", #big }, { r.fields.prompt, r.omitted.fields.options.size })
    end)

    it("answers Expect: 100-continue", function()
      local c = connect()
      local body = cjson.encode { prompt = "p" }
      c:send(build("POST", "/headshot", { body = body,
        headers = { Expect = "100-continue", ["Content-Type"] = "application/json" } }):sub(1, -#body - 1))
      assert.equals("HTTP/1.1 100 Continue", c:receive("*l"))
      assert.equals("", c:receive("*l"))
      c:send(body)
      assert.equals(200, read_response(c).status)
      c:close()
    end)

    -- (issue 9: a chunked body was answered 411; upstream, behind a CDN, accepts it)
    it("accepts a chunked request body, with extensions and trailers, and keeps the connection", function()
      local body = cjson.encode { prompt = "chunked café" }
      local c = connect()
      c:send(build("POST", "/headshot", { headers = { ["Transfer-Encoding"] = "chunked",
        ["Content-Type"] = "application/json" } }) .. string.format("%x;ext=1\r\n", 5) .. body:sub(1, 5)
        .. "\r\n" .. string.format("%X\r\n", #body - 5) .. body:sub(6) .. "\r\n0\r\nX-Trailer: t\r\n\r\n")
      local res = read_response(c)
      assert.equals(200, res.status)
      assert.equals("chunked café", res.json.prompt)
      c:send(build("GET", "/jobs/?jobid=" .. res.json.jobid))
      assert.equals(200, read_response(c).status)
      c:close()
      assert.equals(body, s:requests()[1].body)
    end)

    it("takes a chunked body from Python requests (a generator body)", function()
      if compat.execute("python3 -c 'import requests' 2>/dev/null") ~= true then
        pending("python3-requests is not installed")
        return
      end
      local script = string.format([[
import requests
def gen():
    yield b'{"prompt": "from a'
    yield b' generator"}'
r = requests.post("%s/headshot", data=gen(), headers={"Authorization": "Bearer %s",
    "Content-Type": "application/json"}, timeout=10)
print(r.status_code, r.json()["prompt"])
]], s.base_url, TOKEN)
      local pipe = io.popen("python3 -c " .. shell.quote(script) .. " 2>&1")
      local out = pipe:read("*a")
      pipe:close()
      assert.equals("200 from a generator\n", out)
      assert.equals("chunked", s:requests()[1].headers["transfer-encoding"])
    end)

    it("rejects a malformed chunked body and other transfer codings", function()
      local c = connect()
      c:send(build("POST", "/headshot", { headers = { ["Transfer-Encoding"] = "chunked",
        ["Content-Type"] = "application/json" } }) .. "zz\r\n")
      assert_error(read_response(c), 400, "Malformed chunked body")
      c:close()
      local res, _, c2 = http("POST", "/headshot", { keep = true,
        headers = { ["Transfer-Encoding"] = "gzip, chunked", ["Content-Type"] = "application/json" } })
      assert_error(res, 501, "Unsupported Transfer-Encoding")
      assert.same({ nil, "closed" }, recv1(c2))
      c2:close()
    end)

    it("rejects bad framing and bad request heads", function()
      assert.equals(400, http("POST", "/headshot", { headers = { ["Content-Length"] = "x1" } }).status)
      assert.equals(400, http("GET", "/jobs/?jobid=a", { headers = { Host = false } }).status)
      local c = connect()
      c:send("BROKEN\r\n\r\n")
      assert.equals(400, read_response(c).status)
      c:close()
    end)

    it("records requests with lowercase headers, duplicates joined", function()
      local c = connect()
      c:send("POST /headshot?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. TOKEN
        .. "\r\nX-Dup: one\r\nx-dup: two\r\nCONTENT-type: application/json\r\nContent-Length: 14\r\n\r\n"
        .. '{"prompt":"p"}')
      assert.equals(200, read_response(c).status)
      c:close()
      local r = s:requests()[1]
      assert.equals("POST", r.method)
      assert.equals("/headshot", r.path)
      assert.equals("a=1&b=%20", r.query)
      assert.equals("one, two", r.headers["x-dup"])
      assert.equals("application/json", r.headers["content-type"])
      assert.equals("application/json", r.content_type)
      assert.equals('{"prompt":"p"}', r.body)
      assert.same({ prompt = "p" }, r.fields)
      assert.equals(1, r.conn)
      http("GET", "/jobs/")
      assert.equals("", s:requests()[2].query)
      assert.is_nil(s:requests()[2].fields)
    end)

    it("does not record or count control requests", function()
      s:stats()
      s:requests()
      s:config {}
      assert.same({ connections = 0, requests = 0, open = 0, rejected = 0 }, closed_stats())
    end)

    it("answers 404 for unknown paths and 405 for wrong methods", function()
      assert_error(http("GET", "/nope"), 404, "Not found")
      assert_error(http("GET", "/headshot"), 405, "Method not allowed")
      assert_error(http("POST", "/jobs/?jobid=a", { body = "" }), 405, "Method not allowed")
    end)

    it("serves other connections while one answer is delayed #timing", function()
      s:script { action = "delay", seconds = 0.8, match = "slow" }
      local a = connect()
      a:send(build("GET", "/jobs/?jobid=slow"))
      socket.sleep(0.05)
      local t = elapsed(function() assert.equals(404, http("GET", "/jobs/?jobid=fast").status) end)
      assert.is_true(t < 0.4, "fast request took " .. t)
      assert.equals("Unable to locate job slow", read_response(a).json.error)
      a:close()
    end)

    it("serves 50 concurrent connections", function()
      local conns = {}
      for i = 1, 50 do
        conns[i] = connect()
        conns[i]:send(build("GET", "/jobs/?jobid=c" .. i))
      end
      for i = 1, 50 do
        assert.equals("Unable to locate job c" .. i, read_response(conns[i]).json.error)
        conns[i]:close()
      end
      assert.same({ connections = 50, requests = 50, open = 0, rejected = 0 }, closed_stats())
    end)

    it("waits config.latency before every API answer", function()
      s:config { latency = 0.3 }
      local t = elapsed(function() return http("GET", "/jobs/?jobid=a") end)
      assert.is_true(t >= 0.3, "took " .. t)
    end)
  end)

  describe("control endpoints", function()
    it("reset forgets requests, stats, scripts, jobs and config", function()
      s:config { job_seconds = 0.05 }
      s:script { action = "queue_full", count = 5 }
      http("GET", "/jobs/?jobid=a")
      s:reset()
      assert.same({ connections = 0, requests = 0, open = 0, rejected = 0 }, closed_stats())
      assert.same({}, s:requests())
      assert.same({}, s:jobs())
      assert.equals(2, s:config({}).job_seconds)
      assert.equals(404, http("GET", "/jobs/?jobid=a").status)
    end)

    it("rejects unknown settings and actions", function()
      assert.equals(400, (s:request("POST", "/__sim/config", { bogus = 1 })))
      assert.equals(400, (s:request("POST", "/__sim/config", { job_seconds = "fast" })))
      assert.equals(400, (s:request("POST", "/__sim/script", { { action = "explode" } })))
      assert.equals(400, (s:request("POST", "/__sim/script", { { action = "queue_full", match = "[" } })))
      assert.equals(400, (s:request("POST", "/__sim/advance", { jobid = "x", status = "weird" })))
      assert.equals(404, (s:request("GET", "/__sim/nothing")))
      assert.has_error(function() s:config { bogus = 1 } end)
    end)
  end)

  describe("scripted misbehaviour", function()
    it("queue_full answers 429 and creates no job", function()
      s:script { action = "queue_full" }
      assert_error(headshot_json { prompt = "p" }, 429, "Unable to lock Discord after 3 attempts")
      assert.same({}, s:jobs())
      assert.equals(1, #s:requests())
      assert.equals(200, headshot_json({ prompt = "p" }).status)
    end)

    it("discord_429 carries Discord's JSON as a string", function()
      s:script { { action = "discord_429" }, { action = "discord_429", retry_after = 0.5 } }
      for _, want in ipairs { 10, 0.5 } do
        local res = headshot_json { prompt = "p" }
        assert.equals(429, res.status)
        assert.equals("Discord /interactions failed with HTTP status 429", res.json.error)
        assert.equals(429, res.json.code)
        assert.is_string(res.json.errorDetails)
        assert.same({ global = true, message = "You are being rate limited.", retry_after = want },
          cjson.decode(res.json.errorDetails))
      end
    end)

    it("status sends any answer with extra headers", function()
      s:script { { action = "status", status = 503, body = '{"error":"busy","code":503}',
                   headers = { ["Retry-After"] = "7" } },
                 { action = "status", status = 500, body = "oops", content_type = "text/plain" } }
      local res = http("GET", "/jobs/?jobid=a")
      assert.equals(503, res.status)
      assert.equals("7", res.headers["retry-after"])
      assert.equals('{"error":"busy","code":503}', res.body)
      res = http("GET", "/jobs/?jobid=a")
      assert.same({ 500, "text/plain", "oops" }, { res.status, res.headers["content-type"], res.body })
    end)

    it("html_502 sends an HTML page", function()
      s:script { action = "html_502" }
      local res = http("GET", "/jobs/?jobid=a")
      assert.equals(502, res.status)
      assert.equals("text/html", res.headers["content-type"])
      assert.truthy(res.body:find("502 Bad Gateway", 1, true))
      assert.is_nil(res.json)
    end)

    it("delay answers normally after the pause", function()
      s:script { action = "delay", seconds = 0.3 }
      local t, res = elapsed(function() return headshot_json { prompt = "p" } end)
      assert.equals(200, res.status)
      assert.is_true(t >= 0.3, "took " .. t)
    end)

    it("hang never answers but keeps serving others", function()
      s:script { action = "hang" }
      local c = connect(0.4)
      c:send(build("GET", "/jobs/?jobid=a"))
      assert.same({ nil, "timeout" }, recv1(c))
      assert.equals(404, http("GET", "/jobs/?jobid=b").status)
      c:close()
      assert.equals(2, s:stats().requests)
    end)

    for _, case in ipairs { -- { name, action, the jobs made }
      { "reset_before drops the connection without an answer or a job", "reset_before", 0 },
      { "close_after_body closes without an answer, but the job exists", "close_after_body", 1 },
    } do
      it(case[1], function()
        s:script { action = case[2] }
        local res, err = headshot_json { prompt = "p" }
        assert.is_nil(res)
        assert.equals("closed", err)
        assert.equals(1, #s:requests())
        assert.equals(case[3], #s:jobs())
      end)
    end

    it("process overrides whether the request is acted on", function()
      s:script { { action = "queue_full", process = true }, { action = "close_after_body", process = false } }
      assert.equals(429, headshot_json({ prompt = "p" }).status)
      assert.is_nil((headshot_json { prompt = "p" }))
      assert.equals(1, #s:jobs())
    end)

    if has_curl() then
      it("resets (RST) for reset_before, closes (FIN) for close_after_body", function()
        s:script { { action = "reset_before" }, { action = "close_after_body" } }
        local url = s.base_url .. "/jobs/?jobid=a"
        assert.equals(56, curl("-H 'Authorization: Bearer test-token' '" .. url .. "'"))   -- recv failure
        assert.equals(52, curl("-H 'Authorization: Bearer test-token' '" .. url .. "'"))   -- empty reply
      end)
    end

    it("reset_during sends the head and half the body, then resets", function()
      s:script { action = "reset_during" }
      local c = connect()
      c:send(build("POST", "/headshot", { body = '{"prompt":"p"}',
        headers = { ["Content-Type"] = "application/json" } }))
      assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
      local n
      repeat
        local line = c:receive("*l")
        n = n or tonumber(line:match("^Content%-Length: (%d+)"))
      until line == ""
      local body, err, partial = c:receive(n)
      c:close()
      assert.is_nil(body)
      assert.equals("closed", err)
      assert.equals(math.floor(n / 2), #partial)
      assert.equals(1, #s:jobs())
      assert.truthy(partial:find("[jobid: " .. s:jobs()[1].jobid .. "]", 1, true))   -- in "content"
    end)

    it("truncate claims the whole body but sends half", function()
      s:script { action = "truncate" }
      local res = headshot_json { prompt = "p" }
      local n = tonumber(res.headers["content-length"])
      assert.equals("closed", res.err)
      assert.equals(math.floor(n / 2), #res.body)
    end)

    it("invalid_json sends a 200 that does not parse", function()
      s:script { action = "invalid_json" }
      local res = headshot_json { prompt = "p" }
      assert.equals(200, res.status)
      assert.equals('{"jobid": "abc", "status": ', res.body)
      assert.equals(#res.body, tonumber(res.headers["content-length"]))
      assert.is_nil(res.json)
    end)

    it("oversized sends a complete huge JSON body", function()
      s:script { { action = "oversized" }, { action = "oversized", bytes = 10 * 1024 * 1024 } }
      for _, n in ipairs { 9437184, 10 * 1024 * 1024 } do
        local res = http("GET", "/jobs/?jobid=a")
        assert.equals(200, res.status)
        assert.equals(n, tonumber(res.headers["content-length"]))
        assert.equals(n, #res.body)
        assert.is_table(res.json)
      end
    end)

    it("raw writes exact bytes and closes", function()
      local data = "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 99999\r\n\r\n{}"
      s:script { action = "raw", data = data }
      local c = connect()
      c:send(build("GET", "/jobs/?jobid=a"))
      assert.equals(data, c:receive("*a"))
      c:close()
    end)

    it("drip sends the normal answer one byte at a time", function()
      s:script { action = "drip", seconds = 0.001 }
      local t, res = elapsed(function() return http("GET", "/jobs/?jobid=a") end)
      assert_error(res, 404, "Unable to locate job a")
      assert.is_true(t > 0.15, "took " .. t)   -- well over 150 bytes
    end)

    -- Reads a response head on c: status and lowercased headers (duplicates joined).
    local function read_head(c)
      local res = { status = tonumber(assert(c:receive("*l")):match("^HTTP/1%.1 (%d%d%d)")), headers = {} }
      while true do
        local h = assert(c:receive("*l"))
        if h == "" then return res end
        local k, v = h:match("^([^:]+):%s*(.*)$")
        k = k:lower()
        res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. v) or v
      end
    end

    -- Reads a chunked body; returns the body and the sizes of its chunks (the last one 0).
    local function read_chunks(c)
      local parts, sizes = {}, {}
      while true do
        local size = tonumber(assert(c:receive("*l")), 16)
        sizes[#sizes + 1] = size
        if size == 0 then
          assert.equals("", c:receive("*l"))   -- no trailers
          return table.concat(parts), sizes
        end
        parts[#parts + 1] = assert(c:receive(size))
        assert.equals("", c:receive("*l"))
      end
    end

    it("chunked sends the normal answer in chunks of chunk_size and keeps the connection", function()
      s:script { { action = "chunked", chunk_size = 10 }, { action = "chunked" } }
      local c = connect()
      for _, size in ipairs { 10, 16 } do
        c:send(build("GET", "/jobs/?jobid=a"))
        local res = read_head(c)
        assert.equals(404, res.status)
        assert.equals("chunked", res.headers["transfer-encoding"])
        assert.is_nil(res.headers["content-length"])
        local body, sizes = read_chunks(c)
        assert.same({ error = "Unable to locate job a", code = 404 }, cjson.decode(body))
        for i = 1, #sizes - 2 do assert.equals(size, sizes[i]) end
        assert.is_true(sizes[#sizes - 1] >= 1 and sizes[#sizes - 1] <= size)
        assert.equals(#sizes - 1, math.ceil(#body / size))
      end
      c:close()
      assert.equals(1, s:stats().connections)
    end)

    it("chunked creates the job of a headshot, and seconds paces its chunks", function()
      s:script { action = "chunked", chunk_size = 100, seconds = 0.05 }
      local c = connect()
      local t = elapsed(function()
        c:send(build("POST", "/headshot", { body = '{"prompt":"p"}',
          headers = { ["Content-Type"] = "application/json" } }))
        assert.equals(200, read_head(c).status)
        local body, sizes = read_chunks(c)
        assert.equals(s:jobs()[1].jobid, cjson.decode(body).jobid)
        assert.is_true(#sizes >= 5)   -- some 500 bytes
      end)
      c:close()
      assert.is_true(t >= 0.2, "took " .. t)
    end)

    it("flood claims its bytes in Content-Length, sends a JSON body of that size and closes", function()
      s:script { action = "flood", bytes = 200000 }
      local c = connect()
      c:send(build("GET", "/jobs/?jobid=a"))
      local res = read_head(c)
      assert.same({ 200, "200000", "close" },
        { res.status, res.headers["content-length"], res.headers.connection })
      assert.equals('{"data":"' .. string.rep("x", 200000 - 11) .. '"}', c:receive(200000))
      assert.same({ nil, "closed" }, recv1(c))
      c:close()
      assert.same({}, s:jobs())
    end)

    it("flood with chunked streams the same body in chunks", function()
      s:script { action = "flood", bytes = 150000, chunked = true }
      local c = connect()
      c:send(build("GET", "/jobs/?jobid=a"))
      local res = read_head(c)
      assert.same({ 200, "chunked" }, { res.status, res.headers["transfer-encoding"] })
      assert.is_nil(res.headers["content-length"])
      local body, sizes = read_chunks(c)
      assert.equals('{"data":"' .. string.rep("x", 150000 - 11) .. '"}', body)
      assert.same({ 65536, 65536, 150000 - 2 * 65536, 0 }, sizes)
      assert.same({ nil, "closed" }, recv1(c))
      c:close()
    end)

    it("flood claims 8 GiB by default and stops when the client goes away", function()
      s:script { action = "flood" }
      local c = connect()
      c:send(build("GET", "/jobs/?jobid=a"))
      local res = read_head(c)
      assert.equals("8589934592", res.headers["content-length"])
      assert.equals('{"data":"xxxxxxx', c:receive(16))
      c:close()
      assert.equals(0, closed_stats().open)     -- the flood ended with the connection
      assert.equals(404, http("GET", "/jobs/?jobid=a").status)
    end)

    it("rejects bad options of chunked and flood", function()
      for _, bad in ipairs {
        { { action = "chunked", chunk_size = 0 }, "chunk_size must be a positive integer" },
        { { action = "chunked", chunk_size = 1.5 }, "chunk_size must be a positive integer" },
        { { action = "chunked", seconds = -1 }, "seconds must be a number >= 0" },
        { { action = "flood", bytes = 10 }, "flood bytes must be a whole number >= 11" },
        { { action = "flood", bytes = "many" }, "flood bytes must be a whole number >= 11" },
      } do
        local status, body = s:request("POST", "/__sim/script", { bad[1] })
        assert.same({ 400, bad[2] }, { status, body.error })
      end
      assert.same({}, s:control("GET", "/__sim/script"))
    end)

    it("match and count choose which requests misbehave", function()
      s:script { { action = "queue_full", match = "^POST /headshot$", count = 2 }, { action = "html_502" } }
      assert.equals(502, http("GET", "/jobs/?jobid=a").status)     -- first matching action wins
      assert.equals(429, headshot_json({ prompt = "p" }).status)
      assert.equals(404, http("GET", "/jobs/?jobid=a").status)
      assert.equals(429, headshot_json({ prompt = "p" }).status)
      assert.equals(200, headshot_json({ prompt = "p" }).status)
    end)

    it("records the request before misbehaving", function()
      s:script { action = "reset_before" }
      headshot_form { { "prompt", "seen" } }
      assert.same({ prompt = "seen" }, s:requests()[1].fields)
    end)
  end)
end)

---------------------------------------------------------------------------------------------
-- The whole command family (issue 12): accounts, identities, blocking commands, jobs.
---------------------------------------------------------------------------------------------
local CHANNEL = "1100000000000000001"
local QUEUE_FULL = "Unable to lock Discord after 3 attempts"
-- enough of a PNG for the simulator's sniffing: the signature, then anything
local FACE = "\137PNG\r\n\26\n" .. string.rep("\0", 24)

-- A multipart body; a part is { name, value [, filename = f] [, type = content type] }.
local function form(parts, boundary)
  boundary = boundary or "fOrMbOuNdArY7"
  local out = {}
  for _, p in ipairs(parts) do
    local disposition = 'form-data; name="' .. p[1] .. '"'
    if p.filename then disposition = disposition .. '; filename="' .. p.filename .. '"' end
    out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: " .. disposition .. "\r\n"
      .. (p.type and "Content-Type: " .. p.type .. "\r\n" or "") .. "\r\n" .. p[2] .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

local function image(name, data, ctype)
  return { name, data or FACE, filename = "face.png", type = ctype or "image/png" }
end

-- POST (or opts.method) /<name> with a multipart body of parts; returns the response.
local function command(name, parts, opts)
  opts = opts or {}
  local body, ct = form(parts or {})
  return http(opts.method or "POST", "/" .. name, { body = body, conn = opts.conn, keep = opts.keep,
    headers = { ["Content-Type"] = ct } })
end

local function json_post(path, fields)
  return http("POST", path, { body = cjson.encode(fields), headers = { ["Content-Type"] = "application/json" } })
end

-- A blocking command's result: 200, the verb, the status; returns the job.
local function result(res, name, status)
  assert.equals(200, res.status)
  assert.equals("faceswap-" .. name, res.json.verb)
  assert.equals(status or "completed", res.json.status)
  return res.json
end

local function content(res) return (res.json.content:gsub("^<@%d+> ", "")) end

local function get_bytes(url)
  local path = url:match("^http://[^/]+(/[^?]*)")
  return http("GET", path)
end

describe("simulator commands #lua_only", function()
  setup(function() s = sim.start { blocking_seconds = 0.05, job_seconds = 0.2 } end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  describe("identities", function()
    it("saves, lists, sets the default, deletes one and all", function()
      assert.equals("Saved IDs (1): 'me' [default: 'me']", content(command("listid")))
      local saved = result(command("saveid", { { "idname", "bob" }, image("image") }), "saveid")
      assert.equals("ID 'bob' saved (2 saved, default 'me')", saved.content:gsub("^<@%d+> ", ""))
      assert.equals(CHANNEL, saved.channel)
      assert.equals("ABC\226\128\166secured\226\128\166xyz", saved.discord)
      assert.is_nil(saved.attachments)
      assert.equals("Default ID set to 'bob'", content(command("setid", { { "idname", "bob" } })))
      assert.equals("Saved IDs (2): 'me', 'bob' [default: 'bob']", content(command("listid")))
      local job = headshot_json({ prompt = "p" }).json
      assert.matches("%[SaveID: 'bob'%]", job.content)
      assert.equals("ID 'bob' deleted", content(command("delid", { { "idname", "bob" } }, { method = "DELETE" })))
      assert.equals("Saved IDs (1): 'me' [default: 'me']", content(command("listid")))
      assert.equals("All saved IDs deleted (1)", content(command("delall", {}, { method = "DELETE" })))
      assert.equals("You have no saved ID yet: save a face with /saveid first", content(command("listid")))
    end)

    it("answers the bot's failures as failed results", function()
      local res = command("setid", { { "idname", "nobody" } })
      result(res, "setid", "failed")
      assert.equals("ID 'nobody' not found: /listid shows the saved ones", content(res))
      assert.equals("Job failed", res.json.error)
      result(command("delid", { { "idname", "nobody" } }, { method = "DELETE" }), "delid", "failed")
      res = command("saveid", { { "idname", "two words" }, image("image") })
      assert.equals("Invalid idname 'two words': use at most 20 letters, digits, '-' or '_'", content(res))
      res = command("saveid", { { "idname", "x" }, image("image", "not an image") })
      result(res, "saveid", "failed")
      assert.equals("No face detected in the image", content(res))
      assert.equals("Saved IDs (1): 'me' [default: 'me']", content(command("listid")))
    end)

    it("keeps identities per channel, as s:accounts() shows", function()
      s:config { channels = { CHANNEL, "2200000000000000002" } }
      command("saveid", { { "idname", "bob" }, image("image"), { "channel", "2200000000000000002" } })
      command("setid", { { "idname", "bob" }, { "channel", "2200000000000000002" } })
      local all = s:accounts()
      assert.same({ { "me" }, "me", { "me", "bob" }, "bob", 800 }, { all[CHANNEL].ids, all[CHANNEL].default,
        all["2200000000000000002"].ids, all["2200000000000000002"].default, all[CHANNEL].credits.total })
      command("delall", { { "channel", CHANNEL } }, { method = "DELETE" })
      assert.same({}, s:accounts()[CHANNEL].ids)
      assert.is_nil(s:accounts()[CHANNEL].default)
      assert.equals("You have no saved ID yet: save a face with /saveid first", content(command("listid")))
      assert.equals("Saved IDs (2): 'me', 'bob' [default: 'bob']",
        content(command("listid", { { "channel", "2200000000000000002" } })))
    end)

    it("fails a headshot or changebg of an account with no identity, charging nothing", function()
      s:config { seed_identity = "", channels = { "3300000000000000003" } }
      local job = headshot_json({ prompt = "p" }).json
      assert.equals("started", job.status)
      local changebg = command("changebg", { image("image"), { "a_background_photo_of", "beach" } }).json
      assert.truthy(sim.wait_for(function()
        return get_job(job.jobid).json.status == "failed" and get_job(changebg.jobid).json.status == "failed"
      end, 5))
      local failed = get_job(job.jobid).json
      assert.equals("<@100000000000000001> You have no saved ID yet: save a face with /saveid first [jobid: "
        .. job.jobid .. "]", failed.content)
      assert.equals("Job failed", failed.error)
      assert.is_nil(failed.attachments)
      assert.equals(0, s:config({}).credits_used)
    end)
  end)

  describe("validation", function()
    it("answers the family's 400 texts in order, for every command", function()
      local missing = "Required param %s is missing or empty"
      local cases = {
        { "saveid", {}, missing:format("idname") },
        { "saveid", { { "idname", "a" } }, missing:format("image") },
        { "saveid", { { "idname", "a" }, { "image", "x" } },
          "Param image must be a file (a part with a filename and a content type)" },
        { "saveid", { { "idname", "a" }, { "image", FACE, filename = "f.png" } },
          "Param image must be a file (a part with a filename and a content type)" },
        { "saveid", { { "idname", "a" }, image("image", "") }, missing:format("image") },
        { "saveid", { { "idname", "a" }, image("image", FACE, "text/plain") },
          "Param image must be an image (PNG, JPEG, GIF or WebP)" },
        { "swapid", { image("image") }, missing:format("idname") },
        { "setid", {}, missing:format("idname") },
        { "inswapper", {}, missing:format("targetMessageId") },
        { "picsi", { image("target_image_gif_or_video") }, missing:format("source_image") },
        { "picsi", { image("source_image") }, missing:format("target_image_gif_or_video") },
        { "picsi", { image("source_image"), image("target_image_gif_or_video", FACE, "video/webm") },
          "Param target_image_gif_or_video must be an image or a video (PNG, JPEG, GIF, WebP or MP4)" },
        { "changebg", { { "a_background_photo_of", "b" } }, missing:format("image") },
        { "changebg", { image("image") }, missing:format("a_background_photo_of") },
        { "listid", { { "replyRef", string.rep("r", 1025) } }, "Optional param replyRef is too long" },
        { "listid", { { "replyUrl", string.rep("u", 1025) } }, "Optional param replyUrl is too long" },
        { "listid", { { "channel", "9" } },
          "Configuration not found for channel 9, to create POST v1/faceswap/account/9" },
      }
      for _, case in ipairs(cases) do
        local res = command(case[1], case[2])
        assert.same({ case[1], 400, case[3] }, { case[1], res.status, res.json.error })
      end
      assert_error(command("delid", {}, { method = "DELETE" }), 400, missing:format("idname"))
      assert_error(command("delid", { { "idname", "me" } }), 405, "Method not allowed")
      assert.equals(0, #s:jobs())
    end)

    it("takes listid and delall without any body", function()
      result(http("POST", "/listid"), "listid")
      result(http("DELETE", "/delall"), "delall")
    end)

    it("answers 402 when the account's credits do not cover the command", function()
      s:config { credits_used = 800 }
      result(command("listid"), "listid")                       -- free
      assert_error(command("swapid", { { "idname", "me" }, image("image") }), 402,
        "Account has no subscription or subscription expired")
      s:config { credits_used = 0, subscription = false }
      assert_error(command("listid"), 402, "Account has no subscription or subscription expired")
    end)

    it("records file parts with their filename, type and size", function()
      command("saveid", { { "idname", "a" }, image("image") })
      local r = s:requests()[1]
      assert.same({ image = { filename = "face.png", content_type = "image/png", size = #FACE } }, r.files)
      assert.equals(FACE, r.fields.image)
    end)
  end)

  describe("blocking commands", function()
    -- Sends a saveid that holds the channel for 3 s (room for a loaded machine), without reading its answer yet.
    local function hold_channel(channel)
      s:config { blocking_seconds = 3 }
      local c = connect(10)
      local body, ct = form { { "idname", "held" }, image("image"), { "channel", channel } }
      c:send(build("POST", "/saveid", { body = body, headers = { ["Content-Type"] = ct } }))
      assert.truthy(sim.wait_for(function() return #s:requests() >= 1 end, 5))
      return c
    end

    it("hold their channel: any call on it meanwhile gets the queue-full 429", function()
      s:config { channels = { CHANNEL, "2200000000000000002" } }
      local c = hold_channel(CHANNEL)
      s:config { blocking_seconds = 0.05 }        -- the held call keeps its 3 s; later ones are quick
      assert_error(command("listid"), 429, QUEUE_FULL)
      assert_error(command("setid", { { "idname", "me" }, { "channel", CHANNEL } }), 429, QUEUE_FULL)
      assert_error(headshot_json { prompt = "p" }, 429, QUEUE_FULL)
      result(command("listid", { { "channel", "2200000000000000002" } }), "listid")   -- another channel
      assert.equals(200, http("GET", "/account").status)                             -- no Discord
      local first = read_response(c)
      c:close()
      assert.equals("ID 'held' saved (2 saved, default 'me')", content(first))
      result(command("listid"), "listid")                                             -- free again
      assert.equals(3, s:stats().rejected)
    end)
  end)

  describe("results", function()
    local function png_of(job)
      assert.equals(1, #job.attachments)
      local a = job.attachments[1]
      assert.same({ "image/png", 8, 8 }, { a.content_type, a.width, a.height })
      local res = get_bytes(a.url)
      assert.equals(200, res.status)
      assert.equals("image/png", res.headers["content-type"])
      assert.equals(a.size, #res.body)
      assert.equals("\137PNG\r\n\26\n", res.body:sub(1, 8))
      return res.body
    end

    it("swapid puts saved faces on the target and serves the PNG", function()
      command("saveid", { { "idname", "bob" }, image("image") })
      local job = result(command("swapid", { { "idname", "me,bob" }, image("image") }), "swapid")
      assert.equals("Picsi.Ai SwapID done [ID: 'me,bob'] [credits: 1] (799/800 credits remaining)",
        job.content:gsub("^<@%d+> ", ""))
      local one = png_of(job)
      local other = png_of(result(command("swapid", { { "idname", "bob" }, image("image") }), "swapid"))
      assert.not_equals(one, other)
      local res = command("swapid", { { "idname", "me,nobody" }, image("image") })
      result(res, "swapid", "failed")
      assert.equals("ID 'nobody' not found: /listid shows the saved ones", content(res))
    end)

    it("picsi answers a finished result, or a job when asked, for a GIF or a video", function()
      local parts = { image("source_image"), image("target_image_gif_or_video") }
      local done = result(command("picsi", parts), "picsi")
      png_of(done)
      local gif = { image("source_image"), image("target_image_gif_or_video", "GIF89a", "image/gif") }
      local async = {
        command("picsi", { image("source_image"), image("target_image_gif_or_video"), { "options", "-f sim:async" } }),
        (command("picsi", gif)),
      }
      s:config { picsi_async = true }
      async[3] = command("picsi", parts)
      for _, res in ipairs(async) do
        local job = result(res, "picsi", "started")
        assert.truthy(sim.wait_for(function() return get_job(job.jobid).json.status == "completed" end, 5))
        png_of(get_job(job.jobid).json)
      end
    end)

    it("changebg is a job like headshot, under max_running", function()
      s:config { max_running = 1, job_seconds = 60 }
      local res = command("changebg", { image("image"), { "a_background_photo_of", "a beach" } })
      local job = result(res, "changebg", "started")
      assert.equals("a beach", job.prompt)
      assert.matches("^<@%d+> Picsi.Ai ChangeBG Job Submitted %[jobid: " .. job.jobid
        .. "%] %[credits: 4%] %[prompt: 'a beach'%].*%[SaveID: 'me'%] %(796/800 credits remaining%)$", job.content)
      assert_error(headshot_json { prompt = "p" }, 429, QUEUE_FULL)
      s:advance(job.jobid, "completed")
      png_of(get_job(job.jobid).json)
    end)

    it("inswapper swaps the default face onto an image message of the channel", function()
      s:config { job_seconds = 60 }
      local job = headshot_json({ prompt = "p" }).json
      local res = command("inswapper", { { "targetMessageId", job.messageId } })
      result(res, "inswapper", "failed")                       -- not finished: no image yet
      assert.equals("Message " .. job.messageId .. " with an image not found in this channel", content(res))
      s:advance(job.jobid, "completed")
      png_of(result(command("inswapper", { { "targetMessageId", job.messageId } }), "inswapper"))
    end)

    it("GET /jobs lists the running jobs' ids", function()
      s:config { job_seconds = 60 }
      assert.same({}, http("GET", "/jobs").json)
      local a = headshot_json({ prompt = "a" }).json
      local b = command("changebg", { image("image"), { "a_background_photo_of", "b" } }).json
      result(command("listid"), "listid")
      assert.same({ a.jobid, b.jobid }, http("GET", "/v1/faceswap/jobs").json)
      s:advance(a.jobid, "completed")
      assert.same({ b.jobid }, http("GET", "/jobs").json)
    end)
  end)

  describe("accounts", function()
    local NEW = "4400000000000000004"

    it("lists the accounts keyed by channel, with masked tokens and credits that move", function()
      local all = http("GET", "/account").json
      assert.same({ CHANNEL }, (function() local k = {} for c in pairs(all) do k[#k + 1] = c end return k end)())
      local a = all[CHANNEL]
      assert.same({ CHANNEL, "1000000000000000001", "ABC\226\128\166secured\226\128\166xyz", 800, 0 },
        { a.channel, a.server, a.discord, a.credits.total, a.credits.used })
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", a.credits.timestamp)
      headshot_json { prompt = "p" }
      assert.equals(4, http("GET", "/account/" .. CHANNEL).json.credits.used)
      command("swapid", { { "idname", "me" }, image("image") })
      assert.equals(5, http("GET", "/account").json[CHANNEL].credits.used)
    end)

    it("adds, replaces and deletes an account", function()
      local res = json_post("/account/" .. NEW, { discord = "discord-token-secret", server = "5", channel = NEW })
      assert.equals(204, res.status)
      assert.equals("", res.body)
      local account = http("GET", "/account/" .. NEW).json
      assert.same({ channel = NEW, server = "5", discord = "dis\226\128\166secured\226\128\166ret",
                    credits = { total = 800, used = 0, timestamp = account.credits.timestamp } }, account)
      assert.equals(204, json_post("/account/" .. NEW, { discord = "discord-token-other", server = "6",
        channel = NEW }).status)
      assert.equals("6", http("GET", "/account").json[NEW].server)
      -- a new account has no identity yet: saveid first
      assert.equals("You have no saved ID yet: save a face with /saveid first",
        content(command("listid", { { "channel", NEW } })))
      result(command("saveid", { { "idname", "me" }, image("image"), { "channel", NEW } }), "saveid")
      assert.matches("%[SaveID: 'me'%]", headshot_json({ prompt = "p", channel = NEW }).json.content)
      assert.equals(204, http("DELETE", "/account/" .. NEW).status)
      assert_error(http("GET", "/account/" .. NEW), 404,
        "Configuration not found for channel " .. NEW .. ", to create POST v1/faceswap/account/" .. NEW)
      assert_error(http("DELETE", "/account/" .. NEW), 404,
        "Configuration not found for channel " .. NEW .. ", to create POST v1/faceswap/account/" .. NEW)
      assert_error(headshot_json { prompt = "p", channel = NEW }, 400,
        "Configuration not found for channel " .. NEW .. ", to create POST v1/faceswap/account/" .. NEW)
    end)

    it("answers POST's documented 400 texts in order", function()
      local path = "/account/" .. NEW
      local full = { discord = "tok-new", server = "7", channel = NEW }
      local function without(key, extra)
        local t = {}
        for k, v in pairs(full) do if k ~= key then t[k] = v end end
        for k, v in pairs(extra or {}) do t[k] = v end
        return t
      end
      assert_error(json_post(path, {}), 400, "Required param discord is missing or empty")
      assert_error(json_post(path, without("server")), 400, "Required param server is missing or empty")
      assert_error(json_post(path, without("channel")), 400, "Required param channel is missing or empty")
      assert_error(json_post(path, without(nil, { channel = "12ab" })), 400,
        "Required param channel (12ab) is not valid Discord channel id")
      assert_error(json_post(path, without(nil, { channel = "5500000000000000005" })), 400,
        "Required param channel (5500000000000000005) not matching to /faceswap/account/" .. NEW)
      assert.equals(204, json_post("/account/5500000000000000005", { discord = "tok-a", server = "8",
        channel = "5500000000000000005" }).status)
      assert_error(json_post(path, without(nil, { discord = "tok-a" })), 400,
        "Channel 5500000000000000005 configuration has same discord value")
      assert_error(json_post(path, without(nil, { server = "8" })), 400,
        "Channel 5500000000000000005 configuration has same server value")
      assert_error(json_post(path, without(nil, { server = 7 })), 400, "Param server must be a string")
      assert.equals(204, json_post(path, full).status)
      assert.same({ CHANNEL, "5500000000000000005", NEW }, s:config({}).channels)
    end)

    it("without a channel, uses the first account that still has credits", function()
      s:config { channels = { CHANNEL, "2200000000000000002" }, credits_used = 798 }   -- every account's
      json_post("/account/" .. NEW, { discord = "tok-new", server = "7", channel = NEW })  -- a new one: 0
      assert.equals(NEW, headshot_json({ prompt = "p" }).json.channel)
      assert.equals(CHANNEL, result(command("listid"), "listid").channel)   -- free: the first
    end)

    it("seeds accounts from --channels with --seed-identity", function()
      local other = sim.start { channels = { "6600000000000000006", "7700000000000000007" }, seed_identity = "alice" }
      local config = other:config {}
      assert.same({ "alice", { "6600000000000000006", "7700000000000000007" } },
        { config.seed_identity, config.channels })
      local body, ct = form { { "channel", "7700000000000000007" } }
      local c = assert(socket.connect(other.host, other.port))
      c:settimeout(5)
      c:send(string.format("POST /listid HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\n"
        .. "Content-Length: %d\r\n\r\n%s", TOKEN, ct, #body, body))
      assert.matches("Saved IDs %(1%): 'alice' %[default: 'alice'%]", read_response(c).json.content)
      c:close()
      other:stop()
    end)
  end)

  describe("JSON and text like a JavaScript server (issue 9)", function()
    -- upstream's answer to a non-string JSON field is undocumented: a 400 naming the field
    it("answers 400 naming a JSON field that is not a string", function()
      assert_error(headshot_json { prompt = 123 }, 400, "Param prompt must be a string")
      assert_error(headshot_json { prompt = true }, 400, "Param prompt must be a string")
      assert_error(headshot_json { prompt = "p", replyRef = { 1, 2 } }, 400, "Param replyRef must be a string")
      assert_error(headshot_json { prompt = "p", channel = 1100000000000000001 }, 400, "Param channel must be a string")
      assert_error(headshot_json('{"prompt":"p","replyUrl":{}}'), 400, "Param replyUrl must be a string")
      assert.equals(0, #s:jobs())
      assert.equals(200, headshot_json('{"prompt":"p","replyRef":null}').status)
    end)

    it("decodes invalid UTF-8 in text fields to U+FFFD and never answers invalid UTF-8", function()
      local res = headshot_form { { "prompt", "caf\233 \226\130 ok" }, { "replyRef", "r\255" } }
      assert.equals(200, res.status)
      assert.equals("caf\239\191\189 \239\191\189 ok", res.json.prompt)
      assert.equals("r\239\191\189", res.json.replyRef)
      assert.equals("caf\233 \226\130 ok", s:requests()[1].fields.prompt)     -- the record keeps the bytes
      assert.is_nil(res.body:find("caf\233", 1, true))
      assert.is_nil(res.body:find("\255", 1, true))
    end)

    it("decodes a query's percent-escapes that are not UTF-8 to U+FFFD", function()
      assert_error(http("GET", "/jobs/?jobid=ab%FFc%E2%82"), 404, "Unable to locate job ab\239\191\189c\239\191\189")
    end)

    it("takes curl -F with a Latin-1 prompt and answers valid JSON", function()
      if not has_curl() then
        pending("curl is not installed")
        return
      end
      local pipe = io.popen("curl -s -H 'Authorization: Bearer " .. TOKEN .. "' -F \"prompt=caf$(printf '\\351')\" "
        .. s.base_url .. "/headshot")
      local body = pipe:read("*a")
      pipe:close()
      assert.equals("caf\239\191\189", cjson.decode(body).prompt)
      assert.is_nil(body:find("caf\233", 1, true))
    end)

    it("uses IP literals as they are, without the resolver", function()
      local root = sim.root:gsub("'", "")
      local script = "package.path = '" .. root .. "/?.lua;" .. root .. "/?/init.lua;' .. package.path\n" .. [[
        local socket = require "socket"
        local asked = {}
        socket.dns.toip = function(host) asked[#asked + 1] = host return "10.9.8.7" end
        local http = require "faceswap.simulator.http"
        local a, fa = http.resolve_host("127.0.0.1")
        local b, fb = http.resolve_host("[::1]")
        local c, fc = http.resolve_host("receiver.test")
        io.write(table.concat({ a, fa, b, fb, c, fc, table.concat(asked, ",") }, " "))
      ]]
      local pipe = io.popen("lua5.4 -e " .. shell.quote(script) .. " 2>&1")
      local out = pipe:read("*a")
      pipe:close()
      assert.equals("127.0.0.1 inet ::1 inet6 10.9.8.7 inet receiver.test", out)
    end)
  end)
end)
