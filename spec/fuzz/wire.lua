-- spec/fuzz/wire.lua MODE BASE N: spec/fuzz/calls.lua against the hostile server at BASE
-- (spec/fuzz/answers.py), run by spec/fuzz/wire.sh from the repository's root.
--   curl   N calls in this process (the libcurl transport; ASan's Lua under wire.sh)
--   nginx  N rounds of 200 calls inside nginx (faceswap.resty), each round a request to a
--          location that runs them; a round whose answer is not 200 prints nginx's log
-- Prints "MODE ok" and the error kinds; exits 1 when a call raised or nginx failed a round.
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
local mode, base, n = arg[1], arg[2], tonumber(arg[3])
assert((mode == "curl" or mode == "nginx") and base and n, "usage: wire.lua curl|nginx BASE N")

if mode == "curl" then
  local ok, kinds = pcall(dofile("spec/fuzz/calls.lua"), require "faceswap", base, n)
  print(ok and "curl ok " .. kinds or "curl raised: " .. tostring(kinds))
  os.exit(ok and 0 or 1)
end

local nginx = require "spec.support.nginx"
local server = nginx.start { server = string.format([[location = /calls { content_by_lua_block {
  ngx.say(dofile(%q)(require "faceswap", ngx.var.arg_base, 200)) } }]],
  nginx.root .. "/spec/fuzz/calls.lua") }
local ok, last = true, ""
for round = 1, n do
  local status, body = nginx.request(server.url .. "/calls?base=" .. base)
  if status ~= 200 then
    print("nginx round " .. round .. ": " .. tostring(status) .. "\n" .. server:log())
    ok = false
    break
  end
  last = body
end
server:stop()
if ok then io.write("nginx ok ", last) end
os.exit(ok and 0 or 1)
