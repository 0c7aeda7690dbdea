/* test_mesh.c - membership and broadcast on the simulator: full-mesh formation at scale under
 * loss, exactly-once broadcast, bridging where links are missing, refusal of forged records
 * and broadcasts, restarts with the same key, and mediators. */
#include "t.h"
#include "../csrc/p2p_host.h"
#include "driver/sim.h"
#include "tnet.h"

#include <stdlib.h>

#define MAXN 256
#define EPOCH_US UINT64_C(1700000000000000)

typedef struct mnode {
    p2p_host *h;
    p2p_identity id;
    p2p_addr addr;
    int joins, leaves;
    int bcasts; /* broadcasts received */
    int bcast_dups;
    uint8_t last_origin[P2P_ID_LEN];
    uint64_t seen_seq[8];
    int nseen;
} mnode;

static p2p_sim *sim;
static mnode nodes[MAXN];
static int nn;

static void sim_start(uint64_t seed, double loss)
{
    p2p_sim_config c;
    memset(&c, 0, sizeof c);
    c.seed = seed;
    c.latency_us = 5000;
    c.jitter_us = 2000;
    c.loss = loss;
    p2p_sim_new(&sim, &c);
    nn = 0;
}

static mnode *add_node(uint8_t seed_byte, int mediator, uint32_t max_peers)
{
    mnode *n = &nodes[nn++];
    memset(n, 0, sizeof *n);
    tnet_identity(&n->id, seed_byte, (uint8_t)nn);
    p2p_config c;
    p2p_config_init(&c);
    c.mediator = mediator;
    c.max_peers = max_peers;
    c.unix_us = EPOCH_US + p2p_sim_now(sim);
    T_EQ_INT(tnet_sim_host(sim, &c, &n->id, 0, P2P_SIM_NAT_NONE, &n->h, &n->addr), 0);
    p2p_host_add_address(n->h, &n->addr, p2p_sim_now(sim));
    return n;
}

static void drain_events(void)
{
    for (int i = 0; i < nn; i++) {
        p2p_event ev;
        if (!nodes[i].h) continue;
        while (p2p_host_next_event(nodes[i].h, &ev)) {
            mnode *n = &nodes[i];
            if (ev.type == P2P_EV_JOIN)
                n->joins++;
            else if (ev.type == P2P_EV_LEAVE)
                n->leaves++;
            else if (ev.type == P2P_EV_MESSAGE && ev.broadcast) {
                for (int k = 0; k < n->nseen; k++)
                    if (n->seen_seq[k] == ev.seq) n->bcast_dups++;
                if (n->nseen < 8) n->seen_seq[n->nseen++] = ev.seq;
                n->bcasts++;
                memcpy(n->last_origin, ev.origin, P2P_ID_LEN);
            }
        }
    }
}

static void run_for(uint64_t us)
{
    tnet_run_for(sim, us, drain_events);
}

static size_t connected_peers(mnode *n)
{
    p2p_stats st;
    p2p_host_stats(n->h, &st);
    return (size_t)st.peers;
}

static void sim_stop(void)
{
    TNET_FREE_NODES(nodes, nn);
    p2p_sim_free(sim);
    sim = NULL;
}

static void join_via(mnode *n, mnode *via)
{
    T_EQ_INT(p2p_host_connect(n->h, &via->addr, NULL, p2p_sim_now(sim), NULL), 0);
    p2p_sim_flush(sim, n->h);
}

/* Nodes join through various members; the whole set converges to a full mesh, and a
 * broadcast then reaches every other member exactly once. */
static void mesh_at_scale(int count, double loss, uint64_t settle_us)
{
    sim_start(42 + (uint64_t)count, loss);
    for (int i = 0; i < count; i++) {
        mnode *n = add_node(7, 0, 0);
        if (i > 0) join_via(n, &nodes[(i * 7919) % (i + 1) % i]); /* through various members */
        run_for(20000);
    }
    run_for(settle_us);
    int full = 0;
    for (int i = 0; i < count; i++) full += connected_peers(&nodes[i]) == (size_t)(count - 1);
    T_EQ_INT(full, count);
    uint64_t seq;
    T_EQ_INT(
        p2p_host_broadcast(nodes[3].h, 9, (const uint8_t *)"hello all", 9, &seq, p2p_sim_now(sim)),
        0);
    p2p_sim_flush(sim, nodes[3].h);
    run_for(5000000);
    int got = 0, dups = 0;
    for (int i = 0; i < count; i++) {
        if (i == 3) {
            T_EQ_INT(nodes[i].bcasts, 0);
            continue;
        }
        got += nodes[i].bcasts == 1 &&
               memcmp(nodes[i].last_origin, nodes[3].id.ed_pk, P2P_ID_LEN) == 0;
        dups += nodes[i].bcast_dups;
    }
    T_EQ_INT(got, count - 1);
    T_EQ_INT(dups, 0);
    sim_stop();
}

