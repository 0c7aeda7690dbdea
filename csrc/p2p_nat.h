/*
 * p2p_nat.h - NAT traversal (docs/PROTOCOL.md section 8): introductions, hole punching and the
 * end-to-end encrypted relay. (Path validation, roaming and the upgrade of a relayed session to
 * a direct path are p2p_path.h's.) Its state types are in p2p_internal.h, as the host embeds
 * them.
 *
 * NAT calls nothing beside or above it: attempts it makes are started by the host
 * (p2p_attempt_new, P2P_NOTE_DIAL), punches are asked for (p2p_punch), and probing a peer or
 * introducing two peers are notices (P2P_NOTE_PROBE, P2P_NOTE_INTRODUCE) the host completes
 * with what path and mesh know.
 */
#ifndef P2P_NAT_H
#define P2P_NAT_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

#include "p2p_state.h"

int p2p_nat_init(struct p2p_host *h, const p2p_config *cfg);
void p2p_nat_free(struct p2p_host *h);
/* A session was established (P2P_NOTE_JOINED): attempts that waited for it as their introducer
 * ask it now. */
void p2p_nat_on_join(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* A session is being freed: its relayed pairs and pending introductions go, sessions it relayed
 * for us start a hand-over, and attempts that waited for it as their introducer fail (they go
 * on the dead list). */
void p2p_nat_on_end(struct p2p_host *h, struct p2p_peer *p);
/* An introduction record arrived on a session's stream. Returns 0, or -1 for a protocol error. */
int p2p_nat_on_record(struct p2p_host *h, struct p2p_peer *p, uint8_t kind, const uint8_t *body,
                      size_t len, uint64_t now);
/* A RELAY frame arrived on session p (already authenticated): passes it on to the session its
 * channel names. Returns the bytes sent, with *to set to that session, or 0. */
size_t p2p_nat_on_relay(struct p2p_host *h, struct p2p_peer *p, uint32_t channel,
                        const uint8_t *data, size_t len, uint64_t now, struct p2p_peer **to);
/* Wraps a datagram for a relayed path into a DATA packet for the relay. Returns its length
 * (with *to set to the relay's address and *relay to its session), or 0 when it cannot go (the
 * relay session is gone or the datagram does not fit). */
size_t p2p_nat_wrap(struct p2p_host *h, const p2p_addr *path, const uint8_t *dgram, size_t len,
                    uint8_t *out, size_t cap, p2p_addr *to, struct p2p_peer **relay);
/* The address of a relayed path: our index of the session with the relay, and the relay's
 * channel for the far node. */
p2p_addr p2p_nat_relay_addr(uint32_t relay_index, uint32_t channel);
/* The largest datagram a relayed path carries when the driver takes cap bytes. */
size_t p2p_nat_relay_room(const struct p2p_host *h, const p2p_addr *path, size_t cap);
/* The introduction remembered for an id, or NULL. */
const p2p_intro *p2p_nat_intro(const struct p2p_host *h, const uint8_t id[P2P_ID_LEN],
                               uint64_t now);
/* An attempt is about to start its handshake (P2P_NOTE_DIAL): when its maker asked for an
 * introduction at p->ask_at, NAT plans to ask p->introducer then. */
void p2p_nat_on_dial(struct p2p_peer *p);
/* When NAT's timer of an attempt is due (asking its introducer, or adding the relay), or of an
 * established relayed session in a hand-over (its next ask), or P2P_TIME_NEVER: the host takes
 * the earlier of this and the handshake's (or the session's) deadline. */
uint64_t p2p_nat_deadline(const struct p2p_peer *p);
/* Handshake timer for an attempt that is punching or waiting to ask: asks the introducer, or
 * adds the relay once punching has had its time. For an established session: the next
 * hand-over ask, when due. */
void p2p_nat_punch_timer(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* A connected peer stopped answering (P2P_TIMER_STALLED, p2p_path_stalled): asks an introducer
 * to introduce us again. For a relayed session this is the relay hand-over: the next of the
 * node's mediators, then mesh members (never the old relay), one every 2 s or at once after
 * INTRO_FAIL, at most 4 per loss; an INTRO with the relay flag then moves the session. */
void p2p_nat_reintroduce(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* Sends `to` the INTRO about `about`, with the n addresses c where `about` may be reached
 * (P2P_NOTE_INTRODUCE: the host gathers them). */
void p2p_nat_send_intro(struct p2p_host *h, struct p2p_peer *to, const struct p2p_peer *about,
                        const p2p_addr *c, uint8_t n, int relay_ok);
/* A PUNCH record (kind 0x0e, docs/PROTOCOL.md section 8.3) on session p: INFO (the peer's NAT
 * mapping: decides the roles of a birthday round), READY (H opened its sockets: E may spray),
 * DONE. Returns 0, or -1 for a protocol error. */
int p2p_nat_on_punch(struct p2p_host *h, struct p2p_peer *p, const uint8_t *body, size_t len,
                     uint64_t now);
/* The node's NAT mapping changed (P2P_NOTE_MAPPING): every relayed session hears it (INFO). */
void p2p_nat_on_mapping(struct p2p_host *h, uint64_t now);
/* Session m moved from a stream onto UDP (design 12 section 4.3): each of our sessions it
 * relays asks it for a re-introduction, which carries our UDP address to the peer. */
void p2p_nat_on_upgraded(struct p2p_host *h, struct p2p_peer *m, uint64_t now);
/* 1 while this node's UDP gets no answers: a session is carried by the stream fallback (it has
 * a UDP home it could not reach), no session is on a proven direct path, and no UDP datagram
 * came from anyone for P2P_FALLBACK_AFTER_US. Punching then only spends the guard's probe
 * allowance of the peer's addresses (section 8.6), which the upgrade needs once UDP is back. */
int p2p_nat_udp_silent(const struct p2p_host *h, uint64_t now);
/* p2p_host_connect_via's work. */
int p2p_nat_connect_via(struct p2p_host *h, const uint8_t id[P2P_ID_LEN], const p2p_addr *via,
                        p2p_peer_handle *out);

#endif
