/* test_udp_io.c - the UDP driver's io queue (design 12 section 1.2): the epoll descriptor,
 * punch sockets (255, the RLIMIT_NOFILE cap), the LAN socket receiving its own multicast and
 * broadcast, the IPv6 LAN socket (ff02::7032:706e out of every IPv6 interface, sources with
 * their zone), the default gateway and its change, the TCP listener (raw and WebSocket clients,
 * the per-IP cap), one-shot HTTP, the STUN responder's rate limit, and two hosts whose UDP
 * is dropped meeting through a stream to the other's TCP port (raw and WebSocket).
 *
 * As root the program first moves into a network namespace of its own (lo, and a veth pair
 * with 10.9.0.1/24 and a default route via 10.9.0.254), so nothing it sends leaves the
 * machine; without root the namespace tests print "skip" and pass. */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver/sim.h"
#include "driver/stream.h"
#include "driver/udp.h"
#include "p2p_state.h"
#include "p2p_stun.h"
#include "p2pnet.h"
#include "t.h"
#include "tnet.h"

static int in_netns;

static void setup_netns(void)
{
    if (geteuid() != 0 || getenv("P2P_TEST_NO_NETNS") != NULL) return;
    if (unshare(CLONE_NEWNET) != 0) return;
    /* no duplicate address detection: link-local IPv6 addresses are usable at once */
    if (system("sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 "
               ">/dev/null 2>&1") != 0) {
        /* IPv6 may be off: the IPv6 LAN test says so and skips */
    }
    if (system("ip link set lo up && ip link add v0 type veth peer name v1 && "
               "ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up && "
               "ip route add default via 10.9.0.254 dev v0") != 0)
        return;
    in_netns = 1;
}

/* ---- UDP drop injection: sendto/sendmmsg from a chosen socket go nowhere ---------------- */
static int drop_fd = -1;
static unsigned long dropped;

ssize_t sendto(int fd, const void *buf, size_t len, int flags, __CONST_SOCKADDR_ARG sa,
               socklen_t sl)
{
    static ssize_t (*real)(int, const void *, size_t, int, __CONST_SOCKADDR_ARG, socklen_t);
    if (real == NULL) *(void **)&real = dlsym(RTLD_NEXT, "sendto");
    if (fd == drop_fd) {
        dropped++;
        return (ssize_t)len;
    }
    return real(fd, buf, len, flags, sa, sl);
}

int sendmmsg(int fd, struct mmsghdr *m, unsigned int n, int flags)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int);
    if (real == NULL) *(void **)&real = dlsym(RTLD_NEXT, "sendmmsg");
    if (fd == drop_fd) {
        dropped += n;
        return (int)n;
    }
    return real(fd, m, n, flags);
}

/* ---- what the driver hands the host --------------------------------------------------- */
struct cap {
    int io;
    p2p_io_result last;
    uint8_t socks[P2P_IO_PUNCH_MAX];
    int up, down, inbound;
    uint32_t sid;
    p2p_addr peer;
    int recv, lan;
    p2p_addr from;
    uint8_t buf[2048];
    size_t len;
    uint8_t http[16384];
    size_t http_len;
};

static void on_io(void *ud, const p2p_io_result *r)
{
    struct cap *c = ud;
    c->io++;
    c->last = *r;
    memcpy(c->socks, r->socks, sizeof c->socks);
    if (r->kind == P2P_IO_HTTP && r->status == 0 && r->len <= sizeof c->http) {
        memcpy(c->http, r->data, r->len);
        c->http_len = r->len;
    }
}

static void on_stream(void *ud, uint32_t sid, int up, int inbound, const p2p_addr *peer)
{
    struct cap *c = ud;
    if (up) {
        c->up++;
        c->sid = sid;
        c->inbound = inbound;
        c->peer = *peer;
    } else {
        c->down++;
    }
}

static void on_recv(void *ud, const p2p_addr *from, const uint8_t *b, size_t n, int lan)
{
    struct cap *c = ud;
    if (lan)
        c->lan++;
    else
        c->recv++;
    c->from = *from;
    c->len = n < sizeof c->buf ? n : sizeof c->buf;
    memcpy(c->buf, b, c->len);
}

struct node {
    p2p_identity id;
    p2p_host *h;
    p2p_udp *u;
    p2p_addr addr;
    struct cap cap;
    p2p_peer_handle peer;
    int joined, got;
};

static int node_open(struct node *n, const char *host, uint8_t seedb, const p2p_config *base)
{
    p2p_config cfg;
    uint8_t seed[P2P_SEED_LEN];
    char err[128];
    p2p_udp_hooks hk;

    memset(n, 0, sizeof *n);
    memset(seed, seedb, sizeof seed);
    if (p2p_identity_from_seed(&n->id, seed) != 0) return -1;
    if (base != NULL)
        cfg = *base;
    else
        p2p_config_init(&cfg);
    cfg.identity = &n->id;
    if (!base) cfg.portmap_off = 1; /* the tests here watch the io queue themselves */
    if (p2p_host_new(&n->h, &cfg, p2p_udp_now()) != 0) return -1;
    if (p2p_udp_open(&n->u, host, 0, err, sizeof err) != 0) {
        fprintf(stderr, "  open: %s\n", err);
        return -1;
    }
    p2p_udp_local(n->u, &n->addr);
    memset(&hk, 0, sizeof hk);
    hk.ud = &n->cap;
    hk.io_done = on_io;
    hk.stream = on_stream;
    hk.recv = on_recv;
    p2p_udp_set_hooks(n->u, &hk);
    return 0;
}

static void node_close(struct node *n)
{
    p2p_host_free(n->h);
    p2p_udp_close(n->u);
    p2p_identity_wipe(&n->id);
}

static void node_drain(struct node *n)
{
    p2p_event ev;
    while (p2p_host_next_event(n->h, &ev)) {
        if (ev.type == P2P_EV_JOIN) {
            n->joined = 1;
            n->peer = ev.peer;
        }
        if (ev.type == P2P_EV_MESSAGE) n->got++;
    }
}

static void pump(struct node *n, uint64_t us)
{
    T_CHECK(p2p_udp_pump(n->u, n->h, us) >= 0);
    node_drain(n);
}

static int readable(int fd, int ms)
{
    struct pollfd pf = {fd, POLLIN, 0};
    return poll(&pf, 1, ms) == 1 && (pf.revents & POLLIN);
}

static int udp_sock(p2p_addr *bound)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    memset(bound, 0, sizeof *bound);
    bound->family = P2P_AF_INET4;
    memcpy(bound->ip, &sa.sin_addr, 4);
    bound->port = ntohs(sa.sin_port);
    return fd;
}

