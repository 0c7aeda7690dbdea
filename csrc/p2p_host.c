/*
 * p2p_host.c - the hub: the demux of incoming datagrams, the transmit loop, timers, freeing
 * sessions, routing what the layers below report (notices, result codes), and the public API
 * of p2pnet.h that is not per-session.
 *
 * Nothing below calls up into this file: sessions, the handshake, mesh, NAT and path return
 * what happened, or leave notices (p2p_notify) and dead sessions (p2p_kill) in the shared
 * state, which the host reads after each call into them (settle()).
 */
#include "p2p_host.h"
#include "p2p_transfer.h" /* transfers */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---------------------------------------------------------------------- */

void p2p_config_init(p2p_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
}

static int copy_list(uint8_t (**dst)[P2P_ID_LEN], const uint8_t (*src)[P2P_ID_LEN], size_t n)
{
    *dst = NULL;
    if (!n) return 0;
    if (!src) return P2P_ERR_INVALID;
    *dst = malloc(n * P2P_ID_LEN);
    if (!*dst) return P2P_ERR_NOMEM;
    memcpy(*dst, src, n * P2P_ID_LEN);
    return 0;
}

static void reap(p2p_host *h);
static int reach_init(p2p_host *h, const p2p_config *cfg, uint64_t now);
static void reach_free(p2p_host *h);

int p2p_host_new(p2p_host **out, const p2p_config *cfg, uint64_t now)
{
    *out = NULL;
    if (!cfg || !cfg->identity) return P2P_ERR_INVALID;
    if (cfg->max_message > (1u << 30)) return P2P_ERR_INVALID;
    if (cfg->congestion != P2P_CC_BBR && cfg->congestion != P2P_CC_NEWRENO) return P2P_ERR_INVALID;
    if (p2p_init()) return P2P_ERR_CRYPTO;
    p2p_host *h = calloc(1, sizeof *h);
    if (!h) return P2P_ERR_NOMEM;
    h->ident = *cfg->identity;
    h->timeout = cfg->timeout_us ? cfg->timeout_us : P2P_DEFAULT_TIMEOUT_US;
    h->congestion = cfg->congestion; /* issue 10 (congestion control) */
    h->max_peers = cfg->max_peers ? cfg->max_peers : 1024;
    h->max_message = cfg->max_message ? cfg->max_message : P2P_DEFAULT_MAX_MESSAGE;
    h->send_queue_limit = cfg->send_queue_limit ? cfg->send_queue_limit : P2P_DEFAULT_SEND_QUEUE;
    h->request_hook = cfg->request_hook;
    h->member = !cfg->mediator;
    h->peer_mem = cfg->peer_memory ? cfg->peer_memory : P2P_DEFAULT_PEER_MEMORY;
    h->mem_limit = cfg->memory ? cfg->memory : P2P_DEFAULT_MEMORY;
    h->now = now;
    if (h->max_peers > 60000) {
        free(h);
        return P2P_ERR_INVALID;
    }
    int hrc = p2p_hs_init(h, cfg); /* psk (network key stretched), mac1 and cookie keys */
    if (hrc) {
        p2p_wipe(h, sizeof *h);
        free(h);
        return hrc;
    }
    p2p_rng_init(&h->rng, cfg->seed);
    p2p_rng_bytes(&h->rng, &h->instance, sizeof h->instance);
    int rc = copy_list(&h->allow, cfg->allow, cfg->allow_count);
    if (!rc) rc = copy_list(&h->deny, cfg->deny, cfg->deny_count);
    h->allow_count = cfg->allow_count;
    h->deny_count = cfg->deny_count;
    if (!rc) rc = p2p_mesh_init(h, cfg, now);
    if (!rc) rc = p2p_nat_init(h, cfg);
    if (!rc) rc = p2p_guard_init(h);
    if (!rc) rc = reach_init(h, cfg, now); /* issue 12 */
    if (!rc && p2p_index_init(&h->peers, (size_t)h->max_peers + h->max_half_open + 16))
        rc = P2P_ERR_NOMEM;
    if (rc) {
        p2p_host_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void p2p_host_free(p2p_host *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->peers.hwm; i++)
        if (h->peers.slots[i]) p2p_kill(h, h->peers.slots[i]);
    reap(h);
    free(h->notes);
    while (h->evq_len) {
        free(h->evq[h->evq_head].owned);
        h->evq_head = (h->evq_head + 1) % h->evq_cap;
        h->evq_len--;
    }
    free(h->evq);
    free(h->ev_owned);
    p2p_spare_free(h);
    for (p2p_txq_item *t = h->txq_head, *n; t; t = n) {
        n = t->next;
        free(t);
    }
    p2p_mesh_free(h);
    p2p_nat_free(h);
    p2p_guard_free(h);
    reach_free(h);        /* issue 12 */
    p2p_transfer_free(h); /* transfers */
    p2p_index_free(&h->peers);
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

const uint8_t *p2p_host_id(const p2p_host *h)
{
    return h->ident.ed_pk;
}

/* ---- freeing sessions, routing notices ---------------------------------------------------- */

/* Frees the sessions the last input ended (p2p_kill), once nothing holds them any more. The
 * NAT learns first: attempts that waited for an introducer fail with it (and join the list). */
static void reap(p2p_host *h)
{
    while (h->dead_head) {
        p2p_peer *p = h->dead_head;
        h->dead_head = p->dead_next;
        p2p_nat_on_end(h, p);
        p2p_transfer_on_end(h, p); /* transfers: each ends as lost */
        p2p_hs_free(p);
        p2p_peer_release(p);
        /* Whatever the session did not give back is released with it. */
        h->mem = h->mem > p->mem ? h->mem - p->mem : 0;
        p2p_wipe(p, sizeof *p);
        free(p);
        h->n_sessions--;
    }
}

static void peer_free(p2p_host *h, p2p_peer *p)
{
    p2p_kill(h, p);
    reap(h);
}

/* The largest packet session p may send now, at most cap (0: its path cannot carry one). */
static size_t room_of(const p2p_host *h, const p2p_peer *p, size_t cap)
{
    if (p->addr.family == P2P_AF_RELAY) return p2p_nat_relay_room(h, &p->addr, cap);
    return p2p_path_room(p, cap);
}

/* Adds a to the probe list with the session that supplied it, unless it is there already, is
 * not a direct address, or is one this node may not send to (section 8.6). */
static void add_probe(const p2p_host *h, p2p_addr *v, p2p_peer_handle *src, uint8_t *n, size_t max,
                      const p2p_addr *a, p2p_peer_handle from)
{
    if (a->family == P2P_AF_RELAY || !p2p_may_send_learned(h, a)) return;
    uint8_t before = *n;
    p2p_cand_add(v, n, max, a);
    if (*n > before) src[before] = from;
}

void p2p_host_probe(p2p_host *h, p2p_peer *p, uint64_t now)
{
    enum { PROBE_MAX = P2P_CANDIDATES - 1 + 2 * P2P_MEMBER_ADDRS };
    p2p_addr c[PROBE_MAX];
    p2p_peer_handle src[PROBE_MAX];
    uint8_t n = 0;
    const p2p_intro *in = p2p_nat_intro(h, p->id, now);
    for (size_t i = 0; in && i < in->ncand; i++)
        add_probe(h, c, src, &n, PROBE_MAX, &in->cand[i], in->via);
    for (size_t i = 0; i < p->nadv; i++) add_probe(h, c, src, &n, PROBE_MAX, &p->adv[i], p->handle);
    const p2p_member *m = p2p_mesh_member(h, p->id);
    for (size_t i = 0; m && i < m->naddr; i++)
        add_probe(h, c, src, &n, PROBE_MAX, &m->addrs[i], p->handle);
    p2p_path_probe(h, p, c, src, n, now);
}

/* Adds a to an introduction's candidates, unless it is a link-local address with its zone:
 * that names an interface of this host, nothing another host can reach. */
static void reach_add(p2p_addr *out, uint8_t *n, const p2p_addr *a)
{
    if (a->family == P2P_AF_INET6 && a->zone != 0) return;
    p2p_cand_add(out, n, P2P_CANDIDATES - 1, a);
}

/* The addresses at which the node of session q may be reached: where we see it first. */
static uint8_t reach_of(const p2p_host *h, const p2p_peer *q, p2p_addr *out)
{
    uint8_t n = 0;
    reach_add(out, &n, &q->addr);
    for (size_t i = 0; i < q->nadv; i++) reach_add(out, &n, &q->adv[i]);
    const p2p_member *m = p2p_mesh_member(h, q->id);
    for (size_t i = 0; m && i < m->naddr; i++) reach_add(out, &n, &m->addrs[i]);
    return n;
}

/* issue 12: a LAN beacon named a node we hold no session with: one handshake attempt to it,
 * made as the mesh makes its dials (quiet on failure). The INIT is a probe (section 8.6): the
 * address came from the network. */
static void lan_dial(p2p_host *h, const p2p_notice *n, uint64_t now)
{
    (void)now;
    if (h->closed || p2p_policy(h, n->id)) return;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *q = h->peers.slots[i];
        if (!q || q->state == P2P_S_CLOSING) continue;
        if ((q->has_id && memcmp(q->id, n->id, P2P_ID_LEN) == 0) ||
            (q->has_expected && memcmp(q->expected, n->id, P2P_ID_LEN) == 0))
            return;
    }
    int rc;
    p2p_peer *p = p2p_attempt_new(h, &n->addr, 1, n->id, NULL, &rc);
    if (!p) return;
    p->auto_dial = 1;
    p->lan_dial = 1;
    h->stats.lan_dials++;
}

static int same_ip(const p2p_addr *a, const p2p_addr *b);

/* issue 12: the node's NAT mapping as its peers saw it (docs/PROTOCOL.md section 8.7). Two
 * direct sessions with peers at different IPs that saw this node at the same external IP tell
 * how its NAT maps: a different port each ("dependent": a new port per destination), or the
 * same port ("independent"). Weaker than STUN or a port mapping, which it never overrules. */
static void peers_mapping(p2p_host *h)
{
    const p2p_peer *first = NULL;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (!p || p->state != P2P_S_CONNECTED || !p->has_observed) continue;
        if (p->addr.family != P2P_AF_INET4 && p->addr.family != P2P_AF_INET6) continue;
        if (p->addr.sock) continue; /* a punch socket has its own mapping */
        if (!first) {
            first = p;
            continue;
        }
        if (same_ip(&p->addr, &first->addr) || !same_ip(&p->observed, &first->observed)) continue;
        int mapping = p->observed.port != first->observed.port ? P2P_MAPPING_DEPENDENT
                                                               : P2P_MAPPING_INDEPENDENT;
        for (size_t k = 0; k < h->nlocal; k++) /* they saw us as we are: no NAT */
            if (p2p_addr_equal(&h->addrs[k], &p->observed)) mapping = P2P_MAPPING_NONE;
        p2p_own_mapping(h, (uint8_t)mapping, P2P_MAPSRC_PEERS);
        return;
    }
}

