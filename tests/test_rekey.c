/* test_rekey.c - session key updates (docs/PROTOCOL.md 2.3): the key schedule on its own,
 * long streams that rekey many times without losing, duplicating or reordering a message
 * (clean and lossy networks, in the simulator), idle sessions past REJECT_AFTER_TIME, the
 * packet-count limit, and the attacks: old-key replays, forged key phases, a peer that will
 * not update and one that keeps sealing with an old key (attack.h, virtual time). */
#include "attack.h"
#include "driver/sim.h"
#include "tnet.h"

#define SEC UINT64_C(1000000)
#define MSG_TYPE 7

/* ---- the key schedule alone ----------------------------------------------------------- */

/* Two mirrored schedules, as the two ends of a session hold them. */
static void mirrored(p2p_keys *a, p2p_keys *b, uint64_t now)
{
    uint8_t k1[P2P_KEY_LEN], k2[P2P_KEY_LEN];
    memset(k1, 0x11, sizeof k1);
    memset(k2, 0x22, sizeof k2);
    p2p_keys_init(a, k1, k2, now);
    p2p_keys_init(b, k2, k1, now);
}

static void test_schedule(void)
{
    p2p_keys a, b;
    int which;
    mirrored(&a, &b, 0);
    /* the KDF is one-way and fixed: a new key, the same on both sides */
    uint8_t n1[P2P_KEY_LEN], n2[P2P_KEY_LEN];
    p2p_keys_next_key(n1, a.send);
    T_CHECK(memcmp(n1, a.send, P2P_KEY_LEN) != 0);
    T_EQ_MEM(n1, b.next, P2P_KEY_LEN);
    memcpy(n2, a.send, P2P_KEY_LEN);
    p2p_keys_next_key(n2, n2); /* in place */
    T_EQ_MEM(n1, n2, P2P_KEY_LEN);

    /* nothing is due before the peer confirmed the keys, nor before 120 s */
    T_EQ_INT(p2p_keys_update_due(&a, 5, 200 * SEC), 0);
    T_CHECK(p2p_keys_for_open(&a, 0, 3, SEC, &which) == a.recv && which == P2P_KEY_CURRENT);
    T_EQ_INT(p2p_keys_opened(&a, which, 3, SEC, SEC, 10), 0);
    T_EQ_INT(a.confirmed, 1);
    T_EQ_INT(p2p_keys_update_due(&a, 11, 119 * SEC), 0);
    T_EQ_INT(p2p_keys_update_due(&a, 11, 120 * SEC), 1);
    T_EQ_INT(p2p_keys_deadline(&a), 120 * SEC);

    /* a updates; b, on a's first packet of phase 1, moves too */
    uint8_t a_old_recv[P2P_KEY_LEN];
    memcpy(a_old_recv, a.recv, P2P_KEY_LEN);
    p2p_keys_update(&a, 11, 120 * SEC);
    T_EQ_INT(a.phase, 1);
    T_EQ_INT(a.confirmed, 0);
    T_EQ_INT(a.has_prev, 1);
    T_EQ_MEM(a.prev, a_old_recv, P2P_KEY_LEN);
    T_EQ_INT(a.prev_until, 180 * SEC); /* until the peer confirms: the old key's age */
    T_EQ_MEM(a.send, b.next, P2P_KEY_LEN);
    /* b's late packet of phase 0 still opens at a with the previous key */
    T_CHECK(p2p_keys_for_open(&a, 0, 7, 120 * SEC, &which) == a.prev && which == P2P_KEY_PREVIOUS);
    T_CHECK(p2p_keys_for_open(&b, 1, 11, 120 * SEC, &which) == b.next && which == P2P_KEY_NEXT);
    T_EQ_INT(p2p_keys_opened(&b, which, 11, 120 * SEC, SEC, 20), 1);
    T_EQ_INT(b.phase, 1);
    T_EQ_INT(b.confirmed, 1);
    T_EQ_INT(b.send_first_pn, 20);
    T_EQ_MEM(b.recv, a.send, P2P_KEY_LEN);
    T_EQ_MEM(b.send, a.recv, P2P_KEY_LEN);
    T_EQ_INT(b.prev_until, 121 * SEC); /* the peer confirmed at once: keep 1 s */
    /* b's first packet of phase 1 confirms a, and shortens its previous key's life */
    T_CHECK(p2p_keys_for_open(&a, 1, 20, 120 * SEC + 50000, &which) == a.recv);
    p2p_keys_opened(&a, which, 20, 120 * SEC + 50000, 3 * SEC, 12);
    T_EQ_INT(a.prev_until, 123 * SEC + 50000);
    /* at b, a phase-0 packet numbered below 11 is the previous generation; above, the next */
    T_CHECK(p2p_keys_for_open(&b, 0, 10, 120 * SEC, &which) == b.prev && which == P2P_KEY_PREVIOUS);
    T_CHECK(p2p_keys_for_open(&b, 0, 12, 120 * SEC, &which) == b.next && which == P2P_KEY_NEXT);
    /* the previous key opens nothing after its time, and then is wiped */
    T_CHECK(p2p_keys_for_open(&b, 0, 10, 121 * SEC, &which) == NULL);
    T_EQ_INT(p2p_keys_deadline(&b), 121 * SEC);
    p2p_keys_on_timeout(&b, 121 * SEC);
    T_EQ_INT(b.has_prev, 0);
    static const uint8_t zero[P2P_KEY_LEN];
    T_EQ_MEM(b.prev, zero, P2P_KEY_LEN);
    /* keys 180 s old open nothing */
    T_CHECK(p2p_keys_for_open(&b, 1, 30, 299 * SEC, &which) == b.recv);
    T_CHECK(p2p_keys_for_open(&b, 1, 30, 300 * SEC, &which) == NULL);
    T_EQ_INT(p2p_keys_expired(&b, 300 * SEC), 1);

    /* the packet-count limit: 2^60 packets under one send key */
    mirrored(&a, &b, 0);
    p2p_keys_opened(&a, P2P_KEY_CURRENT, 0, 0, SEC, 0);
    T_EQ_INT(p2p_keys_update_due(&a, P2P_REKEY_AFTER_MESSAGES - 1, SEC), 0);
    T_EQ_INT(p2p_keys_update_due(&a, P2P_REKEY_AFTER_MESSAGES, SEC), 1);
    p2p_keys_wipe(&a);
    p2p_keys_wipe(&b);
}

