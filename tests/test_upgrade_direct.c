/* test_upgrade_direct.c - a relayed session goes direct once UDP comes back (issue 12,
 * scenario 3; docs/PROTOCOL.md sections 8.4 and 8.5).
 *
 * M is public (UDP and TCP); A sits behind a cone NAT whose router drops all UDP; B behind a
 * cone NAT. A reaches M over the TCP fallback, then B by id through M: the A-B session is
 * relayed over A's stream. Messages A -> B flow with replies; UDP is unblocked in the middle.
 * A's session with M moves to UDP, M introduces A and B again with A's UDP address, and both
 * probe each other at once: the A-B session goes direct on both sides, and every message
 * arrives once and in order, with its reply.
 *
 * What kept the pair relayed before: while UDP was blocked, A punched B's candidates with
 * INIT for 3 s (15 packets) and probed them on the upgrade schedule, all lost at A's own
 * router but counted against the guard's probe allowance of B's address (16 a minute). When
 * the re-introduction came, A's guard refused to probe B, B's probes were filtered by A's NAT
 * (A had not sent to B), and the pair stayed relayed for the rest of the minute. Now a node
 * whose UDP is silent relays at once instead of punching; a re-introduction restarts the
 * upgrade schedule (so a lost first probe is retried 1 s later, not up to 30 s); and A's
 * session with M, once on proven UDP, no longer flaps back to the stream for M's packets still
 * in the TCP pipe (each flap was one more re-introduction). */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "tnet.h"

#define SEC UINT64_C(1000000)
#define MS UINT64_C(1000)

static p2p_sim *sim;
static p2p_host *sh[3];
static p2p_identity id[3];
static p2p_addr addr[3];
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
                if (v != s_next) s_bad++; /* a gap, a repeat or a reordering */
                s_next = v + 1;
                s_msgs++;
                p2p_peer_reply(sh[2], ev.peer, ev.seq, P2P_REPLY_NIL, NULL, 0, p2p_sim_now(sim));
                p2p_sim_flush(sim, sh[2]);
            }
            if (i == 1 && ev.type == P2P_EV_REPLY) s_replies++;
        }
}

static p2p_peer_stats stats_of(int i, int of)
{
    p2p_peer_stats ps;
    memset(&ps, 0, sizeof ps);
    p2p_peer_stats_get(sh[i], p2p_host_find(sh[i], id[of].ed_pk), &ps);
    return ps;
}

/* A and B relayed through M, A on a stream; returns 0 when set up. */
static int setup(uint64_t seed)
{
    int before = t_failed_checks;
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = 10 * MS;
    sc.jitter_us = 2 * MS;
    T_EQ_INT(p2p_sim_new(&sim, &sc), 0);
    int nats[3] = {P2P_SIM_NAT_NONE, P2P_SIM_NAT_CONE, P2P_SIM_NAT_CONE};
    for (int i = 0; i < 3; i++) {
        tnet_identity(&id[i], (uint8_t)(0x57 + seed), (uint8_t)(i + 1));
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
    T_EQ_INT(stats_of(1, 0).state, P2P_PEER_CONNECTED);
    T_EQ_INT(stats_of(1, 0).path, P2P_PATH_TCP);
    T_EQ_INT(p2p_host_connect_via(sh[1], id[2].ed_pk, &addr[0], p2p_sim_now(sim), NULL), 0);
    p2p_sim_flush(sim, sh[1]);
    uint64_t end = p2p_sim_now(sim) + 10 * SEC;
    while (p2p_sim_now(sim) < end && stats_of(1, 2).state != P2P_PEER_CONNECTED)
        tnet_run_for(sim, 50 * MS, s_drain);
    T_EQ_INT(stats_of(1, 2).state, P2P_PEER_CONNECTED);
    T_EQ_INT(stats_of(1, 2).path, P2P_PATH_RELAYED);
    return t_failed_checks != before ? -1 : 0;
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++) {
        p2p_host_free(sh[i]);
        p2p_identity_wipe(&id[i]);
    }
    p2p_sim_free(sim);
}

static void send_one(uint64_t v)
{
    uint8_t m[200];
    memset(m, 0x44, sizeof m);
    memcpy(m, &v, 8);
    T_EQ_INT(p2p_peer_send(sh[1], p2p_host_find(sh[1], id[2].ed_pk), 1, m, sizeof m, 1, NULL,
                           p2p_sim_now(sim)),
             0);
    p2p_sim_flush(sim, sh[1]);
}

static uint64_t opened, direct_at, med_at, lose_us;
static int direct_early, losing;

/* After every step: when A-M moved to UDP, when A-B went direct on both sides. With lose_us,
 * UDP between A and B is cut from the unblock until lose_us after A-M's move is seen (the
 * re-introduction's probes are lost: their NAT flows open, the packets do not arrive). */
static void observe(void)
{
    int both = stats_of(1, 2).direct && stats_of(2, 1).direct;
    if (!opened && (stats_of(1, 2).direct || stats_of(2, 1).direct)) direct_early = 1;
    if (opened && !direct_at && both) direct_at = p2p_sim_now(sim);
    if (opened && !med_at && stats_of(1, 0).path == P2P_PATH_DIRECT) med_at = p2p_sim_now(sim);
    if (losing && med_at && p2p_sim_now(sim) >= med_at + lose_us) {
        T_EQ_INT(p2p_sim_block(sim, sh[1], sh[2], 0), 0);
        losing = 0;
    }
}

