/*
 * p2p_peer.h - one established session (docs/PROTOCOL.md sections 3-5): sealing and opening
 * DATA packets, the reliable streams of its lanes (section 4.4) and their records, the
 * scheduler that shares the window between lanes, datagrams (plain and sequenced),
 * acknowledgements, recovery, flow control, MTU probing, key updates and the session's timers.
 *
 * A session calls nothing above it. What the host must route elsewhere comes back as result
 * codes: a packet that confirms or loses a handshake, frames for path and NAT, mesh and NAT
 * records (p2p_peer_take_record). A session that ends is put on the dead list (p2p_kill) and
 * freed by the host after the input that ended it.
 */
#ifndef P2P_PEER_H
#define P2P_PEER_H

#include "p2p_state.h"

/* A received DATA packet being read: opened by p2p_peer_open into the host's buffer, its frames
 * then read by p2p_peer_on_frames, which stops at each frame the host must route. */
typedef struct p2p_rx {
    uint8_t pt[P2P_MAX_PACKET_PROBED];
    size_t ptlen;
    uint64_t pn;
    int eliciting, probing, newest, refused;
    p2p_rd r;
} p2p_rx;

/* What p2p_peer_open and p2p_peer_on_frames return. */
enum {
    P2P_RX_STOP = 0,   /* nothing more to do with the packet (dropped, or not for now) */
    P2P_RX_OPEN,       /* authenticated: route the path, then read its frames */
    P2P_RX_CONFIRMED,  /* an initiator's first DATA: the host confirms the handshake first */
    P2P_RX_SUPERSEDED, /* the peer kept the session it dialled: our attempt goes */
    P2P_RX_GONE,       /* the session ended (it is on the dead list) */
    P2P_RX_FRAME,      /* a PATH_CHALLENGE, PATH_RESPONSE, RELAY or RELAYED frame for the host */
    P2P_RX_RECORDS,    /* mesh or NAT records wait (p2p_peer_take_record) */
    P2P_RX_DONE        /* every frame was read */
};

/* What p2p_peer_on_timeout returns (bits). */
enum {
    P2P_TIMER_LIVE = 1,   /* the session goes on: its path's timer runs too */
    P2P_TIMER_STALLED = 2 /* nothing acknowledged for three probe timeouts */
};

void p2p_peer_init_session(p2p_peer *p, const uint8_t k_send[P2P_KEY_LEN],
                           const uint8_t k_recv[P2P_KEY_LEN], uint64_t now);
/* Frees what the session holds (not p itself). */
void p2p_peer_release(p2p_peer *p);
/* Authenticates a DATA packet for p into rx. */
int p2p_peer_open(p2p_host *h, p2p_peer *p, const p2p_addr *from, const uint8_t *buf, size_t len,
                  p2p_rx *rx, uint64_t now);
/* Reads the opened packet's frames on from where it stopped. On P2P_RX_FRAME *f is the frame. */
int p2p_peer_on_frames(p2p_host *h, p2p_peer *p, p2p_rx *rx, p2p_frame *f, uint64_t now);
/* The next mesh or NAT record received whole, or NULL; give it back with
 * p2p_peer_record_done. */
p2p_ctl_rec *p2p_peer_take_record(p2p_peer *p);
void p2p_peer_record_done(p2p_ctl_rec *r);
/* Ends the session for a protocol error (a bad record). */
void p2p_peer_protocol_error(p2p_host *h, p2p_peer *p);
/* The session's timer: P2P_TIMER_* bits, 0 when it ended or has nothing more to do. */
int p2p_peer_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now);
/* The session's next deadline: can_send is 0 when its path cannot carry a packet now, path_dl
 * the path's own deadline. */
uint64_t p2p_peer_deadline(const p2p_host *h, const p2p_peer *p, int can_send, uint64_t path_dl);
/* Builds the next DATA packet for a connected or closing peer. Returns its length or 0. */
size_t p2p_peer_build(p2p_host *h, p2p_peer *p, uint8_t *out, size_t cap, uint64_t now);
/* Ends a session locally: REPLY-lost and LEAVE events (and P2P_NOTE_LEFT), then CLOSE frames
 * when send_close, else it goes on the dead list at once. */
void p2p_peer_end(p2p_host *h, p2p_peer *p, int reason, int send_close, uint8_t wire_reason);
/* Appends a mesh or NAT record to the peer's stream (not subject to the send-queue limit):
 * a broadcast to lane 0, the others to the control lane. */
int p2p_peer_append(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len);
/* lanes: appends a record to the stream of one lane (made on first use). Returns 0,
 * P2P_ERR_LIMIT (over the peer's budget) or P2P_ERR_NOMEM. */
int p2p_peer_append_lane(p2p_host *h, p2p_peer *p, uint8_t lane, uint8_t kind, const uint8_t *body,
                         size_t len);
/* lanes: stream bytes of every lane not yet acknowledged. */
uint64_t p2p_peer_queued(const p2p_peer *p);
/* Builds one sealed DATA packet holding a single CLOSE frame (for refusals). */
size_t p2p_peer_close_packet(p2p_peer *p, uint8_t reason, uint8_t *out);
/* Seals plaintext frames that are not ack-eliciting into a DATA packet of the session (out
 * holds ptlen + P2P_DATA_HEADER + P2P_TAG_LEN bytes). Returns its length, or 0. */
size_t p2p_peer_seal_extra(p2p_peer *p, const uint8_t *pt, size_t ptlen, uint8_t *out,
                           uint64_t now);

/* transfers: stream bytes of the lane queued or sent and not yet acknowledged by the peer (0
 * for a lane never used). */
size_t p2p_peer_unacked(const p2p_peer *p, int lane);

#endif
