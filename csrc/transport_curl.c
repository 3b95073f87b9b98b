/* transport_curl.c: the libcurl transport, the only part of the core that does I/O. It moves
 * bytes and knows nothing of faceswap: perform(method, path, content_type, body) gives back
 * status, header block and body, or an error object for what went wrong on the way.
 *
 * One easy handle per client, reused, so sequential requests share one kept-alive connection.
 * No Lua function is ever called from inside libcurl: every callback here is plain C on
 * buffers this struct owns, so no Lua error can long-jump through curl. */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "core.h"

#ifndef FACESWAP_VERSION
#error "FACESWAP_VERSION must be defined by the build"
#endif

/* A connection idle longer than this is not reused: well under common server keep-alive
 * timeouts, so a POST rarely meets a connection the server is closing (see upload_seek). */
#define MAX_IDLE_REUSE_SECONDS 30L
#define MAX_HEADER_BYTES (64 * 1024)
#define KEEP_BUFFER_BYTES (64 * 1024)
#define LARGE_BODY_BYTES (1024 * 1024)

typedef struct {
  char *p;
  size_t len, cap;
} byte_buf;

typedef struct {
  CURL *easy;                   /* NULL once closed */
  struct curl_slist *headers;   /* Authorization (owned) */
  struct curl_slist ct_node;    /* a POST's Content-Type, chained in front of headers */
  struct curl_slist expect_node; /* "Expect:", chained in front for large bodies only */
  char ct_line[160];
  char *base_url;
  size_t base_len;
  byte_buf url, body, head;
  size_t max_response;
  const char *upload;           /* the request body, anchored on the Lua stack in perform */
  size_t upload_len, upload_pos;
  int oversize, refused_rewind, no_memory;
  char errbuf[CURL_ERROR_SIZE];
} transport_t;

/* ---- buffers -------------------------------------------------------------------------- */

static int buf_reserve(byte_buf *b, size_t need, size_t limit) {
  size_t cap = b->cap ? b->cap : 4096;
  char *p;
  if (need <= b->cap)
    return 1;
  while (cap < need)
    cap = cap > limit / 2 ? limit : cap * 2;
  if (cap < need)
    return 0;
  p = (char *)realloc(b->p, cap);
  if (!p)
    return 0;
  b->p = p;
  b->cap = cap;
  return 1;
}

static int buf_append(byte_buf *b, const char *s, size_t n, size_t limit) {
  if (n > limit - b->len || !buf_reserve(b, b->len + n, limit))
    return 0;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 1;
}

/* After a large answer, give the memory back rather than keep the high-water mark. */
static void buf_trim(byte_buf *b) {
  b->len = 0;
  if (b->cap > KEEP_BUFFER_BYTES) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

/* ---- libcurl callbacks ---------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  transport_t *t = (transport_t *)ud;
  size_t bytes = size * n;
  if (bytes > t->max_response - t->body.len) {
    t->oversize = 1;
    return 0; /* aborts the transfer: memory stays bounded by max_response */
  }
  if (!buf_append(&t->body, data, bytes, t->max_response)) {
    t->no_memory = 1;
    return 0;
  }
  return bytes;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  transport_t *t = (transport_t *)ud;
  size_t bytes = size * n;
  if (bytes >= 5 && memcmp(data, "HTTP/", 5) == 0)
    t->head.len = 0; /* a new response (after a 1xx): keep only the final one's headers */
  if (bytes > MAX_HEADER_BYTES - t->head.len)
    return bytes; /* headers past 64 KiB are dropped; the status line and first ones stay */
  if (!buf_append(&t->head, data, bytes, MAX_HEADER_BYTES)) {
    t->no_memory = 1;
    return 0;
  }
  return bytes;
}

static size_t upload_read(char *out, size_t size, size_t n, void *ud) {
  transport_t *t = (transport_t *)ud;
  size_t left = t->upload_len - t->upload_pos, room = size * n;
  if (room > left)
    room = left;
  memcpy(out, t->upload + t->upload_pos, room);
  t->upload_pos += room;
  return room;
}