/* ---- long streams in the simulator ----------------------------------------------------- */

typedef struct rk_node {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer;
    int joins, leaves, errors, wrong_peer;
    uint32_t next; /* next message index expected */
    int bad;       /* out of order, duplicated or corrupted */
} rk_node;

/* Message i: 8 to 307 bytes, its index first. */
static const tnet_msgs msgs = {8, 37, 300, 7, 1};

static void rk_drain(rk_node *n)
{
    p2p_event ev;
    uint8_t want[512];
    while (p2p_host_next_event(n->h, &ev)) {
        switch (ev.type) {
        case P2P_EV_JOIN:
            n->joins++;
            n->peer = ev.peer;
            break;
        case P2P_EV_LEAVE: n->leaves++; break;
        case P2P_EV_ERROR: n->errors++; break;
        case P2P_EV_MESSAGE: {
            if (ev.peer != n->peer) n->wrong_peer++;
            uint32_t i = ev.len >= 4 ? p2p_get_u32(ev.data) : UINT32_MAX;
            if (i != n->next || ev.len != tnet_msg_len(&msgs, i) || ev.msg_type != MSG_TYPE) {
                n->bad++;
                break;
            }
            tnet_msg_fill(&msgs, want, i);
            if (memcmp(want, ev.data, ev.len)) n->bad++;
            n->next++;
            break;
        }
        default: break;
        }
    }
}

static int rk_new(rk_node *n, p2p_sim *s, uint8_t seed_byte, uint64_t timeout)
{
    p2p_config c;
    memset(n, 0, sizeof *n);
    if (tnet_identity(&n->id, seed_byte, seed_byte)) return -1;
    p2p_config_init(&c);
    c.timeout_us = timeout;
    return tnet_sim_host(s, &c, &n->id, 0, P2P_SIM_NAT_NONE, &n->h, &n->addr);
}

static void rk_run(p2p_sim *s, rk_node *a, rk_node *b, uint64_t until)
{
    while (p2p_sim_now(s) < until) {
        p2p_sim_step(s, until);
        rk_drain(a);
        rk_drain(b);
    }
}

static p2p_peer *rk_session(rk_node *n)
{
    return p2p_lookup(n->h, n->peer);
}

/* A sim with two joined hosts; 0 or -1. */
static int rk_pair(p2p_sim **s, const p2p_sim_config *cfg, rk_node *a, rk_node *b, uint64_t timeout)
{
    if (p2p_sim_new(s, cfg) || rk_new(a, *s, 1, timeout) || rk_new(b, *s, 2, timeout)) return -1;
    if (p2p_host_connect(a->h, &b->addr, p2p_host_id(b->h), 0, &a->peer)) return -1;
    p2p_sim_flush(*s, a->h);
    while (!(a->joins && b->joins) && p2p_sim_now(*s) < 30 * SEC)
        rk_run(*s, a, b, p2p_sim_now(*s) + 10000);
    return a->joins && b->joins ? 0 : -1;
}

