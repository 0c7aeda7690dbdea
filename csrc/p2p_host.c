/*
 * p2p_host.c - the host: peer slots and handles, the event and transmit queues, the demux of
 * incoming datagrams, timers, and the public API of p2pnet.h that is not per-session.
 */
#include "p2p_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---------------------------------------------------------------------- */

void p2p_config_init(p2p_config *cfg) { memset(cfg, 0, sizeof *cfg); }

static int copy_list(uint8_t (**dst)[32], const uint8_t (*src)[32], size_t n)
{
    *dst = NULL;
    if (!n) return 0;
    if (!src) return P2P_ERR_INVALID;
    *dst = malloc(n * 32);
    if (!*dst) return P2P_ERR_NOMEM;
    memcpy(*dst, src, n * 32);
    return 0;
}

int p2p_host_id_listed(const uint8_t (*list)[32], size_t n, const uint8_t id[32])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(list[i], id, 32) == 0) return 1;
    return 0;
}

int p2p_host_new(p2p_host **out, const p2p_config *cfg, uint64_t now)
{
    *out = NULL;
    if (!cfg || !cfg->identity) return P2P_ERR_INVALID;
    if (cfg->max_message > (1u << 30)) return P2P_ERR_INVALID;
    if (p2p_init()) return P2P_ERR_CRYPTO;
    p2p_host *h = calloc(1, sizeof *h);
    if (!h) return P2P_ERR_NOMEM;
    h->ident = *cfg->identity;
    h->timeout = cfg->timeout_us ? cfg->timeout_us : P2P_DEFAULT_TIMEOUT_US;
    h->max_peers = cfg->max_peers ? cfg->max_peers : 1024;
    h->max_message = cfg->max_message ? cfg->max_message : P2P_DEFAULT_MAX_MESSAGE;
    h->send_queue_limit = cfg->send_queue_limit ? cfg->send_queue_limit : P2P_DEFAULT_SEND_QUEUE;
    h->request_hook = cfg->request_hook;
    h->peer_mem = cfg->peer_memory ? cfg->peer_memory : P2P_DEFAULT_PEER_MEMORY;
    h->mem_limit = cfg->memory ? cfg->memory : P2P_DEFAULT_MEMORY;
    h->now = now;
    if (h->max_peers > 60000) { free(h); return P2P_ERR_INVALID; }
    int hrc = p2p_hs_init(h, cfg);    /* psk (network key stretched), mac1 and cookie keys */
    if (hrc) { p2p_wipe(h, sizeof *h); free(h); return hrc; }
    p2p_rng_init(&h->rng, cfg->seed);
    p2p_rng_bytes(&h->rng, &h->instance, sizeof h->instance);
    int rc = copy_list(&h->allow, cfg->allow, cfg->allow_count);
    if (!rc) rc = copy_list(&h->deny, cfg->deny, cfg->deny_count);
    h->allow_count = cfg->allow_count;
    h->deny_count = cfg->deny_count;
    if (!rc) rc = p2p_mesh_init(h, cfg, now);
    if (!rc) rc = p2p_nat_init(h, cfg);
    if (!rc) rc = p2p_guard_init(h);
    h->nslots = (size_t)h->max_peers + h->max_half_open + 16;
    h->slots = calloc(h->nslots, sizeof *h->slots);
    h->gens = calloc(h->nslots, sizeof *h->gens);
    if (rc || !h->slots || !h->gens) {
        p2p_host_free(h);
        return rc ? rc : P2P_ERR_NOMEM;
    }
    *out = h;
    return 0;
}

