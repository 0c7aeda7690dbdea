/* test_lanes.c - lanes (docs/PROTOCOL.md section 4.4) on the simulator, in virtual time: a bulk
 * lane does not hold up a small message on another lane (and one lane does: the head-of-line
 * delay the lanes remove), every lane is exactly once and in order under loss, reordering and
 * duplication, priorities and weights share the window as configured, receipts ride the
 * control lane past a bulk transfer, a peer that opens every lane stays within its memory
 * budget, malformed lane frames are refused, and sequenced datagrams drop the stale ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "tnet.h"
#include "attack.h"
#include "driver/sim.h"
#include "p2p_peer.h"

#define MSG_TYPE 7
#define KIND_BULK 1
#define KIND_SMALL 2
#define SMALL_LEN 64
#define MSG_HEAD 6 /* u32 index, u8 lane, u8 kind */
#define BULK_LEN (16u * 1024u * 1024u)
#define MAX_SMALL 4096

typedef struct node {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer;
    /* received */
    uint32_t next[P2P_LANE_SLOTS]; /* the index each lane expects next */
    uint64_t lane_msgs[P2P_LANE_SLOTS];
    int bad, out_of_order, joined;
    uint64_t small_latency[MAX_SMALL]; /* by the small message's index */
    int nsmall;
    int replies, replies_bad;
    uint64_t reply_latency[MAX_SMALL];
    int nreply_lat;
    uint64_t dg_last, dg_count;
    int dg_has, dg_bad;
    /* sent */
    uint32_t sent[P2P_LANE_SLOTS];
    uint64_t small_sent_at[MAX_SMALL];
    uint64_t req_sent_at[P2P_LANE_SLOTS][64]; /* by seq, for receipts */
} node;

static p2p_sim *S;
static node NA, NB;
static int answer_requests = 1;

static uint8_t pattern(uint32_t i, uint8_t lane, size_t k)
{
    return (uint8_t)(i * 7u + k * 13u + lane);
}

static size_t msg_make(uint8_t *buf, size_t len, uint32_t i, uint8_t lane, uint8_t kind)
{
    p2p_put_u32(buf, i);
    buf[4] = lane;
    buf[5] = kind;
    for (size_t k = MSG_HEAD; k < len; k++) buf[k] = pattern(i, lane, k);
    return len;
}

static void on_event(node *x, const p2p_event *ev)
{
    uint64_t now = p2p_sim_now(S);
    switch (ev->type) {
    case P2P_EV_JOIN: x->joined = 1; break;
    case P2P_EV_MESSAGE: {
        if (ev->len < MSG_HEAD || ev->data[4] != ev->lane) {
            x->bad++;
            break;
        }
        uint32_t i = p2p_get_u32(ev->data);
        for (size_t k = MSG_HEAD; k < ev->len; k++)
            if (ev->data[k] != pattern(i, ev->lane, k)) {
                x->bad++;
                break;
            }
        if (i != x->next[ev->lane]) x->out_of_order++;
        x->next[ev->lane] = i + 1;
        x->lane_msgs[ev->lane]++;
        if (ev->data[5] == KIND_SMALL) {
            node *from = x == &NA ? &NB : &NA;
            if (x->nsmall < MAX_SMALL) x->small_latency[x->nsmall++] = now - from->small_sent_at[i];
        }
        if (ev->want_reply && answer_requests)
            p2p_peer_reply_lane(x->h, ev->peer, ev->lane, ev->seq, P2P_REPLY_DATA, ev->data, 4,
                                now);
        break;
    }
    case P2P_EV_REPLY:
        x->replies++;
        if (ev->status != P2P_REPLY_DATA || ev->len != 4 || ev->seq >= 64) {
            x->replies_bad++;
            break;
        }
        if (x->nreply_lat < MAX_SMALL)
            x->reply_latency[x->nreply_lat++] = now - x->req_sent_at[ev->lane][ev->seq];
        break;
    case P2P_EV_DATAGRAM:
        if (!ev->sequenced) break;
        if (x->dg_has && ev->seq <= x->dg_last) x->dg_bad++;
        x->dg_has = 1;
        x->dg_last = ev->seq;
        x->dg_count++;
        break;
    default: break;
    }
}

