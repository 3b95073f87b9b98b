/* request_fuzz.c: libFuzzer harness for request building (core.build_headshot, core.build_get:
 * the headshot, job and cancel rows of the command table, csrc/command.c, as the client calls
 * them).
 *
 * The fuzz input becomes params: prompt, channel, replyUrl, replyRef, options, the client's
 * default channel and replyUrl, an explicit boundary and a jobid; each arbitrary bytes, present
 * or missing, sometimes repeated past the 1024-character limits. The harness computes on its
 * own what the core must do (raise naming the bad param, return the server's 400, or build),
 * builds with both encodings and reads the body back with its OWN strict parsers: a
 * multipart/form-data reader (RFC 2046/7578: boundary from the Content-Type, first delimiter
 * ends a part, no preamble or epilogue, one Content-Disposition per part) and a strict JSON
 * reader; every field must come back byte-exactly. The JSON body is also decoded with the
 * core's own reader as a cross-check. build_get's path is percent-decoded back to the jobid.
 * Any mismatch abort()s with a description.
 *
 * Input layout:  flags  wrong/unknown  then per slot: head [len bytes...]
 *   head: (head & 0xC0) == 0xC0 -> slot absent, no more bytes for it; otherwise len is the
 *   next byte, content the len bytes after it, repeated reps(head & 0x3F) times (1, 2..17,
 *   or 1020..1027: a one-character content then straddles the 1024-character limit).
 * Built by spec/fuzz/run.sh, which compiles the core's csrc/ sources into the binary. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_faceswap_core(lua_State *L);
int core_json_decode(lua_State *L, const char *s, size_t len);

#define FUZZ_NAME "request_fuzz"
#include "harness.h"

static int verbose; /* FUZZ_VERBOSE=1: one line per build, to see what seeds reach */

/* ---- input ---------------------------------------------------------------------------- */

enum { S_PROMPT, S_CHANNEL, S_REPLY_URL, S_REPLY_REF, S_OPTIONS, /* the table's params */
       S_DEF_CHANNEL, S_DEF_REPLY_URL, S_BOUNDARY, S_JOBID, S_COUNT };
static const char *const names[5] = {"prompt", "channel", "replyUrl", "replyRef", "options"};

#define SLOT_MAX 9000 /* past 1024 four-byte characters */
typedef struct { int present; size_t len; char *s; } slot;
static char slot_mem[S_COUNT][SLOT_MAX];

static size_t reps(unsigned r) { /* mostly 1, some 2..17, some 1020..1027 */
  return r < 40 ? 1 : r < 56 ? r - 38 : 1020 + (r - 56);
}

static void read_slots(const uint8_t **pp, const uint8_t *end, slot *sl) {
  const uint8_t *p = *pp;
  int i;
  for (i = 0; i < S_COUNT; i++) {
    unsigned head, len;
    size_t n, r, total = 0;
    sl[i].present = 0;
    sl[i].len = 0;
    sl[i].s = slot_mem[i];
    if (p >= end)
      continue;
    head = *p++;
    if ((head & 0xC0) == 0xC0)
      continue;
    len = p < end ? *p++ : 0;
    if (len > (size_t)(end - p))
      len = (unsigned)(end - p);
    n = reps(head & 0x3F);
    for (r = 0; r < n && total + len <= SLOT_MAX; r++) {
      memcpy(slot_mem[i] + total, p, len);
      total += len;
    }
    p += len;
    sl[i].present = 1;
    sl[i].len = total;
  }
  *pp = p;
}

/* ---- the harness's own text rules (RFC 3629 table, not the core's code) --------------- */

/* ---- a strict JSON reader for a flat object of strings -------------------------------- */

typedef struct { const char *p, *end; } jr;

NOCOV static void j_ws(jr *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

NOCOV static int j_hex(const char *s, unsigned *v) {
  int i;
  *v = 0;
  for (i = 0; i < 4; i++) {
    char c = s[i];
    *v <<= 4;
    if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  return 1;
}

NOCOV static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63));
    o[2] = (char)(0x80 | (cp & 63));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
  o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
  return 4;
}

