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
 * Every peer may lie. A member we have held a session with is confirmed; the others are only
 * claims of the peer that sent their record. Claims are capped per source, never passed on
 * (lists, digests and the table hash hold confirmed members only), dialled a fixed number of
 * times in all, and the first to go when the table is full.
 *
 * Broadcast: the origin signs and sends to every peer it holds a session with. Every member
 * that receives a broadcast for the first time delivers it, keeps it for a minute, and tells
 * its other peers (IHAVE); a member that hears of a broadcast it lacks, and does not get the
 * direct copy soon, pulls it (IWANT). A broadcast's number is its origin's clock: one outside
 * a time window of the receiver's clock is refused, and inside it a bounded per-origin table
 * of the newest numbers suppresses duplicates and replays.
 *
 * Every table is found through a keyed hash index, so each record costs time linear in its
 * size; `work` counts the entries and index steps, for the tests.
 */
#include "p2p_mesh.h"
#include "p2p_peer.h"

#include <stdlib.h>
#include <string.h>

static const char member_label[] = "p2pnet/1 member";
static const char bcast_label[] = "p2pnet/1 broadcast";
static const char index_label[] = "p2pnet/1 mesh index";
#define BCAST_HEAD (P2P_ID_LEN + 8 + 2)
#define BCAST_OVERHEAD (BCAST_HEAD + P2P_SIG_LEN)
#define WANT_ENTRY 40

static uint64_t unix_s(const p2p_host *h, uint64_t now)
{
    const p2p_mesh *m = &h->mesh;
    if (!m->unix_base) return 0;
    return (m->unix_base + (now - m->mono_base)) / 1000000u;
}

/* Our wall clock in µs, or 0 when we have none. */
static uint64_t clock_us(const p2p_host *h, uint64_t now)
{
    const p2p_mesh *m = &h->mesh;
    return m->unix_base ? m->unix_base + (now - m->mono_base) : 0;
}

/* ---- hash indexes ----------------------------------------------------------------------- */

static uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND(v0, v1, v2, v3) \
    do {                          \
        v0 += v1;                 \
        v1 = rotl64(v1, 13);      \
        v1 ^= v0;                 \
        v0 = rotl64(v0, 32);      \
        v2 += v3;                 \
        v3 = rotl64(v3, 16);      \
        v3 ^= v2;                 \
        v0 += v3;                 \
        v3 = rotl64(v3, 21);      \
        v3 ^= v0;                 \
        v2 += v1;                 \
        v1 = rotl64(v1, 17);      \
        v1 ^= v2;                 \
        v2 = rotl64(v2, 32);      \
    } while (0)

/* SipHash-1-3 of (id, seq) under the node's secret key: ids come from the network, and an
 * unkeyed hash would let a peer pick ids that all land in one chain. */
static uint64_t key_hash(const p2p_mesh *m, const uint8_t id[P2P_ID_LEN], uint64_t seq)
{
    uint64_t v0 = m->hkey[0] ^ UINT64_C(0x736f6d6570736575);
    uint64_t v1 = m->hkey[1] ^ UINT64_C(0x646f72616e646f6d);
    uint64_t v2 = m->hkey[0] ^ UINT64_C(0x6c7967656e657261);
    uint64_t v3 = m->hkey[1] ^ UINT64_C(0x7465646279746573);
    for (int i = 0; i < 5; i++) {
        uint64_t w = i < 4 ? p2p_get_u64(id + 8 * i) : seq;
        v3 ^= w;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= w;
    }
    uint64_t b = (uint64_t)40 << 56;
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* Allocates the index on first use: cap slots, at least as many buckets. */
static int ix_ready(p2p_mesh_index *ix, uint32_t cap)
{
    if (ix->head) return 0;
    uint32_t nb = 16;
    while (nb < cap) nb *= 2;
    ix->head = malloc((size_t)nb * sizeof *ix->head);
    ix->next = malloc((size_t)cap * sizeof *ix->next);
    if (!ix->head || !ix->next) {
        free(ix->head);
        free(ix->next);
        ix->head = ix->next = NULL;
        return P2P_ERR_NOMEM;
    }
    memset(ix->head, 0xff, (size_t)nb * sizeof *ix->head);
    ix->mask = nb - 1;
    ix->cap = cap;
    return 0;
}

static void ix_free(p2p_mesh_index *ix)
{
    free(ix->head);
    free(ix->next);
    memset(ix, 0, sizeof *ix);
}

static void ix_put(p2p_mesh_index *ix, uint64_t hv, uint32_t i)
{
    uint32_t b = (uint32_t)hv & ix->mask;
    ix->next[i] = ix->head[b];
    ix->head[b] = i;
}

static void ix_del(p2p_mesh_index *ix, uint64_t hv, uint32_t i)
{
    if (!ix->head) return;
    uint32_t *pp = &ix->head[(uint32_t)hv & ix->mask];
    while (*pp != i) {
        if (*pp == P2P_MESH_NONE) return;
        pp = &ix->next[*pp];
    }
    *pp = ix->next[i];
}

static uint32_t ix_first(const p2p_mesh_index *ix, uint64_t hv)
{
    return ix->head ? ix->head[(uint32_t)hv & ix->mask] : P2P_MESH_NONE;
}

/* ---- the member table ------------------------------------------------------------------- */

static uint32_t member_slot(const p2p_mesh *m, const uint8_t id[P2P_ID_LEN], uint64_t *steps)
{
    for (uint32_t i = ix_first(&m->mix, key_hash(m, id, 0)); i != P2P_MESH_NONE;
         i = m->mix.next[i]) {
        if (steps) (*steps)++;
        if (memcmp(m->m[i].id, id, P2P_ID_LEN) == 0) return i;
    }
    return P2P_MESH_NONE;
}

static p2p_member *member_find(p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    p2p_mesh *m = &h->mesh;
    uint32_t i = member_slot(m, id, &m->work);
    return i == P2P_MESH_NONE ? NULL : &m->m[i];
}

/* Confirmed, alive and holding a record: the only members we tell others about. */
static int advertised(const p2p_member *x)
{
    return x->has_record && x->confirmed && !x->dead;
}

static void thash_xor(p2p_mesh *m, const uint8_t id[P2P_ID_LEN], uint64_t seq)
{
    uint8_t e[P2P_ID_LEN + 8], x[sizeof m->thash];
    memcpy(e, id, P2P_ID_LEN);
    p2p_put_u64(e + P2P_ID_LEN, seq);
    p2p_blake2b(x, sizeof x, NULL, 0, e, sizeof e, NULL, 0);
    for (size_t k = 0; k < sizeof x; k++) m->thash[k] ^= x[k];
}

/* The table hash is the XOR of H(id || seq) over our own record and every advertised one:
 * each change takes a member out before and puts it back after. */
static void thash_out(p2p_mesh *m, p2p_member *x)
{
    if (!x->in_hash) return;
    thash_xor(m, x->id, x->seq);
    x->in_hash = 0;
}

static void thash_sync(p2p_mesh *m, p2p_member *x)
{
    if (x->in_hash || !advertised(x)) return;
    thash_xor(m, x->id, x->seq);
    x->in_hash = 1;
}

/* Adds a member; the caller made room (n < max). Pointers into the table die. */
static p2p_member *member_add(p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    if (m->n >= m->max || ix_ready(&m->mix, (uint32_t)m->max)) return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        if (cap > m->max) cap = m->max;
        p2p_member *v = realloc(m->m, cap * sizeof *v);
        if (!v) return NULL;
        m->m = v;
        m->cap = cap;
    }
    uint32_t i = (uint32_t)m->n++;
    p2p_member *x = &m->m[i];
    memset(x, 0, sizeof *x);
    memcpy(x->id, id, P2P_ID_LEN);
    x->dial_at = P2P_TIME_NEVER;
    x->added = now;
    x->forget_at = P2P_TIME_NEVER;
    ix_put(&m->mix, key_hash(m, id, 0), i);
    return x;
}

