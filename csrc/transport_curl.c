/* transport_curl.c: the libcurl transport, the only part of the core that does I/O. It moves
 * bytes and knows nothing of faceswap: a request goes in as method, path (or, for downloads,
 * a whole URL), content type and body; status, header block and body come out, or an error
 * object for what went wrong on the way.
 *
 * One curl multi handle per client carries every transfer. Each transfer has its own easy
 * handle, kept and reused in a slot; connections live in the multi handle's cache, so
 * requests one after another share one kept-alive connection. The multi handle is driven with
 * curl_multi_socket_action over epoll: a drive costs work for the sockets that are ready and
 * the timers that are due, not for every transfer in flight.
 *
 *   start(...)  -> id     adds a transfer; it runs while anything drives the multi handle
 *                         (one that needs a new connection may wait for a later poll: a
 *                         poll opens OPEN_BUDGET's worth)
 *   poll(wait)  -> id...  drives for at most `wait` seconds; the ids of transfers that ended
 *   finish(id)  -> status, headers, body | nil, err   and frees the slot
 *   cancel(id)            drops a transfer, finished or not
 *   perform(...)          start, drive until that transfer ends, finish: the blocking call
 *   watch(fd, fn)         another descriptor joins the epoll set: poll calls fn(fd) when it is
 *                         readable (unwatch(fd) takes it out), so one loop drives both
 *
 * A download may stream instead (start's options `path` or `sink`): its body goes, as it
 * arrives, to a temporary file renamed into place once complete, or to a Lua function.
 *
 * No Lua function is called from inside libcurl but a download's sink, and that only inside a
 * protected call: nothing long-jumps through curl. Every other callback here is plain C on
 * buffers this file owns.
 *
 * Anything that allocates Lua memory (a lua_push*string, an error object) may run a step of
 * the collector, and so a __gc finalizer, and a finalizer may close the client. No pointer into
 * the transport's or a transfer's memory is kept across such a call outside a "window" (see
 * `window`): inside one, close() only marks the transport closed and the memory is freed when
 * the last window ends. A method whose client was closed while its call was on the way (start,
 * perform, finish) returns nil and a `cancelled` error, "client closed", instead of raising. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#define MAX_DOWNLOAD_BYTES (64 * 1024 * 1024)
#define MAX_EVENTS 64
#define MAX_IDLE_CONNECTIONS 64L
#define MAX_WATCHED 8
/* libcurl's send buffer for a body with files on disk: its size, within libcurl's bounds */
#define UPLOAD_PIECE_MIN (16L * 1024)
#define UPLOAD_PIECE_MAX (256L * 1024)
#define UPLOAD_PIECE_DEFAULT (64L * 1024)

/* Transfers that need a new connection join the multi handle a few per poll (step): the
 * rest wait in a queue, so that many tasks started in one frame, or many TLS handshakes at
 * once, do not all land in one step(0). A plain http connection counts 1, an https one (a
 * TLS handshake: about 3.7 million instructions, 1 ms of CPU on the benchmark machine, spread
 * over the two steps that send its hello and read the server's) counts 4, and one poll opens
 * up to OPEN_BUDGET's worth (at least one): 4 http or 1 https connections a step.
 * An https opener also waits until the previous one's handshake is done (or it ended), so
 * that no step holds the hello of one and the key exchange of the other; but not forever on
 * a slow server: after OPEN_WAIT_POLLS polls and OPEN_WAIT_SECONDS it joins anyway (a
 * loopback or LAN handshake is done by then; over a 100 ms round trip, which takes 200 ms a
 * handshake, 16 opens start within 16 x 5 ms instead of at once). Measured in
 * docs/benchmarks.md (frames) and docs/https.md. */
#define OPEN_BUDGET 4
#define OPEN_COST_HTTPS 4
#define OPEN_WAIT_POLLS 2
#define OPEN_WAIT_SECONDS 0.005

typedef struct {
  char *p;
  size_t len, cap;
} byte_buf;

enum { SLOT_FREE, SLOT_RUNNING, SLOT_DONE };

typedef struct transport transport_t;

typedef struct transfer {
  transport_t *owner;
  CURL *easy;
  int id;                       /* the slot's number, as Lua sees it (1-based) */
  int state;                    /* SLOT_* */
  int sync;                     /* a blocking perform waits for it: poll does not report it */
  int queued;                   /* on the owner's list of ended, unreported transfers */
  struct transfer *next_done;
  int held;                     /* running, but waiting for its turn to join the multi handle */
  struct transfer *next_held;
  int next_free;                /* the next free slot's id, 0 for none */
  int post;
  CURLcode result;
  byte_buf url, body, head, upload;
  size_t limit;                 /* the largest answer body taken */
  size_t upload_pos;
  /* An upload whose files stay on disk (upload.c's body, held while the transfer runs): sent
   * by file_body_read, its files read from their descriptors into libcurl's buffer. */
  upload_body *file_body;
  int set_file_read;            /* CURLOPT_READFUNCTION is file_body_read */
  long set_ulbuf;               /* CURLOPT_UPLOAD_BUFFERSIZE, 0 for libcurl's default */
  int body_failed;              /* a file of the body could not be sent: body_fault says why */
  upload_fault body_fault;
  int oversize, refused_rewind, no_memory;
  int bad_framing;              /* 0, or the FAULT_* of headers that leave the answer unread */
  int forked;                   /* in flight when the process forked: the parent's, not ours */
  int pinned;                   /* being finished inside a window: no other call may take it */
  int direct;                   /* CURLOPT_PROXY is "": this transfer uses no proxy */
  /* What the easy handle was last set to (libcurl keeps options from one transfer to the
   * next): each is set only when it changes. set_method 0 is "not yet" (calloc). */
  int set_method;               /* 1 CURLOPT_POST, 2 CURLOPT_HTTPGET */
  int set_del;                  /* CURLOPT_CUSTOMREQUEST is "DELETE" (libcurl's default NULL) */
  curl_off_t set_size;          /* CURLOPT_POSTFIELDSIZE_LARGE (libcurl's default -1) */
  const char *set_fields;       /* CURLOPT_POSTFIELDS (NULL: the body is read by upload_read) */
  int requests;                 /* requests libcurl began for this transfer (see on_prereq) */
  struct curl_slist *set_headers; /* CURLOPT_HTTPHEADER */
  size_t set_limit;             /* CURLOPT_MAXFILESIZE_LARGE (libcurl's default 0) */
  long set_timeout_ms;          /* CURLOPT_TIMEOUT_MS */
  int download;                 /* a whole URL, sent without the token */
  /* A streamed download: the body goes to stream_fd (a temporary file, renamed to final_path
   * once complete) or to the sink (kept in the registry under this transfer's address), not
   * into `body`. */
  int streaming;                /* 1: a file, 2: a sink */
  int stream_fd;                /* -1 when none is open */
  char *tmp_path, *final_path;
  size_t received;              /* body bytes taken */
  int stream_errno;             /* writing the file failed so */
  int sink_stop;                /* 1: the sink returned false, 2: it raised (sink_msg) */
  char *sink_msg;
  int at_status;                /* the next header line is a status line (start, after a 1xx) */
  int final_status;             /* an answer's status line (not 1xx) came */
  int head_done;                /* and so did the blank line that ends its header block */
  int field_came;               /* a field line of this block came: a folded line continues it */
  long long content_length;     /* the answer's Content-Length, -1 before one is seen */
  struct curl_slist ct_node;    /* a POST's Content-Type, chained in front of the owner's */
  struct curl_slist expect_node; /* "Expect:", chained in front for large bodies only */
  char ct_line[160];
  char errbuf[CURL_ERROR_SIZE];
} transfer_t;

struct transport {
  CURLM *multi;                 /* NULL once closed */
  int epfd;
  struct curl_slist *headers;   /* Authorization (owned) */
  char *base_url;
  size_t base_len;
  long timeout_ms, connect_timeout_ms;
  size_t max_response;
  int no_proxy;                 /* no proxy variable is set: every transfer goes direct */
  int base_http;                /* base_url is plain http: never through a proxy */
  char *ca_file;                /* CURLOPT_CAINFO, NULL for libcurl's built-in bundle */
  int no_ca_path;               /* CURLOPT_CAPATH NULL: a bundle file is the trust store */
  int no_ca_file;               /* CURLOPT_CAINFO NULL: the hashed CA directory is the store */
  CURLSH *share;                /* TLS sessions, shared by every transfer of the client */
  /* libcurl before 8.1.0 keeps a pointer to the last header it stored for curl_easy_header
   * after freeing it as the handle's next transfer starts: an answer whose first field line is
   * folded (" a: b") is then unfolded into freed memory, and the heap is corrupted (curl
   * #11101). With it, each transfer gets a new easy handle; connections, DNS and the CA
   * store stay in the multi handle, TLS sessions in the share. */
  int stale_headers;
  transfer_t **slots;           /* slots[id - 1] */
  int nslots, free_head;
  int running;                  /* transfers in flight (held ones too) */
  transfer_t *held_head, *held_tail; /* started, waiting to join the multi handle (FIFO) */
  int nheld;
  int opening;                  /* the OPEN_BUDGET spent this poll by transfers that joined */
  /* The https transfer that last joined to open a connection, while its handshake may be
   * under way (see OPEN_WAIT_SECONDS): when it joined, and the polls driven since. */
  transfer_t *opener;
  double opener_at;
  int opener_polls;
  int more_ready;               /* the last epoll_wait filled its array: more may be ready */
  transfer_t *done_head, *done_tail;
  double timer_at;              /* when libcurl wants its timeout action; < 0 for never */
  unsigned forks;               /* fork_count when the multi handle was made */
  int *socks, nsocks, socks_cap; /* the connections' sockets (opened by open_socket) */
  int wake_fds[2];              /* libcurl's own wakeup socketpair, -1 when unknown */
  lua_State *L;                 /* the thread driving the transfers now (for a sink), or NULL */
  int in_sink;                  /* a sink runs: the transport may not be used from inside it */
  int busy;                     /* windows open (see `window`): nothing may be freed */
  int close_pending;            /* close() came inside a window: done when the last one ends */
  /* Descriptors of others in the epoll set (watch): one-shot, so a ready one that poll has
   * not handed to its function yet wakes no epoll_wait again (a blocking perform's). Their
   * functions live in the transport's user value, a table fd -> fn. */
  int watched[MAX_WATCHED], watched_ready[MAX_WATCHED], nwatched, watch_pending;
};

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

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- libcurl callbacks ---------------------------------------------------------------- */

/* A sink's call, made protected: the sink and the chunk are pushed inside it. */
typedef struct {
  transfer_t *x;
  const char *data;
  size_t n;
  int go;
} sink_call;

static int sink_protected(lua_State *L) {
  sink_call *c = (sink_call *)lua_touserdata(L, 1);
  lua_pushlightuserdata(L, c->x);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_pushlstring(L, c->data, c->n);
  lua_call(L, 1, 1);
  c->go = !(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1));
  return 0;
}

