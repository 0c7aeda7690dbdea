/* test_stats.c - per-peer statistics (p2p_peer_stats_get, p2p_peer_lane_stats_get) on the
 * simulator: the traffic counters of the two ends of a session agree with each other, with the
 * node's totals and with what the simulated link dropped; loss, retransmits and the loss ratio
 * follow a lossy link; the lanes' queues count bytes and records until they are acknowledged;
 * and a dead handle has no figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "tnet.h"
#include "driver/sim.h"
#include "p2p_wire.h"

#define MSG_TYPE 9

typedef struct node {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer;
    int joined, left;
    uint64_t msgs[P2P_LANE_MAX + 1]; /* messages received, by lane */
    uint64_t replies;
} node;

static p2p_sim *S;
static node NA, NB;

static void on_event(node *x, const p2p_event *ev)
{
    switch (ev->type) {
    case P2P_EV_JOIN: x->joined = 1; break;
    case P2P_EV_LEAVE: x->left = 1; break;
    case P2P_EV_MESSAGE:
        x->msgs[ev->lane]++;
        if (ev->want_reply)
            p2p_peer_reply_lane(x->h, ev->peer, ev->lane, ev->seq, P2P_REPLY_NIL, NULL, 0,
                                p2p_sim_now(S));
        break;
    case P2P_EV_REPLY: x->replies++; break;
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

/* Two hosts joined over a sim with this one-way latency and no faults. */
static int setup(uint64_t seed, uint64_t latency_us)
{
    p2p_sim_config sc;
    p2p_config ca, cb;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = latency_us;
    memset(&NA, 0, sizeof NA);
    memset(&NB, 0, sizeof NB);
    if (p2p_sim_new(&S, &sc)) return -1;
    p2p_config_init(&ca);
    p2p_config_init(&cb);
    ca.send_queue_limit = 8u << 20;
    if (tnet_identity(&NA.id, 0x31, 1) || tnet_identity(&NB.id, 0x42, 2)) return -1;
    if (tnet_sim_host(S, &ca, &NA.id, 0, P2P_SIM_NAT_NONE, &NA.h, &NA.addr)) return -1;
    if (tnet_sim_host(S, &cb, &NB.id, 0, P2P_SIM_NAT_NONE, &NB.h, &NB.addr)) return -1;
    if (p2p_host_connect(NA.h, &NB.addr, NB.id.ed_pk, p2p_sim_now(S), &NA.peer)) return -1;
    for (int i = 0; i < 100 && !(NA.joined && NB.joined); i++) run(50000);
    NB.peer = p2p_host_find(NB.h, NA.id.ed_pk);
    return NA.joined && NB.joined && NB.peer ? 0 : -1;
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

static int send_n(node *x, uint8_t lane, int n, size_t len, int want_reply)
{
    static uint8_t buf[8192];
    for (int i = 0; i < n; i++) {
        memset(buf, i, len);
        if (p2p_peer_send_lane(x->h, x->peer, lane, MSG_TYPE, buf, len, want_reply, NULL,
                               p2p_sim_now(S)))
            return -1;
    }
    return 0;
}

static const p2p_lane_stats *find_lane(const p2p_lane_stats *v, size_t n, int lane)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].lane == lane) return &v[i];
    return NULL;
}

/* A lossless session: each end's sent counters are the other's received counters (nothing is
 * in flight after a quiet second), and the node counts the session's packets plus the
 * handshake's. */