/* An unconfirmed member stops counting against its source (it was confirmed or removed). */
static void src_release(p2p_host *h, p2p_member *x)
{
    p2p_mesh *m = &h->mesh;
    if (x->confirmed) return;
    if (!x->has_src) {
        if (m->norphans) m->norphans--;
        return;
    }
    p2p_member *s = member_find(h, x->src);
    if (s && s->nsrc) s->nsrc--;
    x->has_src = 0;
}

static void member_remove(p2p_host *h, p2p_member *x)
{
    p2p_mesh *m = &h->mesh;
    thash_out(m, x);
    src_release(h, x);
    if (x->confirmed && x->nsrc) {
        /* what it brought us stays, as orphans: evicted first */
        for (size_t i = 0; i < m->n; i++) {
            p2p_member *y = &m->m[i];
            if (!y->confirmed && y->has_src && memcmp(y->src, x->id, P2P_ID_LEN) == 0) {
                y->has_src = 0;
                m->norphans++;
            }
        }
    }
    uint32_t i = (uint32_t)(x - m->m), last = (uint32_t)m->n - 1;
    ix_del(&m->mix, key_hash(m, x->id, 0), i);
    if (i != last) {
        ix_del(&m->mix, key_hash(m, m->m[last].id, 0), last);
        m->m[i] = m->m[last];
        ix_put(&m->mix, key_hash(m, m->m[i].id, 0), i);
    }
    m->n--;
}

/* Makes room for one member: the oldest unconfirmed entry of the source that holds the most
 * of them (orphans form one source) goes. Returns 0 when there is nothing to evict. */
static int member_evict(p2p_host *h)
{
    p2p_mesh *m = &h->mesh;
    size_t best = m->norphans, bi = SIZE_MAX;
    for (size_t i = 0; i < m->n; i++)
        if (m->m[i].confirmed && m->m[i].nsrc > best) {
            best = m->m[i].nsrc;
            bi = i;
        }
    if (!best) return 0;
    p2p_member *victim = NULL;
    for (size_t i = 0; i < m->n; i++) {
        p2p_member *y = &m->m[i];
        if (y->confirmed) continue;
        int mine = bi == SIZE_MAX ? !y->has_src
                                  : y->has_src && memcmp(y->src, m->m[bi].id, P2P_ID_LEN) == 0;
        if (mine && (!victim || y->added < victim->added)) victim = y;
    }
    m->work += 2 * m->n;
    if (!victim) return 0;
    member_remove(h, victim);
    return 1;
}

/* The live session (connected or being made) for an id, or NULL. */
static p2p_peer *session_for(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *p = h->peers.slots[i];
        if (!p || p->state == P2P_S_CLOSING) continue;
        if ((p->has_id && memcmp(p->id, id, P2P_ID_LEN) == 0) ||
            (!p->has_id && p->has_expected && memcmp(p->expected, id, P2P_ID_LEN) == 0))
            return p;
    }
    return NULL;
}

static p2p_peer *dial_member(p2p_host *h, p2p_member *x, uint64_t now, int *rc);

static int mesh_peer(const p2p_peer *p)
{
    return p->state == P2P_S_CONNECTED && p->peer_mesh;
}

/* Counts one SUMMARY/DIGEST answer to p: at most P2P_GOSSIP_ANSWERS per gossip period (an
 * honest peer causes about three). Returns 0 when over. */
static int may_answer(p2p_host *h, p2p_peer *p, uint64_t now)
{
    if (now >= p->mesh_answers_end) {
        p->mesh_answers_end = now + P2P_GOSSIP_US;
        p->mesh_answers = 0;
    }
    if (p->mesh_answers >= P2P_GOSSIP_ANSWERS) {
        h->stats.dropped_unsolicited++;
        return 0;
    }
    p->mesh_answers++;
    return 1;
}

/* ---- records ---------------------------------------------------------------------------- */

/* Signs a fresh own record with the current addresses and a new sequence number. */
static void sign_own(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint8_t buf[sizeof member_label - 1 + P2P_MEMBER_REC_MAX];
    uint8_t *body = buf + sizeof member_label - 1;
    memcpy(buf, member_label, sizeof member_label - 1);
    uint64_t t = unix_s(h, now);
    if (m->own_in_hash) thash_xor(m, h->ident.ed_pk, m->own_seq);
    p2p_wr w;
    p2p_wr_init(&w, body, P2P_MEMBER_REC_MAX - P2P_SIG_LEN);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, h->ident.ed_pk, P2P_ID_LEN);
    p2p_wr_u64(&w, ++m->own_seq);
    p2p_wr_u64(&w, t ? t + P2P_MEMBER_TTL_S : 0);
    p2p_wr_u8(&w, (uint8_t)h->naddr);
    for (size_t i = 0; i < h->naddr; i++) p2p_wr_addr(&w, &h->addrs[i]);
    size_t blen = (size_t)(w.p - body);
    p2p_sign(body + blen, buf, sizeof member_label - 1 + blen, h->ident.ed_sk);
    m->own_len = (uint16_t)(blen + P2P_SIG_LEN);
    memcpy(m->own_rec, body, m->own_len);
    m->refresh_at = now + (uint64_t)P2P_MEMBER_REFRESH_S * 1000000u;
    thash_xor(m, h->ident.ed_pk, m->own_seq);
    m->own_in_hash = 1;
}

/* Decodes a member record into x, without checking its signature. Returns 0, or -1 when
 * malformed. */
static int decode_record(const uint8_t *rec, size_t len, p2p_member *x)
{
    if (len < 1 + P2P_ID_LEN + 8 + 8 + 1 + P2P_SIG_LEN || len > P2P_MEMBER_REC_MAX) return -1;
    p2p_rd r;
    p2p_rd_init(&r, rec, len - P2P_SIG_LEN);
    if (p2p_rd_u8(&r) != 1) return -1;
    const uint8_t *id = p2p_rd_bytes(&r, P2P_ID_LEN);
    uint64_t seq = p2p_rd_u64(&r);
    uint64_t expires = p2p_rd_u64(&r);
    uint8_t n = p2p_rd_u8(&r);
    if (r.bad || n > P2P_MEMBER_ADDRS) return -1;
    for (uint8_t i = 0; i < n; i++)
        if (p2p_rd_addr(&r, &x->addrs[i])) return -1;
    if (r.bad || p2p_rd_left(&r)) return -1;
    memcpy(x->id, id, P2P_ID_LEN);
    x->seq = seq;
    x->expires = expires;
    x->naddr = n;
    memcpy(x->rec, rec, len);
    x->rec_len = (uint16_t)len;
    x->has_record = 1;
    return 0;
}

