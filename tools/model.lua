-- tools/model.lua: what the generators of tools/ read, in one place.
--  * the command table of the C core (faceswap.commands, csrc/command.c);
--  * the command line as faceswap.cli has it: its help text (M.usage) parsed into
--    subcommands and options, and which option applies to which subcommand, asked of
--    faceswap.cli.main itself (a usage check answers before any token or network is needed);
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

-- The command table's row of each name.
function M.rows()
  local rows = {}
  for _, c in ipairs(M.commands()) do rows[c.name] = c end
  return rows
end

---------------------------------------------------------------------------------------------
-- The command line
---------------------------------------------------------------------------------------------

-- The sections of the CLI's help: "commands:" and "options:" entries, each
-- { synopsis, help }, and the "environment:" and "exit status:" texts. An entry is a line that
-- starts with two spaces; its help is at column 21 or on the lines below, indented 20.
local function parse_usage(usage)
  local out = { commands = {}, options = {}, head = usage:match("^usage: ([^\n]*)") }
  local section, entry, tail
  for line in (usage .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^(%l[%l ]*):%s*(.*)$")
    if name == "commands" or name == "options" then
      section, entry, tail = out[name], nil, nil
    elseif name == "environment" or name == "exit status" then
      section, entry = nil, nil
      tail = name
      out[tail] = line:match("^[^:]*:%s*(.*)$")
    elseif line == "" then
      section, entry, tail = nil, nil, nil
    elseif tail then
      out[tail] = out[tail] .. " " .. trim(line)
    elseif section and line:find("^                    %S") then
      assert(entry, "a help line without an entry: " .. line)
      entry.help = trim(entry.help .. " " .. line:sub(21))
    elseif section and line:find("^  %S") then
      entry = { synopsis = trim(line), help = "" }
      if section == out.options then
        -- "--name METAVAR  help": help after the first run of two spaces
        local synopsis, help = line:match("^  (%S+ ?%S*)%s%s+(.*)$")
        if synopsis and not synopsis:find(",$") then entry.synopsis, entry.help = synopsis, help end
      elseif #line > 20 and line:sub(20, 20) == " " and line:sub(21, 21) ~= " " then
        entry.synopsis, entry.help = trim(line:sub(3, 19)), line:sub(21)
      end
      section[#section + 1] = entry
    end
  end
  return out
end

-- A stream for faceswap.cli.main that keeps what is written.
local function sink()
  local s = { text = "" }
  function s.write(self, ...)
    for i = 1, select("#", ...) do self.text = self.text .. tostring((select(i, ...))) end
    return self
  end
  function s.read() return nil end
  return s
end

-- Runs faceswap.cli.main on args with no token, no terminal and no input: returns its exit
-- status and what it wrote on stderr. Nothing can reach the network: without a token the CLI
-- stops right after its usage checks.
local function probe(main, args)
  local out, err = sink(), sink()
  local ok, status = pcall(main, args, { stdout = out, stderr = err, stdin = sink(), tty = false,
    getenv = function() return nil end, catch_signals = false })
  if not ok then return nil, tostring(status) end
  return status, err.text
end

local NO_TOKEN = "no token: set USEAPI_TOKEN"

-- The command line: { commands = { {name, forms = { {synopsis, help, words} }, args} ... },
-- options = { {name, metavar, help, applies = {command = true}} ... }, environment,
-- exit_status = { {code, text} }, head }.
--  * A form's words are its synopsis as arguments: literal words as they are, METAVARs as a
--    sample value, [OPTIONAL] ones left out; --options with a sample value.
--  * An option applies to a command when adding it to one of the command's forms leaves only
--    the missing token to complain about; an option the form needs to pass at all (delall's
--    --yes) is found the same way and kept in form.needs.
function M.cli()
  local cli = require("faceswap.cli")
  local usage = parse_usage(cli.usage)
  local model = { commands = {}, options = {}, head = usage.head, environment = usage.environment }
  local by_name = {}
  for _, o in ipairs(usage.options) do
    for part in (o.synopsis .. ", "):gmatch("(%-%-.-), ") do
      local name, metavar = trim(part):match("^%-%-([%w-]+)%s*(.*)$")
      assert(name, "an option line of the help that names no option: " .. o.synopsis)
      local opt = { name = name, metavar = metavar ~= "" and metavar or nil, help = o.help,
                    applies = {} }
      model.options[#model.options + 1] = opt
      by_name[name] = opt
    end
  end
  local function sample(opt) return opt.metavar and (opt.metavar:match("^(%l+)|") or "1") end
  for _, c in ipairs(usage.commands) do
    local words, name = {}, c.synopsis:match("^(%S+)")
    local k, parts = 1, {}
    for w in c.synopsis:gmatch("%S+") do parts[#parts + 1] = w end
    while k <= #parts do
      local w = parts[k]
      local opt = w:match("^%-%-([%w-]+)$")
      if opt then
        words[#words + 1] = w
        if by_name[opt] and by_name[opt].metavar then
          words[#words + 1] = sample(by_name[opt])
          k = k + 1
        end
      elseif not w:find("^%[") then
        words[#words + 1] = w:find("%u") and "x" or w
      end
      k = k + 1
    end
    local command
    for _, known in ipairs(model.commands) do if known.name == name then command = known end end
    if not command then
      command = { name = name, forms = {} }
      model.commands[#model.commands + 1] = command
    end
    command.forms[#command.forms + 1] = { synopsis = c.synopsis, help = c.help, words = words,
                                          needs = {} }
  end
  local function with(words, extra)
    local args = {}
    for _, w in ipairs(words) do args[#args + 1] = w end
    for _, w in ipairs(extra) do args[#args + 1] = w end
    return args
  end
  for _, command in ipairs(model.commands) do
    for _, form in ipairs(command.forms) do
      local status, err = probe(cli.main, form.words)
      if not err:find(NO_TOKEN, 1, true) then -- an option the form needs: try each flag
        for _, opt in ipairs(model.options) do
          if not opt.metavar then
            local s2, e2 = probe(cli.main, with(form.words, { "--" .. opt.name }))
            if s2 == 2 and e2:find(NO_TOKEN, 1, true) then
              form.needs[#form.needs + 1] = opt.name
              break
            end
          end
        end
        assert(#form.needs > 0, "faceswap " .. form.synopsis .. ": the CLI refuses it: " ..
          tostring(status) .. " " .. tostring(err))
      end
      local needs = {}
      for _, n in ipairs(form.needs) do needs[#needs + 1] = "--" .. n end
      for _, opt in ipairs(model.options) do
        local extra = { "--" .. opt.name, sample(opt) }
        local s, e = probe(cli.main, with(with(form.words, needs), extra))
        if opt.name == "help" or opt.name == "version" then
          if s == 0 then opt.applies[command.name] = true end
        elseif s == 2 and e:find(NO_TOKEN, 1, true) then
          opt.applies[command.name] = true
          form.options = form.options or {}
          form.options[opt.name] = true
        end
      end
    end
  end
  model.exit_status = {}
  for code, text in (usage["exit status"] or ""):gmatch("(%d+) ([^%d]+)") do
    model.exit_status[#model.exit_status + 1] = { code = tonumber(code), text = trim(text:gsub(",%s*$", "")) }
  end
  model.by_name = by_name
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

-- The LDoc blocks of a file: { name, class, summary, text, params = { {name, type, opt, desc} },
-- returns = { {group, type, desc} }, fields = { {name, desc} }, tags = {tag = value} }.
-- A block's name is its @function or @table, else the function or assignment after it; class
-- the @type it follows in the file.
function M.ldoc(path)
  local lines = {}
  for line in (read(path) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
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
