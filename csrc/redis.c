/* redis.c: faceswap.redis, an optional module (built when hiredis is installed): one
 * connection to Redis through hiredis's asynchronous API, driven by whoever owns the event
 * loop. It never blocks but in connect's name lookup (none for an address) and never calls
 * Lua from inside hiredis: the connection's socket lives in an epoll set of its own, whose
 * descriptor (fd()) the client's transport watches beside its transfers (transport:watch);
 * drive() lets hiredis read and write what is ready, and hands the replies that came, copied
 * out of hiredis, to a Lua function afterwards.
 *
 *   redis.connect(host, port)  -> conn | nil, why     starts connecting (commands may be
 *                                                    queued at once: they go once connected)
 *   conn:command(arg, ...)     -> id | nil, why       queues a command (and sends what it can)
 *   conn:drive(fn)             -> count               fn(id, value, err, lost) per reply:
 *        value the reply (strings, integers, arrays as tables, a nil reply inside an array as
 *        false); err the text of an error reply; lost the reason the connection went before
 *        a reply came (every command queued then gets one). A SUBSCRIBE's id gets each message.
 *   conn:wait(seconds)                                blocks until something is ready (a
 *                                                    caller with no event loop of its own)
 *   conn:fd(), conn:state() -> "connecting" | "connected" | "closed", why
 *   conn:close()                                      idempotent; also __gc and __close */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include "compat.h"

#define CONN_MT "faceswap.redis.connection"
#define MAX_ARGS 64

enum { CONNECTING, CONNECTED, CLOSED };

/* A reply copied out of hiredis (which frees its own as the callback returns). */
typedef struct node {
  int type;                /* REDIS_REPLY_*, or -1: the connection was lost before it came */
  long long integer;
  char *str;
  size_t len;
  size_t n;
  struct node **elem;
} node;

typedef struct done {
  long id;
  node *reply;             /* NULL when it could not be copied (no memory) */
  struct done *next;
} done;

typedef struct {
  redisAsyncContext *ac;   /* NULL once hiredis has freed it */
  int epfd, sock;
  unsigned interest;       /* EPOLLIN | EPOLLOUT, as hiredis asks */
  int in_set;
  int state;
  char why[160];           /* why it closed or failed */
  pid_t pid;               /* the process that connected: a child of fork() never uses it */
  long next_id;
  done *head, *tail;
} conn_t;

static void node_free(node *r) {
  size_t i;
  if (!r)
    return;
  for (i = 0; i < r->n; i++)
    node_free(r->elem[i]);
  free(r->elem);
  free(r->str);
  free(r);
}

static node *node_copy(const redisReply *r) {
  node *c = (node *)calloc(1, sizeof *c);
  size_t i;
  if (!c)
    return NULL;
  c->type = r->type;
  c->integer = r->integer;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    c->str = (char *)malloc(r->len + 1);
    if (!c->str) {
      free(c);
      return NULL;
    }
    memcpy(c->str, r->str, r->len);
    c->str[r->len] = '\0';
    c->len = r->len;
  } else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
    c->elem = (node **)calloc(r->elements, sizeof *c->elem);
    if (!c->elem) {
      free(c);
      return NULL;
    }
    for (i = 0; i < r->elements; i++) {
      c->n = i + 1;
      if (!(c->elem[i] = node_copy(r->element[i]))) {
        node_free(c);
        return NULL;
      }
    }
  }
  return c;
}

static void enqueue(conn_t *c, long id, node *reply) {
  done *d = (done *)malloc(sizeof *d);
  if (!d) {
    node_free(reply);
    return; /* its caller times out instead */
  }
  d->id = id;
  d->reply = reply;
  d->next = NULL;
  if (c->tail)
    c->tail->next = d;
  else
    c->head = d;
  c->tail = d;
}

/* ---- hiredis's hooks: plain C, no Lua -------------------------------------------------- */

static void set_interest(conn_t *c, unsigned interest) {
  struct epoll_event ev;
  c->interest = interest;
  if (c->sock < 0 || c->epfd < 0)
    return;
  if (!interest) {
    if (c->in_set)
      epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->sock, NULL);
    c->in_set = 0;
    return;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = interest;
  ev.data.fd = c->sock;
  if (epoll_ctl(c->epfd, c->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->sock, &ev) == 0)
    c->in_set = 1;
}

static void add_read(void *p) { conn_t *c = (conn_t *)p; set_interest(c, c->interest | EPOLLIN); }
static void del_read(void *p) { conn_t *c = (conn_t *)p; set_interest(c, c->interest & ~(unsigned)EPOLLIN); }
static void add_write(void *p) { conn_t *c = (conn_t *)p; set_interest(c, c->interest | EPOLLOUT); }
static void del_write(void *p) { conn_t *c = (conn_t *)p; set_interest(c, c->interest & ~(unsigned)EPOLLOUT); }

