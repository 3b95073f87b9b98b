-- The transport contract of docs/development.md ("The transport contract"): both transports,
-- libcurl's (faceswap.task's scheduler over the C transport) and nginx's (faceswap.resty's
-- light threads over cosockets), have every method of the contract, each returning its
-- documented shape, and build their tasks in one shape; both honour transfer's 5th argument,
-- the call's own options (timeout; for a download max, path, sink). And the one table of faults
-- (csrc/fault.c) that gives both their error kinds and words.
local core = require "faceswap.core"
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"
local nginx = require "spec.support.nginx"


-- spec/support/contract.lua runs the contract against a client and returns what it saw, one
-- line per check: the same file runs outside nginx (here) and inside (a content_by_lua handler).
local CONTRACT = nginx.root .. "/spec/support/contract.lua"

local SERVER = [[
  location = /contract {
    content_by_lua_block {
      local faceswap = require "faceswap"
      local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
      ngx.print(dofile("@CONTRACT@").methods(client, faceswap))
    }
  }
  location = /transfer {
    content_by_lua_block {
      local faceswap = require "faceswap"
      local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
      local a = ngx.req.get_uri_args()
      ngx.print(dofile("@CONTRACT@").transfer(client, { url = a.url, dir = a.dir }))
      client:close()
    }
  }
  location = /sibling {
    content_by_lua_block {
      local faceswap = require "faceswap"
      local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
      -- cancelled from a sibling, which nginx does not let kill it: it stops at its request
      local victim = client:spawn(function() faceswap.sleep(0.2) return client:job("nope") end)
      local killer = client:spawn(function() return victim:cancel() end)
      client:run()
      local _, err = victim:result()
      ngx.say(tostring(killer:result()), " | ", tostring(err), " | sent ", tostring(err.sent))
    }
  }
]]

