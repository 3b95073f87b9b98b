/* form.c: the text rules and the writers every request shares, with no I/O: what text a param
 * may hold (UTF-8, control bytes, the channel rule), percent-encoding for paths and queries,
 * multipart boundaries and the check that one occurs in no part, and the multipart/form-data
 * and JSON bodies (a body with a file on disk as upload.c's upload_body, the file left where
 * it is). command.c's builder calls these; nothing here knows a command. */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include "core.h"

/* ---- text ------------------------------------------------------------------------------ */

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

/* The offset of the first control byte in s, or len: free text (multiline) may hold tabs and
 * line breaks. */
static size_t control_byte(const char *s, size_t len, int multiline) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 || c == 0x7F) && !(multiline && (c == '\t' || c == '\r' || c == '\n')))
      break;
  }
  return i;
}

const char *form_check_text(lua_State *L, int idx, const char *what, const char *name,
                            int multiline, size_t *len, size_t *chars) {
  size_t i;
  int valid;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "bad argument #1 to '%s' (%s must be a string, got %s)", what, name,
               luaL_typename(L, idx));
  s = lua_tolstring(L, idx, len);
  i = control_byte(s, *len, multiline);
  if (i < *len) {
    static const char hex[] = "0123456789ABCDEF";
    unsigned char c = (unsigned char)s[i];
    char byte[3] = {hex[c >> 4], hex[c & 15], '\0'};
    luaL_error(L, "bad argument #1 to '%s' (%s contains control byte 0x%s)", what, name, byte);
  }
  *chars = utf8_length(s, *len, &valid);
  if (!valid)
    luaL_error(L, "bad argument #1 to '%s' (%s is not valid UTF-8)", what, name);
  return s;
}

/* The one rule for a channel id, wherever it goes (a form or JSON body, a URL path, an
 * account's key in GET /account's answer): text on one line (UTF-8, no control bytes), and not
 * "." or "..": as a path segment those are dot segments, which URL normalisation (libcurl's, a
 * proxy's, the server's) removes, so /account/.. would address /v1/faceswap/ itself. Discord
 * channel ids are digits; other text is kept as it always was (the server answers a channel it
 * does not know). Emptiness is the server's 400, not this rule's. */
const char *form_channel_problem(const char *s, size_t len) {
  int valid;
  if (control_byte(s, len, 0) < len)
    return "it contains a control byte";
  utf8_length(s, len, &valid);
  if (!valid)
    return "it is not valid UTF-8";
  if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
    return "a URL path cannot carry \".\" or \"..\"";
  return NULL;
}

const char *form_check_channel(lua_State *L, int idx, const char *what, size_t *len,
                               size_t *chars) {
  const char *s = form_check_text(L, idx, what, "channel", 0, len, chars), *why;
  why = form_channel_problem(s, *len);
  if (why)
    luaL_error(L, "bad argument #1 to '%s' (channel \"%s\" is not a channel id: %s)", what, s,
               why);
  return s;
}

/* Every byte but RFC 3986's unreserved ones (letters, digits and -._~) as %XX, so a path
 * segment or query value keeps its bytes and never its meaning. */
void form_add_escaped(luaL_Buffer *buf, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      luaL_addchar(buf, (char)c);
    } else {
      luaL_addchar(buf, '%');
      luaL_addchar(buf, hex[c >> 4]);
      luaL_addchar(buf, hex[c & 15]);
    }
  }
}

/* ---- boundaries ------------------------------------------------------------------------ */

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

/* Seeded from the clock and an address, so two processes started together still differ. */
void form_push_rng(lua_State *L) {
  struct timespec ts;
  boundary_rng *rng = (boundary_rng *)lua_newuserdata(L, sizeof *rng);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  rng->s = ((unsigned long long)ts.tv_sec * 1000000007ULL) ^ (unsigned long long)ts.tv_nsec ^
           ((unsigned long long)(size_t)rng << 16) ^ (unsigned long long)(size_t)&ts;
  if (rng->s == 0)
    rng->s = 0x9E3779B97F4A7C15ULL;
}

#define BOUNDARY_PREFIX "faceswap-"
#define BOUNDARY_RANDOM 24

static size_t make_boundary(boundary_rng *rng, char *out) {
  static const char alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  size_t n = sizeof BOUNDARY_PREFIX - 1, i;
  unsigned long long bits = 0;
  uint32_t frac = 0;
  memcpy(out, BOUNDARY_PREFIX, n);
  for (i = 0; i < BOUNDARY_RANDOM; i++) {
    /* 32 random bits read as a fraction give three base-62 digits, each the integer part of
     * the fraction times 62 (62^3 is far below 2^32: the bias is below 10^-4), with a
     * multiply and a shift instead of a division each */
    uint64_t x;
    if (i % 6 == 0)
      bits = rng_next(rng);
    if (i % 3 == 0) {
      frac = (uint32_t)bits;
      bits >>= 32;
    }
    x = (uint64_t)frac * 62;
    out[n++] = alphabet[x >> 32];
    frac = (uint32_t)x;
  }
  out[n] = '\0';
  return n;
}

