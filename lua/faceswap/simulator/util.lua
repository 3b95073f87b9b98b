-- faceswap.simulator.util: JSON, time, randomness and text helpers shared by the simulator's parts.
local socket = require "socket"
local cjson = require "cjson"

local M = {}

---------------------------------------------------------------------------------------------
-- JSON: cjson cannot tell an empty array from an empty object, so tables that must come out
-- as arrays carry the ARRAY metatable and go through this small encoder (keys sorted, so the
-- output is stable and readable).
---------------------------------------------------------------------------------------------
local ARRAY = {}

local function array(t) return setmetatable(t or {}, ARRAY) end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  if t[1] == nil then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function encode(value)
  if type(value) ~= "table" then return cjson.encode(value) end
  local out = {}
  if is_array(value) then
    for i = 1, #value do out[i] = encode(value[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do out[i] = cjson.encode(k) .. ":" .. encode(value[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

local function decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  return nil
end

---------------------------------------------------------------------------------------------
-- Helpers: time, randomness, text
---------------------------------------------------------------------------------------------
local function iso_ms(t)
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", math.floor((t - s) * 1000))
end

local function iso_us(t)
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%06d+00:00", math.floor((t - s) * 1e6))
end

local function random_hex(n)
  local out = {}
  for i = 1, n do out[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(out)
end

local function random_digits(n)
  local out = { tostring(math.random(1, 9)) }
  for i = 2, n do out[i] = tostring(math.random(0, 9)) end
  return table.concat(out)
end

-- Character count for the 1024-character limits; invalid UTF-8 counts bytes.
local function char_len(s)
  return utf8.len(s) or #s
end

-- Text as a JavaScript server decodes bytes (WHATWG UTF-8 decode, TextDecoder's default):
-- each maximal invalid subsequence becomes U+FFFD, valid UTF-8 is left as it is.
local REPLACEMENT = "\u{FFFD}"
local function to_utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local need, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then
      need = -1
    elseif c >= 0xC2 and c <= 0xDF then
      need = 1
    elseif c >= 0xE0 and c <= 0xEF then
      need = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      need = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    end
    if need < 0 then
      out[#out + 1] = string.char(c)
      i = i + 1
    elseif need == 0 then
      out[#out + 1] = REPLACEMENT
      i = i + 1
    else
      local j, got = i + 1, 0
      while got < need do
        local b = s:byte(j)
        if not b or b < lo or b > hi then break end
        lo, hi, got, j = 0x80, 0xBF, got + 1, j + 1
      end
      out[#out + 1] = got == need and s:sub(i, j - 1) or REPLACEMENT
      i = j                       -- a byte that broke the sequence starts the next one
    end
  end
  return table.concat(out)
end

local function nonempty(s)
  return type(s) == "string" and s ~= ""
end

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Query parameters as URLSearchParams reads them: %XX that is not UTF-8 becomes U+FFFD.
local function parse_query(query)
  local params = {}
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = to_utf8(url_decode(k))
    if params[k] == nil then params[k] = to_utf8(url_decode(v)) end
  end
  return params
end

-- Numbers as JSON would print them: 10 not 10.0, 0.5 not 0.50000.
local function number_text(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  return string.format("%.14g", n)
end

M.ARRAY, M.array, M.encode, M.decode = ARRAY, array, encode, decode
M.now = socket.gettime
M.iso_ms, M.iso_us, M.random_hex, M.random_digits = iso_ms, iso_us, random_hex, random_digits
M.to_utf8 = to_utf8
M.char_len, M.nonempty, M.url_decode, M.parse_query, M.number_text =
  char_len, nonempty, url_decode, parse_query, number_text

return M
