/* test_attack_reach.c - issue 12 seen by a hostile stranger (verification, branch h12-verify):
 * forged STUN on the main socket, junk UDP against the TCP fallback trigger, LAN beacons that
 * name a victim, replayed or forged beacons and floods of them, and inbound streams that hold
 * a slot without ever making a session. Each test fails while the defect it names is there.
 * Everything runs on the host's sans-IO interface with a virtual clock. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_crypto.h"
#include "../csrc/p2p_lan.h"
#include "../csrc/p2p_state.h"
#include "simnet.h"

#define S 1000000ull
#define T0 (1000 * S)
#define UNIX0 1800000000000000ull

static p2p_identity ids[64];
static p2p_rng rng;

static p2p_host *host_new(int i, int lan, int mediator, uint64_t now)
{
    p2p_config c;
    p2p_config_init(&c);
    c.identity = &ids[i];
    c.seed = 900 + (uint64_t)i;
    c.unix_us = UNIX0;
    c.lan_discovery = lan;
    c.mediator = mediator;
    c.portmap_off = 1;
    p2p_host *h = NULL;
    T_EQ_INT(p2p_host_new(&h, &c, now), 0);
    return h;
}

/* What a host sent, counted by the test's driver. */
typedef struct seen {
    p2p_addr victim; /* datagrams to this IP (any port) are counted */
    int to_victim, inits_to_victim, other_to_victim;
    int tcp_open, tcp_close;
    uint32_t last_close;
} seen;

/* Drains every queue of h: datagrams (counted), io requests (LAN start succeeds, the rest
 * fail, TCP opens and closes are counted), LAN datagrams and events (dropped). */
static void drain(p2p_host *h, seen *s, uint64_t now)
{
    for (int round = 0; round < 4; round++) {
        p2p_io io;
        while (p2p_host_next_io(h, &io)) {
            if (io.kind == P2P_IO_TCP_OPEN) s->tcp_open++;
            if (io.kind == P2P_IO_TCP_CLOSE) {
                s->tcp_close++;
                s->last_close = io.id;
                continue;
            }
            if (io.kind == P2P_IO_LAN_STOP) continue;
            p2p_io_result r;
            memset(&r, 0, sizeof r);
            r.kind = io.kind;
            r.id = io.id;
            r.status = io.kind == P2P_IO_LAN_START ? 0 : P2P_ERR_IO;
            if (io.kind == P2P_IO_TCP_OPEN)
                p2p_host_stream_down(h, io.id, now); /* the mediator's TCP is not there */
            else
                p2p_host_io_done(h, &r, now);
        }
        uint8_t buf[P2P_MAX_PACKET];
        p2p_addr to;
        size_t len;
        while ((len = p2p_host_next_lan(h, &to, buf, sizeof buf)) > 0) {
        }
        while ((len = p2p_host_next_datagram(h, &to, buf, sizeof buf)) > 0) {
            if (to.family == s->victim.family && to.family != 0 &&
                memcmp(to.ip, s->victim.ip, 4) == 0) {
                s->to_victim++;
                if (buf[0] == 1)
                    s->inits_to_victim++;
                else
                    s->other_to_victim++;
            }
        }
        p2p_event ev;
        while (p2p_host_next_event(h, &ev)) {
        }
    }
}

/* Host i (with LAN discovery when lan, a mediator when mediator) at the address `me`; *s
 * zeroed, counting what goes to `victim` (NULL: nothing). */
static p2p_host *watched_host(int i, int lan, int mediator, const char *me, const char *victim,
                              seen *s, uint64_t now)
{
    p2p_host *h = host_new(i, lan, mediator, now);
    p2p_addr a = simnet_addr(me);
    p2p_host_add_address(h, &a, now);
    memset(s, 0, sizeof *s);
    if (victim) s->victim = simnet_addr(victim);
    return h;
}

static void run_until(p2p_host *h, seen *s, uint64_t *now, uint64_t until)
{
    while (*now < until) {
        uint64_t t = p2p_host_next_timeout(h);
        uint64_t step = *now + 10000;
        if (t > *now && t < step) step = t;
        *now = step;
        if (p2p_host_next_timeout(h) <= *now) p2p_host_on_timeout(h, *now);
        drain(h, s, *now);
    }
}

/* A well-formed STUN Binding success (XOR-MAPPED-ADDRESS 203.0.113.7:4444) that answers no
 * request of the node's. */
