/* p2p_cc.c - congestion control: BBR (a model of the bottleneck's bandwidth and round-trip
 * time, with a bounded response to loss) and NewReno (RFC 9002 section 7).
 * docs/PROTOCOL.md section 5.2 is the contract. */
#include "p2p_cc.h"

#include <string.h>

static const double cycle_gains[P2P_BBR_CYCLE_PHASES] = {
    P2P_BBR_PROBE_UP_GAIN, P2P_BBR_PROBE_DOWN_GAIN, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};

void p2p_cc_init(p2p_cc *cc, int kind, uint64_t seed, uint64_t now)
{
    memset(cc, 0, sizeof *cc);
    cc->kind = kind == P2P_CC_NEWRENO ? P2P_CC_NEWRENO : P2P_CC_BBR;
    cc->cwnd = P2P_INITIAL_WINDOW;
    cc->mss = P2P_MAX_PACKET;
    cc->ssthresh = UINT64_MAX;
    cc->state = P2P_BBR_STARTUP;
    cc->pacing_gain = P2P_BBR_STARTUP_PACING_GAIN;
    cc->cwnd_gain = P2P_BBR_STARTUP_CWND_GAIN;
    cc->min_rtt = UINT64_MAX;
    cc->min_rtt_stamp = now;
    /* The first ProbeBW phase: any but the one that drains (it follows the probe up). */
    unsigned k = (unsigned)(seed % (P2P_BBR_CYCLE_PHASES - 1));
    cc->cycle_index = k ? k + 1 : 0;
}

void p2p_cc_set_mss(p2p_cc *cc, uint32_t mss)
{
    cc->mss = mss;
}

uint64_t p2p_cc_window(const p2p_cc *cc)
{
    return cc->cwnd;
}

/* ---- NewReno ---------------------------------------------------------------------------- */

static void reno_on_lost(p2p_cc *cc, unsigned packets, uint64_t newest_sent, uint64_t now)
{
    if (cc->recovery_start && newest_sent <= cc->recovery_start) {
        cc->ep_lost += packets; /* the same episode: one response per round trip */
        return;
    }
    cc->can_undo = 1;
    cc->ep_lost = packets;
    cc->ep_spurious = 0;
    cc->undo_cwnd = cc->cwnd;
    cc->undo_ssthresh = cc->ssthresh;
    cc->congestion_events++;
    cc->recovery_start = now ? now : 1;
    cc->cwnd /= 2;
    /* The minimum window is two of the largest packets (RFC 9002 section 7.2). */
    if (cc->cwnd < 2u * cc->mss) cc->cwnd = 2u * cc->mss;
    if (cc->cwnd < P2P_MIN_WINDOW) cc->cwnd = P2P_MIN_WINDOW;
    cc->ssthresh = cc->cwnd;
    cc->ca_acked = 0;
}

static void reno_on_acked(p2p_cc *cc, uint32_t size, uint64_t sent_time, uint64_t in_flight_before)
{
    if (cc->recovery_start && sent_time <= cc->recovery_start) return;
    /* Only grow a window that is being used (RFC 9002 section 7.8). */
    if (in_flight_before + P2P_INITIAL_WINDOW < cc->cwnd / 2) return;
    if (cc->cwnd >= P2P_MAX_WINDOW) return;
    if (cc->cwnd < cc->ssthresh) {
        cc->cwnd += size;
    } else {
        cc->ca_acked += size;
        if (cc->ca_acked >= cc->cwnd) {
            cc->ca_acked -= cc->cwnd;
            cc->cwnd += cc->mss;
        }
    }
}

/* ---- BBR: the model --------------------------------------------------------------------- */

/* The bandwidth the window and the pacer use: the estimate, under the lower bound that
 * congested rounds set. */
static double bbr_bw(const p2p_cc *cc)
{
    return cc->bw_lo > 0 && cc->bw_lo < cc->max_bw ? cc->bw_lo : cc->max_bw;
}

static uint64_t bbr_min_cwnd(const p2p_cc *cc)
{
    return (uint64_t)P2P_BBR_MIN_CWND_PACKETS * cc->mss;
}

