/*
 * p2p_mesh.c - membership and broadcast (docs/PROTOCOL.md section 7).
 *
 * Membership: each member signs a record of its id and addresses. A node that joins through
 * one member gets that member's list (a bootstrap session) and dials everyone in it; every
 * member hears of the newcomer from the member it joined through, which forwards records it
 * received first-hand only. So a join costs each node O(N) records, not O(N^2). Of two nodes
 * that learn of each other, the lower id dials at once and the higher one only after a
 * delay, so simultaneous dials are rare.
 *
 * Broadcast: the origin signs and sends to every peer it holds a session with. Every member
 * that receives a broadcast for the first time delivers it, keeps it for a minute, and tells
 * its other peers (IHAVE); a member that hears of a broadcast it lacks, and does not get the
 * direct copy soon, pulls it (IWANT). Duplicates are suppressed by a per-origin window.
 */
#include "p2p_internal.h"

#include <stdlib.h>
#include <string.h>

static const char member_label[] = "p2pnet/1 member";
static const char bcast_label[] = "p2pnet/1 broadcast";
#define BCAST_HEAD (32 + 8 + 2)
#define BCAST_OVERHEAD (BCAST_HEAD + 64)
#define WANT_ENTRY 40

static uint64_t unix_s(const p2p_host *h, uint64_t now)
{
    const p2p_mesh *m = &h->mesh;
    if (!m->unix_base) return 0;
    return (m->unix_base + (now - m->mono_base)) / 1000000u;
}

/* ---- the member table ------------------------------------------------------------------- */

static p2p_member *member_find(const p2p_host *h, const uint8_t id[32])
{
    for (size_t i = 0; i < h->mesh.n; i++)
        if (memcmp(h->mesh.m[i].id, id, 32) == 0) return &h->mesh.m[i];
    return NULL;
}

static p2p_member *member_add(p2p_host *h, const uint8_t id[32])
{
    p2p_mesh *m = &h->mesh;
    p2p_member *x = member_find(h, id);
    if (x) return x;
    if (m->n >= m->max) return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        p2p_member *v = realloc(m->m, cap * sizeof *v);
        if (!v) return NULL;
        m->m = v;
        m->cap = cap;
    }
    x = &m->m[m->n++];
    memset(x, 0, sizeof *x);
    memcpy(x->id, id, 32);
    x->dial_at = P2P_TIME_NEVER;
    return x;
}

static void member_remove(p2p_host *h, p2p_member *x)
{
    p2p_mesh *m = &h->mesh;
    *x = m->m[--m->n];
}

/* The live session (connected or being made) for an id, or NULL. */
static p2p_peer *session_for(const p2p_host *h, const uint8_t id[32])
{
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *p = h->slots[i];
        if (!p || p->state == P2P_S_CLOSING) continue;
        if ((p->has_id && memcmp(p->id, id, 32) == 0) ||
            (!p->has_id && p->has_expected && memcmp(p->expected, id, 32) == 0))
            return p;
    }
    return NULL;
}

static p2p_peer *dial_member(p2p_host *h, p2p_member *x, uint64_t now, int *rc);

static int mesh_peer(const p2p_peer *p) { return p->state == P2P_S_CONNECTED && p->peer_mesh; }

/* ---- records ---------------------------------------------------------------------------- */

/* Signs a fresh own record with the current addresses and a new sequence number. */
static void sign_own(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint8_t buf[sizeof member_label - 1 + P2P_MEMBER_REC_MAX];
    uint8_t *body = buf + sizeof member_label - 1;
    memcpy(buf, member_label, sizeof member_label - 1);
    uint64_t t = unix_s(h, now);
    p2p_wr w;
    p2p_wr_init(&w, body, P2P_MEMBER_REC_MAX - 64);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, h->ident.ed_pk, 32);
    p2p_wr_u64(&w, ++m->own_seq);
    p2p_wr_u64(&w, t ? t + P2P_MEMBER_TTL_S : 0);
    p2p_wr_u8(&w, (uint8_t)m->naddr);
    for (size_t i = 0; i < m->naddr; i++) p2p_wr_addr(&w, &m->addrs[i]);
    size_t blen = (size_t)(w.p - body);
    p2p_sign(body + blen, buf, sizeof member_label - 1 + blen, h->ident.ed_sk);
    m->own_len = (uint16_t)(blen + 64);
    memcpy(m->own_rec, body, m->own_len);
    m->refresh_at = now + (uint64_t)P2P_MEMBER_REFRESH_S * 1000000u;
}

