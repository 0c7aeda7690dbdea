/* test_udp.c - the UDP driver: sockets, addresses, resolution, and two real hosts talking
 * over loopback, including with a send path that reports a full buffer or refusals, and with
 * segmentation offload (GSO/GRO) on, off, and refused by the kernel. */
#define _GNU_SOURCE /* sendmmsg, recvmmsg, RTLD_NEXT */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver/udp.h"
#include "p2pnet.h"
#include "t.h"
#include "tnet.h"

/* ---- send-path fault injection ----------------------------------------------------------
 * This program's own sendmmsg() takes precedence over libc's for the driver linked into it,
 * so the tests can make the kernel look full (EAGAIN) or hostile (ECONNREFUSED) on demand. */

static int inject_eagain_every;  /* 0: off; n: every nth call fails with EAGAIN */
static int inject_refused_every; /* 0: off; n: every nth call fails with ECONNREFUSED */
static unsigned long inject_calls, injected_eagain, injected_refused;
/* Segmented sends (a first entry with a UDP_SEGMENT message) fail with inject_gso_errno, at
 * most inject_gso_left times, as a kernel or device that cannot segment would refuse them. */
static int inject_gso_errno, inject_gso_left;
static unsigned long injected_gso;

/* The datagrams one socket handed to the kernel (record_send_fd) and the datagrams another
 * took from it (record_recv_fd), each as its length and a hash of its bytes, in order. */
#define RECORD_MAX 20000
struct dgram_record {
    size_t n;
    uint32_t len[RECORD_MAX];
    uint64_t hash[RECORD_MAX];
};
static int record_send_fd = -1, record_recv_fd = -1;
static struct dgram_record rec_sent, rec_recv;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    while (n--) h = (h ^ *p++) * 1099511628211ull;
    return h;
}

static void record(struct dgram_record *r, const void *p, size_t len)
{
    if (r->n >= RECORD_MAX) return;
    r->len[r->n] = (uint32_t)len;
    r->hash[r->n] = fnv1a(p, len);
    r->n++;
}

static int has_segment_cmsg(struct msghdr *mh)
{
    struct cmsghdr *cm;
    for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm))
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_SEGMENT) return 1;
    return 0;
}

/* The plain POSIX driver (a build without sendmmsg, mk/port.mk PORT_PROBES=0) sends with
 * sendto: the same faults for it. */
ssize_t sendto(int fd, const void *buf, size_t len, int flags, __CONST_SOCKADDR_ARG sa,
               socklen_t salen)
{
    static ssize_t (*real)(int, const void *, size_t, int, __CONST_SOCKADDR_ARG, socklen_t);
    ssize_t r;

    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "sendto");
        if (real == NULL) abort();
    }
    inject_calls++;
    if (inject_eagain_every > 0 && inject_calls % (unsigned long)inject_eagain_every == 0) {
        injected_eagain++;
        errno = EAGAIN;
        return -1;
    }
    if (inject_refused_every > 0 && inject_calls % (unsigned long)inject_refused_every == 0) {
        injected_refused++;
        errno = ECONNREFUSED;
        return -1;
    }
    r = real(fd, buf, len, flags, sa, salen);
    if (fd == record_send_fd && r >= 0) record(&rec_sent, buf, len);
    return r;
}

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int);
    int r, i;
    size_t k;

    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "sendmmsg");
        if (real == NULL) abort();
    }
    inject_calls++;
    if (inject_eagain_every > 0 && inject_calls % (unsigned long)inject_eagain_every == 0) {
        injected_eagain++;
        errno = EAGAIN;
        return -1;
    }
    if (inject_refused_every > 0 && inject_calls % (unsigned long)inject_refused_every == 0) {
        injected_refused++;
        errno = ECONNREFUSED;
        return -1;
    }
    if (inject_gso_left > 0 && n > 0 && has_segment_cmsg(&msgs[0].msg_hdr)) {
        inject_gso_left--;
        injected_gso++;
        errno = inject_gso_errno;
        return -1;
    }
    r = real(fd, msgs, n, flags);
    /* Every iovec entry the driver builds is one datagram; the kernel cuts a segmented send
     * at exactly those boundaries. */
    if (fd == record_send_fd)
        for (i = 0; i < r; i++)
            for (k = 0; k < msgs[i].msg_hdr.msg_iovlen; k++)
                record(&rec_sent, msgs[i].msg_hdr.msg_iov[k].iov_base,
                       msgs[i].msg_hdr.msg_iov[k].iov_len);
    return r;
}