void p2p_host_free(p2p_host *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->nslots && h->slots; i++)
        if (h->slots[i]) p2p_host_peer_free(h, h->slots[i]);
    while (h->evq_len) {
        free(h->evq[h->evq_head].owned);
        h->evq_head = (h->evq_head + 1) % h->evq_cap;
        h->evq_len--;
    }
    free(h->evq);
    free(h->ev_owned);
    for (p2p_txq_item *t = h->txq_head, *n; t; t = n) { n = t->next; free(t); }
    p2p_mesh_free(h);
    p2p_nat_free(h);
    p2p_guard_free(h);
    free(h->slots);
    free(h->gens);
    free(h->allow);
    free(h->deny);
    p2p_identity_wipe(&h->ident);
    p2p_wipe(h->psk, sizeof h->psk);
    p2p_wipe(h->mac_key, sizeof h->mac_key);
    p2p_wipe(h->cookie_key, sizeof h->cookie_key);
    p2p_wipe(h->cookie_secret, sizeof h->cookie_secret);
    p2p_wipe(h->replay_key, sizeof h->replay_key);
    p2p_wipe(&h->rng, sizeof h->rng);
    free(h);
}

const uint8_t *p2p_host_id(const p2p_host *h) { return h->ident.ed_pk; }

/* ---- peers ------------------------------------------------------------------------------ */

p2p_peer *p2p_host_peer_new(p2p_host *h, int initiator, const p2p_addr *addr)
{
    /* The lowest free slot keeps live peers below slot_hwm, so scans stay short. */
    size_t slot;
    for (slot = 0; slot < h->nslots && h->slots[slot]; slot++) {}
    if (slot == h->nslots) return NULL;
    p2p_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (++h->gens[slot] == 0) h->gens[slot] = 1;
    p->host = h;
    p->handle = ((uint32_t)h->gens[slot] << 16) | (uint32_t)slot;
    /* The index carries the slot in its low 16 bits for O(1) lookup and 16 random bits so a
     * stale or guessed index rarely names a live session. */
    p->local_index = (p2p_rng_u32(&h->rng) & 0xffff0000u) | (uint32_t)slot;
    p->initiator = initiator;
    p->addr = *addr;
    p->next_send_at = 0;
    p2p_rangeset_init(&p->s_acked);
    p2p_rangeset_init(&p->s_lost);
    p2p_rangeset_init(&p->awaiting);
    p2p_rangeset_init(&p->owed);
    p2p_acker_init(&p->acker);
    h->slots[slot] = p;
    if (slot + 1 > h->slot_hwm) h->slot_hwm = slot + 1;
    return p;
}

void p2p_host_peer_free(p2p_host *h, p2p_peer *p)
{
    size_t slot = p->handle & 0xffff;
    if (p->mem_evict) h->mem_evicting = 0;      /* it went before its timer came */
    if (p->in_ready) {
        p2p_peer **pp = &h->ready_head;
        p2p_peer *prev = NULL;
        while (*pp && *pp != p) { prev = *pp; pp = &(*pp)->ready_next; }
        if (*pp) {
            *pp = p->ready_next;
            if (h->ready_tail == p) h->ready_tail = prev;
        }
    }
    if (p->state == P2P_S_HALF_OPEN || p->state == P2P_S_WAIT_ADMIT) h->n_half_open--;
    if (p->state == P2P_S_CONNECTED) h->n_connected--;
    p2p_nat_on_end(h, p);
    p2p_hs_free(p);
    p2p_peer_release(p);
    /* Whatever the session did not give back is released with it. */
    h->mem = h->mem > p->mem ? h->mem - p->mem : 0;
    h->slots[slot] = NULL;
    while (h->slot_hwm && !h->slots[h->slot_hwm - 1]) h->slot_hwm--;
    p2p_wipe(p, sizeof *p);
    free(p);
}

/* The node's budget is spent: the connected session that holds the most of it, when that is
 * more than an eighth of the budget and more than the one asking holds, is marked to be ended
 * at its next timer (not here: callers may hold it). Otherwise a few peers that each keep
 * their own budget filled (a record never finished, pieces never joined) would leave nothing
 * for anyone else, and a new peer could not even join. */