/* Decodes a member record, and verifies it unless it is no newer than `known` (then it is
 * of no use, and the signature check is skipped). Returns 1 when it is new and genuine,
 * 0 when it is not newer, -1 when malformed or forged. */
static int parse_record(const uint8_t *rec, size_t len, const p2p_member *known, p2p_member *x)
{
    if (len < 1 + 32 + 8 + 8 + 1 + 64 || len > P2P_MEMBER_REC_MAX) return -1;
    p2p_rd r;
    p2p_rd_init(&r, rec, len - 64);
    if (p2p_rd_u8(&r) != 1) return -1;
    const uint8_t *id = p2p_rd_bytes(&r, 32);
    uint64_t seq = p2p_rd_u64(&r);
    uint64_t expires = p2p_rd_u64(&r);
    uint8_t n = p2p_rd_u8(&r);
    if (r.bad || n > P2P_MEMBER_ADDRS) return -1;
    p2p_addr addrs[P2P_MEMBER_ADDRS];
    for (uint8_t i = 0; i < n; i++)
        if (p2p_rd_addr(&r, &addrs[i])) return -1;
    if (r.bad || p2p_rd_left(&r)) return -1;
    if (known && known->has_record && memcmp(known->id, id, 32) == 0 && seq <= known->seq)
        return 0;
    uint8_t msg[sizeof member_label - 1 + P2P_MEMBER_REC_MAX];
    memcpy(msg, member_label, sizeof member_label - 1);
    memcpy(msg + sizeof member_label - 1, rec, len - 64);
    if (p2p_verify(rec + len - 64, msg, sizeof member_label - 1 + len - 64, id)) return -1;
    memcpy(x->id, id, 32);
    x->seq = seq;
    x->expires = expires;
    x->naddr = n;
    memcpy(x->addrs, addrs, n * sizeof *addrs);
    memcpy(x->rec, rec, len);
    x->rec_len = (uint16_t)len;
    x->has_record = 1;
    return 1;
}

/* Sends one MEMBERS record holding `count` member records. */
static void send_members(p2p_host *h, p2p_peer *p, const uint8_t *const *recs,
                         const uint16_t *lens, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += 2 + lens[i];
    uint8_t *body = malloc(total ? total : 1);
    if (!body) return;
    p2p_wr w;
    p2p_wr_init(&w, body, total);
    for (size_t i = 0; i < count; i++) {
        p2p_wr_u16(&w, lens[i]);
        p2p_wr_bytes(&w, recs[i], lens[i]);
    }
    p2p_peer_append(h, p, P2P_REC_MEMBERS, body, total);
    free(body);
}

static void send_own(p2p_host *h, p2p_peer *p)
{
    const uint8_t *rec = h->mesh.own_rec;
    uint16_t len = h->mesh.own_len;
    send_members(h, p, &rec, &len, 1);
}

/* The whole list a newcomer needs: our own record and every member record we hold, also of
 * members we have no session with yet (they may be joining through someone else right now,
 * and would otherwise miss the newcomer and it them). */
static void send_list(p2p_host *h, p2p_peer *p)
{
    p2p_mesh *m = &h->mesh;
    const uint8_t **recs = malloc((m->n + 1) * sizeof *recs);
    uint16_t *lens = malloc((m->n + 1) * sizeof *lens);
    size_t k = 0;
    if (recs && lens) {
        recs[k] = m->own_rec;
        lens[k++] = m->own_len;
        for (size_t i = 0; i < m->n; i++) {
            p2p_member *x = &m->m[i];
            if (x->has_record && memcmp(x->id, p->id, 32) != 0) {
                recs[k] = x->rec;
                lens[k++] = x->rec_len;
            }
        }
        send_members(h, p, recs, lens, k);
    }
    free(recs);
    free(lens);
}

