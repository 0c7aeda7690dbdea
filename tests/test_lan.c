/* test_lan.c - LAN discovery beacons (csrc/p2p_lan.c, design12 section 4.4): seal and open,
 * what a node with another key learns (nothing: the id is in no byte), tampering, replay,
 * clock skew, the signature-check caps (8 a second, 1 per source IP per 2 s), the dial limits
 * (1 per id per 60 s, 16 a minute, none with a session, none on a mediator), source scope and
 * the beacon schedule (0, 1, 3 s, then 31..34 s; network changes at most once per 10 s).
 * The state is driven directly, on a virtual clock. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_crypto.h"
#include "../csrc/p2p_lan.h"

#define S 1000000ull
#define T0 (1000 * S)             /* monotonic start */
#define UNIX0 1800000000000000ull /* the wall clock at T0 */

static p2p_identity ids[24];
static uint8_t psk_a[32], psk_b[32];
static p2p_rng rng;

static p2p_addr addr(const char *s)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    p2p_addr_parse(&a, s);
    return a;
}

/* from 10.9.0.(10 + i):44344 */
static p2p_addr lan_src(int i)
{
    p2p_addr a = addr("10.9.0.1:44344");
    a.ip[3] = (uint8_t)(10 + i);
    return a;
}

/* A beacon of identity i, port 40000 + i, stamped unix_us, under key. */
static void beacon(uint8_t out[P2P_LAN_BEACON_LEN], const uint8_t *psk, int i, uint64_t unix_us)
{
    uint8_t key[32], nonce[24];
    p2p_lan_key(key, psk);
    p2p_rng_bytes(&rng, nonce, sizeof nonce);
    p2p_lan_seal(out, key, nonce, ids[i].ed_pk, ids[i].ed_sk, (uint16_t)(40000 + i), unix_us);
}

/* what the owner answers */
static int refuse_id = -1, session_id = -1;
static int refused(void *ud, const uint8_t id[32])
{
    (void)ud;
    return refuse_id >= 0 && memcmp(id, ids[refuse_id].ed_pk, 32) == 0;
}
static int has_session(void *ud, const uint8_t id[32])
{
    (void)ud;
    return session_id >= 0 && memcmp(id, ids[session_id].ed_pk, 32) == 0;
}

static p2p_lan_ctx ctx(int dial)
{
    p2p_lan_ctx c;
    memset(&c, 0, sizeof c);
    c.self_id = ids[0].ed_pk;
    c.dial = dial;
    c.refused = refused;
    c.has_session = has_session;
    return c;
}

static int recv_at(p2p_lan_state *l, const p2p_lan_ctx *c, int src, const uint8_t *b, uint64_t now,
                   p2p_addr *to, uint8_t id[32])
{
    p2p_addr from = lan_src(src);
    return p2p_lan_state_recv(l, c, &from, b, P2P_LAN_BEACON_LEN, now, to, id);
}

static void test_seal_open(void)
{
    uint8_t b[P2P_LAN_BEACON_LEN], key[32];
    beacon(b, psk_a, 3, UNIX0);
    T_EQ_MEM(b, "p2pb\x01\x00\x00\x00", 8);
    p2p_lan_key(key, psk_a);
    p2p_lan_beacon bc;
    T_EQ_INT(p2p_lan_open(b, sizeof b, key, &bc), 0);
    T_EQ_MEM(bc.id, ids[3].ed_pk, 32);
    T_EQ_INT(bc.port, 40003);
    T_EQ_INT(bc.unix_us, UNIX0);
    T_EQ_INT(p2p_lan_verify(&bc), 0);
    /* every single-bit change anywhere fails the tag (or the magic) */
    int opened = 0;
    for (size_t i = 0; i < sizeof b; i++) {
        b[i] ^= 0x10;
        opened += p2p_lan_open(b, sizeof b, key, &bc) == 0;
        b[i] ^= 0x10;
    }
    T_EQ_INT(opened, 0);
    T_EQ_INT(p2p_lan_open(b, sizeof b - 1, key, &bc), -1);
    /* a signature by someone else over the same contents: opens, fails verify */
    uint8_t nonce[24] = {0};
    p2p_lan_seal(b, key, nonce, ids[3].ed_pk, ids[4].ed_sk, 40003, UNIX0);
    T_EQ_INT(p2p_lan_open(b, sizeof b, key, &bc), 0);
    T_EQ_INT(p2p_lan_verify(&bc), -1);
}

