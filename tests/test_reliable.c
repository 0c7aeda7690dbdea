/* test_reliable.c - the replay window, the acker, and sent-packet recovery (RTT per RFC 9002
 * section 5, loss by packet and time threshold, PTO with backoff, NewReno, pacing), checked
 * against numbers worked out by hand from docs/PROTOCOL.md section 5. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_reliable.h"
#include "../csrc/p2p_crypto.h"

#include <stdint.h>
#include <stdlib.h>

#define T0 UINT64_C(1000000)

/* ---- replay window ---------------------------------------------------------------------- */

static void test_replay_basic(void)
{
    p2p_replay w;
    memset(&w, 0, sizeof w);
    T_EQ_INT(p2p_replay_check(&w, 0), 0); /* empty: everything may be new */
    T_EQ_INT(p2p_replay_check(&w, 123456), 0);
    p2p_replay_update(&w, 10);
    T_EQ_INT(p2p_replay_check(&w, 10), -1); /* duplicate */
    T_EQ_INT(p2p_replay_check(&w, 9), 0);   /* below, unseen */
    T_EQ_INT(p2p_replay_check(&w, 0), 0);
    T_EQ_INT(p2p_replay_check(&w, 11), 0); /* above */
    p2p_replay_update(&w, 3);
    T_EQ_INT(p2p_replay_check(&w, 3), -1);
    T_EQ_INT(p2p_replay_check(&w, 4), 0);
    T_CHECK(w.largest == 10); /* older packets leave largest alone */
    p2p_replay_update(&w, 11);
    T_EQ_INT(p2p_replay_check(&w, 11), -1);
    T_EQ_INT(p2p_replay_check(&w, 10), -1);
    T_EQ_INT(p2p_replay_check(&w, 3), -1);
    T_EQ_INT(p2p_replay_check(&w, 4), 0);
    /* check alone never changes anything */
    T_EQ_INT(p2p_replay_check(&w, 12), 0);
    T_EQ_INT(p2p_replay_check(&w, 12), 0);

    /* a first packet with a large number */
    memset(&w, 0, sizeof w);
    p2p_replay_update(&w, 5000);
    T_EQ_INT(p2p_replay_check(&w, 5000), -1);
    T_EQ_INT(p2p_replay_check(&w, 4999), 0);
    T_EQ_INT(p2p_replay_check(&w, 5000 - 4095), 0);
    T_EQ_INT(p2p_replay_check(&w, 5000 - 4096), -1); /* more than 4095 below */
    T_EQ_INT(p2p_replay_check(&w, 5000 - 4097), -1);
    T_EQ_INT(p2p_replay_check(&w, 5000 - 4100), -1);
    T_EQ_INT(p2p_replay_check(&w, 5000 - 4159), -1);
    T_EQ_INT(p2p_replay_check(&w, 0), -1);
}

static void test_replay_window_edge(void)
{
    /* largest % 64 == 63, so the 4096-number window is exactly 64 whole words */
    p2p_replay w;
    memset(&w, 0, sizeof w);
    for (uint64_t pn = 0; pn < 4096; pn++) {
        T_EQ_INT(p2p_replay_check(&w, pn), 0);
        p2p_replay_update(&w, pn);
    }
    int all = 1;
    for (uint64_t pn = 0; pn < 4096; pn++)
        if (p2p_replay_check(&w, pn) != -1) all = 0;
    T_CHECK(all); /* all 4096 remembered */

    const uint64_t L = 4095 + 64 * 100; /* 10495, jump of 100 words */
    p2p_replay_update(&w, L);
    T_EQ_INT(p2p_replay_check(&w, L), -1);
    T_EQ_INT(p2p_replay_check(&w, L - 4095), 0);  /* exactly at the edge: still in */
    T_EQ_INT(p2p_replay_check(&w, L - 4096), -1); /* one past it: too old */
    T_EQ_INT(p2p_replay_check(&w, 4095), -1);
    T_EQ_INT(p2p_replay_check(&w, 0), -1);
    int cleared = 1;
    for (uint64_t pn = L - 4095; pn < L; pn++)
        if (p2p_replay_check(&w, pn) != 0) cleared = 0;
    T_CHECK(cleared); /* old bits did not linger */
    p2p_replay_update(&w, L - 4095);
    T_EQ_INT(p2p_replay_check(&w, L - 4095), -1);

    /* a jump of 10 words from a full window keeps the 54 words still inside it */
    memset(&w, 0, sizeof w);
    for (uint64_t pn = 0; pn < 4096; pn++) p2p_replay_update(&w, pn);
    p2p_replay_update(&w, 4095 + 640);
    int ok = 1;
    for (uint64_t pn = 640; pn < 4096; pn++)
        if (p2p_replay_check(&w, pn) != -1) ok = 0;
    for (uint64_t pn = 4096; pn < 4095 + 640; pn++)
        if (p2p_replay_check(&w, pn) != 0) ok = 0;
    for (uint64_t pn = 0; pn < 640; pn++)
        if (p2p_replay_check(&w, pn) != -1) ok = 0;
    T_CHECK(ok);

    /* a jump by far more than the window clears everything */
    memset(&w, 0, sizeof w);
    for (uint64_t pn = 0; pn < 200; pn++) p2p_replay_update(&w, pn);
    const uint64_t far = 100000 + 63;
    p2p_replay_update(&w, far);
    ok = 1;
    for (uint64_t pn = far - 4095; pn < far; pn++)
        if (p2p_replay_check(&w, pn) != 0) ok = 0;
    T_CHECK(ok);
    T_EQ_INT(p2p_replay_check(&w, far), -1);
    T_EQ_INT(p2p_replay_check(&w, 150), -1);

    /* near the top of the packet number space */
    memset(&w, 0, sizeof w);
    const uint64_t top = P2P_VARINT_MAX; /* % 64 == 63 */
    p2p_replay_update(&w, top - 5000);
    p2p_replay_update(&w, top);
    T_EQ_INT(p2p_replay_check(&w, top), -1);
    T_EQ_INT(p2p_replay_check(&w, top - 1), 0);
    T_EQ_INT(p2p_replay_check(&w, top - 4095), 0);
    T_EQ_INT(p2p_replay_check(&w, top - 4096), -1);
    T_EQ_INT(p2p_replay_check(&w, top - 5000), -1);
}

/* Regression: the window was is 64 words of 64 bits indexed by (pn / 64) % 64, but a pn up to
 * 4095 below the largest can fall in the word 64 words below the largest's word, which shares
 * a slot with the largest's own word. When largest % 64 != 63 that slot was cleared on the
 * slide, so an old, already-accepted pn reads as new (a replay is accepted), and accepting it
 * sets a bit that makes a future, never-seen pn read as a replay. PROTOCOL.md 2.2: a packet
 * number "already seen in the window" is dropped. */