/* Plans a dial to a member we hold no session with: the lower id dials at once. */
static void plan_dial(p2p_host *h, p2p_member *x, uint64_t now)
{
    if (!h->mesh.member || session_for(h, x->id) || !x->naddr) {
        x->dial_at = P2P_TIME_NEVER;
        return;
    }
    if (x->dial_at != P2P_TIME_NEVER) return;
    if (memcmp(h->ident.ed_pk, x->id, 32) < 0) x->dial_at = now;
    else x->dial_at = now + P2P_MESH_DIAL_DELAY_US + p2p_rng_below(&h->rng, 500000);
}

static int on_members(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    while (p2p_rd_left(&r)) {
        uint16_t n = p2p_rd_u16(&r);
        const uint8_t *rec = p2p_rd_bytes(&r, n);
        if (r.bad) return -1;
        if (!h->mesh.member) continue;        /* a mediator keeps no member table */
        p2p_member x;
        const p2p_member *known = n >= 33 ? member_find(h, rec + 1) : NULL;
        int fresh = parse_record(rec, n, known, &x);
        if (fresh < 0) { h->stats.dropped++; continue; }
        if (!fresh) continue;
        if (memcmp(x.id, h->ident.ed_pk, 32) == 0) continue;
        uint64_t t = unix_s(h, now);
        if (x.expires && t && x.expires <= t) continue;
        p2p_member *m = member_add(h, x.id);
        if (!m) continue;
        if (m->has_record && x.seq <= m->seq) continue;
        memcpy(m->id, x.id, 32);
        m->seq = x.seq;
        m->expires = x.expires;
        m->naddr = x.naddr;
        memcpy(m->addrs, x.addrs, sizeof m->addrs);
        memcpy(m->rec, x.rec, x.rec_len);
        m->rec_len = x.rec_len;
        m->has_record = 1;
        m->dials = 0;
        m->via = p->handle;
        /* A newcomer introduces itself on the session it joined by: we forward that record
         * to the members we hold sessions with. Nothing else is forwarded (each member
         * sends its own record to its peers), so a join costs each node O(N). */
        if (p->bootstrap && memcmp(x.id, p->id, 32) == 0) {
            const uint8_t *rp = m->rec;
            for (size_t i = 0; i < h->slot_hwm; i++) {
                p2p_peer *q = h->slots[i];
                if (q && q != p && mesh_peer(q)) send_members(h, q, &rp, &m->rec_len, 1);
            }
        }
        plan_dial(h, m, now);
    }
    return 0;
}

/* ---- joins and leaves ------------------------------------------------------------------- */

void p2p_mesh_on_join(p2p_host *h, p2p_peer *p, uint64_t now)
{
    h->mesh_dl_valid = 0;
    if (p->has_observed) p2p_mesh_observed(h, &p->observed, now);
    if (!h->mesh.member || !p->peer_mesh) return;
    p2p_member *x = member_add(h, p->id);
    if (x) {
        x->dial_at = P2P_TIME_NEVER;
        x->dials = 0;
    }
    if (p->bootstrap) send_list(h, p);
    else send_own(h, p);
}

void p2p_mesh_on_leave(p2p_host *h, const uint8_t id[32], int reason, uint64_t now)
{
    h->mesh_dl_valid = 0;
    p2p_member *x = member_find(h, id);
    if (!x || session_for(h, id)) return;
    if (reason == P2P_LEAVE_CLOSED || reason == P2P_LEAVE_DENIED) {
        member_remove(h, x);          /* it left: forget it until it comes back */
        return;
    }
    /* It went silent: try it again a few times before forgetting it. */
    x->dials = 0;
    x->dial_at = P2P_TIME_NEVER;
    if (x->has_record && h->mesh.member) {
        x->dial_at = now + P2P_MESH_REDIAL_US;
        x->dials = 1;
    }
}

