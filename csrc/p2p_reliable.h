/*
 * p2p_reliable.h - per-session reliability, modelled on RFC 9002: the replay window, which
 * received packet numbers still need acknowledging, the sent-packet record, RTT estimation,
 * delivery-rate samples, loss detection by adaptive packet and time thresholds (RFC 8985),
 * probe timeouts and pacing; the congestion controller it feeds is p2p_cc. It knows nothing
 * of frames beyond the stream range a packet carried: the session decides what to resend
 * when a packet is declared lost.
 */
#ifndef P2P_RELIABLE_H
#define P2P_RELIABLE_H

#include <stddef.h>
#include <stdint.h>
#include "p2p_cc.h"
#include "p2p_ranges.h"
#include "p2p_wire.h"
#include "p2pnet.h"

/* Specification constants (RFC 9002) */
#define P2P_PACKET_THRESHOLD 3
#define P2P_TIME_THRESHOLD_DIV 8 /* kTimeThreshold 9/8: RTT + RTT/8 */
#define P2P_GRANULARITY_US 1000
#define P2P_INITIAL_RTT_US 333000
/* Tunables (docs/PROTOCOL.md section 5) */
#define P2P_MAX_ACK_DELAY_US 5000
#define P2P_ACK_THRESHOLD 2
#define P2P_ACK_THRESHOLD_BULK 8 /* after P2P_ACK_BULK_AFTER packets */
#define P2P_ACK_BULK_AFTER 1000
/* Adaptive reordering (RFC 8985): the packet threshold grows to the reordering seen, up to
 * this; the time threshold grows in steps of min_rtt / 4, up to the smoothed RTT. */
#define P2P_PACKET_THRESHOLD_MAX 256
/* Packets declared lost leave the record at once; the last this many are remembered, so that
 * an ACK that arrives for one later still tells reordering from loss. */
#define P2P_LOST_KEPT 64
#define P2P_REORDER_STEPS_MAX 16
/* Probe timeouts: two probes each; the PTO doubles at most 6 times, and no more once it has
 * reached P2P_PTO_BACKOFF_STOP_US (so it stays under twice that, unless one PTO without
 * backoff is longer); any authenticated packet from the peer resets the backoff. */
#define P2P_PTO_PROBES 2
#define P2P_PTO_BACKOFF_MAX 6
#define P2P_PTO_BACKOFF_STOP_US 1000000u
#define P2P_PACING_BURST (10 * P2P_MAX_PACKET)
#define P2P_PACING_BURST_US 1000 /* and at least this long at the pacing rate */
#define P2P_REPLAY_WINDOW 4096
#define P2P_REPLAY_WORD_BITS 64 /* the replay bitmap's word, a uint64_t */
#define P2P_ACK_RANGES_KEPT 32
/* ACKs of ACKs (RFC 9000 section 13.2.4): the last this many packets of ours that carried an
 * ACK frame are remembered with the largest number each reported; once the peer acknowledges
 * one, the ranges below that number are never reported again. Without this the gaps a sender
 * leaves on purpose (P2P_SKIP_MIN) pile up to P2P_ACK_RANGES_KEPT ranges in every ACK. */
#define P2P_ACK_CARRIERS 8
/* A packet that carries only an ACK while more than this many ranges are reported asks for an
 * ACK of its own (a PING), at most once per smoothed RTT and never more often than every
 * P2P_ACK_PING_MIN_US, so that a receiver that never sends anything but ACKs still learns which
 * of its ranges it may forget. The floor keeps a sub-millisecond path (a LAN, loopback) from
 * trading an immediate ACK for nearly every ACK it sends. */
#define P2P_ACK_RANGES_PING 2
#define P2P_ACK_PING_MIN_US 25000u
/* hardening (stream): the sent-packet record holds at most this many packet numbers (40
 * bytes each, charged to the peer's budget). A 16 MiB stream window is about 14,000 packets of
 * P2P_MAX_PACKET bytes in flight; when the record is full the oldest outstanding packet is declared
 * lost (p2p_recovery_make_room), so a peer that never acknowledges cannot make it grow. */
#define P2P_SENT_RECORD_MAX 32768u
#define P2P_SENT_RECORD_MIN 64u
/* hardening (optimistic ACKs, RFC 9000 section 21.4): a sender leaves out one packet number
 * every P2P_SKIP_MIN to P2P_SKIP_MIN + P2P_SKIP_SPAN - 1 packets (a random gap), and an ACK
 * that claims one of the last P2P_SKIPPED_KEPT it left out ends the session: a peer that
 * acknowledges what it never received, to make the sender's controller believe in a faster
 * path, is caught within a few hundred packets. */
#define P2P_SKIP_MIN 32u
#define P2P_SKIP_SPAN 96u
#define P2P_SKIPPED_KEPT 8

/* ---- replay protection ---- */
typedef struct p2p_replay {
    uint64_t largest;
    int any;
    uint64_t bits[P2P_REPLAY_WINDOW / P2P_REPLAY_WORD_BITS +
                  1]; /* one spare word so no two live numbers alias */
} p2p_replay;