/* 0 when the decoded record is signed by the id it names. */
static int verify_record(p2p_host *h, const p2p_member *x)
{
    uint8_t msg[sizeof member_label - 1 + P2P_MEMBER_REC_MAX];
    size_t body = (size_t)x->rec_len - P2P_SIG_LEN;
    memcpy(msg, member_label, sizeof member_label - 1);
    memcpy(msg + sizeof member_label - 1, x->rec, body);
    h->stats.work_verify++;
    return p2p_verify(x->rec + body, msg, sizeof member_label - 1 + body, x->id);
}

/* Sends one MEMBERS record holding `count` member records. */
static void send_members(p2p_host *h, p2p_peer *p, const uint8_t *const *recs, const uint16_t *lens,
                         size_t count)
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

/* Sends our own record and every advertised one, except p's own and those the digest being
 * read holds (mark == gen; gen 0 marks nothing). */
static void send_table(p2p_host *h, p2p_peer *p, uint64_t gen, int with_own)
{
    p2p_mesh *m = &h->mesh;
    const uint8_t **recs = malloc((m->n + 1) * sizeof *recs);
    uint16_t *lens = malloc((m->n + 1) * sizeof *lens);
    size_t k = 0;
    if (recs && lens) {
        if (with_own) {
            recs[k] = m->own_rec;
            lens[k++] = m->own_len;
        }
        for (size_t i = 0; i < m->n; i++) {
            p2p_member *x = &m->m[i];
            if (advertised(x) && (!gen || x->mark != gen) &&
                memcmp(x->id, p->id, P2P_ID_LEN) != 0) {
                recs[k] = x->rec;
                lens[k++] = x->rec_len;
            }
        }
        m->work += m->n;
        if (k) send_members(h, p, recs, lens, k);
    }
    free(recs);
    free(lens);
}

/* A member whose dials all failed: never dialled again, not told about, forgotten later
 * (unless a session with it comes first). */
static void bury(p2p_host *h, p2p_member *x, uint64_t now)
{
    thash_out(&h->mesh, x);
    x->dead = 1;
    x->dial_at = P2P_TIME_NEVER;
    if (x->forget_at == P2P_TIME_NEVER) x->forget_at = now + P2P_MESH_FORGET_US;
}

/* Dials a member gets between sessions: fewer for one that is only a peer's claim. */
static unsigned dial_budget(const p2p_member *x)
{
    return x->confirmed ? P2P_MESH_MAX_DIALS : P2P_MESH_CLAIM_DIALS;
}

static void dial_at(p2p_mesh *m, p2p_member *x, uint64_t t)
{
    x->dial_at = t;
    if (t < m->next_dial) m->next_dial = t;
}

/* Plans a dial to a member we hold no session with: the lower id dials at once. A member has
 * dial_budget() dials between sessions, however many records name it. */
static void plan_dial(p2p_host *h, p2p_member *x, uint64_t now)
{
    if (!h->member || x->dead || session_for(h, x->id) || !x->naddr) {
        x->dial_at = P2P_TIME_NEVER;
        return;
    }
    if (x->dials >= dial_budget(x)) {
        bury(h, x, now);
        return;
    }
    if (x->dial_at != P2P_TIME_NEVER) return;
    if (memcmp(h->ident.ed_pk, x->id, P2P_ID_LEN) < 0)
        dial_at(&h->mesh, x, now);
    else
        dial_at(&h->mesh, x, now + P2P_MESH_DIAL_DELAY_US + p2p_rng_below(&h->rng, 500000));
}

/* A session with the member exists: it is real. */
static void confirm(p2p_host *h, p2p_member *x)
{
    src_release(h, x);
    x->confirmed = 1;
    x->has_src = 0;
    x->dead = 0;
    x->dials = 0;
    x->dial_at = P2P_TIME_NEVER;
    x->forget_at = P2P_TIME_NEVER;
    thash_sync(&h->mesh, x);
}

/* 1 when p may bring us a record of id: it is p's own, or p holds fewer claims than its
 * quota (a quarter of the table). */
static int may_claim(p2p_host *h, p2p_peer *p, const uint8_t id[P2P_ID_LEN])
{
    if (memcmp(id, p->id, P2P_ID_LEN) == 0) return 1;
    p2p_member *s = member_find(h, p->id);
    return s && s->confirmed && s->nsrc < h->mesh.max / 4;
}

/* The entry for a member we are about to hold a record of, made when there is room or room
 * can be made. A record that p sent about someone else is p's claim: p may hold at most a
 * quarter of the table in claims. Returns NULL when refused. */
static p2p_member *member_make(p2p_host *h, p2p_peer *p, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    int first_hand = memcmp(id, p->id, P2P_ID_LEN) == 0;
    if (!may_claim(h, p, id)) return NULL;
    if (m->n >= m->max && !member_evict(h)) return NULL;
    p2p_member *x = member_add(h, id, now);
    if (!x) return NULL;
    if (first_hand) {
        confirm(h, x);
        return x;
    }
    p2p_member *s = member_find(h, p->id); /* again: the table moved */
    x = member_find(h, id);
    if (!s || !x) return x;
    s->nsrc++;
    x->has_src = 1;
    memcpy(x->src, p->id, P2P_ID_LEN);
    x->forget_at = now + P2P_MESH_FORGET_US;
    return x;
}

