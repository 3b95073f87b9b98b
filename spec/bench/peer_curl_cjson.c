/*
 * spec/bench/peer_curl_cjson.c - the limit of the round-trip benchmark (spec/bench/roundtrip.sh):
 * bare libcurl and lua-cjson's decode in a Lua state, doing what client:headshot() does on the
 * wire and nothing else.
 *
 *   peer_curl_cjson URL N
 *
 * One easy handle, reused (one kept-alive connection). For each of N requests: the multipart
 * body of a headshot ("prompt" = "portrait of a cat") with a fresh 24-character boundary is
 * written into a buffer, the Content-Type line rewritten in place, and the body POSTed with
 * CURLOPT_POSTFIELDS, with the headers lua-faceswap sends (User-Agent, Authorization,
 * Content-Type), so the request and answer bytes are the same as the client's. The answer is
 * appended to a buffer and decoded with require("cjson").decode in a Lua state made at start;
 * its jobid is checked. Built once per Lua (5.1-5.4, LuaJIT) against that Lua's headers.
 * For an https URL (spec/bench/https.sh), as bare_mime.c: BARE_CAINFO=FILE trusts FILE and
 * BARE_NO_CAPATH=1 unsets libcurl's CA directory, so its CA cache keeps the parsed store.
 * Exits 0 iff every request got HTTP 200 and the expected jobid.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define EXPECTED "8a1f574fdbf79e8cd57e070476d9d5f3"
#define PROMPT "portrait of a cat"
#define BOUNDARY_LEN 24

#include "peer_buf.h"

/* A boundary of BOUNDARY_LEN letters and digits, different for every request. */
static void make_boundary(char *out, unsigned long i)
{
    static const char digits[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned long long x = (unsigned long long)i * 0x9E3779B97F4A7C15ULL;
    for (int k = 0; k < BOUNDARY_LEN; k++) {
        out[k] = digits[x % 62];
        x = x / 62 ^ ((unsigned long long)(k + 1) * 0xBF58476D1CE4E5B9ULL);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s URL N\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    long n = strtol(argv[2], NULL, 10);
    if (n < 0)
        return 2;

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "require cjson: %s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_getfield(L, -1, "decode");
    lua_replace(L, 1); /* stack: [1] cjson.decode */
    lua_settop(L, 1);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    CURL *h = curl_easy_init();
    if (!h)
        return 1;
    char ct[128];
    struct curl_slist *hdrs = curl_slist_append(NULL, "Authorization: Bearer test-token");
    hdrs = curl_slist_append(hdrs, "Content-Type: multipart/form-data; boundary=faceswap-"
                                   "XXXXXXXXXXXXXXXXXXXXXXXX");
    struct buf answer = {0};
    char body[512];
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "lua-faceswap/0.2.0");
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
    if (getenv("BARE_CAINFO"))
        curl_easy_setopt(h, CURLOPT_CAINFO, getenv("BARE_CAINFO"));
    if (getenv("BARE_NO_CAPATH"))
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);

    int rc = 0;
    for (long i = 0; i < n; i++) {
        char b[BOUNDARY_LEN + 1];
        make_boundary(b, (unsigned long)i);
        b[BOUNDARY_LEN] = '\0';
        int blen = snprintf(body, sizeof body,
                            "--faceswap-%s\r\nContent-Disposition: form-data; name=\"prompt\""
                            "\r\n\r\n" PROMPT "\r\n--faceswap-%s--\r\n", b, b);
        snprintf(ct, sizeof ct, "Content-Type: multipart/form-data; boundary=faceswap-%s", b);
        strcpy(hdrs->next->data, ct); /* the same length: rewritten in place */
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)blen);
        answer.len = 0;
        CURLcode res = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (res != CURLE_OK || status != 200) {
            fprintf(stderr, "request %ld: %s, HTTP %ld\n", i + 1, curl_easy_strerror(res), status);
            rc = 1;
            break;
        }
        lua_pushvalue(L, 1);
        lua_pushlstring(L, answer.p, answer.len);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            fprintf(stderr, "request %ld: %s\n", i + 1, lua_tostring(L, -1));
            rc = 1;
            break;
        }
        lua_getfield(L, -1, "jobid");
        if (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), EXPECTED) != 0) {
            fprintf(stderr, "request %ld: unexpected jobid\n", i + 1);
            rc = 1;
            break;
        }
        lua_settop(L, 1);
    }
    free(answer.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    lua_close(L);
    return rc;
}
