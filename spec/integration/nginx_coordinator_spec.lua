-- The coordinators that live inside nginx (lua/faceswap/coordinator/shared.lua, an ngx.shared
-- dict; lua/faceswap/coordinator/resty_redis.lua, Redis through lua-resty-redis on cosockets)
-- against the contract every coordinator keeps (spec/support/coordinator_contract.lua). The
-- contract runs inside a real nginx, one test per request to a content handler, which answers
-- the test's name and "ok" or what failed; each becomes a test here. Also: faceswap.new's
-- `coordinator` option inside nginx, and its errors.
local nginx = require "spec.support.nginx"
local redis = require "spec.support.redis"
local sim = require "spec.support.sim"

-- The contract's test names, in order: the contract run against a busted that only records.
local function contract_names()
  local names = {}
  local saved = package.loaded.busted
  package.loaded.busted = {
    describe = function(_, fn) fn() end,
    it = function(name) names[#names + 1] = name end,
    before_each = function() end, after_each = function() end,
  }
  package.loaded["spec.support.coordinator_contract"] = nil
  require("spec.support.coordinator_contract")("names", function() end)
  package.loaded.busted = saved
  package.loaded["spec.support.coordinator_contract"] = nil
  return names
end

-- Runs the contract's test ?n=N with coordinator kind ?kind=shared|redis, each handle `open`ed
-- as the contract asks: a fresh key prefix, or the one of the handle it shares.
local SERVER = [[
    location = /contract {
      content_by_lua_block {
        package.path = "@ROOT@/?.lua;" .. package.path
        local tests, hooks = {}, {}
        package.loaded.busted = {
          describe = function(_, fn) fn() end,
          it = function(name, fn) tests[#tests + 1] = { name = name, fn = fn } end,
          before_each = function(fn) hooks.before = fn end,
          after_each = function(fn) hooks.after = fn end,
        }
        package.loaded["spec.support.coordinator_contract"] = nil
        local kind = ngx.var.arg_kind
        local function prefix(o)
          if o.share then return o.share.prefix end
          return ("faceswap:t%d:"):format(ngx.shared.faceswap:incr("fresh", 1, 0))
        end
        local open
        if kind == "shared" then
          local shared = require "faceswap.coordinator.shared"
          open = function(o) return shared.new("faceswap", { lease = o.lease, prefix = prefix(o) }) end
        else
          local rr = require "faceswap.coordinator.resty_redis"
          open = function(o) return rr.new("@REDIS@", { lease = o.lease, prefix = prefix(o) }) end
        end
        require("spec.support.coordinator_contract")(kind, open)
        package.loaded.busted = nil
        local t = tests[tonumber(ngx.var.arg_n)]
        local function why(e) return type(e) == "table" and tostring(e.message or e) or tostring(e) end
        local ok, err = pcall(hooks.before)
        if ok then ok, err = xpcall(t.fn, function(e) return why(e) .. "\n" .. debug.traceback() end) end
        local after_ok, after_err = pcall(hooks.after)
        ngx.say(t.name)
        ngx.say(not ok and err or not after_ok and why(after_err) or "ok")
      }
    }
    location = /new {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local ok, c = pcall(faceswap.new, { token = "t", base_url = "http://127.0.0.1:9/v1/faceswap",
          coordinator = ngx.var.arg_coordinator, lease = 7 })
        if not ok then return ngx.say(c) end
        local lease = c._coordinator:acquire("ch", "me", 3)
        ngx.say(type(lease), " ", c._coordinator:running("ch"), " ", c._coordinator.lease)
        c._coordinator:release("ch", lease)
        c:close()
      }
      header_filter_by_lua_block {
        local ok, err = pcall(require("faceswap").new, { token = "t",
          base_url = "http://127.0.0.1:9/v1/faceswap", coordinator = "@REDIS@" })
        ngx.header["X-Header-Filter"] = ok and "made" or err
      }
    }
    location = /blocked {
      content_by_lua_block {
        -- the account's one slot is another's for 0.3 s: a headshot outside any task waits
        -- for it while nginx runs the timer that frees it
        local shared = require "faceswap.coordinator.shared"
        local ch = "1100000000000000001"
        local other = shared.new("faceswap", { prefix = "blocked:" })
        other:learn(ch, 1)
        local lease = other:acquire(ch, "other", 1)
        ngx.timer.at(0.3, function()
          shared.new("faceswap", { prefix = "blocked:" }):release(ch, lease)
        end)
        local client = require("faceswap").new { token = "@TOKEN@", base_url = "@SIM@",
          coordinator = "shared:faceswap", channel = ch }
        client._coordinator.prefix = "blocked:"
        local t0 = ngx.now()
        local job, err = client:headshot("p")
        ngx.update_time()
        ngx.say(job and job.status or tostring(err), " ", ngx.now() - t0 >= 0.3)
        client:close()
      }
    }
    location = /init {
      content_by_lua_block { ngx.say(ngx.shared.faceswap:get("init error")) }
    }
]]

-- init_by_lua: a Redis coordinator there has no cosockets
local HTTP = [[
  init_by_lua_block {
    local ok, err = pcall(require("faceswap").new, { token = "t",
      base_url = "http://127.0.0.1:9/v1/faceswap", coordinator = "@REDIS@" })
    ngx.shared.faceswap:set("init error", ok and "made" or err)
  }
]]

describe("coordinators inside nginx", function()
  local n, r, s
  setup(function()
    r = redis.start()
    s = sim.start { token = "coordinator-token" }
    local values = { ROOT = nginx.root, REDIS = r.url, TOKEN = "coordinator-token", SIM = s.base_url }
    n = nginx.start { shared = { faceswap = "1m" },
                      server = SERVER:gsub("@(%u+)@", values), http = HTTP:gsub("@(%u+)@", values) }
  end)
  teardown(function()
    if n then n:stop() end
    if r then r:close() end
    if s then s:stop() end
  end)

  for _, kind in ipairs { "shared", "redis" } do
    describe(kind, function()
      for i, name in ipairs(contract_names()) do
        it(name, function()
          local status, body = nginx.request(n.url .. "/contract?kind=" .. kind .. "&n=" .. i)
          assert.equal(200, status, n:log():sub(-3000))
          assert.equal(name .. "\nok\n", body)
        end)
      end
    end)
  end

  it("faceswap.new takes shared:DICT and redis:// inside nginx", function()
    local _, body = nginx.request(n.url .. "/new?coordinator=shared:faceswap")
    assert.equal("string 1 7\n", body)
    _, body = nginx.request(n.url .. "/new?coordinator=" .. r.url)
    assert.equal("string 1 7\n", body)
    assert.equal("1", r:cli("EXISTS", "faceswap:epoch"))
    assert.equal("0", r:cli("ZCARD", "faceswap:{ch}:leases")) -- released
  end)

  it("a call outside any task waits for a slot another request holds, letting nginx run", function()
    local status, body = nginx.request(n.url .. "/blocked")
    assert.equal(200, status)
    assert.equal("started true\n", body)
    assert.equal(1, #s:requests())
  end)

  it("says which shared dict nginx.conf lacks", function()
    local _, body = nginx.request(n.url .. "/new?coordinator=shared:nope")
    assert.equal("bad argument #1 to 'new' (option 'coordinator': no lua_shared_dict 'nope' " ..
      "(add `lua_shared_dict nope 1m;` to nginx.conf's http block))\n", body)
  end)

  it("names the Redis it cannot reach", function()
    local port = require("spec.support.fixture").refused_url():match("%d+$")
    local _, body = nginx.request(n.url .. "/new?coordinator=redis://127.0.0.1:" .. port .. "/0")
    assert.equal("bad argument #1 to 'new' (option 'coordinator': cannot reach Redis at " ..
      "redis://127.0.0.1:" .. port .. "/0: cannot connect: connection refused)\n", body)
  end)

  it("says where nginx has no cosockets for Redis: init_by_lua, a header filter", function()
    local function expected(phase)
      return "bad argument #1 to 'new' (option 'coordinator': the Redis coordinator (" .. r.url ..
        ") needs nginx's cosockets, which the " .. phase .. " phase does not have (init_by_lua, " ..
        "set_by_lua, header and body filters, log): make the client and call it in a rewrite, " ..
        "access or content handler, or a timer)"
    end
    local _, body = nginx.request(n.url .. "/init")
    assert.equal(expected("init") .. "\n", body)
    local c = require("socket").tcp()
    assert(c:connect("127.0.0.1", n.port))
    c:send("GET /new?coordinator=shared:faceswap HTTP/1.0\r\nHost: x\r\n\r\n")
    local answer = c:receive("*a")
    c:close()
    assert.equal(expected("header_filter"), answer:match("\r\nX%-Header%-Filter: ([^\r]*)\r\n"))
  end)
end)
