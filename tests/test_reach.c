/* test_reach.c - the hub's part of issue 12 (reach every peer), on the sans-IO core alone: the
 * io queue, streams (a TCP or WebSocket relay the driver holds), the fallback to a stream when
 * UDP gets no answers, advertised address kinds, and the hard-NAT punching budgets of the
 * guard (docs/PROTOCOL.md sections 8.6 and 8.8). The test plays the driver. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "simnet.h"
#include "tnet.h"

#include <stdlib.h>

#define MS 1000ull
#define S 1000000ull

static p2p_addr A(const char *text)
{
    p2p_addr a;
    if (p2p_addr_parse(&a, text)) abort();
    return a;
}

static p2p_host *mk(uint64_t seed, const p2p_config *extra, uint64_t now)
{
    static p2p_identity id[8];
    static int nid;
    p2p_identity *me = &id[nid++ % 8];
    uint8_t s[32];
    memset(s, (int)seed, sizeof s);
    p2p_identity_from_seed(me, s);
    p2p_config c;
    if (extra)
        c = *extra;
    else
        p2p_config_init(&c);
    c.identity = me;
    c.seed = seed;
    c.portmap_off = 1; /* the tests here count every request */
    p2p_host *h;
    if (p2p_host_new(&h, &c, now)) abort();
    return h;
}

static void no_events(p2p_host *h)
{
    p2p_event ev;
    while (p2p_host_next_event(h, &ev)) {
    }
}

/* Takes every io request; returns how many, the last TCP_OPEN in *open. */
static int take_io(p2p_host *h, p2p_io *open)
{
    p2p_io io;
    int n = 0;
    while (p2p_host_next_io(h, &io)) {
        n++;
        if (io.kind == P2P_IO_TCP_OPEN && open) *open = io;
    }
    return n;
}

static void test_stream_from_nowhere_is_dropped(void)
{
    p2p_host *h = mk(1, NULL, 0);
    p2p_addr s;
    memset(&s, 0, sizeof s);
    s.family = P2P_AF_STREAM;
    s.ip[0] = 7;
    uint8_t junk[64] = {1};
    p2p_stats st;
    p2p_host_recv(h, &s, junk, sizeof junk, 1);
    p2p_host_stats(h, &st);
    T_EQ_INT(st.dropped, 1);
    /* an inbound stream must carry the driver's top bit; the host's own ids never do */
    p2p_addr ip = A("198.51.100.7:0");
    T_EQ_INT(p2p_host_stream_up(h, 7, &ip, 1, 2), P2P_ERR_INVALID);
    /* and an outbound one it never asked for is refused */
    T_EQ_INT(p2p_host_stream_up(h, 7, &ip, 0, 2), P2P_ERR_INVALID);
    p2p_host_free(h);
}

static void test_streams_per_ip(void)
{
    p2p_host *h = mk(2, NULL, 0);
    p2p_addr ip = A("198.51.100.7:0"), lo = A("127.0.0.1:0");
    for (uint32_t i = 0; i < P2P_STREAMS_PER_IP; i++)
        T_EQ_INT(p2p_host_stream_up(h, 0x80000000u | (i + 1), &ip, 1, 1), 0);
    T_EQ_INT(p2p_host_stream_up(h, 0x80000100u, &ip, 1, 1), P2P_ERR_LIMIT);
    /* a local proxy in front (nginx) carries everyone: no per-IP cap, only the table's */
    int ok = 0;
    for (uint32_t i = 0; i < P2P_STREAMS + 4; i++)
        ok += p2p_host_stream_up(h, 0x80001000u | i, &lo, 1, 1) == 0;
    T_EQ_INT(ok, P2P_STREAMS - P2P_STREAMS_PER_IP);
    p2p_stats st;
    p2p_host_stats(h, &st);
    T_EQ_INT(st.stream_up, P2P_STREAMS);
    /* a stream that goes down frees its slot */
    T_EQ_INT(p2p_host_stream_down(h, 0x80000001u, 2), 0);
    T_EQ_INT(p2p_host_stream_up(h, 0x80000100u, &ip, 1, 3), 0);
    p2p_host_free(h);
}

/* A attempts to reach an address from which nothing ever comes back: after 2 s of silence it
 * asks its driver for a TCP stream to the same endpoint, and not before. */
