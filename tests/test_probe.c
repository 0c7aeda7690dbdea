/* test_probe.c - the STUN client (csrc/p2p_probe.c, design12 sections 3.1 and 4.2) against
 * the simulated STUN server of csrc/driver/sim_gw.c (coturn's RFC 5780 behaviour: two IPs,
 * two ports, OTHER-ADDRESS). The test is the host's driver and its NAT: cone (one external
 * port for every destination), symmetric (a new port for every destination) or none. */
#include "t.h"
#include "driver/sim.h"
#include "driver/sim_gw.h"
#include "simnet.h"
#include "p2p_stun.h"

#include <stdlib.h>

#define SEC UINT64_C(1000000)
#define MSEC UINT64_C(1000)
#define LAT (5 * MSEC)
#define PORT 4000

enum { NAT_NONE, NAT_CONE, NAT_SYM };

typedef struct net {
    p2p_host *h;
    p2p_identity id;
    int nat;
    p2p_sim_stun *srv[2];
    int nsrv;
    int silent; /* the servers drop everything */
    p2p_addr host, ext;
    p2p_addr dests[16]; /* symmetric NAT: one external port per destination */
    int ndests;
    uint64_t now;
    simnet_queue w; /* datagrams on their way to the host */
    int sent_stun, sent_other;
    uint8_t last_txid[12];
    p2p_addr last_to;
} net;

/* nsrv servers: with alt, one coturn-like server 192.0.2.2:3478 / 192.0.2.3:3479; without,
 * plain servers at 192.0.2.2:3478 and 192.0.2.18:3478. */
static void net_up(net *n, int nat, int nsrv, int alt)
{
    memset(n, 0, sizeof *n);
    n->now = 1000 * SEC;
    n->nat = nat;
    if (nat == NAT_NONE)
        simnet_ip4(&n->host, 11, 0, 1, 2, PORT);
    else
        simnet_ip4(&n->host, 10, 0, 1, 2, PORT);
    simnet_ip4(&n->ext, 11, 0, 1, 2, PORT);
    p2p_addr p, a;
    simnet_ip4(&p, 192, 0, 2, 2, 3478);
    simnet_ip4(&a, 192, 0, 2, 3, 3479);
    n->srv[0] = p2p_sim_stun_new(&p, alt ? &a : NULL);
    n->nsrv = 1;
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.stun[0] = p;
    cfg.nstun = 1;
    if (nsrv == 2) {
        simnet_ip4(&p, 192, 0, 2, 18, 3478);
        n->srv[1] = p2p_sim_stun_new(&p, NULL);
        n->nsrv = 2;
        cfg.stun[1] = p;
        cfg.nstun = 2;
    }
    if (nsrv == 0) cfg.nstun = 0;
    uint8_t seed[32];
    memset(seed, 9, sizeof seed);
    T_EQ_INT(p2p_identity_from_seed(&n->id, seed), 0);
    cfg.identity = &n->id;
    cfg.seed = 77;
    cfg.portmap_off = 1;
    T_EQ_INT(p2p_host_new(&n->h, &cfg, n->now), 0);
    T_EQ_INT(p2p_host_add_address(n->h, &n->host, n->now), 0);
}

static void net_down(net *n)
{
    p2p_host_free(n->h);
    p2p_sim_stun_free(n->srv[0]);
    p2p_sim_stun_free(n->srv[1]);
    p2p_identity_wipe(&n->id);
}

/* The host's source address as the world sees it when it sends to `to`. */
static void translate(net *n, const p2p_addr *to, p2p_addr *src)
{
    *src = n->nat == NAT_NONE ? n->host : n->ext;
    if (n->nat != NAT_SYM) return;
    int i;
    for (i = 0; i < n->ndests; i++)
        if (p2p_addr_equal(&n->dests[i], to)) break;
    if (i == n->ndests && n->ndests < 16) n->dests[n->ndests++] = *to;
    src->port = (uint16_t)(30001 + i * 7919 % 20000);
}

/* The driver fails every request. */
static void on_io(void *ctx, const p2p_io *io)
{
    net *n = ctx;
    p2p_io_result r;
    memset(&r, 0, sizeof r);
    r.kind = io->kind;
    r.id = io->id;
    r.status = P2P_ERR_IO;
    p2p_host_io_done(n->h, &r, n->now);
}