static void mem_evict_largest(p2p_host *h, const p2p_peer *asking)
{
    if (h->mem_evicting) return;
    p2p_peer *fat = NULL;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (q && q != asking && q->state == P2P_S_CONNECTED && (!fat || q->mem > fat->mem)) fat = q;
    }
    if (!fat || fat->mem <= h->mem_limit / 8 || (asking && fat->mem <= asking->mem)) return;
    fat->mem_evict = 1;
    fat->dl_valid = 0;
    h->mem_evicting = 1;
}

int p2p_mem_take(p2p_host *h, p2p_peer *p, size_t n)
{
    if (p && p->mem + n > h->peer_mem) {
        h->stats.dropped_budget++;
        return P2P_ERR_LIMIT;
    }
    if (h->mem + n > h->mem_limit) {
        h->stats.dropped_budget++;
        mem_evict_largest(h, p);
        return P2P_ERR_LIMIT;
    }
    h->mem += n;
    if (p) p->mem += n;
    if (h->mem > h->stats.memory_peak) h->stats.memory_peak = h->mem;
    return 0;
}

uint64_t p2p_mem_room(const p2p_host *h, const p2p_peer *p)
{
    uint64_t node = h->mem_limit > h->mem ? h->mem_limit - h->mem : 0;
    if (!p) return node;
    uint64_t mine = h->peer_mem > p->mem ? h->peer_mem - p->mem : 0;
    return mine < node ? mine : node;
}

void p2p_mem_give(p2p_host *h, p2p_peer *p, size_t n)
{
    if (p) p->mem = p->mem > n ? p->mem - n : 0;
    h->mem = h->mem > n ? h->mem - n : 0;
}

int p2p_host_may_send_learned(const p2p_host *h, const p2p_addr *a)
{
    int scope = p2p_addr_scope(a);
    if (scope == P2P_SCOPE_INVALID) return 0;
    if (scope == P2P_SCOPE_PUBLIC) return 1;
    for (size_t i = 0; i < h->mesh.naddr; i++)
        if (p2p_addr_scope(&h->mesh.addrs[i]) == scope) return 1;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        const p2p_peer *p = h->slots[i];
        if (p && p->state == P2P_S_CONNECTED && p->addr.family != P2P_AF_RELAY &&
            p2p_addr_scope(&p->addr) == scope)
            return 1;
    }
    return 0;
}

p2p_peer *p2p_host_peer_get(const p2p_host *h, p2p_peer_handle handle)
{
    size_t slot = handle & 0xffff;
    if (!handle || slot >= h->nslots) return NULL;
    p2p_peer *p = h->slots[slot];
    if (!p || p->handle != handle) return NULL;
    p->dl_valid = 0;     /* the caller may change it */
    return p;
}

p2p_peer *p2p_host_by_index(const p2p_host *h, uint32_t local_index)
{
    size_t slot = local_index & 0xffff;
    if (slot >= h->nslots) return NULL;
    p2p_peer *p = h->slots[slot];
    if (!p || p->local_index != local_index) return NULL;
    p->dl_valid = 0;
    return p;
}

void p2p_host_ready(p2p_host *h, p2p_peer *p)
{
    p->dl_valid = 0;
    if (p->in_ready) return;
    p->in_ready = 1;
    p->ready_next = NULL;
    if (h->ready_tail) h->ready_tail->ready_next = p; else h->ready_head = p;
    h->ready_tail = p;
}

/* ---- events ----------------------------------------------------------------------------- */

/* The event queue is charged to the node's memory budget (its ring and every event's data);
 * an event that would pass the budget is dropped and counted in stats.dropped_budget. A
 * driver that drains the queue after every input never comes near it: the queue then holds
 * what one input produced (docs/PROTOCOL.md section 4.1). */
