/*
 * p2p_internal.h - the data types every layer of the core shares (the "state" layer of
 * docs/ARCHITECTURE.md): the host, a session, and the state of the mesh, NAT and guard that
 * the host embeds. Types and constants only: the functions on them are in p2p_state.h and the
 * module headers, and this header includes none of those. Nothing here is public.
 */
#ifndef P2P_INTERNAL_H
#define P2P_INTERNAL_H

#include "p2pnet.h"
#include "p2p_crypto.h"
#include "p2p_noise.h"
#include "p2p_ranges.h"
#include "p2p_reliable.h"
#include "p2p_wire.h"
#include "p2p_index.h"
#include "p2p_keys.h" /* hardening (rekey) */
#include "p2p_identity.h"

#define P2P_PROLOGUE "p2pnet/1"
#define P2P_NOISE_PROTOCOL "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
#define P2P_MAX_HALF_OPEN 256
#define P2P_HS_RESEND_US 250000
#define P2P_HS_RESEND_MAX_US 2000000
#define P2P_DEFAULT_TIMEOUT_US 10000000
#define P2P_DEFAULT_SEND_QUEUE (8u * 1024u * 1024u)
#define P2P_DATAGRAM_QUEUE 256
#define P2P_EVQ_MIN 32 /* the event ring's first size, and the one a drained ring keeps */
#define P2P_CLOSE_COPIES 3
/* Mesh records (member lists, digests) are not application messages: they have their own
 * limit, and the stream window always fits one. */
#define P2P_MESH_RECORD_MAX (1u << 20)
#define P2P_PLAINTEXT_MAX (P2P_MAX_PACKET_PROBED - P2P_DATA_HEADER - P2P_TAG_LEN)
#define P2P_MTU_PROBES 3 /* tries per probe size before settling (RFC 8899 MAX_PROBES) */
/* hardening (stream): a record's body buffer starts at this size and doubles as its bytes
 * arrive, never past the record's length; unanswered receipts (owed) and receipts awaited
 * (awaiting) are each kept in at most this many ranges */
#define P2P_BODY_FIRST 4096u
/* Bodies of delivered records the node keeps for the next ones (p2p_spare_put): at most this
 * many, each of P2P_BODY_FIRST to P2P_SPARE_MAX bytes, while they fit in half its budget. */
#define P2P_SPARES 4
/* A lane's send buffer larger than this is given back once the lane is idle at a keepalive. */
#define P2P_SBUF_KEEP 4096u
#define P2P_SPARE_MAX (1024u * 1024u)
#define P2P_RECEIPT_RANGES 4096u

/* ---- mesh state (p2p_mesh.c) ---- */
#define P2P_MEMBER_ADDRS (P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS)
#define P2P_MEMBER_TTL_S 3600          /* a record is valid this long after signing */
#define P2P_MEMBER_REFRESH_S 1200      /* re-signed this often */
#define P2P_MESH_DIAL_DELAY_US 2000000 /* the higher id waits this long for the lower to dial */
#define P2P_MESH_REDIAL_US 4000000     /* first retry after a failed dial, doubling */
#define P2P_MESH_MAX_DIALS 4           /* then the member is dead: kept, never dialled again */
#define P2P_MESH_CLAIM_DIALS 2         /* the same for a member we never held a session with */
#define P2P_MESH_FORGET_US \
    (P2P_MEMBER_TTL_S * UINT64_C(1000000)) /* unconfirmed or dead:
                                        * forgotten this long after it entered the table */
#define P2P_MESH_SCAN_US 1000000     /* the member table and origin table are swept this often */
#define P2P_BCAST_CACHE_ENTRIES 1024 /* broadcasts kept to answer IWANT ... */
#define P2P_BCAST_CACHE_BYTES (16u * 1024u * 1024u)
#define P2P_BCAST_CACHE_US 60000000 /* ... for at most a minute */
#define P2P_IWANT_DELAY_US 300000   /* wait this long for the direct copy before pulling */
#define P2P_IWANT_MAX 4096          /* pending pulls, in all ... */
#define P2P_IWANT_PER_PEER 1024     /* ... and announced by one peer */
#define P2P_GOSSIP_US 1000000       /* anti-entropy: one summary to one peer this often */
#define P2P_GOSSIP_ANSWERS 4        /* SUMMARY/DIGEST answered per peer per gossip period */
/* version, id, u64 seq, u64 expiry, address count, the addresses, the signature */
#define P2P_MEMBER_REC_MAX \
    (1 + P2P_ID_LEN + 8 + 8 + 1 + P2P_MEMBER_ADDRS * P2P_ADDR6_WIRE_LEN + P2P_SIG_LEN)
/* Broadcast replay protection (docs/PROTOCOL.md section 7.3). A broadcast's seq is its
 * origin's wall clock in µs; one stamped more than PAST before or FUTURE after the receiver's
 * clock is refused. Seqs below TS_MIN (an origin without a wall clock counts from 1) are not
 * timestamps: only the per-origin state protects them. */
#define P2P_BCAST_PAST_US UINT64_C(120000000)
#define P2P_BCAST_FUTURE_US UINT64_C(60000000)
#define P2P_BCAST_TS_MIN (UINT64_C(1) << 50)  /* 2005-09-05 as µs since 1970 */
#define P2P_BCAST_SEEN 32                     /* per origin: the newest seqs remembered */
#define P2P_BCAST_FLOORS 1024                 /* floors of forgotten origins, by keyed hash */
#define P2P_BCAST_IDLE_US UINT64_C(600000000) /* an origin silent this long is forgotten */
#define P2P_OBSERVED_PENDING 8                /* observed addresses waiting for a second reporter */
#define P2P_OBSERVED_TTL_US UINT64_C(600000000)
#define P2P_MESH_NONE UINT32_MAX
#define P2P_TABLE_HASH_LEN 32 /* the member table's hash (SUMMARY): BLAKE2b-256 */

