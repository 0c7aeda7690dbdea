/*
 * bench_link.c - one contender on a real kernel link: bench/link.sh runs the server in one
 * network namespace and the client in another, joined by a veth pair that tc (tbf) limits in
 * rate and iptables drops packets on at random.
 *
 *   bench_link TRANSPORT server BIND_IP PORT SECONDS
 *       serves one client; prints "READY" once bound. With SECONDS > 0 (a bulk run) it counts
 *       the bytes of data messages delivered in the SECONDS after the first one, prints
 *       "RESULT TRANSPORT goodput BYTES SECONDS" and exits; with 0 it serves until the client
 *       quits.
 *   bench_link TRANSPORT bulk SERVER_IP PORT SECONDS
 *       sends 16 KiB reliable messages for SECONDS, never more than LINK_WINDOW of them
 *       unacknowledged, so the transport's queue is always full.
 *   bench_link TRANSPORT burst SERVER_IP PORT COUNT LIMIT
 *       queues COUNT reliable 1 KiB messages at once and prints "RESULT TRANSPORT burst COUNT
 *       SECONDS ACKED": the time from the first send to the server's acknowledgement of the
 *       last (SECONDS is -1 when LIMIT seconds passed first; ACKED says how many got through).
 *
 * TRANSPORT: p2pnet (C API, UDP driver), enet (reliable packets on channel 0) or tcp-NAME,
 * kernel TCP with the congestion controller NAME (TCP_CONGESTION: cubic, bbr, reno...).
 *
 * The application protocol is bench_common.h's: 'D' data (bulk), 'M' data (burst), 'F' the last
 * data message, 'A' + u64 LE the server's cumulative count of data messages, 'Q' quit. The
 * server acknowledges every LINK_ACK_EVERY data messages and every 'F' at once.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <enet/enet.h>

#include "driver/udp.h"
#include "p2pnet.h"

#define LINK_BULK_SIZE 16384
#define LINK_BURST_SIZE 1024
/* Unacknowledged bulk messages at most: 4 MiB, many times the link's bandwidth-delay product
 * with a full queue, so only the transport limits the rate. */
#define LINK_WINDOW 256
#define LINK_ACK_EVERY 16
#define LINK_POLL_US 1000
/* The server gives up when no client came or the client went silent. */
#define LINK_SERVER_IDLE_S 60
/* A client lingers this long after its last message so that the quit gets through. */
#define LINK_LINGER_US 300000
#define LINK_FRAME_HDR 4 /* TCP: u32 LE length before each message */

/* ---- one connection, whatever the transport -------------------------------------------- */

typedef enum { T_P2PNET, T_ENET, T_TCP } transport;

typedef struct conn {
    transport t;
    const char *name;
    /* p2pnet */
    p2p_identity id;
    p2p_host *h;
    p2p_udp *u;
    p2p_peer_handle peer;
    /* enet */
    ENetHost *eh;
    ENetPeer *ep;
    /* tcp */
    int fd;
    uint8_t rbuf[2 * (LINK_BULK_SIZE + LINK_FRAME_HDR)];
    size_t rlen;
    int lost; /* the session ended */
} conn;

typedef void (*msg_fn)(void *arg, const uint8_t *msg, size_t len);

static void link_die(const conn *c, const char *what)
{
    fprintf(stderr, "bench_link %s: %s\n", c->name, what);
    exit(1);
}

static void p2pnet_open(conn *c, const char *bind_ip, unsigned port)
{
    char err[256];
    p2p_config cfg;
    if (p2p_init() != 0 || p2p_identity_generate(&c->id) != 0) link_die(c, "identity");
    p2p_config_init(&cfg);
    cfg.identity = &c->id;
    if (p2p_host_new(&c->h, &cfg, p2p_udp_now()) != 0) link_die(c, "host_new");
    if (p2p_udp_open(&c->u, bind_ip, (uint16_t)port, err, sizeof err) != 0) link_die(c, err);
}

