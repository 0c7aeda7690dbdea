/*
 * p2p_state.c - the node's shared state (p2p_state.h): the session table, the event and
 * transmit queues, the memory budget, the policy checks, and the notices to the host.
 */
#include "p2p_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sessions --------------------------------------------------------------------------- */

static int notes_grow(p2p_host *h, size_t cap);

p2p_peer *p2p_peer_new(p2p_host *h, int initiator, const p2p_addr *addr)
{
    /* Room for every notice the new session may queue, made now, when failing is still an
     * answer (no session), rather than in p2p_notify, where a notice would be lost. */
    if (!h->notes_len) h->notes_sessions = h->n_sessions; /* none queued: only the living */
    size_t need = (h->notes_sessions + 1) * P2P_NOTES_PER_SESSION + P2P_NOTES_SPARE;
    if (need > h->notes_cap && notes_grow(h, need)) return NULL;
    p2p_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (p2p_index_add(&h->peers, p, p2p_rng_u32(&h->rng), &p->handle, &p->local_index)) {
        free(p);
        return NULL;
    }
    h->n_sessions++;
    h->notes_sessions++;
    p->host = h;
    p->initiator = initiator;
    p->addr = *addr;
    p2p_rangeset_init(&p->l0.s_acked);
    p2p_rangeset_init(&p->l0.s_lost);
    p2p_rangeset_init(&p->l0.awaiting);
    p2p_rangeset_init(&p->l0.owed);
    p2p_acker_init(&p->acker);
    return p;
}

p2p_peer_handle p2p_find_connected(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (p && p->has_id && p->state == P2P_S_CONNECTED && memcmp(p->id, id, P2P_ID_LEN) == 0)
            return p->handle;
    }
    return 0;
}

void p2p_kill(p2p_host *h, p2p_peer *p)
{
    if (p->dead) return;
    p->dead = 1;
    if (p->mem_evict) h->mem_evicting = 0; /* it went before its timer came */
    if (p->in_ready) {
        p2p_peer **pp = &h->ready_head;
        p2p_peer *prev = NULL;
        while (*pp && *pp != p) {
            prev = *pp;
            pp = &(*pp)->ready_next;
        }
        if (*pp) {
            *pp = p->ready_next;
            if (h->ready_tail == p) h->ready_tail = prev;
        }
        p->in_ready = 0;
    }
    if (p->state == P2P_S_HALF_OPEN || p->state == P2P_S_WAIT_ADMIT) h->n_half_open--;
    if (p->state == P2P_S_CONNECTED) h->n_connected--;
    p2p_index_remove(&h->peers, p->handle);
    p->dead_next = h->dead_head;
    h->dead_head = p;
}

p2p_peer *p2p_attempt_new(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                          const p2p_attempt_opts *opt, int *rc)
{
    static const p2p_addr none;
    *rc = P2P_ERR_LIMIT;
    if (h->n_connected >= h->max_peers) return NULL;
    p2p_peer *p = p2p_peer_new(h, 1, n ? &cands[0] : &none);
    if (!p) return NULL;
    if (expected_id) {
        p->has_expected = 1;
        memcpy(p->expected, expected_id, P2P_ID_LEN);
    }
    for (size_t i = 0; i < n && p->ncand < P2P_CANDIDATES - 1; i++) p->cand[p->ncand++] = cands[i];
    if (opt) {
        p->introducer = opt->introducer;
        p->ask_at = opt->ask_at;
    }
    p->state = P2P_S_INIT_SENT;
    p->dial_due = 1;
    p2p_notify_peer(h, P2P_NOTE_DIAL, p);
    *rc = 0;
    return p;
}

void p2p_ready(p2p_host *h, p2p_peer *p)
{
    p->dl_valid = 0;
    if (p->in_ready || p->dead) return;
    p->in_ready = 1;
    p->ready_next = NULL;
    if (h->ready_tail)
        h->ready_tail->ready_next = p;
    else
        h->ready_head = p;
    h->ready_tail = p;
}