static void drain(void)
{
    p2p_event ev;
    while (NA.h && p2p_host_next_event(NA.h, &ev)) on_event(&NA, &ev);
    while (NB.h && p2p_host_next_event(NB.h, &ev)) on_event(&NB, &ev);
}

static void run(uint64_t us)
{
    p2p_sim_flush(S, NA.h);
    p2p_sim_flush(S, NB.h);
    tnet_run_for(S, us, drain);
}

/* Two connected hosts on a sim with these faults; cb (may be NULL) is B's config. */
static int setup2(uint64_t seed, uint64_t latency_us, double loss, double dup, double reorder,
                  const p2p_config *ca_in, const p2p_config *cb)
{
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = latency_us;
    sc.loss = loss;
    sc.duplicate = dup;
    sc.reorder = reorder;
    memset(&NA, 0, sizeof NA);
    memset(&NB, 0, sizeof NB);
    if (p2p_sim_new(&S, &sc)) return -1;
    p2p_config ca, cbb;
    if (ca_in)
        ca = *ca_in;
    else
        p2p_config_init(&ca);
    if (cb)
        cbb = *cb;
    else
        p2p_config_init(&cbb);
    if (tnet_identity(&NA.id, 0x11, 1) || tnet_identity(&NB.id, 0x22, 2)) return -1;
    if (tnet_sim_host(S, &ca, &NA.id, 0, P2P_SIM_NAT_NONE, &NA.h, &NA.addr)) return -1;
    if (tnet_sim_host(S, &cbb, &NB.id, 0, P2P_SIM_NAT_NONE, &NB.h, &NB.addr)) return -1;
    if (p2p_host_connect(NA.h, &NB.addr, NB.id.ed_pk, p2p_sim_now(S), &NA.peer)) return -1;
    for (int i = 0; i < 300 && !(NA.joined && NB.joined); i++) run(100000);
    NB.peer = p2p_host_find(NB.h, NA.id.ed_pk);
    return NA.joined && NB.joined && NB.peer ? 0 : -1;
}

static int setup(uint64_t seed, uint64_t latency_us, double loss, double dup, double reorder,
                 const p2p_config *cb)
{
    return setup2(seed, latency_us, loss, dup, reorder, NULL, cb);
}

/* A's config for the bulk tests: room to queue 16 MiB on one lane and more behind it. */
static const p2p_config *bulk_config(void)
{
    static p2p_config c;
    p2p_config_init(&c);
    c.send_queue_limit = 64u << 20;
    return &c;
}

/* A's up link becomes a bottleneck of rate_bps with a queue of one bandwidth-delay product
 * (at RTT_US): the bulk fills the link for seconds, whatever the congestion controller. */
static void bottleneck(uint64_t rate_bps, uint64_t rtt_us)
{
    p2p_sim_link l;
    memset(&l, 0, sizeof l);
    l.rate_bps = rate_bps;
    l.queue_bytes = rate_bps / 8 * rtt_us / 1000000;
    T_EQ_INT(p2p_sim_set_link(S, NA.h, P2P_SIM_UP, &l), 0);
}

static void teardown(void)
{
    p2p_host_free(NA.h);
    p2p_host_free(NB.h);
    p2p_identity_wipe(&NA.id);
    p2p_identity_wipe(&NB.id);
    NA.h = NB.h = NULL;
    p2p_sim_free(S);
    S = NULL;
}

static int send_msg(node *x, uint8_t lane, uint8_t kind, size_t len, int want_reply)
{
    static uint8_t *buf;
    if (!buf) buf = malloc(BULK_LEN);
    uint32_t i = x->sent[lane];
    if (kind == KIND_SMALL && i < MAX_SMALL) x->small_sent_at[i] = p2p_sim_now(S);
    msg_make(buf, len, i, lane, kind);
    uint64_t seq = 0;
    int rc = p2p_peer_send_lane(x->h, x->peer, lane, MSG_TYPE, buf, len, want_reply, &seq,
                                p2p_sim_now(S));
    if (rc == 0) {
        x->sent[lane]++;
        if (want_reply && seq < 64) x->req_sent_at[lane][seq] = p2p_sim_now(S);
    }
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n) (sorts v). */
static uint64_t quantile(uint64_t *v, int n, double q)
{
    if (n <= 0) return UINT64_MAX;
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int k = (int)(q * (n - 1) + 0.5);
    return v[k];
}

