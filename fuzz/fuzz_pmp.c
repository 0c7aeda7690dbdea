/*
 * fuzz_pmp.c - libFuzzer target for the PCP / NAT-PMP reply parser (csrc/p2p_pmp.c), the one
 * function that reads what the gateway's port 5351 sends.
 *
 * Checks: an accepted reply is version 0 or 2 with the R bit set; PCP replies are 24..1100
 * bytes in steps of 4 and a MAP success is at least 60 bytes; NAT-PMP successes are long
 * enough for what they report; the external address is IPv4/IPv6 or unset. The request
 * builders, fed with input-chosen fields, write exactly 60 / 12 bytes that carry them.
 */
#include <stdint.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_pmp.h"
#include "fuzz_check.h"

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_pmp_reply r;
    if (p2p_pmp_parse(data, size, &r) == 0) {
        CHECK(r.version == 0 || r.version == 2);
        CHECK(r.opcode & 0x80);
        CHECK(r.ext.family == 0 || r.ext.family == P2P_AF_INET4 || r.ext.family == P2P_AF_INET6);
        if (r.version == 2) {
            CHECK(size >= 24 && size <= 1100 && size % 4 == 0);
            if (r.opcode == 0x81 && r.result == 0) CHECK(size >= 60 && data[36] == 17);
        } else {
            CHECK(size >= 8);
            if (r.result == 0 && r.opcode == 0x80) CHECK(size >= 12);
            if (r.result == 0 && (r.opcode == 0x81 || r.opcode == 0x82)) CHECK(size >= 16);
        }
    }
    if (size >= 24) {
        uint8_t out[64];
        p2p_addr client;
        memset(&client, 0, sizeof client);
        client.family = (data[0] & 1) ? P2P_AF_INET6 : P2P_AF_INET4;
        memcpy(client.ip, data + 4, client.family == P2P_AF_INET4 ? 4 : 16);
        uint16_t ip = be16(data + 20), ep = be16(data + 22);
        CHECK(p2p_pcp_map(out, sizeof out, data + 8, &client, ip, ep, 7200) == 60);
        CHECK(out[0] == 2 && out[1] == 1 && be16(out + 40) == ip && be16(out + 42) == ep);
        CHECK(memcmp(out + 24, data + 8, 12) == 0);
        /* our own request is never taken for a reply (no R bit) */
        CHECK(p2p_pmp_parse(out, 60, &r) == -1);
        CHECK(p2p_natpmp_map(out, sizeof out, ip, ep, 0) == 12);
        CHECK(p2p_pmp_parse(out, 12, &r) == -1);
    }
    return 0;
}
