/* test_wire.c - cursors, QUIC varints, frames and stream records (docs/PROTOCOL.md 2.2-4):
 * byte-exact encodings, round trips, and the malformed inputs that must drop a packet. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_wire.h"
#include "../csrc/p2p_crypto.h"

#include <stdint.h>

/* Decodes exactly one varint from n bytes; *ok is 1 when it parsed and used every byte. */
static uint64_t varint_from(const uint8_t *b, size_t n, int *ok)
{
    p2p_rd r;
    p2p_rd_init(&r, b, n);
    uint64_t v = p2p_rd_varint(&r);
    *ok = !r.bad && p2p_rd_left(&r) == 0;
    return v;
}

static void test_varint_boundaries(void)
{
    /* Each value with its shortest encoding, written out by hand from RFC 9000 section 16. */
    static const struct {
        uint64_t v;
        size_t n;
        uint8_t enc[8];
    } cases[] = {
        {0, 1, {0x00}},
        {37, 1, {0x25}},
        {63, 1, {0x3f}},
        {64, 2, {0x40, 0x40}},
        {15293, 2, {0x7b, 0xbd}},
        {16383, 2, {0x7f, 0xff}},
        {16384, 4, {0x80, 0x00, 0x40, 0x00}},
        {494878333, 4, {0x9d, 0x7f, 0x3e, 0x7d}},
        {(UINT64_C(1) << 30) - 1, 4, {0xbf, 0xff, 0xff, 0xff}},
        {UINT64_C(1) << 30, 8, {0xc0, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00}},
        {UINT64_C(151288809941952652), 8, {0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c}},
        {P2P_VARINT_MAX, 8, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[16];
        memset(buf, 0xaa, sizeof buf);
        p2p_wr w;
        p2p_wr_init(&w, buf, sizeof buf);
        p2p_wr_varint(&w, cases[i].v);
        T_CHECK(!w.bad);
        T_EQ_INT(w.p - buf, cases[i].n);
        T_EQ_INT(p2p_varint_len(cases[i].v), cases[i].n);
        T_EQ_MEM(buf, cases[i].enc, cases[i].n);
        T_EQ_INT(buf[cases[i].n], 0xaa); /* nothing written past the varint */
        int ok;
        uint64_t back = varint_from(cases[i].enc, cases[i].n, &ok);
        T_CHECK(ok);
        T_CHECK(back == cases[i].v);
        /* An exact-size buffer suffices; one byte less does not and leaves bad set. */
        p2p_wr_init(&w, buf, cases[i].n);
        p2p_wr_varint(&w, cases[i].v);
        T_CHECK(!w.bad);
        p2p_wr_init(&w, buf, cases[i].n - 1);
        p2p_wr_varint(&w, cases[i].v);
        T_CHECK(w.bad);
        T_CHECK(w.p == buf);
    }
}

static void test_varint_non_shortest(void)
{
    /* Decoders accept any length: 5 in each of the four forms. */
    static const uint8_t f1[] = {0x05}, f2[] = {0x40, 0x05}, f4[] = {0x80, 0, 0, 0x05},
                         f8[] = {0xc0, 0, 0, 0, 0, 0, 0, 0x05};
    int ok;
    T_CHECK(varint_from(f1, 1, &ok) == 5 && ok);
    T_CHECK(varint_from(f2, 2, &ok) == 5 && ok);
    T_CHECK(varint_from(f4, 4, &ok) == 5 && ok);
    T_CHECK(varint_from(f8, 8, &ok) == 5 && ok);
    /* 0 in the 8-byte form, and 63 in the 2-byte form */
    static const uint8_t z8[] = {0xc0, 0, 0, 0, 0, 0, 0, 0}, s2[] = {0x40, 0x3f};
    T_CHECK(varint_from(z8, 8, &ok) == 0 && ok);
    T_CHECK(varint_from(s2, 2, &ok) == 63 && ok);
}

static void test_varint_truncated(void)
{
    static const uint8_t enc[] = {0xc0, 1, 2, 3, 4, 5, 6, 7};
    int ok;
    /* every prefix of an 8-byte varint is truncated, as are the 2- and 4-byte forms */
    for (size_t n = 0; n < 8; n++) {
        p2p_rd r;
        p2p_rd_init(&r, enc, n);
        uint64_t v = p2p_rd_varint(&r);
        T_CHECK(r.bad);
        T_EQ_INT(v, 0);
    }
    static const uint8_t two[] = {0x7f}, four[] = {0xbf, 0xff, 0xff};
    (void)varint_from(two, 1, &ok);
    T_CHECK(!ok);
    (void)varint_from(four, 3, &ok);
    T_CHECK(!ok);
    /* once bad, a cursor stays bad even for reads that would fit */
    p2p_rd r;
    static const uint8_t mixed[] = {0x40, 0x07};
    p2p_rd_init(&r, mixed, 2);
    (void)p2p_rd_u32(&r);
    T_CHECK(r.bad);
    T_EQ_INT(p2p_rd_u8(&r), 0);
    T_EQ_INT(p2p_rd_varint(&r), 0);
    T_CHECK(p2p_rd_bytes(&r, 0) == NULL);
}

static void test_varint_too_big(void)
{
    uint8_t buf[16];
    p2p_wr w;
    const uint64_t bad[] = {UINT64_C(1) << 62, (UINT64_C(1) << 62) + 5, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        p2p_wr_init(&w, buf, sizeof buf);
        p2p_wr_varint(&w, bad[i]);
        T_CHECK(w.bad);
        T_CHECK(w.p == buf);
    }
    /* and a writer stays bad afterwards */
    p2p_wr_varint(&w, 1);
    T_CHECK(w.p == buf);
}

static void test_fixed_width_le(void)
{
    uint8_t buf[14];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    p2p_wr_u16(&w, 0x1234);
    p2p_wr_u32(&w, 0x89abcdefu);
    p2p_wr_u64(&w, UINT64_C(0x0102030405060708));
    T_CHECK(!w.bad);
    T_EQ_INT(p2p_wr_left(&w), 0);
    static const uint8_t want[14] = {0x34, 0x12, 0xef, 0xcd, 0xab, 0x89, 0x08,
                                     0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    T_EQ_MEM(buf, want, 14);
    p2p_wr_u8(&w, 1); /* full: refused */
    T_CHECK(w.bad);

    p2p_rd r;
    p2p_rd_init(&r, want, sizeof want);
    T_EQ_INT(p2p_rd_u16(&r), 0x1234);
    T_EQ_INT(p2p_rd_u32(&r), 0x89abcdefu);
    T_CHECK(p2p_rd_u64(&r) == UINT64_C(0x0102030405060708));
    T_CHECK(!r.bad);
    T_EQ_INT(p2p_rd_left(&r), 0);

    uint8_t p[8];
    p2p_put_u32(p, 0xdeadbeefu);
    static const uint8_t w32[4] = {0xef, 0xbe, 0xad, 0xde};
    T_EQ_MEM(p, w32, 4);
    T_EQ_INT(p2p_get_u32(w32), 0xdeadbeefu);
    p2p_put_u64(p, UINT64_C(0xfedcba9876543210));
    static const uint8_t w64[8] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
    T_EQ_MEM(p, w64, 8);
    T_CHECK(p2p_get_u64(w64) == UINT64_C(0xfedcba9876543210));

    /* short reads of each width */
    p2p_rd_init(&r, want, 1);
    T_EQ_INT(p2p_rd_u16(&r), 0);
    T_CHECK(r.bad);
    p2p_rd_init(&r, want, 3);
    T_EQ_INT(p2p_rd_u32(&r), 0);
    T_CHECK(r.bad);
    p2p_rd_init(&r, want, 7);
    T_CHECK(p2p_rd_u64(&r) == 0);
    T_CHECK(r.bad);
    p2p_rd_init(&r, want, 0);
    T_EQ_INT(p2p_rd_u8(&r), 0);
    T_CHECK(r.bad);
    /* short writes of each width leave the buffer untouched */
    uint8_t small[7] = {0};
    p2p_wr_init(&w, small, 1);
    p2p_wr_u16(&w, 0xffff);
    T_CHECK(w.bad && small[0] == 0);
    p2p_wr_init(&w, small, 3);
    p2p_wr_u32(&w, 0xffffffffu);
    T_CHECK(w.bad && small[0] == 0);
    p2p_wr_init(&w, small, 7);
    p2p_wr_u64(&w, UINT64_MAX);
    T_CHECK(w.bad && small[0] == 0);
}

static void test_bytes(void)
{
    static const uint8_t src[5] = {1, 2, 3, 4, 5};
    uint8_t buf[5];
    p2p_wr w;
    p2p_wr_init(&w, buf, 5);
    p2p_wr_bytes(&w, src, 3);
    p2p_wr_bytes(&w, src, 0);
    p2p_wr_bytes(&w, src + 3, 2);
    T_CHECK(!w.bad);
    T_EQ_MEM(buf, src, 5);
    p2p_wr_bytes(&w, src, 1);
    T_CHECK(w.bad);

    p2p_rd r;
    p2p_rd_init(&r, src, 5);
    const uint8_t *a = p2p_rd_bytes(&r, 2);
    T_CHECK(a == src); /* borrowed, not copied */
    T_CHECK(p2p_rd_bytes(&r, 4) == NULL);
    T_CHECK(r.bad);
}

/* ---- frames ---- */

static int decode_one(const uint8_t *b, size_t n, p2p_frame *f, p2p_rd *r)
{
    p2p_rd_init(r, b, n);
    return p2p_frame_next(r, f);
}

static void test_frame_simple_types(void)
{
    p2p_frame f;
    p2p_rd r;
    /* an empty plaintext has no frame */
    T_EQ_INT(decode_one((const uint8_t *)"", 0, &f, &r), 0);

    /* PING, CLOSE, MAX_STREAM back to back */
    uint8_t buf[64];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    p2p_wr_u8(&w, P2P_FRAME_PING);
    p2p_wr_u8(&w, P2P_FRAME_CLOSE);
    p2p_wr_u8(&w, P2P_CLOSE_PROTOCOL);
    p2p_wr_u8(&w, P2P_FRAME_MAX_STREAM);
    p2p_wr_varint(&w, 1234567);
    p2p_wr_u8(&w, P2P_FRAME_DATAGRAM);
    p2p_wr_u16(&w, 0xbeef);
    p2p_wr_varint(&w, 3);
    p2p_wr_bytes(&w, "xyz", 3);
    T_CHECK(!w.bad);
    size_t n = (size_t)(w.p - buf);
    /* MAX_STREAM is 1 + 4 bytes (1234567 needs the 4-byte form), DATAGRAM 1 + 2 + 1 + 3 */
    T_EQ_INT(n, 1 + 2 + 5 + 7);

    p2p_rd_init(&r, buf, n);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_PING);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_CLOSE);
    T_EQ_INT(f.u.close_reason, P2P_CLOSE_PROTOCOL);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_MAX_STREAM);
    T_EQ_INT(f.u.max_stream, 1234567);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_DATAGRAM);
    T_EQ_INT(f.u.datagram.type, 0xbeef);
    T_EQ_INT(f.u.datagram.len, 3);
    T_CHECK(f.u.datagram.data == buf + n - 3);
    T_EQ_MEM(f.u.datagram.data, "xyz", 3);
    T_EQ_INT(p2p_frame_next(&r, &f), 0);

    /* an empty DATAGRAM is fine */
    static const uint8_t dg0[] = {P2P_FRAME_DATAGRAM, 0x01, 0x00, 0x00};
    T_EQ_INT(decode_one(dg0, sizeof dg0, &f, &r), 1);
    T_EQ_INT(f.u.datagram.type, 1);
    T_EQ_INT(f.u.datagram.len, 0);
    T_EQ_INT(p2p_rd_left(&r), 0);
}

