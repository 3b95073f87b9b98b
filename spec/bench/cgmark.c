/*
 * spec/bench/cgmark.c - a Lua module for the step(0) cost benchmark
 * (spec/bench/steps.lua): callgrind's client requests, so that a Lua script
 * can say which stretch of its run callgrind counts.
 *
 *   local cg = require "cgmark"
 *   cg.on_valgrind()   -> true when running under valgrind
 *   cg.toggle()        -> CALLGRIND_TOGGLE_COLLECT (start with --collect-atstart=no)
 *   cg.dump(name)      -> CALLGRIND_DUMP_STATS_AT(name): write what was counted
 *                         since the last dump to a numbered part file, then zero
 *   cg.zero()          -> CALLGRIND_ZERO_STATS: forget what was counted since then
 *
 * Outside valgrind every call is a few instructions that do nothing.
 */
#include <lua.h>
#include <lauxlib.h>
#include <valgrind/callgrind.h>

static int cg_on_valgrind(lua_State *L)
{
    lua_pushboolean(L, RUNNING_ON_VALGRIND ? 1 : 0);
    return 1;
}

static int cg_toggle(lua_State *L)
{
    (void)L;
    CALLGRIND_TOGGLE_COLLECT;
    return 0;
}

static int cg_zero(lua_State *L)
{
    (void)L;
    CALLGRIND_ZERO_STATS;
    return 0;
}

static int cg_dump(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    CALLGRIND_DUMP_STATS_AT(name);
    return 0;
}

int luaopen_cgmark(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"on_valgrind", cg_on_valgrind}, {"toggle", cg_toggle}, {"dump", cg_dump}, {"zero", cg_zero},
        {NULL, NULL}
    };
    luaL_newlib(L, fns);
    return 1;
}
