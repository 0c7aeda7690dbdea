/*
 * p2p_transfer.c - streaming transfers (docs/PROTOCOL.md section 4.2).
 *
 * A transfer is a handful of numbers and a running hash: the bytes themselves are never held
 * here. The sender's bytes go straight into the stream of the transfer's lane
 * (p2p_peer_append_lane), which holds them until the peer acknowledges them; a write is
 * refused while that stream holds P2P_TRANSFER_WINDOW unacknowledged bytes, so the sender's
 * memory is bounded by the window whatever the size. The receiver's bytes come as DATA events, one per record.
 *
 * Every open transfer, in both directions, is in one array of the host (h->xfers). They are
 * few (P2P_TRANSFER_PER_PEER each way per session), so lookups are linear scans.
 */
#include "p2p_transfer.h"

#include "p2p_peer.h"

#include <stdlib.h>
#include <string.h>

/* Where a transfer stands. */
enum {
    X_OFFERED = 1, /* OPEN sent or received: the receiver has not answered */
    X_RUNNING,     /* accepted: DATA flows */
    X_FINISHED     /* sender: END sent, waiting for the receiver's DONE or STOP */
};

/* Largest body of a record this module writes: op, id, offset, a chunk. */
#define XFER_BODY_MAX (1 + 8 + 8 + P2P_TRANSFER_CHUNK)
/* A DATA record's bytes besides the chunk, at most: the record header and op, id, offset. */
#define XFER_DATA_OVERHEAD (1 + 8 + XFER_BODY_MAX - P2P_TRANSFER_CHUNK)
/* A WANT is given when the unacknowledged bytes fall to this: writes then refill half the
 * window at a time, rather than one event per acknowledgement. */
#define XFER_WANT_AT (P2P_TRANSFER_WINDOW / 2)

typedef struct p2p_xfer {
    uint32_t handle; /* the application's name for it; outgoing: also its id on the wire */
    p2p_peer_handle peer;
    uint64_t wire_id; /* the sender's id */
    uint8_t outgoing;
    uint8_t state;   /* X_* */
    uint8_t blocked; /* outgoing: a write found no room; WANT when it has */
    int lane;
    uint64_t total;    /* P2P_TRANSFER_UNKNOWN until END says */
    uint64_t start;    /* the accepted offset */
    uint64_t next;     /* the next offset to write or expect */
    uint64_t absorbed; /* bytes of the prefix [0, start) fed to the hash */
    p2p_hash_stream hash;
} p2p_xfer;

struct p2p_xfers {
    p2p_xfer **v;
    size_t n, cap;
    uint32_t next_handle; /* handles, and the ids of outgoing transfers, only grow */
    size_t blocked;       /* outgoing transfers waiting for room */
    uint8_t *scratch;     /* XFER_BODY_MAX bytes: a record's body is built here */
};

/* The host's table, made at first use. NULL when there is no memory. */
static struct p2p_xfers *table(p2p_host *h)
{
    if (!h->xfers) {
        struct p2p_xfers *t = calloc(1, sizeof *t);
        if (!t) return NULL;
        t->scratch = malloc(XFER_BODY_MAX);
        if (!t->scratch) {
            free(t);
            return NULL;
        }
        t->next_handle = 1;
        h->xfers = t;
    }
    return h->xfers;
}

static p2p_xfer *by_handle(const p2p_host *h, uint32_t handle)
{
    const struct p2p_xfers *t = h->xfers;
    for (size_t i = 0; t && i < t->n; i++)
        if (t->v[i]->handle == handle) return t->v[i];
    return NULL;
}

static p2p_xfer *by_wire(const p2p_host *h, const p2p_peer *p, uint64_t id, int outgoing)
{
    const struct p2p_xfers *t = h->xfers;
    for (size_t i = 0; t && i < t->n; i++) {
        p2p_xfer *x = t->v[i];
        if (x->peer == p->handle && x->wire_id == id && x->outgoing == outgoing) return x;
    }
    return NULL;
}

static p2p_peer *live_peer(p2p_host *h, const p2p_xfer *x)
{
    p2p_peer *p = p2p_lookup(h, x->peer);
    return p && p->state == P2P_S_CONNECTED ? p : NULL;
}

/* A new transfer of session p in the table, charged to p's budget; NULL when over the budget
 * or out of memory (*rc says which). */