/* Adds an advertised address: local ones (from the driver) before reflexive ones (where peers
 * saw us); when the reflexive part is full, the oldest one goes. Returns 0 or P2P_ERR_LIMIT. */
static int add_addr(p2p_host *h, const p2p_addr *a, int local, uint64_t now)
{
    h->mesh_dl_valid = 0;
    p2p_mesh *m = &h->mesh;
    static const uint8_t zero[16];
    if ((a->family != P2P_AF_INET4 && a->family != P2P_AF_INET6) || !a->port ||
        memcmp(a->ip, zero, a->family == P2P_AF_INET4 ? 4 : 16) == 0)
        return 0;
    for (size_t i = 0; i < m->naddr; i++)
        if (p2p_addr_equal(&m->addrs[i], a)) return 0;
    if (local) {
        if (m->nlocal >= P2P_LOCAL_ADDRS) return P2P_ERR_LIMIT;
        if (m->naddr == P2P_MEMBER_ADDRS) m->naddr--;          /* the newest reflexive goes */
        memmove(&m->addrs[m->nlocal + 1], &m->addrs[m->nlocal],
                (m->naddr - m->nlocal) * sizeof *a);
        m->addrs[m->nlocal++] = *a;
        m->naddr++;
    } else {
        if (m->naddr - m->nlocal >= P2P_REFLEXIVE_ADDRS || m->naddr == P2P_MEMBER_ADDRS) {
            memmove(&m->addrs[m->nlocal], &m->addrs[m->nlocal + 1],
                    (m->naddr - m->nlocal - 1) * sizeof *a);
            m->naddr--;
        }
        m->addrs[m->naddr++] = *a;
    }
    sign_own(h, now);
    if (!m->member) return 0;
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (q && mesh_peer(q)) send_own(h, q);
    }
    return 0;
}

void p2p_mesh_observed(p2p_host *h, const p2p_addr *a, uint64_t now)
{
    add_addr(h, a, 0, now);
}

int p2p_host_add_address(p2p_host *h, const p2p_addr *a, uint64_t now)
{
    if (now > h->now) h->now = now;
    return add_addr(h, a, 1, h->now);
}

size_t p2p_host_addresses(const p2p_host *h, p2p_addr *out, int *kinds, size_t cap)
{
    const p2p_mesh *m = &h->mesh;
    for (size_t i = 0; i < m->naddr && i < cap; i++) {
        out[i] = m->addrs[i];
        if (kinds) kinds[i] = i < m->nlocal ? P2P_ADDR_LOCAL : P2P_ADDR_REFLEXIVE;
    }
    return m->naddr;
}

/* The member record of an id, for introductions: NULL when unknown. */
const p2p_member *p2p_mesh_member(const p2p_host *h, const uint8_t id[32])
{
    const p2p_member *x = member_find(h, id);
    return x && x->has_record ? x : NULL;
}

int p2p_host_connect_id(p2p_host *h, const uint8_t id[32], uint64_t now, p2p_peer_handle *out)
{
    h->mesh_dl_valid = 0;
    if (h->closed) return P2P_ERR_CLOSED;
    if (now > h->now) h->now = now;
    p2p_peer *p = session_for(h, id);
    if (p) {
        if (out) *out = p->handle;
        return 0;
    }
    p2p_member *x = member_find(h, id);
    if (!x || !x->has_record || !x->naddr) return P2P_ERR_PEER;
    int rc = 0;
    p = dial_member(h, x, h->now, &rc);
    if (p && out) *out = p->handle;
    return rc;
}

/* Dials every address of a member at once; when no path answers soon, the attempt asks the
 * member the record came from (or another) to introduce the two (p2p_nat.c). */
static p2p_peer *dial_member(p2p_host *h, p2p_member *x, uint64_t now, int *rc)
{
    p2p_peer *p = p2p_host_dial(h, x->addrs, x->naddr, x->id, now, rc);
    if (!p) return NULL;
    x->dials++;
    p->intro_via = x->via;
    p->intro_state = P2P_INTRO_LATER;
    p->punch_until = now + P2P_INTRO_AFTER_US;
    return p;
}

