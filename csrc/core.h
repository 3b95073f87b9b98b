/* core.h: what the files of faceswap.core share. Each .c owns one concern:
 *   json.c      strict JSON text -> Lua values
 *   request.c   validate params, build method/path/content-type/body (no I/O)
 *   response.c  status + headers + body -> job or error object (no I/O)
 *   job.c       the read-only job userdata
 *   error.c     error objects
 *   transport_curl.c  the libcurl transport (the only file that does I/O)
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

/* The operations the core knows; they decide response reading and retry safety. */
typedef enum { OP_HEADSHOT, OP_JOB, OP_CANCEL } faceswap_op;

/* json.c: pushes the value of JSON text and returns 1, or pushes a message and returns 0. */
int core_json_decode(lua_State *L, const char *s, size_t len);

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
/* Validates the decoded JSON table at idx and pushes a job made of it and the raw JSON text at
 * json_idx. On a wrong field type pushes nothing and returns 0 with *why set. */
int job_push(lua_State *L, int idx, int json_idx, const char **why, const char **field);
int job_is(lua_State *L, int idx);
void job_open(lua_State *L);
int core_decode(lua_State *L);

/* request.c */
int core_build_headshot(lua_State *L);
int core_build_get(lua_State *L);
size_t utf8_length(const char *s, size_t len, int *valid);
void request_push_rng(lua_State *L); /* the boundary generator, build_headshot's upvalue */

/* response.c */
int core_read_response(lua_State *L);
faceswap_op op_check(lua_State *L, int idx);

/* transport_curl.c */
int core_transport_new(lua_State *L);
void transport_open(lua_State *L);

#endif
