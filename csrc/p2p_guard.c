/*
 * p2p_guard.c - the egress guard (docs/PROTOCOL.md section 8.6).
 *
 * One rule for every datagram that leaves the host, whoever made it: to an address that has
 * not proven itself, at most 3 x the bytes received from it, plus a small fixed number of
 * probes when the address was learned from the network. The ledger that counts this is a
 * fixed table with keyed hash chains. An entry whose only content is bytes counted may be
 * evicted at any time (a fresh entry starts from zero on both sides, so the 3 x bound holds
 * across evictions); one that holds a probe allowance stays until its window ends, so that an
 * attacker who makes the node touch many addresses cannot reset a victim's allowance. When the
 * table is full of such entries, sends that would need a new entry are dropped.
 */
#include "p2p_guard.h"

#include <stdlib.h>
#include <string.h>

#define P2P_GUARD_NONE 0xffffu

int p2p_guard_init(p2p_host *h)
{
    p2p_guard *g = &h->guard;
    memset(g, 0, sizeof *g);
    g->e = calloc(P2P_GUARD_ENTRIES, sizeof *g->e);
    g->bucket = malloc(P2P_GUARD_BUCKETS * sizeof *g->bucket);
    if (!g->e || !g->bucket) return P2P_ERR_NOMEM;
    for (size_t i = 0; i < P2P_GUARD_BUCKETS; i++) g->bucket[i] = P2P_GUARD_NONE;
    for (size_t i = 0; i < P2P_GUARD_ENTRIES; i++)
        g->e[i].next = i + 1 < P2P_GUARD_ENTRIES ? (uint16_t)(i + 1) : P2P_GUARD_NONE;
    g->free_head = 0;
    p2p_rng_bytes(&h->rng, &g->key, sizeof g->key);
    return 0;
}

void p2p_guard_free(p2p_host *h)
{
    free(h->guard.e);
    free(h->guard.bucket);
    h->guard.e = NULL;
    h->guard.bucket = NULL;
}

static size_t bucket_of(const p2p_guard *g, const p2p_addr *a)
{
    /* FNV-1a over the address, seeded with a per-host random key, then a 64-bit finaliser:
     * an attacker who cannot see the key cannot pick addresses that share one chain. */
    uint64_t x = 0xcbf29ce484222325u ^ g->key;
    size_t alen = a->family == P2P_AF_INET4 ? 4 : 16;
    x = (x ^ a->family) * 0x100000001b3u;
    for (size_t i = 0; i < alen; i++) x = (x ^ a->ip[i]) * 0x100000001b3u;
    x = (x ^ (a->port & 0xff)) * 0x100000001b3u;
    x = (x ^ (a->port >> 8)) * 0x100000001b3u;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return (size_t)(x & (P2P_GUARD_BUCKETS - 1));
}

/* An entry holds a probe allowance in use: evicting it would hand the address a new one. */
static int pinned(const p2p_guard_entry *e, uint64_t now)
{
    return e->probes && e->probe_start + P2P_GUARD_WINDOW_US > now;
}

static void unlink_entry(p2p_guard *g, uint16_t idx)
{
    uint16_t *pp = &g->bucket[bucket_of(g, &g->e[idx].addr)];
    while (*pp != P2P_GUARD_NONE && *pp != idx) pp = &g->e[*pp].next;
    if (*pp == idx) *pp = g->e[idx].next;
}

static p2p_guard_entry *find(p2p_guard *g, const p2p_addr *a)
{
    for (uint16_t i = g->bucket[bucket_of(g, a)]; i != P2P_GUARD_NONE; i = g->e[i].next)
        if (p2p_addr_equal(&g->e[i].addr, a)) return &g->e[i];
    return NULL;
}

