/* test_attack_hs.c - attacks on the handshake (issue 8 rows 6 and 11, "Handshake under load",
 * the network key): replayed and flooded INITs from spoofed sources, one source IP filling
 * the half-open table, RESP amplification, a candidate that answers for another node, and the
 * network key stretched with Argon2id. Every figure is measured on the attacker harness
 * (tests/attack.h) and on the work counters, never on wall time. */
#include "attack.h"

#include <pthread.h>
#include <sodium.h>

/* X25519 operations a responder does for one INIT it answers: its static public key, the
 * ephemeral key pair, ee and es. */
#define RESP_DH 4

/* The i-th spoofed source: a distinct IPv4 address in 198.18.0.0/15. */
static p2p_addr spoofed(int i)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    a.family = P2P_AF_INET4;
    a.ip[0] = 198;
    a.ip[1] = 18;
    a.ip[2] = (uint8_t)(i >> 8);
    a.ip[3] = (uint8_t)(i & 0xff);
    a.port = 40000;
    return a;
}

/* Bytes host `node` sent to spoofed sources lo..hi-1 at most `ratio` times what each sent it. */
static int bounded_per_source(anet *net, int node, int lo, int hi, double ratio)
{
    for (int i = lo; i < hi; i++) {
        p2p_addr s = spoofed(i);
        if ((double)an_sent_to(net, node, &s) > ratio * (double)an_recv_from(net, node, &s)) {
            fprintf(stderr, "  source %d: sent %llu for %llu\n", i,
                    (unsigned long long)an_sent_to(net, node, &s),
                    (unsigned long long)an_recv_from(net, node, &s));
            return 0;
        }
    }
    return 1;
}

/* Row 6: one captured INIT replayed from 256 spoofed sources. Before: the half-open table
 * (256) filled, each replay cost a DH, and every source got a RESP of 2.03x. */
static void test_replayed_init(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), v = an_add(&net, NULL), c = an_add(&net, NULL);
    /* One INIT v has answered already (a's honest join), one it never saw (a dialled a
     * stranger with it). */
    an_capture(&net, a, P2P_PKT_INIT);
    T_CHECK(an_connect(&net, a, v, 2000000) != 0);
    uint8_t seen[P2P_INIT_LEN], unseen[P2P_INIT_LEN];
    T_CHECK(net.ncap >= 1 && net.cap_len[0] == P2P_INIT_LEN);
    memcpy(seen, net.cap[0], P2P_INIT_LEN);
    an_capture(&net, a, P2P_PKT_INIT);
    p2p_addr stranger = an_addr("203.0.113.77:4000");
    T_EQ_INT(p2p_host_connect(net.n[a].h, &stranger, NULL, net.now, NULL), 0);
    an_run(&net, 1000);
    T_CHECK(net.ncap >= 1);
    memcpy(unseen, net.cap[0], P2P_INIT_LEN);

    p2p_stats before = an_stats(&net, v);
    T_EQ_INT(p2p_host_connect(net.n[c].h, &net.n[v].addr, net.n[v].id.ed_pk, net.now, NULL), 0);
    for (int i = 0; i < 256; i++) {
        p2p_addr s = spoofed(i);
        an_inject(&net, v, &s, i % 2 ? seen : unseen, P2P_INIT_LEN);
        if (i % 16 == 0) an_run(&net, 5000);
    }
    T_CHECK(net.n[v].h->n_half_open <= 1); /* the unseen INIT's first replay */
    an_run(&net, 2000000);
    p2p_stats after = an_stats(&net, v);
    /* c joined during the flood */
    T_CHECK(an_handle(&net, c, v) != 0 && an_handle(&net, v, c) != 0);
    /* one responder handshake for the first copy of `unseen`, one for c (and c's FIN) */
    T_CHECK(after.work_dh - before.work_dh <= 2 * RESP_DH + 1);
    T_CHECK(after.dropped_replay - before.dropped_replay >= 254);
    T_CHECK(bounded_per_source(&net, v, 0, 256, 2.0));
    /* only the first spoofed source got an answer at all */
    uint64_t answered = 0;
    for (int i = 0; i < 256; i++) {
        p2p_addr s = spoofed(i);
        answered += an_pkts_to(&net, v, &s) ? 1 : 0;
    }
    T_CHECK(answered <= 1);
    an_free(&net);
}