static void test_fallback_after_silence(void)
{
    p2p_host *h = mk(3, NULL, 0);
    p2p_addr med = A("198.51.100.1:4000"), to;
    uint8_t buf[P2P_MAX_PACKET];
    p2p_peer_handle ph;
    T_EQ_INT(p2p_host_connect(h, &med, NULL, 0, &ph), 0);
    p2p_io open;
    memset(&open, 0, sizeof open);
    uint64_t now = 0;
    int opened_at = -1;
    for (int step = 0; step < 60 && opened_at < 0; step++) {
        now = (uint64_t)step * 100 * MS;
        p2p_host_on_timeout(h, now);
        while (p2p_host_next_datagram(h, &to, buf, sizeof buf)) {
        }
        no_events(h);
        if (take_io(h, &open)) opened_at = step;
    }
    T_CHECK(opened_at >= 20 && opened_at <= 26); /* 2 s, checked every 0.5 s */
    T_EQ_INT(open.kind, P2P_IO_TCP_OPEN);
    T_CHECK(p2p_addr_equal(&open.addr, &med));
    T_EQ_INT(open.ws, 0);
    T_CHECK(open.id != 0 && !(open.id & 0x80000000u));
    /* the stream comes up: the attempt's INIT goes on it at once */
    p2p_addr from_ip = med;
    T_EQ_INT(p2p_host_stream_up(h, open.id, &from_ip, 0, now + 1), 0);
    int on_stream = 0;
    size_t n;
    while ((n = p2p_host_next_datagram(h, &to, buf, sizeof buf)))
        if (to.family == P2P_AF_STREAM && p2p_get_u32(to.ip) == open.id && buf[0] == P2P_PKT_INIT)
            on_stream++;
    T_CHECK(on_stream >= 1);
    p2p_nat_info ni;
    p2p_host_nat(h, &ni);
    T_EQ_INT(ni.udp, P2P_UDP_BLOCKED);
    T_EQ_INT(ni.has_stream, 1);
    T_CHECK(p2p_addr_equal(&ni.stream_to, &med));
    p2p_host_free(h);
}

/* pump2 below */
static void pump2(p2p_host *x, p2p_addr xa, p2p_host *y, p2p_addr ya, uint64_t now);

/* The same while UDP works (another session of the node authenticates packets): no stream.
 * Junk from strangers does not count (tests/test_attack_reach.c). */
static void test_no_fallback_when_udp_answers(void)
{
    p2p_host *h = mk(4, NULL, 0), *b = mk(14, NULL, 0);
    p2p_addr med = A("198.51.100.1:4000"), ha = A("203.0.113.50:4000"), ba = A("198.51.100.9:5000");
    p2p_peer_handle ph;
    T_EQ_INT(p2p_host_connect(h, &med, NULL, 0, &ph), 0);
    T_EQ_INT(p2p_host_connect(h, &ba, NULL, 0, &ph), 0);
    int asked = 0;
    for (int step = 0; step < 60; step++) {
        uint64_t now = (uint64_t)step * 100 * MS;
        pump2(h, ha, b, ba, now); /* what goes to med is lost */
        asked += take_io(h, NULL);
    }
    T_EQ_INT(asked, 0);
    p2p_host_free(h);
    p2p_host_free(b);
    /* and with fallback turned off, never */
    p2p_config c;
    p2p_config_init(&c);
    c.fallback_off = 1;
    h = mk(5, &c, 0);
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET];
    T_EQ_INT(p2p_host_connect(h, &med, NULL, 0, &ph), 0);
    for (int step = 0; step < 100; step++) {
        uint64_t now = (uint64_t)step * 100 * MS;
        p2p_host_on_timeout(h, now);
        while (p2p_host_next_datagram(h, &to, buf, sizeof buf)) {
        }
        no_events(h);
        asked += take_io(h, NULL);
    }
    T_EQ_INT(asked, 0);
    p2p_host_free(h);
}

/* Two hosts whose UDP never arrives, joined by a stream the test carries (as the TCP driver
 * would): A's fallback opens it to B's endpoint; B sees an inbound stream. They join over it
 * and exchange 100 messages with receipts, none lost or repeated. */
