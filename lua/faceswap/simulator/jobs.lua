-- faceswap.simulator.jobs: jobs and their time: creation, the status timeline, results,
-- callbacks to replyUrl, and the GET /jobs answers.
local util, images, sched, http, S, accounts =
  require "faceswap.simulator.parts" ("util", "png", "sched", "http", "state", "accounts")

local M = {}
M.mask, M.charge, M.left = accounts.mask, accounts.charge, accounts.left

local array, encode, now = util.array, util.encode, util.now
local iso_ms, iso_us, random_hex, random_digits = util.iso_ms, util.iso_us, util.random_hex, util.random_digits
local nonempty, number_text, parse_query = util.nonempty, util.number_text, util.parse_query
local spawn, sleep = sched.spawn, sched.sleep
local json_response, error_response, http_post = http.json_response, http.error_response, http.http_post
local PNG_SIZE = images.PNG_SIZE

local CREDITS_PER_JOB = 4     -- a headshot's (and a changebg's) price
local TERMINAL = { completed = true, failed = true, moderated = true, cancelled = true }
local STATUSES = { created = true, started = true, progress = true, completed = true,
                   failed = true, moderated = true, cancelled = true }
local DISCORD_USER = "<@100000000000000001>"
M.DISCORD_USER = DISCORD_USER

---------------------------------------------------------------------------------------------
-- Jobs
---------------------------------------------------------------------------------------------
local function job_content(entry, word)
  local job = entry.data
  return string.format("%s Picsi.Ai %s Job %s [jobid: %s] [credits: %d] [prompt: '%s'] "
    .. "[time: 12s] [SaveID: '%s'] (%s/%s credits remaining)", DISCORD_USER, entry.label, word, job.jobid,
    entry.cost, job.prompt or "", entry.identity or "", number_text(entry.left), number_text(entry.total))
end

-- The attachment list of a job's result images (PNG bytes, served under /attachments/).
local function attachments(jobid, files)
  local list = array {}
  for n, png in ipairs(files) do
    local tail = string.format("attachments/%s/%d.png?ex=65f1&is=65de&hm=abc123", jobid, n)
    list[n] = {
      id = random_digits(19), filename = string.format("%s_%d.png", jobid, n), size = #png,
      url = S.base_url .. "/" .. tail, proxy_url = S.base_url .. "/proxy/" .. tail,
      width = PNG_SIZE, height = PNG_SIZE, content_type = "image/png",
    }
  end
  return list
end
M.attachments = attachments