/* Counts what the host sent; through the NAT, the servers answer after LAT. */
static void on_datagram(void *ctx, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    net *n = ctx;
    if (len >= 20 && buf[4] == 0x21 && buf[5] == 0x12 && buf[6] == 0xa4 && buf[7] == 0x42) {
        n->sent_stun++;
        memcpy(n->last_txid, buf + 8, 12);
        n->last_to = *to;
    } else {
        n->sent_other++;
    }
    if (n->silent) return;
    p2p_addr src, from;
    translate(n, to, &src);
    for (int s = 0; s < n->nsrv; s++) {
        uint8_t out[512];
        size_t rl = p2p_sim_stun_udp(n->srv[s], &src, to, buf, len, out, sizeof out, &from);
        if (rl) simnet_later(&n->w, n->now + LAT, &from, out, rl);
    }
}

static void drain(net *n)
{
    simnet_drain(n->h, &(simnet_driver){on_io, on_datagram, n});
}

static void run(net *n, uint64_t until)
{
    simnet_run(n->h, &n->w, &n->now, until, &(simnet_driver){on_io, on_datagram, n});
}

static int stun_addr(net *n, p2p_addr *out)
{
    return simnet_own_addr(n->h, P2P_ADDR_STUN, out);
}

static int mapping(net *n, int *source)
{
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(n->h, &info);
    if (source) *source = info.source;
    return info.mapping;
}

static void test_cone_independent(void)
{
    net n;
    net_up(&n, NAT_CONE, 1, 1);
    run(&n, n.now + 5 * SEC);
    p2p_addr a;
    T_CHECK(stun_addr(&n, &a));
    T_CHECK(p2p_addr_equal(&a, &n.ext));
    int src = -1;
    T_EQ_INT(mapping(&n, &src), P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(src, P2P_MAPSRC_STUN);
    T_EQ_INT(n.sent_stun, 3); /* tests I, II, III, each answered at once */
    p2p_stats st;
    p2p_host_stats(n.h, &st);
    T_EQ_INT(st.stun_sent, 3);
    T_EQ_INT(st.stun_received, 3);
    T_EQ_INT(p2p_sim_stun_answered(n.srv[0]), 3);
    net_down(&n);
}

static void test_symmetric_dependent(void)
{
    net n;
    net_up(&n, NAT_SYM, 1, 1);
    run(&n, n.now + 5 * SEC);
    p2p_addr a;
    T_CHECK(stun_addr(&n, &a));
    T_EQ_MEM(a.ip, n.ext.ip, 4);
    T_CHECK(a.port != PORT); /* the NAT's port for the primary server */
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_DEPENDENT);
    T_EQ_INT(n.sent_stun, 3);
    net_down(&n);
}

static void test_two_servers(void)
{
    net n;
    net_up(&n, NAT_CONE, 2, 0);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(n.sent_stun, 2); /* test I to each, no OTHER-ADDRESS */
    net_down(&n);
    net_up(&n, NAT_SYM, 2, 0);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_DEPENDENT);
    net_down(&n);
    /* one server without OTHER-ADDRESS: nothing to compare with */
    net_up(&n, NAT_SYM, 1, 0);
    run(&n, n.now + 5 * SEC);
    p2p_addr a;
    T_CHECK(stun_addr(&n, &a));
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_UNKNOWN);
    net_down(&n);
}

static void test_no_nat(void)
{
    net n;
    net_up(&n, NAT_NONE, 1, 1);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_NONE);
    net_down(&n);
}

/* A silent server: 3 tries (0, 0.5, 1.5 s), then nothing until the network changes. */
static void test_silent(void)
{
    net n;
    net_up(&n, NAT_CONE, 1, 1);
    n.silent = 1;
    run(&n, n.now + 1400 * MSEC);
    T_EQ_INT(n.sent_stun, 2);
    run(&n, n.now + 200 * MSEC);
    T_EQ_INT(n.sent_stun, 3);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(n.sent_stun, 3);
    T_EQ_INT(n.sent_other, 0);
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_UNKNOWN);
    p2p_addr a;
    T_CHECK(!stun_addr(&n, &a));
    p2p_host_network_changed(n.h, n.now);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(n.sent_stun, 6);
    net_down(&n);
}

/* One test I per server every 5 minutes while the node has no peer. */
static void test_refresh(void)
{
    net n;
    net_up(&n, NAT_CONE, 2, 0);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(n.sent_stun, 2);
    run(&n, n.now + 300 * SEC);
    T_EQ_INT(n.sent_stun, 4);
    run(&n, n.now + 3000 * SEC);
    T_EQ_INT(n.sent_stun, 24);
    T_EQ_INT(mapping(&n, NULL), P2P_MAPPING_INDEPENDENT);
    net_down(&n);
}

