/*
 * p2p_wire.h - bounds-checked cursors and the encoding of everything inside a DATA packet:
 * varints, frames and stream records (docs/PROTOCOL.md sections 2.2 to 4). One function per
 * thing decodes and validates it; the rest of the core only sees validated values.
 */
#ifndef P2P_WIRE_H
#define P2P_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Packet types (first byte of a datagram). */
enum {
    P2P_PKT_INIT = 0x01,
    P2P_PKT_RESP = 0x02,
    P2P_PKT_FIN = 0x03,
    P2P_PKT_DATA = 0x04,
    P2P_PKT_COOKIE = 0x05 /* hardening (handshake): the reply to INIT under load */
};
#define P2P_PROTOCOL_VERSION 1
/* hardening (handshake): 160 with mac2, so that RESP (at most 272 bytes) stays under 2x */
#define P2P_INIT_LEN 160
#define P2P_DATA_HEADER 16

/* Frame types. */
enum {
    P2P_FRAME_PADDING = 0x00,
    P2P_FRAME_PING = 0x01,
    P2P_FRAME_ACK = 0x02,
    P2P_FRAME_STREAM = 0x03,
    P2P_FRAME_MAX_STREAM = 0x04,
    P2P_FRAME_DATAGRAM = 0x05,
    P2P_FRAME_CLOSE = 0x06,
    /* NAT traversal (docs/PROTOCOL.md section 8): none of them is ack-eliciting */
    P2P_FRAME_RELAY = 0x07,
    P2P_FRAME_PATH_CHALLENGE = 0x08,
    P2P_FRAME_PATH_RESPONSE = 0x09,
    P2P_FRAME_RELAYED = 0x0a,
    /* lanes (docs/PROTOCOL.md sections 3 and 4.4): STREAM, MAX_STREAM and a sequenced
     * DATAGRAM with a lane number. Lane 0 keeps 0x03 and 0x04; these never name it (0x12
     * may: plain DATAGRAM frames have no sequence number). All three are ack-eliciting. */
    P2P_FRAME_STREAM_LANE = 0x10,
    P2P_FRAME_MAX_STREAM_LANE = 0x11,
    P2P_FRAME_DATAGRAM_SEQ = 0x12
};
/* CLOSE reasons on the wire. */
enum {
    P2P_CLOSE_CLOSED = 0,
    P2P_CLOSE_DENIED = 1,
    P2P_CLOSE_PROTOCOL = 2,
    P2P_CLOSE_DUPLICATE = 3
};
/* Stream record kinds. */
enum {
    P2P_REC_MESSAGE = 0x01,
    P2P_REC_MESSAGE_RECEIPT = 0x02,
    P2P_REC_REPLY = 0x03,
    /* mesh records: u8 kind, varint length, body (docs/PROTOCOL.md section 7) */
    P2P_REC_MEMBERS = 0x04,
    P2P_REC_BROADCAST = 0x05,
    P2P_REC_IHAVE = 0x06,
    P2P_REC_IWANT = 0x07,
    P2P_REC_SUMMARY = 0x08,
    P2P_REC_DIGEST = 0x09,
    /* introductions (docs/PROTOCOL.md section 8.2): same layout as mesh records */
    P2P_REC_INTRO_REQ = 0x0a,
    P2P_REC_INTRO = 0x0b,
    P2P_REC_INTRO_FAIL = 0x0c,
    /* streaming transfers (docs/PROTOCOL.md section 4.2): same layout, body = u8 op, fields */
    P2P_REC_TRANSFER = 0x0d,
    /* issue 12: birthday punching (docs/PROTOCOL.md section 8.3): same layout, body = u8 op */
    P2P_REC_PUNCH = 0x0e,
    /* issue 12: the sender's advertised addresses changed (docs/PROTOCOL.md section 8.7):
     * u8 n (at most 8), n addresses */
    P2P_REC_ADDRS = 0x0f,
    /* lanes: a REPLY to a message of lane 1 to 254: u8 lane, then as REPLY */
    P2P_REC_REPLY_LANE = 0x10
};

#define P2P_VARINT_MAX ((UINT64_C(1) << 62) - 1)
#define P2P_ACK_MAX_RANGES 64

/* A read cursor. Any read past the end sets `bad` and returns zeros; check `bad` once at the
 * end of a message instead of after every field. */
typedef struct p2p_rd {
    const uint8_t *p, *end;
    int bad;
} p2p_rd;

typedef struct p2p_wr {
    uint8_t *p, *end;
    int bad;
} p2p_wr;

static inline void p2p_rd_init(p2p_rd *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->end = p + n;
    r->bad = 0;
}
static inline size_t p2p_rd_left(const p2p_rd *r)
{
    return (size_t)(r->end - r->p);
}
static inline void p2p_wr_init(p2p_wr *w, uint8_t *p, size_t n)
{
    w->p = p;
    w->end = p + n;
    w->bad = 0;
}
static inline size_t p2p_wr_left(const p2p_wr *w)
{
    return (size_t)(w->end - w->p);
}

uint8_t p2p_rd_u8(p2p_rd *r);
uint16_t p2p_rd_u16(p2p_rd *r);
uint32_t p2p_rd_u32(p2p_rd *r);
uint64_t p2p_rd_u64(p2p_rd *r);
uint64_t p2p_rd_varint(p2p_rd *r);
/* A borrowed pointer to the next n bytes (NULL and `bad` when fewer are left). */
const uint8_t *p2p_rd_bytes(p2p_rd *r, size_t n);

