-- The WeeChat host (PUC Lua 5.3, WeeChat's own poll loop, not libuv), started by the spec as
--   weechat-headless -t -r '/lua load .../spec/hosts/weechat.lua'
-- hook_fd watches the client's descriptor and one hook_timer is armed from next_wakeup();
-- each calls step(0). Writes only to the report file (io.stderr crashes WeeChat 3.8), then
-- runs /quit; on an error the report says "error ..." and WeeChat quits as well.
local work, client, results
local fd_hook, timer_hook
local steps, wakeups = 0, { start = 0, fd = 0, timer = 0 }

weechat.register("faceswap_host", "lua-faceswap", "1.0", "MIT", "lua-faceswap host spec", "", "")

local function finish(failure)
  if fd_hook then weechat.unhook(fd_hook) end
  if timer_hook then weechat.unhook(timer_hook) end
  fd_hook, timer_hook = nil, nil
  if failure then
    if work then work.fail(failure) end
  else
    work.report(results, { { "steps", steps }, { "fd_wakeups", wakeups.fd },
                           { "timer_wakeups", wakeups.timer } })
  end
  if client then client:close() end
  weechat.command("", "/quit")
end

local function step(source)
  steps = steps + 1
  wakeups[source] = wakeups[source] + 1
  if client:step(0) == 0 then return finish() end
  if timer_hook then weechat.unhook(timer_hook) end
  timer_hook = nil
  local due = client:next_wakeup()
  if due then
    timer_hook = weechat.hook_timer(math.ceil(due * 1000) + 1, 0, 1, "faceswap_host_timer", "")
  end
end

local function guarded(source)
  local ok, err = pcall(step, source)
  if not ok then finish(err) end
  return weechat.WEECHAT_RC_OK
end

-- WeeChat calls back by global name
function faceswap_host_fd() return guarded("fd") end
function faceswap_host_timer()
  timer_hook = nil -- a timer with one call is gone once it fires
  return guarded("timer")
end

local ok, err = pcall(function()
  local root = assert(os.getenv("FACESWAP_ROOT"), "FACESWAP_ROOT not set")
  package.path = root .. "/?.lua;" .. package.path
  work = require "spec.hosts.work"
  work.paths("5.3")
  client, results = work.start(require "faceswap")
  fd_hook = weechat.hook_fd(client:fd(), 1, 0, 0, "faceswap_host_fd", "")
  guarded("start")
end)
if not ok then finish(err) end
