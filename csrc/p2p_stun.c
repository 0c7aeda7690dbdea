/*
 * p2p_stun.c - the STUN Binding codec (RFC 8489 sections 5, 6, 14; RFC 5780 section 7).
 * Bounds-checked big-endian reads over borrowed bytes; nothing here keeps state.
 */
#include <string.h>

#include "p2p_stun.h"
#include "p2p_wire.h" /* big-endian fields */

/* Attribute types (RFC 8489 section 18.3, RFC 5780 section 9.1, RFC 8445 section 20.1). */
enum {
    AT_MAPPED = 0x0001,
    AT_CHANGE_REQUEST = 0x0003,
    AT_USERNAME = 0x0006,
    AT_INTEGRITY = 0x0008,
    AT_ERROR_CODE = 0x0009,
    AT_UNKNOWN = 0x000a,
    AT_REALM = 0x0014,
    AT_NONCE = 0x0015,
    AT_INTEGRITY_SHA256 = 0x001c,
    AT_PASSWORD_ALGORITHM = 0x001d,
    AT_USERHASH = 0x001e,
    AT_XOR_MAPPED = 0x0020,
    AT_PRIORITY = 0x0024,
    AT_USE_CANDIDATE = 0x0025,
    AT_PADDING = 0x0026,
    AT_RESPONSE_PORT = 0x0027,
    AT_FINGERPRINT = 0x8028,
    AT_RESPONSE_ORIGIN = 0x802b,
    AT_OTHER_ADDRESS = 0x802c
};
#define FINGERPRINT_XOR 0x5354554eu

uint32_t p2p_stun_crc32(const uint8_t *b, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

int p2p_stun_is(const uint8_t *b, size_t len)
{
    if (b == NULL || len < P2P_STUN_HEADER || len % 4 != 0) return 0;
    if ((b[0] & 0xc0) != 0) return 0;
    if (p2p_get_be32(b + 4) != P2P_STUN_COOKIE) return 0;
    return (size_t)p2p_get_be16(b + 2) + P2P_STUN_HEADER == len;
}

/* Known attributes: a request or error carrying one of these is understood; an unknown one
 * below 0x8000 is comprehension-required. */
static int known(uint16_t t)
{
    switch (t) {
    case AT_MAPPED:
    case AT_CHANGE_REQUEST:
    case AT_USERNAME:
    case AT_INTEGRITY:
    case AT_ERROR_CODE:
    case AT_UNKNOWN:
    case AT_REALM:
    case AT_NONCE:
    case AT_INTEGRITY_SHA256:
    case AT_PASSWORD_ALGORITHM:
    case AT_USERHASH:
    case AT_XOR_MAPPED:
    case AT_PRIORITY:
    case AT_USE_CANDIDATE:
    case AT_PADDING:
    case AT_RESPONSE_PORT: return 1;
    default: return t >= 0x8000;
    }
}

/* An address attribute (RFC 8489 sections 14.1, 14.2): u8 0 (ignored), u8 family, u16 port,
 * 4 or 16 address bytes. xor: the XOR-MAPPED-ADDRESS form with the header's cookie and txid.
 * An IPv4-mapped IPv6 address is stored as IPv4 (the p2p_addr rule). */
static int read_addr(const uint8_t *v, size_t n, const uint8_t *hdr, int xor, p2p_addr *a)
{
    memset(a, 0, sizeof *a);
    if (n < 4) return -1;
    uint8_t fam = v[1];
    uint16_t port = p2p_get_be16(v + 2);
    if (xor) port ^= (uint16_t)(P2P_STUN_COOKIE >> 16);
    if (fam == 1 && n == 8) {
        a->family = P2P_AF_INET4;
        for (int i = 0; i < 4; i++) a->ip[i] = (uint8_t)(v[4 + i] ^ (xor? hdr[4 + i] : 0));
    } else if (fam == 2 && n == 20) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        a->family = P2P_AF_INET6;
        for (int i = 0; i < 16; i++) a->ip[i] = (uint8_t)(v[4 + i] ^ (xor? hdr[4 + i] : 0));
        if (memcmp(a->ip, mapped, 12) == 0) {
            memmove(a->ip, a->ip + 12, 4);
            memset(a->ip + 4, 0, 12);
            a->family = P2P_AF_INET4;
        }
    } else {
        return -1;
    }
    a->port = port;
    return 0;
}