static void test_frame_stream(void)
{
    uint8_t buf[64];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    T_EQ_INT(p2p_frame_put_stream_header(&w, 100000, 5), 0);
    T_EQ_INT(w.p - buf, p2p_frame_stream_header_len(100000, 5));
    T_EQ_INT(p2p_frame_stream_header_len(100000, 5), 1 + 4 + 1);
    static const uint8_t hdr[] = {P2P_FRAME_STREAM, 0x80, 0x01, 0x86, 0xa0, 0x05};
    T_EQ_MEM(buf, hdr, sizeof hdr);
    p2p_wr_bytes(&w, "hello", 5);
    T_CHECK(!w.bad);

    p2p_frame f;
    p2p_rd r;
    T_EQ_INT(decode_one(buf, (size_t)(w.p - buf), &f, &r), 1);
    T_EQ_INT(f.type, P2P_FRAME_STREAM);
    T_EQ_INT(f.u.stream.offset, 100000);
    T_EQ_INT(f.u.stream.len, 5);
    T_CHECK(f.u.stream.data == buf + sizeof hdr);
    T_EQ_INT(p2p_frame_next(&r, &f), 0);

    /* a header with no room reports P2P_ERR_BUFFER */
    p2p_wr_init(&w, buf, 3);
    T_EQ_INT(p2p_frame_put_stream_header(&w, 100000, 5), P2P_ERR_BUFFER);
    T_CHECK(w.bad);

    /* length one past the end of the packet */
    T_EQ_INT(decode_one(buf, sizeof hdr + 4, &f, &r), P2P_ERR_INVALID);
    /* truncated inside the header */
    T_EQ_INT(decode_one(buf, 3, &f, &r), P2P_ERR_INVALID);

    /* offset + length past 2^62 - 1 */
    p2p_wr_init(&w, buf, sizeof buf);
    p2p_frame_put_stream_header(&w, P2P_VARINT_MAX, 1);
    p2p_wr_u8(&w, 'x');
    T_EQ_INT(decode_one(buf, (size_t)(w.p - buf), &f, &r), P2P_ERR_INVALID);
    /* ending exactly at 2^62 - 1 is fine */
    p2p_wr_init(&w, buf, sizeof buf);
    p2p_frame_put_stream_header(&w, P2P_VARINT_MAX - 1, 1);
    p2p_wr_u8(&w, 'x');
    T_EQ_INT(decode_one(buf, (size_t)(w.p - buf), &f, &r), 1);
    T_CHECK(f.u.stream.offset == P2P_VARINT_MAX - 1);
}

