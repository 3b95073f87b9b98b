/* command.c: the commands of the InsightFaceSwap family as data, and the one builder that
 * reads them. Each row says a command's method and path, its fields in the order the server
 * takes them (text, free text, a channel, a file...; required or not; in the body, the path or
 * the query), the encodings of its body, how its params are given, its mode (blocking, a job,
 * or either) and the shape of its answer. Validation and every request (headshot, job and
 * cancel included), the Lua methods (init.lua), the command line (cli.lua) and the docs' table
 * come from here: adding a command is a row (docs/development.md, "Adding a command"). The
 * text rules and body writers are form.c's, the files upload.c's. No I/O but opening the
 * files a caller uploads and reading their first bytes, before anything is sent. */
#include <string.h>
#include "core.h"

/* A field's kind: what its value may be, and the checks it gets. */
enum {
  K_TEXT,       /* a line of text */
  K_PROSE,      /* free text: tabs and line breaks allowed */
  K_FILE,       /* a file (upload.c) */
  K_CHANNEL,    /* a channel: text under the channel rule (form.c) */
  K_CHANNEL_ID, /* a channel that must be a Discord id, or the server's 400 */
  K_URL,        /* replyUrl: a line of text of at most 1024 characters, or the server's 400 */
  K_REF,        /* replyRef: free text of at most 1024 characters, or the server's 400 */
  K_JOBID       /* a jobid: a line of text, or a job (its jobid is taken) */
};
/* Where a field goes: the body (the default), the path's last segment, both, the query. */
enum { AT_BODY, AT_PATH, AT_BOTH, AT_QUERY };
enum { M_BLOCKING, M_JOB, M_EITHER, M_NONE };
enum { B_FORM = 1, B_JSON = 2 }; /* a body's encodings: multipart/form-data, JSON */
/* How the params come: a table of fields; none; a string (the first field) or a table; the
 * first field's value alone. */
enum { A_TABLE, A_NONE, A_STRING_OR_TABLE, A_VALUE };

typedef struct {
  const char *name;
  unsigned char kind, required;
  unsigned char common;  /* channel, replyUrl, replyRef: the client's defaults fill the first
                            two; core.commands() shows them as the row's `common` */
  unsigned char at;      /* AT_* */
  const char *metavar;   /* the command line's name for it; NULL: its name in capitals */
} field_def;

#define MAX_FIELDS 7
typedef struct {
  const char *name;      /* the Lua method and the CLI subcommand */
  const char *method, *path;
  unsigned char mode, answer; /* M_*, ANSWER_* of core.h */
  unsigned char bodies;  /* B_* of the encodings its body takes, B_FORM the default; 0: none */
  unsigned char params;  /* A_* */
  unsigned char attachments; /* its job brings files to download */
  unsigned char confirm; /* destroys what cannot be had back: the command line asks first */
  unsigned char unlisted; /* left out of core.commands(): the client and the command line
                             still write their own method and subcommand */
  const char *summary;   /* one line for the CLI's help and the docs */
  field_def fields[MAX_FIELDS];
} command_def;

/* A field that must be there, one that may, one the command line names otherwise */
#define REQUIRED(n, k) {.name = n, .kind = k, .required = 1}
#define OPTIONAL(n, k) {.name = n, .kind = k}
#define NAMED(n, k, m) {.name = n, .kind = k, .required = 1, .metavar = m}
/* channel, replyUrl and replyRef, which every command that posts to Discord takes */
#define COMMON_FIELDS                                                                        \
  {.name = "channel", .kind = K_CHANNEL, .common = 1},                                        \
  {.name = "replyUrl", .kind = K_URL, .common = 1},                                           \
  {.name = "replyRef", .kind = K_REF, .common = 1}

