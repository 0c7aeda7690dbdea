/* test_sim.c - the deterministic simulator, driving real hosts: addresses, configuration,
 * loss, latency, detaching, reliable delivery under loss/duplication/reordering,
 * bit-for-bit reproducibility from the seed, and the NAT models (mapping, filtering, hole
 * punching, expiry, rebinding). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver/sim.h"
#include "p2pnet.h"
#include "t.h"
#include "tnet.h"

#define NMSG 1000
#define MSG_TYPE 9

struct node {
    p2p_identity id;
    p2p_host *h;
    p2p_addr addr;
    p2p_peer_handle peer;
    int joined, left, errors;
    uint64_t joined_at;
    p2p_addr join_from;     /* the address of the last JOIN */
    uint64_t join_ports;    /* a hash of the ports of every JOIN so far */
    uint32_t next;          /* next message index expected */
    int bad;                /* out of order, duplicated or corrupted */
    uint64_t arrival[NMSG]; /* virtual time each message arrived */
};

/* Message i: 4 to 2503 bytes, its index first. */
static const tnet_msgs msgs = {4, 53, 2500, 13, 3};

static void node_drain(struct node *n, uint64_t now)
{
    p2p_event ev;
    uint8_t want[4096];
    uint32_t idx;

    while (p2p_host_next_event(n->h, &ev)) {
        switch (ev.type) {
        case P2P_EV_JOIN:
            n->joined = 1;
            n->joined_at = now;
            n->peer = ev.peer;
            n->join_from = ev.from;
            n->join_ports = n->join_ports * 65537u + ev.from.port;
            break;
        case P2P_EV_LEAVE: n->left++; break;
        case P2P_EV_ERROR: n->errors++; break;
        case P2P_EV_MESSAGE:
            if (ev.len < 4) {
                n->bad++;
                break;
            }
            idx = tnet_msg_index(ev.data);
            if (idx != n->next || idx >= NMSG || ev.msg_type != MSG_TYPE ||
                ev.len != tnet_msg_len(&msgs, idx)) {
                n->bad++;
                break;
            }
            tnet_msg_fill(&msgs, want, idx);
            if (memcmp(ev.data, want, ev.len) != 0) n->bad++;
            n->arrival[idx] = now;
            n->next = idx + 1;
            break;
        default: break;
        }
    }
}

/* Identities from fixed seeds and host randomness from the sim: the whole run is a function
 * of the sim's seed. */
/* Nonzero: nodes made now are mediators (no mesh), so a star stays a star. */
static int star_hub;

static int node_new_nat(struct node *n, p2p_sim *s, uint8_t seed_byte, uint16_t port, int nat)
{
    p2p_config cfg;

    memset(n, 0, sizeof *n);
    if (tnet_identity(&n->id, seed_byte, seed_byte) != 0) return -1;
    p2p_config_init(&cfg);
    cfg.mediator = star_hub;
    if (tnet_sim_host(s, &cfg, &n->id, port, nat, &n->h, &n->addr) != 0) return -1;
    return 0;
}

static int node_new(struct node *n, p2p_sim *s, uint8_t seed_byte)
{
    return node_new_nat(n, s, seed_byte, 0, P2P_SIM_NAT_NONE);
}

static void node_free(struct node *n)
{
    p2p_host_free(n->h);
    p2p_identity_wipe(&n->id);
    n->h = NULL;
}

/* Steps the sim until done() or virtual time passes limit, draining events after every
 * step (event data lives only until the next call on the host). */
static void run_until(p2p_sim *s, struct node *a, struct node *b,
                      int (*done)(const struct node *, const struct node *), uint64_t limit)
{
    while (!done(a, b) && p2p_sim_now(s) < limit) {
        if (!p2p_sim_step(s, limit)) break;
        node_drain(a, p2p_sim_now(s));
        node_drain(b, p2p_sim_now(s));
    }
}

static int both_joined(const struct node *a, const struct node *b)
{
    return a->joined && b->joined;
}

static int all_arrived(const struct node *a, const struct node *b)
{
    (void)a;
    return b->next >= NMSG || b->bad > 0;
}

static int never(const struct node *a, const struct node *b)
{
    (void)a;
    (void)b;
    return 0;
}

/* ---- addresses and configuration ------------------------------------------------------ */

static void test_config_validation(void)
{
    p2p_sim_config cfg;
    p2p_sim *s = (p2p_sim *)&s;

    memset(&cfg, 0, sizeof cfg);
    cfg.loss = 1.5;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    T_CHECK(s == NULL);
    cfg.loss = -0.1;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    cfg.loss = 0;
    cfg.duplicate = NAN;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    cfg.duplicate = 0;
    cfg.reorder = 2;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    cfg.reorder = 1;
    cfg.latency_us = UINT64_MAX;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    cfg.latency_us = 0;
    cfg.jitter_us = UINT64_MAX / 2;
    T_EQ_INT(p2p_sim_new(&s, &cfg), P2P_ERR_INVALID);
    cfg.jitter_us = 0;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(p2p_sim_now(s), 0);
    T_EQ_INT(p2p_sim_next_time(s), (long long)P2P_TIME_NEVER);
    /* Time moves to `until` when nothing is due, and never backwards. */
    T_EQ_INT(p2p_sim_step(s, 5000), 0);
    T_EQ_INT(p2p_sim_now(s), 5000);
    T_EQ_INT(p2p_sim_step(s, 100), 0);
    T_EQ_INT(p2p_sim_now(s), 5000);
    p2p_sim_free(s);
    p2p_sim_free(NULL);
}

static void check_addr(const p2p_addr *a, const char *want)
{
    char buf[64];

    T_EQ_INT(p2p_addr_format(a, buf, sizeof buf), 0);
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "  address %s, want %s\n", buf, want);
        T_CHECK(0);
    }
}

static void test_addresses(void)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    struct node a, b;
    p2p_addr addr;
    int i;

    memset(&cfg, 0, sizeof cfg);
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(node_new(&a, s, 1), 0);
    check_addr(&a.addr, "192.0.2.1:4000");
    T_EQ_INT(node_new(&b, s, 2), 0);
    check_addr(&b.addr, "192.0.2.2:4001");

    T_EQ_INT(p2p_sim_attach(s, a.h, 0, P2P_SIM_NAT_NONE, &addr), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_attach(s, NULL, 0, P2P_SIM_NAT_NONE, &addr), P2P_ERR_INVALID);
    p2p_sim_detach(s, a.h);
    p2p_sim_detach(s, a.h); /* twice is harmless */
    /* An unknown NAT model must not be silently simulated as an open network. */
    T_EQ_INT(p2p_sim_attach(s, a.h, 0, 3, &addr), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_attach(s, a.h, 0, -1, &addr), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_attach(s, a.h, 7000, P2P_SIM_NAT_NONE, &addr), 0);
    check_addr(&addr, "192.0.2.3:7000");

    /* Addresses are never reused; walk the index into the next ranges. */
    for (i = 3; i < 250; i++) {
        p2p_sim_detach(s, a.h);
        T_EQ_INT(p2p_sim_attach(s, a.h, 1, P2P_SIM_NAT_NONE, &addr), 0);
    }
    check_addr(&addr, "192.0.2.250:1");
    p2p_sim_detach(s, a.h);
    T_EQ_INT(p2p_sim_attach(s, a.h, 0, P2P_SIM_NAT_NONE, &addr), 0);
    check_addr(&addr, "198.51.100.1:4250");
    for (i = 251; i < 750; i++) {
        p2p_sim_detach(s, a.h);
        T_EQ_INT(p2p_sim_attach(s, a.h, 1, P2P_SIM_NAT_NONE, &addr), 0);
    }
    check_addr(&addr, "203.0.113.250:1");
    p2p_sim_detach(s, a.h);
    T_EQ_INT(p2p_sim_attach(s, a.h, 2, P2P_SIM_NAT_NONE, &addr), 0);
    check_addr(&addr, "198.18.0.1:2");
    for (i = 751; i < 1001; i++) {
        p2p_sim_detach(s, a.h);
        T_EQ_INT(p2p_sim_attach(s, a.h, 3, P2P_SIM_NAT_NONE, &addr), 0);
    }
    check_addr(&addr, "198.18.1.1:3");
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
}

