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

-- The first ```language block after the line `heading` of a markdown file, without its last newline:
-- the guides' specs run the code of docs/ as it is written.
function M.code_block(path, heading, language)
  local text = assert(M.read(path), path)
  local from = assert(text:find(heading, 1, true), "no heading " .. heading)
  local code = text:match("\n```" .. language .. "\n(.-)\n```\n", from)
  return (assert(code, "no ```" .. language .. " block after " .. heading))
end

return M
