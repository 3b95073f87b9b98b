-- tools/types.lua: the ---@meta file of lua-faceswap for lua-language-server (LuaLS), so that
-- an editor completes and checks the client, job, error and task objects, every method with
-- its parameters and returns, every option and field. Written from:
--  * the core's command table (faceswap.commands): a method and a params class per command;
--  * the doc comments of lua/faceswap/init.lua and task.lua, docs/objects.luadoc and the
--    command methods' (tools/commands_luadoc.lua, from the same table) (LDoc): the other
--    methods, the module's functions, the job's and the error's fields;
--  * docs/api.md: the option names of faceswap.new, client:wait, client:batch, the retry
--    policy and the command methods' per-call options (its table); faceswap.new itself says each
--    option's type (a wrong one raises, naming it).
-- `make types` builds it into $(BUILD)/share/lua-faceswap/library/faceswap.lua; `make install`
-- and the rock install it (docs/editor.md). spec/unit/types_spec.lua checks that every public
-- method, option and field of the real objects has an annotation here.
local model = require "tools.model"

local M = {}

local function trim(s) return model.trim(s) end

-- Splits s at each occurrence of the plain text sep.
local function split(s, sep)
  local out, at = {}, 1
  while true do
    local i = s:find(sep, at, true)
    if not i then break end
    out[#out + 1] = s:sub(at, i - 1)
    at = i + #sep
  end
  out[#out + 1] = s:sub(at)
  return out
end

-- LDoc's text as LuaLS's Markdown: @{ref} and @{ref|text} as `ref` and text.
local function prose(s)
  return (s:gsub("@{([^}|]*)|([^}]*)}", "%2"):gsub("@{([^}]*)}", "`%1`"))
end

-- An LDoc type as a LuaLS one.
local LDOC_TYPES = {
  ["objects.job"] = "faceswap.job", ["objects.error"] = "faceswap.error",
  ["client"] = "faceswap.client", ["faceswap.task.task"] = "faceswap.task",
  ["int"] = "integer", ["func"] = "function", ["tab"] = "table", ["bool"] = "boolean",
}
local function conv(t)
  if not t then return "any" end
  local optional = t:find("^%?") ~= nil
  t = t:gsub("^%?", "")
  local list = t:match("^{(.*),%.%.%.}$")
  if list then
    local inner = conv(list)
    return (inner:find("|") and ("(" .. inner .. ")") or inner) .. "[]" .. (optional and "?" or "")
  end
  local parts = {}
  for p in (t .. "|"):gmatch("([^|]*)|") do parts[#parts + 1] = LDOC_TYPES[p] or p end
  local out = table.concat(parts, "|")
  if optional then out = (#parts > 1 and ("(" .. out .. ")") or out) .. "?" end
  return out
end

-- One line of description, made safe for a comment line.
local function oneline(s) return trim((s or ""):gsub("%s+", " ")) end

-- The returns of an LDoc block as LuaLS @return lines: group [1] and [2] merged by position,
-- a position some group lacks (or gives nil) optional.
local function returns(block)
  local groups, n = {}, 0
  for _, r in ipairs(block.returns) do
    groups[r.group] = groups[r.group] or {}
    table.insert(groups[r.group], r)
    n = math.max(n, #groups[r.group])
  end
  local out = {}
  for k = 1, n do
    local types, seen, optional, desc = {}, {}, false, {}
    for g = 1, #groups do
      local r = groups[g] and groups[g][k]
      if not r or r.type == "nil" then
        optional = true
      else
        local t = conv(r.type)
        if t:find("%?$") then optional, t = true, t:sub(1, -2) end
        if not seen[t] then seen[t], types[#types + 1] = true, t end
        if r.desc ~= "" then desc[#desc + 1] = r.desc end
      end
    end
    local t = table.concat(types, "|")
    if t == "" then t = "nil" elseif optional then t = (#types > 1 and "(" .. t .. ")" or t) .. "?" end
    out[#out + 1] = "---@return " .. t .. (#desc > 0 and (" # " .. oneline(prose(table.concat(desc, "; ")))) or "")
  end
  return out
end

-- The description lines of a block: its summary and text.
local function describe(lines, text)
  for _, line in ipairs(text) do
    if trim(line) ~= "" then lines[#lines + 1] = "--- " .. prose(line) end
  end
end

-- Option names in backticks of an LDoc description, with the text in parentheses after each:
-- "`interval` (the first poll's delay, 10 s), `on_update(job)` (...)".
local function ldoc_options(desc)
  local out = {}
  for name, rest in (desc or ""):gmatch("`([%a_][%w_]*)[^`]*`%s*(%b())") do
    out[#out + 1] = { name = name, desc = rest:sub(2, -2) }
  end
  -- the other names in backticks, outside the parentheses (whose prose may have backticked
  -- words that are no options: "returning `false, message`", "a `cancelled` error")
  for name in (desc or ""):gsub("%b()", ""):gmatch("`([%a_][%w_]*)[^`]*`") do
    local seen = false
    for _, o in ipairs(out) do seen = seen or o.name == name end
    if not seen then out[#out + 1] = { name = name, desc = "" } end
  end
  return out
end

-- Types of the options of wait, batch and the retry policy, where the docs give prose.
local OPTION_TYPES = {
  ["faceswap.wait_options"] = { on_update = "fun(job: faceswap.job)",
    on_error = "fun(err: faceswap.error, n: integer)", max_failures = "integer" },
  ["faceswap.batch_options"] = { concurrency = "integer", wait = "boolean|faceswap.wait_options",
    on_update = "fun(i: integer, job_or_err: faceswap.job|faceswap.error)",
    channels = "\"all\"|string[]", stop = "fun(): boolean?", ledger = "string",
    resubmit_unknown = "boolean" },
  ["faceswap.retry_options"] = { attempts = "integer",
    on_retry = "fun(err: faceswap.error, attempt: integer, delay: number)",
    sleep = "fun(seconds: number)", random = "fun(): number" },
  ["faceswap.call_options"] = { timeout = "number", retry = "faceswap.retry_options|false",
    channel = "string", wait = "boolean|faceswap.wait_options" },
  ["faceswap.download_options"] = { path = "string", sink = "fun(chunk: string): boolean?",
    max = "integer", timeout = "number", retry = "faceswap.retry_options|false" },
  ["faceswap.options"] = { encoding = "\"multipart\"|\"json\"", retry = "faceswap.retry_options|false",
    log = "(fun(level: \"debug\"|\"info\"|\"warn\", message: string, what: string))|false" },
}

-- The per-call options of the command methods, from the table of docs/api.md's "Per-call
-- options": { {name, methods, desc} } in its order.
local function call_options()
  local f = assert(io.open("docs/api.md", "rb"))
  local text = f:read("*a")
  f:close()
  local section = text:match("\n## Per%-call options\n(.-)\n## ") or text:match("\n## Per%-call options\n(.*)$")
  local out = {}
  for name, methods, desc in (section or ""):gmatch("\n| `([%a_][%w_]*)` | ([^|]*) | ([^\n]*) |") do
    out[#out + 1] = { name = name, methods = methods, desc = desc }
  end
  return out
end

-- faceswap.new's type for an option, as it says when given a wrong one: "string", "string|false".
local function new_option_type(name)
  local faceswap = require "faceswap"
  local ok, err = pcall(faceswap.new, { token = "types", [name] = coroutine.create(function() end) })
  if ok then return "any" end
  local want = tostring(err):match("must be a (%a+ ?o?r? ?%a*),")
  if not want then return "any" end
  return (want:gsub(" or ", "|"))
end

-- The option classes: { class, names = {name = {desc, type}} in order }.
local function option_class(class, ldoc_desc, api_names, extra_desc)
  local list, by = {}, {}
  local function add(name, desc)
    if not by[name] then
      by[name] = { name = name, desc = desc or "" }
      list[#list + 1] = by[name]
    elseif (by[name].desc == "") and desc then
      by[name].desc = desc
    end
  end
  for _, o in ipairs(ldoc_options(ldoc_desc)) do add(o.name, o.desc) end
  for _, name in ipairs(api_names or {}) do add(name, extra_desc and extra_desc(name)) end
  for _, o in ipairs(list) do
    local hint = OPTION_TYPES[class] and OPTION_TYPES[class][o.name]
    if hint then
      o.type = hint
    elseif o.name:find("^on_") then
      o.type = "function"
    else
      o.type = "number"
    end
  end
  return list
end

local function find(blocks, name)
  for _, b in ipairs(blocks) do if b.name == name then return b end end
end

-- "* `a`, `b` (type): text" items of faceswap.new's LDoc: name -> text.
local function new_bullets(desc)
  local out = {}
  for _, item in ipairs(split(desc or "", " * ")) do
    local names, text = item:match("^(`.-`) %b()%s*:%s*(.*)$")
    for name in (names or ""):gmatch("`([%a_][%w_]*)`") do out[name] = oneline(prose(text)) end
  end
  return out
end

-- The backticked words of a text: "`created`, `started`" -> {"created", "started"}.
local function ticked(text)
  local out = {}
  for w in (text or ""):gmatch("`([%a_][%w_]*)`") do out[#out + 1] = w end
  return out
end

local ANSWERS = { job = "faceswap.job", jobids = "string[]", account = "faceswap.account",
  accounts = "table<string, faceswap.account>", none = "true" }
local FIELD_TYPES = { file = "string|faceswap.file", text = "string", prose = "string" }

-- The first word of a field's LDoc description as its type.
local function field_type(desc)
  local word = (desc or ""):match("^(%a+)")
  if word == "string" or word == "number" or word == "boolean" then return word end
  if word == "array" then return "table[]" end
  return "any"
end

-- A field's description without the type it starts with.
local function untyped(desc)
  desc = desc or ""
  local rest = desc:match("^array of tables:?%s*(.*)$")
  if rest then return rest end
  local word, after = desc:match("^(%a+)[,:]?%s*(.*)$")
  if word == "string" or word == "number" or word == "boolean" then return after end
  return desc
end

local JOB_TYPES = { status = "faceswap.status", attachments = "faceswap.attachment[]",
  code = "integer", credits = "integer", credits_left = "integer", credits_total = "integer" }
local ERROR_TYPES = { kind = "faceswap.kind", code = "integer", job = "faceswap.job",
  last_error = "faceswap.error", errorDetails = "any" }
-- fields an error always has
local ERROR_ALWAYS = { kind = true, error = true, retryable = true, sent = true }

function M.render()
  local faceswap = require "faceswap"
  local init = model.ldoc("lua/faceswap/init.lua")
  local taskdoc = model.ldoc("lua/faceswap/task.lua")
  local objects = model.ldoc("docs/objects.luadoc")
  local api = model.api_options()
  local version = model.version()
  local out = {}
  local function add(...) for i = 1, select("#", ...) do out[#out + 1] = (select(i, ...)) end end

  add("---@meta faceswap",
      "-- lua-faceswap " .. version .. ": types for lua-language-server, generated by tools/types.lua from",
      "-- the command table (faceswap.commands), the doc comments of lua/faceswap/*.lua and",
      "-- docs/objects.luadoc, and docs/api.md. Do not edit: `make types` makes it again.",
      "-- A definition file: its functions have no bodies; the library is `require \"faceswap\"`.",
      "")

  -- aliases: the error kinds and the job statuses, from docs/objects.luadoc
  local job_fields = find(objects, "job_fields")
  local error_fields = find(objects, "error_fields")
  local function field_desc(block, name)
    for _, f in ipairs(block.fields) do if f.name == name then return f.desc end end
  end
  add("---@alias faceswap.kind")
  for _, k in ipairs(ticked(field_desc(error_fields, "kind"))) do add("---| \"" .. k .. "\"") end
  add("", "---@alias faceswap.status")
  for _, s in ipairs(ticked(field_desc(job_fields, "status"))) do add("---| \"" .. s .. "\"") end
  add("")

  -- the job
  local job_block = find(objects, "job")
  add("--- " .. oneline(prose(table.concat(job_block and job_block.text or {}, " "))))
  add("---@class faceswap.job")
  for _, f in ipairs(job_fields.fields) do
    local t = JOB_TYPES[f.name] or field_type(f.desc)
    add("---@field " .. f.name .. (f.name == "jobid" and "" or "?") .. " " .. t .. " " ..
      oneline(prose(untyped(f.desc))))
  end
  add("local job = {}", "")
  for _, b in ipairs(objects) do
    local method = b.name and b.name:match("^job:([%w_]+)$")
    if method then
      local lines = {}
      describe(lines, b.text)
      for _, l in ipairs(lines) do add(l) end
      for _, r in ipairs(returns(b)) do add(r) end
      add("function job:" .. method .. "() end", "")
    end
  end
  add("--- An attachment of a job: a result's file on Discord's CDN.",
      "---@class faceswap.attachment")
  local attach = field_desc(job_fields, "attachments") or ""
  for _, name in ipairs(ticked(attach)) do
    add("---@field " .. name .. "? " .. ((name == "size" or name == "width" or name == "height")
      and "integer" or "string"))
  end
  add("")

  -- the error
  local error_block = find(objects, "error")
  add("--- " .. oneline(prose(table.concat(error_block and error_block.text or {}, " "))))
  add("---@class faceswap.error")
  for _, f in ipairs(error_fields.fields) do
    local t = ERROR_TYPES[f.name] or field_type(f.desc)
    add("---@field " .. f.name .. (ERROR_ALWAYS[f.name] and "" or "?") .. " " .. t .. " " ..
      oneline(prose(untyped(f.desc))))
  end
  add("")

  -- the task
  local task_block = find(taskdoc, "task")
  add("--- " .. oneline(prose(table.concat(task_block and task_block.text or {}, " "))))
  add("---@class faceswap.task", "local task = {}", "")
  for _, b in ipairs(taskdoc) do
    local method = b.name and b.name:match("^task:([%w_]+)$")
    if method then
      local lines = {}
      describe(lines, b.text)
      for _, l in ipairs(lines) do add(l) end
      local rs = returns(b)
      if #rs == 0 and method == "result" then
        rs = { "---@return any ... # " .. oneline(prose(b.returns[1] and b.returns[1].desc or "")) }
      end
      for _, r in ipairs(rs) do add(r) end
      add("function task:" .. method .. "() end", "")
    end
  end

  -- the options
  local new_block = find(init, "M.new")
  local new_desc = new_block and new_block.params[1] and new_block.params[1].desc or ""
  local bullets = new_bullets(new_desc)
  local new_names = {}
  for _, item in ipairs(split(new_desc, " * ")) do
    for name in (item:match("^(`.-`) %b()") or ""):gmatch("`([%a_][%w_]*)`") do new_names[#new_names + 1] = name end
  end
  for _, name in ipairs(api["faceswap.new"] or {}) do new_names[#new_names + 1] = name end
  add("--- The options of `faceswap.new`, all optional.", "---@class faceswap.options")
  local seen = {}
  for _, name in ipairs(new_names) do
    if not seen[name] then
      seen[name] = true
      local t = OPTION_TYPES["faceswap.options"][name] or new_option_type(name)
      add("---@field " .. name .. "? " .. t .. " " .. oneline(bullets[name] or
        prose(model.api_option_text(name) or "")))
    end
  end
  add("")
  -- the per-call options of the command methods: the rows of docs/api.md's table
  add("--- The options of one call of a command method (its last argument): docs/api.md, per-call options.",
      "---@class faceswap.call_options")
  for _, o in ipairs(call_options()) do
    add("---@field " .. o.name .. "? " .. OPTION_TYPES["faceswap.call_options"][o.name] .. " " ..
      oneline(prose(o.desc)) .. (o.methods == "all" and "" or "; only for " .. oneline(o.methods)))
  end
  add("")
  local wait_block = find(init, "client:wait")
  local batch_block = find(init, "client:batch")
  local retry_block = find(init, "M.retry")
  local download_block = find(init, "client:download")
  local function opts_desc(block)
    for _, p in ipairs(block and block.params or {}) do if p.name == "opts" then return p.desc end end
  end
  local option_classes = {
    { "faceswap.wait_options", "The options of `client:wait`.", opts_desc(wait_block), api["client:wait"] },
    { "faceswap.batch_options", "The options of `client:batch`.", opts_desc(batch_block), api["client:batch"] },
    { "faceswap.retry_options", "The retry policy: `faceswap.new{retry = ...}`, `faceswap.retry(fn, opts)`.",
      opts_desc(retry_block), api.retry },
    { "faceswap.download_options", "The options of `client:download`.", opts_desc(download_block) },
  }
  for _, c in ipairs(option_classes) do
    add("--- " .. c[2], "---@class " .. c[1])
    for _, o in ipairs(option_class(c[1], c[3], c[4])) do
      add("---@field " .. o.name .. "? " .. o.type .. (o.desc ~= "" and (" " .. oneline(prose(o.desc))) or ""))
    end
    add("")
  end

  -- what the commands take and give
  add("--- A file to upload: its bytes and name (its type is taken from the bytes when not given).",
      "---@class faceswap.file",
      "---@field data string the file's bytes",
      "---@field filename string the name sent with it",
      "---@field content_type? string sent as given, unchecked",
      "",
      "--- An account: `client:account(channel)`, and the values of `client:accounts()`.",
      "---@class faceswap.account",
      "---@field channel string",
      "---@field server string",
      "---@field discord string the account's Discord token, masked by the API",
      "---@field credits? {timestamp: string?, total: number?, used: number?}",
      "")
  local row_keys, field_keys = {}, {}
  for _, c in ipairs(faceswap.commands) do
    for k, v in pairs(c) do if k ~= "fields" then row_keys[k] = type(v) end end
    for _, f in ipairs(c.fields) do for k, v in pairs(f) do field_keys[k] = type(v) end end
  end
  local function keys(t)
    local list = {}
    for k in pairs(t) do list[#list + 1] = k end
    table.sort(list)
    return list
  end
  add("--- A row of the command table (`faceswap.commands`): one command of the API.",
      "---@class faceswap.command")
  for _, k in ipairs(keys(row_keys)) do add("---@field " .. k .. " " .. row_keys[k]) end
  add("---@field fields faceswap.command_field[] its params, in order", "",
      "--- A param of a command.", "---@class faceswap.command_field")
  for _, k in ipairs(keys(field_keys)) do add("---@field " .. k .. " " .. field_keys[k]) end
  add("")
  for _, c in ipairs(faceswap.commands) do
    if #c.fields > 0 or c.common then
      add("--- The params of `client:" .. c.name .. "` (" .. c.method .. " " .. c.path .. ").",
          "---@class faceswap.params." .. c.name)
      for _, f in ipairs(c.fields) do
        add("---@field " .. f.name .. (f.required and "" or "?") .. " " .. FIELD_TYPES[f.kind] ..
          (f.required and " required" or ""))
      end
      if c.common then
        add("---@field channel? string the account's Discord channel (default: the client's `channel`)",
            "---@field replyUrl? string where the API posts the finished job (default: the client's `reply_url`)",
            "---@field replyRef? string sent back with it, at most 1024 characters")
      end
      add("")
    end
  end

  -- the client
  local client_block = find(init, "client")
  add("--- " .. oneline(prose(table.concat(client_block and client_block.text or {}, " "))),
      "---@class faceswap.client", "local client = {}", "")
  local rows, done = model.rows(), {}
  local is_command = {}
  for _, c in ipairs(model.all_commands()) do is_command[c.name] = true end
  local function method_lines(b, name)
    local lines = {}
    describe(lines, b and b.text or {})
    local row = rows[name]
    local args = {}
    if row then
      if #lines == 0 then lines[#lines + 1] = "--- " .. row.summary .. " (" .. row.method .. " " .. row.path .. ")." end
      local required = false
      for _, f in ipairs(row.fields) do required = required or f.required end
      if name == "headshot" then
        lines[#lines + 1] = "---@param params string|faceswap.params.headshot the prompt, or the params"
        args[1] = "params"
      elseif row.path_channel and row.method ~= "POST" then
        lines[#lines + 1] = "---@param channel string the account's channel"
        args[1] = "channel"
      elseif #row.fields > 0 or row.common then
        lines[#lines + 1] = "---@param params" .. (required and "" or "?") .. " faceswap.params." .. name
        args[1] = "params"
      end
      lines[#lines + 1] = "---@param opts? faceswap.call_options this call's options" ..
        (#args == 0 and " (its only argument)" or "")
      args[#args + 1] = "opts"
      lines[#lines + 1] = "---@return " .. ANSWERS[row.answer] .. "? # the answer, or nil and the error"
      lines[#lines + 1] = "---@return faceswap.error? err"
    else
      for _, p in ipairs(b.params) do
        local t = conv(p.type)
        if p.name == "opts" and name == "wait" then t = "faceswap.wait_options" end
        if p.name == "opts" and name == "batch" then t = "faceswap.batch_options" end
        if p.name == "opts" and name == "download" then t = "faceswap.download_options" end
        if p.name == "opts" and is_command[name] then t = "faceswap.call_options" end
        if p.name == "list" and name == "batch" then t = "(string|faceswap.params.headshot|table)[]" end
        if p.name == "target" and name == "wait" then t = "string|faceswap.job|nil" end
        if p.name == "..." then t = "any" end
        local optional = p.opt and not t:find("%?$") and "?" or ""
        lines[#lines + 1] = "---@param " .. p.name .. optional .. " " .. t ..
          (p.desc ~= "" and (" " .. oneline(prose(p.desc))) or "")
        args[#args + 1] = p.name
      end
      if name == "wait" then
        lines[#lines + 1] = "---@overload fun(self: faceswap.client, target: nil, err: faceswap.error): " ..
          "nil, faceswap.error"
      end
      for _, r in ipairs(returns(b)) do lines[#lines + 1] = r end
    end
    lines[#lines + 1] = "function client:" .. name .. "(" .. table.concat(args, ", ") .. ") end"
    return lines
  end
  -- the command methods' LDoc as tools/commands_luadoc.lua writes it from the loaded core's
  -- rows (docs/commands.luadoc for this build), so a new row has its method here at once
  local command_docs = model.ldoc_text(require("tools.commands_luadoc").render(model.all_commands()))
  for _, blocks in ipairs { init, command_docs } do
    for _, b in ipairs(blocks) do
      local name = b.name and b.name:match("^client:([%w_]+)$")
      if name and not done[name] then
        done[name] = true
        for _, l in ipairs(method_lines(b, name)) do add(l) end
        add("")
      end
    end
  end
  for _, c in ipairs(faceswap.commands) do
    if not done[c.name] then
      done[c.name] = true
      for _, l in ipairs(method_lines(nil, c.name)) do add(l) end
      add("")
    end
  end

  -- the module
  add("--- " .. oneline(prose(init[1] and init[1].summary or "")),
      "---@class faceswap",
      "---@field _VERSION string \"lua-faceswap " .. version .. "\"",
      "---@field commands faceswap.command[] the command table: one row per command of the API",
      "local faceswap = {}", "")
  for _, b in ipairs(init) do
    local name = b.name and not b.name:find("[:]") and b.class == nil and b.name:gsub("^M%.", "")
    if name and name ~= "faceswap" and b.tags.module == nil then
      local lines = {}
      describe(lines, b.text)
      for _, l in ipairs(lines) do add(l) end
      local args = {}
      for _, p in ipairs(b.params) do
        local t = conv(p.type)
        if p.name == "opts" and name == "new" then t = "faceswap.options" end
        if p.name == "opts" and name == "retry" then t = "faceswap.retry_options" end
        if p.name == "fn" and name == "retry" then t = "fun(): any, faceswap.error?" end
        if p.name == "v" then t = "any" end
        local optional = p.opt and "?" or ""
        add("---@param " .. p.name .. optional .. " " .. t .. " " ..
          oneline(prose(name == "new" and "the options (faceswap.options)" or p.desc)))
        args[#args + 1] = p.name
      end
      local rs = returns(b)
      if name == "type" then rs = { "---@return (\"client\"|\"job\"|\"error\"|\"task\")? # " ..
        oneline(prose(b.returns[1] and b.returns[1].desc or "")) } end
      if name == "retry" then rs = { "---@return any ... # what `fn` returned last" } end
      for _, r in ipairs(rs) do add(r) end
      add("function faceswap." .. name .. "(" .. table.concat(args, ", ") .. ") end", "")
    end
  end
  add("return faceswap")
  return (table.concat(out, "\n"):gsub(" +\n", "\n")) .. "\n"
end

return M
