/*
 * spec/bench/hold.c - a loopback HTTP/1.1 server that takes requests and
 * answers none of them until told to, for the step(0) cost benchmark
 * (spec/bench/concurrency.sh, spec/bench/steps.lua).
 *
 *   hold PORT          (PORT 0 = pick a free port)
 *
 * Listens on 127.0.0.1 and prints the bound port and "\n" on stdout.  Every
 * connection's request (head, then a Content-Length body) is read in full and
 * then held: no answer is sent.  epoll based, no limit on connections other
 * than the descriptor limit.
 *
 * Two control requests, told apart by their request line, are answered at
 * once and the control connection is closed; they count nowhere:
 *
 *   GET /__hold/stats            -> "open N held M\n": connections now open
 *                                   (control ones aside) and how many of them
 *                                   hold a whole, unanswered request
 *   GET /__hold/release?n=K      -> answers K held requests with 200 and a
 *                                   job JSON (the connections stay open), then
 *                                   "released K\n"; the requests held longest
 *                                   first, or with &newest=1 the latest held
 *
 * The answers of a release are written before the control answer, so once a
 * client has read "released K" the K answers are in its sockets' buffers.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "listen.h"

#define HEAD_MAX 8192

static const char JOB[] =
    "{\"jobid\":\"0123456789abcdef0123456789abcdef\",\"verb\":\"faceswap-headshot\","
    "\"status\":\"started\",\"prompt\":\"held\",\"created\":\"2024-01-01T00:00:00.000Z\","
    "\"updated\":\"2024-01-01T00:00:00.000Z\",\"channel\":\"1100000000000000001\","
    "\"code\":200}";

typedef struct peer {
    int fd;
    int held;              /* a whole request is in and unanswered */
    size_t body_left;      /* body bytes still to come, once the head is in */
    int in_body;
    size_t head_len;
    char head[HEAD_MAX];
    struct peer *prev_held, *next_held; /* the list of held peers, oldest first */
} peer_t;

static int open_count, held_count;
static peer_t *held_first, *held_last;

static void held_push(peer_t *p)
{
    p->held = 1;
    p->next_held = NULL;
    p->prev_held = held_last;
    if (held_last)
        held_last->next_held = p;
    else
        held_first = p;
    held_last = p;
    held_count++;
}

static void held_drop(peer_t *p)
{
    if (!p->held)
        return;
    if (p->prev_held)
        p->prev_held->next_held = p->next_held;
    else
        held_first = p->next_held;
    if (p->next_held)
        p->next_held->prev_held = p->prev_held;
    else
        held_last = p->prev_held;
    p->held = 0;
    held_count--;
}

/* Writes all of s to a blocking-enough loopback socket; small answers only. */
static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void close_peer(int ep, peer_t *p, int counted)
{
    held_drop(p);
    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    if (counted)
        open_count--;
    free(p);
}

/* Control requests: answered at once; the caller closes the connection. */
static int control(peer_t *p)
{
    char out[128];
    int n;
    if (strncmp(p->head, "GET /__hold/stats ", 18) == 0) {
        n = snprintf(out, sizeof out, "open %d held %d\n", open_count, held_count);
    } else if (strncmp(p->head, "GET /__hold/release?n=", 22) == 0) {
        static char answer[1024];
        int k = atoi(p->head + 22), done = 0;
        const char *eol = strstr(p->head, "\r\n");
        const char *flag = strstr(p->head, "&newest=1");
        int newest = flag && eol && flag < eol;
        int alen = snprintf(answer, sizeof answer,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s", sizeof JOB - 1, JOB);
        while (done < k && held_first) {
            peer_t *h = newest ? held_last : held_first;
            held_drop(h);
            h->in_body = 0;
            h->head_len = 0;
            write_all(h->fd, answer, (size_t)alen);
            done++;
        }
        n = snprintf(out, sizeof out, "released %d\n", done);
    } else {
        return 0;
    }
    char resp[256];
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s", n, out);
    write_all(p->fd, resp, (size_t)rlen);
    return 1;
}

/* Reads what is there. Returns 0 to keep the peer, -1 to close it. *counted says whether the
 * peer counts as open (a control connection does not, once recognised). */
static int on_input(peer_t *p, int *counted)
{
    char buf[16384];
    for (;;) {
        ssize_t r = recv(p->fd, buf, sizeof buf, 0);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        size_t off = 0;
        while (off < (size_t)r) {
            if (p->held) {
                off = (size_t)r; /* a client may pipeline; this server ignores it */
            } else if (p->in_body) {
                size_t take = (size_t)r - off < p->body_left ? (size_t)r - off : p->body_left;
                off += take;
                p->body_left -= take;
                if (p->body_left == 0) {
                    p->in_body = 0;
                    held_push(p);
                }
            } else {
                size_t take = (size_t)r - off;
                if (take > HEAD_MAX - 1 - p->head_len)
                    return -1;
                memcpy(p->head + p->head_len, buf + off, take);
                p->head_len += take;
                p->head[p->head_len] = '\0';
                char *end = strstr(p->head, "\r\n\r\n");
                if (!end) {
                    off += take;
                    continue;
                }
                size_t used = (size_t)(end + 4 - p->head) - (p->head_len - take);
                off += used;
                if (strncmp(p->head, "GET /__hold/", 12) == 0) {
                    if (*counted) {
                        *counted = 0;
                        open_count--;
                    }
                    control(p);
                    return -1;
                }
                const char *cl = strcasestr(p->head, "\r\nContent-Length:");
                p->body_left = cl ? strtoul(cl + 17, NULL, 10) : 0;
                p->head_len = 0;
                if (p->body_left > 0) {
                    p->in_body = 1;
                } else {
                    held_push(p);
                }
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT   (0 = any free port)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = listen_loopback(argv[1], 4096);
    int one = 1;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
        die("epoll_ctl");
    for (;;) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            peer_t *p = (peer_t *)evs[i].data.ptr;
            if (!p) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    peer_t *q = (peer_t *)calloc(1, sizeof *q);
                    if (!q)
                        die("calloc");
                    q->fd = fd;
                    struct epoll_event pev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = q };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &pev) < 0)
                        die("epoll_ctl");
                    open_count++;
                }
                continue;
            }
            int counted = 1;
            if (on_input(p, &counted) < 0)
                close_peer(ep, p, counted);
        }
    }
}