static void test_frame_truncated_and_unknown(void)
{
    p2p_frame f;
    p2p_rd r;
    static const uint8_t ms[] = {P2P_FRAME_MAX_STREAM, 0x80, 0x01};
    T_EQ_INT(decode_one(ms, sizeof ms, &f, &r), P2P_ERR_INVALID);
    static const uint8_t ms0[] = {P2P_FRAME_MAX_STREAM};
    T_EQ_INT(decode_one(ms0, 1, &f, &r), P2P_ERR_INVALID);
    static const uint8_t cl[] = {P2P_FRAME_CLOSE};
    T_EQ_INT(decode_one(cl, 1, &f, &r), P2P_ERR_INVALID);
    static const uint8_t dg[] = {P2P_FRAME_DATAGRAM, 0x01};
    T_EQ_INT(decode_one(dg, sizeof dg, &f, &r), P2P_ERR_INVALID);
    static const uint8_t dg_long[] = {P2P_FRAME_DATAGRAM, 0x01, 0x00, 0x04, 'a', 'b', 'c'};
    T_EQ_INT(decode_one(dg_long, sizeof dg_long, &f, &r), P2P_ERR_INVALID);
    static const uint8_t ack[] = {P2P_FRAME_ACK, 5, 0, 0}; /* first_range missing */
    T_EQ_INT(decode_one(ack, sizeof ack, &f, &r), P2P_ERR_INVALID);
    static const uint8_t ack2[] = {P2P_FRAME_ACK, 20, 0, 1, 2, 3}; /* second range cut */
    T_EQ_INT(decode_one(ack2, sizeof ack2, &f, &r), P2P_ERR_INVALID);
    for (unsigned t = 0x07; t <= 0xff; t++) {
        uint8_t b[2] = {(uint8_t)t, 0};
        T_EQ_INT(decode_one(b, 2, &f, &r), P2P_ERR_INVALID);
    }
    /* a bad frame after a good one still fails the packet */
    static const uint8_t mix[] = {P2P_FRAME_PING, 0x40};
    p2p_rd_init(&r, mix, sizeof mix);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(p2p_frame_next(&r, &f), P2P_ERR_INVALID);
}

