/*
 * fuzz_lan.c - libFuzzer target for LAN beacons (csrc/p2p_lan.c): the receive path a node
 * runs on every datagram of its LAN socket, with a fixed network key.
 *
 * The first byte picks the mode. Even: the rest is a datagram as it arrives (length, magic,
 * tag: without the key almost everything stops at the tag). Odd: the rest is a plaintext
 * (id, port, time, signature, as many bytes as given, zero-padded) that the target seals under
 * the fixed key, so the checks behind the tag (time, replay, policy, rate, signature, dial
 * limits) see input-chosen values. Each input runs twice against one state, 1 s apart.
 *
 * Bits 2-4 of the first byte pick the source and the node: IPv4 10.9.0.7, or the IPv6
 * link-local fe80::7 with zone 3 or without a zone; a node whose socket can send to IPv6 or
 * one bound to IPv4.
 *
 * Checks: the result is one of the P2P_LAN_* values; a dial names an id and the source IP
 * (with its zone) with a nonzero port; an IPv6 source is dialled only with a zone and by a
 * node that can reach IPv6; dials never pass 16 per state; the counters add up (every
 * datagram received is dropped, heard or dialled); the peer list stays within its cap.
 */
#include <stdint.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_crypto.h"
#include "p2p_lan.h"
#include "fuzz_check.h"

#define UNIX0 1800000000000000ull

static int refuse_first_byte_ff(void *ud, const uint8_t id[P2P_ID_LEN])
{
    (void)ud;
    return id[0] == 0xff;
}

static int session_first_byte_fe(void *ud, const uint8_t id[P2P_ID_LEN])
{
    (void)ud;
    return id[0] == 0xfe;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t psk[P2P_KEY_LEN], key[P2P_KEY_LEN], self[P2P_ID_LEN];
    static int ready;
    static p2p_lan_state l;
    if (!ready) {
        p2p_init();
        memset(psk, 0x42, sizeof psk);
        memset(self, 0x11, sizeof self);
        p2p_lan_key(key, psk);
        ready = 1;
    }
    if (size < 1) return 0;
    uint8_t b[P2P_LAN_BEACON_LEN];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        uint8_t pt[106];
        memset(pt, 0, sizeof pt);
        memcpy(pt, in, len < sizeof pt ? len : sizeof pt);
        memcpy(b, "p2pb\x01\x00\x00\x00", 8);
        memset(b + 8, 0x24, 24);
        p2p_xaead_seal(b + 32, key, b + 8, b, 32, pt, sizeof pt);
        in = b;
        len = sizeof b;
    }
    p2p_lan_state_init(&l, psk, UNIX0, 1000000);
    p2p_lan_ctx c = {self, data[0] & 2 ? 0 : 1, refuse_first_byte_ff, session_first_byte_fe,
                     NULL, (data[0] & 16) != 0};
    p2p_addr from;
    memset(&from, 0, sizeof from);
    if (data[0] & 4) {
        from.family = P2P_AF_INET6;
        from.ip[0] = 0xfe, from.ip[1] = 0x80, from.ip[15] = 7;
        from.zone = data[0] & 8 ? 3 : 0;
    } else {
        from.family = P2P_AF_INET4;
        from.ip[0] = 10, from.ip[1] = 9, from.ip[3] = 7;
    }
    from.port = 44344;
    for (int round = 0; round < 2; round++) {
        p2p_addr to;
        uint8_t id[P2P_ID_LEN];
        int rc = p2p_lan_state_recv(&l, &c, &from, in, len, 1000000 + 3000000ull * round, &to, id);
        CHECK(rc >= P2P_LAN_DUPLICATE && rc <= P2P_LAN_DIAL && rc != 0);
        if (rc == P2P_LAN_DIAL) {
            CHECK(c.dial && to.port != 0 && memcmp(to.ip, from.ip, 16) == 0);
            CHECK(to.family == from.family && to.zone == from.zone);
            if (from.family == P2P_AF_INET6) CHECK(c.v6 && from.zone != 0);
            CHECK(memcmp(id, self, P2P_ID_LEN) != 0 && id[0] != 0xff && id[0] != 0xfe);
        }
        if (round == 1) CHECK(rc != P2P_LAN_DIAL); /* the second is a replay */
    }
    CHECK(l.received == 2 && l.dropped + l.verified <= 2 && l.dials <= l.verified);
    CHECK(l.npeers <= 1);
    return 0;
}
