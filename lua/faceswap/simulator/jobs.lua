-- faceswap.simulator.jobs: jobs and their time: creation, the status timeline, results,
-- callbacks to replyUrl, and the GET /jobs answers.
local util = require "faceswap.simulator.util"
local images = require "faceswap.simulator.png"
local sched = require "faceswap.simulator.sched"
local http = require "faceswap.simulator.http"
local S = require "faceswap.simulator.state"

local M = {}

local array, encode, now = util.array, util.encode, util.now
local iso_ms, iso_us, random_hex, random_digits = util.iso_ms, util.iso_us, util.random_hex, util.random_digits
local nonempty, number_text, parse_query = util.nonempty, util.number_text, util.parse_query
local spawn, sleep = sched.spawn, sched.sleep
local json_response, error_response, http_post = http.json_response, http.error_response, http.http_post
local PNGS, PNG_SIZE = images.PNGS, images.PNG_SIZE

local CREDITS_PER_JOB = 4
local TERMINAL = { completed = true, failed = true, moderated = true, cancelled = true }
local STATUSES = { created = true, started = true, progress = true, completed = true,
                   failed = true, moderated = true, cancelled = true }
local DISCORD_USER = "<@100000000000000001>"

---------------------------------------------------------------------------------------------
-- Jobs
---------------------------------------------------------------------------------------------
local function job_content(entry, word)
  local job = entry.data
  return string.format("%s Picsi.Ai Headshot Job %s [jobid: %s] [credits: %d] [prompt: '%s'] "
    .. "[time: 12s] [SaveID: 'me'] (%s/%s credits remaining)", DISCORD_USER, word, job.jobid,
    CREDITS_PER_JOB, job.prompt, number_text(entry.left), number_text(entry.total))
end

local function attachments(jobid)
  local list = array {}
  for n, png in ipairs(PNGS) do
    local tail = string.format("attachments/%s/%d.png?ex=65f1&is=65de&hm=abc123", jobid, n)
    list[n] = {
      id = random_digits(19), filename = string.format("%s_%d.png", jobid, n), size = #png,
      url = S.base_url .. "/" .. tail, proxy_url = S.base_url .. "/proxy/" .. tail,
      width = PNG_SIZE, height = PNG_SIZE, content_type = "image/png",
    }
  end
  return list
end


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
    job.attachments = attachments(job.jobid)
    job.embeds = array { { type = "rich", description = "Headshot done" } }
    job.content = job_content(entry, "Completed")
  elseif status == "failed" then
    job.error = "Job failed"
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

local function create_job(fields, channel)
  S.config.credits_used = S.config.credits_used + CREDITS_PER_JOB
  local t = now()
  local job = {
    jobid = random_hex(32), verb = "faceswap-headshot", status = "started", prompt = fields.prompt,
    created = iso_ms(t), updated = iso_ms(t), discord = "ABC\u{2026}secured\u{2026}xyz",
    server = "1000000000000000001", channel = channel, messageId = random_digits(19),
    timestamp = iso_us(t), code = 200,
  }
  if nonempty(fields.replyUrl) then job.replyUrl = fields.replyUrl end
  if nonempty(fields.replyRef) then job.replyRef = fields.replyRef end
  local final = "completed"
  if fields.prompt:find("sim:fail", 1, true) then
    final = "failed"
  elseif fields.prompt:find("sim:moderate", 1, true) then
    final = "moderated"
  end
  local entry = { data = job, final = final, updated_at = t,
                  left = S.config.credits_total - S.config.credits_used, total = S.config.credits_total }
  job.content = job_content(entry, "Submitted")
  S.state.jobs[job.jobid] = entry
  S.state.job_order[#S.state.job_order + 1] = job.jobid
  count_active(channel, 1)
  schedule_job(entry)
  return job
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
M.set_status, M.create_job, M.find_job, M.get_job, M.cancel_job =
  set_status, create_job, find_job, get_job, cancel_job

return M
