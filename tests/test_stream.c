/* test_stream.c - driver/stream.c: SHA-1 (FIPS 180 vectors), base64 (RFC 4648 §10), the
 * WebSocket accept value (RFC 6455 §1.3), the raw and WebSocket framings between a client and
 * a server state machine (whole, split into single bytes, at the length boundaries
 * 0/125/126/1232/1233/65535/65536), the protocol violations (masking, text, fragments,
 * control frames), the 64 KiB input and 256 KiB output caps, HTTP refusals, and the socket
 * helpers over real loopback TCP. */
#define _GNU_SOURCE

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver/stream.h"
#include "p2pnet.h"
#include "t.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_sha1_vectors(void)
{
    uint8_t d[20];
    char h[41];
    static const struct {
        const char *in, *out;
    } v[] = {
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "a49b2446a02c645bf419f995b67091253a04a259"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        p2p_sha1((const uint8_t *)v[i].in, strlen(v[i].in), d);
        hex(d, 20, h);
        T_CHECK(strcmp(h, v[i].out) == 0);
    }
    /* one million 'a' */
    uint8_t *m = malloc(1000000);
    memset(m, 'a', 1000000);
    p2p_sha1(m, 1000000, d);
    hex(d, 20, h);
    T_CHECK(strcmp(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0);
    free(m);
    /* lengths around the padding boundary (55, 56, 63, 64) agree with a split computation of
     * nothing but themselves: check that they differ from each other and are stable */
    uint8_t a[20], b[20];
    uint8_t buf[64];
    memset(buf, 'x', sizeof buf);
    p2p_sha1(buf, 55, a);
    p2p_sha1(buf, 56, b);
    T_CHECK(memcmp(a, b, 20) != 0);
    p2p_sha1((const uint8_t *)"a", 1, d);
    hex(d, 20, h);
    T_CHECK(strcmp(h, "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8") == 0);
}

static void test_base64(void)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char t[16];
    uint8_t d[16];
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(in[i]);
        T_EQ_INT(p2p_base64((const uint8_t *)in[i], n, t, sizeof t), strlen(out[i]));
        T_CHECK(strcmp(t, out[i]) == 0);
        T_EQ_INT(p2p_base64_decode(out[i], strlen(out[i]), d, sizeof d), n);
        T_EQ_MEM(d, in[i], n);
    }
    T_EQ_INT(p2p_base64((const uint8_t *)"foo", 3, t, 4), 0); /* no room for the NUL */
    T_EQ_INT(p2p_base64_decode("Zm9", 3, d, sizeof d), -1);
    T_EQ_INT(p2p_base64_decode("Zm=v", 4, d, sizeof d), -1);
    T_EQ_INT(p2p_base64_decode("Z===", 4, d, sizeof d), -1);
    T_EQ_INT(p2p_base64_decode("Zm9v", 4, d, 2), -1);
    T_EQ_INT(p2p_base64_decode("Zm*v", 4, d, sizeof d), -1);
}

