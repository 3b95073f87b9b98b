-- Peak resident memory of reading one answer of a given shape and size (what the README's
-- memory bound is measured with):
--   lua5.4 spec/bench/memory.lua SHAPE BYTES [STATUS]     -> "SHAPE BYTES STATUS: +N KiB peak"
-- and what a job keeps for as long as it is kept, per hostile shape (the Lua heap after a full
-- collection, 16 jobs from 16 different texts, divided by 16):
--   lua5.4 spec/bench/memory.lua retained [BYTES]         -> "retained SHAPE BYTES: N bytes..."
-- SHAPE: objects ([{},{},...] in a job's future field: a table per 3 bytes), attachments (the
-- same as a job's attachments, which makes the core read the text twice: the worst case),
-- numbers ([0,0,...]), strings (["ab","ab",...]), text (one long string), error (a 500's JSON
-- whose error field is the whole body).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath
local core = require "faceswap.core"

if arg[1] == "retained" then
  local faceswap = require "faceswap"
  local size = tonumber(arg[2] or 262144)
  local function fill(i, head, unit, tail)
    head = head:gsub("JOBID", "j" .. i)
    return head .. unit:rep(math.floor((size - #head - #tail) / #unit)) .. tail
  end
  -- each a text of about `size` bytes that costs far more than its bytes once decoded
  local shapes = {
    { "unknown_keys", function(i) -- members the job does not document, each an empty object
      local parts, n = {}, 0
      while n < size - 40 do
        parts[#parts + 1] = '"k' .. #parts .. '":{}'
        n = n + #parts[#parts] + 1
      end
      return '{"jobid":"j' .. i .. '",' .. table.concat(parts, ",") .. "}"
    end },
    { "unknown_numbers", function(i) return fill(i, '{"jobid":"JOBID","future":[', "0,", "0]}") end },
    { "deep_arrays", function(i)
      return fill(i, '{"jobid":"JOBID","future":[', ("["):rep(60) .. ("]"):rep(60) .. ",", "0]}")
    end },
    { "attachments", function(i) return fill(i, '{"jobid":"JOBID","attachments":[', "{},", "{}]}") end },
    { "attachment_objects", function(i)
      return fill(i, '{"jobid":"JOBID","attachments":[', '{"url":"u","size":1,"width":2},', "{}]}")
    end },
    { "embeds", function(i) return fill(i, '{"jobid":"JOBID","embeds":[', '{"a":[0,0,0,0]},', "{}]}") end },
    { "content", function(i) return fill(i, '{"jobid":"JOBID","content":"', "x", '"}') end },
    { "escaped_content", function(i) return fill(i, '{"jobid":"JOBID","content":"', "\\u00e9", '"}') end },
  }
  local N = 16
  for _, s in ipairs(shapes) do
    local name, make = s[1], s[2]
    local jobs, len = {}, 0 -- kept until the count below
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    for i = 1, N do
      local text = make(i)
      len = #text
      jobs[i] = assert(faceswap.decode(text))
    end
    collectgarbage(); collectgarbage()
    local per_job = (collectgarbage("count") - before) * 1024 / N
    assert(#jobs == N)
    print(string.format("retained %-18s %7d bytes: %9.0f bytes per job (%.2f x its bytes)", name,
      len, per_job, per_job / len))
  end
  os.exit(0)
end

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
