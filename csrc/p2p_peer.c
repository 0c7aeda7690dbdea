/*
 * p2p_peer.c - one established session (docs/PROTOCOL.md sections 2.2 to 6): sealing and
 * opening DATA packets, frames, the reliable message stream of each lane with its records and
 * flow control, the lane scheduler, unreliable datagrams (plain and sequenced), keepalives,
 * timeouts and close.
 */
#include "p2p_peer.h"

#include <stdlib.h>
#include <string.h>

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- the session's memory budget (docs/PROTOCOL.md section 4.1) -------------------------- */

static uint64_t budget_room(void *ud)
{
    p2p_peer *p = ud;
    return p2p_mem_room(p->host, p);
}

static void budget_take(void *ud, size_t n)
{
    p2p_peer *p = ud;
    p2p_mem_take(p->host, p, n); /* within budget_room(): it cannot refuse */
}

static void budget_give(void *ud, size_t n)
{
    p2p_peer *p = ud;
    p2p_mem_give(p->host, p, n);
}

static p2p_budget peer_budget(p2p_peer *p)
{
    p2p_budget b = {p, budget_room, budget_take, budget_give};
    return b;
}

void p2p_peer_init_session(p2p_peer *p, const uint8_t k_send[P2P_KEY_LEN],
                           const uint8_t k_recv[P2P_KEY_LEN], uint64_t now)
{
    p2p_keys_init(&p->keys, k_send, k_recv, now);
    memset(&p->replay, 0, sizeof p->replay);
    p2p_recovery_init(&p->rec, now);
    /* The session's index is random: it staggers BBR's gain cycle between flows. */
    p2p_recovery_set_cc(&p->rec, p->host->congestion, p->local_index, now);
    /* Packet numbers left out at gaps the peer cannot predict (optimistic ACKs). */
    p2p_recovery_seed_skips(&p->rec, (uint64_t)p2p_rng_u32(&p->host->rng) << 32 |
                                         p2p_rng_u32(&p->host->rng));
    p->last_recv = now;
    p->last_eliciting_sent = now;
    p->window =
        (p->host->max_message > P2P_MESH_RECORD_MAX ? p->host->max_message : P2P_MESH_RECORD_MAX) +
        65536u;
    p->l0.r_granted = p->window;
    if (!p->peer_max_message) p->peer_max_message = P2P_DEFAULT_MAX_MESSAGE;
    if (!p->peer_window) p->peer_window = 1u << 20;
    p->l0.peer_max = p->peer_window;
    p->mtu = P2P_MAX_PACKET;
    p->mtu_rung = 0;
    p->mtu_probe_due = 1;
}

/* Path MTU discovery (RFC 8899, docs/PROTOCOL.md 5.1): the sizes tried in turn. */
static const uint16_t mtu_ladder[] = {1452, 8952, P2P_MAX_PACKET_PROBED};
#define MTU_RUNGS (sizeof mtu_ladder / sizeof mtu_ladder[0])

static void mtu_probe_result(p2p_peer *p, const p2p_sent *s, int acked)
{
    p->mtu_probe_out = 0;
    if (acked) {
        if (s->size > p->mtu) p->mtu = s->size;
        p->rec.mss = p->mtu;
        p->mtu_rung++;
        p->mtu_tries = 0;
    } else if (++p->mtu_tries >= P2P_MTU_PROBES) {
        p->mtu_rung = MTU_RUNGS; /* this size does not pass: keep what we have */
    }
    p->mtu_probe_due = p->mtu_rung < MTU_RUNGS;
}

/* ---- lanes (docs/PROTOCOL.md section 4.4) -------------------------------------------- */

/* The lane with that number, or NULL when it was never used. (Like strchr, it hands back a
 * mutable lane of a session it may only read: its callers own the session.) */
static p2p_lane *lane_at(const p2p_peer *p, uint8_t id)
{
    if (!id) return (p2p_lane *)&p->l0;
    return p->lanes ? p->lanes->slot[id] : NULL;
}

/* The lanes made so far, lane 0 first: lane_at(p, lane_made(p, i)) for i below lane_count(p). */
static unsigned lane_count(const p2p_peer *p)
{
    return p->lanes ? p->lanes->n : 1;
}

static uint8_t lane_made(const p2p_peer *p, unsigned i)
{
    return p->lanes ? p->lanes->ids[i] : 0;
}

/* Frees what a lane holds (its charge is given back by the caller, or whole by p2p_kill). */
static void lane_clear(p2p_lane *l)
{
    free(l->sbuf);
    l->sbuf = NULL;
    p2p_rangeset_free(&l->s_acked);
    p2p_rangeset_free(&l->s_lost);
    p2p_rangeset_free(&l->awaiting);
    p2p_rangeset_free(&l->owed);
    p2p_pieces_free(&l->r_pieces, NULL);
    free(l->r_body);
    l->r_body = NULL;
    l->r_body_cap = 0;
}

/* The lane with that number, made on first use: the table of lanes (once) and the lane are
 * charged to the peer's budget, so a peer that opens every lane holds at most that. Returns
 * NULL with *rc set to P2P_ERR_LIMIT (over the budget) or P2P_ERR_NOMEM. */
static p2p_lane *lane_get(p2p_host *h, p2p_peer *p, uint8_t id, int *rc)
{
    p2p_lane *l = lane_at(p, id);
    if (l) return l;
    if (!p->lanes) {
        p2p_lanes *t = p2p_mem_alloc(h, p, sizeof *t, rc);
        if (!t) return NULL;
        memset(t, 0, sizeof *t);
        t->slot[0] = &p->l0;
        t->n = 1;
        p->lanes = t;
    }
    l = p2p_mem_alloc(h, p, sizeof *l, rc);
    if (!l) return NULL;
    memset(l, 0, sizeof *l);
    p2p_rangeset_init(&l->s_acked);
    p2p_rangeset_init(&l->s_lost);
    p2p_rangeset_init(&l->awaiting);
    p2p_rangeset_init(&l->owed);
    l->id = id;
    /* Every lane starts with the window the handshake advertised, both ways. */
    l->peer_max = p->peer_window;
    l->r_granted = p->window;
    p->lanes->slot[id] = l;
    p->lanes->ids[p->lanes->n++] = id;
    return l;
}

void p2p_peer_release(p2p_peer *p)
{
    /* What the session held is given back whole by p2p_kill. */
    lane_clear(&p->l0);
    if (p->lanes) {
        for (unsigned i = 1; i < p->lanes->n; i++) {
            p2p_lane *l = p->lanes->slot[p->lanes->ids[i]];
            lane_clear(l);
            free(l);
        }
        free(p->lanes);
        p->lanes = NULL;
    }
    p->r_stopped = NULL;
    p2p_acker_free(&p->acker);
    p2p_recovery_free(&p->rec);
    for (p2p_dgram *d = p->dq_head, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    p->dq_head = p->dq_tail = NULL;
    for (p2p_ctl_rec *c; (c = p2p_peer_take_record(p));) p2p_peer_record_done(c);
    p2p_keys_wipe(&p->keys);
}

/* ---- ending a session ------------------------------------------------------------------- */

void p2p_peer_end(p2p_host *h, p2p_peer *p, int reason, int send_close, uint8_t wire_reason)
{
    p2p_event ev;
    /* Every message still waiting for a reply learns that none will come, lane by lane. */
    unsigned nl = p->lanes ? p->lanes->n : 1;
    for (unsigned k = 0; k < nl; k++) {
        p2p_lane *l = p->lanes ? p->lanes->slot[p->lanes->ids[k]] : &p->l0;
        for (size_t i = 0; i < l->awaiting.n; i++) {
            for (uint64_t s = l->awaiting.v[i].lo; s < l->awaiting.v[i].hi; s++) {
                memset(&ev, 0, sizeof ev);
                ev.type = P2P_EV_REPLY;
                ev.status = P2P_REPLY_LOST;
                ev.reason = reason;
                ev.seq = s;
                ev.lane = l->id;
                p2p_fill_event(p, &ev);
                p2p_event_push(h, &ev, NULL, 0);
            }
        }
        p2p_rangeset_clear(&l->awaiting);
    }
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_LEAVE;
    ev.reason = reason;
    p2p_fill_event(p, &ev);
    p2p_event_push(h, &ev, NULL, 0);
    if (p->state == P2P_S_CONNECTED) h->n_connected--;
    p->state = P2P_S_CLOSING;
    if (p->has_id) {
        p2p_notice n;
        memset(&n, 0, sizeof n);
        n.kind = P2P_NOTE_LEFT;
        n.peer = p->handle;
        n.reason = reason;
        memcpy(n.id, p->id, P2P_ID_LEN);
        p2p_notify(h, &n);
    }
    if (!send_close) {
        p2p_kill(h, p);
        return;
    }
    p->close_copies = P2P_CLOSE_COPIES;
    p->close_reason = wire_reason;
    p2p_ready(h, p);
}

/* ---- key updates (p2p_keys.h: the schedule; here its hooks into the session) ----------- */

/* How long the previous receive key outlives the peer's first packet of a new phase: 3 PTO
 * without backoff (a backed-off PTO measures loss; what the old key waits for is reordering). */
static uint64_t keep_prev(const p2p_peer *p)
{
    unsigned backoff = p->rec.pto_count < 16 ? p->rec.pto_count : 16;
    uint64_t pto = p2p_recovery_pto(&p->rec) >> backoff;
    return pto > P2P_KEY_KEEP_PREV_MIN_US / 3 ? 3 * pto : P2P_KEY_KEEP_PREV_MIN_US;
}

static void rekey_before_seal(p2p_peer *p, uint64_t pn)
{
    p2p_host *h = p->host;
    if (p2p_keys_update_due(&p->keys, pn, h->now)) {
        p2p_keys_update(&p->keys, pn, h->now);
        h->stats.rekeys++;
    } else if (p2p_keys_expired(&p->keys, h->now)) {
        /* The timer ends such a session; until it runs nothing goes out under the old key. */
        uint8_t junk[P2P_KEY_LEN];
        p2p_rng_bytes(&h->rng, junk, sizeof junk);
        p2p_keys_destroy_send(&p->keys, junk);
        p2p_wipe(junk, sizeof junk);
    }
}

static int rekey_opened(p2p_host *h, p2p_peer *p, int which, uint64_t pn, uint64_t now)
{
    if (!p2p_keys_opened(&p->keys, which, pn, now, keep_prev(p), p->rec.next_pn)) return 0;
    h->stats.rekeys++;
    return 1;
}

static int rekey_timer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p2p_keys_on_timeout(&p->keys, now);
    if (p2p_keys_update_due(&p->keys, p->rec.next_pn, now)) {
        p2p_keys_update(&p->keys, p->rec.next_pn, now);
        h->stats.rekeys++;
        /* An idle session tells the peer now: its ACK, in the new phase, confirms it. */
        p->ping_needed = 1;
        return 0;
    }
    if (p2p_keys_expired(&p->keys, now)) {
        /* No update since REJECT_AFTER_TIME: the peer has not answered the current keys (or
         * refuses to move on), and nothing may be sealed or opened with them any more. */
        p2p_peer_end(h, p, P2P_LEAVE_TIMEOUT, 0, 0);
        return 1;
    }
    return 0;
}