static void test_frame_padding(void)
{
    p2p_frame f;
    p2p_rd r;
    static const uint8_t pad[] = {P2P_FRAME_PING, 0, 0, 0, 0};
    p2p_rd_init(&r, pad, sizeof pad);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_PING);
    T_EQ_INT(p2p_frame_next(&r, &f), 1);
    T_EQ_INT(f.type, P2P_FRAME_PADDING);
    T_EQ_INT(p2p_rd_left(&r), 0); /* padding runs to the end */
    T_EQ_INT(p2p_frame_next(&r, &f), 0);

    static const uint8_t lone[] = {0};
    T_EQ_INT(decode_one(lone, 1, &f, &r), 1);
    T_EQ_INT(f.type, P2P_FRAME_PADDING);

    static const uint8_t bad[] = {0, 0, 0, P2P_FRAME_PING};
    T_EQ_INT(decode_one(bad, sizeof bad, &f, &r), P2P_ERR_INVALID);
    static const uint8_t bad2[] = {0, 0x80};
    T_EQ_INT(decode_one(bad2, sizeof bad2, &f, &r), P2P_ERR_INVALID);
}

/* ---- ACK frames ---- */

static int ack_roundtrip(const p2p_ack_range *rg, size_t count, uint64_t delay, p2p_frame *f)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    int rc = p2p_frame_put_ack(&w, delay, rg, count);
    if (rc) return rc;
    p2p_rd r;
    p2p_rd_init(&r, buf, (size_t)(w.p - buf));
    rc = p2p_frame_next(&r, f);
    if (rc != 1) return rc;
    if (p2p_rd_left(&r) != 0) return -100;
    return p2p_frame_next(&r, f) == 0 ? 1 : -101;
}

static int same_ranges(const p2p_frame *f, const p2p_ack_range *rg, size_t count)
{
    if (f->type != P2P_FRAME_ACK || f->u.ack.count != count) return 0;
    for (size_t i = 0; i < count; i++)
        if (f->u.ack.r[i].lo != rg[i].lo || f->u.ack.r[i].hi != rg[i].hi) return 0;
    return 1;
}