static void send_to(int fd, const p2p_addr *to, const void *b, size_t n)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    memcpy(&sa.sin_addr, to->ip, 4);
    sa.sin_port = htons(to->port);
    T_CHECK(sendto(fd, b, n, 0, (struct sockaddr *)&sa, sizeof sa) == (ssize_t)n);
}

/* ---- tests ---------------------------------------------------------------------------- */

/* Whether drivers opened now hold their sockets in an epoll set (node:fd()). */
static int epoll_on(void)
{
    const char *e = getenv("P2P_UDP_EPOLL");
    return (p2p_udp_features() & P2P_UDP_EPOLL) && (e == NULL || strcmp(e, "0") != 0);
}

static void test_epoll_fd(void)
{
    struct node a;
    p2p_addr me;
    if (node_open(&a, "127.0.0.1", 1, NULL) != 0) {
        T_CHECK(0);
        return;
    }
    int fd = p2p_udp_fd(a.u);
    T_CHECK(fd >= 0);
    if (epoll_on())
        T_CHECK(fd != p2p_udp_socket(a.u)); /* Linux: the epoll set */
    else
        T_CHECK(fd == p2p_udp_socket(a.u)); /* no epoll, or P2P_UDP_EPOLL=0: the UDP socket */
    T_EQ_INT(readable(fd, 0), 0);
    int s = udp_sock(&me);
    send_to(s, &a.addr, "x", 1);
    T_EQ_INT(readable(fd, 1000), 1);
    pump(&a, 0);
    T_EQ_INT(a.cap.recv, 0); /* the hook sees only extra sockets; the host dropped "x" */
    T_EQ_INT(readable(fd, 0), 0);
    close(s);
    node_close(&a);
}

static void punch_io(struct node *n, int kind, uint16_t want, uint8_t sock)
{
    p2p_io req;
    memset(&req, 0, sizeof req);
    req.kind = kind;
    req.id = 77;
    req.n = want;
    req.addr.sock = sock;
    p2p_udp_io(n->u, n->h, &req);
}

static void test_punch_sockets(void)
{
    struct node a;
    p2p_udp_stats st;
    p2p_addr me, to;
    if (node_open(&a, "127.0.0.1", 1, NULL) != 0) {
        T_CHECK(0);
        return;
    }
    punch_io(&a, P2P_IO_PUNCH_OPEN, 255, 0);
    T_EQ_INT(a.cap.io, 1);
    T_EQ_INT(a.cap.last.kind, P2P_IO_PUNCH_OPEN);
    T_EQ_INT(a.cap.last.id, 77);
    T_EQ_INT(a.cap.last.status, 0);
    T_EQ_INT(a.cap.last.n, 255);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.punch_sockets, 255);
    int s = udp_sock(&me);
    uint16_t ports[3];
    const int slots[3] = {a.cap.socks[0], a.cap.socks[127], a.cap.socks[254]};
    for (int k = 0; k < 3; k++) {
        to = me;
        to.sock = (uint8_t)slots[k];
        T_EQ_INT(p2p_udp_send(a.u, &to, (const uint8_t *)"open", 4), 0);
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        char b[16];
        T_EQ_INT(readable(s, 1000), 1);
        T_EQ_INT(recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&sa, &sl), 4);
        ports[k] = ntohs(sa.sin_port);
        T_CHECK(ports[k] != a.addr.port);
        /* the answer comes in on that punch socket: from.sock names it */
        p2p_addr back = me;
        back.port = ports[k];
        send_to(s, &back, "reply", 5);
        a.cap.recv = 0;
        if (epoll_on()) {
            /* the epoll set signals the punch socket */
            T_EQ_INT(readable(p2p_udp_fd(a.u), 1000), 1);
            pump(&a, 0);
        } else {
            /* without it the pump wakes at least every 20 ms while punch sockets are open */
            T_CHECK(p2p_udp_next_timeout(a.u, a.h) <= p2p_udp_now() + 20000);
            for (int i = 0; i < 10 && a.cap.recv == 0; i++) pump(&a, 1000000);
        }
        T_EQ_INT(a.cap.recv, 1);
        T_EQ_INT(a.cap.from.sock, slots[k]);
        T_EQ_INT(a.cap.from.port, me.port);
    }
    T_CHECK(ports[0] != ports[1] && ports[1] != ports[2]);
    /* close one, then all */
    punch_io(&a, P2P_IO_PUNCH_CLOSE, 0, (uint8_t)slots[1]);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.punch_sockets, 254);
    to = me;
    to.sock = (uint8_t)slots[1];
    T_EQ_INT(p2p_udp_send(a.u, &to, (const uint8_t *)"x", 1), P2P_ERR_PEER);
    punch_io(&a, P2P_IO_PUNCH_CLOSE, 0, 0);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.punch_sockets, 0);
    close(s);
    node_close(&a);
}

static void test_punch_rlimit(void)
{
    struct node a;
    struct rlimit old, lim;
    if (node_open(&a, "127.0.0.1", 1, NULL) != 0) {
        T_CHECK(0);
        return;
    }
    T_EQ_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* highest descriptor in use now, roughly the count */
    int probe = dup(0);
    close(probe);
    lim = old;
    lim.rlim_cur = (rlim_t)(probe + 64 + 2 * 10 + 1);
    T_EQ_INT(setrlimit(RLIMIT_NOFILE, &lim), 0);
    punch_io(&a, P2P_IO_PUNCH_OPEN, 255, 0);
    T_EQ_INT(a.cap.last.status, 0);
    T_CHECK(a.cap.last.n >= 8 && a.cap.last.n <= 11);
    printf("     RLIMIT_NOFILE %d: %u punch sockets\n", (int)lim.rlim_cur, a.cap.last.n);
    punch_io(&a, P2P_IO_PUNCH_CLOSE, 0, 0);
    lim.rlim_cur = (rlim_t)(probe + 10);
    T_EQ_INT(setrlimit(RLIMIT_NOFILE, &lim), 0);
    punch_io(&a, P2P_IO_PUNCH_OPEN, 255, 0);
    T_EQ_INT(a.cap.last.status, P2P_ERR_IO);
    T_EQ_INT(a.cap.last.n, 0);
    T_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
    node_close(&a);
}