static void test_session_over_stream(void)
{
    simnet_pair p = {.bsid = 0x80000042u};
    p.a = mk(6, NULL, 0);
    p.b = mk(7, NULL, 0);
    p.baddr = A("198.51.100.2:4000");
    p.aip = A("203.0.113.5:0");
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET];
    p2p_peer_handle pa;
    T_EQ_INT(p2p_host_connect(p.a, &p.baddr, p2p_host_id(p.b), 0, &pa), 0);
    uint64_t now = 0;
    int sent = 0;
    for (int step = 0; step < 4000 && p.replies < 100; step++) {
        now = (uint64_t)step * 10 * MS;
        p2p_host_on_timeout(p.a, now);
        p2p_host_on_timeout(p.b, now);
        simnet_pair_io(&p, now);
        /* A -> B: UDP is lost; the stream carries */
        size_t n;
        while ((n = p2p_host_next_datagram(p.a, &to, buf, sizeof buf))) {
            if (to.family != P2P_AF_STREAM) continue;
            T_EQ_INT(p2p_get_u32(to.ip), p.sid);
            p2p_addr from = simnet_stream_addr(p.bsid);
            p2p_host_recv(p.b, &from, buf, n, now);
        }
        while ((n = p2p_host_next_datagram(p.b, &to, buf, sizeof buf))) {
            if (to.family != P2P_AF_STREAM) continue;
            T_EQ_INT(p2p_get_u32(to.ip), p.bsid);
            p2p_addr from = simnet_stream_addr(p.sid);
            p2p_host_recv(p.a, &from, buf, n, now);
        }
        simnet_pair_events(&p, now);
        if (p.joins >= 2 && sent < 100) {
            for (; sent < 100; sent++) simnet_pair_send(&p, pa, (uint64_t)sent, 64, now);
        }
    }
    T_EQ_INT(p.joins, 2);
    T_EQ_INT(p.msgs, 100);
    T_EQ_INT(p.replies, 100);
    T_EQ_INT(p.order_bad, 0);
    p2p_peer_stats ps;
    T_EQ_INT(p2p_peer_stats_get(p.a, pa, &ps), 0);
    T_EQ_INT(ps.path, P2P_PATH_TCP);
    T_CHECK(p2p_addr_equal(&ps.address, &p.baddr)); /* the TCP endpoint, not the stream's id */
    p2p_peer_info pi;
    T_EQ_INT(p2p_host_peer_info(p.a, pa, &pi), 0);
    T_CHECK(p2p_addr_equal(&pi.address, &p.baddr));
    p2p_host_free(p.a);
    p2p_host_free(p.b);
}

static void test_io_queue_bound_and_order(void)
{
    p2p_host *h = mk(8, NULL, 0);
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_HTTP;
    uint8_t req[300];
    int pushed = 0;
    for (int i = 0; i < P2P_IOQ_MAX + 5; i++) {
        io.id = (uint32_t)i + 1;
        memset(req, i, sizeof req);
        pushed += p2p_io_push(h, &io, req, sizeof req) == 0;
    }
    T_EQ_INT(pushed, P2P_IOQ_MAX);
    p2p_io got;
    for (int i = 0; i < P2P_IOQ_MAX; i++) {
        T_EQ_INT(p2p_host_next_io(h, &got), 1);
        T_EQ_INT(got.id, (uint32_t)i + 1);
        T_EQ_INT(got.len, sizeof req);
        T_EQ_INT(got.data[sizeof req - 1], (uint8_t)i); /* valid until the next call */
    }
    T_EQ_INT(p2p_host_next_io(h, &got), 0);
    p2p_host_free(h);
}