/* `count` messages A -> B, one every `gap`; UDP is unblocked after message `open_at` (never
 * when it is count or more). Returns the time from the unblock until the A-B session is
 * direct on both sides (UINT64_MAX: not within `wait` after the last message). */
static uint64_t run(uint64_t seed, int count, uint64_t gap, int open_at, uint64_t wait,
                    uint64_t lose)
{
    if (setup(seed)) return UINT64_MAX;
    opened = direct_at = med_at = 0;
    direct_early = losing = 0;
    lose_us = lose;
    for (int k = 0; k < count; k++) {
        send_one((uint64_t)k);
        if (k == open_at) {
            T_EQ_INT(p2p_sim_block_udp(sim, sh[1], 0), 0);
            opened = p2p_sim_now(sim);
            if (lose) {
                T_EQ_INT(p2p_sim_block(sim, sh[1], sh[2], 1), 0);
                losing = 1;
            }
        }
        for (uint64_t t = 0; t < gap; t += 50 * MS) {
            tnet_run_for(sim, 50 * MS, s_drain);
            observe();
        }
    }
    uint64_t end = p2p_sim_now(sim) + wait;
    while (p2p_sim_now(sim) < end && (s_replies < count || (opened && !direct_at))) {
        tnet_run_for(sim, 50 * MS, s_drain);
        observe();
    }
    p2p_stats as;
    p2p_host_stats(sh[1], &as);
    printf("     seed %llu: A-M on UDP %.2f s after the unblock, A-B direct after %.2f s; "
           "%d/%d messages, %d replies, %d out of order; A: %llu probes dropped by the guard, %llu "
           "path changes\n",
           (unsigned long long)seed, med_at ? (double)(med_at - opened) / SEC : -1.0,
           direct_at ? (double)(direct_at - opened) / SEC : -1.0, s_msgs, count, s_replies, s_bad,
           (unsigned long long)as.dropped_amplification, (unsigned long long)as.path_changes);
    T_EQ_INT(direct_early, 0); /* relayed while UDP was blocked */
    /* A punched nothing while its UDP was silent, so its guard never had to refuse a probe */
    T_EQ_INT(as.dropped_amplification, 0);
    T_EQ_INT(s_msgs, count);
    T_EQ_INT(s_bad, 0);
    T_EQ_INT(s_replies, count);
    if (opened && direct_at) {
        /* the direct path carries the session: A sends to B's public UDP address */
        p2p_peer_stats ab = stats_of(1, 2);
        T_EQ_INT(ab.path, P2P_PATH_DIRECT);
        T_EQ_INT(ab.address.family, P2P_AF_INET4);
        /* two moves of A's: A-M off the stream, A-B off the relay; none back and forth (A-M
         * does not return to the stream for M's packets still in its pipe) */
        T_EQ_INT(as.path_changes, 2);
        /* M introduced A and B twice: through A's stream, then with A's UDP address */
        p2p_stats ms;
        p2p_host_stats(sh[0], &ms);
        if (!lose) T_EQ_INT(ms.introductions, 2);
    }
    uint64_t took = direct_at ? direct_at - opened : UINT64_MAX;
    if (lose && direct_at && med_at) took = direct_at - med_at; /* after A-M moved */
    teardown();
    return took;
}

/* UDP comes back 3 s into 200 messages (one each 100 ms): direct on both sides within 15 s of
 * the unblock (A-M moves on its upgrade schedule, the pair right after it). The seed also picks
 * the identities, so both orders of A's and B's ids are run (which of the two attempts
 * survives, and when the pair joins). */
static void test_direct_after_unblock(void)
{
    uint64_t seeds[] = {0, 1, 2, 3, 4, 5};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        uint64_t took = run(seeds[i], 200, 100 * MS, 30, 20 * SEC, 0);
        T_CHECK(took <= 15 * SEC);
    }
}

/* UDP stays blocked for 100 s (the upgrade probes of the relayed pair run all that time, on
 * their 30 s schedule), then comes back: direct within 35 s (A-M's next upgrade probe is at
 * most 30 s away), nothing lost. */
static void test_direct_after_long_block(void)
{
    uint64_t took = run(99, 130, 1 * SEC, 100, 40 * SEC, 0);
    T_CHECK(took <= 35 * SEC);
}

/* The re-introduction's first probes are lost (UDP between A and B is cut until 0.5 s after
 * A-M moved): a re-introduction starts the relayed pair's upgrade schedule over, so the probes
 * 1 s later find the path (without that, the next ones were up to 30 s away). */
static void test_direct_after_lost_probes(void)
{
    uint64_t seeds[] = {0, 1};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        uint64_t took = run(seeds[i], 200, 100 * MS, 30, 20 * SEC, 500 * MS);
        T_CHECK(took <= 3 * SEC);
    }
}

/* UDP never comes back: the pair stays relayed, every message arrives once and in order. */
static void test_blocked_stays_relayed(void)
{
    uint64_t took = run(5, 100, 200 * MS, 1000, 10 * SEC, 0);
    T_EQ_INT(took, UINT64_MAX);
}

int main(void)
{
    p2p_init();
    T_RUN(test_direct_after_unblock);
    T_RUN(test_direct_after_long_block);
    T_RUN(test_direct_after_lost_probes);
    T_RUN(test_blocked_stays_relayed);
    return t_summary("test_upgrade_direct");
}
