/* request.c: validating parameters and building requests, with no I/O. Each builder returns
 * method, path (relative to the client's base URL), content type and body, or nil and an error
 * object carrying the exact 400 the server would have sent. Misuse (wrong types, unknown
 * params, bytes that are not text) raises instead. */
#include <string.h>
#include <time.h>
#include "core.h"

/* ---- text checks ---------------------------------------------------------------------- */

/* Code points in s, or (size_t)-1 with *valid = 0 when s is not well-formed UTF-8
 * (overlong forms, surrogates and values past U+10FFFF are all malformed). */
size_t utf8_length(const char *str, size_t len, int *valid) {
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  size_t n = 0;
  *valid = 1;
  while (s < end) {
    unsigned c = *s;
    size_t extra;
    unsigned cp, min;
    if (c < 0x80) { s++; n++; continue; }
    else if ((c & 0xE0) == 0xC0) { extra = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { extra = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { extra = 3; cp = c & 0x07; min = 0x10000; }
    else break;
    if ((size_t)(end - s) <= extra)
      break;
    for (s++; extra > 0; extra--, s++) {
      if ((*s & 0xC0) != 0x80)
        goto malformed;
      cp = (cp << 6) | (*s & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      goto malformed;
    n++;
  }
  if (s == end)
    return n;
malformed:
  *valid = 0;
  return (size_t)-1;
}

/* Raises unless the string at idx is text: UTF-8 without control bytes, except that a prompt
 * or replyRef may hold tabs and line breaks (free text; a channel, URL or jobid never is). */
static const char *check_text(lua_State *L, int idx, const char *what, const char *name,
                              int multiline, size_t *len, size_t *chars) {
  size_t i;
  int valid;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "bad argument #1 to '%s' (%s must be a string, got %s)", what, name,
               luaL_typename(L, idx));
  s = lua_tolstring(L, idx, len);
  for (i = 0; i < *len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 || c == 0x7F) && !(multiline && (c == '\t' || c == '\r' || c == '\n'))) {
      static const char hex[] = "0123456789ABCDEF";
      char byte[3] = {hex[c >> 4], hex[c & 15], '\0'};
      luaL_error(L, "bad argument #1 to '%s' (%s contains control byte 0x%s)", what, name, byte);
    }
  }
  *chars = utf8_length(s, *len, &valid);
  if (!valid)
    luaL_error(L, "bad argument #1 to '%s' (%s is not valid UTF-8)", what, name);
  return s;
}

static int local_400(lua_State *L, const char *text) {
  error_info info = {"invalid_request", 400, 0, 0, -1};
  lua_pushnil(L);
  error_push(L, &info, text, 0, 0);
  return 2;
}

/* ---- the headshot body ---------------------------------------------------------------- */

enum { P_PROMPT, P_CHANNEL, P_REPLY_URL, P_REPLY_REF, P_OPTIONS, P_COUNT };
static const char *const param_names[P_COUNT] = {
  "prompt", "channel", "replyUrl", "replyRef", "options"
};

typedef struct {
  const char *s[P_COUNT];
  size_t len[P_COUNT];
} headshot_params;

/* The per-module random state for multipart boundaries: boundaries need to be unpredictable
 * enough not to collide with user text by accident, and are checked against it anyway. */
typedef struct { unsigned long long s; } boundary_rng;

static unsigned long long rng_next(boundary_rng *r) {
  /* xorshift64*: plenty for a boundary that is verified before use */
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ULL;
}

#define BOUNDARY_PREFIX "faceswap-"
#define BOUNDARY_RANDOM 24
#define BOUNDARY_MAX 70 /* RFC 2046 */

static int boundary_in_params(const headshot_params *p, const char *b, size_t blen) {
  int i;
  for (i = 0; i < P_COUNT; i++) {
    const char *s = p->s[i], *end;
    if (!s || p->len[i] < blen)
      continue;
    for (end = s + p->len[i] - blen; s <= end; s++)
      if (*s == *b && memcmp(s, b, blen) == 0)
        return 1;
  }
  return 0;
}

static size_t make_boundary(boundary_rng *rng, char *out) {
  static const char alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  size_t n = sizeof BOUNDARY_PREFIX - 1, i;
  unsigned long long bits = 0;
  memcpy(out, BOUNDARY_PREFIX, n);
  for (i = 0; i < BOUNDARY_RANDOM; i++) {
    if (i % 8 == 0)
      bits = rng_next(rng);
    out[n++] = alphabet[bits % 62];
    bits /= 62;
  }
  out[n] = '\0';
  return n;
}

static char *put(char *o, const char *s, size_t n) {
  memcpy(o, s, n);
  return o + n;
}

/* The body is measured first and written in one piece (on the C stack when it is small, as a
 * headshot's is), then made a string once. */
static void build_multipart(lua_State *L, const headshot_params *p, const char *b, size_t blen) {
  static const char head[] = "\r\nContent-Disposition: form-data; name=\"", mid[] = "\"\r\n\r\n";
  char small[1024], *out = small, *o;
  size_t need = 2 + blen + 4, names[P_COUNT];
  int i;
  for (i = 0; i < P_COUNT; i++) {
    if (!p->s[i])
      continue;
    names[i] = strlen(param_names[i]);
    if (p->len[i] > (size_t)-1 / 2 - need - 2 * blen - 128)
      luaL_error(L, "not enough memory");
    need += 2 + blen + sizeof head - 1 + names[i] + sizeof mid - 1 + p->len[i] + 2;
  }
  if (need > sizeof small)
    out = (char *)lua_newuserdata(L, need);
  o = out;
  for (i = 0; i < P_COUNT; i++) {
    if (!p->s[i])
      continue;
    o = put(o, "--", 2);
    o = put(o, b, blen);
    o = put(o, head, sizeof head - 1);
    o = put(o, param_names[i], names[i]);
    o = put(o, mid, sizeof mid - 1);
    o = put(o, p->s[i], p->len[i]);
    o = put(o, "\r\n", 2);
  }
  o = put(o, "--", 2);
  o = put(o, b, blen);
  o = put(o, "--\r\n", 4);
  lua_pushlstring(L, out, (size_t)(o - out));
  if (out != small)
    lua_remove(L, -2);
}

/* The JSON body: each value a string encoded by lua-cjson's private instance (cjson.c), the
 * members in the server's order, and the "\/" lua-cjson writes for every slash written "/"
 * again (the same string to a JSON reader; URLs stay readable in logs). */
static void build_json(lua_State *L, const headshot_params *p) {
  luaL_Buffer buf;
  int i, first = 1, base = lua_gettop(L);
  luaL_checkstack(L, P_COUNT + 2, "headshot");
  for (i = 0; i < P_COUNT; i++) {
    if (!p->s[i]) {
      lua_pushnil(L);
      continue;
    }
    lua_pushlstring(L, p->s[i], p->len[i]);
    if (!core_json_encode(L, -1))
      luaL_error(L, "headshot: cannot encode %s: %s", param_names[i], lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  luaL_buffinit(L, &buf);
  luaL_addchar(&buf, '{');
  for (i = 0; i < P_COUNT; i++) {
    size_t len, j, run = 0;
    const char *v = lua_tolstring(L, base + 1 + i, &len);
    if (!v)
      continue;
    if (!first)
      luaL_addchar(&buf, ',');
    first = 0;
    luaL_addchar(&buf, '"');
    luaL_addstring(&buf, param_names[i]);
    luaL_addstring(&buf, "\":");
    for (j = 0; j < len; j++) {
      if (v[j] != '\\')
        continue;
      if (j + 1 < len && v[j + 1] == '/') {
        luaL_addlstring(&buf, v + run, j - run);
        run = j + 1;
      }
      j++; /* an escape is two bytes at least: its second is never a backslash that starts one */
    }
    luaL_addlstring(&buf, v + run, len - run);
  }
  luaL_addchar(&buf, '}');
  luaL_pushresult(&buf);
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

/* Reads one param into p, from the value at idx (nil: absent). */
static void read_param(lua_State *L, headshot_params *p, int which, int idx) {
  size_t chars;
  if (lua_isnil(L, idx))
    return;
  /* prompt and replyRef are free text: tabs and line breaks allowed */
  p->s[which] = check_text(L, idx, "headshot", param_names[which],
                           which == P_PROMPT || which == P_REPLY_REF, &p->len[which], &chars);
  /* 1024 characters is the server's limit on replyUrl and replyRef */
  if ((which == P_REPLY_URL || which == P_REPLY_REF) && chars > FACESWAP_MAX_REPLY_CHARS)
    p->len[which] = (size_t)-1; /* marked: too long, reported in the server's order */
}

/* core.build_headshot(params, encoding, channel, reply_url [, boundary])
 * params is a prompt string or a table of prompt, channel, replyUrl, replyRef, options; the
 * client's defaults fill channel and replyUrl. The optional boundary is tried first (specs use
 * it to prove a colliding boundary is replaced). */
int core_build_headshot(lua_State *L) {
  headshot_params p;
  boundary_rng *rng = (boundary_rng *)lua_touserdata(L, lua_upvalueindex(1));
  const char *encoding = luaL_optstring(L, 2, "multipart");
  int json = strcmp(encoding, "json") == 0, i;
  memset(&p, 0, sizeof p);
  lua_settop(L, 5);
  if (!json && strcmp(encoding, "multipart") != 0)
    return luaL_error(L, "bad argument #1 to 'headshot' (encoding must be \"multipart\" or "
                         "\"json\", got \"%s\")", encoding);
  if (lua_type(L, 1) == LUA_TSTRING) {
    read_param(L, &p, P_PROMPT, 1);
  } else if (lua_type(L, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      for (i = 0; key && i < P_COUNT; i++)
        if (strcmp(key, param_names[i]) == 0)
          break;
      if (!key || i == P_COUNT) {
        lua_pop(L, 1);
        return luaL_error(L, "bad argument #1 to 'headshot' (unknown param '%s')",
                          key ? key : luaL_typename(L, -1));
      }
      read_param(L, &p, i, -1);
      /* the value keeps its slot (at most one per param): p points into it while the body is
       * built, and the table alone would not keep it, since a finalizer run by an allocation
       * there may change the table */
      luaL_checkstack(L, 2, "headshot");
      lua_pushvalue(L, -2); /* the key, for lua_next */
    }
  } else {
    return luaL_error(L, "bad argument #1 to 'headshot' (string or table expected, got %s)",
                      luaL_typename(L, 1));
  }
  if (!p.s[P_CHANNEL])
    read_param(L, &p, P_CHANNEL, 3);
  if (!p.s[P_REPLY_URL])
    read_param(L, &p, P_REPLY_URL, 4);

  /* the server's checks, in the server's order */
  if (!p.s[P_PROMPT] || p.len[P_PROMPT] == 0)
    return local_400(L, "Required param prompt is missing or empty");
  if (p.len[P_REPLY_REF] == (size_t)-1)
    return local_400(L, "Optional param replyRef is too long");
  if (p.len[P_REPLY_URL] == (size_t)-1)
    return local_400(L, "Optional param replyUrl is too long");

  lua_pushliteral(L, "POST");
  lua_pushliteral(L, "/headshot");
  if (json) {
    lua_pushliteral(L, "application/json");
    build_json(L, &p);
  } else {
    char b[BOUNDARY_MAX + 1];
    size_t blen = 0;
    if (lua_type(L, 5) == LUA_TSTRING && lua_rawlen(L, 5) <= BOUNDARY_MAX) {
      blen = lua_rawlen(L, 5);
      memcpy(b, lua_tostring(L, 5), blen + 1);
    }
    while (blen == 0 || boundary_in_params(&p, b, blen))
      blen = make_boundary(rng, b);
    {
      static const char ct[] = "multipart/form-data; boundary=";
      char line[sizeof ct + BOUNDARY_MAX];
      memcpy(line, ct, sizeof ct - 1);
      memcpy(line + sizeof ct - 1, b, blen);
      lua_pushlstring(L, line, sizeof ct - 1 + blen);
    }
    build_multipart(L, &p, b, blen);
  }
  return 4;
}

/* ---- GET /jobs/ and /jobs/cancel/ ------------------------------------------------------ */

/* core.build_get(op, jobid): op "job" or "cancel"; jobid a string or a job. */
int core_build_get(lua_State *L) {
  static const char *const ops[] = {"job", "cancel", NULL};
  static const char hex[] = "0123456789ABCDEF";
  int op = luaL_checkoption(L, 1, NULL, ops);
  const char *what = op == 0 ? "job" : "cancel";
  const char *id;
  size_t len, chars, i;
  luaL_Buffer buf;
  lua_settop(L, 2);
  if (job_is(L, 2)) {
    lua_getfield(L, 2, "jobid");
    lua_replace(L, 2);
  }
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "bad argument #1 to '%s' (jobid must be a string or a job, got %s)",
                      what, luaL_typename(L, 2));
  id = check_text(L, 2, what, "jobid", 0, &len, &chars);
  if (len == 0)
    return local_400(L, "Query param jobid not provided");
  lua_pushliteral(L, "GET");
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, op == 0 ? "/jobs/?jobid=" : "/jobs/cancel/?jobid=");
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      luaL_addchar(&buf, (char)c);
    } else {
      luaL_addchar(&buf, '%');
      luaL_addchar(&buf, hex[c >> 4]);
      luaL_addchar(&buf, hex[c & 15]);
    }
  }
  luaL_pushresult(&buf);
  lua_pushnil(L);
  lua_pushnil(L);
  return 4;
}

/* The boundary generator's state, an upvalue of build_headshot: seeded from the clock and an
 * address so two processes started together still differ. */
void request_push_rng(lua_State *L) {
  struct timespec ts;
  boundary_rng *rng = (boundary_rng *)lua_newuserdata(L, sizeof *rng);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  rng->s = ((unsigned long long)ts.tv_sec * 1000000007ULL) ^ (unsigned long long)ts.tv_nsec ^
           ((unsigned long long)(size_t)rng << 16) ^ (unsigned long long)(size_t)&ts;
  if (rng->s == 0)
    rng->s = 0x9E3779B97F4A7C15ULL;
}

/* For command.c: the same text checks and boundaries as headshot's. */
const char *request_check_text(lua_State *L, int idx, const char *what, const char *name,
                               int multiline, size_t *len, size_t *chars) {
  return check_text(L, idx, what, name, multiline, len, chars);
}

size_t request_make_boundary(void *rng, char *out) {
  return make_boundary((boundary_rng *)rng, out);
}
