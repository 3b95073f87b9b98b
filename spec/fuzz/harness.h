/* harness.h: what the libFuzzer harnesses (response_fuzz.c, request_fuzz.c, command_fuzz.c)
 * share: the Lua state, the mismatch check, and the text rules they check the core against,
 * written from RFC 3629 and API.md rather than from the core's code. Define FUZZ_NAME (the
 * harness's name, for its messages) before including it. */
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

#endif