/* Hands a chunk to the sink; whether to go on. What it raised is kept in sink_msg. */
static int call_sink(transfer_t *x, const char *data, size_t n) {
  transport_t *t = x->owner;
  lua_State *L = t->L;
  sink_call c;
  int status, top;
  c.x = x;
  c.data = data;
  c.n = n;
  c.go = 0;
  if (!L || !lua_checkstack(L, 4)) {
    x->sink_stop = 2;
    return 0;
  }
  top = lua_gettop(L);
  t->in_sink = 1;
#if LUA_VERSION_NUM < 502
  status = lua_cpcall(L, sink_protected, &c);
#else
  lua_pushcfunction(L, sink_protected); /* a light C function: nothing allocated */
  lua_pushlightuserdata(L, &c);
  status = lua_pcall(L, 1, 0, 0);
#endif
  t->in_sink = 0;
  if (status != 0) { /* its message copied without a Lua call: nothing here may raise */
    int type = lua_type(L, -1);
    const char *msg = type == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
    size_t len = strlen(msg) + 40;
    x->sink_msg = (char *)malloc(len);
    if (x->sink_msg && type == LUA_TNUMBER)
      snprintf(x->sink_msg, len, "%.14g", (double)lua_tonumber(L, -1));
    else if (x->sink_msg)
      snprintf(x->sink_msg, len, type == LUA_TSTRING ? "%s" : "(error object is a %s value)", msg);
    x->sink_stop = 2;
  } else if (!c.go) {
    x->sink_stop = 1;
  }
  lua_settop(L, top);
  return status == 0 && c.go;
}

/* A streamed download's body: an error answer's is read and dropped, a 2xx's written. */
static size_t on_stream(transfer_t *x, char *data, size_t bytes) {
  long status = 0;
  size_t done = 0;
  if (bytes > x->limit - x->received) {
    x->oversize = 1;
    return 0;
  }
  x->received += bytes;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299)
    return bytes;
  if (x->streaming == 2)
    return call_sink(x, data, bytes) ? bytes : 0;
  while (done < bytes) {
    ssize_t w = write(x->stream_fd, data + done, bytes - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      x->stream_errno = w < 0 ? errno : EIO;
      return 0;
    }
    done += (size_t)w;
  }
  return bytes;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  transfer_t *x = (transfer_t *)ud;
  size_t bytes = size * n;
  if (x->streaming)
    return on_stream(x, data, bytes);
  if (bytes > x->limit - x->body.len) {
    x->oversize = 1;
    return 0; /* aborts the transfer: memory stays bounded by the limit */
  }
  if (!buf_append(&x->body, data, bytes, x->limit)) {
    x->no_memory = 1;
    return 0;
  }
  return bytes;
}

/* 0 when the status line `data` (its CRLF or LF included) is HTTP/1.0 or HTTP/1.1, one space,
 * three digits from 100, then a space or the line's end; else the fault it is: FAULT_HTTP09 when
 * it does not start "HTTP/" (libcurl takes "http/" too), else FAULT_STATUS_LINE. The nginx
 * transport reads status lines by the same rule (lua/faceswap/resty/transport.lua). */
static int status_line_fault(const char *data, size_t bytes) {
  if (bytes < 5 || memcmp(data, "HTTP/", 5) != 0)
    return FAULT_HTTP09;
  if (bytes < 13 || memcmp(data, "HTTP/1.", 7) != 0 || (data[7] != '0' && data[7] != '1') ||
      data[8] != ' ' || data[9] < '1' || data[9] > '9' || data[10] < '0' || data[10] > '9' ||
      data[11] < '0' || data[11] > '9' ||
      (data[12] != ' ' && !(bytes == 13 && data[12] == '\n') &&
       !(bytes == 14 && data[12] == '\r' && data[13] == '\n')))
    return FAULT_STATUS_LINE;
  return 0;
}

/* Whether the value of a Content-Length line (after its colon, up to its CRLF or LF) is digits
 * between spaces and tabs (RFC 9110, 8.6), and then that number in *v (LLONG_MAX past it). */
static int length_value(const char *p, size_t bytes, long long *v) {
  const char *end = p + bytes, *digits;
  while (end > p && (end[-1] == '\n' || end[-1] == '\r'))
    end--;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  digits = p;
  while (p < end && *p >= '0' && *p <= '9')
    p++;
  if (p == digits)
    return 0;
  *v = strtoll(digits, NULL, 10);
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p == end;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  transfer_t *x = (transfer_t *)ud;
  size_t bytes = size * n;
  if (x->at_status) {
    /* a status line: the first line, or the first after a 1xx's block. A new response (after
     * a 1xx) keeps only the final one's headers; a line starting "HTTP/" inside a header block
     * is just a header line and resets nothing. */
    x->at_status = 0;
    x->head.len = 0;
    x->content_length = -1;
    x->final_status = !(bytes >= 12 && memcmp(data, "HTTP/", 5) == 0 && data[9] == '1');
    x->bad_framing = status_line_fault(data, bytes); /* libcurl takes "http/", "HTTP/2 200"... */
    if (x->bad_framing) {
      x->final_status = 0;
      return 0;
    }
    x->field_came = 0;
  } else if (bytes <= 2 && (data[0] == '\r' || data[0] == '\n')) {
    /* the blank line: the answer's header block is whole, or a 1xx's ended */
    if (x->final_status)
      x->head_done = 1;
    else
      x->at_status = 1;
  } else if (!x->head_done && !x->field_came && (data[0] == ' ' || data[0] == '\t')) {
    /* a folded line first in its block continues nothing: libcurl refuses most of them itself
     * ("Header without colon"), but unfolds " a: b" into a 1xx's last field */
    x->bad_framing = FAULT_COLON;
    return 0;
  } else if ((x->field_came = 1, !x->head_done) && bytes > 15 &&
             strncasecmp(data, "content-length:", 15) == 0) {
    /* (not in a chunked answer's trailers: the body's end was the last chunk's) */
    /* libcurl takes the last of several; two that disagree leave the body's end unknown
     * (RFC 9112, 6.3), so the answer is refused rather than cut or waited for */
    long long v;
    if (!length_value(data + 15, bytes - 15, &v)) { /* libcurl reads "1 2" or "+5" as a number */
      x->bad_framing = FAULT_BAD_LENGTH;
      return 0;
    }
    if (x->content_length >= 0 && v != x->content_length) {
      x->bad_framing = FAULT_FRAMING;
      return 0;
    }
    x->content_length = v;
  }
  if (bytes > MAX_HEADER_BYTES - x->head.len)
    return bytes; /* headers past 64 KiB are dropped; the status line and first ones stay */
  if (!buf_append(&x->head, data, bytes, MAX_HEADER_BYTES)) {
    x->no_memory = 1;
    return 0;
  }
  return bytes;
}

static size_t upload_read(char *out, size_t size, size_t n, void *ud) {
  transfer_t *x = (transfer_t *)ud;
  size_t left = x->upload.len - x->upload_pos, room = size * n;
  if (room > left)
    room = left;
  memcpy(out, x->upload.p + x->upload_pos, room);
  x->upload_pos += room;
  return room;
}

/* A body with files on disk: its text and the files' bytes, read from their descriptors
 * straight into libcurl's send buffer (no copy of a file is kept anywhere). A file no longer
 * what was checked stops the transfer before the body is complete: the server never gets a
 * request whose body disagrees with its Content-Length. */
static size_t file_body_read(char *out, size_t size, size_t n, void *ud) {
  transfer_t *x = (transfer_t *)ud;
  size_t got;
  if (!x->file_body)
    return CURL_READFUNC_ABORT;
  got = upload_body_read(x->file_body, x->upload_pos, out, size * n, &x->body_fault);
  if (got == (size_t)-1) {
    x->body_failed = 1;
    return CURL_READFUNC_ABORT;
  }
  x->upload_pos += got;
  return got;
}

/* libcurl rewinds the body when it silently resends a request on a fresh connection after a
 * reused one died before any answer. For a POST whose body already left, the server may have
 * received it and made (and billed) a job, so the resend is refused here: the transfer fails
 * and the caller learns that the request's fate is unknown. */