static void rk_free(p2p_sim *s, rk_node *a, rk_node *b)
{
    p2p_sim_free(s);
    p2p_host_free(a->h);
    p2p_host_free(b->h);
    p2p_identity_wipe(&a->id);
    p2p_identity_wipe(&b->id);
}

/* Sends one message from x (counter *sent) unless its queue is full. */
static void rk_send(p2p_sim *s, rk_node *x, uint32_t *sent)
{
    uint8_t buf[512];
    tnet_msg_fill(&msgs, buf, *sent);
    if (p2p_peer_send(x->h, x->peer, MSG_TYPE, buf, tnet_msg_len(&msgs, *sent), 0, NULL,
                      p2p_sim_now(s)) == 0)
        (*sent)++;
    p2p_sim_flush(s, x->h);
}

/* Both sides send a message every `gap` for `dur`, then the network drains. Returns the
 * packets opened with a previous key (*late) and the packets the two hosts dropped. */
static void stream_run(const p2p_sim_config *cfg, uint64_t dur, uint64_t gap, uint64_t *late,
                       uint64_t *dropped)
{
    static rk_node a, b;
    p2p_sim *s = NULL;
    T_EQ_INT(rk_pair(&s, cfg, &a, &b, 0), 0);
    p2p_peer_handle ha = a.peer, hb = b.peer;
    uint32_t sent_a = 0, sent_b = 0;
    uint64_t end = p2p_sim_now(s) + dur;
    while (p2p_sim_now(s) < end) {
        rk_send(s, &a, &sent_a);
        rk_send(s, &b, &sent_b);
        rk_run(s, &a, &b, p2p_sim_now(s) + gap);
    }
    uint64_t until = p2p_sim_now(s) + 30 * SEC;
    while ((a.next < sent_b || b.next < sent_a) && p2p_sim_now(s) < until)
        rk_run(s, &a, &b, p2p_sim_now(s) + 100000);
    p2p_stats sa, sb;
    p2p_host_stats(a.h, &sa);
    p2p_host_stats(b.h, &sb);
    /* every message exactly once, in order, intact, on the one session both sides joined */
    T_CHECK(sent_a > dur / gap / 2);
    T_EQ_INT(b.next, sent_a);
    T_EQ_INT(a.next, sent_b);
    T_EQ_INT(a.bad + b.bad, 0);
    T_EQ_INT(a.wrong_peer + b.wrong_peer, 0);
    T_EQ_INT(a.joins, 1);
    T_EQ_INT(b.joins, 1);
    T_EQ_INT(a.leaves + b.leaves + a.errors + b.errors, 0);
    T_EQ_INT(p2p_host_find(a.h, p2p_host_id(b.h)), ha);
    T_EQ_INT(p2p_host_find(b.h, p2p_host_id(a.h)), hb);
    /* one update every 120 s, on both sides */
    uint64_t want = dur / P2P_REKEY_AFTER_TIME_US;
    T_CHECK(want >= 3);
    T_CHECK(sa.rekeys >= want && sa.rekeys <= want + 1);
    T_CHECK(sb.rekeys >= want && sb.rekeys <= want + 1);
    p2p_peer *pa = rk_session(&a), *pb = rk_session(&b);
    T_CHECK(pa && pb);
    *late = 0;
    if (pa && pb) {
        T_EQ_INT(pa->keys.generation, sa.rekeys);
        T_EQ_INT(pb->keys.generation, sb.rekeys);
        T_EQ_INT(pa->keys.phase, (uint8_t)(sa.rekeys & 1));
        T_EQ_MEM(pa->keys.send, pb->keys.recv, P2P_KEY_LEN);
        T_EQ_MEM(pb->keys.send, pa->keys.recv, P2P_KEY_LEN);
        *late = pa->keys.late + pb->keys.late;
    }
    *dropped = sa.dropped + sb.dropped;
    if (getenv("T_VERBOSE"))
        printf("  %u + %u messages, rekeys %llu / %llu, late %llu, dropped %llu\n", sent_a, sent_b,
               (unsigned long long)sa.rekeys, (unsigned long long)sb.rekeys,
               (unsigned long long)*late, (unsigned long long)*dropped);
    rk_free(s, &a, &b);
}

