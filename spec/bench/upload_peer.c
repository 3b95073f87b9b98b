/*
 * spec/bench/upload_peer.c - the peer of the upload benchmark (spec/bench/upload.sh): what a
 * C programmer would write to upload a file with libcurl, CURLOPT_READFUNCTION reading it
 * with pread as libcurl sends.
 *
 *   upload_peer URL N FILE
 *
 * Sends N saveid POSTs to URL over ONE reused easy handle, each body the bytes lua-faceswap
 * sends for client:saveid{idname = "me", image = FILE}: a multipart/form-data body with a
 * boundary of the same length, the part heads in memory, the file's bytes read from one
 * descriptor with pread into libcurl's send buffer by the read callback. "Authorization:
 * Bearer test-token", no "Expect: 100-continue", TCP_NODELAY. The answer is kept in a buffer
 * and not parsed. PEER_ULBUF=BYTES sets libcurl's send buffer (CURLOPT_UPLOAD_BUFFERSIZE; its
 * default is 64 KiB). PEER_MULTI=1 drives the same handle through a multi handle the way
 * lua-faceswap's transport does (csrc/transport_curl.c's drive): CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION into one epoll set, epoll_wait, curl_multi_socket_action for each
 * ready socket or the timer, curl_multi_info_read for the end. After two warm-up uploads it
 * times the other N-2 with getrusage (user + system CPU of the process) and prints
 * "cpu_us_per_upload=X", then the context switches per upload over the same uploads
 * (ru_nvcsw + ru_nivcsw) as "csw_per_upload=X" and, in the multi mode, the epoll_wait calls
 * per upload as "waits_per_upload=X"; exits 0 iff every answer was HTTP 200.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct body {
    const char *head, *tail;
    size_t head_len, tail_len, file_len, total, pos;
    int fd;
};

static size_t on_read(char *out, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t room = size * nmemb, done = 0;
    while (done < room && b->pos < b->total) {
        size_t pos = b->pos, n;
        if (pos < b->head_len) {
            n = b->head_len - pos < room - done ? b->head_len - pos : room - done;
            memcpy(out + done, b->head + pos, n);
        } else if (pos < b->head_len + b->file_len) {
            size_t off = pos - b->head_len;
            n = b->file_len - off < room - done ? b->file_len - off : room - done;
            ssize_t r = pread(b->fd, out + done, n, (off_t)off);
            if (r <= 0)
                return CURL_READFUNC_ABORT;
            n = (size_t)r;
        } else {
            size_t off = pos - b->head_len - b->file_len;
            n = b->tail_len - off < room - done ? b->tail_len - off : room - done;
            memcpy(out + done, b->tail + off, n);
        }
        done += n;
        b->pos += n;
    }
    return done;
}

#include "peer_buf.h"

static long switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- the multi mode: epoll + curl_multi_socket_action, as csrc/transport_curl.c ---- */