static void test_mesh_30(void)
{
    mesh_at_scale(30, 0.0, 6000000);
}
static void test_mesh_200_at_5pct_loss(void)
{
    mesh_at_scale(200, 0.05, 8000000);
}

/* C can hold one session only (max_peers = 1), to B. A's broadcast still reaches C, pulled
 * through B. */
static void test_broadcast_bridges_missing_links(void)
{
    sim_start(5, 0.02);
    mnode *b = add_node(1, 0, 0);
    mnode *a = add_node(2, 0, 0);
    mnode *c = add_node(3, 0, 1);
    join_via(a, b);
    run_for(1000000);
    join_via(c, b);
    run_for(10000000);
    T_EQ_INT(connected_peers(c), 1);
    T_EQ_INT(connected_peers(a), 1);
    T_EQ_INT(p2p_host_broadcast(a->h, 1, (const uint8_t *)"x", 1, NULL, p2p_sim_now(sim)), 0);
    p2p_sim_flush(sim, a->h);
    run_for(3000000);
    T_EQ_INT(b->bcasts, 1);
    T_EQ_INT(c->bcasts, 1);
    p2p_stats st;
    p2p_host_stats(b->h, &st);
    T_CHECK(st.broadcasts_relayed >= 1);
    sim_stop();
}

/* A mediator introduces nobody: nodes that know only it stay strangers to each other. */
static void test_mediator_shares_nothing(void)
{
    sim_start(6, 0.0);
    mnode *m = add_node(1, 1, 0);
    mnode *a = add_node(2, 0, 0);
    mnode *b = add_node(3, 0, 0);
    join_via(a, m);
    join_via(b, m);
    run_for(10000000);
    T_EQ_INT(connected_peers(m), 2);
    T_EQ_INT(connected_peers(a), 1);
    T_EQ_INT(connected_peers(b), 1);
    sim_stop();
}

/* A member restarts with the same key on another port: everyone ends up with one session to
 * it, at the new address. */
static void test_restart_with_same_key(void)
{
    sim_start(7, 0.0);
    mnode *a = add_node(1, 0, 0);
    mnode *b = add_node(2, 0, 0);
    mnode *c = add_node(3, 0, 0);
    join_via(b, a);
    run_for(1000000);
    join_via(c, a);
    run_for(6000000);
    T_EQ_INT(connected_peers(a), 2);
    T_EQ_INT(connected_peers(b), 2);
    /* c crashes (no goodbye) and comes back with the same identity at a new address */
    p2p_sim_detach(sim, c->h);
    p2p_host_free(c->h);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &c->id;
    cfg.seed = p2p_sim_host_seed(sim);
    cfg.unix_us = EPOCH_US + p2p_sim_now(sim);
    T_EQ_INT(p2p_host_new(&c->h, &cfg, p2p_sim_now(sim)), 0);
    p2p_addr old = c->addr;
    T_EQ_INT(p2p_sim_attach(sim, c->h, 5555, P2P_SIM_NAT_NONE, &c->addr), 0);
    T_CHECK(!p2p_addr_equal(&old, &c->addr));
    join_via(c, b);
    run_for(8000000);
    T_EQ_INT(connected_peers(c), 2);
    T_EQ_INT(connected_peers(a), 2);
    T_EQ_INT(connected_peers(b), 2);
    p2p_peer_handle hp = p2p_host_find(a->h, c->id.ed_pk);
    p2p_peer_info info;
    T_EQ_INT(p2p_host_peer_info(a->h, hp, &info), 0);
    T_CHECK(p2p_addr_equal(&info.address, &c->addr));
    p2p_peer_handle all[8];
    T_EQ_INT(p2p_host_peers(a->h, all, 8), 2);
    sim_stop();
}

