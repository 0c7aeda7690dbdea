/* test_nat.c - NAT traversal with real hosts on the simulator (docs/PROTOCOL.md section 8):
 * introductions through a mediator and hole punching behind cone NATs, the end-to-end
 * encrypted relay behind symmetric NATs and its caps, failed introductions, the upgrade of a
 * relayed session to a direct path, introductions inside a mesh, roaming across a NAT
 * rebinding, and, with a hand-driven pair of hosts, the anti-amplification limit and the
 * refusal of forged or unauthenticated moves. */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "simnet.h"
#include "tnet.h"

#include <stdlib.h>

#define MAXN 8
#define MAXMSG 4096
#define MARKER_LEN 32
#define EPOCH_US UINT64_C(1700000000000000)
#define SEC UINT64_C(1000000)

/* ---- nodes on the sim ------------------------------------------------------------------ */

typedef struct node {
    p2p_host *h;
    p2p_identity id;
    p2p_addr addr; /* bound (private behind a NAT) */
    int joins, leaves, errors;
    char err[256]; /* the last ERROR text */
    p2p_peer_handle err_peer;
    simnet_msgs m;              /* the marker messages it received and the replies to its own */
    uint64_t reply_seq[MAXMSG]; /* the replies' sequence numbers, in arrival order */
} node;

static p2p_sim *sim;
static node nodes[MAXN];
static int nn;
static uint8_t marker[MARKER_LEN];
static int faults; /* 1: the sim loses, reorders and duplicates a few datagrams */

static void sim_start(uint64_t seed)
{
    p2p_sim_config c;
    simnet_sim_config(&c, seed);
    if (faults) {
        c.loss = 0.03;
        c.reorder = 0.02;
        c.duplicate = 0.01;
    }
    T_EQ_INT(p2p_sim_new(&sim, &c), 0);
    nn = 0;
    memset(nodes, 0, sizeof nodes);
    for (int i = 0; i < MARKER_LEN; i++)
        marker[i] = (uint8_t)(seed * 131 + (uint64_t)i * 71 + 0x5a);
}

static uint64_t now(void)
{
    return p2p_sim_now(sim);
}

/* A host on the sim; cfg_in (may be NULL) supplies the relay and mediator settings. */
static node *add_node(int nat, const p2p_config *cfg_in)
{
    node *n = &nodes[nn++];
    tnet_identity(&n->id, 0x4e, (uint8_t)nn);
    p2p_config c;
    if (cfg_in)
        c = *cfg_in;
    else
        p2p_config_init(&c);
    c.unix_us = EPOCH_US + now();
    T_EQ_INT(tnet_sim_host(sim, &c, &n->id, 0, nat, &n->h, &n->addr), 0);
    p2p_host_add_address(n->h, &n->addr, now());
    return n;
}

static node *add_mediator(const p2p_config *base)
{
    p2p_config c;
    if (base)
        c = *base;
    else
        p2p_config_init(&c);
    c.mediator = 1;
    return add_node(P2P_SIM_NAT_NONE, &c);
}

/* Every message carries the marker and its index; the receiver checks the order and echoes
 * the whole message back as the reply. */
static void on_event(node *n, const p2p_event *ev)
{
    switch (ev->type) {
    case P2P_EV_JOIN: n->joins++; break;
    case P2P_EV_LEAVE: n->leaves++; break;
    case P2P_EV_ERROR:
        n->errors++;
        n->err_peer = ev->peer;
        snprintf(n->err, sizeof n->err, "%.*s", (int)ev->len, (const char *)ev->data);
        break;
    case P2P_EV_MESSAGE:
    case P2P_EV_REPLY:
        simnet_on_msg(sim, n->h, ev, &n->m, marker, MARKER_LEN, n->reply_seq, MAXMSG, now());
        break;
    default: break;
    }
}

static void drain_events(void)
{
    p2p_event ev;
    for (int i = 0; i < nn; i++)
        while (nodes[i].h && p2p_host_next_event(nodes[i].h, &ev)) on_event(&nodes[i], &ev);
}

static void run_for(uint64_t us)
{
    tnet_run_for(sim, us, drain_events);
}

static p2p_stats stats_of(const node *n)
{
    return simnet_stats(n->h);
}

static p2p_peer_info info_of(const node *n, const node *other)
{
    return simnet_info(n->h, other->id.ed_pk);
}

static int connected(const node *n, const node *other)
{
    return simnet_connected(n->h, other->id.ed_pk);
}

/* Runs until a and b hold a session with each other, at most `limit`. */
static int run_until_connected(node *a, node *b, uint64_t limit)
{
    uint64_t end = now() + limit;
    while (now() < end && !(connected(a, b) && connected(b, a))) run_for(50000);
    return connected(a, b) && connected(b, a);
}

