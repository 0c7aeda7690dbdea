/* test_stun.c - the STUN Binding codec (csrc/p2p_stun.c): the RFC 5769 sample messages, the
 * coturn answer captured in the lab (design12 section 3.1), our 28-byte request, the
 * responder's answer and its size bound, and the demultiplexing rule that keeps every p2pnet
 * packet from being taken for STUN. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_stun.h"
#include "../csrc/p2p_crypto.h"
#include "simnet.h"

/* RFC 5769 section 2.1: request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
 * MESSAGE-INTEGRITY, FINGERPRINT (108 bytes). */
static const char RFC5769_REQ[] =
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e2074657374"
    "20636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576"
    "746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571"
    "a280280004e57a3bcf";
/* 2.2: IPv4 response, XOR-MAPPED-ADDRESS 192.0.2.1:32853 (80 bytes). */
static const char RFC5769_V4[] = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563"
                                 "746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f9"
                                 "2af9ba53f06be7d780280004c07d4c96";
/* 2.3: IPv6 response, 2001:db8:1234:5678:11:2233:4455:6677 port 32853 (92 bytes). */
static const char RFC5769_V6[] = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563"
                                 "746f722000200014 0002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014"
                                 "a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";

/* Hex with optional spaces into out; returns the byte count. */
static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = 0;
    for (const char *p = hex; p[0] && p[1];) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        sscanf(p, "%2x", &v);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

static int addr_is(const p2p_addr *a, const char *s)
{
    p2p_addr b = simnet_addr(s);
    return p2p_addr_equal(a, &b);
}

static void test_rfc5769_request(void)
{
    uint8_t b[256];
    size_t n = unhex(b, RFC5769_REQ);
    T_EQ_INT(n, 108);
    T_EQ_INT(p2p_stun_is(b, n), 1);
    p2p_stun_msg m;
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_EQ_INT(m.type, P2P_STUN_BINDING_REQUEST);
    T_EQ_HEX(m.txid, "b7e7a701bc34d686fa87dfae");
    T_EQ_INT(m.has_fingerprint, 1);
    T_EQ_INT(m.has_mapped, 0);
    /* one flipped bit anywhere before the FINGERPRINT value breaks it */
    b[30] ^= 1;
    T_EQ_INT(p2p_stun_parse(b, n, &m), -1);
}