/* The entry of a, made when missing. NULL when the table is full of pinned entries. */
static p2p_guard_entry *get(p2p_host *h, const p2p_addr *in)
{
    /* The ledger is per remote endpoint: which of our sockets it is on does not matter, nor
     * which of our interfaces a link-local address is reached through (its zone): a host on a
     * link we reach by two interfaces is one victim, with one probe allowance. */
    p2p_addr norm = *in;
    norm.sock = 0;
    norm.zone = 0;
    const p2p_addr *a = &norm;
    p2p_guard *g = &h->guard;
    uint64_t now = h->now;
    p2p_guard_entry *e = find(g, a);
    if (e) {
        if (e->expire <= now && !pinned(e, now)) { /* stale: begins again */
            uint16_t next = e->next;
            memset(e, 0, sizeof *e);
            e->addr = *a;
            e->next = next;
            e->used = 1;
            e->expire = now + P2P_GUARD_TTL_US;
        }
        return e;
    }
    uint16_t idx = g->free_head;
    if (idx != P2P_GUARD_NONE) {
        g->free_head = g->e[idx].next;
    } else {
        for (int k = 0; k < P2P_GUARD_EVICT_SCAN; k++) {
            uint16_t i = g->hand;
            g->hand = (uint16_t)((g->hand + 1) % P2P_GUARD_ENTRIES);
            if (!pinned(&g->e[i], now)) {
                idx = i;
                break;
            }
        }
        if (idx == P2P_GUARD_NONE) return NULL;
        unlink_entry(g, idx);
    }
    e = &g->e[idx];
    memset(e, 0, sizeof *e);
    e->addr = *a;
    e->used = 1;
    e->expire = now + P2P_GUARD_TTL_US;
    size_t b = bucket_of(g, a);
    e->next = g->bucket[b];
    g->bucket[b] = idx;
    return e;
}

static void touch(p2p_guard_entry *e, uint64_t now)
{
    if (e->expire < now + P2P_GUARD_TTL_US) e->expire = now + P2P_GUARD_TTL_US;
}

void p2p_guard_credit(p2p_host *h, const p2p_addr *a, size_t len)
{
    if (a->family == P2P_AF_STREAM) return; /* a stream is proven: nothing to count */
    p2p_guard_entry *e = get(h, a);
    if (!e) return;
    e->recv += len;
    touch(e, h->now);
}

int p2p_guard_proven(p2p_host *h, const p2p_addr *a)
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (!p || !p2p_addr_equal(&p->addr, a)) continue;
        /* FIN_SENT: an authenticated RESP came from there; WAIT_ADMIT: an authenticated FIN;
         * established: the handshake, or a PATH_RESPONSE since the last move. */
        if (p->state == P2P_S_FIN_SENT || p->state == P2P_S_WAIT_ADMIT) return 1;
        if ((p->state == P2P_S_CONNECTED || p->state == P2P_S_CLOSING) && p->path_ok) return 1;
    }
    return 0;
}

/* Counts the addresses that session src supplied and that are being probed without having
 * answered: a source may keep only P2P_GUARD_SOURCE_ADDRS of them busy at once. */
static int source_full(const p2p_guard *g, p2p_peer_handle src, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < P2P_GUARD_ENTRIES; i++) {
        const p2p_guard_entry *e = &g->e[i];
        if (e->used && e->src == src && !e->recv && e->probes &&
            e->last_probe + P2P_GUARD_ACTIVE_US > now && ++n >= P2P_GUARD_SOURCE_ADDRS)
            return 1;
    }
    return 0;
}

/* Takes one probe from e's allowance. */
static int take_probe(p2p_host *h, p2p_guard_entry *e, p2p_peer_handle src)
{
    uint64_t now = h->now;
    if (!e->probes || e->probe_start + P2P_GUARD_WINDOW_US <= now) {
        e->probe_start = now;
        e->probes = 0;
        e->tickets = 0; /* a ticket lives only as long as the probe it paid for */
    }
    if (e->probes >= P2P_GUARD_PROBES) return 0;
    int active = e->src == src && e->probes && e->last_probe + P2P_GUARD_ACTIVE_US > now;
    if (src && !e->recv && !active && source_full(&h->guard, src, now)) return 0;
    e->probes++;
    e->src = src;
    e->last_probe = now;
    if (e->expire < e->probe_start + P2P_GUARD_WINDOW_US)
        e->expire = e->probe_start + P2P_GUARD_WINDOW_US;
    return 1;
}

