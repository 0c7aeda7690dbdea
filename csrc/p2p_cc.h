/*
 * p2p_cc.h - a session's congestion controller: BBR (the default) or NewReno, chosen per
 * node (p2p_config.congestion). It sees what loss recovery measures (a delivery-rate sample
 * per ACK, the bytes acknowledged and declared lost, spurious losses) and answers with a
 * congestion window and a pacing rate. It knows nothing of packets beyond their size and
 * send time. docs/PROTOCOL.md section 5.2 is the contract.
 */
#ifndef P2P_CC_H
#define P2P_CC_H

#include <stdint.h>
#include "p2pnet.h"

/* NewReno (RFC 9002 section 7) */
#define P2P_INITIAL_WINDOW (10 * P2P_MAX_PACKET)
#define P2P_MIN_WINDOW (2 * P2P_MAX_PACKET)
#define P2P_MAX_WINDOW (64u * 1024u * 1024u)
#define P2P_RENO_PACING_GAIN_SS 2.0 /* pacing gain in slow start */
#define P2P_RENO_PACING_GAIN 1.25   /* and in congestion avoidance */

/* BBR (docs/PROTOCOL.md section 5.2 says why each value) */
#define P2P_BBR_STARTUP_PACING_GAIN 2.77 /* 4 ln 2: doubles the delivery rate each round */
#define P2P_BBR_STARTUP_CWND_GAIN 2.0
#define P2P_BBR_DRAIN_PACING_GAIN 0.35 /* empties Startup's queue in about a round */
#define P2P_BBR_CWND_GAIN 2.0          /* ProbeBW probing up: room for the probe */
#define P2P_BBR_CRUISE_CWND_GAIN 1.0   /* ProbeBW otherwise: the BDP and the headroom */
#define P2P_BBR_HEADROOM_PACKETS 32    /* the window's headroom: this many packets, */
#define P2P_BBR_HEADROOM_BDP_DIV 4     /* but at most a quarter of the BDP, */
#define P2P_BBR_HEADROOM_MIN_PACKETS 3 /* and at least this many, */
#define P2P_BBR_HEADROOM_MIN_US 1000u  /* and at least what the path carries in this long */
#define P2P_BBR_PROBE_UP_GAIN 1.25
#define P2P_BBR_PROBE_DOWN_GAIN 0.75
#define P2P_BBR_CYCLE_PHASES 8              /* up, down, then six rounds cruising at 1.0 */
#define P2P_BBR_BW_ROUNDS 10                /* the bandwidth filter: max over this many rounds */
#define P2P_BBR_FULL_BW_GROWTH 1.25         /* Startup ends when the rate grew less than this... */
#define P2P_BBR_FULL_BW_ROUNDS 3            /* ...for this many rounds in a row */
#define P2P_BBR_MIN_RTT_WINDOW_US 10000000u /* the min-RTT filter's window; then ProbeRTT */
#define P2P_BBR_MIN_RTT_NEAR_DIV 16  /* a sample within min_rtt/16 of it confirms the minimum */
#define P2P_BBR_PROBE_RTT_US 200000u /* time spent at the ProbeRTT window */
#define P2P_BBR_MIN_CWND_PACKETS 4
#define P2P_BBR_LOSS_THRESH 0.10   /* a round losing more than this fraction is congested... */
#define P2P_BBR_LOSS_MIN_PACKETS 8 /* ...and at least this many packets (small rounds are noisy) */
#define P2P_BBR_BETA 0.7          /* the lower bounds keep at most this much per congested round, */
#define P2P_BBR_BETA_MIN 0.5      /* and at least this much (1 - the loss rate, in between) */
#define P2P_BBR_QUEUE_SHORT_DIV 4 /* RTT within min_rtt/4 of it: the queue is short */

/* Adaptive reordering (RFC 8985, RFC 9002 section 6.1) */
#define P2P_REORDER_RESET_EPISODES \
    16 /* loss episodes without a spurious one before the
                                       * reordering window and threshold reset */

typedef enum p2p_bbr_state {
    P2P_BBR_STARTUP = 0,
    P2P_BBR_DRAIN = 1,
    P2P_BBR_PROBE_BW = 2,
    P2P_BBR_PROBE_RTT = 3
} p2p_bbr_state;

