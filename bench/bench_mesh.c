/*
 * bench_mesh.c - mesh formation, background traffic and broadcast delivery on the simulator
 * (issue 3's scale figures). Deterministic: one seed per row gives the same run every time;
 * only the CPU seconds vary between machines.
 *
 * A row with N nodes and a loss rate:
 *   1. N hosts are added one every 20 ms of virtual time; each one after the first joins
 *      through a member picked at random among those added before it (so introductions come
 *      from everywhere, not from one bootstrap). 5 ms latency, 2 ms jitter.
 *   2. Convergence: from the last join until every host holds N-1 connected sessions,
 *      checked every 50 ms of virtual time (so the figure is rounded up to 50 ms).
 *   3. Background traffic: after a 2 s settle (so acknowledgements and anti-entropy of the
 *      joins drain), 30 virtual seconds without application traffic; the bytes and packets
 *      every host sent (p2p_host_stats deltas), per node per second, and that again per peer.
 *      A constant per-peer figure across N means the per-node cost is O(N).
 *   4. Broadcast: one broadcast from the middle joiner; the virtual time until all N-1 others
 *      delivered it, and how many did (exactly once: duplicates are counted and reported).
 *
 * Usage: bench_mesh N LOSS_PERCENT [SEED]    one row
 *        bench_mesh                          the default rows (10, 50, 200, and 200 at 5%)
 * Prints one line per row (bench/run.sh makes the table):
 *   RESULT mesh N LOSS CONV_S BPS PPS BPS_PER_PEER PPS_PER_PEER BCAST_MS BCAST_GOT DUPS
 *          STILL_FULL CPU_S
 * CONV_S is -1 when the mesh did not converge within the limit; BCAST_MS is -1 when not
 * every member got the broadcast within 10 s. STILL_FULL is how many hosts still held N-1
 * sessions at the end of the idle period.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p2pnet.h"
#include "driver/sim.h"

#define EPOCH_US UINT64_C(1700000000000000)
#define JOIN_EVERY_US 20000u
#define CHECK_EVERY_US 50000u
#define CONVERGE_LIMIT_US 120000000u
#define SETTLE_US 2000000u
#define IDLE_US 30000000u
#define BCAST_LIMIT_US 10000000u
#define BCAST_TYPE 7

typedef struct node {
    p2p_host *h;
    p2p_identity id;
    p2p_addr addr;
    uint64_t got_at; /* virtual time the broadcast arrived; 0: not yet */
    int copies;
} node;

typedef struct mesh_bench {
    p2p_sim *sim;
    node *nodes;
    int n;
    uint64_t rng;
    uint64_t bseq; /* the broadcast's number, once sent */
    const uint8_t *borigin;
} mesh_bench;

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_mesh: %s: %s\n", what, p2p_strerror(rc));
    exit(1);
}

/* splitmix64: the bench's own stream, apart from the sim's, picks seeds and join targets. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Events pile up in each host until taken; only broadcasts matter here. */
static void drain(mesh_bench *b)
{
    uint64_t now = p2p_sim_now(b->sim);
    for (int i = 0; i < b->n; i++) {
        node *x = &b->nodes[i];
        p2p_event ev;
        while (p2p_host_next_event(x->h, &ev)) {
            if (ev.type != P2P_EV_MESSAGE || !ev.broadcast || !b->borigin) continue;
            if (ev.seq != b->bseq || memcmp(ev.origin, b->borigin, P2P_ID_LEN) != 0) continue;
            if (x->copies++ == 0) x->got_at = now;
        }
    }
}

static void run_for(mesh_bench *b, uint64_t us)
{
    uint64_t end = p2p_sim_now(b->sim) + us;
    while (p2p_sim_step(b->sim, end)) {
    }
    drain(b);
}

static int full_count(const mesh_bench *b)
{
    int full = 0;
    for (int i = 0; i < b->n; i++) {
        p2p_stats st;
        p2p_host_stats(b->nodes[i].h, &st);
        full += st.peers == (uint64_t)(b->n - 1);
    }
    return full;
}

static void sent_totals(const mesh_bench *b, uint64_t *bytes, uint64_t *packets)
{
    *bytes = *packets = 0;
    for (int i = 0; i < b->n; i++) {
        p2p_stats st;
        p2p_host_stats(b->nodes[i].h, &st);
        *bytes += st.bytes_sent;
        *packets += st.packets_sent;
    }
}

static void add_node(mesh_bench *b)
{
    node *x = &b->nodes[b->n];
    uint8_t seed[P2P_SEED_LEN];
    for (int k = 0; k < 4; k++) {
        uint64_t r = next_rand(&b->rng);
        memcpy(seed + 8 * k, &r, 8);
    }
    int rc = p2p_identity_from_seed(&x->id, seed);
    if (rc != 0) die("identity", rc);
    p2p_config c;
    p2p_config_init(&c);
    c.identity = &x->id;
    c.seed = p2p_sim_host_seed(b->sim);
    c.unix_us = EPOCH_US + p2p_sim_now(b->sim);
    if ((rc = p2p_host_new(&x->h, &c, p2p_sim_now(b->sim))) != 0) die("host_new", rc);
    if ((rc = p2p_sim_attach(b->sim, x->h, 0, P2P_SIM_NAT_NONE, &x->addr)) != 0) die("attach", rc);
    if ((rc = p2p_host_add_address(x->h, &x->addr, p2p_sim_now(b->sim))) != 0)
        die("add_address", rc);
    if (b->n > 0) {
        const node *via = &b->nodes[next_rand(&b->rng) % (uint64_t)b->n];
        if ((rc = p2p_host_connect(x->h, &via->addr, NULL, p2p_sim_now(b->sim), NULL)) != 0)
            die("connect", rc);
    }
    p2p_sim_flush(b->sim, x->h);
    b->n++;
}