static p2p_xfer *xfer_new(p2p_host *h, p2p_peer *p, int outgoing, int *rc)
{
    struct p2p_xfers *t = table(h);
    if (!t) {
        *rc = P2P_ERR_NOMEM;
        return NULL;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        p2p_xfer **v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            *rc = P2P_ERR_NOMEM;
            return NULL;
        }
        t->v = v;
        t->cap = cap;
    }
    p2p_xfer *x = p2p_mem_alloc(h, p, sizeof *x, rc);
    if (!x) return NULL;
    memset(x, 0, sizeof *x);
    /* Outgoing ids must only grow on a session: after 2^32 transfers on one host (never, in
     * practice) they would start again at 1 and the peer would end the session. */
    x->handle = t->next_handle++;
    if (!t->next_handle) t->next_handle = 1; /* 0 is never a handle */
    x->peer = p->handle;
    x->outgoing = (uint8_t)outgoing;
    x->total = P2P_TRANSFER_UNKNOWN;
    p2p_hash_stream_init(&x->hash, P2P_TRANSFER_HASH_LEN);
    t->v[t->n++] = x;
    if (outgoing)
        p->xfer_out++;
    else
        p->xfer_in++;
    return x;
}

/* Takes x out of the table and frees it (p: its session, which it was charged to). */
static void xfer_free(p2p_host *h, p2p_peer *p, p2p_xfer *x)
{
    struct p2p_xfers *t = h->xfers;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i] != x) continue;
        t->v[i] = t->v[--t->n];
        break;
    }
    if (x->blocked) t->blocked--;
    if (x->outgoing)
        p->xfer_out--;
    else
        p->xfer_in--;
    p2p_wipe(x, sizeof *x);
    free(x);
    p2p_mem_give(h, p, sizeof *x);
}

/* Queues an event about x (data: len bytes, copied). */
static int push(p2p_host *h, const p2p_peer *p, const p2p_xfer *x, int type, uint64_t offset,
                int status, const uint8_t *data, size_t len)
{
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    p2p_fill_event(p, &ev);
    /* A session that ended has reported its LEAVE already: its handle is dead. */
    if (status == P2P_TRANSFER_LOST) ev.peer = 0;
    ev.type = (p2p_event_type)type;
    ev.transfer = x->handle;
    ev.offset = offset;
    ev.total = x->total;
    ev.status = status;
    return p2p_event_push(h, &ev, data, len);
}

/* Ends x with an END event (status, reason text) and frees it. */
static void finish_with(p2p_host *h, p2p_peer *p, p2p_xfer *x, int status, const uint8_t *reason,
                        size_t rlen)
{
    push(h, p, x, P2P_EV_TRANSFER_END, x->next, status, reason, rlen);
    xfer_free(h, p, x);
}

/* Appends a TRANSFER record to p's stream: op and id, then tlen bytes of fields (tail), built
 * in the scratch buffer. */
static int send_record(p2p_host *h, p2p_peer *p, int lane, uint8_t op, uint64_t id,
                       const uint8_t *tail, size_t tlen)
{
    uint8_t *b = h->xfers->scratch;
    p2p_wr w;
    p2p_wr_init(&w, b, XFER_BODY_MAX);
    p2p_wr_u8(&w, op);
    p2p_wr_varint(&w, id);
    p2p_wr_bytes(&w, tail, tlen);
    if (w.bad) return P2P_ERR_INVALID;
    return p2p_peer_append_lane(h, p, (uint8_t)lane, P2P_REC_TRANSFER, b, (size_t)(w.p - b));
}

/* STOP (receiver) or CANCEL (sender) with a reason; a send refused by the budget is not
 * retried: the peer's side ends with the session at worst. */
static void send_stop(p2p_host *h, p2p_peer *p, int lane, int outgoing, uint64_t id, int code,
                      const char *reason)
{
    uint8_t tail[1 + P2P_TRANSFER_REASON_MAX];
    size_t rl = reason ? strlen(reason) : 0, n = 0;
    if (rl > P2P_TRANSFER_REASON_MAX) rl = P2P_TRANSFER_REASON_MAX;
    if (!outgoing) tail[n++] = (uint8_t)code;
    if (rl) memcpy(tail + n, reason, rl);
    n += rl;
    (void)send_record(h, p, lane, outgoing ? P2P_XOP_CANCEL : P2P_XOP_STOP, id, tail, n);
}

const char *p2p_transfer_status_name(int status)
{
    switch (status) {
    case P2P_TRANSFER_DONE: return "done";
    case P2P_TRANSFER_CANCELLED: return "cancelled";
    case P2P_TRANSFER_PEER_CANCEL: return "peer cancelled";
    case P2P_TRANSFER_INTEGRITY: return "integrity";
    case P2P_TRANSFER_LOST: return "lost";
    default: return "unknown";
    }
}

