/* test_attack_mesh.c - hostile mesh members (issue 8 rows 2, 4, 7, 10, 13 and broadcast
 * replay): forged and throwaway-origin broadcasts, replays after the receiver forgot the
 * origin or restarted, member records that aim dials at a victim, IWANT and DIGEST/IHAVE
 * floods, and a lone peer naming our reflexive address. Each test asserts a figure and that
 * an honest member still joins and gets broadcasts while the attack runs. */
#include "attack.h"

static void throwaway(p2p_identity *id, uint32_t n)
{
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, 0x3c, sizeof seed);
    p2p_put_u64(seed, n);
    p2p_identity_from_seed(id, seed);
}

static p2p_config small_config(uint32_t max_peers)
{
    p2p_config c;
    p2p_config_init(&c);
    c.max_peers = max_peers;
    return c;
}

/* The newest broadcast in host i's cache (its own, just sent): what an attacker captures. */
static size_t last_cached(anet *net, int i, uint8_t *out)
{
    const p2p_mesh *m = &net->n[i].h->mesh;
    const p2p_bcast *b = &m->cache[(m->cache_head + m->cache_n - 1) % P2P_BCAST_CACHE_ENTRIES];
    memcpy(out, b->env, b->len);
    return b->len;
}

/* Row 7: 200 broadcasts with bad signatures from 200 made-up origins leave no state behind:
 * the first costs one verify and ends the liar's session (honest peers pass on only what they
 * verified), so the other 199 cost nothing, and a member that joins afterwards is heard. */
static void test_forged_broadcasts(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config small = small_config(8);
    int a = an_add(&net, &small), b = an_add(&net, NULL), c = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    an_run(&net, 500000);
    size_t members = net.n[a].h->mesh.n;
    p2p_stats s0 = an_stats(&net, a);
    static uint8_t env[256];
    for (uint32_t i = 0; i < 200; i++) {
        p2p_identity junk;
        throwaway(&junk, i);
        size_t n = an_make_bcast(env, &junk, an_wall(&net), "junk", 4, 1);
        T_EQ_INT(an_record(&net, b, a, P2P_REC_BROADCAST, env, n), 0);
    }
    an_run(&net, 500000);
    p2p_stats s1 = an_stats(&net, a);
    T_CHECK(s1.dropped - s0.dropped >= 1);
    T_EQ_INT(s1.work_verify - s0.work_verify, 1);
    T_EQ_INT(an_handle(&net, a, b), 0);
    T_EQ_INT(net.n[a].broadcasts, 0);
    T_EQ_INT(net.n[a].h->mesh.n, members);
    T_EQ_INT(net.n[a].h->mesh.on, 0);
    /* a genuine member joins after the flood and is heard */
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"real", 4, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    an_free(&net);
}

/* Row 7 with real signatures: 300 throwaway origins (each costs the attacker a key) fill the
 * origin table past its cap. The table stays at its cap, the origins we hold sessions with
 * stay, a forgotten origin's broadcast cannot be replayed, and genuine broadcasts from an
 * old peer and from a member that joins afterwards are delivered. */
static void test_throwaway_origins(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config small = small_config(8);
    int a = an_add(&net, &small), b = an_add(&net, NULL), c = an_add(&net, NULL);
    int d = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"one", 3, NULL, net.now), 0);
    an_run(&net, 300000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    static uint8_t env[256], first[256];
    size_t first_len = 0;
    const uint32_t junk_n = 300;
    for (uint32_t i = 0; i < junk_n; i++) {
        p2p_identity junk;
        throwaway(&junk, 1000 + i);
        size_t n = an_make_bcast(env, &junk, an_wall(&net), "junk", 4, 0);
        if (i == 0) {
            memcpy(first, env, n);
            first_len = n;
        }
        T_EQ_INT(an_record(&net, b, a, P2P_REC_BROADCAST, env, n), 0);
        if (i % 50 == 49) an_run(&net, 20000);
    }
    an_run(&net, 300000);
    const p2p_mesh *m = &net.n[a].h->mesh;
    T_EQ_INT(net.n[a].broadcasts, 1 + junk_n);
    T_CHECK(m->on <= m->omax);
    T_EQ_INT(m->omax, 4 * 8 + 64);
    printf("     %u signed origins: origin table %zu (cap %zu)\n", junk_n, m->on, m->omax);
    /* the first throwaway origin was forgotten; its broadcast comes back: refused */
    p2p_stats s0 = an_stats(&net, a);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_BROADCAST, first, first_len), 0);
    an_run(&net, 200000);
    T_EQ_INT(an_stats(&net, a).dropped_replay - s0.dropped_replay, 1);
    T_EQ_INT(net.n[a].broadcasts, 1 + junk_n);
    /* the old peer and a newcomer are heard */
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"two", 3, NULL, net.now), 0);
    T_CHECK(an_connect(&net, d, a, 2000000) != 0);
    T_EQ_INT(p2p_host_broadcast(net.n[d].h, 1, (const uint8_t *)"new", 3, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 3 + junk_n);
    an_free(&net);
}

