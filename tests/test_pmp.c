/* test_pmp.c - the PCP MAP and NAT-PMP codec (csrc/p2p_pmp.c) against the bytes miniupnpd
 * 2.3.1 exchanged in the lab (design12 section 8.3), and the replies it must refuse. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_pmp.h"
#include "simnet.h"

static const uint8_t NONCE[12] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8};
#define NONCE_HEX "deadbeef0102030405060708"

/* the lab's PCP exchange: 10.0.1.2:43000 asks miniupnpd at 10.0.1.1 for 7200 s */
#define PCP_REQ                                                     \
    "02010000"                                                      \
    "00001c20"                                                      \
    "00000000000000000000ffff0a000102" NONCE_HEX "11000000a7f8a7f8" \
    "00000000000000000000ffff00000000"
#define PCP_RESP                                            \
    "02810000"                                              \
    "00001c20"                                              \
    "000091cf"                                              \
    "000000000000000000000000" NONCE_HEX "11000000a7f8a7f8" \
    "00000000000000000000ffff0b000102"

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    t_from_hex(out, hex);
    return n;
}

static void test_pcp_request(void)
{
    uint8_t b[128], want[64];
    p2p_addr client = simnet_addr("10.0.1.2:43000");
    size_t n = p2p_pcp_map(b, sizeof b, NONCE, &client, 43000, 43000, 7200);
    T_EQ_INT(n, 60);
    T_EQ_INT(unhex(want, PCP_REQ), 60);
    T_EQ_MEM(b, want, 60);
    /* delete: same nonce, lifetime 0 */
    n = p2p_pcp_map(b, sizeof b, NONCE, &client, 43000, 43000, 0);
    T_EQ_INT(n, 60);
    T_EQ_HEX(b, "0201000000000000");
    T_EQ_MEM(b + 8, want + 8, 52);
    T_EQ_INT(p2p_pcp_map(b, 59, NONCE, &client, 43000, 0, 1), 0);
    p2p_addr none;
    memset(&none, 0, sizeof none);
    T_EQ_INT(p2p_pcp_map(b, sizeof b, NONCE, &none, 43000, 0, 1), 0);
    /* IPv6 client: its 16 bytes, suggested external "::" */
    p2p_addr v6 = simnet_addr("[2001:db8::2]:43000");
    T_EQ_INT(p2p_pcp_map(b, sizeof b, NONCE, &v6, 43000, 0, 1), 60);
    T_EQ_HEX(b + 8, "20010db8000000000000000000000002");
    T_EQ_HEX(b + 44, "00000000000000000000000000000000");
}

static void test_pcp_reply(void)
{
    uint8_t b[1200];
    size_t n = unhex(b, PCP_RESP);
    p2p_pmp_reply r;
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.version, 2);
    T_EQ_INT(r.opcode, 0x81);
    T_EQ_INT(r.result, 0);
    T_EQ_INT(r.lifetime, 7200);
    T_EQ_INT(r.epoch, 37327);
    T_EQ_MEM(r.nonce, NONCE, 12);
    T_EQ_INT(r.iport, 43000);
    T_EQ_INT(r.eport, 43000);
    p2p_addr ext = simnet_addr("11.0.1.2:43000");
    T_CHECK(p2p_addr_equal(&r.ext, &ext));
    /* the delete's answer: result 0, lifetime 0 */
    b[4] = b[5] = b[6] = b[7] = 0;
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.lifetime, 0);
    /* options after the body (up to 1100 bytes) are ignored */
    memset(b + 60, 0, 1040);
    T_EQ_INT(p2p_pmp_parse(b, 1100, &r), 0);
    T_EQ_INT(p2p_pmp_parse(b, 1104, &r), -1);
    /* a wrong nonce parses: comparing it is the caller's job, and it differs */
    b[24] ^= 1;
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_CHECK(memcmp(r.nonce, NONCE, 12) != 0);
}