/* Routes what the layers below reported (P2P_NOTE_*), in order; routing may add more. */
static void route(p2p_host *h)
{
    uint64_t now = h->now;
    for (size_t i = 0; i < h->notes_len; i++) {
        p2p_notice n = h->notes[i]; /* a copy: routing may grow the array */
        p2p_peer *p = n.peer ? p2p_lookup(h, n.peer) : NULL;
        switch (n.kind) {
        case P2P_NOTE_DIAL:
            if (!p || !p->dial_due) break;
            p2p_nat_on_dial(p); /* before its first INIT: the guard asks who gave the address */
            if (p2p_hs_start(h, p, now)) p2p_kill(h, p);
            /* issue 12: a LAN beacon's dial is a probe: its handshake ends soon (a node on
             * the LAN answers within milliseconds), so one beacon costs a few INITs */
            if (!p->dead && p->lan_dial && p->hs) p->hs->expire = now + P2P_LAN_DIAL_US;
            break;
        case P2P_NOTE_PUNCH:
            if (p && p->punch_due) p2p_hs_punch_now(h, p, now);
            break;
        case P2P_NOTE_JOINED:
            /* Even when ended since (it is then CLOSING): the mesh hears of the join before
             * the leave that follows it in this array. */
            if (!p) break;
            p2p_path_start(h, p, now);
            p2p_mesh_on_join(h, p, now);
            p2p_nat_on_join(h, p, now);
            peers_mapping(h); /* issue 12 */
            break;
        case P2P_NOTE_LEFT: p2p_mesh_on_leave(h, n.id, n.reason, now); break;
        case P2P_NOTE_PROBE:
            if (!p || p->state != P2P_S_CONNECTED) break;
            /* introduced again: probe now, and again on a fresh schedule (1, 2, 4 s ...), so
             * that a relayed pair whose UDP just came back goes direct soon */
            p2p_path_retry(p, now);
            p2p_host_probe(h, p, now);
            break;
        case P2P_NOTE_INTRODUCE: {
            p2p_peer *q = p2p_lookup(h, n.other);
            if (!p || !q) break;
            p2p_addr cp[P2P_CANDIDATES - 1], cq[P2P_CANDIDATES - 1];
            uint8_t np = reach_of(h, p, cp), nq = reach_of(h, q, cq);
            p2p_nat_send_intro(h, p, q, cq, nq, n.relay_ok);
            p2p_nat_send_intro(h, q, p, cp, np, n.relay_ok);
            break;
        }
        case P2P_NOTE_MAPPING: p2p_nat_on_mapping(h, now); break; /* PUNCH INFO */
        case P2P_NOTE_LAN_DIAL: lan_dial(h, &n, now); break;
        default: break;
        }
    }
    h->notes_len = 0;
}

/* After every input: route what the layers below reported, then free the sessions they ended
 * (nothing holds them now). Within an input, route() alone: callers may still hold a session. */
static void tell_addrs(p2p_host *h);

static inline void settle(p2p_host *h)
{
    if (h->notes_len) route(h);
    if (h->addrs_gen != h->addrs_told && !h->closed) tell_addrs(h); /* issue 12 */
    if (h->dead_head) reap(h);
}

size_t p2p_host_events_pending(const p2p_host *h)
{
    return h->evq_len;
}