/* 1 when any 8 consecutive bytes of needle (32 bytes) occur in hay. */
static int leaks(const uint8_t *hay, size_t n, const uint8_t *needle)
{
    for (size_t k = 0; k + 8 <= 32; k++)
        for (size_t i = 0; i + 8 <= n; i++)
            if (memcmp(hay + i, needle + k, 8) == 0) return 1;
    return 0;
}

static void test_other_key_learns_nothing(void)
{
    uint8_t b[P2P_LAN_BEACON_LEN], keyb[32];
    p2p_lan_key(keyb, psk_b);
    int leaked = 0, opened = 0;
    for (int round = 0; round < 200; round++) {
        beacon(b, psk_a, round % 20 + 1, UNIX0 + (uint64_t)round);
        leaked += leaks(b, sizeof b, ids[round % 20 + 1].ed_pk);
        p2p_lan_beacon bc;
        memset(&bc, 0x77, sizeof bc);
        opened += p2p_lan_open(b, sizeof b, keyb, &bc) == 0;
        /* nothing left in the output either */
        static const uint8_t zero[sizeof bc];
        T_EQ_MEM(&bc, zero, sizeof bc);
    }
    T_EQ_INT(leaked, 0);
    T_EQ_INT(opened, 0);
    /* and through the receive path: counted as NOKEY, no peer recorded, no dial */
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_b, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    beacon(b, psk_a, 5, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 5, b, T0, NULL, NULL), P2P_LAN_NOKEY);
    p2p_lan_peer out[4];
    T_EQ_INT(p2p_lan_state_peers(&l, T0, out, 4), 0);
    T_EQ_INT(l.dropped, 1);
    T_EQ_INT(l.verified, 0);
}

static void test_dial_and_replay(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    uint8_t b[P2P_LAN_BEACON_LEN], id[32];
    p2p_addr to;
    beacon(b, psk_a, 2, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 2, b, T0, &to, id), P2P_LAN_DIAL);
    T_EQ_MEM(id, ids[2].ed_pk, 32);
    p2p_addr want = addr("10.9.0.12:40002");
    T_CHECK(p2p_addr_equal(&to, &want));
    /* the broadcast copy of it at once: a duplicate, not a drop */
    T_EQ_INT(recv_at(&l, &c, 2, b, T0 + 1000, &to, id), P2P_LAN_DUPLICATE);
    T_EQ_INT(l.dropped, 0);
    /* the same bytes again, 6 s later: a replay */
    T_EQ_INT(recv_at(&l, &c, 2, b, T0 + 6 * S, &to, id), P2P_LAN_REPLAYED);
    T_EQ_INT(l.dropped, 1);
    /* node:lan_peers() */
    p2p_lan_peer out[4];
    T_EQ_INT(p2p_lan_state_peers(&l, T0 + 6 * S, out, 4), 1);
    T_EQ_MEM(out[0].id, ids[2].ed_pk, 32);
    T_CHECK(p2p_addr_equal(&out[0].addr, &want));
    T_EQ_INT(p2p_lan_state_peers(&l, T0 + 200 * S, out, 4), 0); /* forgotten */
}

static void test_clock_skew(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    uint8_t b[P2P_LAN_BEACON_LEN];
    uint64_t now = T0 + 50 * S, ours = UNIX0 + 50 * S; /* our wall clock moves with now */
    beacon(b, psk_a, 1, ours + 601 * S);
    T_EQ_INT(recv_at(&l, &c, 1, b, now, NULL, NULL), P2P_LAN_STALE);
    beacon(b, psk_a, 1, ours - 601 * S);
    T_EQ_INT(recv_at(&l, &c, 1, b, now, NULL, NULL), P2P_LAN_STALE);
    beacon(b, psk_a, 1, ours + 599 * S);
    T_EQ_INT(recv_at(&l, &c, 1, b, now, NULL, NULL), P2P_LAN_DIAL);
    beacon(b, psk_a, 2, ours - 599 * S);
    T_EQ_INT(recv_at(&l, &c, 2, b, now, NULL, NULL), P2P_LAN_DIAL);
    /* a sender without a wall clock (0) is stale to one with a clock */
    beacon(b, psk_a, 3, 0);
    T_EQ_INT(recv_at(&l, &c, 3, b, now, NULL, NULL), P2P_LAN_STALE);
}