static ENetHost *enet_open(conn *c, const char *bind_ip, unsigned port)
{
    ENetAddress a;
    ENetHost *h;
    if (bind_ip == NULL) return enet_host_create(NULL, 1, 1, 0, 0);
    enet_address_set_host_ip(&a, bind_ip);
    a.port = (enet_uint16)port;
    h = enet_host_create(&a, 1, 1, 0, 0);
    if (h == NULL) link_die(c, "enet_host_create");
    return h;
}

static void tcp_set_cc(conn *c, int fd, const char *cc)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) != 0)
        link_die(c, "TCP_CONGESTION: the kernel does not have that controller");
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void sockaddr_of(conn *c, const char *ip, unsigned port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) link_die(c, "bad IPv4 address");
}

/* Binds and waits for the one client. */
static void conn_accept(conn *c, const char *bind_ip, unsigned port)
{
    uint64_t deadline;
    if (c->t == T_P2PNET) {
        p2pnet_open(c, bind_ip, port);
        printf("READY\n");
        fflush(stdout);
        deadline = bench_now_us() + LINK_SERVER_IDLE_S * 1000000ull;
        for (;;) {
            p2p_event ev;
            if (p2p_udp_pump(c->u, c->h, 10000) < 0) link_die(c, "pump");
            while (p2p_host_next_event(c->h, &ev))
                if (ev.type == P2P_EV_JOIN) c->peer = ev.peer;
            if (c->peer != 0) return;
            if (bench_now_us() > deadline) link_die(c, "no client");
        }
    }
    if (c->t == T_ENET) {
        ENetEvent ev;
        c->eh = enet_open(c, bind_ip, port);
        printf("READY\n");
        fflush(stdout);
        deadline = bench_now_us() + LINK_SERVER_IDLE_S * 1000000ull;
        while (c->ep == NULL) {
            if (enet_host_service(c->eh, &ev, 10) > 0 && ev.type == ENET_EVENT_TYPE_CONNECT)
                c->ep = ev.peer;
            if (bench_now_us() > deadline) link_die(c, "no client");
        }
        return;
    }
    struct sockaddr_in sa;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_of(c, bind_ip, port, &sa);
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1) != 0)
        link_die(c, "tcp bind/listen");
    printf("READY\n");
    fflush(stdout);
    c->fd = accept(lfd, NULL, NULL);
    if (c->fd < 0) link_die(c, "accept");
    close(lfd);
}

static void conn_connect(conn *c, const char *ip, unsigned port, const char *cc)
{
    uint64_t deadline = bench_now_us() + 10000000;
    if (c->t == T_P2PNET) {
        p2p_addr a;
        char text[P2P_ADDR_TEXT_MAX];
        p2p_event ev;
        int joined = 0;
        p2pnet_open(c, NULL, 0);
        snprintf(text, sizeof text, "%s:%u", ip, port);
        if (p2p_addr_parse(&a, text) != 0) link_die(c, "address");
        if (p2p_host_connect(c->h, &a, NULL, p2p_udp_now(), &c->peer) != 0) link_die(c, "connect");
        p2p_udp_flush(c->u, c->h);
        while (!joined) {
            if (p2p_udp_pump(c->u, c->h, 10000) < 0) link_die(c, "pump");
            while (p2p_host_next_event(c->h, &ev)) {
                if (ev.type == P2P_EV_JOIN && ev.peer == c->peer) joined = 1;
                if (ev.type == P2P_EV_ERROR) link_die(c, "connect failed");
            }
            if (bench_now_us() > deadline) link_die(c, "connect timed out");
        }
        return;
    }
    if (c->t == T_ENET) {
        ENetAddress a;
        ENetEvent ev;
        c->eh = enet_open(c, NULL, 0);
        enet_address_set_host_ip(&a, ip);
        a.port = (enet_uint16)port;
        c->ep = enet_host_connect(c->eh, &a, 1, 0);
        if (c->ep == NULL) link_die(c, "enet_host_connect");
        for (;;) {
            if (enet_host_service(c->eh, &ev, 10) > 0 && ev.type == ENET_EVENT_TYPE_CONNECT) return;
            if (bench_now_us() > deadline) link_die(c, "connect timed out");
        }
    }
    struct sockaddr_in sa;
    sockaddr_of(c, ip, port, &sa);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) link_die(c, "socket");
    tcp_set_cc(c, c->fd, cc); /* before connect, so the handshake already uses it */
    while (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (bench_now_us() > deadline) link_die(c, "connect timed out");
        usleep(20000);
    }
}