/* A clean network: the packets in flight at each switch open with the previous key. */
static void test_stream_rekeys(void)
{
    p2p_sim_config cfg;
    uint64_t late, dropped;
    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 31;
    cfg.latency_us = 20000;
    stream_run(&cfg, 500 * SEC, 20000, &late, &dropped);
    T_CHECK(late >= 1);
    T_EQ_INT(dropped, 0);
}

/* 5% loss and 5% reordering: packets of the old phase that arrive after the switch still
 * open (not one packet is refused for its key), lost ones are resent under the new keys. */
static void test_stream_rekeys_lossy(void)
{
    p2p_sim_config cfg;
    uint64_t late, dropped;
    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 32;
    cfg.latency_us = 20000;
    cfg.jitter_us = 5000;
    cfg.loss = 0.05;
    cfg.reorder = 0.05;
    stream_run(&cfg, 500 * SEC, 10000, &late, &dropped);
    T_CHECK(late >= 10);
    T_EQ_INT(dropped, 0);
    /* and with duplicates too (they are dropped as replays, whatever their phase) */
    cfg.seed = 35;
    cfg.loss = 0.05;
    cfg.reorder = 0.10;
    cfg.duplicate = 0.05;
    stream_run(&cfg, 400 * SEC, 10000, &late, &dropped);
    T_CHECK(dropped > 0);
}

/* An idle session lives on keepalives past REJECT_AFTER_TIME, rekeying as it goes, and then
 * carries messages; with a long timeout (keepalives 75 s apart) the update's own PING does. */
static void idle_run(uint64_t timeout, uint64_t dur)
{
    static rk_node a, b;
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 33;
    cfg.latency_us = 15000;
    T_EQ_INT(rk_pair(&s, &cfg, &a, &b, timeout), 0);
    rk_run(s, &a, &b, p2p_sim_now(s) + dur);
    p2p_stats sa, sb;
    p2p_host_stats(a.h, &sa);
    p2p_host_stats(b.h, &sb);
    T_CHECK(sa.rekeys >= dur / P2P_REKEY_AFTER_TIME_US);
    T_CHECK(sb.rekeys >= dur / P2P_REKEY_AFTER_TIME_US);
    T_EQ_INT(a.leaves + b.leaves, 0);
    uint32_t sent_a = 0, sent_b = 0;
    rk_send(s, &a, &sent_a);
    rk_send(s, &b, &sent_b);
    rk_run(s, &a, &b, p2p_sim_now(s) + SEC);
    T_EQ_INT(b.next, 1);
    T_EQ_INT(a.next, 1);
    T_EQ_INT(a.joins + b.joins, 2);
    T_EQ_INT(a.leaves + b.leaves + a.bad + b.bad, 0);
    rk_free(s, &a, &b);
}

static void test_idle_past_reject(void)
{
    idle_run(0, 400 * SEC);
    idle_run(300 * SEC, 700 * SEC);
}

/* The other limit: 2^60 packets under one send key (the test moves the count near it). */
static void test_packet_limit(void)
{
    static rk_node a, b;
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 34;
    cfg.latency_us = 10000;
    T_EQ_INT(rk_pair(&s, &cfg, &a, &b, 0), 0);
    rk_run(s, &a, &b, p2p_sim_now(s) + SEC);
    p2p_peer *pa = rk_session(&a);
    T_CHECK(pa != NULL);
    if (!pa) return;
    pa->keys.send_first_pn = pa->rec.next_pn + 10 - P2P_REKEY_AFTER_MESSAGES;
    uint32_t sent_a = 0, sent_b = 0;
    for (int i = 0; i < 50; i++) {
        rk_send(s, &a, &sent_a);
        rk_send(s, &b, &sent_b);
        rk_run(s, &a, &b, p2p_sim_now(s) + 20000);
    }
    rk_run(s, &a, &b, p2p_sim_now(s) + SEC);
    p2p_stats sa, sb;
    p2p_host_stats(a.h, &sa);
    p2p_host_stats(b.h, &sb);
    T_CHECK(p2p_sim_now(s) < 10 * SEC); /* long before the 120 s timer */
    T_EQ_INT(sa.rekeys, 1);
    T_EQ_INT(sb.rekeys, 1);
    T_EQ_INT(b.next, sent_a);
    T_EQ_INT(a.next, sent_b);
    T_EQ_INT(a.bad + b.bad + a.leaves + b.leaves, 0);
    rk_free(s, &a, &b);
}