/* One ACK's worth of delivery-rate measurement (draft-cheng-iccrg-delivery-rate-estimation). */
typedef struct p2p_rate_sample {
    double rate;              /* bytes per microsecond; 0: no valid sample in this ACK */
    int app_limited;          /* the sender had less to send than it was allowed */
    uint64_t prior_delivered; /* the connection's delivered count when the newest acked
                               * packet was sent: it tells where a round ends */
    uint64_t delivered;       /* the connection's delivered bytes after this ACK */
    uint64_t acked;           /* bytes newly acknowledged by this ACK */
    uint64_t in_flight;       /* bytes in flight after this ACK */
    uint64_t rtt;             /* the RTT sample of this ACK, 0 if none */
    uint64_t min_rtt;         /* the path's min RTT so far (UINT64_MAX: none yet) */
    uint64_t srtt;
} p2p_rate_sample;

typedef struct p2p_cc {
    int kind; /* P2P_CC_BBR or P2P_CC_NEWRENO */
    uint64_t cwnd;
    uint32_t mss;
    /* NewReno */
    uint64_t ssthresh, recovery_start, ca_acked;
    /* BBR: the model */
    p2p_bbr_state state;
    double bw_round[P2P_BBR_BW_ROUNDS]; /* the highest rate sampled in each recent round */
    uint64_t bw_filter_round;           /* the round of the newest sample in the filter */
    double max_bw;                      /* their max: the bottleneck bandwidth estimate */
    double bw_lo;                       /* lower bound after congested rounds (0: none) */
    uint64_t inflight_lo;               /* likewise for the window (0: none) */
    uint64_t min_rtt, min_rtt_stamp;
    uint64_t round_count, next_round_delivered;
    int round_start;
    double pacing_gain, cwnd_gain;
    unsigned cycle_index;
    uint64_t cycle_stamp;
    double full_bw;
    unsigned full_bw_count;
    int filled_pipe;
    uint64_t probe_rtt_done, prior_cwnd;
    int probe_rtt_round_done;
    /* BBR: this round's deliveries and losses (the loss-rate signal) */
    uint64_t round_acked, round_lost, congested_round;
    uint64_t last_rtt; /* the newest RTT sample */
    unsigned round_lost_packets;
    double round_max_rate;
    /* Undo (both): what the last congestion response changed, and whether every loss of its
     * episode turned out spurious. */
    int can_undo;
    unsigned ep_lost, ep_spurious;
    uint64_t undo_cwnd, undo_ssthresh, undo_inflight_lo;
    double undo_bw_lo;
    int undo_state_filled;
    /* counters for p2p_peer_info */
    uint64_t congestion_events, undos;
} p2p_cc;

/* Starts a controller of that kind (P2P_CC_BBR or P2P_CC_NEWRENO; anything else is BBR).
 * seed picks where the first ProbeBW gain cycle starts, so flows that start together do not
 * probe in step. */
void p2p_cc_init(p2p_cc *cc, int kind, uint64_t seed, uint64_t now);
/* Packets up to mss bytes may go now (path MTU discovery). */
void p2p_cc_set_mss(p2p_cc *cc, uint32_t mss);
/* One acknowledged ack-eliciting packet: its size and send time (NewReno grows per packet).
 * in_flight_before is what was in flight before the ACK. */
void p2p_cc_on_packet_acked(p2p_cc *cc, uint32_t size, uint64_t sent_time,
                            uint64_t in_flight_before);
/* The ACK as a whole, after its packets and the losses it revealed (BBR's model update). */
void p2p_cc_on_ack(p2p_cc *cc, const p2p_rate_sample *rs, uint64_t now);
/* Packets declared lost: bytes in all, count, the newest one's send time, and the bytes in
 * flight now. */
void p2p_cc_on_lost(p2p_cc *cc, uint64_t bytes, unsigned packets, uint64_t newest_sent,
                    uint64_t in_flight, uint64_t now);
/* A packet declared lost was acknowledged after all: reordering, not loss. When every loss of
 * the last congestion episode proves spurious, its response is undone. */
void p2p_cc_on_spurious(p2p_cc *cc, uint32_t size);
/* The congestion window, bytes. */
uint64_t p2p_cc_window(const p2p_cc *cc);
/* Bytes per microsecond the pacer lets out (srtt: the smoothed RTT, for a controller that
 * has no rate model yet). */
double p2p_cc_pacing_rate(const p2p_cc *cc, uint64_t srtt);
/* The bottleneck bandwidth estimate, bytes per second (0 for NewReno or before a sample). */
uint64_t p2p_cc_bandwidth(const p2p_cc *cc);

#endif