/* ---- sealing ---------------------------------------------------------------------------- */

/* Every DATA packet leaves through here: a due key update happens before the packet that
 * carries the new key phase (docs/PROTOCOL.md 2.3). */
static size_t seal(p2p_peer *p, const uint8_t *pt, size_t ptlen, uint8_t *out, uint64_t pn)
{
    rekey_before_seal(p, pn);
    out[0] = P2P_PKT_DATA;
    out[1] = p->keys.phase; /* covered by the tag: the header is the AD */
    out[2] = out[3] = 0;
    p2p_put_u32(out + 4, p->remote_index);
    p2p_put_u64(out + 8, pn);
    p2p_aead_seal(out + P2P_DATA_HEADER, p->keys.send, pn, out, P2P_DATA_HEADER, pt, ptlen);
    size_t n = P2P_DATA_HEADER + ptlen + P2P_TAG_LEN;
    p->tx_packets++;
    p->tx_bytes += n;
    return n;
}

size_t p2p_peer_close_packet(p2p_peer *p, uint8_t reason, uint8_t *out)
{
    uint8_t pt[2] = {P2P_FRAME_CLOSE, reason};
    uint64_t pn = p->rec.next_pn++;
    return seal(p, pt, sizeof pt, out, pn);
}

static int rec_room(p2p_host *h, p2p_peer *p, uint64_t now);

size_t p2p_peer_seal_extra(p2p_peer *p, const uint8_t *pt, size_t ptlen, uint8_t *out, uint64_t now)
{
    uint64_t pn;
    if (rec_room(p->host, p, now)) return 0;
    /* Recorded as sent but not ack-eliciting: it never counts against the window. */
    if (p2p_recovery_on_sent(&p->rec, now, ptlen + P2P_DATA_HEADER + P2P_TAG_LEN, 0, 0, 0, &pn))
        return 0;
    return seal(p, pt, ptlen, out, pn);
}

/* ---- send stream (one per lane) --------------------------------------------------------- */

static void sbuf_read(const p2p_lane *l, uint64_t off, uint8_t *out, size_t len)
{
    while (len) {
        size_t at = (size_t)(off % l->scap);
        size_t run = l->scap - at < len ? l->scap - at : len;
        memcpy(out, l->sbuf + at, run);
        out += run;
        len -= run;
        off += run;
    }
}

/* A lane's send ring holds bytes [sbase, send_end) at offset % scap. It grows to twice its
 * size, or to what it must hold if that is more (so one large message makes it just that
 * large), and its whole capacity is charged to the peer's budget. Returns 0, P2P_ERR_LIMIT
 * (over the budget) or P2P_ERR_NOMEM. */
static int sbuf_reserve(p2p_host *h, p2p_peer *p, p2p_lane *l, uint64_t need)
{
    uint64_t used = l->send_end - l->sbase;
    if (used + need <= l->scap) return 0;
    uint64_t want = used + need, cap = l->scap ? 2 * (uint64_t)l->scap : 4096;
    if (cap < want) cap = want;
    if (cap - l->scap > p2p_mem_room(h, p)) cap = want; /* near the budget: no spare room */
    if (cap > SIZE_MAX) return P2P_ERR_NOMEM;
    if (p2p_mem_take(h, p, (size_t)(cap - l->scap))) return P2P_ERR_LIMIT;
    uint8_t *nb = malloc((size_t)cap);
    if (!nb) {
        p2p_mem_give(h, p, (size_t)(cap - l->scap));
        return P2P_ERR_NOMEM;
    }
    if (used) {
        size_t at = (size_t)(l->sbase % cap);
        size_t run = cap - at < used ? (size_t)(cap - at) : (size_t)used;
        sbuf_read(l, l->sbase, nb + at, run);
        if (run < used) sbuf_read(l, l->sbase + run, nb, (size_t)used - run);
    }
    free(l->sbuf);
    l->sbuf = nb;
    l->scap = (size_t)cap;
    return 0;
}

static void sbuf_write(p2p_lane *l, const uint8_t *data, size_t len)
{
    while (len) {
        size_t at = (size_t)(l->send_end % l->scap);
        size_t run = l->scap - at < len ? l->scap - at : len;
        memcpy(l->sbuf + at, data, run);
        data += run;
        len -= run;
        l->send_end += run;
    }
}

/* Records routed to the mesh or NAT (p2p_peer_take_record) rather than queued as events. */
static int routed(uint8_t kind)
{
    return (kind >= P2P_REC_MEMBERS && kind <= P2P_REC_INTRO_FAIL) || kind == P2P_REC_TRANSFER ||
           kind == P2P_REC_PUNCH || kind == P2P_REC_ADDRS;
}

/* Which records a lane may carry (docs/PROTOCOL.md section 4.4): messages, broadcasts and
 * transfers on the application lanes; replies and the other mesh and NAT records on the
 * control lane, which no bulk data may slow down. */
static int lane_carries(uint8_t lane, uint8_t kind)
{
    if (lane == P2P_LANE_CONTROL)
        return kind == P2P_REC_REPLY || kind == P2P_REC_REPLY_LANE ||
               (routed(kind) && kind != P2P_REC_BROADCAST && kind != P2P_REC_TRANSFER);
    return kind == P2P_REC_MESSAGE || kind == P2P_REC_MESSAGE_RECEIPT ||
           kind == P2P_REC_BROADCAST || kind == P2P_REC_TRANSFER;
}

static int append_record(p2p_host *h, p2p_peer *p, p2p_lane *l, const p2p_record *rec,
                         const uint8_t *data);

int p2p_peer_append_lane(p2p_host *h, p2p_peer *p, uint8_t lane, uint8_t kind, const uint8_t *body,
                         size_t len)
{
    int rc;
    p2p_lane *l = lane_get(h, p, lane, &rc);
    if (!l) return rc;
    p2p_record rec = {kind, 0, 0, 0, len};
    return append_record(h, p, l, &rec, body);
}

int p2p_peer_append(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len)
{
    /* Broadcasts (and messages) carry the application's data: lane 0 unless the mesh names
     * another. Every other mesh or NAT record rides the control lane. */
    return p2p_peer_append_lane(h, p, lane_carries(0, kind) ? 0 : P2P_LANE_CONTROL, kind, body,
                                len);
}

/* Frees a queued datagram and gives back its charge. */
static void dgram_free(p2p_host *h, p2p_peer *p, p2p_dgram *d)
{
    p2p_mem_give(h, p, sizeof *d + d->len);
    free(d);
}

/* The bytes a queued datagram's frame takes. */
static size_t dgram_frame_len(const p2p_dgram *d)
{
    if (d->sequenced) return 1 + 1 + p2p_varint_len(d->seq) + 2 + p2p_varint_len(d->len) + d->len;
    return 1 + 2 + p2p_varint_len(d->len) + d->len;
}

static int append_record(p2p_host *h, p2p_peer *p, p2p_lane *l, const p2p_record *rec,
                         const uint8_t *data)
{
    uint8_t hdr[P2P_RECORD_HEADER_MAX];
    size_t hl = p2p_record_encode(hdr, rec);
    int rc = sbuf_reserve(h, p, l, hl + rec->len);
    if (rc) return rc;
    sbuf_write(l, hdr, hl);
    if (rec->len) sbuf_write(l, data, (size_t)rec->len);
    l->records_sent++;
    p2p_ready(h, p);
    return 0;
}

/* Counts the records that the front of the ring, up to sbase, completed (records_acked), for
 * p2p_peer_lane_stats_get. It runs when sbase moves, before anything can overwrite the bytes it
 * passed: each record's header is read once, so the cost is per message, not per packet. */
