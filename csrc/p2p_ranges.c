/* p2p_ranges.c - sorted, merged sets of half-open ranges. */
#include "p2p_ranges.h"
#include "p2pnet.h"

#include <stdlib.h>
#include <string.h>

void p2p_rangeset_init(p2p_rangeset *s)
{
    memset(s, 0, sizeof *s);
}

void p2p_rangeset_free(p2p_rangeset *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

void p2p_rangeset_clear(p2p_rangeset *s)
{
    s->n = 0;
}

static int reserve(p2p_rangeset *s, size_t want)
{
    if (want <= s->cap) return 0;
    size_t cap = s->cap ? s->cap * 2 : 4;
    while (cap < want) cap *= 2;
    p2p_range *v = realloc(s->v, cap * sizeof *v);
    if (!v) return P2P_ERR_NOMEM;
    s->v = v;
    s->cap = cap;
    return 0;
}

/* Index of the first range whose hi >= x (ranges ending before x come earlier). */
static size_t lower(const p2p_rangeset *s, uint64_t x)
{
    size_t a = 0, b = s->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s->v[m].hi < x)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

/* Index of the first range whose hi > x: the one holding x, or the next above it. */
static size_t above(const p2p_rangeset *s, uint64_t x)
{
    size_t a = 0, b = s->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s->v[m].hi <= x)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

int p2p_rangeset_add(p2p_rangeset *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi) return 0;
    /* Fast path: appending above everything, the common case for in-order arrival. */
    if (s->n && s->v[s->n - 1].hi == lo) {
        s->v[s->n - 1].hi = hi;
        return 0;
    }
    if (!s->n || s->v[s->n - 1].hi < lo) {
        if (reserve(s, s->n + 1)) return P2P_ERR_NOMEM;
        s->v[s->n].lo = lo;
        s->v[s->n].hi = hi;
        s->n++;
        return 0;
    }
    size_t i = lower(s, lo); /* first range that touches or follows lo */
    size_t j = i;            /* ranges i..j-1 merge with [lo, hi) */
    while (j < s->n && s->v[j].lo <= hi) j++;
    if (i == j) {
        if (reserve(s, s->n + 1)) return P2P_ERR_NOMEM;
        memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof *s->v);
        s->v[i].lo = lo;
        s->v[i].hi = hi;
        s->n++;
        return 0;
    }
    if (s->v[i].lo < lo) lo = s->v[i].lo;
    if (s->v[j - 1].hi > hi) hi = s->v[j - 1].hi;
    s->v[i].lo = lo;
    s->v[i].hi = hi;
    memmove(&s->v[i + 1], &s->v[j], (s->n - j) * sizeof *s->v);
    s->n -= j - i - 1;
    return 0;
}

int p2p_rangeset_remove(p2p_rangeset *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi || !s->n) return 0;
    size_t i = above(s, lo);
    while (i < s->n && s->v[i].lo < hi) {
        p2p_range *r = &s->v[i];
        if (r->lo < lo && r->hi > hi) { /* split in two */
            if (reserve(s, s->n + 1)) return P2P_ERR_NOMEM;
            r = &s->v[i];
            memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof *s->v);
            s->n++;
            s->v[i].hi = lo;
            s->v[i + 1].lo = hi;
            return 0;
        }
        if (r->lo < lo) {
            r->hi = lo;
            i++;
            continue;
        }
        if (r->hi > hi) {
            r->lo = hi;
            break;
        }
        memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
        s->n--;
    }
    return 0;
}

int p2p_rangeset_contains(const p2p_rangeset *s, uint64_t x)
{
    size_t i = above(s, x);
    return i < s->n && s->v[i].lo <= x;
}

int p2p_rangeset_first_gap(const p2p_rangeset *s, uint64_t lo, uint64_t hi, uint64_t *glo,
                           uint64_t *ghi)
{
    size_t i = above(s, lo);
    while (lo < hi) {
        if (i >= s->n || s->v[i].lo >= hi) {
            *glo = lo;
            *ghi = hi;
            return 1;
        }
        if (s->v[i].lo > lo) {
            *glo = lo;
            *ghi = s->v[i].lo;
            return 1;
        }
        lo = s->v[i].hi;
        i++;
    }
    return 0;
}

void p2p_rangeset_trim(p2p_rangeset *s, size_t max)
{
    if (s->n <= max) return;
    size_t drop = s->n - max;
    memmove(s->v, s->v + drop, max * sizeof *s->v);
    s->n = max;
}

