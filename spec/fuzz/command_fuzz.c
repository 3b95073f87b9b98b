/* command_fuzz.c: libFuzzer harness for the command table (csrc/command.c, its writers in
 * csrc/form.c, its uploads in csrc/upload.c): core.build_command for every form command,
 * headshot included, with arbitrary text fields and file parts, and core.read_response for
 * every command's answers.
 *
 * Building: the input picks a command (its fields are copied from the table by core.commands(),
 * so a new row is fuzzed without touching this file) and fills each field, channel, replyUrl,
 * replyRef and an explicit boundary with arbitrary bytes, present or not; file fields become
 * {data = bytes, filename = bytes[, content_type = bytes]}, or (a flag) a path to a scratch
 * file holding the bytes, which the core's body reads from the file's descriptor (read back
 * here with body:read()). The harness computes on its own
 * what the core must do: raise naming a bad text param, return the server's 400, refuse an
 * upload locally (empty, not one of the five types) or build. A built body is read back by the
 * harness's own strict multipart reader, which knows file parts (filename and Content-Type
 * headers): every field must come back byte-exactly, the filename sanitised, the type the
 * sniffed or given one, and the boundary must occur in no part.
 * Reading: the rest of the input is an answer body, read as each command's answer with a
 * status from the input; the result must have the documented shape (a job, an array of
 * strings, a table, true, or nil and an error object). Any mismatch abort()s.
 *
 * Input: cmd flags [slot...] where a slot is: len(1 byte, 0xFF = absent) bytes.
 * Built by spec/fuzz/run.sh with the core's csrc/ sources. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_faceswap_core(lua_State *L);

#define FUZZ_NAME "command_fuzz"
#include "harness.h"

/* ---- input ---------------------------------------------------------------------------- */

typedef struct { int present; size_t len; const char *s; } slot;

static slot next_slot(const uint8_t **pp, const uint8_t *end) {
  slot s = {0, 0, ""};
  const uint8_t *p = *pp;
  if (p < end) {
    unsigned len = *p++;
    if (len != 0xFF) {
      if (len > (size_t)(end - p)) len = (unsigned)(end - p);
      s.present = 1;
      s.len = len;
      s.s = (const char *)p;
      p += len;
    }
  }
  *pp = p;
  return s;
}

/* ---- the harness's own rules ---------------------------------------------------------- */

/* ISO-BMFF (an ftyp box in the first 64 bytes): MP4 video only, by its brands (docs/commands.md):
 * a known major brand decides; an unknown one is MP4 when a compatible brand is MP4 and none is
 * one of the named others; a generic HEIF major brand is named by a specific compatible one. */
static const char *const mp4_brands[] = {"isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41",
                                         "mp42", "avc1", "M4V ", "M4VH", "M4VP", "MSNV"};
static const char *const named_brands[][2] = {
  {"mif1", "a HEIF image"}, {"mif2", "a HEIF image"}, {"miaf", "a HEIF image"},
  {"msf1", "a HEIF image sequence"}, {"heic", "a HEIC image"}, {"heix", "a HEIC image"},
  {"heim", "a HEIC image"}, {"heis", "a HEIC image"}, {"hevc", "a HEIC image sequence"},
  {"hevx", "a HEIC image sequence"}, {"avif", "an AVIF image"},
  {"avis", "an AVIF image sequence"}, {"M4A ", "an MP4 audio file"},
  {"M4B ", "an MP4 audio file"}, {"M4P ", "an MP4 audio file"}, {"qt  ", "a QuickTime movie"},
  {"crx ", "a Canon raw image"}};
#define N_NAMED (int)(sizeof named_brands / sizeof named_brands[0])

NOCOV static int is_mp4(const unsigned char *b) {
  size_t i;
  for (i = 0; i < sizeof mp4_brands / sizeof mp4_brands[0]; i++)
    if (!memcmp(b, mp4_brands[i], 4)) return 1;
  return 0;
}
NOCOV static int named(const unsigned char *b) { /* index, or -1 */
  int i;
  for (i = 0; i < N_NAMED; i++)
    if (!memcmp(b, named_brands[i][0], 4)) return i;
  return -1;
}
#define GENERIC(i) ((i) >= 0 && (i) <= 3)