static void test_both_ends_agree(void)
{
    T_EQ_INT(setup(1, 20000), 0);
    T_EQ_INT(send_n(&NA, 0, 200, 1000, 0), 0);
    T_EQ_INT(send_n(&NB, 0, 50, 300, 0), 0);
    run(3000000);
    T_EQ_INT(NB.msgs[0], 200);
    T_EQ_INT(NA.msgs[0], 50);
    p2p_peer_stats a, b;
    T_EQ_INT(p2p_peer_stats_get(NA.h, NA.peer, &a), 0);
    T_EQ_INT(p2p_peer_stats_get(NB.h, NB.peer, &b), 0);
    T_EQ_INT(a.state, P2P_PEER_CONNECTED);
    /* the sim's path carries P2P_SIM_PATH_MTU: the MTU probes above it never arrive (the
     * sim counts them in too_big), and nothing else is lost */
    p2p_sim_stats ss;
    p2p_sim_stats_get(S, &ss);
    T_CHECK(ss.too_big > 0);
    T_EQ_INT((a.packets_sent - b.packets_received) + (b.packets_sent - a.packets_received),
             ss.too_big);
    T_CHECK(a.bytes_sent - b.bytes_received <=
            (a.packets_sent - b.packets_received) * (uint64_t)P2P_MAX_PACKET_PROBED);
    T_CHECK(a.bytes_sent - b.bytes_received >
            (a.packets_sent - b.packets_received) * (uint64_t)P2P_SIM_PATH_MTU);
    /* 200 KB went A to B in packets of at most the path's MTU, with a header and tag each */
    T_CHECK(a.bytes_sent > 200u * 1000u && a.bytes_sent < 200u * 1000u * 12 / 10);
    T_CHECK(a.packets_sent >= 200u * 1000u / a.mtu);
    T_CHECK(a.eliciting_sent > 0 && a.eliciting_sent <= a.packets_sent);
    T_EQ_INT(a.lost, 0);
    T_EQ_INT(a.retransmits, 0);
    T_CHECK(a.loss == 0.0);
    /* the round trip is twice the one-way latency (the sim adds no jitter here) */
    T_CHECK(a.srtt_us >= 40000 && a.srtt_us < 45000);
    T_CHECK(a.min_rtt_us >= 40000 && a.min_rtt_us <= a.srtt_us);
    T_CHECK(a.latest_rtt_us >= 40000);
    T_CHECK(a.cwnd > 0 && a.pacing_rate > 0);
    T_EQ_INT(a.congestion, P2P_CC_BBR);
    T_CHECK(a.phase != NULL);
    T_CHECK(a.direct && !a.has_relay);
    T_CHECK(p2p_addr_equal(&a.address, &NB.addr));
    T_CHECK(a.mtu >= P2P_MAX_PACKET);
    T_EQ_INT(a.bytes_queued, 0);
    T_EQ_INT(a.in_flight, 0);
    /* the node's totals: this session's packets plus the handshake's (INIT and FIN from the
     * dialler, RESP from the other side), nothing else on a two-node network without a mesh
     * to speak of */
    p2p_stats na, nb;
    p2p_host_stats(NA.h, &na);
    p2p_host_stats(NB.h, &nb);
    T_CHECK(na.packets_sent >= a.packets_sent + 2 && na.packets_sent <= a.packets_sent + 4);
    T_CHECK(nb.packets_sent >= b.packets_sent + 1 && nb.packets_sent <= b.packets_sent + 3);
    T_CHECK(na.bytes_sent > a.bytes_sent && na.bytes_sent < a.bytes_sent + 4 * P2P_MAX_PACKET);
    /* the node counts what it hands the network (the sim refuses the probes too big) */
    T_EQ_INT(na.packets_received + nb.packets_received + ss.too_big,
             na.packets_sent + nb.packets_sent);
    teardown();
}

/* 5% random loss on A's up link, set after the handshake: every datagram it drops is one of the
 * session's, so A's sent minus B's received is exactly what the link dropped; A declares
 * about that many lost and resends stream data; the loss ratio is near 5%. */
static void test_lossy_link(void)
{
    T_EQ_INT(setup(7, 10000), 0);
    p2p_sim_link l;
    memset(&l, 0, sizeof l);
    l.loss = 0.05;
    T_EQ_INT(p2p_sim_set_link(S, NA.h, P2P_SIM_UP, &l), 0);
    T_EQ_INT(send_n(&NA, 0, 2000, 1000, 0), 0);
    run(20000000);
    T_EQ_INT(NB.msgs[0], 2000);
    p2p_peer_stats a, b;
    p2p_sim_link_stats up;
    T_EQ_INT(p2p_peer_stats_get(NA.h, NA.peer, &a), 0);
    T_EQ_INT(p2p_peer_stats_get(NB.h, NB.peer, &b), 0);
    T_EQ_INT(p2p_sim_link_stats_get(S, NA.h, P2P_SIM_UP, &up), 0);
    T_CHECK(up.loss_drops > 50);
    /* A's packets that B did not get: what the link dropped (it was set after the handshake,
     * so only the session's packets went through it) and A's MTU probes too big for the sim's
     * path; the sim counts those of both sides, and the way back loses nothing else. At
     * most a keepalive or two may be on the way at the end. */
    p2p_sim_stats ss;
    p2p_sim_stats_get(S, &ss);
    uint64_t back = b.packets_sent - a.packets_received,
             missing = a.packets_sent - b.packets_received;
    T_CHECK(back <= ss.too_big);
    T_CHECK(missing >= up.loss_drops + ss.too_big - back);
    T_CHECK(missing <= up.loss_drops + ss.too_big - back + 2);
    /* a DATA packet is at least its 16-byte header, a frame byte and the 16-byte tag */
    T_CHECK(a.bytes_sent - b.bytes_received >= up.loss_drops * 33);
    T_CHECK(a.lost > 0 && a.retransmits > 0);
    /* lost counts ack-eliciting packets; the link also drops bare ACKs, which nobody declares
     * lost */
    T_CHECK(a.lost - a.spurious <= up.loss_drops);
    T_CHECK(a.loss > 0.025 && a.loss < 0.10);
    p2p_stats na;
    p2p_host_stats(NA.h, &na);
    T_EQ_INT(na.retransmits, a.retransmits);
    printf("     lossy: sent %llu pkts, link dropped %llu, lost %llu (spurious %llu), "
           "retransmits %llu, loss %.4f, srtt %llu us\n",
           (unsigned long long)a.packets_sent, (unsigned long long)up.loss_drops,
           (unsigned long long)a.lost, (unsigned long long)a.spurious,
           (unsigned long long)a.retransmits, a.loss, (unsigned long long)a.srtt_us);
    teardown();
}

