/*
 * p2p_path.h - the address a session sends to (docs/PROTOCOL.md section 8.4): roaming, path
 * validation with PATH_CHALLENGE/PATH_RESPONSE, the anti-amplification budget of an unproven
 * address, and the upgrade of a relayed session to a direct path.
 *
 * Path calls nothing beside or above it: what it needs from NAT and mesh (the addresses to
 * probe, an introduction when a path stalls) the host gathers and passes in, or is told to
 * do by a result code.
 */
#ifndef P2P_PATH_H
#define P2P_PATH_H

#include "p2p_state.h"

/* The session was established on p->addr. */
void p2p_path_start(p2p_host *h, p2p_peer *p, uint64_t now);
/* An authenticated DATA packet came from `from`; `probing` is 1 when it held only PATH
 * frames and padding, `newest` when its number is the highest so far. */
void p2p_path_on_packet(p2p_host *h, p2p_peer *p, const p2p_addr *from, size_t len, int probing,
                        int newest, uint64_t now);
void p2p_path_on_challenge(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data,
                           uint64_t now);
void p2p_path_on_response(p2p_host *h, p2p_peer *p, const p2p_addr *from, uint64_t data,
                          uint64_t now);
/* The largest packet the session may send to its direct address now, at most cap: 0 while an
 * unproven address has used its anti-amplification budget. (A relayed path's room is the
 * relay's: p2p_nat_relay_room.) */
size_t p2p_path_room(const p2p_peer *p, size_t cap);
/* n bytes went to the session's address. */
void p2p_path_sent(p2p_peer *p, size_t n);
uint64_t p2p_path_deadline(const p2p_peer *p);
/* Returns P2P_PATH_PROBE when the direct addresses of a relayed session are due to be probed
 * (the host gathers them and calls p2p_path_probe). */
int p2p_path_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now);
#define P2P_PATH_PROBE 1
/* Sends PATH_CHALLENGE to every one of the n direct addresses c, src[i] being the session
 * that supplied c[i] (for the guard's probe allowance). */
void p2p_path_probe(p2p_host *h, p2p_peer *p, const p2p_addr *c, const p2p_peer_handle *src,
                    size_t n, uint64_t now);
/* The session's peer was introduced to us again (P2P_NOTE_PROBE): it may be reachable where it
 * was not, so a session not on a direct path starts its upgrade schedule over (1, 2, 4, 8,
 * 16 s, then every 30 s). A direct session's timing rounds keep their pace. */
void p2p_path_retry(p2p_peer *p, uint64_t now);
/* The peer has acknowledged nothing for several probe timeouts. Returns 1 when an introducer
 * is to be asked to introduce the two again: once per stall on a direct path; on a relayed
 * path at every stalled timeout (NAT paces its hand-over asks itself). */
int p2p_path_stalled(p2p_peer *p);

/* Birthday punching (docs/PROTOCOL.md section 8.3), one round per node at a time; NAT's PUNCH
 * record sets the session's role (bday_role) and, for E, the round READY announced. The hub
 * passes the driver's answer to P2P_IO_PUNCH_OPEN here (H: the openers go out, then READY). */
void p2p_path_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* When the session's round has its next step (H: start, second opener, close; E: start, next
 * probe, end), or P2P_TIME_NEVER. p2p_path_deadline includes it. */
uint64_t p2p_path_spray_deadline(const p2p_peer *p);
/* Runs what is due of the session's round (p2p_path_on_timeout calls it too). */
void p2p_path_spray_timer(p2p_host *h, p2p_peer *p, uint64_t now);

#endif
