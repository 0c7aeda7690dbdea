/* test_birthday.c - hard-NAT punching (docs/PROTOCOL.md section 8.3, design 12 section 5) on a
 * small network of this test's own: the simulator gives a host one socket, and a birthday round
 * needs punch sockets (P2P_IO_PUNCH_OPEN), so this file drives the hosts by hand.
 *
 * Two public mediators M1, M2; A behind a port-randomizing NAT (a new external port, from the
 * NAT's range, for every socket and destination: MASQUERADE --random-fully); B behind a cone NAT
 * (the internal port kept); both filter address-and-port dependently. A and B register with both
 * mediators (so each learns its mapping from the two reports), A connects to B by id through
 * M1: punching fails, the relay joins, the PUNCH INFOs make A the hard side, and the round must
 * bring the session to a direct path. Then both behind randomizing NATs: stay relayed,
 * strategy "relay". */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "tnet.h"

#define SEC UINT64_C(1000000)
#define MS UINT64_C(1000)
#define MAXQ 8192
#define NH 4
#define MAXFLOW 2048
#define EPOCH_US UINT64_C(1700000000000000)

enum { NAT_NONE, NAT_CONE, NAT_RANDOM };

typedef struct flow {
    uint8_t sock;    /* the host's socket */
    p2p_addr remote; /* where it sent (the filter admits only this source) */
    uint16_t ext;    /* the NAT's external port */
} flow;

typedef struct host {
    p2p_host *h;
    p2p_identity id;
    int nat;
    p2p_addr pub;  /* public ip:port of socket 0 (the NAT's IP for NATed hosts) */
    p2p_addr priv; /* bound address behind a NAT */
    flow flows[MAXFLOW];
    int nflows;
    uint8_t open[256]; /* punch sockets open */
    int joins, punch_open_calls;
} host;

typedef struct pkt {
    uint64_t at;
    int to;
    p2p_addr from; /* as the receiver sees it, sock = its socket */
    size_t len;
    uint8_t data[P2P_MAX_PACKET_PROBED];
} pkt;

static host hs[NH];
static pkt *q;
static size_t nq;
static uint64_t t;
static uint64_t rng = 1;
static uint16_t lo = 20000, range = 4096; /* the randomizing NAT's port range */

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int same_ip(const p2p_addr *a, const p2p_addr *b)
{
    return a->family == b->family && memcmp(a->ip, b->ip, 4) == 0;
}

/* The external port for socket s of host x towards `to`, made when missing. */
static uint16_t nat_out(host *x, uint8_t s, const p2p_addr *to)
{
    for (int i = 0; i < x->nflows; i++) {
        flow *f = &x->flows[i];
        if (f->sock == s && (x->nat == NAT_CONE || p2p_addr_equal(&f->remote, to))) {
            if (x->nat == NAT_CONE && !p2p_addr_equal(&f->remote, to)) continue;
            return f->ext;
        }
    }
    uint16_t ext;
    if (x->nat == NAT_CONE) {
        ext = (uint16_t)(x->priv.port + s);
    } else {
        int used;
        do {
            ext = (uint16_t)(lo + rnd() % range);
            used = 0;
            for (int i = 0; i < x->nflows; i++) used |= x->flows[i].ext == ext;
        } while (used);
    }
    if (x->nflows < MAXFLOW) {
        flow *f = &x->flows[x->nflows++];
        f->sock = s;
        f->remote = *to;
        f->remote.sock = 0;
        f->ext = ext;
    }
    return ext;
}

/* The socket behind external port `port` for a datagram from `from`, or -1 (filtered). */
static int nat_in(host *x, uint16_t port, const p2p_addr *from)
{
    for (int i = 0; i < x->nflows; i++) {
        flow *f = &x->flows[i];
        if (f->ext == port && p2p_addr_equal(&f->remote, from)) return f->sock;
    }
    return -1;
}

static uint64_t dbg_sock_sent, dbg_sock_recv, dbg_filtered, dbg_to_a_ip;
static void send_dgram(int i, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    host *x = &hs[i];
    uint8_t s = to->sock;
    if (s) dbg_sock_sent++;
    if (i == 3 && same_ip(to, &hs[2].pub)) dbg_to_a_ip++;
    if (s && !x->open[s]) return; /* a closed socket */
    p2p_addr dst = *to;
    dst.sock = 0;
    p2p_addr src = x->pub;
    src.sock = 0;
    if (x->nat != NAT_NONE) src.port = nat_out(x, s, &dst);
    for (int j = 0; j < NH; j++) {
        host *y = &hs[j];
        if (j == i || !y->h || !same_ip(&y->pub, &dst)) continue;
        int rs;
        if (y->nat == NAT_NONE)
            rs = dst.port == y->pub.port ? 0 : -1;
        else
            rs = nat_in(y, dst.port, &src);
        if (rs < 0) dbg_filtered++;
        if (rs > 0) dbg_sock_recv++;
        if (rs < 0 || nq >= MAXQ) return;
        pkt *p = &q[nq++];
        p->at = t + 10 * MS + rnd() % (2 * MS);
        p->to = j;
        p->from = src;
        p->from.sock = (uint8_t)rs;
        p->len = len;
        memcpy(p->data, buf, len);
        return;
    }
}