static void join(node *n, const node *to)
{
    T_EQ_INT(p2p_host_connect(n->h, &to->addr, to->id.ed_pk, now(), NULL), 0);
    p2p_sim_flush(sim, n->h);
}

static void connect_via(node *a, const node *b, const node *via, p2p_peer_handle *out)
{
    T_EQ_INT(p2p_host_connect_via(a->h, b->id.ed_pk, &via->addr, now(), out), 0);
    p2p_sim_flush(sim, a->h);
}

static void sim_stop(void)
{
    TNET_FREE_NODES(nodes, nn);
    p2p_sim_free(sim);
    sim = NULL;
}

/* ---- message streams --------------------------------------------------------------------- */

typedef struct stream {
    node *from, *to;
    uint64_t seq[MAXMSG]; /* the ordinal of each message sent */
    int sent;
    size_t size; /* message length: the marker, the index, then filler */
} stream;

static int stream_send(stream *s)
{
    size_t len = s->size < MARKER_LEN + 4 ? MARKER_LEN + 4 : s->size;
    if (s->sent >= MAXMSG) return -1;
    int rc = simnet_send_marked(sim, s->from->h, s->to->id.ed_pk, marker, MARKER_LEN,
                                (uint32_t)s->sent, len, &s->seq[s->sent]);
    if (rc == 0) s->sent++;
    return rc;
}

/* Sends `count` messages, one every `gap` us, running the sim in between; stops at the
 * first refusal (the check then fails once, not count times). */
static void stream_run(stream *s, int count, uint64_t gap)
{
    for (int i = 0; i < count; i++) {
        int rc = stream_send(s);
        T_EQ_INT(rc, 0);
        if (rc != 0) return;
        run_for(gap);
    }
}

/* Runs until every message sent got its reply, at most `limit`. */
static void stream_finish(stream *s, uint64_t limit)
{
    uint64_t end = now() + limit;
    while (now() < end && s->from->m.nreplies < s->sent) run_for(100000);
}

/* Every message got exactly one reply, in the order sent, and arrived once, in order. */
static void stream_check(const stream *s, int want)
{
    simnet_msgs_check(s->sent, s->seq, &s->from->m, s->from->reply_seq, &s->to->m, want);
}

/* ---- the tap: what crosses the wire ------------------------------------------------------ */

typedef struct tapstate {
    uint64_t datagrams, marker_hits, via_relay;
    p2p_addr relay;
    /* the latest source address seen from one public IP (roaming) */
    p2p_addr watch_ip, watch_last;
    int watch_seen;
} tapstate;

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

static void tap(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *data, size_t len)
{
    tapstate *t = ud;
    t->datagrams++;
    if (contains(data, len, marker, MARKER_LEN)) t->marker_hits++;
    if (p2p_addr_equal(from, &t->relay) || p2p_addr_equal(to, &t->relay)) t->via_relay++;
    if (t->watch_ip.family && !memcmp(from->ip, t->watch_ip.ip, 4)) {
        t->watch_last = *from;
        t->watch_seen = 1;
    }
}

/* ---- scenarios --------------------------------------------------------------------------- */

/* A and B behind NATs of the given type, both registered at a public mediator M; A connects
 * to B by id through M. Leaves nodes[0..2] = M, A, B. */
static void pair_via_mediator(int nat, const p2p_config *mcfg, p2p_peer_handle *ph)
{
    node *m = add_mediator(mcfg);
    node *a = add_node(nat, NULL);
    node *b = add_node(nat, NULL);
    join(b, m);
    run_for(SEC);
    T_CHECK(connected(b, m));
    connect_via(a, b, m, ph);
    run_until_connected(a, b, 12 * SEC);
}

/* Cone NATs: the introduction makes a direct session that outlives the mediator. */
static void test_cone_direct_survives_mediator(void)
{
    sim_start(101);
    p2p_peer_handle ph = 0;
    pair_via_mediator(P2P_SIM_NAT_CONE, NULL, &ph);
    node *m = &nodes[0], *a = &nodes[1], *b = &nodes[2];
    T_CHECK(connected(a, b) && connected(b, a));
    T_EQ_INT(p2p_host_find(a->h, b->id.ed_pk), ph);
    T_EQ_INT(a->joins, 2); /* M, then B */
    T_EQ_INT(b->joins, 2); /* M, then A */
    T_EQ_INT(a->errors, 0);
    p2p_peer_info ia = info_of(a, b), ib = info_of(b, a);
    T_EQ_INT(ia.direct, 1);
    T_EQ_INT(ib.direct, 1);
    p2p_addr pub;
    p2p_sim_public_addr(sim, b->h, &pub);
    T_EQ_MEM(ia.address.ip, pub.ip, 4); /* B's NAT, not the mediator */
    T_EQ_INT(stats_of(m).introductions, 1);
    T_EQ_INT(stats_of(m).relayed_packets, 0);
    /* the mediator goes away */
    p2p_host_close(m->h, now());
    p2p_sim_flush(sim, m->h);
    run_for(SEC);
    p2p_sim_detach(sim, m->h);
    stream s = {.from = a, .to = b, .size = 200};
    stream_run(&s, 100, 20000);
    stream_finish(&s, 10 * SEC);
    stream_check(&s, 100);
    T_EQ_INT(info_of(a, b).direct, 1);
    sim_stop();
}