/* Queued messages and bytes per lane: everything queued is unsent before the sim runs,
 * nothing is queued once acknowledged; records count each way; replies ride the control
 * lane. */
static void test_lane_queues(void)
{
    T_EQ_INT(setup(3, 15000), 0);
    p2p_lane_stats v[P2P_LANE_MAX + 2];
    size_t n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
    T_CHECK(n >= 1);
    T_EQ_INT(v[0].lane, 0);
    T_EQ_INT(p2p_peer_lane_stats_get(NA.h, NA.peer, NULL, 0), n);
    T_EQ_INT(send_n(&NA, 0, 10, 2000, 0), 0);
    T_EQ_INT(send_n(&NA, 3, 30, 100, 1), 0);
    n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
    const p2p_lane_stats *l0 = find_lane(v, n, 0), *l3 = find_lane(v, n, 3);
    T_CHECK(l0 && l3);
    if (l0 && l3) {
        T_EQ_INT(l0->queued_records, 10);
        T_EQ_INT(l3->queued_records, 30);
        /* each record is its body plus a header of a few bytes */
        T_CHECK(l0->queued_bytes > 10 * 2000 && l0->queued_bytes < 10 * 2030);
        T_CHECK(l3->queued_bytes > 30 * 100 && l3->queued_bytes < 30 * 130);
        T_EQ_INT(l0->unsent_bytes, l0->queued_bytes);
        T_EQ_INT(l3->records_sent, 30);
    }
    p2p_peer_stats a;
    T_EQ_INT(p2p_peer_stats_get(NA.h, NA.peer, &a), 0);
    T_EQ_INT(a.lanes, n);
    T_CHECK(l0 && l3 && a.bytes_queued >= l0->queued_bytes + l3->queued_bytes);
    /* one round trip later some is sent and not yet acknowledged */
    run(5000);
    n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
    l0 = find_lane(v, n, 0);
    T_CHECK(l0 && l0->unsent_bytes < l0->queued_bytes);
    run(2000000);
    T_EQ_INT(NB.msgs[0], 10);
    T_EQ_INT(NB.msgs[3], 30);
    T_EQ_INT(NA.replies, 30);
    n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
    for (size_t i = 0; i < n; i++) {
        T_EQ_INT(v[i].queued_records, 0);
        T_EQ_INT(v[i].queued_bytes, 0);
        T_EQ_INT(v[i].unsent_bytes, 0);
    }
    l3 = find_lane(v, n, 3);
    T_CHECK(l3 && l3->records_sent == 30);
    /* B received them, and answered each on its control lane (where the mesh's periodic
     * records may be on their way) */
    p2p_lane_stats w[P2P_LANE_MAX + 2];
    size_t m = p2p_peer_lane_stats_get(NB.h, NB.peer, w, sizeof w / sizeof w[0]);
    const p2p_lane_stats *b3 = find_lane(w, m, 3), *bc = find_lane(w, m, P2P_LANE_STATS_CONTROL);
    T_CHECK(b3 && b3->records_received == 30);
    T_CHECK(bc && bc->records_sent >= 30 && bc->records_received >= 1);
    T_CHECK(bc && (bc->queued_records == 0) == (bc->queued_bytes == 0));
    teardown();
}

/* Records acknowledged a piece at a time (messages larger than a packet, under loss) are
 * counted when their last byte is acknowledged, and only then: the count is checked exactly
 * against the record boundaries the test computes itself, while the ring grows and wraps. */
