/*
 * fuzz_net.h - the three-host setup of the record targets (fuzz_mesh.c, fuzz_mesh_signed.c)
 * and of their seed writer (mkseeds.c).
 *
 * Host A is the attacker, V the victim, B a bystander. A and B are both members of the mesh
 * and hold established sessions with V (B's made first, so V introduces A to B when asked);
 * A asked V for an introduction to B, so V holds the relay pair (A, B) and A knows the
 * channel. Everything is deterministic: fixed identities, rng seeds, clock and wall clock.
 * The inputs then reach V as records on A's stream, or as frames sealed with A's session keys:
 * past the AEAD and the session, into the mesh, introduction, relay and path code.
 *
 * Signers: the harness holds the secret keys of FN_SIGNERS identities (throwaway ids an
 * attacker can make at will, and A, B and V themselves), so a target can sign the member
 * records and broadcasts in its inputs and get past the signature checks into the tables.
 */
#ifndef FUZZ_NET_H
#define FUZZ_NET_H

#include "fuzz_common.h"

enum { FN_A = 0, FN_V = 1, FN_B = 2, FN_HOSTS = 3 };
/* signers: 0..3 throwaway ids, then A, B and V */
#define FN_SIGNERS 7
#define FN_T0 UINT64_C(1000000)
#define FN_UNIX_US UINT64_C(1800000000000000) /* the wall clock that goes with FN_T0 */
#define FN_SETTLE_US 100000                   /* timers due within this run with an input */
#define FN_SETTLE_PKTS 4096                   /* datagrams moved per settle, at most */
/* the victim's budgets, small so that the fuzzer can reach them */
#define FN_PEER_MEMORY (1u << 20)
#define FN_MEMORY (4u << 20)

/* Chunk modes (flags & 15 of a chunk, fuzz_common.h's reader; other values wrap around). */
enum {
    FN_MODE_RECORD_LAST = 8,  /* 0..8: a record of kind 0x04 + mode on A's stream to V */
    FN_MODE_FRAMES = 9,       /* the bytes are frames, sealed by A, from A's address */
    FN_MODE_FRAMES_AWAY = 10, /* the same from another address (roaming, path validation) */
    FN_MODE_RELAY = 11,       /* the bytes are a datagram for B, in one RELAY frame with the
                               * channel of the pair (flags & 0x10: channel = the first 4 bytes) */
    FN_MODE_RELAYED = 12,     /* the first 4 bytes are a channel, the rest a datagram, in one
                               * RELAYED frame (V takes A for its relay) */
    FN_MODES = 13
};

static const char fn_member_label[] = "p2pnet/1 member";
static const char fn_bcast_label[] = "p2pnet/1 broadcast";
#define FN_MEMBER_MIN (1 + P2P_ID_LEN + 8 + 8 + 1 + P2P_SIG_LEN)
#define FN_BCAST_MIN (P2P_ID_LEN + 8 + 2 + P2P_SIG_LEN)

typedef struct fn_net {
    p2p_host *h[FN_HOSTS];
    p2p_addr addr[FN_HOSTS];
    p2p_addr away; /* an address of nobody's */
    uint64_t now;
    p2p_peer_handle av; /* A's handle for its session with V */
    uint32_t channel;   /* V's index of its session with B: the relay channel for A */
} fn_net;

static p2p_identity fn_id[FN_SIGNERS];
static int fn_ready;

static inline void fn_init(void)
{
    if (fn_ready) return;
    FZ_CHECK(p2p_init() == 0);
    for (int i = 0; i < FN_SIGNERS; i++) {
        uint8_t seed[P2P_SEED_LEN];
        memset(seed, 0x40 + i, sizeof seed);
        FZ_CHECK(p2p_identity_from_seed(&fn_id[i], seed) == 0);
    }
    fn_ready = 1;
}

/* The identity of host i (FN_A, FN_V, FN_B). */
static inline const p2p_identity *fn_host_id(int i)
{
    return &fn_id[i == FN_A ? 4 : i == FN_B ? 5 : 6];
}

static inline int fn_host_of(const fn_net *n, const p2p_addr *a)
{
    for (int i = 0; i < FN_HOSTS; i++)
        if (p2p_addr_equal(&n->addr[i], a)) return i;
    return -1;
}

/* Moves every datagram between the hosts (to anyone else: lost) and takes every event, then
 * runs the timers that fall due within FN_SETTLE_US, until all is quiet. */