/* Symmetric NATs: punching cannot work, the mediator relays, and sees ciphertext only. */
static void symmetric_relayed(uint64_t seed, p2p_stats out[3], p2p_sim_stats *simst)
{
    sim_start(seed);
    tapstate t;
    memset(&t, 0, sizeof t);
    p2p_sim_set_tap(sim, tap, &t);
    p2p_peer_handle ph = 0;
    pair_via_mediator(P2P_SIM_NAT_SYMMETRIC, NULL, &ph);
    node *m = &nodes[0], *a = &nodes[1], *b = &nodes[2];
    t.relay = m->addr;
    T_CHECK(connected(a, b) && connected(b, a));
    T_EQ_INT(a->errors, 0);
    T_EQ_INT(info_of(a, b).direct, 0);
    T_EQ_INT(info_of(b, a).direct, 0);
    p2p_peer_info ia = info_of(a, b);
    T_CHECK(p2p_addr_equal(&ia.address, &m->addr)); /* the relay's address */
    stream s = {.from = a, .to = b, .size = 300};
    stream_run(&s, 100, 20000);
    stream_finish(&s, 10 * SEC);
    stream_check(&s, 100);
    T_CHECK(stats_of(m).relayed_packets > 0);
    T_EQ_INT(stats_of(m).introductions, 1);
    T_EQ_INT(info_of(a, b).direct, 0);
    /* the tap saw the traffic, through the relay, and the marker in none of it */
    T_CHECK(t.via_relay > 200);
    T_EQ_INT(t.marker_hits, 0);
    uint8_t plain[100]; /* the tap would have seen the marker in the clear */
    memset(plain, 0, sizeof plain);
    memcpy(plain + 50, marker, MARKER_LEN);
    tap(&t, &m->addr, &a->addr, plain, sizeof plain);
    T_EQ_INT(t.marker_hits, 1);
    for (int i = 0; i < 3 && out; i++) out[i] = stats_of(&nodes[i]);
    if (simst) p2p_sim_stats_get(sim, simst);
    p2p_sim_set_tap(sim, NULL, NULL);
    sim_stop();
}

static void test_symmetric_relayed(void)
{
    symmetric_relayed(202, NULL, NULL);
}

/* Both again on a network that loses, reorders and duplicates. */
static void test_cone_and_symmetric_with_faults(void)
{
    faults = 1;
    test_cone_direct_survives_mediator();
    symmetric_relayed(212, NULL, NULL);
    faults = 0;
}

/* The same seeds give the same run. */
static void test_determinism(void)
{
    p2p_stats one[3], two[3];
    p2p_sim_stats s1, s2;
    memset(one, 0, sizeof one);
    memset(two, 0, sizeof two);
    symmetric_relayed(303, one, &s1);
    symmetric_relayed(303, two, &s2);
    T_EQ_MEM(one, two, sizeof one);
    T_EQ_MEM(&s1, &s2, sizeof s1);
    T_CHECK(one[0].relayed_packets > 0);
}

/* A relay that refuses to relay: symmetric NATs cannot connect at all. */
static void test_relay_refused(void)
{
    sim_start(404);
    p2p_config mc;
    p2p_config_init(&mc);
    mc.no_relay = 1;
    p2p_peer_handle ph = 0;
    pair_via_mediator(P2P_SIM_NAT_SYMMETRIC, &mc, &ph);
    node *m = &nodes[0], *a = &nodes[1], *b = &nodes[2];
    run_for(15 * SEC);
    T_EQ_INT(a->errors, 1);
    T_EQ_INT(a->err_peer, ph);
    T_CHECK(strstr(a->err, "timed out") != NULL);
    T_EQ_INT(p2p_host_find(a->h, b->id.ed_pk), 0);
    T_EQ_INT(p2p_host_find(b->h, a->id.ed_pk), 0);
    T_EQ_INT(stats_of(a).peers, 1); /* the mediator only */
    T_EQ_INT(stats_of(m).introductions, 1);
    T_EQ_INT(stats_of(m).relayed_packets, 0);
    sim_stop();
}

