/* json.c: a strict RFC 8259 reader with two modes sharing one set of checks.
 *   core_json_decode  builds Lua values: objects and arrays become tables, numbers integers
 *                     where integral; an object member whose value is null is left out (null
 *                     means absent), a null array element stays as a NULL lightuserdata.
 *   json_scan_object  builds nothing: it validates the text and records where each wanted
 *                     top-level member's value lies, so a job can be made without creating a
 *                     Lua string for every field it will never be asked for.
 * Strings must be valid UTF-8; nesting is limited to JSON_MAX_DEPTH.
 *
 * Why not lua-cjson: in spec/bench/run.sh, building every field of a job answer was the
 * largest cost of a round trip outside libcurl; scanning is a fraction of it. */
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define JSON_MAX_DEPTH 64

typedef struct {
  lua_State *L;                 /* NULL: scan mode, nothing is pushed */
  const char *p, *end, *start;
  const char *err;
  /* scan mode: the members to record, and facts about the value just read */
  const char *const *names;
  json_span *spans;
  int nnames;
  int escaped, all_objects;
} reader;

static int fail(reader *r, const char *msg) {
  if (!r->err)
    r->err = msg;
  return 0;
}

static void skip_space(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
    r->p++;
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* Reads the \u escape at s (pointing at the 'u'), joining a surrogate pair, into *cp; *used
 * is how many bytes it spans. Returns NULL, or what is wrong with it. */
static const char *unicode_escape(const char *s, const char *end, unsigned *cp, size_t *used) {
  unsigned lo;
  if (end - s < 5 || !hex4(s + 1, cp))
    return "bad \\u escape";
  *used = 5;
  if (*cp >= 0xD800 && *cp <= 0xDBFF) {
    if (end - s < 11 || s[5] != '\\' || s[6] != 'u' || !hex4(s + 7, &lo) || lo < 0xDC00 ||
        lo > 0xDFFF)
      return "lone surrogate in \\u escape";
    *used = 11;
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
    return "lone surrogate in \\u escape";
  }
  return NULL;
}

static size_t utf8_encode(char *out, unsigned cp) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Bytes that end the plain run of a string: the quote, a backslash, control bytes, and bytes
 * >= 0x80 (which need the UTF-8 check). Tested eight at a time, without a branch per byte. */
static const char *plain_run(const char *p, const char *end) {
  const unsigned long long ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (end - p >= 8) {
    unsigned long long w, quote, slash;
    memcpy(&w, p, 8);
    quote = w ^ (ones * '"');
    slash = w ^ (ones * '\\');
    if ((((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((w - ones * 0x20) & ~w) | w) &
        highs)
      break;
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 &&
         (unsigned char)*p < 0x80)
    p++;
  return p;
}

/* Unescapes the validated string body [s, e) into a Lua string. */
static void push_unescaped(lua_State *L, const char *s, const char *e) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (s < e) {
    const char *q = memchr(s, '\\', (size_t)(e - s));
    char out[4];
    size_t used = 2;
    if (!q) q = e;
    luaL_addlstring(&b, s, (size_t)(q - s));
    if (q == e)
      break;
    switch (q[1]) {
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u': {
      unsigned cp = 0;
      unicode_escape(q + 1, e, &cp, &used); /* validated when the string was read */
      luaL_addlstring(&b, out, utf8_encode(out, cp));
      used++;
      break;
    }
    default: luaL_addchar(&b, q[1]); break; /* \" \\ \/ */
    }
    s = q + used;
  }
  luaL_pushresult(&b);
}

/* Reads the string after its opening quote: validates escapes, control bytes and UTF-8,
 * sets r->escaped, and in build mode pushes it (straight from the input when unescaped). */
static int read_string(reader *r, const char **body, const char **body_end) {
  const char *s = r->p, *q = s;
  int high = 0, valid = 1;
  r->escaped = 0;
  for (;;) {
    q = plain_run(q, r->end);
    if (q >= r->end)
      return fail(r, "unterminated string");
    if (*q == '"')
      break;
    if ((unsigned char)*q >= 0x80) {
      high = 1;
      q++;
    } else if (*q == '\\') {
      size_t used = 1;
      r->escaped = 1;
      if (q + 1 >= r->end)
        return fail(r, "unterminated string");
      if (q[1] == 'u') {
        unsigned cp;
        const char *problem = unicode_escape(q + 1, r->end, &cp, &used);
        if (problem) {
          r->p = q;
          return fail(r, problem);
        }
      } else if (!strchr("\"\\/bfnrt", q[1]) || q[1] == '\0') {
        r->p = q;
        return fail(r, "bad escape in string");
      }
      q += 1 + used;
    } else {
      r->p = q;
      return fail(r, "control character in string");
    }
  }
  if (high)
    utf8_length(s, (size_t)(q - s), &valid); /* escapes are ASCII, so this checks the rest */
  if (!valid)
    return fail(r, "invalid UTF-8 in string");
  r->p = q + 1;
  if (body) {
    *body = s;
    *body_end = q;
  }
  if (r->L) {
    if (r->escaped)
      push_unescaped(r->L, s, q);
    else
      lua_pushlstring(r->L, s, (size_t)(q - s));
  }
  return 1;
}

static int read_number(reader *r) {
  const char *s = r->p, *p = s;
  int integral = 1;
  char buf[400]; /* longer than any double needs; longer numbers are refused */
  if (p < r->end && *p == '-') p++;
  if (p >= r->end) return fail(r, "bad number");
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (p < r->end && *p >= '0' && *p <= '9') p++;
  else return fail(r, "unexpected character");
  if (p < r->end && *p == '.') {
    integral = 0;
    if (++p >= r->end || *p < '0' || *p > '9') return fail(r, "bad number");
    while (p < r->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < r->end && (*p == 'e' || *p == 'E')) {
    integral = 0;
    if (++p < r->end && (*p == '+' || *p == '-')) p++;
    if (p >= r->end || *p < '0' || *p > '9') return fail(r, "bad number");
    while (p < r->end && *p >= '0' && *p <= '9') p++;
  }
  if ((size_t)(p - s) >= sizeof buf)
    return fail(r, "number too long");
  r->p = p;
  if (!r->L)
    return 1;
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = '\0';
  if (integral && p - s <= 18)
    lua_pushinteger(r->L, (lua_Integer)strtoll(buf, NULL, 10));
  else
    compat_pushnumber(r->L, (lua_Number)strtod(buf, NULL));
  return 1;
}

static int read_literal(reader *r, const char *word, size_t n) {
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
    return fail(r, "unexpected character");
  r->p += n;
  return 1;
}

static int read_value(reader *r, int depth);

/* Unescapes a short member name [s, e) into out (cap bytes); returns its length, or -1 when
 * it is too long or holds what no wanted name has (control or non-ASCII characters). */
static int unescape_name(const char *s, const char *e, char *out, int cap) {
  int n = 0;
  size_t used;
  unsigned cp;
  for (; s < e; s += used) {
    char c = *s;
    used = 1;
    if (c == '\\') {
      c = s[1];
      used = 2;
      if (c == 'u') {
        unicode_escape(s + 1, e, &cp, &used); /* validated when the name was read */
        used++;
        c = cp < 0x80 ? (char)cp : '\0';
      } else if (strchr("bfnrt", c)) {
        c = '\0';
      }
    }
    if (c == '\0' || n == cap)
      return -1;
    out[n++] = c;
  }
  return n;
}

/* Scan mode, top level: which wanted name the member name [s, e) is, or -1. */
static int wanted_member(reader *r, const char *s, const char *e) {
  char plain[32] = {0};
  size_t n = (size_t)(e - s);
  int i;
  if (r->escaped) { /* a name spelled with escapes is matched as what it means */
    int len = unescape_name(s, e, plain, (int)sizeof plain);
    if (len < 0)
      return -1;
    s = plain;
    n = (size_t)len;
  }
  for (i = 0; i < r->nnames; i++)
    if (strlen(r->names[i]) == n && memcmp(r->names[i], s, n) == 0)
      return i;
  return -1;
}

static int read_object(reader *r, int depth) {
  lua_State *L = r->L;
  if (L) /* sized for a job at the top, so building it never rehashes */
    lua_createtable(L, 0, depth == 0 ? 24 : 8);
  skip_space(r);
  if (r->p < r->end && *r->p == '}') {
    r->p++;
    return 1;
  }
  for (;;) {
    const char *name = NULL, *name_end = NULL, *value;
    int which = -1;
    skip_space(r);
    if (r->p >= r->end || *r->p != '"')
      return fail(r, "expected a member name");
    r->p++;
    if (!read_string(r, &name, &name_end))
      return 0;
    if (!L && depth == 0 && r->nnames)
      which = wanted_member(r, name, name_end);
    skip_space(r);
    if (r->p >= r->end || *r->p != ':')
      return fail(r, "expected ':'");
    r->p++;
    skip_space(r);
    value = r->p;
    if (!read_value(r, depth + 1))
      return 0;
    if (which >= 0) {
      json_span *sp = &r->spans[which];
      sp->kind = *value == '"' ? JSON_STRING : *value == '[' ? JSON_ARRAY :
                 *value == '{' ? JSON_OBJECT : *value == 'n' ? JSON_ABSENT :
                 *value == 't' || *value == 'f' ? JSON_BOOLEAN : JSON_NUMBER;
      sp->escaped = sp->kind == JSON_STRING && r->escaped;
      sp->all_objects = sp->kind == JSON_ARRAY && r->all_objects;
      /* a string's span is its body, without the quotes */
      sp->off = (size_t)(value - r->start) + (sp->kind == JSON_STRING);
      sp->len = (size_t)(r->p - value) - (sp->kind == JSON_STRING ? 2 : 0);
    }
    if (L) {
      if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) { /* null: the member is absent, even if */
        lua_pop(L, 1);                             /* an earlier duplicate gave it a value */
        lua_pushnil(L);
      }
      lua_rawset(L, -3);
    }
    skip_space(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == '}') { r->p++; return 1; }
    return fail(r, "expected ',' or '}'");
  }
}

static int read_array(reader *r, int depth) {
  lua_State *L = r->L;
  lua_Integer n = 0;
  int all_objects = 1;
  if (L)
    lua_newtable(L);
  skip_space(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    r->all_objects = 1;
    return 1;
  }
  for (;;) {
    skip_space(r);
    all_objects = all_objects && r->p < r->end && *r->p == '{';
    if (!read_value(r, depth + 1))
      return 0;
    if (L)
      lua_rawseti(L, -2, ++n);
    skip_space(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == ']') {
      r->p++;
      r->all_objects = all_objects;
      return 1;
    }
    return fail(r, "expected ',' or ']'");
  }
}

static int read_value(reader *r, int depth) {
  if (depth > JSON_MAX_DEPTH)
    return fail(r, "nested too deeply");
  if (r->L)
    luaL_checkstack(r->L, 4, "nested too deeply");
  skip_space(r);
  if (r->p >= r->end)
    return fail(r, "unexpected end of text");
  switch (*r->p) {
  case '{': r->p++; return read_object(r, depth);
  case '[': r->p++; return read_array(r, depth);
  case '"': r->p++; return read_string(r, NULL, NULL);
  case 't':
    if (!read_literal(r, "true", 4)) return 0;
    if (r->L) lua_pushboolean(r->L, 1);
    return 1;
  case 'f':
    if (!read_literal(r, "false", 5)) return 0;
    if (r->L) lua_pushboolean(r->L, 0);
    return 1;
  case 'n':
    if (!read_literal(r, "null", 4)) return 0;
    if (r->L) lua_pushlightuserdata(r->L, NULL);
    return 1;
  default:
    return read_number(r);
  }
}

/* Runs the reader over all of [s, s+len); on failure sets *msg and *pos (1-based byte). */
static int read_all(reader *r, const char *s, size_t len, const char **msg, size_t *pos) {
  r->p = r->start = s;
  r->end = s + len;
  r->err = NULL;
  if (read_value(r, 0)) {
    skip_space(r);
    if (r->p == r->end)
      return 1;
    fail(r, "text after the value");
  }
  /* whatever was expected, running out of text is the thing to report: truncated answers */
  *msg = r->p >= r->end ? "unexpected end of text" : r->err;
  *pos = (size_t)(r->p - r->start) + 1;
  return 0;
}

int core_json_decode(lua_State *L, const char *s, size_t len) {
  reader r;
  const char *msg;
  size_t pos;
  int top = lua_gettop(L);
  memset(&r, 0, sizeof r);
  r.L = L;
  if (read_all(&r, s, len, &msg, &pos))
    return 1;
  lua_settop(L, top);
  lua_pushfstring(L, "%s at byte %d", msg, (int)pos);
  return 0;
}

int json_scan_object(const char *s, size_t len, const char *const *names, int nnames,
                     json_span *spans, const char **msg, size_t *pos) {
  reader r;
  const char *p = s + strspn(s, " \t\r\n");
  memset(&r, 0, sizeof r);
  memset(spans, 0, sizeof *spans * (size_t)nnames);
  r.names = names;
  r.nnames = nnames;
  r.spans = spans;
  if (!read_all(&r, s, len, msg, pos))
    return 0;
  if (*p != '{') {
    *msg = "not an object";
    *pos = (size_t)(p - s) + 1;
    return 0;
  }
  return 1;
}

/* Pushes the value of a span found by json_scan_object (already validated). */
void json_push_span(lua_State *L, const char *s, const json_span *sp) {
  reader r;
  memset(&r, 0, sizeof r);
  r.L = L;
  switch (sp->kind) {
  case JSON_STRING:
    if (sp->escaped)
      push_unescaped(L, s + sp->off, s + sp->off + sp->len);
    else
      lua_pushlstring(L, s + sp->off, sp->len);
    return;
  case JSON_ABSENT:
    lua_pushnil(L);
    return;
  default: {
    const char *msg;
    size_t pos;
    if (!read_all(&r, s + sp->off, sp->len, &msg, &pos))
      lua_pushnil(L); /* cannot happen: the span was validated when the job was made */
  }
  }
}
