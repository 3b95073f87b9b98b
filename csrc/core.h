/* core.h: what the files of faceswap.core share. Each .c owns one concern:
 *   cjson.c     JSON text <-> Lua values through a private lua-cjson instance
 *   request.c   validate params, build method/path/content-type/body (no I/O)
 *   command.c   the command table, and the builder of every command but headshot
 *   response.c  status + headers + body -> job or error object (no I/O)
 *   job.c       the read-only job userdata
 *   error.c     error objects
 *   transport_curl.c  the libcurl transport (the only file that does network I/O)
 *   files.c     isatty, exclusive file creation, the locked append file, for the command line
 *   signals.c   SIGINT/SIGTERM as a flag, for the command line's batch
 *   module.c    luaopen_faceswap_core: wires the above into one Lua table */
#ifndef FACESWAP_CORE_H
#define FACESWAP_CORE_H

#include <stddef.h>
#include "compat.h"

#define FACESWAP_JOB_MT "faceswap.job"
#define FACESWAP_ERROR_MT "faceswap.error"
#define FACESWAP_TRANSPORT_MT "faceswap.transport"

/* Limits the server enforces, mirrored locally (useapi-faceswap.md). */
#define FACESWAP_MAX_REPLY_CHARS 1024
#define FACESWAP_BOUNDARY_MAX 70 /* RFC 2046 */

/* cjson.c: JSON through a private lua-cjson instance */
#define FACESWAP_JSON_MAX_DEPTH 65 /* arrays and objects inside each other, the outermost included */
/* Pushes the value of JSON text and returns 1, or pushes "<problem> at byte N" and returns 0.
 * Members whose value is null are left out, null array elements are the NULL lightuserdata,
 * integral numbers are integers on 5.3+. */
int core_json_decode(lua_State *L, const char *s, size_t len);
/* Pushes the JSON text of the value at idx and returns 1, or pushes why not and returns 0. */
int core_json_encode(lua_State *L, int idx);
/* Decodes the string at idx as lua-cjson gives it (nulls as cjson.null, numbers as they come):
 * pushes it and returns 1, or pushes "<problem> at byte N" and returns 0. *empty_object tells
 * whether the text has an empty object, which lua-cjson makes the same as an empty array. */
int json_decode_raw(lua_State *L, int idx, int *empty_object);
/* A copy of the value at idx with the conventions of core_json_decode. */
void json_push_clean(lua_State *L, int idx);
/* The lexical checks lua-cjson leaves out (UTF-8, control bytes, unterminated strings). */
int json_precheck(const char *s, size_t len, const char **msg, size_t *pos, int *empty_object);
void json_open(lua_State *L);

/* error.c */
typedef struct {
  const char *kind;      /* one of the kinds of API.md */
  int code;              /* HTTP status, 0 for none */
  int sent;              /* 0: surely never reached the server */
  int retryable;
  double retry_after;    /* < 0 when unknown */
} error_info;
/* Pushes a new error object; message and details are taken from the stack when their index is
 * non-zero (strings), or from msg when idx_error is 0. */
void error_push(lua_State *L, const error_info *info, const char *msg, int idx_error, int idx_details);
int error_is(lua_State *L, int idx);
void error_open(lua_State *L);
int core_error_new(lua_State *L);

/* job.c */
/* Makes a job of the JSON text at json_idx: pushes it and returns 1, or pushes why the text is
 * not a job (a string) and returns 0. */
int job_push_json(lua_State *L, int json_idx);
int job_is(lua_State *L, int idx);
void job_open(lua_State *L);
int core_decode(lua_State *L);

/* request.c */
int core_build_headshot(lua_State *L);
int core_build_get(lua_State *L);
size_t utf8_length(const char *s, size_t len, int *valid);
void request_push_rng(lua_State *L); /* the boundary generator, build_headshot's upvalue */
/* check_text and make_boundary, for command.c's builder */
const char *request_check_text(lua_State *L, int idx, const char *what, const char *name,
                               int multiline, size_t *len, size_t *chars);
size_t request_make_boundary(void *rng, char *out);

/* command.c: the command table */
enum { ANSWER_JOB, ANSWER_JOBIDS, ANSWER_ACCOUNT, ANSWER_ACCOUNTS, ANSWER_NONE };
int core_build_command(lua_State *L); /* an upvalue: the boundary generator */
int core_commands(lua_State *L);
/* The ANSWER_* a command's answer is read as, and whether asking again is safe; -1 for a
 * name that is not a command of the table. */
int command_answer(const char *name, int *safe);
/* Reads a 2xx answer that is not a job (ANSWER_*): pushes it and returns 1, or pushes why it
 * is not the documented answer and returns 0. */
int command_read_answer(lua_State *L, int answer, int status, int body_idx);

/* response.c */
int core_read_response(lua_State *L);

/* files.c */
int core_isatty(lua_State *L);
int core_write_new(lua_State *L);
int core_open_append(lua_State *L);

/* signals.c */
#include <signal.h>
extern volatile sig_atomic_t faceswap_signal; /* the signal caught, 0 for none */
int core_catch_signals(lua_State *L);
int core_interrupted(lua_State *L);

/* transport_curl.c */
int core_transport_new(lua_State *L);
int core_url_problem(lua_State *L);
void transport_open(lua_State *L);

#endif