static void test_host_seeds(void)
{
    p2p_sim_config cfg;
    p2p_sim *s1 = NULL, *s2 = NULL, *s3 = NULL;
    uint64_t x, y, z;
    int i, same13 = 1;

    memset(&cfg, 0, sizeof cfg);
    T_EQ_INT(p2p_sim_new(&s1, &cfg), 0);
    T_EQ_INT(p2p_sim_new(&s2, &cfg), 0);
    cfg.seed = 1;
    T_EQ_INT(p2p_sim_new(&s3, &cfg), 0);
    if (s1 == NULL || s2 == NULL || s3 == NULL) goto out;
    for (i = 0; i < 100; i++) {
        x = p2p_sim_host_seed(s1);
        y = p2p_sim_host_seed(s2);
        z = p2p_sim_host_seed(s3);
        T_CHECK(x != 0 && z != 0);
        T_CHECK(x == y);
        if (x != z) same13 = 0;
    }
    T_CHECK(!same13);
out:
    p2p_sim_free(s1);
    p2p_sim_free(s2);
    p2p_sim_free(s3);
}

/* ---- behaviour with real hosts -------------------------------------------------------- */

static void test_total_loss(void)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    struct node a, b;
    p2p_sim_stats st;
    p2p_stats hb;

    memset(&cfg, 0, sizeof cfg);
    cfg.latency_us = 10000;
    cfg.loss = 1.0;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&b, s, 2), 0);
    T_EQ_INT(p2p_host_connect(a.h, &b.addr, NULL, p2p_sim_now(s), &a.peer), 0);
    p2p_sim_flush(s, a.h);
    run_until(s, &a, &b, never, 3000000);
    p2p_sim_stats_get(s, &st);
    p2p_host_stats(b.h, &hb);
    T_CHECK(st.sent >= 2); /* the handshake was retried */
    T_EQ_INT(st.lost, st.sent);
    T_EQ_INT(st.delivered, 0);
    T_EQ_INT(st.in_flight, 0);
    T_EQ_INT(hb.packets_received, 0);
    T_CHECK(!a.joined && !b.joined);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
}

static void test_latency_exact(void)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    struct node a, b;
    uint8_t buf[4096];
    uint64_t t0;
    p2p_sim_stats st;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 42;
    cfg.latency_us = 25000;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&b, s, 2), 0);
    T_EQ_INT(p2p_host_connect(a.h, &b.addr, p2p_host_id(b.h), 0, &a.peer), 0);
    p2p_sim_flush(s, a.h);
    run_until(s, &a, &b, both_joined, 5000000);
    T_CHECK(both_joined(&a, &b));
    /* INIT, RESP, FIN, then the responder's first DATA (PROTOCOL.md 2.1 step 4), each
     * exactly one latency: b joins on FIN, a on that DATA. */
    T_EQ_INT(b.joined_at, 75000);
    T_EQ_INT(a.joined_at, 100000);

    /* Idle a little, then one message takes exactly one latency. */
    t0 = p2p_sim_now(s) + 100000;
    run_until(s, &a, &b, never, t0);
    T_EQ_INT(p2p_sim_now(s), t0);
    tnet_msg_fill(&msgs, buf, 0);
    T_EQ_INT(p2p_peer_send(a.h, a.peer, MSG_TYPE, buf, tnet_msg_len(&msgs, 0), 0, NULL, t0), 0);
    p2p_sim_flush(s, a.h);
    run_until(s, &a, &b, never, t0 + 100000);
    T_EQ_INT(b.next, 1);
    T_EQ_INT(b.arrival[0], t0 + 25000);
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.lost, 0);
    T_EQ_INT(st.duplicated, 0);
    T_EQ_INT(st.reordered, 0);
    T_EQ_INT(st.delivered + st.in_flight, st.sent);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
}

static void test_detach(void)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    struct node a, b;
    uint8_t buf[4096];
    p2p_stats before, after;
    p2p_sim_stats st0, st1;

    memset(&cfg, 0, sizeof cfg);
    cfg.latency_us = 5000;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&b, s, 2), 0);
    T_EQ_INT(p2p_host_connect(a.h, &b.addr, NULL, 0, &a.peer), 0);
    p2p_sim_flush(s, a.h);
    run_until(s, &a, &b, both_joined, 5000000);
    T_CHECK(both_joined(&a, &b));
    run_until(s, &a, &b, never, p2p_sim_now(s) + 100000);

    p2p_sim_detach(s, b.h);
    p2p_host_stats(b.h, &before);
    p2p_sim_stats_get(s, &st0);
    tnet_msg_fill(&msgs, buf, 0);
    T_EQ_INT(
        p2p_peer_send(a.h, a.peer, MSG_TYPE, buf, tnet_msg_len(&msgs, 0), 0, NULL, p2p_sim_now(s)),
        0);
    p2p_sim_flush(s, a.h);
    run_until(s, &a, &b, never, p2p_sim_now(s) + 1000000);
    p2p_host_stats(b.h, &after);
    p2p_sim_stats_get(s, &st1);
    T_EQ_INT(after.packets_received, before.packets_received);
    T_EQ_INT(b.next, 0);
    T_CHECK(st1.lost > st0.lost); /* the message and its retransmissions vanished */
    T_EQ_INT(st1.delivered - st0.delivered, 0);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
}

/* FNV-1a over every delivered copy (time, addresses, bytes) of the runs made while
 * run_digest is set: a fingerprint of a whole run. */
static uint64_t *run_digest;
static p2p_sim *digest_sim;

static void digest_bytes(uint64_t *h, const void *data, size_t len)
{
    const uint8_t *b = (const uint8_t *)data;
    size_t i;

    for (i = 0; i < len; i++) *h = (*h ^ b[i]) * UINT64_C(0x100000001b3);
}

static void digest_tap(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *data,
                       size_t len)
{
    uint64_t *h = (uint64_t *)ud, now = p2p_sim_now(digest_sim);

    digest_bytes(h, &now, sizeof now);
    digest_bytes(h, from->ip, 4);
    digest_bytes(h, &from->port, sizeof from->port);
    digest_bytes(h, to->ip, 4);
    digest_bytes(h, &to->port, sizeof to->port);
    digest_bytes(h, data, len);
}

/* Nonzero: the runs give every host links that do nothing (rate, delay and loss 0). */
static int neutral_links;

static void neutral_link(p2p_sim *s, const p2p_host *h)
{
    static const p2p_sim_link none;
    if (!neutral_links) return;
    T_EQ_INT(p2p_sim_set_link(s, h, P2P_SIM_UP, &none), 0);
    T_EQ_INT(p2p_sim_set_link(s, h, P2P_SIM_DOWN, &none), 0);
}

static void digest_start(p2p_sim *s)
{
    static const p2p_sim_link none;
    if (neutral_links) {
        T_EQ_INT(p2p_sim_set_default_link(s, P2P_SIM_UP, &none), 0);
        T_EQ_INT(p2p_sim_set_default_link(s, P2P_SIM_DOWN, &none), 0);
    }
    if (run_digest == NULL) return;
    digest_sim = s;
    p2p_sim_set_tap(s, digest_tap, run_digest);
}

/* One full run: handshake, NMSG messages through a hostile network. Returns the sim's stats
 * and fills b's arrival times. */