int p2p_host_next_event(p2p_host *h, p2p_event *ev)
{
    /* The last event's data, a record's body, may serve the next record. */
    p2p_spare_put(h, h->ev_owned, h->ev_owned_len);
    h->ev_owned = NULL;
    if (!h->evq_len) return 0;
    p2p_evq_item *it = &h->evq[h->evq_head];
    *ev = it->ev;
    h->ev_owned = it->owned;
    h->ev_owned_len = ev->len;
    h->evq_head = (h->evq_head + 1) % h->evq_cap;
    h->evq_len--;
    /* The data is the application's until the next call; the budget has it back now. */
    p2p_mem_give(h, NULL, ev->len);
    if (!h->evq_len && h->evq_cap > P2P_EVQ_MIN) { /* a drained burst gives its ring back */
        p2p_mem_give(h, NULL, h->evq_cap * sizeof(p2p_evq_item));
        free(h->evq);
        h->evq = NULL;
        h->evq_cap = 0;
        h->evq_head = 0;
    }
    return 1;
}

/* ---- datagrams -------------------------------------------------------------------------- */

/* Builds the next packet of a session: through the relay when its path is relayed, and
 * never more than the anti-amplification limit allows towards an unproven address. */
static size_t build_for(p2p_host *h, p2p_peer *p, p2p_addr *to, uint8_t *buf, size_t cap)
{
    size_t room = room_of(h, p, cap);
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
    p2p_peer *relay;
    size_t m = p2p_nat_wrap(h, &p->addr, inner, n, buf, cap, to, &relay);
    if (!m) return (size_t)-1;
    p2p_path_sent(relay, m);
    return m;
}

size_t p2p_host_next_datagram(p2p_host *h, p2p_addr *to, uint8_t *buf, size_t cap)
{
    if (cap < P2P_MAX_PACKET) return 0;
    if (cap > P2P_MAX_PACKET_PROBED) cap = P2P_MAX_PACKET_PROBED;
    size_t n = 0;
    while (!n && h->txq_head) {
        p2p_txq_item *t = h->txq_head;
        int own = t->own;
        h->txq_head = t->next;
        if (!h->txq_head) h->txq_tail = NULL;
        if (t->to.family == P2P_AF_RELAY) {
            p2p_peer *relay;
            n = p2p_nat_wrap(h, &t->to, t->data, t->len, buf, cap, to, &relay);
            if (n) p2p_path_sent(relay, n);
        } else {
            *to = t->to;
            memcpy(buf, t->data, t->len);
            n = t->len;
        }
        p2p_mem_give(h, NULL, sizeof *t + t->len);
        free(t);
        /* Every datagram leaves through the guard (docs/PROTOCOL.md section 8.6). */
        if (n && !own && !p2p_guard_send(h, to, buf, n, P2P_GUARD_RESPONSE)) n = 0;
    }
    while (!n && h->ready_head) {
        p2p_peer *p = h->ready_head;
        n = build_for(h, p, to, buf, cap);
        p->dl_valid = 0; /* sending arms the probe timer and the pacer */
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
        if (p->state == P2P_S_CLOSING && p->close_copies == 0) peer_free(h, p);
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

static void dispatch(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len);

/* issue 12: ADDRS, the peer's advertised addresses now (docs/PROTOCOL.md section 8.7). They
 * replace those of its FIN: an introducer hands them on as candidates, as it did those. The
 * same trust as the FIN's: the peer names them, and the guard's probe allowance bounds what
 * anyone sends to them. Returns nonzero on a malformed record (a protocol error). */
static int on_addrs(p2p_peer *p, const uint8_t *body, size_t len)
{
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    uint8_t n = p2p_rd_u8(&r);
    if (r.bad || n > P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS) return 1;
    p2p_addr v[P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS];
    for (uint8_t i = 0; i < n; i++)
        if (p2p_rd_addr(&r, &v[i])) return 1;
    if (r.bad || p2p_rd_left(&r)) return 1;
    memcpy(p->adv, v, n * sizeof v[0]);
    p->nadv = n;
    return 0;
}

/* issue 12: the node's advertised addresses changed since peers were last told (a port
 * mapping or a STUN answer came, or went): every established session gets ADDRS. */
static void tell_addrs(p2p_host *h)
{
    h->addrs_told = h->addrs_gen;
    uint8_t body[1 + (P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS) * P2P_ADDR6_WIRE_LEN];
    p2p_wr w;
    p2p_wr_init(&w, body, sizeof body);
    p2p_wr_u8(&w, (uint8_t)h->naddr);
    for (size_t i = 0; i < h->naddr; i++) p2p_wr_addr(&w, &h->addrs[i]);
    if (w.bad) return;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q->state == P2P_S_CONNECTED) {
            p2p_peer_append(h, q, P2P_REC_ADDRS, body, (size_t)(w.p - body));
            p2p_ready(h, q);
        }
    }
}

/* Hands the mesh and NAT records that session p received whole to their modules. Returns 0
 * when p may not go on (a bad record ended it). */
static int route_records(p2p_host *h, p2p_peer *p, uint64_t now)
{
    for (p2p_ctl_rec *c; (c = p2p_peer_take_record(p));) {
        int bad = c->kind == P2P_REC_TRANSFER
                      ? p2p_transfer_on_record(h, p, c->lane, c->body, c->len)
                  : c->kind == P2P_REC_ADDRS ? on_addrs(p, c->body, c->len) /* issue 12 */
                  : c->kind >= P2P_REC_INTRO_REQ
                      ? p2p_nat_on_record(h, p, c->kind, c->body, c->len, now)
                      : p2p_mesh_on_record(h, p, c->kind, c->body, c->len, now);
        p2p_peer_record_done(c);
        if (p->dead) return 0;
        if (bad || p->state != P2P_S_CONNECTED) {
            p2p_peer_protocol_error(h, p);
            return 0;
        }
        /* Attempts it made start before the next record looks for them. */
        if (h->notes_len) route(h);
        if (p->dead || p->state != P2P_S_CONNECTED) return 0;
    }
    return 1;
}

/* A DATA packet for session p: the session opens it and reads its frames; what it cannot do
 * alone (confirm the handshake, move or validate the path, relay, records for mesh and NAT)
 * comes back here to be routed. */