/* Records what a socket without GRO receives: one datagram per entry. */
int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags, struct timespec *timeout)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
    int r, i;

    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "recvmmsg");
        if (real == NULL) abort();
    }
    r = real(fd, msgs, n, flags, timeout);
    if (fd == record_recv_fd)
        for (i = 0; i < r; i++)
            record(&rec_recv, msgs[i].msg_hdr.msg_iov[0].iov_base, msgs[i].msg_len);
    return r;
}

/* ---- sockets and addresses ------------------------------------------------------------ */

/* What this build of the driver has. P2P_UDP_EXPECT_FEATURES (a number) states it for a
 * build made to lack features (mk/port.mk PORT_PROBES=0); else a Linux build must have the
 * batched calls, offload and PMTU probing. */
static void test_features(void)
{
    const char *want = getenv("P2P_UDP_EXPECT_FEATURES");
    int f = p2p_udp_features();

    if (want != NULL) {
        T_EQ_INT(f, atoi(want));
        return;
    }
#ifdef __linux__
    T_EQ_INT(f & (P2P_UDP_MMSG | P2P_UDP_GSO | P2P_UDP_GRO | P2P_UDP_PMTU_PROBE),
             P2P_UDP_MMSG | P2P_UDP_GSO | P2P_UDP_GRO | P2P_UDP_PMTU_PROBE);
#endif
}

/* Offload tests need offload compiled in. */
static int have_offload(int flags)
{
    if ((p2p_udp_features() & flags) == flags) return 1;
    fprintf(stderr, "  skipped: this build has no segmentation offload\n");
    return 0;
}

static void test_open_local(void)
{
    p2p_udp *a = NULL, *b = NULL;
    p2p_addr la, lb;
    char err[128];
    int flags;

    T_EQ_INT(p2p_udp_open(&a, "127.0.0.1", 0, err, sizeof err), 0);
    T_EQ_INT(p2p_udp_open(&b, "127.0.0.1", 0, err, sizeof err), 0);
    if (a == NULL || b == NULL) return;
    p2p_udp_local(a, &la);
    p2p_udp_local(b, &lb);
    T_EQ_INT(la.family, P2P_AF_INET4);
    T_EQ_INT(la.ip[0], 127);
    T_EQ_INT(la.ip[1], 0);
    T_EQ_INT(la.ip[2], 0);
    T_EQ_INT(la.ip[3], 1);
    T_CHECK(la.port != 0);
    T_CHECK(lb.port != 0);
    T_CHECK(la.port != lb.port);

    T_CHECK(p2p_udp_socket(a) >= 0);
    flags = fcntl(p2p_udp_socket(a), F_GETFD);
    T_CHECK(flags >= 0 && (flags & FD_CLOEXEC));
    flags = fcntl(p2p_udp_socket(a), F_GETFL);
    T_CHECK(flags >= 0 && (flags & O_NONBLOCK));
    p2p_udp_close(a);
    p2p_udp_close(b);
    p2p_udp_close(NULL);
}

static void test_default_and_localhost(void)
{
    p2p_udp *u = NULL;
    p2p_addr l;
    char err[128];

    T_EQ_INT(p2p_udp_open(&u, NULL, 0, err, sizeof err), 0);
    if (u != NULL) {
        p2p_udp_local(u, &l);
        T_EQ_INT(l.family, P2P_AF_INET4);
        T_EQ_INT(l.ip[0], 0);
        T_CHECK(l.port != 0);
        p2p_udp_close(u);
    }
    T_EQ_INT(p2p_udp_open(&u, "localhost", 0, err, sizeof err), 0);
    if (u != NULL) {
        p2p_udp_local(u, &l);
        T_EQ_INT(l.family, P2P_AF_INET4);
        T_EQ_INT(l.ip[0], 127);
        T_EQ_INT(l.ip[3], 1);
        p2p_udp_close(u);
    }
}