static int faulty_run(uint64_t seed, struct node *a, struct node *b, p2p_sim_stats *st)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    uint8_t buf[4096];
    uint32_t i;
    int r, ok = 0;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = seed;
    cfg.latency_us = 20000;
    cfg.jitter_us = 5000;
    cfg.loss = 0.05;
    cfg.duplicate = 0.05;
    cfg.reorder = 0.10;
    if (p2p_sim_new(&s, &cfg) != 0 || node_new(a, s, 1) != 0 || node_new(b, s, 2) != 0) goto out;
    digest_start(s);
    neutral_link(s, a->h);
    neutral_link(s, b->h);
    if (p2p_host_connect(a->h, &b->addr, p2p_host_id(b->h), 0, &a->peer) != 0) goto out;
    p2p_sim_flush(s, a->h);
    run_until(s, a, b, both_joined, 30000000);
    if (!both_joined(a, b)) goto out;
    for (i = 0; i < NMSG; i++) {
        tnet_msg_fill(&msgs, buf, i);
        r = p2p_peer_send(a->h, a->peer, MSG_TYPE, buf, tnet_msg_len(&msgs, i), 0, NULL,
                          p2p_sim_now(s));
        if (r != 0) {
            fprintf(stderr, "  send %u: %s\n", (unsigned)i, p2p_strerror(r));
            goto out;
        }
        /* Spread the sends over virtual time so the network is busy in both directions. */
        if (i % 100 == 99) {
            p2p_sim_flush(s, a->h);
            run_until(s, a, b, never, p2p_sim_now(s) + 10000);
        }
    }
    p2p_sim_flush(s, a->h);
    run_until(s, a, b, all_arrived, p2p_sim_now(s) + 120000000);
    ok = 1;
out:
    if (s != NULL) p2p_sim_stats_get(s, st);
    p2p_sim_free(s);
    return ok ? 0 : -1;
}

static void test_reliable_under_faults(void)
{
    static struct node a1, b1, a2, b2, a3, b3;
    p2p_sim_stats st1, st2, st3;
    uint32_t i;
    int same_arrivals = 1, same_other = 1;

    T_EQ_INT(faulty_run(7, &a1, &b1, &st1), 0);
    /* Every message exactly once, in order, intact, despite the network. */
    T_EQ_INT(b1.next, NMSG);
    T_EQ_INT(b1.bad, 0);
    T_EQ_INT(a1.errors + b1.errors, 0);
    T_CHECK(st1.lost > 0);
    T_CHECK(st1.duplicated > 0);
    T_CHECK(st1.reordered > 0);
    for (i = 1; i < NMSG && b1.next == NMSG; i++) T_CHECK(b1.arrival[i] >= b1.arrival[i - 1]);

    /* The same seed replays the same run to the microsecond. */
    T_EQ_INT(faulty_run(7, &a2, &b2, &st2), 0);
    T_EQ_INT(b2.next, NMSG);
    for (i = 0; i < NMSG; i++)
        if (b1.arrival[i] != b2.arrival[i]) same_arrivals = 0;
    T_CHECK(same_arrivals);
    T_EQ_MEM(&st1, &st2, sizeof st1);
    T_EQ_INT(a1.joined_at, a2.joined_at);
    T_EQ_INT(b1.joined_at, b2.joined_at);

    /* Another seed gives another run (and still a correct one). */
    T_EQ_INT(faulty_run(8, &a3, &b3, &st3), 0);
    T_EQ_INT(b3.next, NMSG);
    T_EQ_INT(b3.bad, 0);
    for (i = 0; i < NMSG; i++)
        if (b1.arrival[i] != b3.arrival[i]) same_other = 0;
    T_CHECK(!same_other);
    T_CHECK(memcmp(&st1, &st3, sizeof st1) != 0);

    node_free(&a1);
    node_free(&b1);
    node_free(&a2);
    node_free(&b2);
    node_free(&a3);
    node_free(&b3);
}

/* The observed loss and duplication rates match the configuration. */
static void test_fault_rates(void)
{
    static struct node a, b;
    p2p_sim_stats st;
    double loss, dup, reord;

    T_EQ_INT(faulty_run(99, &a, &b, &st), 0);
    T_EQ_INT(b.next, NMSG);
    T_CHECK(st.sent > 1000);
    loss = (double)st.lost / (double)st.sent;
    dup = (double)st.duplicated / (double)st.sent;
    reord = (double)st.reordered / (double)(st.sent - st.lost + st.duplicated);
    if (fabs(loss - 0.05) > 0.02 || fabs(dup - 0.05 * 0.95) > 0.02 || fabs(reord - 0.10) > 0.03) {
        fprintf(stderr, "  sent %llu: loss %.3f dup %.3f reorder %.3f\n",
                (unsigned long long)st.sent, loss, dup, reord);
        T_CHECK(0);
    }
    T_EQ_INT(st.delivered + st.in_flight, st.sent - st.lost + st.duplicated);
    node_free(&a);
    node_free(&b);
}

/* Many hosts on one sim: a star of 40 around one hub, each sending a few messages. */
static void test_many_hosts(void)
{
    enum { N = 40, PER = 5 };
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    static struct node hub, leaf[N];
    uint8_t buf[4096];
    size_t i, got;
    uint32_t k;
    p2p_event ev;
    int joined;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = 3;
    cfg.latency_us = 2000;
    cfg.jitter_us = 1000;
    cfg.loss = 0.02;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    star_hub = 1; /* the hub introduces nobody: the leaves only ever know the hub */
    T_EQ_INT(node_new(&hub, s, 100), 0);
    star_hub = 0;
    for (i = 0; i < N; i++) {
        T_EQ_INT(node_new(&leaf[i], s, (uint8_t)(i + 1)), 0);
        T_EQ_INT(p2p_host_connect(leaf[i].h, &hub.addr, NULL, 0, &leaf[i].peer), 0);
        p2p_sim_flush(s, leaf[i].h);
    }
    got = 0;
    joined = 0;
    while (p2p_sim_now(s) < 20000000 && got < N * PER) {
        if (!p2p_sim_step(s, 20000000)) break;
        for (i = 0; i < N; i++) {
            while (p2p_host_next_event(leaf[i].h, &ev)) {
                if (ev.type != P2P_EV_JOIN) continue;
                joined++;
                for (k = 0; k < PER; k++) {
                    tnet_msg_fill(&msgs, buf, k);
                    T_EQ_INT(p2p_peer_send(leaf[i].h, ev.peer, MSG_TYPE, buf,
                                           tnet_msg_len(&msgs, k), 0, NULL, p2p_sim_now(s)),
                             0);
                }
                p2p_sim_flush(s, leaf[i].h);
            }
        }
        while (p2p_host_next_event(hub.h, &ev))
            if (ev.type == P2P_EV_MESSAGE) got++;
    }
    T_EQ_INT(joined, N);
    T_EQ_INT(got, N * PER);
    for (i = 0; i < N; i++) node_free(&leaf[i]);
    node_free(&hub);
    p2p_sim_free(s);
}

/* ---- NAT models ------------------------------------------------------------------------ */

#define LAT 10000 /* one-way latency of the NAT tests */

/* Steps the sim to `until`, draining the events of the k nodes after every step. */
static void run_nodes(p2p_sim *s, struct node **ns, size_t k, uint64_t until)
{
    size_t i;

    while (p2p_sim_now(s) < until && p2p_sim_step(s, until))
        for (i = 0; i < k; i++) node_drain(ns[i], p2p_sim_now(s));
}

static int dial(p2p_sim *s, struct node *n, const p2p_addr *to)
{
    int rc = p2p_host_connect(n->h, to, NULL, p2p_sim_now(s), &n->peer);

    p2p_sim_flush(s, n->h);
    return rc;
}

