/*
 * p2p_reliable.h - per-session reliability, modelled on RFC 9002: the replay window, which
 * received packet numbers still need acknowledging, the sent-packet record, RTT estimation,
 * loss detection by packet and time thresholds, probe timeouts, NewReno congestion control
 * and pacing. It knows nothing of frames beyond the stream range a packet carried: the
 * session decides what to resend when a packet is declared lost.
 */
#ifndef P2P_RELIABLE_H
#define P2P_RELIABLE_H

#include <stddef.h>
#include <stdint.h>
#include "p2p_ranges.h"
#include "p2p_wire.h"
#include "p2pnet.h"

/* Specification constants (RFC 9002) */
#define P2P_PACKET_THRESHOLD 3
#define P2P_GRANULARITY_US 1000
#define P2P_INITIAL_RTT_US 333000
/* Tunables (docs/PROTOCOL.md section 5) */
#define P2P_MAX_ACK_DELAY_US 5000
#define P2P_ACK_THRESHOLD 2
#define P2P_ACK_THRESHOLD_BULK 8 /* after P2P_ACK_BULK_AFTER packets */
#define P2P_ACK_BULK_AFTER 1000
#define P2P_INITIAL_WINDOW (10 * P2P_MAX_PACKET)
#define P2P_MIN_WINDOW (2 * P2P_MAX_PACKET)
#define P2P_MAX_WINDOW (64u * 1024u * 1024u)
#define P2P_PACING_BURST (10 * P2P_MAX_PACKET)
#define P2P_REPLAY_WINDOW 4096
#define P2P_REPLAY_WORD_BITS 64 /* the replay bitmap's word, a uint64_t */
#define P2P_ACK_RANGES_KEPT 32
/* hardening (stream): the sent-packet record holds at most this many packet numbers (24
 * bytes each, charged to the peer's budget). A 16 MiB stream window is about 14,000 packets of
 * P2P_MAX_PACKET bytes in flight; when the record is full the oldest outstanding packet is declared
 * lost (p2p_recovery_make_room), so a peer that never acknowledges cannot make it grow. */
#define P2P_SENT_RECORD_MAX 32768u
#define P2P_SENT_RECORD_MIN 64u

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
} p2p_acker;

void p2p_acker_init(p2p_acker *a);
void p2p_acker_free(p2p_acker *a);
/* Records a received packet. Returns 0 or P2P_ERR_NOMEM. */
int p2p_acker_on_packet(p2p_acker *a, uint64_t pn, int ack_eliciting, uint64_t now);
/* 1 when an ACK frame is worth sending (owed, or due at now). */
int p2p_acker_wants(const p2p_acker *a, uint64_t now);
/* Writes an ACK frame if anything was received. Returns 0 or P2P_ERR_BUFFER. */
int p2p_acker_write(p2p_acker *a, p2p_wr *w, uint64_t now);
/* Called after an ACK frame went out. */
void p2p_acker_sent(p2p_acker *a);

/* ---- what we sent ---- */
enum {
    P2P_SENT_ACKED = 1,
    P2P_SENT_LOST = 2,
    P2P_SENT_ELICITING = 4,
    P2P_SENT_MAX_STREAM = 8,
    P2P_SENT_MTU_PROBE = 16 /* its loss says the path is too narrow, not congested */
};

typedef struct p2p_sent {
    uint64_t time;
    uint64_t stream_off;
    uint32_t stream_len;
    uint16_t size;
    uint8_t flags;
    uint8_t lane; /* the lane whose stream bytes it carried (set by the session) */
} p2p_sent;

typedef struct p2p_recovery {
    p2p_sent *ring; /* packets base_pn .. next_pn-1, at index pn & (cap-1) */
    size_t cap;
    uint64_t base_pn, next_pn;
    uint64_t largest_acked; /* valid when has_acked */
    int has_acked;
    uint64_t in_flight; /* bytes of ack-eliciting packets neither acked nor lost */
    uint64_t eliciting_in_flight;
    uint64_t last_eliciting_time;
    uint64_t loss_time; /* P2P_TIME_NEVER when no packet waits on the time threshold */
    unsigned pto_count;
    /* RTT (microseconds) */
    uint64_t srtt, rttvar, min_rtt, latest_rtt;
    int has_rtt;
    /* NewReno */
    uint64_t cwnd, ssthresh, recovery_start, ca_acked;
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

void p2p_recovery_init(p2p_recovery *r, uint64_t now);
void p2p_recovery_free(p2p_recovery *r);
/* Records packet next_pn as sent and returns its number (or P2P_ERR_NOMEM as negative, also
 * when the record is full at P2P_SENT_RECORD_MAX: call p2p_recovery_make_room first). The
 * record doubles when full, from P2P_SENT_RECORD_MIN entries. */
int p2p_recovery_on_sent(p2p_recovery *r, uint64_t now, size_t size, uint8_t flags,
                         uint64_t stream_off, uint32_t stream_len, uint64_t *pn);
/* The record of sent packet pn, which must lie in [base_pn, next_pn): for the session to
 * note what else the packet carried. */
p2p_sent *p2p_recovery_sent(p2p_recovery *r, uint64_t pn);
/* When the record is full (next_pn - base_pn == cap), declares the oldest outstanding packet
 * lost, as a congestion signal, so that the next packet has an entry without the record
 * growing. The record may be freed when that leaves it empty. */
void p2p_recovery_make_room(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb);
/* Processes an ACK frame. Returns 0, or P2P_ERR_INVALID when it acknowledges a packet that
 * was never sent. */
int p2p_recovery_on_ack(p2p_recovery *r, const p2p_frame *ack, uint64_t now,
                        const p2p_recovery_cb *cb);
/* When the loss or probe timer fires next (P2P_TIME_NEVER if nothing is outstanding). */
uint64_t p2p_recovery_deadline(const p2p_recovery *r);
/* Runs the loss/probe timer. Returns 1 when a probe must be sent (a PTO), else 0. */
int p2p_recovery_on_timeout(p2p_recovery *r, uint64_t now, const p2p_recovery_cb *cb);
/* Probe timeout duration with backoff. */
uint64_t p2p_recovery_pto(const p2p_recovery *r);
/* 1 when congestion control allows another ack-eliciting packet of `size` bytes. */
int p2p_recovery_cwnd_allows(const p2p_recovery *r, size_t size);
/* When pacing lets a packet of `size` go: now, or a later time. */
uint64_t p2p_recovery_pace_at(p2p_recovery *r, uint64_t now, size_t size);
/* Charges a sent packet to the pacer. */
void p2p_recovery_pace_spend(p2p_recovery *r, uint64_t now, size_t size);

#endif
