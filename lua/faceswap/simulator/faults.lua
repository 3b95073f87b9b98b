-- faceswap.simulator.faults: scripted misbehaviour: actions queued through /__sim/script replace
-- or mangle the next matching answer (429s, resets, truncation, slow or huge answers...).
local util, sched, http, commands, S = require "faceswap.simulator.parts" ("util", "sched", "http", "commands", "state")

local M = {}

local number_text = util.number_text
local sleep, send_all, recv_some, reset = sched.sleep, sched.send_all, sched.recv_some, sched.reset
local response, json_response, render_head, send_response = http.response, http.json_response,
  http.render_head, http.send_response
local client_closes, response_closes, queue_full_response = http.client_closes, http.response_closes,
  http.queue_full_response
local handle_api = commands.handle_api

---------------------------------------------------------------------------------------------
-- Scripted misbehaviour
---------------------------------------------------------------------------------------------
-- process: whether the API handler runs when the request arrives (creating the job for
-- POST /headshot) although the answer is replaced or never sent. Actions that send "the
-- normal answer" compute it anyway when they need it.
local ACTIONS = {
  queue_full = { process = false }, discord_429 = { process = false }, status = { process = false },
  html_502 = { process = false }, delay = { process = true }, hang = { process = false },
  reset_before = { process = false }, close_after_body = { process = true },
  reset_during = { process = true }, truncate = { process = true }, invalid_json = { process = false },
  oversized = { process = false }, raw = { process = false }, drip = { process = true },
  chunked = { process = true }, flood = { process = false },
}

local function check_action(a)
  if type(a) ~= "table" or not ACTIONS[a.action] then
    return "Unknown action " .. tostring(type(a) == "table" and a.action or a)
  end
  if a.match ~= nil and (type(a.match) ~= "string" or not pcall(string.find, "", a.match)) then
    return "Invalid match pattern"
  end
  if a.count ~= nil and (math.type(a.count) == nil or a.count < 1 or a.count % 1 ~= 0) then
    return "count must be a positive integer"
  end
  if a.action == "status" and math.type(a.status) == nil then return "status needs a numeric status" end
  if a.action == "raw" and type(a.data) ~= "string" then return "raw needs a data string" end
  if (a.action == "delay" or a.action == "drip") and type(a.seconds) ~= "number" then
    return a.action .. " needs seconds"
  end
  if a.action == "chunked" and a.chunk_size ~= nil
      and (math.type(a.chunk_size) == nil or a.chunk_size < 1 or a.chunk_size % 1 ~= 0) then
    return "chunk_size must be a positive integer"
  end
  if a.action == "chunked" and a.seconds ~= nil and (type(a.seconds) ~= "number" or a.seconds < 0) then
    return "seconds must be a number >= 0"
  end
  if a.action == "flood" and a.bytes ~= nil
      and (math.type(a.bytes) == nil or a.bytes < 11 or a.bytes % 1 ~= 0) then
    return "flood bytes must be a whole number >= 11"
  end
  return nil
end

-- The first queued action matching "METHOD /path" is consumed for this request.
local function take_action(req)
  local key = req.method .. " " .. req.path
  for i, a in ipairs(S.state.scripts) do
    if a.match == nil or key:find(a.match) then
      a.remaining = a.remaining - 1
      if a.remaining <= 0 then table.remove(S.state.scripts, i) end
      return a
    end
  end
  return nil
end

local function oversized_body(n)
  if n < 11 then return "{}" .. string.rep(" ", math.max(0, n - 2)) end
  return '{"data":"' .. string.rep("x", n - 11) .. '"}'
end

local HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
  .. "</body>\r\n</html>\r\n"

-- Answers that replace the normal one; each returns a response table.
local REPLACE = {
  queue_full = queue_full_response,
  discord_429 = function(a)
    local details = string.format(
      '{"global":true,"message":"You are being rate limited.","retry_after":%s}',
      number_text(tonumber(a.retry_after) or 10))
    return json_response(429, { error = "Discord /interactions failed with HTTP status 429",
                                errorDetails = details, code = 429 })
  end,
  status = function(a)
    return response(a.status, a.body or "", a.content_type or "application/json", a.headers)
  end,
  html_502 = function() return response(502, HTML_502, "text/html") end,
  invalid_json = function() return response(200, '{"jobid": "abc", "status": ', "application/json") end,
  oversized = function(a)
    return response(200, oversized_body(math.floor(tonumber(a.bytes) or 9437184)), "application/json")
  end,
}

local FLOOD_PIECE = 65536
local FLOOD_FILL = string.rep("x", FLOOD_PIECE)

