/* peer_buf.h: the growing buffer the benchmark peers (the C programs beside which lua-faceswap
 * is measured) collect an answer in, and its libcurl write callback. */
#ifndef PEER_BUF_H
#define PEER_BUF_H
#include <stdlib.h>
#include <string.h>

struct buf {
    char *p;
    size_t len, cap;
};

/* CURLOPT_WRITEFUNCTION, with a struct buf as CURLOPT_WRITEDATA: appends what came; 0 (curl
 * then fails with CURLE_WRITE_ERROR) when memory runs out */
static size_t buf_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}
#endif