NOCOV static const char *bmff(const unsigned char *b, size_t n, char *why, size_t cap) {
  size_t box = ((size_t)b[0] << 24) | ((size_t)b[1] << 16) | ((size_t)b[2] << 8) | b[3], at = 8, i;
  int major, best = -1, video = 0;
  char text[20], *o = text;
  if (n > 64) n = 64;
  if (box == 1) at = 16, box = n;
  if (box == 0 || box > n) box = n;
  if (at + 4 > box) {
    snprintf(why, cap, "an ISO-BMFF file without a brand");
    return NULL;
  }
  if (is_mp4(b + at)) return "video/mp4";
  major = named(b + at);
  for (i = at + 8; i + 4 <= box; i += 4) {
    int k = named(b + i);
    video |= is_mp4(b + i);
    if (k >= 0 && (best < 0 || (GENERIC(best) && !GENERIC(k)))) best = k;
  }
  if (major >= 0 && (!GENERIC(major) || best < 0 || GENERIC(best))) best = major;
  if (best < 0 && video) return "video/mp4";
  for (i = 0; i < 4; i++) {
    unsigned char c = best >= 0 ? (unsigned char)named_brands[best][0][i] : b[at + i];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') *o++ = (char)c;
    else o += sprintf(o, "\\x%02X", c);
  }
  *o = '\0';
  if (best >= 0) snprintf(why, cap, "%s (ISO-BMFF brand \"%s\")", named_brands[best][1], text);
  else snprintf(why, cap, "an ISO-BMFF file of unknown brand \"%s\"", text);
  return NULL;
}

/* The type the core must give a file's bytes, or NULL with why (maybe "") it refuses them. */
NOCOV static const char *sniffed(const slot *d, char *why, size_t cap) {
  const unsigned char *b = (const unsigned char *)d->s;
  size_t n = d->len;
  why[0] = '\0';
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "image/jpeg";
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "image/gif";
  if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "image/webp";
  if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return bmff(b, n, why, cap);
  return NULL;
}

NOCOV static const char *find(const char *h, const char *hend, const char *n, size_t nlen) {
  for (; (size_t)(hend - h) >= nlen; h++)
    if (*h == *n && memcmp(h, n, nlen) == 0) return h;
  return NULL;
}

/* ---- fields of one request ------------------------------------------------------------ */

#define MAXF 8
typedef struct {
  char name[48];
  int kind;        /* 0 text, 1 prose, 2 file */
  int required;
  int in_table;    /* given in the params table, not from the client's defaults */
  char path[300];  /* a file given by path: its scratch file, else "" */
  slot value;      /* text, or a file's data */
  slot filename, ctype;
  char want_name[300]; /* the sanitised filename */
  const char *want_type;
  /* what the reader found */
  int got;
  slot got_value;
  char got_filename[300], got_type[300];
} field;

/* A strict multipart/form-data reader: parts with a name, and for files a filename and a
 * Content-Type header; returns NULL or why the body is refused. */
NOCOV static const char *read_multipart(const char *body, size_t len, const char *b, size_t blen,
                                        field *f, int nf) {
  const char *p = body, *end = body + len, *why;
  char delim[80];
  if ((why = multipart_open(&p, end, b, blen, delim)) != NULL)
    return why;
  for (;;) {
    static const char cd[] = "Content-Disposition: form-data; name=\"";
    static const char ct[] = "Content-Type: ";
    const char *eol, *q, *content, *next;
    int i;
    size_t nlen;
    if (end - p >= 2 && p[0] == '-' && p[1] == '-')
      return end - p == 4 && p[2] == '\r' && p[3] == '\n' ? NULL : "bad close-delimiter";
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return "delimiter without CRLF";
    p += 2;
    eol = find(p, end, "\r\n", 2);
    if (!eol || (size_t)(eol - p) < sizeof cd - 1 || memcmp(p, cd, sizeof cd - 1))
      return "no Content-Disposition";
    if (memchr(p, '\n', (size_t)(eol - p)) || memchr(p, '\r', (size_t)(eol - p)))
      return "CR or LF in a header";
    q = p + sizeof cd - 1;
    for (nlen = 0; q + nlen < eol && q[nlen] != '"'; nlen++) {}
    for (i = 0; i < nf; i++)
      if (strlen(f[i].name) == nlen && !memcmp(f[i].name, q, nlen)) break;
    if (i == nf) return "unknown field";
    if (f[i].got++) return "duplicate field";
    q += nlen;
    if (q >= eol) return "unterminated name";
    q++;
    if (f[i].kind == 2) {
      static const char fn[] = "; filename=\"";
      size_t k;
      if ((size_t)(eol - q) < sizeof fn || memcmp(q, fn, sizeof fn - 1)) return "no filename";
      q += sizeof fn - 1;
      for (k = 0; q < eol - 1; q++) {
        if (*q == '"' || *q == '\\') return "quote or backslash in a filename";
        if (k < sizeof f[i].got_filename - 1) f[i].got_filename[k++] = *q;
      }
      f[i].got_filename[k] = '\0';
      if (*q != '"') return "unterminated filename";
      p = eol + 2;
      eol = find(p, end, "\r\n", 2);
      if (!eol || (size_t)(eol - p) < sizeof ct - 1 || memcmp(p, ct, sizeof ct - 1) ||
          (size_t)(eol - p) - (sizeof ct - 1) >= sizeof f[i].got_type)
        return "no Content-Type for a file";
      memcpy(f[i].got_type, p + sizeof ct - 1, (size_t)(eol - p) - (sizeof ct - 1));
      f[i].got_type[(eol - p) - (sizeof ct - 1)] = '\0';
    } else if (q != eol) {
      return "text after the name";
    }
    if (end - eol < 4 || memcmp(eol, "\r\n\r\n", 4)) return "more than the expected headers";
    content = eol + 4;
    next = find(content, end, delim, blen + 4);
    if (!next) return "part not closed by a delimiter";
    f[i].got_value.present = 1;
    f[i].got_value.s = content;
    f[i].got_value.len = (size_t)(next - content);
    p = next + 4 + blen;
  }
}

