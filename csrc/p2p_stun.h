/*
 * p2p_stun.h - STUN Binding messages (RFC 8489) and the RFC 5780 attributes: a pure codec
 * (base layer, no host). docs/PROTOCOL.md section 8.7.
 */
#ifndef P2P_STUN_H
#define P2P_STUN_H

#include "p2pnet.h"

#define P2P_STUN_COOKIE 0x2112A442u
#define P2P_STUN_HEADER 20
#define P2P_STUN_MAX 1232 /* longer answers are dropped */
enum {
    P2P_STUN_BINDING_REQUEST = 0x0001,
    P2P_STUN_BINDING_SUCCESS = 0x0101,
    P2P_STUN_BINDING_ERROR = 0x0111
};
enum { P2P_STUN_CHANGE_IP = 0x4, P2P_STUN_CHANGE_PORT = 0x2 };

/* 1 when the datagram has the shape of a STUN message (top bits 00, magic cookie, length
 * field matching the datagram, a multiple of 4): no p2pnet packet has it (its bytes 2..3 are a
 * zero reserved field, which would make a 20-byte message, and none is 20 bytes long). */
int p2p_stun_is(const uint8_t *b, size_t len);

typedef struct p2p_stun_msg {
    uint16_t type;
    uint8_t txid[12];
    uint16_t error; /* ERROR-CODE: class * 100 + number; 0 none */
    uint8_t has_mapped, has_origin, has_other, has_fingerprint;
    p2p_addr mapped; /* XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS */
    p2p_addr origin; /* RESPONSE-ORIGIN */
    p2p_addr other;  /* OTHER-ADDRESS */
    uint32_t change; /* CHANGE-REQUEST flags (requests) */
} p2p_stun_msg;

/* Parses a STUN message. Returns 0, or -1 when it is malformed, a FINGERPRINT does not
 * verify, or an unknown comprehension-required attribute is present. */
int p2p_stun_parse(const uint8_t *b, size_t len, p2p_stun_msg *m);
/* Writes a Binding request with txid, CHANGE-REQUEST when change != 0, and FINGERPRINT.
 * Returns its length (28, or 36 with CHANGE-REQUEST), or 0 when cap is too small. */
size_t p2p_stun_request(uint8_t *out, size_t cap, const uint8_t txid[12], uint32_t change);
/* The answer of a STUN responder to the datagram in (from: its source): a Binding success
 * with XOR-MAPPED-ADDRESS (and FINGERPRINT when the request had one), never more than 3 times
 * the request's length. Returns its length, or 0: no answer (not a valid Binding request). */
size_t p2p_stun_answer(const uint8_t *in, size_t len, const p2p_addr *from, uint8_t *out,
                       size_t cap);

#endif
