-- The core's lua-cjson instance (csrc/cjson.c): lua-cjson's plain instance called under the
-- core's protected call, or cjson.safe's when a host can load only that one; both read and
-- refuse alike.
local compat = require "spec.support.compat"

local CHILD = [[
  local only_safe = %s
  if only_safe then
    local safe = require "cjson.safe"
    package.loaded["cjson.safe"] = nil
    package.preload["cjson.safe"] = function() return safe end
    package.path, package.cpath = "./lua/?.lua;./lua/?/init.lua", "./%s/?.so"
  else
    package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
    package.cpath = "./%s/?.so;" .. package.cpath
  end
  local f = require "faceswap"
  local function err(text) return select(2, f.decode(text)).error end
  io.write(table.concat({ tostring(f.decode('{"jobid":"a","code":200}').code),
    err('{"jobid":'), err('{"jobid":"a",}'), err('[1]'),
    tostring(package.loaded.cjson ~= nil) }, "|"))
]]

local function run(only_safe)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(CHILD:format(tostring(only_safe), compat.build, compat.build))
  f:close()
  local p = io.popen(compat.lua .. " " .. path .. " 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out
end

describe("the core's lua-cjson instance #unit", function()
  it("is lua-cjson's plain one when cjson loads, its errors in the module's words", function()
    assert.equal("200|invalid JSON: unexpected end of text at byte 10|invalid JSON: expected a " ..
      "member name at byte 14|not a job: JSON is not an object|true", run(false))
  end)

  it("is cjson.safe's when only that one is in package.preload, reading the same", function()
    assert.equal("200|invalid JSON: unexpected end of text at byte 10|invalid JSON: expected a " ..
      "member name at byte 14|not a job: JSON is not an object|false", run(true))
  end)
end)
