/* files.c: the operating-system calls the command line needs and Lua lacks: whether a
 * stream is a terminal, writing (or naming) a file that must not exist yet, and a locked file
 * of records appended and fsync'd one at a time. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
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

/* core.link_new(from, to) -> true | nil, message, "exists"|"unsupported"|"error". Gives the
 * file `from` the name `to` only if no file has that name (link(2), then unlink of `from`):
 * unlike a check followed by rename(2), a file that appears at `to` in between, or one this
 * process cannot read, is never replaced. "unsupported": the file system has no hard links
 * (the caller may fall back to a rename). */
int core_link_new(lua_State *L) {
  size_t from_len, to_len;
  const char *from = luaL_checklstring(L, 1, &from_len);
  const char *to = luaL_checklstring(L, 2, &to_len);
  int err;
  if (strlen(from) != from_len || strlen(to) != to_len) {
    lua_pushnil(L);
    lua_pushliteral(L, "a file name cannot contain a NUL byte");
    lua_pushliteral(L, "error");
    return 3;
  }
  if (link(from, to) == 0) {
    unlink(from);
    lua_pushboolean(L, 1);
    return 1;
  }
  err = errno;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", to, strerror(err));
  lua_pushstring(L, err == EEXIST ? "exists"
                    : (err == EPERM || err == EOPNOTSUPP || err == EXDEV) ? "unsupported"
                                                                           : "error");
  return 3;
}

/* A file of records appended one at a time, each on disk before append() returns: the
 * `batch --state` ledger (lua/faceswap/ledger.lua). A userdata holding the descriptor. */
#define FACESWAP_FILE_MT "faceswap.file"

typedef struct {
  int fd;          /* -1 once closed */
  char path[1];    /* the name it was opened with, for messages (allocated with the struct) */
} append_file;

static append_file *check_file(lua_State *L) {
  append_file *f = (append_file *)luaL_checkudata(L, 1, FACESWAP_FILE_MT);
  if (f->fd < 0)
    luaL_error(L, "attempt to use a closed file");
  return f;
}

static int push_failure(lua_State *L, const char *path, int err, const char *why) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(err));
  lua_pushstring(L, why);
  return 3;
}

/* file:read() -> the whole content | nil, message */
static int file_read(lua_State *L) {
  append_file *f = check_file(L);
  luaL_Buffer b;
  off_t at = 0;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = pread(f->fd, p, LUAL_BUFFERSIZE, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      luaL_pushresult(&b);
      return push_failure(L, f->path, err, "error");
    }
    if (n == 0)
      break;
    luaL_addsize(&b, (size_t)n);
    at += n;
  }
  luaL_pushresult(&b);
  return 1;
}

/* file:append(bytes) -> true | nil, message. Writes all the bytes at the end and fsyncs; on a
 * failure the file is cut back to where it was, so no partial record stays. */
static int file_append(lua_State *L) {
  append_file *f = check_file(L);
  size_t len, done = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  struct stat st;
  int err = 0;
  if (fstat(f->fd, &st) != 0)
    return push_failure(L, f->path, errno, "error");
  while (done < len) {
    ssize_t n = write(f->fd, data + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += (size_t)n;
  }
  while (!err && fsync(f->fd) != 0) {
    if (errno != EINTR)
      err = errno;
  }
  if (err) {
    if (ftruncate(f->fd, st.st_size) != 0) {
      /* nothing better to do: the reader ignores an unfinished last line */
    }
    return push_failure(L, f->path, err, "error");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* file:truncate(size) -> true | nil, message. Cuts the file to size bytes and fsyncs: a last
 * record a crash cut short is cut off, so the next record starts a line of its own. */
static int file_truncate(lua_State *L) {
  append_file *f = check_file(L);
  lua_Integer size = luaL_checkinteger(L, 2);
  luaL_argcheck(L, size >= 0, 2, "a size from 0 expected");
  if (ftruncate(f->fd, (off_t)size) != 0)
    return push_failure(L, f->path, errno, "error");
  while (fsync(f->fd) != 0) {
    if (errno != EINTR)
      return push_failure(L, f->path, errno, "error");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* file:close(): releases the descriptor and with it the lock; also __gc. */
static int file_close(lua_State *L) {
  append_file *f = (append_file *)luaL_checkudata(L, 1, FACESWAP_FILE_MT);
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
  }
  return 0;
}

/* fsync of the directory holding path, so that a file just created survives a crash. */
static void sync_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  int fd;
  if (!slash) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else if ((size_t)(slash - path) < sizeof dir) {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
  } else {
    return;
  }
  fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (fsync(fd) != 0) {
      /* some file systems refuse a directory's fsync: the file's own still holds */
    }
    close(fd);
  }
}

/* core.open_append(path) -> file | nil, message, "locked"|"not_regular"|"error". Opens (or
 * creates, 0644) a regular file for appending, holding an exclusive flock on it: a second
 * opener, in this process or another, gets "locked" at once. */
int core_open_append(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  append_file *f;
  struct stat st;
  int created = 1;
  int fd;
  if (strlen(path) != len) {
    lua_pushnil(L);
    lua_pushliteral(L, "a file name cannot contain a NUL byte");
    lua_pushliteral(L, "error");
    return 3;
  }
  fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST) {
    created = 0;
    /* O_NONBLOCK: a FIFO must not block the open; it is refused below */
    fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NONBLOCK);
  }
  if (fd < 0)
    return push_failure(L, path, errno, "error");
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return push_failure(L, path, err, "error");
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: not a regular file", path);
    lua_pushliteral(L, "not_regular");
    return 3;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: in use by another process (locked)", path);
      lua_pushliteral(L, "locked");
      return 3;
    }
    return push_failure(L, path, err, "error");
  }
  if (created)
    sync_parent(path);
  f = (append_file *)compat_newuserdata(L, sizeof(append_file) + len);
  f->fd = fd;
  memcpy(f->path, path, len + 1);
  if (luaL_newmetatable(L, FACESWAP_FILE_MT)) {
    static const luaL_Reg methods[] = {
      {"read", file_read}, {"append", file_append}, {"truncate", file_truncate},
      {"close", file_close}, {NULL, NULL}
    };
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, file_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return 1;
}
