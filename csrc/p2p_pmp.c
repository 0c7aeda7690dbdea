/*
 * p2p_pmp.c - PCP MAP and NAT-PMP requests and replies (RFC 6887, RFC 6886). Pure codecs.
 */
#include <string.h>

#include "p2p_pmp.h"
#include "p2p_wire.h" /* big-endian fields */

/* PCP's 16-byte address form: IPv4 as ::ffff:a.b.c.d (RFC 6887 section 5). */
static void put_addr16(uint8_t *p, const p2p_addr *a)
{
    if (a->family == P2P_AF_INET4) {
        memset(p, 0, 10);
        p[10] = p[11] = 0xff;
        memcpy(p + 12, a->ip, 4);
    } else {
        memcpy(p, a->ip, 16);
    }
}

static void get_addr16(const uint8_t *p, uint16_t port, p2p_addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a, 0, sizeof *a);
    if (memcmp(p, mapped, 12) == 0) {
        a->family = P2P_AF_INET4;
        memcpy(a->ip, p + 12, 4);
    } else {
        a->family = P2P_AF_INET6;
        memcpy(a->ip, p, 16);
    }
    a->port = port;
}

size_t p2p_pcp_map(uint8_t *out, size_t cap, const uint8_t nonce[12], const p2p_addr *client,
                   uint16_t iport, uint16_t eport_hint, uint32_t lifetime)
{
    if (out == NULL || nonce == NULL || client == NULL || cap < P2P_PCP_MAP_LEN) return 0;
    if (client->family != P2P_AF_INET4 && client->family != P2P_AF_INET6) return 0;
    memset(out, 0, P2P_PCP_MAP_LEN);
    out[0] = P2P_PCP_VERSION;
    out[1] = P2P_PCP_OP_MAP;
    p2p_put_be32(out + 4, lifetime);
    put_addr16(out + 8, client);
    memcpy(out + 24, nonce, 12);
    out[36] = 17; /* UDP */
    p2p_put_be16(out + 40, iport);
    p2p_put_be16(out + 42, eport_hint);
    /* suggested external address: "any" of the client's family */
    if (client->family == P2P_AF_INET4) out[54] = out[55] = 0xff;
    return P2P_PCP_MAP_LEN;
}

size_t p2p_natpmp_map(uint8_t *out, size_t cap, uint16_t iport, uint16_t eport_hint,
                      uint32_t lifetime)
{
    if (out == NULL || cap < P2P_NATPMP_MAP_LEN) return 0;
    out[0] = 0;
    out[1] = 1; /* map UDP */
    p2p_put_be16(out + 2, 0);
    p2p_put_be16(out + 4, iport);
    p2p_put_be16(out + 6, eport_hint);
    p2p_put_be32(out + 8, lifetime);
    return P2P_NATPMP_MAP_LEN;
}

size_t p2p_natpmp_addr(uint8_t *out, size_t cap)
{
    if (out == NULL || cap < 2) return 0;
    out[0] = 0;
    out[1] = 0;
    return 2;
}

static int parse_natpmp(const uint8_t *b, size_t len, p2p_pmp_reply *r)
{
    if (len < 8) return -1;
    uint16_t result = p2p_get_be16(b + 2);
    r->result = result > 255 ? 255 : (uint8_t)result;
    r->epoch = p2p_get_be32(b + 4);
    if (result != 0) return 0;           /* errors are 8 bytes or more; nothing else is read */
    if (r->opcode == P2P_PMP_RESPONSE) { /* external address */
        if (len < 12) return -1;
        r->ext.family = P2P_AF_INET4;
        memcpy(r->ext.ip, b + 8, 4);
        return 0;
    }
    if (r->opcode == P2P_PMP_RESPONSE + 1 || r->opcode == P2P_PMP_RESPONSE + 2) {
        if (len < 16) return -1;
        r->iport = p2p_get_be16(b + 8);
        r->eport = p2p_get_be16(b + 10);
        r->lifetime = p2p_get_be32(b + 12);
    }
    return 0;
}

static int parse_pcp(const uint8_t *b, size_t len, p2p_pmp_reply *r)
{
    if (len < 24 || len > P2P_PCP_MAX || len % 4 != 0) return -1;
    r->result = b[3];
    r->lifetime = p2p_get_be32(b + 4);
    r->epoch = p2p_get_be32(b + 8);
    if (r->opcode != (P2P_PMP_RESPONSE | P2P_PCP_OP_MAP)) return 0;
    if (len < P2P_PCP_MAP_LEN) return r->result == P2P_PCP_SUCCESS ? -1 : 0;
    if (b[36] != 17) return -1; /* we map UDP only */
    memcpy(r->nonce, b + 24, 12);
    r->iport = p2p_get_be16(b + 40);
    r->eport = p2p_get_be16(b + 42);
    get_addr16(b + 44, r->eport, &r->ext);
    return 0;
}

int p2p_pmp_parse(const uint8_t *b, size_t len, p2p_pmp_reply *r)
{
    if (b == NULL || r == NULL || len < 2) return -1;
    memset(r, 0, sizeof *r);
    r->version = b[0];
    r->opcode = b[1];
    if ((r->opcode & P2P_PMP_RESPONSE) == 0) return -1;
    if (r->version == 0) return parse_natpmp(b, len, r);
    if (r->version == P2P_PCP_VERSION) return parse_pcp(b, len, r);
    return -1;
}
