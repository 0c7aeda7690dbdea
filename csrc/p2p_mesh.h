/*
 * p2p_mesh.h - membership and broadcast (docs/PROTOCOL.md section 7): signed member records,
 * who dials whom to form the full mesh, and broadcasts signed by their origin that reach every
 * member exactly once, pulled through other members where there is no direct link.
 *
 * Its state types are in p2p_internal.h, as the host embeds them. The mesh calls down only
 * (sessions' streams, the shared state): a member it dials is an attempt the host starts
 * (p2p_attempt_new), a session's end reaches it from the host (P2P_NOTE_LEFT).
 */
#ifndef P2P_MESH_H
#define P2P_MESH_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"
#include "p2p_state.h"

int p2p_mesh_init(struct p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_mesh_free(struct p2p_host *h);
/* A session was established (after JOIN): the member is confirmed, and the address the peer
 * saw us at is noted (advertised once a second, independent peer reports it). */
void p2p_mesh_on_join(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* A session ended. */
void p2p_mesh_on_leave(struct p2p_host *h, const uint8_t id[P2P_ID_LEN], int reason, uint64_t now);
/* A mesh record arrived on a session's stream. Returns 0, or -1 for a protocol error. */
int p2p_mesh_on_record(struct p2p_host *h, struct p2p_peer *p, uint8_t kind, const uint8_t *body,
                       size_t len, uint64_t now);
uint64_t p2p_mesh_deadline(const struct p2p_host *h);
/* The member record of an id (for introductions and path probes), or NULL when unknown. */
const p2p_member *p2p_mesh_member(const struct p2p_host *h, const uint8_t id[P2P_ID_LEN]);
/* The public calls of p2p_host.c that are the mesh's work. */
int p2p_mesh_add_address(struct p2p_host *h, const p2p_addr *a, uint64_t now);
int p2p_mesh_connect_id(struct p2p_host *h, const uint8_t id[P2P_ID_LEN], p2p_peer_handle *out);
/* lanes: the broadcast travels on lane `lane` (0 to P2P_LANE_MAX) at every hop. */
int p2p_mesh_broadcast(struct p2p_host *h, uint8_t lane, uint16_t type, const uint8_t *data,
                       size_t len, uint64_t *seq, uint64_t now);
void p2p_mesh_on_timeout(struct p2p_host *h, uint64_t now);

#endif
