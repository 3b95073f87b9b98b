/* upload.c: the files a command uploads and the bodies that carry them. A file param's source
 * (a path, a table of data, filename and content_type, or a file core.upload_file opened) is
 * checked before anything is sent: a regular file (stat, then opened non-blocking and checked
 * again with fstat), its size exact and under the cap, its type sniffed from its first bytes,
 * its filename made safe for a part's header. Its bytes are not read then: a body with a file
 * part (an upload_body) keeps the file's descriptor and copies the bytes from it, with pread,
 * straight into libcurl's send buffer as the transport sends (upload_body_read), so the core
 * holds no copy of a file; a file whose size or modification time is no longer what was
 * checked fails the request before its body is complete. The only file of the core that reads
 * the file system for a request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core.h"

#define FILE_MT "faceswap.upload"
#define BODY_MT "faceswap.body"

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


/* What a file that is not a regular one is, for a message. */
static const char *not_regular(mode_t mode) {
  if (S_ISFIFO(mode)) return "not a regular file (a FIFO)";
  if (S_ISCHR(mode)) return "not a regular file (a character device)";
  if (S_ISBLK(mode)) return "not a regular file (a block device)";
  if (S_ISSOCK(mode)) return "not a regular file (a socket)";
  return "not a regular file";
}

/* Checks that path is a file that may be uploaded: pushes why not and returns 0, or returns 1.
 * Only a regular file is opened: a FIFO would block the process in open or read until a
 * writer came, and a device would never end. stat, not open: opening a device can itself act
 * (a tape rewinds, a terminal is taken). */
static int check_path(lua_State *L, const char *field, const char *path) {
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
  return 1;
}

/* ---- opened files ---------------------------------------------------------------------- */

/* A file opened for upload, shared by the bodies that send it (and their transfers): its
 * descriptor closes when the last of them lets go. size and mtime are what was checked. */
struct upload_file {
  int refs;
  int fd;
  size_t size;
  struct timespec mtime;
  size_t head_len;
  char head[SNIFF_BYTES]; /* the first bytes, read to sniff the type */
  char path[];            /* as given, for messages */
};

/* The Lua side of a file: NULL once closed. */
typedef struct { upload_file *f; } file_box;

static void file_unref(upload_file *f) {
  if (f && --f->refs == 0) {
    if (f->fd >= 0)
      close(f->fd);
    free(f);
  }
}

static int file_close(lua_State *L) {
  file_box *box = (file_box *)luaL_checkudata(L, 1, FILE_MT);
  file_unref(box->f);
  box->f = NULL;
  return 0;
}

const char *upload_file_head(const upload_file *f, size_t *n) {
  *n = f->head_len;
  return f->head;
}

/* Reads n bytes at off into dst, retrying after signals: 1, or 0 with errno set (0: the file
 * ended first). */
static int read_at(int fd, char *dst, size_t n, size_t off) {
  while (n > 0) {
    ssize_t r = pread(fd, dst, n, (off_t)off);
    if (r > 0) {
      dst += r;
      n -= (size_t)r;
      off += (size_t)r;
    } else if (r == 0) {
      errno = 0;
      return 0;
    } else if (errno != EINTR) {
      return 0;
    }
  }
  return 1;
}

/* Opens path for upload and pushes its box, or pushes why it cannot be uploaded and returns
 * NULL. Opened without blocking and checked again once open, so a path swapped for a FIFO
 * since check_path cannot hang the host; the size checked is the open file's. */
