-- tools/gen.lua: runs one generator of tools/, from the checkout's root, with the Lua that
-- BUILD's core was built for (the Makefile's targets call it; see docs/development.md):
--
--   LUA tools/gen.lua man [BUILD]             faceswap(1), roff, on stdout
--   LUA tools/gen.lua completion [BUILD]      the bash completion script, on stdout
--   LUA tools/gen.lua types [BUILD]           the LuaLS ---@meta file, on stdout
--   LUA tools/gen.lua commands-table [BUILD]  docs/commands.md's table, on stdout
--   LUA tools/gen.lua docs-tables [BUILD]     rewrites that table in docs/commands.md
--
-- BUILD is the build directory whose faceswap/core.so to load (default build/5.4).
package.path = "./?.lua;" .. package.path
local model = require "tools.model"

local what, build = arg[1], arg[2]
model.setup(build)

local function stdout(text)
  io.stdout:write(text)
  assert(io.stdout:flush())
end

if what == "man" then
  stdout(require("tools.man").render())
elseif what == "completion" then
  stdout(require("tools.completion").render())
elseif what == "types" then
  stdout(require("tools.types").render())
elseif what == "commands-table" then
  stdout(require("tools.commands_table").markdown(model.commands()))
elseif what == "docs-tables" then
  local path = "docs/commands.md"
  local old = model.read(path)
  local new = require("tools.commands_table").rewrite(old, model.commands())
  if new ~= old then
    local f = assert(io.open(path .. ".tmp", "wb"))
    assert(f:write(new))
    assert(f:close())
    assert(os.rename(path .. ".tmp", path))
    print("rewrote the table of " .. path)
  else
    print(path .. ": its table is up to date")
  end
else
  io.stderr:write("usage: lua tools/gen.lua man|completion|types|commands-table|docs-tables [BUILD]\n")
  os.exit(2)
end