/* Replaces host i by a fresh one with the same identity (a restart), at the same address. */
static void restart(anet *net, int i, const p2p_config *base)
{
    an_node *x = &net->n[i];
    p2p_host_free(x->h);
    p2p_config c = *base;
    c.identity = &x->id;
    c.seed = 0x7e57a27u + (uint64_t)i;
    c.unix_us = an_wall(net);
    T_EQ_INT(p2p_host_new(&x->h, &c, net->now), 0);
    p2p_host_add_address(x->h, &x->addr, net->now);
}

/* Broadcast replay: a captured genuine broadcast is replayed after the receiver forgot its
 * origin (the origin left, and strangers' broadcasts pushed it out of the table), after the
 * receiver restarted, and after its time window passed. None is delivered; each counts. */
static void test_broadcast_replay(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config small = small_config(8);
    int a = an_add(&net, &small), b = an_add(&net, NULL), c = an_add(&net, NULL);
    int d = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"pay 10", 6, NULL, net.now), 0);
    static uint8_t cap[256], env[256];
    size_t cap_len = last_cached(&net, c, cap);
    an_run(&net, 300000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    /* c leaves; 200 strangers' broadcasts push its state out of a's origin table */
    p2p_peer_disconnect(net.n[c].h, an_handle(&net, c, a), net.now);
    an_run(&net, 500000);
    for (uint32_t i = 0; i < 200; i++) {
        p2p_identity junk;
        throwaway(&junk, 5000 + i);
        size_t n = an_make_bcast(env, &junk, an_wall(&net), "x", 1, 0);
        an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    }
    an_run(&net, 500000);
    uint32_t slot = P2P_MESH_NONE;
    for (uint32_t i = net.n[a].h->mesh.ohead; i != P2P_MESH_NONE; i = net.n[a].h->mesh.o[i].next)
        if (memcmp(net.n[a].h->mesh.o[i].id, net.n[c].id.ed_pk, P2P_ID_LEN) == 0) slot = i;
    T_CHECK(slot == P2P_MESH_NONE); /* forgotten indeed */
    int got = net.n[a].broadcasts;
    p2p_stats s0 = an_stats(&net, a);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_BROADCAST, cap, cap_len), 0);
    an_run(&net, 300000);
    T_EQ_INT(net.n[a].broadcasts, got);
    T_EQ_INT(an_stats(&net, a).dropped_replay - s0.dropped_replay, 1);

    /* a restarts 10 s later; once its old session timed out, the attacker connects again
     * and replays */
    an_run(&net, 10000000);
    restart(&net, a, &small);
    net.n[a].broadcasts = 0;
    an_run(&net, 11000000);
    T_EQ_INT(an_handle(&net, b, a), 0);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    an_run(&net, 500000);
    s0 = an_stats(&net, a);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_BROADCAST, cap, cap_len), 0);
    an_run(&net, 300000);
    T_EQ_INT(net.n[a].broadcasts, 0);
    T_EQ_INT(an_stats(&net, a).dropped_replay - s0.dropped_replay, 1);
    T_EQ_INT(an_stats(&net, a).work_verify - s0.work_verify, 0); /* refused before verify */

    /* a new member d still gets through, and so does c coming back */
    T_CHECK(an_connect(&net, d, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"pay 20", 6, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 1);

    /* two minutes later the capture is out of every window (and of d's, who never saw it) */
    an_run(&net, 121000000);
    s0 = an_stats(&net, d);
    T_EQ_INT(an_record(&net, b, d, P2P_REC_BROADCAST, cap, cap_len), 0);
    an_run(&net, 300000);
    T_EQ_INT(an_stats(&net, d).dropped_replay - s0.dropped_replay, 1);
    an_free(&net);
}

