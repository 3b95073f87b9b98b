/* upload.c: the files a command uploads, read before anything is sent: a file param's source
 * (a path, or a table of data, filename and content_type), its bytes read whole (or, on Lua
 * 5.2+, straight into the body as form.c writes it), its size checked, its type sniffed from
 * its first bytes, its filename made safe for a part's header. The only file of the core that
 * reads the file system for a request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core.h"

/* An upload over this is refused locally: Discord, where the bot reads the file, takes 25 MiB
 * at most for an account without Nitro, so the job could not succeed with more. */
#define FACESWAP_MAX_UPLOAD (25u << 20)

/* The bytes of a file that tell its type: its ftyp box, brands included, fits in these. */
#define SNIFF_BYTES 64

/* ISO base media files (MP4, HEIF, AVIF, QuickTime...) all open with an ftyp box whose brands
 * say what they are. what NULL: an MP4 video, the one kind of them the API takes (the picsi
 * target), sent as video/mp4. The others are refused by name: the server answered a HEIC or
 * AVIF sent as video/mp4 with a 400. generic: a HEIF brand that a more specific compatible
 * brand (heic, avif) names better. */
typedef struct {
  char brand[5];
  const char *what;
  unsigned char generic;
} brand_def;

static const brand_def brands[] = {
  {"isom", NULL, 0}, {"iso2", NULL, 0}, {"iso3", NULL, 0}, {"iso4", NULL, 0},
  {"iso5", NULL, 0}, {"iso6", NULL, 0}, {"mp41", NULL, 0}, {"mp42", NULL, 0},
  {"avc1", NULL, 0}, {"M4V ", NULL, 0}, {"M4VH", NULL, 0}, {"M4VP", NULL, 0},
  {"MSNV", NULL, 0},
  {"mif1", "a HEIF image", 1}, {"mif2", "a HEIF image", 1}, {"miaf", "a HEIF image", 1},
  {"msf1", "a HEIF image sequence", 1},
  {"heic", "a HEIC image", 0}, {"heix", "a HEIC image", 0}, {"heim", "a HEIC image", 0},
  {"heis", "a HEIC image", 0}, {"hevc", "a HEIC image sequence", 0},
  {"hevx", "a HEIC image sequence", 0},
  {"avif", "an AVIF image", 0}, {"avis", "an AVIF image sequence", 0},
  {"M4A ", "an MP4 audio file", 0}, {"M4B ", "an MP4 audio file", 0},
  {"M4P ", "an MP4 audio file", 0}, {"qt  ", "a QuickTime movie", 0},
  {"crx ", "a Canon raw image", 0},
};

static const brand_def *find_brand(const unsigned char *b) {
  size_t i;
  for (i = 0; i < sizeof brands / sizeof brands[0]; i++)
    if (memcmp(b, brands[i].brand, 4) == 0)
      return &brands[i];
  return NULL;
}

/* A brand as text for a message: printable ASCII as it is, other bytes (and quotes) as \xHH. */
static void brand_text(const unsigned char *b, char out[17]) {
  static const char hex[] = "0123456789ABCDEF";
  int i;
  for (i = 0; i < 4; i++) {
    if (b[i] >= 0x20 && b[i] < 0x7F && b[i] != '"' && b[i] != '\\') {
      *out++ = (char)b[i];
    } else {
      *out++ = '\\';
      *out++ = 'x';
      *out++ = hex[b[i] >> 4];
      *out++ = hex[b[i] & 15];
    }
  }
  *out = '\0';
}

/* An ISO base media file (n >= 12, "ftyp" at 4): "video/mp4", or NULL with what it is in why.
 * The major brand decides when it is known; an unknown one (a camera's own, such as Sony's
 * XAVC) is an MP4 when a compatible brand says so and none says HEIF, AVIF and the like. */
static const char *sniff_bmff(const unsigned char *b, size_t n, char *why, size_t why_size) {
  size_t size = ((size_t)b[0] << 24) | ((size_t)b[1] << 16) | ((size_t)b[2] << 8) | b[3];
  size_t at = 8, i;
  const brand_def *major, *named = NULL, *video = NULL;
  char text[17];
  if (size == 1) /* a 64-bit size follows the type: the brands come after it */
    at = 16, size = n;
  if (size == 0 || size > n)
    size = n;
  if (at + 4 > size) {
    snprintf(why, why_size, "an ISO-BMFF file without a brand");
    return NULL;
  }
  major = find_brand(b + at);
  if (major && !major->what)
    return "video/mp4";
  for (i = at + 8; i + 4 <= size; i += 4) {
    const brand_def *d = find_brand(b + i);
    if (d && !d->what && !video)
      video = d;
    else if (d && d->what && (!named || (named->generic && !d->generic)))
      named = d;
  }
  if (major && (!major->generic || !named || named->generic))
    named = major;
  if (!named && video)
    return "video/mp4";
  brand_text(named ? (const unsigned char *)named->brand : b + at, text);
  if (named)
    snprintf(why, why_size, "%s (ISO-BMFF brand \"%s\")", named->what, text);
  else
    snprintf(why, why_size, "an ISO-BMFF file of unknown brand \"%s\"", text);
  return NULL;
}