/* ---- notices ---------------------------------------------------------------------------- */

/* Internal bookkeeping, bounded by the sessions: grown, never shrunk. */
static int notes_grow(p2p_host *h, size_t cap)
{
    p2p_notice *v = realloc(h->notes, cap * sizeof *v);
    if (!v) return P2P_ERR_NOMEM;
    h->notes = v;
    h->notes_cap = cap;
    return 0;
}

void p2p_notify(p2p_host *h, const p2p_notice *n)
{
    /* The room was made with the sessions (p2p_peer_new): this grows only if that bound is
     * broken, and a notice that still finds no room is counted and reported. */
    if (h->notes_len == h->notes_cap && notes_grow(h, h->notes_cap * 2 + P2P_NOTES_SPARE)) {
        h->notes_lost++;
        p2p_error(h, NULL, "internal: a notice (kind %d) was lost: out of memory", n->kind);
        return;
    }
    h->notes[h->notes_len++] = *n;
}

void p2p_notify_peer(p2p_host *h, int kind, const p2p_peer *p)
{
    p2p_notice n;
    memset(&n, 0, sizeof n);
    n.kind = (uint8_t)kind;
    n.peer = p->handle;
    p2p_notify(h, &n);
}

void p2p_punch(p2p_host *h, p2p_peer *p)
{
    if (p->punch_due) return;
    p->punch_due = 1;
    p2p_notify_peer(h, P2P_NOTE_PUNCH, p);
}

/* ---- memory budgets --------------------------------------------------------------------- */

/* The node's budget is spent: the connected session that holds the most of it, when that is
 * more than an eighth of the budget and more than the one asking holds, is marked to be ended
 * at its next timer (not here: callers may hold it). Otherwise a few peers that each keep
 * their own budget filled (a record never finished, pieces never joined) would leave nothing
 * for anyone else, and a new peer could not even join. */