/* The window itself: stamps 3 minutes old or 2 minutes ahead are refused before their
 * signature is checked; an origin without a clock (numbers from 1) is delivered, and its
 * repeats and numbers below its 32 newest are refused. */
static void test_time_window_and_clockless(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    an_run(&net, 200000000); /* let the clocks run past the stamps below */
    static uint8_t env[256];
    p2p_identity o;
    throwaway(&o, 40000);
    p2p_stats s0 = an_stats(&net, a);
    size_t n = an_make_bcast(env, &o, an_wall(&net) - 180000000, "old", 3, 0);
    an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    n = an_make_bcast(env, &o, an_wall(&net) + 120000000, "ahead", 5, 0);
    an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    an_run(&net, 200000);
    p2p_stats s1 = an_stats(&net, a);
    T_EQ_INT(s1.dropped_replay - s0.dropped_replay, 2);
    T_EQ_INT(s1.work_verify - s0.work_verify, 0);
    T_EQ_INT(net.n[a].broadcasts, 0);
    n = an_make_bcast(env, &o, an_wall(&net) - 60000000, "late", 4, 0); /* a minute late: fine */
    an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    an_run(&net, 200000);
    T_EQ_INT(net.n[a].broadcasts, 1);

    p2p_identity nc;
    throwaway(&nc, 40001);
    for (uint64_t q = 1; q <= 40; q++) {
        n = an_make_bcast(env, &nc, q, "n", 1, 0);
        an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    }
    an_run(&net, 200000);
    T_EQ_INT(net.n[a].broadcasts, 41);
    s0 = an_stats(&net, a);
    n = an_make_bcast(env, &nc, 40, "n", 1, 0); /* a repeat */
    an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    n = an_make_bcast(env, &nc, 3, "n", 1, 0); /* below the newest 32 */
    an_record(&net, b, a, P2P_REC_BROADCAST, env, n);
    an_run(&net, 200000);
    T_EQ_INT(an_stats(&net, a).dropped_replay - s0.dropped_replay, 2);
    T_EQ_INT(net.n[a].broadcasts, 41);
    an_free(&net);
}

/* Row 2: member records for 100 throwaway ids, all at one victim's address, re-sent with new
 * numbers every 5 s (every other time at another port of the victim) for a minute. Each id is
 * dialled a bounded number of times in all; nothing re-arms it, and nobody else hears of it. */
static void test_member_records_aim_at_victim(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL), c = an_add(&net, NULL);
    int e = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, e, a, 2000000) != 0);
    an_run(&net, 3000000);
    p2p_addr victim[2] = {an_addr("198.51.100.7:53"), an_addr("198.51.100.7:54")};
    static uint8_t body[100 * (2 + P2P_MEMBER_REC_MAX)];
    uint64_t received = 0;
    for (int round = 0; round < 12; round++) {
        p2p_wr w;
        p2p_wr_init(&w, body, sizeof body);
        for (uint32_t i = 0; i < 100; i++) {
            p2p_identity junk;
            throwaway(&junk, 9000 + i);
            an_put_member(&w, &junk, 100 + (uint64_t)round, an_wall(&net) / 1000000 + 3600,
                          &victim[round % 2], 1);
        }
        size_t len = (size_t)(w.p - body);
        received += len;
        T_EQ_INT(an_record(&net, b, a, P2P_REC_MEMBERS, body, len), 0);
        if (round == 3) T_CHECK(an_connect(&net, c, a, 2000000) != 0); /* still joins */
        an_run(&net, 5000000);
    }
    uint64_t sent = an_sent_to(&net, a, &victim[0]) + an_sent_to(&net, a, &victim[1]);
    uint64_t pkts = an_pkts_to(&net, a, &victim[0]) + an_pkts_to(&net, a, &victim[1]);
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"c", 1, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    printf("     100 ids x 12 rounds (%llu record bytes): %llu bytes, %llu packets to the victim\n",
           (unsigned long long)received, (unsigned long long)sent, (unsigned long long)pkts);
    /* At most P2P_MESH_CLAIM_DIALS (2) attempts per id, each a handshake of at most 8 INITs
     * (250 ms doubling to 2 s, 10 s timeout): <= 100 x 2 x 8 packets, ~130 bytes each. */
    T_CHECK(pkts <= 100u * P2P_MESH_CLAIM_DIALS * 8u);
    T_CHECK(sent <= 100u * P2P_MESH_CLAIM_DIALS * 8u * 140u);
    const p2p_mesh *m = &net.n[a].h->mesh;
    unsigned max_dials = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->m[i].dials > max_dials) max_dials = m->m[i].dials;
    T_CHECK(max_dials <= P2P_MESH_CLAIM_DIALS);
    /* e, a's honest peer, never heard of the throwaway ids from a (not first-hand to a) */
    T_CHECK(net.n[e].h->mesh.n <= 3);
    T_EQ_INT(an_sent_to(&net, e, &victim[0]) + an_sent_to(&net, e, &victim[1]), 0);
    T_EQ_INT(net.n[c].joins >= 1, 1);
    an_free(&net);
}

