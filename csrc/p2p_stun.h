/*
 * p2p_stun.h - the STUN Binding codec (RFC 8489, with the RFC 5780 attributes): the request a
 * node sends to a STUN server, the parser of the server's answer, and the pure answer function
 * of the mediator's STUN responder. Base layer: no host, no clock, no socket; every function
 * reads borrowed bytes and writes into the caller's buffer.
 *
 * STUN is big-endian (p2pnet's own packets are little-endian). docs/PROTOCOL.md section 8.7
 * and design12 section 3.1 give the bytes.
 */
#ifndef P2P_STUN_H
#define P2P_STUN_H

#include <stddef.h>
#include <stdint.h>

#include "p2pnet.h"

#define P2P_STUN_COOKIE 0x2112A442u
#define P2P_STUN_HEADER 20
#define P2P_STUN_MAX 1232 /* a longer answer is dropped */

/* Message types (method Binding with its four classes). */
enum {
    P2P_STUN_BINDING_REQUEST = 0x0001,
    P2P_STUN_BINDING_INDICATION = 0x0011,
    P2P_STUN_BINDING_SUCCESS = 0x0101,
    P2P_STUN_BINDING_ERROR = 0x0111
};
/* CHANGE-REQUEST flags (RFC 5780 section 7.2). */
enum { P2P_STUN_CHANGE_IP = 0x4, P2P_STUN_CHANGE_PORT = 0x2 };

/* 1 when b is shaped as a STUN message (design12 section 1.3): at least 20 bytes, the two top
 * bits of the type clear, the magic cookie at offset 4, and a length field that is a multiple
 * of 4 and accounts for every byte after the header. No p2pnet packet passes: p2pnet puts a
 * zero u16 at bytes 2..3, which read as STUN claims a 20-byte message, and no p2pnet packet is
 * 20 bytes long. Else 0. */
int p2p_stun_is(const uint8_t *b, size_t len);

/* A parsed STUN message. mapped: XOR-MAPPED-ADDRESS when present, else MAPPED-ADDRESS
 * (has_mapped 1 either way); origin: RESPONSE-ORIGIN; other: OTHER-ADDRESS. error: the
 * ERROR-CODE as class * 100 + number (300..699), 0 without one. has_fingerprint: a
 * FINGERPRINT was present (and verified). has_change: a CHANGE-REQUEST, its flags in change. */
typedef struct p2p_stun_msg {
    uint16_t type;
    uint8_t txid[12];
    uint16_t error; /* ERROR-CODE: class * 100 + number; 0 none */
    uint8_t has_mapped, has_origin, has_other, has_fingerprint;
    p2p_addr mapped; /* XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS */
    p2p_addr origin; /* RESPONSE-ORIGIN */
    p2p_addr other;  /* OTHER-ADDRESS */
    uint32_t change; /* CHANGE-REQUEST flags (requests) */
    uint8_t has_change;
} p2p_stun_msg;

/* Parses and validates b (borrowed for the call) into *m. Refused (-1): not p2p_stun_is, longer
 * than P2P_STUN_MAX, an attribute that overruns the message, a malformed address or
 * ERROR-CODE, a FINGERPRINT that is not last or does not verify, and (RFC 8489 section 6.3.1)
 * a success response with an unknown comprehension-required attribute (type < 0x8000), or one
 * without a mapped address, or an error response without ERROR-CODE. The first of
 * repeated attributes counts; what follows MESSAGE-INTEGRITY, but MESSAGE-INTEGRITY-SHA256 and
 * FINGERPRINT, is ignored (section 14.5). Returns 0 or -1 (*m then undefined). */
int p2p_stun_parse(const uint8_t *b, size_t len, p2p_stun_msg *m);

/* Writes a Binding request with transaction id txid and FINGERPRINT into out: 28 bytes, or 36
 * with a CHANGE-REQUEST attribute (change != 0: P2P_STUN_CHANGE_* flags). Returns the length,
 * or 0 when cap is too small. */
size_t p2p_stun_request(uint8_t *out, size_t cap, const uint8_t txid[12], uint32_t change);

/* The STUN responder (mediator's --stun-port; run by the driver, never by the core): when
 * in[0..len) is a Binding request without a CHANGE-REQUEST asking for another address or port
 * (this responder has one address), writes a success response with the transaction id and
 * XOR-MAPPED-ADDRESS = from, plus FINGERPRINT when the request carried one: 32/40 bytes for
 * IPv4, 44/52 for IPv6, never more than 3 times len. Returns the length, or 0: no answer
 * (anything else, from not INET4/INET6, or cap too small). */
size_t p2p_stun_answer(const uint8_t *in, size_t len, const p2p_addr *from, uint8_t *out,
                       size_t cap);

/* CRC-32 (ISO-HDLC, the one of FINGERPRINT and zlib) of b[0..len). */
uint32_t p2p_stun_crc32(const uint8_t *b, size_t len);

#endif