int p2p_stun_parse(const uint8_t *b, size_t len, p2p_stun_msg *m)
{
    if (m == NULL || !p2p_stun_is(b, len) || len > P2P_STUN_MAX) return -1;
    memset(m, 0, sizeof *m);
    m->type = p2p_get_be16(b);
    memcpy(m->txid, b + 8, 12);
    int success = (m->type & 0x0110) == 0x0100;
    int have_xor = 0, after_integrity = 0;
    size_t off = P2P_STUN_HEADER;
    while (off < len) {
        if (len - off < 4) return -1;
        uint16_t t = p2p_get_be16(b + off), n = p2p_get_be16(b + off + 2);
        size_t padded = ((size_t)n + 3) & ~(size_t)3;
        if (padded > len - off - 4) return -1;
        const uint8_t *v = b + off + 4;
        if (m->has_fingerprint) return -1; /* FINGERPRINT must be the last attribute */
        if (after_integrity && t != AT_FINGERPRINT && t != AT_INTEGRITY_SHA256) {
            off += 4 + padded; /* RFC 8489 section 14.5: ignored */
            continue;
        }
        switch (t) {
        case AT_XOR_MAPPED:
            if (!have_xor) {
                if (read_addr(v, n, b, 1, &m->mapped) != 0) return -1;
                have_xor = 1;
                m->has_mapped = 1;
            }
            break;
        case AT_MAPPED:
            if (!m->has_mapped) {
                if (read_addr(v, n, b, 0, &m->mapped) != 0) return -1;
                m->has_mapped = 1;
            } else if (!have_xor) {
                p2p_addr scratch;
                if (read_addr(v, n, b, 0, &scratch) != 0) return -1;
            }
            break;
        case AT_RESPONSE_ORIGIN:
            if (!m->has_origin) {
                if (read_addr(v, n, b, 0, &m->origin) != 0) return -1;
                m->has_origin = 1;
            }
            break;
        case AT_OTHER_ADDRESS:
            if (!m->has_other) {
                if (read_addr(v, n, b, 0, &m->other) != 0) return -1;
                m->has_other = 1;
            }
            break;
        case AT_ERROR_CODE:
            if (m->error == 0) {
                if (n < 4) return -1;
                unsigned cls = v[2] & 7u, num = v[3];
                if (cls < 3 || cls > 6 || num > 99) return -1;
                m->error = (uint16_t)(cls * 100 + num);
            }
            break;
        case AT_CHANGE_REQUEST:
            if (n != 4) return -1;
            if (!m->has_change) {
                m->has_change = 1;
                m->change = p2p_get_be32(v);
            }
            break;
        case AT_FINGERPRINT: {
            if (n != 4) return -1;
            /* The CRC covers the message up to the attribute, with the header's length
             * field as sent (it already counts FINGERPRINT). */
            if ((p2p_stun_crc32(b, off) ^ FINGERPRINT_XOR) != p2p_get_be32(v)) return -1;
            m->has_fingerprint = 1;
            break;
        }
        case AT_INTEGRITY:
        case AT_INTEGRITY_SHA256: after_integrity = 1; break;
        default:
            if (success && !known(t)) return -1;
            break;
        }
        off += 4 + padded;
    }
    /* A response must say who we are; an error response must say why. */
    if (success && !m->has_mapped) return -1;
    if ((m->type & 0x0110) == 0x0110 && m->error == 0) return -1;
    return 0;
}

