/*
 * p2p_peer.c - one established session (docs/PROTOCOL.md sections 2.2 to 6): sealing and
 * opening DATA packets, frames, the reliable message stream with its records, flow control,
 * unreliable datagrams, keepalives, timeouts and close.
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
    p->last_recv = now;
    p->last_eliciting_sent = now;
    p->window =
        (p->host->max_message > P2P_MESH_RECORD_MAX ? p->host->max_message : P2P_MESH_RECORD_MAX) +
        65536u;
    p->r_granted = p->window;
    if (!p->peer_max_message) p->peer_max_message = P2P_DEFAULT_MAX_MESSAGE;
    if (!p->peer_window) p->peer_window = 1u << 20;
    p->peer_max = p->peer_window;
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

void p2p_peer_release(p2p_peer *p)
{
    free(p->sbuf);
    p->sbuf = NULL;
    p2p_rangeset_free(&p->s_acked);
    p2p_rangeset_free(&p->s_lost);
    p2p_rangeset_free(&p->awaiting);
    p2p_rangeset_free(&p->owed);
    p2p_acker_free(&p->acker);
    p2p_recovery_free(&p->rec);
    /* What the session held is given back whole by p2p_kill. */
    p2p_pieces_free(&p->r_pieces, NULL);
    for (p2p_dgram *d = p->dq_head, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    p->dq_head = p->dq_tail = NULL;
    free(p->r_body);
    p->r_body = NULL;
    p->r_body_cap = 0;
    for (p2p_ctl_rec *c; (c = p2p_peer_take_record(p));) p2p_peer_record_done(c);
    p2p_keys_wipe(&p->keys);
}

/* ---- ending a session ------------------------------------------------------------------- */

