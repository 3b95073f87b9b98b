-- commands_table.lua: the Markdown table of the commands, made from the core's command table
-- (faceswap.commands, csrc/command.c), as docs/commands.md shows it; commands_spec checks that
-- the doc holds exactly this. Run `lua5.4 spec/support/commands_table.lua` after adding a row.
local M = {}

local MODES = { blocking = "blocking: holds its channel", job = "a job to `wait` for",
  either = "blocking, or a job (`status` `started`)", none = "—" }
local ANSWERS = { job = "job (`verb` `faceswap-<command>`)", jobids = "array of jobids",
  account = "account table", accounts = "account tables keyed by channel", none = "`true`" }

local function method_call(c)
  if c.name == "headshot" then return "`client:headshot(params)`" end
  if c.path_channel and c.method ~= "POST" then return "`client:" .. c.name .. "(channel)`" end
  if #c.fields == 0 and not c.common then return "`client:" .. c.name .. "()`" end
  return "`client:" .. c.name .. "{...}`"
end

function M.markdown(commands)
  local lines = { "| command | method | HTTP | params (**required**) | mode | answer |",
                  "|---|---|---|---|---|---|" }
  for _, c in ipairs(commands) do
    local params = {}
    for _, f in ipairs(c.fields) do
      local name = "`" .. f.name .. "`" .. (f.kind == "file" and " (file)" or "")
      params[#params + 1] = f.required and ("**" .. name .. "**") or name
    end
    if c.common then params[#params + 1] = "`channel`, `replyUrl`, `replyRef`" end
    if c.path_channel then params[#params + 1] = "channel in the path" end
    lines[#lines + 1] = ("| %s | %s | `%s %s` | %s | %s | %s |"):format(c.name, method_call(c),
      c.method, c.path, #params > 0 and table.concat(params, ", ") or "none",
      MODES[c.mode], ANSWERS[c.answer])
  end
  return table.concat(lines, "\n") .. "\n"
end

if arg and arg[0] and arg[0]:find("commands_table%.lua$") then
  package.cpath = "build/5.4/?.so;" .. package.cpath
  io.write(M.markdown(require("faceswap.core").commands()))
end
return M
