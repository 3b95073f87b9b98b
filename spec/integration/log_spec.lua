-- Logs: a line per request (method, path with its query, status, milliseconds, attempt), per
-- retry wait and per give-up, to the `log` option or, with $FACESWAP_LOG, to stderr; the token
-- never appears, even at debug.
local faceswap, sim, compat, shell = require "spec.support.uses" ("faceswap", "sim", "compat", "shell")

local SECRET = "tok-SECRET-2b7e1516"

-- The lines with their milliseconds and byte counts (which vary) replaced by N.
local function steady(lines)
  local out = {}
  for i, l in ipairs(lines) do
    out[i] = l:gsub("%d+ ms", "N ms"):gsub("%d+ bytes", "N bytes")
  end
  return out
end

-- nginx's error log's faceswap lines, steady, as "level message" (`tail`: more of the pattern
-- after ", client: ", to pick the lines of some requests)
local function nginx_lines(n, tail)
  local got = {}
  for level, message in n:log():gmatch("%[(%a+)%] [^\n]-faceswap: ([^\n]-), client: " .. (tail or "")) do
    got[#got + 1] = level .. " " .. message
  end
  return steady(got)
end

describe("logs", function()
  local s, lines, client

  -- A client on the simulator whose log lines go into `lines` as "level what: message".
  local function new_client(retry)
    lines = {}
    return faceswap.new { token = SECRET, base_url = s.base_url, retry = retry,
      log = function(level, message, what)
        lines[#lines + 1] = level .. " " .. tostring(what) .. ": " .. message
      end }
  end

  setup(function() s = sim.start { token = SECRET, job_seconds = 0.2 } end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)
  after_each(function() if client then client:close() end end)

  it("has a line per request and answer, with status, time and attempt", function()
    client = new_client(false)
    local job = assert(client:headshot("a cat"))
    assert(client:job(job.jobid))
    assert.same({
      "debug request: POST /headshot: sending N bytes, attempt 1",
      "info answer: POST /headshot: 200 in N ms, N bytes, attempt 1",
      "debug request: GET /jobs/?jobid=" .. job.jobid .. ": sending, attempt 1",
      "info answer: GET /jobs/?jobid=" .. job.jobid .. ": 200 in N ms, N bytes, attempt 1",
    }, steady(lines))
  end)

  it("has a warn line per retry wait, saying why, how long and which attempt comes", function()
    client = new_client { min_delay = 0.1, max_delay = 0.3, random = function() return 0.5 end }
    s:script { action = "queue_full", match = "^POST /headshot$" }
    s:script { action = "discord_429", retry_after = 0.15, match = "^POST /headshot$" }
    assert(client:headshot("a cat"))
    assert.same({
      "debug request: POST /headshot: sending N bytes, attempt 1",
      "info answer: POST /headshot: 429 in N ms, N bytes, attempt 1",
      "warn retry: POST /headshot: 429 queue full, waiting 0.2 s, attempt 2 of 5",
      "debug request: POST /headshot: sending N bytes, attempt 2",
      "info answer: POST /headshot: 429 in N ms, N bytes, attempt 2",
      "warn retry: POST /headshot: 429 rate limited, waiting 0.1 s, attempt 3 of 5",
      "debug request: POST /headshot: sending N bytes, attempt 3",
      "info answer: POST /headshot: 200 in N ms, N bytes, attempt 3",
    }, steady(lines))
  end)

  it("has a warn line when the policy gives up", function()
    client = new_client { attempts = 2, min_delay = 0.05, max_delay = 0.05 }
    s:script { action = "queue_full", match = "^POST /headshot$", count = 2 }
    assert.is_nil(client:headshot("a cat"))
    assert.equal("warn give_up: POST /headshot: giving up after 2 attempts: rate_limited (429): " ..
      "Unable to lock Discord after 3 attempts", lines[#lines])
    assert.equal("warn retry: POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 2", lines[3])
  end)

  it("says when no answer came, and why", function()
    client = new_client(false)
    s:script { action = "reset_before", match = "^GET /jobs/$" }
    local _, err = client:job("abc")
    assert.equal(steady { "info answer: GET /jobs/?jobid=abc: no answer after 0 ms, attempt 1: " ..
      tostring(err) }[1], steady(lines)[2])
  end)

  it("names a download by its URL without the query, where CDN links keep their signature", function()
    client = new_client(false)
    local job = assert(client:headshot("a cat"))
    s:advance(job.jobid, "completed")
    job = assert(client:job(job.jobid))
    local url = job:urls()[1]
    assert(client:download(url .. (url:find("?", 1, true) and "&" or "?") .. "hm=signature"))
    assert.equal("info answer: GET " .. url:match("^[^?]*") .. ": 200 in N ms, N bytes, attempt 1",
      steady(lines)[#lines])
    for _, l in ipairs(lines) do assert.is_nil(l:find("signature", 1, true)) end
  end)

  it("gives a streamed download's answer line the bytes it streamed, not 0", function()
    client = new_client(false)
    local job = assert(client:headshot("a cat"))
    s:advance(job.jobid, "completed")
    local url = assert(client:job(job.jobid)):urls()[1]
    local size = #assert(client:download(url))
    local pieces = 0
    assert.equal(size, client:download(url, { sink = function() pieces = pieces + 1 end }))
    assert.is_true(pieces > 0)
    local name = "GET " .. url:match("^[^?]*")
    assert.equal("info answer: " .. name .. ": 200 in N ms, " .. size .. " bytes, attempt 1",
      (lines[#lines]:gsub("%d+ ms", "N ms")))
    local path = os.tmpname()
    assert.equal(size, client:download(url, { path = path }))
    os.remove(path)
    assert.equal("info answer: " .. name .. ": 200 in N ms, " .. size .. " bytes, attempt 1",
      (lines[#lines]:gsub("%d+ ms", "N ms")))
  end)

  it("logs the requests of tasks and of the batch, with their attempts", function()
    client = new_client { min_delay = 0.05, max_delay = 0.05 }
    s:script { action = "queue_full", match = "^POST /headshot$" }
    local results = client:batch({ "one" }, { wait = false })
    assert.equal("started", results[1].status)
    assert.same({
      "debug request: POST /headshot: sending N bytes, attempt 1",
      "info answer: POST /headshot: 429 in N ms, N bytes, attempt 1",
      "warn retry: POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5",
      "debug request: POST /headshot: sending N bytes, attempt 2",
      "info answer: POST /headshot: 200 in N ms, N bytes, attempt 2",
    }, steady(lines))
  end)

  it("never shows the token, even at debug and when the server echoes it back", function()
    client = new_client { attempts = 2, min_delay = 0.05, max_delay = 0.05 }
    s:script { action = "status", status = 500, match = "^GET",
               body = '{"error":"no job for token ' .. SECRET .. '","code":500}' }
    s:script { action = "queue_full", match = "^POST" }
    local job = assert(client:headshot("a cat"))
    assert(client:job(job.jobid))
    assert(client:wait(job, { interval = 0.05 }))
    assert(client:download(assert(client:job(job.jobid)):urls()[1]))
    local wrong = faceswap.new { token = "wrong", base_url = s.base_url, retry = false,
      log = function(_, message) lines[#lines + 1] = message end }
    assert.is_nil(wrong:job(job.jobid))
    wrong:close()
    local text = table.concat(lines, "\n")
    assert.matches("warn retry: GET /jobs/%?jobid=%x+: server %(500%): no job for token " ..
      "%[token%], waiting [%d.]+ s, attempt 2 of 2", text)
    assert.is_nil(text:find(SECRET, 1, true))
    assert.is_nil(text:find("Bearer", 1, true))
  end)

  it("leaves the lines alone when the token is too short to be a real one", function()
    lines = {}
    local c = faceswap.new { token = "t", base_url = s.base_url, retry = false,
      log = function(_, message) lines[#lines + 1] = message end }
    c:job("abc")
    c:close()
    assert.equal("GET /jobs/?jobid=abc: 401 in N ms, N bytes, attempt 1", steady(lines)[2])
  end)

  it("is checked: a function or false", function()
    assert.has_error(function() faceswap.new { token = "t", log = "debug" } end,
      "bad argument #1 to 'new' (option 'log' must be a function or false, got string)")
  end)

  describe("with $FACESWAP_LOG", function()
    -- Runs a headshot (whose first answer is a queue-full 429) in a child Lua with env over
    -- FACESWAP_LOG unset; returns its stdout and stderr.
    local function child(env, options)
      local dir = shell.capture("mktemp -d"):gsub("\n$", "")
      local code = 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path; ' ..
        'package.cpath = "./' .. compat.build .. '/?.so;" .. package.cpath; ' ..
        'local c = require("faceswap").new { token = "' .. SECRET .. '", base_url = "' ..
        s.base_url .. '", retry = { min_delay = 0.05, max_delay = 0.05 }' .. (options or "") ..
        ' }; print(c:headshot("a cat").status)'
      os.execute("env -u FACESWAP_LOG " .. env .. " " .. compat.lua .. " -e " .. shell.quote(code) ..
        " >" .. dir .. "/out 2>" .. dir .. "/err")
      local out, err = shell.read(dir .. "/out"), shell.read(dir .. "/err")
      os.execute("rm -rf " .. dir)
      return out, err
    end

    before_each(function() s:script { action = "queue_full", match = "^POST /headshot$" } end)

    it("=debug writes every line to stderr, without the token", function()
      local out, err = child("FACESWAP_LOG=debug")
      assert.equal("started\n", out)
      local got = {}
      for line in err:gmatch("[^\n]+") do got[#got + 1] = line end
      assert.same({
        "faceswap debug: POST /headshot: sending N bytes, attempt 1",
        "faceswap info: POST /headshot: 429 in N ms, N bytes, attempt 1",
        "faceswap warn: POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5",
        "faceswap debug: POST /headshot: sending N bytes, attempt 2",
        "faceswap info: POST /headshot: 200 in N ms, N bytes, attempt 2",
      }, steady(got))
      assert.is_nil(err:find(SECRET, 1, true))
    end)

    it("=warn writes the warnings alone", function()
      local _, err = child("FACESWAP_LOG=warn")
      assert.equal("faceswap warn: POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5\n", err)
    end)

    it("unset, or with log = false, writes nothing", function()
      assert.same({ "started\n", "" }, { child("") })
      assert.same({ "started\n", "" }, { child("FACESWAP_LOG=debug", ", log = false") })
    end)

    it("gives way to a log function", function()
      local out, err = child("FACESWAP_LOG=debug", ", log = function(level, m) " ..
        "if level == 'warn' then print(m) end end")
      assert.same({ "POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5\nstarted\n", "" },
        { out, err })
    end)
  end)

  describe("inside nginx", function()
    it("go to nginx's error log through ngx.log, at nginx's levels, without the token", function()
      local nginx = require "spec.support.nginx"
      local n = nginx.start { server = [[
        location = /headshot {
          content_by_lua_block {
            local client = require("faceswap").new { token = "]] .. SECRET .. [[",
              base_url = "]] .. s.base_url .. [[", retry = { min_delay = 0.05, max_delay = 0.05 } }
            ngx.say(client:headshot("a cat").status)
          }
        }]] }
      finally(function() n:stop() end)
      s:script { action = "queue_full", match = "^POST /headshot$" }
      assert.same({ 200, "started\n" }, { nginx.request(n.url .. "/headshot") })
      assert.same({ -- error_log at info: no debug lines
        "info POST /headshot: 429 in N ms, N bytes, attempt 1",
        "warn POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5",
        "info POST /headshot: 200 in N ms, N bytes, attempt 2",
      }, nginx_lines(n))
      assert.is_nil(n:log():find(SECRET, 1, true))
    end)

    it("follow the error_log level of the location that runs the call, and make no line it drops", function()
      local nginx = require "spec.support.nginx"
      local handler = [[
          content_by_lua_block {
            local client = require("faceswap").new { token = "]] .. SECRET .. [[",
              base_url = "]] .. s.base_url .. [[", retry = { min_delay = 0.05, max_delay = 0.05 } }
            -- a request's lines are made only where nginx would keep them
            local logged = require("faceswap.log").request(client._log, "GET", "/jobs/", nil, 1)
            ngx.say(client:headshot("a cat").status, " ", type(logged))
          }]]
      local n = nginx.start { server = "location = /quiet { error_log logs/error.log warn; " .. handler ..
        " }\nlocation = /loud { " .. handler .. " }" }
      finally(function() n:stop() end)
      s:script { action = "queue_full", match = "^POST /headshot$" }
      assert.same({ 200, "started nil\n" }, { nginx.request(n.url .. "/quiet") })
      s:script { action = "queue_full", match = "^POST /headshot$" }
      assert.same({ 200, "started function\n" }, { nginx.request(n.url .. "/loud") })
      assert.same({ -- /quiet at warn: its warn line only; /loud at info (the server's level)
        "warn POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5",
        "info POST /headshot: 429 in N ms, N bytes, attempt 1",
        "warn POST /headshot: 429 queue full, waiting 0.1 s, attempt 2 of 5",
        "info POST /headshot: 200 in N ms, N bytes, attempt 2",
      }, nginx_lines(n, '[^\n]-"GET /(%a+)'))
    end)
  end)

  describe("on the command line", function()
    local cli = require "faceswap.cli"

    -- cli.main in this process on the simulator; returns exit status, stdout, stderr.
    local function run(args, tty)
      local out, err = {}, {}
      local function sink(t)
        return { write = function(_, ...) for _, v in ipairs { ... } do t[#t + 1] = v end end }
      end
      local env = { USEAPI_TOKEN = SECRET, USEAPI_BASE_URL = s.base_url }
      local code = cli.main(args, { stdout = sink(out), stderr = sink(err), tty = tty,
        stdin = { read = function() return "a cat\n" end },
        getenv = function(name) return env[name] end,
        options = { retry = { min_delay = 0.2, max_delay = 0.2 } } })
      return code, table.concat(out), table.concat(err)
    end

    before_each(function() s:script { action = "queue_full", match = "^POST /headshot$" } end)

    it("show a retry's wait as a line of its own", function()
      local code, out, err = run { "headshot", "a cat" }
      assert.equal(0, code)
      assert.matches("^%x+ started\n$", out)
      assert.equal("faceswap: POST /headshot: 429 queue full, waiting 0.2 s, attempt 2 of 5\n", err)
    end)

    it("show a retry's wait on the batch's status line until the request is answered", function()
      local code, _, err = run({ "batch", "-", "--interval", "0.05" }, true)
      assert.equal(0, code)
      local shown = err:match("\r(0/1 done, 0 in flight, 0 failed, %d+%.%ds %([^)]*%))\27%[K")
      assert.equal("0/1 done, 0 in flight, 0 failed, N.Ns (POST /headshot: 429 queue full, " ..
        "waiting 0.2 s, attempt 2 of 5)", shown and shown:gsub("%d+%.%ds", "N.Ns"))
      assert.matches("\r1/1 done, 0 in flight, 0 failed, %d+%.%ds\27%[K\n$", err)
    end)
  end)
end)
