/* command.c: the commands of the InsightFaceSwap family as data, and the one builder that
 * reads them. Each row says a command's method, path, fields (text, free text or file;
 * required or not), mode (blocking, a job, or either) and the shape of its answer; validation,
 * the multipart and JSON bodies, the Lua methods (init.lua), the command line (cli.lua) and the
 * docs' table all come from here. Adding a command is a row. headshot keeps its own builder
 * (request.c: it also speaks JSON) but has its row, so the CLI and docs list it. No I/O but
 * reading the files a caller uploads, before anything is sent. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "core.h"

/* An upload over this is refused locally: Discord, where the bot reads the file, takes 25 MiB
 * at most for an account without Nitro, so the job could not succeed with more. */
#define FACESWAP_MAX_UPLOAD (25u << 20)

enum { K_TEXT, K_PROSE, K_FILE }; /* a line of text; free text (tabs, line breaks); a file */
enum { M_BLOCKING, M_JOB, M_EITHER, M_NONE };
enum { B_FORM, B_JSON, B_NONE };  /* the body: multipart/form-data, JSON, none */

typedef struct {
  const char *name;
  unsigned char kind, required;
} field_def;

#define MAX_FIELDS 4
typedef struct {
  const char *name;      /* the Lua method and the CLI subcommand */
  const char *method, *path;
  unsigned char mode, body;
  unsigned char common;  /* takes channel, replyUrl, replyRef */
  unsigned char path_channel; /* the channel is the path's last segment */
  unsigned char answer;  /* ANSWER_* of core.h */
  const char *summary;   /* one line for the CLI's help and the docs */
  field_def fields[MAX_FIELDS];
} command_def;