int p2p_host_event_owned(p2p_host *h, const p2p_event *ev, uint8_t *data, size_t len)
{
    if (h->evq_len == h->evq_cap) {
        size_t cap = h->evq_cap ? h->evq_cap * 2 : 32;
        if (p2p_mem_take(h, NULL, (cap - h->evq_cap) * sizeof(p2p_evq_item))) {
            free(data);
            return P2P_ERR_LIMIT;
        }
        p2p_evq_item *q = malloc(cap * sizeof *q);
        if (!q) {
            p2p_mem_give(h, NULL, (cap - h->evq_cap) * sizeof(p2p_evq_item));
            free(data);
            return P2P_ERR_NOMEM;
        }
        for (size_t i = 0; i < h->evq_len; i++) q[i] = h->evq[(h->evq_head + i) % h->evq_cap];
        free(h->evq);
        h->evq = q;
        h->evq_cap = cap;
        h->evq_head = 0;
    }
    if (len && p2p_mem_take(h, NULL, len)) {
        free(data);
        return P2P_ERR_LIMIT;
    }
    p2p_evq_item *it = &h->evq[(h->evq_head + h->evq_len) % h->evq_cap];
    it->ev = *ev;
    it->ev.data = data;
    it->ev.len = len;
    it->owned = data;
    h->evq_len++;
    return 0;
}

int p2p_host_event_room(p2p_host *h, p2p_peer *p, size_t len, size_t freed)
{
    size_t grow = h->evq_len < h->evq_cap ? 0 : (h->evq_cap ? h->evq_cap : 32) * sizeof(p2p_evq_item);
    if (len + grow <= p2p_mem_room(h, NULL) + freed) return 1;
    h->stats.dropped_budget++;
    mem_evict_largest(h, p);
    return 0;
}

int p2p_host_event(p2p_host *h, const p2p_event *ev, const uint8_t *data, size_t len)
{
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) return P2P_ERR_NOMEM;
        memcpy(copy, data, len);
    }
    return p2p_host_event_owned(h, ev, copy, len);
}

void p2p_host_error(p2p_host *h, p2p_peer *p, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_ERROR;
    if (p) p2p_peer_fill_event(p, &ev);
    p2p_host_event(h, &ev, (const uint8_t *)msg, (size_t)n);
}

int p2p_host_next_event(p2p_host *h, p2p_event *ev)
{
    free(h->ev_owned);
    h->ev_owned = NULL;
    if (!h->evq_len) return 0;
    p2p_evq_item *it = &h->evq[h->evq_head];
    *ev = it->ev;
    h->ev_owned = it->owned;
    h->evq_head = (h->evq_head + 1) % h->evq_cap;
    h->evq_len--;
    /* The data is the application's until the next call; the budget has it back now. */
    p2p_mem_give(h, NULL, ev->len);
    if (!h->evq_len && h->evq_cap > 32) {     /* a drained burst gives its ring back */
        p2p_mem_give(h, NULL, h->evq_cap * sizeof(p2p_evq_item));
        free(h->evq);
        h->evq = NULL;
        h->evq_cap = 0;
        h->evq_head = 0;
    }
    return 1;
}

/* ---- datagrams -------------------------------------------------------------------------- */

/* Like the event queue, the transmit queue is charged to the node's budget: a datagram that
 * would pass it is dropped (counted in stats.dropped_budget), as the network may drop it. */
int p2p_host_txq_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len)
{
    if (p2p_mem_take(h, NULL, sizeof(p2p_txq_item) + len)) return P2P_ERR_LIMIT;
    p2p_txq_item *t = malloc(sizeof *t + len);
    if (!t) {
        p2p_mem_give(h, NULL, sizeof(p2p_txq_item) + len);
        return P2P_ERR_NOMEM;
    }
    t->next = NULL;
    t->to = *to;
    t->len = len;
    memcpy(t->data, data, len);
    if (h->txq_tail) h->txq_tail->next = t; else h->txq_head = t;
    h->txq_tail = t;
    return 0;
}