void p2p_peer_end(p2p_host *h, p2p_peer *p, int reason, int send_close, uint8_t wire_reason)
{
    p2p_event ev;
    /* Every message still waiting for a reply learns that none will come. */
    for (size_t i = 0; i < p->awaiting.n; i++) {
        for (uint64_t s = p->awaiting.v[i].lo; s < p->awaiting.v[i].hi; s++) {
            memset(&ev, 0, sizeof ev);
            ev.type = P2P_EV_REPLY;
            ev.status = P2P_REPLY_LOST;
            ev.reason = reason;
            ev.seq = s;
            p2p_fill_event(p, &ev);
            p2p_event_push(h, &ev, NULL, 0);
        }
    }
    p2p_rangeset_clear(&p->awaiting);
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
    return P2P_DATA_HEADER + ptlen + P2P_TAG_LEN;
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

/* ---- send stream ------------------------------------------------------------------------ */

static void sbuf_read(const p2p_peer *p, uint64_t off, uint8_t *out, size_t len)
{
    while (len) {
        size_t at = (size_t)(off % p->scap);
        size_t run = p->scap - at < len ? p->scap - at : len;
        memcpy(out, p->sbuf + at, run);
        out += run;
        len -= run;
        off += run;
    }
}

/* The send ring holds bytes [sbase, send_end) at offset % scap. It grows to twice its size, or
 * to what it must hold if that is more (so one large message makes it just that large), and
 * its whole capacity is charged to the peer's budget. Returns 0, P2P_ERR_LIMIT (over the
 * budget) or P2P_ERR_NOMEM. */
static int sbuf_reserve(p2p_host *h, p2p_peer *p, uint64_t need)
{
    uint64_t used = p->send_end - p->sbase;
    if (used + need <= p->scap) return 0;
    uint64_t want = used + need, cap = p->scap ? 2 * (uint64_t)p->scap : 4096;
    if (cap < want) cap = want;
    if (cap - p->scap > p2p_mem_room(h, p)) cap = want; /* near the budget: no spare room */
    if (cap > SIZE_MAX) return P2P_ERR_NOMEM;
    if (p2p_mem_take(h, p, (size_t)(cap - p->scap))) return P2P_ERR_LIMIT;
    uint8_t *nb = malloc((size_t)cap);
    if (!nb) {
        p2p_mem_give(h, p, (size_t)(cap - p->scap));
        return P2P_ERR_NOMEM;
    }
    if (used) {
        size_t at = (size_t)(p->sbase % cap);
        size_t run = cap - at < used ? (size_t)(cap - at) : (size_t)used;
        sbuf_read(p, p->sbase, nb + at, run);
        if (run < used) sbuf_read(p, p->sbase + run, nb, (size_t)used - run);
    }
    free(p->sbuf);
    p->sbuf = nb;
    p->scap = (size_t)cap;
    return 0;
}

static void sbuf_write(p2p_peer *p, const uint8_t *data, size_t len)
{
    while (len) {
        size_t at = (size_t)(p->send_end % p->scap);
        size_t run = p->scap - at < len ? p->scap - at : len;
        memcpy(p->sbuf + at, data, run);
        data += run;
        len -= run;
        p->send_end += run;
    }
}

static int append_record(p2p_host *h, p2p_peer *p, const p2p_record *rec, const uint8_t *data);

int p2p_peer_append(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len)
{
    p2p_record rec = {kind, 0, 0, 0, len};
    return append_record(h, p, &rec, body);
}

/* Frees a queued datagram and gives back its charge. */
static void dgram_free(p2p_host *h, p2p_peer *p, p2p_dgram *d)
{
    p2p_mem_give(h, p, sizeof *d + d->len);
    free(d);
}

static int append_record(p2p_host *h, p2p_peer *p, const p2p_record *rec, const uint8_t *data)
{
    uint8_t hdr[P2P_RECORD_HEADER_MAX];
    size_t hl = p2p_record_encode(hdr, rec);
    int rc = sbuf_reserve(h, p, hl + rec->len);
    if (rc) return rc;
    sbuf_write(p, hdr, hl);
    if (rec->len) sbuf_write(p, data, (size_t)rec->len);
    p->records_sent++;
    p2p_ready(h, p);
    return 0;
}

/* Frees the front of the ring once the peer acknowledged it. */
static void advance_sbase(p2p_host *h, p2p_peer *p)
{
    if (!p->s_acked.n || p->s_acked.v[0].lo > p->sbase || p->s_acked.v[0].hi <= p->sbase) return;
    p->sbase = p->s_acked.v[0].hi;
    p2p_rangeset_remove(&p->s_acked, 0, p->sbase);
    p2p_rangeset_remove(&p->s_lost, 0, p->sbase);
    if (p->sbase == p->send_end && p->scap > 4096) {
        p2p_mem_give(h, p, p->scap);
        free(p->sbuf); /* an idle session gives its send buffer back */
        p->sbuf = NULL;
        p->scap = 0;
    }
}

static void on_acked(void *ud, const p2p_sent *s)
{
    p2p_peer *p = ud;
    if (s->flags & P2P_SENT_MTU_PROBE) mtu_probe_result(p, s, 1);
    /* A late ACK for bytes a retransmission already got acknowledged says nothing new. */
    if (s->stream_len && s->stream_off + s->stream_len > p->sbase) {
        uint64_t lo = s->stream_off > p->sbase ? s->stream_off : p->sbase;
        p2p_rangeset_add(&p->s_acked, lo, s->stream_off + s->stream_len);
        advance_sbase(p->host, p);
    }
}

static void on_lost(void *ud, const p2p_sent *s)
{
    p2p_peer *p = ud;
    if (s->flags & P2P_SENT_MTU_PROBE) mtu_probe_result(p, s, 0);
    if (s->stream_len && s->stream_off + s->stream_len > p->sbase)
        p2p_rangeset_add(&p->s_lost, s->stream_off, s->stream_off + s->stream_len);
    if (s->flags & P2P_SENT_MAX_STREAM) p->need_max_stream = 1;
}

/* The next stream range to resend: the first lost range not since acknowledged. */
static int next_lost(p2p_peer *p, uint64_t *lo, uint64_t *hi)
{
    while (p->s_lost.n) {
        p2p_range r = p->s_lost.v[0];
        if (r.lo < p->sbase) r.lo = p->sbase;
        if (r.lo < r.hi && p2p_rangeset_first_gap(&p->s_acked, r.lo, r.hi, lo, hi)) return 1;
        p2p_rangeset_remove(&p->s_lost, p->s_lost.v[0].lo, p->s_lost.v[0].hi);
    }
    return 0;
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
    int retransmit = 0;

    int want = p2p_acker_wants(&p->acker, now);
    if (p->acker.pending || want) {
        /* Piggyback a pending ACK on anything else we send; send it alone only when due. */
        int other = p->need_max_stream || p->dq_head || p->ping_needed || p->probe_needed ||
                    p->s_lost.n || p->send_next < p->send_end;
        if (want || other) {
            if (p2p_acker_write(&p->acker, &w, now) == 0)
                has_ack = 1;
            else
                w.bad = 0;
        }
    }
    if (p->need_max_stream) {
        p2p_wr_u8(&w, P2P_FRAME_MAX_STREAM);
        p2p_wr_varint(&w, p->r_granted);
        p->need_max_stream = 0;
        flags |= P2P_SENT_ELICITING | P2P_SENT_MAX_STREAM;
    }
    /* A datagram that no packet on this path can hold (a relayed path is smaller) is lost. */
    while (p->dq_head && (size_t)p->dq_head->len + 5 > limit - P2P_DATA_HEADER - P2P_TAG_LEN) {
        p2p_dgram *d = p->dq_head;
        p->dq_head = d->next;
        if (!p->dq_head) p->dq_tail = NULL;
        p->dq_count--;
        dgram_free(h, p, d);
        h->stats.dropped++;
    }
    while (p->dq_head && p2p_wr_left(&w) >= 1 + 2 + 2 + (size_t)p->dq_head->len) {
        p2p_dgram *d = p->dq_head;
        p2p_wr_u8(&w, P2P_FRAME_DATAGRAM);
        p2p_wr_u16(&w, d->type);
        p2p_wr_varint(&w, d->len);
        p2p_wr_bytes(&w, d->data, d->len);
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
    }
    /* Stream data: what was lost first, then new bytes within the peer's grant. */
    size_t room = p2p_wr_left(&w);
    int probe = p->probe_needed;
    if (probe && !p->s_lost.n && p->send_next >= p->send_end && p->sbase < p->send_next) {
        /* A probe resends the oldest unacknowledged bytes when there is nothing new. */
        uint64_t glo, ghi;
        if (p2p_rangeset_first_gap(&p->s_acked, p->sbase, p->send_next, &glo, &ghi))
            p2p_rangeset_add(&p->s_lost, glo, ghi);
    }
    uint64_t lo = 0, hi = 0;
    int have = 0;
    if (next_lost(p, &lo, &hi)) {
        have = 1;
        retransmit = 1;
    } else if (p->send_next < p->send_end && p->send_next < p->peer_max) {
        lo = p->send_next;
        hi = p->send_end < p->peer_max ? p->send_end : p->peer_max;
        have = 1;
    }
    if (have && room > 8) {
        uint64_t n = hi - lo;
        size_t hl = p2p_frame_stream_header_len(lo, n < room ? n : room);
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
            p2p_frame_put_stream_header(&w, lo, n);
            if (!w.bad && p2p_wr_left(&w) >= n) {
                sbuf_read(p, lo, w.p, (size_t)n);
                w.p += n;
                s_off = lo;
                s_len = (uint32_t)n;
                flags |= P2P_SENT_ELICITING;
                if (retransmit)
                    p2p_rangeset_remove(&p->s_lost, lo, lo + n);
                else
                    p->send_next = lo + n;
                p->next_send_at = 0;
            }
        }
    }
    /* Nothing to send within the window: rate samples from now on are app-limited. */
    if (!have) p2p_recovery_app_limited(&p->rec);
    if (probe && !(flags & P2P_SENT_ELICITING)) { /* nothing else to probe with */
        p2p_wr_u8(&w, P2P_FRAME_PING);
        flags |= P2P_SENT_ELICITING;
    }
    if (p->probe_needed) p->probe_needed--; /* P2P_PTO_PROBES of them per timeout */
    size_t ptlen = (size_t)(w.p - pt);
    if (!ptlen || w.bad) return 0;
    uint64_t pn = p->rec.next_pn;
    size_t n = seal(p, pt, ptlen, out, pn);
    if (p2p_recovery_on_sent(&p->rec, now, n, flags, s_off, s_len, &pn)) return 0;
    if (has_ack) p2p_acker_sent(&p->acker);
    if (flags & P2P_SENT_ELICITING) {
        p->last_eliciting_sent = now;
        p2p_recovery_pace_spend(&p->rec, now, n);
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

/* Hands a complete record to the application. Returns 0; 1 when the event it makes cannot be
 * queued now (the node's budget is spent): nothing is done and the caller refuses the record's
 * last byte, so that the peer sends it again, rather than the record being acknowledged and
 * lost; or -1 on a protocol error. */
static int deliver_record(p2p_host *h, p2p_peer *p)
{
    p2p_record *rec = &p->r_cur;
    if (rec->kind < P2P_REC_MEMBERS && !p2p_event_room(h, p, (size_t)rec->len, p->r_body_cap))
        return 1;
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    p2p_fill_event(p, &ev);
    /* The body leaves the session's budget: an event is charged to the node's. */
    uint8_t *body = p->r_body;
    p2p_mem_give(h, p, p->r_body_cap);
    p->r_body = NULL;
    p->r_body_cap = 0;
    if (!body && !(body = malloc(1))) return -1; /* an empty record */
    uint64_t ordinal = p->records_recv++;
    int queue = rec->kind < P2P_REC_MEMBERS;
    if (rec->kind >= P2P_REC_MEMBERS) {
        /* The host hands it to the mesh or NAT when the STREAM frame is read (P2P_RX_RECORDS). */
        p2p_ctl_rec *c = malloc(sizeof *c);
        if (!c) {
            free(body);
            return -1;
        }
        c->next = NULL;
        c->kind = rec->kind;
        c->len = (size_t)rec->len;
        c->body = body;
        if (p->ctl_tail)
            p->ctl_tail->next = c;
        else
            p->ctl_head = c;
        p->ctl_tail = c;
    } else if (rec->kind == P2P_REC_REPLY) {
        if (!p2p_rangeset_contains(&p->awaiting, rec->ref)) {
            free(body);
            return -1;
        }
        p2p_rangeset_remove(&p->awaiting, rec->ref, rec->ref + 1);
        ev.type = P2P_EV_REPLY;
        ev.seq = rec->ref;
        ev.status = rec->status;
    } else {
        ev.type = P2P_EV_MESSAGE;
        ev.msg_type = rec->type;
        ev.seq = ordinal;
        const p2p_rangeset *o = &p->owed;
        if (rec->kind == P2P_REC_MESSAGE_RECEIPT && o->n >= P2P_RECEIPT_RANGES &&
            o->v[o->n - 1].hi != ordinal) {
            /* Too many requests wait for the application's answer: this one is refused at
             * once with an error reply rather than remembered. */
            static const char busy[] = "too many requests awaiting a reply";
            p2p_record r = {P2P_REC_REPLY, 0, ordinal, P2P_REPLY_ERROR, sizeof busy - 1};
            h->stats.dropped_budget++;
            free(body);
            if (append_record(h, p, &r, (const uint8_t *)busy)) return -1;
            queue = 0;
        } else if (rec->kind == P2P_REC_MESSAGE_RECEIPT) {
            ev.want_reply = 1;
            if (p2p_rangeset_add(&p->owed, ordinal, ordinal + 1)) {
                free(body);
                return -1;
            }
        }
    }
    if (queue) p2p_event_push_owned(h, &ev, body, (size_t)rec->len);
    p->r_consumed += p->r_hdr_len + rec->len;
    p->r_in_body = 0;
    p->r_hdr_len = 0;
    p->r_body_got = 0;
    if (p->r_consumed + p->window - p->r_granted >= p->window / 2) {
        p->r_granted = p->r_consumed + p->window;
        p->need_max_stream = 1;
    }
    return 0;
}

/* Makes the body buffer hold at least want bytes of the current record: it doubles from
 * P2P_BODY_FIRST, never past the record's length, and is charged to the peer's budget (so a
 * header that claims a large record costs nothing until the bytes come). Returns 0 or -1
 * when the budget (or malloc) refuses. */
static int body_reserve(p2p_host *h, p2p_peer *p, uint64_t want)
{
    if (want <= p->r_body_cap) return 0;
    uint64_t cap = p->r_body_cap ? 2 * (uint64_t)p->r_body_cap : P2P_BODY_FIRST;
    if (cap < want) cap = want;
    if (cap > p->r_cur.len) cap = p->r_cur.len;
    if (cap - p->r_body_cap > p2p_mem_room(h, p)) cap = want;
    if (p2p_mem_take(h, p, (size_t)(cap - p->r_body_cap))) return -1;
    uint8_t *nb = realloc(p->r_body, (size_t)cap);
    if (!nb) {
        p2p_mem_give(h, p, (size_t)(cap - p->r_body_cap));
        return -1;
    }
    p->r_body = nb;
    p->r_body_cap = (size_t)cap;
    return 0;
}

/* Feeds in-order stream bytes to the record parser. *used says how many it took: all, or
 * fewer when the budget cannot hold more of the current record (the rest must come again).
 * Returns 0 or -1 (protocol error). */
static int feed(p2p_host *h, p2p_peer *p, const uint8_t *data, size_t len, size_t *used)
{
    size_t at = 0;
    *used = 0;
    /* Records are taken in stream order: while a mesh or NAT record waits for the host,
     * nothing after it is read (so a bad record ends the session before anything behind it is
     * delivered, and events keep the order the peer sent them in). */
    if (p->ctl_head) return 0;
    while (at < len) {
        if (!p->r_in_body) {
            size_t old = p->r_hdr_len;
            size_t take = sizeof p->r_hdr - old < len - at ? sizeof p->r_hdr - old : len - at;
            memcpy(p->r_hdr + old, data + at, take);
            p->r_hdr_len = old + take;
            int hl = p2p_record_parse(p->r_hdr, p->r_hdr_len, &p->r_cur);
            if (hl < 0) return -1;
            if (hl == 0) {
                if (p->r_hdr_len >= sizeof p->r_hdr) return -1;
                at += take;
                *used = at;
                continue;
            }
            at += (size_t)hl - old;
            p->r_hdr_len = (size_t)hl;
            uint64_t limit = p->r_cur.kind == P2P_REC_BROADCAST ? (uint64_t)h->max_message + 106
                             : p->r_cur.kind >= P2P_REC_MEMBERS ? P2P_MESH_RECORD_MAX
                                                                : h->max_message;
            if (p->r_cur.len > limit) return -1;
            p->r_in_body = 1;
            p->r_body_got = 0;
        }
        uint64_t need = p->r_cur.len - p->r_body_got;
        size_t take = need < len - at ? (size_t)need : len - at;
        if (take) {
            if (body_reserve(h, p, p->r_body_got + take)) break;
            memcpy(p->r_body + p->r_body_got, data + at, take);
            p->r_body_got += take;
            at += take;
        }
        *used = at;
        if (p->r_body_got == p->r_cur.len) {
            int d = deliver_record(h, p);
            if (d < 0) return -1;
            if (d > 0) {
                /* Not taken: the record's last byte (of its body, or of its header when it has
                 * no body) is refused and comes again. */
                if (p->r_cur.len) {
                    p->r_body_got--;
                } else {
                    p->r_in_body = 0;
                    p->r_hdr_len--;
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

/* Feeds the held pieces that the in-order part of the stream has reached. Returns 0, or -1
 * on a protocol error. A piece the budget cannot take in yet stays held. */
static int drain_pieces(p2p_host *h, p2p_peer *p)
{
    p2p_budget b = peer_budget(p);
    const p2p_piece *s;
    while ((s = p2p_pieces_first(&p->r_pieces)) && s->off <= p->r_base) {
        uint64_t end = s->off + s->len;
        if (end > p->r_base) {
            size_t skip = (size_t)(p->r_base - s->off), n = (size_t)(end - p->r_base), used;
            if (feed(h, p, s->buf + (s->off - s->start) + skip, n, &used)) return -1;
            p->r_base += used;
            if (used < n) return 0;
        }
        p2p_pieces_pop(&p->r_pieces, &b);
    }
    return 0;
}

/* Takes the stream bytes of one STREAM frame. Returns 0; 1 when some were refused (over the
 * piece cap or the memory budget: the packet must not be acknowledged, so that the sender
 * sends them again); or -1 on a protocol error. */
/* Holds stream bytes [off, off + len) as a piece, merged with its neighbours. The tree's
 * priorities start from the node's randomness, which the peer cannot predict. Returns 0, or 1
 * when the piece cap or the budget refused them. */
static int hold_piece(p2p_host *h, p2p_peer *p, uint64_t off, const uint8_t *data, size_t len)
{
    p2p_budget b = peer_budget(p);
    while (!p->r_pieces.seed) p->r_pieces.seed = p2p_rng_u32(&h->rng);
    if (p2p_pieces_add(&p->r_pieces, off, data, len, p->r_base, p->r_granted, &b)) {
        h->stats.dropped_budget++;
        return 1;
    }
    return 0;
}

static int stream_recv(p2p_host *h, p2p_peer *p, uint64_t off, const uint8_t *data, uint64_t len)
{
    if (off + len > p->r_granted) return -1; /* past the flow-control grant */
    if (off + len <= p->r_base) return 0;    /* all seen before */
    if (off < p->r_base) {
        data += p->r_base - off;
        len -= p->r_base - off;
        off = p->r_base;
    }
    int refused;
    if (off > p->r_base) {
        refused = hold_piece(h, p, off, data, (size_t)len); /* out of order */
    } else {
        size_t used;
        if (feed(h, p, data, (size_t)len, &used)) return -1;
        p->r_base += used;
        if (used < len && p->ctl_head)
            /* Stopped behind a record the host routes first: the rest waits as a piece and
             * is read when the host asks for the next frame (p2p_peer_on_frames). */
            refused = hold_piece(h, p, p->r_base, data + used, (size_t)len - used);
        else
            refused = used < len;
    }
    if (drain_pieces(h, p)) return -1;
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
            f.type < P2P_FRAME_RELAY)
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
    if (!p->ctl_head && p->r_pieces.n) {
        if (drain_pieces(h, p)) {
            protocol_error(h, p);
            return P2P_RX_GONE;
        }
        if (p->ctl_head) return P2P_RX_RECORDS;
    }
    while (p2p_frame_next(&rx->r, f) == 1) {
        switch (f->type) {
        case P2P_FRAME_ACK:
            if (p2p_recovery_on_ack(&p->rec, f, now, &cb)) h->stats.dropped++;
            rec_sync(h, p);
            if (!p->rec.pto_streak) p->stalled = 0;
            break;
        case P2P_FRAME_STREAM: {
            int got = stream_recv(h, p, f->u.stream.offset, f->u.stream.data, f->u.stream.len);
            if (got < 0) {
                protocol_error(h, p);
                return P2P_RX_GONE;
            }
            if (got > 0) rx->refused = 1; /* stream bytes were refused: no ACK for the packet */
            if (p->ctl_head) return P2P_RX_RECORDS;
            break;
        }
        case P2P_FRAME_MAX_STREAM:
            if (f->u.max_stream > p->peer_max) p->peer_max = f->u.max_stream;
            break;
        case P2P_FRAME_DATAGRAM: {
            p2p_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = P2P_EV_DATAGRAM;
            ev.msg_type = f->u.datagram.type;
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
    if (now >= p->last_eliciting_sent + keepalive(h)) p->ping_needed = 1;
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

int p2p_peer_send(p2p_host *h, p2p_peer_handle handle, uint16_t type, const uint8_t *data,
                  size_t len, int want_reply, uint64_t *seq, uint64_t now)
{
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (len > p->peer_max_message || len > h->max_message) return P2P_ERR_TOO_BIG;
    if (p->send_end - p->sbase >= h->send_queue_limit) return P2P_ERR_FULL;
    p2p_record rec = {want_reply ? P2P_REC_MESSAGE_RECEIPT : P2P_REC_MESSAGE, type, 0, 0, len};
    uint64_t ordinal = p->records_sent;
    /* Replies the peer keeps back out of order split the awaited set: it has a cap. */
    const p2p_rangeset *aw = &p->awaiting;
    if (want_reply && aw->n >= P2P_RECEIPT_RANGES && aw->v[aw->n - 1].hi != ordinal)
        return P2P_ERR_FULL;
    if (want_reply && p2p_rangeset_add(&p->awaiting, ordinal, ordinal + 1)) return P2P_ERR_NOMEM;
    int rc = append_record(h, p, &rec, data);
    if (rc) {
        p2p_rangeset_remove(&p->awaiting, ordinal, ordinal + 1);
        /* Over the peer's memory budget is, for the application, a full queue: try later. */
        return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    }
    if (seq) *seq = ordinal;
    return 0;
}

int p2p_peer_reply(p2p_host *h, p2p_peer_handle handle, uint64_t seq, int status,
                   const uint8_t *data, size_t len, uint64_t now)
{
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (status < P2P_REPLY_NIL || status > P2P_REPLY_ERROR) return P2P_ERR_INVALID;
    if (!p2p_rangeset_contains(&p->owed, seq)) return P2P_ERR_INVALID;
    if (len > p->peer_max_message) len = p->peer_max_message;
    if (status == P2P_REPLY_NIL) len = 0;
    p2p_record rec = {P2P_REC_REPLY, 0, seq, (uint8_t)status, len};
    int rc = append_record(h, p, &rec, data);
    if (!rc) p2p_rangeset_remove(&p->owed, seq, seq + 1);
    return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
}

int p2p_peer_send_datagram(p2p_host *h, p2p_peer_handle handle, uint16_t type, const uint8_t *data,
                           size_t len, uint64_t now)
{
    p2p_peer *p = connected(h, handle, now);
    if (!p) return P2P_ERR_PEER;
    if (len > P2P_MAX_DATAGRAM) return P2P_ERR_TOO_BIG;
    if (p->dq_count >= P2P_DATAGRAM_QUEUE) { /* unreliable: drop the oldest */
        p2p_dgram *old = p->dq_head;
        p->dq_head = old->next;
        if (!p->dq_head) p->dq_tail = NULL;
        p->dq_count--;
        dgram_free(h, p, old);
    }
    int rc;
    p2p_dgram *d = p2p_mem_alloc(h, p, sizeof *d + len, &rc);
    if (!d) return rc == P2P_ERR_LIMIT ? P2P_ERR_FULL : rc;
    d->next = NULL;
    d->type = type;
    d->len = (uint16_t)len;
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