static void test_verify_caps(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(0); /* a mediator: records only */
    uint8_t b[P2P_LAN_BEACON_LEN];
    int ok = 0, rate = 0;
    /* 20 sources within one second: 8 checked */
    for (int i = 1; i <= 20; i++) {
        beacon(b, psk_a, i, UNIX0);
        int rc = recv_at(&l, &c, i, b, T0 + (uint64_t)i * 10000, NULL, NULL);
        ok += rc == P2P_LAN_HEARD;
        rate += rc == P2P_LAN_RATE;
    }
    T_EQ_INT(ok, 8);
    T_EQ_INT(rate, 12);
    T_EQ_INT(l.verified, 8);
    /* one source: a second check within 2 s is refused, after 2 s allowed */
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    beacon(b, psk_a, 1, UNIX0 + 1);
    T_EQ_INT(recv_at(&l, &c, 1, b, T0, NULL, NULL), P2P_LAN_HEARD);
    beacon(b, psk_a, 2, UNIX0 + 2); /* another id, same source IP */
    T_EQ_INT(recv_at(&l, &c, 1, b, T0 + 1999999, NULL, NULL), P2P_LAN_RATE);
    T_EQ_INT(recv_at(&l, &c, 1, b, T0 + 2 * S, NULL, NULL), P2P_LAN_HEARD);
    /* a forged signature counts, and is dropped */
    uint8_t key[32], nonce[24] = {1};
    p2p_lan_key(key, psk_a);
    p2p_lan_seal(b, key, nonce, ids[5].ed_pk, ids[6].ed_sk, 40001, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 5, b, T0 + 3 * S, NULL, NULL), P2P_LAN_FORGED);
    /* 30 s of a flood from one source at 100 beacons a second: 15 checks */
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    for (int k = 0; k < 3000; k++) {
        beacon(b, psk_a, 1 + k % 20, UNIX0 + (uint64_t)k);
        recv_at(&l, &c, 1, b, T0 + (uint64_t)k * 10000, NULL, NULL);
    }
    T_EQ_INT(l.verified, 15);
}

static void test_dial_limits(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    uint8_t b[P2P_LAN_BEACON_LEN];
    /* one id, beacons every 3 s for 120 s: dials at 0 and 60 s only */
    int dials = 0, heard = 0;
    for (uint64_t t = 0; t < 120 * S; t += 3 * S) {
        beacon(b, psk_a, 1, UNIX0 + t);
        int rc = recv_at(&l, &c, 1, b, T0 + t, NULL, NULL);
        dials += rc == P2P_LAN_DIAL;
        heard += rc == P2P_LAN_HEARD;
    }
    T_EQ_INT(dials, 2);
    T_EQ_INT(heard, 38);
    /* 20 ids within a minute (one a second from their own sources): 16 dials */
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    dials = 0;
    for (int i = 1; i <= 20; i++) {
        beacon(b, psk_a, i, UNIX0 + (uint64_t)i * S);
        dials += recv_at(&l, &c, i, b, T0 + (uint64_t)i * S, NULL, NULL) == P2P_LAN_DIAL;
    }
    T_EQ_INT(dials, 16);
    /* a minute after the first dial, dials are possible again */
    beacon(b, psk_a, 17, UNIX0 + 62 * S);
    T_EQ_INT(recv_at(&l, &c, 17, b, T0 + 62 * S, NULL, NULL), P2P_LAN_DIAL);
    /* a session with the id: no dial; a mediator: no dial; recorded either way */
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    session_id = 4;
    beacon(b, psk_a, 4, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 4, b, T0, NULL, NULL), P2P_LAN_HEARD);
    session_id = -1;
    p2p_lan_ctx m = ctx(0);
    beacon(b, psk_a, 5, UNIX0);
    T_EQ_INT(recv_at(&l, &m, 5, b, T0, NULL, NULL), P2P_LAN_HEARD);
    p2p_lan_peer out[4];
    T_EQ_INT(p2p_lan_state_peers(&l, T0, out, 4), 2);
    T_EQ_INT(l.dials, 0);
}