/* 0 when pn may be new, -1 when it is a replay or below the window. Checked before
 * decrypting; p2p_replay_update() after the packet authenticated. */
int p2p_replay_check(const p2p_replay *w, uint64_t pn);
void p2p_replay_update(p2p_replay *w, uint64_t pn);

/* ---- acknowledging what we receive ---- */
typedef struct p2p_acker {
    p2p_rangeset received; /* packet numbers received, as [lo, hi) */
    uint64_t largest_time; /* when the largest packet number arrived */
    uint64_t count;        /* ack-eliciting packets received in all */
    unsigned pending;      /* ack-eliciting packets not yet acknowledged */
    int ack_now;           /* send an ACK in the next packet */
    uint64_t deadline;     /* send an ACK by then (P2P_TIME_NEVER: none pending) */
    struct {
        uint64_t pn, largest; /* a packet of ours that carried an ACK reporting up to largest */
    } carrier[P2P_ACK_CARRIERS];
    unsigned carriers; /* entries in carrier[], oldest first */
    uint64_t pinged;   /* when an ACK of ours last asked for an ACK (P2P_ACK_RANGES_PING) */
} p2p_acker;

void p2p_acker_init(p2p_acker *a);
void p2p_acker_free(p2p_acker *a);
/* Records a received packet. Returns 0 or P2P_ERR_NOMEM. */
int p2p_acker_on_packet(p2p_acker *a, uint64_t pn, int ack_eliciting, uint64_t now);
/* The packet being read holds a PING: its ACK goes in the next packet, whatever the count. */
void p2p_acker_now(p2p_acker *a);
/* 1 when an ACK frame is worth sending (owed, or due at now). */
int p2p_acker_wants(const p2p_acker *a, uint64_t now);
/* Writes an ACK frame if anything was received. Returns 0 or P2P_ERR_BUFFER. */
int p2p_acker_write(p2p_acker *a, p2p_wr *w, uint64_t now);
/* Called after an ACK frame went out. */
void p2p_acker_sent(p2p_acker *a);
/* The ACK frame just written (p2p_acker_write, nothing received since) went out in our
 * packet `pn`: remembered, so that the peer's acknowledgement of that packet retires the
 * ranges it reported. */
void p2p_acker_carried(p2p_acker *a, uint64_t pn);
/* The peer sent an ACK frame (validated): if it acknowledges one of our packets that carried
 * an ACK, the ranges below that ACK's largest number are dropped (the peer has them). */
void p2p_acker_on_peer_ack(p2p_acker *a, const p2p_frame *ack);

/* ---- what we sent ---- */
enum {
    P2P_SENT_ACKED = 1,
    P2P_SENT_LOST = 2,
    P2P_SENT_ELICITING = 4,
    P2P_SENT_MAX_STREAM = 8,
    P2P_SENT_MTU_PROBE = 16,  /* its loss says the path is too narrow, not congested */
    P2P_SENT_APP_LIMITED = 32 /* sent while the sender had less to send than it could */
};

typedef struct p2p_sent {
    uint64_t time;
    uint64_t stream_off;
    uint32_t stream_len;
    uint16_t size;
    uint8_t flags;
    uint8_t lane; /* the lane whose stream bytes it carried (set by the session) */
    /* delivery-rate sampling: the connection's delivered bytes when it was sent, and how
     * long before `time` those were last delivered and the sampling interval began
     * (microseconds, saturating) */
    uint64_t delivered;
    uint32_t delivered_age, first_sent_age;
} p2p_sent;

typedef struct p2p_lost_rec {
    uint64_t pn;
    uint16_t size;
    uint8_t live; /* 0 once acknowledged (or overwritten) */
} p2p_lost_rec;

typedef struct p2p_recovery {
    p2p_sent *ring; /* packets base_pn .. next_pn-1, at index pn & (cap-1) */
    size_t cap;
    uint64_t base_pn, next_pn;
    uint64_t largest_acked; /* valid when has_acked */
    int has_acked;
    uint64_t in_flight; /* bytes of ack-eliciting packets neither acked nor lost */
    uint64_t eliciting_in_flight;
    uint64_t last_eliciting_time;
    uint64_t loss_time;  /* P2P_TIME_NEVER when no packet waits on the time threshold */
    unsigned pto_count;  /* the backoff's exponent: reset by any packet from the peer */
    unsigned pto_streak; /* PTOs in a row without an ACK of new data (a stalled path) */
    /* packet numbers left out (P2P_SKIP_MIN): the next one, the last few, the gaps' source */
    uint64_t skip_at; /* 0: none (no seed given) */
    uint64_t skipped[P2P_SKIPPED_KEPT];
    unsigned skipped_n;
    uint64_t skip_rng;
    /* RTT (microseconds) */
    uint64_t srtt, rttvar, min_rtt, latest_rtt;
    int has_rtt;
    /* delivery rate: bytes delivered in all, when the last were, where the current sampling
     * interval began, and (nonzero) the delivered count below which samples are app-limited */
    uint64_t delivered, delivered_time, first_sent_time, app_limited;
    /* adaptive reordering: the packet threshold, the time threshold's steps of min_rtt/4,
     * when it last grew, and loss episodes since the last spurious loss */
    unsigned pkt_thresh, reo_steps, reo_episodes;
    uint64_t reo_grown_at, episode_start;
    /* what happened to packets, for p2p_peer_info */
    uint64_t lost_packets, spurious_losses;
    p2p_lost_rec lost_kept[P2P_LOST_KEPT]; /* the newest packets declared lost, a ring */
    unsigned lost_next, lost_live;
    p2p_cc cc;
    uint32_t mss; /* largest packet the path carries now (path MTU discovery) */
    /* pacing */
    double tokens;
    uint64_t pace_time;
} p2p_recovery;

