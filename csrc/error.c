/* error.c: error objects. An error is a plain table (kind, code, error, errorDetails, retry_after,
 * retryable, sent) with the faceswap.error metatable, so callers read fields directly and the
 * Lua layer can add context (err.job) without a C round trip. */
#include <string.h>
#include "core.h"

static const char *const error_kinds[] = {
  "invalid_request", "unauthorized", "payment_required", "not_found", "rate_limited",
  "server", "transport", "timeout", "bad_response", "cancelled", NULL
};

void error_push(lua_State *L, const error_info *info, const char *msg, int idx_error,
                int idx_details) {
  idx_error = idx_error ? lua_absindex(L, idx_error) : 0;
  idx_details = idx_details ? lua_absindex(L, idx_details) : 0;
  lua_createtable(L, 0, 7);
  lua_pushstring(L, info->kind);
  lua_setfield(L, -2, "kind");
  if (info->code > 0) {
    lua_pushinteger(L, info->code);
    lua_setfield(L, -2, "code");
  }
  if (idx_error)
    lua_pushvalue(L, idx_error);
  else
    lua_pushstring(L, msg);
  lua_setfield(L, -2, "error");
  if (idx_details) {
    lua_pushvalue(L, idx_details);
    lua_setfield(L, -2, "errorDetails");
  }
  if (info->retry_after >= 0) {
    compat_pushnumber(L, info->retry_after);
    lua_setfield(L, -2, "retry_after");
  }
  lua_pushboolean(L, info->retryable);
  lua_setfield(L, -2, "retryable");
  lua_pushboolean(L, info->sent);
  lua_setfield(L, -2, "sent");
  luaL_setmetatable(L, FACESWAP_ERROR_MT);
}

int error_is(lua_State *L, int idx) {
  int is;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, FACESWAP_ERROR_MT);
  is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return is;
}

/* Pushes the one line of the error table at idx: "kind (code): message", whatever the server
 * put in its text. */
static void error_pushline(lua_State *L, int idx) {
  luaL_Buffer b;
  const char *msg;
  size_t len, i;
  int top;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "kind");
  lua_getfield(L, idx, "code");
  lua_getfield(L, idx, "error");
  top = lua_gettop(L);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, lua_isstring(L, top - 2) ? lua_tostring(L, top - 2) : "error");
  if (lua_isnumber(L, top - 1)) {
    lua_pushfstring(L, " (%d)", (int)lua_tointeger(L, top - 1));
    luaL_addvalue(&b);
  }
  msg = lua_isstring(L, top) ? lua_tolstring(L, top, &len) : NULL;
  if (msg) {
    luaL_addstring(&b, ": ");
    for (i = 0; i < len; i++)
      luaL_addchar(&b, (msg[i] == '\r' || msg[i] == '\n') ? ' ' : msg[i]);
  }
  luaL_pushresult(&b);
  lua_replace(L, top - 2);
  lua_pop(L, 2);
}

/* tostring(err): its one line. */
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  error_pushline(L, 1);
  return 1;
}

/* "failed: " .. err, err .. "\n", err .. err: the error's one line in the place of each error;
 * anything else that a string cannot join fails as Lua's own `..` would. */
static int error_concat(lua_State *L) {
  int i;
  for (i = 1; i <= 2; i++) {
    if (error_is(L, i)) {
      error_pushline(L, i);
    } else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
      lua_pushvalue(L, i);
    } else {
      return luaL_error(L, "attempt to concatenate a %s value", luaL_typename(L, i));
    }
  }
  lua_concat(L, 2);
  return 1;
}

/* core.error{kind=..., ...}: gives a table the error metatable, for errors the Lua layer makes
 * (a wait that runs out of time). The kind must be one of docs/api.md's. */
int core_error_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "kind");
  luaL_checkoption(L, -1, NULL, error_kinds);
  lua_pop(L, 1);
  lua_getfield(L, 1, "error");
  luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1, "error.error must be a string");
  lua_pop(L, 1);
  lua_settop(L, 1);
  luaL_setmetatable(L, FACESWAP_ERROR_MT);
  return 1;
}

void error_open(lua_State *L) {
  luaL_newmetatable(L, FACESWAP_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, error_concat);
  lua_setfield(L, -2, "__concat");
  lua_pop(L, 1);
}

int error_result(lua_State *L, const error_info *info, const char *msg, int idx_error) {
  idx_error = idx_error ? lua_absindex(L, idx_error) : 0;
  lua_pushnil(L);
  error_push(L, info, msg, idx_error, 0);
  return 2;
}