/* The type of a file from its first bytes, or NULL; why says more when they say something. */
static const char *sniff(const unsigned char *b, size_t n, char *why, size_t why_size) {
  why[0] = '\0';
  if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
  if (n >= 3 && memcmp(b, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
  if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "image/gif";
  if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "image/webp";
  if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0)
    return sniff_bmff(b, n < SNIFF_BYTES ? n : SNIFF_BYTES, why, why_size);
  return NULL;
}

/* Pushes the filename with what would break the part's header (quotes, backslashes, control
 * bytes such as CR and LF) replaced by '_'; an empty one becomes the field's name. */
static void push_filename(lua_State *L, const char *s, size_t len, const char *field) {
  luaL_Buffer b;
  size_t i;
  if (len == 0) {
    lua_pushstring(L, field);
    return;
  }
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    luaL_addchar(&b, c < 0x20 || c == 0x7F || c == '"' || c == '\\' ? '_' : (char)c);
  }
  luaL_pushresult(&b);
}

/* Pushes the refusal of an upload over the cap, with both sizes exact. */
static void push_too_big(lua_State *L, const char *field, const char *name,
                         unsigned long long size) {
  char have[24], cap[24];
  snprintf(have, sizeof have, "%llu", size);
  snprintf(cap, sizeof cap, "%lu", (unsigned long)FACESWAP_MAX_UPLOAD);
  lua_pushfstring(L, "%s: %s is %s bytes, over the %s-byte (%d MiB) limit on uploads", field,
                  name, have, cap, (int)(FACESWAP_MAX_UPLOAD >> 20));
}

/* An err of read_some: the path is no longer a regular file. */
#define NOT_REGULAR (-1)

/* What a file that is not a regular one is, for a message. */
static const char *not_regular(mode_t mode) {
  if (S_ISFIFO(mode)) return "not a regular file (a FIFO)";
  if (S_ISCHR(mode)) return "not a regular file (a character device)";
  if (S_ISBLK(mode)) return "not a regular file (a block device)";
  if (S_ISSOCK(mode)) return "not a regular file (a socket)";
  return "not a regular file";
}

/* Checks that path is a file that may be uploaded: pushes why not and returns 0, or returns 1
 * with its size. Only a regular file is read: a FIFO would block the process in open or read
 * until a writer came, and a device would never end. stat, not open: opening a device can
 * itself act (a tape rewinds, a terminal is taken). */
static int check_path(lua_State *L, const char *field, const char *path, size_t *size) {
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path, strerror(errno));
    return 0;
  }
  if (!S_ISREG(st.st_mode)) {
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path,
                    S_ISDIR(st.st_mode) ? strerror(EISDIR) : not_regular(st.st_mode));
    return 0;
  }
  if ((unsigned long long)st.st_size > FACESWAP_MAX_UPLOAD) {
    push_too_big(L, field, path, (unsigned long long)st.st_size);
    return 0;
  }
  *size = (size_t)st.st_size;
  return 1;
}

/* Reads up to n bytes of path into dst: how many, or (size_t)-1 with *err (an errno or
 * NOT_REGULAR). Opened without blocking and checked again once open, so a path swapped for a
 * FIFO since check_path cannot hang the host. No Lua call is made while the descriptor is
 * open, so nothing can raise past its close. */
size_t upload_read_some(const char *path, char *dst, size_t n, int *err) {
  struct stat st;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  *err = 0;
  if (fd < 0) {
    *err = errno;
    return (size_t)-1;
  }
  if (fstat(fd, &st) != 0)
    *err = errno;
  else if (!S_ISREG(st.st_mode))
    *err = NOT_REGULAR;
  while (!*err && got < n) {
    ssize_t r = read(fd, dst + got, n - got);
    if (r > 0)
      got += (size_t)r;
    else if (r == 0)
      break;
    else if (errno != EINTR)
      *err = errno;
  }
  close(fd);
  return *err ? (size_t)-1 : got;
}