static void test_replay_aliased_word(void)
{
    p2p_replay w;
    memset(&w, 0, sizeof w);
    for (uint64_t pn = 0; pn <= 4096; pn++) p2p_replay_update(&w, pn);
    /* largest 4096: pn 1..63 are 4095..4033 below it, inside the window, and were seen */
    T_EQ_INT(p2p_replay_check(&w, 1), -1);
    T_EQ_INT(p2p_replay_check(&w, 63), -1);
    T_EQ_INT(p2p_replay_check(&w, 0), -1); /* 4096 below: out (works) */

    /* and the collateral damage: accepting the replay of 5 poisons pn 4101 */
    memset(&w, 0, sizeof w);
    for (uint64_t pn = 0; pn <= 4096; pn++) p2p_replay_update(&w, pn);
    if (p2p_replay_check(&w, 5) == 0) p2p_replay_update(&w, 5);
    p2p_replay_update(&w, 4110);
    T_EQ_INT(p2p_replay_check(&w, 4101), 0); /* never received */

    /* against a model: accept iff unseen and at most 4095 below the largest */
    p2p_rng rng;
    p2p_rng_init(&rng, 0x7265706c6179);
    memset(&w, 0, sizeof w);
    static uint8_t seen[200000];
    memset(seen, 0, sizeof seen);
    uint64_t largest = 0;
    int any = 0, mismatches = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t pn;
        if (!any || p2p_rng_below(&rng, 4) == 0)
            pn = largest + p2p_rng_below(&rng, 100);
        else
            pn = largest > 4200 ? largest - 4200 + p2p_rng_below(&rng, 4201)
                                : p2p_rng_below(&rng, (uint32_t)largest + 1);
        if (pn >= sizeof seen) break;
        int want = (!any || pn > largest) ? 0 : (largest - pn >= 4096 || seen[pn]) ? -1 : 0;
        int got = p2p_replay_check(&w, pn);
        if (got != want) mismatches++;
        if (want == 0) {
            p2p_replay_update(&w, pn);
            seen[pn] = 1;
            if (!any || pn > largest) largest = pn;
            any = 1;
        }
    }
    T_EQ_INT(mismatches, 0);
}

/* ---- acker ------------------------------------------------------------------------------ */

/* Writes the acker's ACK frame at now and decodes it back. Returns 1 with *f filled, 0 when
 * nothing was written. */
static int acker_frame(p2p_acker *a, uint64_t now, p2p_frame *f)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_wr w;
    p2p_wr_init(&w, buf, sizeof buf);
    if (p2p_acker_write(a, &w, now) != 0) return -1;
    if (w.p == buf) return 0;
    p2p_rd r;
    p2p_rd_init(&r, buf, (size_t)(w.p - buf));
    int rc = p2p_frame_next(&r, f);
    if (rc != 1 || f->type != P2P_FRAME_ACK || p2p_rd_left(&r) != 0) return -2;
    return 1;
}

static void test_acker_thresholds(void)
{
    p2p_acker a;
    p2p_acker_init(&a);
    T_CHECK(a.deadline == P2P_TIME_NEVER);
    T_EQ_INT(p2p_acker_wants(&a, T0), 0);
    p2p_frame f;
    T_EQ_INT(acker_frame(&a, T0, &f), 0); /* nothing received: no frame */

    /* one ack-eliciting packet: an ACK is owed within max_ack_delay, not at once */
    T_EQ_INT(p2p_acker_on_packet(&a, 0, 1, T0), 0);
    T_EQ_INT(a.ack_now, 0);
    T_CHECK(a.deadline == T0 + P2P_MAX_ACK_DELAY_US);
    T_EQ_INT(p2p_acker_wants(&a, T0), 0);
    T_EQ_INT(p2p_acker_wants(&a, T0 + 4999), 0);
    T_EQ_INT(p2p_acker_wants(&a, T0 + 5000), 1);
    /* the second one makes it due now; the deadline stays with the first */
    T_EQ_INT(p2p_acker_on_packet(&a, 1, 1, T0 + 1500), 0);
    T_EQ_INT(a.ack_now, 1);
    T_EQ_INT(p2p_acker_wants(&a, T0 + 1500), 1);
    T_CHECK(a.deadline == T0 + 5000);
    T_EQ_INT(acker_frame(&a, T0 + 1700, &f), 1);
    T_EQ_INT(f.u.ack.count, 1);
    T_EQ_INT(f.u.ack.r[0].lo, 0);
    T_EQ_INT(f.u.ack.r[0].hi, 1);
    T_EQ_INT(f.u.ack.delay_us, 200); /* since the largest arrived */
    p2p_acker_sent(&a);
    T_EQ_INT(p2p_acker_wants(&a, T0 + 100000), 0);
    T_CHECK(a.deadline == P2P_TIME_NEVER);

    /* non-eliciting packets are acknowledged when something else goes, never on their own */
    for (uint64_t pn = 2; pn < 10; pn++) p2p_acker_on_packet(&a, pn, 0, T0 + 2000);
    T_EQ_INT(p2p_acker_wants(&a, T0 + 1000000), 0);
    T_CHECK(a.deadline == P2P_TIME_NEVER);
    T_EQ_INT(acker_frame(&a, T0 + 2000, &f), 1);
    T_EQ_INT(f.u.ack.r[0].hi, 9);
    T_EQ_INT(f.u.ack.r[0].lo, 0);

    /* in order again: one eliciting packet waits for the deadline */
    p2p_acker_on_packet(&a, 10, 1, T0 + 3000);
    T_EQ_INT(a.ack_now, 0);
    T_CHECK(a.deadline == T0 + 3000 + P2P_MAX_ACK_DELAY_US);
    p2p_acker_free(&a);
}

static void test_acker_out_of_order(void)
{
    p2p_acker a;
    p2p_acker_init(&a);
    p2p_frame f;
    p2p_acker_on_packet(&a, 0, 1, T0);
    T_EQ_INT(a.ack_now, 0);
    /* 3 arrives with 1 and 2 missing: at once */
    p2p_acker_on_packet(&a, 3, 1, T0 + 10);
    T_EQ_INT(a.ack_now, 1);
    T_EQ_INT(acker_frame(&a, T0 + 10, &f), 1);
    T_EQ_INT(f.u.ack.count, 2);
    T_CHECK(f.u.ack.r[0].lo == 3 && f.u.ack.r[0].hi == 3);
    T_CHECK(f.u.ack.r[1].lo == 0 && f.u.ack.r[1].hi == 0);
    T_EQ_INT(f.u.ack.delay_us, 0);
    p2p_acker_sent(&a);

    /* 1 arrives late, filling part of the hole: at once, even as the first pending packet */
    p2p_acker_on_packet(&a, 1, 1, T0 + 100);
    T_EQ_INT(a.ack_now, 1);
    T_EQ_INT(acker_frame(&a, T0 + 150, &f), 1);
    T_EQ_INT(f.u.ack.count, 2);
    T_CHECK(f.u.ack.r[0].lo == 3 && f.u.ack.r[0].hi == 3);
    T_CHECK(f.u.ack.r[1].lo == 0 && f.u.ack.r[1].hi == 1);
    /* the delay counts from the largest (3, at T0 + 10), not from the late packet */
    T_EQ_INT(f.u.ack.delay_us, 140);
    p2p_acker_sent(&a);
    p2p_acker_on_packet(&a, 2, 1, T0 + 200);
    T_EQ_INT(a.ack_now, 1);
    T_EQ_INT(acker_frame(&a, T0 + 200, &f), 1);
    T_EQ_INT(f.u.ack.count, 1);
    T_CHECK(f.u.ack.r[0].lo == 0 && f.u.ack.r[0].hi == 3);
    p2p_acker_sent(&a);

    /* the hole is gone: in-order packets go back to every second one */
    p2p_acker_on_packet(&a, 4, 1, T0 + 300);
    T_EQ_INT(a.ack_now, 0);
    p2p_acker_on_packet(&a, 5, 1, T0 + 400);
    T_EQ_INT(a.ack_now, 1);
    p2p_acker_free(&a);
}