static void io(int i)
{
    p2p_io req;
    while (p2p_host_next_io(hs[i].h, &req)) {
        p2p_io_result r;
        memset(&r, 0, sizeof r);
        r.kind = req.kind;
        r.id = req.id;
        if (req.kind == P2P_IO_PUNCH_OPEN) {
            hs[i].punch_open_calls++;
            for (int s = 1; s < 256 && r.n < req.n; s++)
                if (!hs[i].open[s]) {
                    hs[i].open[s] = 1;
                    r.socks[r.n++] = (uint8_t)s;
                }
        } else if (req.kind == P2P_IO_PUNCH_CLOSE) {
            if (req.addr.sock)
                hs[i].open[req.addr.sock] = 0;
            else
                memset(hs[i].open, 0, sizeof hs[i].open);
            continue;
        } else {
            r.status = P2P_ERR_IO;
        }
        p2p_host_io_done(hs[i].h, &r, t);
    }
}

static void flush(int i)
{
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    size_t len;
    p2p_event ev;
    for (int more = 1; more;) {
        more = 0;
        while (p2p_host_next_event(hs[i].h, &ev)) {
            if (ev.type == P2P_EV_JOIN) hs[i].joins++;
        }
        while ((len = p2p_host_next_datagram(hs[i].h, &to, buf, sizeof buf)) > 0) {
            send_dgram(i, &to, buf, len);
            more = 1;
        }
        p2p_io req;
        (void)req;
        size_t before = nq;
        io(i);
        more |= nq != before;
    }
}

static void run(uint64_t us)
{
    uint64_t end = t + us;
    for (;;) {
        uint64_t next = end;
        size_t k = MAXQ;
        for (size_t i = 0; i < nq; i++)
            if (q[i].at <= next) {
                next = q[i].at;
                k = i;
            }
        int ti = -1;
        for (int i = 0; i < NH; i++) {
            if (!hs[i].h) continue;
            uint64_t tm = p2p_host_next_timeout(hs[i].h);
            if (tm < next || (tm == next && k == MAXQ && tm <= end)) {
                next = tm;
                k = MAXQ;
                ti = i;
            }
        }
        if (next > end) break;
        if (next > t) t = next;
        if (k < MAXQ) {
            pkt p = q[k];
            q[k] = q[--nq];
            p2p_host_recv(hs[p.to].h, &p.from, p.data, p.len, t);
            flush(p.to);
        } else if (ti >= 0) {
            p2p_host_on_timeout(hs[ti].h, t);
            flush(ti);
        } else {
            break;
        }
    }
    t = end;
}

static void add_host(int i, int nat, const char *pub, const char *priv, int mediator)
{
    host *x = &hs[i];
    memset(x, 0, sizeof *x);
    x->nat = nat;
    p2p_addr_parse(&x->pub, pub);
    p2p_addr_parse(&x->priv, priv ? priv : pub);
    tnet_identity(&x->id, 0x42, (uint8_t)(i + 1));
    p2p_config c;
    p2p_config_init(&c);
    c.identity = &x->id;
    c.seed = rnd() | 1;
    c.mediator = mediator;
    c.unix_us = EPOCH_US + t;
    T_EQ_INT(p2p_host_new(&x->h, &c, t), 0);
    p2p_host_add_address(x->h, &x->priv, t);
}

static void stop_all(void)
{
    for (int i = 0; i < NH; i++) {
        p2p_host_free(hs[i].h);
        p2p_identity_wipe(&hs[i].id);
        hs[i].h = NULL;
    }
    nq = 0;
}

static p2p_peer_stats pstats(int i, int j)
{
    p2p_peer_stats ps;
    memset(&ps, 0, sizeof ps);
    p2p_peer_stats_get(hs[i].h, p2p_host_find(hs[i].h, hs[j].id.ed_pk), &ps);
    return ps;
}

static int connected(int i, int j)
{
    return pstats(i, j).state == P2P_PEER_CONNECTED;
}