static int upload_seek(void *ud, curl_off_t offset, int origin) {
  transfer_t *x = (transfer_t *)ud;
  if (origin == SEEK_SET && offset == 0 && x->upload_pos == 0)
    return CURL_SEEKFUNC_OK;
  x->refused_rewind = 1;
  return CURL_SEEKFUNC_FAIL;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* libcurl calls this as it is about to send a request on a connection: once per transfer,
 * and again when it silently resends it on a fresh connection after a reused one died before
 * any answer. A POST (or a DELETE with a body) whose first request left, in part or whole, is
 * not sent again: the server may have received it and made (and billed) a job, so the
 * transfer fails and the caller learns that the request's fate is unknown. libcurl counts the
 * bytes it wrote (CURLINFO_REQUEST_SIZE) from the transfer's start, so a request that never
 * left may still go on the fresh connection. This is what keeps CURLOPT_POSTFIELDS (the body
 * sent with the headers, in one write) as safe as upload_seek keeps a body read by
 * upload_read. */
static int on_prereq(void *ud, char *conn_ip, char *local_ip, int conn_port, int local_port) {
  transfer_t *x = (transfer_t *)ud;
  long request_bytes = 0;
  (void)conn_ip, (void)local_ip, (void)conn_port, (void)local_port;
  if (x->requests++ == 0 || !x->post)
    return CURL_PREREQFUNC_OK;
  curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  if (request_bytes == 0)
    return CURL_PREREQFUNC_OK;
  x->refused_rewind = 1;
  return CURL_PREREQFUNC_ABORT;
}
#define FACESWAP_POSTFIELDS 1
#else
#define FACESWAP_POSTFIELDS 0 /* before 7.80: every body goes through upload_read */
#endif

/* libcurl says which sockets to watch: they go into the epoll set. A socket's `socketp` is
 * non-NULL once it has been added, so a change of interest is a MOD, not a second ADD. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  transport_t *t = (transport_t *)userp;
  struct epoll_event ev;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, s, NULL); /* fails harmlessly if already closed */
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
  ev.data.fd = s;
  if (epoll_ctl(t->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0)
    /* a descriptor number reused after a close libcurl did not report, or the reverse */
    epoll_ctl(t->epfd, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
  /* -1: libcurl fails the multi handle's call with CURLM_ABORTED_BY_CALLBACK, which drive
   * reports */
  if (!socketp && curl_multi_assign(t->multi, s, t) != CURLM_OK)
    return -1;
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  transport_t *t = (transport_t *)userp;
  (void)multi;
  t->timer_at = timeout_ms < 0 ? -1 : mono_now() + (double)timeout_ms / 1000;
  return 0;
}

/* ---- driving the multi handle --------------------------------------------------------- */

/* Whether a transfer joining the multi handle now will have to open a connection: no socket
 * is left idle by the transfers already in it (an estimate: one connection per transfer, as
 * HTTP/1.1 has it, whatever the host). */
static int needs_connection(const transport_t *t) {
  return t->nsocks <= t->running - t->nheld;
}

static void hold(transport_t *t, transfer_t *x) {
  x->held = 1;
  x->next_held = NULL;
  if (t->held_tail)
    t->held_tail->next_held = x;
  else
    t->held_head = x;
  t->held_tail = x;
  t->nheld++;
}

static void unhold(transport_t *t, transfer_t *x) {
  transfer_t **p = &t->held_head, *prev = NULL;
  while (*p && *p != x) {
    prev = *p;
    p = &(*p)->next_held;
  }
  if (*p) {
    *p = x->next_held;
    if (t->held_tail == x)
      t->held_tail = prev;
    t->nheld--;
  }
  x->held = 0;
  x->next_held = NULL;
}

/* What opening a connection for x costs of a poll's OPEN_BUDGET: 0 when it will find one. */
static int open_cost(const transport_t *t, const transfer_t *x) {
  if (!needs_connection(t))
    return 0;
  return x->url.len > 8 && memcmp(x->url.p, "https://", 8) == 0 ? OPEN_COST_HTTPS : 1;
}

/* Whether the last https opener's TLS handshake may still be under way and the next must
 * wait for it: not once it is done (or the request left, on a connection it found), once it
 * ended, or once OPEN_WAIT_POLLS polls and OPEN_WAIT_SECONDS have passed since it joined. */
static int handshake_pending(transport_t *t) {
  transfer_t *x = t->opener;
  curl_off_t done = 0;
  long sent = 0;
  if (!x)
    return 0;
  if (x->state == SLOT_RUNNING && !x->forked) {
    curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &done);
    if (!done)
      curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
    if (!done && !sent &&
        (t->opener_polls < OPEN_WAIT_POLLS || mono_now() - t->opener_at < OPEN_WAIT_SECONDS))
      return 1;
  }
  t->opener = NULL;
  return 0;
}

/* Whether x, whose connection costs `cost`, must wait for a later poll to join: 1 for this
 * poll's budget (the transfers behind it wait too, in order), 2 for the last handshake (an
 * https one waits; a plain http one, or one that finds a connection, goes past it). */
static int over_budget(transport_t *t, int cost) {
  if (cost > 0 && t->opening > 0 && t->opening + cost > OPEN_BUDGET)
    return 1;
  return cost == OPEN_COST_HTTPS && handshake_pending(t) ? 2 : 0;
}

/* x joined the multi handle, opening a connection of that cost. */
static void joined(transport_t *t, transfer_t *x, int cost) {
  t->opening += cost;
  if (cost == OPEN_COST_HTTPS) {
    t->opener = x;
    t->opener_at = mono_now();
    t->opener_polls = 0;
  }
}

/* How long a poll that may wait `wait` seconds waits while transfers are held: not at all
 * when one may join now, until the last opener's wait is over when they wait for it. */
static double held_wait(transport_t *t, double wait) {
  double left;
  if (!t->held_head)
    return wait;
  if (!t->opener || t->opener_polls < OPEN_WAIT_POLLS)
    return 0;
  left = t->opener_at + OPEN_WAIT_SECONDS - mono_now();
  return left <= 0 ? 0 : left < wait ? left : wait;
}

static void enqueue_done(transport_t *t, transfer_t *x);

/* Lets held transfers join the multi handle, in the order they started: every one that finds
 * an idle connection, and those that need a new one up to OPEN_BUDGET per poll; the https ones
 * waiting for the last handshake are passed by the others. One that libcurl refuses ends at
 * once with that error (nothing was sent). */
static void admit(transport_t *t) {
  transfer_t *x, *next;
  for (x = t->held_head; x; x = next) {
    int cost = open_cost(t, x), wait = over_budget(t, cost);
    CURLMcode rc;
    next = x->next_held;
    if (wait == 1)
      return;
    if (wait)
      continue;
    unhold(t, x);
    rc = curl_multi_add_handle(t->multi, x->easy);
    if (rc != CURLM_OK) {
      snprintf(x->errbuf, sizeof x->errbuf, "curl_multi_add_handle failed: %s",
               curl_multi_strerror(rc));
      x->result = CURLE_FAILED_INIT;
      x->state = SLOT_DONE;
      t->running--;
      enqueue_done(t, x);
      continue;
    }
    joined(t, x, cost);
  }
}

/* Puts an ended transfer on the list that the next poll reports. */
static void enqueue_done(transport_t *t, transfer_t *x) {
  x->queued = 1;
  x->next_done = NULL;
  if (t->done_tail)
    t->done_tail->next_done = x;
  else
    t->done_head = x;
  t->done_tail = x;
}

/* Moves every transfer libcurl reports as ended out of the multi handle; CURLM_OK, or the
 * first failure to remove one. */
static CURLMcode collect(transport_t *t) {
  CURLMsg *msg;
  CURLMcode rc = CURLM_OK, r;
  int left;
  while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
    transfer_t *x = NULL;
    CURL *easy = msg->easy_handle;
    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    x->result = msg->data.result;
    r = curl_multi_remove_handle(t->multi, easy); /* its connection goes back to the cache */
    if (r != CURLM_OK && rc == CURLM_OK)
      rc = r;
    x->state = SLOT_DONE;
    t->running--;
    if (!x->sync)
      enqueue_done(t, x);
  }
  return rc;
}

/* Marks a watched descriptor ready for poll to hand on; 0 when fd is none of them (a socket). */
static int watched_event(transport_t *t, int fd) {
  int i;
  for (i = 0; i < t->nwatched; i++)
    if (t->watched[i] == fd) {
      t->watched_ready[i] = 1;
      t->watch_pending = 1;
      return 1;
    }
  return 0;
}

/* Waits at most `wait` seconds for a socket or libcurl's timer, and lets libcurl act on what
 * is ready. Costs a system call and a clock read when nothing is. Returns CURLM_OK or the
 * first failure of libcurl's multi interface (as curl's docs/examples/ephiperfifo.c, a
 * CURLM_BAD_SOCKET is none: a socket that an earlier event of the same wait closed). */
static CURLMcode drive(transport_t *t, double wait) {
  struct epoll_event ev[MAX_EVENTS];
  int n, i, still;
  CURLMcode rc = CURLM_OK, r;
  if (t->timer_at >= 0) {
    double until = t->timer_at - mono_now();
    if (until < wait)
      wait = until > 0 ? until : 0;
  }
  /* rounded up, so a wait for the timer does not end a hair early and spin */
  n = epoll_wait(t->epfd, ev, MAX_EVENTS, wait > 0 ? (int)(wait * 1000 + 0.999) : 0);
  t->more_ready = n == MAX_EVENTS;
  for (i = 0; i < n; i++) {
    int flags;
    if (t->nwatched && watched_event(t, ev[i].data.fd))
      continue;
    flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    r = curl_multi_socket_action(t->multi, ev[i].data.fd, flags, &still);
    if (r != CURLM_OK && r != CURLM_BAD_SOCKET && rc == CURLM_OK)
      rc = r;
  }
  if (t->timer_at >= 0 && mono_now() >= t->timer_at) {
    t->timer_at = -1; /* libcurl sets the next one from inside the call */
    r = curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    if (r != CURLM_OK && rc == CURLM_OK)
      rc = r;
    n = 1;
  }
  if (n > 0 && (r = collect(t)) != CURLM_OK && rc == CURLM_OK)
    rc = r;
  return rc;
}

/* ---- fork and exec -------------------------------------------------------------------
 * Every descriptor is close-on-exec: the connections' sockets (opened here, through
 * CURLOPT_OPENSOCKETFUNCTION), the epoll set, and libcurl's own wakeup socketpair (7.88 makes
 * it without SOCK_CLOEXEC; later versions do, or use an eventfd). A child made by fork() shares
 * them all with the parent: a client used in a process other than the one that made it closes
 * its copies of the descriptors (which sends nothing: the parent still holds the sockets) and
 * starts afresh, with a new multi handle. The old handles are never cleaned up there, since
 * libcurl would shut down (for TLS, send close_notify on and read from) the parent's
 * connections; their memory is kept reachable in `orphans`, once per fork. */

static void **orphans;
static size_t norphans;

/* Forks this process has been made by, counted in the child (pthread_atfork): whether a
 * client is used in a process other than the one that made it costs a compare per call, not
 * a getpid system call. glibc drops the handler if the module is unloaded. */
static volatile unsigned fork_count;

static void count_fork(void) {
  fork_count++;
}

static int in_child(const transport_t *t) {
  return t->forks != fork_count;
}

static void orphan(void *p) {
  void **more = (void **)realloc(orphans, (norphans + 1) * sizeof *orphans);
  if (more) {
    orphans = more;
    orphans[norphans++] = p;
  }
}

static curl_socket_t open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a) {
  transport_t *t = (transport_t *)userp;
  int fd;
  (void)purpose;
  if (t->nsocks == t->socks_cap) {
    int cap = t->socks_cap ? t->socks_cap * 2 : 8;
    int *more = (int *)realloc(t->socks, (size_t)cap * sizeof *more);
    if (!more)
      return CURL_SOCKET_BAD;
    t->socks = more;
    t->socks_cap = cap;
  }
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd >= 0)
    t->socks[t->nsocks++] = fd;
  return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int close_socket(void *userp, curl_socket_t fd) {
  transport_t *t = (transport_t *)userp;
  int i;
  for (i = 0; i < t->nsocks; i++)
    if (t->socks[i] == fd) {
      t->socks[i] = t->socks[--t->nsocks];
      break;
    }
  return close(fd);
}

