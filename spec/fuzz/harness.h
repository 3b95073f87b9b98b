/* harness.h: what the libFuzzer harnesses (response_fuzz.c, request_fuzz.c, command_fuzz.c)
 * share: the Lua state, the mismatch check, and the text rules they check the core against,
 * written from RFC 3629 and API.md rather than from the core's code. Define FUZZ_NAME (the
 * harness's name, for its messages) before including it, after lua.h, lauxlib.h, lualib.h and
 * the declaration of luaopen_faceswap_core. */
#ifndef FACESWAP_FUZZ_HARNESS_H
#define FACESWAP_FUZZ_HARNESS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>

/* The harness's own checkers are not coverage-instrumented: coverage should guide the fuzzer
 * through the core, and tracing every byte compare of a 9 KB param would slow it tenfold.
 * (Each harness uses some of the helpers below: the rest are marked unused.) */
#define NOCOV __attribute__((no_sanitize("coverage"), unused))

static lua_State *L;               /* shared by all runs, collected every 16 */
static unsigned long long runs;

__attribute__((noreturn)) static void fail(const char *what, const char *detail) {
  fprintf(stderr, "\n" FUZZ_NAME ": MISMATCH: %s\n  %s\n", what, detail ? detail : "");
  abort();
}
#define CHECK(cond, detail) do { if (!(cond)) fail(#cond, (detail)); } while (0)

NOCOV static void close_state(void) {
  if (L) lua_close(L);
  L = NULL;
}

/* Code points in s, or -1 when s is not well-formed UTF-8 (RFC 3629 section 4). */
NOCOV static long utf8_chars(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  long n = 0;
  while (i < len) {
    unsigned c = s[i];
    unsigned lo = 0x80, hi = 0xBF;
    size_t k, need;
    if (c <= 0x7F) { i++; n++; continue; }
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else return -1;
    if (len - i <= need) return -1;
    for (k = 1; k <= need; k++) {
      unsigned t = s[i + k];
      if (t < (k == 1 ? lo : 0x80) || t > (k == 1 ? hi : 0xBF)) return -1;
    }
    i += need + 1;
    n++;
  }
  return n;
}

/* The misuse message for a text param of len bytes at s, or "" when it is fine. */
NOCOV static void text_problem_of(const char *s, size_t len, const char *what, const char *name,
                                  int multiline, char *out, size_t cap) {
  size_t i;
  out[0] = '\0';
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 || c == 0x7F) && !(multiline && (c == '\t' || c == '\r' || c == '\n'))) {
      snprintf(out, cap, "bad argument #1 to '%s' (%s contains control byte 0x%02X)", what,
               name, c);
      return;
    }
  }
  if (utf8_chars(s, len) < 0)
    snprintf(out, cap, "bad argument #1 to '%s' (%s is not valid UTF-8)", what, name);
  else if (strcmp(name, "channel") == 0 && len >= 1 && len <= 2 && s[0] == '.' &&
           s[len - 1] == '.') /* the channel rule: never a dot segment of a URL path */
    snprintf(out, cap, "bad argument #1 to '%s' (channel \"%.*s\" is not a channel id: a URL "
             "path cannot carry \".\" or \"..\")", what, (int)len, s);
}
#define text_problem(slot, what, name, multiline, out, cap) \
  text_problem_of((slot)->s, (slot)->len, what, name, multiline, out, cap)

/* Whether n (nlen > 0 bytes) occurs in h. */
NOCOV static int contains(const char *h, size_t hlen, const char *n, size_t nlen) {
  size_t i;
  if (nlen == 0 || hlen < nlen) return 0;
  for (i = 0; i + nlen <= hlen; i++)
    if (h[i] == n[0] && memcmp(h + i, n, nlen) == 0) return 1;
  return 0;
}

/* Whether s is well-formed UTF-8. */
NOCOV static int utf8_ok(const char *s, size_t len) { return utf8_chars(s, len) >= 0; }

/* The start of a multipart body, which has no preamble: it begins with the first --boundary.
 * delim gets CRLF -- boundary (it needs 4 + blen bytes), *p moves past that first boundary;
 * returns NULL, or why the body is refused. */
NOCOV static const char *multipart_open(const char **p, const char *end, const char *b, size_t blen,
                                        char *delim) {
  memcpy(delim, "\r\n--", 4);
  memcpy(delim + 4, b, blen);
  if ((size_t)(end - *p) < blen + 2 || memcmp(*p, "--", 2) || memcmp(*p + 2, b, blen))
    return "body does not start with --boundary";
  *p += 2 + blen;
  return NULL;
}

/* ---- the entry points' common parts ------------------------------------------------------ */

/* LLVMFuzzerInitialize's state: the standard libraries and the core, whose table lives at
 * index 1 for every run; closed at exit. */
NOCOV static void open_state(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "faceswap.core", luaopen_faceswap_core, 0);
  lua_settop(L, 1);
  atexit(close_state);
}

/* Restarts the boundary generator of the core's function `fn` (its first upvalue) from seed,
 * so an input always makes the same boundaries (and the fuzzer, which sees the comparisons,
 * can learn to collide with them). */
NOCOV static void seed_boundaries(const char *fn, unsigned long long seed) {
  unsigned long long *rng = NULL;
  lua_getfield(L, 1, fn);
  if (lua_getupvalue(L, -1, 1)) {
    rng = (unsigned long long *)lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  if (!rng) fail("the core function has no boundary generator upvalue", fn);
  *rng = 0x9E3779B97F4A7C15ULL ^ seed;
  lua_pop(L, 1);
}

/* A run's end: the stack back to the core table alone, and a GC step (a full cycle every 16). */
NOCOV static void end_run(void) {
  lua_settop(L, 1);
  if (++runs % 16 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  else lua_gc(L, LUA_GCSTEP, 0);
}

#endif
