-- Throwaway TLS material for specs and benchmarks, made with the openssl tool into a fresh
-- directory: a CA, a server certificate it signs for 127.0.0.1 and localhost, and a
-- self-signed certificate for the same names that no CA vouches for (127.0.0.1 also as a DNS
-- name: nginx checks names with X509_check_host only). Nothing touches the
-- system's trust store.
--
--   local tls = require "spec.support.tls"
--   local t = tls.make()   -- t.ca (PEM), t.cert, t.key, t.self_cert, t.self_key, t.dir
--   ...
--   t:remove()
local M = {}

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  if not ok then error("openssl failed: " .. cmd .. "\n" .. out, 3) end
  return out
end

local Tls = {}
Tls.__index = Tls

function Tls:remove()
  if self.dir then os.execute("rm -rf '" .. self.dir .. "'") end
  self.dir = nil
end

function M.make()
  local dir = sh("mktemp -d /tmp/faceswap-tls.XXXXXX"):gsub("%s+$", "")
  local t = setmetatable({
    dir = dir, ca = dir .. "/ca.pem", ca_key = dir .. "/ca.key", cert = dir .. "/server.pem",
    key = dir .. "/server.key", self_cert = dir .. "/self.pem", self_key = dir .. "/self.key",
  }, Tls)
  local san = "-addext 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost'"
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
  sh(string.format("cd '%s' && openssl req -x509 %s -keyout ca.key -out ca.pem " ..
    "-subj '/CN=lua-faceswap test CA' -addext 'basicConstraints=critical,CA:TRUE' " ..
    "-addext 'keyUsage=critical,keyCertSign,cRLSign'", dir, ec))
  sh(string.format("cd '%s' && openssl req -x509 %s -CA ca.pem -CAkey ca.key -keyout server.key " ..
    "-out server.pem -subj '/CN=127.0.0.1' %s", dir, ec, san))
  sh(string.format("cd '%s' && openssl req -x509 %s -keyout self.key -out self.pem " ..
    "-subj '/CN=127.0.0.1' %s", dir, ec, san))
  os.execute("chmod 755 '" .. dir .. "'; chmod 644 '" .. dir .. "'/*")
  return t
end

return M