/* The two lowest free descriptors: where the socketpair that curl_multi_init makes lands. */
static void lowest_free(int fds[2]) {
  int fd, n = 0;
  fds[0] = fds[1] = -1;
  for (fd = 0; n < 2 && fd < 65536; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
      fds[n++] = fd;
}

/* After curl_multi_init: marks close-on-exec the sockets that appeared at those numbers. */
static void cloexec_wakeup(transport_t *t) {
  int i;
  for (i = 0; i < 2; i++) {
    struct stat st;
    int fd = t->wake_fds[i], flags = fd >= 0 ? fcntl(fd, F_GETFD) : -1;
    if (flags < 0 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
      t->wake_fds[i] = -1;
      continue;
    }
    if (!(flags & FD_CLOEXEC))
      fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

static void multi_setup(lua_State *L, transport_t *t);

/* In a child of the process that made the client: drop what is the parent's, start afresh.
 * Transfers in flight end with an error (the answer goes to the parent). */
static void forked(lua_State *L, transport_t *t) {
  int i, fresh;
  orphan(t->multi);
  for (i = 0; i < t->nsocks; i++)
    close(t->socks[i]);
  t->nsocks = 0;
  for (i = 0; i < 2; i++)
    if (t->wake_fds[i] >= 0)
      close(t->wake_fds[i]);
  t->running = 0;
  t->held_head = t->held_tail = NULL;
  t->nheld = t->opening = 0;
  t->opener = NULL;
  for (i = 0; i < t->nslots; i++) {
    transfer_t *x = t->slots[i];
    if (x->state != SLOT_RUNNING)
      continue;
    x->held = 0;
    orphan(x->easy);
    x->easy = NULL;
    x->forked = 1;
    x->result = CURLE_SEND_ERROR;
    x->state = SLOT_DONE; /* reported by the next poll, as ended */
    enqueue_done(t, x);
  }
  t->timer_at = -1;
  t->more_ready = 0;
  t->nwatched = t->watch_pending = 0; /* the parent's: not in the fresh set */
  t->multi = NULL;
  fresh = epoll_create1(EPOLL_CLOEXEC);
  if (fresh < 0) {
    close(t->epfd);
    t->epfd = -1;
    luaL_error(L, "epoll_create1 failed: %s", strerror(errno));
    return;
  }
  /* under the inherited one's number, so that fd() stays the same from new to close: dup2
   * closes the inherited copy and puts the new set there in one step */
  if (dup2(fresh, t->epfd) >= 0) {
    fcntl(t->epfd, F_SETFD, FD_CLOEXEC);
    close(fresh);
  } else {
    close(t->epfd);
    t->epfd = fresh;
  }
  multi_setup(L, t);
  if (!t->multi)
    luaL_error(L, "curl_multi_init failed");
}

/* ---- the object ----------------------------------------------------------------------- */

static void forked(lua_State *L, transport_t *t);

/* Closed by close(), or by a close() made inside a window, which takes effect when it ends. */
static int is_closed(const transport_t *t) {
  return !t->multi || t->close_pending;
}

/* For the methods, whose upvalue is the transport metatable: compared by address, not looked
 * up by name (luaL_checkudata, which gives the message, only when it is not a transport).
 * NULL when the transport is closed. */
static transport_t *open_transport(lua_State *L) {
  transport_t *t = NULL;
  if (lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(1)))
      t = (transport_t *)lua_touserdata(L, 1);
    lua_pop(L, 1);
  }
  if (!t)
    t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  if (is_closed(t))
    return NULL;
  if (t->in_sink)
    luaL_error(L, "attempt to use a faceswap client from inside its download's sink");
  if (in_child(t))
    forked(L, t);
  return t;
}

/* The same for the methods that raise on a closed transport. */
static transport_t *check_transport(lua_State *L) {
  transport_t *t = open_transport(L);
  if (!t)
    luaL_error(L, "attempt to use a closed faceswap client");
  return t;
}

/* What a call whose client was closed while it was on the way returns: nil and a `cancelled`
 * error, as a task of a closed client ends. `sent`: whether its request may have left. */
static int push_closed(lua_State *L, int sent) {
  error_info info = {.kind = "cancelled", .sent = sent, .retry_after = -1};
  return error_result(L, &info, "client closed", 0);
}

static void unqueue(transport_t *t, transfer_t *x) {
  transfer_t **p = &t->done_head, *prev = NULL;
  while (*p && *p != x) {
    prev = *p;
    p = &(*p)->next_done;
  }
  if (*p) {
    *p = x->next_done;
    if (t->done_tail == x)
      t->done_tail = prev;
  }
  x->queued = 0;
}

/* Ends a streamed download's part: closes its file and removes the temporary (unless it was
 * renamed into place, or it is the parent process's), forgets its sink. */
static void stream_end(lua_State *L, transfer_t *x) {
  if (!x->streaming)
    return;
  if (x->stream_fd >= 0)
    close(x->stream_fd);
  x->stream_fd = -1;
  if (x->tmp_path && !x->forked)
    unlink(x->tmp_path);
  free(x->tmp_path);
  free(x->final_path);
  free(x->sink_msg);
  x->tmp_path = x->final_path = x->sink_msg = NULL;
  if (x->streaming == 2) {
    lua_pushlightuserdata(L, x);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  x->streaming = 0;
}

/* Takes a transfer out of play, whatever its state, and puts its slot on the free list. */
static void release_slot(transport_t *t, transfer_t *x) {
  int stuck = 0;
  if (t->opener == x)
    t->opener = NULL;
  if (x->state == SLOT_RUNNING && x->held) {
    unhold(t, x); /* never joined: nothing to remove */
    t->running--;
  } else if (x->state == SLOT_RUNNING) {
    /* closes its connection mid-exchange */
    stuck = curl_multi_remove_handle(t->multi, x->easy) != CURLM_OK;
    t->running--;
  }
  if (x->queued)
    unqueue(t, x);
  /* its easy handle was the parent's, or is still in the multi handle (where adding it again
   * would fail): the slot is never used again */
  if (x->forked || stuck) {
    x->state = SLOT_FREE;
    return;
  }
  x->state = SLOT_FREE;
  x->sync = 0;
  upload_body_unref(x->file_body);
  x->file_body = NULL;
  x->upload.len = x->upload_pos = 0;
  buf_trim(&x->body);
  buf_trim(&x->upload);
  x->next_free = t->free_head;
  t->free_head = x->id;
}

static void transfer_free(transfer_t *x) {
  if (x->easy)
    curl_easy_cleanup(x->easy);
  free(x->url.p);
  free(x->body.p);
  free(x->head.p);
  free(x->upload.p);
  upload_body_unref(x->file_body);
  free(x);
}

static void transport_release(lua_State *L, transport_t *t) {
  int i;
  if (t->multi) {
    CURLM *multi = t->multi;
    for (i = 0; i < t->nslots; i++) {
      if (t->slots[i]->state == SLOT_RUNNING)
        curl_multi_remove_handle(multi, t->slots[i]->easy);
      stream_end(L, t->slots[i]);
      transfer_free(t->slots[i]);
    }
    t->multi = NULL; /* cleared before cleanup: a second close finds nothing to free */
    curl_multi_cleanup(multi);
  }
  if (t->share)
    curl_share_cleanup(t->share);
  t->share = NULL;
  free(t->ca_file);
  t->ca_file = NULL;
  if (t->epfd >= 0)
    close(t->epfd);
  t->epfd = -1;
  free(t->slots);
  t->slots = NULL;
  free(t->socks);
  t->socks = NULL;
  t->nsocks = t->socks_cap = 0;
  t->nslots = t->running = t->free_head = 0;
  t->nwatched = t->watch_pending = 0;
  t->done_head = t->done_tail = NULL;
  t->held_head = t->held_tail = NULL;
  t->nheld = t->opening = 0;
  t->opener = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  free(t->base_url);
  t->base_url = NULL;
}

static void close_now(lua_State *L, transport_t *t) {
  t->close_pending = 0;
  if (t->multi && in_child(t))
    forked(L, t); /* never cleans up (and so shuts down) the parent's connections */
  transport_release(L, t);
}

/* close() and __close: idempotent. Transfers in flight are dropped and their connections
 * closed; inside a window (a finalizer run by one of the transport's own calls) that waits
 * until the call returns, and the transport counts as closed from now on. */
static int transport_close(lua_State *L) {
  transport_t *t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  if (t->in_sink)
    luaL_error(L, "attempt to close a faceswap client from inside its download's sink");
  if (t->busy > 0) {
    if (t->multi)
      t->close_pending = 1;
    return 0;
  }
  close_now(L, t);
  return 0;
}

/* __gc: the transport is unreachable, so no call of it is under way (each holds it at stack
 * index 1) and no window can be open, unless the Lua state itself is being closed from inside
 * one (os.exit(code, true) in a finalizer): then too, everything goes. */
static int transport_gc(lua_State *L) {
  transport_t *t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  t->busy = 0;
  close_now(L, t);
  return 0;
}

/* ---- other descriptors ---------------------------------------------------------------- */

/* Calls the function of each watched descriptor that drive found ready, after re-arming it;
 * 1 when one of them closed the client. A function that raises raises out of poll: the
 * transfers that ended stay queued for the next one. */
static int call_watchers(lua_State *L, transport_t *t) {
  int ready[MAX_WATCHED], n = 0, i;
  for (i = 0; i < t->nwatched; i++) {
    if (t->watched_ready[i]) {
      struct epoll_event ev;
      memset(&ev, 0, sizeof ev);
      ev.events = EPOLLIN | EPOLLONESHOT;
      ev.data.fd = t->watched[i];
      epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->watched[i], &ev);
      t->watched_ready[i] = 0;
      ready[n++] = t->watched[i];
    }
  }
  t->watch_pending = 0;
  for (i = 0; i < n; i++) {
    compat_getuservalue(L, 1);
    lua_rawgeti(L, -1, ready[i]);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) {
      lua_pushinteger(L, ready[i]);
      lua_call(L, 1, 0);
      if (is_closed(t))
        return 1;
    } else {
      lua_pop(L, 1);
    }
  }
  return 0;
}

/* transport:watch(fd, fn): descriptor fd (a socket, or another epoll set) joins the epoll set,
 * so fd() and poll wake for it too; each poll that finds it readable calls fn(fd) once, in
 * the thread that polls. Watched again: fn replaces the one before. */
static int transport_watch(lua_State *L) {
  transport_t *t = check_transport(L);
  int fd = (int)luaL_checkinteger(L, 2), i;
  struct epoll_event ev;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  for (i = 0; i < t->nwatched && t->watched[i] != fd; i++)
    ;
  if (i == t->nwatched) {
    if (t->nwatched == MAX_WATCHED)
      return luaL_error(L, "too many descriptors watched (at most %d)", MAX_WATCHED);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.fd = fd;
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      return luaL_error(L, "cannot watch descriptor %d: %s", fd, strerror(errno));
    t->watched[i] = fd;
    t->watched_ready[i] = 0;
    t->nwatched++;
  }
  compat_getuservalue(L, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, fd);
  return 0;
}

/* transport:unwatch(fd): takes it out again, before its owner closes it. True if it was in. */
static int transport_unwatch(lua_State *L) {
  transport_t *t = open_transport(L);
  int fd = (int)luaL_checkinteger(L, 2), i;
  if (!t) { /* closed: its epoll set is gone, and the functions with it */
    lua_pushboolean(L, 0);
    return 1;
  }
  for (i = 0; i < t->nwatched && t->watched[i] != fd; i++)
    ;
  if (i == t->nwatched) {
    lua_pushboolean(L, 0);
    return 1;
  }
  epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, NULL);
  t->nwatched--;
  t->watched[i] = t->watched[t->nwatched];
  t->watched_ready[i] = t->watched_ready[t->nwatched];
  compat_getuservalue(L, 1);
  lua_pushnil(L);
  lua_rawseti(L, -2, fd);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- windows ---------------------------------------------------------------------------
 * A window is a stretch of C that reads the transport's or a transfer's memory while it
 * allocates Lua memory. Allocation may run the collector, the collector a finalizer, and a
 * finalizer may close the client: inside a window (t->busy > 0) close() only sets
 * close_pending, and the memory stays until the last window ends. The stretch runs as a
 * protected call, so that an error raised inside it (no memory; on 5.1-5.3 and LuaJIT, an error
 * in a finalizer) still ends the window before it goes on up, and `busy` never stays set. */