/* ---- API -------------------------------------------------------------------------------- */

int p2p_transfer_open(p2p_host *h, p2p_peer_handle peer, int lane, uint64_t total,
                      const uint8_t *meta, size_t len, uint32_t *out)
{
    p2p_peer *p = p2p_lookup(h, peer);
    if (!p || p->state != P2P_S_CONNECTED || h->closed) return P2P_ERR_PEER;
    if (lane < 0 || lane > P2P_LANE_MAX || len > P2P_TRANSFER_META_MAX || (len && !meta))
        return P2P_ERR_INVALID;
    if (total != P2P_TRANSFER_UNKNOWN && total > P2P_VARINT_MAX) return P2P_ERR_INVALID;
    if (p->xfer_out >= P2P_TRANSFER_PER_PEER) return P2P_ERR_LIMIT;
    int rc;
    p2p_xfer *x = xfer_new(h, p, 1, &rc);
    if (!x) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    x->wire_id = x->handle;
    x->lane = lane;
    x->total = total;
    x->state = X_OFFERED;
    uint8_t tail[1 + 8 + 8 + P2P_TRANSFER_META_MAX];
    p2p_wr w;
    p2p_wr_init(&w, tail, sizeof tail);
    p2p_wr_u8(&w, total != P2P_TRANSFER_UNKNOWN ? P2P_XOPEN_SIZED : 0);
    if (total != P2P_TRANSFER_UNKNOWN) p2p_wr_varint(&w, total);
    p2p_wr_varint(&w, len);
    p2p_wr_bytes(&w, meta, len);
    rc = send_record(h, p, x->lane, P2P_XOP_OPEN, x->wire_id, tail, (size_t)(w.p - tail));
    if (rc) {
        xfer_free(h, p, x);
        return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    }
    *out = x->handle;
    return 0;
}

/* Marks x as waiting for room (once). */
static void block(p2p_host *h, p2p_xfer *x)
{
    if (x->blocked) return;
    x->blocked = 1;
    h->xfers->blocked++;
}

int p2p_transfer_write(p2p_host *h, uint32_t t, const uint8_t *data, size_t len)
{
    p2p_xfer *x = by_handle(h, t);
    if (!x || !x->outgoing) return P2P_ERR_PEER;
    p2p_peer *p = live_peer(h, x);
    if (!p) return P2P_ERR_PEER;
    if (x->state != X_RUNNING || x->absorbed != x->start) return P2P_ERR_INVALID;
    if (!len || len > P2P_TRANSFER_CHUNK || !data) return P2P_ERR_INVALID;
    if (x->total != P2P_TRANSFER_UNKNOWN && len > x->total - x->next) return P2P_ERR_TOO_BIG;
    if (x->next + len > P2P_VARINT_MAX) return P2P_ERR_TOO_BIG;
    /* Never past the window: the stream's send ring then stays at the window's size. */
    if (p2p_peer_unacked(p, x->lane) + len + XFER_DATA_OVERHEAD > P2P_TRANSFER_WINDOW) {
        block(h, x);
        return P2P_ERR_FULL;
    }
    /* Built here rather than by send_record: the chunk goes into the scratch buffer once. */
    uint8_t off[8];
    p2p_wr w;
    p2p_wr_init(&w, off, sizeof off);
    p2p_wr_varint(&w, x->next);
    size_t ol = (size_t)(w.p - off);
    uint8_t *b = h->xfers->scratch;
    p2p_wr_init(&w, b, XFER_BODY_MAX);
    p2p_wr_u8(&w, P2P_XOP_DATA);
    p2p_wr_varint(&w, x->wire_id);
    p2p_wr_bytes(&w, off, ol);
    p2p_wr_bytes(&w, data, len);
    int rc = w.bad ? P2P_ERR_INVALID
                   : p2p_peer_append_lane(h, p, (uint8_t)x->lane, P2P_REC_TRANSFER, b,
                                          (size_t)(w.p - b));
    if (rc) {
        /* The peer's memory budget is full: the same as no room, until acknowledgements. */
        if (rc == P2P_ERR_LIMIT) {
            block(h, x);
            return P2P_ERR_FULL;
        }
        return rc;
    }
    p2p_hash_stream_update(&x->hash, data, len);
    x->next += len;
    return 0;
}

