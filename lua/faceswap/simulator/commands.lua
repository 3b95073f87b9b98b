-- faceswap.simulator.commands: the API's command table and routes: one handler per command,
-- with the server's own validation (it stands for upstream, so it never shares the client's code).
local util = require "faceswap.simulator.util"
local images = require "faceswap.simulator.png"
local http = require "faceswap.simulator.http"
local jobs = require "faceswap.simulator.jobs"
local S = require "faceswap.simulator.state"

local M = {}

local nonempty, char_len = util.nonempty, util.char_len
local response, json_response, error_response = http.response, http.json_response, http.error_response
local queue_full_response = http.queue_full_response
local create_job, get_job, cancel_job = jobs.create_job, jobs.get_job, jobs.cancel_job
local CREDITS_PER_JOB = jobs.CREDITS_PER_JOB
local PNGS = images.PNGS

---------------------------------------------------------------------------------------------
-- The API
---------------------------------------------------------------------------------------------
local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function headshot(req)
  if req.parse_error then return req.parse_error end
  if not req.fields then
    return error_response(400, "Unsupported Content-Type " .. (req.headers["content-type"] or "undefined"))
  end
  local f = req.fields
  if not nonempty(f.prompt) then return error_response(400, "Required param prompt is missing or empty") end
  if nonempty(f.replyRef) and char_len(f.replyRef) > 1024 then
    return error_response(400, "Optional param replyRef is too long")
  end
  if nonempty(f.replyUrl) and char_len(f.replyUrl) > 1024 then
    return error_response(400, "Optional param replyUrl is too long")
  end
  local channel = f.channel
  if nonempty(channel) then
    if not contains(S.config.channels, channel) then
      return error_response(400, string.format(
        "Configuration not found for channel %s, to create POST v1/faceswap/account/%s", channel, channel))
    end
  else
    channel = S.config.channels[1]
  end
  if not channel or not S.config.subscription
      or S.config.credits_total - S.config.credits_used < CREDITS_PER_JOB then
    return error_response(402, "Account has no subscription or subscription expired")
  end
  if S.config.max_running > 0 and (S.state.active[channel] or 0) >= S.config.max_running then
    S.state.rejected = S.state.rejected + 1
    return queue_full_response()
  end
  return json_response(200, create_job(f, channel))
end


-- GET /attachments/<jobid>/<n>.png and /proxy/attachments/...: the job's PNGs, no auth.
local function attachment(req)
  local jobid, n = req.path:match("^/attachments/(%x+)/(%d+)%.png$")
  if not jobid then jobid, n = req.path:match("^/proxy/attachments/(%x+)/(%d+)%.png$") end
  if not jobid then return nil end
  local entry = S.state.jobs[jobid]
  local png = PNGS[tonumber(n)]
  if req.method ~= "GET" or not entry or entry.data.status ~= "completed" or not png then
    return error_response(404, "Not found")
  end
  return response(200, png, "image/png")
end

local ROUTES = {
  ["/headshot"] = { "POST", headshot },
  ["/jobs"] = { "GET", get_job }, ["/jobs/"] = { "GET", get_job },
  ["/jobs/cancel"] = { "GET", cancel_job }, ["/jobs/cancel/"] = { "GET", cancel_job },
}

local function authorized(req)
  local scheme, token = (req.headers.authorization or ""):match("^(%S+) +(.+)$")
  return scheme ~= nil and scheme:lower() == "bearer" and token == S.config.token
end

local function handle_api(req)
  local image = attachment(req)
  if image then return image end
  local route = ROUTES[req.path:match("^/v1/faceswap(/.*)$") or req.path]
  if not route then return error_response(404, "Not found") end
  if not authorized(req) then return error_response(401, "Unauthorized") end
  if req.method ~= route[1] then return error_response(405, "Method not allowed", { Allow = route[1] }) end
  return route[2](req)
end

M.ROUTES, M.handle_api = ROUTES, handle_api

return M
