-- The API reference (`make doc`, LDoc) cannot drift from the code: every public function of the
-- Lua modules has a doc comment, and docs/objects.luadoc names exactly the fields and methods
-- that the C core gives jobs.
local shell = require "spec.support.shell"

-- The names a Lua file defines as `function <prefix>NAME` (prefix "M." or "client:"), each with
-- whether the line above it ends a doc comment block that began with "---".
local function documented(path, prefix)
  local lines, found = {}, {}
  for line in (shell.read(path) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  for i, line in ipairs(lines) do
    local name = line:match("^function " .. prefix:gsub("%p", "%%%0") .. "([%w_]+)%(")
    if name then
      local j = i - 1
      while j > 0 and lines[j]:find("^%-%-") and not lines[j]:find("^%-%-%-") do j = j - 1 end
      found[name] = j > 0 and j < i and lines[j]:find("^%-%-%-") ~= nil
    end
  end
  return found
end

local function undocumented(path, prefix)
  local missing = {}
  for name, ok in pairs(documented(path, prefix)) do
    if not ok then missing[#missing + 1] = prefix .. name end
  end
  table.sort(missing)
  return missing
end

-- The quoted strings of the C array initializer that starts at `start` in a C file.
local function c_strings(path, start)
  local text = shell.read(path)
  local from = assert(text:find(start, 1, true), start)
  local body = text:match("(%b{})", from)
  local out = {}
  for s in body:gmatch('"([^"]+)"') do out[#out + 1] = s end
  return out
end

describe("the API reference #unit #lua_only", function()
  it("has a doc comment for every public function of faceswap, and every client method", function()
    assert.same({}, undocumented("lua/faceswap/init.lua", "M."))
    assert.same({}, undocumented("lua/faceswap/init.lua", "client:"))
    assert.same({}, undocumented("lua/faceswap/task.lua", "task:"))
    assert.is_true(documented("lua/faceswap/resty.lua", "M.").callback)
    -- (and the check sees what it checks)
    assert.is_true(documented("lua/faceswap/init.lua", "M.").new)
    assert.is_true(documented("lua/faceswap/init.lua", "client:").batch)
    assert.is_false(documented("lua/faceswap/task.lua", "M.").scheduler)
  end)

  it("names exactly the fields and methods the C core gives a job", function()
    local doc = shell.read("docs/objects.luadoc")
    local job_part = doc:match("@type job(.-)@type error")
    local fields, methods = {}, {}
    for name in job_part:gmatch("@field ([%w_]+)") do fields[#fields + 1] = name end
    for name in job_part:gmatch("@function job:([%w_]+)") do methods[#methods + 1] = name end
    local want_fields = c_strings("csrc/job.c", "field_names[F_COUNT] =")
    for _, d in ipairs(c_strings("csrc/job.c", "derived[] =")) do want_fields[#want_fields + 1] = d end
    local want_methods = {}
    for _, m in ipairs(c_strings("csrc/job.c", "methods[] =")) do want_methods[#want_methods + 1] = m end
    table.sort(fields)
    table.sort(want_fields)
    table.sort(methods)
    table.sort(want_methods)
    assert.same(want_fields, fields)
    assert.same(want_methods, methods)
  end)
end)