static void test_ack_bytes(void)
{
    /* largest 10, ranges 8..10, 5..5, 0..2: first_range 2, then gap 1 (6,7 missing),
     * length 0, then gap 1 (3,4 missing), length 2. */
    const p2p_ack_range rg[3] = {{8, 10}, {5, 5}, {0, 2}};
    uint8_t buf[32];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    T_EQ_INT(p2p_frame_put_ack(&w, 300, rg, 3), 0);
    static const uint8_t want[] = {P2P_FRAME_ACK, 10, 0x41, 0x2c, 2, 2, 1, 0, 1, 2};
    T_EQ_INT(w.p - buf, sizeof want);
    T_EQ_MEM(buf, want, sizeof want);

    p2p_frame f;
    p2p_rd r;
    T_EQ_INT(decode_one(want, sizeof want, &f, &r), 1);
    T_CHECK(same_ranges(&f, rg, 3));
    T_EQ_INT(f.u.ack.delay_us, 300);

    /* the single range 0..0 */
    const p2p_ack_range zero = {0, 0};
    T_EQ_INT(ack_roundtrip(&zero, 1, 0, &f), 1);
    T_CHECK(same_ranges(&f, &zero, 1));
    /* ranges that end exactly at packet 0 after a gap of one */
    const p2p_ack_range edge[2] = {{2, 2}, {0, 0}};
    T_EQ_INT(ack_roundtrip(edge, 2, 0, &f), 1);
    T_CHECK(same_ranges(&f, edge, 2));
    /* huge numbers */
    const p2p_ack_range big[2] = {{P2P_VARINT_MAX - 3, P2P_VARINT_MAX}, {0, 1000}};
    T_EQ_INT(ack_roundtrip(big, 2, P2P_VARINT_MAX, &f), 1);
    T_CHECK(same_ranges(&f, big, 2));
    T_CHECK(f.u.ack.delay_us == P2P_VARINT_MAX);

    /* encoder refuses 0 and 65 ranges, and reports a full buffer */
    p2p_wr_init(&w, buf, sizeof buf);
    T_EQ_INT(p2p_frame_put_ack(&w, 0, rg, 0), P2P_ERR_INVALID);
    p2p_ack_range many[65];
    for (size_t i = 0; i < 65; i++) {
        many[i].hi = 1000 - 3 * i;
        many[i].lo = many[i].hi;
    }
    T_EQ_INT(p2p_frame_put_ack(&w, 0, many, 65), P2P_ERR_INVALID);
    p2p_wr_init(&w, buf, 5);
    T_EQ_INT(p2p_frame_put_ack(&w, 0, rg, 3), P2P_ERR_BUFFER);
    T_CHECK(w.bad);
}

static void test_ack_1_to_64_ranges(void)
{
    p2p_rng rng;
    p2p_rng_init(&rng, 0x5eed0001);
    for (size_t count = 1; count <= P2P_ACK_MAX_RANGES; count++) {
        for (int rep = 0; rep < 20; rep++) {
            /* build ranges from the top down, each separated by at least one missing number */
            p2p_ack_range rg[P2P_ACK_MAX_RANGES];
            uint64_t top = (uint64_t)p2p_rng_u32(&rng) << (rep % 3 == 0 ? 20 : 0);
            top += 64 * 70000;
            for (size_t i = 0; i < count; i++) {
                uint64_t len = p2p_rng_below(&rng, rep & 1 ? 3 : 50000);
                uint64_t gap = p2p_rng_below(&rng, rep & 2 ? 2 : 15000);
                rg[i].hi = top;
                rg[i].lo = top - len;
                top = rg[i].lo - gap - 2;
            }
            p2p_frame f;
            uint64_t delay = p2p_rng_below(&rng, 100000);
            int rc = ack_roundtrip(rg, count, delay, &f);
            T_EQ_INT(rc, 1);
            T_CHECK(same_ranges(&f, rg, count));
            T_EQ_INT(f.u.ack.delay_us, delay);
        }
    }
}

/* Writes a raw ACK frame from wire fields: `pairs` (gap, length) pairs follow, whatever
 * range_count claims. */
static size_t raw_ack(uint8_t *buf, size_t cap, uint64_t largest, uint64_t first, uint64_t count,
                      const uint64_t *gap_len, size_t pairs)
{
    p2p_wr w;
    p2p_wr_init(&w, buf, cap);
    p2p_wr_u8(&w, P2P_FRAME_ACK);
    p2p_wr_varint(&w, largest);
    p2p_wr_varint(&w, 0);
    p2p_wr_varint(&w, count);
    p2p_wr_varint(&w, first);
    for (size_t i = 0; i < pairs; i++) {
        p2p_wr_varint(&w, gap_len[2 * i]);
        p2p_wr_varint(&w, gap_len[2 * i + 1]);
    }
    return w.bad ? 0 : (size_t)(w.p - buf);
}