static void test_dual_stack_open(void)
{
    static const uint8_t any6[16];
    p2p_udp *u = NULL;
    p2p_addr l;
    char err[128];
    int v6only = 1;
    socklen_t len = sizeof v6only;

    T_EQ_INT(p2p_udp_open(&u, "::", 0, err, sizeof err), 0);
    if (u == NULL) return;
    p2p_udp_local(u, &l);
    T_EQ_INT(l.family, P2P_AF_INET6);
    T_EQ_MEM(l.ip, any6, 16);
    T_CHECK(l.port != 0);
    T_EQ_INT(getsockopt(p2p_udp_socket(u), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
    T_EQ_INT(v6only, 0);
    p2p_udp_close(u);
}

static void test_port_in_use(void)
{
    p2p_udp *a = NULL, *b = (p2p_udp *)&b;
    p2p_addr la;
    char err[128], want[64];

    T_EQ_INT(p2p_udp_open(&a, "127.0.0.1", 0, err, sizeof err), 0);
    if (a == NULL) return;
    p2p_udp_local(a, &la);
    T_EQ_INT(p2p_udp_open(&b, "127.0.0.1", la.port, err, sizeof err), P2P_ERR_IO);
    T_CHECK(b == NULL);
    snprintf(want, sizeof want, "bind 127.0.0.1:%u: ", (unsigned)la.port);
    T_CHECK(strncmp(err, want, strlen(want)) == 0);
    T_CHECK(strstr(err, strerror(EADDRINUSE)) != NULL);
    /* No room for the message is not a reason to crash. */
    T_EQ_INT(p2p_udp_open(&b, "127.0.0.1", la.port, NULL, 0), P2P_ERR_IO);
    T_EQ_INT(p2p_udp_open(&b, "127.0.0.1", la.port, err, 8), P2P_ERR_IO);
    T_EQ_INT(strlen(err), 7);
    p2p_udp_close(a);
}

static void test_bad_host(void)
{
    static const char *bad[] = {
        "not-an-ip", "1.2.3",     "300.1.1.1",  "1.2.3.4.5",   "01.2.3.4", "::g",        "[::1",
        "::1]",      "1.2.3.4:5", "localhostx", "example.com", "[::1]:5",  " 127.0.0.1",
    };
    size_t i;
    p2p_udp *u;
    char err[128];

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        u = (p2p_udp *)&u;
        err[0] = '\0';
        if (p2p_udp_open(&u, bad[i], 0, err, sizeof err) != P2P_ERR_ADDRESS) {
            fprintf(stderr, "  bind host \"%s\" was not rejected\n", bad[i]);
            T_CHECK(0);
            if (u != NULL && u != (p2p_udp *)&u) p2p_udp_close(u);
            continue;
        }
        T_CHECK(u == NULL);
        T_CHECK(strstr(err, bad[i]) != NULL);
    }
}

static void test_resolve(void)
{
    p2p_udp *u4 = NULL, *u6 = NULL;
    p2p_addr a;
    uint8_t loop6[16] = {0};
    char err[128];
    static const char *bad[] = {
        "localhost",    "localhost:", "localhost:65536", "localhost:x", "localhost:-1",
        "localhost:01", ":5",         "::1:5",           "127.1:5",     "010.0.0.1:5",
        "0x7f.0.0.1:5", "1.2.3:5",    "[localhost]:5",   "[::1]",       "",
        "localhost:5 ",
    };
    size_t i;

    loop6[15] = 1;
    T_EQ_INT(p2p_udp_open(&u4, "127.0.0.1", 0, err, sizeof err), 0);
    T_EQ_INT(p2p_udp_open(&u6, "::", 0, err, sizeof err), 0);
    if (u4 == NULL || u6 == NULL) goto out;

    T_EQ_INT(p2p_udp_resolve(u4, "localhost:1234", &a), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.ip[0], 127);
    T_EQ_INT(a.ip[3], 1);
    T_EQ_INT(a.port, 1234);
    T_EQ_INT(p2p_udp_resolve(u6, "localhost:1234", &a), 0);
    T_EQ_INT(a.port, 1234);
    T_CHECK(a.family == P2P_AF_INET4 || a.family == P2P_AF_INET6);
    T_EQ_INT(p2p_udp_resolve(NULL, "localhost:0", &a), 0);
    T_EQ_INT(a.port, 0);

    T_EQ_INT(p2p_udp_resolve(u4, "127.0.0.1:7000", &a), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.port, 7000);
    T_EQ_INT(p2p_udp_resolve(u4, "[::ffff:127.0.0.1]:7", &a), 0);
    T_EQ_INT(a.family, P2P_AF_INET4);
    T_EQ_INT(a.ip[0], 127);

    /* An IPv4 socket cannot reach an IPv6 address; a dual-stack one can. */
    T_EQ_INT(p2p_udp_resolve(u4, "[::1]:7000", &a), P2P_ERR_ADDRESS);
    T_EQ_INT(p2p_udp_resolve(u6, "[::1]:7000", &a), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_MEM(a.ip, loop6, 16);
    T_EQ_INT(a.port, 7000);

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&a, 0x5a, sizeof a);
        if (p2p_udp_resolve(u6, bad[i], &a) != P2P_ERR_ADDRESS) {
            fprintf(stderr, "  resolved bad text \"%s\"\n", bad[i]);
            T_CHECK(0);
        }
        T_EQ_INT(a.family, 0x5a);
    }
    T_EQ_INT(p2p_udp_resolve(u4, NULL, &a), P2P_ERR_ADDRESS);
out:
    p2p_udp_close(u4);
    p2p_udp_close(u6);
}