static size_t forged_stun(uint8_t *m)
{
    static const uint8_t hdr[8] = {0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42};
    memcpy(m, hdr, 8);
    for (int i = 0; i < 12; i++) m[8 + i] = (uint8_t)(0x5a + i);
    uint8_t *v = m + 20;
    v[0] = 0x00, v[1] = 0x20, v[2] = 0x00, v[3] = 0x08;
    v[4] = 0, v[5] = 1;
    uint16_t port = 4444 ^ 0x2112;
    v[6] = (uint8_t)(port >> 8), v[7] = (uint8_t)port;
    uint8_t ip[4] = {203, 0, 113, 7}, ck[4] = {0x21, 0x12, 0xa4, 0x42};
    for (int i = 0; i < 4; i++) v[8 + i] = ip[i] ^ ck[i];
    return 32;
}

/* 3. A forged STUN answer on the main socket is dropped and changes nothing the node reports.
 * Defect: p2p_host_recv sets h->last_udp_rx for every UDP datagram before any check, so
 * p2p_host_nat() says udp = OK after a forged packet. */
static void test_forged_stun_changes_nothing(void)
{
    uint64_t now = T0;
    seen s;
    p2p_host *h = watched_host(0, 0, 0, "192.168.1.5:4000", NULL, &s, now);
    p2p_addr srv = simnet_addr("198.51.100.1:3478");
    drain(h, &s, now);
    p2p_nat_info a, b;
    p2p_host_nat(h, &a);
    p2p_addr before[16], after[16];
    int kb[16], ka[16];
    size_t nb = p2p_host_addresses(h, before, kb, 16);
    p2p_stats st0, st1;
    p2p_host_stats(h, &st0);
    uint8_t m[64];
    size_t n = forged_stun(m);
    for (int i = 0; i < 5; i++) {
        now += 1000;
        p2p_host_recv(h, &srv, m, n, now);
        drain(h, &s, now);
    }
    p2p_host_stats(h, &st1);
    T_EQ_INT(st1.dropped - st0.dropped, 5);
    p2p_host_nat(h, &b);
    T_EQ_INT(b.mapping, a.mapping);
    T_EQ_INT(b.source, a.source);
    T_EQ_INT(b.udp, a.udp); /* fails: UNKNOWN -> OK */
    size_t na = p2p_host_addresses(h, after, ka, 16);
    T_EQ_INT(na, nb);
    for (size_t i = 0; i < na && i < nb; i++) {
        T_CHECK(p2p_addr_equal(&after[i], &before[i]));
        T_EQ_INT(ka[i], kb[i]);
    }
    T_EQ_INT(s.to_victim, 0);
    p2p_host_free(h);
}

/* 5. A stranger who can reach the node's UDP port must not keep it off the TCP fallback by
 * sending junk. Defect: the same h->last_udp_rx, which silent_from() reads: one junk byte a
 * second and the fallback never opens. */
static void test_junk_udp_does_not_hold_off_fallback(void)
{
    for (int junk = 0; junk < 2; junk++) {
        uint64_t now = T0;
        seen s;
        p2p_host *h = watched_host(1, 0, 0, "192.168.1.5:4000", NULL, &s, now);
        p2p_addr med = simnet_addr("203.0.113.10:7000");
        p2p_addr stranger = simnet_addr("198.51.100.66:9999");
        p2p_peer_handle ph;
        T_EQ_INT(p2p_host_connect(h, &med, NULL, now, &ph), 0);
        drain(h, &s, now);
        uint64_t first_open = 0;
        for (uint64_t t = T0; t < T0 + 8 * S; t += S) {
            run_until(h, &s, &now, t + S);
            if (s.tcp_open && !first_open) first_open = now;
            if (junk) {
                uint8_t j[1] = {0x7f};
                p2p_host_recv(h, &stranger, j, 1, now);
                drain(h, &s, now);
            }
        }
        if (!first_open && s.tcp_open) first_open = now;
        if (!junk)
            T_CHECK(first_open != 0 && first_open <= T0 + 4 * S); /* the control */
        else
            T_CHECK(first_open != 0); /* fails: never, while junk arrives */
        if (junk) printf("  junk case: TCP_OPEN requests in 8 s: %d\n", s.tcp_open);
        p2p_host_free(h);
    }
}

/* A beacon of identity i naming port, stamped unix_us, with signer sk (forged when it is not
 * i's), under the no-key psk. */