static upload_file *open_file(lua_State *L, const char *field, const char *path) {
  size_t plen = strlen(path);
  struct stat st;
  upload_file *f;
  file_box *box;
  int err = 0;
  if (!check_path(L, field, path))
    return NULL;
  box = (file_box *)lua_newuserdata(L, sizeof *box);
  box->f = NULL;
  luaL_setmetatable(L, FILE_MT);
  f = (upload_file *)malloc(sizeof *f + plen + 1);
  if (!f)
    luaL_error(L, "not enough memory");
  f->refs = 1;
  f->head_len = 0;
  memcpy(f->path, path, plen + 1);
  box->f = f;
  f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (f->fd < 0 || fstat(f->fd, &st) != 0) {
    err = errno;
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path, strerror(err));
  } else if (!S_ISREG(st.st_mode)) {
    err = -1;
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path, not_regular(st.st_mode));
  } else if ((unsigned long long)st.st_size > FACESWAP_MAX_UPLOAD) {
    err = -1;
    push_too_big(L, field, path, (unsigned long long)st.st_size);
  } else {
    f->size = (size_t)st.st_size;
    f->mtime = st.st_mtim;
    f->head_len = f->size < SNIFF_BYTES ? f->size : SNIFF_BYTES;
    if (!read_at(f->fd, f->head, f->head_len, 0)) {
      err = errno ? errno : -1;
      lua_pushfstring(L, "%s: cannot read %s: %s", field, path,
                      errno ? strerror(errno) : "it changed while being read");
    }
  }
  if (err) {
    file_unref(f); /* the descriptor closes now, not at the next collection */
    box->f = NULL;
    lua_remove(L, -2);
    return NULL;
  }
  return f;
}

int upload_file_contains(const upload_file *f, const char *pat, size_t len) {
  char buf[65536];
  size_t off = 0, keep = 0;
  if (len == 0 || len > sizeof buf / 2)
    return 1;
  while (off < f->size) {
    size_t n = f->size - off < sizeof buf - keep ? f->size - off : sizeof buf - keep, i;
    if (!read_at(f->fd, buf + keep, n, off))
      return -1;
    off += n;
    n += keep;
    for (i = 0; i + len <= n; i++)
      if (buf[i] == pat[0] && memcmp(buf + i, pat, len) == 0)
        return 1;
    keep = len - 1 < n ? len - 1 : n; /* a match may straddle two reads */
    memmove(buf, buf + n - keep, keep);
  }
  return 0;
}

/* core.upload_file(path) -> an opened file, or nil and why not: a batch opens an item's file
 * once and builds its requests for every account it tries from the same descriptor. */
int core_upload_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (strlen(path) != lua_rawlen(L, 1))
    return luaL_argerror(L, 1, "path contains a zero byte");
  if (!open_file(L, "file", path)) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

/* ---- sources --------------------------------------------------------------------------- */

void upload_check_source(lua_State *L, int idx, const char *what, form_part *p) {
  file_box *box = (file_box *)luaL_testudata(L, idx, FILE_MT);
  if (box) {
    if (!box->f)
      luaL_error(L, "bad argument #1 to '%s' (%s is a closed file)", what, p->name);
  } else if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE) {
    luaL_error(L, "bad argument #1 to '%s' (%s must be a file path or a table {data = "
                  "bytes, filename = name}, got %s)", what, p->name, luaL_typename(L, idx));
  }
  if (lua_type(L, idx) == LUA_TSTRING && strlen(lua_tostring(L, idx)) != lua_rawlen(L, idx))
    luaL_error(L, "bad argument #1 to '%s' (%s path contains a zero byte)", what, p->name);
  p->s = ""; /* present; upload_load opens it once the request has passed its checks */
  p->len = lua_type(L, idx) == LUA_TSTRING ? lua_rawlen(L, idx) : 1;
}