static void test_lan_socket(void)
{
    struct node a, b;
    p2p_io req;
    p2p_addr group, bcast;
    p2p_udp_stats st;
    if (!in_netns) {
        printf("     skip: needs root for a network namespace\n");
        return;
    }
    T_EQ_INT(node_open(&a, NULL, 1, NULL), 0);
    T_EQ_INT(node_open(&b, NULL, 2, NULL), 0);
    memset(&req, 0, sizeof req);
    req.kind = P2P_IO_LAN_START;
    req.n = 44399;
    p2p_udp_io(a.u, a.h, &req);
    T_EQ_INT(a.cap.last.status, 0);
    T_EQ_INT(a.cap.last.n, 1);  /* v0 only (lo is not multicast, v1 has no address) */
    p2p_udp_io(b.u, b.h, &req); /* a second node on the same port: SO_REUSEPORT */
    T_EQ_INT(b.cap.last.status, 0);
    memset(&group, 0, sizeof group);
    group.family = P2P_AF_INET4;
    group.ip[0] = 239, group.ip[1] = 255, group.ip[2] = 112, group.ip[3] = 112;
    group.port = 44399;
    T_EQ_INT(p2p_udp_lan_send(a.u, &group, (const uint8_t *)"p2pb-mcast", 10), 1);
    for (int i = 0; i < 50 && (a.cap.lan < 1 || b.cap.lan < 1); i++) {
        pump(&a, 10000);
        pump(&b, 10000);
    }
    T_EQ_INT(a.cap.lan, 1); /* its own, looped back */
    T_EQ_INT(b.cap.lan, 1);
    T_EQ_INT(b.cap.len, 10);
    T_EQ_MEM(b.cap.buf, "p2pb-mcast", 10);
    T_EQ_INT(b.cap.from.ip[0], 10);
    T_EQ_INT(b.cap.from.ip[3], 1);
    memset(&bcast, 0xff, sizeof bcast);
    bcast.family = P2P_AF_INET4;
    bcast.sock = 0;
    bcast.port = 44399;
    T_EQ_INT(p2p_udp_lan_send(a.u, &bcast, (const uint8_t *)"p2pb-bcast", 10), 1);
    /* a broadcast reaches one socket of a SO_REUSEPORT group (the kernel picks it; the
     * multicast above reached both) */
    for (int i = 0; i < 50 && a.cap.lan + b.cap.lan < 3; i++) {
        pump(&a, 10000);
        pump(&b, 10000);
    }
    T_EQ_INT(a.cap.lan + b.cap.lan, 3);
    T_CHECK(memcmp(b.cap.buf, "p2pb-bcast", 10) == 0 || memcmp(a.cap.buf, "p2pb-bcast", 10) == 0);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.lan_sent, 2);
    /* stop: nothing more arrives */
    req.kind = P2P_IO_LAN_STOP;
    p2p_udp_io(b.u, b.h, &req);
    int before = b.cap.lan;
    T_EQ_INT(p2p_udp_lan_send(a.u, &group, (const uint8_t *)"late", 4), 1);
    pump(&a, 10000);
    pump(&b, 10000);
    T_EQ_INT(b.cap.lan, before);
    node_close(&a);
    node_close(&b);
}

/* issue 12: a node bound to "::" also has an IPv6 LAN socket. The group is joined and sent to
 * once per IPv6 interface (v0 and v1: link-local addresses only, no DAD in this namespace),
 * copies come back from link-local sources with the zone of the interface they came in on,
 * and a unicast to such a source with its zone reaches it out of the node's UDP socket. A node
 * bound to IPv4 gets no IPv6 socket; one bound to ::1 no LAN socket at all. */
static int v6_ifaces(void)
{
    FILE *f = fopen("/proc/net/if_inet6", "r");
    char line[256];
    int n = 0;
    if (f == NULL) return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "fe80", 4) == 0) n++; /* one link-local address per interface */
    fclose(f);
    return n;
}

static void test_lan_socket6(void)
{
    struct node a, b, c, lo;
    p2p_io req;
    p2p_addr group, to;
    p2p_udp_stats st;
    if (!in_netns) {
        printf("     skip: needs root for a network namespace\n");
        return;
    }
    int n6 = v6_ifaces();
    if (n6 < 2) {
        printf("     skip: no IPv6 link-local addresses (IPv6 off)\n");
        return;
    }
    T_EQ_INT(node_open(&a, "::", 1, NULL), 0);
    T_EQ_INT(node_open(&b, "::", 2, NULL), 0);
    T_EQ_INT(node_open(&c, "0.0.0.0", 3, NULL), 0);
    T_EQ_INT(node_open(&lo, "::1", 4, NULL), 0);
    memset(&req, 0, sizeof req);
    req.kind = P2P_IO_LAN_START;
    req.n = 44398;
    p2p_udp_io(a.u, a.h, &req);
    T_EQ_INT(a.cap.last.status, 0);
    T_EQ_INT(a.cap.last.n, 1 + n6);                  /* v0's IPv4, and v0, v1 over IPv6 */
    T_EQ_INT(a.cap.last.local.family, P2P_AF_INET6); /* tells the core: beacon over IPv6 */
    T_EQ_INT(a.cap.last.local.port, a.addr.port);
    p2p_udp_io(b.u, b.h, &req);
    T_EQ_INT(b.cap.last.status, 0);
    p2p_udp_io(c.u, c.h, &req);
    T_EQ_INT(c.cap.last.status, 0);
    T_EQ_INT(c.cap.last.n, 1); /* IPv4 only */
    T_EQ_INT(c.cap.last.local.family, P2P_AF_INET4);
    p2p_udp_io(lo.u, lo.h, &req);
    T_EQ_INT(lo.cap.last.status, P2P_ERR_IO); /* on loopback: not on any LAN */
    T_EQ_INT(p2p_addr_parse(&group, "[ff02::7032:706e]:44398"), 0);
    T_EQ_INT(p2p_udp_lan_send(a.u, &group, (const uint8_t *)"p2pb-six", 8), n6);
    T_EQ_INT(p2p_udp_lan_send(c.u, &group, (const uint8_t *)"p2pb-six", 8), 0);
    for (int i = 0; i < 50 && (a.cap.lan < 1 || b.cap.lan < 1); i++) {
        pump(&a, 10000);
        pump(&b, 10000);
        pump(&c, 10000);
    }
    T_CHECK(a.cap.lan >= 1); /* its own, looped back */
    T_CHECK(b.cap.lan >= n6);
    T_EQ_INT(c.cap.lan, 0); /* bound to IPv4: hears no IPv6 beacon */
    T_EQ_INT(b.cap.len, 8);
    T_EQ_MEM(b.cap.buf, "p2pb-six", 8);
    T_EQ_INT(b.cap.from.family, P2P_AF_INET6);
    T_CHECK(b.cap.from.ip[0] == 0xfe && (b.cap.from.ip[1] & 0xc0) == 0x80);
    T_CHECK(b.cap.from.zone != 0);
    T_EQ_INT(b.cap.from.port, 44398);
    char text[P2P_ADDR_TEXT_MAX];
    T_EQ_INT(p2p_addr_format(&b.cap.from, text, sizeof text), 0);
    T_CHECK(strchr(text, '%') != NULL);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.lan_sent, (uint64_t)n6);
    p2p_udp_stats_get(b.u, &st);
    T_EQ_INT(st.lan_received, (uint64_t)b.cap.lan);
    /* what a LAN dial does: the beacon's source with its zone and the node's port, out of
     * the node's own UDP socket */
    to = b.cap.from;
    to.port = b.addr.port;
    p2p_udp_stats_get(b.u, &st);
    uint64_t got = st.received;
    T_EQ_INT(p2p_udp_send(a.u, &to, (const uint8_t *)"dial", 4), 0);
    for (int i = 0; i < 50 && st.received == got; i++) {
        pump(&b, 10000);
        p2p_udp_stats_get(b.u, &st);
    }
    T_EQ_INT(st.received, got + 1);
    /* bound to a link-local address itself ("fe80::...%zone"): it has no address to
     * advertise (the zone means nothing elsewhere), but keeps its zone and its LAN socket */
    {
        FILE *f = fopen("/proc/net/if_inet6", "r");
        char line[256], hex[33], name[32], bind[80];
        unsigned int ix = 0, plen, scope, flags;
        struct node ll;
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "%32s %x %x %x %x %31s", hex, &ix, &plen, &scope, &flags, name) == 6 &&
                strncmp(hex, "fe80", 4) == 0)
                break;
        if (f != NULL) fclose(f);
        T_CHECK(ix != 0);
        snprintf(bind, sizeof bind, "%.4s:%.4s:%.4s:%.4s:%.4s:%.4s:%.4s:%.4s%%%u", hex, hex + 4,
                 hex + 8, hex + 12, hex + 16, hex + 20, hex + 24, hex + 28, ix);
        T_EQ_INT(node_open(&ll, bind, 5, NULL), 0);
        T_EQ_INT(ll.addr.zone, ix);
        p2p_addr cands[4];
        T_EQ_INT(p2p_udp_local_addrs(ll.u, cands, 4), 0);
        req.kind = P2P_IO_LAN_START;
        p2p_udp_io(ll.u, ll.h, &req);
        T_EQ_INT(ll.cap.last.status, 0);
        T_EQ_INT(ll.cap.last.local.zone, ix);
        node_close(&ll);
    }
    /* stop: the IPv6 socket closes too */
    req.kind = P2P_IO_LAN_STOP;
    p2p_udp_io(b.u, b.h, &req);
    int before = b.cap.lan;
    T_EQ_INT(p2p_udp_lan_send(a.u, &group, (const uint8_t *)"late", 4), n6);
    pump(&a, 10000);
    pump(&b, 10000);
    T_EQ_INT(b.cap.lan, before);
    node_close(&a);
    node_close(&b);
    node_close(&c);
    node_close(&lo);
}