typedef struct {
  int (*fn)(lua_State *L, void *arg); /* pushes values and returns how many */
  void *arg;
} window_call;

/* The protected function: upvalue 2 of every method (pushing it allocates nothing). */
static int window_trampoline(lua_State *L) {
  window_call *w = (window_call *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  return w->fn(L, w->arg);
}

/* Ends a window; the last one carries out a close() made inside it. */
static void window_close(lua_State *L, transport_t *t) {
  if (--t->busy == 0 && t->close_pending)
    close_now(L, t);
}

/* Runs w->fn inside a window: returns the number of values it pushed, or raises what it
 * raised. `done` (which must not allocate) runs at the end, still inside the window. */
static int window(lua_State *L, transport_t *t, window_call *w,
                  void (*done)(lua_State *L, transport_t *t, void *arg)) {
  int base, status;
  luaL_checkstack(L, 2, "window"); /* before the window: it may raise */
  base = lua_gettop(L);
  t->busy++;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushlightuserdata(L, w);
  status = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (done)
    done(L, t, w->arg);
  window_close(L, t);
  if (status != 0)
    lua_error(L);
  return lua_gettop(L) - base;
}

static int is_loopback_host(const char *h, size_t n) {
  return (n == 9 && memcmp(h, "localhost", 9) == 0) || (n == 5 && memcmp(h, "[::1]", 5) == 0) ||
         (n >= 4 && memcmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") >= n);
}

/* Why a URL may not be used, or NULL: it must be https (or plain http to a loopback host,
 * where nothing leaves the machine), without spaces, control bytes or credentials. The base
 * URL may not have a query or fragment either (paths are appended to it). */
static const char *url_problem(const char *url, size_t len, int base) {
  size_t i, auth_end;
  const char *host;
  int https = len > 8 && memcmp(url, "https://", 8) == 0;
  if (!https && !(len > 7 && memcmp(url, "http://", 7) == 0))
    return "must start with https://";
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c == 0x7F)
      return "no spaces or control bytes";
    if (base && (c == '?' || c == '#'))
      return "no query or fragment";
  }
  host = url + (https ? 8 : 7);
  auth_end = strcspn(host, "/?#");
  if (memchr(host, '@', auth_end))
    return "credentials in the URL are not allowed";
  if (!https) {
    size_t hlen = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/?#");
    if (!is_loopback_host(host, hlen))
      return "plain http:// is only for loopback hosts";
  }
  return NULL;
}

/* core.url_problem(url, is_base) -> nil | why the URL may not be used (for other transports) */
int core_url_problem(lua_State *L) {
  size_t len;
  const char *url = luaL_checklstring(L, 1, &len);
  const char *why = url_problem(url, len, lua_toboolean(L, 2));
  if (!why)
    return 0;
  lua_pushstring(L, why);
  return 1;
}

/* Checks base_url and stores it without a trailing slash. Raises on anything that could send
 * the token in clear text or smuggle in a credential, query or fragment. */
static void set_base_url(lua_State *L, transport_t *t, int idx) {
  size_t len;
  const char *url = luaL_checklstring(L, idx, &len);
  const char *why = url_problem(url, len, 1);
  if (why)
    luaL_error(L, "bad option 'base_url' (%s%s)", why,
               strcmp(why, "credentials in the URL are not allowed") == 0 ? "; use token" : "");
  while (len > 0 && url[len - 1] == '/')
    len--;
  t->base_url = (char *)malloc(len + 1);
  if (!t->base_url)
    luaL_error(L, "not enough memory");
  memcpy(t->base_url, url, len);
  t->base_url[len] = '\0';
  t->base_len = len;
  t->base_http = memcmp(url, "http://", 7) == 0;
}

/* How many certificates the PEM file at `path` holds (its BEGIN lines): -1 when it cannot be
 * read, LONG_MAX past 64 MiB (counted as more than any directory holds). */
static long pem_count(const char *path) {
  static const char begin[] = "-----BEGIN CERTIFICATE-----";
  const size_t blen = sizeof begin - 1;
  char buf[65536];
  size_t have = 0, total = 0, n;
  long count = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  while ((n = fread(buf + have, 1, sizeof buf - have, f)) > 0) {
    const char *p = buf, *end, *keep;
    have += n;
    total += n;
    end = buf + have;
    keep = have > blen - 1 ? end - (blen - 1) : buf;
    while ((p = (const char *)memchr(p, '-', (size_t)(end - p))) != NULL &&
           (size_t)(end - p) >= blen) {
      if (memcmp(p, begin, blen) == 0) {
        count++;
        p += blen;
        if (p > keep)
          keep = p;
      } else {
        p++;
      }
    }
    /* keep the tail that may be the start of a BEGIN line cut at the buffer's end */
    have = (size_t)(end - keep);
    memmove(buf, keep, have);
    if (total > 64u * 1024 * 1024) {
      count = LONG_MAX;
      break;
    }
  }
  fclose(f);
  return count;
}

/* How many hash links (c_rehash / openssl rehash names: 8 hex digits, '.', a number) the
 * directory holds: what OpenSSL can look an issuer up by; -1 when it cannot be read. */
static long hash_links(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  long count = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    int i;
    for (i = 0; i < 8 && ((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')); i++)
      ;
    if (i < 8 || n[8] != '.' || n[9] < '0' || n[9] > '9')
      continue;
    for (i = 10; n[i] >= '0' && n[i] <= '9'; i++)
      ;
    if (n[i] == '\0')
      count++;
  }
  closedir(d);
  return count;
}

/* The trust store. With ca_file, that PEM bundle alone, its parsed store cached in the multi
 * handle. Without, the system's store, which libcurl knows two ways: a hashed directory
 * (Debian: /etc/ssl/certs, where OpenSSL opens only the issuer a server's chain needs) and a
 * bundle file (Debian: /etc/ssl/certs/ca-certificates.crt, every certificate in one file, all
 * parsed when the first connection needs the store). Measured (docs/https.md): the directory
 * makes a new process's first HTTPS request cost 18 million instructions instead of 256;
 * later connections cost the same both ways while TLS sessions resume, and 1.6 million more
 * per full handshake with the directory, so the bundle repays its parse only after about 150
 * full handshakes in one process. The directory is taken when it holds a hash link for at
 * least as many certificates as the bundle holds (update-ca-certificates writes both from the
 * same certificates), so that trust never shrinks: a bundle with a certificate appended by
 * hand, or copied alone into an image without its hash links, is used as the bundle (cached,
 * as with ca_file). Where neither can be read, libcurl's defaults stay. A ca_file must be
 * readable and hold a PEM certificate, or new() raises. */
static void set_trust(lua_State *L, transport_t *t) {
  const char *path;
  lua_getfield(L, 1, "ca_file");
  if (!lua_isnil(L, -1)) {
    char head[16384];
    size_t n;
    FILE *f;
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option 'ca_file' (a string expected, got %s)", luaL_typename(L, -1));
    path = lua_tostring(L, -1);
    f = fopen(path, "rb");
    if (!f) {
      luaL_error(L, "bad option 'ca_file' (cannot read %s: %s)", path, strerror(errno));
      return;
    }
    n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    if (!strstr(head, "-----BEGIN CERTIFICATE-----"))
      luaL_error(L, "bad option 'ca_file' (no PEM certificate in %s)", path);
    t->ca_file = strdup(path);
    if (!t->ca_file)
      luaL_error(L, "not enough memory");
    t->no_ca_path = 1;
  } else {
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    int known = v->age >= CURLVERSION_SEVENTH;
    long certs = known && v->cainfo ? pem_count(v->cainfo) : -1;
    long hashes = known && v->capath ? hash_links(v->capath) : -1;
    if (hashes > 0 && hashes >= certs)
      t->no_ca_file = 1;
    else if (certs >= 0)
      t->no_ca_path = 1;
  }
  lua_pop(L, 1);
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

/* core.transport{token=, base_url=, timeout=, connect_timeout=, max_response=, ca_file=} */
int core_transport_new(lua_State *L) {
  transport_t *t;
  size_t tlen, i;
  const char *token;
  double timeout, connect_timeout, max_response;
  struct curl_slist *auth;
  luaL_checktype(L, 1, LUA_TTABLE);
  timeout = opt_number(L, "timeout", 60, 0.001);
  connect_timeout = opt_number(L, "connect_timeout", 10, 0.001);
  max_response = opt_number(L, "max_response", 256 * 1024, 1024);
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
  t->epfd = -1;
  t->timer_at = -1;
  luaL_setmetatable(L, FACESWAP_TRANSPORT_MT);
  lua_newtable(L); /* the functions of watched descriptors */
  compat_setuservalue(L, -2);
  lua_getfield(L, 1, "base_url");
  set_base_url(L, t, -1);
  lua_pop(L, 1);
  lua_pushfstring(L, "Authorization: Bearer %s", token);
  auth = curl_slist_append(NULL, lua_tostring(L, -1));
  if (!auth)
    return luaL_error(L, "not enough memory");
  t->headers = auth;
  lua_pop(L, 1);
  t->timeout_ms = (long)(timeout * 1000);
  t->connect_timeout_ms = (long)(connect_timeout * 1000);
  t->max_response = (size_t)max_response;
  t->no_proxy = !proxy_in_environment();
  set_trust(L, t);
  /* TLS sessions in one cache for all the client's transfers, so a connection opened beside
   * another (or by another slot) resumes a session instead of a full handshake */
  t->share = curl_share_init();
  if (!t->share)
    return luaL_error(L, "curl_share_init failed");
  curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  t->stale_headers = curl_version_info(CURLVERSION_NOW)->version_num < 0x080100;

  t->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (t->epfd < 0)
    return luaL_error(L, "epoll_create1 failed: %s", strerror(errno));
  multi_setup(L, t);
  if (!t->multi)
    return luaL_error(L, "curl_multi_init failed");
  return 1;
}

/* A new multi handle for t, owned by this process (t->multi stays NULL on failure, and a
 * failing option raises). */
static void multi_setup(lua_State *L, transport_t *t) {
  CURLMcode rc;
  t->forks = fork_count;
  lowest_free(t->wake_fds);
  t->multi = curl_multi_init();
  if (!t->multi)
    return;
  cloexec_wakeup(t);
  if ((rc = curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket)) != CURLM_OK ||
      (rc = curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t)) != CURLM_OK ||
      (rc = curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer)) != CURLM_OK ||
      (rc = curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t)) != CURLM_OK ||
      /* libcurl's default pool is 4 per transfer added; transfers leave the handle as they
       * end, so with few in flight it closed idle connections that the next transfers wanted */
      (rc = curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, MAX_IDLE_CONNECTIONS)) != CURLM_OK) {
    curl_multi_cleanup(t->multi);
    t->multi = NULL;
    luaL_error(L, "curl_multi_setopt failed: %s", curl_multi_strerror(rc));
  }
}