#define RTT_US 50000u /* 25 ms each way */
#define WATCH_S 10    /* seconds of the bulk transfer watched */
#define SMALL_EVERY_US 100000u
/* 16 MiB at this rate takes 13.4 s: longer than the WATCH_S seconds watched. */
#define HOL_RATE_BPS 10000000u

/* A 16 MiB message on `bulk_lane` through a 10 Mbit/s bottleneck with 1% loss, and a 64-byte
 * message every 100 ms on `small_lane` (priority 1 when it is another lane). Fills lat[] with
 * the small messages' latencies (undelivered ones count as the time they waited) and returns
 * their count. */
static int hol_run(uint64_t seed, uint8_t bulk_lane, uint8_t small_lane, int small_prio,
                   uint64_t *lat, uint64_t *bulk_bytes)
{
    int n = 0;
    if (setup2(seed, RTT_US / 2, 0.01, 0, 0, bulk_config(), NULL)) return -1;
    bottleneck(HOL_RATE_BPS, RTT_US);
    p2p_host_set_lane(NA.h, small_lane, small_prio, 1);
    T_EQ_INT(send_msg(&NA, bulk_lane, KIND_BULK, BULK_LEN, 0), 0);
    int count = WATCH_S * 1000000 / SMALL_EVERY_US;
    for (int i = 0; i < count; i++) {
        T_EQ_INT(send_msg(&NA, small_lane, KIND_SMALL, SMALL_LEN, 0), 0);
        run(SMALL_EVERY_US);
    }
    run(2 * RTT_US);
    uint64_t end = p2p_sim_now(S);
    for (int i = 0; i < count; i++)
        lat[n++] = i < NB.nsmall ? NB.small_latency[i] : end - NA.small_sent_at[i];
    p2p_peer *v = p2p_lookup(NB.h, NB.peer);
    p2p_lane *bl = NULL;
    if (v) bl = bulk_lane ? (v->lanes ? v->lanes->slot[bulk_lane] : NULL) : &v->l0;
    *bulk_bytes = bl ? bl->r_base : 0;
    T_EQ_INT(NB.bad, 0);
    T_EQ_INT(NB.out_of_order, 0);
    teardown();
    return n;
}

static void test_bulk_lane_no_head_of_line(void)
{
    /* A 64 B message lost on a 1% loss link needs about 1.7 RTT to get through, so in one run
     * of 100 the 99th percentile falls on a loss or not by chance: the priority case runs with
     * HOL_SEEDS seeds and the quantiles are over all their messages. */
    enum { HOL_SEEDS = 5 };
    static uint64_t lat[HOL_SEEDS * 128], one[1024], same[1024];
    uint64_t bulk_lanes = 0, bulk_one = 0, bulk_same = 0;
    int n = 0;
    for (int k = 0; k < HOL_SEEDS; k++) {
        int got = hol_run(41 + (uint64_t)k, 1, 2, 1, lat + n, &bulk_lanes);
        if (got <= 0) {
            n = got;
            break;
        }
        n += got;
    }
    int m = hol_run(41, 1, 1, 0, one, &bulk_one);
    int e = hol_run(41, 1, 2, 0, same, &bulk_same); /* both lanes at the default priority */
    T_CHECK(n > 0 && m > 0 && e > 0);
    if (n <= 0 || m <= 0 || e <= 0) return;
    uint64_t e90 = quantile(same, e, 0.9);
    uint64_t p50 = quantile(lat, n, 0.5), p90 = quantile(lat, n, 0.9), p99 = quantile(lat, n, 0.99);
    uint64_t o50 = quantile(one, m, 0.5);
    printf("     16 MiB on lane 1, 1%% loss, RTT 50 ms: 64 B on lane 2 (priority 1), %d messages "
           "in %d "
           "runs: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; %.2f MiB of the bulk "
           "through in %d s\n",
           n, HOL_SEEDS, p50 / 1e3, p90 / 1e3, p99 / 1e3, lat[n - 1] / 1e3, bulk_lanes / 1048576.0,
           WATCH_S);
    printf("     the same on one lane: p50 %.1f ms (head-of-line), %.2f MiB of the bulk through\n",
           o50 / 1e3, bulk_one / 1048576.0);
    printf("     both lanes at priority 0 (weights 1, 1): p90 %.1f ms, max %.1f ms\n", e90 / 1e3,
           same[e - 1] / 1e3);
    /* The small lane sees about one trip (its packet waits at most for the next ACK to free
     * room in the window); a loss adds a retransmission. */
    T_CHECK(p90 <= 2 * RTT_US);
    T_CHECK(p99 <= 2 * RTT_US); /* issue 10's target, with the bulk filling the link */
    /* Behind the bulk on one lane, it waits for all of it (seconds, not trips). */
    T_CHECK(o50 >= 20 * RTT_US);
    /* At one priority, the round robin gives the small lane the next turn. */
    T_CHECK(e90 <= 2 * RTT_US);
    /* The bulk is moving in both runs (the small lane is not starving it). */
    T_CHECK(bulk_lanes > 1024 * 1024);
}