static void test_gateway(void)
{
    struct node a;
    p2p_addr gw, local;
    p2p_io req;
    p2p_udp_stats st;
    if (!in_netns) {
        printf("     skip: needs root for a network namespace\n");
        return;
    }
    /* make test turns gateway lookups off for every node it runs; this namespace is the
     * test's own, so its gateway is the test's too */
    const char *off = getenv("P2P_UDP_NO_GATEWAY");
    char *saved = off ? strdup(off) : NULL;
    unsetenv("P2P_UDP_NO_GATEWAY");
    setenv("P2P_UDP_GATEWAY_POLL_MS", "30", 1);
    T_EQ_INT(node_open(&a, NULL, 1, NULL), 0);
    unsetenv("P2P_UDP_GATEWAY_POLL_MS");
    T_EQ_INT(p2p_udp_gateway(a.u, &gw, &local), 0);
    T_EQ_INT(gw.family, P2P_AF_INET4);
    T_EQ_MEM(gw.ip, "\x0a\x09\x00\xfe", 4);
    T_EQ_INT(gw.port, 0);
    T_EQ_MEM(local.ip, "\x0a\x09\x00\x01", 4);
    T_EQ_INT(local.port, a.addr.port);
    memset(&req, 0, sizeof req);
    req.kind = P2P_IO_GATEWAY;
    req.id = 5;
    p2p_udp_io(a.u, a.h, &req);
    T_EQ_INT(a.cap.last.kind, P2P_IO_GATEWAY);
    T_EQ_INT(a.cap.last.status, 0);
    T_EQ_MEM(a.cap.last.addr.ip, "\x0a\x09\x00\xfe", 4);
    /* the route changes: the next check reports it once */
    T_EQ_INT(system("ip route replace default via 10.9.0.253 dev v0"), 0);
    for (int i = 0; i < 20; i++) pump(&a, 10000);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.gateway_changes, 1);
    for (int i = 0; i < 10; i++) pump(&a, 10000);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.gateway_changes, 1);
    /* no default route: none */
    T_EQ_INT(system("ip route del default"), 0);
    T_EQ_INT(p2p_udp_gateway(a.u, &gw, &local), P2P_ERR_IO);
    for (int i = 0; i < 10; i++) pump(&a, 10000);
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.gateway_changes, 2);
    T_EQ_INT(system("ip route add default via 10.9.0.254 dev v0"), 0);
    node_close(&a);
    if (saved) {
        setenv("P2P_UDP_NO_GATEWAY", saved, 1);
        free(saved);
    }
}

/* A client made by hand (the test's own p2p_tstream over a plain socket) against the
 * driver's listener. */
static int hand_client(const p2p_addr *to, int ws, p2p_tstream *st)
{
    static const uint8_t key[16] = {5};
    int fd = p2p_tstream_connect(to);
    struct pollfd pf = {fd, POLLOUT, 0};
    if (fd < 0 || poll(&pf, 1, 2000) != 1 || p2p_tstream_connected(fd) != 0) return -1;
    if (p2p_tstream_client(st, ws, "127.0.0.1", "/p2pnet", key, 9) != 0) return -1;
    return fd;
}

