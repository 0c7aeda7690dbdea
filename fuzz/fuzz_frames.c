/*
 * fuzz_frames.c - libFuzzer target for the DATA-packet parsers in p2p_wire.h: frames, stream
 * record headers and varints. Beyond "does not crash", it checks what the rest of the core
 * relies on: borrowed pointers stay inside the input, ACK ranges come out highest first and
 * disjoint, the decoder always makes progress, and whatever decodes re-encodes (in the
 * shortest form) to something that decodes to the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p2pnet.h"
#include "p2p_wire.h"
#include "fuzz_check.h"

static int inside(const uint8_t *p, uint64_t n, const uint8_t *buf, size_t size)
{
    return p >= buf && n <= size && p + n <= buf + size;
}

static void check_ack(const p2p_frame *f)
{
    CHECK(f->u.ack.count >= 1 && f->u.ack.count <= P2P_ACK_MAX_RANGES);
    for (size_t i = 0; i < f->u.ack.count; i++) {
        CHECK(f->u.ack.r[i].lo <= f->u.ack.r[i].hi);
        /* each range starts at least gap + 2 = 2 below the previous one's smallest */
        if (i > 0) CHECK(f->u.ack.r[i].hi + 2 <= f->u.ack.r[i - 1].lo);
    }
    uint8_t buf[2048];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    CHECK(p2p_frame_put_ack(&w, f->u.ack.delay_us, f->u.ack.r, f->u.ack.count) == 0);
    p2p_rd r;
    p2p_rd_init(&r, buf, (size_t)(w.p - buf));
    p2p_frame g;
    CHECK(p2p_frame_next(&r, &g) == 1);
    CHECK(g.type == P2P_FRAME_ACK && g.u.ack.count == f->u.ack.count);
    CHECK(g.u.ack.delay_us == f->u.ack.delay_us);
    CHECK(memcmp(g.u.ack.r, f->u.ack.r, f->u.ack.count * sizeof f->u.ack.r[0]) == 0);
    CHECK(p2p_rd_left(&r) == 0);
}

static void check_stream(const p2p_frame *f)
{
    uint8_t buf[32];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    CHECK(p2p_frame_put_stream_header(&w, f->u.stream.offset, f->u.stream.len) == 0);
    size_t hl = (size_t)(w.p - buf);
    CHECK(hl == p2p_frame_stream_header_len(f->u.stream.offset, f->u.stream.len));
    /* Decode the header back against a virtual body: append as much body as we have. */
    uint8_t pkt[32 + 64];
    size_t body = f->u.stream.len < 64 ? (size_t)f->u.stream.len : 0;
    if (f->u.stream.len < 64) {
        memcpy(pkt, buf, hl);
        memcpy(pkt + hl, f->u.stream.data, body);
        p2p_rd r;
        p2p_rd_init(&r, pkt, hl + body);
        p2p_frame g;
        CHECK(p2p_frame_next(&r, &g) == 1);
        CHECK(g.type == P2P_FRAME_STREAM && g.u.stream.offset == f->u.stream.offset);
        CHECK(g.u.stream.len == f->u.stream.len);
        CHECK(memcmp(g.u.stream.data, f->u.stream.data, body) == 0);
    }
}

/* lanes: a STREAM_LANE header re-encodes to the same bytes' meaning, and never names lane 0 */
static void check_stream_lane(const p2p_frame *f)
{
    CHECK(f->lane != 0);
    uint8_t buf[32];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    CHECK(p2p_frame_put_lane_header(&w, f->lane, f->u.stream.offset, f->u.stream.len) == 0);
    size_t hl = (size_t)(w.p - buf);
    CHECK(hl == p2p_frame_lane_header_len(f->lane, f->u.stream.offset, f->u.stream.len));
    if (f->u.stream.len < 64) {
        uint8_t pkt[32 + 64];
        memcpy(pkt, buf, hl);
        memcpy(pkt + hl, f->u.stream.data, (size_t)f->u.stream.len);
        p2p_rd r;
        p2p_rd_init(&r, pkt, hl + (size_t)f->u.stream.len);
        p2p_frame g;
        CHECK(p2p_frame_next(&r, &g) == 1);
        CHECK(g.type == P2P_FRAME_STREAM_LANE && g.lane == f->lane);
        CHECK(g.u.stream.offset == f->u.stream.offset && g.u.stream.len == f->u.stream.len);
        CHECK(memcmp(g.u.stream.data, f->u.stream.data, (size_t)f->u.stream.len) == 0);
    }
}

/* lanes: a DATAGRAM_SEQ frame re-encodes to one that decodes the same */
static void check_datagram_seq(const p2p_frame *f)
{
    CHECK(f->lane <= P2P_LANE_MAX);
    if (f->u.datagram.len > 256) return;
    uint8_t buf[P2P_DATAGRAM_SEQ_OVERHEAD + 256];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    CHECK(p2p_frame_put_datagram_seq(&w, f->lane, f->u.datagram.seq, f->u.datagram.type,
                                     f->u.datagram.data, (size_t)f->u.datagram.len) == 0);
    p2p_rd r;
    p2p_rd_init(&r, buf, (size_t)(w.p - buf));
    p2p_frame g;
    CHECK(p2p_frame_next(&r, &g) == 1 && p2p_rd_left(&r) == 0);
    CHECK(g.type == P2P_FRAME_DATAGRAM_SEQ && g.lane == f->lane);
    CHECK(g.u.datagram.seq == f->u.datagram.seq && g.u.datagram.type == f->u.datagram.type);
    CHECK(g.u.datagram.len == f->u.datagram.len);
}

