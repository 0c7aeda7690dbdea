/*
 * p2p_mesh.h - membership and broadcast (docs/PROTOCOL.md section 7): signed member records,
 * who dials whom to form the full mesh, and broadcasts signed by their origin that reach every
 * member exactly once, pulled through other members where there is no direct link.
 */
#ifndef P2P_MESH_H
#define P2P_MESH_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"
#include "p2p_reliable.h"

#define P2P_MEMBER_ADDRS (P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS)
#define P2P_MEMBER_TTL_S 3600          /* a record is valid this long after signing */
#define P2P_MEMBER_REFRESH_S 1200      /* re-signed this often */
#define P2P_MESH_DIAL_DELAY_US 2000000 /* the higher id waits this long for the lower to dial */
#define P2P_MESH_REDIAL_US 4000000     /* first retry after a failed dial, doubling */
#define P2P_MESH_MAX_DIALS 4           /* then the member is dead: kept, never dialled again */
#define P2P_MESH_CLAIM_DIALS 2         /* the same for a member we never held a session with */
#define P2P_MESH_FORGET_US (P2P_MEMBER_TTL_S * UINT64_C(1000000)) /* unconfirmed or dead:
                                        * forgotten this long after it entered the table */
#define P2P_MESH_SCAN_US 1000000       /* the member table and origin table are swept this often */
#define P2P_BCAST_CACHE_ENTRIES 1024   /* broadcasts kept to answer IWANT ... */
#define P2P_BCAST_CACHE_BYTES (16u * 1024u * 1024u)
#define P2P_BCAST_CACHE_US 60000000    /* ... for at most a minute */
#define P2P_IWANT_DELAY_US 300000      /* wait this long for the direct copy before pulling */
#define P2P_IWANT_MAX 4096             /* pending pulls, in all ... */
#define P2P_IWANT_PER_PEER 1024        /* ... and announced by one peer */
#define P2P_GOSSIP_US 1000000          /* anti-entropy: one summary to one peer this often */
#define P2P_GOSSIP_ANSWERS 4           /* SUMMARY/DIGEST answered per peer per gossip period */
#define P2P_MEMBER_REC_MAX (1 + 32 + 8 + 8 + 1 + P2P_MEMBER_ADDRS * 19 + 64)
/* Broadcast replay protection (docs/PROTOCOL.md section 7.3). A broadcast's seq is its
 * origin's wall clock in µs; one stamped more than PAST before or FUTURE after the receiver's
 * clock is refused. Seqs below TS_MIN (an origin without a wall clock counts from 1) are not
 * timestamps: only the per-origin state protects them. */
#define P2P_BCAST_PAST_US UINT64_C(120000000)
#define P2P_BCAST_FUTURE_US UINT64_C(60000000)
#define P2P_BCAST_TS_MIN (UINT64_C(1) << 50)  /* 2005-09-05 as µs since 1970 */
#define P2P_BCAST_SEEN 32              /* per origin: the newest seqs remembered */
#define P2P_BCAST_FLOORS 1024          /* floors of forgotten origins, by keyed hash */
#define P2P_BCAST_IDLE_US UINT64_C(600000000) /* an origin silent this long is forgotten */
#define P2P_OBSERVED_PENDING 8         /* observed addresses waiting for a second reporter */
#define P2P_OBSERVED_TTL_US UINT64_C(600000000)
#define P2P_MESH_NONE UINT32_MAX

struct p2p_host;
struct p2p_peer;

/* A chained hash index over the slots of an array (members, origins, cache, wants): every
 * lookup costs O(1) expected steps, with a per-node secret key so that a peer cannot choose
 * ids that collide. */
typedef struct p2p_mesh_index {
    uint32_t *head, *next;
    uint32_t mask, cap;
} p2p_mesh_index;