/* Appends FINGERPRINT to the message of msglen bytes in out (cap checked by the caller):
 * the length field first counts it, then the CRC covers everything before it. */
static size_t add_fingerprint(uint8_t *out, size_t msglen)
{
    p2p_put_be16(out + 2, (uint16_t)(msglen + 8 - P2P_STUN_HEADER));
    p2p_put_be16(out + msglen, AT_FINGERPRINT);
    p2p_put_be16(out + msglen + 2, 4);
    p2p_put_be32(out + msglen + 4, p2p_stun_crc32(out, msglen) ^ FINGERPRINT_XOR);
    return msglen + 8;
}

size_t p2p_stun_request(uint8_t *out, size_t cap, const uint8_t txid[12], uint32_t change)
{
    size_t need = P2P_STUN_HEADER + (change ? 8 : 0) + 8;
    if (out == NULL || txid == NULL || cap < need) return 0;
    p2p_put_be16(out, P2P_STUN_BINDING_REQUEST);
    p2p_put_be16(out + 2, 0);
    p2p_put_be32(out + 4, P2P_STUN_COOKIE);
    memcpy(out + 8, txid, 12);
    size_t n = P2P_STUN_HEADER;
    if (change) {
        p2p_put_be16(out + n, AT_CHANGE_REQUEST);
        p2p_put_be16(out + n + 2, 4);
        p2p_put_be32(out + n + 4, change);
        n += 8;
    }
    return add_fingerprint(out, n);
}

size_t p2p_stun_answer(const uint8_t *in, size_t len, const p2p_addr *from, uint8_t *out,
                       size_t cap)
{
    p2p_stun_msg m;
    if (from == NULL || out == NULL) return 0;
    if (from->family != P2P_AF_INET4 && from->family != P2P_AF_INET6) return 0;
    if (p2p_stun_parse(in, len, &m) != 0 || m.type != P2P_STUN_BINDING_REQUEST) return 0;
    /* One address and port here: a request to answer from another one gets silence, which
     * is the truthful RFC 5780 result ("no answer from the changed address"). */
    if (m.has_change && (m.change & (P2P_STUN_CHANGE_IP | P2P_STUN_CHANGE_PORT))) return 0;
    /* Refuse requests with attributes we cannot honour (RFC 8489 section 6.3.1 would answer
     * 420; silence costs the network less). Walk them again: parse keeps no list. */
    for (size_t off = P2P_STUN_HEADER; off + 4 <= len;) {
        uint16_t t = p2p_get_be16(in + off), n = p2p_get_be16(in + off + 2);
        if (t < 0x8000 && t != AT_CHANGE_REQUEST) return 0;
        off += 4 + (((size_t)n + 3) & ~(size_t)3);
    }
    size_t alen = from->family == P2P_AF_INET4 ? 8 : 20;
    size_t need = P2P_STUN_HEADER + 4 + alen + (m.has_fingerprint ? 8 : 0);
    if (cap < need || need > 3 * len) return 0;
    p2p_put_be16(out, P2P_STUN_BINDING_SUCCESS);
    p2p_put_be16(out + 2, (uint16_t)(4 + alen));
    p2p_put_be32(out + 4, P2P_STUN_COOKIE);
    memcpy(out + 8, m.txid, 12);
    uint8_t *v = out + P2P_STUN_HEADER;
    p2p_put_be16(v, AT_XOR_MAPPED);
    p2p_put_be16(v + 2, (uint16_t)alen);
    v[4] = 0;
    v[5] = from->family == P2P_AF_INET4 ? 1 : 2;
    p2p_put_be16(v + 6, (uint16_t)(from->port ^ (P2P_STUN_COOKIE >> 16)));
    for (size_t i = 0; i < alen - 4; i++) v[8 + i] = (uint8_t)(from->ip[i] ^ out[4 + i]);
    size_t n = P2P_STUN_HEADER + 4 + alen;
    if (m.has_fingerprint) n = add_fingerprint(out, n);
    return n;
}