/* Queues one reliable message. TCP writes it (blocking while the socket buffer is full). */
static void conn_send(conn *c, const uint8_t *msg, size_t len)
{
    if (c->lost) return;
    if (c->t == T_P2PNET) {
        int rc = p2p_peer_send(c->h, c->peer, 1, msg, len, 0, NULL, p2p_udp_now());
        if (rc != 0) link_die(c, p2p_strerror(rc));
        return;
    }
    if (c->t == T_ENET) {
        ENetPacket *p = enet_packet_create(msg, len, ENET_PACKET_FLAG_RELIABLE);
        if (p == NULL || enet_peer_send(c->ep, 0, p) != 0) link_die(c, "enet_peer_send");
        return;
    }
    uint8_t hdr[LINK_FRAME_HDR];
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)msg, len}};
    size_t done = 0, total = sizeof hdr + len, adv, k;
    bench_put_u16(hdr, (uint16_t)len);
    bench_put_u16(hdr + 2, (uint16_t)(len >> 16));
    while (done < total) {
        ssize_t w = writev(c->fd, iov, 2);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            c->lost = 1;
            return;
        }
        done += (size_t)w;
        adv = (size_t)w;
        for (int i = 0; i < 2; i++) {
            k = adv < iov[i].iov_len ? adv : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            adv -= k;
        }
    }
}

static void conn_flush(conn *c)
{
    if (c->t == T_P2PNET)
        p2p_udp_flush(c->u, c->h);
    else if (c->t == T_ENET)
        enet_host_flush(c->eh);
}

/* Waits up to timeout_us for the peer and hands each message that arrived to fn. */
static void conn_poll(conn *c, uint64_t timeout_us, msg_fn fn, void *arg)
{
    if (c->lost) return;
    if (c->t == T_P2PNET) {
        p2p_event ev;
        if (p2p_udp_pump(c->u, c->h, timeout_us) < 0) link_die(c, "pump");
        while (p2p_host_next_event(c->h, &ev)) {
            if (ev.type == P2P_EV_MESSAGE) fn(arg, ev.data, ev.len);
            if (ev.type == P2P_EV_LEAVE) c->lost = 1;
        }
        return;
    }
    if (c->t == T_ENET) {
        ENetEvent ev;
        int r = enet_host_service(c->eh, &ev, (enet_uint32)(timeout_us / 1000));
        while (r > 0) {
            if (ev.type == ENET_EVENT_TYPE_RECEIVE) {
                fn(arg, ev.packet->data, ev.packet->dataLength);
                enet_packet_destroy(ev.packet);
            } else if (ev.type == ENET_EVENT_TYPE_DISCONNECT) {
                c->lost = 1;
            }
            r = enet_host_check_events(c->eh, &ev);
        }
        return;
    }
    struct pollfd pfd = {c->fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(timeout_us / 1000)) <= 0) return;
    ssize_t got = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        c->lost = 1;
        return;
    }
    if (got > 0) c->rlen += (size_t)got;
    size_t pos = 0;
    while (c->rlen - pos >= LINK_FRAME_HDR) {
        const uint8_t *p = c->rbuf + pos;
        size_t n = (size_t)bench_get_u16(p) | (size_t)bench_get_u16(p + 2) << 16;
        if (n > LINK_BULK_SIZE) link_die(c, "oversized frame");
        if (c->rlen - pos < LINK_FRAME_HDR + n) break;
        fn(arg, p + LINK_FRAME_HDR, n);
        pos += LINK_FRAME_HDR + n;
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
}

