/*
 * spec/bench/server.c - tiny loopback HTTP/1.1 server for the round-trip
 * benchmark (see spec/bench/run.sh).
 *
 *   server PORT [POLLS]   (PORT 0 = pick a free port)
 *
 * With POLLS (the batch benchmark, spec/bench/batch_cpu.sh) it plays jobs: each POST makes a
 * job with a jobid of its own (32 hex digits), answered "started"; a GET whose target holds
 * "jobid=ID" answers that job, "started" until its POLLS-th GET, which answers "completed".
 *
 * Listens on 127.0.0.1, prints the bound port followed by "\n" on stdout once
 * listening, then serves forever (until killed).  Single-threaded, poll()
 * based, keep-alive, pipelining-safe.  For every request it parses the request
 * line and headers, reads the WHOLE body (Content-Length or chunked) and only
 * then answers 200 with a fixed JSON job body.  "Expect: 100-continue" is
 * honoured with an interim 100 response.  Sets TCP_NODELAY on every accepted
 * socket.
 *
 * On SIGUSR1 it prints "served N\n" to stderr, N being the number of requests
 * answered so far; run.sh uses this to check that a client really made the
 * requests it was measured for.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "listen.h"

#define MAX_CONNS 64
#define MAX_HEADER 65536

static const char JOB_BODY[] =
    "{\"jobid\":\"8a1f574fdbf79e8cd57e070476d9d5f3\","
    "\"verb\":\"faceswap-headshot\","
    "\"status\":\"started\","
    "\"prompt\":\"portrait of a cat\","
    "\"created\":\"2023-09-09T02:04:49.667Z\","
    "\"updated\":\"2023-09-09T02:04:49.667Z\","
    "\"discord\":\"ABC" "\xe2\x80\xa6" "secured" "\xe2\x80\xa6" "xyz\","
    "\"server\":\"1000000000000000001\","
    "\"channel\":\"1100000000000000001\","
    "\"messageId\":\"1149891234567890123\","
    "\"timestamp\":\"2023-09-09T02:04:50.123000+00:00\","
    "\"content\":\"<@100000000000000001> Picsi.Ai Headshot Job Submitted "
    "[jobid: 8a1f574fdbf79e8cd57e070476d9d5f3] [credits: 4] "
    "[prompt: 'portrait of a cat'] [time: 12s] [SaveID: 'me'] "
    "(796/800 credits remaining)\","
    "\"code\":200}";

enum state { ST_HEAD, ST_BODY, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF,
             ST_TRAILER };

struct conn {
    int fd;
    enum state st;
    char *in;          /* unconsumed input */
    size_t in_len, in_cap;
    size_t remaining;  /* body / chunk bytes still to read */
    int close_after;   /* "Connection: close" or HTTP/1.0 */
    int post;          /* the request being read is a POST */
    unsigned long long job; /* the jobid=... of a GET, parsed as hex (0: none) */
    char *out;         /* pending output */
    size_t out_len, out_off, out_cap;
};

static struct conn conns[MAX_CONNS];
static unsigned long long served;
static volatile sig_atomic_t report_wanted;
static char response[4096];
static size_t response_len;
static int polls_to_complete;       /* 0: the fixed answer to every request */
static unsigned long long jobs_made;
static unsigned char *job_polls;    /* GETs seen per job, indexed by job number */
static size_t job_polls_cap;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        die("realloc");
    return q;
}

static void conn_reset(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void out_append(struct conn *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* Case-insensitive search for header NAME within [hdr, hdr+len); returns a
 * pointer to its (leading-space-stripped) value or NULL. */
static const char *find_header(const char *hdr, size_t len, const char *name,
                               size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = memchr(hdr, '\n', len); /* skip request line */
    const char *end = hdr + len;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nl && line[nl] == ':' &&
            strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol < end ? eol : NULL;
    }
    return NULL;
}

static int value_has(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vlen; i++)
        if (strncasecmp(v + i, tok, tl) == 0)
            return 1;
    return 0;
}