/* gain x the bandwidth-delay product, or the initial window while either is unknown. */
static uint64_t bbr_bdp(const p2p_cc *cc, double gain)
{
    double bw = bbr_bw(cc);
    if (bw <= 0 || cc->min_rtt == UINT64_MAX) return P2P_INITIAL_WINDOW;
    return (uint64_t)(gain * bw * (double)cc->min_rtt);
}

/* The bandwidth filter: the max of the highest rate of each of the last P2P_BBR_BW_ROUNDS
 * rounds in which a sample was taken. Rounds without samples (an idle or app-limited flow)
 * do not age it. */
static void bbr_update_bw(p2p_cc *cc, const p2p_rate_sample *rs)
{
    if (rs->rate <= 0) return;
    if (rs->rate > cc->round_max_rate) cc->round_max_rate = rs->rate;
    /* An app-limited sample says only that the path carries at least that much. */
    if (rs->app_limited && rs->rate < cc->max_bw) return;
    uint64_t gap = cc->round_count - cc->bw_filter_round;
    for (uint64_t r = 1; r <= gap && r <= P2P_BBR_BW_ROUNDS; r++)
        cc->bw_round[(cc->bw_filter_round + r) % P2P_BBR_BW_ROUNDS] = 0;
    cc->bw_filter_round = cc->round_count;
    double *slot = &cc->bw_round[cc->round_count % P2P_BBR_BW_ROUNDS];
    if (rs->rate > *slot) *slot = rs->rate;
    cc->max_bw = 0;
    for (unsigned i = 0; i < P2P_BBR_BW_ROUNDS; i++)
        if (cc->bw_round[i] > cc->max_bw) cc->max_bw = cc->bw_round[i];
}

/* The gains of the current ProbeBW phase. Only a probe up may fill the queue with twice the
 * BDP: a flow that holds a standing queue while cruising takes, from flows that pace, the room
 * they need (its packets go out as others' leave the queue, theirs find it full). */
static void bbr_phase_gains(p2p_cc *cc)
{
    cc->pacing_gain = cycle_gains[cc->cycle_index];
    cc->cwnd_gain = cc->cycle_index == 0 ? P2P_BBR_CWND_GAIN : P2P_BBR_CRUISE_CWND_GAIN;
}

static void bbr_enter_probe_bw(p2p_cc *cc, uint64_t now)
{
    cc->state = P2P_BBR_PROBE_BW;
    bbr_phase_gains(cc);
    cc->cycle_stamp = now;
}

static void bbr_advance_cycle(p2p_cc *cc, uint64_t now)
{
    cc->cycle_index = (cc->cycle_index + 1) % P2P_BBR_CYCLE_PHASES;
    cc->cycle_stamp = now;
    bbr_phase_gains(cc);
    /* Probing up looks past the lower bounds, by the probe's gain, once a whole round went
     * by without congestion and the queue is short, or a whole cycle of rounds did (the path
     * may have room again); they go once the model is below them. */
    int short_queue = cc->min_rtt != UINT64_MAX &&
                      cc->last_rtt <= cc->min_rtt + cc->min_rtt / P2P_BBR_QUEUE_SHORT_DIV;
    uint64_t clean = cc->round_count - cc->congested_round;
    if (cc->cycle_index == 0 && clean > 1 && (short_queue || clean > P2P_BBR_CYCLE_PHASES)) {
        cc->bw_lo *= P2P_BBR_PROBE_UP_GAIN;
        cc->inflight_lo = (uint64_t)((double)cc->inflight_lo * P2P_BBR_PROBE_UP_GAIN);
        if (cc->bw_lo >= cc->max_bw) cc->bw_lo = 0;
        if (cc->inflight_lo >= bbr_bdp(cc, cc->cwnd_gain)) cc->inflight_lo = 0;
    }
}

/* The end of a round: a round that lost more than P2P_BBR_LOSS_THRESH of what it sent was
 * congested, and the lower bounds come down to what it delivered, by at most 1 - BETA. */
