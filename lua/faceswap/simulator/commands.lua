-- faceswap.simulator.commands: the API's command table and routes: one row per command, read
-- by one validating handler, with the server's own checks (it stands for upstream, so it never
-- shares the client's code or its mistakes).
--
-- Validation order, for every command: the body's content type and syntax; each required param
-- in the row's order (text: not a string -> "Param <name> must be a string", missing or empty
-- -> "Required param <name> is missing or empty"; file: missing, then not a file part with a
-- filename and a content type, then not an accepted type); options, replyRef, replyUrl (at most
-- 1024 characters); channel (400 when no account has it); 402 (no subscription, or fewer
-- credits left than the command costs); 429 queue full (the channel is held by a blocking
-- command, or for a job command already runs max_running jobs). Upstream documents only
-- headshot's texts; the others follow the family's pattern, and the type texts are this
-- simulator's own (upstream's answer to a JSON number is undocumented; the simulator must not
-- render Lua values as text).
--
-- Blocking commands (saveid swapid listid setid delid delall inswapper picsi) hold their
-- channel for blocking_seconds, then answer a job-shaped result: status completed (results in
-- attachments) or failed (the bot's reply in content). Which texts the bot replies is
-- undocumented; the simulator's are plausible and listed in docs/simulator.md.
local util, images, sched, http, jobs, accounts, S =
  require "faceswap.simulator.parts" ("util", "png", "sched", "http", "jobs", "accounts", "state")

local M = {}

local nonempty, char_len, parse_query = util.nonempty, util.char_len, util.parse_query
local response, json_response, error_response = http.response, http.json_response, http.error_response
local queue_full_response = http.queue_full_response
local create_job, get_job, cancel_job = jobs.create_job, jobs.get_job, jobs.cancel_job
local finished_job, running_jobids = jobs.finished_job, jobs.running_jobids
local CREDITS_PER_JOB, USER = jobs.CREDITS_PER_JOB, jobs.DISCORD_USER
local PNGS = images.PNGS

---------------------------------------------------------------------------------------------
-- The API
---------------------------------------------------------------------------------------------
-- Accepted content types of file params, and the text when a part has another.
local IMAGE_TYPES = { ["image/png"] = true, ["image/jpeg"] = true, ["image/gif"] = true, ["image/webp"] = true }
local MEDIA_TYPES = { ["image/png"] = true, ["image/jpeg"] = true, ["image/gif"] = true,
                      ["image/webp"] = true, ["video/mp4"] = true }
local FILE_KINDS = {
  image = { types = IMAGE_TYPES, text = "an image (PNG, JPEG, GIF or WebP)" },
  media = { types = MEDIA_TYPES, text = "an image or a video (PNG, JPEG, GIF, WebP or MP4)" },
}

-- What the bytes are, by their magic numbers: "image", "video" or nil.
local function sniff(data)
  if data:sub(1, 8) == "\137PNG\r\n\26\n" or data:sub(1, 3) == "\255\216\255" or data:sub(1, 4) == "GIF8"
      or (data:sub(1, 4) == "RIFF" and data:sub(9, 12) == "WEBP") then
    return "image"
  end
  if data:sub(5, 8) == "ftyp" then return "video" end
  return nil
end

-- A result image: an 8x8 PNG whose colour follows the inputs, so different swaps differ.
local function result_png(...)
  local c = images.crc32(table.concat({ ... }, "\0"))
  return images.make_png(images.PNG_SIZE, c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF)
end

local function bad(text) return error_response(400, text) end

local function fail(account, params, command, text)
  return finished_job("faceswap-" .. command, account, params, USER .. " " .. text)
end

local function not_found(account, params, command, name)
  return fail(account, params, command, string.format("ID '%s' not found: /listid shows the saved ones", name))
end

local function done(account, params, command, text, files)
  return finished_job("faceswap-" .. command, account, params, USER .. " " .. text, files or {})
end

-- The bot's side of each blocking command, once the channel was held: returns the job-shaped
-- result. p: the params (text), f: the file parts, a: the account.
local RUN = {}

function RUN.saveid(a, p, f)
  local name = p.idname
  if not name:match("^[%w_%-]+$") or #name > 20 then
    return fail(a, p, "saveid",
      string.format("Invalid idname '%s': use at most 20 letters, digits, '-' or '_'", name))
  end
  if sniff(f.image.data) ~= "image" then return fail(a, p, "saveid", "No face detected in the image") end
  accounts.save_identity(a, name, f.image.data)
  return done(a, p, "saveid", string.format("ID '%s' saved (%d saved, default '%s')", name, #a.names, a.default))
end

function RUN.swapid(a, p, f)
  local names = {}
  for name in p.idname:gmatch("[^,%s]+") do
    if not a.images[name] then return not_found(a, p, "swapid", name) end
    names[#names + 1] = name
  end
  if #names == 0 then return not_found(a, p, "swapid", p.idname) end
  if sniff(f.image.data) ~= "image" then return fail(a, p, "swapid", "No face detected in the image") end
  accounts.charge(a, 1)
  return done(a, p, "swapid", string.format("Picsi.Ai SwapID done [ID: '%s'] [credits: 1] (%d/%d credits remaining)",
    table.concat(names, ","), accounts.left(a), a.credits.total), { result_png(p.idname, f.image.data) })
end

function RUN.listid(a, p)
  if #a.names == 0 then return done(a, p, "listid", "You have no saved ID yet: save a face with /saveid first") end
  local quoted = {}
  for i, name in ipairs(a.names) do quoted[i] = "'" .. name .. "'" end
  return done(a, p, "listid", string.format("Saved IDs (%d): %s [default: '%s']", #a.names,
    table.concat(quoted, ", "), a.default))
end

function RUN.setid(a, p)
  if not a.images[p.idname] then return not_found(a, p, "setid", p.idname) end
  a.default = p.idname
  return done(a, p, "setid", string.format("Default ID set to '%s'", p.idname))
end

function RUN.delid(a, p)
  if not a.images[p.idname] then return not_found(a, p, "delid", p.idname) end
  accounts.delete_identity(a, p.idname)
  return done(a, p, "delid", string.format("ID '%s' deleted", p.idname))
end

function RUN.delall(a, p)
  return done(a, p, "delall", string.format("All saved IDs deleted (%d)", accounts.delete_all(a)))
end

function RUN.inswapper(a, p)
  if not a.default then return fail(a, p, "inswapper", "You have no saved ID yet: save a face with /saveid first") end
  local target
  for _, entry in pairs(S.state.jobs) do
    local job = entry.data
    if job.messageId == p.targetMessageId and job.channel == a.channel and #entry.files > 0
        and job.status == "completed" then
      target = entry
    end
  end
  if not target then
    return fail(a, p, "inswapper",
      string.format("Message %s with an image not found in this channel", p.targetMessageId))
  end
  accounts.charge(a, 1)
  return done(a, p, "inswapper", string.format("Picsi.Ai InSwapper done [ID: '%s'] [credits: 1] "
    .. "(%d/%d credits remaining)", a.default, accounts.left(a), a.credits.total),
    { result_png(a.default, target.files[1]) })
end

-- picsi answers a job (status started) instead of the result when picsi_async is set, the
-- options contain "sim:async", or the target is a GIF or a video (which take longer).
function RUN.picsi(a, p, f)
  local target = f.target_image_gif_or_video
  if sniff(f.source_image.data) ~= "image" then return fail(a, p, "picsi", "No face detected in the source image") end
  local png = result_png(f.source_image.data, target.data)
  if S.config.picsi_async or (p.options or ""):find("sim:async", 1, true)
      or target.content_type == "image/gif" or target.content_type:find("^video/") then
    return create_job({ verb = "faceswap-picsi", label = "Picsi", prompt = p.options, cost = 1, account = a,
                        identity = f.source_image.filename, files = { png } }, p)
  end
  accounts.charge(a, 1)
  return done(a, p, "picsi", string.format("Picsi.Ai Swap done [credits: 1] (%d/%d credits remaining)",
    accounts.left(a), a.credits.total), { png })
end

-- The job commands: the job, which fails when the account has no saved identity.
function RUN.headshot(a, p)
  return create_job({ verb = "faceswap-headshot", label = "Headshot", prompt = p.prompt, cost = CREDITS_PER_JOB,
                      account = a, identity = a.default, files = PNGS }, p)
end

function RUN.changebg(a, p, f)
  return create_job({ verb = "faceswap-changebg", label = "ChangeBG", prompt = p.a_background_photo_of,
                      cost = CREDITS_PER_JOB, account = a, identity = a.default,
                      files = { result_png(p.a_background_photo_of, f.image.data) } }, p)
end

-- The command table: method, params in validation order (files marked with their kind), the
-- credits it needs, and whether it is a job (max_running) or blocking (holds the channel).
local COMMANDS = {
  headshot = { method = "POST", params = { "prompt" }, cost = CREDITS_PER_JOB, job = true },
  changebg = { method = "POST", params = { "image", "a_background_photo_of" }, files = { image = "image" },
               cost = CREDITS_PER_JOB, job = true },
  saveid = { method = "POST", params = { "idname", "image" }, files = { image = "image" }, cost = 0 },
  swapid = { method = "POST", params = { "idname", "image" }, files = { image = "image" }, cost = 1 },
  listid = { method = "POST", params = {}, cost = 0 },
  setid = { method = "POST", params = { "idname" }, cost = 0 },
  delid = { method = "DELETE", params = { "idname" }, cost = 0 },
  delall = { method = "DELETE", params = {}, cost = 0 },
  inswapper = { method = "POST", params = { "targetMessageId" }, cost = 1 },
  picsi = { method = "POST", params = { "source_image", "target_image_gif_or_video" },
            files = { source_image = "image", target_image_gif_or_video = "media" }, cost = 1 },
}

-- The test build's row (csrc/command.c's `ping`, -DFACESWAP_TEST_COMMAND), only when
-- FACESWAP_SIM_TEST_COMMAND is set: spec/integration/add_command_spec.lua. A job that ends
-- completed with the text as its prompt.
if os.getenv("FACESWAP_SIM_TEST_COMMAND") then
  COMMANDS.ping = { method = "POST", params = { "text" }, cost = 0, job = true }
  function RUN.ping(a, p)
    return create_job({ verb = "faceswap-ping", label = "Ping", prompt = p.text, cost = 0, account = a,
                        identity = "ping", files = {} }, p)
  end
end

local function not_configured(channel)
  return string.format("Configuration not found for channel %s, to create POST v1/faceswap/account/%s",
    channel, channel)
end

-- Checks one param; returns an error response or nil.
local function check_param(req, cmd, name)
  local kind = cmd.files and cmd.files[name]
  if kind then
    local file = req.files[name]
    if not file and not nonempty(req.fields[name]) then
      return bad("Required param " .. name .. " is missing or empty")
    end
    if not file or not file.content_type then
      return bad("Param " .. name .. " must be a file (a part with a filename and a content type)")
    end
    if file.data == "" then return bad("Required param " .. name .. " is missing or empty") end
    if not FILE_KINDS[kind].types[file.content_type] then
      return bad("Param " .. name .. " must be " .. FILE_KINDS[kind].text)
    end
    return nil
  end
  if req.not_strings[name] then return bad("Param " .. name .. " must be a string") end
  if not nonempty(req.params[name]) then return bad("Required param " .. name .. " is missing or empty") end
  return nil
end

-- Holds the channel while fn runs after blocking_seconds; a reset meanwhile frees nothing new.
local function hold(channel, fn)
  local state = S.state
  state.busy[channel] = true
  sched.sleep(S.config.blocking_seconds)
  local ok, result = pcall(fn)
  state.busy[channel] = nil
  if not ok then error(result, 0) end
  return result
end

local function run_command(name, req)
  local cmd = COMMANDS[name]
  if req.parse_error then return req.parse_error end
  if not req.fields then
    if req.body ~= "" or #cmd.params > 0 or name == "headshot" then
      return bad("Unsupported Content-Type " .. (req.headers["content-type"] or "undefined"))
    end
    req.fields, req.params = {}, {}          -- listid, delall: no body at all is fine
  end
  local p = req.params
  for _, param in ipairs(cmd.params) do
    local err = check_param(req, cmd, param)
    if err then return err end
  end
  for _, param in ipairs { "options", "replyRef", "replyUrl", "channel" } do
    if req.not_strings[param] then return bad("Param " .. param .. " must be a string") end
    if param == "replyRef" or param == "replyUrl" then
      if nonempty(p[param]) and char_len(p[param]) > 1024 then
        return bad("Optional param " .. param .. " is too long")
      end
    end
  end
  local account
  if nonempty(p.channel) then
    account = accounts.get(p.channel)
    if not account then return bad(not_configured(p.channel)) end
  else
    account = accounts.pick(cmd.cost)
  end
  if not account or not S.config.subscription or accounts.left(account) < cmd.cost then
    return error_response(402, "Account has no subscription or subscription expired")
  end
  local channel = account.channel
  if S.state.busy[channel]
      or (cmd.job and S.config.max_running > 0 and (S.state.active[channel] or 0) >= S.config.max_running) then
    S.state.rejected = S.state.rejected + 1
    return queue_full_response()
  end
  if cmd.job then return json_response(200, RUN[name](account, p, req.files)) end
  return json_response(200, hold(channel, function() return RUN[name](account, p, req.files) end))
end

-- GET /jobs lists the running jobs' ids; GET /jobs/?jobid= (or /jobs?jobid=) is one job.
local function jobs_route(req)
  if req.api_path == "/jobs" and parse_query(req.query).jobid == nil then
    return json_response(200, running_jobids())
  end
  return get_job(req)
end

---------------------------------------------------------------------------------------------
-- Accounts: GET /account, GET/POST/DELETE /account/<channel>
---------------------------------------------------------------------------------------------
local function get_accounts()
  local out = {}
  for _, account in ipairs(accounts.list()) do out[account.channel] = accounts.view(account) end
  return json_response(200, out)
end

local function get_account(_, channel)
  local account = accounts.get(channel)
  if not account then return error_response(404, not_configured(channel)) end
  return json_response(200, accounts.view(account))
end

local function delete_account(_, channel)
  if not accounts.get(channel) then return error_response(404, not_configured(channel)) end
  accounts.delete(channel)
  return response(204, "")
end

-- POST /account/<channel>: the documented 400 texts, in this order. "same discord value" and
-- "same server value" are read as: another channel's configuration already has it (one Discord
-- account, in its own server, per channel); upstream does not say more.
local function post_account(req, channel)
  if req.parse_error then return req.parse_error end
  if not req.fields then return bad("Unsupported Content-Type " .. (req.headers["content-type"] or "undefined")) end
  local p = req.params
  for _, name in ipairs { "discord", "server", "channel" } do
    if req.not_strings[name] then return bad("Param " .. name .. " must be a string") end
    if not nonempty(p[name]) then return bad("Required param " .. name .. " is missing or empty") end
  end
  if not p.channel:match("^%d+$") or #p.channel < 17 or #p.channel > 20 then
    return bad(string.format("Required param channel (%s) is not valid Discord channel id", p.channel))
  end
  if p.channel ~= channel then
    return bad(string.format("Required param channel (%s) not matching to /faceswap/account/%s", p.channel, channel))
  end
  for _, other in ipairs(accounts.list()) do
    if other.channel ~= channel and other.discord == p.discord then
      return bad(string.format("Channel %s configuration has same discord value", other.channel))
    end
  end
  for _, other in ipairs(accounts.list()) do
    if other.channel ~= channel and other.server == p.server then
      return bad(string.format("Channel %s configuration has same server value", other.channel))
    end
  end
  accounts.put(channel, p.discord, p.server)
  return response(204, "")
end

-- GET /attachments/<jobid>/<n>.png and /proxy/attachments/...: the job's PNGs, no auth.
local function attachment(req)
  local jobid, n = req.path:match("^/attachments/(%x+)/(%d+)%.png$")
  if not jobid then jobid, n = req.path:match("^/proxy/attachments/(%x+)/(%d+)%.png$") end
  if not jobid then return nil end
  local entry = S.state.jobs[jobid]
  local png = entry and entry.files[tonumber(n)]
  if req.method ~= "GET" or not entry or entry.data.status ~= "completed" or not png then
    return error_response(404, "Not found")
  end
  return response(200, png, "image/png")
end

-- path -> method -> handler(req, captured)
local ROUTES = {
  ["/jobs"] = { GET = jobs_route }, ["/jobs/"] = { GET = jobs_route },
  ["/jobs/cancel"] = { GET = cancel_job }, ["/jobs/cancel/"] = { GET = cancel_job },
  ["/account"] = { GET = get_accounts }, ["/account/"] = { GET = get_accounts },
}
for name, cmd in pairs(COMMANDS) do
  ROUTES["/" .. name] = { [cmd.method] = function(req) return run_command(name, req) end }
end
local ACCOUNT_ROUTE = { GET = get_account, POST = post_account, DELETE = delete_account }

local function authorized(req)
  local scheme, token = (req.headers.authorization or ""):match("^(%S+) +(.+)$")
  return scheme ~= nil and scheme:lower() == "bearer" and token == S.config.token
end

local function allowed(route)
  local methods = {}
  for method in pairs(route) do methods[#methods + 1] = method end
  table.sort(methods)
  return table.concat(methods, ", ")
end

local function handle_api(req)
  local image = attachment(req)
  if image then return image end
  local path = req.path:match("^/v1/faceswap(/.*)$") or req.path
  req.api_path = path
  local route, captured = ROUTES[path], nil
  if not route then
    captured = path:match("^/account/([^/]+)/?$")
    if captured then route = ACCOUNT_ROUTE end
  end
  if not route then return error_response(404, "Not found") end
  if not authorized(req) then return error_response(401, "Unauthorized") end
  local handler = route[req.method]
  if not handler then return error_response(405, "Method not allowed", { Allow = allowed(route) }) end
  return handler(req, captured and util.to_utf8(util.url_decode(captured)))
end

M.COMMANDS = COMMANDS
M.ROUTES, M.handle_api = ROUTES, handle_api

return M