struct loop {
    CURLM *multi;
    int epfd;
    double timer_at; /* monotonic seconds, -1 for none */
    long waits;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct loop *lp = userp;
    struct epoll_event ev;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(lp->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (epoll_ctl(lp->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0)
        epoll_ctl(lp->epfd, EPOLL_CTL_ADD, s, &ev);
    if (!socketp)
        curl_multi_assign(lp->multi, s, lp);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct loop *lp = userp;
    (void)multi;
    lp->timer_at = timeout_ms < 0 ? -1 : mono_now() + (double)timeout_ms / 1000;
    return 0;
}

/* one transfer of h through the multi handle, as the transport's perform drives it */
static CURLcode multi_perform(struct loop *lp, CURL *h)
{
    CURLcode result = CURLE_OK;
    int done = 0, still;
    curl_multi_add_handle(lp->multi, h);
    while (!done) {
        struct epoll_event ev[16];
        double wait = 3600;
        if (lp->timer_at >= 0) {
            double until = lp->timer_at - mono_now();
            if (until < wait)
                wait = until > 0 ? until : 0;
        }
        int n = epoll_wait(lp->epfd, ev, 16, wait > 0 ? (int)(wait * 1000 + 0.999) : 0);
        lp->waits++;
        for (int i = 0; i < n; i++) {
            int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(lp->multi, ev[i].data.fd, flags, &still);
        }
        if (lp->timer_at >= 0 && mono_now() >= lp->timer_at) {
            lp->timer_at = -1;
            curl_multi_socket_action(lp->multi, CURL_SOCKET_TIMEOUT, 0, &still);
            n = 1;
        }
        if (n > 0) {
            CURLMsg *msg;
            int left;
            while ((msg = curl_multi_info_read(lp->multi, &left)) != NULL)
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
                    result = msg->data.result;
                    done = 1;
                }
        }
    }
    curl_multi_remove_handle(lp->multi, h);
    return result;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL N FILE\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *file = argv[3], *base = strrchr(file, '/');
    long n = strtol(argv[2], NULL, 10);
    base = base ? base + 1 : file;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (n < 3 || fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "need N >= 3 and a readable FILE\n");
        return 2;
    }
    static const char boundary[] = "faceswap-0123456789ABCDEFGHIJKL"; /* 9 + 22 characters */
    char head[512], tail[64];
    int hl = snprintf(head, sizeof head,
                      "--%s\r\nContent-Disposition: form-data; name=\"idname\"\r\n\r\nme\r\n"
                      "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\n"
                      "Content-Type: image/png\r\n\r\n", boundary, boundary, base);
    int tl = snprintf(tail, sizeof tail, "\r\n--%s--\r\n", boundary);
    struct body b = {head, tail, (size_t)hl, (size_t)tl, (size_t)st.st_size, 0, 0, fd};
    b.total = b.head_len + b.file_len + b.tail_len;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Authorization: Bearer test-token");
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type: multipart/form-data; "
                                   "boundary=faceswap-0123456789ABCDEFGHIJKL");
    struct buf answer = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b.total);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &b);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
    if (getenv("PEER_ULBUF")) /* libcurl's send buffer, as lua-faceswap sets it for a file */
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, strtol(getenv("PEER_ULBUF"), NULL, 10));

    struct loop lp = {NULL, -1, -1, 0};
    if (getenv("PEER_MULTI") && strcmp(getenv("PEER_MULTI"), "1") == 0) {
        lp.multi = curl_multi_init();
        lp.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (!lp.multi || lp.epfd < 0)
            return 1;
        curl_multi_setopt(lp.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(lp.multi, CURLMOPT_SOCKETDATA, &lp);
        curl_multi_setopt(lp.multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(lp.multi, CURLMOPT_TIMERDATA, &lp);
    }

    int rc = 0;
    double started = 0;
    long csw = 0, waits = 0;
    for (long i = 0; i < n; i++) {
        if (i == 2) {
            started = cpu_seconds();
            csw = switches();
            waits = lp.waits;
        }
        b.pos = 0;
        answer.len = 0;
        CURLcode res = lp.multi ? multi_perform(&lp, h) : curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (res != CURLE_OK || status != 200) {
            fprintf(stderr, "request %ld: %s, HTTP %ld\n", i + 1, curl_easy_strerror(res), status);
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        printf("cpu_us_per_upload=%.1f\n", (cpu_seconds() - started) * 1e6 / (double)(n - 2));
        printf("csw_per_upload=%.1f\n", (double)(switches() - csw) / (double)(n - 2));
        if (lp.multi)
            printf("waits_per_upload=%.1f\n", (double)(lp.waits - waits) / (double)(n - 2));
    }
    free(answer.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (lp.multi) {
        curl_multi_cleanup(lp.multi);
        close(lp.epfd);
    }
    curl_global_cleanup();
    close(fd);
    return rc;
}