static void bbr_end_round(p2p_cc *cc, uint64_t now)
{
    uint64_t total = cc->round_acked + cc->round_lost;
    if (cc->round_lost_packets >= P2P_BBR_LOSS_MIN_PACKETS &&
        (double)cc->round_lost > P2P_BBR_LOSS_THRESH * (double)total) {
        cc->congestion_events++;
        cc->congested_round = cc->round_count;
        cc->can_undo = 1;
        cc->ep_lost = cc->round_lost_packets;
        cc->ep_spurious = 0;
        cc->undo_bw_lo = cc->bw_lo;
        cc->undo_inflight_lo = cc->inflight_lo;
        cc->undo_state_filled = cc->filled_pipe;
        /* The heavier the loss, the further the sender overshot: keep 1 - loss rate of the
         * bound, within [BETA_MIN, BETA]. */
        double keep = 1.0 - (double)cc->round_lost / (double)total;
        if (keep > P2P_BBR_BETA) keep = P2P_BBR_BETA;
        if (keep < P2P_BBR_BETA_MIN) keep = P2P_BBR_BETA_MIN;
        double base_bw = cc->bw_lo > 0 ? cc->bw_lo : cc->max_bw;
        double bw_lo = keep * base_bw;
        if (cc->round_max_rate > bw_lo) bw_lo = cc->round_max_rate;
        cc->bw_lo = bw_lo;
        uint64_t base_inflight = cc->inflight_lo ? cc->inflight_lo : cc->cwnd;
        uint64_t inflight_lo = (uint64_t)(keep * (double)base_inflight);
        if (cc->round_acked > inflight_lo) inflight_lo = cc->round_acked;
        cc->inflight_lo = inflight_lo;
        /* Startup ends: the pipe is full, and past full. */
        cc->filled_pipe = 1;
        /* A probe up that overflowed the queue ends at once. */
        if (cc->state == P2P_BBR_PROBE_BW && cc->cycle_index == 0) bbr_advance_cycle(cc, now);
    }
    cc->round_acked = 0;
    cc->round_lost = 0;
    cc->round_lost_packets = 0;
    cc->round_max_rate = 0;
}

static void bbr_check_full_pipe(p2p_cc *cc, const p2p_rate_sample *rs)
{
    if (cc->filled_pipe || !cc->round_start || rs->app_limited) return;
    if (cc->max_bw >= cc->full_bw * P2P_BBR_FULL_BW_GROWTH) {
        cc->full_bw = cc->max_bw;
        cc->full_bw_count = 0;
        return;
    }
    if (++cc->full_bw_count >= P2P_BBR_FULL_BW_ROUNDS) cc->filled_pipe = 1;
}

static void bbr_update_cycle(p2p_cc *cc, const p2p_rate_sample *rs, uint64_t now)
{
    if (cc->state != P2P_BBR_PROBE_BW) return;
    uint64_t min_rtt = cc->min_rtt == UINT64_MAX ? rs->srtt : cc->min_rtt;
    int full = now - cc->cycle_stamp > min_rtt;
    int advance;
    if (cc->pacing_gain > 1.0)
        /* Up until the queue holds the extra quarter, or loss says it cannot; never for
         * more than two round trips (an app-limited flow cannot fill it). */
        advance = (full && (cc->round_lost || rs->in_flight >= bbr_bdp(cc, cc->pacing_gain))) ||
                  now - cc->cycle_stamp > 2 * min_rtt;
    else if (cc->pacing_gain < 1.0)
        advance = full || rs->in_flight <= bbr_bdp(cc, 1.0);
    else
        advance = full;
    if (advance) bbr_advance_cycle(cc, now);
}