static void test_rfc5769_responses(void)
{
    uint8_t b[256];
    p2p_stun_msg m;
    size_t n = unhex(b, RFC5769_V4);
    T_EQ_INT(n, 80);
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_EQ_INT(m.type, P2P_STUN_BINDING_SUCCESS);
    T_EQ_INT(m.has_mapped, 1);
    T_CHECK(addr_is(&m.mapped, "192.0.2.1:32853"));
    T_EQ_INT(m.has_fingerprint, 1);
    T_EQ_INT(m.has_other, 0);
    n = unhex(b, RFC5769_V6);
    T_EQ_INT(n, 92);
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_CHECK(addr_is(&m.mapped, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"));
    /* the fingerprint value itself */
    b[n - 1] ^= 0x80;
    T_EQ_INT(p2p_stun_parse(b, n, &m), -1);
}

/* coturn 4.6.1 in the lab: XOR-MAPPED, MAPPED, RESPONSE-ORIGIN, OTHER-ADDRESS, FINGERPRINT.
 * The capture's txid was not recorded, so the FINGERPRINT is recomputed for ours (the IPv4
 * XOR uses only the cookie). */
static size_t coturn_answer(uint8_t *b, const uint8_t txid[12])
{
    size_t n = unhex(b, "010100382112a442000000000000000000000000"
                        "002000080001d640e721c040"
                        "000100080001f752c6336402"
                        "802b000800010d96c0000202"
                        "802c000800010d97c0000203"
                        "80280004aa4d2360");
    memcpy(b + 8, txid, 12);
    uint32_t crc = p2p_stun_crc32(b, n - 8) ^ 0x5354554eu;
    b[n - 4] = (uint8_t)(crc >> 24);
    b[n - 3] = (uint8_t)(crc >> 16);
    b[n - 2] = (uint8_t)(crc >> 8);
    b[n - 1] = (uint8_t)crc;
    return n;
}

static void test_coturn_capture(void)
{
    uint8_t b[128], txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t n = coturn_answer(b, txid);
    T_EQ_INT(n, 76);
    p2p_stun_msg m;
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_EQ_MEM(m.txid, txid, 12);
    T_CHECK(addr_is(&m.mapped, "198.51.100.2:63314"));
    T_EQ_INT(m.has_origin, 1);
    T_CHECK(addr_is(&m.origin, "192.0.2.2:3478"));
    T_EQ_INT(m.has_other, 1);
    T_CHECK(addr_is(&m.other, "192.0.2.3:3479"));
    /* without FINGERPRINT (trim it, fix the length): still fine, has_fingerprint 0 */
    b[3] = 0x30;
    T_EQ_INT(p2p_stun_parse(b, n - 8, &m), 0);
    T_EQ_INT(m.has_fingerprint, 0);
    /* XOR wins over MAPPED: change MAPPED's port and XOR's answer stays */
    b[38] = 0;
    T_EQ_INT(p2p_stun_parse(b, n - 8, &m), 0);
    T_CHECK(addr_is(&m.mapped, "198.51.100.2:63314"));
}

static void test_request(void)
{
    uint8_t b[64], txid[12];
    memset(txid, 0xab, sizeof txid);
    size_t n = p2p_stun_request(b, sizeof b, txid, 0);
    T_EQ_INT(n, 28);
    T_EQ_HEX(b, "000100082112a442abababababababababababab80280004");
    p2p_stun_msg m;
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_EQ_INT(m.type, 1);
    T_EQ_INT(m.has_fingerprint, 1);
    T_EQ_INT(m.has_change, 0);
    n = p2p_stun_request(b, sizeof b, txid, P2P_STUN_CHANGE_IP | P2P_STUN_CHANGE_PORT);
    T_EQ_INT(n, 36);
    T_EQ_INT(p2p_stun_parse(b, n, &m), 0);
    T_EQ_INT(m.has_change, 1);
    T_EQ_INT(m.change, 6);
    T_EQ_INT(p2p_stun_request(b, 27, txid, 0), 0);
    T_EQ_INT(p2p_stun_request(b, 35, txid, 2), 0);
}

static void test_answer(void)
{
    uint8_t req[64], out[256], txid[12];
    p2p_stun_msg m;
    memset(txid, 7, sizeof txid);
    p2p_addr v4 = simnet_addr("203.0.113.9:40000"), v6 = simnet_addr("[2001:db8::9]:40001");
    /* 20-byte request without FINGERPRINT */
    size_t n = p2p_stun_request(req, sizeof req, txid, 0);
    req[3] = 0;
    size_t a = p2p_stun_answer(req, 20, &v4, out, sizeof out);
    T_EQ_INT(a, 32);
    T_EQ_INT(p2p_stun_parse(out, a, &m), 0);
    T_EQ_INT(m.type, P2P_STUN_BINDING_SUCCESS);
    T_EQ_MEM(m.txid, txid, 12);
    T_CHECK(p2p_addr_equal(&m.mapped, &v4));
    T_EQ_INT(m.has_fingerprint, 0);
    a = p2p_stun_answer(req, 20, &v6, out, sizeof out);
    T_EQ_INT(a, 44);
    T_EQ_INT(p2p_stun_parse(out, a, &m), 0);
    T_CHECK(p2p_addr_equal(&m.mapped, &v6));
    /* 28-byte request with FINGERPRINT: 40 / 52 bytes with FINGERPRINT */
    n = p2p_stun_request(req, sizeof req, txid, 0);
    a = p2p_stun_answer(req, n, &v4, out, sizeof out);
    T_EQ_INT(a, 40);
    T_EQ_INT(p2p_stun_parse(out, a, &m), 0);
    T_EQ_INT(m.has_fingerprint, 1);
    a = p2p_stun_answer(req, n, &v6, out, sizeof out);
    T_EQ_INT(a, 52);
    T_CHECK(a <= 3 * n);
    T_EQ_INT(p2p_stun_answer(req, n, &v6, out, 51), 0);
    /* CHANGE-REQUEST for another address or port: silence; flags 0: answered */
    n = p2p_stun_request(req, sizeof req, txid, P2P_STUN_CHANGE_PORT);
    T_EQ_INT(p2p_stun_answer(req, n, &v4, out, sizeof out), 0);
    /* a response, the RFC 5769 request (USERNAME, MESSAGE-INTEGRITY...), junk: silence */
    uint8_t b[256];
    size_t bn = unhex(b, RFC5769_V4);
    T_EQ_INT(p2p_stun_answer(b, bn, &v4, out, sizeof out), 0);
    bn = unhex(b, RFC5769_REQ);
    T_EQ_INT(p2p_stun_answer(b, bn, &v4, out, sizeof out), 0);
    p2p_addr relay;
    memset(&relay, 0, sizeof relay);
    relay.family = P2P_AF_RELAY;
    n = p2p_stun_request(req, sizeof req, txid, 0);
    T_EQ_INT(p2p_stun_answer(req, n, &relay, out, sizeof out), 0);
}

/* Every answer, for every request the parser accepts from random bytes shaped as STUN, stays
 * within 3x of the request. */
static void test_answer_bound(void)
{
    p2p_rng r;
    p2p_rng_init(&r, 5769);
    uint8_t req[128], out[256];
    p2p_addr v6 = simnet_addr("[2001:db8::1]:1");
    int answered = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = 20 + 4 * p2p_rng_below(&r, 6);
        p2p_rng_bytes(&r, req, n);
        req[0] = 0;
        req[1] = 1;
        req[2] = 0;
        req[3] = (uint8_t)(n - 20);
        req[4] = 0x21, req[5] = 0x12, req[6] = 0xa4, req[7] = 0x42;
        if (n >= 28 && p2p_rng_below(&r, 2)) { /* often a CHANGE-REQUEST or FINGERPRINT */
            req[20] = 0x00, req[21] = 0x03, req[22] = 0, req[23] = 4;
            req[24] = req[25] = req[26] = 0;
            req[27] &= 0x9;
        }
        size_t a = p2p_stun_answer(req, n, &v6, out, sizeof out);
        if (a) answered++;
        T_CHECK(a <= 3 * n);
    }
    T_CHECK(answered > 1000);
}

static void test_refused(void)
{
    uint8_t b[2048], txid[12] = {0};
    p2p_stun_msg m;
    size_t n = coturn_answer(b, txid);
    /* every truncation breaks the length rule */
    for (size_t k = 0; k < n; k++) T_EQ_INT(p2p_stun_parse(b, k, &m), -1);
    /* an unknown comprehension-required attribute in a success response: refused; optional
     * (>= 0x8000): ignored */
    uint8_t c[64];
    memcpy(c, "\x01\x01\x00\x14\x21\x12\xa4\x42", 8);
    memset(c + 8, 0, 12);
    memcpy(c + 20, "\x00\x20\x00\x08\x00\x01\x21\x12\x21\x12\xa4\x43", 12);
    memcpy(c + 32, "\x00\x77\x00\x04\x00\x00\x00\x00", 8);
    T_EQ_INT(p2p_stun_parse(c, 40, &m), -1);
    c[32] = 0x80;
    T_EQ_INT(p2p_stun_parse(c, 40, &m), 0);
    T_EQ_INT(m.mapped.port, 0);
    /* attribute overrunning the message */
    c[35] = 8;
    T_EQ_INT(p2p_stun_parse(c, 40, &m), -1);
    c[35] = 4;
    /* bad family / length in an address */
    c[25] = 3;
    T_EQ_INT(p2p_stun_parse(c, 40, &m), -1);
    c[25] = 1;
    /* a success without any mapped address */
    memcpy(c + 20, "\x80\x22\x00\x04test", 8);
    memcpy(c + 2, "\x00\x08", 2);
    T_EQ_INT(p2p_stun_parse(c, 28, &m), -1);
    /* an error response needs ERROR-CODE 300..699 */
    memcpy(c, "\x01\x11\x00\x08", 4);
    memcpy(c + 20, "\x00\x09\x00\x04\x00\x00\x04\x14", 8);
    T_EQ_INT(p2p_stun_parse(c, 28, &m), 0);
    T_EQ_INT(m.error, 420);
    c[26] = 7;
    T_EQ_INT(p2p_stun_parse(c, 28, &m), -1);
    c[26] = 4, c[27] = 100;
    T_EQ_INT(p2p_stun_parse(c, 28, &m), -1);
    /* FINGERPRINT not last */
    n = p2p_stun_request(b, sizeof b, txid, 0);
    memcpy(b + n, "\x80\x22\x00\x00", 4);
    b[3] = 12;
    T_EQ_INT(p2p_stun_parse(b, n + 4, &m), -1);
    /* after MESSAGE-INTEGRITY only FINGERPRINT (and -SHA256) count: a later XOR-MAPPED is
     * ignored, so a success with only that has no mapped address and is refused */
    memcpy(c, "\x01\x01\x00\x24\x21\x12\xa4\x42", 8);
    memset(c + 8, 0, 12);
    memcpy(c + 20, "\x00\x08\x00\x14", 4);
    memset(c + 24, 0x5a, 20);
    memcpy(c + 44, "\x00\x20\x00\x08\x00\x01\x21\x12\x21\x12\xa4\x43", 12);
    T_EQ_INT(p2p_stun_parse(c, 56, &m), -1);
    /* the same XOR-MAPPED before MESSAGE-INTEGRITY counts */
    memmove(c + 20, c + 44, 12);
    memcpy(c + 32, "\x00\x08\x00\x14", 4);
    memset(c + 36, 0x5a, 20);
    T_EQ_INT(p2p_stun_parse(c, 56, &m), 0);
    T_EQ_INT(m.has_mapped, 1);
    /* longer than 1232 bytes: dropped, even when well formed */
    memset(b, 0, sizeof b);
    memcpy(b, "\x01\x01\x04\xd0\x21\x12\xa4\x42", 8); /* 20 + 1232 */
    memcpy(b + 20, "\x00\x20\x00\x08\x00\x01\x21\x12\x21\x12\xa4\x43", 12);
    memcpy(b + 32, "\x80\x22\x04\xc0", 4);
    T_EQ_INT(p2p_stun_is(b, 1252), 1);
    T_EQ_INT(p2p_stun_parse(b, 1252, &m), -1);
    b[2] = 0x04, b[3] = 0xbc, b[34] = 0x04, b[35] = 0xac; /* 1232 in all */
    T_EQ_INT(p2p_stun_parse(b, 1232, &m), 0);
    T_EQ_INT(p2p_stun_parse(NULL, 0, &m), -1);
}

/* ---- p2pnet packets are never STUN ---------------------------------------------------- */

static void test_p2pnet_shapes(void)
{
    /* The rule's proof: p2pnet puts u16 reserved = 0 at bytes 2..3, so any such datagram
     * reads as a 20-byte STUN message, and none is 20 bytes long. Check every type byte and
     * every length a p2pnet datagram can have, with the cookie planted at 4..7. */
    uint8_t b[P2P_MAX_PACKET];
    memset(b, 0x55, sizeof b);
    b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
    b[1] = 1;
    b[2] = b[3] = 0;
    int bad = 0;
    for (int type = 1; type <= 5; type++) {
        b[0] = (uint8_t)type;
        for (size_t len = 21; len <= sizeof b; len++) bad += p2p_stun_is(b, len);
    }
    T_EQ_INT(bad, 0);
}

typedef struct wire {
    p2p_host *h[2];
    p2p_addr a[2];
    int kinds[8];
    int stun_like;
    uint64_t now;
} wire;

static p2p_host *mk(uint64_t seed)
{
    p2p_config c;
    p2p_config_init(&c);
    return simnet_fresh_host(&c, seed);
}

/* Moves every queued datagram between the two hosts at once, checking each on the way. */
static void shuttle(wire *w, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        w->now += 1000;
        for (int i = 0; i < 2; i++) {
            if (p2p_host_next_timeout(w->h[i]) <= w->now) p2p_host_on_timeout(w->h[i], w->now);
            uint8_t buf[P2P_MAX_PACKET];
            p2p_addr to;
            size_t n;
            while ((n = p2p_host_next_datagram(w->h[i], &to, buf, sizeof buf)) > 0) {
                if (buf[0] < 8) w->kinds[buf[0]]++;
                w->stun_like += p2p_stun_is(buf, n);
                p2p_host_recv(w->h[1 - i], &w->a[i], buf, n, w->now);
            }
            p2p_event ev;
            while (p2p_host_next_event(w->h[i], &ev)) {
            }
        }
    }
}

