/*
 * p2p_guard.h - the egress guard (docs/PROTOCOL.md section 8.6): every datagram that leaves
 * the host passes here, so that no address that has not proven itself receives more than a
 * bounded amount of traffic, whatever packet kind carries it.
 *
 * The guard keeps a ledger of addresses: bytes received from each, bytes sent to it, and the
 * probes (punching INITs, upgrade PATH_CHALLENGEs) sent to it while it never answered. To an
 * unproven address a node sends at most P2P_AMPLIFICATION x the bytes it received from it,
 * plus, for probes to addresses learned from the network, P2P_GUARD_PROBES packets per
 * P2P_GUARD_WINDOW_US. The ledger has a fixed size; an entry that holds a probe allowance
 * cannot be evicted before its window ends, so cycling through addresses cannot reset a
 * victim's allowance.
 *
 * The guard reads the session table (a proven address is a session's; an INIT names its
 * attempt), so it sits in the session layer, beside p2p_peer; its state types are in
 * p2p_internal.h, as the host embeds them.
 */
#ifndef P2P_GUARD_H
#define P2P_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

#include "p2p_state.h"

int p2p_guard_init(struct p2p_host *h);
void p2p_guard_free(struct p2p_host *h);
/* A datagram of len bytes arrived from a. */
void p2p_guard_credit(struct p2p_host *h, const p2p_addr *a, size_t len);
/* Decides whether the datagram buf (len bytes) may go to a, and debits it. kind is
 * P2P_GUARD_RESPONSE or P2P_GUARD_PROVEN. INIT packets of attempts whose candidates came from
 * the network are recognised here and treated as probes. Returns 1 to send, 0 to drop (counted
 * in stats.dropped_amplification). */
int p2p_guard_send(struct p2p_host *h, const p2p_addr *a, const uint8_t *buf, size_t len, int kind);
/* Asks to send one probe to a, an address learned from the network through session src.
 * Returns 1 when it may go (a ticket that the datagram's p2p_guard_send uses), 0 when the
 * address may not be sent to, has used its allowance, or src has too many addresses being
 * probed (counted in stats.dropped_amplification). */
int p2p_guard_probe(struct p2p_host *h, const p2p_addr *a, p2p_peer_handle src);
/* 1 when a is proven: the address of a session whose handshake or PATH_RESPONSE authenticated
 * it there. */
int p2p_guard_proven(struct p2p_host *h, const p2p_addr *a);
/* One response per received packet: returns 1 the first time it is called while handling a
 * datagram, 0 after. answer: a PATH_RESPONSE (p2p_path); relay: a RELAY frame passed on
 * (p2p_nat). */
int p2p_guard_answer_once(struct p2p_host *h);
int p2p_guard_relay_once(struct p2p_host *h);

/* issue 12 (hard-NAT punching, docs/PROTOCOL.md section 8.6). A spray (birthday probes to many
 * ports of one IP) may begin: one running per node, P2P_SPRAYS_PER_WINDOW per 10 minutes, one
 * per target IP per 10 minutes. Returns 0 (it is counted: call p2p_guard_spray_end when it
 * stops) or -1 (over budget: do not spray). The caller checks that the IP was vouched for. */
int p2p_guard_spray_begin(struct p2p_host *h, const p2p_addr *ip, uint64_t now);
void p2p_guard_spray_end(struct p2p_host *h);
/* While it runs, DATA packets to that IP at any port >= 1024 pass the guard, up to
 * P2P_SPRAY_PROBES in all (counted in stats.punch_probes), for at most P2P_SPRAY_MAX_US.
 * A batch of n punch sockets may each send openers to `to` (at most 2 packets each; DATA
 * packets to exactly `to` pass, 2 n of them, for P2P_OPENER_MAX_US):
 * P2P_OPENER_BATCHES_PER_WINDOW per 10 minutes, n <= P2P_OPENER_SOCKETS, never to a port below
 * 1024. Returns 0 or -1. */
int p2p_guard_opener_begin(struct p2p_host *h, const p2p_addr *to, uint16_t n, uint64_t now);

#endif
