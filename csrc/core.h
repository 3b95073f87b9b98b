/* core.h: what the files of faceswap.core share. Each .c owns one concern:
 *   cjson.c     JSON text <-> Lua values through a private lua-cjson instance
 *   command.c   the command table, and the one builder that reads it: params checked,
 *               method, path, content type and body built
 *   form.c      text checks, percent-encoding, boundaries, multipart and JSON bodies (no I/O)
 *   upload.c    files to upload: opened, size-checked, sniffed; the bodies that send them
 *               from their descriptors (reads files, nothing else)
 *   response.c  status + headers + body -> job or error object (no I/O)
 *   job.c       the read-only job userdata
 *   error.c     error objects
 *   fault.c     the faults of a transfer: kind, retryable and words, for both transports
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

/* Limits the server enforces, mirrored locally (docs/api.md, docs/commands.md). */
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
  const char *kind;      /* one of the kinds of docs/api.md */
  int code;              /* HTTP status, 0 for none */
  int sent;              /* 0: surely never reached the server */
  int retryable;
  double retry_after;    /* < 0 when unknown */
} error_info;
/* Pushes a new error object; message and details are taken from the stack when their index is
 * non-zero (strings), or from msg when idx_error is 0. */
void error_push(lua_State *L, const error_info *info, const char *msg, int idx_error, int idx_details);
/* Pushes nil and a new error object (as error_push) and returns 2, for `return nil, err`. */
int error_result(lua_State *L, const error_info *info, const char *msg, int idx_error);
int error_is(lua_State *L, int idx);
void error_open(lua_State *L);
int core_error_new(lua_State *L);

/* fault.c: the faults of a transfer, for both transports (core.fault for the nginx one) */
enum {
  FAULT_OTHER, FAULT_OVERSIZE, FAULT_FRAMING, FAULT_NOT_RESENT, FAULT_CUT_HEADERS,
  FAULT_NO_MEMORY, FAULT_FORKED, FAULT_REFUSED_URL, FAULT_CONNECT, FAULT_TLS, FAULT_BIG_HEADERS,
  FAULT_TIMEOUT,
  FAULT_TIMEOUT_OF, FAULT_CONNECT_TIMEOUT, FAULT_TLS_TIMEOUT, FAULT_REFUSED, FAULT_CERTIFICATE,
  FAULT_BAD_URL, FAULT_HTTP09, FAULT_SEND, FAULT_EMPTY, FAULT_RESET, FAULT_CUT_BODY,
  FAULT_CUT_CHUNKED, FAULT_BAD_LENGTH, FAULT_CHUNK_SIZE, FAULT_CHUNK_LONG, FAULT_BAD_CHUNK,
  FAULT_NUL, FAULT_COLON, FAULT_STATUS_LINE,
  FAULT_COUNT
};
/* Pushes nil and the error object of the fault: its words are msg when given (libcurl's), else
 * its row's, filled in from the arguments as lua_pushfstring does. */
void fault_push(lua_State *L, int fault, int sent, int post, int code, const char *msg, ...);
int core_fault(lua_State *L);

/* job.c */
/* Makes a job of the JSON text at json_idx: pushes it and returns 1, or pushes why the text is
 * not a job (a string) and returns 0. */
int job_push_json(lua_State *L, int json_idx);
int job_is(lua_State *L, int idx);
void job_open(lua_State *L);
int core_job_runs(lua_State *L);
int core_decode(lua_State *L);

/* form.c: the text rules, percent-encoding, boundaries, and the multipart and JSON writers */
size_t utf8_length(const char *s, size_t len, int *valid);
/* Raises unless the string at idx is text: UTF-8 without control bytes, except that free text
 * (multiline: a prompt, a replyRef) may hold tabs and line breaks. *chars: its code points. */
const char *form_check_text(lua_State *L, int idx, const char *what, const char *name,
                            int multiline, size_t *len, size_t *chars);
/* The one channel rule: NULL for a channel, or why not. form_check_channel raises on misuse. */
const char *form_channel_problem(const char *s, size_t len);
const char *form_check_channel(lua_State *L, int idx, const char *what, size_t *len,
                               size_t *chars);
/* The one percent-encoder: jobids in queries, channels in paths. */
void form_add_escaped(luaL_Buffer *buf, const char *s, size_t len);
/* Pushes the boundary generator: the userdata upvalue the builders keep. */
void form_push_rng(lua_State *L);

typedef struct upload_file upload_file; /* upload.c: a file opened and checked for upload */
typedef struct upload_body upload_body; /* upload.c: a body whose file parts stay on disk */

/* One part of a body. s NULL: absent. A file has a filename and type; its bytes are at s, or
 * still on disk in file (len bytes, read from its descriptor as the body is sent). */
typedef struct {
  const char *name;
  const char *s;
  size_t len;
  const char *filename, *type;
  size_t filename_len;
  upload_file *file;
} form_part;
/* Pushes the content type and the multipart/form-data body of the parts, with a boundary that
 * occurs in no part (given first, when it is one). The body is a string, or for parts with a
 * file on disk an upload_body userdata whose file parts are read only as it is sent. */
