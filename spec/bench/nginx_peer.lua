-- spec/bench/nginx_peer.lua: the peer of the nginx round-trip benchmark (spec/bench/nginx_roundtrip.lua),
-- the least a program inside nginx would write to POST a headshot and decode its answer, as
-- lua-resty-http does it: one cosocket from nginx's pool, the request as one string, the status
-- line and headers read a line at a time, the body by its Content-Length, lua-cjson's decode.
-- No deadline over the whole exchange, no chunked bodies, no limit on the answer, no checks of
-- what the JSON holds: what it skips is what faceswap.resty does on top.
local cjson = require "cjson"
local ngx = rawget(_G, "ngx")

local M = {}

-- post(host, port, path, token, content_type, body): the decoded answer and its status.
function M.post(host, port, path, token, content_type, body)
  local sock = ngx.socket.tcp()
  sock:settimeout(60000)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, err end
  local request = "POST " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
    "\r\nUser-Agent: peer/1\r\nAuthorization: Bearer " .. token ..
    "\r\nContent-Type: " .. content_type .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  ok, err = sock:send(request)
  if not ok then return nil, err end
  local line
  line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local length = tonumber(headers["content-length"])
  if not length then return nil, "no Content-Length" end
  local answer
  answer, err = sock:receive(length)
  if not answer then return nil, err end
  sock:setkeepalive(30000, 64)
  return cjson.decode(answer), status
end

return M