static const command_def commands[] = {
  {"headshot", "POST", "/headshot", M_JOB, B_FORM, 1, 0, ANSWER_JOB,
   "a headshot of the saved face, with the background the prompt describes",
   {{"prompt", K_PROSE, 1}, {"options", K_TEXT, 0}}},
  {"saveid", "POST", "/saveid", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "save the face in an image under a name",
   {{"idname", K_TEXT, 1}, {"image", K_FILE, 1}}},
  {"swapid", "POST", "/swapid", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "put saved faces (names separated by commas) on an image",
   {{"idname", K_TEXT, 1}, {"image", K_FILE, 1}}},
  {"listid", "POST", "/listid", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "list the saved faces' names", {{NULL, 0, 0}}},
  {"setid", "POST", "/setid", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "make a saved face the default", {{"idname", K_TEXT, 1}}},
  {"delid", "DELETE", "/delid", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "delete a saved face", {{"idname", K_TEXT, 1}}},
  {"delall", "DELETE", "/delall", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "delete every saved face", {{NULL, 0, 0}}},
  {"inswapper", "POST", "/inswapper", M_BLOCKING, B_FORM, 1, 0, ANSWER_JOB,
   "swap the default face onto an image posted in the channel",
   {{"targetMessageId", K_TEXT, 1}}},
  {"picsi", "POST", "/picsi", M_EITHER, B_FORM, 1, 0, ANSWER_JOB,
   "put the face of one image on an image, GIF or video",
   {{"source_image", K_FILE, 1}, {"target_image_gif_or_video", K_FILE, 1},
    {"options", K_TEXT, 0}}},
  {"changebg", "POST", "/changebg", M_JOB, B_FORM, 1, 0, ANSWER_JOB,
   "replace an image's background with the one described",
   {{"image", K_FILE, 1}, {"a_background_photo_of", K_PROSE, 1}, {"options", K_TEXT, 0}}},
  {"jobs", "GET", "/jobs", M_NONE, B_NONE, 0, 0, ANSWER_JOBIDS,
   "the ids of the jobs running now", {{NULL, 0, 0}}},
  {"accounts", "GET", "/account", M_NONE, B_NONE, 0, 0, ANSWER_ACCOUNTS,
   "every configured account, keyed by channel", {{NULL, 0, 0}}},
  {"account", "GET", "/account/", M_NONE, B_NONE, 0, 1, ANSWER_ACCOUNT,
   "one account: server, channel, masked token, credits", {{NULL, 0, 0}}},
  {"add_account", "POST", "/account/", M_NONE, B_JSON, 0, 1, ANSWER_NONE,
   "configure an account: its Discord token, server and channel",
   {{"discord", K_TEXT, 1}, {"server", K_TEXT, 1}, {"channel", K_TEXT, 1}}},
  {"delete_account", "DELETE", "/account/", M_NONE, B_NONE, 0, 1, ANSWER_NONE,
   "remove an account's configuration", {{NULL, 0, 0}}},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command_def *find(const char *name) {
  size_t i;
  for (i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

int command_answer(const char *name, int *safe) {
  const command_def *c = find(name);
  if (!c)
    return -1;
  *safe = strcmp(c->method, "GET") == 0;
  return c->answer;
}

static int n_fields(const command_def *c) {
  int n = 0;
  while (n < MAX_FIELDS && c->fields[n].name)
    n++;
  return n;
}

/* ---- core.commands(): the table as Lua data ---------------------------------------------- */

int core_commands(lua_State *L) {
  static const char *const modes[] = {"blocking", "job", "either", "none"};
  static const char *const kinds[] = {"text", "prose", "file"};
  static const char *const answers[] = {"job", "jobids", "account", "accounts", "none"};
  size_t i;
  int f;
  lua_createtable(L, (int)N_COMMANDS, 0);
  for (i = 0; i < N_COMMANDS; i++) {
    const command_def *c = &commands[i];
    lua_createtable(L, 0, 9);
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, c->path_channel ? "/account/<channel>" : c->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, modes[c->mode]);
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, answers[c->answer]);
    lua_setfield(L, -2, "answer");
    lua_pushstring(L, c->summary);
    lua_setfield(L, -2, "summary");
    lua_pushboolean(L, c->common);
    lua_setfield(L, -2, "common");
    lua_pushboolean(L, c->path_channel);
    lua_setfield(L, -2, "path_channel");
    lua_createtable(L, n_fields(c), 0);
    for (f = 0; f < n_fields(c); f++) {
      lua_createtable(L, 0, 3);
      lua_pushstring(L, c->fields[f].name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, kinds[c->fields[f].kind]);
      lua_setfield(L, -2, "kind");
      lua_pushboolean(L, c->fields[f].required);
      lua_setfield(L, -2, "required");
      lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* ---- reading params -------------------------------------------------------------------- */

/* One field of a request: its bytes, and for a file the part's filename and type. */
typedef struct {
  const char *name;
  unsigned char kind;
  const char *s;        /* NULL: absent */
  size_t len;
  int too_long;         /* replyUrl, replyRef over their limit */
  const char *filename, *type;
  size_t filename_len;
  const char *path;     /* a file read into the body as it is built (Lua 5.2+), or NULL */
  int file_idx;         /* the stack slot holding a file's source: path or table */
} part;

#define COMMON_FIELDS 3
static const char *const common_names[COMMON_FIELDS] = {"channel", "replyUrl", "replyRef"};

typedef struct {
  const command_def *c;
  const char *what;     /* the name errors carry: the command's */
  part parts[MAX_FIELDS + COMMON_FIELDS];
  int n;
} request;

static part *part_named(request *r, const char *name) {
  int i;
  for (i = 0; i < r->n; i++)
    if (strcmp(r->parts[i].name, name) == 0)
      return &r->parts[i];
  return NULL;
}

static int local_error(lua_State *L, int code, const char *text) {
  error_info info = {"invalid_request", code, 0, 0, -1};
  lua_pushnil(L);
  error_push(L, &info, text, 0, 0);
  return 2;
}

/* Reads the value at idx into p: text is checked now; a file's source is only typed here and
 * read once validation has passed (read_file). */
static void read_part(lua_State *L, request *r, part *p, int idx) {
  size_t chars;
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx))
    return;
  if (p->kind == K_FILE) {
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE)
      luaL_error(L, "bad argument #1 to '%s' (%s must be a file path or a table {data = "
                    "bytes, filename = name}, got %s)", r->what, p->name, luaL_typename(L, idx));
    if (lua_type(L, idx) == LUA_TSTRING && strlen(lua_tostring(L, idx)) != lua_rawlen(L, idx))
      luaL_error(L, "bad argument #1 to '%s' (%s path contains a zero byte)", r->what, p->name);
    p->file_idx = idx;
    p->s = "";
    p->len = lua_type(L, idx) == LUA_TSTRING ? lua_rawlen(L, idx) : 1;
    return;
  }
  p->s = request_check_text(L, idx, r->what, p->name, p->kind == K_PROSE, &p->len, &chars);
  if ((strcmp(p->name, "replyUrl") == 0 || strcmp(p->name, "replyRef") == 0) &&
      chars > FACESWAP_MAX_REPLY_CHARS)
    p->too_long = 1;
}

/* Keys of a table of params: each must be one of the command's fields. */
static void read_table(lua_State *L, request *r, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    part *p = key ? part_named(r, key) : NULL;
    if (!p) {
      luaL_error(L, "bad argument #1 to '%s' (unknown param '%s')", r->what,
                 key ? key : luaL_typename(L, -2));
      return; /* not reached: luaL_error does not return */
    }
    /* the value stays on the stack (at most one per field): a file's source is read from it
     * later, and p points into a text while the body is built, which the table alone would
     * not keep, since a finalizer run by an allocation there may change the table */
    read_part(L, r, p, -1);
    luaL_checkstack(L, 2, r->what);
    lua_pushvalue(L, -2); /* the key for lua_next; the value keeps its slot */
  }
}