/* ---- attacks (attack.h) -------------------------------------------------------------- */

#define HOLD_MAX 16

/* What the filter holds back or rewrites. */
typedef struct rk_filter {
    int hold; /* hold back a -> b DATA packets of phase 0 */
    int a, b;
    int nheld;
    size_t held_len[HOLD_MAX];
    uint8_t held[HOLD_MAX][P2P_MAX_PACKET];
    /* stale sender: b's packets to a are resealed under b's first send key */
    int reseal;
    uint8_t gen0[P2P_KEY_LEN];
    uint64_t resealed, unknown;
    /* leave events: when, and why */
    uint64_t leave_at[2];
    int leave_reason[2];
} rk_filter;

static int rk_filter_fn(anet *net, an_pkt *pkt)
{
    rk_filter *f = net->ud;
    if (pkt->len < P2P_DATA_HEADER + P2P_TAG_LEN || pkt->data[0] != P2P_PKT_DATA) return 1;
    if (f->hold && p2p_addr_equal(&pkt->from, &net->n[f->a].addr) &&
        p2p_addr_equal(&pkt->to, &net->n[f->b].addr) && !(pkt->data[1] & P2P_DATA_KEY_PHASE)) {
        if (f->nheld < HOLD_MAX && pkt->len <= P2P_MAX_PACKET) {
            memcpy(f->held[f->nheld], pkt->data, pkt->len);
            f->held_len[f->nheld++] = pkt->len;
        }
        return 0;
    }
    if (f->reseal && p2p_addr_equal(&pkt->from, &net->n[f->b].addr) &&
        p2p_addr_equal(&pkt->to, &net->n[f->a].addr)) {
        /* find the generation b sealed it with, then seal it again with the first one */
        uint8_t k[P2P_KEY_LEN], pt[P2P_MAX_PACKET_PROBED];
        uint64_t pn = p2p_get_u64(pkt->data + 8);
        size_t ctlen = pkt->len - P2P_DATA_HEADER;
        memcpy(k, f->gen0, P2P_KEY_LEN);
        for (int g = 0; g < 8; g++) {
            if (p2p_aead_open(pt, k, pn, pkt->data, P2P_DATA_HEADER, pkt->data + P2P_DATA_HEADER,
                              ctlen) == 0) {
                pkt->data[1] = 0;
                p2p_aead_seal(pkt->data + P2P_DATA_HEADER, f->gen0, pn, pkt->data, P2P_DATA_HEADER,
                              pt, ctlen - P2P_TAG_LEN);
                f->resealed++;
                return 1;
            }
            p2p_keys_next_key(k, k);
        }
        f->unknown++;
    }
    return 1;
}

static void rk_on_event(anet *net, int node, const p2p_event *ev)
{
    rk_filter *f = net->ud;
    if (ev->type == P2P_EV_LEAVE && node < 2) {
        f->leave_at[node] = net->now;
        f->leave_reason[node] = ev->reason;
    }
}

static void rk_anet(anet *net, rk_filter *f, const p2p_config *cfg)
{
    memset(f, 0, sizeof *f);
    an_init(net, 10000);
    f->a = an_add(net, cfg);
    f->b = an_add(net, cfg);
    net->ud = f;
    net->filter = rk_filter_fn;
    net->on_event = rk_on_event;
}

/* Runs until host `node`'s session with `other` reaches key generation g (or `limit`). */
static void run_to_generation(anet *net, int node, int other, uint64_t g, uint64_t limit)
{
    uint64_t end = net->now + limit;
    for (;;) {
        p2p_peer *p = an_session(net, node, other);
        if (!p || p->keys.generation >= g || net->now >= end) return;
        an_run(net, 5000);
    }
}

/* A packet sealed under an old key is refused after the update: one the network delayed
 * across the switch opens for a short while (the previous key), the same later does not,
 * though the replay window alone would take it; and a replay of a delivered one is refused. */