static const command_def commands[] = {
  {.name = "headshot", .method = "POST", .path = "/headshot", .mode = M_JOB,
   .answer = ANSWER_JOB, .bodies = B_FORM | B_JSON, .params = A_STRING_OR_TABLE,
   .attachments = 1,
   .summary = "a headshot of the saved face, with the background the prompt describes",
   .fields = {NAMED("prompt", K_PROSE, "PROMPT"), COMMON_FIELDS, OPTIONAL("options", K_TEXT)}},
  {.name = "saveid", .method = "POST", .path = "/saveid", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM,
   .summary = "save the face in an image under a name",
   .fields = {REQUIRED("idname", K_TEXT), REQUIRED("image", K_FILE), COMMON_FIELDS}},
  {.name = "swapid", .method = "POST", .path = "/swapid", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM, .attachments = 1,
   .summary = "put saved faces (names separated by commas) on an image",
   .fields = {REQUIRED("idname", K_TEXT), REQUIRED("image", K_FILE), COMMON_FIELDS}},
  {.name = "listid", .method = "POST", .path = "/listid", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM,
   .summary = "list the saved faces' names", .fields = {COMMON_FIELDS}},
  {.name = "setid", .method = "POST", .path = "/setid", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM,
   .summary = "make a saved face the default",
   .fields = {REQUIRED("idname", K_TEXT), COMMON_FIELDS}},
  {.name = "delid", .method = "DELETE", .path = "/delid", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM,
   .summary = "delete a saved face", .fields = {REQUIRED("idname", K_TEXT), COMMON_FIELDS}},
  {.name = "delall", .method = "DELETE", .path = "/delall", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM, .confirm = 1,
   .summary = "delete every saved face", .fields = {COMMON_FIELDS}},
  {.name = "inswapper", .method = "POST", .path = "/inswapper", .mode = M_BLOCKING,
   .answer = ANSWER_JOB, .bodies = B_FORM, .attachments = 1,
   .summary = "swap the default face onto an image posted in the channel",
   .fields = {NAMED("targetMessageId", K_TEXT, "MESSAGE_ID"), COMMON_FIELDS}},
  {.name = "picsi", .method = "POST", .path = "/picsi", .mode = M_EITHER,
   .answer = ANSWER_JOB, .bodies = B_FORM, .attachments = 1,
   .summary = "put the face of one image on an image, GIF or video",
   .fields = {NAMED("source_image", K_FILE, "SOURCE"),
              NAMED("target_image_gif_or_video", K_FILE, "TARGET"), OPTIONAL("options", K_TEXT),
              COMMON_FIELDS}},
  {.name = "changebg", .method = "POST", .path = "/changebg", .mode = M_JOB,
   .answer = ANSWER_JOB, .bodies = B_FORM, .attachments = 1,
   .summary = "replace an image's background with the one described",
   .fields = {REQUIRED("image", K_FILE), NAMED("a_background_photo_of", K_PROSE, "PROMPT"),
              OPTIONAL("options", K_TEXT), COMMON_FIELDS}},
  {.name = "jobs", .method = "GET", .path = "/jobs", .mode = M_NONE,
   .answer = ANSWER_JOBIDS, .params = A_NONE,
   .summary = "the ids of the jobs running now"},
  {.name = "accounts", .method = "GET", .path = "/account", .mode = M_NONE,
   .answer = ANSWER_ACCOUNTS, .params = A_NONE,
   .summary = "every configured account, keyed by channel"},
  {.name = "account", .method = "GET", .path = "/account/", .mode = M_NONE,
   .answer = ANSWER_ACCOUNT, .params = A_VALUE,
   .summary = "one account: server, channel, masked token, credits",
   .fields = {{.name = "channel", .kind = K_CHANNEL, .required = 1, .at = AT_PATH}}},
  {.name = "add_account", .method = "POST", .path = "/account/", .mode = M_NONE,
   .answer = ANSWER_NONE, .bodies = B_JSON,
   .summary = "configure an account: its Discord token, server and channel",
   .fields = {REQUIRED("discord", K_TEXT), REQUIRED("server", K_TEXT),
              {.name = "channel", .kind = K_CHANNEL_ID, .required = 1, .at = AT_BOTH}}},
  {.name = "delete_account", .method = "DELETE", .path = "/account/", .mode = M_NONE,
   .answer = ANSWER_NONE, .params = A_VALUE,
   .summary = "remove an account's configuration",
   .fields = {{.name = "channel", .kind = K_CHANNEL, .required = 1, .at = AT_PATH}}},
  {.name = "job", .method = "GET", .path = "/jobs/", .mode = M_NONE,
   .answer = ANSWER_JOB, .params = A_VALUE, .unlisted = 1,
   .summary = "a job as the server has it now",
   .fields = {{.name = "jobid", .kind = K_JOBID, .required = 1, .at = AT_QUERY}}},
  {.name = "cancel", .method = "GET", .path = "/jobs/cancel/", .mode = M_NONE,
   .answer = ANSWER_JOB, .params = A_VALUE, .unlisted = 1,
   .summary = "cancel a job",
   .fields = {{.name = "jobid", .kind = K_JOBID, .required = 1, .at = AT_QUERY}}},
#ifdef FACESWAP_TEST_COMMAND
  /* A row for the specs alone (`make testrow`: build/testrow, never installed): that this row
   * and nothing else gives a command its method, batch item, CLI subcommand and help, docs
   * row and types (spec/integration/add_command_spec.lua, docs/development.md). */
  {.name = "ping", .method = "POST", .path = "/ping", .mode = M_JOB,
   .answer = ANSWER_JOB, .bodies = B_FORM,
   .summary = "a job that answers the text (a test build's command)",
   .fields = {REQUIRED("text", K_TEXT), COMMON_FIELDS}},
#endif
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command_def *find(const char *name) {
  size_t i;
  for (i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

int command_answer(const char *name, int *safe) {
  const command_def *c = find(name);
  if (!c)
    return -1;
  *safe = strcmp(c->method, "GET") == 0;
  return c->answer;
}

static int n_fields(const command_def *c) {
  int n = 0;
  while (n < MAX_FIELDS && c->fields[n].name)
    n++;
  return n;
}

/* The field that is the path's last segment or the query's value, or NULL. */
static const field_def *url_field(const command_def *c) {
  int i;
  for (i = 0; i < n_fields(c); i++)
    if (c->fields[i].at != AT_BODY)
      return &c->fields[i];
  return NULL;
}

/* ---- core.commands(): the table as Lua data ---------------------------------------------- */

static void push_field(lua_State *L, const field_def *f, int all) {
  static const char *const kinds[] = {"text", "prose", "file", "text", "text", "text", "prose",
                                      "text"};
  static const char *const places[] = {"body", "path", "path and body", "query"};
  lua_createtable(L, 0, all ? 6 : 3);
  lua_pushstring(L, f->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, kinds[f->kind]);
  lua_setfield(L, -2, "kind");
  lua_pushboolean(L, f->required);
  lua_setfield(L, -2, "required");
  if (f->metavar) {
    lua_pushstring(L, f->metavar);
  } else {
    luaL_Buffer b;
    const char *s;
    luaL_buffinit(L, &b);
    for (s = f->name; *s; s++)
      luaL_addchar(&b, *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s);
    luaL_pushresult(&b);
  }
  lua_setfield(L, -2, "metavar");
  if (all) {
    lua_pushboolean(L, f->common);
    lua_setfield(L, -2, "common");
    lua_pushstring(L, places[f->at]);
    lua_setfield(L, -2, "at");
  }
}

/* core.commands([which]): the rows, each a table (name, method, path, mode, answer, summary,
 * common, path_channel, fields: the keys of its params table but channel, replyUrl and
 * replyRef; and encodings, query, value, attachments, confirm, params: every field in the
 * server's order, with common and at). which "listed" (the default): the commands the client
 * and the command line make from the table today; "all": job and cancel too. */
int core_commands(lua_State *L) {
  static const char *const modes[] = {"blocking", "job", "either", "none"};
  static const char *const answers[] = {"job", "jobids", "account", "accounts", "none"};
  static const char *const which[] = {"listed", "all", NULL};
  int all = luaL_checkoption(L, 1, "listed", which), n = 0, f, common;
  size_t i;
  lua_createtable(L, (int)N_COMMANDS, 0);
  for (i = 0; i < N_COMMANDS; i++) {
    const command_def *c = &commands[i];
    const field_def *u = url_field(c);
    int listed = 0;
    if (c->unlisted && !all)
      continue;
    lua_createtable(L, 0, 16);
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->method);
    lua_setfield(L, -2, "method");
    if (u)
      lua_pushfstring(L, u->at == AT_QUERY ? "%s?%s=<%s>" : "%s<%s>", c->path, u->name, u->name);
    else
      lua_pushstring(L, c->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, modes[c->mode]);
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, answers[c->answer]);
    lua_setfield(L, -2, "answer");
    lua_pushstring(L, c->summary);
    lua_setfield(L, -2, "summary");
    lua_pushboolean(L, u && u->at != AT_QUERY);
    lua_setfield(L, -2, "path_channel");
    if (u && u->at == AT_QUERY) {
      lua_pushstring(L, u->name);
      lua_setfield(L, -2, "query");
    }
    if (c->params == A_VALUE || c->params == A_STRING_OR_TABLE) {
      lua_pushstring(L, c->fields[0].name);
      lua_setfield(L, -2, "value");
    }
    if (c->bodies) {
      lua_createtable(L, 2, 0);
      if (c->bodies & B_FORM) {
        lua_pushliteral(L, "multipart");
        lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
      }
      if (c->bodies & B_JSON) {
        lua_pushliteral(L, "json");
        lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
      }
      lua_setfield(L, -2, "encodings");
    }
    lua_pushboolean(L, c->attachments);
    lua_setfield(L, -2, "attachments");
    lua_pushboolean(L, c->confirm);
    lua_setfield(L, -2, "confirm");
    lua_createtable(L, n_fields(c), 0); /* fields */
    lua_createtable(L, n_fields(c), 0); /* params */
    for (f = 0, common = 0; f < n_fields(c); f++) {
      const field_def *d = &c->fields[f];
      common |= d->common;
      if (!d->common && (d->at == AT_BODY || d->at == AT_BOTH)) {
        push_field(L, d, 0);
        lua_rawseti(L, -3, ++listed);
      }
      push_field(L, d, 1);
      lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -3, "params");
    lua_setfield(L, -2, "fields");
    lua_pushboolean(L, common);
    lua_setfield(L, -2, "common");
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* ---- reading params -------------------------------------------------------------------- */

/* A request being built: one part per field of its row, in the row's order. */
typedef struct {
  const command_def *c;
  int n;
  form_part parts[MAX_FIELDS];
  int src[MAX_FIELDS];                /* the stack slot of a file's source */
  unsigned char too_long[MAX_FIELDS]; /* replyUrl, replyRef over their limit */
} request;

/* Reads the value at idx into field i: text is checked now; a file's source is only typed
 * here and read once validation has passed (upload_load). Misuse raises. */
static void read_part(lua_State *L, request *r, int i, int idx) {
  const field_def *f = &r->c->fields[i];
  form_part *p = &r->parts[i];
  size_t chars;
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx))
    return;
  if (f->kind == K_FILE) {
    upload_check_source(L, idx, r->c->name, p);
    r->src[i] = idx;
    return;
  }
  if (f->kind == K_CHANNEL || f->kind == K_CHANNEL_ID)
    p->s = form_check_channel(L, idx, r->c->name, &p->len, &chars);
  else
    p->s = form_check_text(L, idx, r->c->name, f->name, f->kind == K_PROSE || f->kind == K_REF,
                           &p->len, &chars);
  if ((f->kind == K_URL || f->kind == K_REF) && chars > FACESWAP_MAX_REPLY_CHARS)
    r->too_long[i] = 1;
}

/* Keys of a table of params: each must be one of the command's fields. */
static void read_table(lua_State *L, request *r, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int i;
    for (i = 0; key && i < r->n && strcmp(r->parts[i].name, key) != 0; i++) {}
    if (!key || i == r->n)
      luaL_error(L, "bad argument #1 to '%s' (unknown param '%s')", r->c->name,
                 key ? key : luaL_typename(L, -2));
    /* the value stays on the stack (at most one per field): a file's source is read from it
     * later, and a text is pointed into while the body is built, which the table alone would
     * not keep, since a finalizer run by an allocation there may change the table */
    read_part(L, r, i, -1);
    luaL_checkstack(L, 2, r->c->name);
    lua_pushvalue(L, -2); /* the key for lua_next; the value keeps its slot */
  }
}

