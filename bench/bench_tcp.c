/*
 * bench_tcp.c - the kernel TCP contender: one connection with TCP_NODELAY, each message a u32
 * little-endian length then the bytes, one writev per message. See bench_common.h.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Buffered reader of length-prefixed messages. */
typedef struct reader {
    int fd;
    uint8_t buf[2 * (BENCH_MAX_SIZE + 4)];
    size_t start, end;
} reader;

/* Returns the next message (valid until the next call) or NULL on EOF/error. */
static const uint8_t *read_msg(reader *r, size_t *len)
{
    for (;;) {
        size_t have = r->end - r->start;
        if (have >= 4) {
            const uint8_t *p = r->buf + r->start;
            uint32_t n =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            if (n > BENCH_MAX_SIZE) bench_die("tcp: oversized message");
            if (have >= 4 + (size_t)n) {
                r->start += 4 + n;
                *len = n;
                return p + 4;
            }
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, have);
            r->start = 0;
            r->end = have;
        }
        ssize_t got = read(r->fd, r->buf + r->end, sizeof r->buf - r->end);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return NULL;
        r->end += (size_t)got;
    }
}

/* 1 when a whole message is buffered, so read_msg will not block. */
static int msg_buffered(const reader *r)
{
    size_t have = r->end - r->start;
    if (have < 4) return 0;
    const uint8_t *p = r->buf + r->start;
    uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return have >= 4 + (size_t)n;
}

static void write_msg(int fd, const uint8_t *msg, size_t len)
{
    uint8_t hdr[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 24)};
    struct iovec iov[2] = {{hdr, 4}, {(void *)msg, len}};
    size_t total = 4 + len, done = 0;
    while (done < total) {
        ssize_t w = writev(fd, iov, 2);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) bench_die("tcp: write failed");
        done += (size_t)w;
        /* advance the iovecs past what was written */
        size_t adv = (size_t)w;
        for (int i = 0; i < 2; i++) {
            size_t k = adv < iov[i].iov_len ? adv : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            adv -= k;
        }
    }
}

/* Messages queued by the sender and written together: what ENet's and p2pnet's queue-then-flush
 * does, so TCP is not charged one system call per message. */
typedef struct batch {
    uint8_t buf[256 * 1024];
    size_t len;
} batch;

static void batch_flush(int fd, batch *b)
{
    size_t done = 0;
    while (done < b->len) {
        ssize_t w = write(fd, b->buf + done, b->len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) bench_die("tcp: write failed");
        done += (size_t)w;
    }
    b->len = 0;
}

static void batch_add(int fd, batch *b, const uint8_t *msg, size_t len)
{
    if (b->len + 4 + len > sizeof b->buf) batch_flush(fd, b);
    if (4 + len > sizeof b->buf) {
        write_msg(fd, msg, len);
        return;
    }
    uint8_t *p = b->buf + b->len;
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 24);
    memcpy(p + 4, msg, len);
    b->len += 4 + len;
}

static void nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        bench_die("tcp: TCP_NODELAY");
}

static int server(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("tcp: cannot listen");
    printf("PORT %u\n", ntohs(sa.sin_port));
    fflush(stdout);
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) bench_die("tcp: accept");
    nodelay(fd);
    static reader r;
    r.fd = fd;
    static uint8_t out[BENCH_MAX_SIZE];
    bench_server s = {0};
    size_t len;
    const uint8_t *m;
    while ((m = read_msg(&r, &len)) != NULL) {
        long n = bench_server_handle(&s, m, len, out);
        if (n < 0) break;
        if (n > 0) write_msg(fd, out, (size_t)n);
    }
    close(fd);
    close(ls);
    return 0;
}

typedef struct tcp_client {
    reader r;
    batch out;
} tcp_client;

static void tcp_send(void *ctx, const uint8_t *msg, size_t len)
{
    tcp_client *cl = ctx;
    batch_add(cl->r.fd, &cl->out, msg, len);
}

static void tcp_flush(void *ctx)
{
    tcp_client *cl = ctx;
    batch_flush(cl->r.fd, &cl->out);
}

/* Blocks for the next message, then takes those already buffered. */
static void tcp_poll(void *ctx, bench_msg_fn fn, void *arg)
{
    tcp_client *cl = ctx;
    size_t len;
    const uint8_t *m = read_msg(&cl->r, &len);
    if (m == NULL) bench_die("tcp: connection lost");
    fn(arg, m, len);
    while (msg_buffered(&cl->r)) {
        m = read_msg(&cl->r, &len);
        fn(arg, m, len);
    }
}

static const bench_ops tcp_ops = {"tcp", tcp_send, tcp_flush, tcp_poll};

static int client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) bench_die("tcp: connect");
    nodelay(fd);
    static tcp_client cl;
    cl.r.fd = fd;
    bench_client_run(&tcp_ops, &cl);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "server") == 0) return server();
    if (argc >= 3 && strcmp(argv[1], "client") == 0) return client(atoi(argv[2]));
    fprintf(stderr, "usage: %s server | client <port>\n", argv[0]);
    return 2;
}