static void recv_data(p2p_host *h, p2p_peer *p, const p2p_addr *from, const uint8_t *buf,
                      size_t len)
{
    uint64_t now = h->now;
    uint32_t index = p->local_index;
    p2p_rx rx;
    int rc = p2p_peer_open(h, p, from, buf, len, &rx, now);
    if (rc == P2P_RX_SUPERSEDED) {
        p2p_hs_superseded(h, p, now);
        return;
    }
    if (rc == P2P_RX_CONFIRMED) {
        p2p_hs_confirmed(h, p, now);
        /* The path starts (P2P_NOTE_JOINED) before this packet may move it. */
        if (h->notes_len) route(h);
        p = p2p_lookup_index(h, index);
        if (!p || p->state != P2P_S_CONNECTED) return;
    } else if (rc != P2P_RX_OPEN) {
        return;
    }
    /* Authenticated: the packet may move the session to the address it came from. */
    p2p_path_on_packet(h, p, from, len, rx.probing, rx.newest, now);
    p2p_frame f;
    while ((rc = p2p_peer_on_frames(h, p, &rx, &f, now)) == P2P_RX_FRAME || rc == P2P_RX_RECORDS) {
        if (rc == P2P_RX_RECORDS) {
            if (!route_records(h, p, now)) return;
            continue;
        }
        if (f.type == P2P_FRAME_PATH_CHALLENGE) {
            p2p_path_on_challenge(h, p, from, f.u.path_data, now);
            continue;
        }
        if (f.type == P2P_FRAME_PATH_RESPONSE) {
            int on_stream = p->addr.family == P2P_AF_STREAM;
            p2p_path_on_response(h, p, from, f.u.path_data, now);
            /* issue 12: off a stream onto UDP: what it relays for us is introduced again */
            if (on_stream && p->addr.family != P2P_AF_STREAM) p2p_nat_on_upgraded(h, p, now);
            continue;
        }
        /* Relaying is one hop deep: nothing is relayed over a relayed path. */
        if (from->family == P2P_AF_RELAY) continue;
        if (f.type == P2P_FRAME_RELAY) {
            p2p_peer *q = NULL;
            size_t m = p2p_nat_on_relay(h, p, f.u.relay.channel, f.u.relay.data,
                                        (size_t)f.u.relay.len, now, &q);
            if (m) p2p_path_sent(q, m);
        } else {
            /* A datagram relayed to us: it is unwrapped here and handled as if it came on
             * the relayed path. */
            p2p_addr path = p2p_nat_relay_addr(p->local_index, f.u.relay.channel);
            dispatch(h, &path, f.u.relay.data, (size_t)f.u.relay.len);
        }
        /* What was relayed may have ended sessions: go on only if this one lives. */
        p = p2p_lookup_index(h, index);
        if (!p || p->state != P2P_S_CONNECTED) return;
    }
}

static p2p_stream *stream_find(p2p_host *h, uint32_t sid);

/* issue 12: the datagram just dispatched authenticated: it completed a handshake, or it is a
 * DATA packet its session accepted now. Junk from anyone does not say UDP works. */
static int udp_proven(p2p_host *h, const uint8_t *buf, size_t len, uint64_t handshakes)
{
    if (h->stats.handshakes != handshakes) return 1;
    if (len < P2P_DATA_HEADER + P2P_TAG_LEN || buf[0] != P2P_PKT_DATA) return 0;
    const p2p_peer *p = p2p_index_by_local(&h->peers, p2p_get_u32(buf + 4));
    return p && p->last_recv == h->now && p->rx_packets;
}

/* Hands one datagram to the layer its type names. */
static void dispatch(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len)
{
    if (len < 1 || len > P2P_MAX_PACKET_PROBED) {
        h->stats.dropped++;
        return;
    }
    switch (buf[0]) {
    case P2P_PKT_INIT: p2p_hs_on_init(h, from, buf, len, h->now); break;
    case P2P_PKT_RESP: p2p_hs_on_resp(h, from, buf, len, h->now); break;
    case P2P_PKT_FIN: p2p_hs_on_fin(h, from, buf, len, h->now); break;
    case P2P_PKT_COOKIE: p2p_hs_on_cookie(h, from, buf, len, h->now); break;
    case P2P_PKT_DATA: {
        if (len < P2P_DATA_HEADER + P2P_TAG_LEN) {
            h->stats.dropped++;
            break;
        }
        p2p_peer *p = p2p_lookup_index(h, p2p_get_u32(buf + 4));
        if (!p || (p->state != P2P_S_CONNECTED && p->state != P2P_S_FIN_SENT)) {
            h->stats.dropped++;
            break;
        }
        recv_data(h, p, from, buf, len);
        break;
    }
    default: h->stats.dropped++;
    }
}

int p2p_host_recv(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    h->stats.packets_received++;
    h->stats.bytes_received += len;
    /* Relayed paths exist only inside the core: a driver cannot claim one. A stream must be
     * one the driver said is up. */
    if (from->family == P2P_AF_STREAM) {
        p2p_stream *st = stream_find(h, p2p_get_u32(from->ip));
        if (!st || !st->up || from->sock) {
            h->stats.dropped++;
            return 0;
        }
        /* Bytes on a stream keep it open only through a session that uses it (the timer
         * looks): junk never does. */
    } else if (from->family != P2P_AF_INET4 && from->family != P2P_AF_INET6) {
        h->stats.dropped++;
        return 0;
    } else {
        /* issue 12: STUN answers and the gateway's port-mapping replies share the socket
         * (docs/PROTOCOL.md section 8.7). Only what an open transaction of ours expects is
         * taken; a STUN-shaped datagram from anyone else is dropped. What they take proves
         * that UDP works (an answer to our own request); nothing else unauthenticated does. */
        if (p2p_stun_is(buf, len)) {
            if (p2p_probe_on_datagram(h, from, buf, len, h->now))
                h->last_udp_rx = h->now;
            else
                h->stats.dropped++;
            settle(h);
            return 0;
        }
        if ((from->port == 5351 || from->port == 1900) &&
            p2p_portmap_on_datagram(h, from, buf, len, h->now)) {
            h->last_udp_rx = h->now;
            settle(h);
            return 0;
        }
    }
    p2p_guard_credit(h, from, len); /* what may be sent back (section 8.6) */
    uint64_t handshakes = h->stats.handshakes;
    dispatch(h, from, buf, len);
    if (from->family != P2P_AF_STREAM && udp_proven(h, buf, len, handshakes))
        h->last_udp_rx = h->now; /* issue 12: the fallback's trigger and nat().udp */
    p2p_transfer_poll(h);        /* transfers: acknowledgements may have made room */
    settle(h);
    return 0;
}

/* ---- timers ----------------------------------------------------------------------------- */

/* The cached deadline of a session (dl_valid: every path that can change a session finds it
 * through p2p_lookup/p2p_lookup_index or queues it with p2p_ready, which clear it). */
static uint64_t peer_deadline(const p2p_host *h, p2p_peer *p)
{
    if (!p->dl_valid) {
        if (p->hs) {
            uint64_t nat = p2p_nat_deadline(p);
            p->dl = p2p_hs_deadline(p);
            if (nat < p->dl) p->dl = nat;
        } else {
            int can_send = p->state == P2P_S_CONNECTED && room_of(h, p, P2P_MAX_PACKET_PROBED);
            uint64_t path = p2p_path_deadline(p), nat = p2p_nat_deadline(p); /* hand-over */
            p->dl = p2p_peer_deadline(h, p, can_send, nat < path ? nat : path);
        }
        p->dl_valid = 1;
    }
    return p->dl;
}

/* The cached deadline of the mesh (mesh_dl_valid). */
static uint64_t mesh_deadline(p2p_host *h)
{
    if (h->closed) {
        h->mesh_dl = P2P_TIME_NEVER;
    } else if (!h->mesh_dl_valid) {
        h->mesh_dl = p2p_mesh_deadline(h);
        h->mesh_dl_valid = 1;
    }
    return h->mesh_dl;
}

static uint64_t reach_deadline(const p2p_host *h);
static void reach_timer(p2p_host *h, uint64_t now);

/* Deadlines are cached: this is logically const, physically a cache fill. */
uint64_t p2p_host_next_timeout(const p2p_host *ch)
{
    p2p_host *h = (p2p_host *)ch;
    uint64_t t = mesh_deadline(h);
    uint64_t r = reach_deadline(h); /* issue 12 */
    if (r < t) t = r;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (p && peer_deadline(h, p) < t) t = p->dl;
    }
    return t;
}