static void test_ws_accept_rfc6455(void)
{
    char a[29];
    p2p_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, a);
    T_CHECK(strcmp(a, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

/* Moves every byte waiting in a to b, `chunk` bytes per input call (0 = all at once). */
static void move(p2p_tstream *a, p2p_tstream *b, size_t chunk)
{
    size_t n;
    const uint8_t *p;
    while ((p = p2p_tstream_out(a, &n)) != NULL) {
        size_t k = chunk == 0 || chunk > n ? n : chunk;
        if (k > p2p_tstream_in_room(b)) k = p2p_tstream_in_room(b);
        if (k == 0) {
            p2p_tstream_wrote(a, n); /* the reader is gone: discard */
            break;
        }
        (void)p2p_tstream_input(b, p, k);
        p2p_tstream_wrote(a, k);
        if (chunk != 0) {
            uint8_t tmp[P2P_MAX_PACKET];
            (void)p2p_tstream_next(b, tmp, sizeof tmp); /* pull what completes (handshake) */
        }
    }
}

static const uint8_t key16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* A client and a server with the handshake done. */
static void pair(p2p_tstream *c, p2p_tstream *s, int ws, size_t chunk)
{
    uint8_t buf[P2P_MAX_PACKET];
    T_EQ_INT(p2p_tstream_client(c, ws, "med.example", "/p2pnet", key16, 42), 0);
    T_EQ_INT(p2p_tstream_server(s, "/p2pnet"), 0);
    move(c, s, chunk);
    T_EQ_INT(p2p_tstream_next(s, buf, sizeof buf), 0);
    T_EQ_INT(s->state, P2P_STREAM_OPEN);
    T_EQ_INT(s->mode, ws ? P2P_STREAM_MODE_WS : P2P_STREAM_MODE_RAW);
    move(s, c, chunk);
    T_EQ_INT(p2p_tstream_next(c, buf, sizeof buf), 0);
    T_EQ_INT(c->state, P2P_STREAM_OPEN);
    T_EQ_INT(p2p_tstream_opened(c), 1);
    T_EQ_INT(p2p_tstream_opened(c), 0);
    T_EQ_INT(p2p_tstream_opened(s), 1);
}

/* Sends datagrams of the given lengths both ways and checks they arrive intact. */
static void exchange(int ws, size_t chunk)
{
    static const size_t lens[] = {1, 2, 124, 125, 126, 127, 1000, 1231, 1232};
    p2p_tstream c, s;
    uint8_t d[P2P_MAX_PACKET], got[P2P_MAX_PACKET];
    pair(&c, &s, ws, chunk);
    for (int dir = 0; dir < 2; dir++) {
        p2p_tstream *from = dir ? &s : &c, *to = dir ? &c : &s;
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            for (size_t k = 0; k < lens[i]; k++) d[k] = (uint8_t)(k * 7 + i + dir);
            T_EQ_INT(p2p_tstream_send(from, d, lens[i]), 0);
        }
        if (chunk == 0) {
            move(from, to, 0);
            for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                for (size_t k = 0; k < lens[i]; k++) d[k] = (uint8_t)(k * 7 + i + dir);
                T_EQ_INT(p2p_tstream_next(to, got, sizeof got), lens[i]);
                T_EQ_MEM(got, d, lens[i]);
            }
        } else {
            /* byte by byte: each datagram completes exactly once */
            size_t n, i = 0;
            const uint8_t *p;
            while ((p = p2p_tstream_out(from, &n)) != NULL) {
                T_EQ_INT(p2p_tstream_input(to, p, 1), 0);
                p2p_tstream_wrote(from, 1);
                size_t g = p2p_tstream_next(to, got, sizeof got);
                if (g > 0) {
                    T_EQ_INT(g, lens[i]);
                    for (size_t k = 0; k < lens[i]; k++) d[k] = (uint8_t)(k * 7 + i + dir);
                    T_EQ_MEM(got, d, lens[i]);
                    i++;
                }
            }
            T_EQ_INT(i, sizeof lens / sizeof lens[0]);
        }
        T_EQ_INT(p2p_tstream_next(to, got, sizeof got), 0);
    }
    T_EQ_INT(p2p_tstream_send(&c, d, 0), P2P_ERR_TOO_BIG);
    T_EQ_INT(p2p_tstream_send(&c, d, P2P_MAX_PACKET + 1), P2P_ERR_TOO_BIG);
    T_EQ_INT(c.stats.tx_datagrams, 9);
    T_EQ_INT(s.stats.rx_datagrams, 9);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
}

static void test_raw_and_ws_exchange(void)
{
    exchange(0, 0);
    exchange(1, 0);
}

static void test_split_reads(void)
{
    exchange(0, 1);
    exchange(1, 1);
    exchange(1, 3);
}