/* A chained hash index over the slots of an array (members, origins, cache, wants): every
 * lookup costs O(1) expected steps, with a per-node secret key so that a peer cannot choose
 * ids that collide. */
typedef struct p2p_mesh_index {
    uint32_t *head, *next;
    uint32_t mask, cap;
} p2p_mesh_index;

typedef struct p2p_member {
    uint8_t id[P2P_ID_LEN];
    int has_record;
    uint64_t seq, expires; /* expires: unix seconds */
    uint8_t naddr;
    p2p_addr addrs[P2P_MEMBER_ADDRS];
    uint8_t rec[P2P_MEMBER_REC_MAX]; /* the signed record, forwarded verbatim */
    uint16_t rec_len;
    uint64_t dial_at;    /* P2P_TIME_NEVER: no dial planned */
    unsigned dials;      /* dial attempts since the last session */
    p2p_peer_handle via; /* the session the record came by: an introducer */
    uint8_t confirmed;   /* we held a session with it: it is real and reachable */
    uint8_t dead;        /* every dial failed: kept so that records can't re-arm */
    uint8_t in_hash;     /* its (id, seq) is in the table hash */
    uint8_t has_src;     /* unconfirmed: src is the peer that sent the record
                                       * (0: that peer was forgotten since; an orphan) */
    uint8_t src[P2P_ID_LEN];
    uint32_t nsrc;             /* unconfirmed members this one brought us */
    uint64_t added, forget_at; /* monotonic: entered the table; forgotten (unconfirmed
                                       * or dead ones only; P2P_TIME_NEVER otherwise) */
    uint64_t mark;             /* on_digest: the digest being read holds this record */
} p2p_member;

/* Duplicate and replay state of one broadcast origin. */
typedef struct p2p_origin {
    uint8_t id[P2P_ID_LEN];
    uint64_t floor;      /* every seq <= floor is refused */
    uint64_t tsfloor;    /* timestamps <= tsfloor too (inherited on creation from
                                       * the floors of forgotten origins) */
    uint64_t last;       /* monotonic: the last broadcast delivered */
    uint32_t prev, next; /* LRU list, most recent first; next: free list too */
    uint8_t peer;        /* we hold a session with it: strangers can't evict it */
    uint8_t nseen;
    uint64_t seen[P2P_BCAST_SEEN]; /* ascending */
} p2p_origin;

typedef struct p2p_bcast {
    uint8_t origin[P2P_ID_LEN];
    uint64_t seq, at, serial;
    size_t len;
    uint8_t *env; /* the signed envelope */
    uint8_t lane; /* the lane it travels on (lanes) */
} p2p_bcast;

typedef struct p2p_want {
    uint8_t origin[P2P_ID_LEN];
    uint64_t seq, at;
    p2p_peer_handle from;
} p2p_want;

typedef struct p2p_observed {
    p2p_addr addr;          /* where a peer saw us */
    uint8_t by[P2P_ID_LEN]; /* that peer */
    p2p_addr from;          /* and where we saw it */
    uint64_t at;
} p2p_observed;

typedef struct p2p_mesh {
    p2p_member *m;
    size_t n, cap, max;
    uint64_t unix_base, mono_base; /* wall clock = unix_base + (now - mono_base) */
    uint64_t own_seq, refresh_at;
    uint8_t own_rec[P2P_MEMBER_REC_MAX];
    uint16_t own_len;
    uint64_t bseq;
    uint64_t next_gossip;
    /* hardening (mesh) */
    uint64_t hkey[2];                  /* secret key of the hash indexes */
    p2p_mesh_index mix;                /* members by id */
    uint8_t thash[P2P_TABLE_HASH_LEN]; /* the table hash (SUMMARY), kept up to date */
    int own_in_hash;
    size_t norphans; /* unconfirmed members whose source was forgotten */
    uint64_t digest_gen;
    uint64_t next_dial, next_scan;
    uint64_t work; /* entries and index steps processed: a work counter */
    /* broadcast origins */
    p2p_origin *o;
    size_t on, ocap, omax;
    uint32_t ofree, ohead, otail;
    p2p_mesh_index oix;
    uint64_t boot_us; /* our wall clock when we started: older stamps refused */
    uint64_t floors[P2P_BCAST_FLOORS];
    /* the broadcast cache: a ring of P2P_BCAST_CACHE_ENTRIES, oldest at cache_head */
    p2p_bcast *cache;
    size_t cache_head, cache_n, cache_bytes;
    uint64_t cache_serial;
    p2p_mesh_index cix;
    /* pending pulls: a ring of P2P_IWANT_MAX in deadline order */
    p2p_want *wants;
    size_t want_head, nwants;
    p2p_mesh_index wix;
    /* observed addresses seen by one peer only */
    p2p_observed obs[P2P_OBSERVED_PENDING];
    size_t nobs;
} p2p_mesh;