/* Reads the params at idx 2 as the row says they come. */
static void read_params(lua_State *L, request *r) {
  const command_def *c = r->c;
  if (c->params == A_NONE) {
    if (!lua_isnil(L, 2))
      luaL_error(L, "bad argument #1 to '%s' (no params expected, got %s)", c->name,
                 luaL_typename(L, 2));
  } else if (c->params == A_VALUE) {
    if (c->fields[0].kind == K_JOBID && job_is(L, 2)) {
      lua_getfield(L, 2, "jobid");
      lua_replace(L, 2);
    }
    if (lua_type(L, 2) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 to '%s' (%s must be a string%s, got %s)", c->name,
                 c->fields[0].name, c->fields[0].kind == K_JOBID ? " or a job" : "",
                 luaL_typename(L, 2));
    read_part(L, r, 0, 2);
  } else if (lua_istable(L, 2)) {
    read_table(L, r, 2);
  } else if (c->params == A_STRING_OR_TABLE) {
    if (lua_type(L, 2) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 to '%s' (string or table expected, got %s)", c->name,
                 luaL_typename(L, 2));
    read_part(L, r, 0, 2);
  } else {
    int i, fields = 0;
    for (i = 0; i < r->n; i++)
      fields |= !c->fields[i].common;
    if (!lua_isnil(L, 2) || fields)
      luaL_error(L, "bad argument #1 to '%s' (table expected, got %s)", c->name,
                 luaL_typename(L, 2));
  }
}

