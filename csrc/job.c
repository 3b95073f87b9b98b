/* job.c: the job userdata. A job is immutable. Its JSON text is decoded once by lua-cjson
 * (cjson.c) and the fields' types checked; then the decoded table is dropped, and a job keeps
 * only its text (for job:json()) and its documented fields, so what stays is bounded by the
 * answer's bytes whatever else the server put in it (unknown members, deep arrays):
 *   - the string fields and `code` in a small table of their own, as the user sees them;
 *   - `attachments` and `embeds` as where their value lies in the text, decoded afresh on
 *     each access (a decoded array of objects takes tens of times its bytes).
 * The user values are that table and the text (before 5.4, one user value: the text is the
 * table's [0]). null is nil, integral numbers are integers (5.3+). Derived numbers (credits)
 * are parsed from `content` when the job is made. */
#include <stdlib.h>
#include <string.h>
#include "core.h"

/* The upstream fields, in the order of docs/api.md. */
enum { F_JOBID, F_VERB, F_STATUS, F_PROMPT, F_CREATED, F_UPDATED, F_DISCORD, F_SERVER,
       F_CHANNEL, F_REPLY_URL, F_REPLY_REF, F_MESSAGE_ID, F_CONTENT, F_TIMESTAMP, F_ERROR,
       F_ERROR_DETAILS, F_CODE, F_ATTACHMENTS, F_EMBEDS, F_COUNT };

static const char *const field_names[F_COUNT] = {
  "jobid", "verb", "status", "prompt", "created", "updated", "discord", "server", "channel",
  "replyUrl", "replyRef", "messageId", "content", "timestamp", "error", "errorDetails", "code",
  "attachments", "embeds"
};

/* registry[&names_key]: [i + 1] the name of field i, interned once, so that reading a field
 * costs a rawget and not a lua_getfield's lookup of the C string; [0] the job metatable;
 * [F_COUNT + 1] where those names lie (interned_t, below). */
static char names_key;

/* Names __index knows beyond the upstream fields (which map to their index + 1). */
enum { D_CREDITS = F_COUNT + 1, D_CREDITS_LEFT, D_CREDITS_TOTAL };

/* Where a member's value lies in the text: [start, start + len); len 0 for none, or an empty
 * array when start is EMPTY_ARRAY. */
#define EMPTY_ARRAY ((size_t)-1)
typedef struct {
  size_t start, len;
} span_t;

typedef struct {
  lua_Integer credits, credits_left, credits_total;
  span_t attachments, embeds;
  unsigned char has_credits, has_remaining;
  unsigned char done; /* its status is a terminal one: job:done(), told when it is made */
} job_t;

/* ---- content parsing ------------------------------------------------------------------ */

static int parse_digits(const char **p, const char *end, lua_Integer *out) {
  const char *s = *p;
  lua_Integer v = 0;
  if (s >= end || *s < '0' || *s > '9')
    return 0;
  for (; s < end && *s >= '0' && *s <= '9'; s++) {
    if (v > (lua_Integer)1 << 52)  /* absurd counts are not credits */
      return 0;
    v = v * 10 + (*s - '0');
  }
  *p = s;
  *out = v;
  return 1;
}

/* "[credits: 4]" and "(796/800 credits remaining)" as the bot writes them. The message
 * quotes the user's prompt between the two, so the charge is the first "[credits: N]" (it
 * precedes the prompt) and the balance the last "(L/T credits remaining)" (it follows it). */
static void parse_credits(job_t *job, const char *s, size_t len) {
  static const char tag[] = "[credits: ", tail[] = " credits remaining)";
  const char *end = s + len, *p;
  lua_Integer a, b;
  for (p = s; (p = memchr(p, '[', (size_t)(end - p))) != NULL; p++) {
    const char *q = p + sizeof tag - 1;
    if ((size_t)(end - p) > sizeof tag - 1 && memcmp(p, tag, sizeof tag - 1) == 0 &&
        parse_digits(&q, end, &a) && q < end && *q == ']') {
      job->credits = a;
      job->has_credits = 1;
      break;
    }
  }
  for (p = end; p > s;) {
    const char *q;
    p--;
    if (*p != '(')
      continue;
    q = p + 1;
    if (parse_digits(&q, end, &a) && q < end && *q == '/' && (q++, 1) &&
        parse_digits(&q, end, &b) && (size_t)(end - q) >= sizeof tail - 1 &&
        memcmp(q, tail, sizeof tail - 1) == 0) {
      job->credits_left = a;
      job->credits_total = b;
      job->has_remaining = 1;
      break;
    }
  }
}

