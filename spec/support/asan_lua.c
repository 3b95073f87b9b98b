/* asan_lua.c: a minimal Lua 5.4 interpreter to build with -fsanitize=address,undefined, so
 * `make test-asan` can run busted with the sanitizer runtimes linked in rather than
 * LD_PRELOADed (a preload would also reach every child the specs start: the simulator, nginx,
 * the command line).
 *
 *   asan_lua SCRIPT [ARGS...]   runs SCRIPT with `arg` set as lua.c sets it
 *
 * FACESWAP_GC_STEP=N sets the incremental collector to pause 0 and a step every 2^N bytes
 * allocated: it collects all the time, so objects die while the core might still touch them. */
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "asan_lua: %s\n", msg ? msg : "(error object is not a string)");
  }
  return status;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int i, status;
  const char *gc_step = getenv("FACESWAP_GC_STEP");
  if (argc < 2) {
    fprintf(stderr, "usage: asan_lua SCRIPT [ARGS...]\n");
    return 2;
  }
  L = luaL_newstate();
  if (!L)
    return 1;
  luaL_openlibs(L);
  if (gc_step)
    lua_gc(L, LUA_GCINC, 0, 0, atoi(gc_step)); /* pause 0: a new cycle at once */
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  status = report(L, luaL_loadfile(L, argv[1]));
  if (status == LUA_OK) {
    for (i = 2; i < argc; i++)
      lua_pushstring(L, argv[i]);
    status = report(L, lua_pcall(L, argc - 2, 0, 1));
  }
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
