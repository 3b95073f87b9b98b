-- Inside nginx (the shared-dict coordinator, light threads): a blocking command slower than the
-- `lease` keeps its channel's hold while its request is on its way, renewed by a light thread
-- of its own, so a headshot spawned meanwhile waits for it instead of meeting the server's 429
-- (hold_renew_spec.lua is the same in plain Lua). Lease 1 s, listid answered after 2.5 s, made
-- by the handler itself (not a task).
local fixture = require "spec.support.fixture"
local nginx = require "spec.support.nginx"

local CH1 = "1100000000000000001"

local SERVER = [[
    location = /hold {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false,
                                      channel = "@CH@", lease = 1, coordinator = "shared:faceswap" }
        local coord, ch = client._coordinator, client._channel_of("@CH@")
        local samples, unheld, stop = 0, 0, false
        local sampler = client:spawn(function()
          while not stop do
            local who = coord:holder(ch.key)
            if not stop and ch.holder ~= nil then
              samples = samples + 1
              if who == nil then unheld = unheld + 1 end
            end
            faceswap.sleep(0.1)
          end
        end)
        local started = client:spawn(function()
          faceswap.sleep(0.3)
          return client:headshot("while listid runs")
        end)
        local listed, err = client:listid()
        stop = true
        client:run()
        local job, jerr = started:result()
        ngx.say(table.concat({ listed and listed.status or tostring(err),
          job and job.status or tostring(jerr), samples, unheld, tostring(sampler:done()) }, "|"))
      }
    }
    location = /cancel {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false,
                                      channel = "@CH@", lease = 1, coordinator = "shared:faceswap" }
        local listed = client:spawn(function() return client:listid() end)
        ngx.sleep(0.6) -- past a quarter of the lease: the renewer runs
        local live = 0
        for t in pairs(client._sched.tasks) do if not t:done() then live = live + 1 end end
        listed:cancel()
        ngx.sleep(0.05) -- (the renewer, woken, ends: not a quarter of the lease later)
        local left = 0
        for t in pairs(client._sched.tasks) do if not t:done() then left = left + 1 end end
        local _, err = listed:result()
        ngx.say(live, "|", left, "|", err.kind)
      }
    }
]]

describe("a blocking command longer than the lease inside nginx #external", function()
  local fx = fixture.simulator { job_seconds = 0.2, channels = { CH1 },
                                 config = { blocking_seconds = 2.5 }, client = false }

  it("holds its channel throughout, and a headshot spawned meanwhile waits for it", function()
    local n = nginx.start { http = "lua_shared_dict faceswap 1m;",
      server = SERVER:gsub("@(%u+)@", { TOKEN = fx.TOKEN, SIM = fx.base_url, CH = CH1 }) }
    finally(function() n:stop() end)
    local status, body = nginx.request(n.url .. "/hold")
    assert.equal(200, status, body .. n:log())
    local listed, job, samples, unheld, done = body:match("^([^|]*)|([^|]*)|(%d+)|(%d+)|(%a+)")
    assert.equal("completed", listed, body)
    assert.equal("started", job, body)
    assert.equal(0, fx.sim:stats().rejected)
    assert.is_true(tonumber(samples) >= 10, body)
    assert.equal("0", unheld, body)
    assert.equal("true", done)
  end)

  it("a command cancelled while its request is on its way leaves no renewer running", function()
    local n = nginx.start { http = "lua_shared_dict faceswap 1m;",
      server = SERVER:gsub("@(%u+)@", { TOKEN = fx.TOKEN, SIM = fx.base_url, CH = CH1 }) }
    finally(function() n:stop() end)
    local status, body = nginx.request(n.url .. "/cancel")
    assert.equal(200, status, body .. n:log())
    assert.equal("2|0|cancelled\n", body) -- the command and its renewer, then neither
  end)
end)
