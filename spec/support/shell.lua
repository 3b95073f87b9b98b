-- Small shell helpers for specs that run commands (the command line, the secrets checks).
local M = {}

-- s as one single-quoted shell word.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- What cmd prints on stdout.
function M.capture(cmd)
  local pipe = assert(io.popen(cmd))
  local out = pipe:read("*a")
  pipe:close()
  return out
end

-- A file's bytes, or nil when it cannot be read.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

return M