/* Pushes why a file could not be read whole: an error, or a size other than stat's. */
void upload_push_unread(lua_State *L, const char *field, const char *path, size_t got, int err) {
  lua_pushfstring(L, "%s: cannot read %s: %s", field, path,
                  got != (size_t)-1 ? "it changed while being read"
                  : err == NOT_REGULAR ? "not a regular file" : strerror(err));
}

void upload_check_source(lua_State *L, int idx, const char *what, form_part *p) {
  if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "bad argument #1 to '%s' (%s must be a file path or a table {data = "
                  "bytes, filename = name}, got %s)", what, p->name, luaL_typename(L, idx));
  if (lua_type(L, idx) == LUA_TSTRING && strlen(lua_tostring(L, idx)) != lua_rawlen(L, idx))
    luaL_error(L, "bad argument #1 to '%s' (%s path contains a zero byte)", what, p->name);
  p->s = ""; /* present; upload_load reads it once the request has passed its checks */
  p->len = lua_type(L, idx) == LUA_TSTRING ? lua_rawlen(L, idx) : 1;
}

/* The bytes, filename and type stay referenced from the stack until the body is built. */
int upload_load(lua_State *L, int idx, const char *what, form_part *p) {
  const char *type = NULL;
  char head[SNIFF_BYTES], why[80];
  size_t len, head_len = 0;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *path = lua_tostring(L, idx), *base = strrchr(path, '/');
    size_t size;
    int err;
    if (!check_path(L, p->name, path, &size))
      return 0;
#if LUA_VERSION_NUM >= 502
    /* the bytes go straight into the body (form.c's multipart writer); the first ones tell
     * the type now */
    head_len = upload_read_some(path, head, size < sizeof head ? size : sizeof head, &err);
    if (head_len == (size_t)-1) {
      upload_push_unread(L, p->name, path, head_len, err);
      return 0;
    }
    p->path = path;
    p->s = ""; /* not NULL: present; the bytes are read as the body is written */
    p->len = size;
#else
    {
      /* one byte more than expected tells a file that grew since stat */
      char *data = (char *)lua_newuserdata(L, size + 1);
      size_t got = upload_read_some(path, data, size + 1, &err);
      if (got != size) {
        upload_push_unread(L, p->name, path, got, err);
        return 0;
      }
      p->s = data;
      p->len = size;
    }
#endif
    base = base ? base + 1 : path;
    push_filename(L, base, strlen(base), p->name);
    p->filename = lua_tolstring(L, -1, &p->filename_len);
  } else {
    static const char *const keys[] = {"data", "filename", "content_type"};
    int i;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      for (i = 0; i < 3 && strcmp(key, keys[i]) != 0; i++) {}
      if (i == 3)
        luaL_error(L, "bad argument #1 to '%s' (%s: unknown field '%s' in a file table)",
                   what, p->name, lua_type(L, -2) == LUA_TSTRING ? key : luaL_typename(L, -2));
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad argument #1 to '%s' (%s.%s must be a string, got %s)", what,
                   p->name, key, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    lua_getfield(L, idx, "data");
    if (lua_isnil(L, -1))
      luaL_error(L, "bad argument #1 to '%s' (%s.data is missing)", what, p->name);
    p->s = lua_tolstring(L, -1, &p->len);
    lua_getfield(L, idx, "filename");
    if (lua_isnil(L, -1))
      luaL_error(L, "bad argument #1 to '%s' (%s.filename is missing)", what, p->name);
    {
      const char *name = lua_tolstring(L, -1, &len);
      push_filename(L, name, len, p->name);
      lua_remove(L, -2);
      p->filename = lua_tolstring(L, -1, &p->filename_len);
    }
    lua_getfield(L, idx, "content_type");
    if (!lua_isnil(L, -1)) {
      size_t chars;
      type = form_check_text(L, -1, what, "content_type", 0, &len, &chars);
      if (len == 0)
        luaL_error(L, "bad argument #1 to '%s' (%s.content_type is empty)", what, p->name);
    } else {
      lua_pop(L, 1);
    }
  }
  if (p->len == 0) {
    lua_pushfstring(L, "%s: %s is empty", p->name, p->filename);
    return 0;
  }
  if (p->len > FACESWAP_MAX_UPLOAD) {
    push_too_big(L, p->name, p->filename, (unsigned long long)p->len);
    return 0;
  }
  if (!type) {
    type = p->path ? sniff((const unsigned char *)head, head_len, why, sizeof why)
                   : sniff((const unsigned char *)p->s, p->len, why, sizeof why);
    if (!type) {
      lua_pushfstring(L, "%s: %s is %s%snot a PNG, JPEG, GIF, WebP or MP4 file", p->name,
                      p->filename, why, why[0] ? ", " : "");
      return 0;
    }
  }
  p->type = type;
  return 1;
}
