-- tools/commands_luadoc.lua: the API reference of the command methods (client:headshot,
-- client:job, client:saveid...), as LDoc comments, made from the core's command table
-- (core.commands("all"), csrc/command.c), from which lua/faceswap/init.lua makes the methods
-- themselves. `make docs-tables` (tools/gen.lua docs-tables) writes it to
-- docs/commands.luadoc, which `make doc` reads (docs/config.ld merges it into the module
-- faceswap) and tools/types.lua too; spec/unit/commands_luadoc_spec.lua checks that the file
-- holds exactly this.
local M = {}

-- A row's summary as a sentence: "save the face" -> "Save the face".
local function sentence(s) return (s:gsub("^%l", string.upper)) end

local FILE_NOTE = "A file param is a path or `{data = bytes, filename = name[, content_type " ..
  "= type]}` (docs/commands.md)."

-- What a row's mode means to a caller, after its summary.
local MODES = {
  blocking = "Blocking: it holds its channel while the server works, and the client runs one " ..
    "such call per channel at a time.",
  job = "Starts a job: wait for its end with @{client:wait}, or pass `wait`.",
  either = "Blocking (it holds its channel), or, when the server takes long, a job " ..
    "(`status` `\"started\"`) for @{client:wait}.",
}

-- The first return by the shape of the answer (and the mode, for a job).
local function first_return(c)
  if c.answer == "job" then
    if c.mode == "job" then
      return "objects.job the job, `status` `\"started\"` (with `wait`: once it has ended)"
    elseif c.mode == "blocking" then
      return "objects.job the bot's answer: `completed` (results in `attachments`) or " ..
        "`failed` (its reply in `content`)"
    elseif c.mode == "either" then
      return "objects.job a finished result, or a job (`status` `\"started\"`) for @{client:wait}"
    end
    return "objects.job the job as the server has it now"
  end
  return ({
    jobids = "{string,...} the jobids",
    account = "table `{channel, server, discord, credits = {timestamp, total, used}}`",
    accounts = "table accounts keyed by channel: `{channel, server, discord, credits = " ..
      "{timestamp, total, used}}`",
    none = "boolean true",
  })[c.answer]
end

-- The fields of a params table: "`idname` (required), `image` (required, a file); `channel`,
-- `replyUrl`, `replyRef` (at most 1024 characters each)".
local function field_list(c)
  local own, common = {}, false
  for _, f in ipairs(c.params) do
    if f.common then
      common = true
    else
      local notes = {}
      if f.required then notes[#notes + 1] = "required" end
      if f.kind == "file" then notes[#notes + 1] = "a file" end
      if f.kind == "prose" then notes[#notes + 1] = "free text" end
      own[#own + 1] = "`" .. f.name .. "`" .. (#notes > 0 and (" (" .. table.concat(notes, ", ") .. ")") or "")
    end
  end
  local text = table.concat(own, ", ")
  if common then
    text = text .. (text ~= "" and "; " or "") ..
      "`channel`, `replyUrl`, `replyRef` (at most 1024 characters each)"
  end
  return text
end

-- The options a row's method takes (as init.lua's call_options reads them).
local function options(c)
  local list = { "`timeout` (seconds per attempt)", "`retry` (retry options merged over the " ..
    "client's, or false)" }
  if c.common then list[#list + 1] = "`channel` (this call's default channel)" end
  if c.mode == "job" or c.mode == "either" then
    list[#list + 1] = "`wait` (true, or the options of @{client:wait}: return the job once it " ..
      "has ended)"
  end
  return "this call's options: " .. table.concat(list, ", ")
end

-- A comment line wrapped at 100 columns, its continuations "-- " and indented as LDoc reads
-- them (the text of a tag goes on).
local function wrap(lines, first)
  local line = ""
  for word in first:gmatch("%S+") do
    if line ~= "" and #line + 1 + #word > 100 then
      lines[#lines + 1] = line
      line = "-- " .. word
    else
      line = line == "" and word or (line .. " " .. word)
    end
  end
  lines[#lines + 1] = line
end

-- The LDoc block of one row.
local function block(c)
  local lines = {}
  local function add(s) wrap(lines, s) end
  add("--- " .. sentence(c.summary) .. " (" .. c.method .. " " .. c.path .. ").")
  if MODES[c.mode] then add("-- " .. MODES[c.mode]) end
  local files, required = false, false
  for _, f in ipairs(c.params) do
    files = files or f.kind == "file"
    required = required or f.required
  end
  if files then add("-- " .. FILE_NOTE) end
  add("-- @function client:" .. c.name)
  local value
  for _, f in ipairs(c.params) do if f.name == c.value then value = f end end
  if value and not c.encodings then -- the value alone
    if value.name == "jobid" then
      add("-- @tparam string|objects.job jobid the jobid, or a job")
    else
      add("-- @tparam string " .. value.name .. " the " .. value.name)
    end
  elseif value then -- the value, or a table of the fields
    add("-- @tparam string|table params the " .. value.name .. ", or a table: " .. field_list(c))
  elseif #c.params > 0 then
    add("-- @tparam" .. (required and "" or "[opt]") .. " table params " .. field_list(c))
  end
  add("-- @tparam[opt] table opts " .. options(c))
  add("-- @treturn[1] " .. first_return(c))
  add("-- @return[2] nil")
  add("-- @treturn[2] objects.error what went wrong" .. (#c.params > 0 and "; a request the " ..
    "server would refuse with 400 fails before anything is sent, with the server's own text" or ""))
  return lines
end

-- The whole file for the rows `commands` (core.commands("all")).
function M.render(commands)
  local out = {
    "-- The command methods of a client, one per row of the core's command table (csrc/command.c).",
    "-- Generated by tools/commands_luadoc.lua: do not edit, `make docs-tables` writes it again.",
    "-- docs/config.ld merges it into the module faceswap (`make doc`).",
    "",
    "--- The client's command methods, made from the command table.",
    "-- @module faceswap",
    "",
    "--- A client: its command methods.",
    "-- @type client",
  }
  for _, c in ipairs(commands) do
    out[#out + 1] = ""
    for _, line in ipairs(block(c)) do out[#out + 1] = line end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