static void mem_evict_largest(p2p_host *h, const p2p_peer *asking)
{
    if (h->mem_evicting) return;
    p2p_peer *fat = NULL;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
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

void *p2p_mem_alloc(p2p_host *h, p2p_peer *p, size_t n, int *rc)
{
    if (p2p_mem_take(h, p, n)) {
        *rc = P2P_ERR_LIMIT;
        return NULL;
    }
    void *x = malloc(n);
    if (!x) {
        p2p_mem_give(h, p, n);
        *rc = P2P_ERR_NOMEM;
    }
    return x;
}

/* ---- spare record bodies ---------------------------------------------------------------- */

void p2p_spare_put(p2p_host *h, uint8_t *buf, size_t len)
{
    if (!buf) return;
    /* Only a cache: it never takes room the node may need (nor counts as a refusal). */
    if (len < P2P_BODY_FIRST || len > P2P_SPARE_MAX || h->spares == P2P_SPARES ||
        h->mem + len > h->mem_limit / 2) {
        free(buf);
        return;
    }
    h->spare[h->spares] = buf;
    h->spare_len[h->spares++] = len;
    h->mem += len;
    if (h->mem > h->stats.memory_peak) h->stats.memory_peak = h->mem;
}

uint8_t *p2p_spare_take(p2p_host *h, size_t min, size_t max, size_t *len)
{
    for (unsigned i = h->spares; i-- > 0;) {
        if (h->spare_len[i] < min || h->spare_len[i] > max) continue;
        uint8_t *buf = h->spare[i];
        *len = h->spare_len[i];
        h->spares--;
        h->spare[i] = h->spare[h->spares];
        h->spare_len[i] = h->spare_len[h->spares];
        p2p_mem_give(h, NULL, *len);
        return buf;
    }
    return NULL;
}

void p2p_spare_free(p2p_host *h)
{
    while (h->spares) {
        h->spares--;
        p2p_mem_give(h, NULL, h->spare_len[h->spares]);
        free(h->spare[h->spares]);
    }
}

/* ---- events ----------------------------------------------------------------------------- */

/* The event queue is charged to the node's memory budget (its ring and every event's data);
 * an event that would pass the budget is dropped and counted in stats.dropped_budget. A
 * driver that drains the queue after every input never comes near it: the queue then holds
 * what one input produced (docs/PROTOCOL.md section 4.1). */
int p2p_event_push_owned(p2p_host *h, const p2p_event *ev, uint8_t *data, size_t len)
{
    if (h->evq_len == h->evq_cap) {
        size_t cap = h->evq_cap ? h->evq_cap * 2 : P2P_EVQ_MIN;
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

int p2p_event_room(p2p_host *h, p2p_peer *p, size_t len, size_t freed)
{
    size_t grow = h->evq_len < h->evq_cap
                      ? 0
                      : (h->evq_cap ? h->evq_cap : P2P_EVQ_MIN) * sizeof(p2p_evq_item);
    if (len + grow <= p2p_mem_room(h, NULL) + freed) return 1;
    h->stats.dropped_budget++;
    mem_evict_largest(h, p);
    return 0;
}

int p2p_event_push(p2p_host *h, const p2p_event *ev, const uint8_t *data, size_t len)
{
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) return P2P_ERR_NOMEM;
        memcpy(copy, data, len);
    }
    return p2p_event_push_owned(h, ev, copy, len);
}

void p2p_fill_event(const p2p_peer *p, p2p_event *ev)
{
    ev->peer = p->handle;
    ev->from = p->addr;
    ev->session = p->remote_index;
    if (p->has_id) {
        ev->has_id = 1;
        memcpy(ev->id, p->id, P2P_ID_LEN);
    }
}

void p2p_error(p2p_host *h, p2p_peer *p, const char *fmt, ...)
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
    if (p) p2p_fill_event(p, &ev);
    p2p_event_push(h, &ev, (const uint8_t *)msg, (size_t)n);
}

/* ---- datagrams -------------------------------------------------------------------------- */

/* Like the event queue, the transmit queue is charged to the node's budget: a datagram that
 * would pass it is dropped (counted in stats.dropped_budget), as the network may drop it. */
int p2p_tx_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len)
{
    int rc;
    p2p_txq_item *t = p2p_mem_alloc(h, NULL, sizeof *t + len, &rc);
    if (!t) return rc;
    t->next = NULL;
    t->to = *to;
    t->own = 0;
    t->len = len;
    memcpy(t->data, data, len);
    if (h->txq_tail)
        h->txq_tail->next = t;
    else
        h->txq_head = t;
    h->txq_tail = t;
    return 0;
}

int p2p_tx_push_own(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len)
{
    int rc = p2p_tx_push(h, to, data, len);
    if (!rc) h->txq_tail->own = 1;
    return rc;
}

/* ---- policy ----------------------------------------------------------------------------- */

int p2p_id_listed(const uint8_t (*list)[P2P_ID_LEN], size_t n, const uint8_t id[P2P_ID_LEN])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(list[i], id, P2P_ID_LEN) == 0) return 1;
    return 0;
}

const char *p2p_policy(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    if (memcmp(id, h->ident.ed_pk, P2P_ID_LEN) == 0) return "is this node itself";
    if (p2p_id_listed((const uint8_t(*)[P2P_ID_LEN])h->deny, h->deny_count, id)) return "is denied";
    if (h->allow_count &&
        !p2p_id_listed((const uint8_t(*)[P2P_ID_LEN])h->allow, h->allow_count, id))
        return "is not in the allow list";
    return NULL;
}