/* Gives slot x a new easy handle with everything that is the same for every request, and
 * forgets what its last one was set to; 0 without memory (x->easy is NULL then). */
static int easy_open(transport_t *t, transfer_t *x) {
  CURL *e = x->easy = curl_easy_init();
  if (!e)
    return 0;
  x->set_method = x->set_del = x->set_file_read = x->direct = 0;
  x->set_ulbuf = 0;
  x->set_size = -1;
  x->set_fields = NULL;
  x->set_headers = NULL;
  x->set_limit = 0;
  x->set_timeout_ms = t->timeout_ms;
  x->url.len = 0; /* (the URL is set again) */
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* the path as built: no dot segment removed */
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  /* on_header reads the server's answer only, not a proxy's to CONNECT before it */
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (t->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
  else if (t->no_ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
  if (t->no_ca_path)
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
  curl_easy_setopt(e, CURLOPT_SHARE, t->share);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, t->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, t->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, MAX_IDLE_REUSE_SECONDS);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "lua-faceswap/" FACESWAP_VERSION);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, upload_read);
  curl_easy_setopt(e, CURLOPT_READDATA, x);
  curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, upload_seek);
  curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
#if FACESWAP_POSTFIELDS
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
#endif
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, t);
  return 1;
}

/* A new slot and its easy handle; NULL without memory. */
static transfer_t *transfer_new(transport_t *t) {
  transfer_t *x = (transfer_t *)calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->owner = t;
  x->stream_fd = -1;
  x->ct_node.data = x->ct_line;
  x->expect_node.data = (char *)"Expect:";
  x->expect_node.next = &x->ct_node;
  if (!easy_open(t, x)) {
    free(x);
    return NULL;
  }
  return x;
}

/* A free slot, reusing an old transfer's easy handle when that is safe (see stale_headers);
 * NULL without memory, the slot still free then. */
static transfer_t *take_slot(transport_t *t) {
  transfer_t *x, **slots;
  if (t->free_head) {
    x = t->slots[t->free_head - 1];
    if (t->stale_headers) {
      curl_easy_cleanup(x->easy);
      if (!easy_open(t, x))
        return NULL;
    }
    t->free_head = x->next_free;
    return x;
  }
  slots = (transfer_t **)realloc(t->slots, (size_t)(t->nslots + 1) * sizeof *slots);
  if (!slots)
    return NULL;
  t->slots = slots;
  x = transfer_new(t);
  if (!x)
    return NULL;
  slots[t->nslots++] = x;
  x->id = t->nslots;
  return x;
}

/* Pushes nil and the error object for a transfer that ended without a usable answer: which
 * fault it met is this transport's to say, its kind and words are fault.c's. */
static void push_transfer_error(lua_State *L, transfer_t *x) {
  long status = 0, request_bytes = 0;
  int sent, code;
  CURLcode res = x->result;
  const char *msg = x->errbuf[0] ? x->errbuf : curl_easy_strerror(res);
  if (x->forked) { /* its answer, if any, goes to the parent */
    fault_push(L, FAULT_FORKED, 1, x->post, 0, NULL);
    return;
  }
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  code = x->final_status ? (int)status : 0; /* a 1xx is no answer */
  /* sent unless nothing of the request left this machine: libcurl counts request bytes once
   * per transfer, so a resend's failed connect still shows the first attempt's bytes */
  sent = x->refused_rewind || request_bytes > 0 || x->upload_pos > 0;
  if ((x->oversize || res == CURLE_FILESIZE_EXCEEDED) && x->limit > 0x7fffffff) {
    char m[96]; /* past what %d holds: the fault's words, written out here */
    snprintf(m, sizeof m, "answer larger than a download may be (%.0f bytes)", (double)x->limit);
    fault_push(L, FAULT_OVERSIZE, sent, x->post, code, m);
  } else if (x->oversize || res == CURLE_FILESIZE_EXCEEDED)
    fault_push(L, FAULT_OVERSIZE, sent, x->post, code, NULL,
               x->download ? "a download may be" : "max_response", (int)x->limit);
  else if (x->bad_framing)
    fault_push(L, x->bad_framing, sent, x->post, code, NULL);
  else if (x->refused_rewind)
    fault_push(L, FAULT_NOT_RESENT, sent, x->post, code, NULL);
  else if (res == CURLE_OK) /* libcurl's OK for a connection closed inside the headers */
    fault_push(L, FAULT_CUT_HEADERS, sent, x->post, 0, NULL);
  else if (x->no_memory)
    fault_push(L, FAULT_NO_MEMORY, sent, x->post, code, NULL);
  else if (res == CURLE_OPERATION_TIMEDOUT)
    fault_push(L, FAULT_TIMEOUT, sent, x->post, code, msg);
  else if (res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_SSL_CACERT_BADFILE ||
           res == CURLE_SSL_CERTPROBLEM)
    fault_push(L, FAULT_CERTIFICATE, sent, x->post, code, msg);
  else if (res == CURLE_URL_MALFORMAT)
    fault_push(L, FAULT_BAD_URL, sent, x->post, code, msg);
  else if (res == CURLE_WEIRD_SERVER_REPLY && strcmp(msg, "Nul byte in header") == 0)
    /* libcurl checks a line for NUL before on_header sees it: still at the status line, the
     * NUL was in it */
    fault_push(L, x->at_status ? FAULT_STATUS_LINE : FAULT_NUL, sent, x->post, code, NULL);
  else if ((res == CURLE_WEIRD_SERVER_REPLY && strcmp(msg, "Header without colon") == 0) ||
           (res == CURLE_BAD_FUNCTION_ARGUMENT && !x->at_status && !x->head_done))
    /* the second: libcurl's header store could not unfold a folded line first in the head */
    fault_push(L, FAULT_COLON, sent, x->post, code, NULL);
  else if (res == CURLE_UNSUPPORTED_PROTOCOL && strncmp(msg, "Unsupported ", 12) == 0)
    fault_push(L, FAULT_STATUS_LINE, sent, x->post, code, NULL); /* "... response code", "... version" */
  else if (res == CURLE_UNSUPPORTED_PROTOCOL) /* the protocols are http(s): HTTP/0.9 */
    fault_push(L, FAULT_HTTP09, sent, x->post, code, msg);
  else
    fault_push(L, FAULT_OTHER, sent, x->post, code, msg);
}

/* Pushes nil and the error of a streamed download that its file or sink stopped. */
static void push_stream_error(lua_State *L, transfer_t *x, int err, long status) {
  error_info info = {.kind = "invalid_request", .sent = 1, .retry_after = -1};
  info.code = x->final_status ? (int)status : 0;
  lua_pushnil(L);
  if (x->sink_stop) {
    info.kind = "cancelled";
    if (x->sink_stop == 1)
      lua_pushliteral(L, "download stopped by its sink (it returned false)");
    else
      lua_pushfstring(L, "download stopped by its sink: %s",
                      x->sink_msg ? x->sink_msg : "not enough memory");
  } else {
    lua_pushfstring(L, "cannot write %s: %s", x->final_path, strerror(err));
  }
  error_push(L, &info, NULL, -1, 0);
  lua_remove(L, -2);
}

/* Why a download may not go to path, or NULL. The body is renamed onto path: a directory
 * (or a link to one) would make the rename fail, so it is refused first; any other node that
 * is not a regular file (a FIFO, a device, a socket) would be replaced, so it is refused too.
 * A symbolic link to anything else is replaced itself, as rename does, its target untouched.
 * Shared by both transports (core.download_path_problem). */
const char *download_path_problem(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return strerror(EISDIR);
  if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
    return "not a regular file";
  return NULL;
}

/* core.download_path_problem(path) -> why a download may not go to path, or nil. */
int core_download_path_problem(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  const char *why = strlen(path) != len ? "a file name cannot contain a NUL byte"
                                        : download_path_problem(path);
  if (why)
    lua_pushstring(L, why);
  else
    lua_pushnil(L);
  return 1;
}

/* A new temporary file beside `path` (its name with ".part-<pid>-<n>" added), made with
 * O_EXCL so no other file is ever written over; NULL and errno set on failure. */
static char *stream_open(const char *path, int *fd) {
  static unsigned counter;
  size_t len = strlen(path) + 48;
  char *tmp;
  int tries;
  tmp = (char *)malloc(len);
  if (!tmp) {
    errno = ENOMEM;
    return NULL;
  }
  for (tries = 0; tries < 100; tries++) {
    snprintf(tmp, len, "%s.part-%ld-%u", path, (long)getpid(), ++counter);
    *fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (*fd >= 0)
      return tmp;
    if (errno != EEXIST)
      break;
  }
  free(tmp);
  return NULL;
}

/* A complete streamed file: flushed to disk, then renamed over the final name, so that name
 * only ever holds a whole body. 0 and errno set on failure. */
static int stream_commit(transfer_t *x) {
  int fd = x->stream_fd;
  x->stream_fd = -1;
  if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    int err = errno;
    close(fd);
    errno = err;
    return 0;
  }
  if (close(fd) != 0 || rename(x->tmp_path, x->final_path) != 0)
    return 0;
  free(x->tmp_path);
  x->tmp_path = NULL; /* renamed: nothing to remove */
  return 1;
}

/* Sets up and adds a transfer for the request at stack 2..5: method, then a path under
 * base_url (sent with the token) or a whole URL (a download: sent without it), content type
 * and body for a POST; and at 6, nil or the transfer's options: `timeout` (seconds, instead
 * of the transport's), and for a download `max` (bytes), `path` (a file to stream the body
 * to) or `sink` (a function called with each piece). Returns it, or NULL with nil and an
 * error object pushed. */