/* The wire bytes of our frames: 2-byte header up to 125, then 126 + u16; client masked. */
static void test_frame_encoding(void)
{
    p2p_tstream c, s;
    uint8_t d[P2P_MAX_PACKET];
    const uint8_t *p;
    size_t n;
    memset(d, 0xab, sizeof d);
    pair(&c, &s, 1, 0);
    T_EQ_INT(p2p_tstream_send(&s, d, 125), 0);
    p = p2p_tstream_out(&s, &n);
    T_EQ_INT(n, 2 + 125);
    T_EQ_INT(p[0], 0x82);
    T_EQ_INT(p[1], 125);
    p2p_tstream_wrote(&s, n);
    T_EQ_INT(p2p_tstream_send(&s, d, 126), 0);
    p = p2p_tstream_out(&s, &n);
    T_EQ_INT(n, 4 + 126);
    T_EQ_INT(p[1], 126);
    T_EQ_INT(p[2], 0);
    T_EQ_INT(p[3], 126);
    p2p_tstream_wrote(&s, n);
    T_EQ_INT(p2p_tstream_send(&c, d, 1232), 0);
    p = p2p_tstream_out(&c, &n);
    T_EQ_INT(n, 2 + 2 + 4 + 1232);
    T_EQ_INT(p[1], 0x80 | 126);
    T_EQ_INT(p[2] << 8 | p[3], 1232);
    /* masked: the payload is d XOR key */
    for (size_t i = 0; i < 1232; i++) T_CHECK((p[8 + i] ^ p[4 + (i & 3)]) == 0xab);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
    /* raw */
    pair(&c, &s, 0, 0);
    T_EQ_INT(p2p_tstream_send(&c, d, 300), 0);
    p = p2p_tstream_out(&c, &n);
    T_EQ_INT(n, 302);
    T_EQ_INT(p[0] << 8 | p[1], 300);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
}

/* Builds a frame with a header of our choosing: b0, mask flag, length (encoded with len7
 * forced when >= 0), payload of n bytes of 0x5a (only the first `have` bytes present). */
static size_t mk_frame(uint8_t *out, uint8_t b0, int mask, uint64_t n, int len7, size_t have)
{
    size_t h = 0;
    out[h++] = b0;
    int l7 = len7 >= 0 ? len7 : (n <= 125 ? (int)n : n <= 65535 ? 126 : 127);
    out[h++] = (uint8_t)((mask ? 0x80 : 0) | l7);
    if (l7 == 126) {
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else if (l7 == 127) {
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)(n >> (8 * i));
    }
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    if (mask) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < have; i++) out[h + i] = (uint8_t)(0x5a ^ (mask ? key[i & 3] : 0));
    return h + have;
}

/* Feeds one frame to a fresh open WebSocket server (client when to_client) and returns the
 * stream's state afterwards; *got is the datagram length delivered. */
static int feed(int to_client, const uint8_t *f, size_t n, size_t *got, int *error)
{
    p2p_tstream c, s;
    uint8_t buf[P2P_MAX_PACKET];
    pair(&c, &s, 1, 0);
    p2p_tstream *t = to_client ? &c : &s;
    T_EQ_INT(p2p_tstream_input(t, f, n), 0);
    *got = p2p_tstream_next(t, buf, sizeof buf);
    *error = t->error;
    int st = t->state;
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
    return st;
}

static void test_frame_lengths(void)
{
    uint8_t *f = malloc(70000);
    size_t got;
    int err;
    /* 0: an empty binary message is skipped, the stream stays open */
    size_t n = mk_frame(f, 0x82, 1, 0, -1, 0);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_OPEN);
    T_EQ_INT(got, 0);
    /* 125 and 126 */
    n = mk_frame(f, 0x82, 1, 125, -1, 125);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_OPEN);
    T_EQ_INT(got, 125);
    n = mk_frame(f, 0x82, 1, 126, -1, 126);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_OPEN);
    T_EQ_INT(got, 126);
    /* 1232 is the largest, 1233 closes with 1009 before its payload arrives */
    n = mk_frame(f, 0x82, 1, 1232, -1, 1232);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_OPEN);
    T_EQ_INT(got, 1232);
    n = mk_frame(f, 0x82, 1, 1233, -1, 0);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_TOO_BIG);
    n = mk_frame(f, 0x82, 1, 65535, -1, 100);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_TOO_BIG);
    n = mk_frame(f, 0x82, 1, 65536, -1, 100);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_TOO_BIG);
    /* 100 encoded with 126 + u16 is not minimal */
    n = mk_frame(f, 0x82, 1, 100, 126, 100);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    free(f);
}

