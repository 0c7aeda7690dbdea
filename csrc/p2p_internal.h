/*
 * p2p_internal.h - the structures shared by the core's files: the host (p2p_host.c), the
 * handshake (p2p_handshake.c) and the peer session (p2p_peer.c). Nothing here is public.
 */
#ifndef P2P_INTERNAL_H
#define P2P_INTERNAL_H

#include "p2pnet.h"
#include "p2p_crypto.h"
#include "p2p_noise.h"
#include "p2p_ranges.h"
#include "p2p_reliable.h"
#include "p2p_wire.h"
#include "p2p_mesh.h"
#include "p2p_nat.h"
#include "p2p_guard.h"
#include "p2p_keys.h"               /* hardening (rekey) */

#define P2P_PROLOGUE "p2pnet/1"
#define P2P_NOISE_PROTOCOL "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
#define P2P_MAX_HALF_OPEN 256
#define P2P_HS_RESEND_US 250000
#define P2P_HS_RESEND_MAX_US 2000000
#define P2P_DEFAULT_TIMEOUT_US 10000000
#define P2P_DEFAULT_SEND_QUEUE (8u * 1024u * 1024u)
#define P2P_DATAGRAM_QUEUE 256
#define P2P_CLOSE_COPIES 3
/* Mesh records (member lists, digests) are not application messages: they have their own
 * limit, and the stream window always fits one. */
#define P2P_MESH_RECORD_MAX (1u << 20)
#define P2P_PLAINTEXT_MAX (P2P_MAX_PACKET_PROBED - P2P_DATA_HEADER - P2P_TAG_LEN)
#define P2P_MTU_PROBES 3          /* tries per probe size before settling (RFC 8899 MAX_PROBES) */
/* hardening (stream): a record's body buffer starts at this size and doubles as its bytes
 * arrive, never past the record's length; unanswered receipts (owed) and receipts awaited
 * (awaiting) are each kept in at most this many ranges */
#define P2P_BODY_FIRST 4096u
#define P2P_RECEIPT_RANGES 4096u

/* Session states (one peer). */
typedef enum p2p_sstate {
    P2P_S_INIT_SENT,    /* initiator: INIT out, waiting for RESP */
    P2P_S_FIN_SENT,     /* initiator: FIN out, waiting for the first DATA */
    P2P_S_HALF_OPEN,    /* responder: RESP out, waiting for FIN */
    P2P_S_WAIT_ADMIT,   /* responder: FIN read, waiting for p2p_host_admit() */
    P2P_S_CONNECTED,
    P2P_S_CLOSING       /* CLOSE frames still to go out; then freed */
} p2p_sstate;

typedef struct p2p_dgram {         /* queued unreliable datagram */
    struct p2p_dgram *next;
    uint16_t type;
    uint16_t len;
    uint8_t data[];
} p2p_dgram;

typedef struct p2p_hs {            /* lives only while the handshake runs */
    p2p_noise noise;
    uint8_t pkt[P2P_MAX_PACKET];   /* the INIT, RESP or FIN to resend */
    size_t pkt_len;
    uint32_t init_index;           /* responder: the INIT's sender_index */
    uint64_t resend_at, interval, expire;
    /* hardening (handshake): responder: the INIT's ephemeral key fingerprint (replay cache) */
    uint64_t init_fp;
} p2p_hs;