/* Builds the next packet of a session: through the relay when its path is relayed, and
 * never more than the anti-amplification limit allows towards an unproven address. */
static size_t build_for(p2p_host *h, p2p_peer *p, p2p_addr *to, uint8_t *buf, size_t cap)
{
    size_t room = p2p_path_room(h, p, cap);
    if (!room) return 0;
    if (p->addr.family != P2P_AF_RELAY) {
        size_t n = p2p_peer_build(h, p, buf, room, h->now);
        if (n) {
            *to = p->addr;
            p2p_path_sent(p, n);
        }
        return n;
    }
    uint8_t inner[P2P_MAX_PACKET_PROBED];
    size_t n = p2p_peer_build(h, p, inner, room, h->now);
    if (!n) return 0;
    /* A packet the relay cannot take now is lost like any other; recovery resends. */
    size_t m = p2p_nat_wrap(h, &p->addr, inner, n, buf, cap, to);
    return m ? m : (size_t)-1;
}

size_t p2p_host_next_datagram(p2p_host *h, p2p_addr *to, uint8_t *buf, size_t cap)
{
    if (cap < P2P_MAX_PACKET) return 0;
    if (cap > P2P_MAX_PACKET_PROBED) cap = P2P_MAX_PACKET_PROBED;
    size_t n = 0;
    while (!n && h->txq_head) {
        p2p_txq_item *t = h->txq_head;
        h->txq_head = t->next;
        if (!h->txq_head) h->txq_tail = NULL;
        if (t->to.family == P2P_AF_RELAY) {
            n = p2p_nat_wrap(h, &t->to, t->data, t->len, buf, cap, to);
        } else {
            *to = t->to;
            memcpy(buf, t->data, t->len);
            n = t->len;
        }
        p2p_mem_give(h, NULL, sizeof *t + t->len);
        free(t);
        /* Every datagram leaves through the guard (docs/PROTOCOL.md section 8.6). */
        if (n && !p2p_guard_send(h, to, buf, n, P2P_GUARD_RESPONSE)) n = 0;
    }
    while (!n && h->ready_head) {
        p2p_peer *p = h->ready_head;
        n = build_for(h, p, to, buf, cap);
        p->dl_valid = 0;    /* sending arms the probe timer and the pacer */
        int dropped = 0;
        if (n && n != (size_t)-1) {
            int kind = p->addr.family != P2P_AF_RELAY && p->path_ok ? P2P_GUARD_PROVEN
                                                                    : P2P_GUARD_RESPONSE;
            dropped = !p2p_guard_send(h, to, buf, n, kind);
        }
        if (n) {
            /* Round robin: a peer that sent goes to the back of the line. */
            if (p->ready_next) {
                h->ready_head = p->ready_next;
                p->ready_next = NULL;
                h->ready_tail->ready_next = p;
                h->ready_tail = p;
            }
        } else {
            h->ready_head = p->ready_next;
            if (!h->ready_head) h->ready_tail = NULL;
            p->in_ready = 0;
            p->ready_next = NULL;
        }
        if (p->state == P2P_S_CLOSING && p->close_copies == 0) p2p_host_peer_free(h, p);
        /* A packet the guard stopped is lost like any other: recovery resends it. */
        if (n == (size_t)-1 || dropped) n = 0;
    }
    if (n) {
        h->stats.packets_sent++;
        h->stats.bytes_sent += n;
    }
    return n;
}

/* ---- input ------------------------------------------------------------------------------ */