static void count_acked_records(p2p_lane *l)
{
    while (l->rec_front < l->sbase) {
        if (!l->rec_front_end) {
            if (!l->scap) return; /* cannot happen: bytes past rec_front are in the ring */
            uint8_t hdr[P2P_RECORD_HEADER_MAX];
            uint64_t avail = l->send_end - l->rec_front;
            size_t n = avail < sizeof hdr ? (size_t)avail : sizeof hdr;
            size_t at = (size_t)(l->rec_front % l->scap);
            const uint8_t *src = l->sbuf + at; /* read in place unless it wraps */
            p2p_record rec;
            if (l->scap - at < n) {
                sbuf_read(l, l->rec_front, hdr, n);
                src = hdr;
            }
            int hl = p2p_record_parse(src, n, &rec);
            if (hl <= 0) { /* cannot happen: we wrote it; stop counting rather than guess */
                l->rec_front = l->rec_front_end = UINT64_MAX;
                return;
            }
            l->rec_front_end = l->rec_front + (uint64_t)hl + rec.len;
        }
        if (l->rec_front_end > l->sbase) return;
        l->records_acked++;
        l->rec_front = l->rec_front_end;
        l->rec_front_end = 0;
    }
}

/* Frees the front of a lane's ring once the peer acknowledged it. */
static void advance_sbase(p2p_lane *l)
{
    if (!l->s_acked.n || l->s_acked.v[0].lo > l->sbase || l->s_acked.v[0].hi <= l->sbase) return;
    l->sbase = l->s_acked.v[0].hi;
    p2p_rangeset_remove(&l->s_acked, 0, l->sbase);
    p2p_rangeset_remove(&l->s_lost, 0, l->sbase);
    count_acked_records(l);
}

/* An idle lane gives its send buffer back, but only at the session's keepalive timer: a lane
 * that drains between bursts (a sender waiting for its peer's answers) would otherwise free
 * the buffer and grow it again for every burst, and the allocator fault the memory in again
 * each time. */
static void release_idle_sbuf(p2p_host *h, p2p_peer *p, p2p_lane *l)
{
    if (l->sbase != l->send_end || l->scap <= P2P_SBUF_KEEP) return;
    p2p_mem_give(h, p, l->scap);
    free(l->sbuf);
    l->sbuf = NULL;
    l->scap = 0;
}

/* Every lane that may owe the peer a MAX_STREAM sends it again (a packet that carried one was
 * lost; the packet does not say for which lanes). */
static void grants_again(p2p_peer *p)
{
    p->l0.need_max_stream = 1;
    if (!p->lanes) return;
    for (unsigned i = 1; i < p->lanes->n; i++)
        p->lanes->slot[p->lanes->ids[i]]->need_max_stream = 1;
    p->lane_grants = p->lanes->n > 1;
}

static void on_acked(void *ud, const p2p_sent *s)
{
    p2p_peer *p = ud;
    if (s->flags & P2P_SENT_MTU_PROBE) mtu_probe_result(p, s, 1);
    /* A late ACK for bytes a retransmission already got acknowledged says nothing new. */
    p2p_lane *l = s->stream_len ? lane_at(p, s->lane) : NULL;
    if (l && s->stream_off + s->stream_len > l->sbase) {
        uint64_t lo = s->stream_off > l->sbase ? s->stream_off : l->sbase;
        p2p_rangeset_add(&l->s_acked, lo, s->stream_off + s->stream_len);
        advance_sbase(l);
    }
}

static void on_lost(void *ud, const p2p_sent *s)
{
    p2p_peer *p = ud;
    if (s->flags & P2P_SENT_MTU_PROBE) mtu_probe_result(p, s, 0);
    p2p_lane *l = s->stream_len ? lane_at(p, s->lane) : NULL;
    if (l && s->stream_off + s->stream_len > l->sbase)
        p2p_rangeset_add(&l->s_lost, s->stream_off, s->stream_off + s->stream_len);
    if (s->flags & P2P_SENT_MAX_STREAM) grants_again(p);
}

/* The next range of a lane to resend: the first lost range not since acknowledged. */
static int next_lost(p2p_lane *l, uint64_t *lo, uint64_t *hi)
{
    while (l->s_lost.n) {
        p2p_range r = l->s_lost.v[0];
        if (r.lo < l->sbase) r.lo = l->sbase;
        if (r.lo < r.hi && p2p_rangeset_first_gap(&l->s_acked, r.lo, r.hi, lo, hi)) return 1;
        p2p_rangeset_remove(&l->s_lost, l->s_lost.v[0].lo, l->s_lost.v[0].hi);
    }
    return 0;
}

/* 1 when a lane has bytes to send now: lost ones, or new ones within the peer's grant. */
static int lane_has_work(p2p_lane *l)
{
    uint64_t lo, hi;
    return next_lost(l, &lo, &hi) || (l->send_next < l->send_end && l->send_next < l->peer_max);
}

/* The control lane goes before every application lane. */
static int lane_priority(const p2p_host *h, uint8_t id)
{
    return id == P2P_LANE_CONTROL ? P2P_LANE_PRIORITY_MAX + 1 : h->lane_prio[id];
}

static int64_t lane_quantum(const p2p_host *h, uint8_t id)
{
    uint16_t w = id == P2P_LANE_CONTROL ? 1 : h->lane_weight[id];
    return (int64_t)(w ? w : 1) * P2P_LANE_QUANTUM;
}

/* The scheduler (docs/PROTOCOL.md section 4.4): the lane whose bytes the next packet carries,
 * or NULL when none has any to send. Strict priority between priorities; among the lanes of
 * the highest priority that have bytes to send, deficit round robin by bytes: arriving at a
 * lane in the round adds weight x P2P_LANE_QUANTUM to its deficit, and it sends while that is
 * positive (each packet takes its size off, so a lane may overdraw by one packet, which its
 * next turn pays back). A lane with nothing to send loses its deficit. */
static p2p_lane *pick_lane(p2p_host *h, p2p_peer *p)
{
    if (!p->lanes) return lane_has_work(&p->l0) ? &p->l0 : NULL;
    p2p_lanes *t = p->lanes;
    uint8_t ready[P2P_LANE_SLOTS];
    int top = -1;
    unsigned nready = 0;
    p2p_lane *only = NULL;
    for (unsigned i = 0; i < t->n; i++) {
        p2p_lane *l = t->slot[t->ids[i]];
        ready[i] = (uint8_t)lane_has_work(l);
        if (!ready[i]) {
            l->deficit = 0;
            continue;
        }
        nready++;
        only = l;
        int pr = lane_priority(h, l->id);
        if (pr > top) top = pr;
    }
    if (top < 0) return NULL;
    if (nready == 1) {
        /* No other lane competes: nothing to account, and it starts the next round even. */
        only->deficit = 0;
        return only;
    }
    unsigned at = t->rr < t->n ? t->rr : 0;
    p2p_lane *cur = t->slot[t->ids[at]];
    if (ready[at] && lane_priority(h, cur->id) == top && cur->deficit > 0) return cur;
    /* Each step adds at least P2P_LANE_QUANTUM and a deficit is never below minus one packet:
     * a lane turns positive within P2P_MAX_PACKET_PROBED / P2P_LANE_QUANTUM + 1 rounds. */
    unsigned steps = (P2P_MAX_PACKET_PROBED / P2P_LANE_QUANTUM + 2) * t->n;
    for (unsigned k = 0; k < steps; k++) {
        at = (at + 1) % t->n;
        p2p_lane *l = t->slot[t->ids[at]];
        if (!ready[at] || lane_priority(h, l->id) != top) continue;
        l->deficit += lane_quantum(h, l->id);
        if (l->deficit > 0) {
            t->rr = (uint16_t)at;
            return l;
        }
    }
    return cur; /* not reached */
}

/* For a PTO probe when no lane has bytes to send: the first lane (in the order the lanes were
 * made) with nothing new and bytes unacknowledged gets its oldest unacknowledged range added
 * to its lost set, as the lane-0 stream always did, and is returned; NULL when there is none
 * (the probe is then a PING). */
static p2p_lane *probe_lane(p2p_peer *p)
{
    unsigned nl = p->lanes ? p->lanes->n : 1;
    for (unsigned k = 0; k < nl; k++) {
        p2p_lane *l = p->lanes ? p->lanes->slot[p->lanes->ids[k]] : &p->l0;
        if (!l->s_lost.n && l->send_next >= l->send_end && l->sbase < l->send_next) {
            uint64_t glo, ghi;
            if (p2p_rangeset_first_gap(&l->s_acked, l->sbase, l->send_next, &glo, &ghi)) {
                p2p_rangeset_add(&l->s_lost, glo, ghi);
                return l;
            }
        }
    }
    return NULL;
}

/* Gives back what the sent-packet record no longer holds (it is freed once it drains). */
static void rec_sync(p2p_host *h, p2p_peer *p)
{
    size_t now_held = p->rec.cap * sizeof(p2p_sent);
    if (now_held < p->rec_held) {
        p2p_mem_give(h, p, p->rec_held - now_held);
        p->rec_held = now_held;
    }
}

/* Makes sure the sent-packet record has an entry for one more packet: it grows within
 * P2P_SENT_RECORD_MAX and the peer's budget, or else the oldest outstanding packet is
 * declared lost. Returns 0, or -1 when no entry can be had (nothing may be sent). */