static void test_queued_records_under_loss(void)
{
    enum { ROUNDS = 20, PER_ROUND = 7 };
    uint64_t ends[ROUNDS * PER_ROUND]; /* where each record ends in the lane's stream */
    uint64_t end = 0;
    int nrec = 0, partial = 0;
    T_EQ_INT(setup(11, 5000), 0);
    p2p_sim_link l;
    memset(&l, 0, sizeof l);
    l.loss = 0.1;
    T_EQ_INT(p2p_sim_set_link(S, NA.h, P2P_SIM_UP, &l), 0);
    for (int round = 0; round < ROUNDS; round++) {
        size_t len = 5000 + 97 * (size_t)round;
        T_EQ_INT(send_n(&NA, 2, PER_ROUND, len, 0), 0);
        for (int k = 0; k < PER_ROUND; k++) {
            uint8_t hdr[P2P_RECORD_HEADER_MAX];
            p2p_record rec = {P2P_REC_MESSAGE, MSG_TYPE, 0, 0, len};
            end += p2p_record_encode(hdr, &rec) + len;
            ends[nrec++] = end;
        }
        run(3000 + 1000 * (uint64_t)(round % 3));
        p2p_lane_stats v[P2P_LANE_MAX + 2];
        size_t n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
        const p2p_lane_stats *l2 = find_lane(v, n, 2);
        T_CHECK(l2 != NULL);
        if (!l2) break;
        uint64_t acked = end - l2->queued_bytes;
        int whole = 0;
        while (whole < nrec && ends[whole] <= acked) whole++;
        if (whole < nrec && acked > (whole ? ends[whole - 1] : 0)) partial++;
        T_EQ_INT(l2->records_sent, nrec);
        T_EQ_INT(l2->queued_records, nrec - whole);
    }
    T_CHECK(partial > 0); /* the front record was partly acknowledged at some point */
    run(10000000);
    T_EQ_INT(NB.msgs[2], ROUNDS * PER_ROUND);
    p2p_lane_stats v[P2P_LANE_MAX + 2];
    size_t n = p2p_peer_lane_stats_get(NA.h, NA.peer, v, sizeof v / sizeof v[0]);
    const p2p_lane_stats *l2 = find_lane(v, n, 2);
    T_CHECK(l2 && l2->queued_records == 0 && l2->queued_bytes == 0 &&
            l2->records_sent == ROUNDS * PER_ROUND);
    teardown();
}

/* A dead handle has no figures; a closing session reports itself disconnected. */
static void test_dead_handle(void)
{
    T_EQ_INT(setup(5, 10000), 0);
    p2p_peer_stats s;
    p2p_lane_stats v[4];
    T_EQ_INT(p2p_peer_stats_get(NA.h, 0, &s), P2P_ERR_PEER);
    T_EQ_INT(p2p_peer_stats_get(NA.h, 12345, &s), P2P_ERR_PEER);
    T_EQ_INT(s.packets_sent, 0);
    T_EQ_INT(p2p_peer_lane_stats_get(NA.h, 12345, v, 4), 0);
    p2p_peer_handle p = NA.peer;
    T_EQ_INT(p2p_peer_disconnect(NA.h, p, p2p_sim_now(S)), 0);
    if (p2p_peer_stats_get(NA.h, p, &s) == 0) T_EQ_INT(s.state, P2P_PEER_DISCONNECTED);
    run(2000000);
    T_CHECK(NA.left && NB.left);
    T_EQ_INT(p2p_peer_stats_get(NA.h, p, &s), P2P_ERR_PEER);
    T_EQ_INT(p2p_peer_lane_stats_get(NA.h, p, v, 4), 0);
    teardown();
}

/* NewReno names its phases too. */
static void test_newreno_phase(void)
{
    p2p_sim_config sc;
    p2p_config ca, cb;
    memset(&sc, 0, sizeof sc);
    sc.seed = 2;
    sc.latency_us = 10000;
    memset(&NA, 0, sizeof NA);
    memset(&NB, 0, sizeof NB);
    T_EQ_INT(p2p_sim_new(&S, &sc), 0);
    p2p_config_init(&ca);
    p2p_config_init(&cb);
    ca.congestion = P2P_CC_NEWRENO;
    T_EQ_INT(tnet_identity(&NA.id, 0x31, 1), 0);
    T_EQ_INT(tnet_identity(&NB.id, 0x42, 2), 0);
    T_EQ_INT(tnet_sim_host(S, &ca, &NA.id, 0, P2P_SIM_NAT_NONE, &NA.h, &NA.addr), 0);
    T_EQ_INT(tnet_sim_host(S, &cb, &NB.id, 0, P2P_SIM_NAT_NONE, &NB.h, &NB.addr), 0);
    T_EQ_INT(p2p_host_connect(NA.h, &NB.addr, NB.id.ed_pk, p2p_sim_now(S), &NA.peer), 0);
    run(1000000);
    p2p_peer_stats s;
    T_EQ_INT(p2p_peer_stats_get(NA.h, NA.peer, &s), 0);
    T_EQ_INT(s.congestion, P2P_CC_NEWRENO);
    T_CHECK(s.phase && strcmp(s.phase, "slow_start") == 0);
    T_EQ_INT(s.bandwidth, 0);
    teardown();
}

int main(void)
{
    if (p2p_init()) return 1;
    T_RUN(test_both_ends_agree);
    T_RUN(test_lossy_link);
    T_RUN(test_lane_queues);
    T_RUN(test_queued_records_under_loss);
    T_RUN(test_dead_handle);
    T_RUN(test_newreno_phase);
    return t_summary("test_stats");
}
