/*
 * p2p_pmp.h - the port-mapping codecs spoken to the default gateway's UDP port 5351: PCP MAP
 * (RFC 6887 sections 7, 11) and NAT-PMP (RFC 6886 section 3). Base layer: pure functions over
 * borrowed bytes. Replies are told apart by their first byte (0 NAT-PMP, 2 PCP); the hub only
 * hands over datagrams that came from gateway:5351 (design12 section 2).
 *
 * Both protocols are big-endian.
 */
#ifndef P2P_PMP_H
#define P2P_PMP_H

#include <stddef.h>
#include <stdint.h>

#include "p2pnet.h"

#define P2P_PMP_PORT 5351
#define P2P_PCP_VERSION 2
#define P2P_PCP_MAP_LEN 60
#define P2P_PCP_MAX 1100
#define P2P_NATPMP_MAP_LEN 12
#define P2P_PCP_OP_MAP 0x01
#define P2P_PMP_RESPONSE 0x80 /* the R bit / 128 + opcode */

/* PCP result codes (RFC 6887 section 7.4). NAT-PMP's (RFC 6886 section 3.5) share 0..5 in
 * meaning only for 0 (success) and 1 (unsupported version). */
enum {
    P2P_PCP_SUCCESS = 0,
    P2P_PCP_UNSUPP_VERSION = 1,
    P2P_PCP_NOT_AUTHORIZED = 2,
    P2P_PCP_MALFORMED_REQUEST = 3,
    P2P_PCP_UNSUPP_OPCODE = 4,
    P2P_PCP_UNSUPP_OPTION = 5,
    P2P_PCP_MALFORMED_OPTION = 6,
    P2P_PCP_NETWORK_FAILURE = 7,
    P2P_PCP_NO_RESOURCES = 8,
    P2P_PCP_UNSUPP_PROTOCOL = 9,
    P2P_PCP_USER_EX_QUOTA = 10,
    P2P_PCP_CANNOT_PROVIDE_EXTERNAL = 11,
    P2P_PCP_ADDRESS_MISMATCH = 12,
    P2P_PCP_EXCESSIVE_REMOTE_PEERS = 13
};

/* Writes a PCP MAP request for UDP (60 bytes): lifetime in seconds (0 deletes the mapping
 * named by nonce), client = the packet's source address as the driver reports it (IPv4 is
 * sent as ::ffff:a.b.c.d, else the server answers ADDRESS_MISMATCH), iport our port,
 * eport_hint the suggested external port (0: any), suggested external address "any".
 * Returns 60, or 0 when cap is short or client is neither IPv4 nor IPv6. */
size_t p2p_pcp_map(uint8_t *out, size_t cap, const uint8_t nonce[12], const p2p_addr *client,
                   uint16_t iport, uint16_t eport_hint, uint32_t lifetime);

/* Writes a NAT-PMP UDP map request (12 bytes; lifetime 0 with eport_hint 0 deletes, RFC 6886
 * section 3.4). Returns 12 or 0 when cap is short. */
size_t p2p_natpmp_map(uint8_t *out, size_t cap, uint16_t iport, uint16_t eport_hint,
                      uint32_t lifetime);
/* Writes the NAT-PMP external address request (2 bytes: 0, 0). Returns 2 or 0. */
size_t p2p_natpmp_addr(uint8_t *out, size_t cap);

/* A parsed reply. version 0 (NAT-PMP) or 2 (PCP); opcode with the R bit (NAT-PMP: 128 +
 * request opcode); result (NAT-PMP's u16 result, 255 when above 255); lifetime; epoch (NAT-PMP
 * "seconds since start of epoch", PCP "epoch time"). PCP MAP and NAT-PMP map replies: nonce
 * (PCP), iport, eport, ext = the external address with port eport (NAT-PMP map replies carry
 * no address: ext.family 0). NAT-PMP address replies: ext with port 0. */
typedef struct p2p_pmp_reply {
    uint8_t version, opcode, result;
    uint32_t lifetime, epoch;
    uint8_t nonce[12];
    uint16_t iport, eport;
    p2p_addr ext;
} p2p_pmp_reply;

/* Parses a reply from gateway:5351 (b borrowed for the call). Refused (-1): a version other
 * than 0 and 2; the R bit (128) clear in the opcode; NAT-PMP shorter than 8 bytes, or than 12
 * (address) / 16 (map) on success; PCP shorter than 24, longer than 1100 or not a multiple of
 * 4; a PCP MAP success shorter than 60 or for a protocol other than UDP (17). The caller
 * checks the opcode, the nonce and the internal port against what it asked. A NAT-PMP reply
 * with result 1 to a PCP request is the version negotiation of RFC 6887 section 9: fall back
 * to NAT-PMP. Returns 0 or -1. */
int p2p_pmp_parse(const uint8_t *b, size_t len, p2p_pmp_reply *r);

#endif
