/* cjson.c: JSON through lua-cjson, the one codec of the module (docs/json.md).
 *
 * The core keeps a private instance, `require("cjson").new()`, configured once and kept in
 * the registry, so that whatever a host sets on its own cjson (depths, number precision,
 * invalid numbers) changes nothing here. It is called under the core's own protected call,
 * which turns what it raises into the message cjson.safe would return: one protected call per
 * decode, not two (a host that has only `cjson.safe`, in package.preload, gets its instance). Around lua-cjson the core adds what it does not do:
 *   - a lexical pass in C first (json_precheck): strings must be valid UTF-8 with no raw control
 *     bytes and must end; lua-cjson passes such bytes through;
 *   - the C locale for every call: lua-cjson reads and writes numbers with strtod/snprintf,
 *     which follow LC_NUMERIC, so a host that set a decimal-comma locale would read "1.5" as 1;
 *   - its messages ("Expected comma or object end but found T_END at character 13") become the
 *     module's ("unexpected end of text at byte 13");
 *   - core_json_decode's values follow the module's conventions: a member whose value is null
 *     is left out, a null array element stays as the NULL lightuserdata (cjson.null), and on
 *     5.3+ an integral number is an integer.
 * Nesting deeper than FACESWAP_JSON_MAX_DEPTH is refused ("nested too deeply"). */
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"

/* registry[&codec_key] = {decode, encode, safe} of the private instance; safe: true when it is
 * cjson.safe's, which returns its errors instead of raising them */
static char codec_key;
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_instance(lua_State *L);

static void make_c_locale(void) {
  c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* ---- the lexical pass ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (a byte >= 0x80), or 0 (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t left) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t n, i;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3;
  else if (c >= 0xF0 && c <= 0xF4) n = 4;
  else return 0;
  if (left < n)
    return 0;
  if (c == 0xE0) lo = 0xA0;
  else if (c == 0xED) hi = 0x9F;
  else if (c == 0xF0) lo = 0x90;
  else if (c == 0xF4) hi = 0x8F;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return n;
}

/* Which of the 8 bytes at p are special inside a string: below 0x20, '"', '\\' or above 0x7F
 * (word at a time: a job's text is mostly string bodies). The lowest byte flagged is exact. */
static uint64_t special8(const unsigned char *p) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t v, q, b;
  memcpy(&v, p, 8);
  q = v ^ (ones * '"');
  b = v ^ (ones * '\\');
  return (((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b) | v) & highs;
}