/* Discord ids are snowflakes: decimal numbers below 2^64, so at most 20 digits. */
static int is_snowflake(const char *s, size_t len) {
  size_t i;
  if (len == 0 || len > 20)
    return 0;
  for (i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* Pushes the server's 400 for the params, in the server's order (required fields, a channel
 * that is no Discord id, then replyRef and replyUrl too long), and returns 1; or returns 0. */
static int push_refusal(lua_State *L, const request *r) {
  static const unsigned char limited[] = {K_REF, K_URL};
  const command_def *c = r->c;
  int i, k;
  for (i = 0; i < r->n; i++)
    if (c->fields[i].required && (!r->parts[i].s || r->parts[i].len == 0)) {
      lua_pushfstring(L, c->fields[i].at == AT_QUERY ? "Query param %s not provided"
                      : "Required param %s is missing or empty", c->fields[i].name);
      return 1;
    }
  for (i = 0; i < r->n; i++)
    if (c->fields[i].kind == K_CHANNEL_ID && r->parts[i].s &&
        !is_snowflake(r->parts[i].s, r->parts[i].len)) {
      lua_pushfstring(L, "Required param %s (%s) is not valid Discord channel id",
                      c->fields[i].name, r->parts[i].s);
      return 1;
    }
  for (k = 0; k < 2; k++)
    for (i = 0; i < r->n; i++)
      if (c->fields[i].kind == limited[k] && r->too_long[i]) {
        lua_pushfstring(L, "Optional param %s is too long", c->fields[i].name);
        return 1;
      }
  return 0;
}

/* ---- the builder ----------------------------------------------------------------------- */

/* The encoding (B_*) named by the string at idx, the row's default when there is none. */
static int body_encoding(lua_State *L, const command_def *c, int idx) {
  const char *e = luaL_optstring(L, idx, NULL);
  if (!e)
    return c->bodies & B_FORM ? B_FORM : c->bodies;
  if ((c->bodies & B_FORM) && strcmp(e, "multipart") == 0)
    return B_FORM;
  if ((c->bodies & B_JSON) && strcmp(e, "json") == 0)
    return B_JSON;
  if (!c->bodies)
    return luaL_error(L, "bad argument #1 to '%s' (no body to encode, got encoding \"%s\")",
                      c->name, e);
  return luaL_error(L, "bad argument #1 to '%s' (encoding must be %s, got \"%s\")", c->name,
                    c->bodies == B_FORM ? "\"multipart\"" : c->bodies == B_JSON ? "\"json\""
                    : "\"multipart\" or \"json\"", e);
}

/* The path, with the value of a field that goes in the URL percent-encoded: a path's last
 * segment (the channel rule has kept "." and ".." out, so it is no dot segment), or the
 * query's one param. */
static void push_path(lua_State *L, const request *r) {
  luaL_Buffer buf;
  int i;
  for (i = 0; i < r->n && r->c->fields[i].at == AT_BODY; i++)
    ;
  if (i == r->n) { /* nothing of the params in the path (headshot): the row's own */
    lua_pushstring(L, r->c->path);
    return;
  }
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, r->c->path);
  for (i = 0; i < r->n; i++) {
    const field_def *f = &r->c->fields[i];
    if (f->at == AT_BODY)
      continue;
    if (f->at == AT_QUERY) {
      luaL_addchar(&buf, '?');
      luaL_addstring(&buf, f->name);
      luaL_addchar(&buf, '=');
    }
    form_add_escaped(&buf, r->parts[i].s, r->parts[i].len);
  }
  luaL_pushresult(&buf);
}

/* Lets go of the files the build opened itself among the first n fields (own: their boxes'
 * stack slots, 0 for none): a body that sends one holds it on its own. */
static void close_own(lua_State *L, const int *own, int n) {
  int i;
  for (i = 0; i < n; i++)
    if (own[i])
      upload_close_own(L, own[i]);
}

/* Builds the request of row c, its params at 2, the client's default channel and replyUrl at
 * 3 and 4, a boundary to try first at 5 (specs), encoding a B_* of the row (0: no body).
 * Pushes method, path, content type, body (a string; for a file param by path or opened, an
 * upload.c body that reads the file as it is sent) and the channel the request names (nil:
 * none, for the client's channel lock) and returns 5; or pushes nil and an error object and returns 2.
 * Misuse raises. */
static int build(lua_State *L, const command_def *c, int encoding) {
  static const error_info refused = {.kind = "invalid_request", .code = 400, .retry_after = -1};
  static const error_info unreadable = {.kind = "invalid_request", .retry_after = -1};
  request r;
  form_part body[MAX_FIELDS];
  int own[MAX_FIELDS] = {0}; /* the stack slot of a file the build opened itself */
  int i, nb = 0, top;
  memset(&r, 0, sizeof r);
  r.c = c;
  r.n = n_fields(c);
  for (i = 0; i < r.n; i++)
    r.parts[i].name = c->fields[i].name;
  read_params(L, &r);
  for (i = 0; i < r.n; i++) {
    const field_def *f = &c->fields[i];
    if (f->common && !r.parts[i].s && (f->kind == K_CHANNEL || f->kind == K_URL))
      read_part(L, &r, i, f->kind == K_CHANNEL ? 3 : 4);
  }

  if (push_refusal(L, &r))
    return error_result(L, &refused, NULL, -1);
  /* files last: nothing is opened for a request the checks above refuse */
  for (i = 0; i < r.n; i++)
    if (c->fields[i].kind == K_FILE && r.parts[i].s &&
        !upload_load(L, r.src[i], c->name, &r.parts[i], &own[i])) {
      close_own(L, own, i + 1);
      return error_result(L, &unreadable, NULL, -1);
    }

  for (i = 0; i < r.n; i++)
    if (c->fields[i].at == AT_BODY || c->fields[i].at == AT_BOTH)
      body[nb++] = r.parts[i];
  top = lua_gettop(L);
  lua_pushstring(L, c->method);
  push_path(L, &r);
  if (!encoding) {
    lua_pushnil(L);
    lua_pushnil(L);
  } else if (encoding == B_JSON) {
    lua_pushliteral(L, "application/json");
    form_push_json(L, body, nb, c->name);
  } else {
    size_t blen = 0;
    const char *b = lua_type(L, 5) == LUA_TSTRING ? lua_tolstring(L, 5, &blen) : NULL;
    form_push_multipart(L, body, nb, lua_touserdata(L, lua_upvalueindex(1)), b, blen);
    close_own(L, own, r.n); /* the body holds the files it opened: they live as long as it */
  }
  for (i = 0; i < r.n; i++)
    if ((c->fields[i].kind == K_CHANNEL || c->fields[i].kind == K_CHANNEL_ID) && r.parts[i].s)
      break;
  if (i < r.n)
    lua_pushlstring(L, r.parts[i].s, r.parts[i].len);
  else
    lua_pushnil(L);
  return lua_gettop(L) - top;
}

/* core.build_command(name, params, channel, reply_url [, boundary [, encoding]])
 *   -> method, path, content_type, body, channel | nil, err
 * params: a table of the command's fields (and channel, replyUrl, replyRef where it takes
 * them); for headshot also the prompt alone; for account and delete_account the channel; for
 * job and cancel the jobid or a job; nil for jobs and accounts. The client's defaults fill
 * channel and replyUrl. The returned channel is the one the request names (nil: none), for
 * the client's channel lock. The optional boundary is tried first (for specs); encoding
 * "multipart" or "json" where the row takes both (headshot), its first by default. */
int core_build_command(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const command_def *c = find(name);
  int encoding;
  if (!c)
    return luaL_error(L, "bad argument #1 to 'build_command' (unknown command '%s')", name);
  encoding = body_encoding(L, c, 6);
  lua_settop(L, 5);
  return build(L, c, encoding);
}

/* core.build_headshot(params, encoding, channel, reply_url [, boundary])
 *   -> method, path, content_type, body | nil, err
 * headshot's row as the client has always called it: params a prompt or a table of prompt,
 * channel, replyUrl, replyRef, options; encoding "multipart" (the default) or "json". */
int core_build_headshot(lua_State *L) {
  const command_def *c = find("headshot");
  int encoding = body_encoding(L, c, 2);
  lua_settop(L, 5);
  lua_pushvalue(L, 1);
  lua_replace(L, 2); /* the params where build takes them */
  if (build(L, c, encoding) == 2)
    return 2;
  lua_pop(L, 1); /* the channel: headshots take no channel lock */
  return 4;
}

/* core.build_get(op, jobid) -> "GET", path, nil, nil | nil, err: the job and cancel rows, op
 * naming one; jobid a string or a job. */
int core_build_get(lua_State *L) {
  static const char *const ops[] = {"job", "cancel", NULL};
  const command_def *c = find(ops[luaL_checkoption(L, 1, NULL, ops)]);
  lua_settop(L, 5);
  if (build(L, c, 0) == 2)
    return 2;
  lua_pop(L, 1);
  return 4;
}

/* ---- answers that are not jobs --------------------------------------------------------- */

/* Whether the key at idx names a channel by the rule every request follows: a batch over
 * channels = "all" sends these back, and that must not raise. */
static int is_channel_key(lua_State *L, int idx) {
  size_t len;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    return 0;
  s = lua_tolstring(L, idx, &len);
  return len > 0 && !form_channel_problem(s, len);
}

/* Whether the table at idx is an account: an object whose known fields have their types. */
static const char *account_problem(lua_State *L, int idx) {
  static const char *const texts[] = {"server", "channel", "discord"};
  static const char *const problems[] = {"an account: field server is not a string",
    "an account: field channel is not a string", "an account: field discord is not a string"};
  const char *problem = NULL;
  int i;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    return "an account object";
  for (i = 0; i < 3 && !problem; i++) {
    lua_getfield(L, idx, texts[i]);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      problem = problems[i];
    lua_pop(L, 1);
  }
  if (problem)
    return problem;
  lua_getfield(L, idx, "credits");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1))
    problem = "an account: field credits is not an object";
  lua_pop(L, 1);
  return problem;
}