/* libcurl rewinds the body when it silently resends a request on a fresh connection after a
 * reused one died before any answer. For a POST whose body already left, the server may have
 * received it and made (and billed) a job, so the resend is refused here: the transfer fails
 * and the caller learns that the request's fate is unknown. */
static int upload_seek(void *ud, curl_off_t offset, int origin) {
  transport_t *t = (transport_t *)ud;
  if (origin == SEEK_SET && offset == 0 && t->upload_pos == 0)
    return CURL_SEEKFUNC_OK;
  t->refused_rewind = 1;
  return CURL_SEEKFUNC_FAIL;
}

/* ---- the object ----------------------------------------------------------------------- */

static transport_t *check_transport(lua_State *L) {
  transport_t *t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  if (!t->easy)
    luaL_error(L, "attempt to use a closed faceswap client");
  return t;
}

static void transport_release(transport_t *t) {
  if (t->easy) {
    CURL *easy = t->easy;
    t->easy = NULL; /* cleared first: a second close finds nothing to free */
    curl_easy_cleanup(easy);
  }
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  free(t->base_url);
  free(t->url.p);
  free(t->body.p);
  free(t->head.p);
  t->base_url = t->url.p = t->body.p = t->head.p = NULL;
  t->url.cap = t->body.cap = t->head.cap = 0;
}

/* close(), __gc and __close alike: idempotent. */
static int transport_close(lua_State *L) {
  transport_release((transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT));
  return 0;
}

static int is_loopback_host(const char *h, size_t n) {
  return (n == 9 && memcmp(h, "localhost", 9) == 0) || (n == 5 && memcmp(h, "[::1]", 5) == 0) ||
         (n >= 4 && memcmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") >= n);
}

/* Checks base_url and stores it without a trailing slash. Raises on anything that could send
 * the token in clear text or smuggle in a credential, query or fragment. */
static void set_base_url(lua_State *L, transport_t *t, int idx) {
  size_t len, i, auth_end;
  const char *url = luaL_checklstring(L, idx, &len), *host;
  int https = len > 8 && memcmp(url, "https://", 8) == 0;
  if (!https && !(len > 7 && memcmp(url, "http://", 7) == 0))
    luaL_error(L, "bad option 'base_url' (must start with https://)");
  for (i = 0; i < len; i++)
    if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7F || url[i] == '?' || url[i] == '#')
      luaL_error(L, "bad option 'base_url' (no spaces, control bytes, query or fragment)");
  host = url + (https ? 8 : 7);
  auth_end = strcspn(host, "/");
  if (memchr(host, '@', auth_end))
    luaL_error(L, "bad option 'base_url' (credentials in the URL are not allowed; use token)");
  if (!https) {
    size_t hlen = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
    if (!is_loopback_host(host, hlen))
      luaL_error(L, "bad option 'base_url' (plain http:// is only for loopback hosts)");
  }
  while (len > 0 && url[len - 1] == '/')
    len--;
  t->base_url = (char *)malloc(len + 1);
  if (!t->base_url)
    luaL_error(L, "not enough memory");
  memcpy(t->base_url, url, len);
  t->base_url[len] = '\0';
  t->base_len = len;
}

static void add_header(lua_State *L, transport_t *t, const char *line) {
  struct curl_slist *next = curl_slist_append(t->headers, line);
  if (!next)
    luaL_error(L, "not enough memory");
  t->headers = next;
}

static double opt_number(lua_State *L, const char *name, double dflt, double min) {
  double v;
  lua_getfield(L, 1, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  v = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || !(v >= min) || v > 1e9)
    luaL_error(L, "bad option '%s' (a number from %f to 1e9 expected)", name, min);
  lua_pop(L, 1);
  return v;
}

/* Whether any variable libcurl would read for a proxy is set. Without one, the client tells
 * libcurl "no proxy" once instead of letting it scan the environment on every request. */