static void test_acker_bulk_threshold(void)
{
    /* past P2P_ACK_BULK_AFTER eliciting packets the threshold becomes P2P_ACK_THRESHOLD_BULK */
    p2p_acker a;
    p2p_acker_init(&a);
    uint64_t pn = 0, now = T0;
    int acks = 0;
    for (; pn < P2P_ACK_BULK_AFTER; pn++, now += 10) {
        p2p_acker_on_packet(&a, pn, 1, now);
        if (p2p_acker_wants(&a, now)) {
            acks++;
            p2p_acker_sent(&a);
        }
    }
    T_EQ_INT(acks, P2P_ACK_BULK_AFTER / P2P_ACK_THRESHOLD);
    for (int i = 1; i <= P2P_ACK_THRESHOLD_BULK; i++, pn++) {
        p2p_acker_on_packet(&a, pn, 1, now);
        T_EQ_INT(a.ack_now, i == P2P_ACK_THRESHOLD_BULK);
    }
    p2p_acker_free(&a);
}

/* Bitmap model of received packet numbers with the acker's keep-the-highest-32-ranges rule. */
#define AMODEL_N 600
static size_t amodel_ranges(const uint8_t *in, p2p_ack_range *out)
{
    size_t n = 0;
    for (size_t x = AMODEL_N; x-- > 0;) {
        if (!in[x]) continue;
        size_t hi = x;
        while (x > 0 && in[x - 1]) x--;
        if (out) {
            out[n].lo = x;
            out[n].hi = hi;
        }
        n++;
    }
    return n;
}

static void amodel_trim(uint8_t *in, size_t max)
{
    size_t n = amodel_ranges(in, NULL);
    for (size_t x = 0; x < AMODEL_N && n > max; x++) {
        if (!in[x]) continue;
        while (x < AMODEL_N && in[x]) in[x++] = 0;
        n--;
    }
}

static void test_acker_random_ranges(void)
{
    p2p_rng rng;
    p2p_rng_init(&rng, 0x61636b6572);
    for (int round = 0; round < 20; round++) {
        p2p_acker a;
        p2p_acker_init(&a);
        uint8_t in[AMODEL_N];
        memset(in, 0, sizeof in);
        uint64_t now = T0, largest = 0, largest_at = 0;
        int any = 0, bad = 0;
        unsigned loss = round % 4 == 0 ? 1 : 5 + (unsigned)round * 2;
        for (uint64_t next = 0; next < 500 && !bad;) {
            /* mostly in order, with losses, late arrivals and duplicates */
            uint64_t pn;
            uint32_t k = p2p_rng_below(&rng, 100);
            if (k < loss) {
                next++;
                continue;
            }
            if (k < loss + 10 && next > 0)
                pn = next - 1 - p2p_rng_below(&rng, next > 40 ? 40 : (uint32_t)next);
            else
                pn = next++;
            now += 1 + p2p_rng_below(&rng, 50);
            int elicit = p2p_rng_below(&rng, 5) != 0;
            T_EQ_INT(p2p_acker_on_packet(&a, pn, elicit, now), 0);
            int was_in = in[pn];
            in[pn] = 1;
            amodel_trim(in, P2P_ACK_RANGES_KEPT);
            if (!any || pn > largest) {
                largest = pn;
                largest_at = now;
                any = 1;
            }
            if (elicit && was_in) T_EQ_INT(a.ack_now, 1);

            p2p_ack_range want[P2P_ACK_MAX_RANGES];
            size_t nw = amodel_ranges(in, want);
            p2p_frame f;
            uint64_t at = now + p2p_rng_below(&rng, 3000);
            if (acker_frame(&a, at, &f) != 1) {
                bad = 1;
                break;
            }
            if (f.u.ack.count != nw || f.u.ack.delay_us != at - largest_at) bad = 1;
            for (size_t i = 0; i < nw && !bad; i++)
                if (f.u.ack.r[i].lo != want[i].lo || f.u.ack.r[i].hi != want[i].hi) bad = 1;
            if (bad) fprintf(stderr, "  round %d pn %llu\n", round, (unsigned long long)pn);
            if (p2p_rng_below(&rng, 3) == 0) p2p_acker_sent(&a);
        }
        T_CHECK(!bad);
        p2p_acker_free(&a);
    }
}

/* Regression: p2p_acker_on_packet treated a packet as out of order whenever the received
 * set has more than one range (`s->n > 1`), so after a single lost packet (whose number never
 * arrives, since lost data is resent under new numbers) every later in-order ack-eliciting
 * packet gets an immediate ACK, for the life of the session. PROTOCOL.md 5 says "after every
 * second ack-eliciting packet, at once for a packet that arrives out of order"; RFC 9000
 * 13.2.1 counts a packet as out of order only if it is below the largest or has missing
 * numbers directly below it. */
static void test_acker_old_hole(void)
{
    p2p_acker a;
    p2p_acker_init(&a);
    p2p_acker_on_packet(&a, 0, 1, T0);
    p2p_acker_on_packet(&a, 2, 1, T0 + 10); /* 1 lost: immediate ACK, correct */
    T_EQ_INT(a.ack_now, 1);
    p2p_acker_sent(&a);
    p2p_acker_on_packet(&a, 3, 1, T0 + 20); /* in order after 2 */
    T_EQ_INT(a.ack_now, 0);
    p2p_acker_on_packet(&a, 4, 1, T0 + 30);
    T_EQ_INT(a.ack_now, 1);
    p2p_acker_sent(&a);
    int immediate = 0;
    for (uint64_t pn = 5; pn < 105; pn++) {
        p2p_acker_on_packet(&a, pn, 1, T0 + 10 * pn);
        if (a.ack_now) {
            immediate++;
            p2p_acker_sent(&a);
        }
    }
    T_EQ_INT(immediate, 50); /* every second packet, not 100 */
    p2p_acker_free(&a);
}

/* ---- recovery --------------------------------------------------------------------------- */

#define MAXPN 4096
typedef struct record {
    unsigned acked[MAXPN], lost[MAXPN];
    unsigned nacked, nlost;
} record;

static void on_acked(void *ud, const p2p_sent *s)
{
    record *rec = ud;
    rec->acked[s->stream_off % MAXPN]++;
    rec->nacked++;
}

static void on_lost(void *ud, const p2p_sent *s)
{
    record *rec = ud;
    rec->lost[s->stream_off % MAXPN]++;
    rec->nlost++;
}

/* Sends one ack-eliciting packet; stream_off carries its packet number so the callbacks can
 * tell which packet they got. */
static uint64_t send_pkt(p2p_recovery *r, uint64_t now, size_t size)
{
    uint64_t pn = UINT64_MAX;
    int rc =
        p2p_recovery_on_sent(r, now, size, P2P_SENT_ELICITING, r->next_pn, (uint32_t)size, &pn);
    T_EQ_INT(rc, 0);
    return pn;
}

static void mk_ack(p2p_frame *f, uint64_t delay, const p2p_ack_range *rg, size_t n)
{
    memset(f, 0, sizeof *f);
    f->type = P2P_FRAME_ACK;
    f->u.ack.delay_us = delay;
    f->u.ack.count = n;
    for (size_t i = 0; i < n; i++) f->u.ack.r[i] = rg[i];
}

static int ack_range(p2p_recovery *r, uint64_t lo, uint64_t hi, uint64_t delay, uint64_t now,
                     const p2p_recovery_cb *cb)
{
    p2p_frame f;
    p2p_ack_range rg = {lo, hi};
    mk_ack(&f, delay, &rg, 1);
    return p2p_recovery_on_ack(r, &f, now, cb);
}

