/* module.c: luaopen_faceswap_core, the one exported symbol. It registers the metatables,
 * and returns the core's functions. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include "core.h"

/* core.type(v): "job", "error", "transport" or nil, never raising (like io.type). */
static int core_type(lua_State *L) {
  lua_settop(L, 1);
  if (job_is(L, 1))
    lua_pushliteral(L, "job");
  else if (error_is(L, 1))
    lua_pushliteral(L, "error");
  else if (luaL_testudata(L, 1, FACESWAP_TRANSPORT_MT))
    lua_pushliteral(L, "transport");
  else
    lua_pushnil(L);
  return 1;
}

/* core.now(): seconds on the monotonic clock, which wall-clock changes never move. */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks the thread, resuming after signals until the time is up. */
static int core_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  struct timespec ts, left;
  luaL_argcheck(L, secs >= 0 && secs <= 1e9, 1, "seconds must be from 0 to 1e9");
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &left) != 0 && errno == EINTR)
    ts = left;
  return 0;
}

__attribute__((visibility("default"))) int luaopen_faceswap_core(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"commands", core_commands},
    {"read_response", core_read_response},
    {"read_unread", core_read_unread},
    {"decode", core_decode},
    {"error", core_error_new},
    {"fault", core_fault},
    {"transport", core_transport_new},
    {"url_problem", core_url_problem},
    {"download_path_problem", core_download_path_problem},
    {"type", core_type},
    {"job_runs", core_job_runs},
    {"now", core_now},
    {"sleep", core_sleep},
    {"isatty", core_isatty},
    {"write_new", core_write_new},
    {"link_new", core_link_new},
    {"open_append", core_open_append},
    {"catch_signals", core_catch_signals},
    {"interrupted", core_interrupted},
    {"upload_file", core_upload_file},
    {NULL, NULL}
  };
  json_open(L);
  job_open(L);
  error_open(L);
  transport_open(L);
  upload_open(L);
  luaL_newlib(L, funcs);
  /* the builders share the boundary generator, their upvalue */
  form_push_rng(L);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, core_build_command, 1);
  lua_setfield(L, -3, "build_command");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, core_build_headshot, 1);
  lua_setfield(L, -3, "build_headshot");
  lua_pushcclosure(L, core_build_get, 1);
  lua_setfield(L, -2, "build_get");
  lua_pushliteral(L, "lua-faceswap " FACESWAP_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