static void test_address_kinds(void)
{
    p2p_host *h = mk(9, NULL, 0);
    p2p_addr l = A("192.168.1.5:4000"), m = A("198.51.100.5:4000"), s = A("198.51.100.5:4001");
    T_EQ_INT(p2p_own_add(h, &l, 1), 1);
    T_EQ_INT(p2p_own_add_kind(h, &m, P2P_ADDR_MAPPED, 7200 * S), 1);
    T_EQ_INT(p2p_own_add_kind(h, &s, P2P_ADDR_STUN, 0), 1);
    /* peers report more reflexive addresses than there is room for: mapped and STUN stay */
    for (int i = 0; i < 10; i++) {
        char t[40];
        snprintf(t, sizeof t, "203.0.113.%d:9", i + 1);
        p2p_addr r = A(t);
        p2p_own_add(h, &r, 0);
    }
    p2p_addr out[P2P_MEMBER_ADDRS];
    int kinds[P2P_MEMBER_ADDRS];
    size_t n = p2p_host_addresses(h, out, kinds, P2P_MEMBER_ADDRS);
    int mapped = 0, stun = 0, local = 0, refl = 0;
    for (size_t i = 0; i < n; i++) {
        if (kinds[i] == P2P_ADDR_MAPPED && p2p_addr_equal(&out[i], &m)) mapped++;
        if (kinds[i] == P2P_ADDR_STUN && p2p_addr_equal(&out[i], &s)) stun++;
        if (kinds[i] == P2P_ADDR_LOCAL) local++;
        if (kinds[i] == P2P_ADDR_REFLEXIVE) refl++;
    }
    T_EQ_INT(mapped, 1);
    T_EQ_INT(stun, 1);
    T_EQ_INT(local, 1);
    T_EQ_INT(refl, P2P_REFLEXIVE_ADDRS - 2);
    /* the newest reports are the ones kept */
    T_CHECK(p2p_addr_equal(&out[n - 1], &(p2p_addr){0}) == 0);
    T_EQ_INT(p2p_own_remove_kind(h, P2P_ADDR_MAPPED), 1);
    n = p2p_host_addresses(h, out, kinds, P2P_MEMBER_ADDRS);
    for (size_t i = 0; i < n; i++) T_CHECK(kinds[i] != P2P_ADDR_MAPPED);
    p2p_host_free(h);
}

static void test_sock_is_part_of_an_endpoint(void)
{
    p2p_addr a = A("198.51.100.5:4000"), b = a;
    T_CHECK(p2p_addr_equal(&a, &b));
    b.sock = 3;
    T_CHECK(!p2p_addr_equal(&a, &b));
}

/* The budgets of hard-NAT punching (section 8.6): whatever sessions ask for, a node sprays at
 * most 4 IPs per 10 minutes, each IP once, one spray at a time, 1024 probes per spray to that
 * IP only; opener batches at most 2 per 10 minutes, 2 packets per socket to one address. */
static void test_spray_budget(void)
{
    p2p_host *h = mk(10, NULL, 0);
    uint64_t now = 1;
    p2p_addr ip[6];
    for (int i = 0; i < 6; i++) {
        char t[40];
        snprintf(t, sizeof t, "198.51.100.%d:0", 10 + i);
        ip[i] = A(t);
    }
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[0], now), 0);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[1], now), -1); /* one at a time */
    /* the probes that pass: DATA packets to that IP, any port, 1024 of them */
    uint8_t pkt[41];
    memset(pkt, 0, sizeof pkt);
    pkt[0] = P2P_PKT_DATA;
    int passed = 0, elsewhere = 0;
    h->now = now;
    for (int i = 0; i < 2000; i++) {
        p2p_addr to = ip[0];
        to.port = (uint16_t)(1024 + i * 7);
        passed += p2p_guard_send(h, &to, pkt, sizeof pkt, P2P_GUARD_RESPONSE);
        p2p_addr other = ip[5];
        other.port = (uint16_t)(1024 + i);
        elsewhere += p2p_guard_send(h, &other, pkt, sizeof pkt, P2P_GUARD_RESPONSE);
    }
    T_EQ_INT(passed, P2P_SPRAY_PROBES);
    T_EQ_INT(elsewhere, 0);
    p2p_addr low = ip[0];
    low.port = 80;
    p2p_guard_spray_end(h);
    T_EQ_INT(p2p_guard_send(h, &low, pkt, sizeof pkt, P2P_GUARD_RESPONSE), 0);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[0], now + 1), -1); /* the same IP: 10 minutes */
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[1], now + 2), 0);
    p2p_guard_spray_end(h);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[2], now + 3), 0);
    p2p_guard_spray_end(h);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[3], now + 4), 0);
    p2p_guard_spray_end(h);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[4], now + 5), -1); /* 4 per 10 minutes */
    now += P2P_SPRAY_WINDOW_US + 10;
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[4], now), 0);
    p2p_guard_spray_end(h);
    T_EQ_INT(p2p_guard_spray_begin(h, &ip[0], now + 1), 0); /* its 10 minutes are over */
    p2p_guard_spray_end(h);
    p2p_stats st;
    p2p_host_stats(h, &st);
    T_EQ_INT(st.punch_probes, P2P_SPRAY_PROBES);

    p2p_addr e = A("203.0.113.7:40000");
    T_EQ_INT(p2p_guard_opener_begin(h, &e, 256, now), -1);
    p2p_addr e_low = A("203.0.113.7:53");
    T_EQ_INT(p2p_guard_opener_begin(h, &e_low, 10, now), -1);
    T_EQ_INT(p2p_guard_opener_begin(h, &e, 255, now), 0);
    h->now = now;
    passed = 0;
    for (int i = 0; i < 1000; i++) {
        p2p_addr from_sock = e;
        from_sock.sock = (uint8_t)(1 + i % 255);
        passed += p2p_guard_send(h, &from_sock, pkt, sizeof pkt, P2P_GUARD_RESPONSE);
    }
    T_EQ_INT(passed, 2 * 255);
    T_EQ_INT(p2p_guard_opener_begin(h, &e, 255, now + 1), 0);
    T_EQ_INT(p2p_guard_opener_begin(h, &e, 255, now + 2), -1); /* 2 per 10 minutes */
    p2p_host_free(h);
}