/* The handshake's timer, with the NAT's punch timer of an attempt that is being introduced. */
static void hs_timer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (p2p_hs_expired(h, p, now)) return;
    if (p->initiator && p->state == P2P_S_INIT_SENT && p->intro_state != P2P_INTRO_NONE) {
        p2p_nat_punch_timer(h, p, now);
        /* A punch it asked for goes before the resend it makes unneeded. */
        if (h->notes_len) route(h);
        if (p->dead || !p->hs) return;
    }
    p2p_hs_resend(h, p, now);
}

/* An established session's timer, then its path's. */
static void peer_timer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    int r = p2p_peer_on_timeout(h, p, now);
    if (!(r & P2P_TIMER_LIVE)) return;
    if ((r & P2P_TIMER_STALLED) && p2p_path_stalled(p)) p2p_nat_reintroduce(h, p, now);
    p2p_nat_punch_timer(h, p, now); /* issue 12: relay hand-over asks */
    if (p2p_path_on_timeout(h, p, now) == P2P_PATH_PROBE) p2p_host_probe(h, p, now);
    p2p_ready(h, p);
}

int p2p_host_on_timeout(p2p_host *h, uint64_t now)
{
    if (now > h->now) h->now = now;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (!p || peer_deadline(h, p) > h->now) continue;
        p->dl_valid = 0;
        if (p->hs)
            hs_timer(h, p, h->now);
        else
            peer_timer(h, p, h->now);
        settle(h);
    }
    if (mesh_deadline(h) <= h->now) {
        p2p_mesh_on_timeout(h, h->now);
        settle(h);
    }
    if (reach_deadline(h) <= h->now) reach_timer(h, h->now); /* issue 12 */
    settle(h); /* issue 12: what changed between inputs (addresses to tell) */
    return h->closed ? P2P_ERR_CLOSED : 0;
}

/* ---- API -------------------------------------------------------------------------------- */

p2p_peer *p2p_host_dial(p2p_host *h, const p2p_addr *cands, size_t n, const uint8_t *expected_id,
                        uint64_t now, int *rc)
{
    p2p_peer *p = p2p_attempt_new(h, cands, n, expected_id, NULL, rc);
    if (!p) return NULL;
    *rc = p2p_hs_start(h, p, now);
    if (*rc) {
        peer_free(h, p);
        return NULL;
    }
    return p;
}

int p2p_host_connect(p2p_host *h, const p2p_addr *addr, const uint8_t *expected_id, uint64_t now,
                     p2p_peer_handle *out)
{
    if (h->closed) return P2P_ERR_CLOSED;
    /* Only IPv4 and IPv6 (the scope of anything else is INVALID); nothing can answer from an
     * unspecified, multicast or broadcast address, port 0, nor from a link-local one without
     * the interface it is on (its zone). */
    if (!addr || p2p_addr_scope(addr) == P2P_SCOPE_INVALID) return P2P_ERR_ADDRESS;
    if (now > h->now) h->now = now;
    int rc;
    p2p_peer *p = p2p_host_dial(h, addr, 1, expected_id, h->now, &rc);
    if (!p) return rc;
    if (out) *out = p->handle;
    settle(h);
    return 0;
}

int p2p_host_connect_id(p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now,
                        p2p_peer_handle *out)
{
    h->mesh_dl_valid = 0;
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    int rc = p2p_mesh_connect_id(h, id, out);
    settle(h);
    return rc;
}

int p2p_host_connect_via(p2p_host *h, const uint8_t id[P2P_ID_LEN], const p2p_addr *via,
                         uint64_t now, p2p_peer_handle *out)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (!via || p2p_addr_scope(via) == P2P_SCOPE_INVALID) return P2P_ERR_ADDRESS;
    if (memcmp(id, h->ident.ed_pk, P2P_ID_LEN) == 0) return P2P_ERR_INVALID;
    if (now > h->now) h->now = now;
    int rc = p2p_nat_connect_via(h, id, via, out);
    settle(h);
    return rc;
}

int p2p_host_broadcast_lane(p2p_host *h, uint8_t lane, uint16_t type, const uint8_t *data,
                            size_t len, uint64_t *seq, uint64_t now)
{
    if (lane > P2P_LANE_MAX) return P2P_ERR_INVALID;
    h->mesh_dl_valid = 0;
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    return p2p_mesh_broadcast(h, lane, type, data, len, seq, h->now);
}

int p2p_host_broadcast(p2p_host *h, uint16_t type, const uint8_t *data, size_t len, uint64_t *seq,
                       uint64_t now)
{
    return p2p_host_broadcast_lane(h, 0, type, data, len, seq, now);
}

int p2p_host_set_lane(p2p_host *h, uint8_t lane, int priority, int weight)
{
    if (lane > P2P_LANE_MAX || priority < 0 || priority > P2P_LANE_PRIORITY_MAX || weight < 1 ||
        weight > P2P_LANE_WEIGHT_MAX)
        return P2P_ERR_INVALID;
    h->lane_prio[lane] = (uint8_t)priority;
    h->lane_weight[lane] = (uint16_t)weight;
    return 0;
}

int p2p_host_add_address(p2p_host *h, const p2p_addr *a, uint64_t now)
{
    if (now > h->now) h->now = now;
    int rc = p2p_mesh_add_address(h, a, h->now);
    settle(h); /* issue 12: peers hear of it (ADDRS) */
    return rc;
}

size_t p2p_host_addresses(const p2p_host *h, p2p_addr *out, int *kinds, size_t cap)
{
    for (size_t i = 0; i < h->naddr && i < cap; i++) {
        out[i] = h->addrs[i];
        if (kinds) kinds[i] = i < h->nlocal ? P2P_ADDR_LOCAL : h->addr_kind[i];
    }
    return h->naddr;
}

int p2p_host_admit(p2p_host *h, p2p_peer_handle handle, int accept, uint64_t now)
{
    p2p_peer *p = p2p_lookup(h, handle);
    if (!p || p->state != P2P_S_WAIT_ADMIT) return P2P_ERR_PEER;
    if (now > h->now) h->now = now;
    int rc = p2p_hs_admit(h, p, accept, h->now);
    settle(h);
    return rc;
}