typedef struct p2p_peer {
    struct p2p_host *host;
    p2p_peer_handle handle;
    p2p_sstate state;
    int initiator;
    uint32_t local_index, remote_index;
    p2p_addr addr;
    int has_id, has_expected;
    uint8_t id[32], expected[32];
    int peer_mesh;          /* the peer is a mesh member (not a mediator) */
    int bootstrap;          /* a user-made session: exchange whole member lists */
    int auto_dial;          /* dialled by the mesh, not the user: failures stay quiet */
    int has_observed;
    p2p_addr observed;
    uint64_t instance;      /* the peer's boot instance: a new one means it restarted */
    p2p_peer_handle replaces; /* reported with JOIN (see p2p_event.replaces) */
    p2p_hs *hs;

    /* NAT traversal (p2p_nat.c): an attempt sends INIT to every candidate, and the first
     * path on which the handshake completes becomes p->addr */
    uint8_t ncand;
    p2p_addr cand[P2P_CANDIDATES];
    p2p_peer_handle intro_via;  /* the introducer asked to bring us together, or 0 */
    uint8_t intro_state;        /* P2P_INTRO_* */
    uint64_t punch_until;       /* then the relay joins the candidates */
    uint8_t nadv;               /* the addresses the peer advertised in its FIN */
    p2p_addr adv[P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS];

    /* the path (p2p_path.c) */
    int path_ok;                /* p->addr has proved that it reaches the peer */
    int has_prev;
    p2p_addr prev;              /* the last proven address, to go back to */
    uint64_t amp_recv, amp_sent;
    uint64_t chal_data, chal_at;
    uint8_t chal_tries;
    uint64_t upgrade_data, upgrade_at, upgrade_gap;
    int stalled;                /* asked for a new introduction since the last ACK */

    /* session keys and protection */
    /* hardening (rekey): the key schedule (p2p_keys.h) holds the current send and receive
     * keys, the next receive key and, for a while after an update, the previous one */
    p2p_keys keys;
    p2p_replay replay;
    p2p_acker acker;
    p2p_recovery rec;
    uint64_t largest_recv_pn;

    /* send stream: bytes [sbase, send_end) live in the ring sbuf at offset & (scap-1) */
    uint8_t *sbuf;
    size_t scap;
    uint64_t sbase, send_next, send_end;
    p2p_rangeset s_acked, s_lost, awaiting;  /* awaiting: our records wanting a REPLY */
    uint64_t peer_max;                       /* flow-control grant from the peer */
    uint64_t records_sent;
    uint32_t peer_max_message, peer_window;

    /* receive stream */
    uint64_t r_base;
    uint64_t r_consumed, r_granted;
    uint32_t window;
    int need_max_stream;
    uint8_t r_hdr[P2P_RECORD_HEADER_MAX];
    size_t r_hdr_len;
    p2p_record r_cur;
    int r_in_body;
    uint8_t *r_body;
    uint64_t r_body_got;
    uint64_t records_recv;
    p2p_rangeset owed;                       /* their records we still owe a REPLY */

    /* datagrams waiting for the next packet */
    p2p_dgram *dq_head, *dq_tail;
    unsigned dq_count;

    /* path MTU discovery: packets up to mtu bytes; a probe of the next size is in flight or
     * due while mtu_rung names a size still to try */
    uint16_t mtu;
    uint8_t mtu_rung, mtu_tries;
    int mtu_probe_due, mtu_probe_out;

    /* timers and pending control */
    uint64_t last_recv, last_eliciting_sent, next_send_at;
    int ping_needed, probe_needed;
    int close_copies;
    uint8_t close_reason;
    int leave_reason;                        /* for CLOSING: the reason reported */

    /* bytes this peer makes the host hold (p2p_mem_take/p2p_mem_give) */
    uint64_t mem;

    /* the out-of-order pieces of the receive stream, and what the session's growing buffers
     * have charged to mem */
    p2p_pieces r_pieces;
    size_t r_body_cap;      /* bytes allocated at r_body: it grows as the record arrives */
    size_t rec_held;        /* bytes charged for the sent-packet record (rec.cap entries) */

    /* hardening (mesh): what this peer may make the mesh do (p2p_mesh.c) */
    p2p_replay mesh_served;     /* cached broadcasts (by cache serial) it has had from us */
    uint32_t mesh_wants;        /* our pending pulls that it announced */
    uint32_t mesh_answers;      /* SUMMARY/DIGEST answered in the current gossip period */
    uint64_t mesh_answers_end;  /* the end of that period */

    struct p2p_peer *ready_next;
    int in_ready;
    /* Cached p2p_peer_deadline(): every path that can change a peer finds it through
     * p2p_host_peer_get/p2p_host_by_index or queues it with p2p_host_ready, which clear
     * dl_valid; p2p_host_on_timeout recomputes all. */
    int dl_valid;
    uint64_t dl;

    /* hardening (nat): introductions only when asked, and the egress guard */
    int app_dialled;            /* cand[0] came from the application (connect(id, {via})) */
    int from_offer;             /* an attempt made because the peer accepted an INTRO offer */
    uint64_t offers_since;      /* INTRO offers accepted from this session since then ... */
    uint8_t offers;             /* ... this many */

    /* hardening (verify): the node's memory budget ran out while this session held the most
     * of it: it is ended at its next timer (p2p_mem_take) */
    uint8_t mem_evict;
} p2p_peer;