/* ---- broadcast -------------------------------------------------------------------------- */

static void cache_trim(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    while (m->cache_head && (m->cache_n > P2P_BCAST_CACHE_ENTRIES ||
                             m->cache_bytes > P2P_BCAST_CACHE_BYTES ||
                             m->cache_head->at + P2P_BCAST_CACHE_US <= now)) {
        p2p_bcast *b = m->cache_head;
        m->cache_head = b->next;
        if (!m->cache_head) m->cache_tail = NULL;
        m->cache_n--;
        m->cache_bytes -= b->len;
        free(b);
    }
}

static void cache_put(p2p_host *h, const uint8_t *env, size_t len, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    p2p_bcast *b = malloc(sizeof *b + len);
    if (!b) return;
    b->next = NULL;
    memcpy(b->origin, env, 32);
    b->seq = p2p_get_u64(env + 32);
    b->at = now;
    b->len = len;
    memcpy(b->env, env, len);
    if (m->cache_tail) m->cache_tail->next = b; else m->cache_head = b;
    m->cache_tail = b;
    m->cache_n++;
    m->cache_bytes += len;
    cache_trim(h, now);
}

static const p2p_bcast *cache_get(const p2p_host *h, const uint8_t origin[32], uint64_t seq)
{
    for (const p2p_bcast *b = h->mesh.cache_head; b; b = b->next)
        if (b->seq == seq && memcmp(b->origin, origin, 32) == 0) return b;
    return NULL;
}

/* Sends a broadcast envelope to one peer, unless it is larger than the peer accepts (it
 * would end the session there): such a peer does not get it. */
static void send_bcast(p2p_host *h, p2p_peer *q, const uint8_t *env, size_t len)
{
    if (len - BCAST_OVERHEAD <= q->peer_max_message)
        p2p_peer_append(h, q, P2P_REC_BROADCAST, env, len);
}

static int seen(const p2p_member *x, uint64_t seq)
{
    return p2p_replay_check(&x->bseen, seq) != 0;
}

int p2p_host_broadcast(p2p_host *h, uint16_t type, const uint8_t *data, size_t len,
                       uint64_t *seq, uint64_t now)
{
    h->mesh_dl_valid = 0;
    if (h->closed) return P2P_ERR_CLOSED;
    if (len + BCAST_OVERHEAD > h->max_message) return P2P_ERR_TOO_BIG;
    if (now > h->now) h->now = now;
    size_t lab = sizeof bcast_label - 1;
    uint8_t *buf = malloc(lab + len + BCAST_OVERHEAD);
    if (!buf) return P2P_ERR_NOMEM;
    uint8_t *env = buf + lab;
    uint64_t s = ++h->mesh.bseq;
    memcpy(buf, bcast_label, lab);
    memcpy(env, h->ident.ed_pk, 32);
    p2p_put_u64(env + 32, s);
    env[40] = (uint8_t)type;
    env[41] = (uint8_t)(type >> 8);
    if (len) memcpy(env + BCAST_HEAD, data, len);
    p2p_sign(env + BCAST_HEAD + len, buf, lab + BCAST_HEAD + len, h->ident.ed_sk);
    size_t elen = len + BCAST_OVERHEAD;
    cache_put(h, env, elen, h->now);
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (q && q->state == P2P_S_CONNECTED) send_bcast(h, q, env, elen);
    }
    free(buf);
    if (seq) *seq = s;
    return 0;
}

static void announce(p2p_host *h, p2p_peer *from, const uint8_t origin[32], uint64_t seq)
{
    uint8_t e[WANT_ENTRY];
    memcpy(e, origin, 32);
    p2p_put_u64(e + 32, seq);
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (q && q != from && mesh_peer(q) && memcmp(q->id, origin, 32) != 0)
            p2p_peer_append(h, q, P2P_REC_IHAVE, e, sizeof e);
    }
}