/* The public address a NATed node's datagrams would come from if its NAT kept `port`. */
static p2p_addr public_at(p2p_sim *s, const struct node *n, uint16_t port)
{
    p2p_addr a;

    memset(&a, 0, sizeof a);
    T_EQ_INT(p2p_sim_public_addr(s, n->h, &a), 0);
    a.port = port;
    return a;
}

static uint64_t received(const struct node *n)
{
    p2p_stats st;

    p2p_host_stats(n->h, &st);
    return st.packets_received;
}

static p2p_sim *nat_sim(uint64_t seed)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = seed;
    cfg.latency_us = LAT;
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    return s;
}

static void test_nat_addresses(void)
{
    p2p_sim *s = nat_sim(1);
    static struct node a, b, c;
    p2p_addr pub;

    if (s == NULL) return;
    T_EQ_INT(node_new_nat(&a, s, 1, 5000, P2P_SIM_NAT_CONE), 0);
    T_EQ_INT(node_new(&b, s, 2), 0);
    T_EQ_INT(node_new_nat(&c, s, 3, 0, P2P_SIM_NAT_SYMMETRIC), 0);
    /* The host is bound to a private address; its NAT owns the slot's public one. */
    check_addr(&a.addr, "10.0.0.1:5000");
    check_addr(&b.addr, "192.0.2.2:4001");
    check_addr(&c.addr, "10.0.0.3:4002");
    T_EQ_INT(p2p_sim_public_addr(s, a.h, &pub), 0);
    check_addr(&pub, "192.0.2.1:0");
    T_EQ_INT(p2p_sim_public_addr(s, b.h, &pub), 0);
    check_addr(&pub, "192.0.2.2:4001");
    T_EQ_INT(p2p_sim_public_addr(s, c.h, &pub), 0);
    check_addr(&pub, "192.0.2.3:0");

    T_EQ_INT(p2p_sim_rebind(s, a.h), 0);
    T_EQ_INT(p2p_sim_rebind(s, c.h), 0);
    T_EQ_INT(p2p_sim_rebind(s, b.h), P2P_ERR_INVALID); /* no NAT */
    T_EQ_INT(p2p_sim_rebind(s, NULL), P2P_ERR_INVALID);
    p2p_sim_detach(s, a.h);
    T_EQ_INT(p2p_sim_rebind(s, a.h), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_public_addr(s, a.h, &pub), P2P_ERR_INVALID);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    node_free(&c);
}

/* A cone-NATed host dials a public one: the handshake succeeds, and both of its peers see it
 * at its NAT's public address with its own port (endpoint-independent, port-preserving). */
static void test_nat_cone_dials_public(void)
{
    p2p_sim *s = nat_sim(2);
    static struct node a, b, c;
    struct node *all[3] = {&a, &b, &c};
    p2p_addr want;
    p2p_sim_stats st;

    if (s == NULL) return;
    star_hub = 1;
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&c, s, 3), 0);
    star_hub = 0;
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, P2P_SIM_NAT_CONE), 0);
    T_EQ_INT(dial(s, &b, &a.addr), 0);
    run_nodes(s, all, 3, 2000000);
    T_CHECK(a.joined && b.joined);
    want = public_at(s, &b, 5000);
    T_CHECK(p2p_addr_equal(&a.join_from, &want));
    T_CHECK(p2p_addr_equal(&b.join_from, &a.addr));

    T_EQ_INT(dial(s, &b, &c.addr), 0);
    run_nodes(s, all, 3, 4000000);
    T_CHECK(c.joined);
    T_CHECK(p2p_addr_equal(&c.join_from, &want));
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.nat_filtered, 0);
    T_EQ_INT(st.lost, 0);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    node_free(&c);
}

/* Nothing gets in unasked: a public host dialling a NATed one is filtered, datagrams to the
 * private address are lost. */
static void test_nat_unsolicited(void)
{
    p2p_sim *s = nat_sim(3);
    static struct node a, b;
    struct node *all[2] = {&a, &b};
    p2p_addr to;
    p2p_sim_stats st;

    if (s == NULL) return;
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, P2P_SIM_NAT_CONE), 0);
    to = public_at(s, &b, 5000);
    T_EQ_INT(dial(s, &a, &to), 0);
    run_nodes(s, all, 2, 3000000);
    p2p_sim_stats_get(s, &st);
    T_CHECK(st.sent >= 2); /* the handshake was retried */
    T_EQ_INT(st.nat_filtered, st.sent);
    T_EQ_INT(st.lost, 0);
    T_EQ_INT(st.delivered, 0);
    T_EQ_INT(received(&b), 0);
    T_CHECK(!a.joined && !b.joined);

    T_EQ_INT(dial(s, &a, &b.addr), 0); /* 10.0.0.2:5000: not routed */
    run_nodes(s, all, 2, 6000000);
    p2p_sim_stats_get(s, &st);
    T_CHECK(st.lost >= 2);
    T_EQ_INT(st.lost + st.nat_filtered, st.sent);
    T_EQ_INT(received(&b), 0);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
}

/* b and d, behind NATs of the given kinds, learn their reflexive addresses from a public
 * introducer a, then dial each other there, d `stagger` us after b. Returns 1 when both
 * joined each other; *filtered gets the datagrams the NATs dropped meanwhile. */
static int punch_run(int nat_b, int nat_d, uint64_t stagger, uint64_t *filtered)
{
    p2p_sim *s = nat_sim(4);
    static struct node a, b, d;
    struct node *all[3] = {&a, &b, &d};
    p2p_addr rb, rd;
    p2p_sim_stats st0, st1;
    int ok = 0;

    *filtered = 0;
    if (s == NULL) return 0;
    star_hub = 1; /* a introduces nobody: b and d only learn what we tell them */
    T_EQ_INT(node_new(&a, s, 1), 0);
    star_hub = 0;
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, nat_b), 0);
    T_EQ_INT(node_new_nat(&d, s, 4, 6000, nat_d), 0);
    T_EQ_INT(dial(s, &b, &a.addr), 0);
    run_nodes(s, all, 3, 1000000);
    rb = a.join_from;
    T_EQ_INT(dial(s, &d, &a.addr), 0);
    run_nodes(s, all, 3, 2000000);
    rd = a.join_from;
    T_CHECK(b.joined && d.joined);
    b.joined = d.joined = 0;

    p2p_sim_stats_get(s, &st0);
    T_EQ_INT(dial(s, &b, &rd), 0);
    run_nodes(s, all, 3, p2p_sim_now(s) + stagger);
    T_EQ_INT(dial(s, &d, &rb), 0);
    run_nodes(s, all, 3, p2p_sim_now(s) + 5000000);
    p2p_sim_stats_get(s, &st1);
    *filtered = st1.nat_filtered - st0.nat_filtered;
    if (b.joined && d.joined) {
        T_CHECK(p2p_addr_equal(&b.join_from, &rd));
        T_CHECK(p2p_addr_equal(&d.join_from, &rb));
        ok = 1;
    }
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    node_free(&d);
    return ok;
}

static void test_nat_cone_punch(void)
{
    uint64_t filtered;

    /* At once: each side's first datagram leaves before the other's arrives. */
    T_CHECK(punch_run(P2P_SIM_NAT_CONE, P2P_SIM_NAT_CONE, 0, &filtered));
    T_EQ_INT(filtered, 0);
    /* d starts 3 latencies later: b's first INIT hits a closed NAT, its retry gets in. */
    T_CHECK(punch_run(P2P_SIM_NAT_CONE, P2P_SIM_NAT_CONE, 3 * LAT, &filtered));
    T_CHECK(filtered >= 1);
}