/* Four lanes, messages of many sizes interleaved at random, 10% loss, 5% duplicates, 10%
 * reordered: every lane delivers every message exactly once, in its order, intact; receipts
 * come back for each request, naming its lane. */
static void test_exactly_once_per_lane(void)
{
    static const uint8_t lanes[] = {0, 1, 7, 254};
    T_EQ_INT(setup(5, 20000, 0.10, 0.05, 0.10, NULL), 0);
    uint32_t x = 12345;
    int requests = 0;
    for (int i = 0; i < 600; i++) {
        x = x * 1103515245u + 12345u;
        uint8_t lane = lanes[(x >> 16) % 4];
        size_t len = MSG_HEAD + (x >> 8) % 6000;
        int want = ((x >> 4) % 8 == 0) && NA.sent[lane] < 64;
        requests += want;
        T_EQ_INT(send_msg(&NA, lane, KIND_BULK, len, want), 0);
        if (i % 50 == 49) run(20000);
    }
    for (int k = 0;
         k < 600 &&
         (NB.lane_msgs[0] + NB.lane_msgs[1] + NB.lane_msgs[7] + NB.lane_msgs[254] < 600 ||
          NA.replies < requests);
         k++)
        run(100000);
    printf(
        "     600 messages on lanes 0, 1, 7, 254: %llu %llu %llu %llu delivered, %d/%d replies\n",
        (unsigned long long)NB.lane_msgs[0], (unsigned long long)NB.lane_msgs[1],
        (unsigned long long)NB.lane_msgs[7], (unsigned long long)NB.lane_msgs[254], NA.replies,
        requests);
    for (size_t k = 0; k < sizeof lanes; k++) T_EQ_INT(NB.next[lanes[k]], NA.sent[lanes[k]]);
    T_EQ_INT(NB.bad, 0);
    T_EQ_INT(NB.out_of_order, 0);
    T_EQ_INT(NA.replies, requests);
    T_EQ_INT(NA.replies_bad, 0);
    T_CHECK(p2p_lookup(NA.h, NA.peer) != NULL);
    teardown();
}

/* The bytes of each lane the receiver has in order. */
static uint64_t lane_bytes(uint8_t lane)
{
    p2p_peer *v = p2p_lookup(NB.h, NB.peer);
    if (!v) return 0;
    if (!lane) return v->l0.r_base;
    return v->lanes && v->lanes->slot[lane] ? v->lanes->slot[lane]->r_base : 0;
}

/* Two backlogged lanes of weight 1 and 3 share the window about 25% / 75%; a lane of a higher
 * priority takes it all while it has bytes to send. */