/* The answer about job number n (its jobid: n in 32 hex digits). */
static void respond_job(struct conn *c, unsigned long long n, const char *status)
{
    char body[1024], head[128];
    int blen = snprintf(body, sizeof body,
        "{\"jobid\":\"%032llx\",\"verb\":\"faceswap-headshot\",\"status\":\"%s\","
        "\"prompt\":\"portrait of a cat\",\"created\":\"2023-09-09T02:04:49.667Z\","
        "\"updated\":\"2023-09-09T02:04:49.667Z\",\"server\":\"1000000000000000001\","
        "\"channel\":\"1100000000000000001\",\"messageId\":\"1149891234567890123\","
        "\"content\":\"<@100000000000000001> Picsi.Ai Headshot Job Submitted [jobid: %032llx] "
        "[credits: 4] [prompt: 'portrait of a cat'] (796/800 credits remaining)\",\"code\":200}",
        n, status, n);
    int hlen = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n", blen);
    out_append(c, head, (size_t)hlen);
    out_append(c, body, (size_t)blen);
}

static void respond(struct conn *c)
{
    served++;
    if (!polls_to_complete) {
        out_append(c, response, response_len);
    } else if (c->post) {
        unsigned long long n = ++jobs_made;
        if (n >= job_polls_cap) {
            size_t cap = job_polls_cap ? job_polls_cap * 2 : 1024;
            job_polls = xrealloc(job_polls, cap);
            memset(job_polls + job_polls_cap, 0, cap - job_polls_cap);
            job_polls_cap = cap;
        }
        respond_job(c, n, "started");
    } else if (c->job >= 1 && c->job <= jobs_made) {
        int k = ++job_polls[c->job];
        respond_job(c, c->job, k >= polls_to_complete ? "completed" : "started");
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        out_append(c, nf, sizeof nf - 1);
    }
}

static void on_usr1(int sig)
{
    (void)sig;
    report_wanted = 1;
}

/* Consume as much buffered input as possible.  Returns -1 on protocol error. */
static int process(struct conn *c)
{
    size_t off = 0;
    for (;;) {
        char *buf = c->in + off;
        size_t avail = c->in_len - off;
        if (c->st == ST_HEAD) {
            char *e = NULL;
            for (size_t i = 0; i + 3 < avail; i++)
                if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
                    buf[i + 3] == '\n') {
                    e = buf + i;
                    break;
                }
            if (!e) {
                if (avail > MAX_HEADER)
                    return -1;
                break;
            }
            size_t hlen = (size_t)(e - buf) + 2; /* keep last header's CRLF */
            /* request line: METHOD SP TARGET SP HTTP/x.y */
            const char *sp1 = memchr(buf, ' ', hlen);
            const char *eol = memchr(buf, '\r', hlen);
            if (!sp1 || !eol || sp1 > eol)
                return -1;
            c->close_after = (eol - buf >= 8 && memcmp(eol - 8, "HTTP/1.0", 8) == 0);
            c->post = sp1 - buf == 4 && memcmp(buf, "POST", 4) == 0;
            c->job = 0;
            {
                const char *q = memmem(buf, (size_t)(eol - buf), "jobid=", 6);
                if (q)
                    c->job = strtoull(q + 6, NULL, 16);
            }
            size_t vl;
            const char *v;
            if ((v = find_header(buf, hlen, "Connection", &vl))) {
                if (value_has(v, vl, "close"))
                    c->close_after = 1;
                else if (value_has(v, vl, "keep-alive"))
                    c->close_after = 0;
            }
            if ((v = find_header(buf, hlen, "Expect", &vl)) &&
                value_has(v, vl, "100-continue")) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                out_append(c, cont, sizeof cont - 1);
            }
            off += (size_t)(e - buf) + 4;
            if ((v = find_header(buf, hlen, "Transfer-Encoding", &vl)) &&
                value_has(v, vl, "chunked")) {
                c->st = ST_CHUNK_SIZE;
            } else if ((v = find_header(buf, hlen, "Content-Length", &vl))) {
                char tmp[32];
                if (vl == 0 || vl >= sizeof tmp)
                    return -1;
                memcpy(tmp, v, vl);
                tmp[vl] = 0;
                char *endp;
                unsigned long long n = strtoull(tmp, &endp, 10);
                if (*endp)
                    return -1;
                c->remaining = (size_t)n;
                c->st = ST_BODY;
            } else {
                c->remaining = 0;
                c->st = ST_BODY;
            }
        } else if (c->st == ST_BODY || c->st == ST_CHUNK_DATA) {
            size_t take = avail < c->remaining ? avail : c->remaining;
            off += take;
            c->remaining -= take;
            if (c->remaining)
                break;
            if (c->st == ST_BODY) {
                respond(c);
                c->st = ST_HEAD;
                if (c->close_after)
                    break;
            } else {
                c->st = ST_CHUNK_CRLF;
            }
        } else { /* chunk size / chunk CRLF / trailer: line oriented */
            char *nl = memchr(buf, '\n', avail);
            if (!nl) {
                if (avail > MAX_HEADER)
                    return -1;
                break;
            }
            size_t ll = (size_t)(nl - buf) + 1;
            off += ll;
            if (c->st == ST_CHUNK_SIZE) {
                char *endp;
                unsigned long long n = strtoull(buf, &endp, 16);
                if (endp == buf)
                    return -1;
                c->remaining = (size_t)n;
                c->st = n ? ST_CHUNK_DATA : ST_TRAILER;
            } else if (c->st == ST_CHUNK_CRLF) {
                c->st = ST_CHUNK_SIZE;
            } else { /* trailer: ends with an empty line */
                if (ll <= 2) {
                    respond(c);
                    c->st = ST_HEAD;
                    if (c->close_after)
                        break;
                }
            }
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

/* Returns -1 if the connection must be dropped. */
static int flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return c->close_after && c->st == ST_HEAD ? -1 : 0;
}