static void beacon(uint8_t out[P2P_LAN_BEACON_LEN], int i, const uint8_t *sk, uint16_t port,
                   uint64_t unix_us)
{
    uint8_t psk[32], key[32], nonce[24];
    memset(psk, 0, sizeof psk);
    p2p_lan_key(key, psk);
    p2p_rng_bytes(&rng, nonce, sizeof nonce);
    p2p_lan_seal(out, key, nonce, ids[i].ed_pk, sk ? sk : ids[i].ed_sk, port, unix_us);
}

/* 4. One identity's beacons, from a victim's LAN address, naming a port of the victim's:
 * in 125 s the node sends the victim nothing but INITs: none to a service port (below 1024),
 * and to any other port at most one dial per 60 s, each a short probe of at most 3 INITs. */
static void lan_victim_run(uint16_t port, int max_inits)
{
    uint64_t now = T0;
    char text[40];
    snprintf(text, sizeof text, "10.9.0.99:%u", (unsigned)port);
    seen s;
    p2p_host *h = watched_host(2, 1, 0, "10.9.0.1:4000", text, &s, now);
    drain(h, &s, now);
    uint8_t b[P2P_LAN_BEACON_LEN];
    for (uint64_t t = T0; t < T0 + 125 * S; t += 2500000) {
        run_until(h, &s, &now, t);
        beacon(b, 10, NULL, port, UNIX0 + (now - T0));
        p2p_host_recv_lan(h, &s.victim, b, sizeof b, now);
        drain(h, &s, now);
    }
    run_until(h, &s, &now, T0 + 126 * S);
    printf("  port %u: victim got %d datagrams (%d INIT) in 126 s from one id's beacons\n",
           (unsigned)port, s.to_victim, s.inits_to_victim);
    T_EQ_INT(s.other_to_victim, 0);
    T_CHECK(s.inits_to_victim <= max_inits);
    p2p_host_free(h);
}

static void test_lan_beacon_naming_a_victim(void)
{
    lan_victim_run(53, 0);        /* a service port: never */
    lan_victim_run(40053, 3 * 3); /* t = 0, 60, 120 s, 3 INITs each */
}

/* 4. Many identities (fresh keys cost nothing) beaconing from one victim's address: the
 * victim gets at most 16 probes a minute (docs/PROTOCOL.md 8.6 "What a victim receives"). */
static void test_lan_many_ids_one_victim(void)
{
    uint64_t now = T0;
    seen s;
    p2p_host *h = watched_host(3, 1, 0, "10.9.0.1:4000", "10.9.0.98:44344", &s, now);
    drain(h, &s, now);
    uint8_t b[P2P_LAN_BEACON_LEN];
    int k = 0;
    for (uint64_t t = T0; t < T0 + 60 * S; t += 2100000) {
        run_until(h, &s, &now, t);
        beacon(b, 20 + (k++ % 40), NULL, 7000, UNIX0 + (now - T0));
        p2p_host_recv_lan(h, &s.victim, b, sizeof b, now);
        drain(h, &s, now);
    }
    run_until(h, &s, &now, T0 + 60 * S);
    p2p_stats st;
    p2p_host_stats(h, &st);
    printf("  victim got %d datagrams (%d INIT) in 60 s; lan_dials %llu\n", s.to_victim,
           s.inits_to_victim, (unsigned long long)st.lan_dials);
    T_EQ_INT(s.other_to_victim, 0);
    T_CHECK(st.lan_dials <= 16);
    T_CHECK(s.inits_to_victim <= 16);
    p2p_host_free(h);
}

/* 4. A flood of beacons that pass the (public, no-key) AEAD but carry a bad signature, from
 * 2000 source addresses in one second: at most 8 signature checks; oversize/undersize/garbage
 * are dropped before any crypto. */
