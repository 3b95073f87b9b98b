-- The LÖVE 11.4 host (LuaJIT): headshots submitted from love.load, driven by client:step(0)
-- in love.update, every frame; the worst love.update goes into the report. Quits with 0 once
-- all are done with their images (the spec checks the report), 2 when one is not, 3 on an
-- error.
local work

local client, results, started
local worst, frames = 0, 0

function love.errorhandler(message)
  if work then work.fail(debug.traceback(tostring(message), 2)) end
  os.exit(3)
end

function love.load()
  local root = assert(os.getenv("FACESWAP_ROOT"), "FACESWAP_ROOT not set")
  package.path = root .. "/?.lua;" .. package.path
  work = require "spec.hosts.work"
  work.paths("luajit")
  client, results = work.start(require "faceswap")
  started = love.timer.getTime()
end

function love.update()
  local t0 = love.timer.getTime()
  local left = client:step(0)
  local took = love.timer.getTime() - t0
  frames = frames + 1
  if took > worst then worst = took end
  if left == 0 then
    local failed = work.report(results, { { "frames", frames },
                                          { "worst_update_ms", ("%.3f"):format(worst * 1e3) } })
    love.event.quit(failed > 0 and 2 or 0)
  elseif t0 - started > 90 then
    error(left .. " task(s) still running after 90 s")
  end
end