typedef struct p2p_member {
    uint8_t id[32];
    int has_record;
    uint64_t seq, expires;            /* expires: unix seconds */
    uint8_t naddr;
    p2p_addr addrs[P2P_MEMBER_ADDRS];
    uint8_t rec[P2P_MEMBER_REC_MAX];  /* the signed record, forwarded verbatim */
    uint16_t rec_len;
    uint64_t dial_at;                 /* P2P_TIME_NEVER: no dial planned */
    unsigned dials;                   /* dial attempts since the last session */
    p2p_peer_handle via;              /* the session the record came by: an introducer */
    uint8_t confirmed;                /* we held a session with it: it is real and reachable */
    uint8_t dead;                     /* every dial failed: kept so that records can't re-arm */
    uint8_t in_hash;                  /* its (id, seq) is in the table hash */
    uint8_t has_src;                  /* unconfirmed: src is the peer that sent the record
                                       * (0: that peer was forgotten since; an orphan) */
    uint8_t src[32];
    uint32_t nsrc;                    /* unconfirmed members this one brought us */
    uint64_t added, forget_at;        /* monotonic: entered the table; forgotten (unconfirmed
                                       * or dead ones only; P2P_TIME_NEVER otherwise) */
    uint64_t mark;                    /* on_digest: the digest being read holds this record */
} p2p_member;

/* Duplicate and replay state of one broadcast origin. */
typedef struct p2p_origin {
    uint8_t id[32];
    uint64_t floor;                   /* every seq <= floor is refused */
    uint64_t tsfloor;                 /* timestamps <= tsfloor too (inherited on creation from
                                       * the floors of forgotten origins) */
    uint64_t last;                    /* monotonic: the last broadcast delivered */
    uint32_t prev, next;              /* LRU list, most recent first; next: free list too */
    uint8_t peer;                     /* we hold a session with it: strangers can't evict it */
    uint8_t nseen;
    uint64_t seen[P2P_BCAST_SEEN];    /* ascending */
} p2p_origin;

typedef struct p2p_bcast {
    uint8_t origin[32];
    uint64_t seq, at, serial;
    size_t len;
    uint8_t *env;                     /* the signed envelope */
} p2p_bcast;

typedef struct p2p_want {
    uint8_t origin[32];
    uint64_t seq, at;
    p2p_peer_handle from;
} p2p_want;

typedef struct p2p_observed {
    p2p_addr addr;                    /* where a peer saw us */
    uint8_t by[32];                   /* that peer */
    p2p_addr from;                    /* and where we saw it */
    uint64_t at;
} p2p_observed;

typedef struct p2p_mesh {
    int member;                       /* 0 for a mediator */
    p2p_member *m;
    size_t n, cap, max;
    uint64_t unix_base, mono_base;    /* wall clock = unix_base + (now - mono_base) */
    uint64_t own_seq, refresh_at;
    uint8_t own_rec[P2P_MEMBER_REC_MAX];
    uint16_t own_len;
    p2p_addr addrs[P2P_MEMBER_ADDRS]; /* advertised: nlocal local ones, then reflexive */
    size_t naddr, nlocal;
    uint64_t bseq;
    uint64_t next_gossip;
    /* hardening (mesh) */
    uint64_t hkey[2];                 /* secret key of the hash indexes */
    p2p_mesh_index mix;               /* members by id */
    uint8_t thash[32];                /* the table hash (SUMMARY), kept up to date */
    int own_in_hash;
    size_t norphans;                  /* unconfirmed members whose source was forgotten */
    uint64_t digest_gen;
    uint64_t next_dial, next_scan;
    uint64_t work;                    /* entries and index steps processed: a work counter */
    /* broadcast origins */
    p2p_origin *o;
    size_t on, ocap, omax;
    uint32_t ofree, ohead, otail;
    p2p_mesh_index oix;
    uint64_t boot_us;                 /* our wall clock when we started: older stamps refused */
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

int p2p_mesh_init(struct p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_mesh_free(struct p2p_host *h);
/* A session was established (after JOIN): the member is confirmed, and the address the peer
 * saw us at is noted (advertised once a second, independent peer reports it). */
void p2p_mesh_on_join(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* A session ended. */
void p2p_mesh_on_leave(struct p2p_host *h, const uint8_t id[32], int reason, uint64_t now);
/* A mesh record arrived on a session's stream. Returns 0, or -1 for a protocol error. */
int p2p_mesh_on_record(struct p2p_host *h, struct p2p_peer *p, uint8_t kind,
                       const uint8_t *body, size_t len, uint64_t now);
uint64_t p2p_mesh_deadline(const struct p2p_host *h);
void p2p_mesh_on_timeout(struct p2p_host *h, uint64_t now);

#endif