static int rec_room(p2p_host *h, p2p_peer *p, uint64_t now)
{
    p2p_recovery *r = &p->rec;
    for (int tries = 0; tries < 2; tries++) {
        if (r->cap && r->next_pn - r->base_pn < r->cap) return 0;
        size_t cap = r->cap ? r->cap * 2 : P2P_SENT_RECORD_MIN;
        size_t more = cap * sizeof(p2p_sent) - p->rec_held;
        if (cap <= P2P_SENT_RECORD_MAX && more <= p2p_mem_room(h, p) &&
            p2p_mem_take(h, p, more) == 0) {
            p->rec_held += more;
            return 0; /* p2p_recovery_on_sent grows the record to cap */
        }
        if (!r->cap) return -1;
        p2p_recovery_cb cb = {p, on_acked, on_lost};
        p2p_recovery_make_room(r, now, &cb);
        rec_sync(h, p);
    }
    return r->cap && r->next_pn - r->base_pn < r->cap ? 0 : -1;
}

/* ---- building packets ------------------------------------------------------------------- */

/* A probe: PING and PADDING filling a packet of the next size to try. */
static size_t build_mtu_probe(p2p_peer *p, uint8_t *out, size_t cap, uint64_t now)
{
    size_t size = mtu_ladder[p->mtu_rung];
    p->mtu_probe_due = 0;
    if (size > cap) { /* the driver cannot carry it: settle */
        p->mtu_rung = MTU_RUNGS;
        return 0;
    }
    uint8_t pt[P2P_PLAINTEXT_MAX];
    size_t ptlen = size - P2P_DATA_HEADER - P2P_TAG_LEN;
    memset(pt, 0, ptlen);
    pt[0] = P2P_FRAME_PING; /* the zeros after it are PADDING */
    uint64_t pn = p->rec.next_pn;
    size_t n = seal(p, pt, ptlen, out, pn);
    if (p2p_recovery_on_sent(&p->rec, now, n, P2P_SENT_ELICITING | P2P_SENT_MTU_PROBE, 0, 0, &pn))
        return 0;
    p->mtu_probe_out = 1;
    p->last_eliciting_sent = now;
    return n;
}

size_t p2p_peer_build(p2p_host *h, p2p_peer *p, uint8_t *out, size_t cap, uint64_t now)
{
    if (p->state == P2P_S_CLOSING) {
        if (p->close_copies <= 0) return 0;
        p->close_copies--;
        return p2p_peer_close_packet(p, p->close_reason, out);
    }
    if (p->state != P2P_S_CONNECTED) return 0;
    /* Before anything is taken off a queue: the packet needs an entry in the record. */
    if (rec_room(h, p, now)) return 0;
    /* Probe only when the window has room, so a probe never displaces data. A relayed path
     * is probed by nobody: its size is the relay's. */
    if (p->mtu_probe_due && !p->mtu_probe_out && p->addr.family != P2P_AF_RELAY &&
        p2p_recovery_cwnd_allows(&p->rec, mtu_ladder[p->mtu_rung])) {
        size_t n = build_mtu_probe(p, out, cap, now);
        if (n) return n;
    }
    size_t limit = p->mtu < cap ? p->mtu : cap;
    uint8_t pt[P2P_PLAINTEXT_MAX];
    p2p_wr w;
    p2p_wr_init(&w, pt, limit - P2P_DATA_HEADER - P2P_TAG_LEN);
    uint8_t flags = 0;
    int has_ack = 0;
    uint64_t s_off = 0;
    uint32_t s_len = 0;
    int retransmit = 0, pinged = 0, ping_for_ack = 0;
    /* The lane whose bytes this packet carries (the scheduler's choice), if any. */
    p2p_lane *sl = pick_lane(h, p);

    int want = p2p_acker_wants(&p->acker, now);
    if (p->acker.pending || want) {
        /* Piggyback a pending ACK on anything else we send; send it alone only when due. */
        int other = p->l0.need_max_stream || p->lane_grants || p->dq_head || p->ping_needed ||
                    p->probe_needed || sl || p->l0.s_lost.n || p->l0.send_next < p->l0.send_end;
        if (want || other) {
            if (p2p_acker_write(&p->acker, &w, now) == 0)
                has_ack = 1;
            else
                w.bad = 0;
        }
    }
    if (p->l0.need_max_stream) {
        p2p_frame_put_max_stream(&w, 0, p->l0.r_granted);
        p->l0.need_max_stream = 0;
        flags |= P2P_SENT_ELICITING | P2P_SENT_MAX_STREAM;
    }
    if (p->lane_grants) {
        /* The other lanes' grants, as many as fit; the rest go in the next packet. */
        p->lane_grants = 0;
        for (unsigned i = 1; i < p->lanes->n; i++) {
            p2p_lane *l = p->lanes->slot[p->lanes->ids[i]];
            if (!l->need_max_stream) continue;
            if (p2p_wr_left(&w) < 2 + p2p_varint_len(l->r_granted)) {
                p->lane_grants = 1;
                break;
            }
            p2p_frame_put_max_stream(&w, l->id, l->r_granted);
            l->need_max_stream = 0;
            flags |= P2P_SENT_ELICITING | P2P_SENT_MAX_STREAM;
        }
    }
    /* A datagram that no packet on this path can hold (a relayed path is smaller) is lost. */
    while (p->dq_head && dgram_frame_len(p->dq_head) > limit - P2P_DATA_HEADER - P2P_TAG_LEN) {
        p2p_dgram *d = p->dq_head;
        p->dq_head = d->next;
        if (!p->dq_head) p->dq_tail = NULL;
        p->dq_count--;
        dgram_free(h, p, d);
        h->stats.dropped++;
    }
    while (p->dq_head && p2p_wr_left(&w) >= dgram_frame_len(p->dq_head)) {
        p2p_dgram *d = p->dq_head;
        if (d->sequenced) {
            p2p_frame_put_datagram_seq(&w, d->lane, d->seq, d->type, d->data, d->len);
        } else {
            p2p_wr_u8(&w, P2P_FRAME_DATAGRAM);
            p2p_wr_u16(&w, d->type);
            p2p_wr_varint(&w, d->len);
            p2p_wr_bytes(&w, d->data, d->len);
        }
        p->dq_head = d->next;
        if (!p->dq_head) p->dq_tail = NULL;
        p->dq_count--;
        dgram_free(h, p, d);
        flags |= P2P_SENT_ELICITING;
    }
    /* PING goes before the stream data, which then fills what is left: a byte written after
     * a full STREAM frame would overflow the packet and lose the frame. */
    if (p->ping_needed) {
        p2p_wr_u8(&w, P2P_FRAME_PING);
        flags |= P2P_SENT_ELICITING;
        p->ping_needed = 0;
        pinged = 1;
    }
    /* A packet of stream data that fills a small window asks for an immediate ACK. */
    if (sl && !pinged && p2p_recovery_ack_soon(&p->rec, limit)) {
        p2p_wr_u8(&w, P2P_FRAME_PING);
        ping_for_ack = 1;
    }
    /* Stream data of the chosen lane: what was lost first, then new bytes within the peer's
     * grant. */
    size_t room = p2p_wr_left(&w);
    int probe = p->probe_needed;
    if (probe && !sl)
        sl = probe_lane(p); /* a probe resends the oldest unacknowledged bytes
                                           * when there is nothing new */
    uint64_t lo = 0, hi = 0;
    int have = 0;
    if (!sl) {
    } else if (next_lost(sl, &lo, &hi)) {
        have = 1;
        retransmit = 1;
    } else if (sl->send_next < sl->send_end && sl->send_next < sl->peer_max) {
        lo = sl->send_next;
        hi = sl->send_end < sl->peer_max ? sl->send_end : sl->peer_max;
        have = 1;
    }
    size_t hl = have ? p2p_frame_lane_header_len(sl->id, lo, hi - lo < room ? hi - lo : room) : 0;
    if (have && room > hl + 1) {
        uint64_t n = hi - lo;
        if (n > room - hl) n = room - hl;
        size_t pkt_size = P2P_DATA_HEADER + (size_t)(w.p - pt) + hl + (size_t)n + P2P_TAG_LEN;
        int allowed = probe || p2p_recovery_cwnd_allows(&p->rec, pkt_size);
        if (allowed && !probe) {
            uint64_t at = p2p_recovery_pace_at(&p->rec, now, pkt_size);
            if (at > now) {
                allowed = 0;
                p->next_send_at = at;
            }
        }
        if (allowed && n > 0) {
            p2p_frame_put_lane_header(&w, sl->id, lo, n);
            if (!w.bad && p2p_wr_left(&w) >= n) {
                sbuf_read(sl, lo, w.p, (size_t)n);
                w.p += n;
                s_off = lo;
                s_len = (uint32_t)n;
                flags |= P2P_SENT_ELICITING;
                if (retransmit)
                    p2p_rangeset_remove(&sl->s_lost, lo, lo + n);
                else
                    sl->send_next = lo + n;
                p->next_send_at = 0;
            }
        }
    }
    /* The PING only goes with stream data: alone it would be a packet of its own. */
    if (ping_for_ack && !s_len) w.p--;
    /* Nothing to send within the window: rate samples from now on are app-limited. */
    if (!have) p2p_recovery_app_limited(&p->rec);
    if (probe && !(flags & P2P_SENT_ELICITING)) { /* nothing else to probe with */
        p2p_wr_u8(&w, P2P_FRAME_PING);
        flags |= P2P_SENT_ELICITING;
    }
    /* An ACK alone that still reports old ranges asks for an ACK of its own, at most once per
     * RTT: the peer's answer lets them go (p2p_acker_on_peer_ack). The packet stays out of the
     * flight (no probe timeout, no window): if it is lost, a later one asks again. */
    if (has_ack && !(flags & P2P_SENT_ELICITING) && p->acker.received.n > P2P_ACK_RANGES_PING &&
        now - p->acker.pinged >=
            (p->rec.srtt > P2P_ACK_PING_MIN_US ? p->rec.srtt : P2P_ACK_PING_MIN_US) &&
        w.p < w.end) {
        p2p_wr_u8(&w, P2P_FRAME_PING);
        p->acker.pinged = now;
    }
    if (p->probe_needed) p->probe_needed--; /* P2P_PTO_PROBES of them per timeout */
    size_t ptlen = (size_t)(w.p - pt);
    if (!ptlen || w.bad) return 0;
    uint64_t pn = p2p_recovery_next_pn(&p->rec, now);
    size_t n = seal(p, pt, ptlen, out, pn);
    if (p2p_recovery_on_sent(&p->rec, now, n, flags, s_off, s_len, &pn)) return 0;
    if (s_len) {
        if (sl->id) p2p_recovery_sent(&p->rec, pn)->lane = sl->id;
        sl->deficit -= (int64_t)n; /* the scheduler's account (pick_lane) */
    }
    if (has_ack) {
        p2p_acker_sent(&p->acker);
        p2p_acker_carried(&p->acker, pn);
    }
    if (flags & P2P_SENT_ELICITING) {
        p->last_eliciting_sent = now;
        p2p_recovery_pace_spend(&p->rec, now, n);
        p->tx_eliciting++;
    }
    if (retransmit) {
        h->stats.retransmits++;
        p->retransmits++;
    }
    return n;
}

