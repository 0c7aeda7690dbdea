/*
 * p2p_stun.c - STUN Binding codec (RFC 8489, RFC 5780). Interface stub: the codec lands with
 * the port-mapping and STUN work of issue 12.
 */
#include "p2p_stun.h"

int p2p_stun_is(const uint8_t *b, size_t len)
{
    (void)b;
    (void)len;
    return 0;
}

int p2p_stun_parse(const uint8_t *b, size_t len, p2p_stun_msg *m)
{
    (void)b;
    (void)len;
    (void)m;
    return -1;
}

size_t p2p_stun_request(uint8_t *out, size_t cap, const uint8_t txid[12], uint32_t change)
{
    (void)out;
    (void)cap;
    (void)txid;
    (void)change;
    return 0;
}

size_t p2p_stun_answer(const uint8_t *in, size_t len, const p2p_addr *from, uint8_t *out,
                       size_t cap)
{
    (void)in;
    (void)len;
    (void)from;
    (void)out;
    (void)cap;
    return 0;
}