static void test_lan_flood_caps_signature_checks(void)
{
    p2p_lan_state l;
    uint8_t psk[32];
    memset(psk, 0, sizeof psk);
    uint64_t now = T0;
    p2p_lan_state_init(&l, psk, UNIX0, now);
    p2p_lan_ctx c;
    memset(&c, 0, sizeof c);
    c.self_id = ids[0].ed_pk;
    c.dial = 1;
    uint8_t b[P2P_LAN_BEACON_LEN];
    int forged = 0, rate = 0, other = 0;
    for (int i = 0; i < 2000; i++) {
        p2p_addr from = simnet_addr("10.20.0.1:44344");
        from.ip[2] = (uint8_t)(i >> 8);
        from.ip[3] = (uint8_t)i;
        beacon(b, 30 + i % 20, ids[1].ed_sk, 7000, UNIX0 + (uint64_t)i);
        int rc =
            p2p_lan_state_recv(&l, &c, &from, b, sizeof b, now + (uint64_t)i * 400, NULL, NULL);
        if (rc == P2P_LAN_FORGED)
            forged++;
        else if (rc == P2P_LAN_RATE)
            rate++;
        else
            other++;
    }
    printf("  2000 forged beacons in 0.8 s: %d signature checks, %d rate-dropped, %d other\n",
           forged, rate, other);
    T_CHECK(forged <= 8);
    T_EQ_INT(other, 0);
    /* sizes */
    static uint8_t big[65536];
    memcpy(big, "p2pb\x01", 5);
    size_t sizes[] = {0, 4, 5, 153, 155, 1232, sizeof big};
    p2p_addr from = simnet_addr("10.20.9.9:44344");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, big, sizes[i], now + 2 * S, NULL, NULL),
                 P2P_LAN_BAD);
    /* a beacon from a public or multicast source: ignored */
    beacon(b, 5, NULL, 7000, UNIX0);
    p2p_addr pub = simnet_addr("198.51.100.7:44344"), mc = simnet_addr("224.0.0.1:44344");
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &pub, b, sizeof b, now + 3 * S, NULL, NULL), P2P_LAN_BAD);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &mc, b, sizeof b, now + 3 * S, NULL, NULL), P2P_LAN_BAD);
}

/* 4. A beacon recorded once, replayed later from a victim's address once 256 other beacons
 * pushed it out of the replay cache (8 verified a second: 32 s), still within the +-600 s
 * clock window: it must neither be heard again nor dial the victim. Defect: the replay cache
 * (P2P_LAN_REPLAY = 256 pairs) is smaller than what the time window admits, so the replay is
 * verified, moves the id's address in lan_peers() to the victim and dials it. */
static void test_lan_replay_after_cache_eviction(void)
{
    p2p_lan_state l;
    uint8_t psk[32];
    memset(psk, 0, sizeof psk);
    uint64_t now = T0;
    p2p_lan_state_init(&l, psk, UNIX0, now);
    p2p_lan_ctx c;
    memset(&c, 0, sizeof c);
    c.self_id = ids[0].ed_pk;
    c.dial = 1;
    uint8_t orig[P2P_LAN_BEACON_LEN], b[P2P_LAN_BEACON_LEN];
    p2p_addr at = simnet_addr("10.9.0.5:44344"), victim = simnet_addr("10.9.0.99:44344");
    beacon(orig, 9, NULL, 7000, UNIX0);
    p2p_addr to;
    uint8_t who[32];
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &at, orig, sizeof orig, now, &to, who), P2P_LAN_DIAL);
    /* 320 other beacons (40 identities x 8 stamps) from 24+ sources, 8 a second */
    p2p_lan_ctx quiet = c;
    quiet.dial = 0;
    int verified = 0;
    for (int i = 0; i < 320; i++) {
        uint64_t t = now + S + (uint64_t)i * 126000;
        p2p_addr from = simnet_addr("10.9.1.1:44344");
        from.ip[3] = (uint8_t)(1 + i % 40);
        beacon(b, 12 + i % 40, NULL, 7000, UNIX0 + (t - T0));
        if (p2p_lan_state_recv(&l, &quiet, &from, b, sizeof b, t, NULL, NULL) >= 0) verified++;
    }
    T_CHECK(verified >= 256);
    now += 70 * S;
    int rc = p2p_lan_state_recv(&l, &c, &victim, orig, sizeof orig, now, &to, who);
    printf("  %d fillers verified; the replay 70 s later from the victim: rc %d\n", verified, rc);
    T_CHECK(rc != P2P_LAN_DIAL && rc != P2P_LAN_HEARD);
    p2p_lan_peer lp[64];
    size_t n = p2p_lan_state_peers(&l, now, lp, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (memcmp(lp[i].id, ids[9].ed_pk, 32) == 0)
            T_CHECK(p2p_addr_equal(
                &lp[i].addr,
                &(p2p_addr){.family = P2P_AF_INET4, .ip = {10, 9, 0, 5}, .port = 7000}));
}

