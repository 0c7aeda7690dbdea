/*
 * driver/sim.h - a deterministic simulated network on virtual time. Hosts attached to a sim
 * exchange datagrams through it with configurable latency, jitter, loss, duplication and
 * reordering, drawn from one seeded random stream: the same seed and the same calls give the
 * same run, to the microsecond.
 *
 * A host may sit behind its own NAT, modelled on Linux iptables MASQUERADE and its connection
 * tracking. The NAT owns a public IPv4 address (the one the host would have had without NAT);
 * the host gets a private address in 10.0.0.0/8. Each datagram the host sends makes or
 * refreshes a flow: (external port, remote ip:port). An inbound datagram to the public
 * address passes only when it matches a live flow exactly (address-and-port-dependent
 * filtering), so two NATed hosts that send to each other's public mapping at about the same
 * time punch a hole; the first datagram in one direction may be filtered.
 *   P2P_SIM_NAT_CONE       endpoint-independent mapping: one external port for every
 *                          destination, the host's own port (port preservation) until
 *                          p2p_sim_rebind().
 *   P2P_SIM_NAT_SYMMETRIC  endpoint-dependent mapping (MASQUERADE --random-fully): a new
 *                          external port, drawn from the sim's random stream, for every
 *                          distinct destination ip:port. A reflexive address learned from one
 *                          peer is therefore useless to any other.
 * A flow expires after P2P_SIM_NAT_IDLE_US without a datagram through it in either direction;
 * a cone NAT's next flow gets the same port again, a symmetric NAT's a new one. There is no
 * hairpinning and no routing between private networks: datagrams to 10.0.0.0/8 are lost.
 */
#ifndef P2P_SIM_H
#define P2P_SIM_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

typedef struct p2p_sim p2p_sim;

typedef struct p2p_sim_config {
    uint64_t seed;       /* 0 is a valid seed too */
    uint64_t latency_us; /* one-way base delay */
    uint64_t jitter_us;  /* uniform extra delay in [0, jitter] */
    double loss;         /* probability a datagram is dropped */
    double duplicate;    /* probability a datagram is delivered twice */
    double reorder;      /* probability a datagram is held back by extra delay */
} p2p_sim_config;

enum { P2P_SIM_NAT_NONE = 0, P2P_SIM_NAT_CONE = 1, P2P_SIM_NAT_SYMMETRIC = 2 };

/* A NAT flow (mapping + permission) with no datagram through it for this long is forgotten
 * (Linux conntrack's UDP stream timeout is 120 s, its unreplied one 30 s; 60 s sits between). */
#define P2P_SIM_NAT_IDLE_US UINT64_C(60000000)
/* Flows a NAT keeps at most: a cone NAT's permissions (remote endpoints) for its one mapping,
 * or a symmetric NAT's mappings, one permission each. When full, the least recently used flow
 * is forgotten to make room, so a NAT holds at most about 11 KiB (40 bytes a flow). */
#define P2P_SIM_NAT_MAX_FLOWS 256

/* Largest datagram the simulated path carries (Ethernet 1500 less IPv6 and UDP); larger ones
 * are lost. */
#define P2P_SIM_PATH_MTU 1452

/* Creates a sim at virtual time 0. *out is owned by the caller (p2p_sim_free()).
 * Returns 0, P2P_ERR_INVALID (a probability outside [0, 1], or latency/jitter over 2^40 us)
 * or P2P_ERR_NOMEM. cfg is copied. */
int p2p_sim_new(p2p_sim **out, const p2p_sim_config *cfg);
/* Frees the sim (not the hosts attached to it). NULL is allowed. */
void p2p_sim_free(p2p_sim *s);
/* Virtual time, microseconds; starts at 0. */
uint64_t p2p_sim_now(const p2p_sim *s);
/* A seed for a new host's p2p_config.seed, drawn from the sim's stream (never 0). */
uint64_t p2p_sim_host_seed(p2p_sim *s);
/* Attaches a host and gives it an address on the simulated network (written to *addr).
 * Each host gets its own IPv4 address, in attach order: 192.0.2.1-250, 198.51.100.1-250,
 * 203.0.113.1-250, then 198.18.0.0/15 (250 per /24); addresses are never reused. port 0
 * picks 4000 + the attach index. nat is P2P_SIM_NAT_*. Behind a NAT the address above becomes
 * the NAT's public one and the host gets the private address 10.0.0.0 + 1 + attach index, with
 * the same port; *addr is that private address (the one the host is bound to). Returns 0,
 * P2P_ERR_INVALID (unknown nat, or the host is already attached), P2P_ERR_LIMIT (128750
 * attaches) or P2P_ERR_NOMEM. The host stays owned by the caller and must outlive its
 * attachment. */