/* ---- making a job --------------------------------------------------------------------- */

/* The job userdata, its user values the table of fields (fields) and the text (text) */
static job_t *new_job(lua_State *L, int fields, int text) {
#if LUA_VERSION_NUM >= 504
  job_t *job = (job_t *)lua_newuserdatauv(L, sizeof *job, 2);
  lua_pushvalue(L, text);
  lua_setiuservalue(L, -2, 2);
#else
  job_t *job = (job_t *)lua_newuserdata(L, sizeof *job);
  lua_pushvalue(L, text);
  lua_rawseti(L, fields, 0); /* an integer key: never one of an object's */
#endif
  lua_pushvalue(L, fields);
  compat_setuservalue(L, -2);
  memset(job, 0, sizeof *job);
  return job;
}

/* Pushes the JSON text of the job at idx. */
static void push_text(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 504
  lua_getiuservalue(L, idx, 2);
#else
  compat_getuservalue(L, idx);
  lua_rawgeti(L, -1, 0);
  lua_remove(L, -2);
#endif
}

/* lua-cjson makes [] and {} the same empty table: an object is a table with a string key, so
 * an empty table is an array unless the text had an empty object (then see object_shapes). */
static int is_object(lua_State *L, int idx) {
  int yes;
  lua_pushnil(L);
  if (!lua_next(L, idx))
    return 0;
  yes = lua_type(L, -2) == LUA_TSTRING;
  lua_pop(L, 2);
  return yes;
}

/* What is wrong with the type of the value at idx for the field, or NULL. */
static const char *type_problem(lua_State *L, int field, int idx) {
  int t = lua_type(L, idx);
  size_t i, n;
  if (t == LUA_TNIL || t == LUA_TLIGHTUSERDATA)
    return NULL; /* absent, or null */
  if (field == F_CODE)
    return t == LUA_TNUMBER ? NULL : "a number";
  if (field != F_ATTACHMENTS && field != F_EMBEDS)
    return t == LUA_TSTRING ? NULL : "a string";
  if (t != LUA_TTABLE || is_object(L, idx))
    return "an array";
  n = lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    int ok;
    lua_rawgeti(L, idx, (lua_Integer)i);
    ok = lua_istable(L, -1) && is_object(L, lua_gettop(L));
    lua_pop(L, 1);
    if (!ok)
      return "an array of objects";
  }
  return NULL;
}

/* The text at idx with every empty object written {"":0}, decoded: only for telling arrays
 * from objects, in the rare answer that has an empty object. Pushes the table. */
static void object_shapes(lua_State *L, int idx) {
  luaL_Buffer buf;
  size_t len, i, run = 0;
  int empty_object, in_string = 0;
  const char *s = lua_tolstring(L, idx, &len);
  luaL_buffinit(L, &buf);
  for (i = 0; i < len; i++) {
    size_t j = i + 1;
    if (in_string) {
      if (s[i] == '\\')
        i++;
      else if (s[i] == '"')
        in_string = 0;
      continue;
    }
    if (s[i] == '"') {
      in_string = 1;
      continue;
    }
    if (s[i] != '{')
      continue;
    while (j < len && strchr(" \t\r\n", s[j]) && s[j] != '\0')
      j++;
    if (j < len && s[j] == '}') {
      luaL_addlstring(&buf, s + run, i - run);
      luaL_addstring(&buf, "{\"\":0}");
      run = j + 1;
      i = j;
    }
  }
  luaL_addlstring(&buf, s + run, len - run);
  luaL_pushresult(&buf);
  if (!json_decode_raw(L, -1, &empty_object)) /* it decoded before; cannot fail but for memory */
    lua_newtable(L);
  lua_remove(L, -2);
}

