/*
 * p2p_nat.h - NAT traversal (docs/PROTOCOL.md section 8): introductions, hole punching, the
 * end-to-end encrypted relay (p2p_nat.c), and path validation, roaming and the upgrade of a
 * relayed session to a direct path (p2p_path.c).
 */
#ifndef P2P_NAT_H
#define P2P_NAT_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

#define P2P_CANDIDATES 9             /* addresses an attempt punches at (8 + the relay) */
#define P2P_INTRO_AFTER_US 1000000   /* a mesh dial asks for an introduction after this */
#define P2P_PUNCH_US 2500000         /* punching alone this long, then the relay joins in */
#define P2P_PUNCH_RESEND_US 200000   /* INIT to every candidate this often while punching */
#define P2P_INTROS 64                /* introductions remembered (candidates for upgrades) */
#define P2P_INTRO_TTL_US 600000000   /* ... for ten minutes */
#define P2P_RELAY_IDLE_US 60000000   /* a relayed pair unused this long is forgotten */
#define P2P_DEFAULT_RELAY_SESSIONS 64
#define P2P_DEFAULT_RELAY_RATE (1u << 20)
#define P2P_RELAY_OVERHEAD (16 + 1 + 4 + 2 + 16)  /* outer header, frame header, outer tag */
#define P2P_UPGRADE_FIRST_US 1000000 /* a relayed session first tries a direct path after this */
#define P2P_UPGRADE_MAX_US 30000000  /* ... then backs off to this */
#define P2P_CHALLENGE_US 300000      /* path challenge resend, doubling */
#define P2P_CHALLENGE_TRIES 4        /* then the new path is given up */
#define P2P_AMPLIFICATION 3          /* bytes to an unproven address <= 3 x bytes from it */
/* Introductions only when asked (section 8.2): the tables and their caps. */
#define P2P_ASKS 64                  /* INTRO_REQs we sent, remembered until answered ... */
#define P2P_ASK_US 10000000          /* ... or for this long */
#define P2P_PENDING 64               /* at an introducer: requests waiting for the other side */
#define P2P_PENDING_PER_ASKER 8      /* ... of which one session may hold this many */
#define P2P_PENDING_US 10000000      /* ... each for this long */
#define P2P_OFFER_ATTEMPTS 32        /* attempts made from offers, at once ... */
#define P2P_OFFER_ATTEMPTS_VIA 8     /* ... of which one introducer's offers made this many */
#define P2P_OFFERS_PER_VIA 8         /* offers accepted from one introducer ... */
#define P2P_OFFERS_WINDOW_US 10000000 /* ... per this window */

struct p2p_host;
struct p2p_peer;

/* What an introducer told us about another node. */
typedef struct p2p_intro {
    uint8_t id[32];
    p2p_peer_handle via;      /* the introducer's session */
    uint32_t channel;         /* the introducer's name for that node on the relay */
    int relay_ok;
    uint8_t ncand;
    p2p_addr cand[P2P_CANDIDATES - 1];
    uint64_t expire;
} p2p_intro;

/* An INTRO_REQ this node sent: an INTRO about `id` is acted on only from `via`, and only while
 * this is remembered. */
typedef struct p2p_ask {
    uint8_t id[32];
    p2p_peer_handle via;
    uint64_t expire;
} p2p_ask;

/* At an introducer: `asker` asked to be introduced to `target`, which was offered the
 * introduction and has not answered yet. */
typedef struct p2p_intro_pending {
    p2p_peer_handle asker, target;
    uint64_t expire;
} p2p_intro_pending;

/* At a relay: two of its sessions it introduced and may forward between. */
typedef struct p2p_relay_pair {
    p2p_peer_handle a, b;
    uint64_t last_used;
} p2p_relay_pair;

typedef struct p2p_nat {
    int relay;                          /* relays for others */
    uint32_t max_pairs;
    uint64_t rate, tokens, refill_at;   /* token bucket, bytes */
    p2p_relay_pair *pairs;
    size_t npairs;
    p2p_intro intros[P2P_INTROS];
    p2p_ask asks[P2P_ASKS];
    p2p_intro_pending pending[P2P_PENDING];
} p2p_nat;