static void stream_server(int ws)
{
    struct node a;
    p2p_tstream c;
    p2p_addr to;
    uint8_t got[P2P_MAX_PACKET];
    char err[100];
    T_EQ_INT(node_open(&a, "127.0.0.1", 1, NULL), 0);
    T_EQ_INT(p2p_udp_listen_tcp(a.u, 0, "/p2pnet", err, sizeof err), 0);
    T_EQ_INT(p2p_udp_tcp_port(a.u), a.addr.port); /* the UDP port by default */
    to = a.addr;
    int fd = hand_client(&to, ws, &c);
    T_CHECK(fd >= 0);
    T_EQ_INT(p2p_tstream_write(&c, fd), 0);
    for (int i = 0; i < 100 && a.cap.up == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.up, 1);
    T_EQ_INT(a.cap.inbound, 1);
    T_CHECK(a.cap.sid & 0x80000000u);
    T_EQ_INT(a.cap.peer.ip[0], 127);
    if (ws) { /* the 101 */
        for (int i = 0; i < 100 && c.state != P2P_STREAM_OPEN; i++) {
            (void)readable(fd, 10);
            (void)p2p_tstream_read(&c, fd);
            (void)p2p_tstream_next(&c, got, sizeof got);
        }
        T_EQ_INT(c.state, P2P_STREAM_OPEN);
    }
    T_EQ_INT(p2p_tstream_send(&c, (const uint8_t *)"hello over tcp", 14), 0);
    T_EQ_INT(p2p_tstream_write(&c, fd), 0);
    for (int i = 0; i < 100 && a.cap.recv == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.recv, 1);
    T_EQ_INT(a.cap.from.family, P2P_AF_STREAM);
    T_EQ_INT(a.cap.len, 14);
    T_EQ_MEM(a.cap.buf, "hello over tcp", 14);
    /* and back */
    p2p_addr sa;
    memset(&sa, 0, sizeof sa);
    sa.family = P2P_AF_STREAM;
    sa.ip[0] = (uint8_t)a.cap.sid, sa.ip[1] = (uint8_t)(a.cap.sid >> 8);
    sa.ip[2] = (uint8_t)(a.cap.sid >> 16), sa.ip[3] = (uint8_t)(a.cap.sid >> 24);
    T_EQ_INT(p2p_udp_send(a.u, &sa, (const uint8_t *)"back", 4), 0);
    T_EQ_INT(p2p_udp_flush(a.u, a.h), 0);
    size_t n = 0;
    for (int i = 0; i < 100 && n == 0; i++) {
        (void)readable(fd, 10);
        (void)p2p_tstream_read(&c, fd);
        n = p2p_tstream_next(&c, got, sizeof got);
    }
    T_EQ_INT(n, 4);
    T_EQ_MEM(got, "back", 4);
    /* the client goes away: the host hears stream_down */
    close(fd);
    for (int i = 0; i < 100 && a.cap.down == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.down, 1);
    T_EQ_INT(p2p_udp_send(a.u, &sa, (const uint8_t *)"x", 1), P2P_ERR_PEER);
    p2p_tstream_free(&c);
    node_close(&a);
}

static void test_stream_server(void)
{
    stream_server(0);
    stream_server(1);
}

/* A wrong path gets 404 and the connection ends; garbage ends it at once; neither is a
 * stream the host hears of. */
static void test_stream_refusals(void)
{
    struct node a;
    char err[100];
    T_EQ_INT(node_open(&a, "127.0.0.1", 1, NULL), 0);
    T_EQ_INT(p2p_udp_listen_tcp(a.u, 0, "/p2pnet", err, sizeof err), 0);
    static const char *req[2] = {"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                 "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                 "SSH-2.0-OpenSSH_9.2\r\n"};
    for (int k = 0; k < 2; k++) {
        int fd = p2p_tstream_connect(&a.addr);
        struct pollfd pf = {fd, POLLOUT, 0};
        T_EQ_INT(poll(&pf, 1, 2000), 1);
        T_EQ_INT(send(fd, req[k], strlen(req[k]), 0), (ssize_t)strlen(req[k]));
        char in[512];
        size_t got = 0;
        int eof = 0;
        for (int i = 0; i < 300 && !eof; i++) {
            pump(&a, 10000);
            ssize_t r = recv(fd, in + got, sizeof in - 1 - got, MSG_DONTWAIT);
            if (r == 0) eof = 1;
            if (r > 0) got += (size_t)r;
        }
        in[got] = 0;
        T_CHECK(eof);
        if (k == 0)
            T_CHECK(strncmp(in, "HTTP/1.1 404", 12) == 0);
        else
            T_EQ_INT(got, 0);
        close(fd);
    }
    T_EQ_INT(a.cap.up, 0);
    T_EQ_INT(a.cap.down, 0);
    p2p_udp_stats st;
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.streams, 0);
    node_close(&a);
}

/* 8 streams per source IP (not loopback): the 9th is refused at accept. */
static void test_stream_caps(void)
{
    struct node a;
    char err[100];
    int fds[10];
    p2p_udp_stats st;
    if (!in_netns) {
        printf("     skip: needs root for a network namespace\n");
        return;
    }
    T_EQ_INT(node_open(&a, "10.9.0.1", 1, NULL), 0);
    T_EQ_INT(p2p_udp_listen_tcp(a.u, 0, NULL, err, sizeof err), 0);
    for (int i = 0; i < 10; i++) {
        fds[i] = p2p_tstream_connect(&a.addr);
        for (int k = 0; k < 3; k++) pump(&a, 5000);
    }
    p2p_udp_stats_get(a.u, &st);
    T_EQ_INT(st.streams_accepted, 8);
    T_EQ_INT(st.streams_refused, 2);
    T_EQ_INT(st.streams, 8);
    for (int i = 0; i < 10; i++) close(fds[i]);
    node_close(&a);
}

