-- Decoding one completed job's JSON N times: faceswap.decode against a bare cjson.decode of the
-- same text (what spec/bench/decode.sh measures with callgrind, as a slope over two N).
--   lua5.4 spec/bench/decode.lua faceswap|cjson N
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath

local COMPLETED = [[{"jobid":"8a1f574fdbf79e8cd57e070476d9d5f3","verb":"faceswap-headshot",]] ..
  [["status":"completed","prompt":"portrait --no green --square",]] ..
  [["created":"2023-09-09T02:04:49.667Z","updated":"2023-09-09T02:05:31.002Z",]] ..
  [["discord":"ABC…secured…xyz","server":"1000000000000000001",]] ..
  [["channel":"1100000000000000001","replyUrl":"https://example.com/cb","replyRef":"r-1",]] ..
  [["messageId":"1149891234567890123","timestamp":"2023-09-09T02:04:50.123000+00:00",]] ..
  [["content":"<@1> Picsi.Ai Headshot Job Submitted [jobid: 8a1f574fdbf79e8cd57e070476d9d5f3] ]] ..
  [[[credits: 4] [prompt: 'portrait'] [time: 12s] [SaveID: 'me'] (796/800 credits remaining)",]] ..
  [["error":null,"errorDetails":null,"code":200,"attachments":[]] ..
  [[{"id":"1","filename":"a_1.png","size":1234,"url":"https://cdn.example/a_1.png?ex=1&is=2&hm=3",]] ..
  [["proxy_url":"https://media.example/a_1.png","width":512,"height":512,"content_type":"image/png"},]] ..
  [[{"id":"2","filename":"a_2.png","size":99,"url":"https://cdn.example/a_2.png",]] ..
  [["proxy_url":null,"width":8,"height":8,"content_type":"image/png"}],]] ..
  [["embeds":[{"type":"rich","description":"done","image":{"url":"https://cdn.example/e.png","width":1}}]}]]

local which, n = arg[1], tonumber(arg[2])
assert((which == "faceswap" or which == "cjson") and n, "usage: decode.lua faceswap|cjson N")
local decode
if which == "faceswap" then
  decode = require("faceswap").decode
else
  decode = require("cjson").decode
end
assert(decode(COMPLETED))
for _ = 1, n do
  decode(COMPLETED)
end