/* relay_sessions = 1: the first pair is relayed, the second is not. */
static void test_relay_sessions_cap(void)
{
    sim_start(505);
    p2p_config mc;
    p2p_config_init(&mc);
    mc.relay_sessions = 1;
    p2p_peer_handle ph1 = 0, ph2 = 0;
    pair_via_mediator(P2P_SIM_NAT_SYMMETRIC, &mc, &ph1);
    node *m = &nodes[0], *a1 = &nodes[1], *b1 = &nodes[2];
    T_CHECK(connected(a1, b1));
    T_EQ_INT(info_of(a1, b1).direct, 0);
    node *a2 = add_node(P2P_SIM_NAT_SYMMETRIC, NULL);
    node *b2 = add_node(P2P_SIM_NAT_SYMMETRIC, NULL);
    join(b2, m);
    run_for(SEC);
    connect_via(a2, b2, m, &ph2);
    run_for(15 * SEC);
    T_EQ_INT(stats_of(m).introductions, 2);
    T_EQ_INT(a2->errors, 1);
    T_CHECK(strstr(a2->err, "timed out") != NULL);
    T_EQ_INT(p2p_host_find(a2->h, b2->id.ed_pk), 0);
    T_EQ_INT(p2p_host_find(b2->h, a2->id.ed_pk), 0);
    /* the first pair still flows */
    stream s = {.from = a1, .to = b1, .size = 100};
    stream_run(&s, 20, 20000);
    stream_finish(&s, 5 * SEC);
    stream_check(&s, 20);
    sim_stop();
}

/* relay_rate caps what the relay carries, all pairs together. */
static void test_relay_rate(void)
{
    const uint64_t rate = 20000;
    sim_start(606);
    p2p_config mc;
    p2p_config_init(&mc);
    mc.relay_rate = (uint32_t)rate;
    p2p_peer_handle ph = 0;
    pair_via_mediator(P2P_SIM_NAT_SYMMETRIC, &mc, &ph);
    node *m = &nodes[0], *a = &nodes[1], *b = &nodes[2];
    T_EQ_INT(info_of(a, b).direct, 0);
    stream s = {.from = a, .to = b, .size = 1000};
    /* bulk: keep about 64 KiB queued for 4 seconds */
    p2p_stats before = stats_of(m);
    uint64_t start = now(), window = 4 * SEC;
    while (now() - start < window) {
        while (info_of(a, b).bytes_queued < 65536 && s.sent < MAXMSG && stream_send(&s) == 0) {
        }
        run_for(10000);
    }
    p2p_stats after = stats_of(m);
    uint64_t bytes = after.relayed_bytes - before.relayed_bytes;
    printf("     relay_rate %llu B/s: %llu bytes relayed in %.1f s, %llu dropped\n",
           (unsigned long long)rate, (unsigned long long)bytes, (double)window / SEC,
           (unsigned long long)(after.relay_dropped - before.relay_dropped));
    T_CHECK(bytes <= rate * 11 / 10 * window / SEC + rate);
    T_CHECK(bytes >= rate * window / SEC / 2); /* the relay did carry a fair share */
    T_CHECK(after.relay_dropped > before.relay_dropped);
    T_CHECK(connected(a, b));
    sim_stop();
}

/* An id the mediator does not know, and a mediator that is not there. */
static void test_unknown_target_and_unreachable(void)
{
    sim_start(707);
    node *m = add_mediator(NULL);
    node *a = add_node(P2P_SIM_NAT_CONE, NULL);
    uint8_t stranger[P2P_ID_LEN];
    memset(stranger, 0x77, sizeof stranger);
    p2p_peer_handle ph = 0;
    T_EQ_INT(p2p_host_connect_via(a->h, stranger, &m->addr, now(), &ph), 0);
    p2p_sim_flush(sim, a->h);
    run_for(3 * SEC);
    T_EQ_INT(a->errors, 1);
    T_EQ_INT(a->err_peer, ph);
    T_CHECK(strstr(a->err, "not registered") != NULL);
    T_EQ_INT(p2p_host_find(a->h, stranger), 0);
    T_CHECK(connected(a, m)); /* the session with the mediator stays */

    /* nobody at that address */
    node *c = add_node(P2P_SIM_NAT_CONE, NULL);
    p2p_addr nowhere;
    p2p_addr_parse(&nowhere, "203.0.113.99:4000");
    T_EQ_INT(p2p_host_connect_via(c->h, stranger, &nowhere, now(), &ph), 0);
    p2p_sim_flush(sim, c->h);
    run_for(20 * SEC);
    T_EQ_INT(c->errors, 1);
    T_EQ_INT(c->err_peer, ph);
    printf("     unreachable mediator: \"%s\"\n", c->err);
    T_EQ_INT(p2p_host_find(c->h, stranger), 0);
    T_EQ_INT(stats_of(c).peers, 0);
    sim_stop();
}

