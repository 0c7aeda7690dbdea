/* tnet.h - what the C tests that run hosts repeat: identities from fixed seeds, hosts on the
 * simulator, running the simulator while draining events, freeing a set of hosts, and numbered
 * messages whose bytes the receiver can check. Each test keeps its own node type and its own
 * event counters; these helpers take the pieces they need. */
#ifndef P2P_TNET_H
#define P2P_TNET_H

#include <stdint.h>
#include <string.h>

#include "../csrc/p2pnet.h"
#include "driver/sim.h"

/* The identity of a fixed seed: every byte `fill` except the first, which is `first`. Returns
 * 0 or the error of p2p_identity_from_seed. */
static inline int tnet_identity(p2p_identity *id, uint8_t fill, uint8_t first)
{
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, fill, sizeof seed);
    seed[0] = first;
    return p2p_identity_from_seed(id, seed);
}

/* A host for id on the simulator s: c (the caller's settings) gets the identity and a seed
 * drawn from the sim, so the whole run is a function of the sim's seed. The host is attached
 * at port (0: any) behind nat (P2P_SIM_NAT_*); *addr is where it is bound. Returns 0 or the
 * first error (*h may then be a host that is not attached). */
static inline int tnet_sim_host(p2p_sim *s, p2p_config *c, p2p_identity *id, uint16_t port, int nat,
                                p2p_host **h, p2p_addr *addr)
{
    int rc;
    c->identity = id;
    c->seed = p2p_sim_host_seed(s);
    rc = p2p_host_new(h, c, p2p_sim_now(s));
    if (rc != 0) return rc;
    return p2p_sim_attach(s, *h, port, nat, addr);
}

/* Steps s for `us` of virtual time, calling drain after every step (event data lives only
 * until the next call on a host) and once more at the end. */
static inline void tnet_run_for(p2p_sim *s, uint64_t us, void (*drain)(void))
{
    uint64_t end = p2p_sim_now(s) + us;
    while (p2p_sim_step(s, end)) drain();
    drain();
}

/* Frees the hosts and wipes the identities of nodes[0..count): any array of structs with a
 * p2p_host *h and a p2p_identity id. */
#define TNET_FREE_NODES(nodes, count)                      \
    do {                                                   \
        for (int tnet_i = 0; tnet_i < (count); tnet_i++) { \
            p2p_host_free((nodes)[tnet_i].h);              \
            p2p_identity_wipe(&(nodes)[tnet_i].id);        \
        }                                                  \
    } while (0)

/* Numbered messages: message i is base + (i * step) % span bytes long, starts with i (u32
 * little-endian), and byte k >= 4 is i * mul + k * kmul (mod 256). Each test picks its shape. */
typedef struct tnet_msgs {
    uint32_t base, step, span, mul, kmul;
} tnet_msgs;

static inline size_t tnet_msg_len(const tnet_msgs *m, uint32_t i)
{
    return m->base + (i * m->step) % m->span;
}

static inline void tnet_msg_fill(const tnet_msgs *m, uint8_t *buf, uint32_t i)
{
    size_t n = tnet_msg_len(m, i);
    buf[0] = (uint8_t)i;
    buf[1] = (uint8_t)(i >> 8);
    buf[2] = (uint8_t)(i >> 16);
    buf[3] = (uint8_t)(i >> 24);
    for (size_t k = 4; k < n; k++) buf[k] = (uint8_t)(i * m->mul + k * m->kmul);
}

/* The index a received message starts with (the caller checks len >= 4). */
static inline uint32_t tnet_msg_index(const uint8_t *data)
{
    return (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
           (uint32_t)data[3] << 24;
}

#endif