static int on_members(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    p2p_rd r;
    p2p_rd_init(&r, body, len);
    if (h->member && !p->peer_mesh) {
        h->stats.dropped_unsolicited++; /* a mediator has no members to tell of */
        return 0;
    }
    while (p2p_rd_left(&r)) {
        uint16_t n = p2p_rd_u16(&r);
        const uint8_t *rec = p2p_rd_bytes(&r, n);
        if (r.bad) return -1;
        if (!h->member) continue; /* a mediator keeps no member table */
        m->work++;
        /* Everything cheap first: the signature is checked last, and only for a record we
         * would keep. */
        p2p_member x;
        if (decode_record(rec, n, &x)) {
            h->stats.dropped++;
            continue;
        }
        if (memcmp(x.id, h->ident.ed_pk, P2P_ID_LEN) == 0) continue;
        p2p_member *mm = member_find(h, x.id);
        if (mm && mm->has_record && x.seq <= mm->seq) continue;
        uint64_t t = unix_s(h, now);
        if (x.expires && t && x.expires <= t) continue;
        if (!mm && !may_claim(h, p, x.id)) {
            h->stats.dropped_budget++;
            continue;
        }
        /* Honest peers pass on only records they verified: a bad signature is a lie, and
         * the session ends before the liar can make us check another. */
        if (verify_record(h, &x)) {
            h->stats.dropped++;
            return -1;
        }
        if (!mm) mm = member_make(h, p, x.id, now);
        if (!mm) {
            h->stats.dropped_budget++;
            continue;
        }
        int moved = !mm->has_record || mm->naddr != x.naddr ||
                    memcmp(mm->addrs, x.addrs, x.naddr * sizeof *x.addrs) != 0;
        thash_out(m, mm);
        mm->seq = x.seq;
        mm->expires = x.expires;
        mm->naddr = x.naddr;
        memcpy(mm->addrs, x.addrs, x.naddr * sizeof *x.addrs);
        memcpy(mm->rec, x.rec, x.rec_len);
        mm->rec_len = x.rec_len;
        mm->has_record = 1;
        mm->via = p->handle;
        /* A new number alone re-arms nothing: only a real member (confirmed, not dead) that
         * moved gets its dials back. */
        if (moved && mm->confirmed && !mm->dead) mm->dials = 0;
        thash_sync(m, mm);
        /* A newcomer introduces itself on the session it joined by: we forward that record
         * to the members we hold sessions with. Nothing else is forwarded (each member
         * sends its own record to its peers), so a join costs each node O(N). */
        if (p->bootstrap && memcmp(x.id, p->id, P2P_ID_LEN) == 0) {
            const uint8_t *rp = mm->rec;
            for (size_t i = 0; i < h->peers.hwm; i++) {
                p2p_peer *q = h->peers.slots[i];
                if (q && q != p && mesh_peer(q)) send_members(h, q, &rp, &mm->rec_len, 1);
            }
        }
        plan_dial(h, mm, now);
    }
    return 0;
}

/* ---- broadcast origins ------------------------------------------------------------------ */

static uint32_t origin_slot(p2p_mesh *m, const uint8_t id[P2P_ID_LEN])
{
    for (uint32_t i = ix_first(&m->oix, key_hash(m, id, 1)); i != P2P_MESH_NONE;
         i = m->oix.next[i]) {
        m->work++;
        if (memcmp(m->o[i].id, id, P2P_ID_LEN) == 0) return i;
    }
    return P2P_MESH_NONE;
}

static void lru_unlink(p2p_mesh *m, uint32_t i)
{
    p2p_origin *o = &m->o[i];
    if (o->prev != P2P_MESH_NONE)
        m->o[o->prev].next = o->next;
    else
        m->ohead = o->next;
    if (o->next != P2P_MESH_NONE)
        m->o[o->next].prev = o->prev;
    else
        m->otail = o->prev;
}

static void lru_front(p2p_mesh *m, uint32_t i)
{
    p2p_origin *o = &m->o[i];
    o->prev = P2P_MESH_NONE;
    o->next = m->ohead;
    if (m->ohead != P2P_MESH_NONE)
        m->o[m->ohead].prev = i;
    else
        m->otail = i;
    m->ohead = i;
}

static uint64_t origin_newest(const p2p_origin *o)
{
    return o->nseen ? o->seen[o->nseen - 1] : o->floor;
}

/* Forgets an origin. Its newest timestamp raises the floor of its bucket, so forgetting it
 * opens no replay: a stranger in the same bucket is at worst refused until its clock passes. */
static void origin_forget(p2p_mesh *m, uint32_t i)
{
    p2p_origin *o = &m->o[i];
    uint64_t newest = origin_newest(o);
    if (o->tsfloor > newest) newest = o->tsfloor;
    uint64_t hv = key_hash(m, o->id, 1);
    uint64_t *f = &m->floors[(hv >> 32) % P2P_BCAST_FLOORS];
    if (newest >= P2P_BCAST_TS_MIN && newest > *f) *f = newest;
    lru_unlink(m, i);
    ix_del(&m->oix, hv, i);
    o->next = m->ofree;
    m->ofree = i;
    m->on--;
}

/* The state of an origin, made when new: a full table forgets the least recently heard
 * origin that we hold no session with. */
static uint32_t origin_get(p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint32_t i = origin_slot(m, id);
    if (i != P2P_MESH_NONE) return i;
    if (ix_ready(&m->oix, (uint32_t)m->omax)) return P2P_MESH_NONE;
    if (m->on >= m->omax) {
        uint32_t v = m->otail;
        while (v != P2P_MESH_NONE && m->o[v].peer) {
            m->work++;
            v = m->o[v].prev;
        }
        if (v == P2P_MESH_NONE) return P2P_MESH_NONE;
        origin_forget(m, v);
    }
    if (m->ofree == P2P_MESH_NONE) {
        size_t cap = m->ocap ? m->ocap * 2 : 16;
        if (cap > m->omax) cap = m->omax;
        p2p_origin *v = realloc(m->o, cap * sizeof *v);
        if (!v) return P2P_MESH_NONE;
        m->o = v;
        for (size_t k = cap; k-- > m->ocap;) {
            m->o[k].next = m->ofree;
            m->ofree = (uint32_t)k;
        }
        m->ocap = cap;
    }
    i = m->ofree;
    p2p_origin *o = &m->o[i];
    m->ofree = o->next;
    memset(o, 0, sizeof *o);
    memcpy(o->id, id, P2P_ID_LEN);
    uint64_t hv = key_hash(m, id, 1);
    o->tsfloor = m->floors[(hv >> 32) % P2P_BCAST_FLOORS];
    o->peer = session_for(h, id) != NULL;
    o->last = now;
    ix_put(&m->oix, hv, i);
    lru_front(m, i);
    m->on++;
    return i;
}

/* 1 when the origin's state says s was seen, or is too old to tell. */
static int origin_seen(const p2p_origin *o, uint64_t s)
{
    if (s <= o->floor || (s >= P2P_BCAST_TS_MIN && s <= o->tsfloor)) return 1;
    if (o->nseen == P2P_BCAST_SEEN && s < o->seen[0]) return 1;
    for (int k = o->nseen; k-- > 0;)
        if (o->seen[k] == s) return 1;
    return 0;
}

static void origin_note(p2p_origin *o, uint64_t s)
{
    int k = o->nseen;
    if (k == P2P_BCAST_SEEN) {
        if (o->seen[0] > o->floor) o->floor = o->seen[0];
        memmove(o->seen, o->seen + 1, (P2P_BCAST_SEEN - 1) * sizeof *o->seen);
        k--;
    }
    int at = k;
    while (at > 0 && o->seen[at - 1] > s) at--;
    memmove(o->seen + at + 1, o->seen + at, (size_t)(k - at) * sizeof *o->seen);
    o->seen[at] = s;
    o->nseen = (uint8_t)(k + 1);
}

/* 0 when broadcast (origin, s) may be new to us: inside the time window of our clock, and
 * neither seen nor older than what the origin's state (or its bucket's floor, when we hold
 * none) remembers. Checked before any signature. */
