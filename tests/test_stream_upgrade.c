/* test_stream_upgrade.c - a session that came up over a stream (TCP fallback, design 12
 * section 4.3) moves to UDP once UDP works again (docs/PROTOCOL.md section 8.5): it keeps the
 * UDP address it dialled (udp_home) and challenges it on the upgrade schedule, 1, 2, 4, 8, 16 s,
 * then every 30 s; the answer moves it, and nothing is lost or repeated across the move.
 *
 * First two hosts driven by hand in 10 ms steps, as tests/test_reach.c does (A's UDP blocked
 * until `open`, the stream always carries); then the same on the simulator's streams, with a
 * third node relayed through the stream. */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "simnet.h"
#include "tnet.h"

#define SEC UINT64_C(1000000)
#define MS UINT64_C(1000)

static p2p_host *mk(uint8_t seed, p2p_identity *me)
{
    tnet_identity(me, 0x53, seed);
    p2p_config c;
    p2p_config_init(&c);
    c.identity = me;
    c.seed = seed;
    c.portmap_off = 1;
    p2p_host *h;
    if (p2p_host_new(&h, &c, 0)) abort();
    return h;
}

/* UDP blocked until `open_at`; 100 messages, one every 100 ms once joined. Returns the time
 * from open_at until A's session sends to B's UDP address (UINT64_MAX: never). */
static uint64_t run_case(uint64_t open_at, int *msgs_out, int *bad_out, int *replies_out,
                         uint64_t *udp_probes)
{
    p2p_identity ia, ib;
    simnet_pair p = {.bsid = 0x80000042u};
    p2p_host *a = p.a = mk(1, &ia), *b = p.b = mk(2, &ib);
    p2p_addr audp;
    p2p_addr_parse(&p.baddr, "198.51.100.2:4000");
    p2p_addr_parse(&audp, "203.0.113.5:4000");
    p2p_addr_parse(&p.aip, "203.0.113.5:0");
    p2p_host_add_address(b, &p.baddr, 0);
    p2p_peer_handle pa;
    T_EQ_INT(p2p_host_connect(a, &p.baddr, p2p_host_id(b), 0, &pa), 0);
    int sent = 0;
    uint64_t moved = UINT64_MAX, now = 0, joined_at = 0;
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    *udp_probes = 0;
    for (int step = 0; step < 6000; step++) {
        now = (uint64_t)step * 10 * MS;
        int udp = now >= open_at;
        p2p_host_on_timeout(a, now);
        p2p_host_on_timeout(b, now);
        simnet_pair_io(&p, now);
        for (int round = 0; round < 4; round++) {
            size_t n;
            p2p_addr to;
            while ((n = p2p_host_next_datagram(a, &to, buf, sizeof buf))) {
                if (to.family == P2P_AF_STREAM) {
                    p2p_addr from = simnet_stream_addr(p.bsid);
                    p2p_host_recv(b, &from, buf, n, now);
                } else if (p2p_addr_equal(&to, &p.baddr)) {
                    if (p.joins >= 2 && moved == UINT64_MAX) {
                        (*udp_probes)++;
                        if (getenv("DBG")) printf("udp probe at %.3f\n", (double)now / SEC);
                    }
                    if (udp) p2p_host_recv(b, &audp, buf, n, now);
                }
            }
            while ((n = p2p_host_next_datagram(b, &to, buf, sizeof buf))) {
                if (to.family == P2P_AF_STREAM) {
                    p2p_addr from = simnet_stream_addr(p.sid);
                    p2p_host_recv(a, &from, buf, n, now);
                } else if (p2p_addr_equal(&to, &audp) && udp) {
                    p2p_host_recv(a, &p.baddr, buf, n, now);
                }
            }
        }
        simnet_pair_events(&p, now);
        if (p.joins >= 2 && !joined_at) joined_at = now;
        if (p.joins >= 2 && sent < 100 && now >= joined_at + (uint64_t)sent * 100 * MS) {
            simnet_pair_send(&p, pa, (uint64_t)sent, 200, now);
            sent++;
        }
        p2p_peer_stats ps;
        if (moved == UINT64_MAX && p.joins >= 2 && p2p_peer_stats_get(a, pa, &ps) == 0 &&
            ps.path == P2P_PATH_DIRECT && p2p_addr_equal(&ps.address, &p.baddr))
            moved = now;
        if (sent == 100 && p.replies == 100 && moved != UINT64_MAX) break;
    }
    T_EQ_INT(p.joins, 2);
    p2p_peer_stats ps;
    T_EQ_INT(p2p_peer_stats_get(a, pa, &ps), 0);
    printf("     UDP open at %.1f s: path %s at %.2f s, %d messages, %d replies, %llu UDP "
           "probes\n",
           (double)open_at / SEC, ps.path == P2P_PATH_DIRECT ? "direct" : "tcp",
           moved == UINT64_MAX ? -1.0 : (double)moved / SEC, p.msgs, p.replies,
           (unsigned long long)*udp_probes);
    *msgs_out = p.msgs;
    *bad_out = p.order_bad;
    *replies_out = p.replies;
    p2p_host_free(a);
    p2p_host_free(b);
    p2p_identity_wipe(&ia);
    p2p_identity_wipe(&ib);
    return moved == UINT64_MAX || moved < open_at ? UINT64_MAX : moved - open_at;
}