int p2p_transfer_absorb(p2p_host *h, uint32_t t, const uint8_t *data, size_t len)
{
    p2p_xfer *x = by_handle(h, t);
    if (!x) return P2P_ERR_PEER;
    if (len && !data) return P2P_ERR_INVALID;
    uint64_t limit;
    if (x->outgoing)
        limit = x->state == X_RUNNING ? x->start : 0; /* the prefix the receiver has */
    else
        limit = x->state == X_OFFERED ? x->total : 0; /* before accepting */
    if (x->absorbed > limit || len > limit - x->absorbed) return P2P_ERR_INVALID;
    p2p_hash_stream_update(&x->hash, data, len);
    x->absorbed += len;
    return 0;
}

int p2p_transfer_finish(p2p_host *h, uint32_t t)
{
    p2p_xfer *x = by_handle(h, t);
    if (!x || !x->outgoing) return P2P_ERR_PEER;
    p2p_peer *p = live_peer(h, x);
    if (!p) return P2P_ERR_PEER;
    if (x->state != X_RUNNING || x->absorbed != x->start) return P2P_ERR_INVALID;
    if (x->total != P2P_TRANSFER_UNKNOWN && x->next != x->total) return P2P_ERR_INVALID;
    /* The hash is final only once END is queued: finish a copy. */
    p2p_hash_stream copy = x->hash;
    uint8_t tail[8 + P2P_TRANSFER_HASH_LEN];
    p2p_wr w;
    p2p_wr_init(&w, tail, sizeof tail);
    p2p_wr_varint(&w, x->next);
    p2p_hash_stream_final(&copy, w.p, P2P_TRANSFER_HASH_LEN);
    w.p += P2P_TRANSFER_HASH_LEN;
    int rc = send_record(h, p, x->lane, P2P_XOP_END, x->wire_id, tail, (size_t)(w.p - tail));
    if (rc) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    x->total = x->next;
    x->state = X_FINISHED;
    if (x->blocked) {
        x->blocked = 0;
        h->xfers->blocked--;
    }
    return 0;
}

int p2p_transfer_accept(p2p_host *h, uint32_t t, uint64_t offset)
{
    p2p_xfer *x = by_handle(h, t);
    if (!x || x->outgoing) return P2P_ERR_PEER;
    p2p_peer *p = live_peer(h, x);
    if (!p) return P2P_ERR_PEER;
    if (x->state != X_OFFERED || offset != x->absorbed) return P2P_ERR_INVALID;
    uint8_t tail[8];
    p2p_wr w;
    p2p_wr_init(&w, tail, sizeof tail);
    p2p_wr_varint(&w, offset);
    int rc = send_record(h, p, x->lane, P2P_XOP_ACCEPT, x->wire_id, tail, (size_t)(w.p - tail));
    if (rc) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    x->state = X_RUNNING;
    x->start = x->next = offset;
    return 0;
}

int p2p_transfer_cancel(p2p_host *h, uint32_t t, const char *reason)
{
    p2p_xfer *x = by_handle(h, t);
    if (!x) return P2P_ERR_PEER;
    p2p_peer *p = p2p_lookup(h, x->peer);
    if (!p) return P2P_ERR_PEER; /* its session is ending: LOST comes with it */
    if (p->state == P2P_S_CONNECTED) send_stop(h, p, x->lane, x->outgoing, x->wire_id, 0, reason);
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > P2P_TRANSFER_REASON_MAX) rl = P2P_TRANSFER_REASON_MAX;
    finish_with(h, p, x, P2P_TRANSFER_CANCELLED, (const uint8_t *)reason, rl);
    return 0;
}

int p2p_transfer_get_info(const p2p_host *h, uint32_t t, p2p_transfer_info *info)
{
    memset(info, 0, sizeof *info);
    const p2p_xfer *x = by_handle(h, t);
    if (!x) return P2P_ERR_PEER;
    info->peer = x->peer;
    info->outgoing = x->outgoing;
    info->lane = x->lane;
    info->total = x->total;
    info->offset = x->next;
    info->start = x->start;
    return 0;
}

/* ---- records from the network ------------------------------------------------------------ */

/* The reason text of CANCEL or STOP: the rest of the body, bounded. NULL when too long. */
static const uint8_t *reason_of(p2p_rd *r, size_t *len)
{
    *len = p2p_rd_left(r);
    if (*len > P2P_TRANSFER_REASON_MAX) return NULL;
    return p2p_rd_bytes(r, *len);
}

