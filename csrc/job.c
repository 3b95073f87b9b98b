/* job.c: the job userdata. A job is immutable: its user value is the table json.c decoded
 * (null members left out, integral numbers as integers) with the original JSON text at integer
 * key 1, where no JSON object key can collide. Derived numbers (credits) are parsed once from
 * `content` when the job is made and kept in the C block. */
#include <stdlib.h>
#include <string.h>
#include "core.h"

typedef struct {
  lua_Integer credits, credits_left, credits_total;
  unsigned char has_credits, has_remaining;
} job_t;

/* What a field name means in __index; functions in the same table are the methods. */
enum { FIELD_STRING = 1, FIELD_NUMBER, FIELD_ARRAY, FIELD_CREDITS, FIELD_CREDITS_LEFT,
       FIELD_CREDITS_TOTAL };

static const struct { const char *name; int tag; } job_fields[] = {
  {"jobid", FIELD_STRING}, {"verb", FIELD_STRING}, {"status", FIELD_STRING},
  {"prompt", FIELD_STRING}, {"created", FIELD_STRING}, {"updated", FIELD_STRING},
  {"discord", FIELD_STRING}, {"server", FIELD_STRING}, {"channel", FIELD_STRING},
  {"replyUrl", FIELD_STRING}, {"replyRef", FIELD_STRING}, {"messageId", FIELD_STRING},
  {"content", FIELD_STRING}, {"timestamp", FIELD_STRING}, {"error", FIELD_STRING},
  {"errorDetails", FIELD_STRING}, {"code", FIELD_NUMBER}, {"attachments", FIELD_ARRAY},
  {"embeds", FIELD_ARRAY}, {"credits", FIELD_CREDITS}, {"credits_left", FIELD_CREDITS_LEFT},
  {"credits_total", FIELD_CREDITS_TOTAL}, {NULL, 0}
};

static int is_json_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

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

/* "[credits: 4]" and "(796/800 credits remaining)" as the bot writes them. */
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
  for (p = s; (p = memchr(p, '(', (size_t)(end - p))) != NULL; p++) {
    const char *q = p + 1;
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

/* ---- validation ----------------------------------------------------------------------- */

/* The registry's array of the upstream field names, interned once, in job_fields order. */
#define JOB_NAMES_KEY "faceswap.job.names"

static const char *type_problem(lua_State *L, int tag, int idx) {
  switch (tag) {
  case FIELD_STRING: return lua_type(L, idx) == LUA_TSTRING ? NULL : "a string";
  case FIELD_NUMBER: return lua_type(L, idx) == LUA_TNUMBER ? NULL : "a number";
  case FIELD_ARRAY:
    if (lua_type(L, idx) != LUA_TTABLE)
      return "an array";
    {
      /* an array of objects: upstream sends attachments and embeds as such */
      size_t i, n = lua_rawlen(L, idx);
      int ok = 1;
      lua_pushnil(L);
      while (ok && lua_next(L, idx)) {
        ok = lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TTABLE;
        lua_pop(L, 1);
      }
      if (!ok) {
        lua_pop(L, 1);
        return "an array of objects";
      }
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        ok = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!ok)
          return "an array of objects";
      }
    }
    return NULL;
  default: return NULL;
  }
}

int job_push(lua_State *L, int idx, int json_idx, const char **why, const char **field) {
  job_t *job;
  int names, i;
  idx = lua_absindex(L, idx);
  json_idx = lua_absindex(L, json_idx);
  /* each upstream field present must have its documented type (json.c made integral numbers
   * integers and left nulls out already) */
  lua_getfield(L, LUA_REGISTRYINDEX, JOB_NAMES_KEY);
  names = lua_gettop(L);
  for (i = 0; job_fields[i].tag <= FIELD_ARRAY; i++) {
    lua_rawgeti(L, names, i + 1);
    lua_rawget(L, idx);
    if (!lua_isnil(L, -1)) {
      const char *problem = type_problem(L, job_fields[i].tag, lua_gettop(L));
      if (problem) {
        lua_pop(L, 2);
        *why = problem;
        *field = job_fields[i].name;
        return 0;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  job = (job_t *)compat_newuserdata(L, sizeof *job);
  memset(job, 0, sizeof *job);
  luaL_setmetatable(L, FACESWAP_JOB_MT);
  lua_getfield(L, idx, "content");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    parse_credits(job, s, len);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, json_idx);
  lua_rawseti(L, idx, 1);
  lua_pushvalue(L, idx);
  compat_setuservalue(L, -2);
  return 1;
}

int job_is(lua_State *L, int idx) {
  return luaL_testudata(L, idx, FACESWAP_JOB_MT) != NULL;
}

/* Returns nil and a bad_response error whose text is the string on top of the stack. */
static int decode_fail(lua_State *L) {
  error_info info = {"bad_response", 0, 0, 0, -1};
  error_push(L, &info, NULL, -1, 0);
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* faceswap.decode(json): a job from a callback body or stored job JSON. */
int core_decode(lua_State *L) {
  const char *why = NULL, *field = NULL;
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  if (!core_json_decode(L, s, len)) {
    lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -1));
    return decode_fail(L);
  }
  s += strspn(s, " \t\r\n"); /* arrays decode to tables too: look at the text itself */
  if (*s != '{') {
    lua_pushliteral(L, "not a job: JSON is not an object");
    return decode_fail(L);
  }
  lua_getfield(L, 2, "jobid");
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pushliteral(L, "not a job: no jobid string");
    return decode_fail(L);
  }
  lua_pop(L, 1);
  if (!job_push(L, 2, 1, &why, &field)) {
    lua_pushfstring(L, "field %s is not %s", field, why);
    return decode_fail(L);
  }
  return 1;
}