static void frames(const uint8_t *data, size_t size)
{
    p2p_rd r;
    p2p_rd_init(&r, data, size);
    p2p_frame f;
    int rc;
    size_t n = 0;
    const uint8_t *last = r.p;
    while ((rc = p2p_frame_next(&r, &f)) == 1) {
        CHECK(r.p > last && r.p <= data + size); /* progress, inside the packet */
        last = r.p;
        CHECK(++n <= size);
        switch (f.type) {
        case P2P_FRAME_ACK: check_ack(&f); break;
        case P2P_FRAME_STREAM:
            CHECK(inside(f.u.stream.data, f.u.stream.len, data, size));
            CHECK(f.u.stream.offset + f.u.stream.len <= P2P_VARINT_MAX);
            check_stream(&f);
            break;
        case P2P_FRAME_DATAGRAM:
            CHECK(inside(f.u.datagram.data, f.u.datagram.len, data, size));
            break;
        case P2P_FRAME_MAX_STREAM: CHECK(f.u.max_stream <= P2P_VARINT_MAX); break;
        case P2P_FRAME_STREAM_LANE:
            CHECK(inside(f.u.stream.data, f.u.stream.len, data, size));
            CHECK(f.u.stream.offset + f.u.stream.len <= P2P_VARINT_MAX);
            check_stream_lane(&f);
            break;
        case P2P_FRAME_MAX_STREAM_LANE:
            CHECK(f.lane != 0 && f.u.max_stream <= P2P_VARINT_MAX);
            break;
        case P2P_FRAME_DATAGRAM_SEQ:
            CHECK(inside(f.u.datagram.data, f.u.datagram.len, data, size));
            check_datagram_seq(&f);
            break;
        case P2P_FRAME_PADDING: CHECK(p2p_rd_left(&r) == 0); break;
        case P2P_FRAME_RELAY:
        case P2P_FRAME_RELAYED:
            CHECK(f.u.relay.len > 0 && inside(f.u.relay.data, f.u.relay.len, data, size));
            break;
        case P2P_FRAME_PING:
        case P2P_FRAME_CLOSE:
        case P2P_FRAME_PATH_CHALLENGE:
        case P2P_FRAME_PATH_RESPONSE: break;
        default: CHECK(0); /* an unknown type must be rejected */
        }
    }
    CHECK(rc == 0 || rc == P2P_ERR_INVALID);
    if (rc == 0) CHECK(p2p_rd_left(&r) == 0);
}

static void records(const uint8_t *data, size_t size)
{
    p2p_record rec;
    int hl = p2p_record_parse(data, size, &rec);
    CHECK(hl == 0 || hl == P2P_ERR_INVALID || (hl > 0 && (size_t)hl <= size));
    if (hl <= 0) return;
    /* Whatever kinds the parser accepts must survive the round trip below. */
    CHECK(rec.kind == data[0]);
    if (rec.kind == P2P_REC_REPLY) CHECK(rec.status <= P2P_REPLY_ERROR);
    if (rec.kind == P2P_REC_REPLY_LANE) /* lanes: the lane answered, in type */
        CHECK(rec.status <= P2P_REPLY_ERROR && rec.type >= 1 && rec.type <= P2P_LANE_MAX);
    uint8_t out[P2P_RECORD_HEADER_MAX];
    size_t n = p2p_record_encode(out, &rec);
    CHECK(n > 0 && n <= (size_t)hl && n <= sizeof out);
    p2p_record back;
    CHECK(p2p_record_parse(out, n, &back) == (int)n);
    CHECK(back.kind == rec.kind && back.len == rec.len && back.type == rec.type);
    CHECK(back.ref == rec.ref && back.status == rec.status);
    /* Any truncation of a complete header asks for more bytes, never misparses. */
    for (size_t cut = 0; cut < (size_t)hl; cut++) CHECK(p2p_record_parse(data, cut, &back) == 0);
}

static void varints(const uint8_t *data, size_t size)
{
    p2p_rd r;
    p2p_rd_init(&r, data, size);
    while (p2p_rd_left(&r) > 0) {
        const uint8_t *before = r.p;
        uint64_t v = p2p_rd_varint(&r);
        if (r.bad) break;
        CHECK(v <= P2P_VARINT_MAX);
        size_t used = (size_t)(r.p - before);
        CHECK(used == 1 || used == 2 || used == 4 || used == 8);
        CHECK(p2p_varint_len(v) <= used);
        uint8_t buf[8];
        p2p_wr w;
        p2p_wr_init(&w, buf, sizeof buf);
        p2p_wr_varint(&w, v);
        CHECK(!w.bad && (size_t)(w.p - buf) == p2p_varint_len(v));
        p2p_rd back;
        p2p_rd_init(&back, buf, (size_t)(w.p - buf));
        CHECK(p2p_rd_varint(&back) == v && !back.bad && p2p_rd_left(&back) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frames(data, size);
    records(data, size);
    varints(data, size);
    return 0;
}