/* ---- NAT traversal state (p2p_nat.c) ---- */
#define P2P_CANDIDATES 9           /* addresses an attempt punches at (8 + the relay) */
#define P2P_INTRO_AFTER_US 1000000 /* a mesh dial asks for an introduction after this */
#define P2P_PUNCH_US 2500000       /* punching alone this long, then the relay joins in */
#define P2P_PUNCH_RESEND_US 200000 /* INIT to every candidate this often while punching */
#define P2P_INTROS 64              /* introductions remembered (candidates for upgrades) */
#define P2P_INTRO_TTL_US 600000000 /* ... for ten minutes */
#define P2P_RELAY_IDLE_US 60000000 /* a relayed pair unused this long is forgotten */
#define P2P_DEFAULT_RELAY_SESSIONS 64
#define P2P_DEFAULT_RELAY_RATE (1u << 20)
#define P2P_RELAY_OVERHEAD (16 + 1 + 4 + 2 + 16) /* outer header, frame header, outer tag */
#define P2P_UPGRADE_FIRST_US 1000000 /* a relayed session first tries a direct path after this */
#define P2P_UPGRADE_MAX_US 30000000  /* ... then backs off to this */
#define P2P_CHALLENGE_US 300000      /* path challenge resend, doubling */
#define P2P_CHALLENGE_TRIES 4        /* then the new path is given up */
#define P2P_AMPLIFICATION 3          /* bytes to an unproven address <= 3 x bytes from it */
/* Introductions only when asked (section 8.2): the tables and their caps. */
#define P2P_ASKS 64                   /* INTRO_REQs we sent, remembered until answered ... */
#define P2P_ASK_US 10000000           /* ... or for this long */
#define P2P_PENDING 64                /* at an introducer: requests waiting for the other side */
#define P2P_PENDING_PER_ASKER 8       /* ... of which one session may hold this many */
#define P2P_PENDING_US 10000000       /* ... each for this long */
#define P2P_OFFER_ATTEMPTS 32         /* attempts made from offers, at once ... */
#define P2P_OFFER_ATTEMPTS_VIA 8      /* ... of which one introducer's offers made this many */
#define P2P_OFFERS_PER_VIA 8          /* offers accepted from one introducer ... */
#define P2P_OFFERS_WINDOW_US 10000000 /* ... per this window */

/* What an introducer told us about another node. */
typedef struct p2p_intro {
    uint8_t id[P2P_ID_LEN];
    p2p_peer_handle via; /* the introducer's session */
    uint32_t channel;    /* the introducer's name for that node on the relay */
    int relay_ok;
    uint8_t ncand;
    p2p_addr cand[P2P_CANDIDATES - 1];
    uint64_t expire;
} p2p_intro;

/* An INTRO_REQ this node sent: an INTRO about `id` is acted on only from `via`, and only while
 * this is remembered. */
typedef struct p2p_ask {
    uint8_t id[P2P_ID_LEN];
    p2p_peer_handle via;
    uint64_t expire;
} p2p_ask;

/* At an introducer: `asker` asked to be introduced to `target`, which was offered the
 * introduction and has not answered yet. */
typedef struct p2p_intro_pending {
    p2p_peer_handle asker, target;
    uint64_t expire;
} p2p_intro_pending;

/* At a relay: two of its sessions it introduced and may forward between. */
typedef struct p2p_relay_pair {
    p2p_peer_handle a, b;
    uint64_t last_used;
} p2p_relay_pair;

typedef struct p2p_nat {
    int relay; /* relays for others */
    uint32_t max_pairs;
    uint64_t rate, tokens, refill_at; /* token bucket, bytes */
    p2p_relay_pair *pairs;
    size_t npairs;
    p2p_intro intros[P2P_INTROS];
    p2p_ask asks[P2P_ASKS];
    p2p_intro_pending pending[P2P_PENDING];
} p2p_nat;

/* ---- egress guard state (p2p_guard.c) ---- */
#define P2P_GUARD_ENTRIES 1024            /* addresses in the ledger (fixed, allocated once) */
#define P2P_GUARD_BUCKETS 1024            /* hash chains (a power of two) */
#define P2P_GUARD_TTL_US 60000000         /* an idle entry lives this long */
#define P2P_GUARD_PROBES 16               /* probes to an address that never answered ... */
#define P2P_GUARD_WINDOW_US 60000000      /* ... per this window: 3 s of punching at 200 ms */
#define P2P_GUARD_SOURCE_ADDRS 16         /* unanswered addresses one source may have probed ... */
#define P2P_GUARD_ACTIVE_US 5000000       /* ... within this long */
#define P2P_GUARD_EVICT_SCAN 32           /* entries looked at to make room for one */
#define P2P_GUARD_PROVEN_CACHE_US 1000000 /* a session found at an address, remembered */

typedef struct p2p_guard_entry {
    p2p_addr addr;
    uint16_t next;    /* hash chain, or P2P_GUARD_NONE */
    uint16_t probes;  /* probes sent in the window that began at probe_start */
    uint16_t tickets; /* probes allowed at push time, not yet sent */
    uint8_t used;
    p2p_peer_handle src; /* the session that supplied the address (probes) */
    uint64_t recv, sent; /* bytes from it, and non-probe bytes to it */
    uint64_t expire, probe_start, last_probe, proven_until;
} p2p_guard_entry;

typedef struct p2p_guard {
    p2p_guard_entry *e; /* P2P_GUARD_ENTRIES */
    uint16_t *bucket;   /* P2P_GUARD_BUCKETS chain heads */
    uint16_t free_head;
    uint16_t hand;         /* clock hand of eviction */
    uint64_t key;          /* keyed hash: chains cannot be aimed at */
    uint64_t answered_pkt; /* stats.packets_received when a PATH_RESPONSE went out */
    uint64_t relayed_pkt;  /* ... when a RELAY frame was passed on */
} p2p_guard;