/* ---- receive stream --------------------------------------------------------------------- */

static void protocol_error(p2p_host *h, p2p_peer *p)
{
    h->stats.dropped++;
    p2p_peer_end(h, p, P2P_LEAVE_PROTOCOL, 1, P2P_CLOSE_PROTOCOL);
}

/* Appends a REPLY for message `seq` of lane `lane` to the control lane. */
static int append_reply(p2p_host *h, p2p_peer *p, uint8_t lane, uint64_t seq, uint8_t status,
                        const uint8_t *data, size_t len)
{
    int rc;
    p2p_lane *c = lane_get(h, p, P2P_LANE_CONTROL, &rc);
    if (!c) return rc;
    /* REPLY_LANE names the lane in the header's type field (p2p_wire.h) */
    p2p_record r = {lane ? P2P_REC_REPLY_LANE : P2P_REC_REPLY, lane, seq, status, len};
    return append_record(h, p, c, &r, data);
}

/* Whether one more reply range (owed, or awaited) may be held for ordinal on lane l: the cap
 * P2P_RECEIPT_RANGES is the session's, all lanes together, so that a peer spreading its
 * requests over many lanes holds no more than on one (the ranges are not charged). */
static int receipt_room(const p2p_peer *p, const p2p_lane *l, int owed, uint64_t ordinal)
{
    const p2p_rangeset *r = owed ? &l->owed : &l->awaiting;
    if (r->n && r->v[r->n - 1].hi == ordinal) return 1; /* it extends the last range */
    size_t n = 0;
    for (unsigned i = 0; i < lane_count(p); i++) {
        const p2p_lane *x = lane_at(p, lane_made(p, i));
        n += owed ? x->owed.n : x->awaiting.n;
    }
    return n < P2P_RECEIPT_RANGES;
}

/* Hands a complete record of lane l to the application. Returns 0; 1 when the event it makes
 * cannot be queued now (the node's budget is spent): nothing is done and the caller refuses
 * the record's last byte, so that the peer sends it again, rather than the record being
 * acknowledged and lost; or -1 on a protocol error. */
static int deliver_record(p2p_host *h, p2p_peer *p, p2p_lane *l)
{
    p2p_record *rec = &l->r_cur;
    int queue = !routed(rec->kind);
    if (queue && !p2p_event_room(h, p, (size_t)rec->len, l->r_body_cap)) return 1;
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    p2p_fill_event(p, &ev);
    ev.lane = l->id;
    /* The body leaves the session's budget: an event is charged to the node's. */
    uint8_t *body = l->r_body;
    p2p_mem_give(h, p, l->r_body_cap);
    l->r_body = NULL;
    l->r_body_cap = 0;
    if (!body && !(body = malloc(1))) return -1; /* an empty record */
    uint64_t ordinal = l->records_recv++;
    if (!queue) {
        /* The host hands it to the mesh or NAT when the STREAM frame is read (P2P_RX_RECORDS). */
        p2p_ctl_rec *c = malloc(sizeof *c);
        if (!c) {
            free(body);
            return -1;
        }
        c->next = NULL;
        c->kind = rec->kind;
        c->lane = l->id;
        c->len = (size_t)rec->len;
        c->body = body;
        if (p->ctl_tail)
            p->ctl_tail->next = c;
        else
            p->ctl_head = c;
        p->ctl_tail = c;
    } else if (rec->kind == P2P_REC_REPLY || rec->kind == P2P_REC_REPLY_LANE) {
        /* A reply names the lane of the message it answers (REPLY: lane 0). */
        p2p_lane *ml = lane_at(p, rec->kind == P2P_REC_REPLY ? 0 : (uint8_t)rec->type);
        if (!ml || !p2p_rangeset_contains(&ml->awaiting, rec->ref)) {
            free(body);
            return -1;
        }
        p2p_rangeset_remove(&ml->awaiting, rec->ref, rec->ref + 1);
        ev.type = P2P_EV_REPLY;
        ev.seq = rec->ref;
        ev.status = rec->status;
        ev.lane = ml->id;
    } else {
        ev.type = P2P_EV_MESSAGE;
        ev.msg_type = rec->type;
        ev.seq = ordinal;
        if (rec->kind == P2P_REC_MESSAGE_RECEIPT && !receipt_room(p, l, 1, ordinal)) {
            /* Too many requests wait for the application's answer: this one is refused at
             * once with an error reply rather than remembered. */
            static const char busy[] = "too many requests awaiting a reply";
            h->stats.dropped_budget++;
            free(body);
            if (append_reply(h, p, l->id, ordinal, P2P_REPLY_ERROR, (const uint8_t *)busy,
                             sizeof busy - 1))
                return -1;
            queue = 0;
        } else if (rec->kind == P2P_REC_MESSAGE_RECEIPT) {
            ev.want_reply = 1;
            if (p2p_rangeset_add(&l->owed, ordinal, ordinal + 1)) {
                free(body);
                return -1;
            }
        }
    }
    if (queue) p2p_event_push_owned(h, &ev, body, (size_t)rec->len);
    l->r_consumed += l->r_hdr_len + rec->len;
    l->r_in_body = 0;
    l->r_hdr_len = 0;
    l->r_body_got = 0;
    if (l->r_consumed + p->window - l->r_granted >= p->window / 2) {
        l->r_granted = l->r_consumed + p->window;
        l->need_max_stream = 1;
        if (l->id) p->lane_grants = 1;
    }
    return 0;
}

/* Makes the body buffer hold at least want bytes of the lane's current record: it doubles
 * from P2P_BODY_FIRST, never past the record's length, and is charged to the peer's budget (so
 * a header that claims a large record costs nothing until the bytes come). Returns 0 or -1
 * when the budget (or malloc) refuses. */
static int body_reserve(p2p_host *h, p2p_peer *p, p2p_lane *l, uint64_t want)
{
    if (want <= l->r_body_cap) return 0;
    if (!l->r_body) {
        /* A body the application is done with, of a size this record can fill. */
        size_t len;
        uint8_t *b = p2p_spare_take(h, (size_t)want, (size_t)l->r_cur.len, &len);
        if (b && !p2p_mem_take(h, p, len)) {
            l->r_body = b;
            l->r_body_cap = len;
            return 0;
        }
        if (b) p2p_spare_put(h, b, len);
    }
    uint64_t cap = l->r_body_cap ? 2 * (uint64_t)l->r_body_cap : P2P_BODY_FIRST;
    if (cap < want) cap = want;
    if (cap > l->r_cur.len) cap = l->r_cur.len;
    if (cap - l->r_body_cap > p2p_mem_room(h, p)) cap = want;
    if (p2p_mem_take(h, p, (size_t)(cap - l->r_body_cap))) return -1;
    uint8_t *nb = realloc(l->r_body, (size_t)cap);
    if (!nb) {
        p2p_mem_give(h, p, (size_t)(cap - l->r_body_cap));
        return -1;
    }
    l->r_body = nb;
    l->r_body_cap = (size_t)cap;
    return 0;
}

/* Feeds in-order stream bytes of a lane to its record parser. *used says how many it took:
 * all, or fewer when the budget cannot hold more of the current record (the rest must come
 * again). Returns 0 or -1 (protocol error). */