/* Reads a 2xx answer of a command whose answer is not a job: pushes the value and returns 1,
 * or pushes why the answer is not the documented one and returns 0. */
int command_read_answer(lua_State *L, int answer, int status, int body_idx) {
  size_t len;
  const char *body = lua_tolstring(L, body_idx, &len), *problem = NULL;
  if (answer == ANSWER_NONE && len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!core_json_decode(L, body, len)) {
    lua_pushfstring(L, "HTTP %d answer: invalid JSON: %s", status, lua_tostring(L, -1));
    return 0;
  }
  if (answer == ANSWER_NONE) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  while (len > 0 && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')) {
    body++;
    len--;
  }
  /* arrays and objects both decode to tables: the first byte tells which it was */
  if (!lua_istable(L, -1) || *body != (answer == ANSWER_JOBIDS ? '[' : '{')) {
    lua_pushfstring(L, "HTTP %d answer is not %s", status,
                    answer == ANSWER_JOBIDS ? "an array of jobids" : "an object");
    return 0;
  }
  if (answer == ANSWER_JOBIDS) {
    /* GET /jobs's shape is undocumented for faceswap (the Midjourney sibling answers jobid
     * strings): an element may be a jobid or a job-like object with one; either way the
     * answer becomes the array of jobids. JSON arrays decode to sequences and objects to
     * string keys, so a sequence whose length is the count of its keys is an array. */
    size_t n = (size_t)lua_rawlen(L, -1), count = 0;
    int ok = 1;
    lua_pushnil(L);
    while (ok && lua_next(L, -2)) {
      ok = lua_type(L, -2) == LUA_TNUMBER;
      if (ok && lua_istable(L, -1)) {
        lua_getfield(L, -1, "jobid");
        ok = lua_type(L, -1) == LUA_TSTRING;
        if (ok)
          lua_rawseti(L, -4, (int)lua_tointeger(L, -3)); /* the jobid replaces its object */
        else
          lua_pop(L, 1);
      } else {
        ok = ok && lua_type(L, -1) == LUA_TSTRING;
      }
      lua_pop(L, ok ? 1 : 2);
      count++;
    }
    if (!ok || count != n)
      problem = "an array of jobids";
  } else if (answer == ANSWER_ACCOUNT) {
    problem = account_problem(L, -1);
  } else {
    /* GET /account: accounts keyed by channel; each gets its key as channel if it lacks one */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      problem = is_channel_key(L, -2) ? account_problem(L, -1) : "accounts keyed by channel";
      if (problem) {
        lua_pop(L, 2);
        break;
      }
      lua_getfield(L, -1, "channel");
      if (lua_isnil(L, -1)) {
        lua_pushvalue(L, -3);
        lua_setfield(L, -3, "channel");
      }
      lua_pop(L, 2);
    }
  }
  if (problem) {
    lua_pushfstring(L, "HTTP %d answer is not %s", status, problem);
    return 0;
  }
  return 1;
}