static void test_recovery_init_and_sent(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    T_EQ_INT(r.srtt, 333000);
    T_EQ_INT(r.rttvar, 166500);
    T_EQ_INT(r.cc.cwnd, 10 * 1232);
    T_EQ_INT(r.in_flight, 0);
    T_CHECK(r.loss_time == P2P_TIME_NEVER);
    T_CHECK(p2p_recovery_deadline(&r) == P2P_TIME_NEVER);
    /* PTO before any sample: 333 ms + 4 * 166.5 ms + 5 ms */
    T_EQ_INT(p2p_recovery_pto(&r), 333000 + 666000 + 5000);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 100000000, NULL), 0); /* nothing out */

    T_EQ_INT(send_pkt(&r, T0, 1000), 0);
    T_EQ_INT(send_pkt(&r, T0 + 1, P2P_MAX_PACKET), 1);
    uint64_t pn = 99;
    T_EQ_INT(p2p_recovery_on_sent(&r, T0 + 2, 50, 0, 0, 0, &pn), 0); /* ACK-only */
    T_EQ_INT(pn, 2);
    T_EQ_INT(send_pkt(&r, T0 + 3, 700), 3);
    T_EQ_INT(r.in_flight, 1000 + 1232 + 700); /* the ACK-only packet weighs nothing */
    T_EQ_INT(r.eliciting_in_flight, 3);
    T_CHECK(p2p_recovery_deadline(&r) == T0 + 3 + p2p_recovery_pto(&r));

    /* congestion window: in_flight + size <= cwnd */
    T_EQ_INT(p2p_recovery_cwnd_allows(&r, 12320 - 2932), 1);
    T_EQ_INT(p2p_recovery_cwnd_allows(&r, 12320 - 2932 + 1), 0);
    p2p_recovery_free(&r);

    /* only ACK-only packets outstanding: no timer */
    p2p_recovery_init(&r, T0);
    for (int i = 0; i < 100; i++) p2p_recovery_on_sent(&r, T0 + (uint64_t)i, 40, 0, 0, 0, &pn);
    T_EQ_INT(pn, 99);
    T_EQ_INT(r.in_flight, 0);
    T_CHECK(p2p_recovery_deadline(&r) == P2P_TIME_NEVER);
    T_EQ_INT(r.base_pn, 100); /* nothing kept for them */
    p2p_recovery_free(&r);
}

static void test_recovery_rtt(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};

    /* First sample: srtt = latest, rttvar = latest / 2; ack_delay is ignored. */
    send_pkt(&r, T0, 1000);
    T_EQ_INT(ack_range(&r, 0, 0, 2000, T0 + 50000, &cb), 0);
    T_EQ_INT(r.latest_rtt, 50000);
    T_EQ_INT(r.srtt, 50000);
    T_EQ_INT(r.rttvar, 25000);
    T_EQ_INT(r.min_rtt, 50000);
    T_EQ_INT(rec.acked[0], 1);

    /* latest 80000, ack_delay 3000: adjusted = 77000 (80000 >= min_rtt + 3000);
     * rttvar = (3 * 25000 + |50000 - 77000|) / 4 = 25500; srtt = (7 * 50000 + 77000) / 8 = 53375 */
    send_pkt(&r, T0 + 100000, 1000);
    ack_range(&r, 0, 1, 3000, T0 + 180000, &cb);
    T_EQ_INT(r.latest_rtt, 80000);
    T_EQ_INT(r.min_rtt, 50000);
    T_EQ_INT(r.rttvar, 25500);
    T_EQ_INT(r.srtt, 53375);
    T_EQ_INT(rec.acked[0], 1); /* not reported twice */
    T_EQ_INT(rec.acked[1], 1);

    /* latest 60000, ack_delay 20000 capped at max_ack_delay 5000: adjusted 55000;
     * rttvar = (3 * 25500 + 1625) / 4 = 19531; srtt = (7 * 53375 + 55000) / 8 = 53578 */
    send_pkt(&r, T0 + 200000, 1000);
    ack_range(&r, 2, 2, 20000, T0 + 260000, &cb);
    T_EQ_INT(r.rttvar, 19531);
    T_EQ_INT(r.srtt, 53578);

    /* latest 52000, ack_delay 4000: 52000 < min_rtt + 4000, so not adjusted;
     * rttvar = (3 * 19531 + 1578) / 4 = 15042; srtt = (7 * 53578 + 52000) / 8 = 53380 */
    send_pkt(&r, T0 + 300000, 1000);
    ack_range(&r, 3, 3, 4000, T0 + 352000, &cb);
    T_EQ_INT(r.rttvar, 15042);
    T_EQ_INT(r.srtt, 53380);

    /* latest 40000 is a new min_rtt; ack_delay 1000 would take it below min_rtt, so unadjusted;
     * rttvar = (3 * 15042 + 13380) / 4 = 14626; srtt = (7 * 53380 + 40000) / 8 = 51707 */
    send_pkt(&r, T0 + 400000, 1000);
    ack_range(&r, 4, 4, 1000, T0 + 440000, &cb);
    T_EQ_INT(r.min_rtt, 40000);
    T_EQ_INT(r.rttvar, 14626);
    T_EQ_INT(r.srtt, 51707);

    /* An ACK whose largest is not newly acknowledged gives no sample. */
    ack_range(&r, 4, 4, 0, T0 + 900000, &cb);
    T_EQ_INT(r.srtt, 51707);
    T_EQ_INT(r.latest_rtt, 40000);
    /* Acking 6 (latest 50000, unadjusted) is a sample: rttvar = (3 * 14626 + 1707) / 4 =
     * 11396, srtt = (7 * 51707 + 50000) / 8 = 51493. Acking 5 after it is not. */
    send_pkt(&r, T0 + 1000000, 1000); /* pn 5 */
    send_pkt(&r, T0 + 1000001, 1000); /* pn 6 */
    ack_range(&r, 6, 6, 0, T0 + 1050001, &cb);
    T_EQ_INT(r.rttvar, 11396);
    T_EQ_INT(r.srtt, 51493);
    ack_range(&r, 5, 5, 0, T0 + 1900000, &cb);
    T_EQ_INT(r.srtt, 51493);
    T_EQ_INT(r.rttvar, 11396);
    T_EQ_INT(r.latest_rtt, 50000);
    T_EQ_INT(rec.acked[5], 1);
    T_EQ_INT(rec.acked[6], 1);

    /* PTO = srtt + max(4 * rttvar, 1 ms) + max_ack_delay */
    T_EQ_INT(p2p_recovery_pto(&r), 51493 + 4 * 11396 + 5000);
    T_EQ_INT(rec.nlost, 0);
    p2p_recovery_free(&r);

    /* A tiny RTT: the 4 * rttvar term is floored at kGranularity. */
    p2p_recovery_init(&r, T0);
    send_pkt(&r, T0, 100);
    ack_range(&r, 0, 0, 0, T0 + 100, NULL);
    T_EQ_INT(r.srtt, 100);
    T_EQ_INT(r.rttvar, 50);
    T_EQ_INT(p2p_recovery_pto(&r), 100 + 1000 + 5000);
    p2p_recovery_free(&r);
}

