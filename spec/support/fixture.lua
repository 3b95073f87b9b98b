-- The specs' shared fixture: "start the simulator, make a client, close both", once.
--
--   local fixture = require "spec.support.fixture"
--   describe("something", function()
--     local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1 }, client = { retry = false } }
--     it("...", function() assert(fx.client:headshot("a cat")); assert.equal(1, #fx.sent("/headshot")) end)
--   end)
--
-- Called inside a describe, it registers that block's setup (a simulator started with the options
-- given, token fixture.TOKEN unless `token` says otherwise), teardown (the simulator stopped),
-- before_each (the simulator reset, `config` applied, a fresh fx.client) and after_each (`after`,
-- if given, then fx.client closed). The options of its own, all optional:
--   client  faceswap.new's options over { token = fx.TOKEN, base_url = fx.sim.base_url }; a
--           function returning them (called before each spec); or false: no fx.client
--   config  a table for fx.sim:config after each reset
--   after   function(fx) run after each spec, before fx.client is closed
--   tmp     true: fx.tmp, a fresh scratch directory for each spec (removed after it)
-- The rest are the simulator's (faceswap.simulator.start). fx gives:
--   fx.sim, fx.TOKEN, fx.base_url   the simulator, its token and its URL (set in setup)
--   fx.client                       this spec's client (made in before_each)
--   fx.new(opts)                    another client of this simulator: opts over the defaults
--   fx.sent(path)                   the requests the simulator received for exactly `path`
--   fx.sent_under(text)             those whose path contains `text`
--   fx.cli(args, opts)              fixture.cli with USEAPI_TOKEN and USEAPI_BASE_URL set to fx's
--   fx.command(args, base_url)      bin/faceswap with args as a shell command, with USEAPI_TOKEN
--                                   and USEAPI_BASE_URL (base_url, or fx's) in its environment
--   fx.run(args, base_url)          that command run to its end (needs `tmp`): exit status,
--                                   stdout, stderr
--   fx.start(args, name)            that command started in the background (its output in
--                                   fx.tmp/.NAME.*): { pid, finish() -> status, stdout, stderr }
--   fx.misuse(spec, cases, check)   a spec per case { fn, text }: fn(fx.client) raises `text` at
--                                   fn's own line of the file `spec` (the caller's line); then
--                                   check(i), if given
--   fx.all_completed(tasks, path) each task's result a completed job, not an error; none
--                                   rejected by the simulator; one request a task to `path`
--   fx.retry(over)                  a retry policy whose sleeps take no time: each wait it asks
--                                   for goes into fx.slept (emptied before each spec), and its
--                                   random() is 0.5; over's fields on top
local busted = require "busted" -- its API: a module sees no spec file's globals
local luassert = require "luassert"
local cjson = require "cjson"
local faceswap = require "faceswap"
local sim = require "spec.support.sim"
local shell = require "spec.support.shell"
local compat = require "spec.support.compat"
local quote, read = shell.quote, shell.read

local M = { TOKEN = "test-token" }

-- A stream that keeps what is written (its .text) and hands out `input` to read.
function M.stream(input)
  local s = { text = "", input = input }
  function s.write(self, ...)
    for _, v in ipairs { ... } do self.text = self.text .. v end
    return self
  end
  function s.read(self, how)
    if not self.input then return nil end
    local line, rest = self.input:match("^([^\n]*)\n?(.*)$")
    if how == "l" or how == "*l" then
      self.input = rest ~= "" and rest or nil
      return line
    end
    local all = self.input
    self.input = nil
    return all
  end
  return s
end

-- The command line's main (faceswap.cli.main) in this process: returns its exit status, stdout
-- and stderr. opts, all optional: env (name -> value; false: unset), stdin (a string, or a
-- reader as cli.main takes one), tty (default false), catch_signals, options (faceswap.new's,
-- default { retry = false }), raised (true: a raise comes back as the status "raised", with
-- its message as stderr).
function M.cli(args, opts)
  opts = opts or {}
  local out, err = M.stream(), M.stream()
  local stdin = opts.stdin
  if type(stdin) ~= "table" then stdin = M.stream(stdin) end
  local env = opts.env or {}
  local ok, code = pcall(require("faceswap.cli").main, args, {
    stdout = out, stderr = err, stdin = stdin, tty = opts.tty or false,
    catch_signals = opts.catch_signals, options = opts.options or { retry = false },
    getenv = function(name) return env[name] or nil end,
  })
  if not ok then
    if not opts.raised then error(code, 0) end
    return "raised", out.text, tostring(code)
  end
  return code, out.text, err.text
end

-- An error object's fields as a plain table, for assert.same.
function M.fields(err)
  luassert.equal("error", require("faceswap.core").type(err))
  local t = {}
  for k, v in pairs(err) do t[k] = v end
  return t
end