static void test_p2pnet_packets(void)
{
    wire w;
    memset(&w, 0, sizeof w);
    w.h[0] = mk(11);
    w.h[1] = mk(12);
    w.a[0] = simnet_addr("192.0.2.1:4000");
    w.a[1] = simnet_addr("192.0.2.2:4000");
    p2p_peer_handle ph = 0;
    T_EQ_INT(p2p_host_connect(w.h[0], &w.a[1], NULL, 0, &ph), 0);
    shuttle(&w, 50);
    uint8_t msg[300];
    memset(msg, 0, sizeof msg);
    for (int i = 0; i < 20; i++) {
        T_EQ_INT(p2p_peer_send(w.h[0], ph, 1, msg, (size_t)(i * 15), 0, NULL, w.now), 0);
        shuttle(&w, 3);
    }
    p2p_host_close(w.h[0], w.now);
    shuttle(&w, 20);
    T_CHECK(w.kinds[1] > 0);  /* INIT */
    T_CHECK(w.kinds[2] > 0);  /* RESP */
    T_CHECK(w.kinds[3] > 0);  /* FIN */
    T_CHECK(w.kinds[4] > 20); /* DATA */
    T_EQ_INT(w.stun_like, 0);
    p2p_host_free(w.h[0]);
    p2p_host_free(w.h[1]);
}

int main(void)
{
    T_RUN(test_rfc5769_request);
    T_RUN(test_rfc5769_responses);
    T_RUN(test_coturn_capture);
    T_RUN(test_request);
    T_RUN(test_answer);
    T_RUN(test_answer_bound);
    T_RUN(test_refused);
    T_RUN(test_p2pnet_shapes);
    T_RUN(test_p2pnet_packets);
    return t_summary("test_stun");
}