static inline void fn_settle(fn_net *n)
{
    static uint8_t buf[P2P_MAX_PACKET_PROBED];
    size_t moved_total = 0;
    for (int round = 0; round < 64; round++) {
        int moved = 0;
        for (int i = 0; i < FN_HOSTS; i++) {
            p2p_addr to;
            size_t len;
            while ((len = p2p_host_next_datagram(n->h[i], &to, buf, sizeof buf)) > 0) {
                FZ_CHECK(len <= P2P_MAX_PACKET_PROBED);
                moved = 1;
                if (++moved_total > FN_SETTLE_PKTS) return;
                int j = fn_host_of(n, &to);
                if (j >= 0) p2p_host_recv(n->h[j], &n->addr[i], buf, len, n->now);
            }
        }
        for (int i = 0; i < FN_HOSTS; i++) fz_events(n->h[i], n->now);
        if (moved) continue;
        uint64_t t = P2P_TIME_NEVER;
        for (int i = 0; i < FN_HOSTS; i++) {
            uint64_t d = p2p_host_next_timeout(n->h[i]);
            if (d < t) t = d;
        }
        if (t == P2P_TIME_NEVER || t > n->now + FN_SETTLE_US) return;
        if (t > n->now) n->now = t;
        for (int i = 0; i < FN_HOSTS; i++) p2p_host_on_timeout(n->h[i], n->now);
    }
}

/* Runs the network for us of virtual time. */
/* Takes the next chunk of a fuzz input: moves the net's clock by its delay and runs every
 * host's timers. Returns 0 at the end of the input. */
static inline int fn_next_chunk(fn_net *n, const uint8_t **p, size_t *left, fz_chunk *c)
{
    if (!fz_next_chunk(p, left, c)) return 0;
    n->now += (uint64_t)c->dt_ms * 1000;
    for (int i = 0; i < FN_HOSTS; i++) p2p_host_on_timeout(n->h[i], n->now);
    return 1;
}

static inline void fn_run(fn_net *n, uint64_t us)
{
    uint64_t end = n->now + us;
    while (n->now < end) {
        fn_settle(n);
        uint64_t t = end;
        for (int i = 0; i < FN_HOSTS; i++) {
            uint64_t d = p2p_host_next_timeout(n->h[i]);
            if (d < t) t = d;
        }
        if (t <= n->now) t = n->now + 1000;
        n->now = t < end ? t : end;
        for (int i = 0; i < FN_HOSTS; i++) p2p_host_on_timeout(n->h[i], n->now);
    }
    fn_settle(n);
}

static inline p2p_peer_handle fn_handle(const fn_net *n, int from, int to)
{
    return p2p_host_find(n->h[from], fn_host_id(to)->ed_pk);
}

static inline int fn_connected(const fn_net *n, int from, int to)
{
    p2p_peer_info info;
    p2p_peer_handle ph = fn_handle(n, from, to);
    return ph && p2p_host_peer_info(n->h[from], ph, &info) == 0 && info.state == P2P_PEER_CONNECTED;
}

static inline void fn_free(fn_net *n)
{
    for (int i = 0; i < FN_HOSTS; i++) p2p_host_free(n->h[i]);
    memset(n, 0, sizeof *n);
}

