-- The types for the editor (issue 21, item 6): tools/types.lua writes a ---@meta file for
-- lua-language-server, which `make install` and the rock install (docs/editor.md). Every
-- public method, option and field of the real objects, enumerated at run time, has its
-- annotation there; and the file is valid Lua whose every annotation line parses.
-- (lua-language-server itself is not packaged for Debian 12, so the annotations are checked
-- by the small grammar below: LuaLS's @meta, @class, @field, @param, @return, @alias, @overload.)
local faceswap = require "faceswap"
local model = require "tools.model"

local TYPES = require("tools.types").render()

-- The file as classes: name -> { fields = {name = line}, methods = {name = {args, doc}} },
-- aliases: name -> true. A class's methods are the functions of the local the @class line
-- annotates (`local client = {}`); each method's doc is the comment lines right above it.
local function parse(text)
  local classes, aliases, locals = {}, {}, {}
  local class, doc = nil, {}
  for line in text:gmatch("[^\n]+") do
    local name = line:match("^%-%-%-@class ([%w_.]+)")
    if name then
      class = { fields = {}, methods = {} }
      classes[name] = class
      doc = {}
    elseif line:find("^%-%-%-@alias ") then
      aliases[line:match("^%-%-%-@alias ([%w_.]+)")] = true
    elseif line:find("^%-%-%-@field ") and class then
      class.fields[line:match("^%-%-%-@field ([%w_]+)")] = line
    elseif line:find("^%-%-") then
      doc[#doc + 1] = line
    else
      local var = line:match("^local ([%w_]+) = {}$")
      if var and class then locals[var] = class end
      local owner, method, args = line:match("^function ([%w_]+)[:.]([%w_]+)%(([^)]*)%) end$")
      if owner then
        local c = assert(locals[owner], "a function of an unannotated table: " .. line)
        c.methods[method] = { args = args, doc = doc }
      end
      doc = {}
      if line ~= "" and not var and not owner and line ~= "return faceswap" then class = nil end
    end
  end
  return classes, aliases
end

-- A LuaLS type expression, parsed from position i of s: returns the position after it, or
-- nil. Every name it uses goes into names.
local function parse_type(s, i, names)
  local function skip(j) return s:match("^%s*()", j) end
  local union
  -- `name: type` items separated by commas, names matching pattern, from j: the position
  -- after the character that ends the list (checked by the caller), or nil.
  local function fields(j, pattern)
    repeat
      local name, after = s:match(pattern, j)
      if not name then return nil end
      j = union(after)
      if not j then return nil end
      j = skip(j)
      local ch = s:sub(j, j)
      j = j + 1
    until ch ~= ","
    return j
  end
  local function primary(j)
    j = skip(j)
    if s:sub(j, j) == "(" then
      j = union(j + 1)
      if not j or s:sub(skip(j), skip(j)) ~= ")" then return nil end
      return skip(j) + 1
    end
    if s:sub(j, j) == '"' then
      local e = s:find('"', j + 1, true)
      return e and e + 1
    end
    if s:sub(j, j) == "{" then -- {name: type, ...}
      j = fields(j + 1, "^%s*([%a_][%w_]*)%s*:()")
      return j and s:sub(j - 1, j - 1) == "}" and j or nil
    end
    if s:find("^fun%(", j) then
      j = j + 4
      if s:sub(skip(j), skip(j)) ~= ")" then
        j = fields(j, "^%s*([%a_][%w_]*%??)%s*:()")
        if not j or s:sub(j - 1, j - 1) ~= ")" then return nil end
      else
        j = skip(j) + 1
      end
      if s:sub(skip(j), skip(j)) == ":" then
        repeat
          j = union(skip(j) + 1)
          if not j then return nil end
        until s:sub(skip(j), skip(j)) ~= "," or s:find("^%s*,%s*[%a_][%w_]*%s*:", j)
      end
      return j
    end
    local name, after = s:match("^([%a_][%w_.]*)()", j)
    if not name then return nil end
    names[name] = true
    if name == "table" and s:sub(after, after) == "<" then
      local k = union(after + 1)
      if not k or s:sub(skip(k), skip(k)) ~= "," then return nil end
      k = union(skip(k) + 1)
      if not k or s:sub(skip(k), skip(k)) ~= ">" then return nil end
      return skip(k) + 1
    end
    return after
  end
  local function postfix(j)
    j = primary(j)
    while j do
      if s:sub(j, j + 1) == "[]" then j = j + 2
      elseif s:sub(j, j) == "?" then j = j + 1
      else break end
    end
    return j
  end
  union = function(j)
    j = postfix(j)
    while j and s:sub(skip(j), skip(j)) == "|" do j = postfix(skip(j) + 1) end
    return j
  end
  return union(i)
end

local BUILTIN = { string = true, number = true, integer = true, boolean = true, table = true,
  ["function"] = true, any = true, ["nil"] = true, userdata = true, thread = true,
  ["true"] = true, ["false"] = true, lightuserdata = true }

-- The annotation lines that do not parse, and the type names used but never defined.
local function bad_lines(text)
  local bad, names = {}, {}
  local classes, aliases = parse(text)
  for line in text:gmatch("[^\n]+") do
    local tag, rest = line:match("^%-%-%-@(%a+)%s*(.*)$")
    local ok
    if tag == "meta" then
      ok = rest:find("^[%w_.]*$") ~= nil
    elseif tag == "class" or tag == "alias" then
      ok = rest:find("^[%w_.]+$") ~= nil
    elseif tag == "field" or tag == "param" then
      local after = rest:match("^[%a_][%w_]*%??%s+()") or rest:match("^%.%.%.%s+()")
      ok = after and parse_type(rest, after, names) ~= nil
    elseif tag == "return" then
      local after = parse_type(rest, 1, names)
      local tail = after and rest:sub(after)
      ok = tail and (tail == "" or tail:find("^ [%a_][%w_]*$") or tail:find("^ %.%.%.") or
        tail:find("^ [%a_][%w_]* # .") or tail:find("^ # .")) ~= nil
    elseif tag == "overload" then
      ok = rest:find("^fun%(") and parse_type(rest, 1, names) == #rest + 1
    elseif tag then
      ok = false
    elseif line:find("^%-%-%-|") then
      ok = line:find('^%-%-%-| "[%w_]+"$') ~= nil
    else
      ok = true
    end
    if not ok then bad[#bad + 1] = line end
  end
  for name in pairs(names) do
    if not BUILTIN[name] and not classes[name] and not aliases[name] then
      bad[#bad + 1] = "undefined type " .. name
    end
  end
  table.sort(bad)
  return bad
end

-- Walks the upvalues of fn (and of the functions among them, a few levels deep) for a table
-- upvalue of that name.
local function upvalue(fn, name, depth)
  depth = depth or 4
  for i = 1, 255 do
    local n, v = debug.getupvalue(fn, i)
    if not n then break end
    if n == name and type(v) == "table" then return v end
    if type(v) == "function" and depth > 0 then
      local found = upvalue(v, name, depth - 1)
      if found then return found end
    end
  end
end

local function keys(t)
  local list = {}
  for k in pairs(t or {}) do if type(k) == "string" then list[#list + 1] = k end end
  table.sort(list)
  return list
end

local function sorted_union(...)
  local set, list = {}, {}
  for i = 1, select("#", ...) do
    for _, k in ipairs((select(i, ...))) do
      if not set[k] then set[k], list[#list + 1] = true, k end
    end
  end
  table.sort(list)
  return list
end

local JOB_JSON = '{"jobid":"8a1f574fdbf79e8cd57e070476d9d5f3","verb":"faceswap-headshot",' ..
  '"status":"started","content":"x"}'

-- Every public name of the library at run time, as "class.name" (methods as "class:name").
local function public_names()
  local client = faceswap.new { token = "types-token", base_url = "http://127.0.0.1:1", retry = false }
  local names = {}
  local function add(class, list, sep)
    for _, k in ipairs(list) do
      if not k:find("^_") or k == "_VERSION" then names[#names + 1] = class .. (sep or ".") .. k end
    end
  end
  add("faceswap.client", keys(getmetatable(client).__index), ":")
  local task = client:spawn(function() end)
  client:run()
  add("faceswap.task", keys(getmetatable(task).__index), ":")
  -- the job's __index is a C closure over one table: field names and method names (Lua 5.1's
  -- debug library does not read a C function's upvalues); and the names csrc/job.c gives it
  local job = assert(faceswap.decode(JOB_JSON))
  local _, lookup = debug.getupvalue(debug.getmetatable(job).__index, 1)
  local job_fields, job_methods = {}, {}
  for _, k in ipairs(keys(lookup)) do
    table.insert(type(lookup[k]) == "function" and job_methods or job_fields, k)
  end
  local c = assert(io.open("csrc/job.c", "rb"))
  local source = c:read("*a")
  c:close()
  for _, list in ipairs { source:match("field_names%[F_COUNT%] = (%b{})"),
                          source:match("derived%[%] = (%b{})") } do
    for k in list:gmatch('"([%a_][%w_]*)"') do job_fields[#job_fields + 1] = k end
  end
  for k in source:match("luaL_Reg methods%[%] = (%b{})"):gmatch('{"([%a_][%w_]*)", job_') do
    job_methods[#job_methods + 1] = k
  end
  add("faceswap.job", sorted_union(job_fields))
  add("faceswap.job", sorted_union(job_methods), ":")
  -- an error's fields: those of real errors, every field the C core sets (csrc/error.c), and
  -- every field the Lua layer gives one (core.error{...} and err.NAME = ...)
  local fields = {}
  local _, transport = client:job("8a1f574fdbf79e8cd57e070476d9d5f3")
  local _, bad = faceswap.decode("{")
  for _, e in ipairs { transport, bad } do for _, k in ipairs(keys(e)) do fields[#fields + 1] = k end end
  local function scan(path, pattern)
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    for inner in text:gmatch(pattern) do
      for k in inner:gmatch("([%a_][%w_]*)%s*=[^=]") do fields[#fields + 1] = k end
    end
    return text
  end
  for name in io.popen("ls lua/faceswap/*.lua"):lines() do
    local text = scan(name, "core%.error%s*(%b{})")
    for k in text:gmatch("%f[%w_]err%.([%a_][%w_]*)%s*=[^=]") do fields[#fields + 1] = k end
  end
  c = assert(io.open("csrc/error.c", "rb"))
  for k in c:read("*a"):gmatch('lua_setfield%(L, %-2, "([%a_][%w_]*)"%)') do
    if not k:find("^__") then fields[#fields + 1] = k end
  end
  c:close()
  add("faceswap.error", sorted_union(fields))
  add("faceswap", keys(faceswap))
  -- faceswap.new's options: the code's check list and docs/api.md's
  local checks = upvalue(faceswap.new, "option_checks")
  assert(checks, "faceswap.new's list of options (option_checks) not found")
  local api = model.api_options()
  add("faceswap.options", sorted_union(keys(checks), api["faceswap.new"]))
  -- the options of wait, batch and retry: the code's lists and docs/api.md's
  local wait = upvalue(client.wait, "wait_defaults")
  assert(wait, "client:wait's list of options (wait_defaults) not found")
  add("faceswap.wait_options", sorted_union(keys(wait), { "on_update", "on_error" }, api["client:wait"]))
  add("faceswap.batch_options", api["client:batch"])
  local retry_checks = upvalue(require("faceswap.retry").options, "CHECKS")
  assert(retry_checks, "the retry policy's list of options (CHECKS) not found")
  add("faceswap.retry_options", sorted_union(keys(retry_checks), api.retry))
  -- each command's params
  for _, row in ipairs(faceswap.commands) do
    local params = {}
    for _, f in ipairs(row.fields) do params[#params + 1] = f.name end
    if row.common then
      for _, k in ipairs { "channel", "replyUrl", "replyRef" } do params[#params + 1] = k end
    end
    if #params > 0 then add("faceswap.params." .. row.name, params) end
  end
  client:close()
  return names
end

-- The public names with no annotation in text: a method needs a description and a @param
-- for each of its parameters, a field or option its @field.
local function missing(text, names)
  local classes = parse(text)
  local out = {}
  for _, full in ipairs(names) do
    local class, sep, name = full:match("^(.-)([.:])([%w_]+)$")
    local c = classes[class]
    local ok = false
    if c and sep == ":" then
      local m = c.methods[name]
      if m then
        local described, params = false, {}
        for _, line in ipairs(m.doc) do
          if line:find("^%-%-%- %S") then described = true end
          local p = line:match("^%-%-%-@param ([%w_.]+)")
          if p then params[p] = true end
        end
        ok = described
        for arg in m.args:gmatch("[^,%s]+") do ok = ok and params[arg] == true end
      end
    elseif c then
      ok = c.fields[name] ~= nil or (class == "faceswap" and c.methods[name] ~= nil and
        #c.methods[name].doc > 0)
    end
    if not ok then out[#out + 1] = full end
  end
  return out
end

describe("the LuaLS types (tools/types.lua) #unit", function()
  it("are a ---@meta file for require \"faceswap\" that Lua loads", function()
    assert.equal("---@meta faceswap\n", TYPES:match("^[^\n]*\n"))
    assert.truthy((rawget(_G, "loadstring") or load)(TYPES, "=faceswap.lua"))
    assert.equal("return faceswap\n", TYPES:match("[^\n]*\n$"))
  end)

  it("have annotation lines that all parse and name only defined types", function()
    assert.same({}, bad_lines(TYPES))
  end)

  it("catch a malformed annotation or an undefined type", function()
    local broken = TYPES:gsub("%-%-%-@return faceswap%.job%? # the job\n",
      "---@return faceswap.jobb? # the job\n---@param ) x\n", 1)
    assert.same({ "---@param ) x", "undefined type faceswap.jobb" }, bad_lines(broken))
  end)

  it("annotate every public method, field and option of the real objects", function()
    local names = public_names()
    -- the enumeration found what it must: a sample of each kind
    for _, name in ipairs { "faceswap.client:headshot", "faceswap.client:wait", "faceswap.client:saveid",
      "faceswap.client:close", "faceswap.task:cancel", "faceswap.job.jobid", "faceswap.job.credits_left",
      "faceswap.job:urls", "faceswap.error.kind", "faceswap.error.last_error", "faceswap.error.retry_after",
      "faceswap.options.ca_file", "faceswap.options.log", "faceswap.wait_options.on_error",
      "faceswap.batch_options.channels", "faceswap.retry_options.max_retry_after", "faceswap.new",
      "faceswap._VERSION", "faceswap.params.picsi.target_image_gif_or_video" } do
      local found = false
      for _, n in ipairs(names) do found = found or n == name end
      assert.truthy(found, "the run-time enumeration missed " .. name)
    end
    assert.same({}, missing(TYPES, names))
  end)

  it("fail the check when an annotation is missing", function()
    local names = public_names()
    local without = TYPES:gsub("\n%-%-%-@field last_error[^\n]*", "", 1)
      :gsub("\n%-%-%-@field ca_file[^\n]*", "", 1)
      :gsub("\n%-%-%-@param opts%? faceswap%.wait_options[^\n]*", "", 1)
    local m = missing(without, names)
    table.sort(m)
    assert.same({ "faceswap.client:wait", "faceswap.error.last_error", "faceswap.options.ca_file" }, m)
  end)

  it("give each command its method, with the params class of its row", function()
    local classes = parse(TYPES)
    local client = classes["faceswap.client"]
    local doc = table.concat(client.methods.saveid.doc, "\n")
    assert.truthy(doc:find("---@param params faceswap.params.saveid\n", 1, true), doc)
    assert.truthy(doc:find("---@return faceswap.job? # the answer, or nil and the error\n" ..
      "---@return faceswap.error? err", 1, true), doc)
    assert.equal("---@field image string|faceswap.file required", classes["faceswap.params.saveid"].fields.image)
    assert.equal("---@field options? string", classes["faceswap.params.changebg"].fields.options)
    assert.equal("channel, opts", client.methods.delete_account.args)
    assert.equal("opts", client.methods.jobs.args)
    assert.truthy(table.concat(client.methods.accounts.doc, "\n"):find(
      "---@return table<string, faceswap.account>?", 1, true))
  end)

  it("give every method that takes options its options parameter, and only real options", function()
    local classes = parse(TYPES)
    local client = faceswap.new { token = "types-token", base_url = "http://127.0.0.1:1", retry = false }
    -- the methods that take an options table, and the class of their options
    local takes = { wait = "faceswap.wait_options", batch = "faceswap.batch_options",
      download = "faceswap.download_options" }
    for _, c in ipairs(require("faceswap.core").commands("all")) do takes[c.name] = "faceswap.call_options" end
    for name, class in pairs(takes) do
      local m = assert(classes["faceswap.client"].methods[name], name)
      local args, at = {}, nil
      for a in m.args:gmatch("[^,%s]+") do
        args[#args + 1] = a
        if a == "opts" then at = #args end
      end
      assert.equal(#args, at, name .. "(" .. m.args .. "): its options last")
      local doc = table.concat(m.doc, "\n")
      assert.truthy(doc:find("---@param opts? " .. class .. " ", 1, true), name .. ": " .. doc)
      -- the method takes its options at that argument: an unknown one raises naming it
      local call = { client, name == "batch" and {} or "x" }
      call[at + 1] = { no_such_option = true }
      local ok, err = pcall(client[name], (table.unpack or rawget(_G, "unpack"))(call, 1, at + 1))
      assert.is_false(ok, name)
      assert.truthy(tostring(err):find("bad argument #" .. at .. " to '" .. name .. "' (unknown " ..
        "option 'no_such_option')", 1, true), name .. ": " .. tostring(err))
    end
    -- each field of each options class is an option its methods know (a value of no valid
    -- type raises about that option, not about an unknown one; nothing is sent)
    local probes = { ["faceswap.call_options"] = { "headshot", "p" },
      ["faceswap.download_options"] = { "download", "http://127.0.0.1:1/x" },
      ["faceswap.batch_options"] = { "batch", {} }, ["faceswap.wait_options"] = { "wait", "j" } }
    for class, probe in pairs(probes) do
      local fields = keys(classes[class].fields)
      assert.truthy(#fields > 0, class)
      for _, field in ipairs(fields) do
        local ok, err = pcall(client[probe[1]], client, probe[2], { [field] = coroutine.create(function() end) })
        assert.is_false(ok, class .. "." .. field)
        assert.falsy(tostring(err):find("unknown option", 1, true), class .. "." .. field .. ": " ..
          tostring(err))
      end
    end
    client:close()
  end)

  it("take faceswap.new's option types from faceswap.new itself", function()
    local fields = parse(TYPES)["faceswap.options"].fields
    assert.truthy(fields.timeout:find("^%-%-%-@field timeout%? number "), fields.timeout)
    assert.truthy(fields.ca_file:find("^%-%-%-@field ca_file%? string a PEM bundle"), fields.ca_file)
    assert.truthy(fields.retry:find("^%-%-%-@field retry%? faceswap%.retry_options|false "), fields.retry)
    local ok, err = pcall(faceswap.new, { token = "t", timeout = "60" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("option 'timeout' must be a number", 1, true))
  end)

  it("know the error kinds and job statuses the core gives", function()
    local kinds = TYPES:match("---@alias faceswap%.kind\n(.-)\n\n")
    for _, kind in ipairs { "invalid_request", "rate_limited", "transport", "timeout", "bad_response",
      "cancelled" } do
      assert.truthy(kinds:find('---| "' .. kind .. '"', 1, true), kind)
    end
    local _, err = faceswap.decode("{")
    assert.truthy(kinds:find('---| "' .. err.kind .. '"', 1, true))
    assert.equal("faceswap.status", TYPES:match("\n%-%-%-@field status%? ([%w_.]+) "))
  end)
end)
