-- `make static` and examples/host.c: the library linked into a C program that embeds Lua 5.4,
-- its Lua layer compiled in (faceswap_preload), driving headshots from a 60 Hz frame loop
-- against the simulator.
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"

local TOKEN = "test-token"
local BUILD = "build/5.4" -- the example embeds Lua 5.4, whichever Lua runs the specs

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns its exit code and its output (stdout and stderr).
local function run(cmd)
  local out = os.tmpname()
  local _, _, code = compat.execute(cmd .. " >" .. out .. " 2>&1")
  local f = assert(io.open(out))
  local text = f:read("*a")
  f:close()
  os.remove(out)
  return code, text
end

describe("make static and examples/host.c #external", function()
  local s

  setup(function()
    -- a make of its own: nothing of an outer make (make test) may leak into it
    local code, out = run("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LUA -u LUA_INCDIR " ..
      "make --no-print-directory -s LUA_VERSION=5.4 static examples")
    assert(code == 0, out)
    s = sim.start { job_seconds = 0.5, token = TOKEN }
  end)
  teardown(function() s:stop() end)

  it("the archive exports luaopen_faceswap_core and faceswap_preload, nothing else", function()
    local code, out = run("nm --defined-only -g " .. BUILD .. "/libfaceswap.a")
    assert.equal(0, code)
    local names = {}
    for name in out:gmatch("\n%x+ %u ([%w_]+)") do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "faceswap_preload", "luaopen_faceswap_core" }, names)
  end)

  -- Runs the host for 4 headshots; checks each one's line against the simulator and returns
  -- the summary line.
  local function run_host(mode)
    s:reset()
    local code, out = run("USEAPI_TOKEN=" .. TOKEN .. " " .. BUILD .. "/host " .. quote(s.base_url) .. " 4 " .. mode)
    assert.equal(0, code, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(5, #lines, out)
    for i = 1, 4 do
      local line = lines[i + 1]
      local jobid = line:match("^headshot " .. i .. ": job (%x+) completed, PNG of %d+ bytes$")
      assert.is_string(jobid, line)
      assert.equal("completed", s:job(jobid).status)
      assert.equal("portrait " .. i, s:job(jobid).prompt)
    end
    assert.equal(4, s:count("POST"))
    return lines[1]
  end

  it("the C host runs headshots as tasks in its frame loop and downloads every image", function()
    assert.matches("^%d+ frames in [%d.]+ s at 60 Hz; worst step%(0%) [%d.]+ ms wall, [%d.]+ ms CPU; " ..
      "mean [%d.]+ ms CPU; voluntary context switches in step%(0%): %d+$", run_host("frames"))
  end)

  it("the C host drives them from epoll on client:fd() and next_wakeup(), steps following requests", function()
    local summary = run_host("epoll")
    local steps, on_fd = summary:match("^(%d+) steps %((%d+) on the descriptor, the rest on next_wakeup's timer%)$")
    assert.is_string(steps, summary)
    local requests = #s:requests()
    assert.is_true(tonumber(on_fd) > 0, summary)
    assert.is_true(tonumber(steps) <= 5 * requests + 1, summary .. " for " .. requests .. " requests")
  end)

  -- A C program that runs `lua` (argv[2]) after registering the library the way argv[1] says:
  -- "preload" (faceswap_preload), "core" (luaopen_faceswap_core alone, as faceswap.h shows),
  -- or "mine" (a module of its own as faceswap.retry first, then faceswap_preload).
  local EMBED = [[
#include <stdio.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "faceswap.h"
static int my_retry(lua_State *L) { lua_pushliteral(L, "the host's own"); return 1; }
int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int status;
  (void)argc;
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  if (strcmp(argv[1], "core") == 0) {
    lua_pushcfunction(L, luaopen_faceswap_core);
    lua_setfield(L, -2, "faceswap.core");
  } else if (strcmp(argv[1], "mine") == 0) {
    lua_pushcfunction(L, my_retry);
    lua_setfield(L, -2, "faceswap.retry");
  }
  lua_pop(L, 1);
  if (strcmp(argv[1], "core") != 0)
    faceswap_preload(L);
  status = luaL_dostring(L, argv[2]);
  if (status != 0)
    fputs(lua_tostring(L, -1), stderr);
  lua_close(L);
  return status;
}
]]

  it("faceswap_preload registers every module; a host may keep its own or load the Lua from files", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(compat.execute("mkdir " .. quote(dir)))
    finally(function() compat.execute("rm -rf " .. quote(dir)) end)
    local f = assert(io.open(dir .. "/embed.c", "w"))
    f:write(EMBED)
    f:close()
    local code, out = run(("cc -std=c99 -Wall -Wextra -Werror -Icsrc $(pkg-config --cflags lua5.4) -o %s %s " ..
      "%s/libfaceswap.a $(pkg-config --libs libcurl lua5.4)"):format(quote(dir .. "/embed"),
      quote(dir .. "/embed.c"), BUILD))
    assert.equal(0, code, out)
    local probe = "package.path = '' " ..
      "local f = require 'faceswap' " ..
      "print(f._VERSION == require('faceswap.core')._VERSION, debug.getinfo(f.new, 'S').source, " ..
      "tostring(require 'faceswap.retry'):sub(1, 14))"
    code, out = run(quote(dir .. "/embed") .. " preload " .. quote(probe))
    assert.equal(0, code, out)
    assert.equal("true\t@lua/faceswap/init.lua\ttable: 0x", out:gsub("%x+\n$", ""))
    code, out = run(quote(dir .. "/embed") .. " mine " .. quote(probe))
    assert.equal(0, code, out)
    assert.equal("true\t@lua/faceswap/init.lua\tthe host's own\n", out)
    -- the Lua layer from the checkout's files, the core from the archive (lua-cjson, which the
    -- core requires, is loaded before the C path is emptied: a host finds it as any C module)
    code, out = run(quote(dir .. "/embed") .. " core " .. quote(probe:gsub("package.path = ''",
      "require 'cjson.safe' package.path = './lua/?.lua;./lua/?/init.lua' package.cpath = ''")))
    assert.equal(0, code, out)
    assert.equal("true\t@./lua/faceswap/init.lua\ttable: 0x", out:gsub("%x+\n$", ""))
  end)

  it("a failure inside the host's Lua reaches the host as an error, exit status 1", function()
    local code, out = run("USEAPI_TOKEN=" .. TOKEN .. " " .. BUILD .. "/host ftp://127.0.0.1/ 1")
    assert.equal(1, code)
    assert.equal("host: host:3: bad argument #1 to 'new' (bad option 'base_url' (must start with https://))\n",
      out)
  end)
end)
