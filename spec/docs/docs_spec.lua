-- Every code block of the guides (README.md and docs/*.md) works as written.
--  * ```lua: run as a child lua5.4 (`local faceswap = require "faceswap"` before it) in a scratch
--    directory, with USEAPI_TOKEN and USEAPI_BASE_URL pointing at a simulator and LUA_PATH and
--    LUA_CPATH at the checkout, under `timeout`; it must exit 0. A block that cannot run alone
--    (an endless server, a block for nginx or for a host) has `<!-- run by spec/NAME -->` on the
--    line before it: that spec must exist and name the page. Those marked for this spec run
--    here with a stand-in host (LÖVE, libuv, WeeChat: docs/hosts.md) or through busted
--    (docs/simulator.md).
--  * ```sh: `sh -n`; every `faceswap ...` line of docs/cli.md and docs/commands.md runs against
--    the simulator.
--  * ```c: compiled (a fragment inside a main, -fsyntax-only).
--  * ```nginx: must be marked.
-- And every relative link of these pages names a file of the checkout (and a heading there).
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- the checkout's root
local fixture = require "spec.support.fixture"
local faceswap = require "faceswap"

local ROOT = nginx.root
local TOKEN = "docs-token"
local THIS = "spec/docs/docs_spec.lua"
local CHANNELS = { "1100000000000000001", "1100000000000000002" }   -- the accounts the examples name
-- The pages whose ```sh blocks' `faceswap` lines run against the simulator.
local CLI_PAGES = { ["docs/cli.md"] = true, ["docs/commands.md"] = true }

local function pages()
  local list = { "README.md" }
  for name in shell.capture("ls docs/*.md"):gmatch("[^\n]+") do list[#list + 1] = name end
  return list
end

-- The fenced blocks of a page: {page, line, lang, code, marker}; marker is the spec named by a
-- `<!-- run by spec/... -->` line right before the fence (blank lines between are not allowed).
local function blocks(page)
  local lines = {}
  for line in (shell.read(page) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local out, i = {}, 1
  while i <= #lines do
    local lang = lines[i]:match("^```(%S*)%s*$")
    if lang then
      local start, code = i, {}
      i = i + 1
      while i <= #lines and lines[i] ~= "```" do
        code[#code + 1] = lines[i]
        i = i + 1
      end
      assert(i <= #lines, page .. ":" .. start .. ": a code block that never ends")
      out[#out + 1] = { page = page, line = start, lang = lang, code = table.concat(code, "\n") .. "\n",
                        marker = (lines[start - 1] or ""):match("^<!%-%- run by (%S+) %-%->$") }
    end
    i = i + 1
  end
  return out
end

local ALL = {}
for _, page in ipairs(pages()) do
  for _, b in ipairs(blocks(page)) do ALL[#ALL + 1] = b end
end

local function where(b) return b.page .. ":" .. b.line end

local function env_prefix(base_url)
  return "env -u FACESWAP_LOG USEAPI_TOKEN=" .. shell.quote(TOKEN) ..
    " USEAPI_BASE_URL=" .. shell.quote(base_url) ..
    " PATH=" .. shell.quote(ROOT .. "/bin") .. ":\"$PATH\"" ..
    " LUA_PATH=" .. shell.quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;") ..
    " LUA_CPATH=" .. shell.quote(ROOT .. "/build/5.4/?.so;;")
end

-- Runs a shell command in dir with the simulator's environment; returns its output and status.
local function run_in(dir, base_url, command, seconds)
  local out = shell.capture("cd " .. shell.quote(dir) .. " && " .. env_prefix(base_url) ..
    " timeout " .. (seconds or 120) .. " " .. command .. " 2>&1; echo \"exit $?\"")
  local status = tonumber(out:match("exit (%d+)\n$"))
  return out:gsub("exit %d+\n$", ""), status
end

local write = shell.write

-- A scratch directory holding the files the examples name: prompts, and images (a real PNG
-- under every name; the type is read from the bytes).
local function scratch()
  local dir = shell.capture("mktemp -d"):gsub("\n$", "")
  finally(function() os.execute("rm -rf " .. shell.quote(dir)) end)
  write(dir .. "/prompts.txt", "studio portrait\noutdoor portrait\n")
  local png = assert(shell.read(ROOT .. "/spec/support/demo-face.png"))
  for _, name in ipairs { "me.png", "me.jpg", "photo.jpg", "clip.gif", "clip.mp4" } do
    write(dir .. "/" .. name, png)
  end
  return dir
end

-- The blocks marked for this spec: each runs with what its host would give it. `find` picks the
-- block; `before`/`after` are Lua around it (in the same chunk, so they see its locals), `gsub`
-- pairs of plain strings to replace.
local TASK = [[
local faceswap = require "faceswap"
local client = faceswap.new {}
local task = client:spawn(function()
  local job = assert(client:headshot("portrait of a knight", { wait = { interval = 0.2 } }))
  return assert(client:download(job:urls()[1]))
end)
]]
local HOSTED = {
  {
    name = "the LÖVE frame loop, with a stand-in love",
    find = "-- LÖVE 11.4 (main.lua)",
    gsub = { { "/path/to/lua-faceswap", ROOT }, { "/build/luajit/", "/build/5.4/" } },
    before = "love = {}\n",
    after = [[
love.load()
local frames = 0
repeat love.update(); frames = frames + 1; faceswap.sleep(1 / 60) until portrait:done() or frames > 3600
local png, err = portrait:result()
assert(png, tostring(err))
assert(png:sub(1, 8) == "\137PNG\r\n\26\n", "not a PNG")
print("ok")
]],
  },
  {
    name = "the libuv loop, with luv as vim.loop",
    find = "local uv = vim.loop",
    before = "local vim = { loop = require \"luv\" }\n" .. TASK,
    after = [[
uv.run()
assert(task:done(), "the loop ended before the task")
local png, err = task:result()
assert(png, tostring(err))
print("ok")
]],
  },
  {
    name = "the WeeChat hooks, with a stand-in weechat over luv",
    find = "fd_hook = weechat.hook_fd",
    before = [[
local uv = require "luv"
weechat = { WEECHAT_RC_OK = 0 }
-- Each hook's callback ends the uv.run("once") it runs in (uv.stop: that run's poll no longer
-- blocks), so the loop below sees the task done after the callback that finished it. Without
-- it, a timer due when a run begins fires before that run's poll: if it finishes the task
-- (nothing left to arm, fd() quiet for good), the poll blocks forever.
function weechat.hook_fd(fd, read, _, _, callback)
  assert(read == 1)
  local poll = uv.new_poll(fd)
  poll:start("r", function() _G[callback]("", fd); uv.stop() end)
  return poll
end
function weechat.hook_timer(ms, _, calls, callback)
  assert(calls == 1)
  local timer = uv.new_timer()
  timer:start(ms, 0, function() _G[callback]("", 1); uv.stop() end)
  return timer
end
function weechat.unhook(hook) hook:stop(); hook:close() end
]] .. TASK:gsub("local client", "client"),
    after = [[
local turns = 0
while not task:done() and turns < 100000 do uv.run("once"); turns = turns + 1 end
assert(task:done(), "the hooks never finished the task")
local png, err = task:result()
assert(png, tostring(err))
print("ok")
]],
  },
}

local function hosted_entry(b)
  for _, h in ipairs(HOSTED) do
    if b.code:find(h.find, 1, true) then return h end
  end
end

describe("the guides' code blocks #external", function()
  local fx = fixture.simulator { token = TOKEN, job_seconds = 0.5, blocking_seconds = 0.05, channels = CHANNELS,
                                 client = false }

  it("are found (the reader sees what it checks)", function()
    local count = {}
    for _, b in ipairs(ALL) do count[b.lang] = (count[b.lang] or 0) + 1 end
    assert.is_true((count.lua or 0) >= 10, "lua blocks: " .. tostring(count.lua))
    assert.is_true((count.sh or 0) >= 8, "sh blocks: " .. tostring(count.sh))
    assert.is_true((count.nginx or 0) >= 1)
    assert.is_true((count.c or 0) >= 1)
  end)

  it("are marked with specs that exist and name their page, where they cannot run alone", function()
    local problems = {}
    for _, b in ipairs(ALL) do
      if b.marker then
        local text = shell.read(b.marker)
        if not text then
          problems[#problems + 1] = where(b) .. ": " .. b.marker .. " does not exist"
        elseif not text:find(b.page, 1, true) then
          problems[#problems + 1] = where(b) .. ": " .. b.marker .. " does not mention " .. b.page
        elseif b.marker == THIS and b.lang == "lua" and not hosted_entry(b)
               and not b.code:find("busted", 1, true) then
          problems[#problems + 1] = where(b) .. ": marked for " .. THIS .. ", which has no run for it"
        end
      elseif b.lang == "nginx" then
        problems[#problems + 1] = where(b) .. ": an nginx block needs the spec that runs it"
      end
    end
    assert.same({}, problems)
  end)

  for _, b in ipairs(ALL) do
    if b.lang == "lua" and not b.marker then
      it("runs " .. where(b), function()
        local dir = scratch()
        write(dir .. "/block.lua", "local faceswap = require \"faceswap\"\n" .. b.code)
        local out, status = run_in(dir, fx.base_url, "lua5.4 block.lua")
        assert.equal(0, status, where(b) .. ":\n" .. b.code .. "\n--- output:\n" .. out)
      end)
    elseif b.lang == "lua" and b.marker == THIS and hosted_entry(b) then
      local h = hosted_entry(b)
      it("runs " .. where(b) .. ": " .. h.name, function()
        local dir = scratch()
        local code = b.code
        for _, pair in ipairs(h.gsub or {}) do
          local n
          code, n = code:gsub(pair[1]:gsub("%p", "%%%0"), (pair[2]:gsub("%%", "%%%%")))
          assert.is_true(n > 0, pair[1])
        end
        write(dir .. "/block.lua", h.before .. code .. h.after)
        local out, status = run_in(dir, fx.base_url, "lua5.4 block.lua")
        assert.equal(0, status, where(b) .. ":\n" .. out)
        assert.equal("ok\n", out:match("ok\n$"), out)
      end)
    elseif b.lang == "sh" then
      it("has shell syntax at " .. where(b), function()
        local dir = scratch()
        write(dir .. "/block.sh", b.code)
        local out, status = run_in(dir, fx.base_url, "sh -n block.sh")
        assert.equal(0, status, where(b) .. ":\n" .. out)
      end)
    elseif b.lang == "c" then
      it("compiles " .. where(b), function()
        local dir = scratch()
        local code = b.code
        if not code:find("int%s+main%s*%(") then   -- a fragment: its #lines, then the rest in a main
          local top, body = {}, {}
          for line in code:gmatch("[^\n]+") do
            if line:find("^#") then top[#top + 1] = line else body[#body + 1] = line end
          end
          code = "#include <lauxlib.h>\n#include <lualib.h>\n" .. table.concat(top, "\n") ..
            "\nint main(void) {\n" .. table.concat(body, "\n") .. "\nlua_close(L);\nreturn 0;\n}\n"
        end
        write(dir .. "/block.c", code)
        local out, status = run_in(dir, fx.base_url, "cc -std=c99 -Wall -Wextra -Werror -fsyntax-only -I" ..
          shell.quote(ROOT .. "/csrc") .. " $(pkg-config --cflags lua5.4) block.c")
        assert.equal(0, status, where(b) .. ":\n" .. code .. "\n" .. out)
      end)
    end
  end

  it("runs docs/simulator.md's busted spec as written", function()
    local dir = scratch()
    local block = shell.code_block("docs/simulator.md", "## Using it from your own tests", "lua")
    os.execute("mkdir -p " .. shell.quote(dir .. "/spec"))
    write(dir .. "/spec/my_app_spec.lua", block .. "\n")
    local out, status = run_in(dir, fx.base_url, "lua5.4 /usr/bin/busted -o plainTerminal spec/my_app_spec.lua")
    assert.equal(0, status, out)
    assert.matches("2 successes / 0 failures / 0 errors", out)
  end)

  it("runs every faceswap command line of docs/cli.md and docs/commands.md against the simulator", function()
    local dir = scratch()
    local client = faceswap.new { token = TOKEN, base_url = fx.base_url, retry = false }
    local job = assert(client:headshot("a job for the examples"))
    client:close()
    local ran, failed = 0, {}
    for _, b in ipairs(ALL) do
      if CLI_PAGES[b.page] and b.lang == "sh" then
        for line in b.code:gmatch("[^\n]+") do
          local command = line:gsub("%s+#.*$", "")
          if command:find("^faceswap ") or command:find("^[A-Z_]+=%S+ faceswap ") then
            command = command:gsub("8a1f574fdbf79e8cd57e070476d9d5f3", job.jobid)
            local out, status = run_in(dir, fx.base_url, "sh -c " .. shell.quote(command))
            ran = ran + 1
            if status ~= 0 then failed[#failed + 1] = command .. " -> exit " .. status .. ": " .. out end
          end
        end
      end
    end
    assert.is_true(ran >= 5, "faceswap lines run: " .. ran)
    assert.same({}, failed)
    assert.equal("\137PNG\r\n\26\n", (shell.read(dir .. "/out/" .. job.jobid .. "-1.png") or ""):sub(1, 8))
  end)
end)

-- GitHub's anchor of a heading.
local function slug(heading)
  return (heading:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
end

describe("the guides' links #external", function()
  it("name files of the checkout, and headings that exist", function()
    local problems = {}
    for _, page in ipairs(pages()) do
      local dir = page:match("^(.*)/") or "."
      local text = shell.read(page):gsub("\n```.-\n```", "")
      for target in text:gmatch("%]%(([^)%s]+)%)") do
        if not target:find("^%a[%w+.-]*:") then   -- not https:, mailto:
          local file, anchor = target:match("^([^#]*)#?(.*)$")
          local path = file == "" and page or (dir .. "/" .. file)
          local body = shell.read(path)
          local inside = shell.capture("realpath -m --relative-to=. " .. shell.quote(path)):gsub("\n$", "")
          if inside:find("^%.%.") then
            problems[#problems + 1] = page .. ": " .. target .. " leaves the repository"
          elseif not body and not shell.read(path .. "/README.md") then
            problems[#problems + 1] = page .. ": " .. target .. " does not exist"
          elseif anchor ~= "" then
            local found = false
            for heading in (body or ""):gmatch("\n#+ ([^\n]+)") do
              if slug(heading) == anchor then found = true end
            end
            if not found then problems[#problems + 1] = page .. ": " .. target .. ": no such heading" end
          end
        end
      end
    end
    assert.same({}, problems)
  end)
end)
