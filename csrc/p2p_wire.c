/* p2p_wire.c - cursors, varints, frames and stream records (docs/PROTOCOL.md 2.2-4). */
#include "p2p_wire.h"
#include "p2pnet.h"

#include <string.h>

/* The fixed-size readers take their bytes through p2p_rd_bytes, so a short read marks the
 * reader bad and yields 0 in one place. */
uint8_t p2p_rd_u8(p2p_rd *r)
{
    const uint8_t *p = p2p_rd_bytes(r, 1);
    return p ? p[0] : 0;
}

uint16_t p2p_rd_u16(p2p_rd *r)
{
    const uint8_t *p = p2p_rd_bytes(r, 2);
    return p ? (uint16_t)(p[0] | (p[1] << 8)) : 0;
}

uint32_t p2p_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t p2p_get_u64(const uint8_t *p)
{
    return (uint64_t)p2p_get_u32(p) | ((uint64_t)p2p_get_u32(p + 4) << 32);
}

void p2p_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void p2p_put_u64(uint8_t *p, uint64_t v)
{
    p2p_put_u32(p, (uint32_t)v);
    p2p_put_u32(p + 4, (uint32_t)(v >> 32));
}

uint32_t p2p_rd_u32(p2p_rd *r)
{
    const uint8_t *p = p2p_rd_bytes(r, 4);
    return p ? p2p_get_u32(p) : 0;
}

uint64_t p2p_rd_u64(p2p_rd *r)
{
    const uint8_t *p = p2p_rd_bytes(r, 8);
    return p ? p2p_get_u64(p) : 0;
}