/* Boyer-Moore-Horspool: in bytes that hold few of the boundary's characters (an image) it
 * looks at about one byte in blen, so a large file costs a fraction of a pass over it. */
static int contains(const char *str, size_t len, const char *pat, size_t blen) {
  const unsigned char *s = (const unsigned char *)str, *b = (const unsigned char *)pat;
  size_t skip[256], i, last = blen - 1;
  if (!s || blen == 0 || len < blen)
    return 0;
  if (len < 4096) { /* a prompt: filling the table would cost more than the whole search */
    const unsigned char *p = s, *end = s + len - last;
    while ((p = memchr(p, b[0], (size_t)(end - p))) != NULL) {
      if (memcmp(p + 1, b + 1, last) == 0)
        return 1;
      p++;
    }
    return 0;
  }
  for (i = 0; i < 256; i++)
    skip[i] = blen;
  for (i = 0; i < last; i++)
    skip[b[i]] = last - i;
  for (i = 0; i + blen <= len; i += skip[s[i + last]])
    if (s[i + last] == b[last] && memcmp(s + i, b, last) == 0)
      return 1;
  return 0;
}

/* A boundary for a body whose files stay on disk: 22 characters drawn uniformly from 62 by
 * the kernel's random generator, 130 bits. The files are not scanned for it: a file of 25 MiB
 * has about 2^25 places where it could start, so the chance that one holds it is below 2^-100
 * (and no file written before the draw can have been made to). The bytes in memory (the text
 * parts, the filenames, each file's first bytes) are checked all the same. */
#define RANDOM_CHARS 22

static void kernel_random(unsigned char *r, size_t n, boundary_rng *fallback) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = getrandom(r + got, n - got, 0);
    if (k > 0)
      got += (size_t)k;
    else if (k < 0 && errno != EINTR)
      break;
  }
  if (got < n) { /* no getrandom (a kernel before 3.17): /dev/urandom, else the seeded state */
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && got < n) {
      ssize_t k = read(fd, r + got, n - got);
      if (k > 0)
        got += (size_t)k;
      else if (k == 0 || errno != EINTR)
        break;
    }
    if (fd >= 0)
      close(fd);
    for (; got < n; got++)
      r[got] = (unsigned char)(rng_next(fallback) >> 56);
  }
}

static size_t random_boundary(boundary_rng *fallback, char *out) {
  static const char alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  unsigned char r[32];
  size_t n = sizeof BOUNDARY_PREFIX - 1, used = sizeof r, chars = 0;
  memcpy(out, BOUNDARY_PREFIX, n);
  while (chars < RANDOM_CHARS) {
    if (used == sizeof r) {
      kernel_random(r, sizeof r, fallback);
      used = 0;
    }
    if (r[used] < 248) { /* 4 x 62: taken modulo 62 without bias */
      out[n++] = alphabet[r[used] % 62];
      chars++;
    }
    used++;
  }
  out[n] = '\0';
  return n;
}

/* Whether the boundary occurs in what the parts hold in memory: their bytes, their filenames,
 * and of a file on disk the first bytes read to sniff its type. */
static int collides(const form_part *parts, int n, const char *b, size_t blen) {
  int i;
  for (i = 0; i < n; i++) {
    const form_part *p = &parts[i];
    size_t head_len;
    const char *head = p->s && p->file ? upload_file_head(p->file, &head_len) : NULL;
    if ((p->s && !p->file && contains(p->s, p->len, b, blen)) ||
        (head && contains(head, head_len, b, blen)) ||
        contains(p->filename, p->filename_len, b, blen))
      return 1;
  }
  return 0;
}

/* Whether a boundary the caller gave occurs in a file on disk: only that one, not being
 * random, is looked for in the files' bytes. */
static int collides_on_disk(const form_part *parts, int n, const char *b, size_t blen) {
  int i;
  for (i = 0; i < n; i++)
    if (parts[i].s && parts[i].file && upload_file_contains(parts[i].file, b, blen) != 0)
      return 1;
  return 0;
}

/* ---- bodies ---------------------------------------------------------------------------- */

/* The text of a body, written at p (NULL: only measured into len). */
typedef struct { char *p; size_t len, cap; } text_out;