/* hiredis frees the context (an error, the server gone, or ours): after the callbacks of the
 * commands still waiting have run, and before its socket closes. */
static void cleanup(void *p) {
  conn_t *c = (conn_t *)p;
  set_interest(c, 0);
  if (c->ac && c->ac->err && c->state != CLOSED)
    snprintf(c->why, sizeof c->why, "%s", c->ac->errstr[0] ? c->ac->errstr : "connection lost");
  else if (c->state != CLOSED && !c->why[0])
    snprintf(c->why, sizeof c->why, "connection closed");
  c->state = CLOSED;
  c->sock = -1;
  c->ac = NULL;
}

static void on_connect(const redisAsyncContext *ac, int status) {
  conn_t *c = (conn_t *)ac->data;
  if (status == REDIS_OK) {
    c->state = CONNECTED;
  } else {
    snprintf(c->why, sizeof c->why, "%s", ac->errstr[0] ? ac->errstr : "cannot connect");
  }
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
  conn_t *c = (conn_t *)ac->data;
  long id = (long)(intptr_t)privdata;
  node *copy;
  if (!r) {
    copy = (node *)calloc(1, sizeof *copy);
    if (copy)
      copy->type = -1;
  } else {
    copy = node_copy((const redisReply *)r);
  }
  enqueue(c, id, copy);
}

/* ---- Lua ----------------------------------------------------------------------------- */

static void conn_shut(conn_t *c, const char *why);

/* In a child of the process that connected, the socket is the parent's too: the child's copy
 * is closed (which sends nothing) and the connection counts as closed, "forked", so that the
 * child makes its own. */
static conn_t *check_conn(lua_State *L) {
  conn_t *c = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
  if (c->ac && c->pid != getpid()) {
    /* the epoll set is the parent's too: closed first, so hiredis's cleanup changes nothing
     * in it */
    if (c->epfd >= 0)
      close(c->epfd);
    c->epfd = -1;
    conn_shut(c, "forked");
  }
  return c;
}

/* Frees hiredis's context (running the waiting commands' callbacks: each gets "lost") and
 * the epoll set. */
static void conn_shut(conn_t *c, const char *why) {
  if (c->ac) {
    redisAsyncContext *ac = c->ac;
    if (c->state != CLOSED)
      snprintf(c->why, sizeof c->why, "%s", why);
    c->state = CLOSED;
    redisAsyncFree(ac); /* cleanup() clears c->ac */
  }
  c->state = CLOSED;
  if (c->epfd >= 0)
    close(c->epfd);
  c->epfd = -1;
}

static int conn_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  conn_t *c;
  redisAsyncContext *ac;
  luaL_argcheck(L, port > 0 && port < 65536, 2, "a port from 1 to 65535 expected");
  c = (conn_t *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->epfd = c->sock = -1;
  c->state = CLOSED;
  luaL_setmetatable(L, CONN_MT);
  c->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (c->epfd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "epoll_create1 failed: %s", strerror(errno));
    return 2;
  }
  ac = redisAsyncConnect(host, (int)port);
  if (!ac) {
    lua_pushnil(L);
    lua_pushliteral(L, "not enough memory");
    return 2;
  }
  if (ac->err) {
    lua_pushnil(L);
    lua_pushstring(L, ac->errstr[0] ? ac->errstr : "cannot connect");
    redisAsyncFree(ac);
    return 2;
  }
  c->ac = ac;
  c->pid = getpid();
  c->state = CONNECTING;
  c->sock = ac->c.fd;
  /* close-on-exec, as every descriptor of the client (hiredis makes it without) */
  if (c->sock >= 0)
    fcntl(c->sock, F_SETFD, FD_CLOEXEC);
  ac->data = c;
  ac->ev.data = c;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  redisAsyncSetConnectCallback(ac, on_connect);
  /* its connect is under way: writable once it is done (or failed) */
  add_write(c);
  return 1;
}

