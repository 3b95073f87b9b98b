-- The Neovim 0.7 host (LuaJIT, libuv through vim.loop), started by the spec as
--   nvim --headless -u NONE -i NONE -n --noplugin -c 'luafile spec/hosts/nvim.lua'
-- The client's descriptor is watched with a uv poll handle and one uv timer is armed from
-- next_wakeup(); each of them calls step(0). Nothing polls on a fixed interval. Leaves with
-- :cquit 0 once the report is written, 2 when a headshot did not end with its image, 1 on any
-- error (an uncaught one would leave
-- headless Neovim waiting forever; the spec runs it under `timeout` too).
local uv = vim.loop
local work

local function quit(code)
  vim.schedule(function() vim.cmd("cquit " .. code) end)
end

local function main()
  local root = assert(os.getenv("FACESWAP_ROOT"), "FACESWAP_ROOT not set")
  package.path = root .. "/?.lua;" .. package.path
  work = require "spec.hosts.work"
  work.paths("luajit")
  local client, results = work.start(require "faceswap")
  local poll, timer = uv.new_poll(client:fd()), uv.new_timer()
  local steps, wakeups = 0, { start = 0, fd = 0, timer = 0 }

  local function done(code, extra)
    poll:stop()
    timer:stop()
    poll:close()
    timer:close()
    if code == 0 and work.report(results, extra) > 0 then code = 2 end
    client:close()
    quit(code)
  end

  local function step(source)
    local ok, err = pcall(function()
      steps = steps + 1
      wakeups[source] = wakeups[source] + 1
      if client:step(0) == 0 then
        return done(0, { { "steps", steps }, { "fd_wakeups", wakeups.fd }, { "timer_wakeups", wakeups.timer } })
      end
      timer:stop()
      local due = client:next_wakeup()
      if due then
        uv.update_time()
        timer:start(math.ceil(due * 1000) + 1, 0, function() step("timer") end)
      end
    end)
    if not ok then
      work.fail(err)
      done(1)
    end
  end

  poll:start("r", function(err)
    if err then
      work.fail("poll: " .. err)
      return done(1)
    end
    step("fd")
  end)
  step("start") -- the tasks are runnable now: the first step starts them
end

local ok, err = pcall(main)
if not ok then
  if work then work.fail(err) end
  quit(1)
end