static int bcast_old(p2p_host *h, const uint8_t origin[P2P_ID_LEN], uint64_t s, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint64_t c = clock_us(h, now);
    if (s >= P2P_BCAST_TS_MIN && c) {
        if (c > P2P_BCAST_PAST_US && s < c - P2P_BCAST_PAST_US) return 1;
        if (s > c + P2P_BCAST_FUTURE_US) return 1;
        if (s < m->boot_us) return 1; /* from before we started: we may have had it */
    }
    uint32_t i = origin_slot(m, origin);
    if (i != P2P_MESH_NONE) return origin_seen(&m->o[i], s);
    uint64_t hv = key_hash(m, origin, 1);
    return s >= P2P_BCAST_TS_MIN && s <= m->floors[(hv >> 32) % P2P_BCAST_FLOORS];
}

/* Forgets origins that can no longer matter (their newest broadcast is out of the window)
 * or were silent for P2P_BCAST_IDLE_US, least recent first. */
static void origins_expire(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint64_t c = clock_us(h, now);
    while (m->otail != P2P_MESH_NONE) {
        p2p_origin *o = &m->o[m->otail];
        uint64_t newest = origin_newest(o);
        int gone =
            o->last + P2P_BCAST_IDLE_US <= now ||
            (c > P2P_BCAST_PAST_US && newest >= P2P_BCAST_TS_MIN && newest < c - P2P_BCAST_PAST_US);
        if (!gone) break;
        origin_forget(m, m->otail);
    }
}

static void origin_peer(p2p_host *h, const uint8_t id[P2P_ID_LEN], int up)
{
    uint32_t i = origin_slot(&h->mesh, id);
    if (i != P2P_MESH_NONE) h->mesh.o[i].peer = (uint8_t)up;
}

/* ---- joins and leaves ------------------------------------------------------------------- */

static void observed(p2p_host *h, const p2p_peer *p, uint64_t now);

void p2p_mesh_on_join(p2p_host *h, p2p_peer *p, uint64_t now)
{
    h->mesh_dl_valid = 0;
    if (p->has_observed) observed(h, p, now);
    origin_peer(h, p->id, 1);
    if (!h->member || !p->peer_mesh) return;
    p2p_member *x = member_find(h, p->id);
    if (!x && (h->mesh.n < h->mesh.max || member_evict(h))) x = member_add(h, p->id, now);
    if (x) confirm(h, x);
    if (p->bootstrap)
        send_table(h, p, 0, 1);
    else
        send_own(h, p);
}

void p2p_mesh_on_leave(p2p_host *h, const uint8_t id[P2P_ID_LEN], int reason, uint64_t now)
{
    h->mesh_dl_valid = 0;
    if (session_for(h, id)) return;
    origin_peer(h, id, 0);
    p2p_member *x = member_find(h, id);
    if (!x) return;
    if (reason == P2P_LEAVE_CLOSED || reason == P2P_LEAVE_DENIED) {
        member_remove(h, x); /* it left: forget it until it comes back */
        return;
    }
    /* It went silent: try it again a few times before giving up on it. */
    x->dials = 0;
    x->dial_at = P2P_TIME_NEVER;
    if (x->has_record && h->member && !x->dead) {
        dial_at(&h->mesh, x, now + P2P_MESH_REDIAL_US);
        x->dials = 1;
    }
}

/* Adds an advertised address to the node's list (p2p_own_add); when it changed, our record is
 * signed again and sent to every mesh peer. Returns 0 or P2P_ERR_LIMIT. */
static int add_addr(p2p_host *h, const p2p_addr *a, int local, uint64_t now)
{
    h->mesh_dl_valid = 0;
    int rc = p2p_own_add(h, a, local);
    if (rc <= 0) return rc;
    sign_own(h, now);
    if (!h->member) return 0;
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && mesh_peer(q)) send_own(h, q);
    }
    return 0;
}

static int same_ip(const p2p_addr *a, const p2p_addr *b)
{
    return a->family == b->family && memcmp(a->ip, b->ip, a->family == P2P_AF_INET4 ? 4 : 16) == 0;
}

/* The peer told us the address it saw us at (handshake). One peer's word is not enough: it
 * could name anyone's address, and we would advertise it to the whole mesh as ours. The
 * address becomes a reflexive one when a second peer, with another id and another source
 * address, reports it too. */
static void observed(p2p_host *h, const p2p_peer *p, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    const p2p_addr *a = &p->observed;
    /* only UDP addresses: a stream's is never reflexive (design 12 section 4.3) */
    if (a->family != P2P_AF_INET4 && a->family != P2P_AF_INET6) return;
    if (p2p_addr_scope(a) == P2P_SCOPE_INVALID) return;
    if (p->addr.family != P2P_AF_INET4 && p->addr.family != P2P_AF_INET6) return;
    for (size_t i = 0; i < h->naddr; i++)
        if (p2p_addr_equal(&h->addrs[i], a)) return;
    for (size_t i = 0; i < m->nobs;) { /* forget stale reports */
        if (m->obs[i].at + P2P_OBSERVED_TTL_US <= now)
            m->obs[i] = m->obs[--m->nobs];
        else
            i++;
    }
    for (size_t i = 0; i < m->nobs; i++) {
        p2p_observed *o = &m->obs[i];
        if (!p2p_addr_equal(&o->addr, a)) continue;
        if (memcmp(o->by, p->id, P2P_ID_LEN) != 0 && !same_ip(&o->from, &p->addr)) {
            m->obs[i] = m->obs[--m->nobs];
            add_addr(h, a, 0, now);
        }
        return;
    }
    size_t k = m->nobs;
    if (k == P2P_OBSERVED_PENDING) { /* the oldest report goes */
        k = 0;
        for (size_t i = 1; i < m->nobs; i++)
            if (m->obs[i].at < m->obs[k].at) k = i;
    } else {
        m->nobs++;
    }
    m->obs[k].addr = *a;
    memcpy(m->obs[k].by, p->id, P2P_ID_LEN);
    m->obs[k].from = p->addr;
    m->obs[k].at = now;
}

int p2p_mesh_add_address(p2p_host *h, const p2p_addr *a, uint64_t now)
{
    return add_addr(h, a, 1, now);
}

/* The member record of an id, for introductions: NULL when unknown. */
const p2p_member *p2p_mesh_member(const p2p_host *h, const uint8_t id[P2P_ID_LEN])
{
    uint32_t i = member_slot(&h->mesh, id, NULL);
    const p2p_member *x = i == P2P_MESH_NONE ? NULL : &h->mesh.m[i];
    return x && x->has_record ? x : NULL;
}

