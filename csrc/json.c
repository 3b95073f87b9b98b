/* json.c: a strict RFC 8259 reader that builds Lua values directly. Objects and arrays become
 * tables, numbers integers where they are integral, strings must be valid UTF-8. An object
 * member whose value is null is left out (for a job, null means absent); a null inside an
 * array stays as a NULL lightuserdata so indices do not shift.
 *
 * Why not lua-cjson: measured with spec/bench/run.sh, cjson.decode of one job answer cost
 * about 25,000 instructions, a fifth of a whole headshot round trip; this reader does the same
 * work in a fraction of that, and reports a position with each error. */
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define JSON_MAX_DEPTH 64

typedef struct {
  lua_State *L;
  const char *p, *end, *start;
  const char *err;
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

/* Reads one \u escape (r->p at the 'u'), joining a surrogate pair, into out. */
static size_t read_unicode_escape(reader *r, char *out) {
  unsigned cp, lo;
  if (r->end - r->p < 5 || !hex4(r->p + 1, &cp))
    return fail(r, "bad \\u escape");
  r->p += 5;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || !hex4(r->p + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
      return fail(r, "lone surrogate in \\u escape");
    r->p += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return fail(r, "lone surrogate in \\u escape");
  }
  return utf8_encode(out, cp);
}

/* Bytes that end the plain run of a string: the quote, a backslash, control bytes, and bytes
 * >= 0x80 (which need the UTF-8 check). Tested eight at a time, without a branch per byte. */
static size_t plain_run(const char *s, const char *end) {
  const unsigned long long ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  const char *p = s;
  while (end - p >= 8) {
    unsigned long long w, quote, slash;
    memcpy(&w, p, 8);
    quote = w ^ (ones * '"');
    slash = w ^ (ones * '\\');
    /* a zero byte in quote/slash, a byte < 0x20, or a high bit: stop and look byte by byte */
    if ((((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((w - ones * 0x20) & ~w) | w) &
        highs)
      break;
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 &&
         (unsigned char)*p < 0x80)
    p++;
  return (size_t)(p - s);
}

/* Pushes the string starting after the opening quote. The common case, no escapes, is pushed
 * straight from the input; only escaped strings go through a buffer. */
static int read_string(reader *r) {
  const char *s = r->p, *q = s + plain_run(s, r->end);
  luaL_Buffer b;
  int valid = 1;
  if (q < r->end && (unsigned char)*q >= 0x80) {
    /* text beyond ASCII: find the end the slow way, then check it is UTF-8 */
    while (q < r->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
      q++;
    if (q < r->end && *q == '"')
      utf8_length(s, (size_t)(q - s), &valid);
  }
  if (q < r->end && *q == '"') {
    if (!valid)
      return fail(r, "invalid UTF-8 in string");
    lua_pushlstring(r->L, s, (size_t)(q - s));
    r->p = q + 1;
    return 1;
  }
  luaL_buffinit(r->L, &b);
  r->p = q;
  luaL_addlstring(&b, s, (size_t)(q - s));
  for (;;) {
    char c, out[4];
    size_t n;
    if (r->p >= r->end)
      return fail(r, "unterminated string");
    c = *r->p;
    if (c == '"')
      break;
    if ((unsigned char)c < 0x20)
      return fail(r, "control character in string");
    if (c != '\\') {
      luaL_addchar(&b, c);
      r->p++;
      continue;
    }
    if (++r->p >= r->end)
      return fail(r, "unterminated string");
    switch (*r->p) {
    case '"': case '\\': case '/': luaL_addchar(&b, *r->p); r->p++; break;
    case 'b': luaL_addchar(&b, '\b'); r->p++; break;
    case 'f': luaL_addchar(&b, '\f'); r->p++; break;
    case 'n': luaL_addchar(&b, '\n'); r->p++; break;
    case 'r': luaL_addchar(&b, '\r'); r->p++; break;
    case 't': luaL_addchar(&b, '\t'); r->p++; break;
    case 'u':
      n = read_unicode_escape(r, out);
      if (!n)
        return 0;
      luaL_addlstring(&b, out, n);
      break;
    default: return fail(r, "bad escape in string");
    }
  }
  r->p++;
  luaL_pushresult(&b);
  {
    size_t len;
    const char *str = lua_tolstring(r->L, -1, &len);
    utf8_length(str, len, &valid);
    if (!valid) {
      lua_pop(r->L, 1);
      return fail(r, "invalid UTF-8 in string");
    }
  }
  return 1;
}

static int read_number(reader *r) {
  const char *s = r->p, *p = s;
  int integral = 1;
  char buf[64];
  if (p < r->end && *p == '-') p++;
  if (p >= r->end) return fail(r, "bad number");
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (p < r->end && *p >= '0' && *p <= '9') p++;
  else return fail(r, "bad number");
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
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = '\0';
  r->p = p;
  if (integral && p - s <= 18) {
    lua_pushinteger(r->L, (lua_Integer)strtoll(buf, NULL, 10));
    return 1;
  }
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

static int read_object(reader *r, int depth) {
  lua_State *L = r->L;
  /* sized for a job at the top, so building it never rehashes */
  lua_createtable(L, 0, depth == 0 ? 24 : 8);
  skip_space(r);
  if (r->p < r->end && *r->p == '}') {
    r->p++;
    return 1;
  }
  for (;;) {
    skip_space(r);
    if (r->p >= r->end || *r->p != '"')
      return fail(r, "expected a member name");
    r->p++;
    if (!read_string(r))
      return 0;
    skip_space(r);
    if (r->p >= r->end || *r->p != ':')
      return fail(r, "expected ':'");
    r->p++;
    if (!read_value(r, depth + 1))
      return 0;
    if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) /* null: the member is absent */
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
    skip_space(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == '}') { r->p++; return 1; }
    return fail(r, "expected ',' or '}'");
  }
}

static int read_array(reader *r, int depth) {
  lua_State *L = r->L;
  lua_Integer n = 0;
  lua_newtable(L);
  skip_space(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    return 1;
  }
  for (;;) {
    if (!read_value(r, depth + 1))
      return 0;
    lua_rawseti(L, -2, ++n);
    skip_space(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == ']') { r->p++; return 1; }
    return fail(r, "expected ',' or ']'");
  }
}

static int read_value(reader *r, int depth) {
  if (depth > JSON_MAX_DEPTH)
    return fail(r, "nested too deeply");
  luaL_checkstack(r->L, 4, "nested too deeply");
  skip_space(r);
  if (r->p >= r->end)
    return fail(r, "unexpected end of text");
  switch (*r->p) {
  case '{': r->p++; return read_object(r, depth);
  case '[': r->p++; return read_array(r, depth);
  case '"': r->p++; return read_string(r);
  case 't':
    if (!read_literal(r, "true", 4)) return 0;
    lua_pushboolean(r->L, 1);
    return 1;
  case 'f':
    if (!read_literal(r, "false", 5)) return 0;
    lua_pushboolean(r->L, 0);
    return 1;
  case 'n':
    if (!read_literal(r, "null", 4)) return 0;
    lua_pushlightuserdata(r->L, NULL);
    return 1;
  default:
    return read_number(r);
  }
}

int core_json_decode(lua_State *L, const char *s, size_t len) {
  reader r;
  int top = lua_gettop(L);
  r.L = L;
  r.p = r.start = s;
  r.end = s + len;
  r.err = NULL;
  if (read_value(&r, 0)) {
    skip_space(&r);
    if (r.p == r.end)
      return 1;
    fail(&r, "text after the value");
  }
  lua_settop(L, top);
  /* whatever was expected, running out of text is the thing to report: truncated answers */
  if (r.p >= r.end)
    r.err = "unexpected end of text";
  lua_pushfstring(L, "%s at byte %d", r.err, (int)(r.p - r.start) + 1);
  return 0;
}
