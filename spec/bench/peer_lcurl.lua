-- spec/bench/peer_lcurl.lua - the peer a user would pick, for the round-trip benchmark
-- (spec/bench/roundtrip.sh): Lua-cURL (Debian's lua-curl 0.3, for Lua 5.1 and 5.2) and
-- lua-cjson, doing the same POST and decode as client:headshot().
--
--   lua5.1 spec/bench/peer_lcurl.lua URL N
--
-- One easy handle, reused. For each request: the headshot's multipart body with a fresh
-- 24-character boundary (a counter), the same headers as lua-faceswap sends, the answer gathered by a
-- write function and decoded with cjson.decode, its jobid checked.
local curl = require "curl"
local cjson = require "cjson"

local url, n = arg[1], tonumber(arg[2])
assert(url and n, "usage: peer_lcurl.lua URL N")
local EXPECTED = "8a1f574fdbf79e8cd57e070476d9d5f3"

local e = curl.easy_init()
e:setopt(curl.OPT_URL, url)
e:setopt(curl.OPT_USERAGENT, "lua-faceswap/0.2.0")
e:setopt(curl.OPT_TCP_NODELAY, 1)
e:setopt(curl.OPT_NOSIGNAL, 1)
local chunks, count = {}, 0
e:setopt(curl.OPT_WRITEFUNCTION, function(s)
  count = count + 1
  chunks[count] = s
  return #s
end)

local concat, decode, format = table.concat, cjson.decode, string.format
for i = 1, n do
  -- a boundary of the client's length, the cheapest way (a counter): the peer at its leanest
  local boundary = format("faceswap-%024d", i)
  e:setopt(curl.OPT_HTTPHEADER, { "Authorization: Bearer test-token",
    "Content-Type: multipart/form-data; boundary=" .. boundary })
  e:setopt(curl.OPT_POSTFIELDS, "--" .. boundary ..
    '\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nportrait of a cat\r\n--' ..
    boundary .. "--\r\n")
  count = 0
  local ok, err = e:perform()
  if not ok or ok ~= 0 then error(("request %d: %s"):format(i, tostring(err))) end
  local job = decode(concat(chunks, "", 1, count))
  if job.jobid ~= EXPECTED then error(("request %d: unexpected jobid"):format(i)) end
end