/* Reads a JSON string at r->p (on its quote) into out (cap bytes); returns its length or -1. */
NOCOV static long j_string(jr *r, char *out, size_t cap) {
  size_t n = 0;
  if (r->p >= r->end || *r->p != '"') return -1;
  r->p++;
  for (;;) {
    unsigned char c;
    char tmp[4];
    size_t k;
    if (r->p >= r->end) return -1;
    c = (unsigned char)*r->p;
    if (c == '"') { r->p++; break; }
    if (c < 0x20) return -1;
    if (c != '\\') {
      if (n == cap) return -1;
      out[n++] = (char)c;
      r->p++;
      continue;
    }
    if (r->end - r->p < 2) return -1;
    switch (r->p[1]) {
    case '"': tmp[0] = '"'; k = 1; break;
    case '\\': tmp[0] = '\\'; k = 1; break;
    case '/': tmp[0] = '/'; k = 1; break;
    case 'b': tmp[0] = '\b'; k = 1; break;
    case 'f': tmp[0] = '\f'; k = 1; break;
    case 'n': tmp[0] = '\n'; k = 1; break;
    case 'r': tmp[0] = '\r'; k = 1; break;
    case 't': tmp[0] = '\t'; k = 1; break;
    case 'u': {
      unsigned cp, lo;
      if (r->end - r->p < 6 || !j_hex(r->p + 2, &cp)) return -1;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r->end - r->p < 12 || r->p[6] != '\\' || r->p[7] != 'u' || !j_hex(r->p + 8, &lo) ||
            lo < 0xDC00 || lo > 0xDFFF)
          return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        r->p += 6;
      }
      k = put_utf8(tmp, cp);
      r->p += 4;
      break;
    }
    default: return -1;
    }
    r->p += 2;
    if (cap - n < k) return -1;
    memcpy(out + n, tmp, k);
    n += k;
  }
  /* raw bytes must be UTF-8 (escapes produce valid UTF-8, so checking the result is enough) */
  if (utf8_chars(out, n) < 0) return -1;
  return (long)n;
}

/* Reads body as {"name":"value",...}; fills got[] for the five names. Returns NULL or why not. */
static char jbuf[5][SLOT_MAX * 2];
NOCOV static const char *strict_json(const char *body, size_t len, slot *got) {
  jr r;
  char name[64];
  int i;
  r.p = body;
  r.end = body + len;
  for (i = 0; i < 5; i++) { got[i].present = 0; got[i].len = 0; got[i].s = jbuf[i]; }
  j_ws(&r);
  if (r.p >= r.end || *r.p != '{') return "not an object";
  r.p++;
  j_ws(&r);
  if (r.p < r.end && *r.p == '}') {
    r.p++;
  } else {
    for (;;) {
      long nl, vl;
      j_ws(&r);
      nl = j_string(&r, name, sizeof name);
      if (nl < 0) return "bad member name";
      for (i = 0; i < 5; i++)
        if ((size_t)nl == strlen(names[i]) && memcmp(name, names[i], (size_t)nl) == 0) break;
      if (i == 5) return "unknown member";
      if (got[i].present) return "duplicate member";
      j_ws(&r);
      if (r.p >= r.end || *r.p != ':') return "expected ':'";
      r.p++;
      j_ws(&r);
      vl = j_string(&r, jbuf[i], sizeof jbuf[i]);
      if (vl < 0) return "bad string value";
      got[i].present = 1;
      got[i].len = (size_t)vl;
      j_ws(&r);
      if (r.p < r.end && *r.p == ',') { r.p++; continue; }
      if (r.p < r.end && *r.p == '}') { r.p++; break; }
      return "expected ',' or '}'";
    }
  }
  j_ws(&r);
  return r.p == r.end ? NULL : "text after the object";
}

/* ---- a strict multipart/form-data reader ---------------------------------------------- */

static int is_bchar(unsigned char c) { /* RFC 2046 bcharsnospace */
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("'()+_,-./:=?", c));
}
static int is_token(unsigned char c) { /* RFC 2045 token: no tspecials, space or controls */
  return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?=", c);
}

NOCOV static int ieq(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
    if (x != y) return 0;
  }
  return 1;
}

