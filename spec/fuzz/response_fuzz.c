/* response_fuzz.c: libFuzzer harness for reading answers (core.read_response, core.decode).
 *
 * Input: the status, then the header block and the body.
 *   - three ASCII digits (optionally followed by one space or newline) are the status, as in
 *     the seed files ("429\nHTTP/1.1 429 ...\r\n\r\n{...}"); otherwise the first two bytes are
 *     a signed 16-bit status (0, negative and out-of-range statuses included);
 *   - the rest is split at its first CRLF CRLF: headers up to and including it, body after; with
 *     no CRLF CRLF the headers are nil and everything is body.
 * Each input is read for every op ("headshot", "job", "cancel") and given to core.decode. The
 * harness checks, against its own model of API.md: nothing raises; a 2xx gives a job exactly
 * when decode does, anything else nil + an error object with a documented kind, code ==
 * status, the server's text, errorDetails, retry_after in [0, 1e10], retryable and sent as
 * documented, no stray fields, and the exact one-line tostring; a job's fields equal what the
 * core's JSON reader (core_json_decode: lua-cjson) gives for the same text, credits match the
 * harness's own parse of `content`, done()/urls()/tostring/json() hold, and decode(job:json()) == job.
 * The Lua state is shared by all runs and collected often. Any mismatch abort()s. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_faceswap_core(lua_State *L);
int core_json_decode(lua_State *L, const char *s, size_t len);

#define FUZZ_NAME "response_fuzz"
#include "harness.h"

#define RA_CAP 1e10 /* s: the longest retry_after the core gives */

static const char *const ops[3] = {"headshot", "job", "cancel"};
static const char *const kinds[] = {
  "invalid_request", "unauthorized", "payment_required", "not_found", "rate_limited",
  "server", "transport", "timeout", "bad_response", NULL
};
#define NFIELDS 19
static const char *const fields[NFIELDS] = {
  "jobid", "verb", "status", "prompt", "created", "updated", "discord", "server", "channel",
  "replyUrl", "replyRef", "messageId", "content", "timestamp", "error", "errorDetails", "code",
  "attachments", "embeds"
};
enum { F_CODE = 16, F_ATTACHMENTS = 17, F_EMBEDS = 18 };

/* ---- helpers -------------------------------------------------------------------------- */

static const char *str_at(int idx) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
}

/* Whether every string in the value at idx (keys included, recursively) is UTF-8. */
NOCOV static int all_utf8(int idx, int depth) {
  size_t n;
  const char *s;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    s = lua_tolstring(L, idx, &n);
    return utf8_ok(s, n);
  }
  if (lua_type(L, idx) != LUA_TTABLE || depth > 200) return 1;
  luaL_checkstack(L, 4, "all_utf8");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!all_utf8(-2, depth + 1) || !all_utf8(-1, depth + 1)) { lua_pop(L, 2); return 0; }
    lua_pop(L, 1);
  }
  return 1;
}

/* Deep equality of two values decoded from JSON (tables compared both ways). */
NOCOV static int deep_equal(int a, int b, int depth) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  if (lua_type(L, a) != LUA_TTABLE) {
    if (lua_type(L, a) == LUA_TNUMBER)
      return lua_isinteger(L, a) == lua_isinteger(L, b) && lua_compare(L, a, b, LUA_OPEQ);
    return lua_rawequal(L, a, b);
  }
  CHECK(depth < 200, "deeper than the core's JSON limit allows");
  luaL_checkstack(L, 6, "deep_equal");
  lua_pushnil(L);
  while (lua_next(L, a)) {
    int eq;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    eq = deep_equal(-2, -1, depth + 1);
    lua_pop(L, 2);
    if (!eq) { lua_pop(L, 1); return 0; }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    int there;
    lua_pushvalue(L, -2);
    lua_rawget(L, a);
    there = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (!there) { lua_pop(L, 1); return 0; }
  }
  return 1;
}

/* Calls core[name] with n arguments already pushed after it; returns results count. */
static int call_core(int nargs, const char *what) {
  int top = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
    char d[300];
    snprintf(d, sizeof d, "%s raised: %s", what,
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
    fail("the core raised on an answer", d);
  }
  return lua_gettop(L) - top;
}

/* ---- the harness's own parse of content's credits ------------------------------------- */