/* An answer counts only from the address the request went to and with its transaction id;
 * the hub drops the rest. */
static void test_spoofed(void)
{
    net n;
    net_up(&n, NAT_CONE, 1, 1);
    n.silent = 1;
    run(&n, n.now + 10 * MSEC);
    T_EQ_INT(n.sent_stun, 1);
    /* an answer made by the server for the request, delivered from elsewhere */
    uint8_t req[28], out[256];
    size_t rl;
    p2p_addr src, from, srv, liar;
    simnet_ip4(&srv, 192, 0, 2, 2, 3478);
    simnet_ip4(&liar, 192, 0, 2, 99, 3478);
    translate(&n, &srv, &src);
    T_EQ_INT(p2p_stun_request(req, sizeof req, n.last_txid, 0), 28);
    rl = p2p_sim_stun_udp(n.srv[0], &src, &srv, req, sizeof req, out, sizeof out, &from);
    T_CHECK(rl > 0);
    p2p_stats before, after;
    p2p_host_stats(n.h, &before);
    p2p_host_recv(n.h, &liar, out, rl, n.now);
    /* from the server, but another transaction id */
    out[8] ^= 1;
    p2p_host_recv(n.h, &srv, out, rl, n.now);
    drain(&n);
    p2p_host_stats(n.h, &after);
    T_EQ_INT(after.dropped - before.dropped, 2);
    T_EQ_INT(after.stun_received, 0);
    p2p_addr a;
    T_CHECK(!stun_addr(&n, &a));
    /* the real one is taken */
    out[8] ^= 1;
    p2p_host_recv(n.h, &srv, out, rl, n.now);
    drain(&n);
    T_CHECK(stun_addr(&n, &a));
    net_down(&n);
}

static void test_off(void)
{
    net n;
    net_up(&n, NAT_CONE, 0, 0);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(n.sent_stun + n.sent_other, 0);
    net_down(&n);
}

/* On the simulator (driver/sim.c, the STUN server as a p2p_sim_server): behind a cone NAT the
 * mapping is independent, behind a randomizing one dependent. */
static int sim_mapping(int nat, p2p_addr *stun_out)
{
    p2p_sim *sim;
    p2p_sim_config c;
    memset(&c, 0, sizeof c);
    c.seed = 11;
    c.latency_us = 8000;
    T_EQ_INT(p2p_sim_new(&sim, &c), 0);
    p2p_addr p, alt;
    simnet_ip4(&p, 192, 0, 2, 200, 3478);
    simnet_ip4(&alt, 192, 0, 2, 201, 3479);
    p2p_sim_stun *srv = p2p_sim_stun_new(&p, &alt);
    p2p_sim_server ss;
    memset(&ss, 0, sizeof ss);
    ss.ud = srv;
    ss.naddr = p2p_sim_stun_addresses(srv, ss.addr);
    ss.udp = p2p_sim_stun_udp_ud;
    T_EQ_INT(p2p_sim_add_server(sim, &ss), 0);
    p2p_identity id;
    uint8_t seed[32];
    memset(seed, 3, sizeof seed);
    p2p_identity_from_seed(&id, seed);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &id;
    cfg.seed = p2p_sim_host_seed(sim);
    cfg.portmap_off = 1;
    cfg.stun[0] = p;
    cfg.nstun = 1;
    p2p_host *h;
    T_EQ_INT(p2p_host_new(&h, &cfg, 0), 0);
    p2p_addr local;
    T_EQ_INT(p2p_sim_attach(sim, h, 4000, nat, &local), 0);
    T_EQ_INT(p2p_host_add_address(h, &local, 0), 0); /* as the UDP driver does */
    p2p_sim_flush(sim, h);
    uint64_t until = 5 * SEC;
    p2p_event ev;
    while (p2p_sim_next_time(sim) <= until) {
        p2p_sim_step(sim, until);
        while (p2p_host_next_event(h, &ev)) {
        }
    }
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(h, &info);
    p2p_addr a[16];
    int k[16];
    size_t n = p2p_host_addresses(h, a, k, 16);
    memset(stun_out, 0, sizeof *stun_out);
    for (size_t i = 0; i < n && i < 16; i++)
        if (k[i] == P2P_ADDR_STUN) *stun_out = a[i];
    T_EQ_INT(p2p_sim_stun_answered(srv), 3);
    p2p_host_free(h);
    p2p_sim_free(sim);
    p2p_sim_stun_free(srv);
    p2p_identity_wipe(&id);
    return info.mapping;
}