static void put(text_out *o, const char *s, size_t n) {
  if (o->p && o->len + n <= o->cap)
    memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void put_str(text_out *o, const char *s) {
  put(o, s, strlen(s));
}

/* Lays the body out: each part's head, then its bytes in memory or, for a file on disk, a hole
 * of the body (body NULL: none noted). */
static void lay_out(text_out *o, const form_part *parts, int n, const char *b, size_t blen,
                    upload_body *body) {
  int i, k = 0;
  for (i = 0; i < n; i++) {
    const form_part *p = &parts[i];
    if (!p->s)
      continue;
    put(o, "--", 2);
    put(o, b, blen);
    put_str(o, "\r\nContent-Disposition: form-data; name=\"");
    put_str(o, p->name);
    if (p->filename) {
      put_str(o, "\"; filename=\"");
      put(o, p->filename, p->filename_len);
      put_str(o, "\"\r\nContent-Type: ");
      put_str(o, p->type);
    } else {
      put(o, "\"", 1);
    }
    put(o, "\r\n\r\n", 4);
    if (p->file) {
      if (body)
        upload_body_hole(body, k, o->len, p->file, p->name);
      k++;
    } else {
      put(o, p->s, p->len);
    }
    put(o, "\r\n", 2);
  }
  put(o, "--", 2);
  put(o, b, blen);
  put(o, "--\r\n", 4);
}

void form_push_multipart(lua_State *L, const form_part *parts, int n, void *rng,
                         const char *given, size_t given_len) {
  char b[FACESWAP_BOUNDARY_MAX + 1];
  size_t blen = 0;
  int i, files = 0;
  for (i = 0; i < n; i++)
    files += parts[i].s && parts[i].file;
  if (given && given_len <= FACESWAP_BOUNDARY_MAX) {
    blen = given_len;
    memcpy(b, given, blen);
    b[blen] = '\0';
    if (files && (collides(parts, n, b, blen) || collides_on_disk(parts, n, b, blen)))
      blen = 0;
  }
  while (blen == 0 || collides(parts, n, b, blen))
    blen = files ? random_boundary((boundary_rng *)rng, b) : make_boundary((boundary_rng *)rng, b);
  {
    static const char type[] = "multipart/form-data; boundary=";
    char ct[sizeof type - 1 + FACESWAP_BOUNDARY_MAX];
    memcpy(ct, type, sizeof type - 1);
    memcpy(ct + sizeof type - 1, b, blen);
    lua_pushlstring(L, ct, sizeof type - 1 + blen);
  }
  if (!files) {
    /* written on the C stack when it fits (a prompt's form: one pass, one string made), else
     * measured, then written once into a string of that size */
    char small[1024];
    text_out o = {small, 0, sizeof small};
#if LUA_VERSION_NUM >= 502
    luaL_Buffer buf;
#endif
    lay_out(&o, parts, n, b, blen, NULL);
    if (o.len <= sizeof small) {
      lua_pushlstring(L, small, o.len);
      return;
    }
    o.p = NULL;
    o.cap = (size_t)-1;
#if LUA_VERSION_NUM >= 502
    o.p = luaL_buffinitsize(L, &buf, o.len); /* a large image is not copied twice */
    o.len = 0;
    lay_out(&o, parts, n, b, blen, NULL);
    luaL_pushresultsize(&buf, o.len);
#else
    o.p = (char *)lua_newuserdata(L, o.len);
    o.len = 0;
    lay_out(&o, parts, n, b, blen, NULL);
    lua_pushlstring(L, o.p, o.len);
    lua_remove(L, -2);
#endif
  } else {
    text_out o = {NULL, 0, (size_t)-1};
    upload_body *body;
    lay_out(&o, parts, n, b, blen, NULL);
    o.p = upload_push_body(L, o.len, files, &body);
    o.len = 0;
    lay_out(&o, parts, n, b, blen, body);
  }
}

/* Each value a JSON string encoded by lua-cjson's private instance (cjson.c), the members in
 * the parts' order, and the "\/" lua-cjson writes for every slash written "/" again (the same
 * string to a JSON reader; URLs stay readable in logs). The names are the row's: plain ASCII. */
void form_push_json(lua_State *L, const form_part *parts, int n, const char *what) {
  luaL_Buffer buf;
  int i, first = 1, base = lua_gettop(L);
  luaL_checkstack(L, n + 2, what);
  for (i = 0; i < n; i++) {
    if (!parts[i].s) {
      lua_pushnil(L);
      continue;
    }
    lua_pushlstring(L, parts[i].s, parts[i].len);
    if (!core_json_encode(L, -1))
      luaL_error(L, "%s: cannot encode %s: %s", what, parts[i].name, lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  luaL_buffinit(L, &buf);
  luaL_addchar(&buf, '{');
  for (i = 0; i < n; i++) {
    size_t len, j, run = 0;
    const char *v = lua_tolstring(L, base + 1 + i, &len);
    if (!v)
      continue;
    if (!first)
      luaL_addchar(&buf, ',');
    first = 0;
    luaL_addchar(&buf, '"');
    luaL_addstring(&buf, parts[i].name);
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
  lua_insert(L, base + 1);
  lua_settop(L, base + 1);
}