static void test_recovery_ack_never_sent(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    T_EQ_INT(ack_range(&r, 0, 0, 0, T0, &cb), P2P_ERR_INVALID); /* nothing sent yet */
    for (int i = 0; i < 4; i++) send_pkt(&r, T0, 1000);
    T_EQ_INT(ack_range(&r, 4, 4, 0, T0 + 1000, &cb), P2P_ERR_INVALID);
    T_EQ_INT(ack_range(&r, 0, 4, 0, T0 + 1000, &cb), P2P_ERR_INVALID);
    T_EQ_INT(ack_range(&r, 1000, 1000000, 0, T0 + 1000, &cb), P2P_ERR_INVALID);
    /* nothing was touched by the refused ACKs */
    T_EQ_INT(r.has_acked, 0);
    T_EQ_INT(r.has_rtt, 0);
    T_EQ_INT(r.in_flight, 4000);
    T_EQ_INT(rec.nacked, 0);
    T_EQ_INT(rec.nlost, 0);
    T_EQ_INT(ack_range(&r, 0, 3, 0, T0 + 1000, &cb), 0);
    T_EQ_INT(rec.nacked, 4);
    T_EQ_INT(r.in_flight, 0);
    p2p_recovery_free(&r);
}

static void test_recovery_packet_threshold(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    for (int i = 0; i < 4; i++) send_pkt(&r, T0, 1000);
    T_EQ_INT(r.in_flight, 4000);

    /* ack 3 at T0 + 50 ms: 0 is 3 behind (lost), 1 and 2 wait on the time threshold */
    T_EQ_INT(ack_range(&r, 3, 3, 0, T0 + 50000, &cb), 0);
    T_EQ_INT(rec.acked[3], 1);
    T_EQ_INT(rec.lost[0], 1);
    T_EQ_INT(rec.lost[1], 0);
    T_EQ_INT(rec.lost[2], 0);
    T_EQ_INT(rec.nlost, 1);
    T_EQ_INT(r.in_flight, 2000);
    /* loss_time = send time + 9/8 * max(srtt, latest_rtt) = T0 + 56250 */
    T_CHECK(r.loss_time == T0 + 56250);
    T_CHECK(p2p_recovery_deadline(&r) == T0 + 56250); /* before any PTO */

    /* the same ACK again changes nothing and reports nothing twice */
    ack_range(&r, 3, 3, 0, T0 + 50001, &cb);
    T_EQ_INT(rec.nacked, 1);
    T_EQ_INT(rec.nlost, 1);

    /* early timer: nothing happens */
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 56249, &cb), 0);
    T_EQ_INT(rec.nlost, 1);
    /* at loss_time, 1 and 2 are lost by the time threshold, each once */
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 56250, &cb), 0); /* a loss, not a PTO */
    T_EQ_INT(rec.lost[1], 1);
    T_EQ_INT(rec.lost[2], 1);
    T_EQ_INT(rec.nlost, 3);
    T_EQ_INT(r.in_flight, 0);
    T_EQ_INT(r.eliciting_in_flight, 0);
    T_CHECK(r.loss_time == P2P_TIME_NEVER);
    T_CHECK(p2p_recovery_deadline(&r) == P2P_TIME_NEVER);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 10000000, &cb), 0);
    T_EQ_INT(rec.nlost, 3);

    /* a late ACK for the lost ones: their data was already handed back for resending, so
     * nothing is reported and in_flight does not go negative */
    T_EQ_INT(ack_range(&r, 0, 3, 0, T0 + 60000, &cb), 0);
    T_EQ_INT(rec.acked[0], 0);
    T_EQ_INT(rec.acked[1], 0);
    T_EQ_INT(rec.acked[2], 0);
    T_EQ_INT(rec.acked[3], 1);
    T_EQ_INT(r.in_flight, 0);
    T_EQ_INT(rec.nlost, 3);
    T_EQ_INT(r.base_pn, 4);
    p2p_recovery_free(&r);
}

static void test_recovery_time_threshold_on_ack(void)
{
    /* 0 sent at T0, 1 sent 100 ms later and acked 50 ms after that: srtt = 50 ms, loss delay
     * 56.25 ms, and 0 was sent 150 ms before the ACK, so it is lost right away although it
     * is only one packet behind. */
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    send_pkt(&r, T0, 1000);
    send_pkt(&r, T0 + 100000, 1000);
    send_pkt(&r, T0 + 140000, 1000); /* after 1: not a candidate */
    ack_range(&r, 1, 1, 0, T0 + 150000, &cb);
    T_EQ_INT(rec.lost[0], 1);
    T_EQ_INT(rec.lost[2], 0);
    T_CHECK(r.loss_time == P2P_TIME_NEVER);
    /* the PTO now covers packet 2 */
    T_CHECK(p2p_recovery_deadline(&r) == T0 + 140000 + p2p_recovery_pto(&r));
    p2p_recovery_free(&r);

    /* loss_time uses max(srtt, latest_rtt): a latest RTT above srtt stretches it */
    p2p_recovery_init(&r, T0);
    memset(&rec, 0, sizeof rec);
    send_pkt(&r, T0, 1000);                   /* 0 */
    ack_range(&r, 0, 0, 0, T0 + 40000, &cb);  /* srtt 40000, rttvar 20000 */
    send_pkt(&r, T0 + 100000, 1000);          /* 1 */
    send_pkt(&r, T0 + 100000, 1000);          /* 2 */
    ack_range(&r, 2, 2, 0, T0 + 180000, &cb); /* latest 80000, srtt 45000 */
    T_EQ_INT(r.srtt, 45000);
    T_EQ_INT(r.latest_rtt, 80000);
    T_CHECK(r.loss_time == T0 + 100000 + 90000); /* 9/8 * 80000 */
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 189999, &cb), 0);
    T_EQ_INT(rec.lost[1], 0);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 190000, &cb), 0);
    T_EQ_INT(rec.lost[1], 1);
    T_EQ_INT(rec.nlost, 1);
    p2p_recovery_free(&r);
}

static void test_recovery_pto_backoff(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    /* srtt 10 ms, rttvar 5 ms: PTO = 10 + 4 * 5 + 5 (max_ack_delay) ms */
    p2p_recovery_rtt_sample(&r, 10000);
    send_pkt(&r, T0, 1200);
    const uint64_t pto = 35000;
    T_EQ_INT(p2p_recovery_pto(&r), pto);
    T_CHECK(p2p_recovery_deadline(&r) == T0 + pto);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + pto - 1, &cb), 0);
    T_EQ_INT(r.pto_count, 0);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + pto, &cb), 1);
    T_EQ_INT(r.pto_count, 1);
    T_EQ_INT(r.pto_streak, 1);
    T_EQ_INT(p2p_recovery_pto(&r), 2 * pto);
    T_CHECK(p2p_recovery_deadline(&r) == T0 + 2 * pto);
    /* the old deadline has passed but the doubled one has not */
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + pto + 1, &cb), 0);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 2 * pto, &cb), 1);
    T_EQ_INT(r.pto_count, 2);
    T_EQ_INT(p2p_recovery_pto(&r), 4 * pto);
    /* the probe itself restarts the timer from its send time */
    send_pkt(&r, T0 + 2 * pto + 10, 1200);
    T_CHECK(p2p_recovery_deadline(&r) == T0 + 2 * pto + 10 + 4 * pto);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 6 * pto + 10, &cb), 1);
    T_EQ_INT(r.pto_count, 3);
    T_EQ_INT(r.pto_streak, 3);
    T_EQ_INT(rec.nlost, 0); /* a PTO declares nothing lost */
    T_EQ_INT(r.in_flight, 2400);

    /* any packet from the peer re-arms the backoff, but the path is not proven to carry
     * ours until an ACK says so */
    p2p_recovery_peer_alive(&r);
    T_EQ_INT(r.pto_count, 0);
    T_EQ_INT(r.pto_streak, 3);
    T_EQ_INT(p2p_recovery_pto(&r), pto);

    /* an ACK of an ack-eliciting packet resets both */
    r.pto_count = 2;
    ack_range(&r, 1, 1, 0, T0 + 6 * pto + 20, &cb);
    T_EQ_INT(r.pto_count, 0);
    T_EQ_INT(r.pto_streak, 0);
    T_EQ_INT(rec.acked[1], 1);
    /* 1 acked, 0 is one behind and was sent long ago: lost by time */
    T_EQ_INT(rec.lost[0], 1);
    T_CHECK(p2p_recovery_deadline(&r) == P2P_TIME_NEVER);
    p2p_recovery_free(&r);

    /* the backoff stops once the PTO reaches 1 s: 35 ms doubles 5 times (1.12 s), never 6 */
    p2p_recovery_init(&r, T0);
    p2p_recovery_rtt_sample(&r, 10000);
    uint64_t t = T0;
    send_pkt(&r, t, 1200);
    for (int i = 0; i < 20; i++) {
        t = p2p_recovery_deadline(&r);
        T_EQ_INT(p2p_recovery_on_timeout(&r, t, &cb), 1);
    }
    T_EQ_INT(r.pto_count, 5);
    T_EQ_INT(r.pto_streak, 20);
    T_EQ_INT(p2p_recovery_pto(&r), pto << 5);
    p2p_recovery_free(&r);
    /* and never past 2^6, whatever the base */
    p2p_recovery_init(&r, T0);
    p2p_recovery_rtt_sample(&r, 100);
    send_pkt(&r, T0, 1200);
    for (int i = 0; i < 20; i++)
        T_EQ_INT(p2p_recovery_on_timeout(&r, p2p_recovery_deadline(&r), &cb), 1);
    T_EQ_INT(r.pto_count, P2P_PTO_BACKOFF_MAX);
    p2p_recovery_free(&r);
}