static void test_on_sim(void)
{
    p2p_addr s;
    T_EQ_INT(sim_mapping(P2P_SIM_NAT_CONE, &s), P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(s.family, P2P_AF_INET4);
    T_EQ_INT(s.port, 4000);
    T_EQ_INT(sim_mapping(P2P_SIM_NAT_SYMMETRIC, &s), P2P_MAPPING_DEPENDENT);
    T_EQ_INT(s.family, P2P_AF_INET4);
    T_EQ_INT(sim_mapping(P2P_SIM_NAT_NONE, &s), P2P_MAPPING_NONE);
}

/* The simulated server itself, against the coturn capture of design12 section 3.1 (its
 * attribute order and values, for a request without FINGERPRINT). */
static void test_sim_stun(void)
{
    p2p_addr p, a, from, src, to;
    simnet_ip4(&p, 192, 0, 2, 2, 3478);
    simnet_ip4(&a, 192, 0, 2, 3, 3479);
    simnet_ip4(&src, 198, 51, 100, 2, 63314);
    p2p_sim_stun *s = p2p_sim_stun_new(&p, &a);
    p2p_addr l[4];
    T_EQ_INT(p2p_sim_stun_addresses(s, l), 4);
    uint8_t req[20], out[256];
    t_from_hex(req, "000100002112a442000102030405060708090a0b");
    T_EQ_INT(p2p_sim_stun_udp(s, &src, &p, req, 20, out, sizeof out, &from), 68);
    T_EQ_HEX(out, "010100302112a442000102030405060708090a0b"
                  "002000080001d640e721c040" /* XOR-MAPPED-ADDRESS */
                  "000100080001f752c6336402" /* MAPPED-ADDRESS */
                  "802b000800010d96c0000202" /* RESPONSE-ORIGIN */
                  "802c000800010d97c0000203" /* OTHER-ADDRESS */);
    T_CHECK(p2p_addr_equal(&from, &p));
    /* from the alternate IP: answered from there, no OTHER-ADDRESS */
    simnet_ip4(&to, 192, 0, 2, 3, 3478);
    T_EQ_INT(p2p_sim_stun_udp(s, &src, &to, req, 20, out, sizeof out, &from), 56);
    T_CHECK(p2p_addr_equal(&from, &to));
    /* CHANGE-REQUEST ip + port: from the alternate */
    uint8_t ch[28];
    t_from_hex(ch, "000100082112a442000102030405060708090a0b0003000400000006");
    T_CHECK(p2p_sim_stun_udp(s, &src, &p, ch, 28, out, sizeof out, &from) > 0);
    T_CHECK(p2p_addr_equal(&from, &a));
    /* our own request with FINGERPRINT: answered with one */
    uint8_t fp[28];
    T_EQ_INT(p2p_stun_request(fp, sizeof fp, req + 8, 0), 28);
    size_t rl = p2p_sim_stun_udp(s, &src, &p, fp, 28, out, sizeof out, &from);
    T_EQ_INT(rl, 76);
    p2p_stun_msg m;
    T_EQ_INT(p2p_stun_parse(out, rl, &m), 0);
    T_EQ_INT(m.has_fingerprint, 1);
    T_CHECK(p2p_addr_equal(&m.mapped, &src));
    T_CHECK(p2p_addr_equal(&m.other, &a));
    /* not to one of its addresses, or not a request: nothing */
    simnet_ip4(&to, 192, 0, 2, 4, 3478);
    T_EQ_INT(p2p_sim_stun_udp(s, &src, &to, req, 20, out, sizeof out, &from), 0);
    out[0] = 1;
    T_EQ_INT(p2p_sim_stun_udp(s, &src, &p, out, rl, out + 128, 128, &from), 0);
    p2p_sim_stun_free(s);
}

int main(void)
{
    T_RUN(test_sim_stun);
    T_RUN(test_cone_independent);
    T_RUN(test_symmetric_dependent);
    T_RUN(test_two_servers);
    T_RUN(test_no_nat);
    T_RUN(test_silent);
    T_RUN(test_refresh);
    T_RUN(test_spoofed);
    T_RUN(test_off);
    T_RUN(test_on_sim);
    return t_summary("test_probe");
}