static void test_priority_and_weight(void)
{
    /* a 20 Mbit/s bottleneck: the two 16 MiB lanes stay backlogged for the whole run */
    T_EQ_INT(setup2(9, 20000, 0.01, 0, 0, bulk_config(), NULL), 0);
    bottleneck(20000000u, 40000);
    p2p_host_set_lane(NA.h, 1, 0, 1);
    p2p_host_set_lane(NA.h, 2, 0, 3);
    p2p_host_set_lane(NA.h, 3, 5, 1);
    T_EQ_INT(send_msg(&NA, 1, KIND_BULK, BULK_LEN, 0), 0);
    T_EQ_INT(send_msg(&NA, 2, KIND_BULK, BULK_LEN, 0), 0);
    run(1000000); /* past the start */
    uint64_t a0 = lane_bytes(1), b0 = lane_bytes(2);
    run(3000000);
    uint64_t a = lane_bytes(1) - a0, b = lane_bytes(2) - b0;
    double share = (double)a / (double)(a + b);
    printf("     weights 1 and 3: %.2f / %.2f MiB in 3 s, shares %.1f%% / %.1f%%\n", a / 1048576.0,
           b / 1048576.0, 100 * share, 100 * (1 - share));
    T_CHECK(a + b > 512 * 1024);
    T_CHECK(share >= 0.15 && share <= 0.35);
    /* lane 3 at priority 5 */
    T_EQ_INT(send_msg(&NA, 3, KIND_BULK, BULK_LEN, 0), 0);
    run(200000);
    a0 = lane_bytes(1), b0 = lane_bytes(2);
    uint64_t c0 = lane_bytes(3);
    run(1000000);
    uint64_t lo = lane_bytes(1) - a0 + lane_bytes(2) - b0, hi = lane_bytes(3) - c0;
    printf("     priority 5 against 0: %.2f MiB against %.2f MiB in 1 s\n", hi / 1048576.0,
           lo / 1048576.0);
    T_CHECK(hi > 0 && lo * 20 <= hi);
    T_EQ_INT(NB.bad, 0);
    teardown();
}

/* Both sides move a bulk on lane 0 (the default lane) with 1% loss; A's requests on lane 2
 * get their replies, which ride B's control lane past B's backlog, within a few trips. */
static void test_receipts_during_bulk(void)
{
    T_EQ_INT(setup2(17, RTT_US / 2, 0.01, 0, 0, bulk_config(), bulk_config()), 0);
    T_EQ_INT(send_msg(&NA, 0, KIND_BULK, BULK_LEN, 0), 0);
    T_EQ_INT(send_msg(&NB, 0, KIND_BULK, BULK_LEN, 0), 0);
    p2p_host_set_lane(NA.h, 2, 1, 1);
    run(500000);
    for (int i = 0; i < 40; i++) {
        T_EQ_INT(send_msg(&NA, 2, KIND_SMALL, SMALL_LEN, 1), 0);
        run(200000);
    }
    run(4 * RTT_US);
    int n = NA.nreply_lat;
    uint64_t p50 = quantile(NA.reply_latency, n, 0.5), p90 = quantile(NA.reply_latency, n, 0.9);
    printf("     bulk both ways on lane 0, 1%% loss: %d/40 replies, round trip p50 %.1f ms, p90 "
           "%.1f ms, max %.1f ms; B's bulk %.2f MiB through\n",
           n, p50 / 1e3, p90 / 1e3, n ? NA.reply_latency[n - 1] / 1e3 : 0.0,
           lane_bytes(0) / 1048576.0);
    T_EQ_INT(n, 40);
    T_EQ_INT(NA.replies_bad, 0);
    T_CHECK(p90 <= 3 * RTT_US);
    teardown();
}

/* A peer sends one message on every lane to a node whose budget for it is 96 KiB: what the
 * node holds for it never passes that, some lanes are refused (counted), and the lanes it
 * holds deliver. */
static void test_many_lanes_budget(void)
{
    p2p_config cb;
    p2p_config_init(&cb);
    cb.peer_memory = 96 * 1024;
    T_EQ_INT(setup(23, 10000, 0, 0, 0, &cb), 0);
    p2p_stats s0;
    p2p_host_stats(NB.h, &s0);
    uint64_t most = 0;
    for (int lane = 0; lane <= P2P_LANE_MAX; lane++) {
        T_EQ_INT(send_msg(&NA, (uint8_t)lane, KIND_BULK, 100, 0), 0);
        if (lane % 16 == 15) {
            run(20000);
            p2p_peer *v = p2p_lookup(NB.h, NB.peer);
            if (v && v->mem > most) most = v->mem;
        }
    }
    for (int i = 0; i < 20; i++) {
        run(100000);
        p2p_peer *v = p2p_lookup(NB.h, NB.peer);
        if (v && v->mem > most) most = v->mem;
    }
    p2p_peer *v = p2p_lookup(NB.h, NB.peer);
    T_CHECK(v != NULL);
    if (!v) {
        teardown();
        return;
    }
    p2p_stats s;
    p2p_host_stats(NB.h, &s);
    int held = v->lanes ? v->lanes->n : 1;
    uint64_t delivered = 0;
    for (int lane = 0; lane <= P2P_LANE_MAX; lane++) delivered += NB.lane_msgs[lane];
    printf("     255 lanes against a 96 KiB budget: %d lanes held (%zu bytes each), %llu "
           "delivered, most held %llu bytes, %llu refused\n",
           held, sizeof(p2p_lane), (unsigned long long)delivered, (unsigned long long)most,
           (unsigned long long)(s.dropped_budget - s0.dropped_budget));
    T_CHECK(most <= cb.peer_memory);
    T_CHECK(held < P2P_LANE_MAX + 1);
    T_CHECK(s.dropped_budget > s0.dropped_budget);
    T_CHECK((int)delivered >= held - 2); /* every lane held got its message (less control) */
    T_EQ_INT(NB.bad, 0);
    teardown();
}