int p2p_sim_attach(p2p_sim *s, p2p_host *h, uint16_t port, int nat, p2p_addr *addr);
/* Writes the public IP of the host's NAT, port 0, into *out; for a host without NAT, its own
 * address (port included). Returns 0, or P2P_ERR_INVALID when the host is not attached. */
int p2p_sim_public_addr(const p2p_sim *s, const p2p_host *h, p2p_addr *out);
/* Reboots the host's NAT: every flow is forgotten, and the mappings made from now on get new
 * external ports (never one in use just before; a cone NAT draws its new port now), as when a
 * NAT rebinds mid-transfer. Datagrams to the old mappings are filtered. Returns 0,
 * P2P_ERR_INVALID when the host is not attached or has no NAT, or P2P_ERR_NOMEM. */
int p2p_sim_rebind(p2p_sim *s, p2p_host *h);
/* Detaches a host: datagrams to its address are dropped (counted lost) from now on; those it
 * already sent stay in flight. Its NAT, if any, is gone. Unknown hosts are ignored. */
void p2p_sim_detach(p2p_sim *s, p2p_host *h);
/* Moves the host's outgoing datagrams into the network and re-reads its next timeout. Call it
 * after every API call on an attached host (connect, send, close...): the sim caches each
 * host's deadline and otherwise looks at a host only when it feeds it. */
void p2p_sim_flush(p2p_sim *s, p2p_host *h);
/* The earliest virtual time at which anything happens (a delivery or a host timer), or
 * P2P_TIME_NEVER. */
uint64_t p2p_sim_next_time(const p2p_sim *s);
/* Advances virtual time to min(next_time, until) and does everything due then: deliveries
 * and host timers, then flushes the datagrams of every host it fed into the network. Returns
 * 1 when something happened, 0 when time simply reached `until` (it never goes backwards).
 * Events accumulate in the hosts for the caller to drain. */
int p2p_sim_step(p2p_sim *s, uint64_t until);

/* ---- test hooks: they draw no randomness, and cost nothing while unused -------------- */

/* Sees one delivered datagram copy: from and to as on the wire (public addresses, after
 * NAT translation), data borrowed for the call. It runs inside p2p_sim_step(), before the
 * receiving host gets the datagram; it must not call back into the sim or the hosts. */
typedef void (*p2p_sim_tap_fn)(void *ud, const p2p_addr *from, const p2p_addr *to,
                               const uint8_t *data, size_t len);
/* Calls tap for every copy delivered to a host from now on (lost, NAT-filtered and blocked
 * copies are not delivered); NULL removes it. One tap at a time. */
void p2p_sim_set_tap(p2p_sim *s, p2p_sim_tap_fn tap, void *ud);
/* A firewall between two hosts: while on, every datagram sent from one host's public IP (its
 * NAT's, when it has one) to the other's, in either direction, is lost (counted in `lost`)
 * as it leaves the sender's NAT, which has made or refreshed its flow by then. Copies already
 * in flight still arrive. on = 0 lifts it. Returns 0, P2P_ERR_INVALID (a host not attached,
 * or a == b) or P2P_ERR_NOMEM. */
int p2p_sim_block(p2p_sim *s, const p2p_host *a, const p2p_host *b, int on);

typedef struct p2p_sim_stats {
    uint64_t sent;         /* datagrams the hosts emitted */
    uint64_t delivered;    /* copies handed to a host */
    uint64_t lost;         /* dropped by `loss`, addressed to nobody, to 10.0.0.0/8, or blocked */
    uint64_t duplicated;   /* datagrams that got a second copy */
    uint64_t reordered;    /* copies held back by extra delay */
    uint64_t in_flight;    /* copies in the network right now */
    uint64_t too_big;      /* larger than P2P_SIM_PATH_MTU: never sent (not in `sent`) */
    uint64_t nat_filtered; /* copies a NAT dropped on the way in (no matching flow) */
} p2p_sim_stats;
/* Fills *out with the counters so far. */
void p2p_sim_stats_get(const p2p_sim *s, p2p_sim_stats *out);

#endif