/* 1. Inbound streams: 8 per (non-loopback) IP, 256 in all. */
static void test_stream_caps(void)
{
    uint64_t now = T0;
    p2p_host *h = host_new(4, 0, 1, now);
    p2p_addr ip = simnet_addr("203.0.113.5:1"), lo = simnet_addr("127.0.0.1:1");
    uint32_t sid = 0x80000001u;
    for (int i = 0; i < 8; i++) T_EQ_INT(p2p_host_stream_up(h, sid++, &ip, 1, now), 0);
    T_CHECK(p2p_host_stream_up(h, sid++, &ip, 1, now) != 0);
    for (int i = 0; i < 248; i++) T_EQ_INT(p2p_host_stream_up(h, sid++, &lo, 1, now), 0);
    T_CHECK(p2p_host_stream_up(h, sid++, &lo, 1, now) != 0);
    /* a stream id the driver never reported: dropped */
    p2p_stats s0, s1;
    p2p_host_stats(h, &s0);
    p2p_addr fake = simnet_stream_addr(0x7fff0001u);
    uint8_t j[4] = {1, 0, 0, 0};
    p2p_host_recv(h, &fake, j, sizeof j, now);
    p2p_host_stats(h, &s1);
    T_EQ_INT(s1.dropped - s0.dropped, 1);
    p2p_host_free(h);
}

/* 1. An inbound stream that never makes a session is closed: silent, within the 30 s linger
 * (the design allows 10 s to a first handshake, 60 s idle at most); sending junk that never
 * authenticates must not keep it. Defect: p2p_host_recv sets st->idle_since on every datagram
 * that comes over the stream, authenticated or not, so one junk byte every 20 s holds a slot
 * for ever (256 slots: 32 addresses hold them all; behind a local proxy, one client). */
static void test_stream_without_session_closes(void)
{
    for (int junk = 0; junk < 2; junk++) {
        uint64_t now = T0;
        seen s;
        p2p_host *h = watched_host(5, 0, 1, "192.168.1.5:4000", NULL, &s, now);
        p2p_addr ip = simnet_addr("203.0.113.5:1");
        uint32_t sid = 0x80000010u;
        T_EQ_INT(p2p_host_stream_up(h, sid, &ip, 1, now), 0);
        p2p_addr from = simnet_stream_addr(sid);
        uint64_t closed_at = 0;
        for (uint64_t t = T0; t < T0 + 120 * S && !closed_at; t += 5 * S) {
            run_until(h, &s, &now, t + 5 * S);
            if (s.tcp_close && s.last_close == sid) closed_at = now;
            if (junk && !closed_at) {
                uint8_t j[8] = {4, 0, 0, 0, 0x11, 0x22, 0x33, 0x44}; /* DATA, unknown index */
                p2p_host_recv(h, &from, j, sizeof j, now);
                drain(h, &s, now);
            }
        }
        printf("  stream %s: closed after %s%llu s\n", junk ? "with junk every 5 s" : "silent",
               closed_at ? "" : "> ", (unsigned long long)((closed_at ? closed_at : now) - T0) / S);
        T_CHECK(closed_at != 0 && closed_at - T0 <= 61 * S);
        p2p_host_free(h);
    }
}

/* 5. ADDRS from the network: a peer (A) churns its advertised addresses to name victims
 * (each change reaches its sessions as ADDRS), and has a mediator (M) introduce it to C over
 * and over. Neither M nor C may send a victim more than the probe allowance: at most 16
 * probes a minute per address (docs/PROTOCOL.md 8.6), M nothing at all. */
#define NN 3
typedef struct net3 {
    p2p_host *h[NN];
    p2p_addr a[NN];
    int to_victims[NN], max_per_victim[NN];
    int per_victim[NN][64];
    int direct_tries;
} net3;

static int victim_index(const p2p_addr *to)
{
    if (to->family != P2P_AF_INET4 || to->ip[0] != 203 || to->ip[1] != 0 || to->ip[2] != 113)
        return -1;
    return to->ip[3] & 63;
}