/* What happened to sent packets, reported back to the session. */
typedef struct p2p_recovery_cb {
    void *ud;
    void (*acked)(void *ud, const p2p_sent *s);
    void (*lost)(void *ud, const p2p_sent *s);
} p2p_recovery_cb;

/* Starts the record with NewReno; p2p_recovery_set_cc picks the session's controller. */
void p2p_recovery_init(p2p_recovery *r, uint64_t now);
/* Picks the congestion controller (P2P_CC_BBR or P2P_CC_NEWRENO) before anything is sent.
 * seed desynchronises BBR's gain cycle between flows. */
void p2p_recovery_set_cc(p2p_recovery *r, int kind, uint64_t seed, uint64_t now);
/* An RTT measured outside the record (the handshake's round trip): the first sample. */
void p2p_recovery_rtt_sample(p2p_recovery *r, uint64_t rtt);
/* An authenticated packet came from the peer: the path is alive, so the probe timeout's
 * backoff starts over. */
void p2p_recovery_peer_alive(p2p_recovery *r);
/* The sender has nothing more to send now (or the peer's flow control holds it): packets
 * sent until what is in flight is delivered make app-limited rate samples, which never lower
 * the bandwidth estimate. */
void p2p_recovery_app_limited(p2p_recovery *r);
void p2p_recovery_free(p2p_recovery *r);
/* Records packet next_pn as sent and returns its number (or P2P_ERR_NOMEM as negative, also
 * when the record is full at P2P_SENT_RECORD_MAX: call p2p_recovery_make_room first). The
 * record doubles when full, from P2P_SENT_RECORD_MIN entries. */
int p2p_recovery_on_sent(p2p_recovery *r, uint64_t now, size_t size, uint8_t flags,
                         uint64_t stream_off, uint32_t stream_len, uint64_t *pn);
/* Turns on packet-number skipping with this seed (nonzero; from the node's randomness, so that
 * the peer cannot predict the gaps). Without it no number is skipped. */
void p2p_recovery_seed_skips(p2p_recovery *r, uint64_t seed);
/* The number the next packet must be sealed with: next_pn, after leaving one out when a skip
 * is due (the number left out takes an entry in the record, resolved at once). */
uint64_t p2p_recovery_next_pn(p2p_recovery *r, uint64_t now);
/* The record of sent packet pn, which must lie in [base_pn, next_pn): for the session to
 * note what else the packet carried. */
p2p_sent *p2p_recovery_sent(p2p_recovery *r, uint64_t pn);
/* When the record is full (next_pn - base_pn == cap), declares the oldest outstanding packet
 * lost, as a congestion signal, so that the next packet has an entry without the record
 * growing. The record may be freed when that leaves it empty. */
void p2p_recovery_make_room(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb);
/* Processes an ACK frame. Returns 0, P2P_ERR_INVALID when it acknowledges a packet that was
 * never sent (the frame is ignored), or P2P_ERR_CRYPTO when it acknowledges a packet number
 * that was left out: the peer claims what it cannot have received (the session must end). */
int p2p_recovery_on_ack(p2p_recovery *r, const p2p_frame *ack, uint64_t now,
                        const p2p_recovery_cb *cb);
/* When the loss or probe timer fires next (P2P_TIME_NEVER if nothing is outstanding). */
uint64_t p2p_recovery_deadline(const p2p_recovery *r);
/* Runs the loss/probe timer. Returns 1 when a probe must be sent (a PTO), else 0. */
int p2p_recovery_on_timeout(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb);
/* Probe timeout duration with backoff (base << pto_count). */
uint64_t p2p_recovery_pto(const p2p_recovery *r);
/* 1 when congestion control allows another ack-eliciting packet of `size` bytes. */
int p2p_recovery_cwnd_allows(const p2p_recovery *r, size_t size);
/* 1 when a packet of `size` bytes about to go should ask for an immediate ACK (a PING): the
 * window, a few packets small, has no room for the next one after it, and would otherwise
 * wait for the receiver's delayed-ACK timer whenever it holds fewer packets than the
 * receiver's ACK threshold (docs/PROTOCOL.md section 5). */
int p2p_recovery_ack_soon(const p2p_recovery *r, size_t size);
/* When pacing lets a packet of `size` go: now, or a later time. */
uint64_t p2p_recovery_pace_at(p2p_recovery *r, uint64_t now, size_t size);
/* Charges a sent packet to the pacer. */
void p2p_recovery_pace_spend(p2p_recovery *r, uint64_t now, size_t size);

#endif