int p2p_peer_disconnect(p2p_host *h, p2p_peer_handle handle, uint64_t now)
{
    p2p_peer *p = p2p_lookup(h, handle);
    if (!p || p->state == P2P_S_CLOSING) return P2P_ERR_PEER;
    if (now > h->now) h->now = now;
    if (p->state == P2P_S_CONNECTED)
        p2p_peer_end(h, p, P2P_LEAVE_CLOSED, 1, P2P_CLOSE_CLOSED);
    else
        p2p_kill(h, p);
    settle(h);
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
    const p2p_peer *p = p2p_lookup(h, handle);
    if (!p) return P2P_ERR_PEER;
    switch (p->state) {
    case P2P_S_CONNECTED: info->state = P2P_PEER_CONNECTED; break;
    case P2P_S_CLOSING: info->state = P2P_PEER_DISCONNECTED; break;
    default: info->state = P2P_PEER_CONNECTING;
    }
    if (p->has_id) {
        info->has_id = 1;
        memcpy(info->id, p->id, P2P_ID_LEN);
    } else if (p->has_expected) {
        info->has_id = 1;
        memcpy(info->id, p->expected, P2P_ID_LEN);
    }
    info->address = p->addr;
    info->direct = p->addr.family != P2P_AF_RELAY;
    if (p->addr.family == P2P_AF_STREAM) { /* issue 12: the TCP endpoint it runs to */
        const p2p_stream *st = stream_find((p2p_host *)h, p2p_get_u32(p->addr.ip));
        if (st) info->address = st->peer_ip;
    }
    if (!info->direct) {
        const p2p_peer *r = p2p_lookup_index(h, p2p_get_u32(p->addr.ip));
        if (r) info->address = r->addr;
    }
    info->srtt_us = p->rec.has_rtt ? p->rec.srtt : 0;
    info->bytes_queued = p2p_peer_queued(p);
    /* issue 10 (congestion control) */
    info->min_rtt_us = p->rec.has_rtt ? p->rec.min_rtt : 0;
    info->cwnd = p2p_cc_window(&p->rec.cc);
    info->bandwidth = p2p_cc_bandwidth(&p->rec.cc);
    info->in_flight = p->rec.in_flight;
    info->lost = p->rec.lost_packets;
    info->spurious = p->rec.spurious_losses;
    info->retransmits = p->retransmits;
    return 0;
}

p2p_peer_handle p2p_host_find(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    return p2p_find_connected(h, id);
}

size_t p2p_host_peers(const p2p_host *h, p2p_peer_handle *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        /* Responder half-open entries are not peers yet: nobody asked for them. */
        if (!p || p->state == P2P_S_HALF_OPEN || p->state == P2P_S_WAIT_ADMIT ||
            p->state == P2P_S_CLOSING)
            continue;
        if (n < cap) out[n] = p->handle;
        n++;
    }
    return n;
}

static void reach_close(p2p_host *h, uint64_t now);

int p2p_host_close(p2p_host *h, uint64_t now)
{
    if (h->closed) return 0;
    if (now > h->now) h->now = now;
    for (size_t i = 0; i < h->peers.n; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (!p) continue;
        if (p->state == P2P_S_CONNECTED)
            p2p_peer_end(h, p, P2P_LEAVE_CLOSED, 1, P2P_CLOSE_CLOSED);
        else if (p->state != P2P_S_CLOSING)
            p2p_kill(h, p);
    }
    reach_close(h, h->now); /* issue 12: mappings deleted, streams closed */
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

/* ---- streaming transfers (p2p_transfer.c) --------------------------------------------------- */

int p2p_host_transfer_open(p2p_host *h, p2p_peer_handle peer, int lane, uint64_t total,
                           const uint8_t *meta, size_t len, uint32_t *out, uint64_t now)
{
    if (now > h->now) h->now = now;
    int rc = p2p_transfer_open(h, peer, lane, total, meta, len, out);
    settle(h);
    return rc;
}

int p2p_host_transfer_write(p2p_host *h, uint32_t transfer, const uint8_t *data, size_t len,
                            uint64_t now)
{
    if (now > h->now) h->now = now;
    return p2p_transfer_write(h, transfer, data, len);
}

int p2p_host_transfer_absorb(p2p_host *h, uint32_t transfer, const uint8_t *data, size_t len)
{
    return p2p_transfer_absorb(h, transfer, data, len);
}

int p2p_host_transfer_finish(p2p_host *h, uint32_t transfer, uint64_t now)
{
    if (now > h->now) h->now = now;
    return p2p_transfer_finish(h, transfer);
}

int p2p_host_transfer_accept(p2p_host *h, uint32_t transfer, uint64_t offset, uint64_t now)
{
    if (now > h->now) h->now = now;
    return p2p_transfer_accept(h, transfer, offset);
}

int p2p_host_transfer_cancel(p2p_host *h, uint32_t transfer, const char *reason, uint64_t now)
{
    if (now > h->now) h->now = now;
    return p2p_transfer_cancel(h, transfer, reason);
}

int p2p_host_transfer_info(const p2p_host *h, uint32_t transfer, p2p_transfer_info *info)
{
    return p2p_transfer_get_info(h, transfer, info);
}

/* ---- issue 12: reach every peer (docs/PROTOCOL.md sections 8.7-8.9) ------------------------
 *
 * The hub's part: the io queue to the driver, the streams the driver holds (TCP and WebSocket
 * relays), the fallback to a stream when UDP gets no answers, and the timers and datagrams of
 * the port-mapping, STUN and LAN modules. */

static int reach_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    h->started = now;
    h->punch_off = cfg->punch_off;
    h->fallback_off = cfg->fallback_off;
    if (cfg->nfallback > P2P_FALLBACKS || cfg->nstun > P2P_STUN_SERVERS) return P2P_ERR_INVALID;
    h->nfallback = cfg->nfallback;
    for (size_t i = 0; i < cfg->nfallback; i++) h->fallback[i] = cfg->fallback[i];
    h->fallback_default = !cfg->fallback_off && !cfg->nfallback;
    h->fb_at = P2P_TIME_NEVER;
    h->fb_gap = P2P_FALLBACK_RETRY_US;
    int rc = p2p_portmap_init(h, cfg, now);
    if (!rc) rc = p2p_probe_init(h, cfg, now);
    if (!rc) rc = p2p_lan_init(h, cfg, now);
    return rc;
}

static void reach_free(p2p_host *h)
{
    p2p_portmap_free(h);
    p2p_probe_free(h);
    p2p_lan_free(h);
    free(h->io_taken);
    for (p2p_ioq_item *it = h->ioq_head, *n; it; it = n) {
        n = it->next;
        free(it->data);
        free(it);
    }
    if (h->io_taken) free(h->io_taken->data);
    for (p2p_txq_item *t = h->lanq_head, *n; t; t = n) {
        n = t->next;
        free(t);
    }
    free(h->punch);
}

static p2p_stream *stream_find(p2p_host *h, uint32_t sid)
{
    for (size_t i = 0; i < P2P_STREAMS; i++)
        if (h->streams[i].used && h->streams[i].sid == sid) return &h->streams[i];
    return NULL;
}

static p2p_addr stream_addr(uint32_t sid)
{
    p2p_addr a;
    memset(&a, 0, sizeof a);
    a.family = P2P_AF_STREAM;
    p2p_put_u32(a.ip, sid);
    return a;
}

/* A free slot of streams[] taken, or a used one given back. */
static void stream_take(p2p_host *h, p2p_stream *st)
{
    memset(st, 0, sizeof *st);
    st->used = 1;
    h->nstreams++;
}

static void stream_free(p2p_host *h, p2p_stream *st)
{
    if (st->used) h->nstreams--;
    memset(st, 0, sizeof *st);
}

static void stream_close(p2p_host *h, p2p_stream *st)
{
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_TCP_CLOSE;
    io.id = st->sid;
    io.addr = stream_addr(st->sid);
    p2p_io_push(h, &io, NULL, 0);
    if (h->fb_sid == st->sid) {
        h->fb_sid = 0;
        h->fb_state = 0;
    }
    stream_free(h, st);
}