/* An OPEN: a new incoming transfer, offered to the application. */
static int on_open(p2p_host *h, p2p_peer *p, int lane, uint64_t id, p2p_rd *r)
{
    uint8_t flags = p2p_rd_u8(r);
    uint64_t total = flags & P2P_XOPEN_SIZED ? p2p_rd_varint(r) : P2P_TRANSFER_UNKNOWN;
    uint64_t mlen = p2p_rd_varint(r);
    if (r->bad || (flags & ~P2P_XOPEN_SIZED) || mlen > P2P_TRANSFER_META_MAX) return -1;
    const uint8_t *meta = p2p_rd_bytes(r, (size_t)mlen);
    if (r->bad || p2p_rd_left(r)) return -1;
    /* Ids only grow: a repeated one is a replay of a transfer that ended, or a second one. */
    if (id <= p->xfer_max_in) return -1;
    p->xfer_max_in = id;
    if (!table(h)) return -1;
    int rc = P2P_ERR_LIMIT;
    p2p_xfer *x = NULL;
    if (p->xfer_in < P2P_TRANSFER_PER_PEER && p2p_event_room(h, p, (size_t)mlen, 0))
        x = xfer_new(h, p, 0, &rc);
    if (!x) {
        /* Unwelcome, not wrong: refused, and the peer may try again later. */
        h->stats.transfers_refused++;
        send_stop(h, p, lane, 0, id, P2P_XSTOP_CANCEL,
                  rc == P2P_ERR_LIMIT ? "busy: too many transfers" : "out of memory");
        return 0;
    }
    x->wire_id = id;
    x->lane = lane; /* the receiver answers on the lane the transfer runs on */
    x->total = total;
    x->state = X_OFFERED;
    if (push(h, p, x, P2P_EV_TRANSFER_OFFER, 0, 0, meta, (size_t)mlen)) {
        send_stop(h, p, lane, 0, id, P2P_XSTOP_CANCEL, "out of memory");
        xfer_free(h, p, x);
    }
    return 0;
}

/* A record about an incoming transfer (DATA, END, CANCEL). */
static int on_incoming(p2p_host *h, p2p_peer *p, int lane, uint8_t op, uint64_t id, p2p_rd *r)
{
    p2p_xfer *x = by_wire(h, p, id, 0);
    if (!x) {
        /* One we ended (cancelled or refused) may still have records in flight: they are
         * dropped. An id never opened is an error. */
        return id <= p->xfer_max_in ? 0 : -1;
    }
    /* A transfer's records are one lane's stream, in order: another lane is an error. */
    if (lane != x->lane) return -1;
    if (op == P2P_XOP_CANCEL) {
        size_t rl;
        const uint8_t *reason = reason_of(r, &rl);
        if (r->bad || (rl && !reason)) return -1;
        finish_with(h, p, x, P2P_TRANSFER_PEER_CANCEL, reason, rl);
        return 0;
    }
    /* DATA and END only once accepted. */
    if (x->state != X_RUNNING) return -1;
    if (op == P2P_XOP_DATA) {
        uint64_t off = p2p_rd_varint(r);
        size_t n = p2p_rd_left(r);
        const uint8_t *data = p2p_rd_bytes(r, n);
        if (r->bad || off != x->next || !n || n > P2P_TRANSFER_CHUNK) return -1;
        if (x->total != P2P_TRANSFER_UNKNOWN && n > x->total - x->next) return -1;
        if (!p2p_event_room(h, p, n, 0) || push(h, p, x, P2P_EV_TRANSFER_DATA, off, 0, data, n)) {
            /* The application does not drain its events and the node's budget is spent. */
            static const char full[] = "receiver out of memory";
            send_stop(h, p, x->lane, 0, id, P2P_XSTOP_CANCEL, full);
            finish_with(h, p, x, P2P_TRANSFER_CANCELLED, (const uint8_t *)full, sizeof full - 1);
            return 0;
        }
        p2p_hash_stream_update(&x->hash, data, n);
        x->next += n;
        return 0;
    }
    /* END */
    uint64_t length = p2p_rd_varint(r);
    const uint8_t *sum = p2p_rd_bytes(r, P2P_TRANSFER_HASH_LEN);
    if (r->bad || p2p_rd_left(r) || length != x->next) return -1;
    if (x->total != P2P_TRANSFER_UNKNOWN && x->total != length) return -1;
    uint8_t mine[P2P_TRANSFER_HASH_LEN];
    p2p_hash_stream_final(&x->hash, mine, sizeof mine);
    x->total = length;
    if (memcmp(mine, sum, sizeof mine) == 0) {
        (void)send_record(h, p, x->lane, P2P_XOP_DONE, id, NULL, 0);
        finish_with(h, p, x, P2P_TRANSFER_DONE, NULL, 0);
    } else {
        static const char bad[] = "integrity check failed";
        send_stop(h, p, x->lane, 0, id, P2P_XSTOP_INTEGRITY, bad);
        finish_with(h, p, x, P2P_TRANSFER_INTEGRITY, (const uint8_t *)bad, sizeof bad - 1);
    }
    return 0;
}

