/* p2p_reliable.c - replay window, acknowledgements, loss recovery and congestion control
 * (RFC 9002 is the model; docs/PROTOCOL.md section 5 is the contract). */
#include "p2p_reliable.h"
#include "p2pnet.h"

#include <stdlib.h>
#include <string.h>

/* ---- replay window ---------------------------------------------------------------------- */

int p2p_replay_check(const p2p_replay *w, uint64_t pn)
{
    if (!w->any || pn > w->largest) return 0;
    uint64_t back = w->largest - pn;
    if (back >= P2P_REPLAY_WINDOW) return -1;
    const uint64_t words = P2P_REPLAY_WINDOW / P2P_REPLAY_WORD_BITS + 1;
    return (w->bits[(pn / P2P_REPLAY_WORD_BITS) % words] >> (pn % P2P_REPLAY_WORD_BITS)) & 1 ? -1
                                                                                             : 0;
}

void p2p_replay_update(p2p_replay *w, uint64_t pn)
{
    const uint64_t words = P2P_REPLAY_WINDOW / P2P_REPLAY_WORD_BITS + 1;
    if (!w->any) {
        memset(w->bits, 0, sizeof w->bits);
        w->any = 1;
        w->largest = pn;
    } else if (pn > w->largest) {
        /* Clear the words that slide into the window. */
        uint64_t from = w->largest / P2P_REPLAY_WORD_BITS + 1, to = pn / P2P_REPLAY_WORD_BITS;
        if (to - from + 1 >= words || to < from) {
            if (to >= from) memset(w->bits, 0, sizeof w->bits);
        } else {
            for (uint64_t i = from; i <= to; i++) w->bits[i % words] = 0;
        }
        w->largest = pn;
    }
    w->bits[(pn / P2P_REPLAY_WORD_BITS) % words] |= UINT64_C(1) << (pn % P2P_REPLAY_WORD_BITS);
}

/* ---- acknowledging ---------------------------------------------------------------------- */

void p2p_acker_init(p2p_acker *a)
{
    memset(a, 0, sizeof *a);
    p2p_rangeset_init(&a->received);
    a->deadline = P2P_TIME_NEVER;
}

void p2p_acker_free(p2p_acker *a)
{
    p2p_rangeset_free(&a->received);
}

int p2p_acker_on_packet(p2p_acker *a, uint64_t pn, int ack_eliciting, uint64_t now)
{
    const p2p_rangeset *s = &a->received;
    /* A packet below the largest, or one with a gap just below it, means reordering or loss:
     * the sender learns it sooner with an immediate ACK (RFC 9000 section 13.2.1). Old holes
     * never fill (lost data is resent under new numbers), so they do not count. */
    int out_of_order = s->n && pn != s->v[s->n - 1].hi;
    if (!s->n || pn >= s->v[s->n - 1].hi) a->largest_time = now;
    if (p2p_rangeset_add(&a->received, pn, pn + 1)) return P2P_ERR_NOMEM;
    p2p_rangeset_trim(&a->received, P2P_ACK_RANGES_KEPT);
    if (!ack_eliciting) return 0;
    a->count++;
    a->pending++;
    unsigned threshold = a->count > P2P_ACK_BULK_AFTER ? P2P_ACK_THRESHOLD_BULK : P2P_ACK_THRESHOLD;
    if (out_of_order || a->pending >= threshold) a->ack_now = 1;
    if (a->deadline == P2P_TIME_NEVER) a->deadline = now + P2P_MAX_ACK_DELAY_US;
    return 0;
}

void p2p_acker_now(p2p_acker *a)
{
    a->ack_now = 1;
}

int p2p_acker_wants(const p2p_acker *a, uint64_t now)
{
    return a->ack_now || (a->deadline != P2P_TIME_NEVER && now >= a->deadline);
}

