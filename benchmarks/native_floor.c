/* The native floor: what a load generator reaches against a server that costs next to nothing.

     cc -O2 -o native_floor benchmarks/native_floor.c && ./native_floor [PORT]   # prints addr

   benchmarks/floor.py is the floor for a Python server; this is the floor for any server. One
   epoll thread plays name server and broker on one port, as floor.py does: every topic routes
   to it with 8 queues, every send is appended to a file with one write() and acknowledged,
   every other request is answered with SUCCESS. A client's rate against it is that client's
   own ceiling on this machine (the client and this server share the cores), which is how
   run.py tells a slow broker from a slow load generator. JSON headers only: the clients run
   against it (the C++ client 1.x, rmqctl bench) speak JSON.
   Nothing here is project code: it exists to be measured against. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_CONN = 4096, OUT_CAP = 1 << 20 };

typedef struct {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len;
} conn_t;

static conn_t *conns[MAX_CONN];
static int data_fd;
static int port;
static unsigned long offsets[8];

/* The integer after "key": in a JSON header, or -1. Good enough for headers clients write. */
static long json_long(const char *h, size_t n, const char *key) {
    char pat[64];
    int len = snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = memmem(h, n, pat, (size_t)len);
    if (!p) return -1;
    p += len;
    while (*p == ' ' || *p == '"') p++;
    return strtol(p, NULL, 10);
}

static void reply(conn_t *c, long opaque, const char *ext, const char *body, size_t body_len) {
    char header[512];
    int hl = snprintf(header, sizeof header,
                      "{\"code\":0,%s\"flag\":1,\"language\":\"JAVA\",\"opaque\":%ld,"
                      "\"serializeTypeCurrentRPC\":\"JSON\",\"version\":395}", ext, opaque);
    size_t total = 4 + (size_t)hl + body_len;
    if (c->out_len + 4 + total > OUT_CAP) return; /* a client this far behind is not measured */
    unsigned char *o = (unsigned char *)c->out + c->out_len;
    uint32_t be_total = htonl((uint32_t)total), be_hl = htonl((uint32_t)hl);
    memcpy(o, &be_total, 4);
    memcpy(o + 4, &be_hl, 4);
    memcpy(o + 8, header, (size_t)hl);
    memcpy(o + 8 + hl, body, body_len);
    c->out_len += 4 + total;
}

static void handle(conn_t *c, const char *frame, size_t total) {
    uint32_t hl_raw;
    memcpy(&hl_raw, frame, 4);
    size_t hl = ntohl(hl_raw) & 0xFFFFFF;
    if (hl + 4 > total) return;
    const char *h = frame + 4, *body = h + hl;
    size_t body_len = total - 4 - hl;
    long code = json_long(h, hl, "code"), opaque = json_long(h, hl, "opaque");
    if (code == 105) { /* GET_ROUTEINFO_BY_TOPIC: unquoted broker id, as old clients expect */
        char route[512];
        int rl = snprintf(route, sizeof route,
                          "{\"brokerDatas\":[{\"brokerAddrs\":{0:\"127.0.0.1:%d\"},"
                          "\"brokerName\":\"floor\",\"cluster\":\"FloorCluster\"}],"
                          "\"filterServerTable\":{},\"queueDatas\":[{\"brokerName\":\"floor\","
                          "\"perm\":6,\"readQueueNums\":8,\"topicSysFlag\":0,"
                          "\"writeQueueNums\":8}]}", port);
        reply(c, opaque, "", route, (size_t)rl);
    } else if (code == 10 || code == 310 || code == 320) { /* SEND_MESSAGE (V2), batch */
        long q = json_long(h, hl, code == 10 ? "queueId" : "e");
        q = q < 0 ? 0 : q & 7;
        if (write(data_fd, body, body_len) < 0) perror("write");
        char ext[160];
        snprintf(ext, sizeof ext, "\"extFields\":{\"msgId\":\"%032d\",\"queueId\":\"%ld\","
                 "\"queueOffset\":\"%lu\"},", 0, q, offsets[q]++);
        reply(c, opaque, ext, "", 0);
    } else {
        reply(c, opaque, "", "", 0);
    }
}

static void drop(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->in);
    free(c->out);
    free(c);
}

static void readable(int ep, conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap *= 2;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { drop(ep, c); return; }
        if (n < 0) break;
        c->in_len += (size_t)n;
    }
    size_t pos = 0;
    while (c->in_len - pos >= 4) {
        uint32_t be;
        memcpy(&be, c->in + pos, 4);
        size_t total = ntohl(be);
        if (c->in_len - pos - 4 < total) break;
        handle(c, c->in + pos + 4, total);
        pos += 4 + total;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    /* One write for every answer this wakeup produced; a loopback socket takes it whole. */
    size_t sent = 0;
    while (sent < c->out_len) {
        ssize_t n = write(c->fd, c->out + sent, c->out_len - sent);
        if (n < 0) { if (errno == EINTR) continue; drop(ep, c); return; }
        sent += (size_t)n;
    }
    c->out_len = 0;
}

int main(int argc, char **argv) {
    port = argc > 1 ? atoi(argv[1]) : 0;
    char path[] = "/tmp/native-floor-XXXXXX";
    data_fd = mkstemp(path);
    unlink(path);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 512)) { perror("listen"); return 1; }
    getsockname(ls, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    printf("floor.started addr=127.0.0.1:%d\n", port);
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                if (cfd < 0 || cfd >= MAX_CONN) { if (cfd >= 0) close(cfd); continue; }
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn_t *c = calloc(1, sizeof *c);
                c->fd = cfd;
                c->in_cap = 1 << 17;
                c->in = malloc(c->in_cap);
                c->out = malloc(OUT_CAP);
                conns[cfd] = c;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
            } else if (conns[fd]) {
                readable(ep, conns[fd]);
            }
        }
    }
}