/* A firewall between the NATs forces the relay; once lifted, the session moves to a direct
 * path in the middle of a stream of messages, losing and repeating none. */
static void test_upgrade_to_direct(void)
{
    sim_start(808);
    node *m = add_mediator(NULL);
    node *a = add_node(P2P_SIM_NAT_CONE, NULL);
    node *b = add_node(P2P_SIM_NAT_CONE, NULL);
    T_EQ_INT(p2p_sim_block(sim, a->h, b->h, 1), 0);
    join(b, m);
    run_for(SEC);
    p2p_peer_handle ph = 0;
    connect_via(a, b, m, &ph);
    T_CHECK(run_until_connected(a, b, 12 * SEC));
    T_EQ_INT(info_of(a, b).direct, 0);
    T_EQ_INT(info_of(b, a).direct, 0);
    run_for(2 * SEC); /* a few upgrade probes die at the firewall */
    T_EQ_INT(info_of(a, b).direct, 0);
    uint64_t relayed = stats_of(m).relayed_packets;
    T_CHECK(relayed > 0);
    uint64_t pc = stats_of(a).path_changes + stats_of(b).path_changes;
    stream s = {.from = a, .to = b, .size = 150};
    stream_run(&s, 10, 50000);
    T_EQ_INT(p2p_sim_block(sim, a->h, b->h, 0), 0);
    uint64_t lifted = now(), direct_at = 0;
    while (now() - lifted < 35 * SEC && s.sent < MAXMSG) {
        int rc = stream_send(&s);
        T_EQ_INT(rc, 0);
        if (rc != 0) break;
        run_for(50000);
        if (!direct_at && info_of(a, b).direct && info_of(b, a).direct) direct_at = now();
    }
    printf("     direct %.1f s after the firewall went, %d messages\n",
           direct_at ? (double)(direct_at - lifted) / SEC : -1.0, s.sent);
    stream_finish(&s, 10 * SEC);
    T_CHECK(direct_at != 0);
    T_EQ_INT(info_of(a, b).direct, 1);
    T_EQ_INT(info_of(b, a).direct, 1);
    T_CHECK(stats_of(a).path_changes + stats_of(b).path_changes > pc);
    stream_check(&s, s.sent);
    /* the relay is left behind */
    relayed = stats_of(m).relayed_packets;
    stream_run(&s, 20, 20000);
    stream_finish(&s, 5 * SEC);
    T_EQ_INT(stats_of(m).relayed_packets, relayed);
    stream_check(&s, s.sent);
    sim_stop();
}

/* A public genesis member and two NATed members that know only it: they find each other
 * through the mesh and the genesis introduces them. */
static void mesh_through_genesis(int nat, int want_direct)
{
    sim_start(909 + (uint64_t)nat);
    node *g = add_node(P2P_SIM_NAT_NONE, NULL);
    node *x = add_node(nat, NULL);
    node *y = add_node(nat, NULL);
    join(x, g);
    join(y, g);
    int ok = run_until_connected(x, y, 30 * SEC);
    T_CHECK(ok);
    run_for(3 * SEC); /* let a racing duplicate settle */
    T_CHECK(connected(x, y) && connected(y, x));
    T_EQ_INT(info_of(x, y).direct, want_direct);
    T_EQ_INT(info_of(y, x).direct, want_direct);
    T_CHECK(stats_of(g).introductions >= 1);
    T_EQ_INT(stats_of(g).relayed_packets > 0, !want_direct);
    T_EQ_INT(x->errors + y->errors, 0);
    stream s = {.from = x, .to = y, .size = 100};
    stream_run(&s, 30, 20000);
    stream_finish(&s, 5 * SEC);
    stream_check(&s, 30);
    sim_stop();
}

static void test_mesh_cone_direct(void)
{
    mesh_through_genesis(P2P_SIM_NAT_CONE, 1);
}
static void test_mesh_symmetric_relayed(void)
{
    mesh_through_genesis(P2P_SIM_NAT_SYMMETRIC, 0);
}

/* A NATed node sending to a public one: its NAT rebinds mid-transfer. The session follows it
 * to the new external port, and nothing is lost. */
