/* response.c: reading an answer. status + headers + body become a job or an error object with
 * the kind, code, text, retry_after, retryable and sent of docs/api.md. Pure: no I/O, so specs and
 * fuzzers call it directly. Which kind when two could fit: the status decides for a 429
 * (`rate_limited`) and a 5xx (`server`) whatever the body, as a CDN answers them with its own
 * page; a 2xx or another 4xx whose body is not the documented JSON is `bad_response`.
 * An error answer's body is decoded only up to ERROR_BODY_MAX bytes (useapi's are well under
 * 1 KiB): a larger one is not read, so an 8 MiB error page costs no more memory than its bytes.
 * One past the transport's max_response is not even received: response_push_unread gives it
 * the same error, its status deciding the kind as for any other. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "core.h"

#define MAX_RETRY_AFTER 1e10 /* s: a longer retry_after (300 years) reads as this */
#define ERROR_BODY_MAX 65536 /* bytes of an error answer's body that are decoded */
#define BODY_SHOWN 100       /* bytes of an undocumented error page shown in the error text */

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
      const char *v = line + sizeof name - 1, *ve = eol, *p;
      double secs = 0, scale = 1;
      int dot = 0;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      if (ve == v)
        return -1;
      if (*v >= '0' && *v <= '9') {
        /* delta-seconds, a fraction allowed, any number of digits (too many for a double read
         * as infinity, capped by the caller); read here, not by strtod, whose decimal point is
         * the locale's (a host with LC_NUMERIC=de_DE would read "2.5" as 2) */
        for (p = v; p < ve; p++) {
          if (*p == '.' && !dot) {
            dot = 1;
          } else if (*p >= '0' && *p <= '9') {
            if (dot)
              secs += (*p - '0') * (scale /= 10);
            else
              secs = secs * 10 + (*p - '0');
          } else {
            return -1; /* no hex, exponents or signs */
          }
        }
        return secs;
      } else {
        time_t when, now = time(NULL);
        if ((size_t)(ve - v) >= sizeof value)
          return -1; /* no HTTP date is that long */
        memcpy(value, v, (size_t)(ve - v));
        value[ve - v] = '\0';
        when = curl_getdate(value, NULL);
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

/* Pushes "HTTP <status>", and after ": " a short, readable start of an error page that is not
 * useapi's JSON: its <title> when it has one, else its text without tags; runs of white space
 * and control bytes become one space, invalid UTF-8 a '?', at most BODY_SHOWN bytes. */
static const char *title_of(const char *b, size_t blen, size_t *len) {
  size_t i, j;
  for (i = 0; i + 7 <= blen; i++) {
    const char *gt;
    if (b[i] != '<' || !ascii_ieq(b + i + 1, "title", 5))
      continue;
    if ((gt = memchr(b + i, '>', blen - i)) == NULL)
      return NULL;
    for (j = (size_t)(gt - b) + 1; j + 8 <= blen; j++) {
      if (b[j] == '<' && ascii_ieq(b + j + 1, "/title", 6)) {
        *len = j - (size_t)(gt - b) - 1;
        return gt + 1;
      }
    }
    return NULL;
  }
  return NULL;
}

static void push_status_text(lua_State *L, int status, const char *b, size_t blen) {
  char out[BODY_SHOWN + 3];
  size_t n = 0, i, len, end = blen;
  int in_tag = 0, space = 0;
  const char *title = title_of(b, blen, &end);
  if (title)
    b = title;
  else
    end = blen;
  for (i = 0; i < end; i += len) {
    unsigned char c = (unsigned char)b[i];
    int valid;
    len = 1;
    if (c == '<' || in_tag) {
      in_tag = c != '>';
      space = n > 0 && !in_tag;
      continue;
    }
    if (c <= ' ' || c == 0x7F) {
      space = n > 0;
      continue;
    }
    if (c >= 0x80) {
      len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      if (len > end - i || (utf8_length(b + i, len, &valid), !valid))
        len = 1; /* shown as '?' */
    }
    if (n + (size_t)space + len > BODY_SHOWN)
      break;
    if (space)
      out[n++] = ' ';
    space = 0;
    if (len == 1 && c >= 0x80)
      out[n++] = '?';
    else
      memcpy(out + n, b + i, len), n += len;
  }
  if (n == 0) {
    lua_pushfstring(L, "HTTP %d", status);
    return;
  }
  if (i < end)
    memcpy(out + n, "\xE2\x80\xA6", 3), n += 3; /* … */
  lua_pushfstring(L, "HTTP %d: ", status);
  lua_pushlstring(L, out, n);
  lua_concat(L, 2);
}

/* bad_response with a message built from the format on the stack top. */
static int bad_response(lua_State *L, error_info *info) {
  info->kind = "bad_response";
  info->retry_after = -1;
  error_result(L, info, NULL, -1);
  lua_remove(L, -3); /* the message, under nil and the error */
  return 2;
}

/* An error answer's body that was not read: its size (known, or more than `bytes` when the
 * transport stopped at its limit without a Content-Length) and the cap that applied. */
typedef struct {
  size_t bytes, cap;
  int known;
} unread_t;

/* Pushes nil and the error for an answer that is not a 2xx: the body at body (blen bytes), or,
 * when unread is given, a body the transport did not read. Returns 2. */
static int read_error(lua_State *L, error_info *info, int status, const char *headers,
                      size_t hlen, const char *body, size_t blen, const unread_t *unread) {
  /* a body past the cap is not decoded: its error text cannot be known, only its status */
  int too_big = unread != NULL || blen > ERROR_BODY_MAX, decoded, has_error;
  int base = lua_gettop(L), DECODED = base + 1, ERROR = base + 2, DETAILS = base + 3,
      CODE = base + 4;
  decoded = !too_big && core_json_decode(L, body, blen) && lua_istable(L, DECODED);
  if (!decoded) {
    lua_settop(L, base);
    lua_pushnil(L); /* keeps DECODED meaning "the decoded body" */
  }
  if (decoded) {
    lua_getfield(L, DECODED, "error");
    lua_getfield(L, DECODED, "errorDetails");
    lua_getfield(L, DECODED, "code");
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  has_error = lua_type(L, ERROR) == LUA_TSTRING &&
              (lua_type(L, DETAILS) == LUA_TSTRING || lua_isnil(L, DETAILS)) &&
              (lua_type(L, CODE) == LUA_TNUMBER || lua_isnil(L, CODE));
  if (too_big && status >= 400) {
    size_t bytes = unread ? unread->bytes : blen, cap = unread ? unread->cap : ERROR_BODY_MAX;
    lua_pushfstring(L, "HTTP %d answer of %s%d bytes not read (an error answer is read up to %d "
                    "bytes)", status, unread && !unread->known ? "more than " : "",
                    (int)(bytes > 0x7FFFFFFF ? 0x7FFFFFFF : bytes), (int)cap);
    lua_replace(L, ERROR);
  }

  if (status >= 500 || status < 400) {
    info->kind = "server";
    info->retry_after = header_retry_after(headers, hlen);
    if (!has_error && !(too_big && status >= 500)) {
      if (status >= 500)
        push_status_text(L, status, body, blen);
      else
        lua_pushfstring(L, "unexpected HTTP %d (redirects are not followed)", status);
      lua_replace(L, ERROR);
    }
    if (status < 400)
      info->retryable = 0;
  } else if (status == 429) {
    /* the queue was full, or a CDN's rate limit: no job was made, asking later is right */
    info->kind = "rate_limited";
    info->retryable = 1;
    if (!has_error && !too_big) {
      push_status_text(L, status, body, blen);
      lua_replace(L, ERROR);
    }
    if (lua_type(L, DETAILS) == LUA_TSTRING)
      info->retry_after = details_retry_after(L, DETAILS);
    if (info->retry_after < 0)
      info->retry_after = header_retry_after(headers, hlen);
  } else {
    info->retryable = 0;
    if (!has_error && (!too_big || !strcmp(kind_of_status(status), "server"))) {
      /* an error page from something in between: asking again will not change it */
      if (too_big)
        lua_pushvalue(L, ERROR);
      else
        lua_pushfstring(L, "HTTP %d answer is not a documented error (%s)", status,
                        decoded ? "no error string, or a field of the wrong type" : "not JSON");
      return bad_response(L, info);
    }
    info->kind = kind_of_status(status);
  }
  /* however long the server asks for is kept: the retry policy decides whether to wait it
   * (up to its max_retry_after) or to return the error at once, retry_after telling how long;
   * past MAX_RETRY_AFTER (infinity too) it reads as MAX_RETRY_AFTER, longer than any wait a
   * retry option allows, so it is never waited and never dropped */
  if (info->retry_after > MAX_RETRY_AFTER)
    info->retry_after = MAX_RETRY_AFTER;
  lua_pushnil(L);
  error_push(L, info, NULL, ERROR, lua_type(L, DETAILS) == LUA_TSTRING ? DETAILS : 0);
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
  /* a GET may always be asked again; a POST answered badly may still have made a job */
  error_info info = {.kind = "server", .code = status, .sent = 1,
                     .retryable = op == OP_COMMAND ? safe : op != OP_HEADSHOT, .retry_after = -1};
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
  return read_error(L, &info, status, headers, hlen, body, blen, NULL);
}

int response_push_unread(lua_State *L, int status, const char *headers, size_t hlen,
                         size_t bytes, int known, size_t limit, int post) {
  error_info info = {.kind = "server", .code = status, .sent = 1, .retryable = !post,
                     .retry_after = -1};
  unread_t unread;
  unread.bytes = bytes;
  unread.known = known;
  unread.cap = limit < ERROR_BODY_MAX ? limit : ERROR_BODY_MAX;
  return read_error(L, &info, status, headers, hlen, "", 0, &unread);
}

/* core.read_unread(status, headers, bytes, known, limit, post) -> nil, err: the error of an
 * answer (status 300 or more) whose body a transport written in Lua stopped reading at its
 * limit, as response_push_unread gives libcurl's: bytes is its Content-Length when known is
 * true, else the limit it passed; post: the request may not be sent again. */
int core_read_unread(lua_State *L) {
  int status = (int)luaL_checkinteger(L, 1);
  size_t hlen;
  const char *headers = luaL_checklstring(L, 2, &hlen);
  lua_Number bytes = luaL_checknumber(L, 3), limit = luaL_checknumber(L, 5);
  luaL_argcheck(L, status >= 300 && status <= 999, 1, "an HTTP status from 300 to 999 expected");
  luaL_argcheck(L, bytes >= 0, 3, "a number of bytes expected");
  luaL_argcheck(L, limit >= 0 && limit <= 1e15, 5, "a number of bytes expected");
  if (bytes > 1e15) /* a Content-Length of 10^23: shown capped, as libcurl's */
    bytes = 1e15;
  return response_push_unread(L, status, headers, hlen, (size_t)bytes, lua_toboolean(L, 4),
                              (size_t)limit, lua_toboolean(L, 6));
}
