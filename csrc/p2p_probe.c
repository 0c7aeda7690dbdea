/*
 * p2p_probe.c - the STUN client of p2p_probe.h (design12 sections 3.1 and 4.2).
 *
 * A transaction is one request (test I, II or III to one address) with its 96-bit id, sent at
 * most three times; it ends with an answer or with silence. The mapping is decided from the
 * answers as soon as they allow it (RFC 5780 section 4.3).
 */
#include "p2p_probe.h"

#include <stdlib.h>
#include <string.h>

#include "p2p_guard.h"
#include "p2p_stun.h"

#define MS UINT64_C(1000)

/* Tries at 0, 0.5 and 1.5 s (RFC 8489 section 6.2.1 with RTO 500 ms, cut to three); silence
 * is final 1.5 s after the last. */
static const uint64_t TRY_AT[] = {0, 500 * MS, 1500 * MS, 3000 * MS};
#define TRIES 3
#define TXNS (P2P_STUN_SERVERS + 2)

enum { TEST_I = 1, TEST_II = 2, TEST_III = 3 };

typedef struct probe_txn {
    uint8_t used, test, tries;
    uint8_t server; /* index in servers[] */
    p2p_addr to;
    uint8_t txid[12];
    uint64_t start, next;
} probe_txn;

typedef struct probe_server {
    p2p_addr addr;
    uint8_t silent;    /* test I got no answer: not asked again on this network */
    uint8_t has_m1;    /* test I answered: */
    p2p_addr m1;       /* ... with this reflexive address */
    uint8_t has_other; /* ... and this OTHER-ADDRESS */
    p2p_addr other;
} probe_server;

struct p2p_probe {
    probe_server servers[P2P_STUN_SERVERS];
    size_t nservers;
    probe_txn txns[TXNS];
    int closed;
    uint64_t refresh_at;
    /* the RFC 5780 test against the first server that named an alternate */
    int rfc5780;            /* -1: not started; else the server's index */
    uint8_t has_m2, has_m3; /* tests II and III answered */
    uint8_t ii_done, iii_done;
    p2p_addr m2, m3;
    uint8_t mapping; /* P2P_MAPPING_* told so far (UNKNOWN: nothing) */
    int has_stun;    /* the node advertises stun_addr */
    p2p_addr stun_addr;
};

static struct p2p_probe *pr_of(const p2p_host *h)
{
    return h->probe;
}

int p2p_probe_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    h->probe = NULL;
    if (!cfg->nstun) return 0;
    struct p2p_probe *p = calloc(1, sizeof *p);
    if (!p) return P2P_ERR_NOMEM;
    for (size_t i = 0; i < cfg->nstun && i < P2P_STUN_SERVERS; i++) {
        const p2p_addr *a = &cfg->stun[i];
        if ((a->family != P2P_AF_INET4 && a->family != P2P_AF_INET6) || !a->port) continue;
        p->servers[p->nservers].addr = *a;
        p->servers[p->nservers].addr.sock = 0;
        p->nservers++;
    }
    p->rfc5780 = -1;
    p->refresh_at = now; /* test I to every server at the first timer */
    h->probe = p;
    return 0;
}

void p2p_probe_free(p2p_host *h)
{
    free(h->probe);
    h->probe = NULL;
}

uint64_t p2p_probe_deadline(const p2p_host *h)
{
    const struct p2p_probe *p = pr_of(h);
    if (!p || p->closed) return P2P_TIME_NEVER;
    uint64_t t = p->refresh_at;
    for (size_t i = 0; i < TXNS; i++)
        if (p->txns[i].used && p->txns[i].next < t) t = p->txns[i].next;
    return t;
}

/* ---- transactions ------------------------------------------------------------------------ */

static void send_req(p2p_host *h, probe_txn *t)
{
    uint8_t b[64];
    size_t n = p2p_stun_request(b, sizeof b, t->txid, 0);
    /* the guard sends nothing to an address that never answered without a probe ticket: the
     * server is the application's, but the ticket keeps the count honest all the same */
    if (n && p2p_tx_push_own(h, &t->to, b, n) == 0) h->stats.stun_sent++;
}