static int cached_proven(p2p_host *h, p2p_guard_entry *e, const p2p_addr *a)
{
    if (e && e->proven_until > h->now) return 1;
    if (!p2p_guard_proven(h, a)) return 0;
    if (e) e->proven_until = h->now + P2P_GUARD_PROVEN_CACHE_US;
    return 1;
}

int p2p_guard_probe(p2p_host *h, const p2p_addr *a, p2p_peer_handle src)
{
    if (!p2p_may_send_learned(h, a)) {
        h->stats.dropped_amplification++;
        return 0;
    }
    p2p_guard_entry *e = get(h, a);
    if (e && cached_proven(h, e, a)) return 1; /* the send finds it proven too */
    if (!e || e->tickets >= P2P_GUARD_PROBES || !take_probe(h, e, src)) {
        h->stats.dropped_amplification++;
        return 0;
    }
    e->tickets++;
    return 1;
}

/* An INIT of an attempt whose candidate a came from the application (connect(address), or
 * the introducer of connect(id, {via})) rather than from the network. */
static int app_given(const p2p_peer *p, const p2p_addr *a)
{
    if (p->introducer) return 0; /* a member record's or an introducer's */
    if (p->auto_dial && !p->app_dialled) return 0;
    return p->ncand && p2p_addr_equal(&p->cand[0], a);
}

static int same_ip(const p2p_addr *a, const p2p_addr *b);

/* issue 12: a birthday round's packets (section 8.6): while a spray runs, DATA packets to its
 * one target IP, any port, up to P2P_SPRAY_PROBES in all; after an opener batch began, DATA
 * packets to its one address, up to 2 per socket. Everything else goes by the rules below. */
static int birthday_allows(p2p_host *h, const p2p_addr *a, const uint8_t *buf, size_t len)
{
    p2p_spray_ledger *l = &h->spray;
    if (len < 1 || buf[0] != P2P_PKT_DATA) return 0;
    if (l->running && l->spray_left && h->now < l->spray_until && same_ip(a, &l->target) &&
        a->port >= 1024) {
        l->spray_left--;
        h->stats.punch_probes++;
        return 1;
    }
    if (l->opener_left && h->now < l->opener_until && same_ip(a, &l->opener_to) &&
        a->port == l->opener_to.port) {
        l->opener_left--;
        return 1;
    }
    return 0;
}

int p2p_guard_send(p2p_host *h, const p2p_addr *a, const uint8_t *buf, size_t len, int kind)
{
    if (kind == P2P_GUARD_PROVEN) return 1;
    /* issue 12: a stream's TCP handshake proved the return route */
    if (a->family == P2P_AF_STREAM) return 1;
    if (birthday_allows(h, a, buf, len)) return 1;
    p2p_peer_handle probe_src = 0;
    int probe = 0;
    if (len == P2P_INIT_LEN && buf[0] == P2P_PKT_INIT) {
        const p2p_peer *p = p2p_lookup_index(h, p2p_get_u32(buf + 4));
        if (p && p->initiator && app_given(p, a)) return 1;
        probe = 1;
        probe_src = p ? p->introducer : 0;
    }
    p2p_guard_entry *e = get(h, a);
    if (cached_proven(h, e, a)) return 1;
    if (!e) {
        h->stats.dropped_amplification++;
        return 0;
    }
    touch(e, h->now);
    if (e->sent + len <= P2P_AMPLIFICATION * e->recv) {
        e->sent += len;
        return 1;
    }
    if (e->tickets && e->probe_start + P2P_GUARD_WINDOW_US > h->now) {
        e->tickets--;
        return 1;
    }
    if (probe && p2p_may_send_learned(h, a) && take_probe(h, e, probe_src)) return 1;
    h->stats.dropped_amplification++;
    return 0;
}