/* Boundary from a Content-Type: multipart/form-data; boundary=token|quoted-string. */
NOCOV static const char *boundary_of(const char *ct, size_t len, char *b, size_t *blen) {
  static const char type[] = "multipart/form-data";
  const char *p = ct, *end = ct + len;
  size_t n = 0;
  if (len < sizeof type - 1 || !ieq(p, type, sizeof type - 1)) return "not multipart/form-data";
  p += sizeof type - 1;
  while (p < end && *p == ' ') p++;
  if (p >= end || *p != ';') return "no parameters";
  p++;
  while (p < end && *p == ' ') p++;
  if (end - p < 9 || !ieq(p, "boundary=", 9)) return "no boundary parameter";
  p += 9;
  if (p < end && *p == '"') {
    for (p++; p < end && *p != '"'; p++) {
      if (*p == '\\') { if (++p >= end) return "bad quoted-pair"; }
      if (n == 70) return "boundary too long";
      b[n++] = *p;
    }
    if (p >= end) return "unterminated quoted boundary";
    p++;
  } else {
    for (; p < end && is_token((unsigned char)*p); p++) {
      if (n == 70) return "boundary too long";
      b[n++] = *p;
    }
  }
  if (p != end) return "text after the boundary parameter";
  if (n == 0) return "empty boundary";
  for (size_t i = 0; i < n; i++)
    if (!is_bchar((unsigned char)b[i]) && !(b[i] == ' ' && i + 1 < n)) return "not a bchar";
  *blen = n;
  return NULL;
}

NOCOV static const char *find(const char *h, const char *hend, const char *n, size_t nlen) {
  for (; (size_t)(hend - h) >= nlen; h++)
    if (*h == *n && memcmp(h, n, nlen) == 0) return h;
  return NULL;
}

NOCOV static const char *strict_multipart(const char *body, size_t len, const char *b, size_t blen,
                                    slot *got) {
  const char *p = body, *end = body + len, *why;
  char delim[80]; /* CRLF -- boundary */
  int i;
  for (i = 0; i < 5; i++) { got[i].present = 0; got[i].len = 0; got[i].s = NULL; }
  if ((why = multipart_open(&p, end, b, blen, delim)) != NULL)
    return why;
  for (;;) {
    const char *hdr_end, *content, *next, *line, *v, *ve;
    char name[64];
    size_t nlen = 0;
    int seen_cd = 0;
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') { /* close-delimiter */
      p += 2;
      if (end - p != 2 || p[0] != '\r' || p[1] != '\n')
        return "close-delimiter not followed by CRLF and the end";
      return NULL;
    }
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
      return "delimiter not followed by CRLF";
    p += 2;
    /* part headers, up to the empty line */
    hdr_end = find(p, end, "\r\n\r\n", 4);
    if (!hdr_end) return "part headers not terminated";
    for (line = p; line < hdr_end + 2;) {
      const char *eol = find(line, hdr_end + 2, "\r\n", 2);
      if (memchr(line, '\n', (size_t)(eol - line)) || memchr(line, '\r', (size_t)(eol - line)))
        return "bare CR or LF in a part header";
      if (eol - line < 20 || !ieq(line, "content-disposition:", 20))
        return "part header other than Content-Disposition";
      if (seen_cd++) return "two Content-Disposition headers";
      v = line + 20;
      while (v < eol && *v == ' ') v++;
      if (eol - v < 9 || !ieq(v, "form-data", 9)) return "disposition is not form-data";
      v += 9;
      while (v < eol && *v == ' ') v++;
      if (v >= eol || *v != ';') return "no name parameter";
      v++;
      while (v < eol && *v == ' ') v++;
      if (eol - v < 6 || !ieq(v, "name=\"", 6)) return "no name parameter";
      v += 6;
      for (ve = v; ve < eol && *ve != '"'; ve++) {
        if (*ve == '\\') return "escape in a field name";
        if (nlen == sizeof name) return "field name too long";
        name[nlen++] = *ve;
      }
      if (ve >= eol) return "unterminated field name";
      if (ve + 1 != eol) return "text after the name parameter";
      line = eol + 2;
    }
    if (!seen_cd) return "part without Content-Disposition";
    for (i = 0; i < 5; i++)
      if (nlen == strlen(names[i]) && memcmp(name, names[i], nlen) == 0) break;
    if (i == 5) return "unknown field name";
    if (got[i].present) return "duplicate field";
    content = hdr_end + 4;
    /* the content ends at the first delimiter, whatever the builder meant */
    next = find(content, end, delim, 4 + blen);
    if (!next) return "part not closed by a delimiter";
    got[i].present = 1;
    got[i].s = (char *)content;
    got[i].len = (size_t)(next - content);
    p = next + 4 + blen;
  }
}

