/*
 * p2p_pmp.c - PCP and NAT-PMP codec. Interface stub (issue 12).
 */
#include "p2p_pmp.h"

size_t p2p_pcp_map(uint8_t *out, size_t cap, const uint8_t nonce[12], const p2p_addr *client,
                   uint16_t iport, uint16_t eport_hint, uint32_t lifetime)
{
    (void)out;
    (void)cap;
    (void)nonce;
    (void)client;
    (void)iport;
    (void)eport_hint;
    (void)lifetime;
    return 0;
}

size_t p2p_natpmp_map(uint8_t *out, size_t cap, uint16_t iport, uint16_t eport_hint,
                      uint32_t lifetime)
{
    (void)out;
    (void)cap;
    (void)iport;
    (void)eport_hint;
    (void)lifetime;
    return 0;
}

int p2p_pmp_parse(const uint8_t *b, size_t len, p2p_pmp_reply *r)
{
    (void)b;
    (void)len;
    (void)r;
    return -1;
}