static int on_broadcast(p2p_host *h, p2p_peer *p, const uint8_t *env, size_t len, uint64_t now)
{
    if (len < BCAST_OVERHEAD) return -1;
    const uint8_t *origin = env;
    uint64_t s = p2p_get_u64(env + 32);
    if (memcmp(origin, h->ident.ed_pk, 32) == 0) return 0;
    p2p_member *x = member_add(h, origin);
    if (!x || seen(x, s)) return 0;
    size_t lab = sizeof bcast_label - 1;
    uint8_t *msg = malloc(lab + len - 64);
    if (!msg) return 0;
    memcpy(msg, bcast_label, lab);
    memcpy(msg + lab, env, len - 64);
    int bad = p2p_verify(env + len - 64, msg, lab + len - 64, origin);
    free(msg);
    if (bad) {                    /* forged or altered on the way: never delivered */
        h->stats.dropped++;
        return 0;
    }
    p2p_replay_update(&x->bseen, s);
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_MESSAGE;
    p2p_peer_fill_event(p, &ev);
    ev.broadcast = 1;
    memcpy(ev.origin, origin, 32);
    ev.seq = s;
    ev.msg_type = (uint16_t)(env[40] | (env[41] << 8));
    p2p_host_event(h, &ev, env + BCAST_HEAD, len - BCAST_OVERHEAD);
    cache_put(h, env, len, now);
    if (h->mesh.member) announce(h, p, origin, s);
    return 0;
}

static int on_ihave(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len % WANT_ENTRY) return -1;
    p2p_mesh *m = &h->mesh;
    for (size_t off = 0; off < len; off += WANT_ENTRY) {
        const uint8_t *origin = body + off;
        uint64_t s = p2p_get_u64(body + off + 32);
        if (memcmp(origin, h->ident.ed_pk, 32) == 0) continue;
        p2p_member *x = member_find(h, origin);
        if (x && seen(x, s)) continue;
        int dup = 0;
        for (size_t i = 0; i < m->nwants && !dup; i++)
            dup = m->wants[i].seq == s && memcmp(m->wants[i].origin, origin, 32) == 0;
        if (dup || m->nwants >= P2P_IWANT_MAX) continue;
        if (!m->wants) {
            m->wants = malloc(P2P_IWANT_MAX * sizeof *m->wants);
            if (!m->wants) return 0;
        }
        p2p_want *w = &m->wants[m->nwants++];
        memcpy(w->origin, origin, 32);
        w->seq = s;
        w->at = now + P2P_IWANT_DELAY_US;
        w->from = p->handle;
    }
    return 0;
}

static int on_iwant(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len)
{
    if (len % WANT_ENTRY) return -1;
    for (size_t off = 0; off < len; off += WANT_ENTRY) {
        const p2p_bcast *b = cache_get(h, body + off, p2p_get_u64(body + off + 32));
        if (!b) continue;
        send_bcast(h, p, b->env, b->len);
        h->stats.broadcasts_relayed++;
    }
    return 0;
}

/* ---- anti-entropy ----------------------------------------------------------------------- */

/* An order-independent hash of which records this node holds: the XOR of H(id || seq). Two
 * members with the same table have the same hash. */
static void table_hash(const p2p_host *h, uint8_t out[32])
{
    uint8_t e[40], x[32];
    memset(out, 0, 32);
    for (size_t i = 0; i <= h->mesh.n; i++) {
        const uint8_t *id = i < h->mesh.n ? h->mesh.m[i].id : h->ident.ed_pk;
        if (i < h->mesh.n && !h->mesh.m[i].has_record) continue;
        memcpy(e, id, 32);
        p2p_put_u64(e + 32, i < h->mesh.n ? h->mesh.m[i].seq : h->mesh.own_seq);
        p2p_blake2b(x, 32, NULL, 0, e, sizeof e, NULL, 0);
        for (int k = 0; k < 32; k++) out[k] ^= x[k];
    }
}