int p2p_acker_write(p2p_acker *a, p2p_wr *w, uint64_t now)
{
    const p2p_rangeset *s = &a->received;
    if (!s->n) return 0;
    p2p_ack_range r[P2P_ACK_RANGES_KEPT];
    size_t n = 0;
    for (size_t i = s->n; i-- > 0 && n < P2P_ACK_RANGES_KEPT;) {
        r[n].lo = s->v[i].lo;
        r[n].hi = s->v[i].hi - 1;
        n++;
    }
    uint64_t delay = now > a->largest_time ? now - a->largest_time : 0;
    return p2p_frame_put_ack(w, delay, r, n);
}

void p2p_acker_sent(p2p_acker *a)
{
    a->pending = 0;
    a->ack_now = 0;
    a->deadline = P2P_TIME_NEVER;
}

void p2p_acker_carried(p2p_acker *a, uint64_t pn)
{
    /* Nothing arrives between writing the ACK and sending its packet: the frame reported up to
     * the largest number received. */
    if (!a->received.n) return;
    if (a->carriers == P2P_ACK_CARRIERS) {
        memmove(&a->carrier[0], &a->carrier[1], sizeof a->carrier[0] * (P2P_ACK_CARRIERS - 1));
        a->carriers--;
    }
    a->carrier[a->carriers].pn = pn;
    a->carrier[a->carriers].largest = a->received.v[a->received.n - 1].hi - 1;
    a->carriers++;
}

static int frame_acks(const p2p_frame *ack, uint64_t pn)
{
    for (size_t i = 0; i < ack->u.ack.count; i++)
        if (pn >= ack->u.ack.r[i].lo && pn <= ack->u.ack.r[i].hi) return 1;
    return 0;
}

void p2p_acker_on_peer_ack(p2p_acker *a, const p2p_frame *ack)
{
    /* The newest carrier acknowledged wins: every one before it reported no more. */
    for (unsigned i = a->carriers; i-- > 0;) {
        if (!frame_acks(ack, a->carrier[i].pn)) continue;
        uint64_t largest = a->carrier[i].largest;
        unsigned left = a->carriers - (i + 1);
        memmove(&a->carrier[0], &a->carrier[i + 1], sizeof a->carrier[0] * left);
        a->carriers = left;
        /* Keep the range holding `largest` (the next ACK's first range still starts there)
         * and forget those below it. */
        p2p_rangeset *s = &a->received;
        for (size_t k = s->n; k-- > 0;) {
            if (s->v[k].lo <= largest && largest < s->v[k].hi) {
                if (k) p2p_rangeset_remove(s, 0, s->v[k].lo);
                break;
            }
        }
        return;
    }
}

/* ---- recovery --------------------------------------------------------------------------- */

void p2p_recovery_init(p2p_recovery *r, uint64_t now)
{
    memset(r, 0, sizeof *r);
    r->loss_time = P2P_TIME_NEVER;
    r->srtt = P2P_INITIAL_RTT_US;
    r->rttvar = P2P_INITIAL_RTT_US / 2;
    r->min_rtt = UINT64_MAX;
    r->mss = P2P_MAX_PACKET;
    r->pkt_thresh = P2P_PACKET_THRESHOLD;
    r->tokens = P2P_PACING_BURST;
    r->pace_time = now;
    r->delivered_time = now;
    r->first_sent_time = now;
    p2p_cc_init(&r->cc, P2P_CC_NEWRENO, 0, now);
}

void p2p_recovery_set_cc(p2p_recovery *r, int kind, uint64_t seed, uint64_t now)
{
    p2p_cc_init(&r->cc, kind, seed, now);
    p2p_cc_set_mss(&r->cc, r->mss);
}

void p2p_recovery_free(p2p_recovery *r)
{
    free(r->ring);
    r->ring = NULL;
    r->cap = 0;
}

static p2p_sent *sent_at(const p2p_recovery *r, uint64_t pn)
{
    return &r->ring[pn & (r->cap - 1)];
}

static uint64_t skip_gap(p2p_recovery *r)
{
    /* xorshift64: the gaps only need to be unknown to the peer, which the seed makes them */
    r->skip_rng ^= r->skip_rng << 13;
    r->skip_rng ^= r->skip_rng >> 7;
    r->skip_rng ^= r->skip_rng << 17;
    return P2P_SKIP_MIN + r->skip_rng % P2P_SKIP_SPAN;
}

