/*
 * spec/bench/bare_mime.c - baseline for the round-trip benchmark
 * (see spec/bench/run.sh).
 *
 *   bare_mime URL N [FILE]
 *
 * Sends N multipart POSTs to URL over ONE reused libcurl easy handle.  The
 * body is rebuilt for every request with libcurl's own mime API (one part,
 * name "prompt", data "portrait of a cat"), with "Authorization: Bearer
 * test-token", TCP_NODELAY and the "Expect:" header disabled.  With FILE (the
 * upload benchmark, spec/bench/upload.sh) the parts are a saveid's instead:
 * "idname" = "me" and "image" = FILE's bytes (curl_mime_filedata: libcurl reads
 * the file as it sends, with type image/png).  The response
 * body is appended to a growing buffer and then thrown away: nothing is
 * parsed.  Exits 0 iff every request completed with HTTP 200.
 *
 * For HTTPS (spec/bench/https.sh): BARE_CAINFO=FILE sets CURLOPT_CAINFO, and
 * BARE_NO_CAPATH=1 unsets libcurl's built-in CA directory (CURLOPT_CAPATH
 * NULL), which lets libcurl keep the parsed CA store between connections;
 * BARE_CAPATH=DIR trusts the hashed directory DIR alone (CURLOPT_CAINFO NULL,
 * CURLOPT_CAPATH DIR), where OpenSSL reads only the issuers a chain needs;
 * BARE_NO_SESSION=1 turns TLS session resumption off, so every new connection
 * makes a full handshake and verifies the server's chain.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_buf.h"

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s URL N [FILE]\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *file = argc == 4 ? argv[3] : NULL;
    long n = strtol(argv[2], NULL, 10);
    if (n < 0) {
        fprintf(stderr, "bad N: %s\n", argv[2]);
        return 2;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "curl_easy_init failed\n");
        return 1;
    }

    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Authorization: Bearer test-token");
    hdrs = curl_slist_append(hdrs, "Expect:");
    struct buf body = {0};

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    if (getenv("BARE_CAINFO"))
        curl_easy_setopt(h, CURLOPT_CAINFO, getenv("BARE_CAINFO"));
    if (getenv("BARE_NO_CAPATH"))
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    if (getenv("BARE_NO_SESSION"))
        curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    if (getenv("BARE_CAPATH")) {
        curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(h, CURLOPT_CAPATH, getenv("BARE_CAPATH"));
    }

    int rc = 0;
    for (long i = 0; i < n; i++) {
        curl_mime *mime = curl_mime_init(h);
        curl_mimepart *part = curl_mime_addpart(mime);
        if (file) {
            curl_mime_name(part, "idname");
            curl_mime_data(part, "me", CURL_ZERO_TERMINATED);
            part = curl_mime_addpart(mime);
            curl_mime_name(part, "image");
            curl_mime_filedata(part, file);
            curl_mime_type(part, "image/png");
        } else {
            curl_mime_name(part, "prompt");
            curl_mime_data(part, "portrait of a cat", CURL_ZERO_TERMINATED);
        }
        curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);

        body.len = 0;
        CURLcode res = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_setopt(h, CURLOPT_MIMEPOST, NULL);
        curl_mime_free(mime);
        if (res != CURLE_OK) {
            fprintf(stderr, "request %ld: %s\n", i + 1, curl_easy_strerror(res));
            rc = 1;
            break;
        }
        if (status != 200) {
            fprintf(stderr, "request %ld: HTTP %ld\n", i + 1, status);
            rc = 1;
            break;
        }
        body.len = 0; /* discard: nothing is parsed */
    }

    free(body.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return rc;
}