/* Digits at s as the core accepts them (its limit: the value before the last digit is at
 * most 2^52); returns how many digits, 0 for none or too large. */
NOCOV static size_t digits(const char *s, const char *end, long long *v) {
  const long long cap = 1LL << 52;
  size_t n = 0;
  *v = 0;
  while (s + n < end && s[n] >= '0' && s[n] <= '9') {
    if (*v > cap) return 0;
    *v = *v * 10 + (s[n] - '0');
    n++;
  }
  return n;
}

NOCOV static void model_credits(const char *s, size_t len, int *has_c, long long *c, int *has_r,
                          long long *left, long long *total) {
  static const char tag[] = "[credits: ", tail[] = " credits remaining)";
  const char *end = s + len;
  size_t i;
  *has_c = *has_r = 0;
  for (i = 0; i + sizeof tag - 1 < len; i++) {
    size_t n;
    if (memcmp(s + i, tag, sizeof tag - 1) != 0) continue;
    n = digits(s + i + sizeof tag - 1, end, c);
    if (n && s + i + sizeof tag - 1 + n < end && s[i + sizeof tag - 1 + n] == ']') {
      *has_c = 1;
      break;
    }
  }
  for (i = len; i-- > 0;) {
    const char *q = s + i + 1;
    size_t n;
    if (s[i] != '(') continue;
    n = digits(q, end, left);
    if (!n || q + n >= end || q[n] != '/') continue;
    q += n + 1;
    n = digits(q, end, total);
    if (!n || (size_t)(end - q - n) < sizeof tail - 1 || memcmp(q + n, tail, sizeof tail - 1))
      continue;
    *has_r = 1;
    break;
  }
}

/* ---- the job -------------------------------------------------------------------------- */

static int set_status(lua_State *S) {
  lua_settop(S, 1);
  lua_pushliteral(S, "x");
  lua_setfield(S, 1, "status");
  return 0;
}

/* core.type of the value at idx is `want`. */
static void check_type(int idx, const char *want) {
  lua_getfield(L, 1, "type");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  CHECK(str_at(-1) && strcmp(str_at(-1), want) == 0, want);
  lua_pop(L, 1);
}