-- The records of a `batch --state` file, in order (one JSON object a line).
function M.records_of(path)
  local out = {}
  for line in (read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

-- The requests of simulator s whose path passes keep(path), in order.
local function requests_where(s, keep)
  local list = {}
  for _, r in ipairs(s:requests()) do
    if keep(r.path) then list[#list + 1] = r end
  end
  return list
end

-- defaults with over's fields on top (a new table).
local function merged(defaults, over)
  local t = {}
  for k, v in pairs(defaults) do t[k] = v end
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

function M.simulator(opts)
  opts = opts or {}
  local fx = { TOKEN = opts.token or M.TOKEN }
  local start = { token = fx.TOKEN }
  for k, v in pairs(opts) do
    if k ~= "client" and k ~= "config" and k ~= "after" and k ~= "tmp" then start[k] = v end
  end

  function fx.new(over)
    return faceswap.new(merged({ token = fx.TOKEN, base_url = fx.base_url }, over))
  end
  function fx.retry(over)
    return merged({ sleep = function(d) fx.slept[#fx.slept + 1] = d end,
                    random = function() return 0.5 end }, over)
  end
  function fx.cli(args, o)
    o = merged({}, o)
    o.env = merged({ USEAPI_TOKEN = fx.TOKEN, USEAPI_BASE_URL = fx.base_url }, o.env)
    return M.cli(args, o)
  end
  function fx.command(args, base_url)
    local words = { "env", "USEAPI_TOKEN=" .. fx.TOKEN, "USEAPI_BASE_URL=" .. quote(base_url or fx.base_url),
                    shell.BIN }
    for _, a in ipairs(args) do words[#words + 1] = quote(a) end
    return table.concat(words, " ")
  end
  function fx.run(args, base_url)
    local out, err = fx.tmp .. "/.out", fx.tmp .. "/.err"
    local _, _, code = compat.execute(fx.command(args, base_url) .. " >" .. quote(out) .. " 2>" .. quote(err))
    return code, read(out), read(err)
  end
  function fx.start(args, name)
    name = fx.tmp .. "/." .. (name or "bg")
    local out, err, pidf, codef = name .. ".out", name .. ".err", name .. ".pid", name .. ".code"
    os.execute("( " .. fx.command(args) .. " >" .. quote(out) .. " 2>" .. quote(err) .. " & echo $! >" ..
      quote(pidf) .. "; wait $!; echo $? >" .. quote(codef) .. " ) >/dev/null 2>&1 &")
    -- the shell creates each file before it writes the number: wait for the whole line
    local function number_in(path) return tonumber((read(path) or ""):match("^(%d+)\n$")) end
    local pid = sim.wait_for(function() return number_in(pidf) end, 10)
    return {
      pid = pid,
      finish = function()
        local code = sim.wait_for(function() return number_in(codef) end, 60)
        return code, read(out), read(err)
      end,
    }
  end
  function fx.misuse(spec, cases, check)
    for i, case in ipairs(cases) do
      busted.it(case[2], function()
        local ok, msg = pcall(case[1], fx.client)
        luassert.is_false(ok)
        local line = debug.getinfo(case[1], "S").linedefined
        luassert.equal(spec .. ":" .. line .. ": " .. case[2], msg, "case " .. i)
        if check then check(i) end
      end)
    end
  end
  function fx.all_completed(tasks, path)
    for _, t in ipairs(tasks) do
      local job, err = t:result()
      luassert.is_nil(err)
      luassert.equal("completed", job.status)
    end
    luassert.equal(0, fx.sim:stats().rejected)
    luassert.equal(#tasks, #fx.sent(path))
  end
  function fx.sent(path)
    return requests_where(fx.sim, function(p) return p == path end)
  end
  function fx.sent_under(text)
    return requests_where(fx.sim, function(p) return p:find(text, 1, true) ~= nil end)
  end

  busted.setup(function()
    fx.sim = sim.start(start)
    fx.base_url = fx.sim.base_url
  end)
  busted.teardown(function() fx.sim:stop() end)
  busted.before_each(function()
    fx.sim:reset()
    fx.slept = {}
    if opts.tmp then fx.tmp = shell.tmpdir() end
    if opts.config then fx.sim:config(opts.config) end
    if opts.client ~= false then
      local o = opts.client
      if type(o) == "function" then o = o(fx) end
      fx.client = fx.new(o)
    end
  end)
  busted.after_each(function()
    if opts.after then opts.after(fx) end
    if fx.client then fx.client:close() end
    if opts.tmp then os.execute("rm -rf " .. shell.quote(fx.tmp)) end
  end)
  return fx
end

-- A channel's authority over an in-process coordinator with `lease` and the spec's own `clock`
-- (no lease ends by itself): the coordinator, the registry and the channel named `channel`.
function M.authority(lease, clock, channel)
  local coord = require("faceswap.coordinator.process").new { lease = lease, clock = clock }
  local reg = require("faceswap.channel").registry(require("faceswap.task").scheduler(nil), coord,
    clock)
  return coord, reg, reg(channel)
end

-- A client for specs whose tasks make no request (the scheduler alone): its base URL is a
-- port where nothing listens.
function M.offline_client()
  return require("faceswap").new { token = "test-token", base_url = M.refused_url() .. "/v1/faceswap" }
end

-- A loopback URL where nothing listens, and nothing else can start to: a port bound but never
-- listened on, held until the process ends (a port handed out and given back could be taken
-- by another spec's server meanwhile: a refused connection then met a 404).
local held = {}
function M.refused_url()
  local sock = assert(require("socket").tcp())
  assert(sock:bind("127.0.0.1", 0))
  held[#held + 1] = sock
  local _, port = sock:getsockname()
  return "http://127.0.0.1:" .. port
end

return M
