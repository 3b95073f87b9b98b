/* forkhelp.c: fork(), waitpid() and _exit() for the specs that use a client across fork()
 * (spec/integration/fork_spec.lua); Debian's lua-posix has no build for Lua 5.4. Built by
 * `make $(BUILD)/spec/forkhelp.so`, which that spec runs. Not installed. */
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>

/* fork() -> pid in the parent, 0 in the child */
static int h_fork(lua_State *L) {
  pid_t pid = fork();
  if (pid < 0)
    return luaL_error(L, "fork failed");
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/* wait(pid) -> the child's exit status (-1 when it did not exit normally) */
static int h_wait(lua_State *L) {
  int status = 0;
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  while (waitpid(pid, &status, 0) < 0) {
  }
  lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 1;
}

/* exit(code): ends the process at once, running nothing of Lua's or busted's */
static int h_exit(lua_State *L) {
  _exit((int)luaL_checkinteger(L, 1));
  return 0;
}

__attribute__((visibility("default"))) int luaopen_forkhelp(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, h_fork);
  lua_setfield(L, -2, "fork");
  lua_pushcfunction(L, h_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, h_exit);
  lua_setfield(L, -2, "exit");
  return 1;
}
