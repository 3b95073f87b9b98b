-- Installs that work where they land, as README.md's Install section, docs/getting-started.md
-- and docs/hosts.md tell a user: `make install` to a scratch PREFIX (and through DESTDIR), run
-- from another directory with nothing but what the install printed; a second Lua's install
-- into the same PREFIX; the README's LuaRocks lines as written, into a scratch HOME; the C host
-- of docs/hosts.md built with its cc line as written.
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- the checkout's root
local faceswap = require "faceswap"

local ROOT = nginx.root
local VERSION = faceswap._VERSION -- "lua-faceswap X.Y.Z"
local quote, capture = shell.quote, shell.capture

-- Runs a shell command; returns its output (stdout and stderr) and its exit status.
local function run(command)
  local out = capture("(" .. command .. ") 2>&1; echo \"exit $?\"")
  return (out:gsub("exit %d+\n$", "")), tonumber(out:match("exit (%d+)\n$"))
end

-- `make ARGS` in the checkout as a user types it: nothing of an outer make leaks in.
local function make(args)
  return run("cd " .. quote(ROOT) .. " && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
    "make --no-print-directory " .. args)
end

-- Runs a shell script in dir with a bare environment: PATH without the checkout, HOME = home
-- (dir by default), no LUA_PATH or LUA_CPATH of any kind.
local function bare(dir, script, home)
  return run("cd " .. quote(dir) .. " && env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=" ..
    quote(home or dir) .. " sh -e -c " .. quote(script))
end