static void send_digest(p2p_host *h, p2p_peer *p, uint8_t reply)
{
    p2p_mesh *m = &h->mesh;
    uint8_t *body = malloc(1 + (m->n + 1) * 40);
    if (!body) return;
    size_t len = 1;
    body[0] = reply;
    memcpy(body + len, h->ident.ed_pk, 32);
    p2p_put_u64(body + len + 32, m->own_seq);
    len += 40;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->m[i].has_record) continue;
        memcpy(body + len, m->m[i].id, 32);
        p2p_put_u64(body + len + 32, m->m[i].seq);
        len += 40;
    }
    p2p_peer_append(h, p, P2P_REC_DIGEST, body, len);
    free(body);
}

static int on_summary(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len)
{
    if (len != 32) return -1;
    uint8_t mine[32];
    table_hash(h, mine);
    if (memcmp(mine, body, 32) != 0) send_digest(h, p, 0);
    return 0;
}

/* The peer listed what it holds: send what it lacks, and (unless this is already a reply)
 * our own list when it holds something we lack. */
static int on_digest(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len)
{
    if (len < 1 || (len - 1) % 40) return -1;
    p2p_mesh *m = &h->mesh;
    size_t count = (len - 1) / 40;
    const uint8_t *d = body + 1;
    const uint8_t **recs = malloc((m->n + 1) * sizeof *recs);
    uint16_t *lens = malloc((m->n + 1) * sizeof *lens);
    if (!recs || !lens) { free(recs); free(lens); return 0; }
    size_t k = 0;
    for (size_t i = 0; i <= m->n; i++) {
        const uint8_t *id = i < m->n ? m->m[i].id : h->ident.ed_pk;
        uint64_t seq = i < m->n ? m->m[i].seq : m->own_seq;
        if (i < m->n && !m->m[i].has_record) continue;
        if (memcmp(id, p->id, 32) == 0) continue;
        int theirs_newer_or_same = 0;
        for (size_t j = 0; j < count && !theirs_newer_or_same; j++)
            theirs_newer_or_same = memcmp(d + 40 * j, id, 32) == 0 && p2p_get_u64(d + 40 * j + 32) >= seq;
        if (theirs_newer_or_same) continue;
        recs[k] = i < m->n ? m->m[i].rec : m->own_rec;
        lens[k++] = i < m->n ? m->m[i].rec_len : m->own_len;
    }
    if (k) send_members(h, p, recs, lens, k);
    free(recs);
    free(lens);
    if (body[0]) return 0;
    for (size_t j = 0; j < count; j++) {
        const uint8_t *id = d + 40 * j;
        if (memcmp(id, h->ident.ed_pk, 32) == 0) continue;
        const p2p_member *x = member_find(h, id);
        if (!x || !x->has_record || x->seq < p2p_get_u64(id + 32)) {
            send_digest(h, p, 1);
            break;
        }
    }
    return 0;
}

static void gossip(p2p_host *h, uint64_t now)
{
    h->mesh.next_gossip = now + P2P_GOSSIP_US - P2P_GOSSIP_US / 5 +
                          p2p_rng_below(&h->rng, 2 * P2P_GOSSIP_US / 5);
    size_t count = 0;
    for (size_t i = 0; i < h->slot_hwm; i++)
        if (h->slots[i] && mesh_peer(h->slots[i])) count++;
    if (!count) return;
    size_t pick = p2p_rng_below(&h->rng, (uint32_t)count);
    for (size_t i = 0; i < h->slot_hwm; i++) {
        p2p_peer *q = h->slots[i];
        if (!q || !mesh_peer(q) || pick--) continue;
        uint8_t hash[32];
        table_hash(h, hash);
        p2p_peer_append(h, q, P2P_REC_SUMMARY, hash, sizeof hash);
        return;
    }
}

int p2p_mesh_on_record(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len,
                       uint64_t now)
{
    h->mesh_dl_valid = 0;
    switch (kind) {
    case P2P_REC_MEMBERS: return on_members(h, p, body, len, now);
    case P2P_REC_BROADCAST: return on_broadcast(h, p, body, len, now);
    case P2P_REC_IHAVE: return on_ihave(h, p, body, len, now);
    case P2P_REC_IWANT: return on_iwant(h, p, body, len);
    case P2P_REC_SUMMARY: return h->mesh.member && p->peer_mesh ? on_summary(h, p, body, len) : 0;
    case P2P_REC_DIGEST: return h->mesh.member && p->peer_mesh ? on_digest(h, p, body, len) : 0;
    default: return -1;
    }
}

