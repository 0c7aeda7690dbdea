/*
 * p2p_handshake.h - the Noise XXpsk3 handshake (docs/PROTOCOL.md section 2): INIT, RESP, FIN
 * and COOKIE, the half-open table and its caps, one session per node, and admission.
 *
 * The handshake makes and ends sessions in the table (p2p_state.h) but calls nothing above
 * the session layer: a session it establishes is told to the host (P2P_NOTE_JOINED), which
 * starts its path, mesh and NAT parts.
 */
#ifndef P2P_HANDSHAKE_H
#define P2P_HANDSHAKE_H

#include "p2p_state.h"

/* The psk (network key stretched), the mac1 and cookie keys and the half-open limits, from the
 * configuration. Returns 0, P2P_ERR_INVALID or P2P_ERR_NOMEM. */
int p2p_hs_init(p2p_host *h, const p2p_config *cfg);
/* Starts the handshake of an attempt: builds its INIT and, unless the attempt is to punch
 * (p->punch_due), sends it to every candidate. Returns 0 or an error. */
int p2p_hs_start(p2p_host *h, p2p_peer *p, uint64_t now);
void p2p_hs_free(p2p_peer *p);
void p2p_hs_on_init(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                    uint64_t now);
void p2p_hs_on_resp(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                    uint64_t now);
void p2p_hs_on_fin(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now);
void p2p_hs_on_cookie(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                      uint64_t now);
/* The first authenticated DATA reached an initiator (P2P_RX_CONFIRMED): the session is
 * established, or refused when the node is full. */
void p2p_hs_confirmed(p2p_host *h, p2p_peer *p, uint64_t now);
/* Drops our own attempt p quietly: a session the other node dialled at the same time wins,
 * and its JOIN will name p's handle. */
void p2p_hs_superseded(p2p_host *h, p2p_peer *p, uint64_t now);
/* The application's answer to a REQUEST (p2p_host_admit). */
int p2p_hs_admit(p2p_host *h, p2p_peer *p, int accept, uint64_t now);
/* The handshake's timer, in two halves around the NAT's punch timer: expired() ends an attempt
 * whose time is up (returns 1: p is dead), resend() resends what is due. */
int p2p_hs_expired(p2p_host *h, p2p_peer *p, uint64_t now);
void p2p_hs_resend(p2p_host *h, p2p_peer *p, uint64_t now);
/* Sends INIT to every candidate now and keeps resending at the punching pace (P2P_NOTE_PUNCH:
 * the attempt was introduced). */
void p2p_hs_punch_now(p2p_host *h, p2p_peer *p, uint64_t now);
/* When the handshake's timer is due: its expiry or its next resend. (An attempt's NAT timer is
 * p2p_nat_deadline: the host takes the earlier.) */
uint64_t p2p_hs_deadline(const p2p_peer *p);

#endif