static void test_roaming_rebind(void)
{
    sim_start(1010);
    tapstate t;
    memset(&t, 0, sizeof t);
    p2p_sim_set_tap(sim, tap, &t);
    node *p = add_node(P2P_SIM_NAT_NONE, NULL);
    node *a = add_node(P2P_SIM_NAT_CONE, NULL);
    p2p_sim_public_addr(sim, a->h, &t.watch_ip);
    join(a, p);
    T_CHECK(run_until_connected(a, p, 5 * SEC));
    p2p_peer_info before = info_of(p, a);
    T_EQ_MEM(before.address.ip, t.watch_ip.ip, 4);
    T_EQ_INT(before.address.port, a->addr.port); /* port preservation */
    uint64_t pc = stats_of(p).path_changes;
    stream s = {.from = a, .to = p, .size = 1000};
    stream_run(&s, 50, 10000);
    T_EQ_INT(p2p_sim_rebind(sim, a->h), 0);
    stream_run(&s, 150, 10000);
    stream_finish(&s, 10 * SEC);
    stream_check(&s, 200);
    p2p_peer_info after = info_of(p, a);
    T_CHECK(after.address.port != before.address.port);
    T_EQ_MEM(after.address.ip, t.watch_ip.ip, 4);
    T_CHECK(t.watch_seen && p2p_addr_equal(&after.address, &t.watch_last));
    T_CHECK(stats_of(p).path_changes >= pc + 1);
    /* and the other way: the public node's messages reach the new mapping */
    stream back = {.from = p, .to = a, .size = 500};
    stream_run(&back, 20, 10000);
    stream_finish(&back, 5 * SEC);
    stream_check(&back, 20);
    p2p_sim_set_tap(sim, NULL, NULL);
    sim_stop();
}

/* ---- a hand-driven pair: forged and unauthenticated moves ------------------------------- */

typedef struct wire {
    p2p_host *a, *b;
    p2p_identity ia, ib;
    p2p_addr aa, ba, x; /* A, B, and the attacker's address X */
    uint64_t t;
    node na, nb; /* event bookkeeping, reusing on_event without the sim */
    /* rewrite the source of the next DATA packet from A of this size into X */
    size_t forge_min, forge_max;
    int forged;
    size_t forged_len;
    int hold_a;           /* A's datagrams to B are lost while set */
    int hold_after_forge; /* ... from the forged packet on */
    uint64_t to_x_bytes, to_x_packets, from_x_bytes;
    int sent; /* messages A sent with wire_send() */
} wire;

static void wire_events(wire *w, p2p_host *h, node *n)
{
    p2p_event ev;
    while (p2p_host_next_event(h, &ev)) {
        if (ev.type == P2P_EV_MESSAGE || ev.type == P2P_EV_REPLY)
            simnet_on_msg(NULL, h, &ev, &n->m, marker, MARKER_LEN, n->reply_seq, MAXMSG, w->t);
        else
            on_event(n, &ev);
    }
}

/* Moves every queued datagram once; 1 when something moved. */
static int wire_pump(wire *w)
{
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    p2p_addr to;
    size_t len;
    int moved = 0;
    while ((len = p2p_host_next_datagram(w->a, &to, buf, sizeof buf)) > 0) {
        moved = 1;
        if (!p2p_addr_equal(&to, &w->ba) || w->hold_a) continue;
        if (!w->forged && w->forge_min && buf[0] == P2P_PKT_DATA && len >= w->forge_min &&
            len <= w->forge_max) {
            w->forged = 1; /* this one reaches B "from X", before any copy from A */
            w->forged_len = len;
            w->from_x_bytes += len;
            p2p_host_recv(w->b, &w->x, buf, len, w->t);
            w->hold_a = w->hold_after_forge;
            continue;
        }
        p2p_host_recv(w->b, &w->aa, buf, len, w->t);
    }
    while ((len = p2p_host_next_datagram(w->b, &to, buf, sizeof buf)) > 0) {
        moved = 1;
        if (p2p_addr_equal(&to, &w->x)) { /* X is a black hole: it never answers */
            w->to_x_bytes += len;
            w->to_x_packets++;
            continue;
        }
        if (p2p_addr_equal(&to, &w->aa)) p2p_host_recv(w->a, &w->ba, buf, len, w->t);
    }
    wire_events(w, w->a, &w->na);
    wire_events(w, w->b, &w->nb);
    return moved;
}

/* Advances time by `us`, delivering instantly and running timers as they fall due. */
static void wire_run(wire *w, uint64_t us)
{
    uint64_t end = w->t + us;
    for (;;) {
        while (wire_pump(w)) {
        }
        uint64_t ta = p2p_host_next_timeout(w->a), tb = p2p_host_next_timeout(w->b);
        uint64_t next = ta < tb ? ta : tb;
        if (next > end) break;
        if (next > w->t) w->t = next;
        p2p_host_on_timeout(w->a, w->t);
        p2p_host_on_timeout(w->b, w->t);
    }
    w->t = end;
}