/* Opens a transaction (unless one for that test and address is open) and sends at once. */
static void open_txn(p2p_host *h, struct p2p_probe *p, int test, size_t server, const p2p_addr *to,
                     uint64_t now)
{
    probe_txn *slot = NULL;
    for (size_t i = 0; i < TXNS; i++) {
        probe_txn *t = &p->txns[i];
        if (t->used && t->test == test && t->server == server) return;
        if (!t->used && !slot) slot = t;
    }
    if (!slot) return;
    memset(slot, 0, sizeof *slot);
    slot->used = 1;
    slot->test = (uint8_t)test;
    slot->server = (uint8_t)server;
    slot->to = *to;
    slot->to.sock = 0;
    p2p_rng_bytes(&h->rng, slot->txid, sizeof slot->txid);
    slot->start = now;
    slot->tries = 1;
    slot->next = now + TRY_AT[1];
    send_req(h, slot);
}

static int is_local(const p2p_host *h, const p2p_addr *a)
{
    for (size_t i = 0; i < h->nlocal && i < P2P_MEMBER_ADDRS; i++)
        if (h->addrs[i].family == a->family && h->addrs[i].port == a->port &&
            !memcmp(h->addrs[i].ip, a->ip, a->family == P2P_AF_INET4 ? 4 : 16))
            return 1;
    return 0;
}

static int same(const p2p_addr *a, const p2p_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           !memcmp(a->ip, b->ip, a->family == P2P_AF_INET4 ? 4 : 16);
}

/* Decides the mapping from what the answers say so far, and tells the node when it changed. */
static void decide(p2p_host *h, struct p2p_probe *p)
{
    const probe_server *first = NULL, *second = NULL;
    for (size_t i = 0; i < p->nservers; i++) {
        if (!p->servers[i].has_m1) continue;
        if (!first) {
            first = &p->servers[i];
        } else if (!second) {
            second = &p->servers[i];
        }
    }
    if (!first) return;
    uint8_t m = P2P_MAPPING_UNKNOWN;
    if (is_local(h, &first->m1)) {
        m = P2P_MAPPING_NONE;
    } else if (p->rfc5780 >= 0 && p->has_m2) {
        const probe_server *s = &p->servers[p->rfc5780];
        m = same(&p->m2, &s->m1) ? P2P_MAPPING_INDEPENDENT : P2P_MAPPING_DEPENDENT;
    } else if (second && (p->rfc5780 < 0 || p->ii_done)) {
        m = same(&first->m1, &second->m1) ? P2P_MAPPING_INDEPENDENT : P2P_MAPPING_DEPENDENT;
    }
    if (m == P2P_MAPPING_UNKNOWN || m == p->mapping) return;
    p->mapping = m;
    p2p_own_mapping(h, m, P2P_MAPSRC_STUN);
}

/* The node's "stun" address: the first server's answer to test I. */
static void advertise(p2p_host *h, struct p2p_probe *p)
{
    const probe_server *first = NULL;
    for (size_t i = 0; i < p->nservers && !first; i++)
        if (p->servers[i].has_m1) first = &p->servers[i];
    if (!first) return;
    if (p->has_stun && same(&p->stun_addr, &first->m1)) return;
    if (p->has_stun) p2p_own_remove_kind(h, P2P_ADDR_STUN);
    p->has_stun = p2p_own_add_kind(h, &first->m1, P2P_ADDR_STUN, P2P_TIME_NEVER) >= 0;
    if (p->has_stun) p->stun_addr = first->m1;
}