static void test_clock(void)
{
    uint64_t t0 = p2p_udp_now(), t1;

    usleep(20000);
    t1 = p2p_udp_now();
    T_CHECK(t1 >= t0 + 20000);
    T_CHECK(t1 < t0 + 2000000);
}

/* ---- two hosts over loopback ---------------------------------------------------------- */

#define NMSG 1000

struct node {
    p2p_identity id;
    p2p_host *h;
    p2p_udp *u;
    p2p_addr addr;
    p2p_peer_handle peer;
    int joined, errors;
    uint32_t next; /* next message index expected */
    int bad;       /* out of order, duplicated or corrupted messages */
};

/* Message i: 4 to 3003 bytes (some span several packets), its index first. */
static const tnet_msgs msgs = {4, 37, 3000, 7, 1};

static void node_drain(struct node *n)
{
    p2p_event ev;
    uint8_t want[4096];
    uint32_t idx;

    while (p2p_host_next_event(n->h, &ev)) {
        if (ev.type == P2P_EV_JOIN) {
            n->joined = 1;
            n->peer = ev.peer;
        } else if (ev.type == P2P_EV_ERROR) {
            n->errors++;
            fprintf(stderr, "  error event: %.*s\n", (int)ev.len, (const char *)ev.data);
        } else if (ev.type == P2P_EV_MESSAGE) {
            if (ev.len < 4) {
                n->bad++;
                continue;
            }
            idx = tnet_msg_index(ev.data);
            tnet_msg_fill(&msgs, want, idx);
            if (idx != n->next || ev.msg_type != 7 || ev.len != tnet_msg_len(&msgs, idx) ||
                memcmp(ev.data, want, ev.len) != 0)
                n->bad++;
            n->next = idx + 1;
        }
    }
}

static int node_open(struct node *n, const char *bind_host, uint8_t seed_byte)
{
    p2p_config cfg;
    uint8_t seed[P2P_SEED_LEN];
    char err[128];

    memset(n, 0, sizeof *n);
    memset(seed, seed_byte, sizeof seed);
    if (p2p_identity_from_seed(&n->id, seed) != 0) return -1;
    p2p_config_init(&cfg);
    cfg.identity = &n->id;
    if (p2p_host_new(&n->h, &cfg, p2p_udp_now()) != 0) return -1;
    if (p2p_udp_open(&n->u, bind_host, 0, err, sizeof err) != 0) {
        fprintf(stderr, "  open %s: %s\n", bind_host, err);
        return -1;
    }
    p2p_udp_local(n->u, &n->addr);
    return 0;
}

static void node_close(struct node *n)
{
    p2p_host_free(n->h);
    p2p_udp_close(n->u);
    p2p_identity_wipe(&n->id);
}

/* Pumps both nodes (never blocking long) until done() or the deadline. */
static int pump_until(struct node *a, struct node *b, int (*done)(struct node *, struct node *),
                      uint64_t limit_us)
{
    uint64_t end = p2p_udp_now() + limit_us;

    while (!done(a, b) && p2p_udp_now() < end) {
        if (p2p_udp_pump(a->u, a->h, 1000) < 0 || p2p_udp_pump(b->u, b->h, 1000) < 0) return -1;
        node_drain(a);
        node_drain(b);
    }
    return done(a, b) ? 0 : -1;
}