static int feed(p2p_host *h, p2p_peer *p, p2p_lane *l, const uint8_t *data, size_t len,
                size_t *used)
{
    size_t at = 0;
    *used = 0;
    /* Records are taken in stream order: while a mesh or NAT record waits for the host,
     * nothing after it is read (so a bad record ends the session before anything behind it is
     * delivered, and events keep the order the peer sent them in). */
    if (p->ctl_head) return 0;
    while (at < len) {
        if (!l->r_in_body) {
            size_t old = l->r_hdr_len;
            size_t take = sizeof l->r_hdr - old < len - at ? sizeof l->r_hdr - old : len - at;
            memcpy(l->r_hdr + old, data + at, take);
            l->r_hdr_len = old + take;
            int hl = p2p_record_parse(l->r_hdr, l->r_hdr_len, &l->r_cur);
            if (hl < 0) return -1;
            if (hl == 0) {
                if (l->r_hdr_len >= sizeof l->r_hdr) return -1;
                at += take;
                *used = at;
                continue;
            }
            if (!lane_carries(l->id, l->r_cur.kind)) return -1;
            at += (size_t)hl - old;
            l->r_hdr_len = (size_t)hl;
            uint64_t limit = l->r_cur.kind == P2P_REC_BROADCAST ? (uint64_t)h->max_message + 106
                             : routed(l->r_cur.kind)            ? P2P_MESH_RECORD_MAX
                                                                : h->max_message;
            if (l->r_cur.len > limit) return -1;
            l->r_in_body = 1;
            l->r_body_got = 0;
        }
        uint64_t need = l->r_cur.len - l->r_body_got;
        size_t take = need < len - at ? (size_t)need : len - at;
        if (take) {
            if (body_reserve(h, p, l, l->r_body_got + take)) break;
            memcpy(l->r_body + l->r_body_got, data + at, take);
            l->r_body_got += take;
            at += take;
        }
        *used = at;
        if (l->r_body_got == l->r_cur.len) {
            int d = deliver_record(h, p, l);
            if (d < 0) return -1;
            if (d > 0) {
                /* Not taken: the record's last byte (of its body, or of its header when it has
                 * no body) is refused and comes again. */
                if (l->r_cur.len) {
                    l->r_body_got--;
                } else {
                    l->r_in_body = 0;
                    l->r_hdr_len--;
                }
                *used = at - 1;
                return 0;
            }
            if (p->ctl_head) break; /* a mesh or NAT record: the host routes it first */
        }
    }
    *used = at;
    return 0;
}

/* Feeds the held pieces of a lane that its in-order part has reached. Returns 0, or -1 on a
 * protocol error. A piece the budget cannot take in yet stays held. */
static int drain_pieces(p2p_host *h, p2p_peer *p, p2p_lane *l)
{
    p2p_budget b = peer_budget(p);
    const p2p_piece *s;
    while ((s = p2p_pieces_first(&l->r_pieces)) && s->off <= l->r_base) {
        uint64_t end = s->off + s->len;
        if (end > l->r_base) {
            size_t skip = (size_t)(l->r_base - s->off), n = (size_t)(end - l->r_base), used;
            if (feed(h, p, l, s->buf + (s->off - s->start) + skip, n, &used)) return -1;
            l->r_base += used;
            if (used < n) return 0;
        }
        p2p_pieces_pop(&l->r_pieces, &b);
    }
    return 0;
}

/* Holds stream bytes [off, off + len) of a lane as a piece, merged with its neighbours. The
 * tree's priorities start from the node's randomness, which the peer cannot predict. Returns
 * 0, or 1 when the piece cap or the budget refused them. */
static int hold_piece(p2p_host *h, p2p_peer *p, p2p_lane *l, uint64_t off, const uint8_t *data,
                      size_t len)
{
    p2p_budget b = peer_budget(p);
    while (!l->r_pieces.seed) l->r_pieces.seed = p2p_rng_u32(&h->rng);
    if (p2p_pieces_add(&l->r_pieces, off, data, len, l->r_base, l->r_granted, &b)) {
        h->stats.dropped_budget++;
        return 1;
    }
    return 0;
}

/* Takes the stream bytes of one STREAM frame of lane l. Returns 0; 1 when some were refused
 * (over the piece cap or the memory budget: the packet must not be acknowledged, so that the
 * sender sends them again); or -1 on a protocol error. */
static int stream_recv(p2p_host *h, p2p_peer *p, p2p_lane *l, uint64_t off, const uint8_t *data,
                       uint64_t len)
{
    if (off + len > l->r_granted) return -1; /* past the flow-control grant */
    if (off + len <= l->r_base) return 0;    /* all seen before */
    if (off < l->r_base) {
        data += l->r_base - off;
        len -= l->r_base - off;
        off = l->r_base;
    }
    int refused;
    if (off > l->r_base) {
        refused = hold_piece(h, p, l, off, data, (size_t)len); /* out of order */
    } else {
        size_t used;
        if (feed(h, p, l, data, (size_t)len, &used)) return -1;
        l->r_base += used;
        if (used < len && p->ctl_head)
            /* Stopped behind a record the host routes first: the rest waits as a piece and
             * is read when the host asks for the next frame (p2p_peer_on_frames). */
            refused = hold_piece(h, p, l, l->r_base, data + used, (size_t)len - used);
        else
            refused = used < len;
    }
    if (drain_pieces(h, p, l)) return -1;
    if (p->ctl_head) p->r_stopped = l;
    return refused;
}

/* ---- receiving DATA --------------------------------------------------------------------- */

int p2p_peer_open(p2p_host *h, p2p_peer *p, const p2p_addr *from, const uint8_t *buf, size_t len,
                  p2p_rx *rx, uint64_t now)
{
    if ((buf[1] & ~P2P_DATA_KEY_PHASE) || buf[2] || buf[3]) {
        h->stats.dropped++;
        return P2P_RX_STOP;
    }
    uint64_t pn = p2p_get_u64(buf + 8);
    if (p2p_replay_check(&p->replay, pn)) {
        h->stats.dropped++;
        return P2P_RX_STOP;
    }
    size_t ptlen = len - P2P_DATA_HEADER - P2P_TAG_LEN;
    /* The key phase picks one key to try (current, previous or next generation); nothing
     * changes until a packet authenticates, so a forged phase bit costs one failed open. */
    int which;
    const uint8_t *key = p2p_keys_for_open(&p->keys, buf[1] & P2P_DATA_KEY_PHASE, pn, now, &which);
    if (!key || p2p_aead_open(rx->pt, key, pn, buf, P2P_DATA_HEADER, buf + P2P_DATA_HEADER,
                              len - P2P_DATA_HEADER)) {
        h->stats.dropped++;
        return P2P_RX_STOP;
    }
    rekey_opened(h, p, which, pn, now);
    /* Validate every frame before acting on any: a malformed packet is dropped whole. */
    p2p_frame f;
    int rc, close = -1;
    rx->ptlen = ptlen;
    rx->pn = pn;
    rx->eliciting = 0;
    rx->probing = 1;
    rx->refused = 0;
    p2p_rd_init(&rx->r, rx->pt, ptlen);
    while ((rc = p2p_frame_next(&rx->r, &f)) == 1) {
        if (f.type != P2P_FRAME_ACK && f.type != P2P_FRAME_PADDING && f.type != P2P_FRAME_CLOSE &&
            (f.type < P2P_FRAME_RELAY || f.type >= P2P_FRAME_STREAM_LANE))
            rx->eliciting = 1;
        if (f.type != P2P_FRAME_PADDING && f.type != P2P_FRAME_PATH_CHALLENGE &&
            f.type != P2P_FRAME_PATH_RESPONSE)
            rx->probing = 0;
        if (f.type == P2P_FRAME_CLOSE) close = f.u.close_reason;
    }
    if (rc < 0 || ptlen == 0) {
        h->stats.dropped++;
        return P2P_RX_STOP;
    }
    p2p_replay_update(&p->replay, pn);
    p->last_recv = now;
    p->rx_packets++;
    p->rx_bytes += len;
    rx->newest = pn >= p->largest_recv_pn;
    if (rx->newest) p->largest_recv_pn = pn;
    p2p_rd_init(&rx->r, rx->pt, ptlen);
    if (p->state != P2P_S_FIN_SENT) return P2P_RX_OPEN;
    if (!p2p_addr_equal(from, &p->addr))
        return P2P_RX_STOP; /* confirmation only on the chosen path */
    if (close == P2P_CLOSE_DUPLICATE)
        return P2P_RX_SUPERSEDED; /* the session the peer dialled won */
    if (close >= 0) {
        if (!p->auto_dial)
            p2p_error(h, p,
                      close == P2P_CLOSE_DENIED ? "connection refused by peer"
                                                : "peer closed during handshake");
        p2p_kill(h, p);
        return P2P_RX_GONE;
    }
    return P2P_RX_CONFIRMED;
}