static void test_old_key_replay(void)
{
    anet net;
    rk_filter f;
    rk_anet(&net, &f, NULL);
    T_CHECK(an_connect(&net, f.a, f.b, 2 * SEC) != 0);
    an_capture(&net, f.a, P2P_PKT_DATA);
    an_run(&net, 5 * SEC);
    T_CHECK(net.ncap >= 2);
    p2p_peer *pa = an_session(&net, f.a, f.b);
    /* hold a's packets of phase 0 for the 4 s before a's update */
    an_run(&net, pa->keys.installed + P2P_REKEY_AFTER_TIME_US - 4 * SEC - net.now);
    f.hold = 1;
    run_to_generation(&net, f.b, f.a, 1, 10 * SEC);
    f.hold = 0;
    p2p_peer *pb = an_session(&net, f.b, f.a);
    T_CHECK(pb && pb->keys.generation == 1);
    T_CHECK(f.nheld >= 2);
    if (!pb || f.nheld < 2) {
        an_free(&net);
        return;
    }
    an_run(&net, 100000);

    /* 100 ms after the switch: a late packet of the old phase still opens */
    p2p_stats s0 = an_stats(&net, f.b), s1;
    uint64_t pn0 = p2p_get_u64(f.held[0] + 8);
    T_EQ_INT(p2p_replay_check(&pb->replay, pn0), 0);
    an_inject(&net, f.b, &net.n[f.a].addr, f.held[0], f.held_len[0]);
    s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped, s0.dropped);
    T_EQ_INT(pb->keys.late, 1);
    T_EQ_INT(p2p_replay_check(&pb->replay, pn0), -1);

    /* past 3 PTO (at least 1 s): the previous key is gone, and the next held packet, never
     * seen and inside the replay window, is refused */
    an_run(&net, 2 * SEC);
    pb = an_session(&net, f.b, f.a);
    T_EQ_INT(pb->keys.has_prev, 0);
    uint64_t pn1 = p2p_get_u64(f.held[1] + 8);
    T_EQ_INT(p2p_replay_check(&pb->replay, pn1), 0);
    p2p_keys before;
    memcpy(&before, &pb->keys, sizeof before);
    uint64_t last_recv = pb->last_recv;
    s0 = an_stats(&net, f.b);
    an_inject(&net, f.b, &net.n[f.a].addr, f.held[1], f.held_len[1]);
    s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped, s0.dropped + 1);
    T_EQ_INT(p2p_replay_check(&pb->replay, pn1), 0);
    T_EQ_INT(pb->last_recv, last_recv);
    T_EQ_MEM(&pb->keys, &before, sizeof before);

    /* a delivered packet of the first phase, replayed */
    s0 = an_stats(&net, f.b);
    an_inject(&net, f.b, &net.n[f.a].addr, net.cap[1], net.cap_len[1]);
    s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped, s0.dropped + 1);
    T_EQ_INT(s1.rekeys, s0.rekeys);
    /* and the session goes on */
    T_EQ_INT(p2p_peer_send(net.n[f.a].h, an_handle(&net, f.a, f.b), 1, (const uint8_t *)"x", 1, 0,
                           NULL, net.now),
             0);
    an_run(&net, SEC);
    T_EQ_INT(net.n[f.b].msgs, 1);
    T_EQ_INT(net.n[f.a].leaves + net.n[f.b].leaves, 0);
    an_free(&net);
}

/* Forged packets that claim the other key phase (a genuine packet with its phase bit
 * flipped, random bytes of either phase) are dropped and move nothing. */