static void test_ack_invalid(void)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_frame f;
    p2p_rd r;
    size_t n;
    /* first_range larger than largest */
    n = raw_ack(buf, sizeof buf, 5, 6, 0, NULL, 0);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
    n = raw_ack(buf, sizeof buf, 5, 5, 0, NULL, 0); /* 0..5 is fine */
    T_EQ_INT(decode_one(buf, n, &f, &r), 1);
    T_EQ_INT(f.u.ack.r[0].lo, 0);

    /* gap underflow: 5..10 then gap 4 puts the next range's top at 5 - 4 - 2 < 0 */
    uint64_t gl[2] = {4, 0};
    n = raw_ack(buf, sizeof buf, 10, 5, 1, gl, 1);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
    gl[0] = 3; /* top at 0: fine */
    n = raw_ack(buf, sizeof buf, 10, 5, 1, gl, 1);
    T_EQ_INT(decode_one(buf, n, &f, &r), 1);
    T_EQ_INT(f.u.ack.count, 2);
    T_EQ_INT(f.u.ack.r[1].hi, 0);
    T_EQ_INT(f.u.ack.r[1].lo, 0);
    /* range length underflow: top at 2, length 3 */
    gl[0] = 1;
    gl[1] = 3;
    n = raw_ack(buf, sizeof buf, 10, 5, 1, gl, 1);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
    gl[1] = 2;
    n = raw_ack(buf, sizeof buf, 10, 5, 1, gl, 1);
    T_EQ_INT(decode_one(buf, n, &f, &r), 1);
    T_EQ_INT(f.u.ack.r[1].lo, 0);
    T_EQ_INT(f.u.ack.r[1].hi, 2);
    /* a huge gap that would wrap a 64-bit subtraction */
    gl[0] = P2P_VARINT_MAX;
    gl[1] = 0;
    n = raw_ack(buf, sizeof buf, 10, 0, 1, gl, 1);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);

    /* 64 ranges (range_count 63) parse; 65 (range_count 64) do not */
    uint64_t many[2 * 70];
    for (size_t i = 0; i < 70; i++) {
        many[2 * i] = 0;
        many[2 * i + 1] = 0;
    }
    n = raw_ack(buf, sizeof buf, 1000, 0, 63, many, 63);
    T_EQ_INT(decode_one(buf, n, &f, &r), 1);
    T_EQ_INT(f.u.ack.count, 64);
    T_EQ_INT(f.u.ack.r[63].hi, 1000 - 2 * 63);
    n = raw_ack(buf, sizeof buf, 1000, 0, 64, many, 64);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
    n = raw_ack(buf, sizeof buf, 1000, 0, 69, many, 69);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
    /* a huge range_count with no ranges behind it */
    n = raw_ack(buf, sizeof buf, 1000, 0, P2P_VARINT_MAX, many, 3);
    T_EQ_INT(decode_one(buf, n, &f, &r), P2P_ERR_INVALID);
}

/* ---- records ---- */

static void test_records(void)
{
    const p2p_record recs[] = {
        {P2P_REC_MESSAGE, 7, 0, 0, 5},
        {P2P_REC_MESSAGE, 0xffff, 0, 0, 0},
        {P2P_REC_MESSAGE_RECEIPT, 0x1234, 0, 0, 1u << 20},
        {P2P_REC_MESSAGE_RECEIPT, 0, 0, 0, P2P_VARINT_MAX},
        {P2P_REC_REPLY, 0, 0, P2P_REPLY_NIL, 0},
        {P2P_REC_REPLY, 0, 99999, P2P_REPLY_DATA, 300},
        {P2P_REC_REPLY, 0, P2P_VARINT_MAX, P2P_REPLY_ERROR, P2P_VARINT_MAX},
    };
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        uint8_t buf[P2P_RECORD_HEADER_MAX + 4];
        size_t n = p2p_record_encode(buf, &recs[i]);
        T_CHECK(n > 0 && n <= P2P_RECORD_HEADER_MAX);
        size_t want = recs[i].kind == P2P_REC_REPLY
                          ? 1 + p2p_varint_len(recs[i].ref) + 1 + p2p_varint_len(recs[i].len)
                          : 1 + 2 + p2p_varint_len(recs[i].len);
        T_EQ_INT(n, want);
        T_EQ_INT(buf[0], recs[i].kind);
        /* trailing body bytes do not change the header length */
        memset(buf + n, 0x55, 4);
        p2p_record got;
        T_EQ_INT(p2p_record_parse(buf, n + 4, &got), n);
        T_EQ_INT(got.kind, recs[i].kind);
        T_CHECK(got.len == recs[i].len);
        if (recs[i].kind == P2P_REC_REPLY) {
            T_CHECK(got.ref == recs[i].ref);
            T_EQ_INT(got.status, recs[i].status);
        } else {
            T_EQ_INT(got.type, recs[i].type);
        }
        /* every strict prefix asks for more bytes */
        for (size_t k = 0; k < n; k++) T_EQ_INT(p2p_record_parse(buf, k, &got), 0);
    }
    /* byte-exact MESSAGE header: kind, u16 type little-endian, varint length */
    const p2p_record m = {P2P_REC_MESSAGE_RECEIPT, 0x0102, 0, 0, 300};
    uint8_t b[P2P_RECORD_HEADER_MAX];
    T_EQ_INT(p2p_record_encode(b, &m), 5);
    static const uint8_t wm[] = {0x02, 0x02, 0x01, 0x41, 0x2c};
    T_EQ_MEM(b, wm, 5);
    const p2p_record rp = {P2P_REC_REPLY, 0, 64, P2P_REPLY_DATA, 2};
    T_EQ_INT(p2p_record_encode(b, &rp), 5);
    static const uint8_t wr[] = {0x03, 0x40, 0x40, 0x01, 0x02};
    T_EQ_MEM(b, wr, 5);
}

