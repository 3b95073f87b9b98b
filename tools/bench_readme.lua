-- tools/bench_readme.lua: the README's Benchmarks rows, generated from docs/benchmarks.md.
--
--   lua5.4 tools/bench_readme.lua          rewrites README.md's rows (from the checkout's root)
--   lua5.4 tools/bench_readme.lua --check  exits 1, saying so, when README.md is behind
--
-- The rows are written once, in docs/benchmarks.md between <!-- bench-summary --> and
-- <!-- /bench-summary -->; the README has the same markers, and what lies between them there
-- is that table with its links made relative to the checkout's root (docs/...).
local M = {}

local OPEN, CLOSE = "<!-- bench-summary -->", "<!-- /bench-summary -->"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = assert(f:read("*a"))
  f:close()
  return s
end

-- The text between the markers of s (the markers excluded), and where it begins and ends.
local function between(s, name)
  local a, b = s:find(OPEN, 1, true)
  local c = s:find(CLOSE, b or 1, true)
  if not (a and c) then error(name .. ": no " .. OPEN .. " ... " .. CLOSE .. " block", 0) end
  return s:sub(b + 1, c - 1), b + 1, c - 1
end

-- The README's block for the summary table of docs/benchmarks.md (doc): each relative link
-- gets docs/ in front, a link to an anchor of the page itself its name.
function M.block(doc)
  local rows = between(doc, "docs/benchmarks.md")
  return (rows:gsub("%]%(([^)]+)%)", function(target)
    if target:match("^%a[%w+.-]*:") then return "](" .. target .. ")" end -- not relative
    if target:sub(1, 1) == "#" then return "](docs/benchmarks.md" .. target .. ")" end
    return "](docs/" .. target .. ")"
  end))
end

-- README text with its block replaced by the one made from doc.
function M.rewrite(readme, doc)
  local _, from, to = between(readme, "README.md")
  return readme:sub(1, from - 1) .. M.block(doc) .. readme:sub(to + 1)
end

if arg and arg[0] and arg[0]:match("bench_readme%.lua$") then
  local readme, doc = read("README.md"), read("docs/benchmarks.md")
  local new = M.rewrite(readme, doc)
  if arg[1] == "--check" then
    if new ~= readme then
      io.stderr:write("README.md's Benchmarks rows differ from docs/benchmarks.md's summary: ",
        "run lua5.4 tools/bench_readme.lua\n")
      os.exit(1)
    end
  elseif new ~= readme then
    local f = assert(io.open("README.md.tmp", "wb"))
    assert(f:write(new))
    assert(f:close())
    assert(os.rename("README.md.tmp", "README.md"))
    print("rewrote README.md's Benchmarks rows")
  end
end

return M