local function send_callback(job)
  local record = { url = job.replyUrl, body = encode(job), done = false }
  S.state.callbacks[#S.state.callbacks + 1] = record
  spawn(function()
    local status, err = http_post(record.url, record.body)
    record.status, record.error, record.done = status, err, true
  end)
end

-- Keeps S.state.active right when a job enters or leaves the unfinished statuses.
local function count_active(channel, delta)
  S.state.active[channel] = (S.state.active[channel] or 0) + delta
end

-- Every change of status goes through here: timestamps, results, callbacks.
local function set_status(entry, status)
  local job = entry.data
  local was_active, is_active = not TERMINAL[job.status], not TERMINAL[status]
  if was_active ~= is_active then count_active(job.channel, is_active and 1 or -1) end
  -- "updated" must visibly change, even for two changes within one millisecond
  entry.updated_at = math.max(now(), entry.updated_at + 0.001)
  job.status, job.updated = status, iso_ms(entry.updated_at)
  if status == "completed" then
    job.attachments = attachments(job.jobid, entry.files)
    job.embeds = array { { type = "rich", description = entry.label .. " done" } }
    job.content = job_content(entry, "Completed")
  elseif status == "failed" then
    job.error = "Job failed"
    if entry.fail_content then job.content = entry.fail_content end
  end
  if TERMINAL[status] and type(job.replyUrl) == "string" and job.replyUrl:find("^http://") then
    send_callback(job)
  end
end

local function schedule_job(entry)
  local half = S.config.job_seconds / 2
  spawn(function()
    sleep(half)
    if S.state.jobs[entry.data.jobid] ~= entry then return end    -- forgotten by a reset
    if entry.data.status == "started" then set_status(entry, "progress") end
    sleep(half)
    if S.state.jobs[entry.data.jobid] ~= entry then return end
    if not TERMINAL[entry.data.status] then set_status(entry, entry.final) end
  end)
end

-- The fields every job-shaped answer has, for an account; stored so GET /jobs/?jobid= finds it.
local function new_job(verb, account, params, status)
  local t = now()
  local job = {
    jobid = random_hex(32), verb = verb, status = status, created = iso_ms(t), updated = iso_ms(t),
    discord = M.mask(account.discord), server = account.server, channel = account.channel,
    messageId = random_digits(19), timestamp = iso_us(t), code = 200,
  }
  if nonempty(params.replyUrl) then job.replyUrl = params.replyUrl end
  if nonempty(params.replyRef) then job.replyRef = params.replyRef end
  local entry = { data = job, updated_at = t, files = {} }
  S.state.jobs[job.jobid] = entry
  S.state.job_order[#S.state.job_order + 1] = job.jobid
  return entry
end

-- A job that runs for job_seconds (headshot, changebg, an asynchronous picsi). spec: verb,
-- label (its name in the bot's messages), prompt, cost, account, identity (the saved face it
-- uses; nil when the account has none: the job fails, see commands.lua), files (result PNGs).
-- A prompt containing "sim:fail" or "sim:moderate" ends the job so.
local function create_job(spec, params)
  local account = spec.account
  local entry = new_job(spec.verb, account, params, "started")
  local job = entry.data
  job.prompt = spec.prompt
  entry.label, entry.identity, entry.files = spec.label, spec.identity, spec.files
  entry.cost = spec.identity and spec.cost or 0
  M.charge(account, entry.cost)
  entry.left, entry.total = M.left(account), account.credits.total
  local prompt = spec.prompt or ""
  entry.final = "completed"
  if not spec.identity then
    entry.final = "failed"
    entry.fail_content = string.format("%s You have no saved ID yet: save a face with /saveid first "
      .. "[jobid: %s]", DISCORD_USER, job.jobid)
  elseif prompt:find("sim:fail", 1, true) then
    entry.final = "failed"
  elseif prompt:find("sim:moderate", 1, true) then
    entry.final = "moderated"
  end
  job.content = job_content(entry, "Submitted")
  count_active(account.channel, 1)
  schedule_job(entry)
  return job
end

-- The job-shaped answer of a blocking command, finished at once: status completed (with
-- files as attachments) or failed (with the bot's reply in content).
local function finished_job(verb, account, params, content, files)
  local entry = new_job(verb, account, params, files and "completed" or "failed")
  entry.files = files or {}
  local job = entry.data
  job.content = content
  if files then
    if #files > 0 then job.attachments = attachments(job.jobid, files) end
  else
    job.error = "Job failed"
  end
  return job
end

-- Jobs not yet in a terminal status, oldest first (GET /jobs).
local function running_jobids()
  local out = array {}
  for _, id in ipairs(S.state.job_order) do
    if not TERMINAL[S.state.jobs[id].data.status] then out[#out + 1] = id end
  end
  return out
end

-- Looks the jobid query parameter up; returns the entry or an error response.
local function find_job(req)
  local jobid = parse_query(req.query).jobid
  if not nonempty(jobid) then return nil, error_response(400, "Query param jobid not provided") end
  local entry = S.state.jobs[jobid]
  if not entry then return nil, error_response(404, "Unable to locate job " .. jobid) end
  return entry
end

local function get_job(req)
  local entry, err = find_job(req)
  if not entry then return err end
  return json_response(200, entry.data)
end

local function cancel_job(req)
  local entry, err = find_job(req)
  if not entry then return err end
  if not TERMINAL[entry.data.status] then set_status(entry, "cancelled") end
  return json_response(200, { jobid = entry.data.jobid, status = entry.data.status, code = 200 })
end


M.CREDITS_PER_JOB, M.TERMINAL, M.STATUSES = CREDITS_PER_JOB, TERMINAL, STATUSES
M.finished_job, M.running_jobids = finished_job, running_jobids
M.set_status, M.create_job, M.find_job, M.get_job, M.cancel_job =
  set_status, create_job, find_job, get_job, cancel_job

return M