static void test_nat_symmetric(void)
{
    p2p_sim *s = nat_sim(5);
    static struct node a, b, c;
    struct node *all[3] = {&a, &b, &c};
    p2p_addr pub;
    uint64_t filtered;

    if (s == NULL) return;
    star_hub = 1;
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&c, s, 3), 0);
    star_hub = 0;
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, P2P_SIM_NAT_SYMMETRIC), 0);
    T_EQ_INT(dial(s, &b, &a.addr), 0);
    T_EQ_INT(dial(s, &b, &c.addr), 0);
    run_nodes(s, all, 3, 2000000);
    T_CHECK(a.joined && c.joined && b.joined);
    /* One IP, a port per destination. */
    pub = public_at(s, &b, a.join_from.port);
    T_CHECK(p2p_addr_equal(&a.join_from, &pub));
    pub.port = c.join_from.port;
    T_CHECK(p2p_addr_equal(&c.join_from, &pub));
    T_CHECK(a.join_from.port != c.join_from.port);
    T_CHECK(a.join_from.port != 5000 && c.join_from.port != 5000);
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    node_free(&c);

    /* A reflexive address learned from a third host opens nothing for anyone else. */
    T_CHECK(!punch_run(P2P_SIM_NAT_SYMMETRIC, P2P_SIM_NAT_CONE, 0, &filtered));
    T_CHECK(filtered >= 4); /* both directions, retried */
    T_CHECK(!punch_run(P2P_SIM_NAT_CONE, P2P_SIM_NAT_SYMMETRIC, 3 * LAT, &filtered));
}

/* After a rebind the NATed host's old mapping is dead and new ones use a new port. */
static void test_nat_rebind(void)
{
    p2p_sim *s = nat_sim(6);
    static struct node a, b, c;
    struct node *all[3] = {&a, &b, &c};
    p2p_addr old;
    p2p_sim_stats st0, st1;
    uint8_t buf[64];

    if (s == NULL) return;
    star_hub = 1;
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new(&c, s, 3), 0);
    star_hub = 0;
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, P2P_SIM_NAT_CONE), 0);
    T_EQ_INT(dial(s, &b, &a.addr), 0);
    run_nodes(s, all, 3, 1000000);
    T_CHECK(a.joined && b.joined);
    old = public_at(s, &b, 5000);
    T_CHECK(p2p_addr_equal(&a.join_from, &old));

    T_EQ_INT(p2p_sim_rebind(s, b.h), 0);
    p2p_sim_stats_get(s, &st0);
    tnet_msg_fill(&msgs, buf, 0);
    T_EQ_INT(
        p2p_peer_send(a.h, a.peer, MSG_TYPE, buf, tnet_msg_len(&msgs, 0), 0, NULL, p2p_sim_now(s)),
        0);
    p2p_sim_flush(s, a.h);
    run_nodes(s, all, 3, p2p_sim_now(s) + 2 * LAT);
    p2p_sim_stats_get(s, &st1);
    T_CHECK(st1.nat_filtered > st0.nat_filtered); /* a still sends to the old mapping */

    T_EQ_INT(dial(s, &b, &c.addr), 0);
    run_nodes(s, all, 3, p2p_sim_now(s) + 1000000);
    T_CHECK(c.joined);
    T_CHECK(c.join_from.port != 5000);
    old.port = c.join_from.port;
    T_CHECK(p2p_addr_equal(&c.join_from, &old)); /* same public IP */
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    node_free(&c);
}

/* b (cone) dials a and hangs up; the mapping then sits idle for `idle` us after the last
 * datagram, and a dials b's public mapping. Returns 1 when b heard a; *port gets the port a
 * sees when b dials it again afterwards. */
static int expiry_run(uint64_t idle, uint16_t *port)
{
    p2p_sim *s = nat_sim(7);
    static struct node a, b;
    struct node *all[2] = {&a, &b};
    p2p_addr to;
    p2p_sim_stats st;
    uint64_t last = 0, sent = 0, before;
    int heard;

    *port = 0;
    if (s == NULL) return 0;
    T_EQ_INT(node_new(&a, s, 1), 0);
    T_EQ_INT(node_new_nat(&b, s, 2, 5000, P2P_SIM_NAT_CONE), 0);
    T_EQ_INT(dial(s, &b, &a.addr), 0);
    run_nodes(s, all, 2, 1000000);
    T_CHECK(a.joined && b.joined);
    T_EQ_INT(p2p_peer_disconnect(b.h, b.peer, p2p_sim_now(s)), 0);
    p2p_sim_flush(s, b.h);
    /* Let the goodbye finish, noting when the last datagram left. */
    while (p2p_sim_now(s) < 10000000) {
        run_nodes(s, all, 2, p2p_sim_now(s) + 1000);
        p2p_sim_stats_get(s, &st);
        if (st.sent != sent) {
            sent = st.sent;
            last = p2p_sim_now(s);
        }
    }
    T_EQ_INT(st.in_flight, 0);
    run_nodes(s, all, 2, last + LAT + idle);
    p2p_sim_stats_get(s, &st);
    T_EQ_INT(st.sent, sent); /* really idle */

    a.joined = b.joined = 0;
    before = received(&b);
    to = public_at(s, &b, 5000);
    T_EQ_INT(dial(s, &a, &to), 0);
    run_nodes(s, all, 2, p2p_sim_now(s) + 1000000);
    heard = received(&b) > before;
    if (!heard) {
        a.joined = 0;
        T_EQ_INT(dial(s, &b, &a.addr), 0);
        run_nodes(s, all, 2, p2p_sim_now(s) + 1000000);
        T_CHECK(a.joined);
        *port = a.join_from.port;
    }
    p2p_sim_free(s);
    node_free(&a);
    node_free(&b);
    return heard;
}

static void test_nat_expiry(void)
{
    uint16_t port;

    /* Just before the timeout the permission still holds (the first INIT arrives LAT after
     * it is sent, so it must leave at least LAT early). */
    T_CHECK(expiry_run(P2P_SIM_NAT_IDLE_US - 2 * LAT, &port));
    /* Just after, it is gone; a new mapping takes the same port again. */
    T_CHECK(!expiry_run(P2P_SIM_NAT_IDLE_US, &port));
    T_EQ_INT(port, 5000);
}

/* A busy run with both NAT kinds, loss, jitter and a rebind; returns its stats. */
static void nat_busy_run(uint64_t seed, p2p_sim_stats *st, uint64_t *joins)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    static struct node n[6];
    struct node *all[6];
    static const int kind[6] = {P2P_SIM_NAT_NONE, P2P_SIM_NAT_CONE,      P2P_SIM_NAT_SYMMETRIC,
                                P2P_SIM_NAT_CONE, P2P_SIM_NAT_SYMMETRIC, P2P_SIM_NAT_NONE};
    size_t i;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = seed;
    cfg.latency_us = 15000;
    cfg.jitter_us = 5000;
    cfg.loss = 0.05;
    cfg.reorder = 0.05;
    memset(st, 0, sizeof *st);
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    if (s == NULL) return;
    digest_start(s);
    for (i = 0; i < 6; i++) {
        all[i] = &n[i];
        T_EQ_INT(node_new_nat(&n[i], s, (uint8_t)(i + 1), 0, kind[i]), 0);
    }
    for (i = 1; i < 5; i++) {
        T_EQ_INT(dial(s, &n[i], &n[0].addr), 0);
        T_EQ_INT(dial(s, &n[i], &n[5].addr), 0);
    }
    run_nodes(s, all, 6, 3000000);
    T_EQ_INT(p2p_sim_rebind(s, n[1].h), 0);
    T_EQ_INT(p2p_sim_rebind(s, n[2].h), 0);
    run_nodes(s, all, 6, 20000000);
    p2p_sim_stats_get(s, st);
    for (i = 0; i < 6; i++) {
        joins[2 * i] = n[i].joined_at;
        joins[2 * i + 1] = n[i].join_ports; /* which mappings the peers saw */
        node_free(&n[i]);
    }
    p2p_sim_free(s);
}