/* UDP comes back 5.5 s in, in the middle of 100 messages: the session is on UDP within 16 s,
 * every message arrived once and in order, every reply came back. */
static void test_upgrade_mid_stream(void)
{
    int msgs, bad, replies;
    uint64_t probes;
    uint64_t took = run_case(5500 * MS, &msgs, &bad, &replies, &probes);
    T_CHECK(took <= 16 * SEC);
    T_EQ_INT(msgs, 100);
    T_EQ_INT(bad, 0);
    T_EQ_INT(replies, 100);
}

/* UDP never comes back: the session stays on the stream and probes on the schedule only
 * (1, 2, 4, 8, 16, 30, 30 s ... in 60 s: 6 or 7 challenges), losing nothing. */
static void test_no_udp_stays(void)
{
    int msgs, bad, replies;
    uint64_t probes;
    uint64_t took = run_case(UINT64_MAX, &msgs, &bad, &replies, &probes);
    T_EQ_INT(took, UINT64_MAX);
    T_EQ_INT(msgs, 100);
    T_EQ_INT(bad, 0);
    T_CHECK(probes >= 5 && probes <= 8);
}

/* ---- on the simulator (P3's streams and UDP blocking) ---------------------------------- */

static p2p_sim *sim;
static p2p_host *sh[3];
static int s_msgs, s_bad, s_replies;
static uint64_t s_next;

static void s_drain(void)
{
    p2p_event ev;
    for (int i = 0; i < 3; i++)
        while (p2p_host_next_event(sh[i], &ev)) {
            if (i == 2 && ev.type == P2P_EV_MESSAGE && ev.msg_type == 1) {
                uint64_t v;
                memcpy(&v, ev.data, 8);
                if (v != s_next) s_bad++;
                s_next = v + 1;
                s_msgs++;
                p2p_peer_reply(sh[2], ev.peer, ev.seq, P2P_REPLY_NIL, NULL, 0, p2p_sim_now(sim));
                p2p_sim_flush(sim, sh[2]);
            }
            if (i == 1 && ev.type == P2P_EV_REPLY) s_replies++;
            if (getenv("DBG") &&
                (ev.type == P2P_EV_ERROR || ev.type == P2P_EV_JOIN || ev.type == P2P_EV_LEAVE))
                printf("host %d event %d at %.2f: %.*s\n", i, ev.type,
                       (double)p2p_sim_now(sim) / SEC, ev.type == P2P_EV_ERROR ? (int)ev.len : 0,
                       (const char *)ev.data);
        }
}

static p2p_peer_stats s_stats(int i, const p2p_identity *of)
{
    p2p_peer_stats ps;
    memset(&ps, 0, sizeof ps);
    p2p_peer_stats_get(sh[i], p2p_host_find(sh[i], of->ed_pk), &ps);
    return ps;
}

/* M public (UDP and TCP), A behind a cone NAT whose UDP is blocked, B behind a cone NAT. A
 * reaches M over the TCP fallback, then B by id through M (relayed over A's stream); 100
 * messages A -> B; UDP is unblocked in the middle: A's session with M moves to UDP within 16 s,
 * M introduces A and B again with A's UDP address; every message arrives once and in order. */
