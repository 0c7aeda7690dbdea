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
 */
#ifndef P2P_GUARD_H
#define P2P_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

#define P2P_GUARD_ENTRIES 1024          /* addresses in the ledger (fixed, allocated once) */
#define P2P_GUARD_BUCKETS 1024          /* hash chains (a power of two) */
#define P2P_GUARD_TTL_US 60000000       /* an idle entry lives this long */
#define P2P_GUARD_PROBES 16             /* probes to an address that never answered ... */
#define P2P_GUARD_WINDOW_US 60000000    /* ... per this window: 3 s of punching at 200 ms */
#define P2P_GUARD_SOURCE_ADDRS 16       /* unanswered addresses one source may have probed ... */
#define P2P_GUARD_ACTIVE_US 5000000     /* ... within this long */
#define P2P_GUARD_EVICT_SCAN 32         /* entries looked at to make room for one */
#define P2P_GUARD_PROVEN_CACHE_US 1000000 /* a session found at an address, remembered */

struct p2p_host;

typedef struct p2p_guard_entry {
    p2p_addr addr;
    uint16_t next;              /* hash chain, or P2P_GUARD_NONE */
    uint16_t probes;            /* probes sent in the window that began at probe_start */
    uint16_t tickets;           /* probes allowed at push time, not yet sent */
    uint8_t used;
    p2p_peer_handle src;        /* the session that supplied the address (probes) */
    uint64_t recv, sent;        /* bytes from it, and non-probe bytes to it */
    uint64_t expire, probe_start, last_probe, proven_until;
} p2p_guard_entry;

typedef struct p2p_guard {
    p2p_guard_entry *e;         /* P2P_GUARD_ENTRIES */
    uint16_t *bucket;           /* P2P_GUARD_BUCKETS chain heads */
    uint16_t free_head;
    uint16_t hand;              /* clock hand of eviction */
    uint64_t key;               /* keyed hash: chains cannot be aimed at */
    uint64_t answered_pkt;      /* stats.packets_received when a PATH_RESPONSE went out */
    uint64_t relayed_pkt;       /* ... when a RELAY frame was passed on */
} p2p_guard;

/* The kind of a datagram, for p2p_guard_send. */
enum {
    P2P_GUARD_RESPONSE = 0,     /* anything but a probe: within 3 x the bytes received */
    P2P_GUARD_PROVEN = 1        /* the caller knows the address is proven (a session's path) */
};

int p2p_guard_init(struct p2p_host *h);
void p2p_guard_free(struct p2p_host *h);
/* A datagram of len bytes arrived from a. */
void p2p_guard_credit(struct p2p_host *h, const p2p_addr *a, size_t len);
/* Decides whether the datagram buf (len bytes) may go to a, and debits it. kind is
 * P2P_GUARD_RESPONSE or P2P_GUARD_PROVEN. INIT packets of attempts whose candidates came from
 * the network are recognised here and treated as probes. Returns 1 to send, 0 to drop (counted
 * in stats.dropped_amplification). */
int p2p_guard_send(struct p2p_host *h, const p2p_addr *a, const uint8_t *buf, size_t len,
                   int kind);
/* Asks to send one probe to a, an address learned from the network through session src.
 * Returns 1 when it may go (a ticket that the datagram's p2p_guard_send uses), 0 when the
 * address may not be sent to, has used its allowance, or src has too many addresses being
 * probed (counted in stats.dropped_amplification). */
int p2p_guard_probe(struct p2p_host *h, const p2p_addr *a, p2p_peer_handle src);
/* 1 when a is proven: the address of a session whose handshake or PATH_RESPONSE authenticated
 * it there. */
int p2p_guard_proven(struct p2p_host *h, const p2p_addr *a);
/* One response per received packet: returns 1 the first time it is called while handling a
 * datagram, 0 after (slot: &guard.answered_pkt or &guard.relayed_pkt). */
int p2p_guard_once(struct p2p_host *h, uint64_t *slot);

#endif
