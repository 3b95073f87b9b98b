/* preload.c: faceswap_preload, for C hosts that link libfaceswap.a (make static; not part of
 * the faceswap.core module). Registers the core and the compiled-in Lua layer in
 * package.preload, so require finds all of them without files. */
#include <lauxlib.h>
#include "faceswap.h"
#include "preload.h"

/* package.preload's loader for one file of the Lua layer (upvalue: its index). */
static int load_lua_file(lua_State *L) {
  const faceswap_lua_file *f = &faceswap_lua_files[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbuffer(L, f->source, f->len, f->chunk) != 0)
    return lua_error(L);
  lua_pushstring(L, f->module);
  lua_call(L, 1, 1);
  return 1;
}

static void preload(lua_State *L, const char *module, lua_CFunction loader, int upvalues) {
  lua_getfield(L, -1 - upvalues, module);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushcclosure(L, loader, upvalues);
    lua_setfield(L, -2, module);
  } else {
    lua_pop(L, 1 + upvalues);
  }
}

__attribute__((visibility("default"))) void faceswap_preload(lua_State *L) {
  int i;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1))
    lua_getfield(L, -1, "preload");
  if (!lua_istable(L, -1))
    luaL_error(L, "faceswap_preload: no package.preload (open the package library first)");
  preload(L, "faceswap.core", luaopen_faceswap_core, 0);
  for (i = 0; faceswap_lua_files[i].module; i++) {
    lua_pushinteger(L, i);
    preload(L, faceswap_lua_files[i].module, load_lua_file, 1);
  }
  lua_pop(L, 2);
}