static int on_readable(struct conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 16384) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 65536;
            c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->in_len += (size_t)n;
        /* Don't let a fast sender grow the buffer without bound: body bytes
         * are discarded as soon as they are consumed. */
        if (process(c) < 0)
            return -1;
        if ((size_t)n < 16384)
            break;
    }
    return flush_out(c);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s PORT [POLLS]   (0 = any free port)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* SIGUSR1 is blocked except inside ppoll(), so a report request can
     * never be lost between the flag check and going to sleep. */
    sigset_t usr1, waitmask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &waitmask);
    sigdelset(&waitmask, SIGUSR1);
    struct sigaction sa_usr1;
    memset(&sa_usr1, 0, sizeof sa_usr1);
    sa_usr1.sa_handler = on_usr1;
    sigemptyset(&sa_usr1.sa_mask);
    sigaction(SIGUSR1, &sa_usr1, NULL);

    response_len = (size_t)snprintf(response, sizeof response,
                                    "HTTP/1.1 200 OK\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Content-Length: %zu\r\n"
                                    "\r\n%s",
                                    sizeof JOB_BODY - 1, JOB_BODY);
    if (response_len >= sizeof response)
        return 1;

    if (argc == 3)
        polls_to_complete = atoi(argv[2]);
    int ls = listen_loopback(argv[1], 64);
    int one = 1;

    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;

    struct pollfd pfd[MAX_CONNS + 1];
    int idx[MAX_CONNS + 1];
    for (;;) {
        if (report_wanted) {
            report_wanted = 0;
            fprintf(stderr, "served %llu\n", served);
            fflush(stderr);
        }
        int n = 0;
        pfd[n].fd = ls;
        pfd[n].events = POLLIN;
        idx[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0)
                continue;
            pfd[n].fd = conns[i].fd;
            pfd[n].events = conns[i].out_len ? POLLOUT : POLLIN;
            idx[n++] = i;
        }
        if (ppoll(pfd, (nfds_t)n, NULL, &waitmask) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int k = 1; k < n; k++) {
            struct conn *c = &conns[idx[k]];
            short re = pfd[k].revents;
            if (!re)
                continue;
            int r;
            if (re & POLLOUT)
                r = flush_out(c);
            else if (re & (POLLIN | POLLHUP | POLLERR))
                r = on_readable(c);
            else
                r = -1;
            if (r < 0)
                conn_reset(c);
        }
        if (pfd[0].revents & POLLIN) {
            for (;;) {
                int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                int slot = -1;
                for (int i = 0; i < MAX_CONNS; i++)
                    if (conns[i].fd < 0) {
                        slot = i;
                        break;
                    }
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                memset(&conns[slot], 0, sizeof conns[slot]);
                conns[slot].fd = fd;
                conns[slot].st = ST_HEAD;
            }
        }
    }
}
