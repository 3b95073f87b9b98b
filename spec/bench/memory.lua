-- Peak resident memory of reading one answer of a given shape and size (what the README's
-- memory bound is measured with):
--   lua5.4 spec/bench/memory.lua SHAPE BYTES [STATUS]     -> "SHAPE BYTES STATUS: +N KiB peak"
-- SHAPE: objects ([{},{},...] in a job's future field: a table per 3 bytes), attachments (the
-- same as a job's attachments, which makes the core read the text twice: the worst case),
-- numbers ([0,0,...]), strings (["ab","ab",...]), text (one long string), error (a 500's JSON
-- whose error field is the whole body).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath
local core = require "faceswap.core"

local shape, bytes, status = arg[1], tonumber(arg[2]), tonumber(arg[3] or 200)
local unit = ({ objects = "{},", numbers = "0,", strings = '"ab",' })[shape]
local head, tail = '{"jobid":"a","future":[', "1]}"
if shape == "attachments" then -- objects where [] and {} must be told apart: read twice
  unit, head, tail = "{},", '{"jobid":"a","attachments":[', "{}]}"
end
local body
if unit then
  body = head .. unit:rep(math.floor((bytes - #head - #tail) / #unit)) .. tail
elseif shape == "text" then
  body = '{"jobid":"a","content":"' .. ("x"):rep(bytes - 26) .. '"}'
elseif shape == "error" then
  body = '{"error":"' .. ("x"):rep(bytes - 12) .. '"}'
else
  error("usage: memory.lua objects|attachments|numbers|strings|text|error BYTES [STATUS]")
end

local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end
collectgarbage()
local before = hwm()
local job, err = core.read_response("job", status, "", body)
local after = hwm()
assert(job or err)
print(string.format("%s %d %d: +%d KiB peak (%s)", shape, #body, status, after - before,
  job and "job" or err.kind))