int upload_load(lua_State *L, int idx, const char *what, form_part *p, int *own) {
  const char *type = NULL;
  char why[80];
  size_t len;
  file_box *box = (file_box *)luaL_testudata(L, idx, FILE_MT);
  *own = 0;
  if (box || lua_type(L, idx) == LUA_TSTRING) {
    const char *path, *base;
    if (box) {
      if (!box->f)
        luaL_error(L, "bad argument #1 to '%s' (%s is a closed file)", what, p->name);
      p->file = box->f;
    } else {
      p->file = open_file(L, p->name, lua_tostring(L, idx));
      if (!p->file)
        return 0;
      *own = lua_gettop(L); /* its box, closed by the caller once the body holds the file */
    }
    path = p->file->path;
    base = strrchr(path, '/');
    p->s = ""; /* not NULL: present; the bytes stay on disk */
    p->len = p->file->size;
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
    type = p->file ? sniff((const unsigned char *)p->file->head, p->file->head_len, why,
                           sizeof why)
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

void upload_close_own(lua_State *L, int idx) {
  file_box *box = (file_box *)luaL_testudata(L, idx, FILE_MT);
  if (box) {
    file_unref(box->f);
    box->f = NULL;
  }
}

/* ---- bodies ---------------------------------------------------------------------------- */

/* Where a file goes in a body: at byte `at` of its text, so at byte `start` of the body. */
typedef struct {
  size_t at, start;
  upload_file *f;
  const char *field; /* a command row's field name: static */
} body_hole;

#define MAX_HOLES 8

/* A multipart body whose file parts stay on disk: its text (part heads, text parts, the
 * closing delimiter) with a hole for each file. Shared by its Lua box and every transfer
 * sending it; freed, its files let go, when the last lets go. */
struct upload_body {
  int refs;
  int nfiles;
  size_t text_len, total;
  body_hole holes[MAX_HOLES];
  char text[];
};

typedef struct { upload_body *b; } body_box;

void upload_body_ref(upload_body *b) {
  b->refs++;
}

void upload_body_unref(upload_body *b) {
  int i;
  if (!b || --b->refs > 0)
    return;
  for (i = 0; i < b->nfiles; i++)
    file_unref(b->holes[i].f);
  free(b);
}

size_t upload_body_length(const upload_body *b) {
  return b->total;
}

char *upload_push_body(lua_State *L, size_t text_len, int nfiles, upload_body **out) {
  body_box *box = (body_box *)lua_newuserdata(L, sizeof *box);
  upload_body *b;
  box->b = NULL;
  luaL_setmetatable(L, BODY_MT);
  if (nfiles > MAX_HOLES)
    luaL_error(L, "too many files in one body");
  b = (upload_body *)malloc(sizeof *b + text_len + 1);
  if (!b)
    luaL_error(L, "not enough memory");
  b->refs = 1;
  b->nfiles = 0; /* counted up as the holes are filled */
  b->text_len = b->total = text_len;
  box->b = b;
  *out = b;
  return b->text;
}

void upload_body_hole(upload_body *b, int k, size_t at, upload_file *f, const char *field) {
  body_hole *h = &b->holes[k];
  h->at = at;
  h->start = at + (b->total - b->text_len); /* the files before it come first */
  h->f = f;
  h->field = field;
  f->refs++;
  b->nfiles = k + 1;
  b->total += f->size;
}

upload_body *upload_body_test(lua_State *L, int idx) {
  body_box *box = (body_box *)luaL_testudata(L, idx, BODY_MT);
  if (!box)
    return NULL;
  if (!box->b)
    luaL_error(L, "attempt to use a closed body");
  return box->b;
}

/* Whether the file is still what was checked: its size and modification time. */
static int still_same(const body_hole *h, upload_fault *fault) {
  struct stat st;
  if (fstat(h->f->fd, &st) != 0) {
    fault->err = errno;
    return 0;
  }
  if ((size_t)st.st_size != h->f->size || st.st_mtim.tv_sec != h->f->mtime.tv_sec ||
      st.st_mtim.tv_nsec != h->f->mtime.tv_nsec) {
    fault->err = UPLOAD_CHANGED;
    fault->size_then = h->f->size;
    fault->size_now = (unsigned long long)st.st_size;
    return 0;
  }
  return 1;
}

size_t upload_body_read(upload_body *b, size_t pos, char *out, size_t n, upload_fault *fault) {
  size_t done = 0, shift = 0;
  int k;
  for (k = 0; k <= b->nfiles && done < n && pos < b->total; k++) {
    size_t at = k < b->nfiles ? b->holes[k].at : b->text_len;
    if (pos < at + shift) { /* in the text before hole k */
      size_t m = at + shift - pos < n - done ? at + shift - pos : n - done;
      memcpy(out + done, b->text + (pos - shift), m);
      done += m;
      pos += m;
    }
    if (k < b->nfiles && done < n) {
      const body_hole *h = &b->holes[k];
      size_t end = h->start + h->f->size;
      if (pos < end) { /* in the file: from its descriptor straight to out */
        size_t m = end - pos < n - done ? end - pos : n - done;
        fault->part = k;
        if (!read_at(h->f->fd, out + done, m, pos - h->start)) {
          struct stat st;
          fault->err = errno ? errno : UPLOAD_CHANGED;
          fault->size_then = h->f->size;
          fault->size_now = fstat(h->f->fd, &st) == 0 ? (unsigned long long)st.st_size : 0;
          return (size_t)-1;
        }
        done += m;
        pos += m;
        if (pos == end && !still_same(h, fault))
          return (size_t)-1;
      }
      shift += h->f->size;
    }
  }
  return done;
}

int upload_push_fault(lua_State *L, const upload_body *b, const upload_fault *fault) {
  static const error_info info = {.kind = "invalid_request", .retry_after = -1};
  const body_hole *h = &b->holes[fault->part];
  if (fault->err != UPLOAD_CHANGED)
    lua_pushfstring(L, "%s: cannot read %s: %s", h->field, h->f->path, strerror(fault->err));
  else if (fault->size_now != fault->size_then) {
    char then[24], now[24];
    snprintf(then, sizeof then, "%llu", fault->size_then);
    snprintf(now, sizeof now, "%llu", fault->size_now);
    lua_pushfstring(L, "%s: cannot send %s: it changed after it was checked (%s bytes then, "
                    "%s now)", h->field, h->f->path, then, now);
  } else {
    lua_pushfstring(L, "%s: cannot send %s: it was modified after it was checked", h->field,
                    h->f->path);
  }
  return error_result(L, &info, NULL, -1);
}

/* body:read() -> the whole body as a string (its files read now), or nil and the error a send
 * would meet. For specs and for a transport that sends strings (nginx's). */
static int body_read(lua_State *L) {
  upload_body *b = upload_body_test(L, 1);
  luaL_Buffer buf;
  size_t pos = 0;
  upload_fault fault;
  if (!b)
    return luaL_argerror(L, 1, "body expected");
  lua_settop(L, 1);
  luaL_buffinit(L, &buf);
  while (pos < b->total) {
    char *dst = luaL_prepbuffer(&buf);
    size_t got = upload_body_read(b, pos, dst, LUAL_BUFFERSIZE, &fault);
    if (got == (size_t)-1) {
      lua_settop(L, 1); /* drops the buffer */
      return upload_push_fault(L, b, &fault);
    }
    luaL_addsize(&buf, got);
    pos += got;
  }
  luaL_pushresult(&buf);
  return 1;
}

static int body_len(lua_State *L) {
  body_box *box = (body_box *)luaL_checkudata(L, 1, BODY_MT);
  lua_pushinteger(L, box->b ? (lua_Integer)box->b->total : 0);
  return 1;
}

/* body:close(), and __gc: lets go of the files; a transfer sending the body keeps them open
 * until it ends. Idempotent. */
static int body_close(lua_State *L) {
  body_box *box = (body_box *)luaL_checkudata(L, 1, BODY_MT);
  upload_body_unref(box->b);
  box->b = NULL;
  return 0;
}

static int body_tostring(lua_State *L) {
  body_box *box = (body_box *)luaL_checkudata(L, 1, BODY_MT);
  if (box->b)
    lua_pushfstring(L, "faceswap.body: %d bytes, %d file%s", (int)box->b->total,
                    box->b->nfiles, box->b->nfiles == 1 ? "" : "s");
  else
    lua_pushliteral(L, "faceswap.body: closed");
  return 1;
}

static int file_tostring(lua_State *L) {
  file_box *box = (file_box *)luaL_checkudata(L, 1, FILE_MT);
  if (box->f)
    lua_pushfstring(L, "faceswap.upload: %s", box->f->path);
  else
    lua_pushliteral(L, "faceswap.upload: closed");
  return 1;
}

/* Registers the metatable `name`: its metamethods, and its methods as __index. */
static void new_metatable(lua_State *L, const char *name, const luaL_Reg *meta,
                          const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void upload_open(lua_State *L) {
  static const luaL_Reg body_meta[] = {
      {"__gc", body_close}, {"__len", body_len}, {"__tostring", body_tostring}, {NULL, NULL}};
  static const luaL_Reg body_methods[] = {{"read", body_read}, {"close", body_close}, {NULL, NULL}};
  static const luaL_Reg file_meta[] = {
      {"__gc", file_close}, {"__tostring", file_tostring}, {NULL, NULL}};
  static const luaL_Reg file_methods[] = {{"close", file_close}, {NULL, NULL}};
  new_metatable(L, BODY_MT, body_meta, body_methods);
  new_metatable(L, FILE_MT, file_meta, file_methods);
}