static void test_recovery_slow_start(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    for (int i = 0; i < 10; i++) {
        T_EQ_INT(p2p_recovery_cwnd_allows(&r, P2P_MAX_PACKET), 1);
        send_pkt(&r, T0, P2P_MAX_PACKET);
    }
    T_EQ_INT(p2p_recovery_cwnd_allows(&r, P2P_MAX_PACKET), 0);
    T_EQ_INT(p2p_recovery_cwnd_allows(&r, 1), 0);
    T_EQ_INT(p2p_recovery_cwnd_allows(&r, 0), 1);
    /* slow start: every acknowledged byte grows the window by one byte */
    ack_range(&r, 0, 4, 0, T0 + 30000, NULL);
    T_EQ_INT(r.cc.cwnd, 12320 + 5 * 1232);
    ack_range(&r, 0, 9, 0, T0 + 31000, NULL);
    T_EQ_INT(r.cc.cwnd, 2 * 12320);
    T_EQ_INT(r.in_flight, 0);
    T_CHECK(r.cc.ssthresh == UINT64_MAX);
    p2p_recovery_free(&r);
}

static void test_recovery_congestion(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    for (int i = 0; i < 5; i++) send_pkt(&r, T0, 1000);

    /* ack 4: slow start adds 1000, then 0 and 1 are lost in one flight: one halving */
    ack_range(&r, 4, 4, 0, T0 + 50000, &cb);
    T_EQ_INT(rec.nlost, 2);
    T_EQ_INT(r.cc.cwnd, (12320 + 1000) / 2); /* 6660, not 3330 */
    T_EQ_INT(r.cc.ssthresh, 6660);
    /* 2 and 3 were sent before recovery started: acking them does not grow the window */
    ack_range(&r, 2, 4, 0, T0 + 51000, &cb);
    T_EQ_INT(r.cc.cwnd, 6660);
    T_EQ_INT(rec.acked[2] + rec.acked[3], 2);

    /* a loss from the same flight found later by the timer: still no second halving */
    p2p_recovery_free(&r);
    p2p_recovery_init(&r, T0);
    memset(&rec, 0, sizeof rec);
    for (int i = 0; i < 4; i++) send_pkt(&r, T0, 1000);
    ack_range(&r, 3, 3, 0, T0 + 50000, &cb);
    T_EQ_INT(rec.nlost, 1);
    T_EQ_INT(r.cc.cwnd, 6660);
    p2p_recovery_on_timeout(&r, p2p_recovery_deadline(&r), &cb);
    T_EQ_INT(rec.nlost, 3);
    T_EQ_INT(r.cc.cwnd, 6660);

    /* congestion avoidance: one packet of window growth per window of acknowledged bytes,
     * for packets sent after recovery began */
    uint64_t t1 = T0 + 100000;
    for (int i = 0; i < 7; i++) send_pkt(&r, t1, 1000); /* pn 4..10 */
    ack_range(&r, 4, 9, 0, t1 + 50000, &cb);
    T_EQ_INT(r.cc.cwnd, 6660); /* 6000 acked < 6660 */
    ack_range(&r, 4, 10, 0, t1 + 50001, &cb);
    T_EQ_INT(r.cc.cwnd, 6660 + 1232); /* 7000 acked >= 6660 */
    T_EQ_INT(r.cc.ssthresh, 6660);

    /* a new flight loses a packet: a second halving, with ssthresh following */
    uint64_t t2 = t1 + 100000;
    for (int i = 0; i < 4; i++) send_pkt(&r, t2, 1000); /* pn 11..14 */
    ack_range(&r, 14, 14, 0, t2 + 50000, &cb);
    T_EQ_INT(rec.lost[11], 1);
    T_EQ_INT(r.cc.cwnd, (6660 + 1232) / 2); /* 3946 */
    T_EQ_INT(r.cc.ssthresh, 3946);
    p2p_recovery_on_timeout(&r, p2p_recovery_deadline(&r), &cb); /* 12, 13: same flight */
    T_EQ_INT(rec.lost[12] + rec.lost[13], 2);
    T_EQ_INT(r.cc.cwnd, 3946);

    /* and again: 1973 would be below the minimum window of 2 * 1232 */
    uint64_t t3 = t2 + 100000;
    for (int i = 0; i < 4; i++) send_pkt(&r, t3, 1000); /* pn 15..18 */
    ack_range(&r, 18, 18, 0, t3 + 50000, &cb);
    T_EQ_INT(rec.lost[15], 1);
    T_EQ_INT(r.cc.cwnd, P2P_MIN_WINDOW);
    uint64_t t4 = t3 + 100000;
    for (int i = 0; i < 4; i++) send_pkt(&r, t4, 1000); /* pn 19..22 */
    ack_range(&r, 22, 22, 0, t4 + 50000, &cb);
    T_EQ_INT(rec.lost[19], 1);
    T_EQ_INT(r.cc.cwnd, P2P_MIN_WINDOW);
    T_EQ_INT(r.cc.cwnd, 2464);
    for (int i = 0; i < MAXPN; i++) T_CHECK(rec.lost[i] <= 1 && rec.acked[i] <= 1);
    p2p_recovery_free(&r);
}

static void test_recovery_ack_only_packets(void)
{
    /* ACK-only packets are never reported and give no RTT sample or PTO reset */
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    uint64_t pn;
    send_pkt(&r, T0, 1000);                             /* 0 */
    p2p_recovery_on_sent(&r, T0 + 1, 40, 0, 1, 0, &pn); /* 1: ACK-only */
    p2p_recovery_on_sent(&r, T0 + 2, 40, 0, 2, 0, &pn); /* 2: ACK-only */
    T_EQ_INT(pn, 2);
    T_EQ_INT(p2p_recovery_on_timeout(&r, T0 + 1004000, &cb), 1);
    T_EQ_INT(r.pto_streak, 1);
    ack_range(&r, 1, 2, 0, T0 + 30000, &cb);
    T_EQ_INT(rec.nacked, 0);
    T_EQ_INT(r.has_rtt, 0);
    T_EQ_INT(r.pto_streak, 1);
    T_EQ_INT(rec.nlost, 0); /* 0 is only 2 behind */
    ack_range(&r, 0, 2, 0, T0 + 40000, &cb);
    T_EQ_INT(rec.nacked, 1);
    T_EQ_INT(rec.acked[0], 1);
    T_EQ_INT(r.pto_streak, 0);
    T_EQ_INT(r.in_flight, 0);
    p2p_recovery_free(&r);
}

