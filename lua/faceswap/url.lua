--- URL rules, for every transport.
-- faceswap.url: which URLs a transport may use, and their parts. The rules are the C core's
-- (core.url_problem: https, or plain http to a loopback host only; no spaces, control bytes or
-- credentials; a base URL without query or fragment), so that the libcurl transport and any
-- other (faceswap.resty's cosockets) refuse exactly the same URLs with the same words.
-- @module faceswap.url
local core = require "faceswap.core"

local M = {}

-- Why the URL may not be used, or nil. `base`: it is a base_url (paths are appended to it).
M.problem = core.url_problem

-- The checked base URL without its trailing slashes; raises "bad option 'base_url' (...)", as
-- the C transport does, for one that may not be used.
function M.base(url, level)
  local why = "a string expected"
  if type(url) == "string" then why = core.url_problem(url, true) end
  if why then
    if why == "credentials in the URL are not allowed" then why = why .. "; use token" end
    error("bad option 'base_url' (" .. why .. ")", (level or 1) + 1)
  end
  return (url:gsub("/+$", ""))
end

-- scheme, host, port (a number), path (at least "/") and authority (host[:port] as written)
-- of a URL that passed M.problem.
function M.split(url)
  local scheme, authority, path = url:match("^(https?)://([^/?#]+)(.*)$")
  local host, port = authority:match("^%[(.-)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if path == "" then path = "/" end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), path, authority
end

return M