/* Row 2, filtering: claims naming loopback, private (we are on neither), broadcast and
 * multicast addresses are never dialled. */
static void test_claims_unusable_addresses(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    p2p_addr bad[4] = {an_addr("127.0.0.1:53"), an_addr("10.1.2.3:53"),
                       an_addr("255.255.255.255:53"), an_addr("239.1.1.1:53")};
    static uint8_t body[8 * (2 + P2P_MEMBER_REC_MAX)];
    p2p_wr w;
    p2p_wr_init(&w, body, sizeof body);
    for (uint32_t i = 0; i < 4; i++) {
        p2p_identity junk;
        throwaway(&junk, 30000 + i);
        an_put_member(&w, &junk, 1, 0, &bad[i], 1);
    }
    p2p_identity all;
    throwaway(&all, 30100);
    an_put_member(&w, &all, 1, 0, bad, 4);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_MEMBERS, body, (size_t)(w.p - body)), 0);
    an_run(&net, 30000000);
    T_EQ_INT(an_sent_to_strangers(&net, a), 0);
    an_free(&net);
}

/* Row 2, the table: one peer's claims fill at most a quarter of the table (24 of 96 with
 * max_peers 8), and a genuine member that an honest peer tells us of still gets in and is
 * dialled. */
static void test_claims_quota(void)
{
    anet net;
    an_init(&net, 10000);
    p2p_config small = small_config(8);
    int a = an_add(&net, &small), b = an_add(&net, NULL), c = an_add(&net, NULL);
    int d = an_add(&net, NULL);
    T_CHECK(an_connect(&net, d, c, 2000000) != 0); /* c knows d */
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    p2p_addr victim = an_addr("198.51.100.9:4000");
    static uint8_t body[200 * (2 + P2P_MEMBER_REC_MAX)];
    p2p_wr w;
    p2p_wr_init(&w, body, sizeof body);
    for (uint32_t i = 0; i < 200; i++) {
        p2p_identity junk;
        throwaway(&junk, 20000 + i);
        an_put_member(&w, &junk, 1, 0, &victim, 1);
    }
    p2p_stats s0 = an_stats(&net, a);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_MEMBERS, body, (size_t)(w.p - body)), 0);
    an_run(&net, 500000);
    const p2p_mesh *m = &net.n[a].h->mesh;
    size_t claims = 0;
    for (size_t i = 0; i < m->n; i++) claims += !m->m[i].confirmed;
    printf("     200 claims from one peer: %zu kept (table %zu of %zu)\n", claims, m->n, m->max);
    T_EQ_INT(claims, m->max / 4);
    T_CHECK(an_stats(&net, a).dropped_budget - s0.dropped_budget >= 200 - m->max / 4);
    T_CHECK(an_stats(&net, a).work_verify - s0.work_verify <= m->max / 4 + 2);
    /* more claims from a peer at its quota cost no signature check at all */
    p2p_wr_init(&w, body, sizeof body);
    for (uint32_t i = 0; i < 200; i++) {
        p2p_identity junk;
        throwaway(&junk, 20500 + i);
        an_put_member(&w, &junk, 1, 0, &victim, 1);
    }
    s0 = an_stats(&net, a);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_MEMBERS, body, (size_t)(w.p - body)), 0);
    an_run(&net, 500000);
    T_EQ_INT(an_stats(&net, a).work_verify - s0.work_verify, 0);
    T_EQ_INT(an_stats(&net, a).dropped_budget - s0.dropped_budget, 200);
    /* three more liars fill the table with claims */
    for (int k = 0; k < 3; k++) {
        int liar = an_add(&net, NULL);
        T_CHECK(an_connect(&net, liar, a, 2000000) != 0);
        p2p_wr_init(&w, body, sizeof body);
        for (uint32_t i = 0; i < 30; i++) {
            p2p_identity junk;
            throwaway(&junk, 21000 + 100 * (uint32_t)k + i);
            an_put_member(&w, &junk, 1, 0, &victim, 1);
        }
        T_EQ_INT(an_record(&net, liar, a, P2P_REC_MEMBERS, body, (size_t)(w.p - body)), 0);
        an_run(&net, 300000);
    }
    T_EQ_INT(m->n, m->max);
    /* c joins a and lists d: both get in (claims go), a dials d, and d is heard */
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    an_run(&net, 5000000);
    T_CHECK(an_handle(&net, a, d) != 0);
    T_EQ_INT(m->n, m->max);
    T_EQ_INT(p2p_host_broadcast(net.n[d].h, 1, (const uint8_t *)"d", 1, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    an_free(&net);
}

/* Row 4: one IWANT record naming one cached 60 KB broadcast 1000 times (and a second one)
 * makes the node queue at most one copy towards the asker. */
static void test_iwant_repeats(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL), c = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    static uint8_t big[60000];
    memset(big, 0xb1, sizeof big);
    uint64_t seq = 0;
    p2p_peer *pab = an_session(&net, a, b);
    uint64_t queued0 = pab->l0.send_end;
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, big, sizeof big, &seq, net.now), 0);
    an_run(&net, 1000000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    T_EQ_INT(net.n[b].broadcasts, 1); /* b pulled it from a, honestly */
    static uint8_t iw[1000 * 40];
    for (int i = 0; i < 1000; i++) {
        memcpy(iw + 40 * i, net.n[c].id.ed_pk, P2P_ID_LEN);
        p2p_put_u64(iw + 40 * i + P2P_ID_LEN, seq);
    }
    T_EQ_INT(an_record(&net, b, a, P2P_REC_IWANT, iw, sizeof iw), 0);
    T_EQ_INT(an_record(&net, b, a, P2P_REC_IWANT, iw, sizeof iw), 0);
    an_run(&net, 2000000);
    pab = an_session(&net, a, b);
    uint64_t queued = pab->l0.send_end - queued0;
    printf("     2 x 1000 IWANT entries for a 60 KB broadcast: %llu bytes queued to the asker\n",
           (unsigned long long)queued);
    T_CHECK(queued <= sizeof big + 1000); /* the honest pull's one copy, and IHAVE */
    T_EQ_INT(net.n[b].broadcasts, 1);
    an_free(&net);
}