int p2p_mesh_connect_id(p2p_host *h, const uint8_t id[P2P_ID_LEN], p2p_peer_handle *out)
{
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

/* Dials every address of a member that we may send to (a record names addresses anyone
 * could have chosen) at once; when no path answers soon, the attempt asks the member the
 * record came from (or another) to introduce the two (p2p_nat.c). */
static p2p_peer *dial_member(p2p_host *h, p2p_member *x, uint64_t now, int *rc)
{
    p2p_addr cands[P2P_MEMBER_ADDRS];
    size_t n = 0;
    for (size_t i = 0; i < x->naddr; i++)
        if (p2p_may_send_learned(h, &x->addrs[i])) cands[n++] = x->addrs[i];
    if (!n) {
        x->dials++;
        *rc = P2P_ERR_PEER;
        return NULL;
    }
    p2p_attempt_opts opt = {.introducer = x->via, .ask_at = now + P2P_INTRO_AFTER_US};
    p2p_peer *p = p2p_attempt_new(h, cands, n, x->id, &opt, rc);
    if (!p) return NULL;
    x->dials++;
    return p;
}

/* ---- the broadcast cache ---------------------------------------------------------------- */

static void cache_drop_head(p2p_mesh *m)
{
    p2p_bcast *b = &m->cache[m->cache_head];
    ix_del(&m->cix, key_hash(m, b->origin, b->seq), (uint32_t)m->cache_head);
    m->cache_bytes -= b->len;
    free(b->env);
    b->env = NULL;
    m->cache_head = (m->cache_head + 1) % P2P_BCAST_CACHE_ENTRIES;
    m->cache_n--;
}

static void cache_trim(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    while (m->cache_n && (m->cache_bytes > P2P_BCAST_CACHE_BYTES ||
                          m->cache[m->cache_head].at + P2P_BCAST_CACHE_US <= now))
        cache_drop_head(m);
}

/* Keeps a broadcast to answer IWANT, with the lane it travels on. Returns its serial (0: not
 * kept). */
static uint64_t cache_put(p2p_host *h, const uint8_t *env, size_t len, uint8_t lane, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    if (!m->cache) {
        m->cache = calloc(P2P_BCAST_CACHE_ENTRIES, sizeof *m->cache);
        if (!m->cache) return 0;
    }
    if (ix_ready(&m->cix, P2P_BCAST_CACHE_ENTRIES)) return 0;
    uint8_t *copy = malloc(len);
    if (!copy) return 0;
    memcpy(copy, env, len);
    if (m->cache_n == P2P_BCAST_CACHE_ENTRIES) cache_drop_head(m);
    size_t i = (m->cache_head + m->cache_n) % P2P_BCAST_CACHE_ENTRIES;
    p2p_bcast *b = &m->cache[i];
    memcpy(b->origin, env, P2P_ID_LEN);
    b->seq = p2p_get_u64(env + P2P_ID_LEN);
    b->at = now;
    b->len = len;
    b->env = copy;
    b->lane = lane;
    b->serial = ++m->cache_serial;
    ix_put(&m->cix, key_hash(m, b->origin, b->seq), (uint32_t)i);
    m->cache_n++;
    m->cache_bytes += len;
    cache_trim(h, now);
    return b->serial;
}

static const p2p_bcast *cache_get(p2p_mesh *m, const uint8_t origin[P2P_ID_LEN], uint64_t seq)
{
    for (uint32_t i = ix_first(&m->cix, key_hash(m, origin, seq)); i != P2P_MESH_NONE;
         i = m->cix.next[i]) {
        m->work++;
        const p2p_bcast *b = &m->cache[i];
        if (b->seq == seq && memcmp(b->origin, origin, P2P_ID_LEN) == 0) return b;
    }
    return NULL;
}

/* ---- broadcast -------------------------------------------------------------------------- */

/* Sends a broadcast envelope to one peer, unless it is larger than the peer accepts (it
 * would end the session there): such a peer does not get it. Returns what the append did. */
static int send_bcast(p2p_host *h, p2p_peer *q, const uint8_t *env, size_t len, uint64_t serial,
                      uint8_t lane)
{
    if (len - BCAST_OVERHEAD > q->peer_max_message) return 0;
    int rc = p2p_peer_append_lane(h, q, lane, P2P_REC_BROADCAST, env, len);
    if (!rc && serial) p2p_replay_update(&q->mesh_served, serial);
    return rc;
}

int p2p_mesh_broadcast(p2p_host *h, uint8_t lane, uint16_t type, const uint8_t *data, size_t len,
                       uint64_t *seq, uint64_t now)
{
    if (len + BCAST_OVERHEAD > h->max_message) return P2P_ERR_TOO_BIG;
    size_t lab = sizeof bcast_label - 1;
    uint8_t *buf = malloc(lab + len + BCAST_OVERHEAD);
    if (!buf) return P2P_ERR_NOMEM;
    uint8_t *env = buf + lab;
    /* The number is our clock (receivers refuse stamps outside their window), and grows
     * even when the clock does not. Without a clock, it counts from 1. */
    uint64_t c = clock_us(h, now);
    uint64_t s = c > h->mesh.bseq ? c : h->mesh.bseq + 1;
    h->mesh.bseq = s;
    memcpy(buf, bcast_label, lab);
    memcpy(env, h->ident.ed_pk, P2P_ID_LEN);
    p2p_put_u64(env + P2P_ID_LEN, s);
    env[40] = (uint8_t)type;
    env[41] = (uint8_t)(type >> 8);
    if (len) memcpy(env + BCAST_HEAD, data, len);
    p2p_sign(env + BCAST_HEAD + len, buf, lab + BCAST_HEAD + len, h->ident.ed_sk);
    size_t elen = len + BCAST_OVERHEAD;
    uint64_t serial = cache_put(h, env, elen, lane, now);
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q->state == P2P_S_CONNECTED) send_bcast(h, q, env, elen, serial, lane);
    }
    free(buf);
    if (seq) *seq = s;
    return 0;
}

static void announce(p2p_host *h, p2p_peer *from, const uint8_t origin[P2P_ID_LEN], uint64_t seq)
{
    uint8_t e[WANT_ENTRY];
    memcpy(e, origin, P2P_ID_LEN);
    p2p_put_u64(e + P2P_ID_LEN, seq);
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (q && q != from && mesh_peer(q) && memcmp(q->id, origin, P2P_ID_LEN) != 0)
            p2p_peer_append(h, q, P2P_REC_IHAVE, e, sizeof e);
    }
}

/* Any peer may hand us a broadcast (the origin, or a member answering our IWANT); only its
 * signature, its time window and our duplicate state decide. */
static int on_broadcast(p2p_host *h, p2p_peer *p, const uint8_t *env, size_t len, uint64_t now)
{
    if (len < BCAST_OVERHEAD) return -1;
    p2p_mesh *m = &h->mesh;
    const uint8_t *origin = env;
    uint64_t s = p2p_get_u64(env + P2P_ID_LEN);
    if (memcmp(origin, h->ident.ed_pk, P2P_ID_LEN) == 0) return 0;
    m->work++;
    if (bcast_old(h, origin, s, now)) {
        h->stats.dropped_replay++;
        return 0;
    }
    size_t lab = sizeof bcast_label - 1;
    uint8_t *msg = malloc(lab + len - P2P_SIG_LEN);
    if (!msg) return 0;
    memcpy(msg, bcast_label, lab);
    memcpy(msg + lab, env, len - P2P_SIG_LEN);
    h->stats.work_verify++;
    int bad = p2p_verify(env + len - P2P_SIG_LEN, msg, lab + len - P2P_SIG_LEN, origin);
    free(msg);
    if (bad) { /* forged: never delivered, and (as for member records)
                                   * the peer that sent it loses its session */
        h->stats.dropped++;
        return -1;
    }
    uint32_t oi = origin_get(h, origin, now);
    if (oi == P2P_MESH_NONE) { /* every origin we track is a peer's: no room */
        h->stats.dropped_budget++;
        return 0;
    }
    p2p_origin *o = &m->o[oi];
    origin_note(o, s);
    o->last = now;
    lru_unlink(m, oi);
    lru_front(m, oi);
    p2p_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = P2P_EV_MESSAGE;
    p2p_fill_event(p, &ev);
    ev.broadcast = 1;
    memcpy(ev.origin, origin, P2P_ID_LEN);
    ev.seq = s;
    ev.msg_type = (uint16_t)(env[40] | (env[41] << 8));
    ev.lane = p->ctl_lane; /* the lane it came on, which it travels on from here too */
    p2p_event_push(h, &ev, env + BCAST_HEAD, len - BCAST_OVERHEAD);
    uint64_t serial = cache_put(h, env, len, p->ctl_lane, now);
    if (serial) p2p_replay_update(&p->mesh_served, serial); /* p has it */
    if (h->member) announce(h, p, origin, s);
    return 0;
}