/* Where an attempt stands with its introducer (p2p_nat.c). */
enum {
    P2P_INTRO_NONE = 0,
    P2P_INTRO_LATER,      /* dialling directly; ask `intro_via` at punch_until if still going */
    P2P_INTRO_WAIT_VIA,   /* the session with the introducer is being made */
    P2P_INTRO_ASKED,      /* INTRO_REQ sent */
    P2P_INTRO_PUNCHING,   /* introduced: INIT to every candidate; the relay joins at punch_until */
    P2P_INTRO_RELAYING    /* the relay is among the candidates */
};

typedef struct p2p_evq_item {
    p2p_event ev;
    uint8_t *owned;
} p2p_evq_item;

typedef struct p2p_txq_item {
    struct p2p_txq_item *next;
    p2p_addr to;
    size_t len;
    uint8_t data[];
} p2p_txq_item;

/* hardening (handshake): cookies under load, the cache of INIT ephemeral keys seen, and the
 * caps on half-open handshakes (p2p_handshake.c, docs/PROTOCOL.md section 2.1). */
#define P2P_HALF_OPEN_LIMIT 4096          /* largest max_half_open accepted */
#define P2P_HALF_OPEN_PER_IP 8            /* half-open handshakes one IPv4 address or IPv6 /64
                                           * may hold */
#define P2P_COOKIE_LEN 16
#define P2P_COOKIE_ROTATE_US 120000000u   /* cookie secrets rotate, cookies expire: 120 s */
#define P2P_HS_COOKIES 16                 /* cookies an initiator keeps, by address */
#define P2P_REPLAY_SLOTS 2048             /* per generation of the replay cache */
#define P2P_REPLAY_GEN_MAX 1024           /* inserts before a generation is retired */
typedef struct p2p_hs_cookie {
    p2p_addr addr;
    uint64_t at;                          /* arrival; 0: empty */
    uint8_t cookie[P2P_COOKIE_LEN];
} p2p_hs_cookie;

struct p2p_host {
    p2p_identity ident;
    uint8_t psk[32], mac_key[32];
    uint8_t (*allow)[32];
    size_t allow_count;
    uint8_t (*deny)[32];
    size_t deny_count;
    int request_hook;
    uint64_t timeout;
    uint32_t max_peers, max_message, send_queue_limit;
    p2p_rng rng;
    uint64_t instance;                /* random per host: tells restarts from races */
    uint64_t now;
    int closed;

    p2p_peer **slots;
    uint16_t *gens;
    size_t nslots;
    size_t slot_hwm;                  /* every live peer is below this slot */
    size_t n_connected, n_half_open;

    /* Our connects that lost to a session the other side dialled at the same time: the
     * session that wins reports their handle in JOIN (p2p_event.replaces). */
    struct {
        int has_id;
        uint8_t id[32];
        p2p_addr addr;
        p2p_peer_handle handle;
        uint64_t expire;
    } superseded[8];

    p2p_evq_item *evq;
    size_t evq_cap, evq_head, evq_len;
    uint8_t *ev_owned;                /* data of the event last returned */

    p2p_txq_item *txq_head, *txq_tail;
    p2p_peer *ready_head, *ready_tail;
    p2p_stats stats;
    /* memory budgets: peer_mem per peer, mem_limit for the node; mem is held now */
    uint64_t peer_mem, mem_limit, mem;
    p2p_mesh mesh;
    p2p_nat nat;
    int mesh_dl_valid;                /* mesh_dl caches p2p_mesh_deadline() */
    uint64_t mesh_dl;