/* Which of the 8 bytes at p are below 0x20, above 0x7F or '{' (lowest flagged exact). */
static uint64_t notable8(const unsigned char *p) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t v, q;
  memcpy(&v, p, 8);
  q = v ^ (ones * '{');
  return (((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | v) & highs;
}

#if defined(__SSE2__)
#include <emmintrin.h>
/* The same for 16 bytes: a signed byte below 0x20 is a control byte or one above 0x7F. */
static unsigned notable16(const unsigned char *p) {
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
  __m128i brace = _mm_cmpeq_epi8(v, _mm_set1_epi8('{'));
  return (unsigned)_mm_movemask_epi8(_mm_or_si128(low, brace));
}
#endif

/* The usual text, without a control byte anywhere: valid UTF-8 throughout means valid inside
 * strings, and no string needs to be followed. Returns 0 when the careful pass must decide
 * (a control byte, which is whitespace outside a string but not inside, or invalid UTF-8). */
static int precheck_fast(const unsigned char *s, size_t len, int *empty_object) {
  size_t i = 0, j, n;
  while (i < len) {
#if defined(__SSE2__)
    if (len - i >= 32) {
      /* two blocks a test: the usual text has no notable byte for hundreds of bytes */
      unsigned m = notable16(s + i) | notable16(s + i + 16) << 16;
      if (!m) {
        i += 32;
        continue;
      }
      i += (size_t)__builtin_ctz(m);
    } else if (len - i >= 16) {
      unsigned m = notable16(s + i);
      if (!m) {
        i += 16;
        continue;
      }
      i += (size_t)__builtin_ctz(m);
    } else
#endif
    if (len - i >= 8) {
      uint64_t m = notable8(s + i);
      if (!m) {
        i += 8;
        continue;
      }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      i += (size_t)__builtin_ctzll(m) >> 3;
#endif
    }
    if (s[i] < 0x20) {
      return 0;
    } else if (s[i] == '{') {
      /* inside a string too: a false "{}" only costs the rare second read of object_shapes */
      for (j = i + 1; j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r');)
        j++;
      if (j < len && s[j] == '}')
        *empty_object = 1;
      i++;
    } else if (s[i] < 0x80) {
      i++;
    } else if ((n = utf8_sequence(s + i, len - i)) != 0) {
      i += n;
    } else {
      return 0;
    }
  }
  return 1;
}

int json_precheck(const char *text, size_t len, const char **msg, size_t *pos, int *empty_object) {
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0, start = 0;
  *empty_object = 0;
  if (precheck_fast(s, len, empty_object))
    return 1; /* what lua-cjson does not check is fine; an unterminated string it reports */
  *empty_object = 0;
  while (i < len) {
    size_t j;
    unsigned char c = s[i];
    if (c != '"') {
      if (c == '{') {
        for (j = i + 1; j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r');)
          j++;
        if (j < len && s[j] == '}')
          *empty_object = 1;
      }
      i++;
      continue;
    }
    start = ++i; /* a string: its body begins here */
    for (;;) {
      size_t n;
      while (len - i >= 8) {
        uint64_t m = special8(s + i);
        if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
          i += (size_t)__builtin_ctzll(m) >> 3; /* the first byte is the lowest */
#endif
          break;
        }
        i += 8;
      }
      if (i >= len) {
        *msg = "unexpected end of text";
        *pos = len + 1;
        return 0;
      }
      c = s[i];
      if (c == '"')
        break;
      if (c == '\\') {
        i = len - i > 2 ? i + 2 : len; /* the escaped byte is left to lua-cjson */
      } else if (c < 0x20) {
        *msg = "control character in string";
        *pos = i + 1;
        return 0;
      } else if (c < 0x80) {
        i++;
      } else if ((n = utf8_sequence(s + i, len - i)) != 0) {
        i += n;
      } else {
        *msg = "invalid UTF-8 in string";
        *pos = start + 1;
        return 0;
      }
    }
    i++;
  }
  return 1;
}

/* ---- calling the instance ------------------------------------------------------------- */

/* Calls the codec function `which` (1 decode, 2 encode) on the value at idx under the C locale:
 * pushes its result and nil, or nil and its message, as cjson.safe does. Out of memory raises. */
static void codec_call(lua_State *L, int which, int idx) {
  locale_t old;
  int status;
  idx = lua_absindex(L, idx);
  lua_pushlightuserdata(L, &codec_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, -1, which);
  if (lua_rawlen(L, -2) > 2) { /* cjson.safe's: its own protected call, its own results */
    lua_replace(L, -2);
    lua_pushvalue(L, idx);
    old = uselocale(c_locale);
    status = lua_pcall(L, 1, 2, 0);
    uselocale(old);
    if (status != 0)
      lua_error(L);
    return;
  }
  lua_replace(L, -2);
  lua_pushvalue(L, idx);
  old = uselocale(c_locale);
  status = lua_pcall(L, 1, 1, 0);
  uselocale(old);
  if (status == 0) {
    lua_pushnil(L);
  } else if (status == LUA_ERRMEM || lua_type(L, -1) != LUA_TSTRING) {
    lua_error(L);
  } else {
    lua_pushnil(L);
    lua_insert(L, -2);
  }
}

static int is_hex4(const char *s, size_t left) {
  size_t i;
  if (left < 4)
    return 0;
  for (i = 0; i < 4; i++)
    if (!strchr("0123456789abcdefABCDEF", s[i]) || s[i] == '\0')
      return 0;
  return 1;
}

/* lua-cjson's message about text s, in the module's words: "<problem> at byte N". */
static void push_problem(lua_State *L, const char *s, size_t len, const char *err) {
  static const struct { const char *cjson, *ours; } words[] = {
    {"Found too many nested", "nested too deeply"},
    {"but found T_END", "unexpected end of text"},
    {"Expected the end", "text after the value"},
    {"found invalid unicode escape", NULL}, /* bad \u escape or lone surrogate: see below */
    {"found invalid escape", "bad escape in string"},
    {"found invalid number", "bad number"},
    {"found unexpected end of string", "unexpected end of text"},
    {"Expected colon", "expected ':'"},
    {"Expected object key", "expected a member name"},
    {"Expected comma or object end", "expected ',' or '}'"},
    {"Expected comma or array end", "expected ',' or ']'"},
  };
  const char *at = strstr(err, " at character ");
  const char *ours = "unexpected character";
  long n = at ? strtol(at + sizeof " at character " - 1, NULL, 10) : 0;
  size_t i;
  if (!at) { /* not a syntax problem (memory): as it is */
    lua_pushstring(L, err);
    return;
  }
  for (i = 0; i < sizeof words / sizeof words[0]; i++) {
    if (strstr(err, words[i].cjson)) {
      ours = words[i].ours;
      break;
    }
  }
  if (!ours) {
    /* cjson points at the backslash: four hex digits there make it a surrogate problem */
    ours = n >= 1 && (size_t)n + 5 <= len && is_hex4(s + n + 1, len - (size_t)n - 1)
             ? "lone surrogate in \\u escape" : "bad \\u escape";
  }
  lua_pushfstring(L, "%s at byte %d", ours, (int)n);
}

/* Whether lua-cjson's message err points at a '.' of the text. */
static int stopped_at_point(const char *err, const char *s, size_t len) {
  const char *at = strstr(err, " at character ");
  long n = at ? strtol(at + sizeof " at character " - 1, NULL, 10) : 0;
  return n >= 1 && (size_t)n <= len && s[n - 1] == '.';
}

int json_decode_raw(lua_State *L, int idx, int *empty_object) {
  size_t len, pos;
  const char *msg, *s = lua_tolstring(L, idx, &len);
  if (!json_precheck(s, len, &msg, &pos, empty_object)) {
    lua_pushfstring(L, "%s at byte %d", msg, (int)pos);
    return 0;
  }
  codec_call(L, 1, idx);
  if (lua_isnil(L, -2) && lua_isstring(L, -1) && stopped_at_point(lua_tostring(L, -1), s, len)) {
    /* A host that made a cjson instance of its own under a decimal-comma locale has set
     * lua-cjson's decimal point to ',' for every instance, so a number stops at its '.': make
     * ours again (which sets it back to '.') and read once more. */
    lua_pop(L, 2);
    make_instance(L);
    codec_call(L, 1, idx);
  }
  if (lua_isnil(L, -2)) {
    push_problem(L, s, len, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

/* ---- the module's conventions --------------------------------------------------------- */

void json_push_clean(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    compat_pushnumber(L, lua_tonumber(L, idx));
    return;
  case LUA_TTABLE:
    break;
  default:
    lua_pushvalue(L, idx);
    return;
  }
  luaL_checkstack(L, 6, "JSON nested too deeply");
  lua_createtable(L, (int)lua_rawlen(L, idx), 0);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* a null member is absent; a null array element keeps its place */
    if (lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_type(L, -2) == LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    json_push_clean(L, -2);
    lua_rawset(L, -5);
    lua_pop(L, 1);
  }
}

int core_json_decode(lua_State *L, const char *s, size_t len) {
  int empty_object;
  lua_pushlstring(L, s, len);
  if (!json_decode_raw(L, -1, &empty_object)) {
    lua_remove(L, -2);
    return 0;
  }
  json_push_clean(L, -1);
  lua_replace(L, -3);
  lua_pop(L, 1);
  return 1;
}

int core_json_encode(lua_State *L, int idx) {
  codec_call(L, 2, idx);
  if (lua_isnil(L, -2)) {
    lua_replace(L, -2);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

/* ---- loading the instance ------------------------------------------------------------- */

/* instance:name(arg), when the instance has that setting (some are not in every lua-cjson). */
static void configure(lua_State *L, int inst, const char *name, int is_bool, lua_Integer arg) {
  lua_getfield(L, inst, name);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (is_bool)
    lua_pushboolean(L, (int)arg);
  else
    lua_pushinteger(L, arg);
  lua_call(L, 1, 0);
}

/* Makes the private instance and keeps its decode and encode in the registry. lua-cjson
 * learns the decimal point of the locale current when an instance is made, in one variable
 * for the whole process: it is made under the C locale. */
static void make_instance(lua_State *L) {
  locale_t old;
  int inst, safe = 0;
  lua_getglobal(L, "require");
  lua_pushvalue(L, -1);
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_pop(L, 1);
    lua_pushliteral(L, "cjson.safe");
    if (lua_pcall(L, 1, 1, 0) != 0)
      luaL_error(L, "faceswap.core needs lua-cjson (Debian: lua-cjson; luarocks: lua-cjson): %s",
                 lua_tostring(L, -1));
    safe = 1;
  } else {
    lua_remove(L, -2); /* require */
  }
  lua_getfield(L, -1, "new");
  if (!lua_isfunction(L, -1))
    luaL_error(L, "faceswap.core needs lua-cjson 2.1 or later (cjson.new)");
  old = uselocale(c_locale);
  if (lua_pcall(L, 0, 1, 0) != 0) {
    uselocale(old);
    lua_error(L);
  }
  uselocale(old);
  inst = lua_gettop(L);
  configure(L, inst, "decode_max_depth", 0, FACESWAP_JSON_MAX_DEPTH);
  configure(L, inst, "encode_max_depth", 0, FACESWAP_JSON_MAX_DEPTH);
  configure(L, inst, "decode_invalid_numbers", 1, 0);
  configure(L, inst, "encode_invalid_numbers", 1, 0);
  configure(L, inst, "encode_number_precision", 0, 14);
  configure(L, inst, "encode_escape_forward_slash", 1, 0);
  configure(L, inst, "decode_array_with_array_mt", 1, 0);
  lua_pushlightuserdata(L, &codec_key);
  lua_createtable(L, 2, 0);
  lua_getfield(L, inst, "decode");
  lua_rawseti(L, -2, 1);
  lua_getfield(L, inst, "encode");
  lua_rawseti(L, -2, 2);
  if (safe) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, 3);
  }
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pop(L, 2);
}

void json_open(lua_State *L) {
  pthread_once(&c_locale_once, make_c_locale);
  if (!c_locale)
    luaL_error(L, "faceswap.core: cannot make the C locale");
  make_instance(L);
}