/* The kind of a datagram, for p2p_guard_send. */
enum {
    P2P_GUARD_RESPONSE = 0, /* anything but a probe: within 3 x the bytes received */
    P2P_GUARD_PROVEN = 1    /* the caller knows the address is proven (a session's path) */
};

/* Session states (one peer). */
typedef enum p2p_sstate {
    P2P_S_INIT_SENT,  /* initiator: INIT out, waiting for RESP */
    P2P_S_FIN_SENT,   /* initiator: FIN out, waiting for the first DATA */
    P2P_S_HALF_OPEN,  /* responder: RESP out, waiting for FIN */
    P2P_S_WAIT_ADMIT, /* responder: FIN read, waiting for p2p_host_admit() */
    P2P_S_CONNECTED,
    P2P_S_CLOSING /* CLOSE frames still to go out; then freed */
} p2p_sstate;

typedef struct p2p_dgram { /* queued unreliable datagram */
    struct p2p_dgram *next;
    uint16_t type;
    uint16_t len;
    uint8_t sequenced, lane; /* lanes: a DATAGRAM_SEQ frame on `lane` with number `seq` */
    uint64_t seq;
    uint8_t data[];
} p2p_dgram;

/* ---- lanes (docs/PROTOCOL.md section 4.4) ------------------------------------------------ */

/* Lanes 0 to P2P_LANE_MAX (p2pnet.h) are the application's; P2P_LANE_CONTROL carries receipts
 * and mesh and NAT records. Each is its own reliable, ordered stream of records: its own
 * offsets, retransmissions, reassembly and flow-control window. */
#define P2P_LANE_CONTROL 255
#define P2P_LANE_SLOTS 256
/* The deficit round robin's quantum per unit of weight: a lane of weight w may send about
 * w x this many bytes in each round among the lanes of its priority. */
#define P2P_LANE_QUANTUM P2P_MAX_PACKET

typedef struct p2p_lane {
    /* send stream: bytes [sbase, send_end) live in the ring sbuf at offset % scap */
    uint8_t *sbuf;
    size_t scap;
    uint64_t sbase, send_next, send_end;
    p2p_rangeset s_acked, s_lost, awaiting; /* awaiting: our records wanting a REPLY */
    uint64_t peer_max;                      /* flow-control grant from the peer */
    uint64_t records_sent;

    /* receive stream */
    uint64_t r_base;
    uint64_t r_consumed, r_granted;
    int need_max_stream;
    uint8_t r_hdr[P2P_RECORD_HEADER_MAX];
    size_t r_hdr_len;
    p2p_record r_cur;
    int r_in_body;
    uint8_t *r_body;
    uint64_t r_body_got;
    size_t r_body_cap; /* bytes allocated at r_body: it grows as the record arrives */
    uint64_t records_recv;
    p2p_rangeset owed;   /* their records we still owe a REPLY */
    p2p_pieces r_pieces; /* out-of-order pieces of the receive stream */

    /* the scheduler: bytes this lane may still send in the current round */
    int64_t deficit;
    uint8_t id;
    /* sequenced datagrams: the next number to send, and one past the newest delivered */
    uint64_t dg_next, dg_recv;
    /* observability (p2p_peer_lane_stats_get): records the peer acknowledged whole; rec_front is
     * where the oldest record not yet acknowledged whole starts, rec_front_end where it ends
     * (0 until its header is read, which happens while its bytes are still in the ring) */
    uint64_t records_acked, rec_front, rec_front_end;
} p2p_lane;

/* A session's lanes beyond lane 0, made when one is first used and charged to its budget. */
typedef struct p2p_lanes {
    p2p_lane *slot[P2P_LANE_SLOTS]; /* slot[0] is &p->l0 */
    uint8_t ids[P2P_LANE_SLOTS];    /* the lanes made, in the order they were made */
    uint16_t n;
    uint16_t rr; /* the round robin's place in ids */
} p2p_lanes;

typedef struct p2p_hs { /* lives only while the handshake runs */
    p2p_noise noise;
    uint8_t pkt[P2P_MAX_PACKET]; /* the INIT, RESP or FIN to resend */
    size_t pkt_len;
    uint32_t init_index; /* responder: the INIT's sender_index */
    uint64_t resend_at, interval, expire;
    /* hardening (handshake): responder: the INIT's ephemeral key fingerprint (replay cache) */
    uint64_t init_fp;
    /* initiator: introduced (p2p_hs_punch_now): INIT goes to every candidate at the punching
     * pace until the handshake moves on */
    uint8_t punching;
    /* issue 10 (congestion control): the first INIT (initiator) or RESP (responder) went
     * out at rtt_from; rtt_sends counts them (the round trip is a sample only for one) */
    uint64_t rtt_from;
    unsigned rtt_sends;
} p2p_hs;