/* ---- Lua helpers ---------------------------------------------------------------------- */

static void push_slot(const slot *s) {
  if (s->present) lua_pushlstring(L, s->s, s->len);
  else lua_pushnil(L);
}

static void describe_stack_string(char *out, size_t cap, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) snprintf(out, cap, "%s", lua_tostring(L, idx));
  else snprintf(out, cap, "(a %s)", luaL_typename(L, idx));
}

NOCOV static int same(const slot *a, const slot *b) {
  return a->present == b->present && (!a->present ||
         (a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0)));
}

/* ---- build_headshot ------------------------------------------------------------------- */

#define MAXMSG 8
typedef struct {
  char msgs[MAXMSG][200]; int nmsgs;   /* raise: any of these messages */
  const char *err400;                  /* else: the server's 400 */
  slot eff[5];                         /* else: the params the body must carry */
} expectation;

static void add_msg(expectation *e, const char *m) {
  if (m[0] && e->nmsgs < MAXMSG) snprintf(e->msgs[e->nmsgs++], sizeof e->msgs[0], "%s", m);
}

static void check_headshot(const slot *sl, unsigned flags, unsigned extra) {
  static const char *const encodings[2] = {"multipart", "json"};
  int table = flags & 1, pass_ch = flags & 2, pass_url = flags & 4, pass_b = flags & 8;
  int wrong = (int)(extra & 7);            /* 0..4: that param is a number */
  int unknown = (int)((extra >> 3) & 3);   /* 1: "promt", 2: [1], 3: [true] */
  expectation e;
  char m[200];
  char bnd[80];
  size_t bndlen = 0;
  int enc, i;
  memset(&e, 0, sizeof e);
  if (!table) { wrong = 5; unknown = 0; }

  /* what the core must do, worked out here */
  if (table) {
    for (i = 0; i < 5; i++) {
      if (wrong == i) {
        snprintf(m, sizeof m, "bad argument #1 to 'headshot' (%s must be a string, got number)",
                 names[i]);
        add_msg(&e, m);
      } else if (sl[i].present) {
        text_problem(&sl[i], "headshot", names[i], i == S_PROMPT || i == S_REPLY_REF, m, sizeof m);
        add_msg(&e, m);
      }
    }
    if (unknown)
      add_msg(&e, unknown == 1 ? "bad argument #1 to 'headshot' (unknown param 'promt')" :
                  unknown == 2 ? "bad argument #1 to 'headshot' (unknown param 'number')" :
                                 "bad argument #1 to 'headshot' (unknown param 'boolean')");
    for (i = 0; i < 5; i++) e.eff[i] = sl[i];
  } else if (!sl[S_PROMPT].present) {
    add_msg(&e, "bad argument #1 to 'headshot' (string or table expected, got nil)");
  } else {
    text_problem(&sl[S_PROMPT], "headshot", "prompt", 1, m, sizeof m);
    add_msg(&e, m);
    e.eff[0] = sl[S_PROMPT];
    for (i = 1; i < 5; i++) e.eff[i].present = 0;
  }
  if (!e.nmsgs && !e.eff[1].present && pass_ch && sl[S_DEF_CHANNEL].present) {
    e.eff[1] = sl[S_DEF_CHANNEL];
    text_problem(&e.eff[1], "headshot", "channel", 0, m, sizeof m);
    add_msg(&e, m);
  }
  if (!e.nmsgs && !e.eff[2].present && pass_url && sl[S_DEF_REPLY_URL].present) {
    e.eff[2] = sl[S_DEF_REPLY_URL];
    text_problem(&e.eff[2], "headshot", "replyUrl", 0, m, sizeof m);
    add_msg(&e, m);
  }
  if (!e.nmsgs) {
    if (!e.eff[0].present || e.eff[0].len == 0)
      e.err400 = "Required param prompt is missing or empty";
    else if (e.eff[3].present && utf8_chars(e.eff[3].s, e.eff[3].len) > 1024)
      e.err400 = "Optional param replyRef is too long";
    else if (e.eff[2].present && utf8_chars(e.eff[2].s, e.eff[2].len) > 1024)
      e.err400 = "Optional param replyUrl is too long";
  }
  if (pass_b && sl[S_BOUNDARY].present) { /* spec hook: token characters only */
    static const char alpha[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'+_-.";
    bndlen = sl[S_BOUNDARY].len < sizeof bnd - 1 ? sl[S_BOUNDARY].len : sizeof bnd - 1;
    for (i = 0; (size_t)i < bndlen; i++)
      bnd[i] = alpha[(unsigned char)sl[S_BOUNDARY].s[i] % (sizeof alpha - 1)];
    bnd[bndlen] = '\0';
  }

  for (enc = 0; enc < 2; enc++) {
    int status, top;
    lua_getfield(L, 1, "build_headshot");
    if (table) {
      lua_createtable(L, 0, 6);
      for (i = 0; i < 5; i++) {
        if (wrong == i) lua_pushinteger(L, 42);
        else push_slot(&sl[i]);
        lua_setfield(L, -2, names[i]);
      }
      if (unknown == 1) { lua_pushliteral(L, "x"); lua_setfield(L, -2, "promt"); }
      if (unknown == 2) { lua_pushliteral(L, "x"); lua_rawseti(L, -2, 1); }
      if (unknown == 3) { lua_pushboolean(L, 1); lua_pushliteral(L, "x"); lua_rawset(L, -3); }
    } else {
      push_slot(&sl[S_PROMPT]);
    }
    lua_pushstring(L, encodings[enc]);
    if (pass_ch) push_slot(&sl[S_DEF_CHANNEL]); else lua_pushnil(L);
    if (pass_url) push_slot(&sl[S_DEF_REPLY_URL]); else lua_pushnil(L);
    if (bndlen) lua_pushlstring(L, bnd, bndlen); else lua_pushnil(L);
    top = lua_gettop(L) - 6;
    status = lua_pcall(L, 5, LUA_MULTRET, 0);
    if (verbose)
      fprintf(stderr, "headshot %s: %s\n", encodings[enc],
              e.nmsgs ? e.msgs[0] : e.err400 ? e.err400 : "built");
    if (e.nmsgs) {
      int ok = 0;
      describe_stack_string(m, sizeof m, -1);
      CHECK(status == LUA_ERRRUN, "expected a raise");
      for (i = 0; i < e.nmsgs; i++) ok |= strcmp(m, e.msgs[i]) == 0;
      if (!ok) {
        char d[600];
        snprintf(d, sizeof d, "raised '%s', expected e.g. '%s'", m, e.msgs[0]);
        fail("misuse message", d);
      }
      lua_settop(L, top);
      continue;
    }
    if (status != LUA_OK) {
      describe_stack_string(m, sizeof m, -1);
      fail("build_headshot raised on valid params", m);
    }
    if (e.err400) {
      CHECK(lua_gettop(L) - top == 2 && lua_isnil(L, top + 1), "expected nil, err");
      lua_getfield(L, top + 2, "kind");
      lua_getfield(L, top + 2, "code");
      lua_getfield(L, top + 2, "error");
      lua_getfield(L, top + 2, "sent");
      lua_getfield(L, top + 2, "retryable");
      CHECK(lua_type(L, -5) == LUA_TSTRING && strcmp(lua_tostring(L, -5), "invalid_request") == 0,
            e.err400);
      CHECK(lua_isinteger(L, -4) && lua_tointeger(L, -4) == 400, e.err400);
      describe_stack_string(m, sizeof m, -3);
      CHECK(strcmp(m, e.err400) == 0, m);
      CHECK(lua_isboolean(L, -2) && !lua_toboolean(L, -2), "400 must be sent = false");
      CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1), "400 must be retryable = false");
      lua_settop(L, top);
      continue;
    }
    CHECK(lua_gettop(L) - top == 4, "expected method, path, content type, body");
    describe_stack_string(m, sizeof m, top + 2);
    CHECK(lua_type(L, top + 1) == LUA_TSTRING && strcmp(lua_tostring(L, top + 1), "POST") == 0,
          "method");
    CHECK(strcmp(m, "/headshot") == 0, m);
    CHECK(lua_type(L, top + 3) == LUA_TSTRING && lua_type(L, top + 4) == LUA_TSTRING,
          "content type and body must be strings");
    {
      size_t ctlen, blen;
      const char *ct = lua_tolstring(L, top + 3, &ctlen);
      const char *body = lua_tolstring(L, top + 4, &blen);
      slot got[5];
      const char *why;
      if (enc == 1) {
        CHECK(strcmp(ct, "application/json") == 0, ct);
        why = strict_json(body, blen, got);
        if (why) fail("strict JSON reader refused the body", why);
        /* and the core's own reader agrees */
        CHECK(core_json_decode(L, body, blen) && lua_istable(L, -1), "core JSON reader refused");
        for (i = 0; i < 5; i++) {
          slot c;
          lua_getfield(L, -1, names[i]);
          c.present = lua_type(L, -1) == LUA_TSTRING;
          c.s = c.present ? (char *)lua_tolstring(L, -1, &c.len) : NULL;
          if (!c.present) c.len = 0;
          CHECK(lua_isnil(L, -1) || c.present, names[i]);
          CHECK(same(&c, &e.eff[i]), "core JSON reader read a field back differently");
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      } else {
        char b[71];
        size_t bl = 0;
        why = boundary_of(ct, ctlen, b, &bl);
        if (why) fail("strict Content-Type reader refused the boundary", why);
        for (i = 0; i < 5; i++)
          CHECK(!e.eff[i].present || !contains(e.eff[i].s, e.eff[i].len, b, bl),
                "the boundary occurs inside a part");
        {
          int collides = 0;
          for (i = 0; i < 5; i++)
            collides |= e.eff[i].present && contains(e.eff[i].s, e.eff[i].len, bnd, bndlen);
          if (bndlen && bndlen <= 70 && !collides)
            CHECK(bl == bndlen && memcmp(b, bnd, bl) == 0, "the given boundary was not used");
          else {
            CHECK(bl == 33 && memcmp(b, "faceswap-", 9) == 0, "random boundary shape");
            for (i = 9; i < 33; i++)
              CHECK((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'A' && b[i] <= 'Z') ||
                    (b[i] >= 'a' && b[i] <= 'z'), "random boundary alphabet");
          }
        }
        why = strict_multipart(body, blen, b, bl, got);
        if (why) fail("strict multipart reader refused the body", why);
      }
      for (i = 0; i < 5; i++) {
        if (!same(&got[i], &e.eff[i])) {
          char d[200];
          snprintf(d, sizeof d, "%s: field %s read back as %s%zu bytes, sent %s%zu bytes",
                   encodings[enc], names[i], got[i].present ? "" : "absent ", got[i].len,
                   e.eff[i].present ? "" : "absent ", e.eff[i].len);
          fail("a field did not read back byte-exactly", d);
        }
      }
    }
    lua_settop(L, top);
  }
}

