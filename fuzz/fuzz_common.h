/*
 * fuzz_common.h - what the host-level fuzz targets share: deterministic hosts (fixed identities
 * and rng seeds, so every input replays exactly), an in-memory exchange between two hosts, and
 * a drain that consumes everything a host wants to send or report after each input, as a
 * driver must.
 *
 * The targets include p2p_internal.h to reach session keys and indexes: they play the other
 * side of a session or handshake themselves, so fuzzed bytes get past authentication into the
 * parsers behind it.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_host.h"

#define FZ_CHECK(c)                                                                      \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz: check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static p2p_identity fz_ident[3];
static int fz_ready;

static inline void fz_init(void)
{
    if (fz_ready) return;
    FZ_CHECK(p2p_init() == 0);
    for (int i = 0; i < 3; i++) {
        uint8_t seed[P2P_SEED_LEN];
        memset(seed, 0x11 * (i + 1), sizeof seed);
        FZ_CHECK(p2p_identity_from_seed(&fz_ident[i], seed) == 0);
    }
    fz_ready = 1;
}

static inline p2p_addr fz_addr(uint8_t last, uint16_t port)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    a.family = P2P_AF_INET4;
    a.ip[0] = 10;
    a.ip[3] = last;
    a.port = port;
    return a;
}

static inline p2p_host *fz_host(int ident, uint64_t seed, uint64_t now)
{
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &fz_ident[ident];
    cfg.seed = seed;
    p2p_host *h = NULL;
    FZ_CHECK(p2p_host_new(&h, &cfg, now) == 0 && h);
    return h;
}

/* Takes every event; answers MESSAGE events that want a reply (so REPLY records flow too).
 * Returns the number of JOIN events seen. */
static inline int fz_events(p2p_host *h, uint64_t now)
{
    p2p_event ev;
    int joins = 0;
    while (p2p_host_next_event(h, &ev)) {
        FZ_CHECK(ev.len == 0 || ev.data != NULL);
        if (ev.type == P2P_EV_JOIN) joins++;
        if (ev.type == P2P_EV_MESSAGE && ev.want_reply) {
            p2p_peer_handle peer = ev.peer;
            uint64_t seq = ev.seq;
            int status = (int)(ev.len % 3);
            uint8_t body[8] = {0};
            size_t n = ev.len < sizeof body ? ev.len : sizeof body;
            if (n) memcpy(body, ev.data, n);
            (void)p2p_peer_reply(h, peer, seq, status, body, n, now);
        }
    }
    return joins;
}

/* Discards every datagram the host wants to send, checking only their bounds. */
static inline void fz_discard(p2p_host *h)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_addr to;
    size_t n;
    int guard = 0;
    while ((n = p2p_host_next_datagram(h, &to, buf, sizeof buf)) > 0) {
        FZ_CHECK(n <= P2P_MAX_PACKET);
        FZ_CHECK(++guard < 100000);
    }
}

/* Moves datagrams between two hosts until both are quiet. Returns the JOIN events seen. */
static inline int fz_exchange(p2p_host *a, const p2p_addr *aa, p2p_host *b, const p2p_addr *ba,
                              uint64_t now)
{
    uint8_t buf[P2P_MAX_PACKET];
    p2p_addr to;
    int joins = 0;
    for (int round = 0; round < 64; round++) {
        size_t n;
        int moved = 0;
        while ((n = p2p_host_next_datagram(a, &to, buf, sizeof buf)) > 0) {
            if (p2p_addr_equal(&to, ba)) p2p_host_recv(b, aa, buf, n, now);
            moved = 1;
        }
        while ((n = p2p_host_next_datagram(b, &to, buf, sizeof buf)) > 0) {
            if (p2p_addr_equal(&to, aa)) p2p_host_recv(a, ba, buf, n, now);
            moved = 1;
        }
        joins += fz_events(a, now) + fz_events(b, now);
        if (!moved) break;
    }
    return joins;
}

/* Runs the host's timers up to now. */
static inline void fz_advance(p2p_host *h, uint64_t now)
{
    uint64_t t = p2p_host_next_timeout(h);
    if (t <= now) p2p_host_on_timeout(h, now);
}

/* Exchanges datagrams and runs timers, as a driver would, until both hosts have reported
 * JOIN (at most 5 s of virtual time). Returns 1 on success; *now advances. */
static inline int fz_establish(p2p_host *a, const p2p_addr *aa, p2p_host *b, const p2p_addr *ba,
                               uint64_t *now)
{
    int joins = 0;
    uint64_t limit = *now + 5000000;
    for (int i = 0; i < 64 && *now <= limit; i++) {
        joins += fz_exchange(a, aa, b, ba, *now);
        if (joins >= 2) return 1;
        uint64_t ta = p2p_host_next_timeout(a), tb = p2p_host_next_timeout(b);
        uint64_t t = ta < tb ? ta : tb;
        if (t == P2P_TIME_NEVER) return 0;
        if (t > *now) *now = t;
        p2p_host_on_timeout(a, *now);
        p2p_host_on_timeout(b, *now);
    }
    return 0;
}

/* Input reader: chunks of [u8 flags][u8 dt_ms][u16 len LE][len bytes], the last one cut short
 * at the end of the input. */
typedef struct fz_chunk {
    uint8_t flags, dt_ms;
    const uint8_t *data;
    size_t len;
} fz_chunk;

static inline int fz_next_chunk(const uint8_t **p, size_t *left, fz_chunk *c)
{
    if (*left < 4) return 0;
    c->flags = (*p)[0];
    c->dt_ms = (*p)[1];
    size_t n = (size_t)((*p)[2] | ((*p)[3] << 8));
    *p += 4;
    *left -= 4;
    if (n > *left) n = *left;
    c->data = *p;
    c->len = n;
    *p += n;
    *left -= n;
    return 1;
}

#endif