static void bbr_update_min_rtt(p2p_cc *cc, const p2p_rate_sample *rs, uint64_t now)
{
    int expired = now > cc->min_rtt_stamp + P2P_BBR_MIN_RTT_WINDOW_US;
    if (rs->rtt) cc->last_rtt = rs->rtt;
    if (rs->rtt && (rs->rtt <= cc->min_rtt || expired)) {
        cc->min_rtt = rs->rtt;
        cc->min_rtt_stamp = now;
    } else if (rs->rtt && rs->rtt <= cc->min_rtt + cc->min_rtt / P2P_BBR_MIN_RTT_NEAR_DIV) {
        /* The queue is (nearly) empty now: the minimum holds, and needs no ProbeRTT. */
        cc->min_rtt_stamp = now;
    } else if (cc->min_rtt == UINT64_MAX && rs->min_rtt != UINT64_MAX) {
        cc->min_rtt = rs->min_rtt; /* the handshake's round trip */
        cc->min_rtt_stamp = now;
    }
    if (expired && cc->state != P2P_BBR_PROBE_RTT && cc->min_rtt != UINT64_MAX) {
        cc->state = P2P_BBR_PROBE_RTT;
        cc->pacing_gain = 1.0;
        cc->prior_cwnd = cc->cwnd;
        cc->probe_rtt_done = 0;
    }
    if (cc->state != P2P_BBR_PROBE_RTT) return;
    if (!cc->probe_rtt_done && rs->in_flight <= bbr_min_cwnd(cc)) {
        cc->probe_rtt_done = now + P2P_BBR_PROBE_RTT_US;
        cc->probe_rtt_round_done = 0;
        cc->next_round_delivered = rs->delivered;
    } else if (cc->probe_rtt_done) {
        if (cc->round_start) cc->probe_rtt_round_done = 1;
        if (cc->probe_rtt_round_done && now >= cc->probe_rtt_done) {
            cc->min_rtt_stamp = now;
            if (cc->cwnd < cc->prior_cwnd) cc->cwnd = cc->prior_cwnd;
            if (cc->filled_pipe) {
                bbr_enter_probe_bw(cc, now);
            } else {
                cc->state = P2P_BBR_STARTUP;
                cc->pacing_gain = P2P_BBR_STARTUP_PACING_GAIN;
                cc->cwnd_gain = P2P_BBR_STARTUP_CWND_GAIN;
            }
        }
    }
}

static void bbr_set_cwnd(p2p_cc *cc, const p2p_rate_sample *rs)
{
    /* Room on top of the model for ACK aggregation, and a small queue of our own: a fixed
     * number of packets, the same for every flow whose share is not tiny, so that flows that
     * share a queue hold equal parts of it and their rates converge (PROTOCOL.md 5.2). */
    uint64_t headroom = bbr_bdp(cc, 1.0) / P2P_BBR_HEADROOM_BDP_DIV;
    if (headroom > (uint64_t)P2P_BBR_HEADROOM_PACKETS * cc->mss)
        headroom = (uint64_t)P2P_BBR_HEADROOM_PACKETS * cc->mss;
    if (headroom < (uint64_t)P2P_BBR_HEADROOM_MIN_PACKETS * cc->mss)
        headroom = (uint64_t)P2P_BBR_HEADROOM_MIN_PACKETS * cc->mss;
    /* On a fast path of tiny round trips (loopback, a LAN) the BDP is a packet or two, and
     * the bottleneck is the hosts' work on each packet: a millisecond's worth of room lets
     * sender and receiver work at once, and queues at most a millisecond anywhere. */
    uint64_t ms_worth = (uint64_t)(bbr_bw(cc) * P2P_BBR_HEADROOM_MIN_US);
    if (headroom < ms_worth) headroom = ms_worth;
    uint64_t target = bbr_bdp(cc, cc->cwnd_gain) + headroom;
    if (cc->filled_pipe) {
        cc->cwnd = cc->cwnd + rs->acked < target ? cc->cwnd + rs->acked : target;
    } else if (cc->cwnd < target || rs->delivered < P2P_INITIAL_WINDOW) {
        cc->cwnd += rs->acked;
    }
    if (cc->inflight_lo && cc->cwnd > cc->inflight_lo) cc->cwnd = cc->inflight_lo;
    /* ProbeRTT empties the queue whatever the model says (it may be stale): the minimum
     * window, as in BBRv1. */
    if (cc->state == P2P_BBR_PROBE_RTT) cc->cwnd = bbr_min_cwnd(cc);
    if (cc->cwnd < bbr_min_cwnd(cc)) cc->cwnd = bbr_min_cwnd(cc);
    if (cc->cwnd > P2P_MAX_WINDOW) cc->cwnd = P2P_MAX_WINDOW;
}

