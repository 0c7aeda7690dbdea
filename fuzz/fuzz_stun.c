/*
 * fuzz_stun.c - libFuzzer target for the STUN codec (csrc/p2p_stun.c): the parser a node runs
 * on answers from its STUN servers and the answer function of the mediator's responder.
 *
 * Checks: whatever parses passes p2p_stun_is and holds only IPv4/IPv6 addresses and error
 * codes 300..699; the answer to any input is never more than 3 times its size, and when there
 * is one it is a Binding success that parses back to the sender's address and the request's
 * transaction id, with FINGERPRINT exactly when the request had one.
 */
#include <stdint.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_stun.h"
#include "fuzz_check.h"

static int family_ok(const p2p_addr *a)
{
    return a->family == P2P_AF_INET4 || a->family == P2P_AF_INET6;
}

static void answer(const uint8_t *data, size_t size, const p2p_stun_msg *req, int parsed,
                   const char *from_text)
{
    p2p_addr from;
    uint8_t out[128];
    p2p_stun_msg m;
    CHECK(p2p_addr_parse(&from, from_text) == 0);
    size_t n = p2p_stun_answer(data, size, &from, out, sizeof out);
    CHECK(n <= 3 * size);
    if (n == 0) return;
    CHECK(parsed && req->type == P2P_STUN_BINDING_REQUEST);
    CHECK(p2p_stun_parse(out, n, &m) == 0);
    CHECK(m.type == P2P_STUN_BINDING_SUCCESS);
    CHECK(memcmp(m.txid, req->txid, 12) == 0);
    CHECK(m.has_mapped && p2p_addr_equal(&m.mapped, &from));
    CHECK(m.has_fingerprint == req->has_fingerprint);
    /* the answer never fits in less than it needs: one byte short is refused */
    CHECK(p2p_stun_answer(data, size, &from, out, n - 1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_stun_msg m;
    int parsed = p2p_stun_parse(data, size, &m) == 0;
    if (parsed) {
        CHECK(p2p_stun_is(data, size));
        CHECK(size <= P2P_STUN_MAX);
        if (m.has_mapped) CHECK(family_ok(&m.mapped));
        if (m.has_origin) CHECK(family_ok(&m.origin));
        if (m.has_other) CHECK(family_ok(&m.other));
        if (m.error) CHECK(m.error >= 300 && m.error <= 699);
        if ((m.type & 0x0110) == 0x0100) CHECK(m.has_mapped);
    }
    answer(data, size, &m, parsed, "203.0.113.7:40000");
    answer(data, size, &m, parsed, "[2001:db8::7]:40001");
    /* the request builder round-trips whatever txid and flags the input names */
    if (size >= 16) {
        uint8_t req[64];
        uint32_t change = ((uint32_t)data[12] << 24) | ((uint32_t)data[13] << 16) |
                          ((uint32_t)data[14] << 8) | data[15];
        size_t n = p2p_stun_request(req, sizeof req, data, change);
        CHECK(n == (change ? 36u : 28u));
        CHECK(p2p_stun_parse(req, n, &m) == 0 && m.has_fingerprint);
        CHECK(memcmp(m.txid, data, 12) == 0);
        CHECK(m.has_change == (change != 0) && (!change || m.change == change));
    }
    return 0;
}