/* One HTTP request against a tiny server (the test's own socket). */
static void test_http(void)
{
    struct node a;
    p2p_addr lo;
    p2p_io req;
    memset(&lo, 0, sizeof lo);
    lo.family = P2P_AF_INET4;
    lo.ip[0] = 127, lo.ip[3] = 1;
    int lfd = p2p_tstream_listen(&lo, 4);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    lo.port = ntohs(sa.sin_port);
    T_EQ_INT(node_open(&a, "127.0.0.1", 1, NULL), 0);
    static const char q[] = "GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    memset(&req, 0, sizeof req);
    req.kind = P2P_IO_HTTP;
    req.id = 9;
    req.addr = lo;
    req.data = (const uint8_t *)q;
    req.len = sizeof q - 1;
    p2p_udp_io(a.u, a.h, &req);
    T_EQ_INT(readable(lfd, 1000), 1);
    p2p_addr from;
    int cfd = p2p_tstream_accept(lfd, &from);
    T_CHECK(cfd >= 0);
    char in[256];
    ssize_t got = 0;
    for (int i = 0; i < 100 && got < (ssize_t)(sizeof q - 1); i++) {
        pump(&a, 10000);
        ssize_t r = recv(cfd, in + got, sizeof in - (size_t)got, MSG_DONTWAIT);
        if (r > 0) got += r;
    }
    T_EQ_INT(got, sizeof q - 1);
    T_EQ_MEM(in, q, sizeof q - 1);
    static const char rep[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    T_EQ_INT(send(cfd, rep, sizeof rep - 1, 0), sizeof rep - 1);
    for (int i = 0; i < 100 && a.cap.io == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.last.kind, P2P_IO_HTTP);
    T_EQ_INT(a.cap.last.id, 9);
    T_EQ_INT(a.cap.last.status, 0);
    T_EQ_INT(a.cap.http_len, sizeof rep - 1);
    T_EQ_MEM(a.cap.http, rep, sizeof rep - 1);
    close(cfd);
    /* a server that never answers: P2P_ERR_IO after 2 s */
    a.cap.io = 0;
    p2p_udp_io(a.u, a.h, &req);
    uint64_t t0 = p2p_udp_now();
    for (int i = 0; i < 400 && a.cap.io == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.io, 1);
    T_EQ_INT(a.cap.last.status, P2P_ERR_IO);
    uint64_t dt = p2p_udp_now() - t0;
    T_CHECK(dt >= 1900000 && dt < 3000000);
    /* nobody listening: P2P_ERR_IO soon */
    close(lfd);
    a.cap.io = 0;
    p2p_udp_io(a.u, a.h, &req);
    for (int i = 0; i < 100 && a.cap.io == 0; i++) pump(&a, 10000);
    T_EQ_INT(a.cap.last.status, P2P_ERR_IO);
    node_close(&a);
}

/* The STUN responder answers Binding requests, 10 a second per source IP. */
static void test_stun_responder(void)
{
    struct node a;
    char err[100];
    p2p_addr me, srv;
    p2p_udp_stats st;
    T_EQ_INT(node_open(&a, "127.0.0.1", 1, NULL), 0);
    int s = udp_sock(&me);
    srv = a.addr;
    srv.port = (uint16_t)(a.addr.port + 1);
    if (p2p_udp_stun_server(a.u, srv.port, err, sizeof err) != 0) {
        printf("     skip: port %u taken\n", srv.port);
        node_close(&a);
        close(s);
        return;
    }
    /* a Binding request: type 1, length 0, cookie, txid */
    uint8_t q[20] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    for (int i = 0; i < 30; i++) send_to(s, &srv, q, sizeof q);
    for (int i = 0; i < 5; i++) pump(&a, 10000);
    p2p_udp_stats_get(a.u, &st);
    /* a burst of 30 from one IP: the bucket (10 a second, burst 10) lets 10 through to
     * p2p_stun_answer, which answers each (none while the codec is a stub) */
    T_EQ_INT(st.stun_limited, 20);
    T_EQ_INT(st.stun_answered, 10);
    /* each answer is a Binding success naming the address the request came from */
    int answers = 0;
    uint8_t in[600];
    while (readable(s, 100)) {
        ssize_t n = recv(s, in, sizeof in, 0);
        p2p_stun_msg m;
        if (n <= 0) break;
        answers++;
        T_CHECK(n <= 3 * 20);
        T_EQ_INT(p2p_stun_parse(in, (size_t)n, &m), 0);
        T_EQ_INT(m.type, 0x0101);
        T_EQ_MEM(m.txid, q + 8, 12);
        T_CHECK(m.has_mapped && p2p_addr_equal(&m.mapped, &me));
    }
    T_EQ_INT(answers, 10);
    printf("     30 requests: %llu answered, %llu over the rate\n",
           (unsigned long long)st.stun_answered, (unsigned long long)st.stun_limited);
    close(s);
    node_close(&a);
}

/* Two hosts; B's UDP is dropped on the way out, so B's connect to A gets no answer; after
 * 2 s B's host asks for a stream to A's TCP port, and the session runs over it. */
static void fallback(int ws)
{
    struct node a, b;
    p2p_config cfg;
    char err[100];
    p2p_config_init(&cfg);
    T_EQ_INT(node_open(&a, "127.0.0.1", 1, NULL), 0);
    T_EQ_INT(p2p_udp_listen_tcp(a.u, 0, "/p2pnet", err, sizeof err), 0);
    if (ws) {
        cfg.nfallback = 1;
        cfg.fallback[0].addr = a.addr;
        cfg.fallback[0].ws = 1;
        strcpy(cfg.fallback[0].host, "127.0.0.1");
        strcpy(cfg.fallback[0].path, "/p2pnet");
    }
    T_EQ_INT(node_open(&b, "127.0.0.1", 2, &cfg), 0);
    drop_fd = p2p_udp_socket(b.u);
    dropped = 0;
    T_EQ_INT(p2p_host_connect(b.h, &a.addr, p2p_host_id(a.h), p2p_udp_now(), &b.peer), 0);
    T_EQ_INT(p2p_udp_flush(b.u, b.h), 0);
    uint64_t t0 = p2p_udp_now();
    while ((!a.joined || !b.joined) && p2p_udp_now() - t0 < 8000000) {
        pump(&a, 2000);
        pump(&b, 2000);
    }
    uint64_t dt = p2p_udp_now() - t0;
    p2p_udp_stats st;
    p2p_udp_stats_get(a.u, &st);
    if (st.streams_accepted == 0 && !a.joined) {
        printf("     pending: the hub asked for no stream in 8 s (its fallback timer, P4)\n");
        drop_fd = -1;
        node_close(&a);
        node_close(&b);
        return;
    }
    T_CHECK(a.joined && b.joined);
    T_CHECK(dropped > 0);
    T_EQ_INT(st.streams_accepted, 1);
    printf("     %s: %s after %.2f s (%lu UDP datagrams dropped)\n", ws ? "websocket" : "tcp",
           a.joined && b.joined ? "joined over a stream" : "NOT joined", (double)dt / 1e6, dropped);
    if (a.joined && b.joined) {
        for (int i = 0; i < 100; i++) {
            uint8_t m[200];
            memset(m, i, sizeof m);
            T_EQ_INT(p2p_peer_send(b.h, b.peer, 7, m, sizeof m, 0, NULL, p2p_udp_now()), 0);
        }
        T_EQ_INT(p2p_udp_flush(b.u, b.h), 0);
        t0 = p2p_udp_now();
        while (a.got < 100 && p2p_udp_now() - t0 < 5000000) {
            pump(&a, 2000);
            pump(&b, 2000);
        }
        T_EQ_INT(a.got, 100);
        /* both ends name the path the same way: the client that asked for a WebSocket and the
         * listener that accepted the upgrade */
        p2p_peer_stats ps;
        int want = ws ? P2P_PATH_WEBSOCKET : P2P_PATH_TCP;
        T_EQ_INT(p2p_peer_stats_get(b.h, b.peer, &ps), 0);
        T_EQ_INT(ps.path, want);
        T_EQ_INT(p2p_peer_stats_get(a.h, a.peer, &ps), 0);
        T_EQ_INT(ps.path, want);
    }
    drop_fd = -1;
    node_close(&a);
    node_close(&b);
}

static void test_fallback_tcp(void)
{
    fallback(0);
}

static void test_fallback_websocket(void)
{
    fallback(1);
}

/* ---- the same io queue on the simulator ----------------------------------------------- */

struct simnode {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer;
    int joined, got;
};

static struct tap_log {
    int n;
    p2p_addr from[64], to[64];
} taplog;

static void log_tap(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *d, size_t n)
{
    (void)ud;
    (void)d;
    (void)n;
    if (taplog.n < 64) {
        taplog.from[taplog.n] = *from;
        taplog.to[taplog.n] = *to;
    }
    taplog.n++;
}

static struct simnode *simnodes[4];

static void sim_drain(void)
{
    p2p_event ev;
    for (int i = 0; i < 4; i++) {
        struct simnode *n = simnodes[i];
        if (n == NULL || n->h == NULL) continue;
        while (p2p_host_next_event(n->h, &ev)) {
            if (ev.type == P2P_EV_JOIN) {
                n->joined = 1;
                n->peer = ev.peer;
            }
            if (ev.type == P2P_EV_MESSAGE) n->got++;
        }
    }
}

static void sim_run(p2p_sim *s, uint64_t us)
{
    tnet_run_for(s, us, sim_drain);
}

static p2p_sim *sim_make(void)
{
    p2p_sim_config sc;
    p2p_sim *s = NULL;
    memset(&sc, 0, sizeof sc);
    sc.seed = 12;
    sc.latency_us = 10000;
    T_EQ_INT(p2p_sim_new(&s, &sc), 0);
    return s;
}

static void sim_node(p2p_sim *s, struct simnode *n, uint8_t seedb, int nat, const p2p_config *base)
{
    p2p_config c;
    memset(n, 0, sizeof *n);
    if (base != NULL)
        c = *base;
    else
        p2p_config_init(&c);
    T_EQ_INT(tnet_identity(&n->id, seedb, 1), 0);
    T_EQ_INT(tnet_sim_host(s, &c, &n->id, 0, nat, &n->h, &n->addr), 0);
}

static void sim_push(p2p_sim *s, struct simnode *n, int kind, uint16_t count)
{
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = kind;
    io.id = p2p_io_id(n->h);
    io.n = count;
    T_EQ_INT(p2p_io_push(n->h, &io, NULL, 0), 0);
    p2p_sim_flush(s, n->h);
}

static void test_sim_punch_and_ports(void)
{
    p2p_sim *s = sim_make();
    struct simnode a, b;
    p2p_sim_stats st;
    sim_node(s, &a, 1, P2P_SIM_NAT_SYMMETRIC, NULL);
    sim_node(s, &b, 2, P2P_SIM_NAT_NONE, NULL);
    T_EQ_INT(p2p_sim_nat_ports(s, a.h, 20000, 21023), 0);
    T_EQ_INT(p2p_sim_nat_ports(s, a.h, 20000, 20100), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_nat_ports(s, b.h, 20000, 21023), P2P_ERR_INVALID); /* no NAT */
    sim_push(s, &a, P2P_IO_PUNCH_OPEN, 40);
    p2p_sim_set_tap(s, log_tap, NULL);
    memset(&taplog, 0, sizeof taplog);
    /* one datagram out of each punch socket to b: 40 flows, 40 ports in the range */
    for (int k = 1; k <= 40; k++) {
        p2p_addr to = b.addr;
        to.sock = (uint8_t)k;
        T_EQ_INT(p2p_sim_inject(s, a.h, &to, (const uint8_t *)"open", 4), 0);
    }
    p2p_addr to41 = b.addr;
    to41.sock = 41; /* not opened: nothing leaves */
    T_EQ_INT(p2p_sim_inject(s, a.h, &to41, (const uint8_t *)"x", 1), 0);
    sim_run(s, 100000);
    T_EQ_INT(taplog.n, 40);
    int in_range = 0, distinct = 1;
    for (int i = 0; i < 40 && i < taplog.n; i++) {
        if (taplog.from[i].port >= 20000 && taplog.from[i].port <= 21023) in_range++;
        for (int j = 0; j < i; j++)
            if (taplog.from[j].port == taplog.from[i].port) distinct = 0;
    }
    T_EQ_INT(in_range, 40);
    T_CHECK(distinct);
    /* b answers one of them: it comes in (on that punch socket); a port nobody opened is
     * filtered */
    p2p_sim_stats_get(s, &st);
    uint64_t filtered = st.nat_filtered;
    p2p_addr back = taplog.from[7];
    T_EQ_INT(p2p_sim_inject(s, b.h, &back, (const uint8_t *)"hit", 3), 0);
    back.port = back.port == 21023 ? 21022 : (uint16_t)(back.port + 1);
    int taken = 0;
    for (int i = 0; i < 40; i++)
        if (taplog.from[i].port == back.port) taken = 1;
    if (!taken) T_EQ_INT(p2p_sim_inject(s, b.h, &back, (const uint8_t *)"miss", 4), 0);
    memset(&taplog, 0, sizeof taplog);
    sim_run(s, 100000);
    T_EQ_INT(taplog.n, 1);
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.nat_filtered, filtered + (taken ? 0 : 1));
    p2p_host_free(a.h);
    p2p_host_free(b.h);
    p2p_sim_free(s);
}