static uint32_t want_slot(p2p_mesh *m, const uint8_t origin[P2P_ID_LEN], uint64_t seq)
{
    for (uint32_t i = ix_first(&m->wix, key_hash(m, origin, seq)); i != P2P_MESH_NONE;
         i = m->wix.next[i]) {
        m->work++;
        if (m->wants[i].seq == seq && memcmp(m->wants[i].origin, origin, P2P_ID_LEN) == 0) return i;
    }
    return P2P_MESH_NONE;
}

/* A mesh peer announces broadcasts it holds: we pull those we lack, unless their copy comes
 * first. At most P2P_IWANT_MAX pulls wait, P2P_IWANT_PER_PEER of them on one peer's word. */
static int on_ihave(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len % WANT_ENTRY) return -1;
    p2p_mesh *m = &h->mesh;
    if (!h->member || !p->peer_mesh) {
        h->stats.dropped_unsolicited++;
        return 0;
    }
    if (!m->wants) {
        m->wants = malloc(P2P_IWANT_MAX * sizeof *m->wants);
        if (!m->wants) return 0;
    }
    if (ix_ready(&m->wix, P2P_IWANT_MAX)) return 0;
    for (size_t off = 0; off < len; off += WANT_ENTRY) {
        const uint8_t *origin = body + off;
        uint64_t s = p2p_get_u64(body + off + P2P_ID_LEN);
        m->work++;
        if (memcmp(origin, h->ident.ed_pk, P2P_ID_LEN) == 0) continue;
        if (bcast_old(h, origin, s, now) || want_slot(m, origin, s) != P2P_MESH_NONE) continue;
        if (m->nwants >= P2P_IWANT_MAX || p->mesh_wants >= P2P_IWANT_PER_PEER) {
            h->stats.dropped_budget++;
            continue;
        }
        uint32_t i = (uint32_t)((m->want_head + m->nwants++) % P2P_IWANT_MAX);
        p2p_want *w = &m->wants[i];
        memcpy(w->origin, origin, P2P_ID_LEN);
        w->seq = s;
        w->at = now + P2P_IWANT_DELAY_US;
        w->from = p->handle;
        p->mesh_wants++;
        ix_put(&m->wix, key_hash(m, origin, s), i);
    }
    return 0;
}

/* A peer pulls broadcasts from our cache. Each cached broadcast goes to one peer at most
 * once (whatever the record repeats, and whoever sent it to whom before), so one IWANT
 * entry earns at most one copy, and a peer at most the cache; we stop when its stream
 * refuses more. Only members answer, and only mesh peers ask (they heard our IHAVE). */
static int on_iwant(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len)
{
    if (len % WANT_ENTRY) return -1;
    p2p_mesh *m = &h->mesh;
    if (!h->member || !p->peer_mesh) {
        h->stats.dropped_unsolicited++;
        return 0;
    }
    for (size_t off = 0; off < len; off += WANT_ENTRY) {
        m->work++;
        const p2p_bcast *b = cache_get(m, body + off, p2p_get_u64(body + off + P2P_ID_LEN));
        if (!b) continue;
        if (p2p_replay_check(&p->mesh_served, b->serial)) {
            h->stats.dropped_unsolicited++;
            continue;
        }
        if (send_bcast(h, p, b->env, b->len, b->serial, b->lane)) break;
        h->stats.broadcasts_relayed++;
    }
    return 0;
}

/* ---- anti-entropy ----------------------------------------------------------------------- */

/* Lists our own record and every advertised one (confirmed members only: what others claimed
 * to us is theirs to tell). */
static void send_digest(p2p_host *h, p2p_peer *p, uint8_t reply)
{
    p2p_mesh *m = &h->mesh;
    uint8_t *body = malloc(1 + (m->n + 1) * 40);
    if (!body) return;
    size_t len = 1;
    body[0] = reply;
    memcpy(body + len, h->ident.ed_pk, P2P_ID_LEN);
    p2p_put_u64(body + len + P2P_ID_LEN, m->own_seq);
    len += 40;
    for (size_t i = 0; i < m->n; i++) {
        if (!advertised(&m->m[i])) continue;
        memcpy(body + len, m->m[i].id, P2P_ID_LEN);
        p2p_put_u64(body + len + P2P_ID_LEN, m->m[i].seq);
        len += 40;
    }
    m->work += m->n;
    p2p_peer_append(h, p, P2P_REC_DIGEST, body, len);
    free(body);
}

static int on_summary(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len != sizeof h->mesh.thash) return -1;
    if (memcmp(h->mesh.thash, body, sizeof h->mesh.thash) != 0 && may_answer(h, p, now))
        send_digest(h, p, 0);
    return 0;
}

/* The peer listed what it holds: send what it lacks, and (unless this is already a reply)
 * our own list when it holds something we lack. One pass over the digest, one over our
 * table. */
static int on_digest(p2p_host *h, p2p_peer *p, const uint8_t *body, size_t len, uint64_t now)
{
    if (len < 1 || (len - 1) % 40) return -1;
    if (!may_answer(h, p, now)) return 0;
    p2p_mesh *m = &h->mesh;
    size_t count = (len - 1) / 40;
    const uint8_t *d = body + 1;
    uint64_t gen = ++m->digest_gen;
    int own_held = 0, lacking = 0;
    for (size_t j = 0; j < count; j++) {
        const uint8_t *id = d + 40 * j;
        uint64_t seq = p2p_get_u64(id + P2P_ID_LEN);
        m->work++;
        if (memcmp(id, h->ident.ed_pk, P2P_ID_LEN) == 0) {
            own_held |= seq >= m->own_seq;
            continue;
        }
        p2p_member *x = member_find(h, id);
        if (x && x->has_record && seq >= x->seq) x->mark = gen;
        if (!x || !x->has_record || x->seq < seq) lacking = 1;
    }
    send_table(h, p, gen, !own_held);
    if (!body[0] && lacking) send_digest(h, p, 1);
    return 0;
}