static void test_refusals(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    uint8_t b[P2P_LAN_BEACON_LEN];
    /* our own beacon (multicast loop): not a drop */
    beacon(b, psk_a, 0, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 0, b, T0, NULL, NULL), P2P_LAN_SELF);
    /* refused by policy: no signature check spent */
    refuse_id = 7;
    beacon(b, psk_a, 7, UNIX0);
    T_EQ_INT(recv_at(&l, &c, 7, b, T0, NULL, NULL), P2P_LAN_REFUSED);
    refuse_id = -1;
    T_EQ_INT(l.verify_n, 0);
    /* from outside the LAN (a public source) or a bad shape */
    beacon(b, psk_a, 8, UNIX0);
    p2p_addr pub = addr("198.51.100.9:44344");
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &pub, b, sizeof b, T0, NULL, NULL), P2P_LAN_BAD);
    T_EQ_INT(recv_at(&l, &c, 8, b, T0, NULL, NULL), P2P_LAN_DIAL); /* the same bytes, on the LAN */
    /* an IPv6 link-local source without a zone (no interface to dial it out of): dropped
     * before any check that costs, even on a node that can reach IPv6 */
    beacon(b, psk_a, 10, UNIX0);
    p2p_addr ll = addr("[fe80::10]:44344");
    c.v6 = 1;
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &ll, b, sizeof b, T0, NULL, NULL), P2P_LAN_BAD);
    c.v6 = 0;
    p2p_addr from = lan_src(9);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, 153, T0, NULL, NULL), P2P_LAN_BAD);
    b[4] = 2;
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0, NULL, NULL), P2P_LAN_BAD);
    T_EQ_INT(l.received, 7);
    T_EQ_INT(l.dropped, 5);
}

/* IPv6 link-local sources (issue 12): dialled with their zone, by a node whose socket can send
 * to IPv6; ignored, before any signature check, by one bound to IPv4. Every other rule holds. */
static void test_link_local(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    p2p_lan_ctx c = ctx(1);
    uint8_t b[P2P_LAN_BEACON_LEN], id[32];
    p2p_addr to, from = addr("[fe80::10%3]:44344");
    T_EQ_INT(from.zone, 3);
    /* a node bound to IPv4: cannot reach it, learns nothing, spends no check */
    beacon(b, psk_a, 10, UNIX0);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0, &to, id), P2P_LAN_BAD);
    p2p_addr ula = addr("[fd00::10]:44344");
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &ula, b, sizeof b, T0, &to, id), P2P_LAN_BAD);
    T_EQ_INT(l.verify_n, 0);
    T_EQ_INT(p2p_lan_state_peers(&l, T0, NULL, 0), 0);
    /* dual-stack: dialled at the beacon's port, out of the interface it came in on */
    c.v6 = 1;
    memset(&to, 0, sizeof to);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0, &to, id), P2P_LAN_DIAL);
    p2p_addr want = addr("[fe80::10%3]:40010");
    T_CHECK(p2p_addr_equal(&to, &want));
    T_EQ_MEM(id, ids[10].ed_pk, 32);
    p2p_lan_peer lp[2];
    T_EQ_INT(p2p_lan_state_peers(&l, T0, lp, 2), 1);
    T_CHECK(p2p_addr_equal(&lp[0].addr, &want));
    char text[P2P_ADDR_TEXT_MAX];
    T_EQ_INT(p2p_addr_format(&lp[0].addr, text, sizeof text), 0);
    T_CHECK(strcmp(text, "[fe80::10%3]:40010") == 0);
    /* its copy on another interface (zone 4): the same beacon, not another dial */
    p2p_addr other = addr("[fe80::10%4]:44344");
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &other, b, sizeof b, T0 + 1000, &to, id),
             P2P_LAN_DUPLICATE);
    /* the replay window and the per-id dial gap hold for link-local sources too */
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0 + 6 * S, &to, id), P2P_LAN_REPLAYED);
    beacon(b, psk_a, 10, UNIX0 + 30 * S);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0 + 30 * S, &to, id), P2P_LAN_HEARD);
    /* one check per source per 2 s: a source is its address with its zone */
    beacon(b, psk_a, 11, UNIX0 + 30 * S);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &from, b, sizeof b, T0 + 31 * S, &to, id), P2P_LAN_RATE);
    T_EQ_INT(p2p_lan_state_recv(&l, &c, &other, b, sizeof b, T0 + 31 * S, &to, id), P2P_LAN_DIAL);
    want.zone = 4;
    want.port = 40011;
    T_CHECK(p2p_addr_equal(&to, &want));
}

