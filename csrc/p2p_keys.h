/*
 * p2p_keys.h - the key schedule of an established session (docs/PROTOCOL.md section 2.3):
 * key updates in the manner of QUIC (RFC 9001 section 6) on WireGuard's timers.
 *
 * A session's keys come in generations. Each generation has a send key and a receive key and
 * is named on the wire by one bit, the key phase (byte 1 of a DATA header). The next
 * generation's keys follow from the current ones through a one-way KDF, so both sides derive
 * them without a round trip, and an old key cannot be recovered from a newer one. Packet
 * numbers, the replay window and everything reliability keeps span all generations: an update
 * changes no state but the keys.
 *
 * Besides the current keys the schedule holds the next receive key (ready for the peer's first
 * packet of the next phase, so that packet costs one AEAD open, never a KDF) and, for a short
 * time after an update, the previous receive key (for packets the network reordered across
 * the switch). Every key a generation drops is wiped.
 *
 * This module is pure: it reads no clock and touches no session. p2p_peer.c calls it, counts
 * updates and ends sessions whose keys expired.
 */
#ifndef P2P_KEYS_H
#define P2P_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include "p2p_crypto.h"

/* Specification constants (WireGuard, "Timers"): a side updates once its current keys are
 * REKEY_AFTER_TIME old or have sealed REKEY_AFTER_MESSAGES packets; keys REJECT_AFTER_TIME
 * old neither seal nor open anything. */
#define P2P_REKEY_AFTER_TIME_US UINT64_C(120000000)
#define P2P_REJECT_AFTER_TIME_US UINT64_C(180000000)
#define P2P_REKEY_AFTER_MESSAGES (UINT64_C(1) << 60)

/* Tunable: the previous receive key is kept for the larger of this and 3 probe timeouts
 * after the peer's first packet of the new phase (RFC 9001 section 6.5 asks for 3 PTO; the
 * floor covers reordering on paths whose PTO is a few milliseconds). */
#define P2P_KEY_KEEP_PREV_MIN_US UINT64_C(1000000)

/* DATA header byte 1: bit 0 is the key phase; the other bits are reserved and must be 0. */
#define P2P_DATA_KEY_PHASE 0x01

/* The label of the key-update KDF (docs/PROTOCOL.md section 2.3). */
#define P2P_KEY_UPDATE_LABEL "p2pnet/1 key update"

/* Which receive key opened a packet (p2p_keys_for_open). */
enum { P2P_KEY_CURRENT = 0, P2P_KEY_PREVIOUS = 1, P2P_KEY_NEXT = 2 };

typedef struct p2p_keys {
    uint8_t send[P2P_KEY_LEN], recv[P2P_KEY_LEN]; /* the current generation */
    uint8_t next[P2P_KEY_LEN];                    /* the next generation's receive key */
    uint8_t prev[P2P_KEY_LEN]; /* the previous generation's receive key, when has_prev */
    uint8_t phase;             /* the current generation's key phase bit */
    uint8_t has_prev;
    uint8_t confirmed;      /* a packet of the current generation came from the peer */
    uint64_t installed;     /* when the current generation became current */
    uint64_t prev_until;    /* the previous receive key is wiped then */
    uint64_t send_first_pn; /* first packet number sealed with the current send key */
    uint64_t recv_first_pn; /* lowest packet number opened with the current receive
                                   * key (UINT64_MAX: none yet) */
    uint64_t generation;    /* updates so far (0 for the handshake's keys) */
    uint64_t late;          /* packets opened with the previous key (tests read it) */
} p2p_keys;

/* The next generation of a key: BLAKE2b-256 keyed with `key` over P2P_KEY_UPDATE_LABEL.
 * out may equal key. */
void p2p_keys_next_key(uint8_t out[P2P_KEY_LEN], const uint8_t key[P2P_KEY_LEN]);

/* The handshake's keys become generation 0, phase 0, at now; send_first_pn is 0. Copies the
 * keys (the caller wipes its own). */
void p2p_keys_init(p2p_keys *k, const uint8_t send[P2P_KEY_LEN], const uint8_t recv[P2P_KEY_LEN],
                   uint64_t now);
/* Wipes every key. */
void p2p_keys_wipe(p2p_keys *k);

/* The receive key for a DATA packet with key phase `phase` and number pn arriving at now, or
 * NULL when no key may open it (its generation is gone or REJECT_AFTER_TIME old). *which is
 * set to P2P_KEY_*. A phase other than the current one is the previous generation when that
 * key is held and pn is below every packet number of the current generation seen so far
 * (the peer numbers its packets in the order it sends them, and changes phase once),
 * otherwise the next generation. Changes nothing: an unauthenticated packet never moves
 * the schedule. */
const uint8_t *p2p_keys_for_open(const p2p_keys *k, uint8_t phase, uint64_t pn, uint64_t now,
                                 int *which);
/* After a packet numbered pn authenticated under the key p2p_keys_for_open chose: the
 * current generation is confirmed (and the previous key is kept only `keep` more, at most),
 * and a packet of the next generation makes it current: both keys move on, the send key's
 * first packet number being next_pn. Returns 1 when the keys moved on, else 0. */
int p2p_keys_opened(p2p_keys *k, int which, uint64_t pn, uint64_t now, uint64_t keep,
                    uint64_t next_pn);

/* 1 when the packet numbered pn, sealed at now, must go under the next generation: the
 * current keys are REKEY_AFTER_TIME old or have sealed REKEY_AFTER_MESSAGES packets, and the
 * peer has shown it has them (a side never runs two generations ahead of its peer). */
int p2p_keys_update_due(const p2p_keys *k, uint64_t pn, uint64_t now);
/* Starts the next generation at now; pn is the first packet number its send key seals. The
 * old receive key becomes the previous one until the peer confirms the new generation (then
 * p2p_keys_opened shortens its life) or it is REJECT_AFTER_TIME old. */
void p2p_keys_update(p2p_keys *k, uint64_t pn, uint64_t now);
/* 1 when the current keys are REJECT_AFTER_TIME old: they may no longer be used. */
int p2p_keys_expired(const p2p_keys *k, uint64_t now);
/* Replaces the send key with `junk` (random bytes): what an expired key would have sealed
 * goes out under a key nobody has. */
void p2p_keys_destroy_send(p2p_keys *k, const uint8_t junk[P2P_KEY_LEN]);

/* The next time the schedule needs a timer: the previous key's wipe, the update (once
 * confirmed) or the expiry of the current keys. */
uint64_t p2p_keys_deadline(const p2p_keys *k);
/* Wipes the previous receive key once its time is up. */
void p2p_keys_on_timeout(p2p_keys *k, uint64_t now);

#endif