static void test_forged_phase(void)
{
    anet net;
    rk_filter f;
    rk_anet(&net, &f, NULL);
    T_CHECK(an_connect(&net, f.a, f.b, 2 * SEC) != 0);
    /* hold one genuine packet of phase 0 from a, late in the first generation */
    p2p_peer *pa = an_session(&net, f.a, f.b);
    an_run(&net, pa->keys.installed + P2P_REKEY_AFTER_TIME_US - 3 * SEC - net.now);
    f.hold = 1;
    while (!f.nheld) an_run(&net, 10000);
    f.hold = 0;
    p2p_peer *pb = an_session(&net, f.b, f.a);
    uint64_t pn = p2p_get_u64(f.held[0] + 8);
    uint8_t pkt[P2P_MAX_PACKET];
    size_t len = f.held_len[0];
    p2p_stats s0 = an_stats(&net, f.b);
    p2p_keys before;
    memcpy(&before, &pb->keys, sizeof before);
    p2p_replay rbefore;
    memcpy(&rbefore, &pb->replay, sizeof rbefore);

    /* its phase bit flipped: b tries the next key, which fails; nothing moves */
    memcpy(pkt, f.held[0], len);
    pkt[1] ^= P2P_DATA_KEY_PHASE;
    an_inject(&net, f.b, &net.n[f.a].addr, pkt, len);
    /* random ciphertext under each phase, numbered above everything b has seen */
    for (int phase = 0; phase < 2; phase++) {
        for (int i = 0; i < 50; i++) {
            uint8_t junk[200];
            p2p_rng_bytes(&net.n[f.a].h->rng, junk, sizeof junk);
            junk[0] = P2P_PKT_DATA;
            junk[1] = (uint8_t)phase;
            junk[2] = junk[3] = 0;
            p2p_put_u32(junk + 4, pb->local_index);
            p2p_put_u64(junk + 8, pb->replay.largest + 1 + (uint64_t)i);
            an_inject(&net, f.b, &net.n[f.a].addr, junk, sizeof junk);
        }
    }
    /* any other bit of byte 1 set: not this protocol */
    memcpy(pkt, f.held[0], len);
    pkt[1] |= 0x02;
    an_inject(&net, f.b, &net.n[f.a].addr, pkt, len);
    p2p_stats s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped, s0.dropped + 102);
    T_EQ_INT(s1.rekeys, s0.rekeys);
    T_EQ_MEM(&pb->keys, &before, sizeof before);
    T_EQ_MEM(&pb->replay, &rbefore, sizeof rbefore);

    /* the genuine packet, unaltered, still opens: only the forgery made the difference */
    an_inject(&net, f.b, &net.n[f.a].addr, f.held[0], len);
    s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped, s0.dropped + 102);
    T_EQ_INT(p2p_replay_check(&pb->replay, pn), -1);

    /* the same across the next switch: after b moved to generation 1, forgeries of phase 0
     * (the previous generation's) and phase 1 move nothing either */
    run_to_generation(&net, f.b, f.a, 1, 10 * SEC);
    pb = an_session(&net, f.b, f.a);
    T_EQ_INT(pb->keys.generation, 1);
    memcpy(&before, &pb->keys, sizeof before);
    s0 = an_stats(&net, f.b);
    for (int phase = 0; phase < 2; phase++) {
        uint8_t junk[100];
        p2p_rng_bytes(&net.n[f.a].h->rng, junk, sizeof junk);
        junk[0] = P2P_PKT_DATA;
        junk[1] = (uint8_t)phase;
        junk[2] = junk[3] = 0;
        p2p_put_u32(junk + 4, pb->local_index);
        p2p_put_u64(junk + 8, pb->replay.largest + 1);
        an_inject(&net, f.b, &net.n[f.a].addr, junk, sizeof junk);
        p2p_put_u64(junk + 8, pb->replay.largest - 1);
        an_inject(&net, f.b, &net.n[f.a].addr, junk, sizeof junk);
    }
    s1 = an_stats(&net, f.b);
    T_EQ_INT(s1.dropped - s0.dropped, 4);
    T_EQ_MEM(&pb->keys, &before, sizeof before);
    an_run(&net, 5 * SEC);
    T_EQ_INT(net.n[f.a].leaves + net.n[f.b].leaves, 0);
    an_free(&net);
}

/* A peer that refuses to update (its key state frozen: it never starts an update and cannot
 * follow one) loses the session: it cannot read the other side's new phase and times out,
 * and the other side, hearing nothing it may open, times out after it. */
static void test_frozen_peer(void)
{
    anet net;
    rk_filter f;
    rk_anet(&net, &f, NULL);
    T_CHECK(an_connect(&net, f.a, f.b, 2 * SEC) != 0);
    uint64_t start = net.now;
    p2p_peer *pa = an_session(&net, f.a, f.b);
    uint64_t a_installed = pa->keys.installed;
    while (net.now < start + 300 * SEC && !(net.n[f.a].leaves && net.n[f.b].leaves)) {
        p2p_peer *pb = an_session(&net, f.b, f.a);
        if (pb) {
            memset(pb->keys.next, 0x5a, sizeof pb->keys.next);
            pb->keys.installed = net.now;
        }
        an_run(&net, 10000);
    }
    p2p_stats sa = an_stats(&net, f.a), sb = an_stats(&net, f.b);
    T_EQ_INT(sa.rekeys, 1);
    T_EQ_INT(sb.rekeys, 0);
    T_EQ_INT(net.n[f.a].leaves, 1);
    T_EQ_INT(net.n[f.b].leaves, 1);
    T_EQ_INT(f.leave_reason[0], P2P_LEAVE_TIMEOUT);
    T_EQ_INT(f.leave_reason[1], P2P_LEAVE_TIMEOUT);
    /* b hears nothing it can open from a's update on; a then hears nothing at all */
    uint64_t upd = a_installed + P2P_REKEY_AFTER_TIME_US;
    if (getenv("T_VERBOSE"))
        printf("  update at %.3f s; b left at %.3f s, a at %.3f s (after the handshake keys)\n",
               (double)(upd - a_installed) / 1e6, (double)(f.leave_at[1] - a_installed) / 1e6,
               (double)(f.leave_at[0] - a_installed) / 1e6);
    T_CHECK(f.leave_at[1] <= upd + P2P_DEFAULT_TIMEOUT_US + SEC);
    T_CHECK(f.leave_at[0] <= upd + 2 * P2P_DEFAULT_TIMEOUT_US + SEC);
    an_free(&net);
}