    /* hardening (handshake) */
    uint32_t max_half_open, cookie_threshold;
    uint8_t cookie_key[32];           /* seals COOKIE replies: derived from the psk */
    int hs_keyed;                     /* cookie_secret and replay_key drawn (at first use) */
    uint8_t cookie_secret[2][32];     /* [0] current, [1] previous */
    uint64_t cookie_rotated;          /* when [0] was drawn */
    p2p_hs_cookie hs_cookies[P2P_HS_COOKIES];
    uint8_t replay_key[32];           /* keys the fingerprints of INIT ephemeral keys */
    uint64_t replay_set[2][P2P_REPLAY_SLOTS]; /* [0] current generation, [1] previous */
    uint32_t replay_n;                /* inserts into [0] */
    uint64_t replay_at;               /* when [0] was started */

    /* hardening (nat): the egress guard (p2p_guard.c) */
    p2p_guard guard;

    /* hardening (verify): a session marked mem_evict has not been ended yet */
    uint8_t mem_evicting;
    uint64_t mem_evictions;           /* sessions ended so, in all */
};

/* p2p_host.c */
p2p_peer *p2p_host_peer_new(p2p_host *h, int initiator, const p2p_addr *addr);
void p2p_host_peer_free(p2p_host *h, p2p_peer *p);
/* Starts a handshake with the node that expected_id (may be NULL) names, sending INIT to
 * every one of the n candidate addresses (n may be 0: candidates come later). Returns the
 * attempt, or NULL with *rc set. */
p2p_peer *p2p_host_dial(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                        uint64_t now, int *rc);
p2p_peer *p2p_host_peer_get(const p2p_host *h, p2p_peer_handle handle);
p2p_peer *p2p_host_by_index(const p2p_host *h, uint32_t local_index);
/* Queues an event; data (len bytes) is copied. Returns 0 or P2P_ERR_NOMEM. */
int p2p_host_event(p2p_host *h, const p2p_event *ev, const uint8_t *data, size_t len);
/* Queues an event taking ownership of a malloc'd buffer. */
int p2p_host_event_owned(p2p_host *h, const p2p_event *ev, uint8_t *data, size_t len);
/* hardening (verify): 1 when an event carrying len bytes can be queued once `freed` bytes
 * (charged to p and the node) are given back; 0 counts a dropped_budget (and, the node's budget
 * being spent, marks its largest holder, as p2p_mem_take does). */
int p2p_host_event_room(p2p_host *h, p2p_peer *p, size_t len, size_t freed);
void p2p_host_error(p2p_host *h, p2p_peer *p, const char *fmt, ...);
int p2p_host_txq_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len);
void p2p_host_ready(p2p_host *h, p2p_peer *p);
/* Handles a datagram that came through a relay, from the relayed path `path`. */
void p2p_host_recv_relayed(p2p_host *h, const p2p_addr *path, const uint8_t *buf, size_t len);
int p2p_host_id_listed(const uint8_t (*list)[32], size_t n, const uint8_t id[32]);

/* Memory budgets (docs/PROTOCOL.md section 9). Everything a peer can make the node hold is
 * taken before it is allocated and given back when freed. take returns 0, or P2P_ERR_LIMIT
 * (counted in stats.dropped_budget) when it would pass the peer's budget (p may be NULL for
 * holdings of the node itself) or the node's: the caller then drops or refuses the work. */
int p2p_mem_take(p2p_host *h, p2p_peer *p, size_t n);
void p2p_mem_give(p2p_host *h, p2p_peer *p, size_t n);
/* Bytes that p2p_mem_take would grant now: what is left of the node's budget and, when p is
 * given, of the peer's. */
uint64_t p2p_mem_room(const p2p_host *h, const p2p_peer *p);

/* 1 when the node may send to an address it learned from the network (a member record, an
 * introduction, an advertised or observed address): never to an INVALID one, to a PUBLIC one
 * always, and to a LOOPBACK or PRIVATE one only while the node is on such a network itself
 * (one of its own addresses, or the address of a connected peer, has that scope). Addresses
 * the application gave (connect) are the application's choice and are not checked. */
int p2p_host_may_send_learned(const p2p_host *h, const p2p_addr *a);

/* p2p_mesh.c */
const p2p_member *p2p_mesh_member(const p2p_host *h, const uint8_t id[32]);

/* p2p_handshake.c */
int p2p_hs_start(p2p_host *h, p2p_peer *p, uint64_t now);
/* Checks an id against this node's policy (itself, deny, allow). Returns NULL when
 * acceptable, or the reason ("is denied", ...). */