static void pump3(net3 *w, uint64_t now)
{
    for (int round = 0; round < 6; round++)
        for (int i = 0; i < NN; i++) {
            if (p2p_host_next_timeout(w->h[i]) <= now) p2p_host_on_timeout(w->h[i], now);
            p2p_addr to;
            uint8_t buf[P2P_MAX_PACKET];
            size_t n;
            p2p_io io;
            while (p2p_host_next_io(w->h[i], &io)) {
            }
            while ((n = p2p_host_next_datagram(w->h[i], &to, buf, sizeof buf))) {
                int v = victim_index(&to);
                if (v >= 0) {
                    w->to_victims[i]++;
                    if (++w->per_victim[i][v] > w->max_per_victim[i])
                        w->max_per_victim[i] = w->per_victim[i][v];
                }
                for (int k = 0; k < NN; k++) {
                    if (!p2p_addr_equal(&to, &w->a[k])) continue;
                    if (i + k == 3) { /* A and C cannot reach each other: relayed by M */
                        w->direct_tries++;
                        continue;
                    }
                    p2p_host_recv(w->h[k], &w->a[i], buf, n, now);
                }
            }
            p2p_event ev;
            while (p2p_host_next_event(w->h[i], &ev)) {
            }
        }
}

static void test_addrs_naming_victims(void)
{
    net3 w;
    memset(&w, 0, sizeof w);
    uint64_t now = T0;
    w.h[0] = host_new(40, 0, 1, now); /* M, a mediator */
    w.h[1] = host_new(41, 0, 0, now); /* A, the attacker */
    w.h[2] = host_new(42, 0, 0, now); /* C */
    w.a[0] = simnet_addr("198.51.100.1:7000");
    w.a[1] = simnet_addr("198.51.100.2:4000");
    w.a[2] = simnet_addr("198.51.100.3:4000");
    for (int i = 0; i < NN; i++) p2p_host_add_address(w.h[i], &w.a[i], now);
    p2p_peer_handle ph;
    T_EQ_INT(p2p_host_connect(w.h[1], &w.a[0], NULL, now, &ph), 0);
    T_EQ_INT(p2p_host_connect(w.h[2], &w.a[0], NULL, now, &ph), 0);
    for (int k = 0; k < 100; k++) pump3(&w, now += 10000);
    /* for 60 s: every 2 s A names 4 new victims (ADDRS) and C asks M for A again (a user
     * retrying; A could as well ask M for C) */
    int round = 0;
    for (uint64_t t = 0; t < 60 * S; t += 10000) {
        if (t % (2 * S) == 0) {
            p2p_own_remove_kind(w.h[1], P2P_ADDR_MAPPED);
            for (int v = 0; v < 4; v++) {
                p2p_addr va = simnet_addr("203.0.113.1:53");
                va.ip[3] = (uint8_t)((round * 4 + v) % 60);
                va.port = (uint16_t)(1000 + round);
                p2p_own_add_kind(w.h[1], &va, P2P_ADDR_MAPPED, now + 3600 * S);
            }
            round++;
            p2p_host_connect_via(w.h[2], ids[41].ed_pk, &w.a[0], now, &ph);
        }
        pump3(&w, now += 10000);
    }
    p2p_peer_info pi;
    int relayed = 0;
    p2p_peer_handle ah = p2p_host_find(w.h[2], ids[41].ed_pk);
    if (ah && p2p_host_peer_info(w.h[2], ah, &pi) == 0 && pi.state == P2P_PEER_CONNECTED)
        relayed = !pi.direct;
    printf("  60 s of ADDRS naming 60 victims: M sent %d to victims, C %d (most to one: %d), "
           "A %d; C-A relayed %d, direct tries %d\n",
           w.to_victims[0], w.to_victims[2], w.max_per_victim[2], w.to_victims[1], relayed,
           w.direct_tries);
    T_CHECK(relayed);
    T_CHECK(w.to_victims[2] > 0); /* the attack reached C: the test can fail */
    T_EQ_INT(w.to_victims[0], 0);
    T_CHECK(w.max_per_victim[2] <= 16);
    for (int i = 0; i < NN; i++) p2p_host_free(w.h[i]);
}

int main(void)
{
    p2p_init();
    p2p_rng_init(&rng, 4612);
    for (int i = 0; i < 64; i++) {
        uint8_t seed[32];
        memset(seed, 0x21 + i, sizeof seed);
        p2p_identity_from_seed(&ids[i], seed);
    }
    T_RUN(test_forged_stun_changes_nothing);
    T_RUN(test_junk_udp_does_not_hold_off_fallback);
    T_RUN(test_lan_beacon_naming_a_victim);
    T_RUN(test_lan_many_ids_one_victim);
    T_RUN(test_lan_flood_caps_signature_checks);
    T_RUN(test_lan_replay_after_cache_eviction);
    T_RUN(test_stream_caps);
    T_RUN(test_stream_without_session_closes);
    T_RUN(test_addrs_naming_victims);
    return t_summary("test_attack_reach");
}