static void test_records_invalid(void)
{
    p2p_record got;
    /* 0x01..0x03 are the message records, 0x04..0x09 the mesh records (docs/PROTOCOL.md
     * section 7), 0x0a..0x0c the introductions (section 8), 0x0d transfers (section 4.2), 0x0e
     * birthday punching (section 8.3), 0x0f a node's addresses (section 8.7), 0x10 a lane's
     * REPLY (section 4.4): every other kind is refused. */
    for (unsigned k = 0; k <= 0xff; k++) {
        if (k >= P2P_REC_MESSAGE && k <= P2P_REC_TRANSFER) continue;
        if (k == P2P_REC_REPLY_LANE || k == P2P_REC_PUNCH || k == P2P_REC_ADDRS) continue;
        uint8_t b[8] = {(uint8_t)k, 0, 0, 0, 0, 0, 0, 0};
        T_EQ_INT(p2p_record_parse(b, sizeof b, &got), P2P_ERR_INVALID);
        T_EQ_INT(p2p_record_parse(b, 1, &got), P2P_ERR_INVALID); /* known from byte one */
    }
    /* REPLY with status 3 and above: P2P_REPLY_LOST is local only, never on the wire */
    for (unsigned st = 3; st <= 0xff; st++) {
        uint8_t b[] = {P2P_REC_REPLY, 0x05, (uint8_t)st, 0x00};
        T_EQ_INT(p2p_record_parse(b, sizeof b, &got), P2P_ERR_INVALID);
    }
    for (unsigned st = 0; st < 3; st++) {
        uint8_t b[] = {P2P_REC_REPLY, 0x05, (uint8_t)st, 0x00};
        T_EQ_INT(p2p_record_parse(b, sizeof b, &got), 4);
        T_EQ_INT(got.status, st);
        T_EQ_INT(got.ref, 5);
    }
    static const uint8_t none[1] = {P2P_REC_MESSAGE};
    T_EQ_INT(p2p_record_parse(none, 0, &got), 0);
}

/* Mesh records: kind, varint length; they round-trip and need their whole header. */
static void test_records_mesh(void)
{
    for (unsigned k = P2P_REC_MEMBERS; k <= P2P_REC_DIGEST; k++) {
        p2p_record rec, got;
        uint8_t b[P2P_RECORD_HEADER_MAX];
        memset(&rec, 0, sizeof rec);
        rec.kind = (uint8_t)k;
        rec.len = 300 + k;
        size_t n = p2p_record_encode(b, &rec);
        T_EQ_INT(n, 3);
        T_EQ_INT(p2p_record_parse(b, n, &got), 3);
        T_EQ_INT(got.kind, k);
        T_EQ_INT(got.len, 300 + k);
        T_EQ_INT(p2p_record_parse(b, 2, &got), 0); /* the varint is cut short */
    }
}

/* ---- randomized frame round trip ---- */

typedef struct want_frame {
    uint8_t type;
    uint64_t a, b; /* ACK: delay, count; STREAM: offset, len; MAX_STREAM: value */
    uint16_t dtype;
    p2p_ack_range r[P2P_ACK_MAX_RANGES];
    const uint8_t *data; /* into the packet */
} want_frame;

static uint64_t rand_varint(p2p_rng *rng)
{
    static const unsigned bits[] = {6, 14, 30, 62};
    unsigned b = bits[p2p_rng_below(rng, 4)];
    uint64_t v = ((uint64_t)p2p_rng_u32(rng) << 32) | p2p_rng_u32(rng);
    return v & ((UINT64_C(1) << b) - 1);
}

