/* files.c: the two operating-system calls the command line needs and Lua lacks: whether a
 * stream is a terminal, and writing a file that must not exist yet. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "core.h"

/* core.isatty(fd): whether descriptor 0, 1 or 2 is a terminal. */
int core_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "0, 1 or 2 expected");
  lua_pushboolean(L, isatty((int)fd));
  return 1;
}

/* core.write_new(path, data) -> true | nil, message, "exists"|"error". Creates the file
 * exclusively (O_EXCL), so an existing file is never overwritten, even one that appears
 * between a check and the write; a partial file is removed. */
int core_write_new(lua_State *L) {
  size_t len, done = 0;
  const char *path = luaL_checkstring(L, 1);
  const char *data = luaL_checklstring(L, 2, &len);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), err;
  if (fd < 0) {
    err = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    lua_pushstring(L, err == EEXIST ? "exists" : "error");
    return 3;
  }
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    done += (size_t)n;
  }
  err = done < len ? errno : 0;
  if (close(fd) != 0 && !err)
    err = errno;
  if (err || done < len) {
    unlink(path);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err ? err : EIO));
    lua_pushliteral(L, "error");
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}