/* Spoofed sources with fresh ephemeral keys: past cookie_threshold half-open handshakes the
 * node answers with COOKIEs only (no DH, no state), and an honest peer still joins by
 * answering its COOKIE. */
static void test_init_flood_cookies(void)
{
    anet net;
    an_init(&net, 10000);
    int v = an_add(&net, NULL), c = an_add(&net, NULL);
    p2p_rng rng;
    p2p_rng_init(&rng, 99);
    uint32_t threshold = net.n[v].h->cookie_threshold;
    T_EQ_INT(threshold, 32); /* 256 / 8 */
    p2p_stats before = an_stats(&net, v);
    uint8_t init[P2P_INIT_LEN];
    int sent = 0;
    for (; sent < 256; sent++) {
        p2p_addr s = spoofed(sent);
        an_forge_init(net.n[v].h, &rng, 0x1000u + (uint32_t)sent, init);
        an_inject(&net, v, &s, init, sizeof init);
    }
    p2p_stats mid = an_stats(&net, v);
    T_EQ_INT(mid.under_load, 1);
    T_EQ_INT(net.n[v].h->n_half_open, threshold);
    T_EQ_INT(mid.cookies_sent - before.cookies_sent, 256 - threshold);
    T_CHECK(mid.work_dh - before.work_dh <= (uint64_t)threshold * RESP_DH);
    /* the honest peer dials while the flood goes on */
    T_EQ_INT(p2p_host_connect(net.n[c].h, &net.n[v].addr, net.n[v].id.ed_pk, net.now, NULL), 0);
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 32; k++, sent++) {
            p2p_addr s = spoofed(sent);
            an_forge_init(net.n[v].h, &rng, 0x1000u + (uint32_t)sent, init);
            an_inject(&net, v, &s, init, sizeof init);
        }
        an_run(&net, 50000);
    }
    p2p_stats after = an_stats(&net, v);
    T_CHECK(an_handle(&net, c, v) != 0 && an_handle(&net, v, c) != 0);
    T_EQ_INT(net.n[c].errors, 0);
    /* no DH per spoofed INIT once under load: the first `threshold`, then c's (and its FIN) */
    T_CHECK(after.work_dh - before.work_dh <= (uint64_t)(threshold + 1) * RESP_DH + 1);
    T_CHECK(after.cookies_sent - before.cookies_sent >= (uint64_t)sent - threshold);
    /* a spoofed source got one COOKIE (64 bytes) for its INIT (160): never more than 1x */
    T_CHECK(bounded_per_source(&net, v, (int)threshold, sent, 1.0));
    T_CHECK(bounded_per_source(&net, v, 0, (int)threshold, 2.0));
    /* the load passes when the half-open entries expire */
    an_run(&net, 11000000);
    T_EQ_INT(an_stats(&net, v).under_load, 0);
    an_free(&net);
}

/* One source cannot fill the half-open table: at most 8 half-open handshakes per IPv4 address
 * or IPv6 /64, and max_half_open in all. */