const char *p2p_hs_policy(const p2p_host *h, const uint8_t id[32]);
void p2p_hs_on_init(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now);
void p2p_hs_on_resp(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now);
void p2p_hs_on_fin(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now);
void p2p_hs_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now);
void p2p_hs_free(p2p_peer *p);
void p2p_hs_confirmed(p2p_host *h, p2p_peer *p, uint64_t now);
void p2p_hs_superseded(p2p_host *h, p2p_peer *p, uint64_t now);
uint64_t p2p_hs_deadline(const p2p_peer *p);
/* Sends the attempt's INIT to every candidate address. */
void p2p_hs_send_init(p2p_host *h, p2p_peer *p);
/* Sends INIT to every candidate now and keeps resending at the punching pace. */
void p2p_hs_punch_now(p2p_host *h, p2p_peer *p, uint64_t now);
/* hardening (handshake): the psk (network key stretched), the mac1 and cookie keys and the
 * half-open limits, from the configuration. Returns 0, P2P_ERR_INVALID or P2P_ERR_NOMEM. */
int p2p_hs_init(p2p_host *h, const p2p_config *cfg);
void p2p_hs_on_cookie(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                      uint64_t now);

/* p2p_peer.c */
void p2p_peer_init_session(p2p_peer *p, const uint8_t k_send[32], const uint8_t k_recv[32],
                           uint64_t now);
void p2p_peer_release(p2p_peer *p);
void p2p_peer_on_data(p2p_host *h, p2p_peer *p, const p2p_addr *from, const uint8_t *buf,
                      size_t len, uint64_t now);
void p2p_peer_on_timeout(p2p_host *h, p2p_peer *p, uint64_t now);
uint64_t p2p_peer_deadline(const p2p_host *h, const p2p_peer *p);
/* Builds the next DATA packet for a connected or closing peer. Returns its length or 0. */
size_t p2p_peer_build(p2p_host *h, p2p_peer *p, uint8_t *out, size_t cap, uint64_t now);
/* Ends a session locally: REPLY-lost and LEAVE events, then CLOSE frames when send_close. */
void p2p_peer_end(p2p_host *h, p2p_peer *p, int reason, int send_close, uint8_t wire_reason);
/* Appends a mesh record to the peer's stream (not subject to the send-queue limit). */
int p2p_peer_append(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len);
/* Builds one sealed DATA packet holding a single CLOSE frame (for refusals). */
size_t p2p_peer_close_packet(p2p_peer *p, uint8_t reason, uint8_t *out);
/* Seals plaintext frames that are not ack-eliciting into a DATA packet of the session (out
 * holds ptlen + 32 bytes). Returns its length, or 0. */
size_t p2p_peer_seal_extra(p2p_peer *p, const uint8_t *pt, size_t ptlen, uint8_t *out,
                           uint64_t now);
void p2p_peer_fill_event(const p2p_peer *p, p2p_event *ev);

/* hardening (rekey): p2p_keys.c, the key schedule's hooks into a session (PROTOCOL.md 2.3).
 * before_seal: called by seal() for the packet numbered pn; moves to the next generation when
 * an update is due (and never lets a key REJECT_AFTER_TIME old seal anything).
 * opened: after a DATA packet numbered pn authenticated under the key p2p_keys_for_open chose
 * (`which`); returns 1 when it moved the session to the peer's new generation.
 * timer: from p2p_peer_on_timeout; starts a due update, wipes the previous receive key, and
 * ends the session (leave "timeout") when its keys expired; returns 1 when it ended it (p is
 * then freed). Each update counts in stats.rekeys. */
void p2p_peer_rekey_before_seal(p2p_peer *p, uint64_t pn);
int p2p_peer_rekey_opened(p2p_host *h, p2p_peer *p, int which, uint64_t pn, uint64_t now);
int p2p_peer_rekey_timer(p2p_host *h, p2p_peer *p, uint64_t now);

/* hardening (fuzz): p2p_identity.c's key-file parser on a buffer, as p2p_identity_load uses
 * it after reading the file. Returns 0, P2P_ERR_KEYFILE or P2P_ERR_CRYPTO. */
int p2p_identity_parse_keyfile(p2p_identity *id, const uint8_t *buf, size_t len,
                               const char *path, char *err, size_t errlen);

#endif