/* Whether the field is an empty table or an array holding one: where [] and {} differ. */
static int has_empty_table(lua_State *L, int tree, const char *field) {
  size_t i, n;
  int found = 0;
  lua_getfield(L, tree, field);
  if (lua_istable(L, -1)) {
    n = lua_rawlen(L, -1);
    found = n == 0;
    for (i = 1; i <= n && !found; i++) {
      lua_rawgeti(L, -1, (lua_Integer)i);
      if (lua_istable(L, -1)) {
        lua_pushnil(L);
        found = !lua_next(L, -2);
        lua_pop(L, found ? 1 : 3);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_pop(L, 1);
  return found;
}

/* ---- where attachments and embeds lie in the text -------------------------------------- */

/* These read a text lua-cjson has already read whole, so it is well formed: they only need
 * to find where each top-level member's value begins and ends. */

static size_t skip_space(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
    i++;
  return i;
}

/* Past the string whose opening quote is at i. */
static size_t skip_string(const char *s, size_t len, size_t i) {
  for (i++; i < len;) {
    const char *q = (const char *)memchr(s + i, '"', len - i);
    size_t j, backslashes = 0;
    if (!q)
      return len;
    for (j = (size_t)(q - s); j > i && s[j - 1] == '\\'; j--)
      backslashes++;
    i = (size_t)(q - s) + 1;
    if (backslashes % 2 == 0) /* not itself escaped */
      return i;
  }
  return len;
}

/* Past the value that begins at i. */
static size_t skip_value(const char *s, size_t len, size_t i) {
  size_t depth = 0;
  while (i < len) {
    char c = s[i];
    if (c == '"') {
      i = skip_string(s, len, i);
      if (depth == 0)
        return i;
      continue;
    }
    if (depth == 0 && (c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' ||
                       c == '\r' || c == '\n'))
      return i; /* the end of a number, true, false or null */
    if (c == '[' || c == '{')
      depth++;
    else if ((c == ']' || c == '}') && --depth == 0)
      return i + 1;
    i++;
  }
  return i;
}

/* The span kept for the member whose name is the string body s (len bytes, escapes as sent),
 * or NULL when it is not attachments or embeds. */
static span_t *member_span(lua_State *L, job_t *job, const char *s, size_t len) {
  span_t *span = NULL;
  const char *name = s;
  if (memchr(s, '\\', len)) { /* "embe\u0064s" is embeds, as lua-cjson read it */
    if (!core_json_decode(L, s - 1, len + 2))
      return NULL; /* it was read before: cannot fail but for memory, which raises */
    name = lua_tolstring(L, -1, &len);
  }
  if (len == 11 && memcmp(name, "attachments", 11) == 0)
    span = &job->attachments;
  else if (len == 6 && memcmp(name, "embeds", 6) == 0)
    span = &job->embeds;
  if (name != s)
    lua_pop(L, 1);
  return span;
}

/* Finds the values of attachments and embeds in the text of the object s; the last of
 * duplicate members wins, as in lua-cjson, and a null one is none. */
static void find_spans(lua_State *L, job_t *job, const char *s, size_t len) {
  size_t i = skip_space(s, len, 0);
  if (i >= len || s[i] != '{')
    return;
  i = skip_space(s, len, i + 1);
  while (i < len && s[i] == '"') {
    size_t name = i, value;
    span_t *span;
    i = skip_string(s, len, i);
    span = member_span(L, job, s + name + 1, i - name - 2);
    i = skip_space(s, len, skip_space(s, len, i) + 1); /* past the ':' */
    value = i;
    i = skip_value(s, len, i);
    if (span) {
      span->start = value;
      span->len = value < len && s[value] == '[' ? i - value : 0;
    }
    i = skip_space(s, len, i);
    if (i < len && s[i] == ',')
      i = skip_space(s, len, i + 1);
  }
}

/* Pushes the table a job keeps its string fields and code in, and returns its index: the
 * decoded table itself when it has no member the job does not document (`all`: the usual
 * answer, nothing to copy), without attachments and embeds; else a new table of those fields
 * only. `present` has bit f set for each field the tree has, `kept` counts its strings and
 * numbers; names is the index of the names table. */
static int keep_fields(lua_State *L, int tree, int names, int all, unsigned long present,
                       int kept) {
  int i, fields;
  if (all) {
    lua_pushvalue(L, tree);
    fields = lua_gettop(L);
    for (i = F_ATTACHMENTS; i <= F_EMBEDS; i++) {
      if (present & 1ul << i) {
        lua_rawgeti(L, names, i + 1);
        lua_pushnil(L);
        lua_rawset(L, fields);
      }
    }
    if (present & 1ul << F_CODE) {
      lua_rawgeti(L, names, F_CODE + 1);
      lua_pushvalue(L, -1);
      lua_rawget(L, fields);
#if LUA_VERSION_NUM >= 503
      if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
        /* an integer where it is one */
        compat_pushnumber(L, lua_tonumber(L, -1));
        lua_replace(L, -2);
        lua_rawset(L, fields);
      } else
#endif
        lua_pop(L, 2);
    }
    return fields;
  }
  lua_createtable(L, 0, kept);
  fields = lua_gettop(L);
  for (i = 0; i < F_COUNT; i++) {
    if (i == F_ATTACHMENTS || i == F_EMBEDS || !(present & 1ul << i))
      continue;
    lua_rawgeti(L, names, i + 1);
    lua_pushvalue(L, -1);
    lua_rawget(L, tree);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      compat_pushnumber(L, lua_tonumber(L, -1));
      lua_replace(L, -2);
    }
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
      lua_rawset(L, fields);
    else
      lua_pop(L, 2);
  }
  return fields;
}

/* The names of the fields as this Lua state interned them (kept in the names table, so they
 * live as long as it): lua-cjson interns each member name it reads (all are short strings), so
 * a member is field i exactly when its name is the same string, which a pointer compare tells
 * without hashing it again. */
#define ORDER_MAX 32
typedef struct {
  const char *name[F_COUNT];
  unsigned char order[ORDER_MAX]; /* the field met at each place of the last walk (F_COUNT: none) */
} interned_t;

/* Which field the member name at the top of a lua_next is, or F_COUNT for none; k: the
 * member's place in the walk. lua_next walks a table of the same names in the same order
 * every time (the order of the names' hashes in this Lua state), and the server sends the
 * same fields each time: the field found at place k last time is compared first, so the
 * usual member costs one compare, not up to 19. */
static int field_of(lua_State *L, interned_t *in, int k) {
  const char *key = lua_tostring(L, -2); /* a string: a member's name */
  int f = k < ORDER_MAX ? in->order[k] : F_COUNT;
  if (f < F_COUNT && in->name[f] == key)
    return f;
  for (f = 0; f < F_COUNT && in->name[f] != key; f++)
    ;
  if (k < ORDER_MAX)
    in->order[k] = (unsigned char)f;
  return f;
}

/* Whether the type of a member's value is wrong for field f (attachments and embeds are
 * looked at afterwards, in the shapes' table). */
static int wrong_type(int f, int t) {
  if (t == LUA_TLIGHTUSERDATA || f == F_ATTACHMENTS || f == F_EMBEDS)
    return 0; /* null */
  return f == F_CODE ? t != LUA_TNUMBER : t != LUA_TSTRING;
}

/* Whether the string at idx is a status a job does not leave. */
static int is_terminal(lua_State *L, int idx) {
  static const char *const terminal[] = {"completed", "failed", "moderated", "cancelled", NULL};
  size_t len;
  const char *status = lua_tolstring(L, idx, &len);
  int i;
  for (i = 0; terminal[i]; i++)
    if (strlen(terminal[i]) == len && memcmp(status, terminal[i], len) == 0)
      return 1;
  return 0;
}

int job_push_json(lua_State *L, int json_idx) {
  job_t *job;
  interned_t *in;
  const char *text;
  int i, tree, shapes, names, fields, empty_object, unknown = 0, kept = 0, arrays = 0;
  int first_wrong = F_COUNT, jobid_string = 0, k = 0, done = 0;
  unsigned long present = 0; /* bit f: the text has a member for field f (null too) */
  job_t empty = {0, 0, 0, {0, 0}, {0, 0}, 0, 0, 0};
  json_idx = lua_absindex(L, json_idx);
  if (!json_decode_raw(L, json_idx, &empty_object)) {
    lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -1));
    lua_remove(L, -2);
    return 0;
  }
  tree = shapes = lua_gettop(L);
  text = lua_tostring(L, json_idx);
  /* a table from text that begins with '{' is an object (lua-cjson makes [] and {} alike) */
  if (!lua_istable(L, tree) || text[strspn(text, " \t\r\n")] != '{') {
    lua_pop(L, 1);
    lua_pushliteral(L, "not a job: JSON is not an object");
    return 0;
  }
  lua_pushlightuserdata(L, &names_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  names = lua_gettop(L);
  lua_rawgeti(L, names, F_COUNT + 1);
  in = (interned_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  /* one pass over the members: which fields are there, of the right types, and whether any
   * member is not a field (then the job keeps a table of its fields only) */
  lua_pushnil(L);
  while (lua_next(L, tree)) {
    /* every key is a string: lua-cjson made this table of an object's members */
    int f = field_of(L, in, k);
    int t = lua_type(L, -1);
    if (f == F_STATUS)
      done = t == LUA_TSTRING && is_terminal(L, -1);
    lua_pop(L, 1);
    k++;
    if (f == F_COUNT) {
      unknown++;
      continue;
    }
    present |= 1ul << f;
    kept += t == LUA_TSTRING || t == LUA_TNUMBER;
    if (f == F_JOBID)
      jobid_string = t == LUA_TSTRING;
    if (f < first_wrong && wrong_type(f, t))
      first_wrong = f;
  }
  if (!jobid_string) {
    lua_pop(L, 2);
    lua_pushliteral(L, "not a job: no jobid string");
    return 0;
  }
  if (present & (1ul << F_ATTACHMENTS | 1ul << F_EMBEDS)) {
    if (empty_object && (has_empty_table(L, tree, "attachments") ||
                         has_empty_table(L, tree, "embeds"))) {
      object_shapes(L, json_idx);
      shapes = lua_gettop(L);
    }
    for (i = F_ATTACHMENTS; i <= F_EMBEDS; i++) {
      if (!(present & 1ul << i))
        continue;
      lua_rawgeti(L, names, i + 1);
      lua_rawget(L, shapes);
      if (i < first_wrong && type_problem(L, i, lua_gettop(L)))
        first_wrong = i;
      if (lua_istable(L, -1)) {
        /* an empty one needs no looking for in the text (duplicates: this is the last one) */
        if (lua_rawlen(L, -1) > 0)
          arrays = 1;
        else
          (i == F_ATTACHMENTS ? &empty.attachments : &empty.embeds)->start = EMPTY_ARRAY;
      }
      lua_pop(L, 1);
    }
  }
  if (first_wrong < F_COUNT) {
    const char *problem;
    lua_rawgeti(L, names, first_wrong + 1);
    lua_rawget(L, first_wrong >= F_ATTACHMENTS ? shapes : tree);
    problem = type_problem(L, first_wrong, lua_gettop(L));
    lua_settop(L, tree - 1);
    lua_pushfstring(L, "field %s is not %s", field_names[first_wrong], problem);
    return 0;
  }
  lua_settop(L, names);
  fields = keep_fields(L, tree, names, unknown == 0, present, kept);
  job = new_job(L, fields, json_idx);
  job->done = (unsigned char)done;
  lua_rawgeti(L, names, 0);
  lua_setmetatable(L, -2);
  if (present & 1ul << F_CONTENT) {
    lua_rawgeti(L, names, F_CONTENT + 1);
    lua_rawget(L, fields);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      parse_credits(job, s, len);
    }
    lua_pop(L, 1);
  }
  job->attachments = empty.attachments;
  job->embeds = empty.embeds;
  if (arrays) {
    size_t len;
    const char *s = lua_tolstring(L, json_idx, &len);
    find_spans(L, job, s, len);
  }
  lua_replace(L, tree);
  lua_settop(L, tree);
  return 1;
}