typedef struct p2p_peer {
    struct p2p_host *host;
    p2p_peer_handle handle;
    p2p_sstate state;
    int initiator;
    uint32_t local_index, remote_index;
    p2p_addr addr;
    int has_id, has_expected;
    uint8_t id[P2P_ID_LEN], expected[P2P_ID_LEN];
    int peer_mesh; /* the peer is a mesh member (not a mediator) */
    int bootstrap; /* a user-made session: exchange whole member lists */
    int auto_dial; /* dialled by the mesh, not the user: failures stay quiet */
    int has_observed;
    p2p_addr observed;
    uint64_t instance;        /* the peer's boot instance: a new one means it restarted */
    p2p_peer_handle replaces; /* reported with JOIN (see p2p_event.replaces) */
    p2p_hs *hs;

    /* An attempt (initiator, before the handshake completes): it sends INIT to every
     * candidate, and the first path on which the handshake completes becomes p->addr.
     * introducer: the session that supplied its candidates (a member record's source) or that
     * introduces it, or 0 when the application gave them; set by its maker
     * (p2p_attempt_new), then by NAT when it asks another. ask_at: when the maker wants an
     * introduction asked for if the dial has not succeeded by then (0: never); NAT takes it
     * up when the attempt starts (p2p_nat_on_dial). Every layer may read these. */
    uint8_t ncand;
    p2p_addr cand[P2P_CANDIDATES];
    p2p_peer_handle introducer;
    uint64_t ask_at;
    /* NAT's own (p2p_nat.c; tests/check-layers.lua keeps others out): where the attempt stands
     * with its introducer (P2P_INTRO_*), and when the next step is due (asking, or the relay
     * joining the candidates) */
    uint8_t intro_state;
    uint64_t punch_until;
    /* issue 12, birthday punching (docs/PROTOCOL.md section 8.3): NAT (the PUNCH record)
     * writes, path (punch sockets, spray) reads: our role with this peer (P2P_BDAY_*), where
     * the round sends (the peer's vouched address: the first candidate of its INTRO), and
     * the round READY announced (E: H's socket count and NAT port range). */
    uint8_t bday_role, bday_ready;
    uint16_t bday_n, bday_lo, bday_hi;
    uint32_t bday_round;
    p2p_addr bday_to;
    uint8_t nadv; /* the addresses the peer advertised in its FIN */
    p2p_addr adv[P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS];

    /* the path (p2p_path.c) */
    int path_ok; /* p->addr has proved that it reaches the peer */
    int has_prev;
    p2p_addr prev; /* the last proven address, to go back to */
    uint64_t amp_recv, amp_sent;
    uint64_t chal_data, chal_at;
    uint8_t chal_tries;
    uint64_t upgrade_data, upgrade_at, upgrade_gap;
    int stalled; /* asked for a new introduction since the last ACK */

    /* session keys and protection */
    /* hardening (rekey): the key schedule (p2p_keys.h) holds the current send and receive
     * keys, the next receive key and, for a while after an update, the previous one */
    p2p_keys keys;
    p2p_replay replay;
    p2p_acker acker;
    p2p_recovery rec;
    uint64_t largest_recv_pn;

    /* lanes (docs/PROTOCOL.md section 4.4): lane 0 lives here; the others, the control lane
     * among them, are made on first use (lanes: NULL until then) */
    p2p_lane l0;
    p2p_lanes *lanes;
    uint32_t peer_max_message, peer_window;
    uint32_t window; /* our receive window, per lane */
    /* a lane other than 0 has a MAX_STREAM to send (its need_max_stream) */
    uint8_t lane_grants;
    /* the lane of the record p2p_peer_take_record last returned (the mesh relays a broadcast
     * on the lane it came on) */
    uint8_t ctl_lane;
    /* the lane whose in-order bytes stopped behind a routed record: read on first */
    p2p_lane *r_stopped;

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
    /* issue 10 (congestion control): packets that carried resent stream data */
    uint64_t retransmits;
    /* observability (p2p_peer_stats_get): this session's DATA packets and their bytes each
     * way (received: those that authenticated), and the ack-eliciting ones among those sent */
    uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes, tx_eliciting;
    int close_copies;
    uint8_t close_reason;
    int leave_reason; /* for CLOSING: the reason reported */

    /* bytes this peer makes the host hold (p2p_mem_take/p2p_mem_give) */
    uint64_t mem;

    size_t rec_held; /* bytes charged for the sent-packet record (rec.cap entries) */

    /* hardening (mesh): what this peer may make the mesh do (p2p_mesh.c) */
    p2p_replay mesh_served;    /* cached broadcasts (by cache serial) it has had from us */
    uint32_t mesh_wants;       /* our pending pulls that it announced */
    uint32_t mesh_answers;     /* SUMMARY/DIGEST answered in the current gossip period */
    uint64_t mesh_answers_end; /* the end of that period */

    struct p2p_peer *ready_next;
    int in_ready;
    /* The cached deadline (p2p_host.c, peer_deadline()): every path that can change a peer
     * finds it through p2p_lookup/p2p_lookup_index or queues it with p2p_ready, which clear
     * dl_valid; p2p_host_on_timeout recomputes all. */
    int dl_valid;
    uint64_t dl;

    /* hardening (nat): introductions only when asked, and the egress guard */
    int app_dialled;       /* cand[0] came from the application (connect(id, {via})) */
    int from_offer;        /* an attempt made because the peer accepted an INTRO offer */
    uint64_t offers_since; /* INTRO offers accepted from this session since then ... */
    uint8_t offers;        /* ... this many */

    /* hardening (verify): the node's memory budget ran out while this session held the most
     * of it: it is ended at its next timer (p2p_mem_take) */
    uint8_t mem_evict;

    /* Set by the layers below the host, read by it (p2p_state.h): the session has ended and
     * waits on the host's dead list to be freed; an attempt made by a module still has to
     * start its handshake; it is to send INIT to every candidate at the punching pace. */
    uint8_t dead, dial_due, punch_due;
    struct p2p_peer *dead_next;
    /* Control records (mesh, NAT) that arrived whole and wait for the host to route them. */
    struct p2p_ctl_rec *ctl_head, *ctl_tail;

    /* transfers (p2p_transfer.c): the highest transfer id the peer has opened towards us (ids
     * only grow), and how many transfers are open each way */
    uint64_t xfer_max_in;
    uint32_t xfer_in, xfer_out;

    /* issue 12 (p2p_nat.c, p2p_path.c; the hub reads them for p2p_peer_stats_get) */
    uint8_t has_udp_home; /* on a stream path: the UDP address to upgrade to */
    p2p_addr udp_home;
    uint8_t relay_lost; /* relayed, and the relay's session ended: hand-over running */
    uint8_t lan_dial;   /* made from a LAN beacon: a few INITs within P2P_LAN_DIAL_US, then quiet */
    uint8_t handover_asks;
    uint64_t handover_at;
    p2p_peer_handle handover_via;
    uint8_t strategy;     /* P2P_STRATEGY_* */
    uint8_t peer_mapping; /* P2P_MAPPING_* (PUNCH INFO) */
    uint64_t punch_probes;
    uint8_t npcand; /* direct paths known, with their RTTs (path choice) */
    p2p_path_cand pcand[P2P_PATH_CANDS];
    uint64_t path_switch_at;
} p2p_peer;