void p2p_wr_u8(p2p_wr *w, uint8_t v);
void p2p_wr_u16(p2p_wr *w, uint16_t v);
void p2p_wr_u32(p2p_wr *w, uint32_t v);
void p2p_wr_u64(p2p_wr *w, uint64_t v);
void p2p_wr_varint(p2p_wr *w, uint64_t v); /* v <= P2P_VARINT_MAX */
void p2p_wr_bytes(p2p_wr *w, const void *src, size_t n);
/* Encoded size of a varint. */
size_t p2p_varint_len(uint64_t v);

/* An address as u8 family (4 or 6), the IP bytes, u16 port; reading fails (-1) on another
 * family or port 0. Its size on the wire: */
#define P2P_ADDR4_WIRE_LEN 7  /* family, 4 IP bytes, port */
#define P2P_ADDR6_WIRE_LEN 19 /* family, 16 IP bytes, port */
struct p2p_addr;
void p2p_wr_addr(p2p_wr *w, const struct p2p_addr *a);
int p2p_rd_addr(p2p_rd *r, struct p2p_addr *a);

/* Little-endian stores/loads for fixed headers built in place. */
void p2p_put_u32(uint8_t *p, uint32_t v);
void p2p_put_u64(uint8_t *p, uint64_t v);
uint32_t p2p_get_u32(const uint8_t *p);
/* Big-endian (network order), as STUN, PCP and NAT-PMP write their fields. */
void p2p_put_be16(uint8_t *p, uint16_t v);
void p2p_put_be32(uint8_t *p, uint32_t v);
uint16_t p2p_get_be16(const uint8_t *p);
uint32_t p2p_get_be32(const uint8_t *p);
uint64_t p2p_get_u64(const uint8_t *p);

/* One decoded frame. Pointers borrow from the packet buffer. */
typedef struct p2p_ack_range {
    uint64_t lo, hi;
} p2p_ack_range; /* inclusive */

typedef struct p2p_frame {
    uint8_t type;
    uint8_t lane; /* STREAM_LANE, MAX_STREAM_LANE, DATAGRAM_SEQ; 0 for every other frame */
    union {
        struct {
            uint64_t delay_us;
            size_t count;
            p2p_ack_range r[P2P_ACK_MAX_RANGES];
        } ack;
        struct {
            uint64_t offset;
            uint64_t len;
            const uint8_t *data;
        } stream;
        uint64_t max_stream;
        struct {
            uint16_t type;
            uint64_t len;
            const uint8_t *data;
            uint64_t seq; /* DATAGRAM_SEQ */
        } datagram;
        uint8_t close_reason;
        struct {
            uint32_t channel;
            uint64_t len;
            const uint8_t *data;
        } relay;
        uint64_t path_data; /* PATH_CHALLENGE, PATH_RESPONSE */
    } u;
} p2p_frame;

/* Decodes the next frame. Returns 1 with *f filled, 0 at the end of the packet, or
 * P2P_ERR_INVALID for a malformed frame (the whole packet must then be dropped).
 * Ack ranges come out highest first, validated (no underflow, at most 64). */
int p2p_frame_next(p2p_rd *r, p2p_frame *f);

/* Encoders. Each returns 0, or P2P_ERR_BUFFER (leaving w->bad set) when it does not fit. */
int p2p_frame_put_ack(p2p_wr *w, uint64_t delay_us, const p2p_ack_range *r, size_t count);
int p2p_frame_put_stream_header(p2p_wr *w, uint64_t offset, uint64_t len);
size_t p2p_frame_stream_header_len(uint64_t offset, uint64_t len);
/* lanes: the header of a STREAM frame of any lane (STREAM for lane 0, else STREAM_LANE),
 * and its length */
int p2p_frame_put_lane_header(p2p_wr *w, uint8_t lane, uint64_t offset, uint64_t len);
size_t p2p_frame_lane_header_len(uint8_t lane, uint64_t offset, uint64_t len);
/* lanes: a MAX_STREAM frame of any lane (MAX_STREAM for lane 0, else MAX_STREAM_LANE) */
int p2p_frame_put_max_stream(p2p_wr *w, uint8_t lane, uint64_t max);
/* lanes: a DATAGRAM_SEQ frame; its overhead beyond the payload is at most this */
int p2p_frame_put_datagram_seq(p2p_wr *w, uint8_t lane, uint64_t seq, uint16_t type,
                               const uint8_t *data, size_t len);
#define P2P_DATAGRAM_SEQ_OVERHEAD (1 + 1 + 8 + 2 + 2)

/* A stream record header (docs/PROTOCOL.md section 4). */
typedef struct p2p_record {
    uint8_t kind;
    uint16_t type;  /* MESSAGE kinds; REPLY_LANE: the lane of the message answered (1 to 254) */
    uint64_t ref;   /* REPLY: record ordinal answered */
    uint8_t status; /* REPLY */
    uint64_t len;   /* body length */
} p2p_record;

/* Decodes a record header from the first avail bytes. Returns the header length (> 0),
 * 0 when more bytes are needed, or P2P_ERR_INVALID for an unknown kind or bad status. */
int p2p_record_parse(const uint8_t *p, size_t avail, p2p_record *rec);
/* Encodes a record header into out (at least 24 bytes); returns its length. */
size_t p2p_record_encode(uint8_t *out, const p2p_record *rec);
#define P2P_RECORD_HEADER_MAX 24

#endif
