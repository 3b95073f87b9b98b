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
--   fx.retry(over)                  a retry policy whose sleeps take no time: each wait it asks
--                                   for goes into fx.slept (emptied before each spec), and its
--                                   random() is 0.5; over's fields on top
local busted = require "busted" -- its API: a module sees no spec file's globals
local faceswap = require "faceswap"
local sim = require "spec.support.sim"
local shell = require "spec.support.shell"

local M = { TOKEN = "test-token" }

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

return M