/* Hands one datagram to the layer its type names. */
static void dispatch(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len)
{
    if (len < 1 || len > P2P_MAX_PACKET_PROBED) { h->stats.dropped++; return; }
    switch (buf[0]) {
    case P2P_PKT_INIT: p2p_hs_on_init(h, from, buf, len, h->now); break;
    case P2P_PKT_RESP: p2p_hs_on_resp(h, from, buf, len, h->now); break;
    case P2P_PKT_FIN: p2p_hs_on_fin(h, from, buf, len, h->now); break;
    case P2P_PKT_COOKIE: p2p_hs_on_cookie(h, from, buf, len, h->now); break;
    case P2P_PKT_DATA: {
        if (len < P2P_DATA_HEADER + P2P_TAG_LEN) { h->stats.dropped++; break; }
        p2p_peer *p = p2p_host_by_index(h, p2p_get_u32(buf + 4));
        if (!p || (p->state != P2P_S_CONNECTED && p->state != P2P_S_FIN_SENT)) {
            h->stats.dropped++;
            break;
        }
        p2p_peer_on_data(h, p, from, buf, len, h->now);
        break;
    }
    default:
        h->stats.dropped++;
    }
}

int p2p_host_recv(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                  uint64_t now)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    h->stats.packets_received++;
    h->stats.bytes_received += len;
    /* Relayed paths exist only inside the core: a driver cannot claim one. */
    if (from->family != P2P_AF_INET4 && from->family != P2P_AF_INET6) {
        h->stats.dropped++;
        return 0;
    }
    p2p_guard_credit(h, from, len);     /* what may be sent back (section 8.6) */
    dispatch(h, from, buf, len);
    return 0;
}

void p2p_host_recv_relayed(p2p_host *h, const p2p_addr *path, const uint8_t *buf, size_t len)
{
    dispatch(h, path, buf, len);
}

/* Deadlines are cached (see dl_valid): this is logically const, physically a cache fill. */
uint64_t p2p_host_next_timeout(const p2p_host *ch)
{
    p2p_host *h = (p2p_host *)ch;
    if (h->closed) {
        h->mesh_dl = P2P_TIME_NEVER;
    } else if (!h->mesh_dl_valid) {
        h->mesh_dl = p2p_mesh_deadline(h);
        h->mesh_dl_valid = 1;
    }
    uint64_t t = h->mesh_dl;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *p = h->slots[i];
        if (!p) continue;
        if (!p->dl_valid) {
            p->dl = p2p_peer_deadline(h, p);
            p->dl_valid = 1;
        }
        if (p->dl < t) t = p->dl;
    }
    return t;
}

int p2p_host_on_timeout(p2p_host *h, uint64_t now)
{
    if (now > h->now) h->now = now;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *p = h->slots[i];
        if (!p) continue;
        if (!p->dl_valid) {
            p->dl = p2p_peer_deadline(h, p);
            p->dl_valid = 1;
        }
        if (p->dl > h->now) continue;
        p->dl_valid = 0;
        if (p->hs) p2p_hs_on_timeout(h, p, h->now);
        else p2p_peer_on_timeout(h, p, h->now);
    }
    if (!h->closed && !h->mesh_dl_valid) {
        h->mesh_dl = p2p_mesh_deadline(h);
        h->mesh_dl_valid = 1;
    }
    if (!h->closed && h->mesh_dl <= h->now) p2p_mesh_on_timeout(h, h->now);
    return h->closed ? P2P_ERR_CLOSED : 0;
}

/* ---- API -------------------------------------------------------------------------------- */

p2p_peer *p2p_host_dial(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                        uint64_t now, int *rc)
{
    static const p2p_addr none;
    *rc = P2P_ERR_LIMIT;
    if (h->n_connected >= h->max_peers) return NULL;
    p2p_peer *p = p2p_host_peer_new(h, 1, n ? &cands[0] : &none);
    if (!p) return NULL;
    if (expected_id) {
        p->has_expected = 1;
        memcpy(p->expected, expected_id, 32);
    }
    for (size_t i = 0; i < n && p->ncand < P2P_CANDIDATES - 1; i++) p->cand[p->ncand++] = cands[i];
    *rc = p2p_hs_start(h, p, now);
    if (*rc) {
        p2p_host_peer_free(h, p);
        return NULL;
    }
    return p;
}