static void wire_start(wire *w)
{
    memset(w, 0, sizeof *w);
    tnet_identity(&w->ia, 0x61, 0x61);
    tnet_identity(&w->ib, 0x61, 0x62);
    p2p_config c;
    p2p_config_init(&c);
    c.identity = &w->ia;
    c.seed = 11;
    p2p_host_new(&w->a, &c, 0);
    c.identity = &w->ib;
    c.seed = 12;
    p2p_host_new(&w->b, &c, 0);
    p2p_addr_parse(&w->aa, "192.0.2.1:4000");
    p2p_addr_parse(&w->ba, "192.0.2.2:4000");
    p2p_addr_parse(&w->x, "198.51.100.66:6666");
    T_EQ_INT(p2p_host_connect(w->a, &w->ba, w->ib.ed_pk, 0, NULL), 0);
    wire_run(w, SEC);
}

static void wire_stop(wire *w)
{
    p2p_host_free(w->a);
    p2p_host_free(w->b);
    p2p_identity_wipe(&w->ia);
    p2p_identity_wipe(&w->ib);
}

static p2p_addr wire_addr_of_a(wire *w)
{
    return simnet_info(w->b, w->ia.ed_pk).address;
}

/* Sends n messages from A to B (1000 bytes each, with replies), pumping between them. */
static void wire_send(wire *w, int n, uint64_t gap)
{
    uint8_t msg[1000];
    memset(msg, 0xcd, sizeof msg);
    memcpy(msg, marker, MARKER_LEN);
    for (int i = 0; i < n; i++) {
        p2p_put_u32(msg + MARKER_LEN, (uint32_t)w->sent++);
        p2p_peer_handle ph = p2p_host_find(w->a, w->ib.ed_pk);
        uint64_t seq;
        T_EQ_INT(p2p_peer_send(w->a, ph, 7, msg, sizeof msg, 1, &seq, w->t), 0);
        wire_run(w, gap);
    }
}

/* An on-path attacker rewrites the source of one genuine packet (of min..max bytes): B moves
 * to X without trusting it, sends X at most three times what came from X (everything B sends
 * there counts: the attacker's victim gets it all), and returns to A. With hold, A's packets
 * are then lost for a while, so B can only return when its challenges go unanswered. */
static void forged_move(int hold, size_t min, size_t max)
{
    wire w;
    wire_start(&w);
    T_EQ_INT(w.na.joins, 1);
    T_EQ_INT(w.nb.joins, 1);
    wire_send(&w, 20, 10000);
    p2p_stats b0;
    p2p_host_stats(w.b, &b0);
    w.forge_min = min;
    w.forge_max = max;
    w.hold_after_forge = hold;
    for (int i = 0; i < 40 && !w.forged; i++) wire_send(&w, 1, i % 2 ? 1000 : 100000);
    T_CHECK(w.forged);
    p2p_addr now_at = wire_addr_of_a(&w);
    if (hold) {
        T_CHECK(p2p_addr_equal(&now_at, &w.x)); /* moved, unvalidated */
        wire_run(&w, 8 * SEC);
        w.hold_a = 0;
    } else {
        wire_send(&w, 30, 10000);
    }
    now_at = wire_addr_of_a(&w);
    T_CHECK(p2p_addr_equal(&now_at, &w.aa)); /* back at A's real address */
    wire_send(&w, 20, 10000);
    wire_run(&w, 3 * SEC);
    p2p_stats b1;
    p2p_host_stats(w.b, &b1);
    printf("     forged %zu-byte packet%s: %llu bytes in %llu packets to X\n", w.forged_len,
           hold ? ", A quiet" : "", (unsigned long long)w.to_x_bytes,
           (unsigned long long)w.to_x_packets);
    T_CHECK(w.to_x_packets >= 1); /* X was challenged */
    T_CHECK(w.to_x_bytes <= P2P_AMPLIFICATION * w.from_x_bytes);
    if (w.to_x_bytes > P2P_AMPLIFICATION * w.from_x_bytes)
        fprintf(stderr,
                "  core: B sent %llu bytes to the unproven X after %llu bytes from it "
                "(limit %llu): p2p_path.c sends its PATH_CHALLENGEs outside the budget "
                "(send_path_frame() is not counted in amp_sent)\n",
                (unsigned long long)w.to_x_bytes, (unsigned long long)w.from_x_bytes,
                (unsigned long long)(P2P_AMPLIFICATION * w.from_x_bytes));
    T_CHECK(b1.path_changes >= b0.path_changes + 2); /* to X and back */
    /* every message arrived once and in order, every reply came back */
    T_EQ_INT(w.nb.m.next_in, w.sent);
    T_EQ_INT(w.nb.m.msg_bad, 0);
    T_EQ_INT(w.na.m.nreplies, w.sent);
    T_EQ_INT(w.na.m.reply_bad, 0);
    T_EQ_INT(w.na.errors + w.nb.errors + w.na.leaves + w.nb.leaves, 0);
    wire_stop(&w);
}

