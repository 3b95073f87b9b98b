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

-- A file's bytes; raises (naming the file) when it cannot be read.
function M.contents(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- Writes data to path (bytes as they are).
function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- A new scratch directory (mktemp -d): the caller removes it.
function M.tmpdir()
  return (M.capture("mktemp -d"):gsub("\n$", ""))
end

-- The names in a directory (ls -A), sorted.
function M.ls(dir)
  local names = {}
  for name in M.capture("ls -A " .. M.quote(dir)):gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- The text's lines, without their newlines (a last line without one is left out).
function M.lines(text)
  local out = {}
  for line in text:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- The checkout's root (busted runs from it), and bin/faceswap as a shell command: on 5.4 by its
-- #! line, as a user runs it; on another Lua through that Lua, so the command line is tested on
-- each (bin/faceswap picks the matching build).
M.ROOT = M.capture("pwd"):gsub("\n$", "")
local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
M.BIN = (lua == "lua5.4" and "" or lua .. " ") .. M.quote(M.ROOT .. "/bin/faceswap")

-- The first ```language block after the line `heading` of a markdown file, without its last newline:
-- the guides' specs run the code of docs/ as it is written.
function M.code_block(path, heading, language)
  local text = assert(M.read(path), path)
  local from = assert(text:find(heading, 1, true), "no heading " .. heading)
  local code = text:match("\n```" .. language .. "\n(.-)\n```\n", from)
  return (assert(code, "no ```" .. language .. " block after " .. heading))
end

return M
