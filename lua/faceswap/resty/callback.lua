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

-- callback(handler, opts), as faceswap.resty.callback.
return function(handler, opts)
  opts = opts or {}
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
    local ok, problem = pcall(handler, job)
    if not ok then ngx.log(ngx.ERR, "faceswap callback handler: ", tostring(problem)) end
  end
end