/* 1 when a session uses the stream (2: an established one), 0 when none does. */
static int stream_in_use(const p2p_host *h, uint32_t sid)
{
    p2p_addr a = stream_addr(sid);
    int used = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (!p || p->state == P2P_S_CLOSING) continue;
        if (p2p_addr_equal(&p->addr, &a)) {
            if (p->state == P2P_S_CONNECTED) return 2;
            used = 1;
        }
        for (size_t k = 0; p->hs && k < p->ncand; k++)
            if (p2p_addr_equal(&p->cand[k], &a)) used = 1;
    }
    return used;
}

/* The fallback's candidate endpoint number i: a configured URL, or by default the TCP port
 * equal to the UDP port of an address the application gave to an attempt now running. */
static int fallback_target(p2p_host *h, size_t i, p2p_addr *to, int *ws)
{
    if (h->nfallback) {
        if (i >= h->nfallback) return 0;
        *to = h->fallback[i].addr;
        *ws = h->fallback[i].ws;
        return 1;
    }
    if (!h->fallback_default) return 0;
    size_t k = 0;
    for (size_t s = 0; s < h->peers.hwm; s++) {
        const p2p_peer *p = h->peers.slots[s];
        if (!p || !p->initiator || !p->hs || !p->ncand) continue;
        if (p->introducer || (p->auto_dial && !p->app_dialled)) continue; /* not app-given */
        if (p->cand[0].family != P2P_AF_INET4 && p->cand[0].family != P2P_AF_INET6) continue;
        if (k++ == i) {
            *to = p->cand[0];
            to->sock = 0;
            *ws = 0;
            return 1;
        }
    }
    return 0;
}

/* When the fallback's trigger holds: an attempt has been sending INIT for
 * P2P_FALLBACK_AFTER_US and no UDP datagram came from anyone for as long (P2P_TIME_NEVER: no
 * attempt is running). */
static uint64_t silent_from(const p2p_host *h)
{
    uint64_t first = P2P_TIME_NEVER;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        const p2p_peer *p = h->peers.slots[i];
        if (p && p->initiator && p->hs && p->state == P2P_S_INIT_SENT && p->hs->rtt_sends &&
            p->hs->rtt_from < first)
            first = p->hs->rtt_from;
    }
    if (first == P2P_TIME_NEVER) return first;
    uint64_t heard = h->last_udp_rx > h->started ? h->last_udp_rx : h->started;
    return (first > heard ? first : heard) + P2P_FALLBACK_AFTER_US;
}

/* The earliest the trigger can hold, without the scan of silent_from: UDP has been heard
 * within P2P_FALLBACK_AFTER_US (or the node is that young) until then. An early bound makes
 * the timer look sooner than needed, never later; the host's deadline is asked for at every
 * step, so this keeps a busy node's steps free of a scan of all its peers. */
static uint64_t silent_after(const p2p_host *h)
{
    uint64_t heard = h->last_udp_rx > h->started ? h->last_udp_rx : h->started;
    uint64_t bound = heard + P2P_FALLBACK_AFTER_US;
    return bound > h->now ? bound : silent_from(h);
}

static void fallback_open(p2p_host *h, uint64_t now)
{
    p2p_addr to;
    int ws = 0;
    if (!fallback_target(h, h->fb_next, &to, &ws)) {
        /* the list is done: again later, waiting longer each time */
        h->fb_next = 0;
        h->fb_at = now + h->fb_gap;
        h->fb_gap =
            h->fb_gap * 2 > P2P_FALLBACK_RETRY_MAX_US ? P2P_FALLBACK_RETRY_MAX_US : h->fb_gap * 2;
        return;
    }
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_TCP_OPEN;
    io.id = p2p_io_id(h);
    io.addr = to;
    io.ws = ws;
    if (ws && h->nfallback) {
        memcpy(io.host, h->fallback[h->fb_next].host, sizeof io.host);
        memcpy(io.path, h->fallback[h->fb_next].path, sizeof io.path);
        io.host[sizeof io.host - 1] = 0;
        io.path[sizeof io.path - 1] = 0;
    }
    if (p2p_io_push(h, &io, NULL, 0)) {
        h->fb_at = now + P2P_FALLBACK_NEXT_US;
        return;
    }
    for (size_t i = 0; i < P2P_STREAMS; i++) {
        p2p_stream *st = &h->streams[i];
        if (st->used) continue;
        stream_take(h, st);
        st->sid = io.id;
        st->peer_ip = to;
        st->ws = (uint8_t)ws;
        st->opened = now;
        st->idle_since = now;
        break;
    }
    h->fb_sid = io.id;
    h->fb_state = 1;
    h->fb_to = to;
    h->fb_ws = ws;
    h->fb_next++;
    h->fb_at = now + P2P_FALLBACK_NEXT_US;
}

static int same_ip(const p2p_addr *a, const p2p_addr *b)
{
    if (a->family != b->family) return 0;
    return memcmp(a->ip, b->ip, a->family == P2P_AF_INET4 ? 4 : 16) == 0;
}

/* The fallback stream is up: it becomes a candidate of every attempt towards its endpoint's
 * IP (the mediator the application gave), which sends INIT on it at once; with none, an
 * attempt of its own is made on it, quietly. */
static void fallback_up(p2p_host *h, p2p_stream *st, uint64_t now)
{
    (void)now;
    p2p_addr sa = stream_addr(st->sid);
    int used = 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (!p || !p->initiator || !p->hs || p->state != P2P_S_INIT_SENT) continue;
        for (size_t k = 0; k < p->ncand; k++) {
            if (!same_ip(&p->cand[k], &st->peer_ip)) continue;
            if (p->ncand < P2P_CANDIDATES) {
                p->has_udp_home = 1;
                p->udp_home = p->cand[k];
                p->cand[p->ncand++] = sa;
                p2p_punch(h, p);
                used = 1;
            }
            break;
        }
    }
    if (!used) {
        int rc;
        p2p_peer *p = p2p_attempt_new(h, &sa, 1, NULL, NULL, &rc);
        if (p) {
            p->auto_dial = 1;
            p->has_udp_home = 1;
            p->udp_home = st->peer_ip;
        }
    }
}

/* When a stream no session uses is closed: an inbound one that never carried a session 10 s
 * after it came up (P2P_STREAM_FIRST_US), any other 30 s after its last session left. */
static uint64_t stream_expiry(const p2p_stream *st)
{
    if (st->inbound && !st->used_once) return st->opened + P2P_STREAM_FIRST_US;
    return st->idle_since + P2P_STREAM_LINGER_US;
}

static uint64_t reach_deadline(const p2p_host *h)
{
    if (h->closed) return P2P_TIME_NEVER;
    uint64_t t = p2p_portmap_deadline(h), u = p2p_probe_deadline(h), v = p2p_lan_deadline(h);
    if (u < t) t = u;
    if (v < t) t = v;
    if (h->fb_at < t) t = h->fb_at;
    if (!h->fallback_off && h->fb_state == 0 && h->fb_at == P2P_TIME_NEVER &&
        (h->nfallback || h->fallback_default)) {
        uint64_t trigger = silent_after(h);
        if (trigger < t) t = trigger;
    }
    for (size_t i = 0; h->nstreams && i < P2P_STREAMS; i++) {
        const p2p_stream *st = &h->streams[i];
        if (!st->used || !st->up) continue;
        uint64_t idle = stream_expiry(st);
        if (idle < t) t = idle;
    }
    return t;
}