static int once(const p2p_host *h, uint64_t *slot)
{
    if (*slot == h->stats.packets_received) return 0;
    *slot = h->stats.packets_received;
    return 1;
}

int p2p_guard_answer_once(p2p_host *h)
{
    return once(h, &h->guard.answered_pkt);
}

int p2p_guard_relay_once(p2p_host *h)
{
    return once(h, &h->guard.relayed_pkt);
}

/* ---- issue 12: hard-NAT punching budgets (docs/PROTOCOL.md section 8.6) ---- */

/* Counts the times in v (n slots) within the window before now; returns the index of the
 * oldest slot (to reuse) in *slot. */
static size_t in_window(const uint64_t *v, size_t n, uint64_t now, size_t *slot)
{
    size_t k = 0;
    *slot = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] && v[i] + P2P_SPRAY_WINDOW_US > now) k++;
        if (v[i] < v[*slot]) *slot = i;
    }
    return k;
}

static int same_ip(const p2p_addr *a, const p2p_addr *b)
{
    if (a->family != b->family) return 0;
    return memcmp(a->ip, b->ip, a->family == P2P_AF_INET4 ? 4 : 16) == 0;
}

int p2p_guard_spray_begin(p2p_host *h, const p2p_addr *ip, uint64_t now)
{
    p2p_spray_ledger *l = &h->spray;
    if (l->running) return -1;
    if (ip->family != P2P_AF_INET4 && ip->family != P2P_AF_INET6) return -1;
    size_t slot;
    if (in_window(l->sprays, P2P_SPRAYS_PER_WINDOW, now, &slot) >= P2P_SPRAYS_PER_WINDOW) return -1;
    size_t free_at = P2P_SPRAY_TARGETS;
    for (size_t i = 0; i < P2P_SPRAY_TARGETS; i++) {
        int live = l->at[i] && l->at[i] + P2P_SPRAY_IP_US > now;
        if (live && same_ip(&l->ip[i], ip)) return -1; /* this IP had its spray */
        if (!live && free_at == P2P_SPRAY_TARGETS) free_at = i;
    }
    if (free_at == P2P_SPRAY_TARGETS) return -1; /* only expired entries are evicted */
    l->ip[free_at] = *ip;
    l->ip[free_at].port = 0;
    l->ip[free_at].sock = 0;
    l->at[free_at] = now ? now : 1;
    l->sprays[slot] = now ? now : 1;
    l->running = 1;
    l->target = l->ip[free_at];
    l->spray_left = P2P_SPRAY_PROBES;
    l->spray_until = now + P2P_SPRAY_MAX_US;
    h->stats.punch_rounds++;
    return 0;
}

void p2p_guard_spray_end(p2p_host *h)
{
    h->spray.running = 0;
    h->spray.spray_left = 0;
}

int p2p_guard_opener_begin(p2p_host *h, const p2p_addr *to, uint16_t n, uint64_t now)
{
    p2p_spray_ledger *l = &h->spray;
    if (!n || n > P2P_OPENER_SOCKETS) return -1;
    if (to->port < 1024 || p2p_addr_scope(to) == P2P_SCOPE_INVALID) return -1;
    size_t slot;
    if (in_window(l->batches, P2P_OPENER_BATCHES_PER_WINDOW, now, &slot) >=
        P2P_OPENER_BATCHES_PER_WINDOW)
        return -1;
    l->batches[slot] = now ? now : 1;
    l->opener_to = *to;
    l->opener_to.sock = 0;
    l->opener_left = (uint16_t)(2 * n);
    l->opener_until = now + P2P_OPENER_MAX_US;
    return 0;
}