/* Row 13: a 1 MiB DIGEST and a 1 MiB IHAVE cost a bounded number of steps per entry (hash
 * lookups, not scans), and the IHAVE leaves at most P2P_IWANT_PER_PEER pulls. */
static void test_big_digest_and_ihave(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL), c = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    an_run(&net, 2000000);
    const size_t entries = (1u << 20) / 40;
    uint8_t *rec = malloc(1 + entries * 40);
    T_CHECK(rec != NULL);
    if (!rec) {
        an_free(&net);
        return;
    }
    p2p_rng rng;
    p2p_rng_init(&rng, 99);
    rec[0] = 0;
    for (size_t i = 0; i < entries; i++) {
        p2p_rng_bytes(&rng, rec + 1 + 40 * i, P2P_ID_LEN);
        p2p_put_u64(rec + 1 + 40 * i + P2P_ID_LEN, an_wall(&net));
    }
    p2p_host *h = net.n[a].h;
    uint64_t w0 = h->mesh.work;
    T_EQ_INT(an_record(&net, b, a, P2P_REC_DIGEST, rec, 1 + entries * 40), 0);
    an_run(&net, 3000000);
    uint64_t dw = h->mesh.work - w0;
    printf("     1 MiB DIGEST (%zu entries): %llu steps\n", entries, (unsigned long long)dw);
    T_CHECK(dw <= 3 * entries + 64 * h->mesh.n + 1000);
    w0 = h->mesh.work;
    T_EQ_INT(an_record(&net, b, a, P2P_REC_IHAVE, rec + 1, entries * 40), 0);
    an_run(&net, 3000000);
    dw = h->mesh.work - w0;
    printf("     1 MiB IHAVE (%zu entries): %llu steps\n", entries, (unsigned long long)dw);
    T_CHECK(dw <= 4 * entries + 1000);
    T_CHECK(an_stats(&net, a).dropped_budget >= entries - P2P_IWANT_PER_PEER);
    /* an honest broadcast still arrives */
    T_EQ_INT(p2p_host_broadcast(net.n[c].h, 1, (const uint8_t *)"ok", 2, NULL, net.now), 0);
    an_run(&net, 500000);
    T_EQ_INT(net.n[a].broadcasts, 1);
    free(rec);
    an_free(&net);
}