/* A job at idx made from body; ref at ref_idx is core_json_decode(body) (a table). */
static void check_job(int idx, const char *body, size_t blen, int ref_idx) {
  int i, has_c, has_r;
  long long c = 0, left = 0, total = 0;
  char d[300];
  const char *st;
  idx = lua_absindex(L, idx);
  CHECK(lua_type(L, idx) == LUA_TUSERDATA, "a job must be a userdata");
  check_type(idx, "job");

  /* every field: what the core's build-mode reader gives for the same text */
  for (i = 0; i < NFIELDS; i++) {
    int t;
    lua_getfield(L, idx, fields[i]);
    lua_getfield(L, ref_idx, fields[i]);
    t = lua_type(L, -2);
    if (i == F_CODE) CHECK(t == LUA_TNIL || t == LUA_TNUMBER, "code is not a number");
    else if (i == F_ATTACHMENTS || i == F_EMBEDS) CHECK(t == LUA_TNIL || t == LUA_TTABLE, fields[i]);
    else CHECK(t == LUA_TNIL || t == LUA_TSTRING, fields[i]);
    CHECK(all_utf8(-2, 0), "a job field holds a string that is not UTF-8");
    if (!deep_equal(-2, -1, 0)) {
      snprintf(d, sizeof d, "job.%s differs from the decoded JSON", fields[i]);
      fail("scan and build readers disagree", d);
    }
    if (t == LUA_TTABLE) { /* an array of objects, fresh on every access */
      lua_Integer n = (lua_Integer)lua_rawlen(L, -2), k;
      for (k = 1; k <= n; k++) {
        CHECK(lua_rawgeti(L, -2, k) == LUA_TTABLE, "an element is not an object");
        lua_pop(L, 1);
      }
      lua_getfield(L, idx, fields[i]);
      CHECK(!lua_rawequal(L, -1, -3), "an array field is shared between accesses");
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  lua_getfield(L, idx, "jobid");
  CHECK(lua_type(L, -1) == LUA_TSTRING, "a job without a jobid string");
  lua_pop(L, 1);
  lua_getfield(L, idx, "no_such_field");
  CHECK(lua_isnil(L, -1), "unknown names must be nil");
  lua_pop(L, 1);

  /* credits, against the harness's own parse of content */
  lua_getfield(L, ref_idx, "content");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t cl;
    const char *cs = lua_tolstring(L, -1, &cl);
    model_credits(cs, cl, &has_c, &c, &has_r, &left, &total);
  } else {
    has_c = has_r = 0;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "credits");
  lua_getfield(L, idx, "credits_left");
  lua_getfield(L, idx, "credits_total");
  snprintf(d, sizeof d, "model: charge %d/%lld, remaining %d/%lld/%lld", has_c, c, has_r, left,
           total);
  CHECK(has_c ? lua_isinteger(L, -3) && lua_tointeger(L, -3) == c : lua_isnil(L, -3), d);
  CHECK(has_r ? lua_isinteger(L, -2) && lua_tointeger(L, -2) == left : lua_isnil(L, -2), d);
  CHECK(has_r ? lua_isinteger(L, -1) && lua_tointeger(L, -1) == total : lua_isnil(L, -1), d);
  lua_pop(L, 3);

  /* done() */
  lua_getfield(L, ref_idx, "status");
  st = str_at(-1);
  {
    int want = st && (!strcmp(st, "completed") || !strcmp(st, "failed") ||
                      !strcmp(st, "moderated") || !strcmp(st, "cancelled")) &&
               strlen(st) == lua_rawlen(L, -1);
    lua_getfield(L, idx, "done");
    lua_pushvalue(L, idx);
    CHECK(call_core(1, "job:done()") == 1 && lua_isboolean(L, -1), "done() must be a boolean");
    CHECK(lua_toboolean(L, -1) == want, "done() disagrees with status");
    lua_pop(L, 2);
  }

  /* urls(): the url strings of the attachments, in order */
  lua_getfield(L, idx, "urls");
  lua_pushvalue(L, idx);
  CHECK(call_core(1, "job:urls()") == 1 && lua_istable(L, -1), "urls() must be a table");
  lua_getfield(L, ref_idx, "attachments");
  {
    lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0, k, m = 0;
    for (k = 1; k <= n; k++) {
      int base = lua_gettop(L);
      lua_rawgeti(L, -1, k);
      if (lua_istable(L, -1) && lua_getfield(L, -1, "url") == LUA_TSTRING) {
        lua_rawgeti(L, base - 1, ++m);
        CHECK(lua_rawequal(L, -1, -2), "urls() differs from attachments[].url");
      }
      lua_settop(L, base);
    }
    CHECK((lua_Integer)lua_rawlen(L, -2) == m, "urls() has extra entries");
  }
  lua_pop(L, 2);

  /* tostring */
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  CHECK(str_at(-1) && strncmp(str_at(-1), "faceswap.job: ", 14) == 0, "tostring(job)");
  lua_pop(L, 1);

  /* json() is the text it was made from, and decodes to an equal job */
  lua_getfield(L, idx, "json");
  lua_pushvalue(L, idx);
  CHECK(call_core(1, "job:json()") == 1 && lua_type(L, -1) == LUA_TSTRING, "json()");
  {
    size_t jl;
    const char *js = lua_tolstring(L, -1, &jl);
    CHECK(jl == blen && memcmp(js, body, blen) == 0, "json() is not the text of the answer");
  }
  lua_getfield(L, 1, "decode");
  lua_insert(L, -2);
  CHECK(call_core(1, "decode(job:json())") == 1 && lua_type(L, -1) == LUA_TUSERDATA,
        "decode(job:json()) is not a job");
  CHECK(lua_compare(L, -1, idx, LUA_OPEQ), "decode(job:json()) ~= job");
  lua_pop(L, 1);

  /* read-only */
  lua_pushcfunction(L, set_status);
  lua_pushvalue(L, idx);
  CHECK(lua_pcall(L, 1, 0, 0) == LUA_ERRRUN && str_at(-1) &&
        strstr(str_at(-1), "faceswap.job is read-only (attempt to set field 'status')"),
        "assigning to a job field must raise");
  lua_pop(L, 1);
}

/* ---- the error object ----------------------------------------------------------------- */

typedef struct {
  const char *kind;
  int status;          /* code expected when > 0 */
  char error[400];     /* expected text, or "" when only a string is required */
  int error_idx;       /* or: the stack index of the expected error string (0: none) */
  int details_idx;     /* the stack index of the expected errorDetails (0: none) */
  int retryable, sent;
  int ra_mode;         /* 0: no retry_after, 1: exactly ra, 2: any in [0, 1e10] or none */
  double ra;
  int status_text;     /* error is "HTTP <status>" or that, ": " and a short clean start of
                          the body (a CDN's page) */
} err_model;

static void check_error(int idx, const err_model *m) {
  char d[600];
  const char *k;
  int i, ok = 0;
  idx = lua_absindex(L, idx);
  CHECK(lua_type(L, idx) == LUA_TTABLE, "an error must be a table");
  check_type(idx, "error");

  lua_getfield(L, idx, "kind");
  k = str_at(-1);
  for (i = 0; k && kinds[i]; i++) ok |= strcmp(k, kinds[i]) == 0;
  CHECK(ok, "kind is not a documented kind");
  snprintf(d, sizeof d, "status %d: kind %s, expected %s", m->status, k, m->kind);
  CHECK(strcmp(k, m->kind) == 0, d);
  lua_pop(L, 1);

  lua_getfield(L, idx, "code");
  if (m->status > 0) CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == m->status, d);
  else CHECK(lua_isnil(L, -1), "a code without a status");
  lua_pop(L, 1);

  lua_getfield(L, idx, "error");
  CHECK(lua_type(L, -1) == LUA_TSTRING, "error.error must be a string");
  if (m->error_idx) {
    CHECK(lua_rawequal(L, -1, m->error_idx), "error.error is not the server's text");
    CHECK(all_utf8(-1, 0), "the server's text is not UTF-8");
  } else if (m->status_text) {
    char head[32];
    size_t hl = (size_t)snprintf(head, sizeof head, "HTTP %d", m->status), len, i;
    const char *e = lua_tolstring(L, -1, &len);
    snprintf(d, sizeof d, "error '%s', expected '%s' and a start of the body", e, head);
    CHECK(len >= hl && memcmp(e, head, hl) == 0, d);
    CHECK(len == hl || (len > hl + 2 && e[hl] == ':' && e[hl + 1] == ' ' &&
                        len - hl - 2 <= 100 + 3), d);
    for (i = 0; i < len; i++)
      CHECK((unsigned char)e[i] >= 0x20 && e[i] != 0x7F, d);
    CHECK(all_utf8(-1, 0), "the status text is not UTF-8");
  } else if (m->error[0]) {
    snprintf(d, sizeof d, "error '%s', expected '%s'", lua_tostring(L, -1), m->error);
    CHECK(strcmp(lua_tostring(L, -1), m->error) == 0 && lua_rawlen(L, -1) == strlen(m->error), d);
  }
  lua_pop(L, 1);

  lua_getfield(L, idx, "errorDetails");
  if (m->details_idx) CHECK(lua_rawequal(L, -1, m->details_idx), "errorDetails differs");
  else CHECK(lua_isnil(L, -1), "unexpected errorDetails");
  lua_pop(L, 1);

  lua_getfield(L, idx, "retryable");
  snprintf(d, sizeof d, "status %d kind %s: retryable expected %d", m->status, m->kind,
           m->retryable);
  CHECK(lua_isboolean(L, -1) && lua_toboolean(L, -1) == m->retryable, d);
  lua_getfield(L, idx, "sent");
  CHECK(lua_isboolean(L, -1) && lua_toboolean(L, -1) == m->sent, "sent");
  lua_pop(L, 2);

  lua_getfield(L, idx, "retry_after");
  if (m->ra_mode == 0) {
    CHECK(lua_isnil(L, -1), "unexpected retry_after");
  } else if (!lua_isnil(L, -1)) {
    double ra;
    CHECK(lua_type(L, -1) == LUA_TNUMBER, "retry_after must be a number");
    ra = lua_tonumber(L, -1);
    CHECK(ra >= 0 && ra <= RA_CAP, "retry_after out of [0, 1e10]");
    if (ra == (double)(lua_Integer)ra) CHECK(lua_isinteger(L, -1), "integral retry_after as float");
    if (m->ra_mode == 1) CHECK(ra == m->ra, "retry_after differs");
  } else {
    CHECK(m->ra_mode == 2, "retry_after missing");
  }
  lua_pop(L, 1);

  /* no other fields */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    static const char *const known[] = {"kind", "code", "error", "errorDetails", "retry_after",
                                        "retryable", "sent", NULL};
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    ok = 0;
    for (i = 0; key && known[i]; i++) ok |= strcmp(key, known[i]) == 0;
    CHECK(ok, "an error field that API.md does not have");
    lua_pop(L, 1);
  }

  /* tostring: "kind (code): message" on one line */
  {
    luaL_Buffer b;
    size_t n, j;
    const char *msg;
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    CHECK(lua_type(L, -1) == LUA_TSTRING, "tostring(err)");
    lua_getfield(L, idx, "error");
    msg = lua_tolstring(L, -1, &n);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, m->kind);
    if (m->status > 0) {
      lua_pushfstring(L, " (%d)", m->status);
      luaL_addvalue(&b);
    }
    luaL_addstring(&b, ": ");
    for (j = 0; j < n; j++)
      luaL_addchar(&b, msg[j] == '\r' || msg[j] == '\n' ? ' ' : msg[j]);
    luaL_pushresult(&b);
    CHECK(lua_rawequal(L, -1, -3), "tostring(err) is not \"kind (code): message\" on one line");
    lua_pop(L, 3);
  }
}