int p2p_host_connect(p2p_host *h, const p2p_addr *addr, const uint8_t *expected_id,
                     uint64_t now, p2p_peer_handle *out)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (!addr || (addr->family != P2P_AF_INET4 && addr->family != P2P_AF_INET6) || !addr->port)
        return P2P_ERR_ADDRESS;
    if (now > h->now) h->now = now;
    int rc;
    p2p_peer *p = p2p_host_dial(h, addr, 1, expected_id, h->now, &rc);
    if (!p) return rc;
    if (out) *out = p->handle;
    return 0;
}

const char *p2p_peer_state_name(p2p_peer_state s)
{
    switch (s) {
    case P2P_PEER_CONNECTING: return "connecting";
    case P2P_PEER_CONNECTED: return "connected";
    case P2P_PEER_DISCONNECTED: return "disconnected";
    default: return "none";
    }
}

int p2p_host_peer_info(const p2p_host *h, p2p_peer_handle handle, p2p_peer_info *info)
{
    memset(info, 0, sizeof *info);
    const p2p_peer *p = p2p_host_peer_get(h, handle);
    if (!p) return P2P_ERR_PEER;
    switch (p->state) {
    case P2P_S_CONNECTED: info->state = P2P_PEER_CONNECTED; break;
    case P2P_S_CLOSING: info->state = P2P_PEER_DISCONNECTED; break;
    default: info->state = P2P_PEER_CONNECTING;
    }
    if (p->has_id) { info->has_id = 1; memcpy(info->id, p->id, 32); }
    else if (p->has_expected) { info->has_id = 1; memcpy(info->id, p->expected, 32); }
    info->address = p->addr;
    info->direct = p->addr.family != P2P_AF_RELAY;
    if (!info->direct) {
        const p2p_peer *r = p2p_host_by_index(h, p2p_get_u32(p->addr.ip));
        if (r) info->address = r->addr;
    }
    info->srtt_us = p->rec.has_rtt ? p->rec.srtt : 0;
    info->bytes_queued = p->send_end - p->sbase;
    return 0;
}

p2p_peer_handle p2p_host_find(const p2p_host *h, const uint8_t id[32])
{
    for (size_t i = 0; i < h->slot_hwm; i++) {
        const p2p_peer *p = h->slots[i];
        if (p && p->has_id && p->state == P2P_S_CONNECTED && memcmp(p->id, id, 32) == 0)
            return p->handle;
    }
    return 0;
}

size_t p2p_host_peers(const p2p_host *h, p2p_peer_handle *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        const p2p_peer *p = h->slots[i];
        /* Responder half-open entries are not peers yet: nobody asked for them. */
        if (!p || p->state == P2P_S_HALF_OPEN || p->state == P2P_S_WAIT_ADMIT ||
            p->state == P2P_S_CLOSING)
            continue;
        if (n < cap) out[n] = p->handle;
        n++;
    }
    return n;
}

int p2p_host_close(p2p_host *h, uint64_t now)
{
    if (h->closed) return 0;
    if (now > h->now) h->now = now;
    for (size_t i = 0; i < h->nslots; i++) {
        p2p_peer *p = h->slots[i];
        if (!p) continue;
        if (p->state == P2P_S_CONNECTED) p2p_peer_end(h, p, P2P_LEAVE_CLOSED, 1, P2P_CLOSE_CLOSED);
        else if (p->state != P2P_S_CLOSING) p2p_host_peer_free(h, p);
    }
    h->closed = 1;
    return 0;
}

void p2p_host_stats(const p2p_host *h, p2p_stats *out)
{
    *out = h->stats;
    out->peers = h->n_connected;
    out->members = h->mesh.n;
    out->memory = h->mem;
    /* Half-open entries also end outside the handshake code (timeouts, close): read the
     * load now rather than when it last changed there. */
    out->under_load = h->n_half_open >= h->cookie_threshold;
}