/* ---- files ----------------------------------------------------------------------------- */

static const char *sniff(const unsigned char *b, size_t n) {
  if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
  if (n >= 3 && memcmp(b, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
  if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "image/gif";
  if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "image/webp";
  if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) return "video/mp4";
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

/* Checks that path is a file that may be uploaded: pushes why not and returns 0, or returns 1
 * with its size. */
static int check_path(lua_State *L, const char *field, const char *path, size_t *size) {
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path, strerror(errno));
    return 0;
  }
  if (S_ISDIR(st.st_mode)) {
    lua_pushfstring(L, "%s: cannot read %s: %s", field, path, strerror(EISDIR));
    return 0;
  }
  if ((unsigned long long)st.st_size > FACESWAP_MAX_UPLOAD) {
    lua_pushfstring(L, "%s: %s is %d MiB, over the %d MiB limit on uploads", field, path,
                    (int)(st.st_size >> 20), (int)(FACESWAP_MAX_UPLOAD >> 20));
    return 0;
  }
  *size = (size_t)st.st_size;
  return 1;
}

/* Reads up to n bytes of path into dst: how many, or (size_t)-1 with *err. No Lua call is
 * made while the FILE is open, so nothing can raise past its fclose. */
static size_t read_some(const char *path, char *dst, size_t n, int *err) {
  FILE *f = fopen(path, "rb");
  size_t got;
  if (!f) {
    *err = errno;
    return (size_t)-1;
  }
  got = fread(dst, 1, n, f);
  *err = ferror(f) ? (errno ? errno : EIO) : 0;
  fclose(f);
  return *err ? (size_t)-1 : got;
}

/* Pushes why a file could not be read whole: an error, or a size other than stat's. */
static void push_unread(lua_State *L, const part *p, const char *path, size_t got, int err) {
  lua_pushfstring(L, "%s: cannot read %s: %s", p->name, path,
                  got == (size_t)-1 ? strerror(err) : "it changed while being read");
}

/* Reads a file part's source (the value at p->file_idx): its bytes, filename and type. The
 * bytes, name and type stay referenced from the stack until the body is built. */