/* A transaction ended (answered, refused or silent): what follows from it. */
static void ended(p2p_host *h, struct p2p_probe *p, probe_txn *t, const p2p_stun_msg *ans,
                  uint64_t now)
{
    probe_server *s = &p->servers[t->server];
    int test = t->test;
    t->used = 0;
    int ok = ans && ans->type == P2P_STUN_BINDING_SUCCESS && ans->has_mapped;
    if (test == TEST_I) {
        if (!ok) {
            if (!ans) s->silent = 1;
            decide(h, p);
            return;
        }
        s->has_m1 = 1;
        s->m1 = ans->mapped;
        s->m1.sock = 0;
        /* OTHER-ADDRESS counts from the primary address only (coturn names its own IP from
         * the alternate), and only when it really is another IP and port of the same family */
        if (ans->has_other && ans->other.family == s->addr.family && ans->other.port &&
            ans->other.port != s->addr.port &&
            memcmp(ans->other.ip, s->addr.ip, s->addr.family == P2P_AF_INET4 ? 4 : 16)) {
            s->has_other = 1;
            s->other = ans->other;
            s->other.sock = 0;
        }
        advertise(h, p);
        if (p->rfc5780 < 0 && s->has_other) {
            p->rfc5780 = (int)t->server;
            p2p_addr ii = s->other;
            ii.port = s->addr.port;
            open_txn(h, p, TEST_II, t->server, &ii, now);
            open_txn(h, p, TEST_III, t->server, &s->other, now);
        }
        decide(h, p);
        return;
    }
    if (test == TEST_II) {
        p->ii_done = 1;
        if (ok) {
            p->has_m2 = 1;
            p->m2 = ans->mapped;
            p->m2.sock = 0;
        }
    } else {
        p->iii_done = 1;
        if (ok) {
            p->has_m3 = 1;
            p->m3 = ans->mapped;
            p->m3.sock = 0;
        }
    }
    decide(h, p);
}

void p2p_probe_timer(p2p_host *h, uint64_t now)
{
    struct p2p_probe *p = pr_of(h);
    if (!p || p->closed) return;
    for (size_t i = 0; i < TXNS; i++) {
        probe_txn *t = &p->txns[i];
        if (!t->used || now < t->next) continue;
        if (t->tries < TRIES) {
            send_req(h, t);
            t->tries++;
            t->next = t->start + TRY_AT[t->tries];
        } else {
            ended(h, p, t, NULL, now);
        }
    }
    if (now >= p->refresh_at) {
        for (size_t i = 0; i < p->nservers; i++)
            if (!p->servers[i].silent) open_txn(h, p, TEST_I, i, &p->servers[i].addr, now);
        p->refresh_at = now + (h->n_connected ? P2P_PROBE_REFRESH_PEERS_US : P2P_PROBE_REFRESH_US);
    }
}

int p2p_probe_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                          uint64_t now)
{
    struct p2p_probe *p = pr_of(h);
    if (!p || p->closed || !from || !b || len < P2P_STUN_HEADER) return 0;
    probe_txn *t = NULL;
    for (size_t i = 0; i < TXNS && !t; i++) {
        probe_txn *c = &p->txns[i];
        if (c->used && !memcmp(c->txid, b + 8, 12) && same(&c->to, from)) t = c;
    }
    if (!t) return 0; /* not an answer to anything we asked, or from elsewhere */
    p2p_stun_msg m;
    if (p2p_stun_parse(b, len, &m) != 0) return 0;
    if (m.type != P2P_STUN_BINDING_SUCCESS && m.type != P2P_STUN_BINDING_ERROR) return 0;
    if (m.type == P2P_STUN_BINDING_SUCCESS &&
        (!m.has_mapped || (m.mapped.family != P2P_AF_INET4 && m.mapped.family != P2P_AF_INET6)))
        return 0;
    h->stats.stun_received++;
    ended(h, p, t, &m, now);
    return 1;
}

void p2p_probe_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    (void)h;
    (void)r;
    (void)now;
}

void p2p_probe_network_changed(p2p_host *h, uint64_t now)
{
    struct p2p_probe *p = pr_of(h);
    if (!p || p->closed) return;
    if (p->has_stun) p2p_own_remove_kind(h, P2P_ADDR_STUN);
    probe_server keep[P2P_STUN_SERVERS];
    size_t n = p->nservers;
    for (size_t i = 0; i < n; i++) {
        memset(&keep[i], 0, sizeof keep[i]);
        keep[i].addr = p->servers[i].addr;
    }
    memset(p, 0, sizeof *p);
    memcpy(p->servers, keep, n * sizeof keep[0]);
    p->nservers = n;
    p->rfc5780 = -1;
    p->refresh_at = now;
}

void p2p_probe_close(p2p_host *h, uint64_t now)
{
    (void)now;
    struct p2p_probe *p = pr_of(h);
    if (!p) return;
    p->closed = 1;
    memset(p->txns, 0, sizeof p->txns);
}