static void test_per_ip_cap(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.max_half_open = 64;
    cfg.cookie_threshold = 64; /* not under load until the table is full */
    int v = an_add(&net, &cfg), c = an_add(&net, NULL);
    p2p_rng rng;
    p2p_rng_init(&rng, 7);
    uint8_t init[P2P_INIT_LEN];
    for (int i = 0; i < 60; i++) {
        p2p_addr s = spoofed(1);
        s.port = (uint16_t)(1000 + i);
        an_forge_init(net.n[v].h, &rng, 0x2000u + (uint32_t)i, init);
        an_inject(&net, v, &s, init, sizeof init);
    }
    T_EQ_INT(net.n[v].h->n_half_open, P2P_HALF_OPEN_PER_IP);
    T_EQ_INT(an_stats(&net, v).dropped_half_open, 60 - P2P_HALF_OPEN_PER_IP);
    an_run(&net, 11000000); /* they expire */
    T_EQ_INT(net.n[v].h->n_half_open, 0);
    /* an IPv6 /64 counts as one source */
    for (int i = 0; i < 60; i++) {
        char text[64];
        snprintf(text, sizeof text, "[2001:db8:1:2:%x::1]:4000", i + 1);
        p2p_addr s = an_addr(text);
        an_forge_init(net.n[v].h, &rng, 0x2800u + (uint32_t)i, init);
        an_inject(&net, v, &s, init, sizeof init);
    }
    T_EQ_INT(net.n[v].h->n_half_open, P2P_HALF_OPEN_PER_IP);
    T_EQ_INT(an_stats(&net, v).dropped_half_open, 2 * (60 - P2P_HALF_OPEN_PER_IP));
    /* other sources fill the rest, up to max_half_open and no further */
    for (int i = 0; i < 80; i++) {
        p2p_addr s = spoofed(100 + i);
        an_forge_init(net.n[v].h, &rng, 0x3000u + (uint32_t)i, init);
        an_inject(&net, v, &s, init, sizeof init);
    }
    T_EQ_INT(net.n[v].h->n_half_open, 64);
    /* a full table is "under load" too (the threshold is the table's size): COOKIEs */
    T_EQ_INT(an_stats(&net, v).dropped_half_open, 2 * (60 - P2P_HALF_OPEN_PER_IP));
    T_EQ_INT(an_stats(&net, v).cookies_sent, 80 - 56);
    /* sources that hold a valid cookie pass the COOKIE check but not the full table */
    for (int i = 0; i < 10; i++) {
        p2p_addr s = spoofed(300 + i);
        an_forge_init(net.n[v].h, &rng, 0x3800u + (uint32_t)i, init);
        uint8_t ab[7] = {4,
                         s.ip[0],
                         s.ip[1],
                         s.ip[2],
                         s.ip[3],
                         (uint8_t)(s.port & 0xff),
                         (uint8_t)(s.port >> 8)};
        uint8_t cookie[P2P_COOKIE_LEN];
        p2p_blake2b(cookie, sizeof cookie, net.n[v].h->cookie_secret[0], P2P_KEY_LEN, ab, sizeof ab,
                    NULL, 0);
        p2p_blake2b(init + INIT_MAC2, P2P_MAC_LEN, cookie, sizeof cookie, init, INIT_MAC2, NULL, 0);
        an_inject(&net, v, &s, init, sizeof init);
        T_EQ_INT(an_pkts_to(&net, v, &s), 0);
    }
    T_EQ_INT(net.n[v].h->n_half_open, 64);
    T_EQ_INT(an_stats(&net, v).dropped_half_open, 2 * (60 - P2P_HALF_OPEN_PER_IP) + 10);
    T_EQ_INT(an_stats(&net, v).cookies_sent, 80 - 56);
    an_run(&net, 11000000); /* they expire; an honest peer gets in */
    T_EQ_INT(net.n[v].h->n_half_open, 0);
    T_CHECK(an_connect(&net, c, v, 2000000) != 0);
    an_free(&net);
}

/* RESP is at most 2x INIT for every payload, the IPv6 observed address included. Before:
 * 260 and 272 bytes for a 128-byte INIT. */
static void test_resp_ratio(void)
{
    anet net;
    an_init(&net, 10000);
    int v = an_add(&net, NULL);
    p2p_rng rng;
    p2p_rng_init(&rng, 5);
    uint8_t init[P2P_INIT_LEN];
    const char *from[] = {"198.51.100.7:5000", "[2001:db8::7]:5000"};
    const uint64_t want[] = {260, 272};
    for (int i = 0; i < 2; i++) {
        p2p_addr s = an_addr(from[i]);
        an_forge_init(net.n[v].h, &rng, 0x4000u + (uint32_t)i, init);
        an_inject(&net, v, &s, init, sizeof init);
        T_EQ_INT(an_pkts_to(&net, v, &s), 1);
        T_EQ_INT(an_sent_to(&net, v, &s), want[i]);
        T_EQ_INT(an_recv_from(&net, v, &s), P2P_INIT_LEN);
        T_CHECK(an_sent_to(&net, v, &s) <= 2 * an_recv_from(&net, v, &s));
        /* a resent INIT gets the same RESP again, one for one */
        an_inject(&net, v, &s, init, sizeof init);
        T_EQ_INT(an_pkts_to(&net, v, &s), 2);
        T_EQ_INT(an_sent_to(&net, v, &s), 2 * want[i]);
    }
    an_free(&net);
}