/* Sequenced datagrams on lane 5 through reordering and duplication: only newer ones are
 * delivered, the rest are counted as stale. */
static void test_sequenced_datagrams(void)
{
    T_EQ_INT(setup(31, 20000, 0.05, 0.10, 0.30, NULL), 0);
    uint8_t d[32] = {1};
    for (int i = 0; i < 400; i++) {
        T_EQ_INT(p2p_peer_send_sequenced(NA.h, NA.peer, 5, 9, d, sizeof d, p2p_sim_now(S)), 0);
        run(2000);
    }
    run(200000);
    p2p_stats s;
    p2p_host_stats(NB.h, &s);
    printf("     400 sequenced datagrams: %llu delivered, %llu stale dropped, newest %llu\n",
           (unsigned long long)NB.dg_count, (unsigned long long)s.dropped_stale,
           (unsigned long long)NB.dg_last);
    T_EQ_INT(NB.dg_bad, 0);
    T_CHECK(s.dropped_stale > 0);
    T_CHECK(NB.dg_count > 200 && NB.dg_count < 400);
    T_EQ_INT(p2p_peer_send_sequenced(NA.h, NA.peer, P2P_LANE_MAX + 1, 9, d, 1, p2p_sim_now(S)),
             P2P_ERR_INVALID);
    T_EQ_INT(
        p2p_peer_send_sequenced(NA.h, NA.peer, 5, 9, d, P2P_MAX_DATAGRAM_SEQ + 1, p2p_sim_now(S)),
        P2P_ERR_TOO_BIG);
    teardown();
}

/* The API refuses what is out of range. */
static void test_api_misuse(void)
{
    T_EQ_INT(setup(3, 10000, 0, 0, 0, NULL), 0);
    uint8_t b[8] = {0};
    T_EQ_INT(p2p_peer_send_lane(NA.h, NA.peer, P2P_LANE_MAX + 1, 1, b, 8, 0, NULL, 0),
             P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_broadcast_lane(NA.h, P2P_LANE_MAX + 1, 1, b, 8, NULL, 0), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_set_lane(NA.h, P2P_LANE_MAX + 1, 0, 1), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_set_lane(NA.h, 1, -1, 1), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_set_lane(NA.h, 1, P2P_LANE_PRIORITY_MAX + 1, 1), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_set_lane(NA.h, 1, 0, 0), P2P_ERR_INVALID);
    T_EQ_INT(p2p_host_set_lane(NA.h, 1, 0, P2P_LANE_WEIGHT_MAX + 1), P2P_ERR_INVALID);
    T_EQ_INT(p2p_peer_reply_lane(NA.h, NA.peer, 3, 0, P2P_REPLY_NIL, NULL, 0, 0), P2P_ERR_INVALID);
    teardown();
}

/* ---- malformed lane frames (the attack harness: packets sealed with the session's keys) ---- */

static int frame_ok(const uint8_t *pt, size_t n)
{
    p2p_rd r;
    p2p_frame f;
    int rc;
    p2p_rd_init(&r, pt, n);
    while ((rc = p2p_frame_next(&r, &f)) == 1) {
    }
    return rc;
}