static void test_nat_determinism(void)
{
    p2p_sim_stats st1, st2, st3;
    uint64_t j1[12], j2[12], j3[12];

    nat_busy_run(11, &st1, j1);
    nat_busy_run(11, &st2, j2);
    nat_busy_run(12, &st3, j3);
    T_CHECK(st1.delivered > 0 && st1.nat_filtered > 0 && st1.lost > 0);
    T_EQ_MEM(&st1, &st2, sizeof st1);
    T_EQ_MEM(j1, j2, sizeof j1);
    T_CHECK(memcmp(&st1, &st3, sizeof st1) != 0);
}

/* ---- access links --------------------------------------------------------------------- */

/* A link that does nothing changes nothing: a busy run between two hosts (loss, duplicates,
 * reordering) gives the same fingerprint, to the byte and the microsecond, with no links and
 * with links of rate, delay and loss 0 on both; so links draw no randomness they do not need.
 * With several hosts sending at once the network model's draws happen as datagrams leave the
 * up links, in another order than without links: that run is only checked to repeat itself.
 * (When links were added, both runs also matched the fingerprints of the simulator before
 * them.) */
static void test_link_none_unchanged(void)
{
    static struct node a, b;
    p2p_sim_stats st;
    uint64_t h[3][2], joins[12];

    for (int run = 0; run < 3; run++) {
        neutral_links = run > 0;
        h[run][0] = h[run][1] = UINT64_C(0xcbf29ce484222325);
        run_digest = &h[run][0];
        T_EQ_INT(faulty_run(7, &a, &b, &st), 0);
        node_free(&a);
        node_free(&b);
        run_digest = &h[run][1];
        nat_busy_run(11, &st, joins);
    }
    run_digest = NULL;
    neutral_links = 0;
    T_EQ_INT(h[1][0], h[0][0]);
    T_EQ_INT(h[2][0], h[0][0]);
    T_EQ_INT(h[2][1], h[1][1]);
    T_CHECK(h[0][0] != h[0][1]);
}

/* Datagrams injected from a to b, numbered; the tap notes when each one arrived. */
#define LINK_MAX_PKTS 800000
struct link_run {
    p2p_sim *s;
    struct node a, b;
    uint64_t *at; /* arrival time of datagram i, or 0 */
    uint64_t delivered, bytes, first, last;
};

static void link_tap(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *data,
                     size_t len)
{
    struct link_run *r = (struct link_run *)ud;
    uint32_t i;

    (void)to;
    if (len < 4 || !p2p_addr_equal(from, &r->a.addr)) return;
    i = tnet_msg_index(data);
    if (i >= LINK_MAX_PKTS) return;
    r->at[i] = p2p_sim_now(r->s);
    if (r->delivered++ == 0) r->first = r->at[i];
    r->last = r->at[i];
    r->bytes += len + P2P_SIM_LINK_OVERHEAD;
}

static int link_open(struct link_run *r, uint64_t seed, uint64_t latency_us)
{
    p2p_sim_config cfg;

    memset(r, 0, sizeof *r);
    memset(&cfg, 0, sizeof cfg);
    cfg.seed = seed;
    cfg.latency_us = latency_us;
    r->at = calloc(LINK_MAX_PKTS, sizeof *r->at);
    if (r->at == NULL || p2p_sim_new(&r->s, &cfg) != 0 || node_new(&r->a, r->s, 1) != 0 ||
        node_new(&r->b, r->s, 2) != 0)
        return -1;
    p2p_sim_set_tap(r->s, link_tap, r);
    return 0;
}

static void link_close(struct link_run *r)
{
    p2p_sim_free(r->s);
    node_free(&r->a);
    node_free(&r->b);
    free(r->at);
}

/* Steps to virtual time t (the hosts' own timers run; their events are not needed). */
static void link_run_to(struct link_run *r, uint64_t t)
{
    p2p_event ev;

    while (p2p_sim_now(r->s) < t) {
        (void)p2p_sim_step(r->s, t);
        while (p2p_host_next_event(r->a.h, &ev)) {
        }
        while (p2p_host_next_event(r->b.h, &ev)) {
        }
    }
}

/* Injects datagram i of len bytes from a to b now. */
static int link_send(struct link_run *r, uint32_t i, size_t len)
{
    uint8_t buf[P2P_SIM_PATH_MTU];

    memset(buf, 0xee, len);
    buf[0] = (uint8_t)i;
    buf[1] = (uint8_t)(i >> 8);
    buf[2] = (uint8_t)(i >> 16);
    buf[3] = (uint8_t)(i >> 24);
    return p2p_sim_inject(r->s, r->a.h, &r->b.addr, buf, len);
}

/* Offers `count` datagrams of len bytes from time `start`, paced at offer_bps (in integer
 * microseconds from the start, so the pace itself does not drift). */
static void link_offer(struct link_run *r, uint32_t first, uint32_t count, size_t len,
                       uint64_t start, uint64_t offer_bps)
{
    uint64_t wire_ubits = (len + P2P_SIM_LINK_OVERHEAD) * UINT64_C(8000000);
    uint32_t k;

    for (k = 0; k < count; k++) {
        link_run_to(r, start + (uint64_t)k * wire_ubits / offer_bps);
        T_EQ_INT(link_send(r, first + k, len), 0);
    }
}

static p2p_sim_link link_rate(uint64_t rate_bps, uint64_t queue_bytes, uint64_t delay_us)
{
    p2p_sim_link l;

    memset(&l, 0, sizeof l);
    l.rate_bps = rate_bps;
    l.queue_bytes = queue_bytes;
    l.delay_us = delay_us;
    return l;
}

/* A minute at 100 Mbit/s, offered 110: the link never idles, so its output is exactly the
 * rate (the last datagram leaves at the exact microsecond of the whole volume at 100 Mbit/s),
 * the default queue (one 100 ms BDP) fills but never overflows, and the rest is dropped. */
static void test_link_rate(void)
{
    static struct link_run r;
    p2p_sim_link l = link_rate(100000000, 0, 0);
    p2p_sim_link_stats st;
    const uint64_t latency = 20000, seconds = 60, len = 1200, wire = len + 28;
    const uint32_t offered = (uint32_t)(seconds * 110000000 / 8 / wire);
    double rate;

    T_EQ_INT(link_open(&r, 1, latency), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    link_offer(&r, 0, offered, len, 0, 110000000);
    link_run_to(&r, (seconds + 2) * 1000000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_UP, &st), 0);
    T_EQ_INT(st.packets, r.delivered);
    T_EQ_INT(st.bytes, r.delivered * wire);
    T_EQ_INT(st.packets + st.queue_drops, offered);
    T_EQ_INT(st.loss_drops, 0);
    T_EQ_INT(r.first, latency + (wire * 8 + 99) / 100); /* 98.24 us, rounded up */
    T_EQ_INT(r.last, latency + (r.bytes * 8 * 1000000 + 99999999) / 100000000);
    rate = (double)r.bytes * 8 / ((double)(r.last - latency) / 1e6);
    printf("  100 Mbit/s link, offered 110: %.4f Mbit/s out over %.3f s, %llu of %u dropped, "
           "queue peak %llu B, queueing delay max %.3f ms\n",
           rate / 1e6, (double)(r.last - latency) / 1e6, (unsigned long long)st.queue_drops,
           (unsigned)offered, (unsigned long long)st.queue_peak_bytes,
           (double)st.queue_delay_max_us / 1000);
    T_CHECK(fabs(rate / 100e6 - 1) < 0.01);
    T_CHECK(st.queue_peak_bytes <= 1250000 && st.queue_peak_bytes > 1250000 - wire);
    /* 10 of every 110 offered are dropped once the queue is full (after about 1.1 s). */
    T_CHECK(st.queue_drops > offered / 11 - offered / 100 && st.queue_drops < offered / 11);
    /* A full queue is 100 ms of the rate. */
    T_CHECK(st.queue_delay_max_us > 99000 && st.queue_delay_max_us <= 100000);
    link_close(&r);
}