/* STUN shares the node's socket (section 8.7): an answer nobody asked for is dropped before
 * any p2pnet parser sees it, and it makes the node send nothing. A request is not answered
 * either: only a mediator's separate STUN port answers. */
static void test_stun_from_stranger_is_dropped(void)
{
    p2p_host *h = mk(11, NULL, 0);
    p2p_addr from = A("198.51.100.77:3478"), me = A("203.0.113.4:4000"), to;
    uint8_t req[64], ans[128], buf[P2P_MAX_PACKET];
    uint8_t txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t rn = p2p_stun_request(req, sizeof req, txid, 0);
    T_CHECK(rn == 28);
    size_t an = p2p_stun_answer(req, rn, &me, ans, sizeof ans);
    T_CHECK(an > 20 && an <= 3 * rn);
    T_EQ_INT(p2p_stun_is(ans, an), 1);
    p2p_stats st;
    p2p_host_recv(h, &from, ans, an, 1);
    p2p_host_recv(h, &from, req, rn, 2);
    p2p_host_stats(h, &st);
    T_EQ_INT(st.dropped, 2);
    T_EQ_INT(st.stun_received, 0);
    T_EQ_INT(p2p_host_next_datagram(h, &to, buf, sizeof buf), 0);
    p2p_event ev;
    T_EQ_INT(p2p_host_next_event(h, &ev), 0);
    p2p_host_free(h);
}

/* The node's NAT mapping from two peers at different IPs (section 8.7): a symmetric NAT gives
 * each a different port (dependent), a cone NAT the same one (independent), no NAT the node's
 * own address (none). */
static p2p_sim *msim;
static void mdrain(void)
{
}

static int mapping_behind(int nat, uint64_t seed)
{
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = 5000;
    if (p2p_sim_new(&msim, &sc)) abort();
    p2p_identity id[3];
    p2p_host *hh[3];
    p2p_addr addr[3];
    for (int i = 0; i < 3; i++) {
        tnet_identity(&id[i], 0x6d, (uint8_t)(i + 1));
        p2p_config c;
        p2p_config_init(&c);
        c.portmap_off = 1;
        c.mediator = i > 0;
        if (tnet_sim_host(msim, &c, &id[i], 0, i == 0 ? nat : P2P_SIM_NAT_NONE, &hh[i], &addr[i]))
            abort();
        p2p_host_add_address(hh[i], &addr[i], p2p_sim_now(msim));
    }
    p2p_peer_handle ph;
    for (int i = 1; i < 3; i++)
        T_EQ_INT(p2p_host_connect(hh[0], &addr[i], NULL, p2p_sim_now(msim), &ph), 0);
    p2p_sim_flush(msim, hh[0]);
    tnet_run_for(msim, 3000000, mdrain);
    p2p_nat_info ni;
    p2p_host_nat(hh[0], &ni);
    p2p_sim_free(msim);
    for (int i = 0; i < 3; i++) p2p_host_free(hh[i]);
    return ni.mapping * 10 + ni.source;
}

