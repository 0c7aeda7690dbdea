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
#define P2P_MESH_MAX_DIALS 4           /* then the record is forgotten */
#define P2P_BCAST_CACHE_ENTRIES 1024   /* broadcasts kept to answer IWANT ... */
#define P2P_BCAST_CACHE_BYTES (16u * 1024u * 1024u)
#define P2P_BCAST_CACHE_US 60000000    /* ... for at most a minute */
#define P2P_IWANT_DELAY_US 300000      /* wait this long for the direct copy before pulling */
#define P2P_IWANT_MAX 4096
#define P2P_GOSSIP_US 1000000          /* anti-entropy: one summary to one peer this often */
#define P2P_MEMBER_REC_MAX (1 + 32 + 8 + 8 + 1 + P2P_MEMBER_ADDRS * 19 + 64)

struct p2p_host;
struct p2p_peer;

typedef struct p2p_member {
    uint8_t id[32];
    int has_record;
    uint64_t seq, expires;            /* expires: unix seconds */
    uint8_t naddr;
    p2p_addr addrs[P2P_MEMBER_ADDRS];
    uint8_t rec[P2P_MEMBER_REC_MAX];  /* the signed record, forwarded verbatim */
    uint16_t rec_len;
    uint64_t dial_at;                 /* P2P_TIME_NEVER: no dial planned */
    unsigned dials;
    p2p_peer_handle via;              /* the session the record came by: an introducer */
    p2p_replay bseen;                 /* broadcasts seen from this origin */
} p2p_member;

typedef struct p2p_bcast {
    struct p2p_bcast *next;
    uint8_t origin[32];
    uint64_t seq, at;
    size_t len;
    uint8_t env[];                    /* the signed envelope */
} p2p_bcast;

typedef struct p2p_want {
    uint8_t origin[32];
    uint64_t seq, at;
    p2p_peer_handle from;
} p2p_want;

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
    p2p_bcast *cache_head, *cache_tail;
    size_t cache_n, cache_bytes;
    p2p_want *wants;
    size_t nwants;
    uint64_t next_gossip;
} p2p_mesh;

int p2p_mesh_init(struct p2p_host *h, const p2p_config *cfg, uint64_t now);
void p2p_mesh_free(struct p2p_host *h);
/* A session was established (after JOIN). */
void p2p_mesh_on_join(struct p2p_host *h, struct p2p_peer *p, uint64_t now);
/* A session ended. */
void p2p_mesh_on_leave(struct p2p_host *h, const uint8_t id[32], int reason, uint64_t now);
/* The peer told us the address it saw us at (handshake). */
void p2p_mesh_observed(struct p2p_host *h, const p2p_addr *a, uint64_t now);
/* A mesh record arrived on a session's stream. Returns 0, or -1 for a protocol error. */
int p2p_mesh_on_record(struct p2p_host *h, struct p2p_peer *p, uint8_t kind,
                       const uint8_t *body, size_t len, uint64_t now);
uint64_t p2p_mesh_deadline(const struct p2p_host *h);
void p2p_mesh_on_timeout(struct p2p_host *h, uint64_t now);

#endif