static transfer_t *start(lua_State *L, transport_t *t, int sync) {
  const char *method = luaL_checkstring(L, 2);
  size_t plen;
  const char *target = luaL_checklstring(L, 3, &plen);
  /* a DELETE (delid, delall) may carry a form body; with one it goes like a POST */
  int del = strcmp(method, "DELETE") == 0, download = target[0] != '/';
  int post = strcmp(method, "POST") == 0 ||
             (del && (lua_type(L, 5) == LUA_TSTRING || upload_body_test(L, 5)));
  long timeout_ms = t->timeout_ms;
  size_t limit = download ? MAX_DOWNLOAD_BYTES : t->max_response;
  const char *path = NULL;
  size_t plen_path = 0;
  int sink = 0;
  transfer_t *x;
  CURL *e;
  struct curl_slist *headers;
  if (!post && !del && strcmp(method, "GET") != 0)
    luaL_error(L, "bad argument #1 to 'perform' (GET, POST or DELETE expected)");
  if (!lua_isnoneornil(L, 6)) {
    luaL_checktype(L, 6, LUA_TTABLE);
    lua_getfield(L, 6, "timeout");
    if (!lua_isnil(L, -1)) {
      double v = lua_tonumber(L, -1);
      luaL_argcheck(L, lua_type(L, -1) == LUA_TNUMBER && v >= 0.001 && v <= 1e9, 6,
                    "timeout must be a number of seconds from 0.001 to 1e9");
      timeout_ms = (long)(v * 1000);
    }
    lua_getfield(L, 6, "max");
    if (!lua_isnil(L, -1)) {
      double v = lua_tonumber(L, -1);
      luaL_argcheck(L, download && lua_type(L, -1) == LUA_TNUMBER && v >= 1 && v <= 9007199254740992.0 &&
                    (double)(size_t)v == v, 6, "max is for downloads: a whole number of bytes from 1");
      limit = (size_t)v;
    }
    lua_getfield(L, 6, "path");
    path = lua_tolstring(L, -1, &plen_path);
    luaL_argcheck(L, lua_isnil(L, -1) || (download && lua_type(L, -1) == LUA_TSTRING && *path &&
                                          strlen(path) == plen_path), 6,
                  "path is for downloads: a file name (without a NUL byte)");
    lua_getfield(L, 6, "sink");
    sink = !lua_isnil(L, -1);
    luaL_argcheck(L, !sink || (download && !path && lua_isfunction(L, -1)), 6,
                  "sink is for downloads without a path: a function");
    lua_remove(L, -4); /* the timeout and the max; the path (its string) and the sink stay */
    lua_remove(L, -3);
    sink = sink ? lua_gettop(L) : 0; /* the sink's index */
  }
  if (download) {
    const char *why = url_problem(target, plen, 0);
    if (why || post || del) {
      fault_push(L, FAULT_REFUSED_URL, 0, 1, 0, NULL, why ? "a URL" : "with POST",
                 why ? why : "downloads are GET");
      return NULL;
    }
  }
  if (post) {
    size_t clen;
    luaL_checklstring(L, 4, &clen);
    if (!upload_body_test(L, 5))
      luaL_checktype(L, 5, LUA_TSTRING);
    if (clen > sizeof x->ct_line - sizeof "Content-Type: ")
      luaL_error(L, "bad argument #3 to 'perform' (content type too long)");
  }
  /* the checks above may have made strings of numbers, and so run a finalizer that closed the
   * client; from here on nothing allocates Lua memory but the errors */
  if (is_closed(t)) {
    push_closed(L, 0);
    return NULL;
  }
  x = take_slot(t);
  if (!x)
    luaL_error(L, "not enough memory");
  e = x->easy;
  /* libcurl copies the URL on every setopt: skip it when it is this slot's last one */
  if (download ? (x->url.len != plen + 1 || memcmp(x->url.p, target, plen) != 0)
               : (x->url.len != t->base_len + plen + 1 ||
                  memcmp(x->url.p, t->base_url, t->base_len) != 0 ||
                  memcmp(x->url.p + t->base_len, target, plen) != 0)) {
    x->url.len = 0;
    if ((!download && !buf_append(&x->url, t->base_url, t->base_len, (size_t)-1)) ||
        !buf_append(&x->url, target, plen + 1, (size_t)-1)) {
      x->url.len = 0;
      release_slot(t, x);
      luaL_error(L, "not enough memory");
    }
    curl_easy_setopt(e, CURLOPT_URL, x->url.p);
  }
  /* Plain http (loopback only) never goes through a proxy: the proxy would get the request,
   * token and all, in clear. https follows http(s)_proxy/no_proxy: through a CONNECT tunnel
   * the proxy sees only the host and port. "" is libcurl's "no proxy", and with no proxy
   * variable set it also spares libcurl reading them per request. */
  {
    int direct = t->no_proxy || (download ? memcmp(target, "http://", 7) == 0 : t->base_http);
    if (direct != x->direct) {
      curl_easy_setopt(e, CURLOPT_PROXY, direct ? "" : NULL);
      x->direct = direct;
    }
  }
  x->post = post || del; /* not safe to send again once sent */
  if (del != x->set_del) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, del ? "DELETE" : NULL);
    x->set_del = del;
  }
  if (post) {
    size_t clen, blen;
    upload_body *files = upload_body_test(L, 5);
    const char *ct = lua_tolstring(L, 4, &clen), *body = files ? NULL : lua_tolstring(L, 5, &blen);
    memcpy(x->ct_line, "Content-Type: ", sizeof "Content-Type: " - 1);
    memcpy(x->ct_line + sizeof "Content-Type: " - 1, ct, clen + 1);
    x->ct_node.next = t->headers;
    x->upload.len = 0;
    if (files) { /* held, not copied: its files are read as libcurl sends */
      blen = upload_body_length(files);
      upload_body_ref(files);
      x->file_body = files;
    } else if (!buf_append(&x->upload, body, blen, (size_t)-1)) {
      /* copied: the transfer may outlive the Lua call that started it */
      release_slot(t, x);
      luaL_error(L, "not enough memory");
    }
    if (x->set_file_read != (files != NULL)) {
      curl_easy_setopt(e, CURLOPT_READFUNCTION, files ? file_body_read : upload_read);
      x->set_file_read = files != NULL;
    }
    {
      /* a file goes out in pieces of up to 256 KiB (libcurl's default is 64 KiB): a quarter
       * of the reads, sends and wakeups per MiB, and the piece still fits a core's cache
       * between its pread and its send (1 MiB measured slower per MiB); a body in memory
       * keeps the default */
      long ulbuf = !files ? 0 : blen < UPLOAD_PIECE_MIN ? UPLOAD_PIECE_MIN
                 : blen > UPLOAD_PIECE_MAX ? UPLOAD_PIECE_MAX : (long)blen;
      if (ulbuf != x->set_ulbuf) {
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, ulbuf ? ulbuf : UPLOAD_PIECE_DEFAULT);
        x->set_ulbuf = ulbuf;
      }
    }
    if (x->set_method != 1) {
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      x->set_method = 1;
    }
    if (x->set_size != (curl_off_t)blen) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
      x->set_size = (curl_off_t)blen;
    }
    /* the body goes with the headers in one write, not through upload_read (four system
     * calls and a callback more per request); on_prereq keeps it from being sent twice */
    {
      /* a body of files has none in memory: its slot's last string body must not go instead */
      const char *fields = files ? NULL : x->upload.p;
      if (FACESWAP_POSTFIELDS && x->set_fields != fields) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, fields);
        x->set_fields = fields;
      }
    }
    /* libcurl asks for 100-continue only past 1 MiB; a header less on every other request
     * saves it scanning one more line each time it looks for a header */
    headers = blen >= LARGE_BODY_BYTES ? &x->expect_node : &x->ct_node;
  } else {
    if (x->set_method != 2) {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      x->set_method = 2;
    }
    headers = download ? NULL : t->headers;
  }
  if (headers != x->set_headers) {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    x->set_headers = headers;
  }
  x->limit = limit;
  if (x->limit != x->set_limit) {
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->limit);
    x->set_limit = x->limit;
  }
  if (timeout_ms < 1)
    timeout_ms = 1;
  if (timeout_ms != x->set_timeout_ms) {
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    x->set_timeout_ms = timeout_ms;
  }
  x->download = download;
  x->received = 0;
  x->stream_errno = x->sink_stop = 0;
  if (sink) { /* the sink kept in the registry under the transfer */
    lua_pushlightuserdata(L, x);
    lua_pushvalue(L, sink);
    lua_rawset(L, LUA_REGISTRYINDEX);
    x->streaming = 2;
  } else if (path) {
    size_t len = strlen(path);
    const char *why = download_path_problem(path);
    x->final_path = (char *)malloc(len + 1);
    if (x->final_path)
      memcpy(x->final_path, path, len + 1);
    x->tmp_path = x->final_path && !why ? stream_open(path, &x->stream_fd) : NULL;
    x->streaming = 1;
    if (!x->tmp_path) { /* nothing sent: the file cannot be made, or may not be replaced */
      error_info info = {.kind = "invalid_request", .retry_after = -1};
      int err = x->final_path ? errno : ENOMEM;
      lua_pushfstring(L, "cannot write %s: %s", path, why ? why : strerror(err));
      error_result(L, &info, NULL, -1);
      lua_remove(L, -3); /* the message, under nil and the error */
      stream_end(L, x);
      release_slot(t, x);
      return NULL;
    }
  }
  x->upload_pos = 0;
  x->requests = 0;
  x->body_failed = 0;
  x->body.len = x->head.len = 0;
  x->oversize = x->refused_rewind = x->no_memory = x->bad_framing = 0;
  x->content_length = -1;
  x->at_status = 1;
  x->final_status = x->head_done = 0;
  x->errbuf[0] = '\0';
  x->sync = sync;
  x->result = CURLE_OK;
  /* a task's transfer that would open one connection too many for this poll waits its turn
   * (see admit); a blocking call's never does */
  if (!sync && (t->held_head || over_budget(t, open_cost(t, x)))) {
    hold(t, x);
  } else {
    int cost = sync ? 0 : open_cost(t, x);
    CURLMcode rc = curl_multi_add_handle(t->multi, e);
    if (rc != CURLM_OK) {
      stream_end(L, x);
      release_slot(t, x);
      luaL_error(L, "curl_multi_add_handle failed: %s", curl_multi_strerror(rc));
    }
    joined(t, x, cost);
  }
  x->state = SLOT_RUNNING;
  t->running++;
  return x;
}

/* Whether libcurl refused a line of a chunked answer's trailers, the body whole by then: its
 * header store takes no line with a NUL or, unless folded, without a colon, and the chunked
 * reader words that as its own failure; a body write never fails so (ours give
 * CURLE_WRITE_ERROR, and no content encoding is asked for). A client uses no trailer (RFC
 * 9110, 6.5): the answer ends at that line, as inside nginx; libcurl closed the connection. */
static int trailer_refused(const transfer_t *x) {
  return x->result == CURLE_BAD_FUNCTION_ARGUMENT && x->head_done &&
         strcmp(x->errbuf, "Failed reading the chunked-encoded stream") == 0;
}

/* Pushes what an ended transfer got: status, headers, body (a streamed download's size), or
 * nil and an error object. It reads the transfer while it allocates: only inside a window. */