static void gossip(p2p_host *h, uint64_t now)
{
    h->mesh.next_gossip =
        now + P2P_GOSSIP_US - P2P_GOSSIP_US / 5 + p2p_rng_below(&h->rng, 2 * P2P_GOSSIP_US / 5);
    size_t count = 0;
    for (size_t i = 0; i < h->peers.hwm; i++)
        if (h->peers.slots[i] && mesh_peer(h->peers.slots[i])) count++;
    if (!count) return;
    size_t pick = p2p_rng_below(&h->rng, (uint32_t)count);
    for (size_t i = 0; i < h->peers.hwm; i++) {
        p2p_peer *q = h->peers.slots[i];
        if (!q || !mesh_peer(q) || pick--) continue;
        p2p_peer_append(h, q, P2P_REC_SUMMARY, h->mesh.thash, sizeof h->mesh.thash);
        return;
    }
}

int p2p_mesh_on_record(p2p_host *h, p2p_peer *p, uint8_t kind, const uint8_t *body, size_t len,
                       uint64_t now)
{
    h->mesh_dl_valid = 0;
    int gossiping = h->member && p->peer_mesh;
    switch (kind) {
    case P2P_REC_MEMBERS: return on_members(h, p, body, len, now);
    case P2P_REC_BROADCAST: return on_broadcast(h, p, body, len, now);
    case P2P_REC_IHAVE: return on_ihave(h, p, body, len, now);
    case P2P_REC_IWANT: return on_iwant(h, p, body, len);
    case P2P_REC_SUMMARY: return gossiping ? on_summary(h, p, body, len, now) : 0;
    case P2P_REC_DIGEST: return gossiping ? on_digest(h, p, body, len, now) : 0;
    default: return -1;
    }
}

/* ---- timers ----------------------------------------------------------------------------- */

uint64_t p2p_mesh_deadline(const p2p_host *h)
{
    const p2p_mesh *m = &h->mesh;
    uint64_t d = m->refresh_at;
    if (h->member && m->next_gossip < d) d = m->next_gossip;
    if (m->next_scan < d) d = m->next_scan;
    if (m->next_dial < d) d = m->next_dial;
    if (m->nwants && m->wants[m->want_head].at < d) d = m->wants[m->want_head].at;
    if (m->cache_n && m->cache[m->cache_head].at + P2P_BCAST_CACHE_US < d)
        d = m->cache[m->cache_head].at + P2P_BCAST_CACHE_US;
    return d;
}

/* A planned dial is due. */
static void dial(p2p_host *h, p2p_member *x, uint64_t now)
{
    if (session_for(h, x->id)) {
        x->dial_at = P2P_TIME_NEVER;
        return;
    }
    if (x->dials >= dial_budget(x) || !x->naddr) {
        bury(h, x, now);
        return;
    }
    dial_at(&h->mesh, x, now + (P2P_MESH_REDIAL_US << x->dials));
    int rc;
    p2p_peer *p = dial_member(h, x, now, &rc);
    if (p) p->auto_dial = 1;
}

/* Expires records and forgets claims and dead members whose time is up; makes due dials. */
static void member_scan(p2p_host *h, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    uint64_t t = unix_s(h, now);
    m->next_dial = P2P_TIME_NEVER;
    for (size_t i = 0; i < m->n;) {
        p2p_member *x = &m->m[i];
        size_t before = m->n;
        m->work++;
        int expired = (x->has_record && x->expires && t && x->expires <= t) || x->forget_at <= now;
        if (expired && !session_for(h, x->id))
            member_remove(h, x);
        else if (x->dial_at <= now)
            dial(h, x, now);
        if (m->n == before) {
            if (m->m[i].dial_at < m->next_dial) m->next_dial = m->m[i].dial_at;
            i++;
        }
    }
}

void p2p_mesh_on_timeout(p2p_host *h, uint64_t now)
{
    h->mesh_dl_valid = 0;
    p2p_mesh *m = &h->mesh;
    if (now >= m->refresh_at) {
        sign_own(h, now);
        for (size_t i = 0; i < h->peers.hwm; i++) {
            p2p_peer *q = h->peers.slots[i];
            if (q && mesh_peer(q)) send_own(h, q);
        }
    }
    if (h->member && now >= m->next_gossip) gossip(h, now);
    if (now >= m->next_scan) {
        m->next_scan = now + P2P_MESH_SCAN_US;
        origins_expire(h, now);
        member_scan(h, now);
    } else if (now >= m->next_dial) {
        member_scan(h, now);
    }
    while (m->nwants && m->wants[m->want_head].at <= now) {
        p2p_want w = m->wants[m->want_head];
        ix_del(&m->wix, key_hash(m, w.origin, w.seq), (uint32_t)m->want_head);
        m->want_head = (m->want_head + 1) % P2P_IWANT_MAX;
        m->nwants--;
        p2p_peer *from = p2p_lookup(h, w.from);
        if (from && from->mesh_wants) from->mesh_wants--;
        if (!bcast_old(h, w.origin, w.seq, now) && from && from->state == P2P_S_CONNECTED) {
            uint8_t e[WANT_ENTRY];
            memcpy(e, w.origin, P2P_ID_LEN);
            p2p_put_u64(e + P2P_ID_LEN, w.seq);
            p2p_peer_append(h, from, P2P_REC_IWANT, e, sizeof e);
        }
    }
    cache_trim(h, now);
}

/* ---- lifetime --------------------------------------------------------------------------- */

int p2p_mesh_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    p2p_mesh *m = &h->mesh;
    memset(m, 0, sizeof *m);
    m->max = 4u * h->max_peers + 64;
    m->omax = m->max;
    m->unix_base = cfg->unix_us;
    m->mono_base = now;
    m->boot_us = cfg->unix_us;
    /* Sequence numbers from the wall clock: a node restarted with the same key outranks its
     * old record and its old broadcast numbers. */
    m->own_seq = cfg->unix_us / 1000u;
    m->bseq = cfg->unix_us;
    m->next_gossip = now + P2P_GOSSIP_US;
    m->next_scan = now + P2P_MESH_SCAN_US;
    m->next_dial = P2P_TIME_NEVER;
    m->ofree = m->ohead = m->otail = P2P_MESH_NONE;
    /* The index key: secret (derived from our signing key), so nobody can aim at a chain. */
    uint8_t k[16];
    p2p_blake2b(k, sizeof k, (const uint8_t *)index_label, sizeof index_label - 1, h->ident.ed_sk,
                P2P_KEY_LEN, NULL, 0);
    m->hkey[0] = p2p_get_u64(k);
    m->hkey[1] = p2p_get_u64(k + 8);
    p2p_wipe(k, sizeof k);
    sign_own(h, now);
    return 0;
}

void p2p_mesh_free(p2p_host *h)
{
    p2p_mesh *m = &h->mesh;
    while (m->cache_n) cache_drop_head(m);
    free(m->cache);
    free(m->m);
    free(m->o);
    free(m->wants);
    ix_free(&m->mix);
    ix_free(&m->oix);
    ix_free(&m->cix);
    ix_free(&m->wix);
    memset(m, 0, sizeof *m);
}
