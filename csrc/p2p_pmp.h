/*
 * p2p_pmp.h - PCP (RFC 6887) MAP and NAT-PMP (RFC 6886) messages: a pure codec (base layer).
 * docs/PROTOCOL.md section 8.7.
 */
#ifndef P2P_PMP_H
#define P2P_PMP_H

#include "p2pnet.h"

#define P2P_PMP_PORT 5351 /* the gateway's port for both */
#define P2P_PCP_MAP_LEN 60
#define P2P_NATPMP_MAP_LEN 12

/* A PCP MAP request for UDP: nonce (kept for renewals and the delete), client (our source
 * address towards the gateway), internal port, suggested external port (0: any), lifetime in
 * seconds (0 deletes). Returns 60, or 0 when cap is too small. */
size_t p2p_pcp_map(uint8_t *out, size_t cap, const uint8_t nonce[12], const p2p_addr *client,
                   uint16_t iport, uint16_t eport_hint, uint32_t lifetime);
/* A NAT-PMP UDP mapping request (lifetime 0 and eport_hint 0 delete). Returns 12 or 0. */
size_t p2p_natpmp_map(uint8_t *out, size_t cap, uint16_t iport, uint16_t eport_hint,
                      uint32_t lifetime);

typedef struct p2p_pmp_reply {
    uint8_t version; /* 2: PCP, 0: NAT-PMP */
    uint8_t opcode;  /* with the response bit: PCP 0x81 (MAP), NAT-PMP 128 + opcode */
    uint8_t result;  /* PCP result code, or NAT-PMP result (low byte) */
    uint32_t lifetime, epoch;
    uint8_t nonce[12]; /* PCP */
    uint16_t iport, eport;
    p2p_addr ext; /* the external address (PCP MAP; NAT-PMP external address reply) */
} p2p_pmp_reply;
/* Parses a PCP or NAT-PMP response (by its first byte). Returns 0 or -1. */
int p2p_pmp_parse(const uint8_t *b, size_t len, p2p_pmp_reply *r);

#endif
