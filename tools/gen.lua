-- tools/gen.lua: runs one generator of tools/, from the checkout's root, with the Lua that
-- BUILD's core was built for (the Makefile's targets call it; see docs/development.md):
--
--   LUA tools/gen.lua man [BUILD]             faceswap(1), roff, on stdout
--   LUA tools/gen.lua completion [BUILD]      the bash completion script, on stdout
--   LUA tools/gen.lua types [BUILD]           the LuaLS ---@meta file, on stdout
--   LUA tools/gen.lua commands-table [BUILD]  docs/commands.md's table, on stdout
--   LUA tools/gen.lua commands-luadoc [BUILD] the command methods' LDoc, on stdout
--   LUA tools/gen.lua docs-tables [BUILD]     rewrites that table in docs/commands.md, and
--                                             docs/commands.luadoc
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
elseif what == "commands-luadoc" then
  stdout(require("tools.commands_luadoc").render(model.all_commands()))
elseif what == "docs-tables" then
  -- writes path's new text in place (through a temporary, renamed), if it changed
  local function rewrite(path, old, new, what_changed)
    if new ~= old then
      local f = assert(io.open(path .. ".tmp", "wb"))
      assert(f:write(new))
      assert(f:close())
      assert(os.rename(path .. ".tmp", path))
      print("rewrote " .. what_changed .. path)
    else
      print(path .. ": " .. (what_changed ~= "" and "its table is" or "it is") .. " up to date")
    end
  end
  local old = model.read("docs/commands.md")
  rewrite("docs/commands.md", old, require("tools.commands_table").rewrite(old, model.commands()),
    "the table of ")
  local f = io.open("docs/commands.luadoc", "rb")
  old = f and f:read("*a") or ""
  if f then f:close() end
  rewrite("docs/commands.luadoc", old,
    require("tools.commands_luadoc").render(model.all_commands()), "")
else
  io.stderr:write("usage: lua tools/gen.lua " ..
    "man|completion|types|commands-table|commands-luadoc|docs-tables [BUILD]\n")
  os.exit(2)
end
