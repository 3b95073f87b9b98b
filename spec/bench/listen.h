/* listen.h: what the benchmark servers (server.c, hold.c) share: a non-blocking listening
 * socket on 127.0.0.1, its port printed on stdout for the script that started the server. */
#ifndef BENCH_LISTEN_H
#define BENCH_LISTEN_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Listens on 127.0.0.1:port (0: any free port) and prints the port it got. */
static int listen_loopback(const char *port, int backlog)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short)atoi(port));
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(ls, backlog) < 0)
        die("listen");
    socklen_t sl = sizeof sa;
    if (getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
        die("getsockname");
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    return ls;
}

#endif