/* Moves addrs[from..naddr) (with their kinds) by one slot: up (+1) or down (-1). */
static void own_shift(p2p_host *h, size_t from, int up)
{
    size_t n = h->naddr - from;
    if (up) {
        memmove(&h->addrs[from + 1], &h->addrs[from], n * sizeof h->addrs[0]);
        memmove(&h->addr_kind[from + 1], &h->addr_kind[from], n * sizeof h->addr_kind[0]);
        memmove(&h->addr_expires[from + 1], &h->addr_expires[from], n * sizeof h->addr_expires[0]);
    } else if (n) {
        memmove(&h->addrs[from - 1], &h->addrs[from], n * sizeof h->addrs[0]);
        memmove(&h->addr_kind[from - 1], &h->addr_kind[from], n * sizeof h->addr_kind[0]);
        memmove(&h->addr_expires[from - 1], &h->addr_expires[from], n * sizeof h->addr_expires[0]);
    }
}

int p2p_own_add_kind(p2p_host *h, const p2p_addr *in, uint8_t kind, uint64_t expires)
{
    static const uint8_t zero[16];
    p2p_addr a = *in;
    a.sock = 0;
    if ((a.family != P2P_AF_INET4 && a.family != P2P_AF_INET6) || !a.port ||
        memcmp(a.ip, zero, a.family == P2P_AF_INET4 ? 4 : 16) == 0)
        return 0;
    for (size_t i = 0; i < h->naddr; i++)
        if (p2p_addr_equal(&h->addrs[i], &a)) {
            /* A mapping or a STUN answer outranks what a peer reported of the same address. */
            if (kind > h->addr_kind[i] && i >= h->nlocal) h->addr_kind[i] = kind;
            if (kind == P2P_ADDR_MAPPED) h->addr_expires[i] = expires;
            return 0;
        }
    size_t at;
    if (kind == P2P_ADDR_LOCAL) {
        if (h->nlocal >= P2P_LOCAL_ADDRS) return P2P_ERR_LIMIT;
        if (h->naddr == P2P_MEMBER_ADDRS) h->naddr--; /* the newest other one goes */
        at = h->nlocal++;
        own_shift(h, at, 1);
    } else if (kind == P2P_ADDR_REFLEXIVE) {
        if (h->naddr - h->nlocal >= P2P_REFLEXIVE_ADDRS || h->naddr == P2P_MEMBER_ADDRS) {
            /* the oldest reported one goes; mapped and STUN addresses stay */
            size_t old = h->nlocal;
            while (old < h->naddr && h->addr_kind[old] != P2P_ADDR_REFLEXIVE) old++;
            if (old == h->naddr) return 0;
            own_shift(h, old + 1, 0);
            h->naddr--;
        }
        at = h->naddr;
    } else {
        /* MAPPED and STUN go first among the others: a peer tries them early */
        if (h->naddr == P2P_MEMBER_ADDRS || h->naddr - h->nlocal >= P2P_REFLEXIVE_ADDRS) {
            size_t old = h->nlocal;
            while (old < h->naddr && h->addr_kind[old] != P2P_ADDR_REFLEXIVE) old++;
            if (old == h->naddr) return 0;
            own_shift(h, old + 1, 0);
            h->naddr--;
        }
        at = h->nlocal;
        own_shift(h, at, 1);
    }
    h->addrs_gen++;
    h->addrs[at] = a;
    h->addr_kind[at] = kind;
    h->addr_expires[at] = kind == P2P_ADDR_MAPPED ? expires : 0;
    h->naddr++;
    return 1;
}

int p2p_own_add(p2p_host *h, const p2p_addr *a, int local)
{
    return p2p_own_add_kind(h, a, local ? P2P_ADDR_LOCAL : P2P_ADDR_REFLEXIVE, 0);
}

int p2p_own_remove_kind(p2p_host *h, uint8_t kind)
{
    int changed = 0;
    for (size_t i = h->nlocal; i < h->naddr;) {
        if (h->addr_kind[i] == kind) {
            own_shift(h, i + 1, 0);
            h->naddr--;
            changed = 1;
            h->addrs_gen++;
        } else {
            i++;
        }
    }
    return changed;
}