/* A peer that follows updates but keeps sealing with its first key: its packets open under
 * the previous key only until that key is REJECT_AFTER_TIME old; then they are dropped and
 * the session ends by the idle timeout. */
static void test_stale_sender(void)
{
    anet net;
    rk_filter f;
    rk_anet(&net, &f, NULL);
    T_CHECK(an_connect(&net, f.a, f.b, 2 * SEC) != 0);
    p2p_peer *pa = an_session(&net, f.a, f.b), *pb = an_session(&net, f.b, f.a);
    memcpy(f.gen0, pb->keys.send, P2P_KEY_LEN);
    uint64_t a_gen0 = pa->keys.installed;
    f.reseal = 1;
    uint64_t last_ok = 0;
    while (net.now < a_gen0 + 400 * SEC && !net.n[f.a].leaves) {
        an_run(&net, 100000);
        pa = an_session(&net, f.a, f.b);
        if (pa) last_ok = pa->last_recv;
    }
    p2p_stats sa = an_stats(&net, f.a);
    if (getenv("T_VERBOSE"))
        printf("  a last opened a packet at %.3f s, left at %.3f s; %llu resealed, %llu dropped\n",
               (double)(last_ok - a_gen0) / 1e6, (double)(f.leave_at[0] - a_gen0) / 1e6,
               (unsigned long long)f.resealed, (unsigned long long)sa.dropped);
    T_CHECK(f.resealed > 100);
    T_EQ_INT(f.unknown, 0);
    T_EQ_INT(net.n[f.a].leaves, 1);
    T_EQ_INT(f.leave_reason[0], P2P_LEAVE_TIMEOUT);
    /* the last packet a opened came before the old key turned 180 s, and a ended 10 s on */
    T_CHECK(last_ok < a_gen0 + P2P_REJECT_AFTER_TIME_US);
    T_CHECK(last_ok > a_gen0 + P2P_REJECT_AFTER_TIME_US - 5 * SEC);
    T_CHECK(f.leave_at[0] <= a_gen0 + P2P_REJECT_AFTER_TIME_US + P2P_DEFAULT_TIMEOUT_US + 100000);
    T_EQ_INT(sa.rekeys, 1); /* never confirmed: a never runs two generations ahead */
    T_CHECK(sa.dropped > 0);
    an_free(&net);
}

/* With a timeout longer than REJECT_AFTER_TIME, a peer that stops answering ends the session
 * when the update it never confirmed expires, 180 s after it started, not at the timeout. */
static void test_unconfirmed_expiry(void)
{
    anet net;
    rk_filter f;
    p2p_config c;
    p2p_config_init(&c);
    c.timeout_us = 600 * SEC;
    rk_anet(&net, &f, &c);
    T_CHECK(an_connect(&net, f.a, f.b, 2 * SEC) != 0);
    p2p_peer *pa = an_session(&net, f.a, f.b);
    uint64_t upd = pa->keys.installed + P2P_REKEY_AFTER_TIME_US;
    an_run(&net, 100 * SEC);
    /* b vanishes */
    p2p_host_free(net.n[f.b].h);
    net.n[f.b].h = NULL;
    while (net.now < upd + 400 * SEC && !net.n[f.a].leaves) an_run(&net, SEC);
    p2p_stats sa = an_stats(&net, f.a);
    T_EQ_INT(sa.rekeys, 1);
    T_EQ_INT(net.n[f.a].leaves, 1);
    T_EQ_INT(f.leave_reason[0], P2P_LEAVE_TIMEOUT);
    T_EQ_INT(f.leave_at[0], upd + P2P_REJECT_AFTER_TIME_US);
    an_free(&net);
}

int main(void)
{
    T_RUN(test_schedule);
    T_RUN(test_stream_rekeys);
    T_RUN(test_stream_rekeys_lossy);
    T_RUN(test_idle_past_reject);
    T_RUN(test_packet_limit);
    T_RUN(test_old_key_replay);
    T_RUN(test_forged_phase);
    T_RUN(test_frozen_peer);
    T_RUN(test_stale_sender);
    T_RUN(test_unconfirmed_expiry);
    return t_summary("test_rekey");
}
