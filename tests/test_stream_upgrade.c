/* test_stream_upgrade.c - a session that came up over a stream (TCP fallback, design 12
 * section 4.3) moves to UDP once UDP works again (docs/PROTOCOL.md section 8.5): it keeps the
 * UDP address it dialled (udp_home) and challenges it on the upgrade schedule, 1, 2, 4, 8, 16 s,
 * then every 30 s; the answer moves it, and nothing is lost or repeated across the move.
 *
 * Two hosts driven by hand in 10 ms steps, as tests/test_reach.c does (A's UDP blocked until
 * `open`, the stream always carries). The same on the simulator's streams, with a third node
 * relayed through the stream that goes direct too, is tests/test_upgrade_direct.c. */
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

/* UDP blocked until `open_at`; 100 messages, one every `gap` once joined. With `reblock` not
 * 0, UDP is blocked again that long after A moved to it, and from then on what B sends to A's
 * UDP address goes over the stream (B stayed on the stream); *back: when A's session returned
 * to the stream (UINT64_MAX: never). Returns the time from open_at until A's session sends to
 * B's UDP address (UINT64_MAX: never). */
static uint64_t run_case(uint64_t open_at, uint64_t gap, uint64_t reblock, int *msgs_out,
                         int *bad_out, int *replies_out, uint64_t *udp_probes, uint64_t *back)
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
    *back = UINT64_MAX;
    for (int step = 0; step < 6000; step++) {
        now = (uint64_t)step * 10 * MS;
        int reblocked = reblock && moved != UINT64_MAX && now >= moved + reblock;
        int udp = now >= open_at && !reblocked;
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
                } else if (p2p_addr_equal(&to, &audp) && reblocked) {
                    p2p_addr from = simnet_stream_addr(p.sid);
                    p2p_host_recv(a, &from, buf, n, now);
                }
            }
        }
        simnet_pair_events(&p, now);
        if (p.joins >= 2 && !joined_at) joined_at = now;
        if (p.joins >= 2 && sent < 100 && now >= joined_at + (uint64_t)sent * gap) {
            simnet_pair_send(&p, pa, (uint64_t)sent, 200, now);
            sent++;
        }
        p2p_peer_stats ps;
        if (moved == UINT64_MAX && p.joins >= 2 && p2p_peer_stats_get(a, pa, &ps) == 0 &&
            ps.path == P2P_PATH_DIRECT && p2p_addr_equal(&ps.address, &p.baddr))
            moved = now;
        if (reblocked && *back == UINT64_MAX && p2p_peer_stats_get(a, pa, &ps) == 0 &&
            ps.path == P2P_PATH_TCP)
            *back = now - (moved + reblock);
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
    uint64_t back;
    uint64_t took = run_case(5500 * MS, 100 * MS, 0, &msgs, &bad, &replies, &probes, &back);
    T_CHECK(took <= 16 * SEC);
    T_EQ_INT(back, UINT64_MAX);
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
    uint64_t back;
    uint64_t took = run_case(UINT64_MAX, 100 * MS, 0, &msgs, &bad, &replies, &probes, &back);
    T_EQ_INT(took, UINT64_MAX);
    T_EQ_INT(msgs, 100);
    T_EQ_INT(bad, 0);
    T_CHECK(probes >= 5 && probes <= 8);
}

/* UDP works for a while after the upgrade, then is blocked again while B still sends over the
 * stream: A's session stays on UDP while UDP answers (B's packets in the TCP pipe do not move
 * it back), and returns to the stream once UDP has been silent for 2 s; nothing is lost. */
static void test_udp_fails_again(void)
{
    int msgs, bad, replies;
    uint64_t probes, back;
    uint64_t took = run_case(3 * SEC, 250 * MS, 2 * SEC, &msgs, &bad, &replies, &probes, &back);
    printf("     UDP blocked again 2 s after the move: back on the stream after %.2f s\n",
           back == UINT64_MAX ? -1.0 : (double)back / SEC);
    T_CHECK(took <= 16 * SEC);
    T_CHECK(back >= 2 * SEC && back <= 6 * SEC);
    T_EQ_INT(msgs, 100);
    T_EQ_INT(bad, 0);
    T_EQ_INT(replies, 100);
}

int main(void)
{
    p2p_init();
    T_RUN(test_upgrade_mid_stream);
    T_RUN(test_no_udp_stays);
    T_RUN(test_udp_fails_again);
    return t_summary("test_stream_upgrade");
}