static void test_recovery_random(void)
{
    /* Many packets, ACK frames with several ranges built from a random delivery pattern:
     * every packet is reported acked or lost at most once each, a packet is never reported
     * lost after it was acked, and in_flight always equals the unresolved bytes. */
    p2p_rng rng;
    p2p_rng_init(&rng, 0x7265636f76);
    static record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    static uint8_t delivered[MAXPN], state[MAXPN]; /* state: 0 out, 1 acked, 2 lost */
    static uint16_t size[MAXPN];
    memset(delivered, 0, sizeof delivered);
    memset(state, 0, sizeof state);
    uint64_t now = T0;
    int bad = 0;
    while (r.next_pn < MAXPN - 64 && !bad) {
        int burst = 1 + (int)p2p_rng_below(&rng, 40);
        for (int i = 0; i < burst; i++) {
            uint64_t pn = r.next_pn;
            size[pn] = (uint16_t)(100 + p2p_rng_below(&rng, 1133));
            send_pkt(&r, now, size[pn]);
            if (p2p_rng_below(&rng, 100) >= 10) delivered[pn] = 1;
            now += p2p_rng_below(&rng, 300);
        }
        now += 20000 + p2p_rng_below(&rng, 20000);
        /* ACK the delivered packets among the newest ones, as ranges highest first */
        p2p_ack_range rg[P2P_ACK_MAX_RANGES];
        size_t n = 0;
        uint64_t lowest = r.next_pn > 200 ? r.next_pn - 200 : 0;
        for (uint64_t x = r.next_pn; x-- > lowest && n < P2P_ACK_MAX_RANGES;) {
            if (!delivered[x]) continue;
            if (n && rg[n - 1].lo == x + 1)
                rg[n - 1].lo = x;
            else {
                rg[n].lo = rg[n].hi = x;
                n++;
            }
        }
        if (n) {
            p2p_frame f;
            mk_ack(&f, p2p_rng_below(&rng, 3000), rg, n);
            unsigned before_lost[MAXPN];
            memcpy(before_lost, rec.lost, sizeof before_lost);
            if (p2p_recovery_on_ack(&r, &f, now, &cb) != 0) bad = 1;
            for (uint64_t x = 0; x < r.next_pn; x++) {
                if (rec.lost[x] > before_lost[x] && state[x] == 1) bad = 1; /* lost after acked */
                if (rec.lost[x]) state[x] = state[x] ? state[x] : 2;
                if (rec.acked[x]) state[x] = 1;
            }
        }
        if (p2p_rng_below(&rng, 3) == 0) {
            uint64_t d = p2p_recovery_deadline(&r);
            if (d != P2P_TIME_NEVER) {
                if (d > now) now = d;
                p2p_recovery_on_timeout(&r, now, &cb);
            }
        }
        uint64_t want_in_flight = 0;
        for (uint64_t x = 0; x < r.next_pn; x++) {
            if (rec.acked[x] > 1 || rec.lost[x] > 1) bad = 1;
            if (!rec.acked[x] && !rec.lost[x]) want_in_flight += size[x];
        }
        if (r.in_flight != want_in_flight) bad = 1;
        if (r.cc.cwnd < P2P_MIN_WINDOW) bad = 1;
        if (bad) fprintf(stderr, "  at pn %llu\n", (unsigned long long)r.next_pn);
    }
    T_CHECK(!bad);
    /* finally acknowledge everything, in chunks of 64 ranges or fewer */
    for (uint64_t hi = r.next_pn; hi > 0;) {
        uint64_t lo = hi > 500 ? hi - 500 : 0;
        ack_range(&r, lo, hi - 1, 0, now, &cb);
        hi = lo;
    }
    T_EQ_INT(r.in_flight, 0);
    T_EQ_INT(r.eliciting_in_flight, 0);
    T_CHECK(r.base_pn == r.next_pn);
    /* every packet was resolved (a lost one whose number fell below the record is not
     * reported again when a late ACK names it), none twice */
    unsigned never = 0, twice = 0;
    for (uint64_t x = 0; x < r.next_pn; x++) {
        if (!rec.acked[x] && !rec.lost[x]) never++;
        if (rec.acked[x] > 1 || rec.lost[x] > 1) twice++;
    }
    T_EQ_INT(never, 0);
    T_EQ_INT(twice, 0);
    T_CHECK(rec.nlost > 50); /* the test did exercise loss */
    p2p_recovery_free(&r);
}

/* ---- pacing ----------------------------------------------------------------------------- */

/* The expected pacing wait: deficit / (gain * cwnd / srtt), plus the 1 us the pacer adds. */
static uint64_t want_wait(double deficit, double gain, double cwnd, double srtt)
{
    return (uint64_t)(deficit / (gain * cwnd / srtt)) + 1;
}

#define NEAR(a, b) T_CHECK((a) + 1 >= (b) && (a) <= (b) + 1)

static void test_pacing(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    /* a burst of 10 full packets goes at once */
    for (int i = 0; i < 10; i++) {
        T_CHECK(p2p_recovery_pace_at(&r, T0, P2P_MAX_PACKET) == T0);
        p2p_recovery_pace_spend(&r, T0, P2P_MAX_PACKET);
    }
    /* the 11th waits 1232 bytes at 2 * 12320 / 333000 bytes per us (slow start): 16650 us */
    uint64_t at = p2p_recovery_pace_at(&r, T0, P2P_MAX_PACKET);
    NEAR(at, T0 + 16651);
    T_CHECK(at > T0 + 16000);
    /* a smaller packet waits proportionally less */
    uint64_t at_small = p2p_recovery_pace_at(&r, T0, 616);
    NEAR(at_small, T0 + 8326);
    /* at the promised time it may go */
    T_CHECK(p2p_recovery_pace_at(&r, at, P2P_MAX_PACKET) == at);
    p2p_recovery_pace_spend(&r, at, P2P_MAX_PACKET);
    T_CHECK(p2p_recovery_pace_at(&r, at, P2P_MAX_PACKET) > at);

    /* idle refills the burst but no more than the burst */
    uint64_t later = at + 10000000;
    for (int i = 0; i < 10; i++) {
        T_CHECK(p2p_recovery_pace_at(&r, later, P2P_MAX_PACKET) == later);
        p2p_recovery_pace_spend(&r, later, P2P_MAX_PACKET);
    }
    T_CHECK(p2p_recovery_pace_at(&r, later, P2P_MAX_PACKET) > later);
    p2p_recovery_free(&r);

    /* Proportional to cwnd / srtt: srtt 50 ms and cwnd 13320 after one acked packet. */
    p2p_recovery_init(&r, T0);
    send_pkt(&r, T0, 1000);
    ack_range(&r, 0, 0, 0, T0 + 50000, NULL);
    T_EQ_INT(r.srtt, 50000);
    T_EQ_INT(r.cc.cwnd, 13320);
    uint64_t t = T0 + 50000;
    for (int i = 0; i < 10; i++) p2p_recovery_pace_spend(&r, t, P2P_MAX_PACKET);
    at = p2p_recovery_pace_at(&r, t, P2P_MAX_PACKET);
    NEAR(at, t + want_wait(1232, 2.0, 13320, 50000)); /* 2313 */
    NEAR(at, t + 2313);

    /* Overspending is remembered, down to one burst of debt. */
    for (int i = 0; i < 30; i++) p2p_recovery_pace_spend(&r, t, P2P_MAX_PACKET);
    at = p2p_recovery_pace_at(&r, t, P2P_MAX_PACKET);
    NEAR(at, t + want_wait(1232 + 12320, 2.0, 13320, 50000));
    p2p_recovery_free(&r);

    /* Congestion avoidance paces at 1.25 x. */
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    for (int i = 0; i < 4; i++) send_pkt(&r, T0, 1000);
    ack_range(&r, 3, 3, 0, T0 + 50000, &cb); /* 0 lost: cwnd 6660 = ssthresh */
    T_EQ_INT(r.cc.cwnd, 6660);
    T_EQ_INT(r.srtt, 50000);
    t = T0 + 50000;
    for (int i = 0; i < 10; i++) p2p_recovery_pace_spend(&r, t, P2P_MAX_PACKET);
    at = p2p_recovery_pace_at(&r, t, P2P_MAX_PACKET);
    NEAR(at, t + want_wait(1232, 1.25, 6660, 50000)); /* 7399.4 + 1 */
    NEAR(at, t + 7400);
    p2p_recovery_free(&r);
}

