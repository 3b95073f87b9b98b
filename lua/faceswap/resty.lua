--- The client inside OpenResty.
-- faceswap.resty: the client inside OpenResty. nginx's cosockets move the bytes, so a call
-- yields to nginx instead of blocking the worker; tasks are nginx light threads and sleeping
-- is ngx.sleep. Requests are still checked and built, and answers read, by the C core: only
-- the transport and the scheduler differ from plain Lua. faceswap.new picks these by itself
-- when it runs inside nginx. Also here: callback(handler), a replyUrl endpoint.
--
-- Three parts, one file each: faceswap.resty.transport (HTTP over cosockets),
-- faceswap.resty.scheduler (tasks as light threads: the transport contract of
-- docs/development.md) and faceswap.resty.callback (the replyUrl endpoint).
--
-- `faceswap.new` picks this transport by itself inside nginx; a program calls only @{callback}.
-- @module faceswap.resty
local transport = require "faceswap.resty.transport"
local scheduler = require "faceswap.resty.scheduler"
local callback = require "faceswap.resty.callback"

local M = {}

-- resty.transport{token=, base_url=, timeout=, connect_timeout=, max_response=}: the same
-- checks and defaults as the C transport's.
M.transport = transport.transport

-- resty.scheduler(transport): the client's tasks and requests over that transport.
M.scheduler = scheduler.new

--- A replyUrl endpoint, for a `content_by_lua` handler.
-- In a content_by_lua handler: reads a replyUrl POST, answers 400 to a body that is not a
-- job, else 204 at once, then calls handler(job) once per jobid and status.
-- @tparam function handler called as `handler(job)` after the answer has gone; what it
-- raises is logged
-- @tparam[opt] table opts `dict`: the name of a `lua_shared_dict` that remembers the callbacks
-- seen, for all workers (without it, each worker remembers its own); `coordinator`
-- (`"shared:DICT"` or `"redis://HOST:PORT/DB"`, default `$FACESWAP_COORDINATOR`): each ended
-- job is published there, before handler runs, so that a `client:wait` on any worker or node
-- sharing that coordinator returns at once
function M.callback(handler, opts)
  return callback(handler, opts)
end

return M