/* ---- the model of read_response ------------------------------------------------------- */

/* Retry-After as the harness reads it: 0 absent/unusable, 1 plain integer seconds in *v,
 * 2 something else (a date, a fraction) the core may or may not take. */
NOCOV static int model_header(const char *h, size_t len, double *v) {
  const char *line = h, *end = h + len;
  while (line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line)), *p, *q;
    size_t i;
    if (!eol) eol = end;
    if ((size_t)(eol - line) > 12 && strncasecmp(line, "retry-after:", 12) == 0) {
      p = line + 12;
      q = eol;
      while (p < q && (*p == ' ' || *p == '\t')) p++;
      while (q > p && (q[-1] == '\r' || q[-1] == ' ' || q[-1] == '\t')) q--;
      if (q == p || q - p >= 64) return 0;
      if (*p < '0' || *p > '9') return 2;
      for (i = 0; p + i < q; i++)
        if (p[i] < '0' || p[i] > '9') return 2;
      if (q - p > 9) return 2;
      *v = 0;
      for (i = 0; p + i < q; i++) *v = *v * 10 + (p[i] - '0');
      return 1;
    }
    line = eol + 1;
  }
  return 0;
}

/* retry_after expected from the header alone: any length is kept, a longer one than RA_CAP
 * (300 years, infinity too) reads as RA_CAP (csrc/response.c, MAX_RETRY_AFTER). */