static int both_joined(struct node *a, struct node *b)
{
    return a->joined && b->joined;
}

static int all_received(struct node *a, struct node *b)
{
    (void)a;
    return b->next >= NMSG || b->bad > 0;
}

/* Offload for the next exchange: -1 leaves a socket as it opened, 0/1 sets GSO on a (the
 * sender) and GRO on b (the receiver), with the other direction left as it opened. After the
 * exchange, each side's driver and host counters. */
static int xo_a_gso = -1, xo_b_gro = -1, xo_record;
static p2p_udp_stats xs_a, xs_b;
static p2p_stats xh_a, xh_b;

/* a connects to b (at b_target, which may differ from b's bind address) and sends NMSG
 * messages; b must see each once, in order, intact. */
static void exchange(const char *a_host, const char *b_host, const char *b_target_host)
{
    struct node a, b;
    p2p_addr target;
    p2p_peer_info info;
    uint8_t buf[4096];
    uint32_t i;
    char text[80];
    int r;

    if (node_open(&a, a_host, 1) != 0 || node_open(&b, b_host, 2) != 0) {
        T_CHECK(0);
        return;
    }
    if (xo_a_gso >= 0) (void)p2p_udp_set_offload(a.u, xo_a_gso, 1);
    if (xo_b_gro >= 0) (void)p2p_udp_set_offload(b.u, 1, xo_b_gro);
    if (xo_record) {
        memset(&rec_sent, 0, sizeof rec_sent);
        memset(&rec_recv, 0, sizeof rec_recv);
        record_send_fd = p2p_udp_socket(a.u);
        record_recv_fd = p2p_udp_socket(b.u);
    }
    snprintf(text, sizeof text, "%s:%u", b_target_host, (unsigned)b.addr.port);
    T_EQ_INT(p2p_udp_resolve(a.u, text, &target), 0);
    T_EQ_INT(p2p_host_connect(a.h, &target, p2p_host_id(b.h), p2p_udp_now(), &a.peer), 0);
    T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    T_EQ_INT(pump_until(&a, &b, both_joined, 5000000), 0);
    if (!both_joined(&a, &b)) goto out;

    /* b sees a from the address a is bound to: IPv4 even on a dual-stack socket. */
    T_EQ_INT(p2p_host_peer_info(b.h, b.peer, &info), 0);
    T_EQ_INT(info.address.port, a.addr.port);
    if (strchr(b_target_host, ':') == NULL) T_EQ_INT(info.address.family, P2P_AF_INET4);

    for (i = 0; i < NMSG; i++) {
        tnet_msg_fill(&msgs, buf, i);
        r = p2p_peer_send(a.h, a.peer, 7, buf, tnet_msg_len(&msgs, i), 0, NULL, p2p_udp_now());
        T_EQ_INT(r, 0);
        if (r != 0) break;
        if (i % 50 == 49) {
            T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
            T_CHECK(p2p_udp_pump(b.u, b.h, 0) >= 0);
            node_drain(&b);
        }
    }
    T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    T_EQ_INT(pump_until(&a, &b, all_received, 20000000), 0);
    T_EQ_INT(b.next, NMSG);
    T_EQ_INT(b.bad, 0);
    T_EQ_INT(a.errors + b.errors, 0);
    /* Let the last acks land, so that both sides' counters are final. */
    (void)p2p_udp_pump(a.u, a.h, 20000);
    (void)p2p_udp_pump(b.u, b.h, 0);
out:
    record_send_fd = record_recv_fd = -1;
    p2p_udp_stats_get(a.u, &xs_a);
    p2p_udp_stats_get(b.u, &xs_b);
    p2p_host_stats(a.h, &xh_a);
    p2p_host_stats(b.h, &xh_b);
    node_close(&a);
    node_close(&b);
}

static void test_exchange_v4(void)
{
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
}

static void test_exchange_dual_stack(void)
{
    /* An IPv4 client reaches a "::" server through its v4-mapped side, and the server's
     * replies go back out through the mapping. */
    exchange("127.0.0.1", "::", "127.0.0.1");
    exchange("::", "::", "localhost");
}