static int gw_calls;
static size_t fake_gw_udp(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                          size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *rfrom)
{
    (void)ud;
    (void)from;
    (void)in;
    (void)len;
    (void)now;
    gw_calls++;
    if (cap < 4) return 0;
    memcpy(out, "pong", 4);
    *rfrom = *to;
    return 4;
}

static void test_sim_lan_gateway_block(void)
{
    p2p_sim *s = sim_make();
    struct simnode a, b, c, d;
    p2p_sim_stats st;
    p2p_addr group, gwa;
    sim_node(s, &a, 1, P2P_SIM_NAT_CONE, NULL);
    sim_node(s, &b, 2, P2P_SIM_NAT_CONE, NULL);
    sim_node(s, &c, 3, P2P_SIM_NAT_CONE, NULL);
    sim_node(s, &d, 4, P2P_SIM_NAT_NONE, NULL);
    T_EQ_INT(p2p_sim_set_lan(s, a.h, 1), 0);
    T_EQ_INT(p2p_sim_set_lan(s, b.h, 1), 0);
    T_EQ_INT(p2p_sim_set_lan(s, c.h, 2), 0);
    sim_push(s, &a, P2P_IO_LAN_START, 44344);
    sim_push(s, &b, P2P_IO_LAN_START, 44344);
    sim_push(s, &c, P2P_IO_LAN_START, 44344);
    memset(&group, 0, sizeof group);
    group.family = P2P_AF_INET4;
    group.ip[0] = 239, group.ip[1] = 255, group.ip[2] = 112, group.ip[3] = 112;
    group.port = 44344;
    T_EQ_INT(p2p_lan_tx_push(a.h, &group, (const uint8_t *)"beacon", 6), 0);
    p2p_sim_flush(s, a.h);
    sim_run(s, 10000);
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.lan_datagrams, 2); /* a (loop) and b; not c, another domain */
    /* a reaches b's private address directly; c cannot */
    p2p_sim_set_tap(s, log_tap, NULL);
    memset(&taplog, 0, sizeof taplog);
    T_EQ_INT(p2p_sim_inject(s, a.h, &b.addr, (const uint8_t *)"hi", 2), 0);
    T_EQ_INT(p2p_sim_inject(s, c.h, &b.addr, (const uint8_t *)"hi", 2), 0);
    sim_run(s, 10000);
    T_EQ_INT(taplog.n, 1);
    T_CHECK(p2p_addr_equal(&taplog.from[0], &a.addr));
    /* a gateway on a's LAN answers on the LAN */
    p2p_sim_gateway gw;
    memset(&gw, 0, sizeof gw);
    gw.lan.family = P2P_AF_INET4;
    gw.lan.ip[0] = 10, gw.lan.ip[1] = 200, gw.lan.ip[3] = 1;
    gw.udp = fake_gw_udp;
    T_EQ_INT(p2p_sim_set_gateway(s, a.h, &gw), 0);
    gwa = gw.lan;
    gwa.port = 5351;
    memset(&taplog, 0, sizeof taplog);
    T_EQ_INT(p2p_sim_inject(s, a.h, &gwa, (const uint8_t *)"map?", 4), 0);
    sim_run(s, 10000);
    T_EQ_INT(gw_calls, 1);
    T_EQ_INT(taplog.n, 1);
    T_CHECK(p2p_addr_equal(&taplog.from[0], &gwa));
    /* UDP blocked at a's router: nothing out, nothing in */
    T_EQ_INT(p2p_sim_block_udp(s, a.h, 1), 0);
    T_EQ_INT(p2p_sim_inject(s, a.h, &d.addr, (const uint8_t *)"x", 1), 0);
    p2p_addr apub;
    T_EQ_INT(p2p_sim_public_addr(s, a.h, &apub), 0);
    apub.port = a.addr.port;
    T_EQ_INT(p2p_sim_inject(s, d.h, &apub, (const uint8_t *)"y", 1), 0);
    memset(&taplog, 0, sizeof taplog);
    sim_run(s, 50000);
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.udp_blocked, 2);
    T_EQ_INT(taplog.n, 0);
    T_EQ_INT(p2p_sim_block_udp(s, a.h, 0), 0);
    p2p_host_free(a.h);
    p2p_host_free(b.h);
    p2p_host_free(c.h);
    p2p_host_free(d.h);
    p2p_sim_free(s);
}