static void header_expect(err_model *m, int hmode, double hv) {
  m->ra = hv > RA_CAP ? RA_CAP : hv;
  m->ra_mode = hmode == 2 ? 2 : hmode == 1 ? 1 : 0;
}

static const char *kind_of(int status) {
  switch (status) {
  case 400: return "invalid_request";
  case 401: return "unauthorized";
  case 402: return "payment_required";
  case 404: return "not_found";
  case 429: return "rate_limited";
  default: return "server";
  }
}

/* Stack on entry: 1 core, 2 body, 3 headers (or nil), 4 decode(body) result 1, 5 result 2,
 * 6 core_json_decode(body) (value or message), 7 whether it decoded. */
static void check_read(int op, int status, const char *body, size_t blen, const char *headers,
                       size_t hlen) {
  int top = lua_gettop(L), n;
  int decoded = lua_toboolean(L, 7);
  err_model m;
  memset(&m, 0, sizeof m);
  m.status = status;
  m.sent = 1;
  lua_getfield(L, 1, "read_response");
  lua_pushstring(L, ops[op]);
  lua_pushinteger(L, status);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  n = call_core(4, "read_response");

  if (status >= 200 && status < 300) {
    if (lua_type(L, 4) == LUA_TUSERDATA) {
      CHECK(n == 1 && lua_type(L, top + 1) == LUA_TUSERDATA, "decode made a job, read_response not");
      CHECK(lua_compare(L, top + 1, 4, LUA_OPEQ), "read_response's job ~= decode's job");
      check_job(top + 1, body, blen, 6);
    } else {
      CHECK(n == 2 && lua_isnil(L, top + 1), "decode refused the body, read_response made a job");
      m.kind = "bad_response";
      m.retryable = op != 0;
      lua_getfield(L, 5, "error");
      snprintf(m.error, sizeof m.error, "HTTP %d answer: %s", status, lua_tostring(L, -1));
      lua_pop(L, 1);
      if (strlen(m.error) == sizeof m.error - 1) m.error[0] = '\0'; /* too long to model */
      check_error(top + 2, &m);
    }
    lua_settop(L, top);
    return;
  }

  CHECK(n == 2 && lua_isnil(L, top + 1), "a non-2xx must give nil, err");
  {
    int has_error = 0, details = 0, derr = 0;
    double hv = 0;
    int hmode = model_header(headers, hlen, &hv);
    int too_big = blen > 65536; /* an error body past 64 KiB is not read */
    char not_read[200];
    snprintf(not_read, sizeof not_read, "HTTP %d answer of %d bytes not read (an error answer is "
             "read up to 65536 bytes)", status, (int)blen);
    if (too_big)
      decoded = 0;
    /* 8 error, 9 errorDetails, 10 code of the decoded body */
    if (decoded && lua_istable(L, 6)) {
      lua_getfield(L, 6, "error");
      lua_getfield(L, 6, "errorDetails");
      lua_getfield(L, 6, "code");
    } else {
      lua_pushnil(L); lua_pushnil(L); lua_pushnil(L);
    }
    derr = lua_gettop(L) - 2;
    details = lua_type(L, derr + 1) == LUA_TSTRING ? derr + 1 : 0;
    has_error = lua_type(L, derr) == LUA_TSTRING &&
                (details || lua_isnil(L, derr + 1)) &&
                (lua_isnil(L, derr + 2) || lua_type(L, derr + 2) == LUA_TNUMBER);
    if (status >= 500 || status < 400) {
      m.kind = "server";
      m.retryable = status >= 500 && op != 0;
      if (has_error) m.error_idx = derr;
      else if (status >= 500 && too_big) snprintf(m.error, sizeof m.error, "%s", not_read);
      else if (status >= 500) m.status_text = 1;
      else snprintf(m.error, sizeof m.error, "unexpected HTTP %d (redirects are not followed)",
                    status);
      m.details_idx = details;
      header_expect(&m, hmode, hv);
    } else if (!has_error && status != 429) {
      if (too_big && strcmp(kind_of(status), "server") != 0) {
        m.kind = kind_of(status);
        snprintf(m.error, sizeof m.error, "%s", not_read);
      } else {
        m.kind = "bad_response";
        if (too_big)
          snprintf(m.error, sizeof m.error, "%s", not_read);
        else
          snprintf(m.error, sizeof m.error, "HTTP %d answer is not a documented error (%s)",
                   status, decoded && lua_istable(L, 6) ?
                   "no error string, or a field of the wrong type" : "not JSON");
      }
    } else {
      m.kind = kind_of(status);
      m.retryable = status == 429;
      if (has_error) m.error_idx = derr; /* a 429: the status decides, whatever the body */
      else if (too_big) snprintf(m.error, sizeof m.error, "%s", not_read);
      else m.status_text = 1;
      m.details_idx = details;
      if (status == 429) {
        double dv = -1;
        if (details) { /* Discord's JSON inside errorDetails */
          size_t dl;
          const char *ds = lua_tolstring(L, details, &dl);
          if (core_json_decode(L, ds, dl) && lua_istable(L, -1)) {
            lua_getfield(L, -1, "retry_after");
            if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
              dv = lua_tonumber(L, -1);
            lua_pop(L, 1);
          }
          lua_pop(L, 1);
        }
        if (dv >= 0) {
          m.ra_mode = 1;
          m.ra = dv > RA_CAP ? RA_CAP : dv;
        } else {
          header_expect(&m, hmode, hv);
        }
      }
    }
    check_error(top + 2, &m);
  }
  lua_settop(L, top);
}

