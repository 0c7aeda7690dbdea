/*
 * p2p_probe.h - the STUN client: RFC 8489 Binding and the RFC 5780 mapping test (modules
 * layer; issue 12, docs/PROTOCOL.md section 8.7).
 *
 * Only with `stun` servers in the configuration (application-given, never learned from the
 * network). At start, test I (a Binding request) to every server; when the first answer from
 * a server carries OTHER-ADDRESS, tests II (the alternate IP, the primary port) and III (the
 * alternate IP and port) to it. Each request is tried at 0, 0.5 and 1.5 s; a server that
 * answers none of the three is silent until the network changes. Then one test I per server
 * every 5 minutes while the node has no connected peer, every 30 minutes while it has one.
 *
 * What it learns: the reflexive address of test I becomes the node's "stun" address
 * (P2P_ADDR_STUN), and the mapping behaviour (P2P_MAPSRC_STUN):
 *   none         the mapped address is one of the node's local addresses
 *   independent  test II saw the address of test I (or two servers saw the same address)
 *   dependent    it differed: the NAT gives every destination its own port
 *   (unknown     not told: no second observation)
 * An answer is taken only from the address its request went to and with its transaction id;
 * any other STUN-shaped datagram is not the module's (the hub drops it).
 *
 * The hub calls these; the module keeps its state in h->probe (its own struct).
 */
#ifndef P2P_PROBE_H
#define P2P_PROBE_H

#include "p2p_state.h"

/* Timers (design12 section 4.2). */
#define P2P_PROBE_REFRESH_US UINT64_C(300000000)        /* without a connected peer */
#define P2P_PROBE_REFRESH_PEERS_US UINT64_C(1800000000) /* with one */

/* Sets the module up from the configuration (h->probe stays NULL without STUN servers).
 * Returns 0 or P2P_ERR_NOMEM. */
int p2p_probe_init(p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_probe_free(p2p_host *h);
/* A STUN-shaped datagram the hub's demux gave the module. Returns 1 when it answered an open
 * transaction (taken), 0 when not (the hub drops it). */
int p2p_probe_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                          uint64_t now);
/* The driver's answer to one of the module's requests (it makes none). */
void p2p_probe_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* When p2p_probe_timer is next due, or P2P_TIME_NEVER. */
uint64_t p2p_probe_deadline(const p2p_host *h);
void p2p_probe_timer(p2p_host *h, uint64_t now);
/* The driver saw the network change: forget what was learned, start again. */
void p2p_probe_network_changed(p2p_host *h, uint64_t now);
/* The host is closing: nothing more is sent. */
void p2p_probe_close(p2p_host *h, uint64_t now);

#endif