/* ---- out-of-order stream bytes (hardening: stream) -------------------------------------- */

void p2p_pieces_init(p2p_pieces *q)
{
    memset(q, 0, sizeof *q);
}

static uint32_t next_prio(p2p_pieces *q)
{
    /* xorshift32. The peer never learns the priorities, so it cannot shape the tree; and the
     * piece cap bounds its depth whatever happens. */
    uint32_t x = q->seed ? q->seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    q->seed = x;
    return x;
}

static void charge(p2p_pieces *q, const p2p_budget *b, int64_t delta)
{
    q->held = (uint64_t)((int64_t)q->held + delta);
    if (!b) return;
    if (delta > 0)
        b->take(b->ud, (size_t)delta);
    else if (delta < 0)
        b->give(b->ud, (size_t)-delta);
}

static void piece_free(p2p_pieces *q, p2p_piece *s)
{
    q->n--;
    q->bytes -= s->len;
    free(s->buf);
    free(s);
}

static void free_tree(p2p_pieces *q, p2p_piece *t)
{
    while (t) {
        free_tree(q, t->l);
        p2p_piece *r = t->r;
        piece_free(q, t);
        t = r;
    }
}

void p2p_pieces_free(p2p_pieces *q, const p2p_budget *b)
{
    uint64_t held = q->held;
    free_tree(q, q->root);
    q->root = NULL;
    if (b && held) b->give(b->ud, (size_t)held);
    q->held = 0;
}

/* Splits t into *l, the pieces starting below k, and *r, the rest. */
static void split(p2p_pieces *q, p2p_piece *t, uint64_t k, p2p_piece **l, p2p_piece **r)
{
    if (!t) {
        *l = *r = NULL;
        return;
    }
    q->work++;
    if (t->off < k) {
        split(q, t->r, k, &t->r, r);
        *l = t;
    } else {
        split(q, t->l, k, l, &t->l);
        *r = t;
    }
}

/* Joins two treaps, every piece of a below every piece of b. */
static p2p_piece *join(p2p_pieces *q, p2p_piece *a, p2p_piece *b)
{
    if (!a) return b;
    if (!b) return a;
    q->work++;
    if (a->prio > b->prio) {
        a->r = join(q, a->r, b);
        return a;
    }
    b->l = join(q, a, b->l);
    return b;
}

/* What the pieces that merge with a new range add up to. */
typedef struct merge_scan {
    size_t count;
    uint64_t have, end; /* bytes they hold; the end of the highest */
    uint64_t alloc;     /* bytes allocated for them, nodes included */
    p2p_piece *largest;
} merge_scan;

static void scan(p2p_pieces *q, p2p_piece *t, merge_scan *m)
{
    for (; t; t = t->r) {
        q->work++;
        scan(q, t->l, m);
        m->count++;
        m->have += t->len;
        m->alloc += sizeof *t + t->cap;
        if (t->off + t->len > m->end) m->end = t->off + t->len;
        if (!m->largest || t->len > m->largest->len) m->largest = t;
    }
}

/* Copies the new bytes of [lo, hi) that lie in [*cur, upto) into node's buffer. */
static void copy_new(p2p_piece *node, const uint8_t *data, uint64_t lo, uint64_t hi, uint64_t cur,
                     uint64_t upto)
{
    uint64_t a = cur > lo ? cur : lo, z = upto < hi ? upto : hi;
    if (a < z) memcpy(node->buf + (a - node->start), data + (a - lo), (size_t)(z - a));
}

/* Moves the pieces of tree t, in order, into node: for each, the new bytes before it, then its
 * own bytes (node's are in place already); frees all but node. *cur is where the last ended. */
static void absorb(p2p_pieces *q, p2p_piece *node, p2p_piece *t, const uint8_t *data, uint64_t lo,
                   uint64_t hi, uint64_t *cur)
{
    while (t) {
        absorb(q, node, t->l, data, lo, hi, cur);
        p2p_piece *r = t->r;
        copy_new(node, data, lo, hi, *cur, t->off);
        *cur = t->off + t->len;
        if (t != node) {
            q->work++;
            memcpy(node->buf + (t->off - node->start), t->buf + (t->off - t->start), t->len);
            free(t->buf);
            free(t);
        }
        t = r;
    }
}