int p2p_peer_on_frames(p2p_host *h, p2p_peer *p, p2p_rx *rx, p2p_frame *f, uint64_t now)
{
    p2p_recovery_cb cb = {p, on_acked, on_lost};
    /* Any authenticated packet shows the path alive: the probe timeout's backoff restarts. */
    p2p_recovery_peer_alive(&p->rec);
    /* Stream bytes held back behind a routed record are read before the next frame. */
    if (!p->ctl_head && p->r_stopped) {
        p2p_lane *l = p->r_stopped;
        p->r_stopped = NULL;
        if (drain_pieces(h, p, l)) {
            protocol_error(h, p);
            return P2P_RX_GONE;
        }
        if (p->ctl_head) {
            p->r_stopped = l;
            return P2P_RX_RECORDS;
        }
    }
    while (p2p_frame_next(&rx->r, f) == 1) {
        switch (f->type) {
        case P2P_FRAME_ACK: {
            int arc = p2p_recovery_on_ack(&p->rec, f, now, &cb);
            if (arc == P2P_ERR_CRYPTO) {
                /* It acknowledged a packet number that was never used: it lies about what it
                 * received (docs/PROTOCOL.md section 5). */
                protocol_error(h, p);
                return P2P_RX_GONE;
            }
            if (arc)
                h->stats.dropped++;
            else
                p2p_acker_on_peer_ack(&p->acker, f);
            rec_sync(h, p);
            if (!p->rec.pto_streak) p->stalled = 0;
            break;
        }
        case P2P_FRAME_STREAM:
        case P2P_FRAME_STREAM_LANE: {
            int rc;
            p2p_lane *l = lane_get(h, p, f->lane, &rc);
            if (!l) { /* over the budget (counted): the packet goes unacknowledged */
                rx->refused = 1;
                break;
            }
            int got = stream_recv(h, p, l, f->u.stream.offset, f->u.stream.data, f->u.stream.len);
            if (got < 0) {
                protocol_error(h, p);
                return P2P_RX_GONE;
            }
            if (got > 0) rx->refused = 1; /* stream bytes were refused: no ACK for the packet */
            if (p->ctl_head) return P2P_RX_RECORDS;
            break;
        }
        case P2P_FRAME_MAX_STREAM:
        case P2P_FRAME_MAX_STREAM_LANE: {
            /* A grant for a lane we never sent on says nothing: it starts at the window. */
            p2p_lane *l = lane_at(p, f->lane);
            if (l && f->u.max_stream > l->peer_max) l->peer_max = f->u.max_stream;
            break;
        }
        case P2P_FRAME_DATAGRAM:
        case P2P_FRAME_DATAGRAM_SEQ: {
            p2p_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = P2P_EV_DATAGRAM;
            ev.msg_type = f->u.datagram.type;
            if (f->type == P2P_FRAME_DATAGRAM_SEQ) {
                /* Newest wins: one not newer than a datagram delivered on its lane is stale. */
                int rc;
                p2p_lane *l = lane_get(h, p, f->lane, &rc);
                if (!l) break; /* over the budget (counted): unreliable, so dropped */
                if (f->u.datagram.seq < l->dg_recv) {
                    h->stats.dropped_stale++;
                    break;
                }
                l->dg_recv = f->u.datagram.seq + 1;
                ev.lane = f->lane;
                ev.sequenced = 1;
                ev.seq = f->u.datagram.seq;
            }
            p2p_fill_event(p, &ev);
            p2p_event_push(h, &ev, f->u.datagram.data, (size_t)f->u.datagram.len);
            break;
        }
        case P2P_FRAME_CLOSE:
            p2p_peer_end(h, p,
                         f->u.close_reason == P2P_CLOSE_PROTOCOL ? P2P_LEAVE_PROTOCOL
                         : f->u.close_reason == P2P_CLOSE_DENIED ? P2P_LEAVE_DENIED
                                                                 : P2P_LEAVE_CLOSED,
                         0, 0);
            return P2P_RX_GONE;
        case P2P_FRAME_PING:
            /* The sender's window waits on this ACK (or it probes): acknowledge at once. */
            p2p_acker_now(&p->acker);
            break;
        case P2P_FRAME_PATH_CHALLENGE:
        case P2P_FRAME_PATH_RESPONSE: return P2P_RX_FRAME;
        case P2P_FRAME_RELAY:
        case P2P_FRAME_RELAYED:
            /* Relaying is one hop deep: nothing is relayed over a relayed path. */
            if (p->addr.family == P2P_AF_RELAY) break;
            return P2P_RX_FRAME;
        default: break;
        }
    }
    if (!rx->refused) p2p_acker_on_packet(&p->acker, rx->pn, rx->eliciting, now);
    p2p_ready(h, p);
    return P2P_RX_DONE;
}

p2p_ctl_rec *p2p_peer_take_record(p2p_peer *p)
{
    p2p_ctl_rec *c = p->ctl_head;
    if (!c) return NULL;
    p->ctl_head = c->next;
    if (!p->ctl_head) p->ctl_tail = NULL;
    p->ctl_lane = c->lane;
    return c;
}

void p2p_peer_record_done(p2p_ctl_rec *c)
{
    free(c->body);
    free(c);
}

void p2p_peer_protocol_error(p2p_host *h, p2p_peer *p)
{
    protocol_error(h, p);
}

/* ---- timers ----------------------------------------------------------------------------- */

static uint64_t keepalive(const p2p_host *h)
{
    return h->timeout / 4;
}

uint64_t p2p_peer_deadline(const p2p_host *h, const p2p_peer *p, int can_send, uint64_t path_dl)
{
    if (p->state == P2P_S_CLOSING) return p->close_copies ? h->now : P2P_TIME_NEVER;
    if (p->state != P2P_S_CONNECTED) return P2P_TIME_NEVER;
    if (p->mem_evict) return h->now;
    uint64_t d = p->last_recv + h->timeout;
    d = min_u64(d, p2p_keys_deadline(&p->keys));
    /* A path that cannot carry a packet now (its relay is gone, or an unproven address has
     * used its budget) has no send timers: they would fire without end. What it receives
     * wakes it (p2p_ready), and the idle timeout still ends it. */
    if (!can_send) return min_u64(d, path_dl);
    /* Nor has a session that has no sent-packet record yet and cannot get one because the
     * node's memory budget is spent (every packet is recorded): its timers would fire at
     * once, for ever. */
    if (!p->rec.cap && P2P_SENT_RECORD_MIN * sizeof(p2p_sent) - p->rec_held > p2p_mem_room(h, p))
        return min_u64(d, path_dl);
    d = min_u64(d, p->last_eliciting_sent + keepalive(h));
    d = min_u64(d, p->acker.deadline);
    d = min_u64(d, p2p_recovery_deadline(&p->rec));
    if (p->next_send_at) d = min_u64(d, p->next_send_at);
    return min_u64(d, path_dl);
}

int p2p_peer_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (p->state == P2P_S_CLOSING) {
        p2p_ready(h, p);
        return 0;
    }
    if (p->state != P2P_S_CONNECTED) return 0;
    if (p->mem_evict) {
        /* It held the most of a spent node budget (p2p_mem_take): it goes, so others can. */
        h->mem_evicting = 0;
        h->mem_evictions++;
        p2p_peer_end(h, p, P2P_LEAVE_PROTOCOL, 1, P2P_CLOSE_PROTOCOL);
        return 0;
    }
    if (now >= p->last_recv + h->timeout) {
        p2p_peer_end(h, p, P2P_LEAVE_TIMEOUT, 0, 0);
        return 0;
    }
    if (rekey_timer(h, p, now)) return 0;
    int r = P2P_TIMER_LIVE;
    p2p_recovery_cb cb = {p, on_acked, on_lost};
    if (p2p_recovery_on_timeout(&p->rec, now, &cb)) {
        p->probe_needed = P2P_PTO_PROBES;
        if (p->rec.pto_streak >= 3) r |= P2P_TIMER_STALLED;
    }
    rec_sync(h, p);
    if (now >= p->last_eliciting_sent + keepalive(h)) {
        p->ping_needed = 1;
        for (unsigned i = 0; i < lane_count(p); i++)
            release_idle_sbuf(h, p, lane_at(p, lane_made(p, i)));
    }
    if (p->next_send_at && now >= p->next_send_at) p->next_send_at = 0;
    return r;
}

/* ---- API -------------------------------------------------------------------------------- */

static p2p_peer *connected(p2p_host *h, p2p_peer_handle handle, uint64_t now)
{
    p2p_peer *p = p2p_lookup(h, handle);
    if (!p || p->state != P2P_S_CONNECTED || h->closed) return NULL;
    if (now > h->now) h->now = now;
    return p;
}

int p2p_peer_send_lane(p2p_host *h, p2p_peer_handle handle, uint8_t lane, uint16_t type,
                       const uint8_t *data, size_t len, int want_reply, uint64_t *seq, uint64_t now)
{
    if (lane > P2P_LANE_MAX) return P2P_ERR_INVALID;
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (len > p->peer_max_message || len > h->max_message) return P2P_ERR_TOO_BIG;
    int rc = 0;
    p2p_lane *l = lane ? lane_get(h, p, lane, &rc) : &p->l0;
    /* Over the peer's memory budget is, for the application, a full queue: try later. */
    if (!l) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    /* The queue limit is per lane: a full bulk lane does not stop the others. */
    if (l->send_end - l->sbase >= h->send_queue_limit) return P2P_ERR_FULL;
    p2p_record rec = {want_reply ? P2P_REC_MESSAGE_RECEIPT : P2P_REC_MESSAGE, type, 0, 0, len};
    uint64_t ordinal = l->records_sent;
    /* Replies the peer keeps back out of order split the awaited set: it has a cap. */
    if (want_reply && !receipt_room(p, l, 0, ordinal)) return P2P_ERR_FULL;
    if (want_reply && p2p_rangeset_add(&l->awaiting, ordinal, ordinal + 1)) return P2P_ERR_NOMEM;
    rc = append_record(h, p, l, &rec, data);
    if (rc) {
        p2p_rangeset_remove(&l->awaiting, ordinal, ordinal + 1);
        return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    }
    if (seq) *seq = ordinal;
    return 0;
}

