--- The replyUrl endpoint inside nginx.
-- faceswap.resty.callback: the handler behind `require("faceswap.resty").callback(handler,
-- opts)` (documented there): reads a replyUrl POST in a content_by_lua handler, answers at
-- once, then calls the handler once per jobid and status.
-- @module faceswap.resty.callback
local core = require "faceswap.core"

local ngx = rawget(_G, "ngx")

local seen_here, seen_count = {}, 0

-- Whether this callback (jobid and status) came before; remembered in the shared dict named
-- `dict` (lua_shared_dict, all workers) when given, else in this worker.
local function first_time(key, dict)
  if dict then
    local shared = ngx.shared[dict]
    if not shared then error("faceswap.resty.callback: no lua_shared_dict '" .. dict .. "'", 3) end
    return (shared:add(key, true, 86400)) == true
  end
  if seen_here[key] then return false end
  if seen_count >= 10000 then seen_here, seen_count = {}, 0 end
  seen_here[key], seen_count = true, seen_count + 1
  return true
end

-- Publishes an ended job (its body as it came) to the coordinator named `spec` ("shared:DICT"
-- or "redis://HOST:PORT/DB"), where a client:wait on any node sharing it sees it at once.
-- What goes wrong is logged: the callback was answered already.
local function publish(spec, job, body)
  local coordinators = require "faceswap.coordinator"
  local ok, coord = pcall(coordinators.new, spec, {})
  if ok then
    local published, why
    ok, published, why = pcall(coord.publish, coord, job.jobid, body)
    if ok and published == false then ok, published = false, why end
    coord:close()
    if ok then return end
    coord = published
  end
  ngx.log(ngx.ERR, "faceswap callback: cannot publish job ", tostring(job.jobid), " to ",
    spec, ": ", tostring(coord))
end

-- callback(handler, opts), as faceswap.resty.callback.
return function(handler, opts)
  opts = opts or {}
  local spec = opts.coordinator
  if spec == nil then spec = os.getenv("FACESWAP_COORDINATOR") end
  if spec == "" or spec == "process" then spec = nil end
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return ngx.exit(405)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    ngx.status = 413
    ngx.say("callback body too large (raise client_body_buffer_size)")
    return ngx.exit(413)
  end
  local job, err = core.decode(body or "")
  if not job then
    ngx.status = 400
    ngx.header.content_type = "text/plain"
    ngx.say(tostring(err))
    return ngx.exit(400)
  end
  ngx.status = 204
  ngx.send_headers()
  ngx.eof() -- answered: upstream waits for nobody's handler
  if first_time(job.jobid .. " " .. tostring(job.status), opts.dict) then
    if spec and type(job.jobid) == "string" and job:done() then publish(spec, job, body) end
    local ok, problem = pcall(handler, job)
    if not ok then ngx.log(ngx.ERR, "faceswap callback handler: ", tostring(problem)) end
  end
end