static void test_pcp_refused(void)
{
    uint8_t b[128], c[128];
    size_t n = unhex(b, PCP_RESP);
    p2p_pmp_reply r;
    /* short: every length below 60 of a MAP success, and every non-multiple of 4 */
    for (size_t k = 0; k < n; k++) T_EQ_INT(p2p_pmp_parse(b, k, &r), -1);
    /* the R bit clear: a request, not an answer */
    memcpy(c, b, n);
    c[1] = 0x01;
    T_EQ_INT(p2p_pmp_parse(c, n, &r), -1);
    /* version 1 (miniupnpd answers a version-1 request in version-1 framing): refused */
    memcpy(c, b, n);
    c[0] = 1;
    c[3] = 6;
    T_EQ_INT(p2p_pmp_parse(c, n, &r), -1);
    /* versions other than 0 and 2 */
    c[0] = 3;
    T_EQ_INT(p2p_pmp_parse(c, n, &r), -1);
    /* a MAP success for TCP: we only ask for UDP */
    memcpy(c, b, n);
    c[36] = 6;
    T_EQ_INT(p2p_pmp_parse(c, n, &r), -1);
    /* a PCP error with only the 24-byte header: accepted, result given */
    memcpy(c, b, 24);
    c[3] = P2P_PCP_NOT_AUTHORIZED;
    T_EQ_INT(p2p_pmp_parse(c, 24, &r), 0);
    T_EQ_INT(r.result, P2P_PCP_NOT_AUTHORIZED);
    T_EQ_INT(r.eport, 0);
    T_EQ_INT(p2p_pmp_parse(NULL, 0, &r), -1);
}

static void test_natpmp(void)
{
    uint8_t b[64];
    p2p_pmp_reply r;
    T_EQ_INT(p2p_natpmp_map(b, sizeof b, 44000, 44000, 7200), 12);
    T_EQ_HEX(b, "00010000abe0abe000001c20");
    T_EQ_INT(p2p_natpmp_map(b, 11, 44000, 44000, 7200), 0);
    T_EQ_INT(p2p_natpmp_map(b, sizeof b, 44000, 0, 0), 12); /* delete */
    T_EQ_HEX(b, "00010000abe0000000000000");
    T_EQ_INT(p2p_natpmp_addr(b, sizeof b), 2);
    T_EQ_HEX(b, "0000");
    /* map reply: 44000 -> 44000 for 7200 s */
    size_t n = unhex(b, "00810000000091cfabe0abe000001c20");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.version, 0);
    T_EQ_INT(r.opcode, 129);
    T_EQ_INT(r.result, 0);
    T_EQ_INT(r.epoch, 37327);
    T_EQ_INT(r.iport, 44000);
    T_EQ_INT(r.eport, 44000);
    T_EQ_INT(r.lifetime, 7200);
    T_EQ_INT(r.ext.family, 0);
    for (size_t k = 0; k < n; k++) T_EQ_INT(p2p_pmp_parse(b, k, &r), -1);
    /* address reply: 11.0.1.2 */
    n = unhex(b, "00800000000091cf0b000102");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    p2p_addr ext = simnet_addr("11.0.1.2:1");
    ext.port = 0;
    T_CHECK(p2p_addr_equal(&r.ext, &ext));
    T_EQ_INT(p2p_pmp_parse(b, 11, &r), -1);
    /* a NAT-PMP gateway's answer to our PCP request (RFC 6887 section 9): version 0,
     * result 1 (unsupported version), 8 bytes: recognised, so the client falls back */
    n = unhex(b, "00810001000091cf");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.version, 0);
    T_EQ_INT(r.result, P2P_PCP_UNSUPP_VERSION);
    T_EQ_INT(p2p_pmp_parse(b, 7, &r), -1);
    /* results above 255 are reported as 255 */
    n = unhex(b, "00810101000091cf");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.result, 255);
    /* a NAT-PMP request echoed back (no R bit) */
    n = unhex(b, "00010000abe0abe000001c20");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), -1);
}

/* Captured again from miniupnpd 2.3.1 with this codec's own requests (nonce 01..0c, port
 * 43000, lifetime 120): PCP MAP and NAT-PMP map replies. */
static void test_miniupnpd_captures(void)
{
    uint8_t b[64];
    p2p_pmp_reply r;
    size_t n = unhex(b, "0281000000000078"
                        "0000aba0"
                        "000000000000000000000000"
                        "0102030405060708090a0b0c"
                        "11000000a7f8a7f8"
                        "00000000000000000000ffff0b000102");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.result, 0);
    T_EQ_INT(r.lifetime, 120);
    T_EQ_INT(r.epoch, 43936);
    T_EQ_HEX(r.nonce, "0102030405060708090a0b0c");
    p2p_addr ext = simnet_addr("11.0.1.2:43000");
    T_CHECK(p2p_addr_equal(&r.ext, &ext));
    n = unhex(b, "008100000000aba0a7f8a7f800000078");
    T_EQ_INT(p2p_pmp_parse(b, n, &r), 0);
    T_EQ_INT(r.iport, 43000);
    T_EQ_INT(r.eport, 43000);
    T_EQ_INT(r.lifetime, 120);
}

int main(void)
{
    T_RUN(test_pcp_request);
    T_RUN(test_pcp_reply);
    T_RUN(test_pcp_refused);
    T_RUN(test_natpmp);
    T_RUN(test_miniupnpd_captures);
    return t_summary("test_pmp");
}