static void test_forged_move_returns(void)
{
    forged_move(0, 500, P2P_MAX_PACKET);
}
static void test_forged_move_times_out(void)
{
    forged_move(1, 500, P2P_MAX_PACKET);
}
/* The same with the smallest packet that moves a session (an ACK alone): the challenges B
 * sends must fit in three times its bytes too. */
static void test_forged_small_packet(void)
{
    forged_move(1, 1, 64);
}

/* Garbage, tampered and late packets from X never move the session. */
static void test_unauthenticated_never_moves(void)
{
    wire w;
    wire_start(&w);
    wire_send(&w, 5, 10000);
    p2p_stats b0;
    p2p_host_stats(w.b, &b0);
    uint8_t buf[P2P_MAX_PACKET_PROBED], late[P2P_MAX_PACKET_PROBED];
    p2p_addr to;
    size_t len, late_len = 0;
    int sent = 0;
    /* garbage of many shapes, including a DATA header naming B's session */
    p2p_peer *pb = p2p_lookup(w.b, p2p_host_find(w.b, w.ia.ed_pk));
    T_CHECK(pb != NULL);
    for (int i = 0; i < 200; i++) {
        size_t n = 17 + (size_t)(i * 37) % 1200;
        for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)(i * 13 + k * 7);
        if (i % 2 == 0 && pb) {
            buf[0] = P2P_PKT_DATA;
            buf[1] = buf[2] = buf[3] = 0;
            p2p_put_u32(buf + 4, pb->local_index);
            p2p_put_u64(buf + 8, 1000000 + (uint64_t)i);
        }
        p2p_host_recv(w.b, &w.x, buf, n, w.t);
        sent++;
    }
    /* a genuine packet with one bit flipped */
    uint8_t msg[300];
    memset(msg, 1, sizeof msg);
    p2p_peer_send(w.a, p2p_host_find(w.a, w.ib.ed_pk), 8, msg, sizeof msg, 0, NULL, w.t);
    len = p2p_host_next_datagram(w.a, &to, buf, sizeof buf);
    T_CHECK(len > 100 && buf[0] == P2P_PKT_DATA);
    memcpy(late, buf, len);
    late_len = len;
    buf[len - 20] ^= 0x10;
    p2p_host_recv(w.b, &w.x, buf, len, w.t);
    /* a replay, from X, of a packet B already has */
    p2p_host_recv(w.b, &w.aa, late, late_len, w.t);
    p2p_host_recv(w.b, &w.x, late, late_len, w.t);
    wire_run(&w, 10000);
    p2p_addr at = wire_addr_of_a(&w);
    T_CHECK(p2p_addr_equal(&at, &w.aa));
    /* a late packet: held back, overtaken by newer ones, then replayed from X */
    p2p_peer_send(w.a, p2p_host_find(w.a, w.ib.ed_pk), 8, msg, sizeof msg, 0, NULL, w.t);
    len = p2p_host_next_datagram(w.a, &to, late, sizeof late);
    T_CHECK(len > 100);
    wire_send(&w, 3, 10000);
    p2p_host_recv(w.b, &w.x, late, len, w.t);
    wire_run(&w, 2 * SEC);
    at = wire_addr_of_a(&w);
    T_CHECK(p2p_addr_equal(&at, &w.aa));
    p2p_stats b1;
    p2p_host_stats(w.b, &b1);
    T_EQ_INT(b1.path_changes, b0.path_changes);
    T_CHECK(b1.dropped >= b0.dropped + (uint64_t)sent + 2);
    T_EQ_INT(w.to_x_packets, 0);
    T_EQ_INT(w.na.leaves + w.nb.leaves, 0);
    wire_stop(&w);
}

int main(void)
{
    p2p_init();
    T_RUN(test_cone_direct_survives_mediator);
    T_RUN(test_symmetric_relayed);
    T_RUN(test_cone_and_symmetric_with_faults);
    T_RUN(test_relay_refused);
    T_RUN(test_relay_sessions_cap);
    T_RUN(test_relay_rate);
    T_RUN(test_unknown_target_and_unreachable);
    T_RUN(test_upgrade_to_direct);
    T_RUN(test_mesh_cone_direct);
    T_RUN(test_mesh_symmetric_relayed);
    T_RUN(test_roaming_rebind);
    T_RUN(test_forged_move_returns);
    T_RUN(test_forged_move_times_out);
    T_RUN(test_forged_small_packet);
    T_RUN(test_unauthenticated_never_moves);
    T_RUN(test_determinism);
    return t_summary("test_nat");
}