/* A mesh or NAT record the session received: the host hands it to its module. */
typedef struct p2p_ctl_rec {
    struct p2p_ctl_rec *next;
    uint8_t kind;
    uint8_t lane; /* the lane it came on */
    size_t len;
    uint8_t *body;
} p2p_ctl_rec;

/* What a layer below the host tells it (p2p_notify): the host reads these after each call into
 * a module and routes them (p2p_host.c, route()). Sessions are named by handle: a notice may
 * outlive its session. */
enum {
    P2P_NOTE_DIAL = 1,  /* a module made an attempt (p2p_attempt_new): start its handshake */
    P2P_NOTE_PUNCH,     /* send the attempt's INIT to every candidate, at the punching pace */
    P2P_NOTE_JOINED,    /* the handshake established a session: path, mesh and NAT learn it */
    P2P_NOTE_LEFT,      /* a session with `id` ended for `reason`: the mesh learns it */
    P2P_NOTE_PROBE,     /* probe every direct address of a connected peer (p2p_path_probe) */
    P2P_NOTE_INTRODUCE, /* introduce sessions `peer` and `other` to each other (p2p_nat.c) */
    /* issue 12 */
    P2P_NOTE_MAPPING, /* the node's NAT mapping (h->mapping) changed: NAT tells its peers */
    P2P_NOTE_LAN_DIAL /* a LAN beacon named node `id` at `addr`: dial it (a probe) */
};

/* The most notices one session queues before the host routes them: DIAL (made), PUNCH (one at a
 * time: punch_due), JOINED and LEFT (once each). PROBE and INTRODUCE come one per record read,
 * and the host routes after every record: the spare covers them. */
#define P2P_NOTES_PER_SESSION 4
#define P2P_NOTES_SPARE 8

typedef struct p2p_notice {
    uint8_t kind;
    uint8_t relay_ok; /* INTRODUCE */
    int reason;       /* LEFT */
    p2p_peer_handle peer, other;
    uint8_t id[P2P_ID_LEN]; /* LEFT, LAN_DIAL */
    p2p_addr addr;          /* LAN_DIAL */
} p2p_notice;

/* Our side of a birthday round (p2p_peer.bday_role). */
enum { P2P_BDAY_NONE = 0, P2P_BDAY_HARD = 1, P2P_BDAY_EASY = 2 };

/* Where an attempt stands with its introducer (p2p_nat.c). */
enum {
    P2P_INTRO_NONE = 0,
    P2P_INTRO_LATER,    /* dialling directly; ask `intro_via` at punch_until if still going */
    P2P_INTRO_WAIT_VIA, /* the session with the introducer is being made */
    P2P_INTRO_ASKED,    /* INTRO_REQ sent */
    P2P_INTRO_PUNCHING, /* introduced: INIT to every candidate; the relay joins at punch_until */
    P2P_INTRO_RELAYING  /* the relay is among the candidates */
};

typedef struct p2p_evq_item {
    p2p_event ev;
    uint8_t *owned;
} p2p_evq_item;

typedef struct p2p_txq_item {
    struct p2p_txq_item *next;
    p2p_addr to;
    uint8_t own; /* issue 12: to the node's own gateway or configured server (p2p_tx_push_own) */
    size_t len;
    uint8_t data[];
} p2p_txq_item;

/* hardening (handshake): cookies under load, the cache of INIT ephemeral keys seen, and the
 * caps on half-open handshakes (p2p_handshake.c, docs/PROTOCOL.md section 2.1). */
#define P2P_HALF_OPEN_LIMIT 4096 /* largest max_half_open accepted */
#define P2P_HALF_OPEN_PER_IP \
    8 /* half-open handshakes one IPv4 address or IPv6 /64
                                           * may hold */
