/*
 * p2p_host.h - the hub's private header: the calls of p2p_host.c that tests use beyond the
 * public API (p2pnet.h), and every module header, for code that drives the whole core.
 */
#ifndef P2P_HOST_H
#define P2P_HOST_H

#include "p2p_guard.h"
#include "p2p_handshake.h"
#include "p2p_mesh.h"
#include "p2p_nat.h"
#include "p2p_path.h"
#include "p2p_peer.h"
#include "p2p_lan.h"     /* issue 12 */
#include "p2p_portmap.h" /* issue 12 */
#include "p2p_probe.h"   /* issue 12 */
#include "p2p_stun.h"    /* issue 12 */

/* Starts a handshake with the node that expected_id (may be NULL) names, sending INIT to
 * every one of the n candidate addresses (n may be 0: candidates come later). Returns the
 * attempt, or NULL with *rc set. */
p2p_peer *p2p_host_dial(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                        uint64_t now, int *rc);
/* Sends PATH_CHALLENGE to every direct address session p may have now: those an introducer
 * gave, those it advertised, those in its member record. */
void p2p_host_probe(p2p_host *h, p2p_peer *p, uint64_t now);

#endif
