/*
 * p2p_state.h - the node's shared state and what every layer may do with it (p2p_state.c):
 * look sessions up, make and end them, queue events and datagrams, charge the memory budget,
 * check an id or an address against the node's policy, and tell the host what happened.
 *
 * Nothing here calls a module or the host: the layers above (the session, the handshake, mesh,
 * NAT, path, and the host) all use it, and the host reads back what they left (the notices and
 * the dead list) after each call into them.
 */
#ifndef P2P_STATE_H
#define P2P_STATE_H

#include "p2p_internal.h"

/* ---- sessions --------------------------------------------------------------------------- */

/* A new session in the table (state initiator or not, address addr), or NULL when the table is
 * full or there is no memory for it or for the notices it may queue (P2P_NOTES_PER_SESSION). */
p2p_peer *p2p_peer_new(p2p_host *h, int initiator, const p2p_addr *addr);
/* The session a handle or an index names, or NULL. Both mark it for a new deadline: the
 * caller may change it. (Inline: every received DATA packet looks its session up.) */
static inline p2p_peer *p2p_lookup(const p2p_host *h, p2p_peer_handle handle)
{
    p2p_peer *p = p2p_index_by_handle(&h->peers, handle);
    if (p) p->dl_valid = 0;
    return p;
}

static inline p2p_peer *p2p_lookup_index(const p2p_host *h, uint32_t local_index)
{
    p2p_peer *p = p2p_index_by_local(&h->peers, local_index);
    if (p) p->dl_valid = 0;
    return p;
}
/* The connected session with a node, or 0. */
p2p_peer_handle p2p_find_connected(const p2p_host *h, const uint8_t id[P2P_ID_LEN]);
/* Ends a session's life in the table: it leaves the table, the ready list and the counts at
 * once, and waits on the dead list until the host frees it after the current input. */
void p2p_kill(p2p_host *h, p2p_peer *p);
/* What the maker of an attempt says about its candidates (p2p_attempt_new). */
typedef struct p2p_attempt_opts {
    p2p_peer_handle introducer; /* the session that supplied them, which may introduce the two */
    uint64_t ask_at; /* not connected by then: ask the introducer for an introduction (0: never) */
} p2p_attempt_opts;

/* Makes an attempt towards the node that expected_id (may be NULL) names, with the n candidate
 * addresses (n may be 0: candidates come later); opt may be NULL (the application gave the
 * candidates). The host starts its handshake (P2P_NOTE_DIAL) when the caller returns. Returns
 * the attempt, or NULL with *rc set. */
p2p_peer *p2p_attempt_new(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                          const p2p_attempt_opts *opt, int *rc);
/* Queues the session for the transmit loop (and marks it for a new deadline). */
void p2p_ready(p2p_host *h, p2p_peer *p);

/* ---- notices to the host ---------------------------------------------------------------- */

/* Tells the host what happened (P2P_NOTE_*): it routes it when the current call returns. */
void p2p_notify(p2p_host *h, const p2p_notice *n);
/* The same for a notice that names one session. */
void p2p_notify_peer(p2p_host *h, int kind, const p2p_peer *p);
/* The attempt is to send INIT to every candidate now, at the punching pace. */
void p2p_punch(p2p_host *h, p2p_peer *p);

/* ---- events and datagrams --------------------------------------------------------------- */

/* Queues an event; data (len bytes) is copied. Returns 0 or P2P_ERR_NOMEM. */
int p2p_event_push(p2p_host *h, const p2p_event *ev, const uint8_t *data, size_t len);
/* Queues an event taking ownership of a malloc'd buffer. */
int p2p_event_push_owned(p2p_host *h, const p2p_event *ev, uint8_t *data, size_t len);
/* Spare record bodies. A stream of records of one size would otherwise allocate and free a
 * buffer per record, and the allocator would give memory back to the system and fault it in
 * again each time. p2p_spare_put keeps buf (len bytes, as malloc gave it) for a later record,
 * or frees it; p2p_spare_take returns a kept buffer of min to max bytes (its size in *len),
 * no longer charged to the node, or NULL; p2p_spare_free frees them all. */
void p2p_spare_put(p2p_host *h, uint8_t *buf, size_t len);
uint8_t *p2p_spare_take(p2p_host *h, size_t min, size_t max, size_t *len);
void p2p_spare_free(p2p_host *h);
/* 1 when an event carrying len bytes can be queued once `freed` bytes (charged to p and the
 * node) are given back; 0 counts a dropped_budget (and, the node's budget being spent, marks its
 * largest holder, as p2p_mem_take does). */
int p2p_event_room(p2p_host *h, p2p_peer *p, size_t len, size_t freed);
/* Queues an ERROR event about p (may be NULL). */
void p2p_error(p2p_host *h, p2p_peer *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills the peer fields of an event. */
void p2p_fill_event(const p2p_peer *p, p2p_event *ev);
/* Queues a datagram for the driver. Returns 0, P2P_ERR_LIMIT or P2P_ERR_NOMEM. */
int p2p_tx_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len);
/* issue 12: the same for a datagram to an address the node did not learn from the network: its
 * default gateway (from the route table), the SSDP group, a STUN server the application
 * configured. It does not pass the guard (section 8.6): the modules that use it bound their
 * own packets (port mapping: 6 per network; STUN: 3 tries per server). */