/* decode(body): a job, or nil + bad_response consistent with the core's JSON reader. */
static void check_decode(const char *body, size_t blen) {
  int n, ok;
  lua_getfield(L, 1, "decode");
  lua_pushvalue(L, 2);
  n = call_core(1, "decode");
  CHECK(n == 1 || n == 2, "decode must give job or nil, err");
  if (n == 1) lua_pushnil(L);
  /* 4, 5: decode's results; 6: core_json_decode's value or message, 7: whether it read */
  ok = core_json_decode(L, body, blen);
  lua_pushboolean(L, ok);
  if (lua_type(L, 4) == LUA_TUSERDATA) {
    CHECK(lua_toboolean(L, 7) && lua_istable(L, 6), "a job from text the JSON reader refuses");
    lua_getfield(L, 6, "jobid");
    CHECK(lua_type(L, -1) == LUA_TSTRING, "a job whose JSON has no jobid string");
    lua_pop(L, 1);
  } else {
    err_model m;
    const char *e;
    memset(&m, 0, sizeof m);
    m.kind = "bad_response";
    CHECK(lua_isnil(L, 4), "decode's first result");
    check_error(5, &m);
    lua_getfield(L, 5, "error");
    e = lua_tostring(L, -1);
    if (!lua_toboolean(L, 7)) {
      /* the scan reader and the build reader fail alike */
      char want[300];
      snprintf(want, sizeof want, "invalid JSON: %s", lua_tostring(L, 6));
      if (strcmp(e, want) != 0) {
        char d[700];
        snprintf(d, sizeof d, "decode: '%s', JSON reader: '%s'", e, lua_tostring(L, 6));
        fail("scan and build readers fail differently", d);
      }
    } else if (strncmp(e, "invalid JSON", 12) == 0) {
      fail("the scan reader refused JSON the build reader reads", e);
    } else if (strcmp(e, "not a job: JSON is not an object") == 0) {
      const char *p = body + strspn(body, " \t\r\n");
      CHECK(*p != '{', "an object read as not an object");
    } else if (strcmp(e, "not a job: no jobid string") == 0) {
      lua_getfield(L, 6, "jobid");
      CHECK(lua_type(L, -1) != LUA_TSTRING, "a jobid string not seen");
      lua_pop(L, 1);
    } else if (strncmp(e, "field ", 6) == 0) {
      /* "field NAME is not a string|a number|an array|an array of objects" */
      char name[40];
      int i, t;
      CHECK(sscanf(e, "field %39s is not", name) == 1, e);
      for (i = 0; i < NFIELDS; i++) if (strcmp(name, fields[i]) == 0) break;
      CHECK(i < NFIELDS, e);
      lua_getfield(L, 6, name);
      t = lua_type(L, -1);
      CHECK(t != LUA_TNIL, "a wrong type for an absent field");
      if (i == F_CODE) CHECK(t != LUA_TNUMBER, e);
      else if (i != F_ATTACHMENTS && i != F_EMBEDS) CHECK(t != LUA_TSTRING, e);
      lua_pop(L, 1);
    } else {
      fail("decode gave an unknown reason", e);
    }
    lua_pop(L, 1);
  }
}