static void test_mapping_from_peers(void)
{
    T_EQ_INT(mapping_behind(P2P_SIM_NAT_SYMMETRIC, 1),
             P2P_MAPPING_DEPENDENT * 10 + P2P_MAPSRC_PEERS);
    T_EQ_INT(mapping_behind(P2P_SIM_NAT_CONE, 2), P2P_MAPPING_INDEPENDENT * 10 + P2P_MAPSRC_PEERS);
    T_EQ_INT(mapping_behind(P2P_SIM_NAT_NONE, 3), P2P_MAPPING_NONE * 10 + P2P_MAPSRC_PEERS);
}

/* Two hosts on one wire: whatever one sends to the other's address arrives. */
static void pump2(p2p_host *x, p2p_addr xa, p2p_host *y, p2p_addr ya, uint64_t now)
{
    p2p_addr to;
    uint8_t buf[P2P_MAX_PACKET];
    size_t n;
    for (int round = 0; round < 8; round++) {
        p2p_host_on_timeout(x, now);
        p2p_host_on_timeout(y, now);
        while ((n = p2p_host_next_datagram(x, &to, buf, sizeof buf)))
            if (p2p_addr_equal(&to, &ya)) p2p_host_recv(y, &xa, buf, n, now);
        while ((n = p2p_host_next_datagram(y, &to, buf, sizeof buf)))
            if (p2p_addr_equal(&to, &xa)) p2p_host_recv(x, &ya, buf, n, now);
        no_events(x);
        no_events(y);
    }
}

/* A mapping that comes after a session was made reaches the peer (ADDRS, section 8.7): an
 * introducer then hands it on as a candidate, though the FIN did not carry it. */
static void test_addrs_reach_the_peer(void)
{
    p2p_host *a = mk(12, NULL, 0), *b = mk(13, NULL, 0);
    p2p_addr aa = A("10.0.1.2:4000"), ba = A("198.51.100.2:4000");
    p2p_host_add_address(a, &aa, 0);
    p2p_peer_handle ph;
    T_EQ_INT(p2p_host_connect(a, &ba, NULL, 0, &ph), 0);
    uint64_t now = 0;
    for (int i = 0; i < 20; i++) pump2(a, aa, b, ba, now += 10 * MS);
    p2p_peer *pb = NULL;
    for (size_t i = 0; i < b->peers.hwm; i++) {
        p2p_peer *q = b->peers.slots[i];
        if (q && q->state == P2P_S_CONNECTED) pb = q;
    }
    T_CHECK(pb != NULL);
    if (!pb) return;
    T_EQ_INT(pb->nadv, 1);
    p2p_addr m = A("11.0.1.2:4000");
    T_EQ_INT(p2p_own_add_kind(a, &m, P2P_ADDR_MAPPED, now + 3600 * S), 1);
    for (int i = 0; i < 20; i++) pump2(a, aa, b, ba, now += 10 * MS);
    T_EQ_INT(pb->nadv, 2);
    int has = 0;
    for (size_t i = 0; i < pb->nadv; i++) has += p2p_addr_equal(&pb->adv[i], &m);
    T_EQ_INT(has, 1);
    p2p_host_free(a);
    p2p_host_free(b);
}

int main(void)
{
    p2p_init();
    T_RUN(test_stream_from_nowhere_is_dropped);
    T_RUN(test_streams_per_ip);
    T_RUN(test_fallback_after_silence);
    T_RUN(test_no_fallback_when_udp_answers);
    T_RUN(test_session_over_stream);
    T_RUN(test_io_queue_bound_and_order);
    T_RUN(test_address_kinds);
    T_RUN(test_sock_is_part_of_an_endpoint);
    T_RUN(test_spray_budget);
    T_RUN(test_stun_from_stranger_is_dropped);
    T_RUN(test_mapping_from_peers);
    T_RUN(test_addrs_reach_the_peer);
    return t_summary("reach");
}