static void test_schedule(void)
{
    p2p_lan_state l;
    p2p_lan_state_init(&l, psk_a, UNIX0, T0);
    uint8_t b[P2P_LAN_BEACON_LEN];
    uint64_t at[64];
    int n = 0;
    /* port 0: nothing yet, retried a second later */
    T_EQ_INT(p2p_lan_state_timer(&l, T0, &rng, ids[0].ed_pk, ids[0].ed_sk, 0, b), 0);
    T_EQ_INT(p2p_lan_state_deadline(&l), T0 + S);
    while (n < 40) {
        uint64_t t = p2p_lan_state_deadline(&l);
        T_EQ_INT(p2p_lan_state_timer(&l, t - 1, &rng, ids[0].ed_pk, ids[0].ed_sk, 4000, b), 0);
        T_EQ_INT(p2p_lan_state_timer(&l, t, &rng, ids[0].ed_pk, ids[0].ed_sk, 4000, b), 1);
        at[n++] = t - (T0 + S);
    }
    T_EQ_INT(at[0], 0);
    T_EQ_INT(at[1], S);
    T_EQ_INT(at[2], 3 * S);
    int in_first_minute = 0, bad_gap = 0, crowded = 0;
    for (int i = 0; i < n; i++) {
        if (at[i] < 60 * S) in_first_minute++;
        if (i >= 3 && (at[i] - at[i - 1] < 31 * S || at[i] - at[i - 1] > 34 * S)) bad_gap++;
        /* any 60 s window starting after the third beacon: at most 2 */
        if (i >= 5 && at[i] - at[i - 2] < 60 * S) crowded++;
    }
    T_EQ_INT(in_first_minute, 4);
    T_EQ_INT(bad_gap, 0);
    T_EQ_INT(crowded, 0);
    /* the beacon we sent opens under our key with our id, port and wall clock */
    uint8_t key[32];
    p2p_lan_key(key, psk_a);
    p2p_lan_beacon bc;
    T_EQ_INT(p2p_lan_open(b, sizeof b, key, &bc), 0);
    T_EQ_INT(bc.port, 4000);
    T_EQ_INT(bc.unix_us, UNIX0 + (at[n - 1] + S));
    T_EQ_INT(l.sent, 40);
    /* network change: one beacon at once; a second change within 10 s waits for the 10 s */
    uint64_t now = T0 + S + at[n - 1] + 5 * S;
    p2p_lan_state_changed(&l, now);
    T_EQ_INT(p2p_lan_state_deadline(&l), now);
    T_EQ_INT(p2p_lan_state_timer(&l, now, &rng, ids[0].ed_pk, ids[0].ed_sk, 4000, b), 1);
    uint64_t regular = p2p_lan_state_deadline(&l);
    T_CHECK(regular >= now + 31 * S);
    p2p_lan_state_changed(&l, now + 4 * S);
    T_EQ_INT(p2p_lan_state_deadline(&l), now + 10 * S);
    T_EQ_INT(p2p_lan_state_timer(&l, now + 10 * S, &rng, ids[0].ed_pk, ids[0].ed_sk, 4000, b), 1);
    /* a change 10 s or more after the last one: at once again */
    uint64_t later = p2p_lan_state_deadline(&l) - S;
    T_CHECK(later >= now + 20 * S);
    p2p_lan_state_changed(&l, later);
    T_EQ_INT(p2p_lan_state_deadline(&l), later);
}

/* ---- through the host: the io queue, the LAN queue, the dial notice --------------------- */

#define NH 5
typedef struct lanet {
    p2p_host *h[NH];
    p2p_addr udp[NH]; /* 10.9.0.(1 + i):4000 */
    int n, lan_start[NH], lan_stop[NH], joins[NH];
    uint64_t now;
    size_t beacons[NH];
    int bad_dest;
    /* issue 12, IPv6: 0: an IPv4 LAN (above). 1: a link with IPv6 link-local addresses only,
     * udp[i] = [fe80::(1 + i)%2]:4000, no address given to the hosts: the driver's LAN_START
     * answer tells each its bound address, bound[i] ("[::]:4000", or "0.0.0.0:4000" for one
     * bound to IPv4); only the ff02::7032:706e copies are carried. */
    int v6;
    p2p_addr bound[NH];
    size_t v6_beacons[NH];
} lanet;