/* Host a learns, in its handshake with host i, that i saw it at `claim`. */
static void claim_observed(anet *net, int a, int i, const p2p_addr *claim)
{
    p2p_peer *p = an_session(net, a, i);
    T_CHECK(p != NULL);
    if (!p) return;
    p->has_observed = 1;
    p->observed = *claim;
    p2p_mesh_on_join(net->n[a].h, p, net->now);
}

/* Row 10: one peer saying "you are at 192.0.2.53:53", even many times, is not advertised;
 * unusable addresses never are; a second peer (another id, another address) confirms. */
static void test_observed_needs_two(void)
{
    anet net;
    an_init(&net, 10000);
    int a = an_add(&net, NULL), b = an_add(&net, NULL), c = an_add(&net, NULL);
    T_CHECK(an_connect(&net, b, a, 2000000) != 0);
    T_CHECK(an_connect(&net, c, a, 2000000) != 0);
    p2p_addr lie = an_addr("192.0.2.53:53"), bad = an_addr("224.0.0.1:53");
    for (int i = 0; i < 5; i++) claim_observed(&net, a, b, &lie);
    T_CHECK(!an_advertises(net.n[a].h, &lie));
    claim_observed(&net, a, b, &bad);
    claim_observed(&net, a, c, &bad);
    T_CHECK(!an_advertises(net.n[a].h, &bad));
    claim_observed(&net, a, c, &lie);
    T_CHECK(an_advertises(net.n[a].h, &lie));
    an_free(&net);
}

/* The order of the stream holds across the hub: a mesh record and the application messages
 * behind it in one STREAM frame are taken in the order they were sent. A forged broadcast
 * followed by a message ends the session before the message is delivered; a genuine
 * broadcast followed by a message gives the broadcast's event first. */
static char order_log[8];
static size_t order_len;
static void log_order(anet *net, int node, const p2p_event *ev)
{
    (void)net;
    if (node != 0 || ev->type != P2P_EV_MESSAGE || order_len >= sizeof order_log) return;
    order_log[order_len++] = ev->broadcast ? 'B' : 'M';
}

static void test_stream_order_behind_records(void)
{
    for (int forged = 1; forged >= 0; forged--) {
        anet net;
        an_init(&net, 10000);
        int a = an_add(&net, NULL), b = an_add(&net, NULL);
        T_CHECK(an_connect(&net, b, a, 2000000) != 0);
        an_run(&net, 300000);
        order_len = 0;
        net.on_event = log_order;
        static uint8_t env[256];
        size_t n = an_make_bcast(env, &net.n[b].id, an_wall(&net), "cast", 4, forged);
        p2p_peer *p = an_session(&net, b, a);
        T_CHECK(p != NULL);
        /* Both go into the stream before anything is sent: one STREAM frame carries them. */
        T_EQ_INT(p2p_peer_append(net.n[b].h, p, P2P_REC_BROADCAST, env, n), 0);
        T_EQ_INT(p2p_peer_send(net.n[b].h, an_handle(&net, b, a), 1, (const uint8_t *)"after", 5, 0,
                               NULL, net.now),
                 0);
        an_flush(&net, b);
        an_run(&net, 300000);
        if (forged) {
            T_EQ_INT(order_len, 0);
            T_EQ_INT(an_handle(&net, a, b), 0);
        } else {
            T_EQ_INT(order_len, 2);
            T_CHECK(order_len == 2 && order_log[0] == 'B' && order_log[1] == 'M');
        }
        an_free(&net);
    }
}

int main(void)
{
    p2p_init();
    T_RUN(test_forged_broadcasts);
    T_RUN(test_throwaway_origins);
    T_RUN(test_broadcast_replay);
    T_RUN(test_time_window_and_clockless);
    T_RUN(test_member_records_aim_at_victim);
    T_RUN(test_claims_unusable_addresses);
    T_RUN(test_claims_quota);
    T_RUN(test_iwant_repeats);
    T_RUN(test_big_digest_and_ihave);
    T_RUN(test_observed_needs_two);
    T_RUN(test_stream_order_behind_records);
    return t_summary("test_attack_mesh");
}
