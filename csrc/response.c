/* response.c: reading an answer. status + headers + body become a job or an error object with
 * the kind, code, text, retry_after, retryable and sent of API.md. Pure: no I/O, so specs and
 * fuzzers call it directly. Which kind when two could fit: a 5xx is `server` whatever its
 * body; a 2xx or 4xx whose body is not the documented JSON is `bad_response`. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "core.h"

#define MAX_RETRY_AFTER 86400.0

/* The operations answers are read for; a POST's decide retry safety. */
typedef enum { OP_HEADSHOT, OP_JOB, OP_CANCEL, OP_COMMAND } faceswap_op;

/* The op at idx; for a command of the table (command.c), also how its answer reads and
 * whether asking again is safe. */
static faceswap_op op_check(lua_State *L, int idx, int *answer, int *safe) {
  static const char *const ops[] = {"headshot", "job", "cancel", NULL};
  const char *name = luaL_checkstring(L, idx);
  int i;
  for (i = 0; ops[i]; i++)
    if (strcmp(name, ops[i]) == 0)
      return (faceswap_op)i;
  *answer = command_answer(name, safe);
  if (*answer < 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "invalid option '%s'", name));
  return OP_COMMAND;
}

static int ascii_ieq(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y)
      return 0;
  }
  return 1;
}

/* Seconds from a Retry-After header (delta-seconds or an HTTP date), or -1. */
static double header_retry_after(const char *h, size_t len) {
  static const char name[] = "retry-after:";
  const char *end = h + len, *line = h;
  while (line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol)
      eol = end;
    if ((size_t)(eol - line) > sizeof name - 1 && ascii_ieq(line, name, sizeof name - 1)) {
      char value[64];
      const char *v = line + sizeof name - 1, *ve = eol;
      char *stop;
      double secs;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      if (ve == v || (size_t)(ve - v) >= sizeof value)
        return -1;
      memcpy(value, v, (size_t)(ve - v));
      value[ve - v] = '\0';
      if (value[0] >= '0' && value[0] <= '9') {
        if (value[strspn(value, "0123456789.")] != '\0')
          return -1; /* delta-seconds only: no hex, exponents or signs */
        secs = strtod(value, &stop);
        return *stop == '\0' ? secs : -1;
      } else {
        time_t when = curl_getdate(value, NULL);
        time_t now = time(NULL);
        if (when < 0)
          return -1;
        return when > now ? (double)(when - now) : 0;
      }
    }
    line = eol + 1;
  }
  return -1;
}

/* Discord's retry_after, from the JSON text that upstream puts in errorDetails. */
static double details_retry_after(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  double secs = -1;
  if (core_json_decode(L, s, len) && lua_istable(L, -1)) {
    lua_getfield(L, -1, "retry_after");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
      secs = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return secs;
}

static const char *kind_of_status(int status) {
  switch (status) {
  case 400: return "invalid_request";
  case 401: return "unauthorized";
  case 402: return "payment_required";
  case 404: return "not_found";
  case 429: return "rate_limited";
  default: return "server";
  }
}

/* bad_response with a message built from the format on the stack top. */
static int bad_response(lua_State *L, error_info *info) {
  info->kind = "bad_response";
  info->retry_after = -1;
  lua_pushnil(L);
  lua_insert(L, -2);
  error_push(L, info, NULL, -1, 0);
  lua_remove(L, -2);
  return 2;
}

/* core.read_response(op, status, headers, body) -> job | nil, err */
int core_read_response(lua_State *L) {
  int answer = ANSWER_JOB, safe = 0;
  faceswap_op op = op_check(L, 1, &answer, &safe);
  int status = (int)luaL_checkinteger(L, 2);
  size_t hlen = 0, blen;
  const char *headers = luaL_optlstring(L, 3, "", &hlen);
  const char *body = luaL_checklstring(L, 4, &blen);
  int decoded, has_error;
  /* a GET may always be asked again; a POST answered badly may still have made a job */
  error_info info = {"server", status, 1, op == OP_COMMAND ? safe : op != OP_HEADSHOT, -1};
  lua_settop(L, 4);

  if (status >= 200 && status < 300) {
    if (answer != ANSWER_JOB) {
      if (command_read_answer(L, answer, status, 4))
        return 1;
      return bad_response(L, &info);
    }
    if (job_push_json(L, 4))
      return 1;
    lua_pushfstring(L, "HTTP %d answer: %s", status, lua_tostring(L, -1));
    return bad_response(L, &info);
  }

  decoded = core_json_decode(L, body, blen) && lua_istable(L, 5);
  if (!decoded) {
    lua_settop(L, 4);
    lua_pushnil(L); /* keeps index 5 meaning "the decoded body" */
  }
  if (decoded) {
    lua_getfield(L, 5, "error");        /* 6 */
    lua_getfield(L, 5, "errorDetails"); /* 7 */
    lua_getfield(L, 5, "code");         /* 8 */
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  has_error = lua_type(L, 6) == LUA_TSTRING &&
              (lua_type(L, 7) == LUA_TSTRING || lua_isnil(L, 7)) &&
              (lua_type(L, 8) == LUA_TNUMBER || lua_isnil(L, 8));

  if (status >= 500 || status < 400) {
    info.kind = "server";
    info.retry_after = header_retry_after(headers, hlen);
    if (!has_error) {
      lua_pushfstring(L, status >= 500 ? "HTTP %d" : "unexpected HTTP %d (redirects are not "
                      "followed)", status);
      lua_replace(L, 6);
    }
    if (status < 400)
      info.retryable = 0;
  } else {
    if (!has_error) {
      /* an error page from something in between: asking again will not change it */
      info.retryable = 0;
      lua_pushfstring(L, "HTTP %d answer is not a documented error (%s)", status,
                      decoded ? "no error string, or a field of the wrong type" : "not JSON");
      return bad_response(L, &info);
    }
    info.kind = kind_of_status(status);
    info.retryable = status == 429; /* the queue was full: no job was made */
    if (status == 429) {
      if (lua_type(L, 7) == LUA_TSTRING)
        info.retry_after = details_retry_after(L, 7);
      if (info.retry_after < 0)
        info.retry_after = header_retry_after(headers, hlen);
    }
  }
  /* a wait the server asks for is honoured up to a day; beyond that (or not finite) it is
   * not a wait anyone can make, so it counts as unknown */
  if (!(info.retry_after <= MAX_RETRY_AFTER))
    info.retry_after = -1;
  lua_pushnil(L);
  error_push(L, &info, NULL, 6, lua_type(L, 7) == LUA_TSTRING ? 7 : 0);
  return 2;
}