void p2p_own_mapping(p2p_host *h, uint8_t mapping, uint8_t source)
{
    /* A better source is not overruled by a worse one: STUN and a port mapping know, peers'
     * reports only suggest. */
    if (h->mapping != P2P_MAPPING_UNKNOWN && source == P2P_MAPSRC_PEERS &&
        h->mapping_source != P2P_MAPSRC_PEERS)
        return;
    if (h->mapping == mapping && h->mapping_source == source) return;
    int changed = h->mapping != mapping;
    h->mapping = mapping;
    h->mapping_source = source;
    if (changed) {
        p2p_notice n = {.kind = P2P_NOTE_MAPPING};
        p2p_notify(h, &n);
    }
}

int p2p_io_push(p2p_host *h, const p2p_io *req, const uint8_t *data, size_t len)
{
    if (h->ioq_len >= P2P_IOQ_MAX) return P2P_ERR_LIMIT;
    p2p_ioq_item *it = calloc(1, sizeof *it);
    if (!it) return P2P_ERR_NOMEM;
    it->io = *req;
    if (len) {
        it->data = malloc(len);
        if (!it->data) {
            free(it);
            return P2P_ERR_NOMEM;
        }
        memcpy(it->data, data, len);
    }
    it->io.data = it->data;
    it->io.len = len;
    if (h->ioq_tail)
        h->ioq_tail->next = it;
    else
        h->ioq_head = it;
    h->ioq_tail = it;
    h->ioq_len++;
    return 0;
}

uint32_t p2p_io_id(p2p_host *h)
{
    /* Stream ids the host picks have the top bit clear; the driver's have it set. */
    h->io_next_id = (h->io_next_id + 1) & 0x7fffffffu;
    if (!h->io_next_id) h->io_next_id = 1;
    return h->io_next_id;
}

int p2p_lan_tx_push(p2p_host *h, const p2p_addr *to, const uint8_t *data, size_t len)
{
    if (h->lanq_len >= P2P_LANQ_MAX) return P2P_ERR_LIMIT;
    p2p_txq_item *t = malloc(sizeof *t + len);
    if (!t) return P2P_ERR_NOMEM;
    t->next = NULL;
    t->to = *to;
    t->len = len;
    memcpy(t->data, data, len);
    if (h->lanq_tail)
        h->lanq_tail->next = t;
    else
        h->lanq_head = t;
    h->lanq_tail = t;
    h->lanq_len++;
    return 0;
}

int p2p_may_send_learned(const p2p_host *h, const p2p_addr *a)
{
    int scope = p2p_addr_scope(a);
    if (scope == P2P_SCOPE_INVALID) return 0;
    if (scope == P2P_SCOPE_PUBLIC) return 1;
    /* A link-local address with its zone: only the driver (the interface a datagram came in
     * on) or the application sets one, never the wire, so it is on one of this host's links. */
    if (a->family == P2P_AF_INET6 && a->zone != 0) return 1;
    for (size_t i = 0; i < h->naddr; i++)
        if (p2p_addr_scope(&h->addrs[i]) == scope) return 1;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (p && p->state == P2P_S_CONNECTED && p->addr.family != P2P_AF_RELAY &&
            p2p_addr_scope(&p->addr) == scope)
            return 1;
    }
    return 0;
}

int p2p_udp_heard(const p2p_host *h, uint64_t now)
{
    return h->last_udp_rx && h->last_udp_rx + P2P_FALLBACK_AFTER_US > now;
}

void p2p_cand_add(p2p_addr *v, uint8_t *n, size_t max, const p2p_addr *a)
{
    if (a->family != P2P_AF_INET4 && a->family != P2P_AF_INET6 && a->family != P2P_AF_RELAY) return;
    for (size_t i = 0; i < *n; i++)
        if (p2p_addr_equal(&v[i], a)) return;
    if (*n < max) v[(*n)++] = *a;
}