/* ---- build_command -------------------------------------------------------------------- */

static const char *scratch_dir(void) {
  const char *dir = getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

static void describe(char *out, size_t cap, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), s ? s : "(not a string)");
}

static void push_slot(const slot *s) {
  if (s->present) lua_pushlstring(L, s->s, s->len);
  else lua_pushnil(L);
}

static void check_build(const uint8_t **pp, const uint8_t *end, unsigned cmd, unsigned flags) {
  static const char *const commons[3] = {"channel", "replyUrl", "replyRef"};
  field f[MAXF];
  char name[32], m[600], msgs[MAXF][300], bnd[71];
  const char *err400 = NULL, *local = NULL;
  char local_buf[500], why[100];
  int nf = 0, nmsgs = 0, i, top, status, ncmd;
  slot def_channel, def_url, boundary;
  size_t bl = 0;
  memset(f, 0, sizeof f);

  /* the command, and its fields, from core.commands(): the form commands only (those that
   * take channel, replyUrl and replyRef), headshot's row among them */
  lua_getfield(L, 1, "commands");
  lua_call(L, 0, 1);
  ncmd = (int)lua_rawlen(L, -1);
  for (i = 0; i < ncmd; i++) {
    int common;
    lua_rawgeti(L, -1, (int)((cmd + (unsigned)i) % (unsigned)ncmd) + 1);
    lua_getfield(L, -1, "common");
    common = lua_toboolean(L, -1);
    lua_getfield(L, -2, "name");
    snprintf(name, sizeof name, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    if (common) break;
    lua_pop(L, 1);
  }
  CHECK(i < ncmd, "no form command in the table");
  lua_getfield(L, -1, "fields");
  for (i = 1; i <= (int)lua_rawlen(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "name");
    snprintf(f[nf].name, sizeof f[nf].name, "%s", lua_tostring(L, -1));
    lua_getfield(L, -2, "kind");
    f[nf].kind = !strcmp(lua_tostring(L, -1), "file") ? 2 : !strcmp(lua_tostring(L, -1), "prose");
    lua_getfield(L, -3, "required");
    f[nf].required = lua_toboolean(L, -1);
    lua_pop(L, 4);
    nf++;
  }
  lua_pop(L, 3);
  for (i = 0; i < 3; i++) {
    f[nf].kind = i == 2; /* replyRef is free text */
    snprintf(f[nf++].name, sizeof f[0].name, "%s", commons[i]);
  }

  for (i = 0; i < nf; i++) {
    f[i].value = next_slot(pp, end);
    if (f[i].kind == 2 && f[i].value.present) {
      f[i].filename = next_slot(pp, end);
      f[i].ctype = next_slot(pp, end);
      if (!f[i].filename.present) f[i].filename.present = 1; /* filename is required */
    }
  }
  def_channel = next_slot(pp, end);
  def_url = next_slot(pp, end);
  boundary = next_slot(pp, end);
  if (!(flags & 1)) def_channel.present = 0;
  if (!(flags & 2)) def_url.present = 0;
  if (!(flags & 4)) boundary.present = 0;
  for (i = 0; i < nf; i++)
    if (f[i].kind == 2 && !(flags & 8)) f[i].ctype.present = 0;
  /* flag 16: the files are given by path (written to a scratch file first): read from disk
   * straight into the body, named by the path's last component, typed by their bytes */
  for (i = 0; i < nf; i++) {
    FILE *out;
    if (f[i].kind != 2 || !f[i].value.present || !(flags & 16)) continue;
    snprintf(f[i].path, sizeof f[i].path, "%s/command_fuzz.%d.%d.bin", scratch_dir(),
             (int)getpid(), i);
    out = fopen(f[i].path, "wb");
    CHECK(out && fwrite(f[i].value.s, 1, f[i].value.len, out) == f[i].value.len &&
          fclose(out) == 0, "cannot write a scratch file");
    f[i].filename.s = strrchr(f[i].path, '/') + 1;
    f[i].filename.len = strlen(f[i].filename.s);
    f[i].ctype.present = 0;
  }

  for (i = 0; i < nf; i++)
    f[i].in_table = f[i].value.present;
  /* what the core must do: misuse of a text param first (any of the bad ones may be named:
   * the table is walked in hash order), the defaults, the 400s in the server's order, then
   * each file in order: its content_type (misuse), empty data, an unknown type */
  for (i = 0; i < nf; i++) {
    if (!f[i].value.present || f[i].kind == 2) continue;
    text_problem(&f[i].value, name, f[i].name, f[i].kind == 1, msgs[nmsgs], sizeof msgs[0]);
    if (msgs[nmsgs][0]) nmsgs++;
  }
  if (!nmsgs && !f[nf - 3].value.present && def_channel.present) {
    f[nf - 3].value = def_channel;
    text_problem(&def_channel, name, "channel", 0, msgs[nmsgs], sizeof msgs[0]);
    if (msgs[nmsgs][0]) nmsgs++;
  }
  if (!nmsgs && !f[nf - 2].value.present && def_url.present) {
    f[nf - 2].value = def_url;
    text_problem(&def_url, name, "replyUrl", 0, msgs[nmsgs], sizeof msgs[0]);
    if (msgs[nmsgs][0]) nmsgs++;
  }
  for (i = 0; !nmsgs && !err400 && i < nf - 3; i++)
    if (f[i].required && (!f[i].value.present || (f[i].kind != 2 && f[i].value.len == 0))) {
      static char text[100];
      snprintf(text, sizeof text, "Required param %s is missing or empty", f[i].name);
      err400 = text;
    }
  if (!nmsgs && !err400 && f[nf - 1].value.present &&
      utf8_chars(f[nf - 1].value.s, f[nf - 1].value.len) > 1024)
    err400 = "Optional param replyRef is too long";
  if (!nmsgs && !err400 && f[nf - 2].value.present &&
      utf8_chars(f[nf - 2].value.s, f[nf - 2].value.len) > 1024)
    err400 = "Optional param replyUrl is too long";
  for (i = 0; i < nf; i++) {
    size_t k, n = 0;
    if (f[i].kind != 2 || !f[i].value.present) continue;
    for (k = 0; k < f[i].filename.len && n < sizeof f[i].want_name - 1; k++) {
      unsigned char c = (unsigned char)f[i].filename.s[k];
      f[i].want_name[n++] = c < 0x20 || c == 0x7F || c == '"' || c == '\\' ? '_' : (char)c;
    }
    f[i].want_name[n] = '\0';
    if (f[i].filename.len == 0) snprintf(f[i].want_name, sizeof f[i].want_name, "%s", f[i].name);
    f[i].want_type = f[i].ctype.present ? NULL : sniffed(&f[i].value, why, sizeof why);
    if (nmsgs || err400 || local) continue;
    if (f[i].ctype.present) {
      text_problem(&f[i].ctype, name, "content_type", 0, msgs[nmsgs], sizeof msgs[0]);
      if (!msgs[nmsgs][0] && f[i].ctype.len == 0)
        snprintf(msgs[nmsgs], sizeof msgs[0], "bad argument #1 to '%s' (%s.content_type is empty)",
                 name, f[i].name);
      if (msgs[nmsgs][0]) {
        nmsgs++;
        continue;
      }
    }
    if (f[i].value.len == 0) {
      snprintf(local_buf, sizeof local_buf, "%s: %s is empty", f[i].name, f[i].want_name);
      local = local_buf;
    } else if (!f[i].ctype.present && !f[i].want_type) {
      snprintf(local_buf, sizeof local_buf, "%s: %s is %s%snot a PNG, JPEG, GIF, WebP or MP4 "
               "file", f[i].name, f[i].want_name, why, why[0] ? ", " : "");
      local = local_buf;
    }
  }
  if (boundary.present) {
    static const char alpha[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'+_-.";
    bl = boundary.len < 70 ? boundary.len : 70;
    for (i = 0; (size_t)i < bl; i++) bnd[i] = alpha[(unsigned char)boundary.s[i] % (sizeof alpha - 1)];
    bnd[bl] = '\0';
  }

  /* the call */
  top = lua_gettop(L);
  lua_getfield(L, 1, "build_command");
  lua_pushstring(L, name);
  lua_createtable(L, 0, nf);
  for (i = 0; i < nf; i++) {
    if (!f[i].in_table)
      continue;
    if (f[i].kind == 2 && f[i].path[0]) {
      lua_pushstring(L, f[i].path);
    } else if (f[i].kind == 2) {
      lua_createtable(L, 0, 3);
      push_slot(&f[i].value);
      lua_setfield(L, -2, "data");
      lua_pushlstring(L, f[i].filename.s, f[i].filename.len);
      lua_setfield(L, -2, "filename");
      push_slot(&f[i].ctype);
      lua_setfield(L, -2, "content_type");
    } else {
      push_slot(&f[i].value);
    }
    lua_setfield(L, -2, f[i].name);
  }
  push_slot(&def_channel);
  push_slot(&def_url);
  if (bl) lua_pushlstring(L, bnd, bl); else lua_pushnil(L);
  status = lua_pcall(L, 5, LUA_MULTRET, 0);
  if (nmsgs) {
    int ok = 0;
    describe(m, sizeof m, -1);
    CHECK(status == LUA_ERRRUN, "expected a raise");
    for (i = 0; i < nmsgs; i++) ok |= !strcmp(m, msgs[i]);
    if (!ok) {
      char d[900];
      snprintf(d, sizeof d, "raised '%s', expected e.g. '%s'", m, msgs[0]);
      fail("misuse message", d);
    }
  } else if (status != LUA_OK) {
    describe(m, sizeof m, -1);
    fail("build_command raised on valid params", m);
  } else if (err400 || local) {
    CHECK(lua_gettop(L) - top == 2 && lua_isnil(L, top + 1), "expected nil, err");
    lua_getfield(L, top + 2, "error");
    describe(m, sizeof m, -1);
    if (strcmp(m, err400 ? err400 : local) != 0) {
      char d[900];
      snprintf(d, sizeof d, "got '%s', expected '%s'", m, err400 ? err400 : local);
      fail("error text", d);
    }
    lua_getfield(L, top + 2, "code");
    CHECK(err400 ? lua_tointeger(L, -1) == 400 : lua_isnil(L, -1), "code");
  } else {
    size_t ctlen, blen;
    const char *ct, *body, *why;
    char b[71];
    CHECK(lua_gettop(L) - top == 5, "expected method, path, content type, body, channel");
    if (lua_type(L, top + 4) == LUA_TUSERDATA) {
      /* a body whose file stays on disk: read back whole (body:read()), then let go of */
      lua_getfield(L, top + 4, "read");
      lua_pushvalue(L, top + 4);
      if (lua_pcall(L, 1, 2, 0) != LUA_OK || lua_type(L, -2) != LUA_TSTRING) {
        describe(m, sizeof m, lua_isnil(L, -2) ? -1 : -2);
        fail("body:read() failed", m);
      }
      lua_pop(L, 1);
      lua_getfield(L, top + 4, "close");
      lua_pushvalue(L, top + 4);
      CHECK(lua_pcall(L, 1, 0, 0) == LUA_OK, "body:close() raised");
      lua_replace(L, top + 4);
    }
    ct = lua_tolstring(L, top + 3, &ctlen);
    body = lua_tolstring(L, top + 4, &blen);
    CHECK(ct && body && ctlen > 30 && !memcmp(ct, "multipart/form-data; boundary=", 30), "content type");
    CHECK(ctlen - 30 <= 70, "boundary too long");
    memcpy(b, ct + 30, ctlen - 30);
    b[ctlen - 30] = '\0';
    for (i = 0; i < nf; i++) {
      CHECK(!f[i].value.present || !contains(f[i].value.s, f[i].value.len, b, ctlen - 30),
            "the boundary occurs inside a part");
      CHECK(!contains(f[i].want_name, strlen(f[i].want_name), b, ctlen - 30),
            "the boundary occurs inside a filename");
    }
    why = read_multipart(body, blen, b, ctlen - 30, f, nf);
    if (why) fail("strict multipart reader refused the body", why);
    for (i = 0; i < nf; i++) {
      CHECK(f[i].got == f[i].value.present, f[i].name);
      if (!f[i].got) continue;
      CHECK(f[i].got_value.len == f[i].value.len &&
            !memcmp(f[i].got_value.s, f[i].value.s, f[i].value.len), "a field read back differently");
      if (f[i].kind == 2) {
        CHECK(!strcmp(f[i].got_filename, f[i].want_name), "filename");
        if (f[i].ctype.present)
          CHECK(strlen(f[i].got_type) == f[i].ctype.len &&
                !memcmp(f[i].got_type, f[i].ctype.s, f[i].ctype.len), "given content type");
        else
          CHECK(!strcmp(f[i].got_type, f[i].want_type), "sniffed content type");
      }
    }
    if (f[nf - 3].value.present) {
      size_t cl;
      const char *c = lua_tolstring(L, top + 5, &cl);
      CHECK(c && cl == f[nf - 3].value.len && !memcmp(c, f[nf - 3].value.s, cl), "channel");
    } else {
      CHECK(lua_isnil(L, top + 5), "no channel");
    }
  }
  lua_settop(L, top);
  for (i = 0; i < nf; i++)
    if (f[i].path[0]) remove(f[i].path);
}

/* ---- read_response -------------------------------------------------------------------- */

static void check_read(const char *body, size_t len, unsigned flags) {
  static const int statuses[] = {200, 204, 400, 401, 402, 404, 429, 500, 502, 301};
  int i, ncmd, top = lua_gettop(L);
  lua_getfield(L, 1, "commands");
  lua_call(L, 0, 1);
  ncmd = (int)lua_rawlen(L, -1);
  for (i = 1; i <= ncmd; i++) {
    const char *answer;
    int status = statuses[(flags >> 4) % 10], n;
    lua_rawgeti(L, top + 1, i);
    lua_getfield(L, -1, "answer");
    answer = lua_tostring(L, -1);
    lua_getfield(L, 1, "read_response");
    lua_getfield(L, -3, "name");
    lua_pushinteger(L, status);
    lua_pushliteral(L, "");
    lua_pushlstring(L, body, len);
    CHECK(lua_pcall(L, 4, LUA_MULTRET, 0) == LUA_OK, "read_response raised");
    n = lua_gettop(L) - (top + 3);
    if (lua_isnil(L, top + 4)) {
      lua_getfield(L, 1, "type");
      lua_pushvalue(L, top + 5);
      lua_call(L, 1, 1);
      CHECK(n == 2 && lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "error"),
            "nil without an error object");
    } else {
      CHECK(n == 1 && status >= 200 && status < 300, "a value for a non-2xx answer");
      if (!strcmp(answer, "job")) {
        CHECK(lua_type(L, top + 4) == LUA_TUSERDATA, "a job");
      } else if (!strcmp(answer, "none")) {
        CHECK(lua_type(L, top + 4) == LUA_TBOOLEAN && lua_toboolean(L, top + 4), "true");
      } else if (!strcmp(answer, "jobids")) {
        size_t k, count = 0;
        CHECK(lua_istable(L, top + 4), "jobids table");
        for (k = 1; k <= (size_t)lua_rawlen(L, top + 4); k++) {
          lua_rawgeti(L, top + 4, (int)k);
          CHECK(lua_type(L, -1) == LUA_TSTRING, "a jobid string");
          lua_pop(L, 1);
        }
        lua_pushnil(L);
        while (lua_next(L, top + 4)) { count++; lua_pop(L, 1); }
        CHECK(count == (size_t)lua_rawlen(L, top + 4), "jobids has keys beyond the array");
      } else {
        CHECK(lua_istable(L, top + 4), "an account table");
      }
    }
    lua_settop(L, top + 1);
  }
  lua_settop(L, top);
}

/* ---- libFuzzer entry points ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  open_state();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p = data, *end = data + size;
  unsigned cmd, flags;
  if (size < 2) return 0;
  cmd = *p++;
  flags = *p++;
  seed_boundaries("build_command", cmd);
  check_build(&p, end, cmd, flags);
  check_read((const char *)p, (size_t)(end - p), flags);
  CHECK(lua_gettop(L) == 1, "the harness left values on the stack");
  end_run();
  return 0;
}
