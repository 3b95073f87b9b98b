-- The generators of tools/ (tools/gen.lua) and what the Makefile does with them: the docs'
-- table of the commands (`make docs-tables`), the man page faceswap(1) (`make man`), the bash
-- completion (`make completion`), and `make install` putting them (and the LuaLS types) where
-- man, bash-completion and an editor look.
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- the checkout's root
local faceswap = require "faceswap"
local tables = require "tools.commands_table"

local ROOT = nginx.root
local quote, capture = shell.quote, shell.capture
local BUILD = "build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+"))

-- Runs a shell command; returns its output (stdout and stderr) and its exit status.
local function run(command)
  local out = capture("(" .. command .. ") 2>&1; echo \"exit $?\"")
  return (out:gsub("exit %d+\n$", "")), tonumber(out:match("exit (%d+)\n$"))
end

-- `make ARGS` in the checkout for this Lua's build, nothing of an outer make leaking in.
local function make(args)
  local lua = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
  return run("cd " .. quote(ROOT) .. " && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
    "make --no-print-directory LUA_VERSION=" .. lua .. " " .. args)
end

local function mktemp()
  return (capture("mktemp -d /tmp/faceswap-tools.XXXXXX"):gsub("\n$", ""))
end

-- The subcommands of `faceswap`, as a user types them.
local SUBCOMMANDS = { "headshot", "job", "wait", "cancel", "batch", "saveid", "swapid", "listid",
  "setid", "delid", "delall", "inswapper", "picsi", "changebg", "jobs", "account" }

describe("make docs-tables #external", function()
  it("finds docs/commands.md's table equal to the generator's output", function()
    local out, status = make("docs-tables")
    assert.equal(0, status, out)
    assert.truthy(out:find("docs/commands.md: its table is up to date\n", 1, true), out)
  end)

  it("rewrites a stale table in place and leaves the rest of the page as it is", function()
    local doc = assert(shell.read("docs/commands.md"))
    local stale = doc:gsub("\n| saveid |[^\n]*", "", 1):gsub("| jobs | `client:jobs%(%)`", "| jobs | `client:old()`")
    assert.are_not.equal(doc, stale)
    assert.equal(doc, tables.rewrite(stale, faceswap.commands))
    assert.equal(doc, tables.rewrite(doc, faceswap.commands))
  end)
end)

describe("faceswap(1) #external", function()
  local page
  setup(function()
    local out, status = make("man")
    assert.equal(0, status, out)
    page = ROOT .. "/" .. BUILD .. "/share/man/man1/faceswap.1"
  end)

  it("renders without a warning from groff or man", function()
    assert.same({ "", 0 }, { run("groff -man -Tutf8 -ww -z " .. quote(page)) })
    local text, status = run("MANWIDTH=80 man --warnings -l " .. quote(page) .. " 2>&1 >/dev/null")
    assert.same({ "", 0 }, { text, status })
  end)

  it("names every subcommand and option, and the version", function()
    local text, status = run("MANWIDTH=80 man -l " .. quote(page) .. " | col -bx")
    assert.equal(0, status, text)
    assert.truthy(text:find("^FACESWAP%(1%)"), text)
    for _, name in ipairs(SUBCOMMANDS) do
      assert.truthy(text:find("\n       " .. name .. "[ \n]"), "no entry for " .. name)
    end
    assert.truthy(text:find("\n       account add CHANNEL %-%-server ID\n"), text)
    assert.truthy(text:find("\n       account delete CHANNEL %-%-yes\n"), text)
    -- every command of the table that is a subcommand of its own, with its request
    for _, row in ipairs(faceswap.commands) do
      if row.common then
        assert.truthy(text:find("Sends%s+" .. row.method .. "%s+" .. row.path:gsub("%p", "%%%0")), row.name)
      end
    end
    for _, option in ipairs { "channel ID", "reply-url URL", "reply-ref REF", "wait", "download DIR",
      "json", "concurrency N", "channels all|ID,ID", "options FLAGS", "server ID", "yes", "state FILE|URL",
      "resubmit-unknown", "coordinator URL", "lease S", "interval S", "base-url URL", "help", "version" } do
      assert.truthy(text:find("\n       %-%-" .. option:gsub("%p", "%%%0") .. "[ \n]"), "no entry for --" .. option)
    end
    assert.truthy(text:find("\n       %-%-yes%s+confirm%s+a%s+command%s+that%s+deletes%s+" ..
      "%(delall,%s+account%s+delete%)%.%s+" ..
      "For%s+delall,"), text)
    assert.truthy(text:find("%-%-server ID\n%s+the account's Discord server%.%s+For account add%.\n"), text)
    assert.truthy(text:find("\nlua%-faceswap " .. faceswap._VERSION:match("[%d.]+$"):gsub("%.", "%%.")), text)
  end)
end)