static int read_file(lua_State *L, request *r, part *p) {
  const char *type = NULL;
  char head[12];
  size_t len, head_len = 0;
  if (lua_type(L, p->file_idx) == LUA_TSTRING) {
    const char *path = lua_tostring(L, p->file_idx), *base = strrchr(path, '/');
    size_t size;
    int err;
    if (!check_path(L, p->name, path, &size))
      return 0;
#if LUA_VERSION_NUM >= 502
    /* the bytes go straight into the body (build_form); the first ones tell the type now */
    head_len = read_some(path, head, size < sizeof head ? size : sizeof head, &err);
    if (head_len == (size_t)-1) {
      push_unread(L, p, path, head_len, err);
      return 0;
    }
    p->path = path;
    p->s = head;
    p->len = size;
#else
    {
      /* one byte more than expected tells a file that grew since stat */
      char *data = (char *)lua_newuserdata(L, size + 1);
      size_t got = read_some(path, data, size + 1, &err);
      if (got != size) {
        push_unread(L, p, path, got, err);
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
    while (lua_next(L, p->file_idx)) {
      const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      for (i = 0; i < 3 && strcmp(key, keys[i]) != 0; i++) {}
      if (i == 3)
        luaL_error(L, "bad argument #1 to '%s' (%s: unknown field '%s' in a file table)",
                   r->what, p->name, lua_type(L, -2) == LUA_TSTRING ? key : luaL_typename(L, -2));
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad argument #1 to '%s' (%s.%s must be a string, got %s)", r->what,
                   p->name, key, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    lua_getfield(L, p->file_idx, "data");
    if (lua_isnil(L, -1))
      luaL_error(L, "bad argument #1 to '%s' (%s.data is missing)", r->what, p->name);
    p->s = lua_tolstring(L, -1, &p->len);
    lua_getfield(L, p->file_idx, "filename");
    if (lua_isnil(L, -1))
      luaL_error(L, "bad argument #1 to '%s' (%s.filename is missing)", r->what, p->name);
    {
      const char *name = lua_tolstring(L, -1, &len);
      push_filename(L, name, len, p->name);
      lua_remove(L, -2);
      p->filename = lua_tolstring(L, -1, &p->filename_len);
    }
    lua_getfield(L, p->file_idx, "content_type");
    if (!lua_isnil(L, -1)) {
      size_t chars;
      type = request_check_text(L, -1, r->what, "content_type", 0, &len, &chars);
      if (len == 0)
        luaL_error(L, "bad argument #1 to '%s' (%s.content_type is empty)", r->what, p->name);
    } else {
      lua_pop(L, 1);
    }
  }
  if (p->len == 0) {
    lua_pushfstring(L, "%s: %s is empty", p->name, p->filename);
    return 0;
  }
  if (p->len > FACESWAP_MAX_UPLOAD) {
    lua_pushfstring(L, "%s: %s is %d MiB, over the %d MiB limit on uploads", p->name,
                    p->filename, (int)(p->len >> 20), (int)(FACESWAP_MAX_UPLOAD >> 20));
    return 0;
  }
  if (!type) {
    type = p->path ? sniff((const unsigned char *)head, head_len)
                   : sniff((const unsigned char *)p->s, p->len);
    if (!type) {
      lua_pushfstring(L, "%s: %s is not a PNG, JPEG, GIF, WebP or MP4 file", p->name,
                      p->filename);
      return 0;
    }
  }
  p->type = type;
  return 1;
}

/* ---- bodies ---------------------------------------------------------------------------- */

/* Boyer-Moore-Horspool: in bytes that hold few of the boundary's characters (an image) it
 * looks at about one byte in blen, so a large file costs a fraction of a pass over it. */
static int contains(const char *str, size_t len, const char *pat, size_t blen) {
  const unsigned char *s = (const unsigned char *)str, *b = (const unsigned char *)pat;
  size_t skip[256], i, last = blen - 1;
  if (!s || blen == 0 || len < blen)
    return 0;
  for (i = 0; i < 256; i++)
    skip[i] = blen;
  for (i = 0; i < last; i++)
    skip[b[i]] = last - i;
  for (i = 0; i + blen <= len; i += skip[s[i + last]])
    if (s[i + last] == b[last] && memcmp(s + i, b, last) == 0)
      return 1;
  return 0;
}

/* Whether the boundary occurs in any part, binary ones and filenames included. */
static int boundary_collides(const request *r, const char *b, size_t blen) {
  int i;
  for (i = 0; i < r->n; i++) {
    const part *p = &r->parts[i];
    /* a file still on disk is checked as build_form reads it */
    if ((!p->path && contains(p->s, p->len, b, blen)) ||
        contains(p->filename, p->filename_len, b, blen))
      return 1;
  }
  return 0;
}

static void add_part_head(luaL_Buffer *buf, const char *b, size_t blen, const part *p) {
  luaL_addlstring(buf, "--", 2);
  luaL_addlstring(buf, b, blen);
  luaL_addstring(buf, "\r\nContent-Disposition: form-data; name=\"");
  luaL_addstring(buf, p->name);
  if (p->filename) {
    luaL_addstring(buf, "\"; filename=\"");
    luaL_addlstring(buf, p->filename, p->filename_len);
    luaL_addstring(buf, "\"\r\nContent-Type: ");
    luaL_addstring(buf, p->type);
  } else {
    luaL_addchar(buf, '"');
  }
  luaL_addstring(buf, "\r\n\r\n");
}

/* Pushes the body and returns 1; or returns 0 (the boundary occurs in a file it read: try
 * another) or -1 with why a file could not be read pushed, leaving the stack as it was. A
 * file given by path is read straight into the body: its bytes are not copied by the core. */
static int build_form(lua_State *L, const request *r, const char *b, size_t blen) {
  luaL_Buffer buf;
  size_t total = blen + 8;
  int i, top = lua_gettop(L);
  (void)top; /* used where files are read into the body (5.2+) */
  for (i = 0; i < r->n; i++)
    if (r->parts[i].s)
      total += r->parts[i].len + r->parts[i].filename_len + blen + 160;
#if LUA_VERSION_NUM >= 502
  luaL_buffinitsize(L, &buf, total); /* one allocation: a large image is not copied twice */
#else
  luaL_buffinit(L, &buf);
#endif
  for (i = 0; i < r->n; i++) {
    const part *p = &r->parts[i];
    if (!p->s)
      continue;
    add_part_head(&buf, b, blen, p);
#if LUA_VERSION_NUM >= 502
    if (p->path) {
      /* room first (it may raise), then the file; one byte more tells one that grew */
      char *dst = luaL_prepbuffsize(&buf, p->len + 1);
      int err;
      size_t got = read_some(p->path, dst, p->len + 1, &err);
      if (got != p->len || contains(dst, got, b, blen)) {
        lua_settop(L, top); /* drops the buffer */
        if (got == p->len)
          return 0;
        push_unread(L, p, p->path, got, err);
        return -1;
      }
      luaL_addsize(&buf, got);
    } else
#endif
      luaL_addlstring(&buf, p->s, p->len);
    luaL_addlstring(&buf, "\r\n", 2);
  }
  luaL_addlstring(&buf, "--", 2);
  luaL_addlstring(&buf, b, blen);
  luaL_addlstring(&buf, "--\r\n", 4);
  luaL_pushresult(&buf);
  return 1;
}

/* A JSON string of text that request_check_text accepted: no control bytes to escape. */
static void add_json_text(luaL_Buffer *buf, const char *s, size_t len) {
  size_t i, run = 0;
  luaL_addchar(buf, '"');
  for (i = 0; i < len; i++) {
    if (s[i] == '"' || s[i] == '\\') {
      luaL_addlstring(buf, s + run, i - run);
      luaL_addchar(buf, '\\');
      run = i;
    }
  }
  luaL_addlstring(buf, s + run, len - run);
  luaL_addchar(buf, '"');
}

static void build_json_object(lua_State *L, const request *r) {
  luaL_Buffer buf;
  int i, first = 1;
  luaL_buffinit(L, &buf);
  luaL_addchar(&buf, '{');
  for (i = 0; i < r->n; i++) {
    if (!r->parts[i].s)
      continue;
    if (!first)
      luaL_addchar(&buf, ',');
    first = 0;
    add_json_text(&buf, r->parts[i].name, strlen(r->parts[i].name));
    luaL_addchar(&buf, ':');
    add_json_text(&buf, r->parts[i].s, r->parts[i].len);
  }
  luaL_addchar(&buf, '}');
  luaL_pushresult(&buf);
}

/* The path, with a channel as its last segment percent-encoded. */
static void push_path(lua_State *L, const command_def *c, const char *channel, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  luaL_Buffer buf;
  size_t i;
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, c->path);
  for (i = 0; c->path_channel && i < len; i++) {
    unsigned char ch = (unsigned char)channel[i];
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      luaL_addchar(&buf, (char)ch);
    } else {
      luaL_addchar(&buf, '%');
      luaL_addchar(&buf, hex[ch >> 4]);
      luaL_addchar(&buf, hex[ch & 15]);
    }
  }
  luaL_pushresult(&buf);
}

/* Discord ids are snowflakes: decimal numbers below 2^64, so at most 20 digits. */
static int is_snowflake(const char *s, size_t len) {
  size_t i;
  if (len == 0 || len > 20)
    return 0;
  for (i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* ---- core.build_command ---------------------------------------------------------------- */

/* core.build_command(name, params, channel, reply_url [, boundary])
 *   -> method, path, content_type, body, channel | nil, err
 * params: a table of the command's fields (and channel, replyUrl, replyRef where it takes
 * them); for account and delete_account the channel; nil for jobs and accounts. The client's
 * defaults fill channel and replyUrl. The returned channel is the one the request names (nil:
 * none), for the client's channel lock. The optional boundary is tried first (for specs). */
int core_build_command(lua_State *L) {
  request r;
  const command_def *c;
  const char *name = luaL_checkstring(L, 1);
  part *channel;
  int i, nf, top;
  c = find(name);
  if (!c || strcmp(name, "headshot") == 0)
    return luaL_error(L, "bad argument #1 to 'build_command' (unknown command '%s')", name);
  lua_settop(L, 5);
  memset(&r, 0, sizeof r);
  r.c = c;
  r.what = c->name;
  nf = n_fields(c);
  for (i = 0; i < nf; i++) {
    r.parts[r.n].name = c->fields[i].name;
    r.parts[r.n++].kind = c->fields[i].kind;
  }
  for (i = 0; c->common && i < COMMON_FIELDS; i++) {
    r.parts[r.n].name = common_names[i];
    /* replyRef is free text, as for headshot: tabs and line breaks allowed */
    r.parts[r.n++].kind = strcmp(common_names[i], "replyRef") == 0 ? K_PROSE : K_TEXT;
  }

  if (c->path_channel && c->body == B_NONE) {
    /* account(channel), delete_account(channel) */
    size_t chars;
    if (lua_type(L, 2) != LUA_TSTRING)
      return luaL_error(L, "bad argument #1 to '%s' (channel must be a string, got %s)",
                        c->name, luaL_typename(L, 2));
    r.parts[0].name = "channel";
    r.parts[0].s = request_check_text(L, 2, c->name, "channel", 0, &r.parts[0].len, &chars);
    r.n = 1;
  } else if (nf == 0 && !c->common) {
    if (!lua_isnil(L, 2))
      return luaL_error(L, "bad argument #1 to '%s' (no params expected, got %s)", c->name,
                        luaL_typename(L, 2));
  } else if (lua_istable(L, 2)) {
    read_table(L, &r, 2);
  } else if (!lua_isnil(L, 2) || n_fields(c) > 0) {
    return luaL_error(L, "bad argument #1 to '%s' (table expected, got %s)", c->name,
                      luaL_typename(L, 2));
  }
  channel = part_named(&r, "channel");
  if (c->common) {
    if (!channel->s)
      read_part(L, &r, channel, 3);
    if (!part_named(&r, "replyUrl")->s)
      read_part(L, &r, part_named(&r, "replyUrl"), 4);
  }

  /* the server's checks, in the server's order: required fields, then the limits */
  for (i = 0; i < nf; i++) {
    part *p = &r.parts[i];
    if (c->fields[i].required && (!p->s || p->len == 0)) {
      lua_pushfstring(L, "Required param %s is missing or empty", p->name);
      return local_error(L, 400, lua_tostring(L, -1));
    }
  }
  if (c->path_channel && (!channel->s || channel->len == 0))
    return local_error(L, 400, "Required param channel is missing or empty");
  if (c->path_channel && c->body == B_JSON && !is_snowflake(channel->s, channel->len)) {
    lua_pushfstring(L, "Required param channel (%s) is not valid Discord channel id",
                    channel->s);
    return local_error(L, 400, lua_tostring(L, -1));
  }
  if (c->common && part_named(&r, "replyRef")->too_long)
    return local_error(L, 400, "Optional param replyRef is too long");
  if (c->common && part_named(&r, "replyUrl")->too_long)
    return local_error(L, 400, "Optional param replyUrl is too long");

  /* files last: nothing is read for a request the checks above refuse */
  for (i = 0; i < nf; i++) {
    if (r.parts[i].kind == K_FILE && r.parts[i].s && !read_file(L, &r, &r.parts[i])) {
      error_info info = {"invalid_request", 0, 0, 0, -1};
      error_push(L, &info, NULL, -1, 0);
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
  }

  top = lua_gettop(L);
  lua_pushstring(L, c->method);
  push_path(L, c, channel ? channel->s : NULL, channel ? channel->len : 0);
  if (c->body == B_NONE) {
    lua_pushnil(L);
    lua_pushnil(L);
  } else if (c->body == B_JSON) {
    lua_pushliteral(L, "application/json");
    build_json_object(L, &r);
  } else {
    char b[FACESWAP_BOUNDARY_MAX + 1];
    size_t blen = 0;
    if (lua_type(L, 5) == LUA_TSTRING && lua_rawlen(L, 5) <= FACESWAP_BOUNDARY_MAX) {
      blen = lua_rawlen(L, 5);
      memcpy(b, lua_tostring(L, 5), blen + 1);
    }
    for (;;) {
      int built;
      while (blen == 0 || boundary_collides(&r, b, blen))
        blen = request_make_boundary(lua_touserdata(L, lua_upvalueindex(1)), b);
      lua_pushfstring(L, "multipart/form-data; boundary=%s", b);
      built = build_form(L, &r, b, blen);
      if (built > 0)
        break;
      if (built < 0) {
        error_info info = {"invalid_request", 0, 0, 0, -1};
        error_push(L, &info, NULL, -1, 0);
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
      }
      lua_pop(L, 1);
      blen = 0; /* it occurs in a file: another one */
    }
  }
  if (channel && channel->s && (c->common || c->path_channel))
    lua_pushlstring(L, channel->s, channel->len);
  else
    lua_pushnil(L);
  return lua_gettop(L) - top;
}

/* ---- answers that are not jobs --------------------------------------------------------- */

/* Whether the table at idx is an account: an object whose known fields have their types. */
static const char *account_problem(lua_State *L, int idx) {
  static const char *const texts[] = {"server", "channel", "discord"};
  static const char *const problems[] = {"an account: field server is not a string",
    "an account: field channel is not a string", "an account: field discord is not a string"};
  const char *problem = NULL;
  int i;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    return "an account object";
  for (i = 0; i < 3 && !problem; i++) {
    lua_getfield(L, idx, texts[i]);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      problem = problems[i];
    lua_pop(L, 1);
  }
  if (problem)
    return problem;
  lua_getfield(L, idx, "credits");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1))
    problem = "an account: field credits is not an object";
  lua_pop(L, 1);
  return problem;
}

/* Reads a 2xx answer of a command whose answer is not a job: pushes the value and returns 1,
 * or pushes why the answer is not the documented one and returns 0. */
int command_read_answer(lua_State *L, int answer, int status, int body_idx) {
  size_t len;
  const char *body = lua_tolstring(L, body_idx, &len), *problem = NULL;
  if (answer == ANSWER_NONE && len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!core_json_decode(L, body, len)) {
    lua_pushfstring(L, "HTTP %d answer: invalid JSON: %s", status, lua_tostring(L, -1));
    return 0;
  }
  if (answer == ANSWER_NONE) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  while (len > 0 && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')) {
    body++;
    len--;
  }
  /* arrays and objects both decode to tables: the first byte tells which it was */
  if (!lua_istable(L, -1) || *body != (answer == ANSWER_JOBIDS ? '[' : '{')) {
    lua_pushfstring(L, "HTTP %d answer is not %s", status,
                    answer == ANSWER_JOBIDS ? "an array of jobids" : "an object");
    return 0;
  }
  if (answer == ANSWER_JOBIDS) {
    /* GET /jobs's shape is undocumented for faceswap (the Midjourney sibling answers jobid
     * strings): an element may be a jobid or a job-like object with one; either way the
     * answer becomes the array of jobids. JSON arrays decode to sequences and objects to
     * string keys, so a sequence whose length is the count of its keys is an array. */
    size_t n = (size_t)lua_rawlen(L, -1), count = 0;
    int ok = 1;
    lua_pushnil(L);
    while (ok && lua_next(L, -2)) {
      ok = lua_type(L, -2) == LUA_TNUMBER;
      if (ok && lua_istable(L, -1)) {
        lua_getfield(L, -1, "jobid");
        ok = lua_type(L, -1) == LUA_TSTRING;
        if (ok)
          lua_rawseti(L, -4, (int)lua_tointeger(L, -3)); /* the jobid replaces its object */
        else
          lua_pop(L, 1);
      } else {
        ok = ok && lua_type(L, -1) == LUA_TSTRING;
      }
      lua_pop(L, ok ? 1 : 2);
      count++;
    }
    if (!ok || count != n)
      problem = "an array of jobids";
  } else if (answer == ANSWER_ACCOUNT) {
    problem = account_problem(L, -1);
  } else {
    /* GET /account: accounts keyed by channel; each gets its key as channel if it lacks one */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      problem = lua_type(L, -2) == LUA_TSTRING ? account_problem(L, -1)
                                               : "accounts keyed by channel";
      if (problem) {
        lua_pop(L, 2);
        break;
      }
      lua_getfield(L, -1, "channel");
      if (lua_isnil(L, -1)) {
        lua_pushvalue(L, -3);
        lua_setfield(L, -3, "channel");
      }
      lua_pop(L, 2);
    }
  }
  if (problem) {
    lua_pushfstring(L, "HTTP %d answer is not %s", status, problem);
    return 0;
  }
  return 1;
}