static p2p_host *lan_host(int i, const char *netkey, int mediator, uint64_t now)
{
    p2p_config c;
    p2p_config_init(&c);
    c.identity = &ids[i];
    c.seed = 100 + (uint64_t)i;
    c.unix_us = UNIX0;
    c.lan_discovery = 1;
    c.mediator = mediator;
    c.network_key = (const uint8_t *)netkey;
    c.network_key_len = strlen(netkey);
    p2p_host *h = NULL;
    T_EQ_INT(p2p_host_new(&h, &c, now), 0);
    return h;
}

static int index_of(lanet *w, const p2p_addr *a)
{
    for (int i = 0; i < w->n; i++)
        if (p2p_addr_equal(a, &w->udp[i])) return i;
    return -1;
}

/* One step of 10 ms: timers, then every queue of every host, delivered at once. LAN datagrams
 * to the group or broadcast reach every other host, from its IP and the LAN port. */
static void lan_step(lanet *w)
{
    w->now += 10000;
    for (int i = 0; i < w->n; i++)
        if (p2p_host_next_timeout(w->h[i]) <= w->now) p2p_host_on_timeout(w->h[i], w->now);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < w->n; i++) {
            p2p_io io;
            while (p2p_host_next_io(w->h[i], &io)) {
                if (io.kind == P2P_IO_LAN_START) {
                    w->lan_start[i]++;
                    T_EQ_INT(io.n, P2P_LAN_PORT);
                    p2p_io_result r;
                    memset(&r, 0, sizeof r);
                    r.kind = io.kind;
                    r.id = io.id;
                    if (w->v6) r.local = w->bound[i];
                    p2p_host_io_done(w->h[i], &r, w->now);
                } else if (io.kind == P2P_IO_LAN_STOP) {
                    w->lan_stop[i]++;
                } else {
                    p2p_io_result r;
                    memset(&r, 0, sizeof r);
                    r.kind = io.kind;
                    r.id = io.id;
                    r.status = P2P_ERR_IO;
                    p2p_host_io_done(w->h[i], &r, w->now);
                }
            }
            uint8_t buf[P2P_MAX_PACKET];
            p2p_addr to;
            size_t len;
            while ((len = p2p_host_next_lan(w->h[i], &to, buf, sizeof buf)) > 0) {
                w->beacons[i]++;
                if (to.family == P2P_AF_INET6) {
                    p2p_addr g = addr("[ff02::7032:706e]:44344");
                    w->v6_beacons[i]++;
                    if (!p2p_addr_equal(&to, &g)) w->bad_dest++;
                    if (!w->v6) continue;
                    for (int k = 0; k < w->n; k++) {
                        p2p_addr from = w->udp[i];
                        from.port = P2P_LAN_PORT;
                        /* a host bound to IPv4 has no IPv6 LAN socket: the driver hands it
                         * nothing, but the core must cope if one did */
                        p2p_host_recv_lan(w->h[k], &from, buf, len, w->now);
                    }
                    continue;
                }
                if (w->v6) continue; /* no IPv4 on this link */
                int group = to.family == P2P_AF_INET4 && to.ip[0] == 239;
                int bcast = to.family == P2P_AF_INET4 && to.ip[0] == 255;
                if ((!group && !bcast) || to.port != P2P_LAN_PORT || to.sock != 0) w->bad_dest++;
                if (!group) continue; /* the broadcast copy reaches the same hosts */
                for (int k = 0; k < w->n; k++) {
                    p2p_addr from = w->udp[i];
                    from.port = P2P_LAN_PORT;
                    p2p_host_recv_lan(w->h[k], &from, buf, len, w->now);
                }
            }
            while ((len = p2p_host_next_datagram(w->h[i], &to, buf, sizeof buf)) > 0) {
                int k = index_of(w, &to);
                if (k >= 0) p2p_host_recv(w->h[k], &w->udp[i], buf, len, w->now);
            }
            p2p_event ev;
            while (p2p_host_next_event(w->h[i], &ev))
                if (ev.type == P2P_EV_JOIN) w->joins[i]++;
        }
    }
}