static int proxy_in_environment(void) {
  static const char *const names[] = {
    "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
    "NO_PROXY", NULL
  };
  int i;
  for (i = 0; names[i]; i++)
    if (getenv(names[i]))
      return 1;
  return 0;
}

/* core.transport{token=, base_url=, timeout=, connect_timeout=, max_response=} */
int core_transport_new(lua_State *L) {
  transport_t *t;
  size_t tlen, i;
  const char *token;
  double timeout, connect_timeout, max_response;
  luaL_checktype(L, 1, LUA_TTABLE);
  timeout = opt_number(L, "timeout", 60, 0.001);
  connect_timeout = opt_number(L, "connect_timeout", 10, 0.001);
  max_response = opt_number(L, "max_response", 8 * 1024 * 1024, 1024);
  lua_getfield(L, 1, "token");
  token = lua_tolstring(L, -1, &tlen);
  if (lua_type(L, -1) != LUA_TSTRING || tlen == 0)
    luaL_error(L, "bad option 'token' (a non-empty string expected)");
  for (i = 0; i < tlen; i++)
    if ((unsigned char)token[i] <= 0x20 || token[i] == 0x7F)
      luaL_error(L, "bad option 'token' (contains a space or control byte)");

  /* created closed and with its metatable first, so an error from here on leaks nothing */
  t = (transport_t *)lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, FACESWAP_TRANSPORT_MT);
  lua_getfield(L, 1, "base_url");
  set_base_url(L, t, -1);
  lua_pop(L, 1);
  lua_pushfstring(L, "Authorization: Bearer %s", token);
  add_header(L, t, lua_tostring(L, -1));
  lua_pop(L, 1);
  t->ct_node.data = t->ct_line;
  t->ct_node.next = t->headers;
  /* libcurl asks for 100-continue only past 1 MiB; a header less on every other request
   * saves it scanning one more line each time it looks for a header */
  t->expect_node.data = (char *)"Expect:";
  t->expect_node.next = &t->ct_node;
  t->max_response = (size_t)max_response;

  t->easy = curl_easy_init();
  if (!t->easy)
    return luaL_error(L, "curl_easy_init failed");
  curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
  curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000));
  curl_easy_setopt(t->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max_response);
  curl_easy_setopt(t->easy, CURLOPT_MAXAGE_CONN, MAX_IDLE_REUSE_SECONDS);
  curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "lua-faceswap/" FACESWAP_VERSION);
  curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_READFUNCTION, upload_read);
  curl_easy_setopt(t->easy, CURLOPT_READDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_SEEKFUNCTION, upload_seek);
  curl_easy_setopt(t->easy, CURLOPT_SEEKDATA, t);
  if (!proxy_in_environment())
    curl_easy_setopt(t->easy, CURLOPT_PROXY, ""); /* spares libcurl reading them per request */
  return 1;
}

/* Pushes the error object for a failed transfer. */
static void push_transfer_error(lua_State *L, transport_t *t, CURLcode res, int post) {
  error_info info = {"transport", 0, 1, 0, -1};
  long status = 0, request_bytes = 0;
  const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(res);
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  info.code = (int)status;
  /* sent unless nothing of the request left this machine: libcurl counts request bytes once
   * per perform, so a resend's failed connect still shows the first attempt's bytes */
  info.sent = t->refused_rewind || request_bytes > 0 || t->upload_pos > 0;
  info.retryable = !info.sent || !post;
  if (t->oversize || res == CURLE_FILESIZE_EXCEEDED) {
    info.kind = "bad_response";
    info.retryable = 0;
    lua_pushfstring(L, "answer larger than max_response (%d bytes)", (int)t->max_response);
    msg = lua_tostring(L, -1);
  } else if (t->refused_rewind) {
    info.retryable = 0;
    msg = "connection lost after the request was sent; not resent, since the server may "
          "have acted on it";
  } else if (t->no_memory) {
    msg = "not enough memory for the answer";
  } else if (res == CURLE_OPERATION_TIMEDOUT) {
    info.kind = "timeout";
  } else if (res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_SSL_CACERT_BADFILE ||
             res == CURLE_SSL_CERTPROBLEM || res == CURLE_URL_MALFORMAT ||
             res == CURLE_UNSUPPORTED_PROTOCOL) {
    info.retryable = 0; /* the same request would fail the same way */
  }
  lua_pushnil(L);
  error_push(L, &info, msg, 0, 0);
}