uint64_t p2p_rd_varint(p2p_rd *r)
{
    if (r->bad || r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    size_t n = (size_t)1 << (r->p[0] >> 6);
    if (p2p_rd_left(r) < n) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = r->p[0] & 0x3f;
    for (size_t i = 1; i < n; i++) v = (v << 8) | r->p[i];
    r->p += n;
    return v;
}

const uint8_t *p2p_rd_bytes(p2p_rd *r, size_t n)
{
    if (r->bad || p2p_rd_left(r) < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

void p2p_wr_u8(p2p_wr *w, uint8_t v)
{
    if (w->bad || w->p >= w->end) {
        w->bad = 1;
        return;
    }
    *w->p++ = v;
}

void p2p_wr_u16(p2p_wr *w, uint16_t v)
{
    if (w->bad || p2p_wr_left(w) < 2) {
        w->bad = 1;
        return;
    }
    w->p[0] = (uint8_t)v;
    w->p[1] = (uint8_t)(v >> 8);
    w->p += 2;
}

void p2p_wr_u32(p2p_wr *w, uint32_t v)
{
    if (w->bad || p2p_wr_left(w) < 4) {
        w->bad = 1;
        return;
    }
    p2p_put_u32(w->p, v);
    w->p += 4;
}

void p2p_wr_u64(p2p_wr *w, uint64_t v)
{
    if (w->bad || p2p_wr_left(w) < 8) {
        w->bad = 1;
        return;
    }
    p2p_put_u64(w->p, v);
    w->p += 8;
}

size_t p2p_varint_len(uint64_t v)
{
    return v < 64 ? 1 : v < 16384 ? 2 : v < (UINT64_C(1) << 30) ? 4 : 8;
}

void p2p_wr_varint(p2p_wr *w, uint64_t v)
{
    size_t n = p2p_varint_len(v);
    if (w->bad || v > P2P_VARINT_MAX || p2p_wr_left(w) < n) {
        w->bad = 1;
        return;
    }
    static const uint8_t prefix[9] = {0, 0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0};
    for (size_t i = n; i-- > 0;) {
        w->p[i] = (uint8_t)v;
        v >>= 8;
    }
    w->p[0] |= prefix[n];
    w->p += n;
}

void p2p_wr_bytes(p2p_wr *w, const void *src, size_t n)
{
    if (w->bad || p2p_wr_left(w) < n) {
        w->bad = 1;
        return;
    }
    if (n) memcpy(w->p, src, n);
    w->p += n;
}

/* Decodes the ranges of an ACK frame, highest first (RFC 9000 section 19.3.1). */
static int frame_ack(p2p_rd *r, p2p_frame *f)
{
    uint64_t largest = p2p_rd_varint(r);
    f->u.ack.delay_us = p2p_rd_varint(r);
    uint64_t count = p2p_rd_varint(r);
    uint64_t first = p2p_rd_varint(r);
    if (r->bad || count >= P2P_ACK_MAX_RANGES || first > largest) return P2P_ERR_INVALID;
    f->u.ack.r[0].hi = largest;
    f->u.ack.r[0].lo = largest - first;
    uint64_t smallest = largest - first;
    for (size_t i = 1; i <= count; i++) {
        uint64_t gap = p2p_rd_varint(r);
        uint64_t len = p2p_rd_varint(r);
        if (r->bad || smallest < gap + 2) return P2P_ERR_INVALID;
        uint64_t hi = smallest - gap - 2;
        if (len > hi) return P2P_ERR_INVALID;
        f->u.ack.r[i].hi = hi;
        f->u.ack.r[i].lo = hi - len;
        smallest = hi - len;
    }
    f->u.ack.count = (size_t)count + 1;
    return 1;
}

/* The len bytes a frame carries after its header. Returns 1, or P2P_ERR_INVALID when the
 * header was cut short or the packet holds fewer bytes. */
static int frame_body(p2p_rd *r, uint64_t len, const uint8_t **data)
{
    if (r->bad || len > p2p_rd_left(r)) return P2P_ERR_INVALID;
    *data = p2p_rd_bytes(r, (size_t)len);
    return 1;
}

int p2p_frame_next(p2p_rd *r, p2p_frame *f)
{
    if (p2p_rd_left(r) == 0) return 0;
    f->type = p2p_rd_u8(r);
    f->lane = 0;
    switch (f->type) {
    case P2P_FRAME_PADDING:
        while (r->p < r->end)
            if (*r->p++ != 0) return P2P_ERR_INVALID;
        return 1;
    case P2P_FRAME_PING: return 1;
    case P2P_FRAME_ACK: return frame_ack(r, f);
    case P2P_FRAME_STREAM:
        f->u.stream.offset = p2p_rd_varint(r);
        f->u.stream.len = p2p_rd_varint(r);
        if (f->u.stream.offset + f->u.stream.len > P2P_VARINT_MAX) return P2P_ERR_INVALID;
        return frame_body(r, f->u.stream.len, &f->u.stream.data);
    case P2P_FRAME_MAX_STREAM:
        f->u.max_stream = p2p_rd_varint(r);
        return r->bad ? P2P_ERR_INVALID : 1;
    case P2P_FRAME_DATAGRAM:
        f->u.datagram.type = p2p_rd_u16(r);
        f->u.datagram.len = p2p_rd_varint(r);
        return frame_body(r, f->u.datagram.len, &f->u.datagram.data);
    case P2P_FRAME_CLOSE: f->u.close_reason = p2p_rd_u8(r); return r->bad ? P2P_ERR_INVALID : 1;
    case P2P_FRAME_RELAY:
    case P2P_FRAME_RELAYED:
        f->u.relay.channel = p2p_rd_u32(r);
        f->u.relay.len = p2p_rd_varint(r);
        if (f->u.relay.len == 0) return P2P_ERR_INVALID;
        return frame_body(r, f->u.relay.len, &f->u.relay.data);
    case P2P_FRAME_PATH_CHALLENGE:
    case P2P_FRAME_PATH_RESPONSE:
        f->u.path_data = p2p_rd_u64(r);
        return r->bad ? P2P_ERR_INVALID : 1;
    /* lanes: lane 0 has its own STREAM and MAX_STREAM frames, and no lane past the control
     * lane carries datagrams: another encoding of them is malformed */
    case P2P_FRAME_STREAM_LANE:
        f->lane = p2p_rd_u8(r);
        f->u.stream.offset = p2p_rd_varint(r);
        f->u.stream.len = p2p_rd_varint(r);
        if (r->bad || f->lane == 0) return P2P_ERR_INVALID;
        if (f->u.stream.offset + f->u.stream.len > P2P_VARINT_MAX) return P2P_ERR_INVALID;
        return frame_body(r, f->u.stream.len, &f->u.stream.data);
    case P2P_FRAME_MAX_STREAM_LANE:
        f->lane = p2p_rd_u8(r);
        f->u.max_stream = p2p_rd_varint(r);
        return r->bad || f->lane == 0 ? P2P_ERR_INVALID : 1;
    case P2P_FRAME_DATAGRAM_SEQ:
        f->lane = p2p_rd_u8(r);
        f->u.datagram.seq = p2p_rd_varint(r);
        f->u.datagram.type = p2p_rd_u16(r);
        f->u.datagram.len = p2p_rd_varint(r);
        if (r->bad || f->lane > P2P_LANE_MAX) return P2P_ERR_INVALID;
        return frame_body(r, f->u.datagram.len, &f->u.datagram.data);
    default: return P2P_ERR_INVALID;
    }
}

int p2p_frame_put_ack(p2p_wr *w, uint64_t delay_us, const p2p_ack_range *rg, size_t count)
{
    if (count == 0 || count > P2P_ACK_MAX_RANGES) return P2P_ERR_INVALID;
    p2p_wr_u8(w, P2P_FRAME_ACK);
    p2p_wr_varint(w, rg[0].hi);
    p2p_wr_varint(w, delay_us);
    p2p_wr_varint(w, count - 1);
    p2p_wr_varint(w, rg[0].hi - rg[0].lo);
    for (size_t i = 1; i < count; i++) {
        p2p_wr_varint(w, rg[i - 1].lo - rg[i].hi - 2);
        p2p_wr_varint(w, rg[i].hi - rg[i].lo);
    }
    return w->bad ? P2P_ERR_BUFFER : 0;
}

size_t p2p_frame_stream_header_len(uint64_t offset, uint64_t len)
{
    return 1 + p2p_varint_len(offset) + p2p_varint_len(len);
}

int p2p_frame_put_stream_header(p2p_wr *w, uint64_t offset, uint64_t len)
{
    p2p_wr_u8(w, P2P_FRAME_STREAM);
    p2p_wr_varint(w, offset);
    p2p_wr_varint(w, len);
    return w->bad ? P2P_ERR_BUFFER : 0;
}

size_t p2p_frame_lane_header_len(uint8_t lane, uint64_t offset, uint64_t len)
{
    return (lane ? 2 : 1) + p2p_varint_len(offset) + p2p_varint_len(len);
}

int p2p_frame_put_lane_header(p2p_wr *w, uint8_t lane, uint64_t offset, uint64_t len)
{
    if (!lane) return p2p_frame_put_stream_header(w, offset, len);
    p2p_wr_u8(w, P2P_FRAME_STREAM_LANE);
    p2p_wr_u8(w, lane);
    p2p_wr_varint(w, offset);
    p2p_wr_varint(w, len);
    return w->bad ? P2P_ERR_BUFFER : 0;
}

int p2p_frame_put_max_stream(p2p_wr *w, uint8_t lane, uint64_t max)
{
    if (lane) {
        p2p_wr_u8(w, P2P_FRAME_MAX_STREAM_LANE);
        p2p_wr_u8(w, lane);
    } else {
        p2p_wr_u8(w, P2P_FRAME_MAX_STREAM);
    }
    p2p_wr_varint(w, max);
    return w->bad ? P2P_ERR_BUFFER : 0;
}

int p2p_frame_put_datagram_seq(p2p_wr *w, uint8_t lane, uint64_t seq, uint16_t type,
                               const uint8_t *data, size_t len)
{
    p2p_wr_u8(w, P2P_FRAME_DATAGRAM_SEQ);
    p2p_wr_u8(w, lane);
    p2p_wr_varint(w, seq);
    p2p_wr_u16(w, type);
    p2p_wr_varint(w, len);
    p2p_wr_bytes(w, data, len);
    return w->bad ? P2P_ERR_BUFFER : 0;
}

int p2p_record_parse(const uint8_t *p, size_t avail, p2p_record *rec)
{
    p2p_rd r;
    p2p_rd_init(&r, p, avail);
    memset(rec, 0, sizeof *rec);
    rec->kind = p2p_rd_u8(&r);
    if (r.bad) return 0;
    switch (rec->kind) {
    case P2P_REC_MESSAGE:
    case P2P_REC_MESSAGE_RECEIPT:
        rec->type = p2p_rd_u16(&r);
        rec->len = p2p_rd_varint(&r);
        break;
    case P2P_REC_REPLY_LANE:
        rec->type = p2p_rd_u8(&r);
        if (!r.bad && (rec->type == 0 || rec->type > P2P_LANE_MAX)) return P2P_ERR_INVALID;
        /* fall through - the rest is a REPLY */
    case P2P_REC_REPLY:
        rec->ref = p2p_rd_varint(&r);
        rec->status = p2p_rd_u8(&r);
        rec->len = p2p_rd_varint(&r);
        if (!r.bad && rec->status > P2P_REPLY_ERROR) return P2P_ERR_INVALID;
        break;
    case P2P_REC_MEMBERS:
    case P2P_REC_BROADCAST:
    case P2P_REC_IHAVE:
    case P2P_REC_IWANT:
    case P2P_REC_SUMMARY:
    case P2P_REC_DIGEST:
    case P2P_REC_INTRO_REQ:
    case P2P_REC_INTRO:
    case P2P_REC_INTRO_FAIL:
    case P2P_REC_TRANSFER:
    case P2P_REC_PUNCH:
    case P2P_REC_ADDRS: rec->len = p2p_rd_varint(&r); break;
    default: return P2P_ERR_INVALID;
    }
    if (r.bad) return 0;
    return (int)(r.p - p);
}

size_t p2p_record_encode(uint8_t *out, const p2p_record *rec)
{
    p2p_wr w;
    p2p_wr_init(&w, out, P2P_RECORD_HEADER_MAX);
    p2p_wr_u8(&w, rec->kind);
    if (rec->kind == P2P_REC_REPLY_LANE) p2p_wr_u8(&w, (uint8_t)rec->type);
    if (rec->kind == P2P_REC_REPLY || rec->kind == P2P_REC_REPLY_LANE) {
        p2p_wr_varint(&w, rec->ref);
        p2p_wr_u8(&w, rec->status);
    } else if (rec->kind <= P2P_REC_MESSAGE_RECEIPT) {
        p2p_wr_u16(&w, rec->type);
    }
    p2p_wr_varint(&w, rec->len);
    return (size_t)(w.p - out);
}

void p2p_wr_addr(p2p_wr *w, const p2p_addr *a)
{
    p2p_wr_u8(w, a->family);
    p2p_wr_bytes(w, a->ip, a->family == P2P_AF_INET4 ? 4 : 16);
    p2p_wr_u16(w, a->port);
}

int p2p_rd_addr(p2p_rd *r, p2p_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = p2p_rd_u8(r);
    size_t n = a->family == P2P_AF_INET4 ? 4 : a->family == P2P_AF_INET6 ? 16 : 0;
    if (!n) return -1;
    const uint8_t *ip = p2p_rd_bytes(r, n);
    a->port = p2p_rd_u16(r);
    if (r->bad || !a->port) return -1;
    memcpy(a->ip, ip, n);
    return 0;
}

void p2p_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void p2p_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint16_t p2p_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t p2p_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