/* ---- build_get ------------------------------------------------------------------------ */

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '~';
}

static void check_get(const slot *id, int cancel, int as_job) {
  const char *prefix = cancel ? "/jobs/cancel/?jobid=" : "/jobs/?jobid=";
  const char *what = cancel ? "cancel" : "job";
  char m[200], expect[200];
  int status, top = lua_gettop(L);
  expect[0] = '\0';
  if (!id->present)
    snprintf(expect, sizeof expect, "bad argument #1 to '%s' (jobid must be a string or a job, "
             "got nil)", what);
  else
    text_problem(id, what, "jobid", 0, expect, sizeof expect);
  lua_getfield(L, 1, "build_get");
  lua_pushstring(L, what);
  if (as_job && id->present && utf8_chars(id->s, id->len) >= 0) {
    /* the same jobid, inside a job made from JSON that spells every control byte \u00XX */
    luaL_Buffer b;
    size_t i;
    lua_getfield(L, 1, "decode");
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "{\"jobid\":\"");
    for (i = 0; i < id->len; i++) {
      unsigned char c = (unsigned char)id->s[i];
      if (c < 0x20 || c == '"' || c == '\\') {
        char esc[8];
        snprintf(esc, sizeof esc, "\\u%04x", c);
        luaL_addstring(&b, esc);
      } else {
        luaL_addchar(&b, (char)c);
      }
    }
    luaL_addstring(&b, "\"}");
    luaL_pushresult(&b);
    CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK && lua_type(L, -2) == LUA_TUSERDATA,
          "decode of {\"jobid\": ...} failed");
    lua_pop(L, 1);
  } else {
    push_slot(id);
  }
  status = lua_pcall(L, 2, LUA_MULTRET, 0);
  if (expect[0]) {
    describe_stack_string(m, sizeof m, -1);
    CHECK(status == LUA_ERRRUN, expect);
    if (strcmp(m, expect) != 0) {
      char d[500];
      snprintf(d, sizeof d, "raised '%s', expected '%s'", m, expect);
      fail("build_get misuse message", d);
    }
  } else if (id->len == 0) {
    CHECK(status == LUA_OK && lua_isnil(L, top + 1) && lua_istable(L, top + 2), "empty jobid");
    lua_getfield(L, top + 2, "error");
    describe_stack_string(m, sizeof m, -1);
    CHECK(strcmp(m, "Query param jobid not provided") == 0, m);
  } else {
    size_t plen, i, n = 0, pre = strlen(prefix);
    const char *path;
    CHECK(status == LUA_OK && lua_gettop(L) - top == 4, "build_get must return 4 values");
    CHECK(strcmp(lua_tostring(L, top + 1), "GET") == 0, "method");
    CHECK(lua_isnil(L, top + 3) && lua_isnil(L, top + 4), "a GET has no content type or body");
    path = lua_tolstring(L, top + 2, &plen);
    CHECK(path && plen >= pre && memcmp(path, prefix, pre) == 0, "path prefix");
    for (i = pre; i < plen; n++) { /* percent-decode, strictly */
      unsigned char c = (unsigned char)path[i];
      if (unreserved(c)) {
        CHECK(n < id->len && (unsigned char)id->s[n] == c, "raw byte differs from the jobid");
        i++;
      } else {
        unsigned v;
        char hx[5] = {'0', '0', 0, 0, 0};
        CHECK(c == '%' && plen - i >= 3, "a reserved byte left unencoded");
        hx[2] = path[i + 1];
        hx[3] = path[i + 2];
        CHECK(strchr("0123456789ABCDEF", hx[2]) && strchr("0123456789ABCDEF", hx[3]) &&
              hx[2] && hx[3] && j_hex(hx, &v), "bad percent-escape");
        CHECK(!unreserved((unsigned char)v), "an unreserved byte percent-encoded");
        CHECK(n < id->len && (unsigned char)id->s[n] == v, "decoded byte differs from the jobid");
        i += 3;
      }
    }
    CHECK(n == id->len, "decoded jobid length differs");
  }
  lua_settop(L, top);
}

/* ---- libFuzzer entry points ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  verbose = getenv("FUZZ_VERBOSE") != NULL;
  open_state();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p = data, *end = data + size;
  unsigned flags, extra;
  slot sl[S_COUNT];
  if (size < 2) return 0;
  flags = *p++;
  extra = *p++;
  read_slots(&p, end, sl);
  seed_boundaries("build_headshot", flags >> 4);
  check_headshot(sl, flags, extra);
  check_get(&sl[S_JOBID], (flags >> 6) & 1, (flags >> 7) & 1);
  CHECK(lua_gettop(L) == 1, "the harness left values on the stack");
  end_run();
  return 0;
}