static int push_outcome(lua_State *L, void *arg) {
  transfer_t *x = (transfer_t *)arg;
  int n;
  long status = 0;
  if (trailer_refused(x))
    x->result = CURLE_OK;
  if (x->easy && !x->forked)
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (x->body_failed && x->file_body) {
    /* a file of the body changed or failed: the request never left whole */
    n = upload_push_fault(L, x->file_body, &x->body_fault);
  } else if (x->streaming && (x->sink_stop || x->stream_errno)) {
    push_stream_error(L, x, x->stream_errno, status);
    n = 2;
  } else if (x->result == CURLE_OK && !x->no_memory && x->head_done && x->streaming) {
    /* a streamed download: its size for a 2xx, whose file is renamed into place now; an
     * error answer's body was not kept */
    int ok = status >= 200 && status <= 299;
    if (ok && x->streaming == 1 && !stream_commit(x)) {
      push_stream_error(L, x, errno, status);
      n = 2;
    } else {
      lua_pushinteger(L, status);
      lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len);
      if (ok)
        lua_pushinteger(L, (lua_Integer)x->received);
      else
        lua_pushliteral(L, "");
      n = 3;
    }
  } else if (x->result == CURLE_OK && !x->no_memory && x->head_done) {
    lua_pushinteger(L, status);
    lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len);
    lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
    n = 3;
  } else if ((x->oversize || x->result == CURLE_FILESIZE_EXCEEDED) && x->final_status &&
             !x->download && status >= 300) {
    /* an error answer past max_response: its status decides its kind, as for any other (the
     * headers copied and the rest read before anything allocates) */
    size_t hlen, limit = x->limit;
    long long length = x->content_length;
    int post = x->post;
    const char *head = (lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len),
                        lua_tolstring(L, -1, &hlen));
    n = response_push_unread(L, (int)status, head, hlen, length >= 0 ? (size_t)length : limit,
                             length >= 0, limit, post);
    lua_remove(L, -3); /* the headers, under nil and the error */
  } else {
    push_transfer_error(L, x);
    n = 2;
  }
  return n;
}

static void unpin_release(lua_State *L, transport_t *t, void *arg) {
  transfer_t *x = (transfer_t *)arg;
  x->pinned = 0;
  stream_end(L, x);
  release_slot(t, x);
}

/* Pushes what an ended transfer got, frees its slot, and returns the number of values pushed.
 * The transfer is pinned meanwhile: a finalizer that runs inside cannot finish or cancel it,
 * nor close the client under it. */
static int finish(lua_State *L, transport_t *t, transfer_t *x) {
  window_call w;
  w.fn = push_outcome;
  w.arg = x;
  luaL_checkstack(L, 2, "finish"); /* before the pin: it may raise */
  x->pinned = 1;
  return window(L, t, &w, unpin_release);
}

static transfer_t *check_id(lua_State *L, transport_t *t, int arg) {
  lua_Integer id = luaL_checkinteger(L, arg);
  luaL_argcheck(L, id >= 1 && id <= t->nslots && t->slots[id - 1]->state != SLOT_FREE &&
                !t->slots[id - 1]->pinned, arg, "no such transfer");
  return t->slots[id - 1];
}

/* transport:start(method, path_or_url, content_type, body, opts) -> id | nil, err */
static int transport_start(lua_State *L) {
  transport_t *t = open_transport(L);
  transfer_t *x;
  if (!t)
    return push_closed(L, 0);
  x = start(L, t, 0);
  if (!x)
    return 2;
  lua_pushinteger(L, x->id);
  return 1;
}

/* transport:poll(wait) -> the ids of transfers that ended and were not reported before.
 * Waits at most `wait` seconds, and returns as soon as one has ended; 0 never blocks. Nothing,
 * at once, once the client is closed. */
static int transport_poll(lua_State *L) {
  transport_t *t = open_transport(L);
  double wait = luaL_optnumber(L, 2, 0), until;
  int n = 0;
  luaL_argcheck(L, wait >= 0, 2, "a wait of 0 or more seconds expected");
  if (!t)
    return 0;
  if (t->done_head) /* ended while a blocking perform drove the handle: report them now */
    wait = 0;
  else if (wait > 86400)
    wait = 86400;
  until = wait > 0 ? mono_now() + wait : 0;
  for (;;) {
    CURLMcode rc;
    admit(t);
    t->L = L; /* for a sink */
    rc = drive(t, held_wait(t, wait)); /* more may join next time round */
    t->L = NULL;
    t->opening = 0; /* the next poll may open as many again */
    t->opener_polls++;
    if (rc != CURLM_OK)
      luaL_error(L, "curl_multi_socket_action failed: %s", curl_multi_strerror(rc));
    if (t->done_head || wait <= 0 || faceswap_signal || t->watch_pending)
      break;
    wait = until - mono_now();
    if (wait <= 0)
      break;
  }
  if (t->watch_pending && call_watchers(L, t))
    return 0; /* a watcher's function closed the client */
  while (t->done_head) {
    transfer_t *x = t->done_head;
    /* room first: raising here leaves the list whole */
    luaL_checkstack(L, 1, "too many ended transfers");
    t->done_head = x->next_done;
    if (!t->done_head)
      t->done_tail = NULL;
    x->queued = 0;
    lua_pushinteger(L, x->id);
    n++;
  }
  return n;
}

/* transport:finish(id) -> status, headers, body | nil, err, for a transfer that ended */
static int transport_finish(lua_State *L) {
  transport_t *t = open_transport(L);
  transfer_t *x;
  if (!t) /* closed since it started: whether its request left is not known */
    return push_closed(L, 1);
  x = check_id(L, t, 2);
  luaL_argcheck(L, x->state == SLOT_DONE, 2, "transfer still running");
  return finish(L, t, x);
}

/* Whether any of a transfer's request may have reached the server. */
static int may_have_sent(transfer_t *x) {
  long request_bytes = 0;
  if (x->forked || (x->state == SLOT_DONE && x->result == CURLE_OK))
    return 1;
  curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  return x->refused_rewind || request_bytes > 0 || x->upload_pos > 0;
}

/* transport:cancel(id) -> whether its request may have reached the server: drops a transfer,
 * closing its connection if it is mid-exchange. Once the client is closed (which dropped it)
 * that is not known: true. */
static int transport_cancel(lua_State *L) {
  transport_t *t = open_transport(L);
  transfer_t *x;
  if (!t) {
    lua_pushboolean(L, 1);
    return 1;
  }
  x = check_id(L, t, 2);
  lua_pushboolean(L, may_have_sent(x));
  stream_end(L, x);
  release_slot(t, x);
  return 1;
}

/* transport:perform(method, path_or_url, content_type, body, opts) -> status, headers, body |
 * nil, err: start, drive until this transfer ends (others progress meanwhile), finish. */
static int transport_perform(lua_State *L) {
  transport_t *t = open_transport(L);
  transfer_t *x;
  if (!t)
    return push_closed(L, 0);
  x = start(L, t, 1);
  if (!x)
    return 2;
  while (x->state == SLOT_RUNNING) {
    CURLMcode rc;
    t->L = L; /* for a sink */
    rc = drive(t, 3600); /* libcurl's timer bounds every wait */
    t->L = NULL;
    if (rc != CURLM_OK) { /* this transfer's fate is unknown: dropped, and said so */
      int post = x->post;
      stream_end(L, x);
      release_slot(t, x);
      lua_pushfstring(L, "curl_multi_socket_action failed: %s", curl_multi_strerror(rc));
      fault_push(L, FAULT_OTHER, 1, post, 0, lua_tostring(L, -1));
      return 2;
    }
  }
  return finish(L, t, x);
}

/* transport:fd() -> the epoll descriptor: readable whenever a socket of a transfer is ready,
 * so a host's event loop can watch this one descriptor for all of them. */
static int transport_fd(lua_State *L) {
  lua_pushinteger(L, check_transport(L)->epfd);
  return 1;
}

/* transport:next_timer() -> seconds until libcurl's timer is due (0: due now, transfers
 * ended that poll has not reported yet, transfers held for the next poll to start, or sockets
 * left ready by a full epoll_wait, which a host watching fd() edge-triggered would not hear of
 * again; held https transfers waiting for the last one's handshake: at most the rest of
 * OPEN_WAIT_SECONDS), nil when there is no timer. */
static int transport_next_timer(lua_State *L) {
  transport_t *t = check_transport(L);
  double until, held = -1;
  if (t->held_head) {
    handshake_pending(t);
    held = held_wait(t, 1);
  }
  if (t->done_head || t->more_ready || held == 0 || t->watch_pending) {
    lua_pushnumber(L, 0);
    return 1;
  }
  if (t->timer_at < 0 && held < 0) {
    lua_pushnil(L);
    return 1;
  }
  until = t->timer_at < 0 ? held : t->timer_at - mono_now();
  if (held > 0 && held < until)
    until = held;
  lua_pushnumber(L, until > 0 ? until : 0);
  return 1;
}

/* transport:running() -> transfers in flight */
static int transport_running(lua_State *L) {
  lua_pushinteger(L, check_transport(L)->running);
  return 1;
}

/* Reads base_url while it allocates: only inside a window. */
static int push_name(lua_State *L, void *arg) {
  lua_pushfstring(L, FACESWAP_TRANSPORT_MT " (%s)", ((transport_t *)arg)->base_url);
  return 1;
}

static int transport_tostring(lua_State *L) {
  transport_t *t = (transport_t *)luaL_checkudata(L, 1, FACESWAP_TRANSPORT_MT);
  window_call w;
  if (is_closed(t)) {
    lua_pushliteral(L, FACESWAP_TRANSPORT_MT " (closed)");
    return 1;
  }
  w.fn = push_name;
  w.arg = t;
  return window(L, t, &w, NULL);
}

void transport_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"perform", transport_perform}, {"start", transport_start}, {"poll", transport_poll},
    {"finish", transport_finish}, {"cancel", transport_cancel}, {"running", transport_running},
    {"fd", transport_fd}, {"next_timer", transport_next_timer}, {"close", transport_close},
    {"watch", transport_watch}, {"unwatch", transport_unwatch},
    {NULL, NULL}
  };
  static const luaL_Reg metamethods[] = {
    {"__gc", transport_gc}, {"__close", transport_close}, {"__tostring", transport_tostring},
    {NULL, NULL}
  };
  static int curl_ready = 0;
  if (!curl_ready) {
    /* once per process; never cleaned up, as other Lua states may still use libcurl */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      luaL_error(L, "curl_global_init failed");
    if (pthread_atfork(NULL, NULL, count_fork) != 0)
      luaL_error(L, "pthread_atfork failed");
    curl_ready = 1;
  }
  luaL_newmetatable(L, FACESWAP_TRANSPORT_MT);
  lua_newtable(L);
  /* upvalues: the metatable, for check_transport; the protected function of `window` */
  lua_pushvalue(L, -2);
  lua_pushcfunction(L, window_trampoline);
  luaL_setfuncs(L, methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_pushcfunction(L, window_trampoline);
  luaL_setfuncs(L, metamethods, 2);
  lua_pop(L, 1);
}