void p2p_recovery_seed_skips(p2p_recovery *r, uint64_t seed)
{
    r->skip_rng = seed ? seed : 1;
    r->skip_at = r->next_pn + skip_gap(r);
}

uint64_t p2p_recovery_next_pn(p2p_recovery *r, uint64_t now)
{
    if (r->skip_at && r->next_pn >= r->skip_at) {
        uint64_t pn;
        /* An entry like an ACK-only packet's: resolved at once, never resent or counted. */
        if (p2p_recovery_on_sent(r, now, 0, 0, 0, 0, &pn) == 0) {
            r->skipped[r->skipped_n % P2P_SKIPPED_KEPT] = pn;
            r->skipped_n++;
        }
        r->skip_at = r->next_pn + skip_gap(r);
    }
    return r->next_pn;
}

/* 1 when [lo, hi] holds a packet number that was left out. */
static int claims_skipped(const p2p_recovery *r, uint64_t lo, uint64_t hi)
{
    unsigned n = r->skipped_n < P2P_SKIPPED_KEPT ? r->skipped_n : P2P_SKIPPED_KEPT;
    for (unsigned i = 0; i < n; i++)
        if (r->skipped[i] >= lo && r->skipped[i] <= hi) return 1;
    return 0;
}

p2p_sent *p2p_recovery_sent(p2p_recovery *r, uint64_t pn)
{
    return sent_at(r, pn);
}

