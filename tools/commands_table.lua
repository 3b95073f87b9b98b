-- tools/commands_table.lua: the Markdown table of the commands, made from the core's command
-- table (faceswap.commands, csrc/command.c), as docs/commands.md shows it. `make docs-tables`
-- (tools/gen.lua docs-tables) rewrites that table in place after a row is added or changed;
-- commands_spec and tools_spec check that the doc holds exactly this.
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

-- docs/commands.md's text with its table of the commands replaced by markdown(commands): the
-- lines from the table's header to the first line that is not a table row.
function M.rewrite(doc, commands)
  local header = "| command | method | HTTP |"
  local start = doc:find("\n" .. header, 1, true)
  assert(start, "docs/commands.md has no table starting with " .. header)
  start = start + 1
  local stop = start
  while doc:sub(stop, stop) == "|" do
    stop = (doc:find("\n", stop, true) or #doc) + 1
  end
  return doc:sub(1, start - 1) .. M.markdown(commands) .. doc:sub(stop)
end

return M