static void join(int i, int j)
{
    T_EQ_INT(p2p_host_connect(hs[i].h, &hs[j].pub, hs[j].id.ed_pk, t, NULL), 0);
    flush(i);
}

/* One run: M1, M2, A (nat_a), B (nat_b). Returns 1 when A and B ended direct within 10 s of
 * the connect; *probes: the spray probes B (or A) sent. */
static int one_run(uint64_t seed, int nat_a, int nat_b, uint64_t *probes, int *strategy)
{
    rng = seed * 0x9e3779b97f4a7c15ull | 1;
    t = 0;
    add_host(0, NAT_NONE, "192.0.2.1:4000", NULL, 1);
    add_host(1, NAT_NONE, "192.0.2.2:4000", NULL, 1);
    add_host(2, nat_a, "198.51.100.1:4000", "10.0.0.2:4000", 0);
    add_host(3, nat_b, "203.0.113.1:4000", "10.0.1.2:4000", 0);
    for (int m = 0; m < 2; m++) {
        join(2, m);
        join(3, m);
    }
    run(SEC);
    p2p_nat_info na, nb;
    p2p_host_nat(hs[2].h, &na);
    p2p_host_nat(hs[3].h, &nb);
    T_EQ_INT(na.mapping, nat_a == NAT_RANDOM ? P2P_MAPPING_DEPENDENT : P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(nb.mapping, nat_b == NAT_RANDOM ? P2P_MAPPING_DEPENDENT : P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(p2p_host_connect_via(hs[2].h, hs[3].id.ed_pk, &hs[0].pub, t, NULL), 0);
    flush(2);
    uint64_t start = t;
    int direct = 0;
    while (t - start < 10 * SEC && !direct) {
        run(50 * MS);
        direct = connected(2, 3) && connected(3, 2) && pstats(2, 3).direct && pstats(3, 2).direct;
    }
    int both = connected(2, 3) && connected(3, 2);
    T_CHECK(both);
    p2p_peer_stats pa = pstats(2, 3), pb = pstats(3, 2);
    *probes = pa.punch_probes + pb.punch_probes;
    *strategy = pb.strategy;
    if (direct) {
        /* it stays direct, and carries messages */
        for (int k = 0; k < 10; k++) {
            uint8_t msg[100] = {0};
            p2p_peer_send(hs[2].h, p2p_host_find(hs[2].h, hs[3].id.ed_pk), 7, msg, sizeof msg, 0,
                          NULL, t);
            flush(2);
            run(100 * MS);
        }
        direct = pstats(2, 3).direct && pstats(3, 2).direct;
        T_CHECK(pstats(2, 3).address.sock != 0); /* A (hard side) on its punch socket */
        int open = 0;
        for (int s = 1; s < 256; s++) open += hs[2].open[s];
        T_EQ_INT(open, 1); /* the others closed */
        T_EQ_INT(hs[2].punch_open_calls, 1);
    }
    if (getenv("DBG"))
        printf("sock_sent %llu sock_recv %llu filtered %llu e->a %llu\n",
               (unsigned long long)dbg_sock_sent, (unsigned long long)dbg_sock_recv,
               (unsigned long long)dbg_filtered, (unsigned long long)dbg_to_a_ip);
    printf("     seed %llu: %s after %.2f s, %llu probes\n", (unsigned long long)seed,
           direct ? "direct"
           : both ? "relayed"
                  : "not connected",
           (double)(t - start) / SEC, (unsigned long long)*probes);
    stop_all();
    return direct;
}

static void test_birthday_twenty(void)
{
    q = calloc(MAXQ, sizeof *q);
    int direct = 0;
    uint64_t total = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        uint64_t probes = 0;
        int strategy = -1;
        direct += one_run(seed, NAT_RANDOM, NAT_CONE, &probes, &strategy);
        T_EQ_INT(strategy, P2P_STRATEGY_BIRTHDAY);
        total += probes;
    }
    printf("     %d of 20 direct, %llu probes in all\n", direct, (unsigned long long)total);
    T_CHECK(direct >= 18);
    free(q);
}

static void test_both_random_relay(void)
{
    q = calloc(MAXQ, sizeof *q);
    uint64_t probes = 0;
    int strategy = -1;
    T_EQ_INT(one_run(77, NAT_RANDOM, NAT_RANDOM, &probes, &strategy), 0);
    T_EQ_INT(strategy, P2P_STRATEGY_RELAY);
    T_EQ_INT(probes, 0);
    free(q);
}

/* ---- the same on the simulator (its punch sockets and NAT port range, driver/sim.c) ---- */

static int sim_run(uint64_t seed, int nat_a, int nat_b, uint64_t *probes, int *strategy)
{
    p2p_sim *sim;
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = 10 * MS;
    sc.jitter_us = 2 * MS;
    T_EQ_INT(p2p_sim_new(&sim, &sc), 0);
    p2p_host *h[4];
    p2p_identity id[4];
    p2p_addr addr[4];
    int nats[4] = {P2P_SIM_NAT_NONE, P2P_SIM_NAT_NONE, nat_a, nat_b};
    for (int i = 0; i < 4; i++) {
        tnet_identity(&id[i], 0x62, (uint8_t)(i + 1));
        p2p_config c;
        p2p_config_init(&c);
        c.mediator = i < 2;
        c.unix_us = EPOCH_US;
        c.portmap_off = 1;
        T_EQ_INT(tnet_sim_host(sim, &c, &id[i], 0, nats[i], &h[i], &addr[i]), 0);
        p2p_host_add_address(h[i], &addr[i], 0);
    }
    for (int i = 2; i < 4; i++)
        if (nats[i] == P2P_SIM_NAT_SYMMETRIC)
            T_EQ_INT(p2p_sim_nat_ports(sim, h[i], lo, lo + range - 1), 0);
    for (int i = 2; i < 4; i++)
        for (int m = 0; m < 2; m++) {
            T_EQ_INT(p2p_host_connect(h[i], &addr[m], id[m].ed_pk, p2p_sim_now(sim), NULL), 0);
            p2p_sim_flush(sim, h[i]);
        }
    uint64_t end = p2p_sim_now(sim) + SEC;
    while (p2p_sim_step(sim, end)) {
    }
    T_EQ_INT(p2p_host_connect_via(h[2], id[3].ed_pk, &addr[0], p2p_sim_now(sim), NULL), 0);
    p2p_sim_flush(sim, h[2]);
    uint64_t start = p2p_sim_now(sim);
    int direct = 0;
    p2p_peer_stats pa, pb;
    while (p2p_sim_now(sim) - start < 10 * SEC && !direct) {
        end = p2p_sim_now(sim) + 50 * MS;
        while (p2p_sim_step(sim, end)) {
            p2p_event ev;
            for (int i = 0; i < 4; i++)
                while (p2p_host_next_event(h[i], &ev)) {
                }
        }
        memset(&pa, 0, sizeof pa);
        memset(&pb, 0, sizeof pb);
        p2p_peer_stats_get(h[2], p2p_host_find(h[2], id[3].ed_pk), &pa);
        p2p_peer_stats_get(h[3], p2p_host_find(h[3], id[2].ed_pk), &pb);
        direct = pa.state == P2P_PEER_CONNECTED && pb.state == P2P_PEER_CONNECTED && pa.direct &&
                 pb.direct;
    }
    T_CHECK(pa.state == P2P_PEER_CONNECTED && pb.state == P2P_PEER_CONNECTED);
    *probes = pa.punch_probes + pb.punch_probes;
    *strategy = pb.strategy;
    printf("     sim seed %llu: %s after %.2f s, %llu probes\n", (unsigned long long)seed,
           direct ? "direct" : "relayed", (double)(p2p_sim_now(sim) - start) / SEC,
           (unsigned long long)*probes);
    for (int i = 0; i < 4; i++) {
        p2p_host_free(h[i]);
        p2p_identity_wipe(&id[i]);
    }
    p2p_sim_free(sim);
    return direct;
}

static void test_birthday_sim(void)
{
    int direct = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        uint64_t probes = 0;
        int strategy = -1;
        direct += sim_run(seed, P2P_SIM_NAT_SYMMETRIC, P2P_SIM_NAT_CONE, &probes, &strategy);
        T_EQ_INT(strategy, P2P_STRATEGY_BIRTHDAY);
    }
    printf("     simulator: %d of 20 direct\n", direct);
    T_CHECK(direct >= 18);
    uint64_t probes = 0;
    int strategy = -1;
    T_EQ_INT(sim_run(99, P2P_SIM_NAT_SYMMETRIC, P2P_SIM_NAT_SYMMETRIC, &probes, &strategy), 0);
    T_EQ_INT(strategy, P2P_STRATEGY_RELAY);
    T_EQ_INT(probes, 0);
}

int main(void)
{
    p2p_init();
    setvbuf(stdout, NULL, _IOLBF, 0);
    T_RUN(test_birthday_twenty);
    T_RUN(test_both_random_relay);
    T_RUN(test_birthday_sim);
    return t_summary("test_birthday");
}