/* A record about an outgoing transfer (ACCEPT, STOP, DONE). */
static int on_outgoing(p2p_host *h, p2p_peer *p, int lane, uint8_t op, uint64_t id, p2p_rd *r)
{
    p2p_xfer *x = by_wire(h, p, id, 1);
    if (!x) {
        /* One we cancelled may be answered still; an id we never gave out is an error. */
        const struct p2p_xfers *t = h->xfers;
        return t && id && id < t->next_handle ? 0 : -1;
    }
    if (lane != x->lane) return -1;
    if (op == P2P_XOP_ACCEPT) {
        uint64_t off = p2p_rd_varint(r);
        if (r->bad || p2p_rd_left(r) || x->state != X_OFFERED) return -1;
        if (x->total != P2P_TRANSFER_UNKNOWN && off > x->total) return -1;
        x->state = X_RUNNING;
        x->start = x->next = off;
        x->absorbed = 0;
        return push(h, p, x, P2P_EV_TRANSFER_WANT, off, 0, NULL, 0) ? -1 : 0;
    }
    if (op == P2P_XOP_STOP) {
        uint8_t code = p2p_rd_u8(r);
        size_t rl;
        const uint8_t *reason = reason_of(r, &rl);
        if (r->bad || (rl && !reason) || code > P2P_XSTOP_INTEGRITY) return -1;
        finish_with(h, p, x,
                    code == P2P_XSTOP_INTEGRITY ? P2P_TRANSFER_INTEGRITY : P2P_TRANSFER_PEER_CANCEL,
                    reason, rl);
        return 0;
    }
    /* DONE: only for an END we sent */
    if (p2p_rd_left(r) || x->state != X_FINISHED) return -1;
    finish_with(h, p, x, P2P_TRANSFER_DONE, NULL, 0);
    return 0;
}

int p2p_transfer_on_record(p2p_host *h, p2p_peer *p, int lane, const uint8_t *body, size_t len)
{
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    uint8_t op = p2p_rd_u8(&r);
    uint64_t id = p2p_rd_varint(&r);
    if (r.bad || !id) return -1;
    switch (op) {
    case P2P_XOP_OPEN: return on_open(h, p, lane, id, &r);
    case P2P_XOP_DATA:
    case P2P_XOP_END:
    case P2P_XOP_CANCEL: return on_incoming(h, p, lane, op, id, &r);
    case P2P_XOP_ACCEPT:
    case P2P_XOP_STOP:
    case P2P_XOP_DONE: return on_outgoing(h, p, lane, op, id, &r);
    default: return -1;
    }
}

void p2p_transfer_on_end(p2p_host *h, p2p_peer *p)
{
    struct p2p_xfers *t = h->xfers;
    if (!t || !(p->xfer_in | p->xfer_out)) return;
    for (size_t i = t->n; i-- > 0;) {
        if (i >= t->n) continue; /* the array shrank from its end */
        p2p_xfer *x = t->v[i];
        if (x->peer == p->handle) finish_with(h, p, x, P2P_TRANSFER_LOST, NULL, 0);
    }
}

void p2p_transfer_poll(p2p_host *h)
{
    struct p2p_xfers *t = h->xfers;
    if (!t || !t->blocked) return;
    for (size_t i = 0; i < t->n; i++) {
        p2p_xfer *x = t->v[i];
        if (!x->blocked) continue;
        p2p_peer *p = live_peer(h, x);
        if (!p || p2p_peer_unacked(p, x->lane) > XFER_WANT_AT) continue;
        if (push(h, p, x, P2P_EV_TRANSFER_WANT, x->next, 0, NULL, 0)) continue; /* next input */
        x->blocked = 0;
        t->blocked--;
    }
}

void p2p_transfer_free(p2p_host *h)
{
    struct p2p_xfers *t = h->xfers;
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        p2p_wipe(t->v[i], sizeof *t->v[i]);
        free(t->v[i]);
    }
    free(t->v);
    free(t->scratch);
    free(t);
    h->xfers = NULL;
}