/* Each datagram waits the backlog ahead of it divided by the rate; drop-tail at the limit. */
static void test_link_queue(void)
{
    static struct link_run r;
    p2p_sim_link l = link_rate(1000000, 5000, 2000); /* 1 Mbit/s: 1000 B take 8 ms */
    p2p_sim_link_stats st;
    uint32_t i;

    T_EQ_INT(link_open(&r, 2, 0), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    for (i = 0; i < 10; i++) T_EQ_INT(link_send(&r, i, 972), 0); /* 1000 B on the link */
    /* At 20 ms, 2.5 datagrams wait (2500 B): 20 ms of backlog for the next one. */
    link_run_to(&r, 20000);
    T_EQ_INT(link_send(&r, 10, 972), 0);
    link_run_to(&r, 200000);
    for (i = 0; i < 5; i++) T_EQ_INT(r.at[i], 8000 * (i + 1) + 2000);
    for (i = 5; i < 10; i++) T_EQ_INT(r.at[i], 0); /* the queue held 5000 B: dropped */
    T_EQ_INT(r.at[10], 20000 + 20000 + 8000 + 2000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_UP, &st), 0);
    T_EQ_INT(st.packets, 6);
    T_EQ_INT(st.bytes, 6000);
    T_EQ_INT(st.queue_drops, 5);
    T_EQ_INT(st.queue_peak_bytes, 5000);
    T_EQ_INT(st.queue_delay_max_us, 32000);
    T_EQ_INT(st.queue_delay_sum_us, 8000 * (0 + 1 + 2 + 3 + 4) + 20000);
    link_close(&r);
}

/* The UP link, the network, then the DOWN link entered on arrival; clearing; validation. */
static void test_link_path(void)
{
    static struct link_run r;
    p2p_sim_link up = link_rate(0, 0, 5000), down = link_rate(1000000, 0, 3000), bad;
    p2p_sim_link_stats st;
    p2p_sim_stats ss;
    struct node c;

    T_EQ_INT(link_open(&r, 3, 10000), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &up), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.b.h, P2P_SIM_DOWN, &down), 0);
    T_EQ_INT(link_send(&r, 0, 972), 0);
    T_EQ_INT(link_send(&r, 1, 972), 0);
    link_run_to(&r, 14999);
    p2p_sim_stats_get(r.s, &ss);
    T_EQ_INT(ss.in_flight, 2);
    link_run_to(&r, 100000);
    /* 5 ms up, 10 ms network, then 8 ms each through the 1 Mbit/s down link, and 3 ms. */
    T_EQ_INT(r.at[0], 5000 + 10000 + 8000 + 3000);
    T_EQ_INT(r.at[1], 5000 + 10000 + 16000 + 3000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.b.h, P2P_SIM_DOWN, &st), 0);
    T_EQ_INT(st.packets, 2);
    T_EQ_INT(st.queue_delay_max_us, 8000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_UP, &st), 0);
    T_EQ_INT(st.packets, 2);
    T_EQ_INT(st.queue_delay_max_us, 0);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_DOWN, &st), 0);
    T_EQ_INT(st.packets, 0);

    /* Cleared, the links add nothing; their counters stay. */
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, NULL), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.b.h, P2P_SIM_DOWN, NULL), 0);
    T_EQ_INT(link_send(&r, 2, 972), 0);
    link_run_to(&r, 200000);
    T_EQ_INT(r.at[2], 100000 + 10000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.b.h, P2P_SIM_DOWN, &st), 0);
    T_EQ_INT(st.packets, 2);

    /* A default link is given to the hosts attached afterwards. */
    T_EQ_INT(p2p_sim_set_default_link(r.s, P2P_SIM_DOWN, &down), 0);
    T_EQ_INT(node_new(&c, r.s, 3), 0);
    T_EQ_INT(p2p_sim_inject(r.s, r.a.h, &c.addr, (const uint8_t *)"abcd", 4), 0);
    link_run_to(&r, 300000);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, c.h, P2P_SIM_DOWN, &st), 0);
    T_EQ_INT(st.packets, 1);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_DOWN, &st), 0);
    T_EQ_INT(st.packets, 0);

    /* Validation. */
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, 2, &up), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_set_link(r.s, NULL, P2P_SIM_UP, &up), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, -1, &st), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_set_default_link(r.s, 2, NULL), P2P_ERR_INVALID);
    bad = up;
    bad.loss = 1.01;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    bad = up;
    bad.burst_leave = NAN;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    bad = up;
    bad.burst_loss = -0.5;
    T_EQ_INT(p2p_sim_set_default_link(r.s, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    bad = up;
    bad.rate_bps = P2P_SIM_LINK_MAX_RATE + 1;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    bad = up;
    bad.queue_bytes = P2P_SIM_LINK_MAX_QUEUE + 1;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    bad = up;
    bad.delay_us = UINT64_MAX;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &bad), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_inject(r.s, r.a.h, &c.addr, (const uint8_t *)"abcd", P2P_SIM_PATH_MTU + 1),
             P2P_ERR_TOO_BIG);
    p2p_sim_detach(r.s, c.h);
    T_EQ_INT(p2p_sim_set_link(r.s, c.h, P2P_SIM_UP, &up), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, c.h, P2P_SIM_DOWN, &st), P2P_ERR_INVALID);
    T_EQ_INT(p2p_sim_inject(r.s, c.h, &r.a.addr, (const uint8_t *)"abcd", 4), P2P_ERR_INVALID);
    node_free(&c);
    link_close(&r);
}

/* Loss on a link with no rate limit: `n` datagrams 100 us apart; returns the loss rate and
 * the mean length of a run of consecutive losses. */
static double loss_run(const p2p_sim_link *l, uint32_t n, double *mean_run)
{
    static struct link_run r;
    p2p_sim_link_stats st;
    uint64_t lost = 0, runs = 0;
    uint32_t i;

    T_EQ_INT(link_open(&r, 4, 1000), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, l), 0);
    for (i = 0; i < n; i++) {
        link_run_to(&r, (uint64_t)i * 100);
        T_EQ_INT(link_send(&r, i, 100), 0);
    }
    link_run_to(&r, (uint64_t)n * 100 + 10000);
    for (i = 0; i < n; i++) {
        if (r.at[i] != 0) continue;
        lost++;
        if (i == 0 || r.at[i - 1] != 0) runs++;
    }
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_UP, &st), 0);
    T_EQ_INT(st.loss_drops, lost);
    T_EQ_INT(st.packets, n - lost);
    T_EQ_INT(st.queue_drops, 0);
    link_close(&r);
    *mean_run = runs > 0 ? (double)lost / (double)runs : 0;
    return (double)lost / n;
}

/* Gilbert-Elliott loss comes in bursts at the expected long-run rate; random loss of the same
 * rate does not. */
static void test_link_burst_loss(void)
{
    p2p_sim_link l;
    const uint32_t n = 100000;
    double ge, ge_run, iid, iid_run, want;

    memset(&l, 0, sizeof l);
    l.burst_enter = 0.01;
    l.burst_leave = 0.25; /* bad spells of 4 datagrams on average */
    l.burst_loss = 0.8;
    want = (0.25 * 0 + 0.01 * 0.8) / (0.01 + 0.25); /* 3.08% */
    ge = loss_run(&l, n, &ge_run);
    memset(&l, 0, sizeof l);
    l.loss = want;
    iid = loss_run(&l, n, &iid_run);
    printf("  Gilbert-Elliott: %.3f%% lost (want %.3f%%), mean burst %.2f; random: %.3f%%, "
           "mean burst %.2f\n",
           ge * 100, want * 100, ge_run, iid * 100, iid_run);
    T_CHECK(fabs(ge / want - 1) < 0.15);
    T_CHECK(fabs(iid / want - 1) < 0.05);
    /* In a bad spell the next datagram is lost with about 0.75 * 0.8 = 0.6: runs of 2.5. */
    T_CHECK(ge_run > 2.0 && ge_run < 3.0);
    T_CHECK(iid_run < 1.1);
}