static void test_sim_stream_then_udp(void)
{
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = 4242;
    sc.latency_us = 10 * MS;
    sc.jitter_us = 2 * MS;
    T_EQ_INT(p2p_sim_new(&sim, &sc), 0);
    p2p_identity id[3];
    p2p_addr addr[3];
    int nats[3] = {P2P_SIM_NAT_NONE, P2P_SIM_NAT_CONE, P2P_SIM_NAT_CONE};
    for (int i = 0; i < 3; i++) {
        tnet_identity(&id[i], 0x55, (uint8_t)(i + 1));
        p2p_config c;
        p2p_config_init(&c);
        c.mediator = i == 0;
        c.portmap_off = 1;
        T_EQ_INT(tnet_sim_host(sim, &c, &id[i], 0, nats[i], &sh[i], &addr[i]), 0);
        p2p_host_add_address(sh[i], &addr[i], 0);
    }
    T_EQ_INT(p2p_sim_listen_tcp(sim, sh[0], 0, 1), 0);
    T_EQ_INT(p2p_sim_block_udp(sim, sh[1], 1), 0);
    s_msgs = s_bad = s_replies = 0;
    s_next = 0;
    T_EQ_INT(p2p_host_connect(sh[2], &addr[0], id[0].ed_pk, 0, NULL), 0);
    p2p_sim_flush(sim, sh[2]);
    T_EQ_INT(p2p_host_connect(sh[1], &addr[0], id[0].ed_pk, 0, NULL), 0);
    p2p_sim_flush(sim, sh[1]);
    tnet_run_for(sim, 6 * SEC, s_drain);
    p2p_peer_stats am = s_stats(1, &id[0]);
    T_EQ_INT(am.state, P2P_PEER_CONNECTED);
    T_EQ_INT(am.path, P2P_PATH_TCP);
    T_EQ_INT(p2p_host_connect_via(sh[1], id[2].ed_pk, &addr[0], p2p_sim_now(sim), NULL), 0);
    p2p_sim_flush(sim, sh[1]);
    uint64_t end = p2p_sim_now(sim) + 10 * SEC;
    while (p2p_sim_now(sim) < end && s_stats(1, &id[2]).state != P2P_PEER_CONNECTED)
        tnet_run_for(sim, 50 * MS, s_drain);
    T_EQ_INT(s_stats(1, &id[2]).state, P2P_PEER_CONNECTED);
    T_EQ_INT(s_stats(1, &id[2]).path, P2P_PATH_RELAYED);
    uint64_t opened = 0, moved = 0, direct_at = 0;
    for (int k = 0; k < 100; k++) {
        uint8_t m[200];
        uint64_t v = (uint64_t)k;
        memset(m, 0x44, sizeof m);
        memcpy(m, &v, 8);
        T_EQ_INT(p2p_peer_send(sh[1], p2p_host_find(sh[1], id[2].ed_pk), 1, m, sizeof m, 1, NULL,
                               p2p_sim_now(sim)),
                 0);
        p2p_sim_flush(sim, sh[1]);
        if (k == 30) {
            T_EQ_INT(p2p_sim_block_udp(sim, sh[1], 0), 0);
            opened = p2p_sim_now(sim);
        }
        tnet_run_for(sim, 100 * MS, s_drain);
        if (opened && !moved && s_stats(1, &id[0]).path == P2P_PATH_DIRECT)
            moved = p2p_sim_now(sim);
        if (opened && !direct_at && s_stats(1, &id[2]).direct) direct_at = p2p_sim_now(sim);
    }
    end = p2p_sim_now(sim) + 30 * SEC;
    while (p2p_sim_now(sim) < end && (s_replies < 100 || !moved || !direct_at)) {
        tnet_run_for(sim, 100 * MS, s_drain);
        if (!moved && s_stats(1, &id[0]).path == P2P_PATH_DIRECT) moved = p2p_sim_now(sim);
        if (!direct_at && s_stats(1, &id[2]).direct) direct_at = p2p_sim_now(sim);
    }
    printf("     sim: A-M on UDP %.2f s after UDP opened, A-B direct after %.2f s; %d messages, "
           "%d replies\n",
           moved ? (double)(moved - opened) / SEC : -1.0,
           direct_at ? (double)(direct_at - opened) / SEC : -1.0, s_msgs, s_replies);
    if (getenv("DBG")) {
        p2p_stats ms;
        p2p_host_stats(sh[0], &ms);
        p2p_peer_stats ab = s_stats(1, &id[2]), ba = s_stats(2, &id[1]);
        printf("M introductions %llu; A->B cands %d, B->A cands %d\n",
               (unsigned long long)ms.introductions, ab.ncands, ba.ncands);
        for (int i = 0; i < ba.ncands; i++) {
            char t[64];
            p2p_addr_format(&ba.cands[i].addr, t, sizeof t);
            printf("  B's cand %s state %d\n", t, ba.cands[i].state);
        }
        for (int i = 0; i < ab.ncands; i++) {
            char t[64];
            p2p_addr_format(&ab.cands[i].addr, t, sizeof t);
            printf("  A's cand %s state %d\n", t, ab.cands[i].state);
        }
    }
    T_CHECK(moved && moved - opened <= 16 * SEC);
    T_EQ_INT(s_msgs, 100);
    T_EQ_INT(s_bad, 0);
    T_EQ_INT(s_replies, 100);
    /* M introduced A and B again (3 introductions in all) with A's UDP address, but the pair
     * does not go direct within 30 s on this network yet: reported, not asserted (P5 report). */
    p2p_stats ms;
    p2p_host_stats(sh[0], &ms);
    T_EQ_INT(ms.introductions, 3);
    for (int i = 0; i < 3; i++) {
        p2p_host_free(sh[i]);
        p2p_identity_wipe(&id[i]);
    }
    p2p_sim_free(sim);
}

int main(void)
{
    p2p_init();
    T_RUN(test_upgrade_mid_stream);
    T_RUN(test_no_udp_stays);
    T_RUN(test_sim_stream_then_udp);
    return t_summary("test_stream_upgrade");
}
