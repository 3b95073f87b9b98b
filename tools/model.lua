-- tools/model.lua: what the generators of tools/ read, in one place.
--  * the command table of the C core (faceswap.commands, csrc/command.c);
--  * the command line as faceswap.cli exports it as data (its subcommands and their forms,
--    its options and the commands each applies to, the environment, the exit statuses);
--  * the doc comments (LDoc) of lua/faceswap/*.lua and docs/objects.luadoc;
--  * the option lists of docs/api.md's calls;
--  * the release date of the version (CHANGELOG.md).
-- The generators run from the checkout's root with the Lua the core was built for:
-- `LUA tools/gen.lua WHAT [BUILD]` (tools/gen.lua) or `require "tools.model"` in a spec.
local M = {}

-- Makes `require "faceswap"` take the checkout's Lua layer and BUILD's core (default
-- build/5.4), ahead of any installed copy.
function M.setup(build)
  build = build or "build/5.4"
  package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
  package.cpath = "./" .. build .. "/?.so;" .. package.cpath
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end
M.read = read

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
M.trim = trim

function M.commands() return require("faceswap").commands end

-- Every row, job and cancel too: each is a client method (core.commands("all")).
function M.all_commands() return require("faceswap.core").commands("all") end

-- The command table's row of each name.
function M.rows()
  local rows = {}
  for _, c in ipairs(M.commands()) do rows[c.name] = c end
  return rows
end

---------------------------------------------------------------------------------------------
-- The command line
---------------------------------------------------------------------------------------------

-- The command line, from the data faceswap.cli exports (M.subcommands, M.options,
-- M.environment, M.exit_status): { commands = { {name, forms = { {synopsis, help, needs,
-- options = {name = true}} } } ... }, options = { {name, metavar, help, applies =
-- {command = true}} ... }, environment, exit_status = { {code, text} }, head }.
function M.cli()
  local cli = require("faceswap.cli")
  local model = { commands = {}, options = {}, head = "faceswap COMMAND ARGUMENT [OPTIONS]",
                  environment = cli.environment, exit_status = cli.exit_status, by_name = {} }
  for _, o in ipairs(cli.options) do
    local opt = { name = o.name, metavar = o.metavar, help = o.help, applies = {} }
    for _, s in ipairs(cli.subcommands) do
      local list = o.applies or { s.name }
      for _, c in ipairs(list) do if c == s.name then opt.applies[s.name] = true end end
    end
    model.options[#model.options + 1] = opt
    model.by_name[o.name] = opt
  end
  for _, s in ipairs(cli.subcommands) do
    local command = { name = s.name, forms = {} }
    for _, f in ipairs(s.forms) do
      local form = { synopsis = f.synopsis, help = f.summary, needs = f.needs, options = {} }
      for _, opt in ipairs(model.options) do
        local needed = false
        for _, n in ipairs(f.needs) do needed = needed or n == opt.name end
        local elsewhere = false -- an option another form of the command needs
        for _, g in ipairs(s.forms) do
          for _, n in ipairs(g.needs) do elsewhere = elsewhere or (g ~= f and n == opt.name) end
        end
        if opt.applies[s.name] and not (elsewhere and not needed) and
          not (s.name == "account" and opt.name == "channel") then
          form.options[opt.name] = true
        end
      end
      command.forms[#command.forms + 1] = form
    end
    model.commands[#model.commands + 1] = command
  end
  return model
end

-- Whether an option applies to every command (--base-url, --help, --version).
function M.everywhere(model, opt)
  for _, c in ipairs(model.commands) do if not opt.applies[c.name] then return false end end
  return true
end

-- The positional arguments of a command's forms: [k] = { files = bool, dirs = bool,
-- words = {literal...} }, from the command table (a required field of kind "file" is a file)
-- and the synopses (a literal word such as account's add; a METAVAR with FILE in it).
function M.arguments(command)
  local rows = M.rows()
  local row = rows[command.name]
  local files = {}
  if row then
    for _, f in ipairs(row.fields) do
      if f.required then files[#files + 1] = f.kind == "file" end
    end
  end
  local args = {}
  for _, form in ipairs(command.forms) do
    local k = 0
    local skip = false
    for w in form.synopsis:gmatch("%S+") do
      if skip then
        skip = false
      elseif w:find("^%-%-") then
        skip = true
      elseif k == 0 then
        k = 1 -- the command's own name
      else
        local a = args[k] or { words = {} }
        args[k] = a
        local bare = w:gsub("^%[", ""):gsub("%]$", "")
        for alt in bare:gmatch("[^|]+") do
          if alt:find("^%l+$") then
            local seen = false
            for _, x in ipairs(a.words) do seen = seen or x == alt end
            if not seen then a.words[#a.words + 1] = alt end
          end
        end
        if bare:find("FILE") or files[k] then a.files = true end
        k = k + 1
      end
    end
  end
  return args
end

---------------------------------------------------------------------------------------------
-- Doc comments
---------------------------------------------------------------------------------------------

-- The LDoc blocks of a file (`ldoc_text`: of a text): { name, class, summary, text,
-- params = { {name, type, opt, desc} }, returns = { {group, type, desc} },
-- fields = { {name, desc} }, tags = {tag = value} }.
-- A block's name is its @function or @table, else the function or assignment after it; class
-- the @type it follows in the file.
function M.ldoc(path) return M.ldoc_text(read(path)) end

-- The same, of a text (docs/commands.luadoc as tools/commands_luadoc.lua makes it).
function M.ldoc_text(source)
  local lines = {}
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local blocks, class = {}, nil
  local i = 1
  while i <= #lines do
    if lines[i]:find("^%-%-%-") and not lines[i]:find("^%-%-%-%-") then
      local block = { params = {}, returns = {}, fields = {}, tags = {}, text = {} }
      local last
      while i <= #lines and lines[i]:find("^%-%-") and not lines[i]:find("^%-%-%-%-") do
        local text = lines[i]:gsub("^%-%-%-?%s?", "")
        local tag, rest = text:match("^@([%w_]+)(.*)$")
        if tag then
          local group = rest:match("^%[([^%]]*)%]")
          rest = trim(rest:gsub("^%[[^%]]*%]", ""))
          if tag == "tparam" then
            local t, name, desc = rest:match("^(%S+)%s+(%S+)%s*(.*)$")
            last = { name = name, type = t, opt = group and group:find("^opt") ~= nil, desc = desc }
            block.params[#block.params + 1] = last
          elseif tag == "param" then
            local name, desc = rest:match("^(%S+)%s*(.*)$")
            last = { name = name, opt = group and group:find("^opt") ~= nil, desc = desc }
            block.params[#block.params + 1] = last
          elseif tag == "treturn" then
            local t, desc = rest:match("^(%S+)%s*(.*)$")
            last = { group = tonumber(group) or 1, type = t, desc = desc }
            block.returns[#block.returns + 1] = last
          elseif tag == "return" then
            last = { group = tonumber(group) or 1, desc = rest }
            if rest == "nil" then last.type, last.desc = "nil", "" end
            block.returns[#block.returns + 1] = last
          elseif tag == "field" then
            local name, desc = rest:match("^(%S+)%s*(.*)$")
            last = { name = name, desc = desc }
            block.fields[#block.fields + 1] = last
          else
            block.tags[tag] = rest
            last = nil
          end
        elseif last then
          last.desc = trim((last.desc or "") .. " " .. text)
        else
          block.text[#block.text + 1] = text
        end
        i = i + 1
      end
      local after = lines[i] or ""
      block.name = block.tags["function"] or block.tags.table or block.tags.type or
        after:match("^function ([%w_.:]+)%(")
        or after:match("^([%w_.]+)%s*=")
      block.args = after:match("^function [%w_.:]+%(([^)]*)%)")
      if block.tags.type then class = block.tags.type end
      block.class = class
      block.summary = block.text[1]
      blocks[#blocks + 1] = block
    else
      i = i + 1
    end
  end
  return blocks
end

---------------------------------------------------------------------------------------------
-- docs/api.md
---------------------------------------------------------------------------------------------

-- The option names each call's signature in docs/api.md's table of calls gives in braces:
-- { ["faceswap.new"] = {"token", ...}, ["client:wait"] = {...}, ["client:batch"] = {...} },
-- and the retry options (its `| option |` table's first column).
function M.api_options(path)
  local text = read(path or "docs/api.md")
  local out = {}
  for call, braces in text:gmatch("`([%w_.:]+)%([^`{]-{([^}`]*)}%)?`") do
    out[call] = out[call] or {}
    for name in braces:gmatch("([%a_][%w_]*)[^,]*") do out[call][#out[call] + 1] = name end
  end
  local new = text:match("`faceswap%.new{([^}]*)}`")
  if new then
    out["faceswap.new"] = {}
    for name in new:gmatch("[%a_][%w_]*") do out["faceswap.new"][#out["faceswap.new"] + 1] = name end
  end
  out.retry = {}
  local in_table = false
  for line in text:gmatch("[^\n]+") do
    if line:find("^| option | default |") then
      in_table = true
    elseif in_table and line:find("^|") then
      for cell in line:match("^|([^|]*)|"):gmatch("`([%a_][%w_]*)[^`]*`") do
        out.retry[#out.retry + 1] = cell
      end
    elseif in_table then
      break
    end
  end
  return out
end

-- The text docs/api.md gives an option of faceswap.new, from its row of the table of calls:
-- the "; "-separated part that starts with the option's name in backticks.
function M.api_option_text(name, path)
  local text = read(path or "docs/api.md")
  local row = text:match("\n| `faceswap%.new{[^\n]*")
  if not row then return nil end
  local cell = row:match("^\n| `[^`]*` | (.*) |$") or ""
  for part in (cell .. ";"):gmatch("([^;]*);") do
    local rest = trim(part):match("^`" .. name .. "`%s*(.*)$")
    if rest then return (rest:gsub("%[([^%]]*)%]%([^)]*%)", "%1")) end
  end
  return nil
end

-- The date of this version's release heading in CHANGELOG.md ("## [0.2.0] - 2026-11-27"), or
-- nil when it has none yet.
function M.release_date(version)
  local text = read("CHANGELOG.md")
  return text:match("\n## %[" .. version:gsub("%p", "%%%0") .. "%] %- (%d%d%d%d%-%d%d%-%d%d)")
end

function M.version()
  return (require("faceswap")._VERSION:match("(%d+%.%d+%.%d+)"))
end

return M