/* Row 11: an attempt with two candidates, the first answering for another node. Before: the
 * attempt was aborted with "peer id mismatch". */
static void test_lying_candidate(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), liar = an_add(&net, NULL), b = an_add(&net, NULL);
    p2p_addr cands[2] = {net.n[liar].addr, net.n[b].addr};
    int rc = 0;
    p2p_peer *p = p2p_host_dial(net.n[a].h, cands, 2, net.n[b].id.ed_pk, net.now, &rc);
    T_CHECK(p != NULL);
    p2p_stats before = an_stats(&net, a);
    an_run(&net, 2000000);
    T_CHECK(an_handle(&net, a, b) != 0 && an_handle(&net, b, a) != 0);
    T_EQ_INT(an_handle(&net, a, liar), 0);
    T_EQ_INT(net.n[a].errors, 0);
    T_EQ_INT(net.n[a].joins, 1);
    T_CHECK(an_stats(&net, a).dropped > before.dropped);

    /* The same with the other node refused by policy rather than by the expected id. */
    anet m;
    an_init(&m, 10000);
    int d = an_add(&m, NULL), l2 = an_add(&m, NULL), e = an_add(&m, NULL);
    p2p_host_free(m.n[d].h);
    p2p_config cfg;
    p2p_config_init(&cfg);
    const uint8_t(*deny)[P2P_ID_LEN] = (const uint8_t(*)[P2P_ID_LEN])m.n[l2].id.ed_pk;
    cfg.identity = &m.n[d].id;
    cfg.deny = deny;
    cfg.deny_count = 1;
    cfg.seed = 77;
    T_EQ_INT(p2p_host_new(&m.n[d].h, &cfg, m.now), 0);
    p2p_addr c2[2] = {m.n[l2].addr, m.n[e].addr};
    T_CHECK(p2p_host_dial(m.n[d].h, c2, 2, NULL, m.now, &rc) != NULL);
    an_run(&m, 2000000);
    T_CHECK(an_handle(&m, d, e) != 0);
    T_EQ_INT(an_handle(&m, d, l2), 0);
    T_EQ_INT(m.n[d].errors, 0);
    an_free(&m);

    /* With one candidate the error is what it always was. */
    T_EQ_INT(p2p_host_connect(net.n[a].h, &net.n[liar].addr, net.n[b].id.ed_pk, net.now, NULL), 0);
    an_run(&net, 2000000);
    T_EQ_INT(net.n[a].errors, 1);
    char want[256], hb[65], hl[65];
    p2p_id_to_hex(net.n[b].id.ed_pk, hb);
    p2p_id_to_hex(net.n[liar].id.ed_pk, hl);
    snprintf(want, sizeof want, "peer id mismatch: expected %s, got %s", hb, hl);
    T_CHECK(strcmp(net.n[a].err, want) == 0);
    an_free(&net);
}

/* The psk is Argon2id13 over the network key with the protocol's salt and cost, stretched
 * once per process for any number of hosts; hosts with the same key join, others stay
 * silent. */
static void test_network_key(void)
{
    static const char key[] = "correct horse battery staple";
    uint8_t want[P2P_KEY_LEN], got[P2P_KEY_LEN];
    T_EQ_INT(crypto_pwhash(want, sizeof want, key, sizeof key - 1,
                           (const uint8_t *)"p2pnet/1 network", 2, 67108864,
                           crypto_pwhash_ALG_ARGON2ID13),
             0);
    T_EQ_INT(p2p_network_psk(got, (const uint8_t *)key, sizeof key - 1), 0);
    T_EQ_MEM(got, want, P2P_KEY_LEN);

    uint64_t derived = p2p_network_psk_derivations();
    anet net;
    an_init(&net, 10000);
    p2p_config same, other;
    p2p_config_init(&same);
    same.network_key = (const uint8_t *)key;
    same.network_key_len = sizeof key - 1;
    other = same;
    other.network_key = (const uint8_t *)"another key";
    other.network_key_len = 11;
    int a = an_add(&net, &same), b = an_add(&net, &same), x = an_add(&net, &other);
    for (int i = 0; i < 8; i++) an_add(&net, &same);
    /* "another key" is new: one derivation; the shared key none (derived above) */
    T_EQ_INT(p2p_network_psk_derivations() - derived, 1);
    T_EQ_MEM(net.n[a].h->psk, want, P2P_KEY_LEN);
    T_CHECK(an_connect(&net, a, b, 2000000) != 0);
    p2p_stats xs = an_stats(&net, x);
    T_EQ_INT(an_connect(&net, a, x, 3000000), 0);
    T_EQ_INT(an_connect(&net, x, b, 3000000), 0);
    p2p_stats xs2 = an_stats(&net, x);
    T_EQ_INT(an_sent_to(&net, b, &net.n[x].addr), 0); /* b never answered x */
    T_EQ_INT(xs2.work_dh - xs.work_dh, 2);            /* x's own attempt only: s, e */
    T_EQ_INT(an_pkts_to(&net, x, &net.n[a].addr), 0); /* x never answered a */
    an_free(&net);
}