/* With BENCH_VERBOSE set, p2pnet's view of the run on stderr: the smoothed RTT (queueing
 * included) and what was resent. */
static void conn_report(conn *c, const char *role)
{
    p2p_peer_info info;
    p2p_stats hs;
    if (c->t != T_P2PNET || getenv("BENCH_VERBOSE") == NULL) return;
    memset(&info, 0, sizeof info);
    p2p_host_peer_info(c->h, c->peer, &info);
    p2p_host_stats(c->h, &hs);
    fprintf(stderr, "bench_link p2pnet %s: srtt %llu us, packets sent %llu, retransmits %llu\n",
            role, (unsigned long long)info.srtt_us, (unsigned long long)hs.packets_sent,
            (unsigned long long)hs.retransmits);
}

/* Lets queued messages (the quit) reach the peer before the process ends. */
static void conn_linger(conn *c, msg_fn fn, void *arg)
{
    uint64_t until = bench_now_us() + LINK_LINGER_US;
    while (c->t != T_TCP && !c->lost && bench_now_us() < until) conn_poll(c, 10000, fn, arg);
    if (c->t == T_ENET) enet_peer_disconnect_later(c->ep, 0);
    if (c->t == T_TCP) shutdown(c->fd, SHUT_WR);
}

/* ---- server ----------------------------------------------------------------------------- */

typedef struct server_state {
    conn *c;
    uint64_t count, bytes, first_us, window_us;
    int quit, reported;
} server_state;

static void server_report(server_state *s)
{
    if (s->reported) return;
    s->reported = 1;
    printf("RESULT %s goodput %llu %.3f\n", s->c->name, (unsigned long long)s->bytes,
           (double)s->window_us / 1e6);
    fflush(stdout);
}

static void server_on_msg(void *arg, const uint8_t *msg, size_t len)
{
    server_state *s = arg;
    uint8_t ack[BENCH_ACK_LEN];
    uint64_t now;
    if (len == 0) return;
    if (msg[0] == 'Q') {
        s->quit = 1;
        return;
    }
    if (msg[0] != 'D' && msg[0] != 'M' && msg[0] != 'F') return;
    now = bench_now_us();
    if (s->first_us == 0) s->first_us = now;
    s->count++;
    if (s->window_us == 0 || now - s->first_us <= s->window_us) s->bytes += len;
    if (msg[0] == 'F' || s->count % LINK_ACK_EVERY == 0) {
        memset(ack, 0, sizeof ack);
        ack[0] = 'A';
        bench_put_u64(ack + 1, s->count);
        conn_send(s->c, ack, sizeof ack);
    }
}

static int server(conn *c, const char *bind_ip, unsigned port, double seconds)
{
    server_state s = {c, 0, 0, 0, (uint64_t)(seconds * 1e6), 0, 0};
    uint64_t idle_deadline;
    conn_accept(c, bind_ip, port);
    idle_deadline = bench_now_us() + LINK_SERVER_IDLE_S * 1000000ull;
    while (!s.quit && !c->lost) {
        conn_poll(c, LINK_POLL_US, server_on_msg, &s);
        conn_flush(c);
        if (s.window_us > 0 && s.first_us > 0 && bench_now_us() - s.first_us >= s.window_us) {
            server_report(&s);
            return 0;
        }
        if (bench_now_us() > idle_deadline) link_die(c, "client too slow or gone");
    }
    if (s.window_us > 0) server_report(&s); /* the client quit early: what came so far */
    return 0;
}

/* ---- client ----------------------------------------------------------------------------- */

typedef struct client_state {
    uint64_t acked;
} client_state;

