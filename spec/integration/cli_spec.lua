-- The command line: bin/faceswap run as a user runs it (a subprocess with USEAPI_TOKEN and
-- USEAPI_BASE_URL in its environment) against the simulator; exact output and exit status.
local faceswap, cli, fixture, compat, shell =
  require "spec.support.uses" ("faceswap", "faceswap.cli", "fixture", "compat", "shell")
local shell_quote, capture, read_all = shell.quote, shell.capture, shell.read
local http = require "socket.http"

local TOKEN = fixture.TOKEN
local HINT = "Try 'faceswap --help' for usage.\n"



local write_all, lines = shell.write, shell.lines


local ROOT = capture("pwd"):gsub("\n$", "")
local BIN = ROOT .. "/bin/faceswap"
-- bin/faceswap as a command: on 5.4 by its #! line, as a user runs it; on another Lua through
-- that Lua, so the command line is tested on each (bin/faceswap picks the matching build)
local RUN_BIN = (compat.lua == "lua5.4" and "" or compat.lua .. " ") .. shell_quote(BIN)

local function ls(dir)
  local names = {}
  for name in capture("ls -A " .. shell_quote(dir)):gmatch("[^\n]+") do names[#names + 1] = name end
  return names
end

-- A single-job wait off a terminal says each change of status on its own line: those lines'
-- statuses in order, and the rest of stderr.
local function changes(err, jobid)
  local statuses = {}
  local rest = err:gsub("faceswap: job " .. jobid .. ": (%a+)\n", function(status)
    statuses[#statuses + 1] = status
    return ""
  end)
  return statuses, rest
end

describe("faceswap command line #lua_only", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = false, tmp = true }
  local s, tmp
  before_each(function() s, tmp = fx.sim, fx.tmp end)

  -- Runs bin/faceswap with args; returns exit status, stdout, stderr. opts.env: variables to
  -- set (false unsets one), over USEAPI_TOKEN and USEAPI_BASE_URL; opts.stdin: piped in.
  local function run(args, opts)
    opts = opts or {}
    local env = { USEAPI_TOKEN = TOKEN, USEAPI_BASE_URL = s.base_url }
    for k, v in pairs(opts.env or {}) do env[k] = v end
    local words = { "env", "-u", "USEAPI_TOKEN", "-u", "USEAPI_BASE_URL" }
    for k, v in pairs(env) do
      if v then words[#words + 1] = shell_quote(k .. "=" .. v) end
    end
    words[#words + 1] = RUN_BIN
    for _, a in ipairs(args) do words[#words + 1] = shell_quote(a) end
    local out, err = tmp .. "/.stdout", tmp .. "/.stderr"
    local cmd = table.concat(words, " ") .. " >" .. shell_quote(out) .. " 2>" .. shell_quote(err)
    if opts.stdin then
      write_all(tmp .. "/.stdin", opts.stdin)
      cmd = "cat " .. shell_quote(tmp .. "/.stdin") .. " | " .. cmd
    end
    local _, _, code = compat.execute(cmd)
    local stdout, stderr = read_all(out), read_all(err)
    os.remove(out)
    os.remove(err)
    os.remove(tmp .. "/.stdin")
    return code, stdout, stderr
  end

  local function fetch(url)
    local body, status = http.request(url)
    assert.equal(200, status)
    return body
  end

  local function start(prompt)
    local code, out = run { "headshot", prompt }
    assert.equal(0, code)
    return (out:match("^(%x+) started\n$"))
  end

  describe("usage", function()
    it("prints the usage on stdout for --help (exit 0) and for no arguments (exit 2)", function()
      local code, out, err = run { "--help" }
      assert.same({ 0, cli.usage, "" }, { code, out, err })
      assert.matches("  batch FILE|-  ", out, 1, true)
      code, out, err = run { "help" }
      assert.same({ 0, cli.usage, "" }, { code, out, err })
      code, out, err = run {}
      assert.same({ 2, cli.usage, "" }, { code, out, err })
      assert.matches("\nexit status: 0 success, 1 API, network, job or file failure, 2 usage error " ..
        "(or --state FILE\n             in use by another batch), 130 interrupted (Ctrl-C)\n", out, 1, true)
    end)

    it("prints one command's help for `help COMMAND` and `COMMAND --help`", function()
      local want = table.concat({
        "usage: faceswap job JOBID [OPTIONS]",
        "",
        "A job as the server has it now.",
        "",
        "options:",
        "  --json            print the answer as JSON (batch: one object per line), and errors as",
        "                    JSON on stderr",
        "  --base-url URL    API base URL (default $USEAPI_BASE_URL, else useapi.net's)",
        "  --help            show the help (of a command: `faceswap help COMMAND`) and exit",
        "  --version         show the version and exit",
        "",
        "example:",
        "  faceswap job 8a1f574fdbf79e8cd57e070476d9d5f3",
        "" }, "\n")
      local code, out, err = run { "help", "job" }
      assert.same({ 0, "" }, { code, err })
      assert.equal(want, out:sub(1, #want))
      assert.equal(cli.help("job"), out)
      code, out, err = run { "job", "x", "-h" }
      assert.same({ 0, cli.help("job"), "" }, { code, out, err })
      -- each subcommand's help names only its own options, and its example
      code, out = run { "delall", "--help" }
      assert.equal(0, code)
      assert.matches("^usage: faceswap delall %-%-yes %[OPTIONS%]\n\nDelete every saved face%.\n", out)
      assert.matches("\nexample:\n  faceswap delall --yes\n", out, 1, true)
      assert.is_nil(out:find("--concurrency", 1, true))
      code, out = run { "help", "account" }
      assert.equal(0, code)
      assert.matches("^usage: faceswap account %[CHANNEL%] %[OPTIONS%]\n" ..
        "       faceswap account add CHANNEL %-%-server ID %[OPTIONS%]\n" ..
        "       faceswap account delete CHANNEL %-%-yes %[OPTIONS%]\n", out)
      code, out, err = run { "help", "frob" }
      assert.same({ 2, "", "faceswap: unknown command 'frob'\n" .. HINT }, { code, out, err })
    end)

    it("prints the version", function()
      local code, out = run { "--version" }
      assert.same({ 0, faceswap._VERSION .. "\n" }, { code, out })
    end)

    local bad = {
      { { "frob" }, "unknown command 'frob'" },
      { { "job" }, "job needs a JOBID" },
      { { "headshot", "--wait" }, "headshot needs a PROMPT" },
      { { "batch" }, "batch needs a FILE" },
      { { "job", "a", "b" }, "unexpected argument 'b'" },
      { { "job", "a", "--frob" }, "unknown option '--frob'" },
      { { "job", "a", "--frob=1" }, "unknown option '--frob'" },
      { { "job", "a", "--channel", "1" }, "option '--channel' does not apply to job" },
      { { "wait", "a", "--json=yes" }, "option '--json' takes no value" },
      { { "batch", "f", "--concurrency" }, "option '--concurrency' needs a value" },
      { { "batch", "f", "--concurrency", "two" },
        "option '--concurrency' needs a whole number from 1, got 'two'" },
      { { "batch", "f", "--concurrency=1.5" },
        "option '--concurrency' needs a whole number from 1, got '1.5'" },
      { { "batch", "f", "--concurrency", "0" },
        "option '--concurrency' needs a whole number from 1, got '0'" },
      { { "wait", "a", "--interval", "0" },
        "option '--interval' needs a number of seconds above 0, got '0'" },
      { { "wait", "a", "--interval", "soon" },
        "option '--interval' needs a number of seconds above 0, got 'soon'" },
      { { "job", "a", "--base-url", "ftp://example.com" },
        "bad base URL 'ftp://example.com': must start with https://" },
    }
    for _, case in ipairs(bad) do
      it("exits 2 with one line and a hint: faceswap " .. table.concat(case[1], " "), function()
        local code, out, err = run(case[1])
        assert.same({ 2, "", "faceswap: " .. case[2] .. "\n" .. HINT }, { code, out, err })
      end)
    end

    it("exits 2 without a token, sending nothing", function()
      for _, token in ipairs { false, "" } do
        local code, out, err = run({ "job", "deadbeef" }, { env = { USEAPI_TOKEN = token } })
        assert.same({ 2, "", "faceswap: no token: set USEAPI_TOKEN\n" .. HINT }, { code, out, err })
      end
      assert.same({}, s:requests())
    end)

    it("takes -- as the end of the options, so a prompt may start with a dash", function()
      local code, out = run { "headshot", "--", "--weird prompt" }
      assert.equal(0, code)
      assert.matches("^%x+ started\n$", out)
      assert.equal("--weird prompt", s:requests()[1].fields.prompt)
    end)
  end)

  describe("API and network failures", function()
    it("exit 1 with the error on one line", function()
      local code, out, err = run { "job", "deadbeef" }
      assert.same({ 1, "", "faceswap: not_found (404): Unable to locate job deadbeef\n" },
        { code, out, err })
      code, out, err = run({ "cancel", "deadbeef" }, { env = { USEAPI_TOKEN = "wrong" } })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^faceswap: unauthorized %(401%): [^\n]+\n$", err)
    end)

    it("--json: the error as JSON on stderr, usage errors too", function()
      local code, out, err = run { "job", "deadbeef", "--json" }
      assert.same({ 1, "", '{"error":{"kind":"not_found","code":404,"text":"not_found (404): ' ..
        'Unable to locate job deadbeef"}}\n' }, { code, out, err })
      code, out, err = run { "job", "--json" }
      assert.same({ 2, "", '{"error":{"kind":"usage","text":"job needs a JOBID"}}\n' },
        { code, out, err })
      code, out, err = run { "--json" }
      assert.same({ 2, "", '{"error":{"kind":"usage","text":"no command given"}}\n' },
        { code, out, err })
      code, out, err = run { "cancel", "a", "--json" }
      assert.same({ 2, "", '{"error":{"kind":"usage","text":"option \'--json\' does not apply to ' ..
        'cancel"}}\n' }, { code, out, err })
    end)

    it("a base URL from --base-url wins over USEAPI_BASE_URL", function()
      local code, _, err = run({ "job", "deadbeef", "--base-url", s.base_url },
        { env = { USEAPI_BASE_URL = "https://example.invalid" } })
      assert.same({ 1, "faceswap: not_found (404): Unable to locate job deadbeef\n" }, { code, err })
    end)

    it("a refused connection (in process: cli.main with its streams given)", function()
      local socket = require "socket"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      server:close()
      local out, err = {}, {}
      local function sink(t) return { write = function(_, ...) for _, v in ipairs { ... } do t[#t + 1] = v end end } end
      local env = { USEAPI_TOKEN = TOKEN, USEAPI_BASE_URL = "http://127.0.0.1:" .. port }
      local code = cli.main({ "job", "deadbeef" }, { stdout = sink(out), stderr = sink(err),
        getenv = function(name) return env[name] end, options = { retry = false } })
      assert.equal(1, code)
      assert.equal("", table.concat(out))
      assert.matches("^faceswap: transport: [^\n]*\n$", table.concat(err))
    end)
  end)

  describe("headshot, job, cancel and wait", function()
    it("headshot prints the jobid and status, and sends every param", function()
      local code, out, err = run { "headshot", "a cat", "--channel", "1100000000000000001",
        "--reply-url", "http://127.0.0.1:9/cb", "--reply-ref=ref 1" }
      assert.equal(0, code)
      assert.equal("", err)
      local jobid = out:match("^(%x+) started\n$")
      assert.is_string(jobid)
      assert.equal("a cat", s:job(jobid).prompt)
      assert.same({ prompt = "a cat", channel = "1100000000000000001",
                    replyUrl = "http://127.0.0.1:9/cb", replyRef = "ref 1" }, s:requests()[1].fields)
    end)

    it("headshot --json prints the job as JSON", function()
      local code, out = run { "headshot", "a cat", "--json" }
      assert.equal(0, code)
      local job = assert(faceswap.decode(out))
      assert.same({ "started", "a cat" }, { job.status, job.prompt })
      assert.is_not_nil(s:job(job.jobid))
    end)

    -- A job that stays `started` however slowly the command line starts on a loaded machine.
    local function start_long(prompt)
      s:config { job_seconds = 600 }
      finally(function() s:config { job_seconds = 0.2 } end)
      return start(prompt)
    end

    it("job prints a few readable lines, or JSON", function()
      local jobid = start_long("a dog")
      local code, out, err = run { "job", jobid }
      assert.same({ 0, "jobid    " .. jobid .. "\nstatus   started\ncredits  4 (796/800 left)\n", "" },
        { code, out, err })
      code, out = run { "job", jobid, "--json" }
      assert.equal(0, code)
      assert.equal(jobid, assert(faceswap.decode(out)).jobid)
    end)

    it("cancel prints the jobid and status", function()
      local jobid = start_long("a dog")
      local code, out, err = run { "cancel", jobid }
      assert.same({ 0, jobid .. " cancelled\n", "" }, { code, out, err })
      assert.equal("cancelled", s:job(jobid).status)
    end)

    it("wait prints the finished job; one that failed exits 1", function()
      local jobid = start("a dog")
      local code, out, err = run { "wait", jobid, "--interval", "0.05" }
      assert.equal(0, code)
      -- off a terminal: a line per change of status, the first poll's included
      local statuses, rest = changes(err, jobid)
      assert.equal("", rest)
      assert.equal("completed", statuses[#statuses])
      assert.truthy(#statuses >= 2 and statuses[1] ~= "completed", err)
      local job = s:job(jobid)
      assert.same({ "jobid    " .. jobid, "status   completed", "credits  4 (796/800 left)",
                    "url      " .. job.attachments[1].url, "url      " .. job.attachments[2].url },
        lines(out))

      jobid = start("sim:fail")
      code, out, err = run { "wait", jobid, "--interval", "0.05", "--json" }
      assert.equal(1, code)
      assert.equal("failed", assert(faceswap.decode(out)).status)
      assert.equal("faceswap: job " .. jobid .. " ended failed: Job failed\n",
        (select(2, changes(err, jobid))))
    end)

    it("headshot --wait --download saves the images, byte for byte", function()
      local dir = tmp .. "/new dir/sub"
      local code, out, err = run { "headshot", "a cat", "--wait", "--download", dir,
                                   "--interval", "0.05" }
      assert.equal(0, code)
      local jobid = out:match("^(%x+) ")
      local statuses, rest = changes(err, jobid)
      assert.same({ "", "completed" }, { rest, statuses[#statuses] })
      local a, b = dir .. "/" .. jobid .. "-1.png", dir .. "/" .. jobid .. "-2.png"
      assert.equal(jobid .. " completed " .. a .. " " .. b .. "\n", out)
      assert.same({ jobid .. "-1.png", jobid .. "-2.png" }, ls(dir))
      local job = s:job(jobid)
      assert.equal(fetch(job.attachments[1].url), read_all(a))
      assert.equal(fetch(job.attachments[2].url), read_all(b))
      assert.equal(job.attachments[1].size, #read_all(a))
    end)

    it("never overwrites: identical files are kept, different ones get a new name", function()
      local jobid = start("a dog")
      local dir = tmp .. "/out"
      local code, out = run { "wait", jobid, "--interval", "0.05", "--download", dir }
      assert.equal(0, code)
      local a, b = dir .. "/" .. jobid .. "-1.png", dir .. "/" .. jobid .. "-2.png"
      assert.same({ "file     " .. a, "file     " .. b }, { compat.unpack(lines(out), 6) })
      local png = read_all(a)

      -- again: both already there, nothing new
      local err
      code, out, err = run { "wait", jobid, "--download", dir }
      assert.equal(0, code)
      assert.equal("faceswap: job " .. jobid .. ": completed\nfaceswap: " .. a .. " is already there\n" ..
        "faceswap: " .. b .. " is already there\n", err)
      assert.same({ "file     " .. a, "file     " .. b }, { compat.unpack(lines(out), 6) })
      assert.same({ jobid .. "-1.png", jobid .. "-2.png" }, ls(dir))

      -- a different file under the name: a new name, a warning, the original untouched
      local a1 = dir .. "/" .. jobid .. "-1.1.png"
      local function saved_beside()
        code, out, err = run { "wait", jobid, "--download", dir }
        assert.equal(0, code)
        assert.equal("faceswap: job " .. jobid .. ": completed\n" ..
          "faceswap: warning: " .. a .. " exists with other bytes; saved " .. a1 ..
          " instead\nfaceswap: " .. b .. " is already there\n", err)
        assert.same({ "file     " .. a1, "file     " .. b }, { compat.unpack(lines(out), 6) })
        assert.equal(png, read_all(a1))
      end
      write_all(a, "not the image")
      saved_beside()
      assert.equal("not the image", read_all(a))

      -- and once more: the renamed copy is the one already there
      code, out, err = run { "wait", jobid, "--download", dir }
      assert.equal(0, code)
      assert.same({ "file     " .. a1, "file     " .. b }, { compat.unpack(lines(out), 6) })
      assert.equal("faceswap: job " .. jobid .. ": completed\nfaceswap: " .. a1 .. " is already there\n" ..
        "faceswap: " .. b .. " is already there\n", err)
      assert.same({ jobid .. "-1.1.png", jobid .. "-1.png", jobid .. "-2.png" }, ls(dir))

      -- a name taken by something that cannot be read (a link to nowhere) is not replaced
      -- either (a look, then a rename, replaced it: the look saw no file)
      os.remove(a1)
      os.remove(a)
      assert(os.execute("ln -s nowhere " .. shell_quote(a)))
      saved_beside()
      assert.equal("nowhere", (io.popen("readlink " .. shell_quote(a)):read("*l")))
    end)

    it("--download streams each image to a file beside its name, put in place once whole", function()
      local jobid = start("a cat")
      local dir = tmp .. "/out"
      assert(os.execute("mkdir " .. shell_quote(dir)))
      while s:job(jobid).status ~= "completed" do faceswap.sleep(0.02) end
      local url = s:job(jobid).attachments[1].url
      -- the first image arrives a byte at a time: while it does, its bytes are on disk in a
      -- file beside DIR/.JOBID-1.png.download (client:download's temporary), and nothing is
      -- under JOBID-1.png yet
      s:script { action = "drip", seconds = 0.002, match = "^GET /attachments/%x+/1%.png" }
      local done = tmp .. "/done"
      os.execute(string.format("(env USEAPI_TOKEN=%s USEAPI_BASE_URL=%s %s wait %s --download %s " ..
        ">/dev/null 2>&1; echo $? >%s) &", TOKEN, shell_quote(s.base_url), RUN_BIN, jobid,
        shell_quote(dir), shell_quote(done)))
      local part, final = "." .. jobid .. "-1.png.download", dir .. "/" .. jobid .. "-1.png"
      local seen_part, final_early = false, false
      -- (done once the exit status is written: the shell makes the file before echo writes it)
      while not (read_all(done) or ""):find("\n") do
        for _, name in ipairs(ls(dir)) do
          local bytes = name:sub(1, #part) == part and read_all(dir .. "/" .. name)
          if bytes and #bytes > 0 then
            seen_part = true
            final_early = final_early or read_all(final) ~= nil
          end
        end
        faceswap.sleep(0.01)
      end
      assert.equal("0\n", read_all(done))
      assert.is_true(seen_part, "no " .. part .. " while the image arrived")
      assert.is_false(final_early)
      assert.equal(fetch(url), read_all(final))
      assert.same({ jobid .. "-1.png", jobid .. "-2.png" }, ls(dir))
    end)

    it("a failed download exits 1 and says which", function()
      s:script { action = "status", status = 404, match = "^GET /attachments/%x+/2%.png$" }
      local dir = tmp .. "/out"
      local code, out, err = run { "headshot", "a cat", "--download", dir, "--interval", "0.05" }
      assert.equal(1, code)
      local jobid = out:match("^(%x+) ")
      assert.equal(jobid .. " completed " .. dir .. "/" .. jobid .. "-1.png\n", out)
      local _, rest = changes(err, jobid)
      assert.equal("faceswap: download of " .. s:job(jobid).attachments[2].url ..
        " failed: not_found (404): download failed with HTTP 404\n", rest)
    end)

    it("a download directory that cannot be made fails before any request", function()
      write_all(tmp .. "/file", "")
      local code, out, err = run { "headshot", "a cat", "--download", tmp .. "/file/sub" }
      assert.same({ 1, "", "faceswap: cannot create directory " .. tmp .. "/file/sub\n" },
        { code, out, err })
      assert.same({}, s:requests())
    end)
  end)

  describe("batch", function()
    -- jobid -> the simulator's job, for the prompts of the last run
    local function jobs_by_id()
      local by_id = {}
      for _, job in ipairs(s:jobs()) do by_id[job.jobid] = job end
      return by_id
    end

    it("runs the prompts of a file; one line each in input order; exit 1 when one failed", function()
      write_all(tmp .. "/prompts", "first\n\n   \nsecond sim:fail\r\nthird\n")
      local code, out, err = run { "batch", tmp .. "/prompts", "--concurrency", "2",
                                   "--interval", "0.05" }
      assert.equal(1, code)
      local by_id, results = jobs_by_id(), lines(out)
      assert.equal(3, #results)
      for i, prompt in ipairs { "first", "second sim:fail", "third" } do
        local jobid, status = results[i]:match("^(%x+) (%a+)$")
        assert.equal(prompt, by_id[jobid].prompt)
        assert.equal(i == 2 and "failed" or "completed", status)
      end
      -- off a terminal: a plain line per item as it ends, then the counts
      local progress = lines(err)
      assert.equal(4, #progress)
      assert.matches("^3/3 done, 0 in flight, 1 failed, %d+%.%ds$", table.remove(progress))
      table.sort(progress)
      assert.same({ "1 " .. results[1], "2 " .. results[2], "3 " .. results[3] }, progress)
      assert.is_nil(err:find("\27", 1, true))
    end)

    it("--json: one JSON object per prompt, in input order, each its job or its error", function()
      write_all(tmp .. "/prompts", "# a comment\nfirst\nsecond sim:fail\n")
      local code, out = run { "batch", tmp .. "/prompts", "--json", "--interval", "0.05" }
      assert.equal(1, code)
      local results = lines(out)
      assert.equal(2, #results)
      local cjson = require "cjson"
      for i, want in ipairs { { 2, "first", "completed" }, { 3, "second sim:fail", "failed" } } do
        local item = cjson.decode(results[i])
        assert.same({ want[1], want[2], want[3] }, { item.line, item.prompt, item.job.status })
        assert.truthy(results[i]:find('^{"line":' .. want[1] .. ',"prompt":"' .. want[2] .. '","job":{'))
      end
      assert.is_nil(out:find("\\/", 1, true)) -- URLs as they are: no \/
      assert.truthy(out:find("https?://[^\"]*/"))
      -- a submission refused: the item's error
      code, out = run({ "batch", tmp .. "/prompts", "--json" }, { env = { USEAPI_TOKEN = "wrong" } })
      assert.equal(1, code)
      results = lines(out)
      assert.equal(2, #results)
      assert.matches('^{"line":2,"prompt":"first","error":{"kind":"unauthorized","code":401,' ..
        '"text":"unauthorized %(401%): [^"]+"}}$', results[1])
      assert.matches('^{"line":3,"prompt":"second sim:fail","error":{"kind":"unauthorized",', results[2])
    end)

    it("reads stdin for -, and keeps to --concurrency", function()
      local code, out, err = run({ "batch", "-", "--concurrency", "1", "--interval", "0.05" },
        { stdin = "one\ntwo\n" })
      assert.equal(0, code)
      local by_id, results = jobs_by_id(), lines(out)
      local one, two = by_id[results[1]:match("^%x+")], by_id[results[2]:match("^%x+")]
      assert.same({ "one", "two" }, { one.prompt, two.prompt })
      assert.same({ "completed", "completed" }, { one.status, two.status })
      assert.is_true(two.created >= one.updated) -- the second started after the first ended
      assert.matches("\n2/2 done, 0 in flight, 0 failed, %d+%.%ds\n$", err)
    end)

    it("downloads each job's images as soon as it completes", function()
      local dir = tmp .. "/out"
      local code, out = run({ "batch", "-", "--download", dir, "--interval", "0.05" },
        { stdin = "one\ntwo sim:moderate\nthree\n" })
      assert.equal(1, code)
      local results = lines(out)
      local expected = {}
      for i, line in ipairs(results) do
        local jobid = line:match("^%x+")
        if i == 2 then
          assert.equal(jobid .. " moderated", line)
        else
          local a, b = dir .. "/" .. jobid .. "-1.png", dir .. "/" .. jobid .. "-2.png"
          assert.equal(jobid .. " completed " .. a .. " " .. b, line)
          assert.equal(fetch(s:job(jobid).attachments[1].url), read_all(a))
          expected[#expected + 1] = jobid .. "-1.png"
          expected[#expected + 1] = jobid .. "-2.png"
        end
      end
      table.sort(expected)
      assert.same(expected, ls(dir))
    end)

    it("counts a failed download as a failure", function()
      s:script { action = "status", status = 404, match = "^GET /attachments/" }
      local code, _, err = run({ "batch", "-", "--download", tmp .. "/out", "--interval", "0.05" },
        { stdin = "one\n" })
      assert.equal(1, code)
      assert.matches("\nfaceswap: download of http://[^\n]* failed: not_found %(404%): " ..
        "download failed with HTTP 404\n", err)
      assert.matches("\n1/1 done, 0 in flight, 0 failed, 1 with failed downloads, %d+%.%ds\n$", err)
    end)

    it("exits 1 when the file cannot be read", function()
      local code, out, err = run { "batch", tmp .. "/missing" }
      assert.same({ 1, "", "faceswap: " .. tmp .. "/missing: No such file or directory\n" },
        { code, out, err })
    end)

    it("wait shows a live line on a terminal: status, elapsed, polls, rewritten in place", function()
      assert.is_true(compat.execute("command -v script >/dev/null"), "util-linux script is needed")
      local jobid = start("a dog")
      local cmd = string.format("env USEAPI_TOKEN=%s USEAPI_BASE_URL=%s %s wait %s " ..
        "--interval 0.05; echo \"exit $?\"", TOKEN, shell_quote(s.base_url), RUN_BIN, jobid)
      local out = capture("script -qfec " .. shell_quote(cmd) .. " /dev/null")
      assert.matches("\rfaceswap: job " .. jobid .. ": waiting, 0.0s, 0 polls\27[K", out, 1, true)
      -- (the status the first poll saw: started, or later on a loaded machine)
      assert.matches("\rfaceswap: job " .. jobid .. ": %a+, %d+%.%ds, 1 poll\27%[K", out)
      assert.matches("\rfaceswap: job " .. jobid .. ": completed, %d+%.%ds, %d+ polls\27%[K\r\27%[K" ..
        "jobid    " .. jobid .. "\r?\n", out)
      assert.matches("exit 0\r?\n$", out)
      assert.is_nil(out:find("faceswap: job " .. jobid .. ": started\r?\n")) -- no plain lines
    end)

    it("shows one live status line on a terminal", function()
      assert.is_true(compat.execute("command -v script >/dev/null"), "util-linux script is needed")
      write_all(tmp .. "/prompts", "a\nb\nc\n")
      local cmd = string.format("env USEAPI_TOKEN=%s USEAPI_BASE_URL=%s %s batch %s " ..
        "--concurrency 3 --interval 0.05; echo \"exit $?\"", TOKEN, shell_quote(s.base_url),
        RUN_BIN, shell_quote(tmp .. "/prompts"))
      local out = capture("script -qfec " .. shell_quote(cmd) .. " /dev/null")
      assert.matches("\r0/3 done, 0 in flight, 0 failed, 0.0s\27[K", out, 1, true)
      assert.matches("\r0/3 done, 3 in flight, 0 failed, ", out, 1, true)
      assert.matches("\r3/3 done, 0 in flight, 0 failed, %d+%.%ds\27%[K\r?\n", out)
      assert.matches("exit 0\r?\n$", out)
      assert.is_nil(out:find("1 %x+ completed")) -- no plain per-item lines
      local results = 0
      for _ in out:gmatch(("%x"):rep(32) .. " completed\r?\n") do results = results + 1 end
      assert.equal(3, results)
    end)
  end)

  it("bin/faceswap finds the checkout's modules from any directory", function()
    local out = capture("cd / && " .. RUN_BIN .. " --version")
    assert.equal(faceswap._VERSION .. "\n", out)
  end)
end)