static uint32_t age32(uint64_t now, uint64_t then)
{
    uint64_t d = now > then ? now - then : 0;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

int p2p_recovery_on_sent(p2p_recovery *r, uint64_t now, size_t size, uint8_t flags,
                         uint64_t stream_off, uint32_t stream_len, uint64_t *pn)
{
    if (r->next_pn - r->base_pn >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : P2P_SENT_RECORD_MIN;
        if (cap > P2P_SENT_RECORD_MAX) return P2P_ERR_NOMEM;
        p2p_sent *ring = malloc(cap * sizeof *ring);
        if (!ring) return P2P_ERR_NOMEM;
        for (uint64_t p = r->base_pn; p < r->next_pn; p++) ring[p & (cap - 1)] = *sent_at(r, p);
        free(r->ring);
        r->ring = ring;
        r->cap = cap;
    }
    p2p_sent *s = sent_at(r, r->next_pn);
    s->time = now;
    s->size = (uint16_t)size;
    s->flags = flags;
    s->stream_off = stream_off;
    s->stream_len = stream_len;
    s->lane = 0;
    if (flags & P2P_SENT_ELICITING) {
        /* A flow starting from idle begins a new sampling interval now. */
        if (!r->in_flight) r->first_sent_time = r->delivered_time = now;
        s->delivered = r->delivered;
        s->delivered_age = age32(now, r->delivered_time);
        s->first_sent_age = age32(now, r->first_sent_time);
        if (r->app_limited) s->flags |= P2P_SENT_APP_LIMITED;
        r->in_flight += size;
        r->eliciting_in_flight++;
        r->last_eliciting_time = now;
    } else {
        /* ACK-only packets are never resent and carry no congestion weight: resolve them at
         * once so ACK-only traffic never grows the record. */
        s->flags |= P2P_SENT_ACKED;
    }
    *pn = r->next_pn++;
    if (!(flags & P2P_SENT_ELICITING) && *pn == r->base_pn) r->base_pn++;
    return 0;
}

static void advance_base(p2p_recovery *r)
{
    while (r->base_pn < r->next_pn &&
           (sent_at(r, r->base_pn)->flags & (P2P_SENT_ACKED | P2P_SENT_LOST)))
        r->base_pn++;
    /* Give memory back once the record has drained after a burst. */
    if (r->base_pn == r->next_pn && r->cap > 256) {
        free(r->ring);
        r->ring = NULL;
        r->cap = 0;
    }
}

/* Remembers a packet declared lost, for on_spurious. */
static void keep_lost(p2p_recovery *r, uint64_t pn, const p2p_sent *s)
{
    p2p_lost_rec *k = &r->lost_kept[r->lost_next++ % P2P_LOST_KEPT];
    if (!k->live) r->lost_live++;
    k->pn = pn;
    k->size = s->size;
    k->live = 1;
}

/* Forgets the remembered loss of pn; returns its size, or 0 when it is not remembered. */
static uint16_t unkeep_lost(p2p_recovery *r, uint64_t pn)
{
    if (!r->lost_live) return 0;
    for (unsigned i = 0; i < P2P_LOST_KEPT; i++) {
        p2p_lost_rec *k = &r->lost_kept[i];
        if (k->live && k->pn == pn) {
            k->live = 0;
            r->lost_live--;
            return k->size;
        }
    }
    return 0;
}

static void resolve(p2p_recovery *r, p2p_sent *s, uint8_t how)
{
    if (s->flags & P2P_SENT_ELICITING) {
        r->in_flight -= s->size;
        r->eliciting_in_flight--;
    }
    s->flags |= how;
}

/* How long after it was sent a packet below an acknowledged one is lost: the RTT, plus a
 * reordering window of RTT/8 (RFC 9002's 9/8) that spurious losses widen in steps of
 * min_rtt/4, never past the smoothed RTT (RFC 8985 section 6.2). */
static uint64_t loss_delay(const p2p_recovery *r)
{
    uint64_t base = r->srtt > r->latest_rtt ? r->srtt : r->latest_rtt;
    uint64_t reo = base / P2P_TIME_THRESHOLD_DIV;
    if (r->reo_steps && r->min_rtt != UINT64_MAX) {
        uint64_t w = r->reo_steps * (r->min_rtt / 4);
        if (w > r->srtt) w = r->srtt;
        if (w > reo) reo = w;
    }
    uint64_t d = base + reo;
    return d < P2P_GRANULARITY_US ? P2P_GRANULARITY_US : d;
}

/* Declares lost every unresolved packet below the largest acknowledged that is past the
 * packet or time threshold, and arms loss_time for the first one that is not yet. Packets
 * are in send order, so the lost ones form a prefix of the unresolved ones. */
static void detect_lost(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb)
{
    r->loss_time = P2P_TIME_NEVER;
    if (!r->has_acked) return;
    uint64_t delay = loss_delay(r);
    uint64_t lost_before = now > delay ? now - delay : 0;
    uint64_t newest_lost_time = 0, lost_bytes = 0;
    unsigned lost_count = 0;
    for (uint64_t pn = r->base_pn; pn < r->next_pn && pn < r->largest_acked; pn++) {
        p2p_sent *s = sent_at(r, pn);
        if (s->flags & (P2P_SENT_ACKED | P2P_SENT_LOST)) continue;
        if (r->largest_acked - pn >= r->pkt_thresh || s->time <= lost_before) {
            int eliciting = s->flags & P2P_SENT_ELICITING;
            resolve(r, s, P2P_SENT_LOST);
            if (eliciting) {
                if (!(s->flags & P2P_SENT_MTU_PROBE)) {
                    keep_lost(r, pn, s);
                    lost_count++;
                    lost_bytes += s->size;
                    if (s->time > newest_lost_time) newest_lost_time = s->time;
                }
                if (cb) cb->lost(cb->ud, s);
            }
        } else {
            r->loss_time = s->time + delay;
            break;
        }
    }
    if (lost_count) {
        r->lost_packets += lost_count;
        /* A new loss episode (a packet sent after the last one began is lost): after
         * P2P_REORDER_RESET_EPISODES of them without a spurious loss, the reordering the
         * thresholds were widened for is taken to be over (RFC 8985 section 6.2). */
        if (newest_lost_time > r->episode_start) {
            r->episode_start = now;
            if (++r->reo_episodes >= P2P_REORDER_RESET_EPISODES) {
                r->reo_episodes = 0;
                r->reo_steps = 0;
                r->pkt_thresh = P2P_PACKET_THRESHOLD;
            }
        }
        p2p_cc_on_lost(&r->cc, lost_bytes, lost_count, newest_lost_time, r->in_flight, now);
    }
    advance_base(r);
}

void p2p_recovery_make_room(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb)
{
    if (!r->cap || r->next_pn - r->base_pn < r->cap) return;
    /* base_pn is the oldest unresolved packet (advance_base moves past resolved ones). A
     * peer that let a whole record of packets go unacknowledged is lossy or hostile: this is
     * a loss like any other, and its data goes back into the send queue. */
    p2p_sent *s = sent_at(r, r->base_pn);
    int eliciting = s->flags & P2P_SENT_ELICITING;
    resolve(r, s, P2P_SENT_LOST);
    if (eliciting && !(s->flags & P2P_SENT_MTU_PROBE)) {
        keep_lost(r, r->base_pn, s);
        r->lost_packets++;
        p2p_cc_on_lost(&r->cc, s->size, 1, s->time, r->in_flight, now);
    }
    if (eliciting && cb) cb->lost(cb->ud, s);
    advance_base(r);
}

static void update_rtt(p2p_recovery *r, uint64_t latest, uint64_t ack_delay)
{
    r->latest_rtt = latest;
    if (!r->has_rtt) {
        r->has_rtt = 1;
        r->min_rtt = latest;
        r->srtt = latest;
        r->rttvar = latest / 2;
        return;
    }
    if (latest < r->min_rtt) r->min_rtt = latest;
    if (ack_delay > P2P_MAX_ACK_DELAY_US) ack_delay = P2P_MAX_ACK_DELAY_US;
    uint64_t adjusted = latest;
    if (latest >= r->min_rtt + ack_delay) adjusted -= ack_delay;
    uint64_t diff = r->srtt > adjusted ? r->srtt - adjusted : adjusted - r->srtt;
    r->rttvar = (3 * r->rttvar + diff) / 4;
    r->srtt = (7 * r->srtt + adjusted) / 8;
}

void p2p_recovery_rtt_sample(p2p_recovery *r, uint64_t rtt)
{
    update_rtt(r, rtt ? rtt : 1, 0);
}

void p2p_recovery_peer_alive(p2p_recovery *r)
{
    r->pto_count = 0;
}

void p2p_recovery_app_limited(p2p_recovery *r)
{
    if (r->in_flight + r->mss > p2p_cc_window(&r->cc)) return; /* the window limits it */
    r->app_limited = r->delivered + r->in_flight;
    if (!r->app_limited) r->app_limited = 1;
}

/* A packet declared lost was acknowledged: the path reorders at least that much. The packet
 * threshold grows to cover how far it was overtaken, and the time threshold by one step of
 * min_rtt/4, at most once per round trip (RFC 8985 section 6.2). */
static void on_spurious(p2p_recovery *r, uint64_t pn, uint16_t size, uint64_t now)
{
    r->spurious_losses++;
    uint64_t overtaken = r->largest_acked - pn + 1;
    if (overtaken > P2P_PACKET_THRESHOLD_MAX) overtaken = P2P_PACKET_THRESHOLD_MAX;
    if (overtaken > r->pkt_thresh) r->pkt_thresh = (unsigned)overtaken;
    if (r->reo_steps < P2P_REORDER_STEPS_MAX && now >= r->reo_grown_at + r->srtt) {
        r->reo_steps++;
        r->reo_grown_at = now;
    }
    r->reo_episodes = 0;
    p2p_cc_on_spurious(&r->cc, size);
}

/* An ACK range below the record: packets there were resolved long ago, but one remembered as
 * lost was not. */
static void ack_below_base(p2p_recovery *r, uint64_t lo, uint64_t hi, uint64_t now)
{
    for (unsigned i = 0; i < P2P_LOST_KEPT && r->lost_live; i++) {
        p2p_lost_rec *k = &r->lost_kept[i];
        if (k->live && k->pn >= lo && k->pn <= hi) {
            k->live = 0;
            r->lost_live--;
            on_spurious(r, k->pn, k->size, now);
        }
    }
}

int p2p_recovery_on_ack(p2p_recovery *r, const p2p_frame *ack, uint64_t now,
                        const p2p_recovery_cb *cb)
{
    uint64_t largest = ack->u.ack.r[0].hi;
    if (largest >= r->next_pn) return P2P_ERR_INVALID;
    if (r->skipped_n)
        for (size_t i = 0; i < ack->u.ack.count; i++)
            if (claims_skipped(r, ack->u.ack.r[i].lo, ack->u.ack.r[i].hi)) return P2P_ERR_CRYPTO;
    int newly_largest = 0;
    uint64_t in_flight_before = r->in_flight;
    if (!r->has_acked || largest > r->largest_acked) {
        r->has_acked = 1;
        r->largest_acked = largest;
        newly_largest = 1;
    }
    p2p_cc_set_mss(&r->cc, r->mss);
    p2p_rate_sample rs;
    memset(&rs, 0, sizeof rs);
    int acked_eliciting = 0, sampled = 0;
    uint64_t prior_time = 0, send_elapsed = 0, rtt = 0;
    for (size_t i = 0; i < ack->u.ack.count; i++) {
        uint64_t lo = ack->u.ack.r[i].lo, hi = ack->u.ack.r[i].hi;
        if (lo < r->base_pn) ack_below_base(r, lo, hi < r->base_pn ? hi : r->base_pn - 1, now);
        if (hi < r->base_pn) continue;
        if (lo < r->base_pn) lo = r->base_pn;
        for (uint64_t pn = hi + 1; pn-- > lo;) {
            p2p_sent *s = sent_at(r, pn);
            if (s->flags & P2P_SENT_ACKED) continue;
            int was_lost = s->flags & P2P_SENT_LOST;
            int eliciting = s->flags & P2P_SENT_ELICITING;
            if (pn == largest && newly_largest && eliciting) {
                rtt = now - s->time;
                update_rtt(r, rtt, ack->u.ack.delay_us);
            }
            if (eliciting) {
                acked_eliciting = 1;
                r->delivered += s->size;
                rs.acked += s->size;
                /* The newest packet acknowledged (ranges and numbers come highest first)
                 * closes the sampling interval its own send opened. */
                if (!sampled) {
                    sampled = 1;
                    rs.prior_delivered = s->delivered;
                    prior_time = s->time - s->delivered_age;
                    send_elapsed = s->first_sent_age;
                    rs.app_limited = (s->flags & P2P_SENT_APP_LIMITED) != 0;
                    r->first_sent_time = s->time;
                }
            }
            if (!was_lost) {
                resolve(r, s, P2P_SENT_ACKED);
                if (eliciting) p2p_cc_on_packet_acked(&r->cc, s->size, s->time, in_flight_before);
            } else {
                s->flags |= P2P_SENT_ACKED; /* spuriously declared lost; data already requeued */
                if (eliciting && unkeep_lost(r, pn)) on_spurious(r, pn, s->size, now);
            }
            if (cb) cb->acked(cb->ud, s);
        }
    }
    if (acked_eliciting) {
        r->pto_count = 0;
        r->pto_streak = 0;
        r->delivered_time = now;
        if (r->app_limited && r->delivered > r->app_limited) r->app_limited = 0;
    }
    detect_lost(r, now, cb);
    if (!acked_eliciting) return 0;
    /* The delivery rate: bytes delivered since the newest packet's send, over the longer of
     * its send and ACK intervals; one shorter than min_rtt is ACK compression, not a rate. */
    uint64_t ack_elapsed = now - prior_time;
    uint64_t interval = send_elapsed > ack_elapsed ? send_elapsed : ack_elapsed;
    if (interval && (r->min_rtt == UINT64_MAX || interval >= r->min_rtt))
        rs.rate = (double)(r->delivered - rs.prior_delivered) / (double)interval;
    rs.delivered = r->delivered;
    rs.in_flight = r->in_flight;
    rs.rtt = rtt;
    rs.min_rtt = r->min_rtt;
    rs.srtt = r->srtt;
    p2p_cc_on_ack(&r->cc, &rs, now);
    return 0;
}

/* The probe timeout without backoff. */
static uint64_t pto_base(const p2p_recovery *r)
{
    uint64_t var = 4 * r->rttvar;
    if (var < P2P_GRANULARITY_US) var = P2P_GRANULARITY_US;
    return r->srtt + var + P2P_MAX_ACK_DELAY_US;
}

uint64_t p2p_recovery_pto(const p2p_recovery *r)
{
    return pto_base(r) << r->pto_count;
}

uint64_t p2p_recovery_deadline(const p2p_recovery *r)
{
    if (r->loss_time != P2P_TIME_NEVER) return r->loss_time;
    if (!r->eliciting_in_flight) return P2P_TIME_NEVER;
    return r->last_eliciting_time + p2p_recovery_pto(r);
}

int p2p_recovery_on_timeout(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb)
{
    if (r->loss_time != P2P_TIME_NEVER) {
        if (now < r->loss_time) return 0;
        detect_lost(r, now, cb);
        return 0;
    }
    if (!r->eliciting_in_flight || now < r->last_eliciting_time + p2p_recovery_pto(r)) return 0;
    r->pto_streak++;
    /* The backoff is capped: a path that comes back is probed again within 2 s (or one PTO
     * without backoff, when that is longer), not after minutes. */
    if (r->pto_count < P2P_PTO_BACKOFF_MAX && p2p_recovery_pto(r) < P2P_PTO_BACKOFF_STOP_US)
        r->pto_count++;
    return 1;
}

int p2p_recovery_cwnd_allows(const p2p_recovery *r, size_t size)
{
    /* With nothing in flight one packet may always go, whatever its size: else a window
     * below the packet size would stall the session for good. */
    return r->in_flight == 0 || r->in_flight + size <= p2p_cc_window(&r->cc);
}

int p2p_recovery_ack_soon(const p2p_recovery *r, size_t size)
{
    uint64_t cwnd = p2p_cc_window(&r->cc);
    /* A window of many packets gets ACKs from the receiver's count anyway. */
    if (cwnd > (uint64_t)(P2P_ACK_THRESHOLD_BULK + 2) * size) return 0;
    /* This packet leaves no room for another of its size: ask now. */
    return r->in_flight + 2 * (uint64_t)size > cwnd;
}

static double pace_rate(const p2p_recovery *r)
{
    /* bytes per microsecond */
    return p2p_cc_pacing_rate(&r->cc, r->srtt);
}

/* The burst the pacer allows: 10 packets of the base size, and never less than two of the
 * current size (else a packet larger than the bucket could never go). */
static double pace_burst(const p2p_recovery *r)
{
    double burst = P2P_PACING_BURST > 2.0 * r->mss ? (double)P2P_PACING_BURST : 2.0 * r->mss;
    /* At rates where that is less than P2P_PACING_BURST_US of sending, a burst of that long:
     * a host wakes about once per burst, and a pacer that needs more wake-ups than that
     * sends below its rate, which the bandwidth estimate then follows down. */
    double timed = pace_rate(r) * P2P_PACING_BURST_US;
    return timed > burst ? timed : burst;
}

static void pace_refill(p2p_recovery *r, uint64_t now)
{
    if (now <= r->pace_time) return;
    r->tokens += (double)(now - r->pace_time) * pace_rate(r);
    if (r->tokens > pace_burst(r)) r->tokens = pace_burst(r);
    r->pace_time = now;
}

uint64_t p2p_recovery_pace_at(p2p_recovery *r, uint64_t now, size_t size)
{
    pace_refill(r, now);
    if (r->tokens >= (double)size) return now;
    double wait = ((double)size - r->tokens) / pace_rate(r);
    return now + (uint64_t)wait + 1;
}

void p2p_recovery_pace_spend(p2p_recovery *r, uint64_t now, size_t size)
{
    pace_refill(r, now);
    r->tokens -= (double)size;
    if (r->tokens < -pace_burst(r)) r->tokens = -pace_burst(r);
}
