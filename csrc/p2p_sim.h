/*
 * p2p_sim.h - a deterministic simulated network on virtual time. Hosts attached to a sim
 * exchange datagrams through it with configurable latency, jitter, loss, duplication and
 * reordering, drawn from one seeded random stream: the same seed and the same calls give the
 * same run, to the microsecond.
 */
#ifndef P2P_SIM_H
#define P2P_SIM_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

typedef struct p2p_sim p2p_sim;

typedef struct p2p_sim_config {
    uint64_t seed;        /* 0 is a valid seed too */
    uint64_t latency_us;  /* one-way base delay */
    uint64_t jitter_us;   /* uniform extra delay in [0, jitter] */
    double loss;          /* probability a datagram is dropped */
    double duplicate;     /* probability a datagram is delivered twice */
    double reorder;       /* probability a datagram is held back by extra delay */
} p2p_sim_config;

enum { P2P_SIM_NAT_NONE = 0, P2P_SIM_NAT_CONE = 1, P2P_SIM_NAT_SYMMETRIC = 2 };

int p2p_sim_new(p2p_sim **out, const p2p_sim_config *cfg);
/* Frees the sim (not the hosts attached to it). NULL is allowed. */
void p2p_sim_free(p2p_sim *s);
/* Virtual time, microseconds; starts at 0. */
uint64_t p2p_sim_now(const p2p_sim *s);
/* A seed for a new host's p2p_config.seed, drawn from the sim's stream (never 0). */
uint64_t p2p_sim_host_seed(p2p_sim *s);
/* Attaches a host and gives it an address on the simulated network (written to *addr).
 * port 0 picks one. nat is P2P_SIM_NAT_* (NAT models: a later issue; NONE for now).
 * Returns 0, P2P_ERR_LIMIT or P2P_ERR_NOMEM. The host stays owned by the caller. */
int p2p_sim_attach(p2p_sim *s, p2p_host *h, uint16_t port, int nat, p2p_addr *addr);
/* Detaches a host: datagrams to its address are dropped from now on. */
void p2p_sim_detach(p2p_sim *s, p2p_host *h);
/* Moves the host's outgoing datagrams into the network (call after API calls on it). */
void p2p_sim_flush(p2p_sim *s, p2p_host *h);
/* The earliest virtual time at which anything happens (a delivery or a host timer), or
 * P2P_TIME_NEVER. */
uint64_t p2p_sim_next_time(const p2p_sim *s);
/* Advances virtual time to min(next_time, until) and does everything due then: deliveries
 * and host timers, then flushes every host's datagrams into the network. Returns 1 when
 * something happened, 0 when time simply reached `until`. Events accumulate in the hosts for
 * the caller to drain. */
int p2p_sim_step(p2p_sim *s, uint64_t until);

typedef struct p2p_sim_stats {
    uint64_t sent, delivered, lost, duplicated, reordered;
} p2p_sim_stats;
void p2p_sim_stats_get(const p2p_sim *s, p2p_sim_stats *out);

#endif