int p2p_tx_push_own(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len);

/* ---- memory budgets --------------------------------------------------------------------- */

/* Memory budgets (docs/PROTOCOL.md section 9). Everything a peer can make the node hold is
 * taken before it is allocated and given back when freed. take returns 0, or P2P_ERR_LIMIT
 * (counted in stats.dropped_budget) when it would pass the peer's budget (p may be NULL for
 * holdings of the node itself) or the node's: the caller then drops or refuses the work. */
int p2p_mem_take(p2p_host *h, p2p_peer *p, size_t n);
void p2p_mem_give(p2p_host *h, p2p_peer *p, size_t n);
/* Bytes that p2p_mem_take would grant now: what is left of the node's budget and, when p is
 * given, of the peer's. */
uint64_t p2p_mem_room(const p2p_host *h, const p2p_peer *p);
/* Takes n bytes (p2p_mem_take) and allocates them. Returns the block, or NULL with *rc set to
 * P2P_ERR_LIMIT (over a budget) or P2P_ERR_NOMEM; free it with free() and p2p_mem_give. */
void *p2p_mem_alloc(p2p_host *h, p2p_peer *p, size_t n, int *rc);

/* ---- policy ----------------------------------------------------------------------------- */

/* 1 when id is one of the n ids of list. */
int p2p_id_listed(const uint8_t (*list)[P2P_ID_LEN], size_t n, const uint8_t id[P2P_ID_LEN]);
/* Checks an id against this node's policy (itself, deny, allow). Returns NULL when acceptable,
 * or the reason ("is denied", ...). */
const char *p2p_policy(const p2p_host *h, const uint8_t id[P2P_ID_LEN]);
/* Adds a to the node's advertised addresses (h->addrs): a local one (from the driver) before
 * the reflexive ones (where peers saw us); when the reflexive part is full, the oldest one goes.
 * Returns 1 when the list changed, 0 when a was there already or cannot be advertised (not an
 * IP address, port or address zero), P2P_ERR_LIMIT when the local part is full. */
int p2p_own_add(p2p_host *h, const p2p_addr *a, int local);
/* issue 12: p2p_own_add for any kind (P2P_ADDR_*): MAPPED (expires: when the gateway's grant
 * runs out) and STUN go before the reflexive ones a peer reported, and are never pushed out by
 * them. Same returns. */
int p2p_own_add_kind(p2p_host *h, const p2p_addr *a, uint8_t kind, uint64_t expires);
/* Removes every advertised address of that kind (not LOCAL). Returns 1 when any went. */
int p2p_own_remove_kind(p2p_host *h, uint8_t kind);
/* The node's NAT mapping (P2P_MAPPING_*) as `source` (P2P_MAPSRC_*) found it: a change is
 * told to the host (P2P_NOTE_MAPPING); peers' reports do not overrule STUN or a mapping. */
void p2p_own_mapping(p2p_host *h, uint8_t mapping, uint8_t source);

/* ---- issue 12: requests to the driver and LAN datagrams ------------------------------------- */

/* Queues a request for the driver (p2p_host_next_io); data (len bytes, HTTP only) is copied.
 * Returns 0, P2P_ERR_LIMIT (P2P_IOQ_MAX waiting) or P2P_ERR_NOMEM. */
int p2p_io_push(p2p_host *h, const p2p_io *req, const uint8_t *data, size_t len);
/* A fresh request id (never 0; top bit clear: the driver's inbound streams have it set). */
uint32_t p2p_io_id(p2p_host *h);
/* Queues a datagram for the LAN socket (p2p_host_next_lan). Returns 0, P2P_ERR_LIMIT or
 * P2P_ERR_NOMEM. */
int p2p_lan_tx_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len);
/* 1 when the node may send to an address it learned from the network (a member record, an
 * introduction, an advertised or observed address): never to an INVALID one, to a PUBLIC one
 * always, and to a LOOPBACK or PRIVATE one only while the node is on such a network itself
 * (one of its own addresses, or the address of a connected peer, has that scope). Addresses
 * the application gave (connect) are the application's choice and are not checked. */
int p2p_may_send_learned(const p2p_host *h, const p2p_addr *a);
/* 1 while UDP works: an authenticated UDP datagram (or an answer to our own STUN or gateway
 * request) came within P2P_FALLBACK_AFTER_US. */
int p2p_udp_heard(const p2p_host *h, uint64_t now);
/* Appends a to the n addresses in v (at most max) unless it is there already or has no family
 * a candidate can have. */
void p2p_cand_add(p2p_addr *v, uint8_t *n, size_t max, const p2p_addr *a);

#endif
