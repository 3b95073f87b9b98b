/* faceswap.h: lua-faceswap for a C (or C++) program that embeds Lua and links the library in.
 *
 * `make static` builds build/<ver>/libfaceswap.a (ver: LUA_VERSION, 5.4 by default): the C core
 * and the Lua layer (the files of lua/faceswap, compiled in as text) in one object whose only global
 * symbols are the two functions below. Link it with libcurl and your Lua:
 *
 *   cc -Ipath/to/csrc host.c build/5.4/libfaceswap.a $(pkg-config --libs libcurl lua5.4)
 *
 * Then, once per lua_State, after luaL_openlibs:
 *
 *   faceswap_preload(L);               -- package.preload now has faceswap and its modules
 *   luaL_dostring(L, "client = require('faceswap').new{...}");
 *
 * To load the Lua layer from files instead (to patch it without relinking), register the C
 * core alone and put lua/?.lua and lua/?/init.lua of a checkout on package.path:
 *
 *   luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);   -- 5.1: package.preload
 *   lua_pushcfunction(L, luaopen_faceswap_core);
 *   lua_setfield(L, -2, "faceswap.core");
 *   lua_pop(L, 1);
 *
 * The library drives its network I/O only from inside client:step() (and from blocking calls
 * made outside a task); see docs/hosts.md for frame loops and event loops. */
#ifndef FACESWAP_H
#define FACESWAP_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The C core, as `require "faceswap.core"` loads it: pushes its table and returns 1. */
int luaopen_faceswap_core(lua_State *L);

/* Puts a loader for faceswap.core and for each module of the Lua layer (faceswap,
 * faceswap.retry, faceswap.task, ...) into package.preload, so that `require "faceswap"` needs
 * no file. Entries already there are kept, so a host may register its own first. Needs the
 * package library loaded (luaL_openlibs). */
void faceswap_preload(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