int job_is(lua_State *L, int idx) {
  return luaL_testudata(L, idx, FACESWAP_JOB_MT) != NULL;
}

/* faceswap.decode(json): a job from a callback body or stored job JSON. */
int core_decode(lua_State *L) {
  error_info info = {.kind = "bad_response", .retry_after = -1};
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (job_push_json(L, 1))
    return 1;
  error_push(L, &info, NULL, -1, 0);
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* ---- methods -------------------------------------------------------------------------- */

/* Pushes field number `field` of the job at idx as a user sees it; key is the stack index of
 * its name when the caller has it, else 0. */
static void push_field(lua_State *L, int idx, job_t *job, int field, int key) {
  if (field == F_ATTACHMENTS || field == F_EMBEDS) {
    /* decoded afresh on every access: changing the array cannot change the job */
    const span_t *span = field == F_ATTACHMENTS ? &job->attachments : &job->embeds;
    const char *s;
    if (span->len == 0) {
      if (span->start == EMPTY_ARRAY)
        lua_newtable(L);
      else
        lua_pushnil(L);
      return;
    }
    push_text(L, idx);
    s = lua_tostring(L, -1);
    if (!core_json_decode(L, s + span->start, span->len)) { /* read before: only memory */
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_remove(L, -2);
    return;
  }
  if (key)
    key = lua_absindex(L, key);
  compat_getuservalue(L, idx);
  if (key) {
    lua_pushvalue(L, key);
  } else {
    lua_pushlightuserdata(L, &names_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, -1, field + 1);
    lua_remove(L, -2);
  }
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) { /* null */
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_remove(L, -2);
}

static void push_named(lua_State *L, int idx, int field) {
  push_field(L, idx, (job_t *)lua_touserdata(L, idx), field, 0);
}

static int job_index(lua_State *L) {
  job_t *job = NULL;
  /* a job's metatable is [0] of the lookup table: compared by address, not looked up by name
   * (luaL_checkudata, which gives the message, only when it is not a job) */
  if (lua_getmetatable(L, 1)) {
    lua_rawgeti(L, lua_upvalueindex(1), 0);
    if (lua_rawequal(L, -1, -2))
      job = (job_t *)lua_touserdata(L, 1);
    lua_pop(L, 2);
  }
  if (!job)
    job = (job_t *)luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (lua_type(L, -1) != LUA_TNUMBER)
    return 1; /* a method, or nil for names a job does not have */
  switch ((int)lua_tointeger(L, -1)) {
  case D_CREDITS:
    if (!job->has_credits) return 0;
    lua_pushinteger(L, job->credits);
    return 1;
  case D_CREDITS_LEFT:
    if (!job->has_remaining) return 0;
    lua_pushinteger(L, job->credits_left);
    return 1;
  case D_CREDITS_TOTAL:
    if (!job->has_remaining) return 0;
    lua_pushinteger(L, job->credits_total);
    return 1;
  default:
    push_field(L, 1, job, (int)lua_tointeger(L, -1) - 1, 2);
    return 1;
  }
}

/* core.job_runs(v): the jobid of v when v is a job that runs on (a status that is set and not
 * a terminal one, a string jobid), else false; never raises. One call for what the channel
 * authority read as core.type, status, done() and jobid after each POST. */
int core_job_runs(lua_State *L) {
  job_t *job = (job_t *)luaL_testudata(L, 1, FACESWAP_JOB_MT);
  lua_settop(L, 1);
  if (job && !job->done) {
    compat_getuservalue(L, 1);
    lua_pushlightuserdata(L, &names_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, 3, F_STATUS + 1);
    lua_rawget(L, 2);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TLIGHTUSERDATA) { /* (null: nil) */
      lua_rawgeti(L, 3, F_JOBID + 1);
      lua_rawget(L, 2);
      if (lua_type(L, -1) == LUA_TSTRING)
        return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

static int job_newindex(lua_State *L) {
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  return luaL_error(L, "faceswap.job is read-only (attempt to set field '%s')",
                    lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
}

static int job_done(lua_State *L) {
  /* upvalue 1 is the job metatable: compared by address, looked up by name only when the
   * argument is not a job (luaL_checkudata, which gives the message) */
  job_t *job = NULL;
  if (lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(1)))
      job = (job_t *)lua_touserdata(L, 1);
    lua_pop(L, 1);
  }
  if (!job)
    job = (job_t *)luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  lua_pushboolean(L, job->done);
  return 1;
}

static int job_urls(lua_State *L) {
  int n = 0;
  size_t i, len;
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  lua_settop(L, 1);
  lua_newtable(L);
  push_named(L, 1, F_ATTACHMENTS);
  len = lua_istable(L, 3) ? lua_rawlen(L, 3) : 0;
  for (i = 1; i <= len; i++) {
    lua_rawgeti(L, 3, (lua_Integer)i);
    lua_getfield(L, -1, "url");
    if (lua_type(L, -1) == LUA_TSTRING)
      lua_rawseti(L, 2, ++n);
    else
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  return 1;
}

static int job_json(lua_State *L) {
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  push_text(L, 1);
  return 1;
}

static int job_tostring(lua_State *L) {
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  push_named(L, 1, F_JOBID);
  push_named(L, 1, F_STATUS);
  lua_pushfstring(L, FACESWAP_JOB_MT ": %s (%s)", lua_tostring(L, -2),
                  lua_isstring(L, -1) ? lua_tostring(L, -1) : "no status");
  return 1;
}

/* Deep equality of two decoded JSON values. */
static int json_equal(lua_State *L, int a, int b, int depth) {
  int n = 0, m = 0, eq = 1;
  if (lua_type(L, a) != LUA_TTABLE || lua_type(L, b) != LUA_TTABLE)
    return lua_rawequal(L, a, b) ||
           (lua_type(L, a) == LUA_TNUMBER && lua_type(L, b) == LUA_TNUMBER &&
            lua_tonumber(L, a) == lua_tonumber(L, b));
  if (depth > 64)
    return 0;
  luaL_checkstack(L, 4, "job too deeply nested");
  lua_pushnil(L);
  while (eq && lua_next(L, a)) {
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    eq = json_equal(L, lua_absindex(L, -2), lua_absindex(L, -1), depth + 1);
    lua_pop(L, 2);
  }
  if (!eq) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    m++;
    lua_pop(L, 1);
  }
  return n == m;
}

/* a == b: the same fields with the same values, however the JSON was spelled. */
static int job_eq(lua_State *L) {
  size_t len;
  const char *s;
  int i;
  if (!job_is(L, 1) || !job_is(L, 2)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_settop(L, 2);
  for (i = 1; i <= 2; i++) {
    push_text(L, i);
    s = lua_tolstring(L, -1, &len);
    core_json_decode(L, s, len); /* validated when the job was made */
    lua_remove(L, -2);
  }
  lua_pushboolean(L, json_equal(L, 3, 4, 0));
  return 1;
}

void job_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"done", job_done}, {"urls", job_urls}, {"json", job_json}, {NULL, NULL}
  };
  static const luaL_Reg metamethods[] = {
    {"__newindex", job_newindex}, {"__tostring", job_tostring}, {"__eq", job_eq}, {NULL, NULL}
  };
  static const char *const derived[] = {"credits", "credits_left", "credits_total"};
  interned_t *in;
  int i;
  lua_pushlightuserdata(L, &names_key);
  lua_createtable(L, F_COUNT + 1, 1);
  in = (interned_t *)lua_newuserdata(L, sizeof *in);
  memset(in->order, F_COUNT, sizeof in->order);
  lua_rawseti(L, -2, F_COUNT + 1);
  for (i = 0; i < F_COUNT; i++) {
    lua_pushstring(L, field_names[i]);
    in->name[i] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i + 1);
  }
  luaL_newmetatable(L, FACESWAP_JOB_MT);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, 0);
  lua_insert(L, -3);
  lua_rawset(L, LUA_REGISTRYINDEX);
  /* one lookup table for __index: method name -> function, field name -> number */
  lua_newtable(L);
  lua_pushvalue(L, -2); /* the metatable, done's upvalue */
  luaL_setfuncs(L, methods, 1);
  for (i = 0; i < F_COUNT; i++) {
    lua_pushinteger(L, i + 1);
    lua_setfield(L, -2, field_names[i]);
  }
  for (i = 0; i < 3; i++) {
    lua_pushinteger(L, D_CREDITS + i);
    lua_setfield(L, -2, derived[i]);
  }
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 0); /* an integer key: never a name looked up */
  lua_pushcclosure(L, job_index, 1);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, metamethods, 0);
  lua_pushliteral(L, "faceswap.job is read-only");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}
