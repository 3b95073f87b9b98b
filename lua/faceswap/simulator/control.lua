-- faceswap.simulator.control: the /__sim/ endpoints through which a test configures the
-- simulator and reads back what it received (JSON, never recorded or counted).
local cjson = require "cjson"
local util, sched, http, jobs, faults, accounts, S =
  require "faceswap.simulator.parts" ("util", "sched", "http", "jobs", "faults", "accounts", "state")

local M = {}

local array, decode = util.array, util.decode
local json_response, error_response, send_response, client_closes = http.json_response,
  http.error_response, http.send_response, http.client_closes
local find_job, set_status, STATUSES = jobs.find_job, jobs.set_status, jobs.STATUSES
local check_action = faults.check_action
local check_setting, reset_state = S.check_setting, S.reset_state

---------------------------------------------------------------------------------------------
-- Control endpoints (/__sim/...): configure the simulator and read back what it saw.
---------------------------------------------------------------------------------------------
-- files: the file parts, name -> {filename, content_type, size} (their bytes are in fields);
-- body_size: the body's bytes; omitted: what the record left out for its size (past 1 MiB),
-- {body = {size, crc32}, fields = {name = {size, crc32}}}. A record is bounded from the moment
-- it is made (faceswap.simulator.server's record), answered or not.
local function record_json(r)
  local files = cjson.null
  if r.files then
    files = {}
    for name, f in pairs(r.files) do
      files[name] = { filename = f.filename, content_type = f.content_type or cjson.null, size = f.size }
    end
  end
  return { method = r.method, path = r.path, query = r.query, headers = r.headers,
           body = r.body or cjson.null, body_size = r.body_size,
           fields = r.fields or cjson.null, files = files, conn = r.conn,
           content_type = r.content_type or cjson.null, omitted = r.omitted or cjson.null }
end

-- The settings as GET /__sim/config shows them: credits_total and credits_used are the first
-- account's (the one a call without channel goes to), since each account has its own.
local function config_view()
  local view = {}
  for k, v in pairs(S.config) do view[k] = v end
  local first = accounts.list()[1]
  if first then view.credits_total, view.credits_used = first.credits.total, first.credits.used end
  return view
end

local function ok_response(extra)
  local body = { ok = true }
  for k, v in pairs(extra or {}) do body[k] = v end
  return json_response(200, body)
end

local CONTROL = {}

CONTROL["GET /__sim/requests"] = function()
  local out = array {}
  for i, r in ipairs(S.state.requests) do out[i] = record_json(r) end
  return json_response(200, out)
end

-- clients, refused, accept_errors: since the start, not reset (the connections are still there).
CONTROL["GET /__sim/stats"] = function()
  local open = 0
  for _ in pairs(S.state.open) do open = open + 1 end
  local live = S.live
  return json_response(200, { connections = S.state.connections, requests = #S.state.requests,
                              open = open, rejected = S.state.rejected, clients = live.clients,
                              refused = live.refused, accept_errors = live.accept_errors,
                              event_loop = live.event_loop })
end

CONTROL["GET /__sim/callbacks"] = function()
  local out = array {}
  for i, c in ipairs(S.state.callbacks) do
    out[i] = { url = c.url, body = c.body, status = c.status or cjson.null, error = c.error or cjson.null,
               done = c.done }
  end
  return json_response(200, out)
end

CONTROL["GET /__sim/jobs"] = function()
  local out = array {}
  for i, id in ipairs(S.state.job_order) do out[i] = S.state.jobs[id].data end
  return json_response(200, out)
end

CONTROL["GET /__sim/job"] = function(req)
  local entry, err = find_job(req)
  if not entry then return err end
  return json_response(200, entry.data)
end

-- Every account as GET /account shows it, plus its saved faces (names, in saving order) and
-- default, so a test sees what its code saved without going through the API.
CONTROL["GET /__sim/accounts"] = function()
  local out = {}
  for _, account in ipairs(accounts.list()) do
    local view = accounts.view(account)
    view.ids, view.default = array {}, account.default or cjson.null
    for i, name in ipairs(account.names) do view.ids[i] = name end
    out[account.channel] = view
  end
  return json_response(200, out)
end

CONTROL["GET /__sim/config"] = function()
  return json_response(200, config_view())
end

CONTROL["GET /__sim/script"] = function()
  local out = array {}
  for i, a in ipairs(S.state.scripts) do out[i] = a end
  return json_response(200, out)
end

CONTROL["POST /__sim/reset"] = function()
  reset_state()
  collectgarbage()          -- the old records, jobs and saved faces go back to the allocator now
  return ok_response()
end

CONTROL["POST /__sim/config"] = function(req)
  local changes = decode(req.body)
  if type(changes) ~= "table" then return error_response(400, "Config must be a JSON object") end
  local checked = {}
  for k, v in pairs(changes) do
    local value, err = check_setting(k, v)
    if value == nil then return error_response(400, err) end
    checked[k] = value
  end
  for k, v in pairs(checked) do S.config[k] = v end
  if checked.channels then accounts.sync() end
  if checked.credits_total or checked.credits_used then
    accounts.set_credits(checked.credits_total, checked.credits_used)
  end
  return json_response(200, config_view())
end

CONTROL["POST /__sim/script"] = function(req)
  local actions = decode(req.body)
  if type(actions) ~= "table" then return error_response(400, "Script must be a JSON array of actions") end
  if actions.action then actions = { actions } end     -- a single action is fine too
  for _, a in ipairs(actions) do
    local err = check_action(a)
    if err then return error_response(400, err) end
  end
  for _, a in ipairs(actions) do
    a.remaining = a.count or 1
    S.state.scripts[#S.state.scripts + 1] = a
  end
  return ok_response({ queued = #S.state.scripts })
end

CONTROL["POST /__sim/advance"] = function(req)
  local body = decode(req.body)
  if type(body) ~= "table" or type(body.jobid) ~= "string" or not STATUSES[body.status] then
    return error_response(400, "advance needs {jobid, status} with a known status")
  end
  local entry = S.state.jobs[body.jobid]
  if not entry then return error_response(404, "Unable to locate job " .. body.jobid) end
  set_status(entry, body.status)
  return json_response(200, entry.data)
end

CONTROL["POST /__sim/shutdown"] = function()
  sched.running = false
  return ok_response()
end

local function serve_control(conn, req)
  local handler = CONTROL[req.method .. " " .. req.path:gsub("/$", "")]
  local resp = handler and handler(req) or error_response(404, "Not found")
  local close = client_closes(req) or not sched.running
  return send_response(conn, resp, close) and not close
end

M.CONTROL, M.serve_control = CONTROL, serve_control

return M