/* transport:perform(method, path, content_type, body) -> status, headers, body | nil, err */
static int transport_perform(lua_State *L) {
  transport_t *t = check_transport(L);
  const char *method = luaL_checkstring(L, 2);
  size_t plen;
  const char *path = luaL_checklstring(L, 3, &plen);
  int post = strcmp(method, "POST") == 0;
  CURLcode res;
  if (!post && strcmp(method, "GET") != 0)
    return luaL_error(L, "bad argument #1 to 'perform' (GET or POST expected)");
  /* libcurl copies the URL on every setopt: skip it when the path is the last one's */
  if (t->url.len != t->base_len + plen + 1 || memcmp(t->url.p + t->base_len, path, plen) != 0) {
    t->url.len = 0;
    if (!buf_append(&t->url, t->base_url, t->base_len, (size_t)-1) ||
        !buf_append(&t->url, path, plen + 1, (size_t)-1)) {
      t->url.len = 0;
      return luaL_error(L, "not enough memory");
    }
    curl_easy_setopt(t->easy, CURLOPT_URL, t->url.p);
  }
  if (post) {
    size_t clen;
    const char *ct = luaL_checklstring(L, 4, &clen);
    t->upload = luaL_checklstring(L, 5, &t->upload_len);
    if (clen > sizeof t->ct_line - sizeof "Content-Type: ")
      return luaL_error(L, "bad argument #3 to 'perform' (content type too long)");
    memcpy(t->ct_line, "Content-Type: ", sizeof "Content-Type: " - 1);
    memcpy(t->ct_line + sizeof "Content-Type: " - 1, ct, clen + 1);
    t->upload_pos = 0;
    curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->upload_len);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER,
                     t->upload_len >= LARGE_BODY_BYTES ? &t->expect_node : &t->ct_node);
  } else {
    t->upload_pos = 0;
    curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  }
  t->body.len = t->head.len = 0;
  t->oversize = t->refused_rewind = t->no_memory = 0;
  t->errbuf[0] = '\0';

  res = curl_easy_perform(t->easy); /* runs no Lua: nothing can close t meanwhile */
  t->upload = NULL;

  if (res == CURLE_OK && !t->no_memory) {
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushinteger(L, status);
    lua_pushlstring(L, t->head.p ? t->head.p : "", t->head.len);
    lua_pushlstring(L, t->body.p ? t->body.p : "", t->body.len);
    buf_trim(&t->body);
    return 3;
  }
  push_transfer_error(L, t, res, post);
  buf_trim(&t->body);
  return 2;
}

static int transport_tostring(lua_State *L) {
  transport_t *t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  if (t->easy)
    lua_pushfstring(L, FACESWAP_TRANSPORT_MT " (%s)", t->base_url);
  else
    lua_pushliteral(L, FACESWAP_TRANSPORT_MT " (closed)");
  return 1;
}

void transport_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"perform", transport_perform}, {"close", transport_close}, {NULL, NULL}
  };
  static const luaL_Reg metamethods[] = {
    {"__gc", transport_close}, {"__close", transport_close}, {"__tostring", transport_tostring},
    {NULL, NULL}
  };
  static int curl_ready = 0;
  if (!curl_ready) {
    /* once per process; never cleaned up, as other Lua states may still use libcurl */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      luaL_error(L, "curl_global_init failed");
    curl_ready = 1;
  }
  luaL_newmetatable(L, FACESWAP_TRANSPORT_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, metamethods, 0);
  lua_pop(L, 1);
}