static void client_on_msg(void *arg, const uint8_t *msg, size_t len)
{
    client_state *s = arg;
    if (len >= 9 && msg[0] == 'A') {
        uint64_t a = bench_get_u64(msg + 1);
        if (a > s->acked) s->acked = a;
    }
}

static int client_bulk(conn *c, double seconds)
{
    static uint8_t msg[LINK_BULK_SIZE];
    client_state s = {0};
    uint64_t sent = 0, end = bench_now_us() + (uint64_t)(seconds * 1e6);
    memset(msg, 0xab, sizeof msg);
    msg[0] = 'D';
    while (!c->lost && bench_now_us() < end) {
        int queued = 0;
        while (sent - s.acked < LINK_WINDOW && !c->lost) {
            conn_send(c, msg, sizeof msg);
            sent++;
            queued = 1;
        }
        if (queued) conn_flush(c);
        conn_poll(c, LINK_POLL_US, client_on_msg, &s);
    }
    conn_report(c, "bulk sender");
    msg[0] = 'Q';
    conn_send(c, msg, 1);
    conn_flush(c);
    conn_linger(c, client_on_msg, &s);
    return 0;
}

static int client_burst(conn *c, int count, double limit)
{
    static uint8_t msg[LINK_BURST_SIZE];
    client_state s = {0};
    uint64_t start = bench_now_us(), end = start + (uint64_t)(limit * 1e6), took = 0;
    memset(msg, 0xcd, sizeof msg);
    for (int i = 0; i < count; i++) {
        msg[0] = i == count - 1 ? 'F' : 'M';
        conn_send(c, msg, sizeof msg);
    }
    conn_flush(c);
    while (!c->lost && s.acked < (uint64_t)count && bench_now_us() < end)
        conn_poll(c, LINK_POLL_US, client_on_msg, &s);
    if (s.acked >= (uint64_t)count) took = bench_now_us() - start;
    printf("RESULT %s burst %d %.3f %llu\n", c->name, count, took ? (double)took / 1e6 : -1.0,
           (unsigned long long)s.acked);
    fflush(stdout);
    conn_report(c, "burst sender");
    msg[0] = 'Q';
    conn_send(c, msg, 1);
    conn_flush(c);
    conn_linger(c, client_on_msg, &s);
    return 0;
}

int main(int argc, char **argv)
{
    static conn c;
    const char *cc = NULL;
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s p2pnet|enet|tcp-CC server BIND_IP PORT SECONDS\n"
                "       %s TRANSPORT bulk SERVER_IP PORT SECONDS\n"
                "       %s TRANSPORT burst SERVER_IP PORT COUNT LIMIT_SECONDS\n",
                argv[0], argv[0], argv[0]);
        return 2;
    }
    c.name = argv[1];
    c.fd = -1;
    /* A TCP peer that closed first shows as a failed write, not as a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[1], "p2pnet") == 0) {
        c.t = T_P2PNET;
    } else if (strcmp(argv[1], "enet") == 0) {
        c.t = T_ENET;
        if (enet_initialize() != 0) link_die(&c, "enet_initialize");
        atexit(enet_deinitialize);
    } else if (strncmp(argv[1], "tcp-", 4) == 0) {
        c.t = T_TCP;
        cc = argv[1] + 4;
    } else {
        fprintf(stderr, "bench_link: unknown transport %s\n", argv[1]);
        return 2;
    }
    unsigned port = (unsigned)atoi(argv[4]);
    if (strcmp(argv[2], "server") == 0) return server(&c, argv[3], port, atof(argv[5]));
    conn_connect(&c, argv[3], port, cc);
    if (strcmp(argv[2], "bulk") == 0) return client_bulk(&c, atof(argv[5]));
    if (strcmp(argv[2], "burst") == 0 && argc >= 7)
        return client_burst(&c, atoi(argv[5]), atof(argv[6]));
    fprintf(stderr, "bench_link: unknown role %s\n", argv[2]);
    return 2;
}