/* A's router blocks UDP; A connects to the mediator M, which listens on TCP: the hub falls
 * back to a stream (after 2 s of silence), the session joins over it and carries 100
 * messages in order. */
static void test_sim_stream_fallback(void)
{
    p2p_sim *s = sim_make();
    struct simnode m, a;
    p2p_sim_stats st;
    sim_node(s, &m, 1, P2P_SIM_NAT_NONE, NULL);
    sim_node(s, &a, 2, P2P_SIM_NAT_CONE, NULL);
    simnodes[0] = &m;
    simnodes[1] = &a;
    T_EQ_INT(p2p_sim_listen_tcp(s, m.h, 0, 1), 0);
    T_EQ_INT(p2p_sim_block_udp(s, a.h, 1), 0);
    sim_run(s, 1000000); /* not at time 0: the hub reads a time of 0 as "not yet" */
    T_EQ_INT(p2p_host_connect(a.h, &m.addr, p2p_host_id(m.h), p2p_sim_now(s), &a.peer), 0);
    p2p_sim_flush(s, a.h);
    sim_run(s, 6000000);
    p2p_sim_stats_get(s, &st);
    if (st.io_requests == 0) {
        printf("     pending: the hub asked for no stream in 6 s (its fallback timer, P4)\n");
    } else {
        T_CHECK(a.joined && m.joined);
        printf("     joined over a stream: %s (udp blocked %llu, io %llu)\n",
               a.joined && m.joined ? "yes" : "no", (unsigned long long)st.udp_blocked,
               (unsigned long long)st.io_requests);
        if (a.joined) {
            for (int i = 0; i < 100; i++) {
                uint8_t msg[300];
                memset(msg, i, sizeof msg);
                T_EQ_INT(p2p_peer_send(a.h, a.peer, 7, msg, sizeof msg, 0, NULL, p2p_sim_now(s)),
                         0);
            }
            p2p_sim_flush(s, a.h);
            sim_run(s, 3000000);
            T_EQ_INT(m.got, 100);
            p2p_sim_stats_get(s, &st);
            T_CHECK(st.stream_datagrams > 10);
        }
    }
    simnodes[0] = simnodes[1] = NULL;
    p2p_host_free(a.h);
    p2p_host_free(m.h);
    p2p_sim_free(s);
}

int main(void)
{
    setup_netns();
    printf("     %s\n", in_netns ? "in a network namespace of its own" : "no network namespace");
    T_RUN(test_epoll_fd);
    T_RUN(test_punch_sockets);
    T_RUN(test_punch_rlimit);
    T_RUN(test_lan_socket);
    T_RUN(test_lan_socket6);
    T_RUN(test_gateway);
    T_RUN(test_stream_server);
    T_RUN(test_stream_refusals);
    T_RUN(test_stream_caps);
    T_RUN(test_http);
    T_RUN(test_stun_responder);
    T_RUN(test_fallback_tcp);
    T_RUN(test_fallback_websocket);
    T_RUN(test_sim_punch_and_ports);
    T_RUN(test_sim_lan_gateway_block);
    T_RUN(test_sim_stream_fallback);
    return t_summary("test_udp_io");
}