describe("the transport contract", function()
  local fx = fixture.simulator { client = false }
  local n
  setup(function()
    n = nginx.start {
      http = "",
      server = SERVER:gsub("@(%u+)@", { TOKEN = fx.TOKEN, SIM = fx.base_url, CONTRACT = CONTRACT }),
    }
  end)
  teardown(function() if n then n:stop() end end)

  -- The lines every transport gives alike.
  -- (an integer is "number" on LuaJIT, which has no math.type)
  local function common(number, fd_line, next_wakeup)
    return table.concat({
      "spawn task faceswap.task: running",
      "step " .. number,
      "fields _cancel,_co,_parked,_renewer,_sched,_sent,_token,_transfer",
      "next_wakeup " .. next_wakeup,
      fd_line,
      "cancel true cancelled: task cancelled false",
      "close true cancelled: client closed",
    }, "\n")
  end

  it("libcurl's: every method, an epoll descriptor and libcurl's next timer", function()
    local client = fx.new { retry = false }
    local got = dofile(CONTRACT).methods(client, faceswap)
    local number = math.type and "integer" or "number"
    assert.equal(common(number, "fd " .. number .. " nil", "seconds"), got)
  end)

  it("nginx's: every method, no descriptor (and why), nothing to arm", function()
    local status, got = nginx.request(n.url .. "/contract")
    assert.equal(200, status, got)
    assert.equal(common("number", "fd nil nginx drives the requests itself", "nil"), got)
  end)

  -- What both give for transfer's 5th argument: the same lines, and the one file left is the
  -- whole body under its name (no temporary, nothing from the downloads that failed).
  local TRANSFER = table.concat({
    "timeout timeout|nil|true|true|Operation timed out after N milliseconds with 0 bytes received",
    "sink 200 true 3145728 pieces true",
    "sink false cancelled|200|true|false|download stopped by its sink (it returned false)",
    "max bad_response|200|true|false|answer larger than a download may be (10 bytes)",
    "max with a path bad_response|200|true|false|answer larger than a download may be (10 bytes)",
    "path 200 true true",
    "path, no such directory invalid_request|nil|false|false|cannot write DIR/no/such.png: No such file or directory",
  }, "\n")

  -- A fresh directory, an attachment URL, and the simulator scripted as M.transfer expects.
  local function prepare()
    fx.sim:reset()
    local p = io.popen("mktemp -d")
    local dir = p:read("*l")
    p:close()
    local c = fx.new { retry = false }
    local job = assert(c:headshot("p", { wait = { interval = 0.05, max_interval = 0.05, timeout = 30 } }))
    c:close()
    fx.sim:script { action = "delay", seconds = 2, match = "^GET /jobs$" }
    fx.sim:script { action = "flood", bytes = 3 * 1024 * 1024, match = "^GET /attachments/" }
    return dir, job:urls()[1]
  end

  local function listing(dir)
    local p = io.popen("ls -A '" .. dir .. "'")
    local names = p:read("*a")
    p:close()
    os.execute("rm -rf '" .. dir .. "'")
    return names
  end

  it("libcurl's: the call's timeout, a download's max, path and sink", function()
    local dir, url = prepare()
    local client = fx.new { retry = false }
    local got = dofile(CONTRACT).transfer(client, { url = url, dir = dir })
    client:close()
    assert.equal(TRANSFER, got)
    assert.equal("a.png\n", listing(dir))
  end)

  it("nginx's: the call's timeout, a download's max, path and sink", function()
    local dir, url = prepare()
    local function escape(v) return (v:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end
    local status, got = nginx.request(n.url .. "/transfer?url=" .. escape(url) .. "&dir=" .. escape(dir))
    assert.equal(200, status, got)
    assert.equal(TRANSFER, got)
    assert.equal("a.png\n", listing(dir))
  end)

  it("nginx's: a task cancelled by a sibling stops at its next request, which is not sent", function()
    local before = fx.sim:count("GET")
    local status, got = nginx.request(n.url .. "/sibling")
    assert.equal(200, status, got)
    assert.equal("true | cancelled: task cancelled | sent false\n", got)
    assert.equal(before, fx.sim:count("GET"))
  end)
end)

describe("core.fault, the one table of faults", function()
  local function fields(e)
    return { getmetatable(e) == getmetatable(core.error { kind = "transport", error = "" }),
             e.kind, e.code, e.retryable, e.sent, e.error }
  end

  it("fills in libcurl's words, and says retryable unless sent and not safe to repeat", function()
    assert.same({ true, "timeout", 200, false, true,
                  "Operation timed out after 1234 milliseconds with 5 out of 10 bytes received" },
                fields(core.fault("timeout_of", true, true, 200, 1234, 5, 10)))
    assert.same({ true, "timeout", nil, true, true,
                  "Operation timed out after 7 milliseconds with 0 bytes received" },
                fields(core.fault("timeout", true, false, nil, 7, 0)))
    assert.same({ true, "transport", nil, true, false,
                  "Failed to connect to 127.0.0.1 port 9 after 3 ms: Couldn't connect to server" },
                fields(core.fault("refused", false, true, nil, "127.0.0.1", 9, 3)))
  end)

  it("never retries what fails the same way again, or may act twice", function()
    assert.same({ true, "bad_response", nil, false, true, "answer larger than max_response (65536 bytes)" },
                fields(core.fault("oversize", true, false, nil, "max_response", 65536)))
    assert.same({ true, "transport", nil, false, false, "SSL certificate problem: self-signed certificate" },
                fields(core.fault("certificate", false, false, nil, "self-signed certificate")))
    assert.same({ true, "invalid_request", nil, false, false, "refused to fetch with POST (downloads are GET)" },
                fields(core.fault("refused_url", false, true, nil, "with POST", "downloads are GET")))
    assert.same({ true, "transport", nil, false, true, "connection lost after the request was sent; " ..
                  "not resent, since the server may have acted on it" },
                fields(core.fault("not_resent", true, true)))
  end)

  it("refuses a fault it does not know, and words it lacks", function()
    assert.matches("bad argument #1 to '[^']*' %(no fault named 'nope'%)",
                   select(2, pcall(core.fault, "nope", true, true)))
    assert.matches("bad argument #5 to '[^']*' %(string expected, got no value%)",
                   select(2, pcall(core.fault, "send", true, true)))
  end)
end)