static void test_exchange_v6(void)
{
    exchange("::1", "::1", "[::1]");
}

static void test_exchange_send_faults(void)
{
    /* A full socket buffer now and then: everything still arrives. */
    inject_calls = injected_eagain = 0;
    inject_eagain_every = 3;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    inject_eagain_every = 0;
    T_CHECK(injected_eagain > 10);

    /* Per-datagram refusals are dropped and counted; the reliable layer resends. */
    inject_calls = injected_refused = 0;
    inject_refused_every = 3;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    inject_refused_every = 0;
    T_CHECK(injected_refused > 10);
}

static int got_200(struct node *a, struct node *b)
{
    (void)a;
    return b->next >= 200 || b->bad > 0;
}

/* With EAGAIN on every other call, the driver must keep what it took from the host: every
 * datagram the host produced reaches the kernel exactly once. */
static void test_backpressure_loses_nothing(void)
{
    struct node a, b;
    p2p_udp_stats us;
    p2p_stats hs;
    uint8_t buf[4096];
    uint32_t i;

    if (node_open(&a, "127.0.0.1", 3) != 0 || node_open(&b, "127.0.0.1", 4) != 0) {
        T_CHECK(0);
        return;
    }
    inject_calls = injected_eagain = 0;
    inject_eagain_every = 2;
    T_EQ_INT(p2p_host_connect(a.h, &b.addr, NULL, p2p_udp_now(), &a.peer), 0);
    T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    T_EQ_INT(pump_until(&a, &b, both_joined, 5000000), 0);
    for (i = 0; i < 200 && a.joined; i++) {
        tnet_msg_fill(&msgs, buf, i);
        T_EQ_INT(p2p_peer_send(a.h, a.peer, 7, buf, tnet_msg_len(&msgs, i), 0, NULL, p2p_udp_now()),
                 0);
        T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    }
    T_EQ_INT(pump_until(&a, &b, got_200, 10000000), 0);
    inject_eagain_every = 0;
    T_EQ_INT(b.next, 200);
    T_EQ_INT(b.bad, 0);
    /* Let the queue empty, then compare both sides' counts. */
    T_CHECK(p2p_udp_pump(a.u, a.h, 0) >= 0);
    p2p_udp_stats_get(a.u, &us);
    p2p_host_stats(a.h, &hs);
    T_CHECK(us.blocked > 0);
    T_EQ_INT(us.pending, 0);
    T_EQ_INT(us.send_errors, 0);
    T_EQ_INT(us.sent, hs.packets_sent);
    node_close(&a);
    node_close(&b);
}