static void *derive_thread(void *arg)
{
    static const char key[] = "one key, four threads";
    uint8_t *out = arg;
    return (void *)(intptr_t)p2p_network_psk(out, (const uint8_t *)key, sizeof key - 1);
}

/* Hosts may be created on different threads: the cache is shared under a mutex, and a key
 * asked for by four threads at once is derived once. */
static void test_network_key_threads(void)
{
    uint64_t derived = p2p_network_psk_derivations();
    pthread_t t[4];
    uint8_t out[4][P2P_KEY_LEN];
    for (int i = 0; i < 4; i++) T_EQ_INT(pthread_create(&t[i], NULL, derive_thread, out[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        T_EQ_INT((intptr_t)rc, 0);
    }
    T_EQ_INT(p2p_network_psk_derivations() - derived, 1);
    for (int i = 1; i < 4; i++) T_EQ_MEM(out[i], out[0], P2P_KEY_LEN);
}

/* COOKIEs are taken only for an attempt in INIT_SENT, from one of its candidates, and when
 * they decrypt; the initiator keeps one 120 s and puts mac2 in every INIT to that address. */
static void test_cookie_rules(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.cookie_threshold = 1;
    cfg.max_half_open = 8;
    int v = an_add(&net, &cfg), a = an_add(&net, NULL), c = an_add(&net, NULL);
    p2p_rng rng;
    p2p_rng_init(&rng, 3);
    uint8_t init[P2P_INIT_LEN];
    p2p_addr s = spoofed(0);
    an_forge_init(net.n[v].h, &rng, 0x5000, init);
    an_inject(&net, v, &s, init, sizeof init); /* one half-open: under load from now */
    T_EQ_INT(an_stats(&net, v).under_load, 1);

    /* a dials v and must get through with the cookie; capture its INITs */
    an_capture(&net, a, P2P_PKT_INIT);
    T_CHECK(an_connect(&net, a, v, 2000000) != 0);
    T_EQ_INT(an_stats(&net, v).cookies_sent, 1);
    T_CHECK(net.ncap >= 2);
    static const uint8_t zero[P2P_MAC_LEN];
    T_EQ_MEM(net.cap[0] + INIT_MAC2, zero, P2P_MAC_LEN); /* the first without mac2 */
    T_CHECK(memcmp(net.cap[1] + INIT_MAC2, zero, P2P_MAC_LEN) != 0);
    T_EQ_MEM(net.cap[0], net.cap[1], INIT_MAC2); /* the same INIT otherwise */
    T_CHECK(p2p_get_u32(net.cap[0] + 4) != 0);

    /* Forged COOKIEs: an attempt of c's, answered from a non-candidate address, with bytes
     * that do not decrypt, or for an index not in INIT_SENT. */
    p2p_addr nowhere = an_addr("203.0.113.5:4000");
    p2p_peer_handle ph;
    T_EQ_INT(p2p_host_connect(net.n[c].h, &nowhere, NULL, net.now, &ph), 0);
    an_flush(&net, c);
    p2p_peer *pc = p2p_lookup(net.n[c].h, ph);
    T_CHECK(pc && pc->state == P2P_S_INIT_SENT);
    uint8_t
        ck[8 + P2P_XNONCE_LEN + P2P_COOKIE_LEN + P2P_TAG_LEN]; /* header, nonce, sealed cookie */
    memset(ck, 0, sizeof ck);
    ck[0] = P2P_PKT_COOKIE;
    ck[1] = P2P_PROTOCOL_VERSION;
    p2p_put_u32(ck + 4, pc->local_index);
    /* a well-made COOKIE, under the key anyone without a network key can derive */
    uint8_t cookie[16];
    memset(cookie, 0x42, sizeof cookie);
    p2p_xaead_seal(ck + 8 + P2P_XNONCE_LEN, net.n[c].h->cookie_key, ck + 8, pc->hs->pkt + INIT_MAC1,
                   P2P_MAC_LEN, cookie, sizeof cookie);
    p2p_stats cs = an_stats(&net, c);
    uint64_t sent_before = an_sent_to(&net, c, &nowhere);
    an_inject(&net, c, &net.n[v].addr, ck, sizeof ck); /* not a candidate */
    T_EQ_INT(an_stats(&net, c).dropped, cs.dropped + 1);
    ck[40] ^= 1;
    an_inject(&net, c, &nowhere, ck, sizeof ck); /* does not decrypt */
    T_EQ_INT(an_stats(&net, c).dropped, cs.dropped + 2);
    ck[40] ^= 1;
    p2p_put_u32(ck + 4, pc->local_index ^ 0x10000u);
    an_inject(&net, c, &nowhere, ck, sizeof ck); /* no such attempt */
    T_EQ_INT(an_stats(&net, c).dropped, cs.dropped + 3);
    T_EQ_INT(an_sent_to(&net, c, &nowhere), sent_before);
    p2p_put_u32(ck + 4, pc->local_index);
    an_inject(&net, c, &nowhere, ck, sizeof ck); /* taken: INIT with mac2 at once */
    T_EQ_INT(an_stats(&net, c).dropped, cs.dropped + 3);
    T_EQ_INT(an_sent_to(&net, c, &nowhere), sent_before + P2P_INIT_LEN);
    an_inject(&net, c, &nowhere, ck, sizeof ck); /* again: stored, nothing sent */
    T_EQ_INT(an_sent_to(&net, c, &nowhere), sent_before + P2P_INIT_LEN);
    an_free(&net);
}

/* The work counters: one honest handshake costs each side 5 X25519 operations and one
 * Ed25519 verification; INITs that fail the cheap checks cost none. The hosts are mediators,
 * so no member record (and its signature check) follows the handshake. */
static void test_work_counters(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config mc;
    p2p_config_init(&mc);
    mc.mediator = 1;
    int a = an_add(&net, &mc), b = an_add(&net, &mc);
    T_CHECK(an_connect(&net, a, b, 2000000) != 0);
    p2p_stats sa = an_stats(&net, a), sb = an_stats(&net, b);
    T_EQ_INT(sa.work_dh, 5);
    T_EQ_INT(sb.work_dh, 5);
    T_EQ_INT(sa.work_verify, 1);
    T_EQ_INT(sb.work_verify, 1);
    p2p_rng rng;
    p2p_rng_init(&rng, 11);
    uint8_t init[P2P_INIT_LEN];
    for (int i = 0; i < 100; i++) {
        p2p_addr s = spoofed(i);
        an_forge_init(net.n[b].h, &rng, 0x6000u + (uint32_t)i, init);
        init[20] ^= 1; /* mac1 no longer matches */
        an_inject(&net, b, &s, init, sizeof init);
        an_inject(&net, b, &s, init, P2P_INIT_LEN - 1);
    }
    T_EQ_INT(an_stats(&net, b).work_dh, 5);
    T_EQ_INT(an_stats(&net, b).dropped, sb.dropped + 200);
    T_EQ_INT(an_sent_to_strangers(&net, b), 0);
    an_free(&net);
}

int main(void)
{
    p2p_init();
    T_RUN(test_replayed_init);
    T_RUN(test_init_flood_cookies);
    T_RUN(test_per_ip_cap);
    T_RUN(test_resp_ratio);
    T_RUN(test_lying_candidate);
    T_RUN(test_network_key);
    T_RUN(test_network_key_threads);
    T_RUN(test_cookie_rules);
    T_RUN(test_work_counters);
    return t_summary("test_attack_hs");
}