/* Builds the three hosts and their sessions (see the top of the file). */
static inline void fn_build(fn_net *n)
{
    fn_init();
    memset(n, 0, sizeof *n);
    n->now = FN_T0;
    for (int i = 0; i < FN_HOSTS; i++) {
        p2p_config cfg;
        p2p_config_init(&cfg);
        cfg.identity = fn_host_id(i);
        cfg.seed = 0xf0220000u + (uint64_t)i;
        cfg.unix_us = FN_UNIX_US;
        if (i == FN_V) {
            cfg.peer_memory = FN_PEER_MEMORY;
            cfg.memory = FN_MEMORY;
        }
        FZ_CHECK(p2p_host_new(&n->h[i], &cfg, n->now) == 0);
        n->addr[i] = fz_addr(0, 0);
        n->addr[i].ip[0] = 192;
        n->addr[i].ip[2] = 2;
        n->addr[i].ip[3] = (uint8_t)(10 + i);
        n->addr[i].port = 4000;
        p2p_host_add_address(n->h[i], &n->addr[i], n->now);
    }
    n->away = n->addr[FN_A];
    n->away.ip[3] = 99;
    p2p_peer_handle ph;
    FZ_CHECK(p2p_host_connect(n->h[FN_B], &n->addr[FN_V], fn_host_id(FN_V)->ed_pk, n->now, &ph) ==
             0);
    fn_run(n, 200000);
    FZ_CHECK(p2p_host_connect(n->h[FN_A], &n->addr[FN_V], fn_host_id(FN_V)->ed_pk, n->now, &ph) ==
             0);
    for (int i = 0; i < 100 && !(fn_connected(n, FN_A, FN_V) && fn_connected(n, FN_B, FN_V)); i++)
        fn_run(n, 50000);
    FZ_CHECK(fn_connected(n, FN_A, FN_V) && fn_connected(n, FN_B, FN_V));
    n->av = fn_handle(n, FN_A, FN_V);
    p2p_peer *vb = p2p_lookup(n->h[FN_V], fn_handle(n, FN_V, FN_B));
    FZ_CHECK(vb);
    n->channel = vb->local_index;
    /* A asks V for B, and B for A: V registers the relay pair (A, B) and introduces them
     * (both ask, so this holds also where an introducer waits for both sides). */
    p2p_peer *av = p2p_lookup(n->h[FN_A], n->av);
    FZ_CHECK(av);
    FZ_CHECK(p2p_peer_append(n->h[FN_A], av, P2P_REC_INTRO_REQ, fn_host_id(FN_B)->ed_pk,
                             P2P_ID_LEN) == 0);
    p2p_peer *bv = p2p_lookup(n->h[FN_B], fn_handle(n, FN_B, FN_V));
    FZ_CHECK(bv);
    FZ_CHECK(p2p_peer_append(n->h[FN_B], bv, P2P_REC_INTRO_REQ, fn_host_id(FN_A)->ed_pk,
                             P2P_ID_LEN) == 0);
    fn_run(n, 500000);
    FZ_CHECK(fn_connected(n, FN_A, FN_V));
}

/* Signs one member record (l bytes, at least FN_MEMBER_MIN) as signer k: its id and its
 * signature. */
static inline void fn_sign_record_as(uint8_t *rec, size_t l, int k)
{
    static uint8_t msg[sizeof fn_member_label - 1 + 65536];
    const p2p_identity *s = &fn_id[k];
    memcpy(rec + 1, s->ed_pk, P2P_ID_LEN);
    memcpy(msg, fn_member_label, sizeof fn_member_label - 1);
    memcpy(msg + sizeof fn_member_label - 1, rec, l - P2P_SIG_LEN);
    p2p_sign(rec + l - P2P_SIG_LEN, msg, sizeof fn_member_label - 1 + l - P2P_SIG_LEN, s->ed_sk);
}

/* Signs a broadcast body (len bytes, at least FN_BCAST_MIN) as signer k: origin and
 * signature. */
static inline void fn_sign_broadcast_as(uint8_t *body, size_t len, int k)
{
    static uint8_t msg[sizeof fn_bcast_label - 1 + 65536];
    const p2p_identity *s = &fn_id[k];
    memcpy(body, s->ed_pk, P2P_ID_LEN);
    memcpy(msg, fn_bcast_label, sizeof fn_bcast_label - 1);
    memcpy(msg + sizeof fn_bcast_label - 1, body, len - P2P_SIG_LEN);
    p2p_sign(body + len - P2P_SIG_LEN, msg, sizeof fn_bcast_label - 1 + len - P2P_SIG_LEN,
             s->ed_sk);
}

/* Signs the member record entries of a MEMBERS body ({ u16 length, record }...) in place:
 * each long enough gets the id of signer rec[1] % FN_SIGNERS and a valid signature. */
static inline void fn_sign_members(uint8_t *body, size_t len)
{
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    while (p2p_rd_left(&r) >= 2) {
        size_t l = p2p_rd_u16(&r);
        if (l > p2p_rd_left(&r)) break;
        uint8_t *rec = (uint8_t *)r.p;
        r.p += l;
        if (l >= FN_MEMBER_MIN && l - P2P_SIG_LEN <= 65536)
            fn_sign_record_as(rec, l, rec[1] % FN_SIGNERS);
    }
}

/* Signs a BROADCAST body in place, as signer body[0] % FN_SIGNERS. */
static inline void fn_sign_broadcast(uint8_t *body, size_t len)
{
    if (len >= FN_BCAST_MIN && len - P2P_SIG_LEN <= 65536)
        fn_sign_broadcast_as(body, len, body[0] % FN_SIGNERS);
}

#endif