-- The `export ...` lines of make's output.
local function exports(out)
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    if line:find("^export ") then lines[#lines + 1] = line end
  end
  return lines
end

local function mktemp()
  local dir = capture("mktemp -d /tmp/faceswap-install.XXXXXX"):gsub("\n$", "")
  os.execute("chmod 755 " .. quote(dir))
  return dir
end

-- What a Lua prints when a script requires the library: its version and where its core is.
local WHERE = "lua -e 'print(require(\"faceswap\")._VERSION, package.searchpath(\"faceswap.core\", package.cpath))'"
local function where(lua) return (WHERE:gsub("^lua", lua)) end

describe("make install #external", function()
  local scratch, prefix, elsewhere, first_out, first_status

  setup(function()
    scratch = mktemp()
    prefix = scratch .. "/opt"
    elsewhere = scratch .. "/elsewhere"
    os.execute("mkdir -p " .. quote(elsewhere))
    first_out, first_status = make("install PREFIX=" .. quote(prefix))
  end)
  teardown(function() if scratch then os.execute("rm -rf " .. quote(scratch)) end end)

  it("to a PREFIX: its scripts run from anywhere, and it prints the lines a user's own scripts need", function()
    assert.equal(0, first_status, first_out)
    local lines = exports(first_out)
    assert.same({
      'export LUA_PATH_5_4="' .. prefix .. "/share/lua/5.4/?.lua;" .. prefix ..
        '/share/lua/5.4/?/init.lua;${LUA_PATH_5_4:-;}"',
      'export LUA_CPATH_5_4="' .. prefix .. '/lib/lua/5.4/?.so;${LUA_CPATH_5_4:-;}"',
    }, lines)
    assert.truthy(first_out:find("\nlua5.4 does not look in " .. prefix .. "/share/lua/5.4 and " .. prefix ..
      "/lib/lua/5.4 by itself: faceswap finds them, and for your own scripts:\n", 1, true), first_out)
    assert.same({ VERSION .. "\n", 0 }, { bare(elsewhere, quote(prefix .. "/bin/faceswap") .. " --version") })
    assert.same({ VERSION .. "\n", 0 }, { bare(elsewhere, quote(prefix .. "/bin/faceswap-5.4") .. " --version") })
    local help, status = bare(elsewhere, quote(prefix .. "/bin/faceswap-sim") .. " --help")
    assert.equal(0, status, help)
    assert.matches("^usage: faceswap%-sim ", help)
    -- a script of the user's: not without the lines, and with them from this install
    local _, without = bare(elsewhere, "lua5.4 -e 'require \"faceswap\"'")
    assert.is_not.equal(0, without)
    assert.same({ VERSION .. "\t" .. prefix .. "/lib/lua/5.4/faceswap/core.so\n", 0 },
      { bare(elsewhere, table.concat(lines, "\n") .. "\n" .. where("lua5.4")) })
  end)

  it("for a second Lua into the same PREFIX leaves the first's scripts as they were", function()
    assert.equal(0, first_status, first_out)
    local before = {}
    for _, name in ipairs { "faceswap", "faceswap-5.4", "faceswap-sim" } do
      before[name] = assert(shell.read(prefix .. "/bin/" .. name))
    end
    local out, status = make("install LUA_VERSION=luajit PREFIX=" .. quote(prefix))
    assert.equal(0, status, out)
    for name, text in pairs(before) do assert.equal(text, shell.read(prefix .. "/bin/" .. name), name) end
    assert.truthy(out:find("\nkept " .. prefix .. "/bin/faceswap, installed by make install LUA_VERSION=5.4: " ..
      "this Lua's is " .. prefix .. "/bin/faceswap-luajit\n", 1, true), out)
    assert.truthy(out:find("\nkept " .. prefix .. "/bin/faceswap-sim, installed by make install " ..
      "LUA_VERSION=5.4: it serves every Lua alike\n", 1, true), out)
    assert.equal("#!/usr/bin/env lua5.4\n", before.faceswap:match("^[^\n]*\n"))
    assert.equal("#!/usr/bin/env luajit\n", shell.read(prefix .. "/bin/faceswap-luajit"):match("^[^\n]*\n"))
    assert.same({ VERSION .. "\n", 0 }, { bare(elsewhere, quote(prefix .. "/bin/faceswap-luajit") .. " --version") })
    -- each Lua's lines name its own variables: with both sets, each Lua loads its own core
    local lines = exports(out)
    assert.same({
      'export LUA_PATH="' .. prefix .. "/share/lua/5.1/?.lua;" .. prefix .. '/share/lua/5.1/?/init.lua;${LUA_PATH:-;}"',
      'export LUA_CPATH="' .. prefix .. '/lib/lua/5.1/?.so;${LUA_CPATH:-;}"',
    }, lines)
    local both = table.concat(exports(first_out), "\n") .. "\n" .. table.concat(lines, "\n") .. "\n"
    assert.same({ VERSION .. "\t" .. prefix .. "/lib/lua/5.1/faceswap/core.so\n" ..
                  VERSION .. "\t" .. prefix .. "/lib/lua/5.4/faceswap/core.so\n", 0 },
      { bare(elsewhere, both .. where("luajit") .. "\n" .. where("lua5.4")) })
    -- the same Lua again (an upgrade) replaces its own
    out, status = make("install PREFIX=" .. quote(prefix))
    assert.equal(0, status, out)
    assert.truthy(out:find("\ninstalled " .. prefix .. "/bin/faceswap\ninstalled " .. prefix ..
      "/bin/faceswap-sim\n", 1, true), out)
  end)

  it("through DESTDIR names the final place, where the staged tree then runs", function()
    local final = scratch .. "/final"
    local out, status = make("install DESTDIR=" .. quote(scratch .. "/stage") .. " PREFIX=" .. quote(final))
    assert.equal(0, status, out)
    assert.is_nil(shell.read(final .. "/bin/faceswap"))
    local script = assert(shell.read(scratch .. "/stage" .. final .. "/bin/faceswap"))
    assert.truthy(script:find('\nlocal installed = { lua = "' .. final .. '/share/lua/5.4", lib = "' .. final ..
      '/lib/lua/5.4" } -- make install LUA_VERSION=5.4\n', 1, true), script)
    assert.same({
      'export LUA_PATH_5_4="' .. final .. "/share/lua/5.4/?.lua;" .. final ..
        '/share/lua/5.4/?/init.lua;${LUA_PATH_5_4:-;}"',
      'export LUA_CPATH_5_4="' .. final .. '/lib/lua/5.4/?.so;${LUA_CPATH_5_4:-;}"',
    }, exports(out))
    assert(os.execute("mv " .. quote(scratch .. "/stage" .. final) .. " " .. quote(final)))
    assert.same({ VERSION .. "\n", 0 }, { bare(elsewhere, quote(final .. "/bin/faceswap") .. " --version") })
  end)

  it("refuses a PREFIX that its scripts and LUA_PATH could not name, before installing anything", function()
    for _, bad in ipairs { "relative/prefix", scratch .. "/semi;colon", scratch .. "/with space" } do
      local out, status = make("install PREFIX=" .. quote(bad))
      assert.is_not.equal(0, status)
      assert.truthy(out:find("make install: '" .. bad .. "/share/lua/5.4' is no plain absolute path (letters, " ..
        "digits and / . _ - + @ , = ~): the installed scripts and LUA_PATH name it\n", 1, true), out)
    end
    assert.is_nil(shell.read(ROOT .. "/relative/prefix/bin/faceswap"))
    assert.equal("", capture("ls -A " .. quote(scratch) .. " | grep -e semi -e with"))
  end)
end)

describe("README.md's LuaRocks lines #external", function()
  it("install the rock into the user's tree and set up the shell, run as written", function()
    local home = mktemp()
    finally(function() os.execute("rm -rf " .. quote(home)) end)
    os.execute("mkdir -p " .. quote(home .. "/elsewhere"))
    local install = shell.code_block(ROOT .. "/README.md", "- **LuaRocks**", "sh")
    assert.matches("^make rock\nluarocks ", install)
    -- the block, then in the same shell, from another directory: a script of the user's, the command
    local out, status = bare(ROOT, install .. "\ncd " .. quote(home .. "/elsewhere") .. "\n" .. where("lua5.4") ..
      "\nfaceswap --version\ncommand -v faceswap", home)
    assert.equal(0, status, out)
    assert.equal(VERSION .. "\t" .. home .. "/.luarocks/lib/lua/5.4/faceswap/core.so\n" .. VERSION .. "\n" ..
      home .. "/.luarocks/bin/faceswap\n", out:match("[^\n]*\t[^\n]*\n[^\n]*\n[^\n]*\n$"), out)
  end)
end)

describe("docs/hosts.md's C host #external", function()
  it("builds with its cc line as written and runs, the library compiled in", function()
    local made, status = make("-s LUA_VERSION=5.4 static")
    assert.equal(0, status, made)
    local dir = mktemp()
    finally(function() os.execute("rm -rf " .. quote(dir)) end)
    assert(os.execute("ln -s " .. quote(ROOT) .. " " .. quote(dir .. "/lua-faceswap")))
    local f = assert(io.open(dir .. "/host.c", "w"))
    f:write(shell.code_block(ROOT .. "/docs/hosts.md", "## Embedding in C", "c"), "\n")
    f:close()
    local build = shell.code_block(ROOT .. "/docs/hosts.md", "## Embedding in C", "sh")
    assert.same({ VERSION .. "\n", 0 }, { bare(dir, build) })
  end)
end)