#define P2P_COOKIE_LEN 16
#define P2P_COOKIE_ROTATE_US 120000000u /* cookie secrets rotate, cookies expire: 120 s */
#define P2P_HS_COOKIES 16               /* cookies an initiator keeps, by address */
#define P2P_REPLAY_SLOTS 2048           /* per generation of the replay cache */
#define P2P_REPLAY_GEN_MAX 1024         /* inserts before a generation is retired */
typedef struct p2p_hs_cookie {
    p2p_addr addr;
    uint64_t at; /* arrival; 0: empty */
    uint8_t cookie[P2P_COOKIE_LEN];
} p2p_hs_cookie;

/* ---- issue 12: the io queue, streams, LAN datagrams (p2p_state.c, p2p_host.c) ---- */
#define P2P_IOQ_MAX 64                 /* requests waiting for the driver; more are refused */
#define P2P_LANQ_MAX 32                /* LAN datagrams waiting for the driver */
#define P2P_STREAMS 256                /* streams up at once (both ways) */
#define P2P_STREAMS_PER_IP 8           /* inbound streams one IP may hold (loopback excepted) */
#define P2P_FALLBACK_AFTER_US 2000000  /* an attempt sent INIT this long and UDP heard nothing */
#define P2P_FALLBACK_NEXT_US 5000000   /* a stream that did not come up by then: the next URL */
#define P2P_FALLBACK_RETRY_US 30000000 /* the list again after this, doubling ... */
#define P2P_FALLBACK_RETRY_MAX_US 600000000 /* ... to this */
#define P2P_STREAM_LINGER_US 30000000 /* a stream with no session left on it closes after this */
#define P2P_LAN_DIAL_US 1000000 /* a LAN dial's handshake: INIT at 0, 0.25, 0.75 s, then it ends */
#define P2P_STREAM_FIRST_US 10000000 /* an inbound stream with no session yet closes after this */

typedef struct p2p_ioq_item {
    struct p2p_ioq_item *next;
    p2p_io io;
    uint8_t *data; /* HTTP request bytes (owned) */
} p2p_ioq_item;

typedef struct p2p_stream {
    uint32_t sid;
    uint8_t used, inbound, up, ws;
    uint8_t used_once; /* a session has used it */
    p2p_addr peer_ip;  /* the TCP peer (from_ip), or where we connect */
    uint64_t opened, idle_since;
} p2p_stream;

/* Hard-NAT punching budgets (p2p_guard.c, docs/PROTOCOL.md section 8.6). */
#define P2P_SPRAY_TARGETS 60            /* IPs sprayed, remembered ... */
#define P2P_SPRAY_IP_US 600000000       /* ... one spray per IP per 10 minutes */
#define P2P_SPRAYS_PER_WINDOW 4         /* sprays per node per 10 minutes */
#define P2P_OPENER_BATCHES_PER_WINDOW 2 /* punch socket batches per node per 10 minutes */
#define P2P_SPRAY_WINDOW_US 600000000
#define P2P_SPRAY_PROBES 1024  /* probes in one spray */
#define P2P_OPENER_SOCKETS 255 /* punch sockets in one batch */

typedef struct p2p_spray_ledger {
    p2p_addr ip[P2P_SPRAY_TARGETS]; /* port 0 */
    uint64_t at[P2P_SPRAY_TARGETS];
    uint64_t sprays[P2P_SPRAYS_PER_WINDOW];          /* start times of the last sprays */
    uint64_t batches[P2P_OPENER_BATCHES_PER_WINDOW]; /* ... of the last socket batches */
    uint8_t running;                                 /* a spray runs now: */
    p2p_addr target;                                 /* ... to this IP (port 0) */
    uint16_t spray_left;                             /* ... this many probes still allowed */
    uint64_t spray_until;                            /* ... until then at most */
    p2p_addr opener_to;                              /* the last opener batch's destination, */
    uint16_t opener_left;                            /* ... packets it may still send */
    uint64_t opener_until;
} p2p_spray_ledger;
#define P2P_SPRAY_MAX_US 8000000   /* a spray's allowance lasts this long (6 s of probes) */
#define P2P_OPENER_MAX_US 10000000 /* an opener batch's allowance (two rounds, 3 s apart) */

struct p2p_host {
    p2p_identity ident;
    uint8_t psk[P2P_KEY_LEN], mac_key[P2P_KEY_LEN];
    uint8_t (*allow)[P2P_ID_LEN];
    size_t allow_count;
    uint8_t (*deny)[P2P_ID_LEN];
    size_t deny_count;
    int request_hook;
    /* This node as its peers see it: a mesh member (0: a mediator; config), and the addresses
     * it advertises in its member record and its FIN: nlocal local ones (from the driver),
     * then reflexive ones (where peers saw it). Node-level, not the mesh's: the state layer
     * keeps the list (p2p_own_add), the mesh, the handshake and the policy read it. */
    int member;
    p2p_addr addrs[P2P_MEMBER_ADDRS];
    size_t naddr, nlocal;
    uint64_t timeout;
    uint32_t max_peers, max_message, send_queue_limit;
    p2p_rng rng;
    uint64_t instance; /* random per host: tells restarts from races */
    uint64_t now;
    int closed;

    p2p_index peers; /* every session, by handle and by index */
    size_t n_connected, n_half_open;

    /* Our connects that lost to a session the other side dialled at the same time: the
     * session that wins reports their handle in JOIN (p2p_event.replaces). */
    struct {
        int has_id;
        uint8_t id[P2P_ID_LEN];
        p2p_addr addr;
        p2p_peer_handle handle;
        uint64_t expire;
    } superseded[8];