/* A peer that acknowledges nothing: the record stops at P2P_SENT_RECORD_MAX entries, and
 * making room declares the oldest outstanding packet lost (its data is resent) while the
 * ACK-only packets behind it go with it. */
static void test_recovery_record_bounded(void)
{
    p2p_recovery r;
    p2p_recovery_init(&r, T0);
    record rec;
    memset(&rec, 0, sizeof rec);
    p2p_recovery_cb cb = {&rec, on_acked, on_lost};
    uint64_t pn;
    send_pkt(&r, T0, 1000); /* never acknowledged */
    uint64_t sent = 1;
    while (r.next_pn - r.base_pn < P2P_SENT_RECORD_MAX) {
        T_EQ_INT(p2p_recovery_on_sent(&r, T0 + sent, 40, 0, 0, 0, &pn), 0); /* ACK-only */
        sent++;
    }
    T_EQ_INT(r.cap, P2P_SENT_RECORD_MAX);
    /* full: the next one is refused until room is made */
    T_CHECK(p2p_recovery_on_sent(&r, T0 + sent, 40, 0, 0, 0, &pn) < 0);
    uint64_t cwnd = r.cc.cwnd;
    p2p_recovery_make_room(&r, T0 + sent, &cb);
    T_EQ_INT(rec.nlost, 1); /* packet 0: its data goes back */
    T_EQ_INT(rec.lost[0], 1);
    T_EQ_INT(r.in_flight, 0);
    T_CHECK(r.cc.cwnd < cwnd);      /* a congestion signal */
    T_EQ_INT(r.base_pn, r.next_pn); /* the ACK-only ones went too */
    T_CHECK(r.cap == 0 || r.cap <= P2P_SENT_RECORD_MAX);
    T_EQ_INT(p2p_recovery_on_sent(&r, T0 + sent, 40, 0, 0, 0, &pn), 0);
    /* room is only made when the record is full */
    p2p_recovery_make_room(&r, T0 + sent, &cb);
    T_EQ_INT(rec.nlost, 1);
    p2p_recovery_free(&r);
}

/* ACKs of ACKs: once the peer acknowledges a packet of ours that carried an ACK, the ranges
 * below that ACK's largest number are not reported again; an ACK the peer has not seen
 * changes nothing. */
static void test_acker_ack_of_ack(void)
{
    p2p_acker a;
    p2p_acker_init(&a);
    /* 0-9, 11-19, 21-29: three ranges (the sender's skipped 10 and 20) */
    for (uint64_t pn = 0; pn < 30; pn++)
        if (pn % 10 != 0 || pn == 0) T_EQ_INT(p2p_acker_on_packet(&a, pn, 1, T0 + pn), 0);
    p2p_frame f;
    T_EQ_INT(acker_frame(&a, T0 + 100, &f), 1);
    T_EQ_INT(f.u.ack.count, 3);
    p2p_acker_sent(&a);
    p2p_acker_carried(&a, 7); /* our packet 7 carried that ACK (largest 29) */
    /* two more arrive after the ACK went out: 31-32 (30 skipped) */
    T_EQ_INT(p2p_acker_on_packet(&a, 31, 1, T0 + 200), 0);
    T_EQ_INT(p2p_acker_on_packet(&a, 32, 1, T0 + 201), 0);

    /* the peer acknowledges our packets 3-6 and 8: not 7, so nothing is forgotten */
    p2p_frame peer;
    memset(&peer, 0, sizeof peer);
    peer.type = P2P_FRAME_ACK;
    peer.u.ack.count = 2;
    peer.u.ack.r[0].lo = 8;
    peer.u.ack.r[0].hi = 8;
    peer.u.ack.r[1].lo = 3;
    peer.u.ack.r[1].hi = 6;
    p2p_acker_on_peer_ack(&a, &peer);
    T_EQ_INT(acker_frame(&a, T0 + 300, &f), 1);
    T_EQ_INT(f.u.ack.count, 4);

    /* now it acknowledges 7: the ranges below 21-29 (which holds 29) go; 21-29 and 31-32 stay */
    peer.u.ack.count = 1;
    peer.u.ack.r[0].lo = 7;
    peer.u.ack.r[0].hi = 8;
    p2p_acker_on_peer_ack(&a, &peer);
    T_EQ_INT(acker_frame(&a, T0 + 400, &f), 1);
    T_EQ_INT(f.u.ack.count, 2);
    T_EQ_INT(f.u.ack.r[0].lo, 31);
    T_EQ_INT(f.u.ack.r[0].hi, 32);
    T_EQ_INT(f.u.ack.r[1].lo, 21);
    T_EQ_INT(f.u.ack.r[1].hi, 29);
    T_EQ_INT(a.carriers, 0);

    /* only the last P2P_ACK_CARRIERS carriers are remembered, oldest dropped first */
    for (uint64_t pn = 100; pn < 100 + P2P_ACK_CARRIERS + 3; pn++) p2p_acker_carried(&a, pn);
    T_EQ_INT(a.carriers, P2P_ACK_CARRIERS);
    T_CHECK(a.carrier[0].pn == 103);
    p2p_acker_free(&a);
}

int main(void)
{
    T_RUN(test_replay_basic);
    T_RUN(test_replay_window_edge);
    T_RUN(test_acker_thresholds);
    T_RUN(test_acker_out_of_order);
    T_RUN(test_acker_bulk_threshold);
    T_RUN(test_acker_random_ranges);
    T_RUN(test_recovery_init_and_sent);
    T_RUN(test_recovery_rtt);
    T_RUN(test_recovery_ack_never_sent);
    T_RUN(test_recovery_packet_threshold);
    T_RUN(test_recovery_time_threshold_on_ack);
    T_RUN(test_recovery_pto_backoff);
    T_RUN(test_recovery_slow_start);
    T_RUN(test_recovery_congestion);
    T_RUN(test_recovery_ack_only_packets);
    T_RUN(test_recovery_random);
    T_RUN(test_pacing);
    T_RUN(test_replay_aliased_word);
    T_RUN(test_acker_old_hole);
    T_RUN(test_acker_ack_of_ack);
    T_RUN(test_recovery_record_bounded);
    return t_summary("reliable");
}
