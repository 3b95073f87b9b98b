/* compat.h: the few Lua C API differences between 5.1, LuaJIT, 5.2, 5.3 and 5.4 that the core
 * uses, papered over in one place so every other file is written against the 5.4 API. */
#ifndef FACESWAP_COMPAT_H
#define FACESWAP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502 && !defined(luaL_newlibtable)
/* PUC Lua 5.1 (LuaJIT 2.1's lauxlib.h has these, and defines luaL_newlibtable; 5.1's has not) */
static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++)
      lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
static inline void *luaL_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  int same;
  if (!p || !lua_getmetatable(L, i))
    return NULL;
  luaL_getmetatable(L, tname);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}
static inline void luaL_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#endif

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 (OpenResty's target): no uservalues, but every userdata has an environment table;
 * luaL_setfuncs and luaL_testudata it already has. */
#define lua_rawlen(L, i) lua_objlen(L, (i))
#define compat_getuservalue(L, i) lua_getfenv(L, (i))
#define compat_setuservalue(L, i) lua_setfenv(L, (i))
#ifndef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#endif
#define lua_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#else
#define compat_getuservalue(L, i) ((void)lua_getuservalue(L, (i)))
#define compat_setuservalue(L, i) lua_setuservalue(L, (i))
#endif

#if LUA_VERSION_NUM < 504
/* Before 5.4 a userdata carries exactly one user value (or an fenv table). */
#define compat_newuserdata(L, size) lua_newuserdata(L, (size))
#else
#define compat_newuserdata(L, size) lua_newuserdatauv(L, (size), 1)
#endif

/* A userdata's user value as any Lua value (5.3+), or wrapped in a table where it must be one. */
#if LUA_VERSION_NUM >= 503
#define compat_setuservalue_any(L, i) lua_setuservalue(L, (i))
#define compat_getuservalue_any(L, i) ((void)lua_getuservalue(L, (i)))
#else
static inline void compat_setuservalue_any(lua_State *L, int i) {
  /* the value on top becomes a table on top: the userdata stays at i */
  lua_createtable(L, 1, 0);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 1);
  compat_setuservalue(L, i);
}
static inline void compat_getuservalue_any(lua_State *L, int i) {
  compat_getuservalue(L, i);
  lua_rawgeti(L, -1, 1);
  lua_remove(L, -2);
}
#endif


/* Push a number as an integer when it is one, so 5.3+ shows `200`, not `200.0`. */
static inline void compat_pushnumber(lua_State *L, lua_Number n) {
#if LUA_VERSION_NUM >= 503
  /* the range check comes first: only then is the cast defined; it also keeps NaN out */
  if (n >= (lua_Number)LUA_MININTEGER && n < -(lua_Number)LUA_MININTEGER &&
      (lua_Number)(lua_Integer)n == n) {
    lua_pushinteger(L, (lua_Integer)n);
    return;
  }
#endif
  lua_pushnumber(L, n);
}

#endif