static void lanet_init(lanet *w, int n, const char **keys, const int *mediator)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->now = T0;
    for (int i = 0; i < n; i++) {
        w->h[i] = lan_host(i, keys[i], mediator ? mediator[i] : 0, w->now);
        w->udp[i] = addr("10.9.0.1:4000");
        w->udp[i].ip[3] = (uint8_t)(1 + i);
        p2p_host_add_address(w->h[i], &w->udp[i], w->now);
    }
}

/* The IPv6 link; v4only[i]: bound to 0.0.0.0. v4addr: each host has a private IPv4 address
 * 10.9.0.(1 + i):4000 (IPv4 on the link, its multicast and broadcast filtered); 0: none, the
 * hosts have no address of their own (link-local only). */
static void lanet_init6(lanet *w, int n, const char **keys, const int *v4only, int v4addr)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->now = T0;
    w->v6 = 1;
    for (int i = 0; i < n; i++) {
        w->h[i] = lan_host(i, keys[i], 0, w->now);
        w->udp[i] = addr("[fe80::1%2]:4000");
        w->udp[i].ip[15] = (uint8_t)(1 + i);
        w->bound[i] = addr(v4only && v4only[i] ? "0.0.0.0:4000" : "[::]:4000");
        if (v4addr) {
            p2p_addr a = addr("10.9.0.1:4000");
            a.ip[3] = (uint8_t)(1 + i);
            p2p_host_add_address(w->h[i], &a, w->now);
        }
    }
}

static void lanet_free(lanet *w)
{
    for (int i = 0; i < w->n; i++) p2p_host_free(w->h[i]);
}

static void test_host_mesh(void)
{
    /* three nodes with one key find each other; a fourth with another key finds nobody and
     * nobody dials it */
    lanet w;
    const char *keys[4] = {"lan-key", "lan-key", "lan-key", "other-key"};
    lanet_init(&w, 4, keys, NULL);
    for (int k = 0; k < 500; k++) lan_step(&w); /* 5 s */
    for (int i = 0; i < 4; i++) T_EQ_INT(w.lan_start[i], 1);
    T_EQ_INT(w.bad_dest, 0);
    p2p_lan_peer lp[8];
    for (int i = 0; i < 3; i++) {
        T_EQ_INT(w.joins[i], 2);
        T_EQ_INT(p2p_host_lan_peers(w.h[i], lp, 8), 2);
        p2p_stats st;
        p2p_host_stats(w.h[i], &st);
        T_CHECK(st.lan_received >= 2);
        T_EQ_INT(st.lan_sent, w.beacons[i]);
        T_CHECK(st.lan_dropped >= 3); /* the other key's beacons */
        /* the other key's node: never heard */
        for (size_t k = 0; k < 2; k++) T_CHECK(memcmp(lp[k].id, ids[3].ed_pk, 32) != 0);
    }
    T_EQ_INT(w.joins[3], 0);
    T_EQ_INT(p2p_host_lan_peers(w.h[3], lp, 8), 0);
    p2p_stats st;
    p2p_host_stats(w.h[3], &st);
    T_EQ_INT(st.lan_received, 0);
    T_EQ_INT(st.lan_dials, 0);
    T_CHECK(st.lan_dropped >= 9);
    /* beacons in 5 s: 0, 1, 3 s, two copies each (group and broadcast) */
    T_EQ_INT(w.beacons[0], 6);
    for (int i = 0; i < 4; i++) p2p_host_close(w.h[i], w.now);
    for (int k = 0; k < 3; k++) lan_step(&w);
    for (int i = 0; i < 4; i++) T_EQ_INT(w.lan_stop[i], 1);
    lanet_free(&w);
}