int p2p_pieces_add(p2p_pieces *q, uint64_t off, const uint8_t *data, size_t len, uint64_t room_lo,
                   uint64_t room_hi, const p2p_budget *b)
{
    if (!len) return 0;
    uint64_t lo = off, hi = off + len;
    p2p_piece *L, *R, *M, *C, *P = NULL;
    split(q, q->root, lo, &L, &R);
    split(q, R, hi + 1, &M, &C); /* M: the pieces starting in [lo, hi], which touch it */
    p2p_piece *last = L;         /* the piece before lo touches it if it reaches lo */
    while (last && last->r) {
        last = last->r;
        q->work++;
    }
    if (last && last->off + last->len >= lo) split(q, L, last->off, &L, &P);

    merge_scan m = {0, 0, hi, 0, NULL};
    scan(q, P, &m);
    scan(q, M, &m);
    uint64_t ulo = P ? P->off : lo, span = m.end - ulo;
    p2p_piece *base = m.largest; /* the others are copied into it */
    int rc = 0;
    if (span == m.have) goto restore; /* nothing new */
    if (!m.count && q->n >= P2P_PIECES_MAX) {
        rc = P2P_ERR_LIMIT;
        goto restore;
    }

    /* The largest piece's buffer when it has room, else a new one that leaves as much room
     * again on the side it grows, within [room_lo, room_hi). */
    int grow = !base || base->start > ulo || base->start + base->cap < m.end;
    uint64_t front = 0, back = 0;
    if (grow && base) {
        uint64_t fmax = ulo > room_lo ? ulo - room_lo : 0;
        uint64_t bmax = room_hi > m.end ? room_hi - m.end : 0;
        /* Streams grow upwards: room at the back when the piece grows there, at the front only
         * when it grows there alone, so a buffer is never more than twice what it holds. */
        if (m.end > base->off + base->len)
            back = span < bmax ? span : bmax;
        else if (ulo < base->off)
            front = span < fmax ? span : fmax;
    }
    int64_t kept = base ? (int64_t)(sizeof *base + base->cap) : 0;
    int64_t delta;
    for (;;) {
        /* What the node will hold, less what every merged piece holds now. */
        int64_t after = grow ? (int64_t)(sizeof *base + front + span + back) : kept;
        delta = after - (int64_t)m.alloc;
        if (delta <= 0 || !b || (uint64_t)delta <= b->room(b->ud)) break;
        if (front || back) {
            front = back = 0;
            continue;
        } /* no spare room, then */
        rc = P2P_ERR_LIMIT;
        goto restore;
    }
    p2p_piece *node = base;
    if (grow) {
        size_t cap = (size_t)(front + span + back);
        uint8_t *nb = malloc(cap);
        if (!nb) {
            rc = P2P_ERR_NOMEM;
            goto restore;
        }
        if (!node) {
            node = calloc(1, sizeof *node);
            if (!node) {
                free(nb);
                rc = P2P_ERR_NOMEM;
                goto restore;
            }
            node->prio = next_prio(q);
        } else {
            memcpy(nb + front + (node->off - ulo), node->buf + (node->off - node->start),
                   node->len);
            free(node->buf);
        }
        node->buf = nb;
        node->cap = cap;
        node->start = ulo - front;
    }
    uint64_t cur = ulo;
    absorb(q, node, P, data, lo, hi, &cur);
    absorb(q, node, M, data, lo, hi, &cur);
    copy_new(node, data, lo, hi, cur, hi);
    q->n = q->n - m.count + 1;
    q->bytes = q->bytes - m.have + span;
    charge(q, b, delta);
    node->off = ulo;
    node->len = (size_t)span;
    node->l = node->r = NULL;
    q->root = join(q, join(q, L, node), C);
    return 0;

restore:
    q->root = join(q, join(q, join(q, L, P), M), C);
    return rc;
}

const p2p_piece *p2p_pieces_first(p2p_pieces *q)
{
    p2p_piece *t = q->root;
    while (t && t->l) {
        t = t->l;
        q->work++;
    }
    return t;
}

void p2p_pieces_pop(p2p_pieces *q, const p2p_budget *b)
{
    p2p_piece **pp = &q->root;
    if (!*pp) return;
    while ((*pp)->l) {
        pp = &(*pp)->l;
        q->work++;
    }
    p2p_piece *s = *pp;
    *pp = s->r;
    uint64_t held = sizeof *s + s->cap;
    piece_free(q, s);
    charge(q, b, -(int64_t)held);
}