/* Two nodes dial each other at the same moment: one session survives on both sides. */
static void test_simultaneous_connect(void)
{
    sim_start(8, 0.0);
    mnode *a = add_node(1, 0, 0);
    mnode *b = add_node(2, 0, 0);
    join_via(a, b);
    join_via(b, a);
    run_for(5000000);
    T_EQ_INT(connected_peers(a), 1);
    T_EQ_INT(connected_peers(b), 1);
    p2p_peer_handle all[4];
    T_EQ_INT(p2p_host_peers(a->h, all, 4), 1);
    T_EQ_INT(p2p_host_peers(b->h, all, 4), 1);
    sim_stop();
}

/* Records and broadcasts that do not verify are dropped and counted, never believed, and
 * reported as a protocol error (-1): the stream then ends the session of the peer that lied. */
static void test_forgeries_refused(void)
{
    sim_start(9, 0.0);
    mnode *a = add_node(1, 0, 0);
    mnode *b = add_node(2, 0, 0);
    join_via(a, b);
    run_for(2000000);
    p2p_peer *pb = p2p_lookup(a->h, p2p_host_find(a->h, b->id.ed_pk));
    T_CHECK(pb != NULL);
    if (!pb) {
        sim_stop();
        return;
    }
    p2p_stats before, after;
    p2p_host_stats(a->h, &before);
    /* b's genuine record, claiming a newer sequence number than b ever signed */
    uint8_t body[2 + P2P_MEMBER_REC_MAX];
    uint16_t len = b->h->mesh.own_len;
    body[0] = (uint8_t)len;
    body[1] = (uint8_t)(len >> 8);
    memcpy(body + 2, b->h->mesh.own_rec, len);
    body[2 + 1 + P2P_ID_LEN + 1] ^= 1; /* second byte of the little-endian seq */
    T_EQ_INT(p2p_mesh_on_record(a->h, pb, P2P_REC_MEMBERS, body, 2u + len, p2p_sim_now(sim)), -1);
    /* a broadcast claiming to come from b, signed by nobody */
    uint8_t env[P2P_ID_LEN + 8 + 2 + 5 + P2P_SIG_LEN];
    memcpy(env, b->id.ed_pk, P2P_ID_LEN);
    p2p_put_u64(env + P2P_ID_LEN, 99);
    env[40] = 1;
    env[41] = 0;
    memcpy(env + 42, "forge", 5);
    memset(env + 47, 0x55, 64);
    T_EQ_INT(p2p_mesh_on_record(a->h, pb, P2P_REC_BROADCAST, env, sizeof env, p2p_sim_now(sim)),
             -1);
    drain_events();
    p2p_host_stats(a->h, &after);
    T_EQ_INT(after.dropped - before.dropped, 2);
    T_EQ_INT(a->bcasts, 0);
    p2p_member *mb = NULL;
    for (size_t i = 0; i < a->h->mesh.n; i++)
        if (!memcmp(a->h->mesh.m[i].id, b->id.ed_pk, P2P_ID_LEN)) mb = &a->h->mesh.m[i];
    T_CHECK(mb && mb->has_record && p2p_addr_equal(&mb->addrs[0], &b->addr));
    sim_stop();
}

/* Closing members are seen leaving by everyone, and forgotten. */
static void test_close_seen_by_all(void)
{
    sim_start(10, 0.0);
    for (int i = 0; i < 6; i++) {
        mnode *n = add_node(4, 0, 0);
        if (i) join_via(n, &nodes[0]);
        run_for(100000);
    }
    run_for(8000000);
    for (int i = 0; i < 6; i++) T_EQ_INT(connected_peers(&nodes[i]), 5);
    p2p_host_close(nodes[5].h, p2p_sim_now(sim));
    p2p_sim_flush(sim, nodes[5].h);
    run_for(1000000);
    for (int i = 0; i < 5; i++) {
        T_EQ_INT(nodes[i].leaves, 1);
        T_EQ_INT(connected_peers(&nodes[i]), 4);
    }
    run_for(20000000); /* nobody dials the departed member back */
    for (int i = 0; i < 5; i++) T_EQ_INT(connected_peers(&nodes[i]), 4);
    sim_stop();
}

int main(void)
{
    p2p_init();
    T_RUN(test_mesh_30);
    T_RUN(test_broadcast_bridges_missing_links);
    T_RUN(test_mediator_shares_nothing);
    T_RUN(test_restart_with_same_key);
    T_RUN(test_simultaneous_connect);
    T_RUN(test_forgeries_refused);
    T_RUN(test_close_seen_by_all);
    T_RUN(test_mesh_200_at_5pct_loss);
    return t_summary("mesh");
}