static void test_malformed_lane_frames(void)
{
    /* the decoder: lane 0 never in the lane frames, no datagram on the control lane */
    uint8_t s0[] = {P2P_FRAME_STREAM_LANE, 0, 0, 1, 'x'};
    uint8_t m0[] = {P2P_FRAME_MAX_STREAM_LANE, 0, 5};
    uint8_t dctl[] = {P2P_FRAME_DATAGRAM_SEQ, 255, 0, 1, 0, 0};
    uint8_t scut[] = {P2P_FRAME_STREAM_LANE, 3, 0, 5, 'x'};
    uint8_t good[] = {P2P_FRAME_STREAM_LANE,
                      3,
                      0,
                      1,
                      'x',
                      P2P_FRAME_MAX_STREAM_LANE,
                      3,
                      9,
                      P2P_FRAME_DATAGRAM_SEQ,
                      4,
                      7,
                      1,
                      0,
                      1,
                      'y'};
    T_EQ_INT(frame_ok(s0, sizeof s0), P2P_ERR_INVALID);
    T_EQ_INT(frame_ok(m0, sizeof m0), P2P_ERR_INVALID);
    T_EQ_INT(frame_ok(dctl, sizeof dctl), P2P_ERR_INVALID);
    T_EQ_INT(frame_ok(scut, sizeof scut), P2P_ERR_INVALID);
    T_EQ_INT(frame_ok(good, sizeof good), 0);
    uint8_t rl0[] = {P2P_REC_REPLY_LANE, 0, 0, 0, 0};
    uint8_t rl255[] = {P2P_REC_REPLY_LANE, 255, 0, 0, 0};
    uint8_t rl3[] = {P2P_REC_REPLY_LANE, 3, 5, 1, 2};
    p2p_record rec;
    T_EQ_INT(p2p_record_parse(rl0, sizeof rl0, &rec), P2P_ERR_INVALID);
    T_EQ_INT(p2p_record_parse(rl255, sizeof rl255, &rec), P2P_ERR_INVALID);
    T_EQ_INT(p2p_record_parse(rl3, sizeof rl3, &rec), 5);
    T_EQ_INT(rec.type, 3);
    T_EQ_INT(rec.ref, 5);

    /* a session: a record a lane may not carry ends it (a message on the control lane, a
     * member list on an application lane, a reply to nothing) */
    static const struct {
        uint8_t lane, kind;
    } bad[] = {{P2P_LANE_CONTROL, P2P_REC_MESSAGE},
               {P2P_LANE_CONTROL, P2P_REC_BROADCAST},
               {3, P2P_REC_MEMBERS},
               {3, P2P_REC_REPLY},
               {P2P_LANE_CONTROL, P2P_REC_REPLY}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        anet net;
        an_init(&net, 5000);
        int a = an_add(&net, NULL), b = an_add(&net, NULL);
        T_CHECK(an_connect(&net, a, b, 2000000) != 0);
        uint8_t pt[64];
        p2p_wr w;
        p2p_wr_init(&w, pt, sizeof pt);
        uint8_t hdr[P2P_RECORD_HEADER_MAX];
        p2p_record r = {bad[k].kind, 0, 0, 0, 1};
        size_t hl = p2p_record_encode(hdr, &r);
        p2p_frame_put_lane_header(&w, bad[k].lane, 0, hl + 1);
        p2p_wr_bytes(&w, hdr, hl);
        p2p_wr_u8(&w, 0);
        T_CHECK(an_frames(&net, a, b, pt, (size_t)(w.p - pt), NULL) > 0);
        an_run(&net, 100000);
        T_CHECK(an_handle(&net, b, a) == 0); /* b ended the session */
        an_free(&net);
    }
    /* a frame that fails to decode drops the packet, not the session */
    {
        anet net;
        an_init(&net, 5000);
        int a = an_add(&net, NULL), b = an_add(&net, NULL);
        T_CHECK(an_connect(&net, a, b, 2000000) != 0);
        p2p_stats d0 = an_stats(&net, b);
        T_CHECK(an_frames(&net, a, b, s0, sizeof s0, NULL) > 0);
        T_CHECK(an_frames(&net, a, b, dctl, sizeof dctl, NULL) > 0);
        an_run(&net, 100000);
        T_CHECK(an_stats(&net, b).dropped >= d0.dropped + 2);
        T_CHECK(an_handle(&net, b, a) != 0);
        an_free(&net);
    }
}

int main(void)
{
    T_RUN(test_bulk_lane_no_head_of_line);
    T_RUN(test_exactly_once_per_lane);
    T_RUN(test_priority_and_weight);
    T_RUN(test_receipts_during_bulk);
    T_RUN(test_many_lanes_budget);
    T_RUN(test_sequenced_datagrams);
    T_RUN(test_api_misuse);
    T_RUN(test_malformed_lane_frames);
    return t_summary("test_lanes");
}