static void bbr_on_ack(p2p_cc *cc, const p2p_rate_sample *rs, uint64_t now)
{
    cc->round_start = 0;
    if (rs->acked && rs->prior_delivered >= cc->next_round_delivered) {
        bbr_end_round(cc, now);
        cc->next_round_delivered = rs->delivered;
        cc->round_count++;
        cc->round_start = 1;
    }
    cc->round_acked += rs->acked;
    bbr_update_bw(cc, rs);
    bbr_check_full_pipe(cc, rs);
    if (cc->state == P2P_BBR_STARTUP && cc->filled_pipe) {
        cc->state = P2P_BBR_DRAIN;
        cc->pacing_gain = P2P_BBR_DRAIN_PACING_GAIN;
        cc->cwnd_gain = P2P_BBR_STARTUP_CWND_GAIN;
    }
    if (cc->state == P2P_BBR_DRAIN && rs->in_flight <= bbr_bdp(cc, 1.0))
        bbr_enter_probe_bw(cc, now);
    bbr_update_cycle(cc, rs, now);
    bbr_update_min_rtt(cc, rs, now);
    bbr_set_cwnd(cc, rs);
}

/* ---- both ------------------------------------------------------------------------------- */

void p2p_cc_on_packet_acked(p2p_cc *cc, uint32_t size, uint64_t sent_time,
                            uint64_t in_flight_before)
{
    if (cc->kind == P2P_CC_NEWRENO) reno_on_acked(cc, size, sent_time, in_flight_before);
}

void p2p_cc_on_ack(p2p_cc *cc, const p2p_rate_sample *rs, uint64_t now)
{
    if (cc->kind == P2P_CC_BBR) bbr_on_ack(cc, rs, now);
}

void p2p_cc_on_lost(p2p_cc *cc, uint64_t bytes, unsigned packets, uint64_t newest_sent,
                    uint64_t in_flight, uint64_t now)
{
    (void)in_flight;
    if (cc->kind == P2P_CC_NEWRENO) {
        reno_on_lost(cc, packets, newest_sent, now);
        return;
    }
    cc->round_lost += bytes;
    cc->round_lost_packets += packets;
    if (cc->can_undo) cc->ep_lost += packets;
}

void p2p_cc_on_spurious(p2p_cc *cc, uint32_t size)
{
    /* What was counted lost was delivered. */
    if (cc->kind == P2P_CC_BBR) {
        cc->round_lost -= cc->round_lost < size ? cc->round_lost : size;
        if (cc->round_lost_packets) cc->round_lost_packets--;
    }
    if (!cc->can_undo) return;
    if (++cc->ep_spurious < cc->ep_lost) return;
    /* Every loss of the episode was reordering: undo its response. */
    cc->can_undo = 0;
    cc->undos++;
    if (cc->kind == P2P_CC_NEWRENO) {
        if (cc->cwnd < cc->undo_cwnd) cc->cwnd = cc->undo_cwnd;
        cc->ssthresh = cc->undo_ssthresh;
        cc->recovery_start = 0;
        cc->ca_acked = 0;
    } else {
        cc->bw_lo = cc->undo_bw_lo;
        cc->inflight_lo = cc->undo_inflight_lo;
        if (!cc->undo_state_filled && cc->state == P2P_BBR_DRAIN) {
            /* Startup was cut short by losses that were not: it goes on. */
            cc->filled_pipe = 0;
            cc->state = P2P_BBR_STARTUP;
            cc->pacing_gain = P2P_BBR_STARTUP_PACING_GAIN;
            cc->cwnd_gain = P2P_BBR_STARTUP_CWND_GAIN;
        }
    }
}

double p2p_cc_pacing_rate(const p2p_cc *cc, uint64_t srtt)
{
    double rtt = srtt ? (double)srtt : 1.0;
    if (cc->kind == P2P_CC_NEWRENO) {
        double gain = cc->cwnd < cc->ssthresh ? P2P_RENO_PACING_GAIN_SS : P2P_RENO_PACING_GAIN;
        return gain * (double)cc->cwnd / rtt;
    }
    double bw = bbr_bw(cc);
    /* Before the first sample: the initial window per round trip, at Startup's gain. */
    if (bw <= 0) return cc->pacing_gain * (double)cc->cwnd / rtt;
    return cc->pacing_gain * bw;
}

uint64_t p2p_cc_bandwidth(const p2p_cc *cc)
{
    if (cc->kind != P2P_CC_BBR) return 0;
    return (uint64_t)(bbr_bw(cc) * 1e6);
}