/* ---- timers ----------------------------------------------------------------------------- */

uint64_t p2p_mesh_deadline(const p2p_host *h)
{
    const p2p_mesh *m = &h->mesh;
    uint64_t d = m->refresh_at;
    if (m->member && m->next_gossip < d) d = m->next_gossip;
    for (size_t i = 0; i < m->n; i++)
        if (m->m[i].dial_at < d) d = m->m[i].dial_at;
    for (size_t i = 0; i < m->nwants; i++)
        if (m->wants[i].at < d) d = m->wants[i].at;
    if (m->cache_head && m->cache_head->at + P2P_BCAST_CACHE_US < d)
        d = m->cache_head->at + P2P_BCAST_CACHE_US;
    return d;
}

static void dial(p2p_host *h, p2p_member *x, uint64_t now)
{
    if (session_for(h, x->id)) { x->dial_at = P2P_TIME_NEVER; return; }
    if (x->dials >= P2P_MESH_MAX_DIALS || !x->naddr) { member_remove(h, x); return; }
    x->dial_at = now + (P2P_MESH_REDIAL_US << x->dials);
    int rc;
    p2p_peer *p = dial_member(h, x, now, &rc);
    if (p) p->auto_dial = 1;
}

void p2p_mesh_on_timeout(p2p_host *h, uint64_t now)
{
    h->mesh_dl_valid = 0;
    p2p_mesh *m = &h->mesh;
    if (now >= m->refresh_at) {
        sign_own(h, now);
        for (size_t i = 0; i < h->slot_hwm; i++) {
            p2p_peer *q = h->slots[i];
            if (q && mesh_peer(q)) send_own(h, q);
        }
    }
    if (m->member && now >= m->next_gossip) gossip(h, now);
    uint64_t t = unix_s(h, now);
    for (size_t i = 0; i < m->n;) {
        p2p_member *x = &m->m[i];
        size_t before = m->n;
        if (x->has_record && x->expires && t && x->expires <= t && !session_for(h, x->id))
            member_remove(h, x);
        else if (x->dial_at <= now)
            dial(h, x, now);
        if (m->n == before) i++;
    }
    for (size_t i = 0; i < m->nwants;) {
        p2p_want *w = &m->wants[i];
        if (w->at > now) { i++; continue; }
        p2p_member *x = member_find(h, w->origin);
        p2p_peer *from = p2p_host_peer_get(h, w->from);
        if ((!x || !seen(x, w->seq)) && from && from->state == P2P_S_CONNECTED) {
            uint8_t e[WANT_ENTRY];
            memcpy(e, w->origin, 32);
            p2p_put_u64(e + 32, w->seq);
            p2p_peer_append(h, from, P2P_REC_IWANT, e, sizeof e);
        }
        *w = m->wants[--m->nwants];
    }
    cache_trim(h, now);
}

/* ---- lifetime --------------------------------------------------------------------------- */

int p2p_mesh_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    memset(m, 0, sizeof *m);
    m->member = !cfg->mediator;
    m->max = 4u * h->max_peers + 64;
    m->unix_base = cfg->unix_us;
    m->mono_base = now;
    /* Sequence numbers from the wall clock: a node restarted with the same key outranks its
     * old record and its old broadcast numbers. */
    m->own_seq = cfg->unix_us / 1000u;
    m->bseq = cfg->unix_us;
    m->next_gossip = now + P2P_GOSSIP_US;
    sign_own(h, now);
    return 0;
}

void p2p_mesh_free(p2p_host *h)
{
    p2p_mesh *m = &h->mesh;
    while (m->cache_head) {
        p2p_bcast *b = m->cache_head;
        m->cache_head = b->next;
        free(b);
    }
    free(m->m);
    free(m->wants);
    memset(m, 0, sizeof *m);
}