static void test_violations(void)
{
    uint8_t f[256];
    size_t got, n;
    int err;
    /* unmasked to the server, masked to the client: 1002 */
    n = mk_frame(f, 0x82, 0, 10, -1, 10);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    T_EQ_INT(got, 0);
    n = mk_frame(f, 0x82, 1, 10, -1, 10);
    T_EQ_INT(feed(1, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    n = mk_frame(f, 0x82, 0, 10, -1, 10);
    T_EQ_INT(feed(1, f, n, &got, &err), P2P_STREAM_OPEN);
    T_EQ_INT(got, 10);
    /* text and continuation: 1003; a binary message without FIN: 1003 */
    n = mk_frame(f, 0x81, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_UNSUPPORTED);
    n = mk_frame(f, 0x80, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_UNSUPPORTED);
    n = mk_frame(f, 0x02, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_UNSUPPORTED);
    /* RSV bits, unknown opcode, a ping without FIN, a ping over 125: 1002 */
    n = mk_frame(f, 0xC2, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    n = mk_frame(f, 0x83, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    n = mk_frame(f, 0x09, 1, 3, -1, 3);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    n = mk_frame(f, 0x89, 1, 126, -1, 126);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
    /* a close of one byte */
    n = mk_frame(f, 0x88, 1, 1, -1, 1);
    T_EQ_INT(feed(0, f, n, &got, &err), P2P_STREAM_CLOSING);
    T_EQ_INT(err, P2P_WS_PROTOCOL_ERROR);
}

static void test_ping_pong_close(void)
{
    p2p_tstream c, s;
    uint8_t f[64], buf[P2P_MAX_PACKET];
    const uint8_t *p;
    size_t n;
    pair(&c, &s, 1, 0);
    /* ping with 5 bytes of 0x5a -> pong, unmasked, same bytes */
    n = mk_frame(f, 0x89, 1, 5, -1, 5);
    T_EQ_INT(p2p_tstream_input(&s, f, n), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_OPEN);
    T_EQ_INT(s.stats.pings, 1);
    p = p2p_tstream_out(&s, &n);
    T_EQ_INT(n, 7);
    T_EQ_INT(p[0], 0x8A);
    T_EQ_INT(p[1], 5);
    T_EQ_INT(p[2], 0x5a);
    /* the client reads the pong and ignores it */
    move(&s, &c, 0);
    T_EQ_INT(p2p_tstream_next(&c, buf, sizeof buf), 0);
    T_EQ_INT(c.state, P2P_STREAM_OPEN);
    /* the client closes with 1000: the server echoes and is done once written */
    p2p_tstream_close(&c, P2P_WS_NORMAL);
    T_EQ_INT(c.state, P2P_STREAM_CLOSING);
    T_EQ_INT(p2p_tstream_done(&c), 0);
    move(&c, &s, 0);
    T_EQ_INT(p2p_tstream_done(&c), 1);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    T_EQ_INT(s.error, P2P_WS_NORMAL);
    p = p2p_tstream_out(&s, &n);
    T_EQ_INT(n, 4);
    T_EQ_INT(p[0], 0x88);
    T_EQ_INT(p[2] << 8 | p[3], 1000);
    T_EQ_INT(p2p_tstream_send(&s, buf, 10), P2P_ERR_PEER);
    p2p_tstream_wrote(&s, n);
    T_EQ_INT(p2p_tstream_done(&s), 1);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
}

static void test_raw_violations(void)
{
    p2p_tstream c, s;
    uint8_t buf[P2P_MAX_PACKET];
    static const uint8_t zero[2] = {0, 0}, big[2] = {0x04, 0xd1}; /* 1233 */
    pair(&c, &s, 0, 0);
    T_EQ_INT(p2p_tstream_input(&s, zero, 2), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
    pair(&c, &s, 0, 0);
    T_EQ_INT(p2p_tstream_input(&s, big, 2), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
    /* neither p2pt nor GET: closed at the first differing byte */
    T_EQ_INT(p2p_tstream_server(&s, NULL), 0);
    T_EQ_INT(p2p_tstream_input(&s, (const uint8_t *)"p2", 2), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_HANDSHAKE);
    T_EQ_INT(p2p_tstream_input(&s, (const uint8_t *)"x", 1), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    T_EQ_INT(p2p_tstream_done(&s), 1);
    p2p_tstream_free(&s);
}

/* The server's answer to a request. */
static void refused(const char *req, const char *status)
{
    p2p_tstream s;
    uint8_t buf[P2P_MAX_PACKET];
    const uint8_t *p;
    size_t n;
    T_EQ_INT(p2p_tstream_server(&s, "/p2pnet"), 0);
    T_EQ_INT(p2p_tstream_input(&s, (const uint8_t *)req, strlen(req)), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    p = p2p_tstream_out(&s, &n);
    T_CHECK(p != NULL && n > strlen(status) + 9 && memcmp(p + 9, status, strlen(status)) == 0);
    if (p == NULL || memcmp(p + 9, status, strlen(status)) != 0)
        fprintf(stderr, "    want %s got %.*s\n", status, (int)(p ? n : 0),
                p ? (const char *)p : "");
    p2p_tstream_free(&s);
}

static void test_http_refusals(void)
{
#define H "Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
#define K "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    refused("GET /other HTTP/1.1\r\n" H K "Sec-WebSocket-Version: 13\r\n\r\n", "404");
    refused("GET /p2pnet HTTP/1.1\r\n" H K "Sec-WebSocket-Version: 8\r\n\r\n", "426");
    refused("GET /p2pnet HTTP/1.1\r\n" H "Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: "
            "13\r\n\r\n",
            "400");
    refused("GET /p2pnet HTTP/1.1\r\nHost: x\r\n" K "Sec-WebSocket-Version: 13\r\n\r\n", "400");
    refused("GET /p2pnet HTTP/1.1\r\n" H K
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
            "400");
    refused("GET /p2pnet HTTP/1.0\r\n" H K "Sec-WebSocket-Version: 13\r\n\r\n", "400");
    /* the accepted form, with the RFC's key, answers the RFC's accept value; no subprotocol
     * requested -> none answered */
    p2p_tstream s;
    uint8_t buf[P2P_MAX_PACKET];
    const char *req = "GET /p2pnet HTTP/1.1\r\n" H K "Sec-WebSocket-Version: 13\r\n\r\n";
    size_t n;
    const uint8_t *p;
    T_EQ_INT(p2p_tstream_server(&s, "/p2pnet"), 0);
    T_EQ_INT(p2p_tstream_input(&s, (const uint8_t *)req, strlen(req)), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_OPEN);
    p = p2p_tstream_out(&s, &n);
    T_CHECK(p != NULL &&
            memmem(p, n, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 52) != NULL);
    T_CHECK(p != NULL && memmem(p, n, "Sec-WebSocket-Protocol", 22) == NULL);
    p2p_tstream_free(&s);
    /* a head over 4096 bytes */
    char *big = malloc(5000);
    memset(big, 'a', 5000);
    memcpy(big, "GET /p2pnet HTTP/1.1\r\nX: ", 25);
    T_EQ_INT(p2p_tstream_server(&s, "/p2pnet"), 0);
    T_EQ_INT(p2p_tstream_input(&s, (const uint8_t *)big, 5000), 0);
    T_EQ_INT(p2p_tstream_next(&s, buf, sizeof buf), 0);
    T_EQ_INT(s.state, P2P_STREAM_CLOSING);
    p2p_tstream_free(&s);
    free(big);
#undef H
#undef K
}

static void test_client_checks_accept(void)
{
    p2p_tstream c;
    uint8_t buf[P2P_MAX_PACKET];
    const char *resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                       "\r\n\r\n";
    T_EQ_INT(p2p_tstream_client(&c, 1, "h", "/p2pnet", key16, 1), 0);
    T_EQ_INT(p2p_tstream_input(&c, (const uint8_t *)resp, strlen(resp)), 0);
    T_EQ_INT(p2p_tstream_next(&c, buf, sizeof buf), 0);
    T_EQ_INT(c.state, P2P_STREAM_CLOSING); /* wrong accept for our key */
    T_EQ_INT(p2p_tstream_opened(&c), 0);
    p2p_tstream_free(&c);
    T_EQ_INT(p2p_tstream_client(&c, 1, "h", "/p2pnet", key16, 1), 0);
    resp = "HTTP/1.1 403 Forbidden\r\n\r\n";
    T_EQ_INT(p2p_tstream_input(&c, (const uint8_t *)resp, strlen(resp)), 0);
    T_EQ_INT(p2p_tstream_next(&c, buf, sizeof buf), 0);
    T_EQ_INT(c.state, P2P_STREAM_CLOSING);
    p2p_tstream_free(&c);
    T_EQ_INT(p2p_tstream_client(&c, 1, "h\r\nX: y", "/p2pnet", key16, 1), P2P_ERR_INVALID);
    p2p_tstream_free(&c);
    T_EQ_INT(p2p_tstream_client(&c, 1, "h", "p2pnet", key16, 1), P2P_ERR_INVALID);
    p2p_tstream_free(&c);
}

static void test_caps(void)
{
    p2p_tstream c, s;
    uint8_t d[P2P_MAX_PACKET];
    memset(d, 1, sizeof d);
    pair(&c, &s, 0, 0);
    /* output: 256 KiB of 1234-byte raw frames = 212 frames; the 213th is dropped */
    int sent = 0, full = 0;
    for (int i = 0; i < 300; i++) {
        int r = p2p_tstream_send(&c, d, sizeof d);
        if (r == 0)
            sent++;
        else if (r == P2P_ERR_FULL)
            full++;
    }
    T_EQ_INT(sent, (P2P_STREAM_OUT_CAP) / 1234);
    T_EQ_INT(full, 300 - sent);
    T_EQ_INT(c.stats.dropped, 300 - sent);
    /* writing some makes room again */
    size_t n;
    (void)p2p_tstream_out(&c, &n);
    T_EQ_INT(n, (size_t)sent * 1234);
    p2p_tstream_wrote(&c, 4 * 1234);
    T_EQ_INT(p2p_tstream_send(&c, d, sizeof d), 0);
    /* input: 64 KiB at most is taken */
    T_EQ_INT(p2p_tstream_in_room(&s), P2P_STREAM_IN_CAP);
    const uint8_t *p = p2p_tstream_out(&c, &n);
    T_EQ_INT(p2p_tstream_input(&s, p, P2P_STREAM_IN_CAP + 1), -1);
    T_EQ_INT(p2p_tstream_input(&s, p, P2P_STREAM_IN_CAP), 0);
    T_EQ_INT(p2p_tstream_in_room(&s), 0);
    T_EQ_INT(p2p_tstream_input(&s, p, 1), -1);
    uint8_t got[P2P_MAX_PACKET];
    int frames = 0;
    while (p2p_tstream_next(&s, got, sizeof got) > 0) frames++;
    T_EQ_INT(frames, P2P_STREAM_IN_CAP / 1234);
    T_CHECK(p2p_tstream_in_room(&s) > P2P_STREAM_IN_CAP - 1234);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
}

/* Real loopback TCP: a listener, a client connect, accept, the WebSocket handshake and
 * datagrams both ways through the socket helpers. */
static void loopback(int ws)
{
    p2p_addr any, lo, from;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&any, 0, sizeof any);
    any.family = P2P_AF_INET4;
    any.ip[0] = 127;
    any.ip[3] = 1;
    int lfd = p2p_tstream_listen(&any, 8);
    T_CHECK(lfd >= 0);
    if (lfd < 0) return;
    T_EQ_INT(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
    lo = any;
    lo.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int cfd = p2p_tstream_connect(&lo);
    T_CHECK(cfd >= 0);
    struct pollfd pf = {lfd, POLLIN, 0};
    T_EQ_INT(poll(&pf, 1, 2000), 1);
    int sfd = p2p_tstream_accept(lfd, &from);
    T_CHECK(sfd >= 0);
    T_EQ_INT(from.family, P2P_AF_INET4);
    T_EQ_INT(from.ip[0], 127);
    pf.fd = cfd;
    pf.events = POLLOUT;
    T_EQ_INT(poll(&pf, 1, 2000), 1);
    T_EQ_INT(p2p_tstream_connected(cfd), 0);
    p2p_tstream c, s;
    T_EQ_INT(p2p_tstream_client(&c, ws, "127.0.0.1", "/p2pnet", key16, 7), 0);
    T_EQ_INT(p2p_tstream_server(&s, "/p2pnet"), 0);
    uint8_t d[P2P_MAX_PACKET], got[P2P_MAX_PACKET];
    int rx_s = 0, rx_c = 0, sent = 0;
    for (int round = 0; round < 2000 && (rx_s < 50 || rx_c < 50); round++) {
        if (p2p_tstream_opened(&c) || (c.state == P2P_STREAM_OPEN && sent == 0)) {
            for (int i = 0; i < 50; i++) {
                memset(d, i, 100 + i);
                T_EQ_INT(p2p_tstream_send(&c, d, 100 + i), 0);
            }
            sent = 1;
        }
        T_EQ_INT(p2p_tstream_write(&c, cfd), 0);
        T_EQ_INT(p2p_tstream_write(&s, sfd), 0);
        struct pollfd two[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
        (void)poll(two, 2, 10);
        (void)p2p_tstream_read(&s, sfd);
        (void)p2p_tstream_read(&c, cfd);
        size_t n;
        while ((n = p2p_tstream_next(&s, got, sizeof got)) > 0) {
            T_EQ_INT(n, 100 + rx_s);
            T_EQ_INT(got[0], rx_s);
            T_EQ_INT(p2p_tstream_send(&s, got, n), 0); /* echo */
            rx_s++;
        }
        while ((n = p2p_tstream_next(&c, got, sizeof got)) > 0) {
            T_EQ_INT(n, 100 + rx_c);
            rx_c++;
        }
    }
    T_EQ_INT(rx_s, 50);
    T_EQ_INT(rx_c, 50);
    /* close from the client: the server sees EOF (or a close frame) */
    p2p_tstream_close(&c, P2P_WS_NORMAL);
    T_EQ_INT(p2p_tstream_write(&c, cfd), 0);
    T_EQ_INT(p2p_tstream_done(&c), 1);
    close(cfd);
    long r = 0;
    for (int i = 0; i < 100 && r >= 0 && s.state == P2P_STREAM_OPEN; i++) {
        pf.fd = sfd;
        pf.events = POLLIN;
        (void)poll(&pf, 1, 10);
        r = p2p_tstream_read(&s, sfd);
        (void)p2p_tstream_next(&s, got, sizeof got);
    }
    /* raw: EOF; WebSocket: the close frame came first */
    T_CHECK(ws ? s.state == P2P_STREAM_CLOSING && s.error == P2P_WS_NORMAL : r < 0);
    close(sfd);
    close(lfd);
    p2p_tstream_free(&c);
    p2p_tstream_free(&s);
    /* a connect to a closed port fails */
    int bad = p2p_tstream_connect(&lo);
    if (bad >= 0) {
        pf.fd = bad;
        pf.events = POLLOUT;
        (void)poll(&pf, 1, 2000);
        T_CHECK(p2p_tstream_connected(bad) != 0);
        close(bad);
    }
}

static void test_loopback_tcp(void)
{
    loopback(0);
    loopback(1);
}

int main(void)
{
    T_RUN(test_sha1_vectors);
    T_RUN(test_base64);
    T_RUN(test_ws_accept_rfc6455);
    T_RUN(test_raw_and_ws_exchange);
    T_RUN(test_split_reads);
    T_RUN(test_frame_encoding);
    T_RUN(test_frame_lengths);
    T_RUN(test_violations);
    T_RUN(test_ping_pong_close);
    T_RUN(test_raw_violations);
    T_RUN(test_http_refusals);
    T_RUN(test_client_checks_accept);
    T_RUN(test_caps);
    T_RUN(test_loopback_tcp);
    return t_summary("test_stream");
}