/* A rate change mid-run: what is queued keeps its departure times, what comes after queues
 * behind it at the new rate; a saturated link's output follows the new rate. */
static void test_link_set_midrun(void)
{
    static struct link_run r;
    p2p_sim_link l = link_rate(1000000, 0, 0);
    p2p_sim_link_stats st;
    uint64_t before = 0, after = 0;
    uint32_t i;
    double r1, r2;

    T_EQ_INT(link_open(&r, 5, 0), 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    for (i = 0; i < 3; i++) T_EQ_INT(link_send(&r, i, 972), 0);
    link_run_to(&r, 1000);
    l.rate_bps = 8000000; /* 1 ms a datagram */
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    T_EQ_INT(link_send(&r, 3, 972), 0);
    link_run_to(&r, 100000);
    T_EQ_INT(r.at[0], 8000);
    T_EQ_INT(r.at[1], 16000);
    T_EQ_INT(r.at[2], 24000);
    T_EQ_INT(r.at[3], 25000);
    link_close(&r);

    /* 10 Mbit/s offered 12 for 2 s, then dropped to 2 Mbit/s for 3 s. */
    T_EQ_INT(link_open(&r, 6, 0), 0);
    l = link_rate(10000000, 0, 0);
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    link_offer(&r, 0, 2442, 1200, 0, 12000000); /* 2 s */
    link_run_to(&r, 2000000);
    l.rate_bps = 2000000;
    T_EQ_INT(p2p_sim_set_link(r.s, r.a.h, P2P_SIM_UP, &l), 0);
    link_offer(&r, 2442, 3663, 1200, 2000000, 12000000); /* 3 s more */
    link_run_to(&r, 6000000);
    for (i = 0; i < 2442 + 3663; i++) {
        if (r.at[i] >= 500000 && r.at[i] < 2000000) before += 1228;
        if (r.at[i] >= 3500000 && r.at[i] < 5000000) after += 1228;
    }
    r1 = (double)before * 8 / 1.5;
    r2 = (double)after * 8 / 1.5;
    printf("  rate drop 10 -> 2 Mbit/s: %.3f then %.3f Mbit/s\n", r1 / 1e6, r2 / 1e6);
    T_CHECK(fabs(r1 / 10e6 - 1) < 0.01);
    T_CHECK(fabs(r2 / 2e6 - 1) < 0.01);
    T_EQ_INT(p2p_sim_link_stats_get(r.s, r.a.h, P2P_SIM_UP, &st), 0);
    /* the 125000 B queue of 10 Mbit/s was full; at 2 Mbit/s the limit is 25000 B */
    T_CHECK(st.queue_peak_bytes <= 125000 && st.queue_peak_bytes > 125000 - 1228);
    link_close(&r);
}

/* Real hosts through a 2 Mbit/s link: every message arrives, the goodput stays under the
 * rate, and a second run with the same seed is the same to the microsecond. */
static uint64_t hosts_link_run(uint64_t seed, struct node *a, struct node *b,
                               p2p_sim_link_stats *st)
{
    p2p_sim_config cfg;
    p2p_sim *s = NULL;
    p2p_sim_link l = link_rate(2000000, 0, 0);
    uint8_t buf[4096];
    uint32_t i;
    uint64_t start = 0;

    memset(&cfg, 0, sizeof cfg);
    cfg.seed = seed;
    cfg.latency_us = 20000;
    memset(st, 0, sizeof *st);
    T_EQ_INT(p2p_sim_new(&s, &cfg), 0);
    T_EQ_INT(p2p_sim_set_default_link(s, P2P_SIM_UP, &l), 0);
    T_EQ_INT(node_new(a, s, 1), 0);
    T_EQ_INT(node_new(b, s, 2), 0);
    T_EQ_INT(p2p_host_connect(a->h, &b->addr, p2p_host_id(b->h), 0, &a->peer), 0);
    p2p_sim_flush(s, a->h);
    run_until(s, a, b, both_joined, 10000000);
    T_CHECK(both_joined(a, b));
    start = p2p_sim_now(s);
    for (i = 0; i < NMSG; i++) {
        tnet_msg_fill(&msgs, buf, i);
        T_EQ_INT(p2p_peer_send(a->h, a->peer, MSG_TYPE, buf, tnet_msg_len(&msgs, i), 0, NULL,
                               p2p_sim_now(s)),
                 0);
    }
    p2p_sim_flush(s, a->h);
    run_until(s, a, b, all_arrived, start + 60000000);
    T_EQ_INT(p2p_sim_link_stats_get(s, a->h, P2P_SIM_UP, st), 0);
    p2p_sim_free(s);
    return start;
}

static void test_link_hosts(void)
{
    static struct node a1, b1, a2, b2;
    p2p_sim_link_stats st1, st2;
    uint64_t start, payload = 0;
    uint32_t i;
    double goodput;

    start = hosts_link_run(9, &a1, &b1, &st1);
    T_EQ_INT(b1.next, NMSG);
    T_EQ_INT(b1.bad, 0);
    for (i = 0; i < NMSG; i++) payload += tnet_msg_len(&msgs, i);
    goodput = (double)payload * 8 / ((double)(b1.arrival[NMSG - 1] - start) / 1e6);
    printf("  %u messages, %llu B through 2 Mbit/s: %.3f Mbit/s goodput, link sent %llu B, "
           "%llu queue drops, queue peak %llu B\n",
           (unsigned)NMSG, (unsigned long long)payload, goodput / 1e6,
           (unsigned long long)st1.bytes, (unsigned long long)st1.queue_drops,
           (unsigned long long)st1.queue_peak_bytes);
    T_CHECK(goodput < 2e6);
    T_CHECK(st1.bytes > payload);
    T_CHECK(st1.queue_peak_bytes <= 25000); /* default: 100 ms of 2 Mbit/s */
    hosts_link_run(9, &a2, &b2, &st2);
    T_EQ_MEM(b1.arrival, b2.arrival, sizeof b1.arrival);
    T_EQ_MEM(&st1, &st2, sizeof st1);
    node_free(&a1);
    node_free(&b1);
    node_free(&a2);
    node_free(&b2);
}

int main(void)
{
    if (p2p_init() != 0) {
        fprintf(stderr, "p2p_init failed\n");
        return 1;
    }
    T_RUN(test_config_validation);
    T_RUN(test_addresses);
    T_RUN(test_host_seeds);
    T_RUN(test_total_loss);
    T_RUN(test_latency_exact);
    T_RUN(test_detach);
    T_RUN(test_reliable_under_faults);
    T_RUN(test_fault_rates);
    T_RUN(test_many_hosts);
    T_RUN(test_nat_addresses);
    T_RUN(test_nat_cone_dials_public);
    T_RUN(test_nat_unsolicited);
    T_RUN(test_nat_cone_punch);
    T_RUN(test_nat_symmetric);
    T_RUN(test_nat_rebind);
    T_RUN(test_nat_expiry);
    T_RUN(test_nat_determinism);
    T_RUN(test_link_none_unchanged);
    T_RUN(test_link_rate);
    T_RUN(test_link_queue);
    T_RUN(test_link_path);
    T_RUN(test_link_burst_loss);
    T_RUN(test_link_set_midrun);
    T_RUN(test_link_hosts);
    return t_summary("test_sim");
}