int p2p_nat_init(struct p2p_host *h, const p2p_config *cfg);
void p2p_nat_free(struct p2p_host *h);
/* A session was established / ended (before the peer is freed). */
void p2p_nat_on_join(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
void p2p_nat_on_end(struct p2p_host *h, struct p2p_peer *p);
/* An introduction record arrived on a session's stream. Returns 0, or -1 for a protocol error. */
int p2p_nat_on_record(struct p2p_host *h, struct p2p_peer *p, uint8_t kind, const uint8_t *body,
                      size_t len, uint64_t now);
/* A RELAY frame arrived on session p (already authenticated). */
void p2p_nat_on_relay(struct p2p_host *h, struct p2p_peer *p, uint32_t channel,
                      const uint8_t *data, size_t len, uint64_t now);
/* Wraps a datagram for a relayed path into a DATA packet for the relay. Returns its length
 * (with *to set to the relay's address), or 0 when it cannot go (the relay session is gone
 * or the datagram does not fit). */
size_t p2p_nat_wrap(struct p2p_host *h, const p2p_addr *path, const uint8_t *dgram, size_t len,
                    uint8_t *out, size_t cap, p2p_addr *to);
/* The address of a relayed path: our index of the session with the relay, and the relay's
 * channel for the far node. */
p2p_addr p2p_nat_relay_addr(uint32_t relay_index, uint32_t channel);
/* Appends a to the n addresses in v (at most max) unless it is there already or has no
 * family a candidate can have. */
void p2p_nat_add_candidate(p2p_addr *v, uint8_t *n, size_t max, const p2p_addr *a);
/* The largest datagram a relayed path carries when the driver takes cap bytes. */
size_t p2p_nat_relay_room(const struct p2p_host *h, const p2p_addr *path, size_t cap);
/* Asks the session `via` to introduce us to the node with that id; p is our attempt. */
void p2p_nat_request(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* The introduction remembered for an id, or NULL. */
const p2p_intro *p2p_nat_intro(const struct p2p_host *h, const uint8_t id[32], uint64_t now);
/* Handshake timer for an attempt that is punching: resends INIT to every candidate and adds
 * the relay once punching has had its time. */
void p2p_nat_punch_timer(struct p2p_host *h, struct p2p_peer *p, uint64_t now);

/* A connected peer stopped answering: asks an introducer to introduce us again. */
void p2p_nat_reintroduce(struct p2p_host *h, struct p2p_peer *p, uint64_t now);

/* p2p_path.c */
/* Sends PATH_CHALLENGE to every direct address the peer may have now. */
void p2p_path_probe(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* The peer has acknowledged nothing for several probe timeouts. */
void p2p_path_stalled(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* An authenticated DATA packet came from `from`; `probing` is 1 when it held only PATH
 * frames and padding, `newest` when its number is the highest so far. */
void p2p_path_on_packet(struct p2p_host *h, struct p2p_peer *p, const p2p_addr *from,
                        size_t len, int probing, int newest, uint64_t now);
void p2p_path_on_challenge(struct p2p_host *h, struct p2p_peer *p, const p2p_addr *from,
                           uint64_t data, uint64_t now);
void p2p_path_on_response(struct p2p_host *h, struct p2p_peer *p, const p2p_addr *from,
                          uint64_t data, uint64_t now);
/* The largest packet the session may send now, at most cap: 0 while its path cannot carry
 * one (its relay is gone, or an unproven address has used its anti-amplification budget). */
size_t p2p_path_room(const struct p2p_host *h, const struct p2p_peer *p, size_t cap);
void p2p_path_sent(struct p2p_peer *p, size_t n);
uint64_t p2p_path_deadline(const struct p2p_peer *p);
void p2p_path_on_timeout(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* The session was established on p->addr. */
void p2p_path_start(struct p2p_host *h, struct p2p_peer *p, uint64_t now);

#endif