void form_push_multipart(lua_State *L, const form_part *parts, int n, void *rng,
                         const char *given, size_t given_len);
/* Pushes the JSON object of the parts (strings), in their order; what names the command. */
void form_push_json(lua_State *L, const form_part *parts, int n, const char *what);

/* upload.c: files to upload, and the bodies that send them from their descriptors */
/* Raises unless the value at idx can be a file's source (a path, a table, an opened file);
 * marks p present. */
void upload_check_source(lua_State *L, int idx, const char *what, form_part *p);
/* Reads the source at idx into p (bytes, or a file opened and checked; filename, type):
 * returns 1, or pushes why it cannot be uploaded and returns 0. Misuse in a table source
 * raises. A file opened here is pushed (its box) and *own set to its index, else *own is 0. */
int upload_load(lua_State *L, int idx, const char *what, form_part *p, int *own);
/* Closes the box of a file upload_load opened itself (*own, its stack index), once the body
 * that sends it holds it: the descriptor then lives as long as the body. */
void upload_close_own(lua_State *L, int idx);
/* The first bytes of an opened file (its sniffed head), kept in memory: n of them. */
const char *upload_file_head(const upload_file *f, size_t *n);
/* Whether pat occurs anywhere in the file (reads it whole: only for a boundary given by the
 * caller, never for a random one). -1 when it cannot be read. */
int upload_file_contains(const upload_file *f, const char *pat, size_t len);
/* Pushes a new body userdata of text_len bytes of text (its text to be written at the
 * returned pointer) and nfiles holes, each filled by upload_body_hole in order. */
char *upload_push_body(lua_State *L, size_t text_len, int nfiles, upload_body **out);
/* The k-th file of the body goes at byte `at` of its text; field names the part. */
void upload_body_hole(upload_body *b, int k, size_t at, upload_file *f, const char *field);

/* Why sending a body's file failed: which part, and an errno or UPLOAD_CHANGED. */
#define UPLOAD_CHANGED (-2)
typedef struct { int part, err; unsigned long long size_then, size_now; } upload_fault;
/* The body at idx, or NULL when it is not one; raises for one that was closed. */
upload_body *upload_body_test(lua_State *L, int idx);
size_t upload_body_length(const upload_body *b);
void upload_body_ref(upload_body *b);
void upload_body_unref(upload_body *b);
/* Copies up to n bytes of the body from offset pos to out, the file parts read from their
 * descriptors: how many (0 at the end), or (size_t)-1 with *fault filled when a file cannot
 * be read or is no longer what was checked (its size, or its modification time). */
size_t upload_body_read(upload_body *b, size_t pos, char *out, size_t n, upload_fault *fault);
/* Pushes nil and the error object of a body that could not be sent for fault. */
int upload_push_fault(lua_State *L, const upload_body *b, const upload_fault *fault);
/* core.upload_file(path) -> an opened file (for a param), or nil, message */
int core_upload_file(lua_State *L);
void upload_open(lua_State *L);

/* command.c: the command table */
enum { ANSWER_JOB, ANSWER_JOBIDS, ANSWER_ACCOUNT, ANSWER_ACCOUNTS, ANSWER_NONE };
/* core.build_command, core.build_headshot, core.build_get: each has the boundary generator
 * (form_push_rng) as its upvalue */
int core_build_command(lua_State *L);
int core_build_headshot(lua_State *L);
int core_build_get(lua_State *L);
int core_commands(lua_State *L);
/* The ANSWER_* a command's answer is read as, and whether asking again is safe; -1 for a
 * name that is not a command of the table. */
int command_answer(const char *name, int *safe);
/* Reads a 2xx answer that is not a job (ANSWER_*): pushes it and returns 1, or pushes why it
 * is not the documented answer and returns 0. */
int command_read_answer(lua_State *L, int answer, int status, int body_idx);

/* response.c */
int core_read_response(lua_State *L);
/* For an answer that is not a 2xx whose body the transport stopped reading at its limit
 * (bytes: its Content-Length when known, else the limit it passed): pushes nil and the error
 * core.read_response gives an error body too large to read, the status deciding the kind.
 * post: the request may not be sent again. Returns 2. */
int response_push_unread(lua_State *L, int status, const char *headers, size_t hlen,
                         size_t bytes, int known, size_t limit, int post);
/* core.read_unread(status, headers, bytes, known, limit, post): the same, for the nginx
 * transport */
int core_read_unread(lua_State *L);

/* files.c */
int core_isatty(lua_State *L);
int core_write_new(lua_State *L);
int core_link_new(lua_State *L);
int core_open_append(lua_State *L);

/* signals.c */
#include <signal.h>
extern volatile sig_atomic_t faceswap_signal; /* the signal caught, 0 for none */
int core_catch_signals(lua_State *L);
int core_interrupted(lua_State *L);

/* transport_curl.c */
int core_transport_new(lua_State *L);
int core_url_problem(lua_State *L);
/* Why a download may not be renamed onto path (transport_curl.c), or NULL: an existing
 * directory, or an existing node that is neither a regular file nor a symbolic link. */
const char *download_path_problem(const char *path);
int core_download_path_problem(lua_State *L);
void transport_open(lua_State *L);

#endif