/* ---- libFuzzer entry points ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  open_state();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *rest, *sep, *body, *headers = "";
  size_t restlen, blen, hlen = 0;
  int status, op;
  if (size < 2) return 0;
  if (size >= 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
      s[2] <= '9') {
    status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    rest = s + 3;
    if (rest < s + size && (*rest == ' ' || *rest == '\n')) rest++;
  } else {
    status = (int16_t)(uint16_t)(data[0] << 8 | data[1]);
    rest = s + 2;
  }
  restlen = size - (size_t)(rest - s);
  sep = NULL;
  for (size_t i = 0; i + 4 <= restlen; i++)
    if (memcmp(rest + i, "\r\n\r\n", 4) == 0) { sep = rest + i; break; }
  lua_settop(L, 1);
  if (sep) {
    headers = rest;
    hlen = (size_t)(sep + 4 - rest);
    body = sep + 4;
    blen = restlen - hlen;
  } else {
    body = rest;
    blen = restlen;
  }
  lua_pushlstring(L, body, blen);                     /* 2 */
  body = lua_tostring(L, 2);                          /* NUL-terminated from here on */
  if (sep) lua_pushlstring(L, headers, hlen);         /* 3 */
  else lua_pushnil(L);
  headers = sep ? lua_tostring(L, 3) : "";
  check_decode(body, blen);                           /* 4..7 */
  for (op = 0; op < 3; op++)
    check_read(op, status, body, blen, headers, hlen);
  CHECK(lua_gettop(L) >= 7, "stack");
  end_run();
  return 0;
}
