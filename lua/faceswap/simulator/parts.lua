-- faceswap.simulator.parts: the one place the simulator's modules get their sibling parts from,
-- so each module's header names them in one line instead of a require line per part:
--
--   local util, http, S = require "faceswap.simulator.parts" ("util", "http", "state")
--
-- Each name is a module below faceswap.simulator, loaded by require (so once, and in the order
-- asked for); other libraries (cjson, socket) are required as usual.
return function(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = require("faceswap.simulator." .. select(i, ...)) end
  return table.unpack(parts, 1, n)
end