static void test_frames_random(void)
{
    p2p_rng rng;
    p2p_rng_init(&rng, 0x77697265);
    static const uint8_t payload[P2P_MAX_PACKET] = {1, 2, 3};
    unsigned decoded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t buf[P2P_MAX_PACKET];
        want_frame want[40];
        size_t nf = 0;
        p2p_wr w;
        p2p_wr_init(&w, buf, sizeof buf);
        size_t target = 1 + p2p_rng_below(&rng, 12);
        while (nf < target) {
            want_frame *x = &want[nf];
            memset(x, 0, sizeof *x);
            uint8_t *start = w.p;
            x->type = (uint8_t)(1 + p2p_rng_below(&rng, 6));
            switch (x->type) {
            case P2P_FRAME_PING: p2p_wr_u8(&w, x->type); break;
            case P2P_FRAME_ACK: {
                size_t count = 1 + p2p_rng_below(&rng, P2P_ACK_MAX_RANGES);
                uint64_t top = rand_varint(&rng) | (UINT64_C(1) << 40);
                for (size_t i = 0; i < count; i++) {
                    x->r[i].hi = top;
                    x->r[i].lo = top - p2p_rng_below(&rng, 1000);
                    top = x->r[i].lo - 2 - p2p_rng_below(&rng, 1000);
                }
                x->a = rand_varint(&rng);
                x->b = count;
                p2p_frame_put_ack(&w, x->a, x->r, count);
                break;
            }
            case P2P_FRAME_STREAM:
                x->b = p2p_rng_below(&rng, 200);
                x->a = rand_varint(&rng) % (P2P_VARINT_MAX - x->b);
                p2p_frame_put_stream_header(&w, x->a, x->b);
                x->data = w.p;
                p2p_wr_bytes(&w, payload, (size_t)x->b);
                break;
            case P2P_FRAME_MAX_STREAM:
                x->a = rand_varint(&rng);
                p2p_wr_u8(&w, x->type);
                p2p_wr_varint(&w, x->a);
                break;
            case P2P_FRAME_DATAGRAM:
                x->dtype = (uint16_t)p2p_rng_u32(&rng);
                x->b = p2p_rng_below(&rng, 200);
                p2p_wr_u8(&w, x->type);
                p2p_wr_u16(&w, x->dtype);
                p2p_wr_varint(&w, x->b);
                x->data = w.p;
                p2p_wr_bytes(&w, payload, (size_t)x->b);
                break;
            case P2P_FRAME_CLOSE:
                x->a = p2p_rng_below(&rng, 3);
                p2p_wr_u8(&w, x->type);
                p2p_wr_u8(&w, (uint8_t)x->a);
                break;
            }
            if (w.bad) { /* did not fit: end the packet before it */
                w.p = start;
                w.bad = 0;
                break;
            }
            nf++;
        }
        size_t n = (size_t)(w.p - buf);
        int padded = p2p_rng_below(&rng, 4) == 0 && n < sizeof buf;
        size_t total = n;
        if (padded) {
            size_t pad = 1 + p2p_rng_below(&rng, (uint32_t)(sizeof buf - n));
            memset(buf + n, 0, pad);
            total += pad;
        }

        p2p_rd r;
        p2p_rd_init(&r, buf, total);
        p2p_frame f;
        size_t i = 0;
        int rc, ok = 1;
        while ((rc = p2p_frame_next(&r, &f)) == 1) {
            if (i == nf) {
                ok = ok && padded && f.type == P2P_FRAME_PADDING;
                i++;
                continue;
            }
            want_frame *x = &want[i++];
            if (f.type != x->type) {
                ok = 0;
                break;
            }
            switch (x->type) {
            case P2P_FRAME_ACK:
                ok = ok && f.u.ack.delay_us == x->a && same_ranges(&f, x->r, (size_t)x->b);
                break;
            case P2P_FRAME_STREAM:
                ok = ok && f.u.stream.offset == x->a && f.u.stream.len == x->b &&
                     f.u.stream.data == x->data;
                break;
            case P2P_FRAME_MAX_STREAM: ok = ok && f.u.max_stream == x->a; break;
            case P2P_FRAME_DATAGRAM:
                ok = ok && f.u.datagram.type == x->dtype && f.u.datagram.len == x->b &&
                     f.u.datagram.data == x->data;
                break;
            case P2P_FRAME_CLOSE: ok = ok && f.u.close_reason == x->a; break;
            }
        }
        T_EQ_INT(rc, 0);
        T_EQ_INT(i, nf + (size_t)padded);
        T_CHECK(ok);
        if (rc != 0 || !ok) {
            fprintf(stderr, "  iteration %d\n", iter);
            break;
        }
        decoded += (unsigned)nf;

        /* Flip one byte: the decoder must never read outside the packet (ASan watches) and
         * must either fail or return frames; it must not loop. */
        if (total > 0) {
            uint8_t copy[P2P_MAX_PACKET];
            memcpy(copy, buf, total);
            copy[p2p_rng_below(&rng, (uint32_t)total)] ^= (uint8_t)(1 + p2p_rng_below(&rng, 255));
            size_t cut = p2p_rng_below(&rng, (uint32_t)total + 1);
            p2p_rd_init(&r, copy, cut);
            int steps = 0;
            while ((rc = p2p_frame_next(&r, &f)) == 1 && steps < 2000) steps++;
            T_CHECK(steps < 2000);
            T_CHECK(rc == 0 || rc == P2P_ERR_INVALID);
        }
    }
    T_CHECK(decoded > 10000);
}

int main(void)
{
    T_RUN(test_varint_boundaries);
    T_RUN(test_varint_non_shortest);
    T_RUN(test_varint_truncated);
    T_RUN(test_varint_too_big);
    T_RUN(test_fixed_width_le);
    T_RUN(test_bytes);
    T_RUN(test_frame_simple_types);
    T_RUN(test_frame_stream);
    T_RUN(test_frame_truncated_and_unknown);
    T_RUN(test_frame_padding);
    T_RUN(test_ack_bytes);
    T_RUN(test_ack_1_to_64_ranges);
    T_RUN(test_ack_invalid);
    T_RUN(test_records);
    T_RUN(test_records_invalid);
    T_RUN(test_records_mesh);
    T_RUN(test_frames_random);
    return t_summary("wire");
}
