/* fault.c: what can go wrong on the way to an answer, each fault once: its error kind, whether
 * asking again can ever help, and its words. Both transports take their errors from here: the
 * libcurl one (transport_curl.c) through fault_push, the nginx one (lua/faceswap/resty/
 * transport.lua) through core.fault. The words of the rows marked "libcurl's" are libcurl's
 * own for that fault: the libcurl transport passes libcurl's error buffer in their place, and
 * the nginx transport fills them in, so that a user reads the same text under either
 * (docs/faults.md). The transport says what only it knows: whether any of the request left
 * (`sent`), whether sending it again could act twice (`post`) and the status that came. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core.h"

typedef struct {
  const char *name;
  const char *kind;
  int final;         /* never retryable: the same request fails the same way, or may act twice */
  const char *text;  /* %s and %d only */
} fault_row;

/* In the order of the FAULT_* enum of core.h. */
static const fault_row faults[FAULT_COUNT] = {
  [FAULT_OTHER] = {"other", "transport", 0, "%s"},
  [FAULT_OVERSIZE] = {"oversize", "bad_response", 1, "answer larger than %s (%d bytes)"},
  [FAULT_FRAMING] = {"framing", "transport", 0, "answer with Content-Length headers that disagree"},
  [FAULT_NOT_RESENT] = {"not_resent", "transport", 1, "connection lost after the request was "
                        "sent; not resent, since the server may have acted on it"},
  [FAULT_CUT_HEADERS] = {"cut_headers", "transport", 0,
                         "connection closed before the answer's headers ended"},
  [FAULT_NO_MEMORY] = {"no_memory", "transport", 0, "not enough memory for the answer"},
  [FAULT_FORKED] = {"forked", "transport", 0, "the process forked while this request was in "
                    "flight; its answer goes to the parent process"},
  [FAULT_REFUSED_URL] = {"refused_url", "invalid_request", 1, "refused to fetch %s (%s)"},
  [FAULT_CONNECT] = {"connect", "transport", 0, "connect: %s"},
  [FAULT_TLS] = {"tls", "transport", 1, "TLS: %s"},
  [FAULT_BIG_HEADERS] = {"big_headers", "transport", 0, "headers too large"},
  /* libcurl's */
  [FAULT_TIMEOUT] = {"timeout", "timeout", 0,
                     "Operation timed out after %d milliseconds with %d bytes received"},
  [FAULT_TIMEOUT_OF] = {"timeout_of", "timeout", 0,
                        "Operation timed out after %d milliseconds with %d out of %d bytes received"},
  [FAULT_CONNECT_TIMEOUT] = {"connect_timeout", "timeout", 0,
                             "Connection timed out after %d milliseconds"},
  [FAULT_TLS_TIMEOUT] = {"tls_timeout", "timeout", 0, "SSL connection timeout"},
  [FAULT_REFUSED] = {"refused", "transport", 0,
                     "Failed to connect to %s port %d after %d ms: Couldn't connect to server"},
  [FAULT_CERTIFICATE] = {"certificate", "transport", 1, "SSL certificate problem: %s"},
  [FAULT_BAD_URL] = {"bad_url", "transport", 1, "%s"},
  [FAULT_HTTP09] = {"http09", "transport", 1, "Received HTTP/0.9 when not allowed"},
  [FAULT_SEND] = {"send", "transport", 0, "Send failure: %s"},
  [FAULT_EMPTY] = {"empty", "transport", 0, "Empty reply from server"},
  [FAULT_RESET] = {"reset", "transport", 0, "Recv failure: Connection reset by peer"},
  [FAULT_CUT_BODY] = {"cut_body", "transport", 0, "transfer closed with %d bytes remaining to read"},
  [FAULT_CUT_CHUNKED] = {"cut_chunked", "transport", 0,
                         "transfer closed with outstanding read data remaining"},
  [FAULT_BAD_LENGTH] = {"bad_length", "transport", 0, "Invalid Content-Length: value"},
  [FAULT_CHUNK_SIZE] = {"chunk_size", "transport", 0,
                        "Illegal or missing hexadecimal sequence in chunked-encoding"},
  [FAULT_CHUNK_LONG] = {"chunk_long", "transport", 0,
                        "Too long hexadecimal number in chunked-encoding"},
  [FAULT_BAD_CHUNK] = {"bad_chunk", "transport", 0,
                       "Malformed encoding found in chunked-encoding"},
  /* a NUL in a header line of any block, 1xx or the answer (RFC 9110, 5.5: the answer is to be
   * refused; the same request gets the same bytes, as for a bad status line); one in a status
   * line is FAULT_STATUS_LINE's, as RFC 9112, 4 has no NUL in a reason */
  [FAULT_NUL] = {"nul", "transport", 1, "Nul byte in header"},
  /* libcurl's, for a line of a head (the answer's or a 1xx's) that is no field line: no colon,
   * or a folded one first in its block, which continues nothing (RFC 9112, 5 and 2.2); a
   * malformed head, refused and not retried, as a NUL */
  [FAULT_COLON] = {"colon", "transport", 1, "Header without colon"},
  /* ours for what libcurl words in several ways, or takes: HTTP/1.0 or HTTP/1.1, one space,
   * a status of three digits (100-999), then a space or the line's end (RFC 9112, 4) */
  [FAULT_STATUS_LINE] = {"status_line", "transport", 1, "answer with an invalid status line"},
};

static void push_error(lua_State *L, int fault, int sent, int post, int code) {
  const fault_row *f = &faults[fault];
  error_info info = {.kind = f->kind, .code = code, .sent = sent,
                     .retryable = !f->final && (!sent || !post), .retry_after = -1};
  error_push(L, &info, NULL, -1, 0); /* the text is on the stack */
  lua_remove(L, -2);
}

void fault_push(lua_State *L, int fault, int sent, int post, int code, const char *msg, ...) {
  lua_pushnil(L);
  if (msg) {
    lua_pushstring(L, msg);
  } else {
    va_list ap;
    va_start(ap, msg);
    lua_pushvfstring(L, faults[fault].text, ap);
    va_end(ap);
  }
  push_error(L, fault, sent, post, code);
}

/* core.fault(name, sent, post, code, ...) -> the error object of that fault, its text filled
 * in from ... (a %d takes a number, a %s a string). */
int core_fault(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *p;
  int fault, arg = 5, code = (int)luaL_optinteger(L, 4, 0);
  luaL_Buffer b;
  for (fault = 0; fault < FAULT_COUNT && strcmp(faults[fault].name, name) != 0; fault++)
    ;
  if (fault == FAULT_COUNT)
    return luaL_argerror(L, 1, lua_pushfstring(L, "no fault named '%s'", name));
  luaL_buffinit(L, &b);
  for (p = faults[fault].text; *p; p++) {
    if (p[0] == '%' && p[1] == 's') {
      luaL_addstring(&b, luaL_checkstring(L, arg++));
      p++;
    } else if (p[0] == '%' && p[1] == 'd') {
      char digits[32];
      snprintf(digits, sizeof digits, "%.0f", (double)luaL_checknumber(L, arg++));
      luaL_addstring(&b, digits);
      p++;
    } else {
      luaL_addchar(&b, *p);
    }
  }
  luaL_pushresult(&b);
  push_error(L, fault, lua_toboolean(L, 2), lua_toboolean(L, 3), code);
  return 1;
}