static void reach_timer(p2p_host *h, uint64_t now)
{
    if (p2p_portmap_deadline(h) <= now) p2p_portmap_timer(h, now);
    if (p2p_probe_deadline(h) <= now) p2p_probe_timer(h, now);
    if (p2p_lan_deadline(h) <= now) p2p_lan_timer(h, now);
    settle(h);
    if (!h->fallback_off && (h->nfallback || h->fallback_default)) {
        if (h->fb_state == 1 && h->fb_at <= now) { /* did not come up in time: the next one */
            p2p_stream *st = stream_find(h, h->fb_sid);
            if (st) stream_close(h, st);
            h->fb_state = 0;
            fallback_open(h, now);
        } else if (h->fb_state == 0 && (h->fb_at <= now || h->fb_at == P2P_TIME_NEVER) &&
                   silent_after(h) <= now) {
            fallback_open(h, now);
        } else if (h->fb_state == 0 && h->fb_at <= now) {
            h->fb_at = P2P_TIME_NEVER; /* UDP answers again: stand down */
        }
    }
    /* streams no session uses any more are closed after a while */
    for (size_t i = 0; h->nstreams && i < P2P_STREAMS; i++) {
        p2p_stream *st = &h->streams[i];
        if (!st->used || !st->up) continue;
        int use = stream_in_use(h, st->sid);
        if (use == 2) st->used_once = 1; /* an established session, not a handshake */
        if (use && (st->used_once || !st->inbound)) {
            st->idle_since = now;
        } else if (stream_expiry(st) <= now) {
            stream_close(h, st);
        }
    }
    settle(h);
}

static void reach_close(p2p_host *h, uint64_t now)
{
    p2p_portmap_close(h, now);
    p2p_probe_close(h, now);
    p2p_lan_close(h, now);
    for (size_t i = 0; i < P2P_STREAMS; i++)
        if (h->streams[i].used) stream_close(h, &h->streams[i]);
    h->fb_at = P2P_TIME_NEVER;
}

int p2p_host_next_io(p2p_host *h, p2p_io *out)
{
    if (h->io_taken) { /* its request bytes were the driver's until this call */
        free(h->io_taken->data);
        free(h->io_taken);
        h->io_taken = NULL;
    }
    p2p_ioq_item *it = h->ioq_head;
    if (!it) return 0;
    h->ioq_head = it->next;
    if (!h->ioq_head) h->ioq_tail = NULL;
    h->ioq_len--;
    *out = it->io;
    h->io_taken = it;
    return 1;
}

int p2p_host_io_done(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    switch (r->kind) {
    case P2P_IO_GATEWAY:
    case P2P_IO_HTTP: p2p_portmap_on_io(h, r, h->now); break;
    case P2P_IO_LAN_START: p2p_lan_on_io(h, r, h->now); break;
    case P2P_IO_PUNCH_OPEN: p2p_path_on_io(h, r, h->now); break; /* birthday round (H) */
    default: break;
    }
    settle(h);
    return 0;
}

int p2p_host_stream_up(p2p_host *h, uint32_t sid, const p2p_addr *from_ip, int inbound,
                       uint64_t now)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    p2p_stream *st = stream_find(h, sid);
    if (inbound) {
        if (st || !(sid & 0x80000000u)) return P2P_ERR_INVALID;
        /* One IP may hold a few streams; a local proxy in front (nginx) carries everyone. */
        size_t same = 0, slot = P2P_STREAMS;
        for (size_t i = 0; i < P2P_STREAMS; i++) {
            if (!h->streams[i].used) {
                if (slot == P2P_STREAMS) slot = i;
                continue;
            }
            if (h->streams[i].inbound && same_ip(&h->streams[i].peer_ip, from_ip)) same++;
        }
        if (slot == P2P_STREAMS) return P2P_ERR_LIMIT;
        p2p_addr ip = *from_ip;
        ip.port = 1; /* the scope of the IP, whatever port the driver gave */
        if (same >= P2P_STREAMS_PER_IP && p2p_addr_scope(&ip) != P2P_SCOPE_LOOPBACK)
            return P2P_ERR_LIMIT;
        st = &h->streams[slot];
        stream_take(h, st);
        st->sid = sid;
        st->inbound = 1;
        st->ws = inbound == 2;
        st->peer_ip = *from_ip;
        st->opened = h->now;
    } else if (!st) {
        return P2P_ERR_INVALID; /* not one we asked for (or given up on already) */
    }
    st->up = 1;
    st->idle_since = h->now;
    h->stats.stream_up++;
    if (!inbound && sid == h->fb_sid) {
        h->fb_state = 2;
        h->fb_at = P2P_TIME_NEVER;
        h->fb_gap = P2P_FALLBACK_RETRY_US;
        fallback_up(h, st, h->now);
    }
    settle(h);
    return 0;
}

int p2p_host_stream_down(p2p_host *h, uint32_t sid, uint64_t now)
{
    if (now > h->now) h->now = now;
    p2p_stream *st = stream_find(h, sid);
    if (!st) return h->closed ? P2P_ERR_CLOSED : 0;
    if (sid == h->fb_sid) {
        h->fb_sid = 0;
        h->fb_state = 0;
        h->fb_at = h->closed ? P2P_TIME_NEVER : h->now; /* the next one, if UDP is still silent */
    }
    stream_free(h, st);
    settle(h);
    return h->closed ? P2P_ERR_CLOSED : 0;
}

int p2p_host_recv_lan(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                      uint64_t now)
{
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    if (from->family != P2P_AF_INET4 && from->family != P2P_AF_INET6) return 0;
    p2p_lan_on_datagram(h, from, buf, len, h->now);
    settle(h);
    return 0;
}

size_t p2p_host_next_lan(p2p_host *h, p2p_addr *to, uint8_t *buf, size_t cap)
{
    p2p_txq_item *t = h->lanq_head;
    if (!t) return 0;
    h->lanq_head = t->next;
    if (!h->lanq_head) h->lanq_tail = NULL;
    h->lanq_len--;
    size_t n = 0;
    if (t->len <= cap) {
        *to = t->to;
        memcpy(buf, t->data, t->len);
        n = t->len;
        h->stats.lan_sent++;
    }
    free(t);
    return n;
}

void p2p_host_network_changed(p2p_host *h, uint64_t now)
{
    if (h->closed) return;
    if (now > h->now) h->now = now;
    p2p_portmap_network_changed(h, h->now);
    p2p_probe_network_changed(h, h->now);
    p2p_lan_network_changed(h, h->now);
    settle(h);
}

void p2p_host_nat(const p2p_host *h, p2p_nat_info *out)
{
    memset(out, 0, sizeof *out);
    out->mapping = h->mapping;
    out->source = h->mapping_source;
    p2p_portmap_info(h, out);
    if (h->last_udp_rx)
        out->udp = P2P_UDP_OK;
    else if (h->fb_state == 2)
        out->udp = P2P_UDP_BLOCKED;
    else
        out->udp = P2P_UDP_UNKNOWN;
    if (h->fb_state == 2) {
        out->has_stream = 1;
        out->stream_to = h->fb_to;
        out->stream_ws = h->fb_ws;
    }
}

size_t p2p_host_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap)
{
    return p2p_lan_peers(h, out, cap);
}
