-- faceswap.simulator.png: small, valid PNG files for the images the simulator serves.
local M = {}

---------------------------------------------------------------------------------------------
-- PNG files for attachments: 8x8 RGB, zlib "stored" block, real CRC-32 and Adler-32.
---------------------------------------------------------------------------------------------
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

-- CRC-32 (zlib's) of s[i..j] continued from c (0xFFFFFFFF to start; the result ~ 0xFFFFFFFF),
-- eight bytes per string.byte call.
local function crc32_update(c, s, i, j)
  local T, byte = CRC_TABLE, string.byte
  local n = j - ((j - i + 1) % 8)
  while i <= n do
    local a, b, d, e, f, g, h, k = byte(s, i, i + 7)
    c = T[(c ~ a) & 0xFF] ~ (c >> 8)
    c = T[(c ~ b) & 0xFF] ~ (c >> 8)
    c = T[(c ~ d) & 0xFF] ~ (c >> 8)
    c = T[(c ~ e) & 0xFF] ~ (c >> 8)
    c = T[(c ~ f) & 0xFF] ~ (c >> 8)
    c = T[(c ~ g) & 0xFF] ~ (c >> 8)
    c = T[(c ~ h) & 0xFF] ~ (c >> 8)
    c = T[(c ~ k) & 0xFF] ~ (c >> 8)
    i = i + 8
  end
  for x = i, j do c = T[(c ~ byte(s, x)) & 0xFF] ~ (c >> 8) end
  return c
end

local function crc32(s)
  return crc32_update(0xFFFFFFFF, s, 1, #s) ~ 0xFFFFFFFF
end

-- The CRC-32 polynomial arithmetic behind joining or splitting checksums: a CRC-32 value times
-- x^(8n) modulo the polynomial, i.e. what the CRC of A becomes once n more bytes follow it.
-- With it, crc32(A .. B) == crc32_shift(crc32(A), #B) ~ crc32(B), so the CRC-32 of any stretch
-- of a body follows from the CRC-32s of two of its prefixes without reading the stretch again.
local POLY = 0xEDB88320
local function mul_mod(a, b)         -- bit 31 is x^0 (the reflected order the table uses)
  local p = 0
  for _ = 1, 32 do
    if a & 0x80000000 ~= 0 then p = p ~ b end
    a = (a << 1) & 0xFFFFFFFF
    if b & 1 ~= 0 then b = (b >> 1) ~ POLY else b = b >> 1 end
  end
  return p
end

local function crc32_shift(c, n)
  local factor, power = 0x80000000, 0x00800000      -- 1, and x^8 (one byte)
  while n > 0 do
    if n & 1 == 1 then factor = mul_mod(factor, power) end
    power, n = mul_mod(power, power), n >> 1
  end
  return mul_mod(factor, c)
end

local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end

local function png_chunk(kind, data)
  return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data))
end

local function make_png(size, r, g, b)
  local row = "\0" .. string.rep(string.char(r, g, b), size)   -- filter byte 0, then pixels
  local raw = string.rep(row, size)
  local zlib = "\x78\x01\x01" .. string.pack("<I2I2", #raw, ~#raw & 0xFFFF) .. raw
    .. string.pack(">I4", adler32(raw))
  return "\x89PNG\r\n\x1a\n"
    .. png_chunk("IHDR", string.pack(">I4I4BBBBB", size, size, 8, 2, 0, 0, 0))
    .. png_chunk("IDAT", zlib) .. png_chunk("IEND", "")
end

local PNG_SIZE = 8
local PNGS = { make_png(PNG_SIZE, 200, 120, 40), make_png(PNG_SIZE, 40, 120, 200) }

M.crc32_shift = crc32_shift
M.crc32, M.crc32_update, M.make_png, M.PNG_SIZE, M.PNGS = crc32, crc32_update, make_png, PNG_SIZE, PNGS

return M