static int conn_command(lua_State *L) {
  conn_t *c = check_conn(L);
  int argc = lua_gettop(L) - 1, i;
  const char *argv[MAX_ARGS];
  size_t lens[MAX_ARGS];
  long id;
  luaL_argcheck(L, argc >= 1 && argc <= MAX_ARGS, 2, "1 to 64 arguments expected");
  for (i = 0; i < argc; i++)
    argv[i] = luaL_checklstring(L, i + 2, &lens[i]);
  if (!c->ac) {
    lua_pushnil(L);
    lua_pushstring(L, c->why[0] ? c->why : "closed");
    return 2;
  }
  id = ++c->next_id;
  if (redisAsyncCommandArgv(c->ac, on_reply, (void *)(intptr_t)id, argc, argv, lens) != REDIS_OK) {
    lua_pushnil(L);
    lua_pushstring(L, c->ac && c->ac->errstr[0] ? c->ac->errstr : "the command was refused");
    return 2;
  }
  /* sent now if the socket takes it: no turn of the loop is waited for */
  if (c->ac && c->state == CONNECTED)
    redisAsyncHandleWrite(c->ac);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* Pushes a copied reply: 1 value, or for an error reply nil and its text. */
static void push_node(lua_State *L, const node *r, int top) {
  size_t i;
  luaL_checkstack(L, 4, "reply too deep");
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, r->str, r->len);
    break;
  case REDIS_REPLY_ERROR:
    if (top) {
      lua_pushnil(L);
      lua_pushlstring(L, r->str, r->len);
      return;
    }
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, r->str, r->len);
    lua_setfield(L, -2, "err");
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)r->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, (int)r->n, 0);
    for (i = 0; i < r->n; i++) {
      push_node(L, r->elem[i], 0);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  default: /* nil */
    if (top)
      lua_pushnil(L);
    else
      lua_pushboolean(L, 0);
    break;
  }
  if (top)
    lua_pushnil(L);
}

static int conn_drive(lua_State *L) {
  conn_t *c = check_conn(L);
  struct epoll_event ev[4];
  int n, i, count = 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (c->epfd >= 0 && c->ac) {
    n = epoll_wait(c->epfd, ev, 4, 0);
    for (i = 0; i < n && c->ac; i++) {
      if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        redisAsyncHandleRead(c->ac);
      if (c->ac && (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleWrite(c->ac);
    }
  }
  while (c->head) {
    done *d = c->head;
    lua_pushvalue(L, 2);
    lua_pushinteger(L, (lua_Integer)d->id);
    if (!d->reply) {
      lua_pushnil(L);
      lua_pushliteral(L, "not enough memory for a reply");
      lua_pushnil(L);
    } else if (d->reply->type == -1) {
      lua_pushnil(L);
      lua_pushnil(L);
      lua_pushstring(L, c->why[0] ? c->why : "connection lost");
    } else {
      push_node(L, d->reply, 1);
      lua_pushnil(L);
    }
    /* taken off before the call: a function that raises gets each reply once */
    c->head = d->next;
    if (!c->head)
      c->tail = NULL;
    node_free(d->reply);
    free(d);
    lua_call(L, 4, 0);
    count++;
  }
  lua_pushinteger(L, count);
  return 1;
}

static int conn_wait(lua_State *L) {
  conn_t *c = check_conn(L);
  lua_Number secs = luaL_checknumber(L, 2);
  struct epoll_event ev;
  if (c->epfd >= 0 && c->ac && !c->head)
    epoll_wait(c->epfd, &ev, 1, secs > 0 ? (int)(secs * 1000 + 0.999) : 0);
  return 0;
}

static int conn_fd(lua_State *L) {
  lua_pushinteger(L, check_conn(L)->epfd);
  return 1;
}

static int conn_state(lua_State *L) {
  conn_t *c = check_conn(L);
  static const char *const names[] = {"connecting", "connected", "closed"};
  lua_pushstring(L, names[c->state]);
  if (c->why[0])
    lua_pushstring(L, c->why);
  else
    lua_pushnil(L);
  return 2;
}

static int conn_close(lua_State *L) {
  conn_t *c = check_conn(L);
  done *d;
  conn_shut(c, "closed");
  while ((d = c->head) != NULL) {
    c->head = d->next;
    node_free(d->reply);
    free(d);
  }
  c->tail = NULL;
  return 0;
}

static int conn_tostring(lua_State *L) {
  conn_t *c = check_conn(L);
  lua_pushfstring(L, CONN_MT " (%s)", c->state == CONNECTED ? "connected" :
                  c->state == CONNECTING ? "connecting" : "closed");
  return 1;
}

__attribute__((visibility("default"))) int luaopen_faceswap_redis(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"command", conn_command}, {"drive", conn_drive}, {"wait", conn_wait}, {"fd", conn_fd},
    {"state", conn_state}, {"close", conn_close}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {{"connect", conn_connect}, {NULL, NULL}};
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, conn_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushfstring(L, "%d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
  lua_setfield(L, -2, "hiredis");
  return 1;
}