static int run_row(int n, double loss, uint64_t seed)
{
    double cpu0 = cpu_seconds();
    mesh_bench b;
    memset(&b, 0, sizeof b);
    b.rng = seed;
    b.nodes = calloc((size_t)n, sizeof *b.nodes);
    if (!b.nodes) die("nodes", P2P_ERR_NOMEM);
    p2p_sim_config sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.latency_us = 5000;
    sc.jitter_us = 2000;
    sc.loss = loss;
    int rc = p2p_sim_new(&b.sim, &sc);
    if (rc != 0) die("sim_new", rc);

    for (int i = 0; i < n; i++) {
        add_node(&b);
        run_for(&b, JOIN_EVERY_US);
    }
    /* The last join happened at the start of the last 20 ms step. */
    uint64_t last_join = p2p_sim_now(b.sim) - JOIN_EVERY_US;
    double conv = -1;
    int full = full_count(&b);
    while (full < n && p2p_sim_now(b.sim) - last_join < CONVERGE_LIMIT_US) {
        run_for(&b, CHECK_EVERY_US);
        full = full_count(&b);
    }
    if (full == n)
        conv = (double)(p2p_sim_now(b.sim) - last_join) / 1e6;
    else
        fprintf(stderr, "bench_mesh: N=%d: only %d of %d hosts reached %d peers\n", n, full, n,
                n - 1);

    run_for(&b, SETTLE_US);
    uint64_t bytes0, pkts0, bytes1, pkts1;
    sent_totals(&b, &bytes0, &pkts0);
    for (uint64_t t = 0; t < IDLE_US; t += CHECK_EVERY_US) run_for(&b, CHECK_EVERY_US);
    sent_totals(&b, &bytes1, &pkts1);
    int still_full = full_count(&b);
    double secs = IDLE_US / 1e6;
    double bps = (double)(bytes1 - bytes0) / n / secs, pps = (double)(pkts1 - pkts0) / n / secs;

    int from = n / 2;
    node *o = &b.nodes[from];
    b.borigin = o->id.ed_pk;
    uint64_t t0 = p2p_sim_now(b.sim);
    static const uint8_t payload[] = "bench broadcast";
    if ((rc = p2p_host_broadcast(o->h, BCAST_TYPE, payload, sizeof payload, &b.bseq, t0)) != 0)
        die("broadcast", rc);
    p2p_sim_flush(b.sim, o->h);
    int got = 0, dups = 0;
    uint64_t last_at = t0;
    /* Step by step so each delivery is timed to the microsecond. */
    while (got < n - 1 && p2p_sim_now(b.sim) - t0 < BCAST_LIMIT_US) {
        if (!p2p_sim_step(b.sim, t0 + BCAST_LIMIT_US)) break;
        drain(&b);
        got = 0;
        for (int i = 0; i < n; i++)
            if (i != from && b.nodes[i].copies > 0) {
                got++;
                if (b.nodes[i].got_at > last_at) last_at = b.nodes[i].got_at;
            }
    }
    /* A little longer, so late duplicates would show. */
    run_for(&b, 1000000);
    for (int i = 0; i < n; i++)
        if (b.nodes[i].copies > 1) dups += b.nodes[i].copies - 1;
    double bcast_ms = got == n - 1 ? (double)(last_at - t0) / 1e3 : -1;

    for (int i = 0; i < n; i++) {
        p2p_host_free(b.nodes[i].h);
        p2p_identity_wipe(&b.nodes[i].id);
    }
    p2p_sim_free(b.sim);
    free(b.nodes);

    double cpu = cpu_seconds() - cpu0;
    printf("RESULT mesh %d %g %.2f %.0f %.1f %.1f %.3f %.1f %d %d %d %.1f\n", n, loss * 100, conv,
           bps, pps, bps / (n - 1), pps / (n - 1), bcast_ms, got, dups, still_full, cpu);
    fflush(stdout);
    return conv >= 0 && got == n - 1 && dups == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (p2p_init() != 0) die("init", P2P_ERR_CRYPTO);
    if (argc >= 3) {
        int n = atoi(argv[1]);
        double loss = atof(argv[2]) / 100.0;
        uint64_t seed = argc >= 4 ? strtoull(argv[3], NULL, 0) : 1000u + (uint64_t)n;
        if (n < 2 || loss < 0 || loss >= 1) {
            fprintf(stderr, "bench_mesh: N must be at least 2 and LOSS in [0, 100)\n");
            return 2;
        }
        return run_row(n, loss, seed);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [N LOSS_PERCENT [SEED]]\n", argv[0]);
        return 2;
    }
    int rc = 0;
    rc |= run_row(10, 0, 1010);
    rc |= run_row(50, 0, 1050);
    rc |= run_row(200, 0, 1200);
    rc |= run_row(200, 0.05, 1200);
    return rc;
}