    p2p_evq_item *evq;
    size_t evq_cap, evq_head, evq_len;
    uint8_t *ev_owned; /* data of the event last returned */
    size_t ev_owned_len;
    /* spare record bodies (p2p_state.c): buffers of exactly spare_len[i] bytes, charged to
     * the node's budget while kept */
    uint8_t *spare[P2P_SPARES];
    size_t spare_len[P2P_SPARES];
    unsigned spares;

    p2p_txq_item *txq_head, *txq_tail;
    p2p_peer *ready_head, *ready_tail;
    p2p_stats stats;
    /* memory budgets: peer_mem per peer, mem_limit for the node; mem is held now */
    uint64_t peer_mem, mem_limit, mem;
    p2p_mesh mesh;
    p2p_nat nat;
    int mesh_dl_valid; /* mesh_dl caches p2p_mesh_deadline() */
    uint64_t mesh_dl;

    /* hardening (handshake) */
    uint32_t max_half_open, cookie_threshold;
    /* issue 10 (congestion control): the controller sessions use (P2P_CC_*) */
    int congestion;
    uint8_t cookie_key[P2P_KEY_LEN];       /* seals COOKIE replies: derived from the psk */
    int hs_keyed;                          /* cookie_secret and replay_key drawn (at first use) */
    uint8_t cookie_secret[2][P2P_KEY_LEN]; /* [0] current, [1] previous */
    uint64_t cookie_rotated;               /* when [0] was drawn */
    p2p_hs_cookie hs_cookies[P2P_HS_COOKIES];
    uint8_t replay_key[P2P_KEY_LEN];          /* keys the fingerprints of INIT ephemeral keys */
    uint64_t replay_set[2][P2P_REPLAY_SLOTS]; /* [0] current generation, [1] previous */
    uint32_t replay_n;                        /* inserts into [0] */
    uint64_t replay_at;                       /* when [0] was started */

    /* hardening (nat): the egress guard (p2p_guard.c) */
    p2p_guard guard;

    /* hardening (verify): a session marked mem_evict has not been ended yet */
    uint8_t mem_evicting;
    uint64_t mem_evictions; /* sessions ended so, in all */

    /* what the layers below told the host (p2p_notify), and the sessions they ended. A notice
     * cannot be lost: room for P2P_NOTES_PER_SESSION of them is made with every session
     * (p2p_peer_new), for every session that may have notices queued (notes_sessions: those
     * alive when the array was last empty, and those made since; n_sessions: made and not yet
     * freed). notes_lost counts notices that found no room all the same (0 unless that bound
     * is broken and memory is out). */
    p2p_notice *notes;
    size_t notes_len, notes_cap;
    size_t n_sessions, notes_sessions;
    uint64_t notes_lost;
    p2p_peer *dead_head;

    /* transfers (p2p_transfer.c): every open transfer, both directions */
    struct p2p_xfers *xfers;
    /* lanes: each application lane's priority (higher goes first) and weight (its share of
     * the window among lanes of one priority; 0 reads as 1). p2p_host_set_lane sets them. */
    uint8_t lane_prio[P2P_LANE_SLOTS];
    uint16_t lane_weight[P2P_LANE_SLOTS];

    /* issue 12 (reach every peer) */
    uint8_t addr_kind[P2P_MEMBER_ADDRS]; /* P2P_ADDR_* of each of addrs[] */
    uint32_t addrs_gen, addrs_told; /* changes to addrs[]; the last one told to peers (ADDRS) */
    uint64_t addr_expires[P2P_MEMBER_ADDRS]; /* MAPPED: when the gateway's grant runs out */
    /* the node's NAT mapping, and what said so (p2p_own_mapping) */
    uint8_t mapping, mapping_source;
    /* the modules' own state (each defines its struct; PRIVATE in check-layers) */
    struct p2p_portmap *portmap;
    struct p2p_probe *probe;
    struct p2p_lan *lan;
    /* the io queue (p2p_io_push) and the LAN datagrams (p2p_lan_tx_push) */
    p2p_ioq_item *ioq_head, *ioq_tail, *io_taken; /* io_taken: the last one returned */
    size_t ioq_len;
    uint32_t io_next_id;
    p2p_txq_item *lanq_head, *lanq_tail;
    size_t lanq_len;
    /* streams (p2p_host.c) and the fallback to them when UDP gets nothing */
    p2p_stream streams[P2P_STREAMS];
    size_t nstreams;      /* slots of streams[] in use (0: the scans of the timers are skipped) */
    uint64_t last_udp_rx; /* the last UDP datagram from anyone (0: none yet) */
    uint64_t started;     /* when the host was made */
    p2p_fallback fallback[P2P_FALLBACKS];
    size_t nfallback;
    int fallback_off, fallback_default; /* default: same-port TCP to app-given addresses */
    uint32_t fb_sid;                    /* the stream being tried or used (0: none) */
    size_t fb_next;                     /* the URL to try next */
    uint64_t fb_at;                     /* the next step of the fallback (P2P_TIME_NEVER: idle) */
    uint64_t fb_gap;                    /* the wait before trying the list again */
    uint8_t fb_state;                   /* 0 idle, 1 opening, 2 up */
    p2p_addr fb_to;                     /* where the stream goes (TCP endpoint) */
    int fb_ws;
    /* hard-NAT punching: one birthday round at a time per node (p2p_path.c owns `punch`: one
     * flat allocation, which p2p_host_free frees), and the budgets (p2p_guard.c) */
    int punch_off;
    struct p2p_punch *punch;
    p2p_spray_ledger spray;
};

#endif