static void test_host_mesh_v6(void)
{
    /* three dual-stack nodes on a link with link-local addresses only find each other over
     * ff02::7032:706e and dial each other's fe80:: address with its zone; a fourth with another
     * key joins nobody; a fifth bound to IPv4 neither beacons over IPv6 nor dials IPv6 */
    lanet w;
    const char *keys[5] = {"lan-key", "lan-key", "lan-key", "other-key", "lan-key"};
    int v4only[5] = {0, 0, 0, 0, 1};
    lanet_init6(&w, 5, keys, v4only, 1);
    for (int k = 0; k < 500; k++) lan_step(&w); /* 5 s */
    T_EQ_INT(w.bad_dest, 0);
    p2p_lan_peer lp[8];
    char text[P2P_ADDR_TEXT_MAX];
    for (int i = 0; i < 3; i++) {
        T_EQ_INT(w.joins[i], 2);
        T_EQ_INT(p2p_host_lan_peers(w.h[i], lp, 8), 2);
        T_EQ_INT(lp[0].addr.zone, 2);
        T_EQ_INT(p2p_addr_format(&lp[0].addr, text, sizeof text), 0);
        T_CHECK(strncmp(text, "[fe80::", 7) == 0 && strstr(text, "%2]:4000") != NULL);
        /* 1 and 3 s: the one at 0 s went before the driver's answer told the bound address */
        T_EQ_INT(w.v6_beacons[i], 2);
        for (size_t k = 0; k < 2; k++) T_CHECK(memcmp(lp[k].id, ids[3].ed_pk, 32) != 0);
    }
    T_EQ_INT(w.joins[3], 0);
    T_EQ_INT(p2p_host_lan_peers(w.h[3], lp, 8), 0);
    p2p_stats st;
    p2p_host_stats(w.h[3], &st);
    T_EQ_INT(st.lan_received, 0);
    T_EQ_INT(st.lan_dials, 0);
    /* bound to IPv4: no IPv6 copy, no IPv6 beacon taken, nobody dialled */
    T_EQ_INT(w.v6_beacons[4], 0);
    T_EQ_INT(w.joins[4], 0);
    T_EQ_INT(p2p_host_lan_peers(w.h[4], lp, 8), 0);
    p2p_host_stats(w.h[4], &st);
    T_EQ_INT(st.lan_received, 0);
    T_EQ_INT(st.lan_dials, 0);
    lanet_free(&w);
}

static void test_host_mediator_records(void)
{
    /* a mediator (mesh = false) records beacons and dials nobody; members dial it */
    lanet w;
    const char *keys[2] = {"k", "k"};
    int med[2] = {1, 0};
    lanet_init(&w, 2, keys, med);
    for (int k = 0; k < 400; k++) lan_step(&w);
    p2p_stats s0, s1;
    p2p_host_stats(w.h[0], &s0);
    p2p_host_stats(w.h[1], &s1);
    T_EQ_INT(s0.lan_dials, 0);
    T_EQ_INT(s1.lan_dials, 1);
    p2p_lan_peer lp[4];
    T_EQ_INT(p2p_host_lan_peers(w.h[0], lp, 4), 1);
    T_EQ_MEM(lp[0].id, ids[1].ed_pk, 32);
    T_CHECK(p2p_addr_equal(&lp[0].addr, &w.udp[1]));
    T_EQ_INT(w.joins[0], 1);
    /* a minute of beacons while connected: no more dials */
    for (int k = 0; k < 9000; k++) lan_step(&w);
    p2p_host_stats(w.h[1], &s1);
    T_EQ_INT(s1.lan_dials, 1);
    /* 94 s: beacons at 0, 1, 3, then 31..34 s apart: 5 or 6, two copies each */
    T_CHECK(w.beacons[1] >= 10 && w.beacons[1] <= 12);
    lanet_free(&w);
}

int main(void)
{
    p2p_init();
    p2p_rng_init(&rng, 1212);
    for (int i = 0; i < 24; i++) {
        uint8_t seed[32];
        memset(seed, 0x40 + i, sizeof seed);
        p2p_identity_from_seed(&ids[i], seed);
    }
    p2p_network_psk(psk_a, (const uint8_t *)"net-a", 5);
    p2p_network_psk(psk_b, (const uint8_t *)"net-b", 5);
    T_RUN(test_seal_open);
    T_RUN(test_other_key_learns_nothing);
    T_RUN(test_dial_and_replay);
    T_RUN(test_clock_skew);
    T_RUN(test_verify_caps);
    T_RUN(test_dial_limits);
    T_RUN(test_refusals);
    T_RUN(test_link_local);
    T_RUN(test_schedule);
    T_RUN(test_host_mesh);
    T_RUN(test_host_mesh_v6);
    T_RUN(test_host_mediator_records);
    for (int i = 0; i < 24; i++) p2p_identity_wipe(&ids[i]);
    return t_summary("test_lan");
}
