-- Counting what a piece of code costs, the same on every run whatever the machine's load (for
-- specs that guard a cost; timing stays out of pass/fail specs).
local M = {}

-- Lua VM instructions run by fn() (a count hook).
function M.instructions(fn)
  local n = 0
  debug.sethook(function() n = n + 1 end, "", 1)
  fn()
  debug.sethook()
  return n
end

return M