int p2p_peer_send(p2p_host *h, p2p_peer_handle handle, uint16_t type, const uint8_t *data,
                  size_t len, int want_reply, uint64_t *seq, uint64_t now)
{
    return p2p_peer_send_lane(h, handle, 0, type, data, len, want_reply, seq, now);
}

int p2p_peer_reply_lane(p2p_host *h, p2p_peer_handle handle, uint8_t lane, uint64_t seq, int status,
                        const uint8_t *data, size_t len, uint64_t now)
{
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (status < P2P_REPLY_NIL || status > P2P_REPLY_ERROR) return P2P_ERR_INVALID;
    p2p_lane *l = lane > P2P_LANE_MAX ? NULL : lane_at(p, lane);
    if (!l || !p2p_rangeset_contains(&l->owed, seq)) return P2P_ERR_INVALID;
    if (len > p->peer_max_message) len = p->peer_max_message;
    if (status == P2P_REPLY_NIL) len = 0;
    /* Replies ride the control lane: a bulk transfer on any lane never holds them back. */
    int rc = append_reply(h, p, lane, seq, (uint8_t)status, data, len);
    if (!rc) p2p_rangeset_remove(&l->owed, seq, seq + 1);
    return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
}

int p2p_peer_reply(p2p_host *h, p2p_peer_handle handle, uint64_t seq, int status,
                   const uint8_t *data, size_t len, uint64_t now)
{
    return p2p_peer_reply_lane(h, handle, 0, seq, status, data, len, now);
}

/* Queues a datagram (sequenced on lane `lane`, or plain). */
static int queue_datagram(p2p_host *h, p2p_peer_handle handle, int sequenced, uint8_t lane,
                          uint16_t type, const uint8_t *data, size_t len, uint64_t now)
{
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (len > (sequenced ? P2P_MAX_DATAGRAM_SEQ : P2P_MAX_DATAGRAM)) return P2P_ERR_TOO_BIG;
    int rc;
    p2p_lane *l = NULL;
    if (sequenced && !(l = lane_get(h, p, lane, &rc)))
        return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    if (p->dq_count >= P2P_DATAGRAM_QUEUE) { /* unreliable: drop the oldest */
        p2p_dgram *old = p->dq_head;
        p->dq_head = old->next;
        if (!p->dq_head) p->dq_tail = NULL;
        p->dq_count--;
        dgram_free(h, p, old);
    }
    p2p_dgram *d = p2p_mem_alloc(h, p, sizeof *d + len, &rc);
    if (!d) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    d->next = NULL;
    d->type = type;
    d->len = (uint16_t)len;
    d->sequenced = (uint8_t)sequenced;
    d->lane = lane;
    d->seq = l ? l->dg_next++ : 0;
    if (len) memcpy(d->data, data, len);
    if (p->dq_tail)
        p->dq_tail->next = d;
    else
        p->dq_head = d;
    p->dq_tail = d;
    p->dq_count++;
    p2p_ready(h, p);
    return 0;
}

int p2p_peer_send_datagram(p2p_host *h, p2p_peer_handle handle, uint16_t type, const uint8_t *data,
                           size_t len, uint64_t now)
{
    return queue_datagram(h, handle, 0, 0, type, data, len, now);
}

int p2p_peer_send_sequenced(p2p_host *h, p2p_peer_handle handle, uint8_t lane, uint16_t type,
                            const uint8_t *data, size_t len, uint64_t now)
{
    if (lane > P2P_LANE_MAX) return P2P_ERR_INVALID;
    return queue_datagram(h, handle, 1, lane, type, data, len, now);
}

uint64_t p2p_peer_queued(const p2p_peer *p)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < lane_count(p); i++) {
        const p2p_lane *l = lane_at(p, lane_made(p, i));
        n += l->send_end - l->sbase;
    }
    return n;
}

/* ---- transfers -------------------------------------------------------------------------- */

size_t p2p_peer_unacked(const p2p_peer *p, int lane)
{
    const p2p_lane *l = lane >= 0 && lane < P2P_LANE_SLOTS ? lane_at(p, (uint8_t)lane) : NULL;
    return l ? (size_t)(l->send_end - l->sbase) : 0;
}

/* ---- observability ---------------------------------------------------------------------- */

static const char *cc_phase(const p2p_cc *cc)
{
    if (cc->kind == P2P_CC_NEWRENO) return cc->cwnd < cc->ssthresh ? "slow_start" : "avoidance";
    switch (cc->state) {
    case P2P_BBR_STARTUP: return "startup";
    case P2P_BBR_DRAIN: return "drain";
    case P2P_BBR_PROBE_BW: return "probe_bw";
    default: return "probe_rtt";
    }
}

/* issue 12: 1 when p's path is a stream the host opened as a WebSocket. */
static int p2p_peer_stream_ws(const p2p_host *h, const p2p_peer *p)
{
    uint32_t sid = p2p_get_u32(p->addr.ip);
    for (size_t i = 0; i < P2P_STREAMS; i++)
        if (h->streams[i].used && h->streams[i].sid == sid) return h->streams[i].ws;
    return 0;
}

int p2p_peer_stats_get(const p2p_host *h, p2p_peer_handle handle, p2p_peer_stats *out)
{
    memset(out, 0, sizeof *out);
    const p2p_peer *p = p2p_lookup(h, handle);
    if (!p) return P2P_ERR_PEER;
    const p2p_recovery *r = &p->rec;
    out->state = p->state == P2P_S_CONNECTED ? P2P_PEER_CONNECTED
                 : p->state == P2P_S_CLOSING ? P2P_PEER_DISCONNECTED
                                             : P2P_PEER_CONNECTING;
    out->packets_sent = p->tx_packets;
    out->bytes_sent = p->tx_bytes;
    out->packets_received = p->rx_packets;
    out->bytes_received = p->rx_bytes;
    out->eliciting_sent = p->tx_eliciting;
    out->retransmits = p->retransmits;
    out->lost = r->lost_packets;
    out->spurious = r->spurious_losses;
    if (p->tx_eliciting && r->lost_packets > r->spurious_losses)
        out->loss = (double)(r->lost_packets - r->spurious_losses) / (double)p->tx_eliciting;
    if (out->loss > 1) out->loss = 1;
    if (r->has_rtt) {
        out->srtt_us = r->srtt;
        out->rttvar_us = r->rttvar;
        out->min_rtt_us = r->min_rtt;
        out->latest_rtt_us = r->latest_rtt;
    }
    out->congestion = r->cc.kind;
    out->phase = cc_phase(&r->cc);
    out->cwnd = p2p_cc_window(&r->cc);
    out->in_flight = r->in_flight;
    out->bandwidth = p2p_cc_bandwidth(&r->cc);
    double rate = p2p_cc_pacing_rate(&r->cc, r->has_rtt ? r->srtt : 0) * 1e6;
    out->pacing_rate = rate > 0 && rate < 1.8e19 ? (uint64_t)rate : 0;
    out->congestion_events = r->cc.congestion_events;
    out->undos = r->cc.undos;
    out->direct = p->addr.family != P2P_AF_RELAY;
    out->address = p->addr;
    if (p->addr.family == P2P_AF_STREAM) { /* issue 12: the TCP endpoint it runs to */
        uint32_t sid = p2p_get_u32(p->addr.ip);
        for (size_t i = 0; i < P2P_STREAMS; i++)
            if (h->streams[i].used && h->streams[i].sid == sid)
                out->address = h->streams[i].peer_ip;
    }
    if (!out->direct) {
        const p2p_peer *relay = p2p_lookup_index(h, p2p_get_u32(p->addr.ip));
        memset(&out->address, 0, sizeof out->address);
        if (relay) {
            out->address = relay->addr;
            out->has_relay = relay->has_id;
            if (relay->has_id) memcpy(out->relay_id, relay->id, P2P_ID_LEN);
        }
    }
    out->mtu = p->mtu;
    /* issue 12: the kind of path, how the session tried to go direct, what it knows */
    if (p->addr.family == P2P_AF_RELAY)
        out->path = P2P_PATH_RELAYED;
    else if (p->addr.family == P2P_AF_STREAM)
        out->path = p2p_peer_stream_ws(h, p) ? P2P_PATH_WEBSOCKET : P2P_PATH_TCP;
    else
        out->path = P2P_PATH_DIRECT;
    out->strategy = p->strategy;
    out->peer_mapping = p->peer_mapping;
    out->punch_probes = p->punch_probes;
    out->ncands = p->npcand;
    memcpy(out->cands, p->pcand, sizeof out->cands);
    out->bytes_queued = p2p_peer_queued(p);
    out->datagrams_queued = p->dq_count;
    out->lanes = lane_count(p);
    return 0;
}

size_t p2p_peer_lane_stats_get(const p2p_host *h, p2p_peer_handle handle, p2p_lane_stats *out,
                               size_t cap)
{
    const p2p_peer *p = p2p_lookup(h, handle);
    if (!p) return 0;
    unsigned n = lane_count(p);
    for (unsigned i = 0; i < n && i < cap; i++) {
        const p2p_lane *l = lane_at(p, lane_made(p, i));
        p2p_lane_stats *s = &out[i];
        s->lane = l->id;
        s->queued_bytes = l->send_end - l->sbase;
        s->unsent_bytes = l->send_end - l->send_next;
        s->records_sent = l->records_sent;
        s->records_received = l->records_recv;
        s->queued_records =
            l->records_sent > l->records_acked ? l->records_sent - l->records_acked : 0;
    }
    return n;
}