static void test_oversized_dropped(void)
{
    struct node b;
    struct sockaddr_in sa;
    uint8_t big[P2P_MAX_PACKET_PROBED + 64];
    p2p_udp_stats us;
    p2p_stats before, after;
    int fd, got = 0;
    uint64_t end;

    if (node_open(&b, "127.0.0.1", 5) != 0) {
        T_CHECK(0);
        return;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    T_CHECK(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(b.addr.port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    memset(big, 0x04, sizeof big); /* a DATA type byte: only the size is wrong */
    p2p_host_stats(b.h, &before);
    T_EQ_INT(sendto(fd, big, P2P_MAX_PACKET_PROBED + 1, 0, (struct sockaddr *)&sa, sizeof sa),
             P2P_MAX_PACKET_PROBED + 1);
    T_EQ_INT(sendto(fd, big, sizeof big, 0, (struct sockaddr *)&sa, sizeof sa),
             (long long)sizeof big);
    end = p2p_udp_now() + 2000000;
    while (got < 2 && p2p_udp_now() < end) got += p2p_udp_pump(b.u, b.h, 10000);
    T_EQ_INT(got, 2);
    p2p_udp_stats_get(b.u, &us);
    T_EQ_INT(us.oversized, 2);
    T_EQ_INT(us.received, 2);
    p2p_host_stats(b.h, &after);
    T_EQ_INT(after.dropped - before.dropped, 2);
    close(fd);
    node_close(&b);
}

/* pump never sleeps past the host's next timer: a handshake to a silent port retransmits on
 * schedule even when pump is asked to wait much longer. */
static void test_pump_wakes_for_timers(void)
{
    struct node a;
    p2p_udp *silent = NULL;
    p2p_addr sink;
    p2p_peer_handle p;
    p2p_stats s0, s1;
    uint64_t t0, due, took;
    char err[128];

    if (node_open(&a, "127.0.0.1", 6) != 0) {
        T_CHECK(0);
        return;
    }
    T_EQ_INT(p2p_udp_open(&silent, "127.0.0.1", 0, err, sizeof err), 0);
    if (silent == NULL) goto out;
    p2p_udp_local(silent, &sink);
    T_EQ_INT(p2p_host_connect(a.h, &sink, NULL, p2p_udp_now(), &p), 0);
    T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    p2p_host_stats(a.h, &s0);
    T_CHECK(s0.packets_sent >= 1);
    due = p2p_host_next_timeout(a.h);
    T_CHECK(due != P2P_TIME_NEVER);
    t0 = p2p_udp_now();
    /* Other timers (port mapping's) may fall due first: the pump wakes for each, and the
     * INIT resend goes out when its own comes, not 30 s later. */
    do {
        T_CHECK(p2p_udp_pump(a.u, a.h, 30000000) >= 0);
        took = p2p_udp_now() - t0;
        p2p_host_stats(a.h, &s1);
    } while (s1.packets_sent == s0.packets_sent && took < 5000000);
    T_CHECK(due <= t0 || took >= due - t0 - 1000);
    T_CHECK(took < (due > t0 ? due - t0 : 0) + 500000);
    T_CHECK(s1.packets_sent > s0.packets_sent);
out:
    p2p_udp_close(silent);
    node_close(&a);
}

/* ---- segmentation offload ------------------------------------------------------------- */

/* GSO on the sender, GRO off on the receiver: the receiving socket gets every datagram the
 * sender's host produced, each intact, in the order produced, though many went to the kernel
 * several at a time (runs of mixed lengths: full packets, a shorter last one, acks). */
static void test_gso_segments_in_order(void)
{
    size_t i, same = 0;

    if (!have_offload(P2P_UDP_GSO)) return;
    xo_a_gso = 1;
    xo_b_gro = 0;
    xo_record = 1;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    xo_a_gso = xo_b_gro = -1;
    xo_record = 0;
    T_CHECK(xs_a.gso_sends > 10);
    T_EQ_INT(xs_b.gro_receives, 0);
    T_EQ_INT(xs_a.send_errors, 0);
    T_EQ_INT(xs_a.sent, xh_a.packets_sent);
    T_CHECK(rec_sent.n > 100 && rec_sent.n < RECORD_MAX);
    T_EQ_INT(rec_recv.n, rec_sent.n);
    for (i = 0; i < rec_sent.n && i < rec_recv.n; i++)
        if (rec_sent.len[i] == rec_recv.len[i] && rec_sent.hash[i] == rec_recv.hash[i]) same++;
    T_EQ_INT(same, rec_sent.n);
}

/* GSO and GRO on: the receiver takes coalesced buffers and its host still gets each datagram
 * whole (every one authenticates: nothing dropped) and exactly as many as were sent. */
static void test_gro_split(void)
{
    if (!have_offload(P2P_UDP_GSO | P2P_UDP_GRO)) return;
    xo_a_gso = 1;
    xo_b_gro = 1;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    xo_a_gso = xo_b_gro = -1;
    T_CHECK(xs_a.gso_sends > 10);
    T_CHECK(xs_b.gro_receives > 10);
    T_EQ_INT(xs_b.received, xs_a.sent);
    T_EQ_INT(xh_b.packets_received, xs_a.sent);
    T_EQ_INT(xh_b.dropped, 0);
    T_EQ_INT(xs_b.oversized, 0);

    /* The same over a dual-stack socket (v4-mapped destinations) and over IPv6. */
    xo_a_gso = xo_b_gro = 1;
    exchange("::", "::", "localhost");
    T_CHECK(xs_a.gso_sends > 10);
    T_CHECK(xs_b.gro_receives > 10);
    T_EQ_INT(xh_b.dropped, 0);
    exchange("::1", "::1", "[::1]");
    T_CHECK(xs_a.gso_sends > 10);
    T_CHECK(xs_b.gro_receives > 10);
    T_EQ_INT(xh_b.dropped, 0);
    xo_a_gso = xo_b_gro = -1;
}

/* P2P_UDP_OFFLOAD=0 opens sockets on the old path: one datagram per entry both ways. */
static void test_offload_off_by_env(void)
{
    p2p_udp *u = NULL;
    char err[128];

    T_EQ_INT(setenv("P2P_UDP_OFFLOAD", "0", 1), 0);
    T_EQ_INT(p2p_udp_open(&u, "127.0.0.1", 0, err, sizeof err), 0);
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    T_EQ_INT(unsetenv("P2P_UDP_OFFLOAD"), 0);
    T_EQ_INT(xs_a.gso_sends + xs_b.gso_sends, 0);
    T_EQ_INT(xs_a.gro_receives + xs_b.gro_receives, 0);
    T_CHECK(xs_a.sent > 100);
    if (u == NULL) return;
    /* Turned on by hand, offload is there on this kernel (Linux 5.0+) when the build has it;
     * off again by hand. */
    T_EQ_INT(p2p_udp_set_offload(u, 1, 1), p2p_udp_features() & (P2P_UDP_GSO | P2P_UDP_GRO));
    T_EQ_INT(p2p_udp_set_offload(u, 0, 1), p2p_udp_features() & P2P_UDP_GRO);
    T_EQ_INT(p2p_udp_set_offload(u, 0, 0), 0);
    p2p_udp_close(u);
}

/* A kernel or device that refuses segmented sends with EIO: the refused run goes again one
 * datagram at a time, GSO turns itself off for the socket, and nothing is lost or doubled. */
static void test_gso_eio_falls_back(void)
{
    if (!have_offload(P2P_UDP_GSO)) return;
    injected_gso = 0;
    inject_gso_errno = EIO;
    inject_gso_left = 1000;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    inject_gso_left = 0;
    /* Once per socket (b's acks may go segmented too), then never again. */
    T_EQ_INT(xs_a.gso_failures, 1);
    T_CHECK(xs_b.gso_failures <= 1);
    T_EQ_INT(injected_gso, xs_a.gso_failures + xs_b.gso_failures);
    T_EQ_INT(xs_a.gso_sends, 0);
    T_EQ_INT(xs_a.send_errors, 0);
    T_EQ_INT(xs_a.sent, xh_a.packets_sent);
}

/* EINVAL or EMSGSIZE on a segmented send (a segment over the path's MTU: the kernel checks
 * every segment against it) is the fate of that run, not of the socket: its datagrams go one
 * by one, each meeting the path on its own, and later runs are segmented again. */
static void test_gso_einval_splits_run(void)
{
    if (!have_offload(P2P_UDP_GSO)) return;
    injected_gso = 0;
    inject_gso_errno = EINVAL;
    inject_gso_left = 3;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    T_EQ_INT(injected_gso, 3);
    inject_gso_errno = EMSGSIZE;
    inject_gso_left = 3;
    exchange("127.0.0.1", "127.0.0.1", "127.0.0.1");
    inject_gso_left = 0;
    T_EQ_INT(injected_gso, 6);
    T_EQ_INT(xs_a.gso_failures, 0);
    T_CHECK(xs_a.gso_sends > 10);
    T_EQ_INT(xs_a.send_errors, 0);
    T_EQ_INT(xs_a.sent, xh_a.packets_sent);
}

int main(void)
{
    if (p2p_init() != 0) {
        fprintf(stderr, "p2p_init failed\n");
        return 1;
    }
    T_RUN(test_features);
    T_RUN(test_open_local);
    T_RUN(test_default_and_localhost);
    T_RUN(test_dual_stack_open);
    T_RUN(test_port_in_use);
    T_RUN(test_bad_host);
    T_RUN(test_resolve);
    T_RUN(test_clock);
    T_RUN(test_exchange_v4);
    T_RUN(test_exchange_dual_stack);
    T_RUN(test_exchange_v6);
    T_RUN(test_exchange_send_faults);
    T_RUN(test_backpressure_loses_nothing);
    T_RUN(test_oversized_dropped);
    T_RUN(test_pump_wakes_for_timers);
    T_RUN(test_gso_segments_in_order);
    T_RUN(test_gro_split);
    T_RUN(test_offload_off_by_env);
    T_RUN(test_gso_eio_falls_back);
    T_RUN(test_gso_einval_splits_run);
    return t_summary("test_udp");
}