describe("the bash completion #external", function()
  local script, dir
  setup(function()
    local out, status = make("completion")
    assert.equal(0, status, out)
    script = ROOT .. "/" .. BUILD .. "/share/bash-completion/completions/faceswap"
    dir = mktemp()
    assert(os.execute("cd " .. quote(dir) .. " && mkdir out && : >me.png && : >notes.txt"))
  end)
  teardown(function() if dir then os.execute("rm -rf " .. quote(dir)) end end)

  -- What bash offers for the command line `words` (the last one being completed), sorted.
  local function complete(...)
    local words = {}
    for i = 1, select("#", ...) do words[i] = quote((select(i, ...))) end
    local out, status = run("cd " .. quote(dir) .. " && bash -c " .. quote(
      "source " .. quote(script) .. " && COMP_WORDS=(" .. table.concat(words, " ") ..
      ") && COMP_CWORD=" .. (#words - 1) .. " && _faceswap && printf '%s\\n' \"${COMPREPLY[@]}\" | sort"))
    assert.equal(0, status, out)
    local list = {}
    for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
    return list
  end

  it("offers the subcommands after `faceswap `", function()
    local want = {}
    for i, name in ipairs(SUBCOMMANDS) do want[i] = name end
    table.sort(want)
    assert.same(want, complete("faceswap", ""))
    assert.same({ "saveid", "setid", "swapid" }, complete("faceswap", "s"))
  end)

  it("offers each subcommand's options after `--`", function()
    assert.same({ "--base-url", "--channel", "--coordinator", "--help", "--json", "--lease", "--reply-ref",
      "--reply-url", "--version" }, complete("faceswap", "saveid", "--"))
    assert.same({ "--base-url", "--channel", "--coordinator", "--help", "--json", "--lease", "--reply-ref",
      "--reply-url", "--version", "--yes" }, complete("faceswap", "delall", "--"))
    assert.same({ "--base-url", "--help", "--version" }, complete("faceswap", "--"))
    assert.same({ "--channels", "--concurrency", "--coordinator" },
      complete("faceswap", "batch", "prompts.txt", "--c"))
  end)

  it("completes file names for file arguments, directories and words for option values", function()
    assert.same({}, complete("faceswap", "saveid", ""))                  -- IDNAME
    assert.same({ "me.png", "notes.txt", "out" }, complete("faceswap", "saveid", "me", ""))
    assert.same({ "me.png" }, complete("faceswap", "picsi", "me.png", "--wait", "m"))
    assert.same({ "out" }, complete("faceswap", "batch", "--download", ""))
    assert.same({ "--download=out" }, complete("faceswap", "headshot", "x", "--download=o"))
    assert.same({ "all" }, complete("faceswap", "batch", "--channels", ""))
    assert.same({ "add", "delete" }, complete("faceswap", "account", ""))
    assert.same({}, complete("faceswap", "headshot", "--channel", ""))   -- an id: nothing to offer
  end)
end)

describe("make install of the generated files #external", function()
  local scratch
  setup(function() scratch = mktemp() end)
  teardown(function() if scratch then os.execute("rm -rf " .. quote(scratch)) end end)

  it("puts the man page, the completion and the editor's types where man, bash and an editor look", function()
    local prefix = scratch .. "/opt"
    local out, status = make("install PREFIX=" .. quote(prefix))
    assert.equal(0, status, out)
    for built, installed in pairs {
      ["man/man1/faceswap.1"] = "man/man1/faceswap.1",
      ["bash-completion/completions/faceswap"] = "bash-completion/completions/faceswap",
      ["lua-faceswap/library/faceswap.lua"] = "lua-faceswap/library/faceswap.lua",
    } do
      local want = assert(shell.read(ROOT .. "/" .. BUILD .. "/share/" .. built), built)
      assert.equal(want, shell.read(prefix .. "/share/" .. installed), installed)
    end
    -- man finds it by name under the prefix's man tree
    local text
    text, status = run("MANWIDTH=80 man -M " .. quote(prefix .. "/share/man") .. " faceswap | col -b | head -n 1")
    assert.equal(0, status, text)
    assert.truthy(text:find("^FACESWAP%(1%)"), text)
    -- bash registers the completion for the command
    assert.same({ "complete -F _faceswap faceswap\n", 0 }, { run("bash -c " .. quote("source " ..
      quote(prefix .. "/share/bash-completion/completions/faceswap") .. " && complete -p faceswap")) })
    assert.equal(require("tools.types").render(), shell.read(prefix .. "/share/lua-faceswap/library/faceswap.lua"))
  end)
end)