-- Bytes [from, from + n) of oversized_body(total), made piece by piece so a body of gigabytes
-- is never held in memory.
local function flood_piece(total, from, n)
  local to, head_end, tail_start = from + n, 9, total - 2
  local out = ""
  if from < head_end then out = ('{"data":"'):sub(from + 1, math.min(to, head_end)) end
  local xs = math.min(to, tail_start) - math.max(from, head_end)
  if xs > 0 then out = out .. FLOOD_FILL:sub(1, xs) end
  if to > tail_start then out = out .. ('"}'):sub(math.max(from, tail_start) - tail_start + 1, to - tail_start) end
  return out
end

-- Sends head plus the first half of the body (Content-Length still claims the whole).
local function send_half(conn, resp)
  local half = resp.body:sub(1, #resp.body // 2)
  return send_all(conn.sock, render_head(resp, false, #resp.body) .. half)
end

-- Misbehaviours that take over the connection; each returns whether to keep it open.
local TAKEOVER = {
  hang = function(conn)
    while recv_some(conn.sock, nil) do end     -- discard anything until the client closes
    return false
  end,
  reset_before = function(conn) reset(conn.sock) return false end,
  close_after_body = function(conn) conn.sock:close() return false end,
  reset_during = function(conn, resp)
    if send_half(conn, resp) then sleep(0.05) end   -- let the half arrive before the RST
    reset(conn.sock)
    return false
  end,
  truncate = function(conn, resp)
    send_half(conn, resp)
    conn.sock:close()
    return false
  end,
  raw = function(conn, _, a)
    send_all(conn.sock, a.data)
    conn.sock:close()
    return false
  end,
  -- the normal answer with Transfer-Encoding: chunked, chunk_size bytes a chunk (default 16),
  -- all at once or with a pause of seconds before each chunk after the first
  chunked = function(conn, resp, a, close)
    local size = math.floor(tonumber(a.chunk_size) or 16)
    local pause = tonumber(a.seconds) or 0
    local pieces = { render_head(resp, close, "chunked") }
    for i = 1, #resp.body, size do
      local chunk = resp.body:sub(i, i + size - 1)
      pieces[#pieces + 1] = string.format("%x\r\n", #chunk) .. chunk .. "\r\n"
    end
    pieces[#pieces + 1] = "0\r\n\r\n"
    if pause <= 0 then return send_all(conn.sock, table.concat(pieces)) and not close end
    for i, piece in ipairs(pieces) do
      if i > 2 then sleep(pause) end
      if not send_all(conn.sock, piece) then return false end
    end
    return not close
  end,
  -- a 200 claiming bytes (default 8 GiB) in its Content-Length, or chunked, then the body
  -- streamed 64 KiB at a time until all is sent or the client goes away; then closes
  flood = function(conn, _, a)
    local total = math.floor(tonumber(a.bytes) or 8 * 1024 * 1024 * 1024)
    local chunked = a.chunked == true
    local head = render_head(response(200, "", "application/json"), true, chunked and "chunked" or total)
    if not send_all(conn.sock, head) then return false end
    local sent = 0
    while sent < total do
      local n = math.min(FLOOD_PIECE, total - sent)
      local piece = flood_piece(total, sent, n)
      if chunked then piece = string.format("%x\r\n", n) .. piece .. "\r\n" end
      if not send_all(conn.sock, piece) then return false end
      sent = sent + n
    end
    if chunked then send_all(conn.sock, "0\r\n\r\n") end
    conn.sock:close()
    return false
  end,
  drip = function(conn, resp, a, close)
    local bytes = render_head(resp, close) .. resp.body
    for i = 1, #bytes do
      if not send_all(conn.sock, bytes:sub(i, i)) then return false end
      if i < #bytes then sleep(a.seconds) end
    end
    return not close
  end,
}

-- Actions that send (part of) the normal answer, computed late if not processed on arrival.
local SENDS_NORMAL = { none = true, delay = true, reset_during = true, truncate = true, drip = true,
                      chunked = true }

-- Sends the answer for an API request, honouring a scripted action; returns keep-alive.
local function perform(conn, req, action, resp)
  local close = client_closes(req)
  local name = action and action.action
  if name == "delay" then sleep(action.seconds) end
  if REPLACE[name] then
    resp = REPLACE[name](action)
  elseif not resp and SENDS_NORMAL[name or "none"] then
    resp = handle_api(req)
  end
  close = close or (resp ~= nil and response_closes(resp))
  if TAKEOVER[name] then return TAKEOVER[name](conn, resp, action, close) end
  return send_response(conn, resp, close) and not close
end

M.ACTIONS, M.check_action, M.take_action, M.perform = ACTIONS, check_action, take_action, perform

return M