/* ---- methods -------------------------------------------------------------------------- */

static job_t *check_job(lua_State *L) {
  job_t *job = (job_t *)luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  compat_getuservalue(L, 1);
  return job;
}

/* A copy with nulls dropped and integral numbers as integers: nested tables are handed out as
 * copies so that the job stays immutable. */
static void push_copy(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 4, "job too deeply nested");
  lua_createtable(L, (int)lua_rawlen(L, idx), 0);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (is_json_null(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    if (lua_type(L, -2) == LUA_TTABLE)
      push_copy(L, -2);
    else if (lua_type(L, -2) == LUA_TNUMBER)
      compat_pushnumber(L, lua_tonumber(L, -2));
    else
      lua_pushvalue(L, -2);
    lua_rawset(L, -5);
    lua_pop(L, 1);
  }
}

static int job_index(lua_State *L) {
  job_t *job;
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnumber(L, -1))
    return 1; /* a method, or nil for names a job does not have */
  switch ((int)lua_tointeger(L, -1)) {
  case FIELD_STRING:
  case FIELD_NUMBER:
    compat_getuservalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  case FIELD_ARRAY:
    compat_getuservalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (lua_istable(L, -1))
      push_copy(L, -1);
    return 1;
  default:
    job = (job_t *)lua_touserdata(L, 1);
    switch ((int)lua_tointeger(L, -1)) {
    case FIELD_CREDITS:
      if (!job->has_credits) return 0;
      lua_pushinteger(L, job->credits);
      return 1;
    case FIELD_CREDITS_LEFT:
      if (!job->has_remaining) return 0;
      lua_pushinteger(L, job->credits_left);
      return 1;
    default:
      if (!job->has_remaining) return 0;
      lua_pushinteger(L, job->credits_total);
      return 1;
    }
  }
}

static int job_newindex(lua_State *L) {
  luaL_checkudata(L, 1, FACESWAP_JOB_MT);
  return luaL_error(L, "faceswap.job is read-only (attempt to set field '%s')",
                    lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
}

static int job_done(lua_State *L) {
  static const char *const terminal[] = {"completed", "failed", "moderated", "cancelled", NULL};
  const char *status;
  int i, done = 0;
  check_job(L);
  lua_getfield(L, -1, "status");
  status = lua_tostring(L, -1);
  for (i = 0; status && terminal[i] && !done; i++)
    done = strcmp(status, terminal[i]) == 0;
  lua_pushboolean(L, done);
  return 1;
}

static int job_urls(lua_State *L) {
  int n = 0;
  size_t i, len;
  check_job(L);
  lua_newtable(L);
  lua_getfield(L, 2, "attachments");
  len = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
  for (i = 1; i <= len; i++) {
    lua_rawgeti(L, 4, (lua_Integer)i);
    lua_getfield(L, -1, "url");
    if (lua_type(L, -1) == LUA_TSTRING)
      lua_rawseti(L, 3, ++n);
    else
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_settop(L, 3);
  return 1;
}

static int job_json(lua_State *L) {
  check_job(L);
  lua_rawgeti(L, -1, 1);
  return 1;
}

static int job_tostring(lua_State *L) {
  check_job(L);
  lua_getfield(L, 2, "jobid");
  lua_getfield(L, 2, "status");
  lua_pushfstring(L, FACESWAP_JOB_MT ": %s (%s)", lua_isstring(L, 3) ? lua_tostring(L, 3) : "?",
                  lua_isstring(L, 4) ? lua_tostring(L, 4) : "?");
  return 1;
}

/* Deep equality of two decoded JSON values; the raw text at key 1 is skipped so two jobs
 * with the same fields are equal however their JSON was spelled. */
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
    if (depth > 0 || !(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) == 1)) {
      n++;
      lua_pushvalue(L, -2);
      lua_rawget(L, b);
      eq = json_equal(L, lua_absindex(L, -2), lua_absindex(L, -1), depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (!eq) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    if (depth > 0 || !(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) == 1))
      m++;
    lua_pop(L, 1);
  }
  return n == m;
}

static int job_eq(lua_State *L) {
  if (!job_is(L, 1) || !job_is(L, 2)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  compat_getuservalue(L, 1);
  compat_getuservalue(L, 2);
  lua_pushboolean(L, json_equal(L, 3, 4, 0));
  return 1;
}

void job_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"done", job_done}, {"urls", job_urls}, {"json", job_json}, {NULL, NULL}
  };
  int i;
  lua_newtable(L);
  for (i = 0; job_fields[i].tag <= FIELD_ARRAY; i++) {
    lua_pushstring(L, job_fields[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, JOB_NAMES_KEY);
  luaL_newmetatable(L, FACESWAP_JOB_MT);
  /* one lookup table for __index: method name -> function, field name -> tag */
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  for (i = 0; job_fields[i].name; i++) {
    lua_pushinteger(L, job_fields[i].tag);
    lua_setfield(L, -2, job_fields[i].name);
  }
  lua_pushcclosure(L, job_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, job_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, job_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, job_eq);
  lua_setfield(L, -2, "__eq");
  lua_pushliteral(L, "faceswap.job is read-only");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}
