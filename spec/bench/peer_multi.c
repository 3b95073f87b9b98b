/*
 * spec/bench/peer_multi.c - the peer of the batch benchmark (spec/bench/batch_cpu.sh): a bare
 * curl-multi C loop doing the requests client:batch does.
 *
 *   peer_multi BASE_URL JOBS CONCURRENCY INTERVAL
 *
 * JOBS headshots, CONCURRENCY at once, each on an easy handle of its own slot (reused, so each
 * slot keeps one kept-alive connection): POST BASE_URL/headshot (the client's multipart body
 * and headers), then GET BASE_URL/jobs/?jobid=ID every INTERVAL seconds until the answer says
 * "completed"; then the slot takes the next job. The answers are read with strstr (the jobid,
 * the status), nothing more. One curl_multi_poll waits for all. Exits 0 iff every job
 * completed.
 *
 * Built with -DWITH_CJSON and a Lua's flags, it also decodes every answer with lua-cjson's
 * decode in a Lua state (as the client must: lua-cjson is its one JSON reader), and takes the
 * jobid and status from the decoded table.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef WITH_CJSON
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
static lua_State *L;
#endif

#define MAX_SLOTS 64

struct slot {
    CURL *easy;
    char answer[4096];
    size_t len;
    char jobid[64];
    char url[512];
    int polling;      /* 0: POST in flight or due; 1: polling */
    int busy;         /* a transfer in flight */
    double due;       /* when the next GET is due (polling, not busy) */
    int active;       /* has a job */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct slot *s = ud;
    size_t bytes = size * n;
    if (bytes > sizeof s->answer - 1 - s->len)
        return 0;
    memcpy(s->answer + s->len, data, bytes);
    s->len += bytes;
    return bytes;
}

static const char *base;
static struct curl_slist *post_headers, *get_headers;
static char body[512];
static long body_len;

static void start(CURLM *m, struct slot *s)
{
    s->len = 0;
    if (!s->polling) {
        snprintf(s->url, sizeof s->url, "%s/headshot", base);
        curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, post_headers);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, body_len);
    } else {
        snprintf(s->url, sizeof s->url, "%s/jobs/?jobid=%s", base, s->jobid);
        curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, get_headers);
        curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
    }
    s->busy = 1;
    curl_multi_add_handle(m, s->easy);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s BASE_URL JOBS CONCURRENCY INTERVAL\n", argv[0]);
        return 2;
    }
    base = argv[1];
    long jobs = atol(argv[2]), conc = atol(argv[3]);
    double interval = atof(argv[4]);
    if (jobs < 0 || conc < 1 || conc > MAX_SLOTS)
        return 2;
#ifdef WITH_CJSON
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != 0)
        return 1;
    lua_getfield(L, -1, "decode");
    lua_replace(L, 1);
    lua_settop(L, 1);
#endif
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    static const char boundary[] = "faceswap-0123456789abcdefABCDEFgh";
    body_len = snprintf(body, sizeof body, "--%s\r\nContent-Disposition: form-data; "
                        "name=\"prompt\"\r\n\r\nportrait of a cat\r\n--%s--\r\n", boundary, boundary);
    post_headers = curl_slist_append(NULL, "Authorization: Bearer test-token");
    post_headers = curl_slist_append(post_headers, "Content-Type: multipart/form-data; "
                                                   "boundary=faceswap-0123456789abcdefABCDEFgh");
    get_headers = curl_slist_append(NULL, "Authorization: Bearer test-token");
    struct slot slots[MAX_SLOTS];
    memset(slots, 0, sizeof slots);
    long next_job = 0, completed = 0, failed = 0;
    for (long i = 0; i < conc; i++) {
        struct slot *s = &slots[i];
        s->easy = curl_easy_init();
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "lua-faceswap/0.2.0");
        curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        if (next_job < jobs) {
            next_job++;
            s->active = 1;
            start(m, s);
        }
    }
    while (completed + failed < jobs) {
        int running, left;
        double t, wait = 1.0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct slot *s;
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
            CURLcode res = msg->data.result;
            curl_multi_remove_handle(m, s->easy);
            s->busy = 0;
            s->answer[s->len] = '\0';
#ifdef WITH_CJSON
            /* the decoded jobid and status, written back the way strstr reads them below */
            lua_pushvalue(L, 1);
            lua_pushlstring(L, s->answer, s->len);
            if (lua_pcall(L, 1, 1, 0) == 0 && lua_istable(L, -1)) {
                lua_getfield(L, -1, "jobid");
                lua_getfield(L, -2, "status");
                snprintf(s->answer, sizeof s->answer, "\"jobid\":\"%s\"\"status\":\"%s\"",
                         lua_isstring(L, -2) ? lua_tostring(L, -2) : "",
                         lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
            } else {
                s->answer[0] = '\0';
            }
            lua_settop(L, 1);
#endif
            const char *id = strstr(s->answer, "\"jobid\":\"");
            if (res != CURLE_OK || status != 200 || !id) {
                fprintf(stderr, "job failed: %s, HTTP %ld\n", curl_easy_strerror(res), status);
                failed++;
                s->active = 0;
            } else if (strstr(s->answer, "\"status\":\"completed\"")) {
                completed++;
                s->polling = 0;
                s->active = 0;
            } else {
                if (!s->polling) {
                    size_t n = strcspn(id + 9, "\"");
                    if (n >= sizeof s->jobid)
                        n = sizeof s->jobid - 1;
                    memcpy(s->jobid, id + 9, n);
                    s->jobid[n] = '\0';
                    s->polling = 1;
                }
                s->due = now() + interval;
            }
            if (!s->active && next_job < jobs) {
                next_job++;
                s->active = 1;
                start(m, s);
            }
        }
        t = now();
        for (long i = 0; i < conc; i++) {
            struct slot *s = &slots[i];
            if (s->active && !s->busy && s->polling) {
                if (s->due <= t) {
                    start(m, s);
                    wait = 0;
                } else if (s->due - t < wait) {
                    wait = s->due - t;
                }
            }
        }
        if (completed + failed < jobs) {
            int ms = (int)(wait * 1000 + 0.999);
            curl_multi_poll(m, NULL, 0, ms < 0 ? 0 : ms, NULL);
        }
    }
    for (long i = 0; i < conc; i++)
        curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(m);
    curl_slist_free_all(post_headers);
    curl_slist_free_all(get_headers);
    curl_global_cleanup();
    printf("completed=%ld failed=%ld\n", completed, failed);
    return failed ? 1 : 0;
}
