/* p2p_ranges.c - sorted, merged sets of half-open ranges. */
#include "p2p_ranges.h"
#include "p2pnet.h"

#include <stdlib.h>
#include <string.h>

void p2p_rangeset_init(p2p_rangeset *s) { memset(s, 0, sizeof *s); }

void p2p_rangeset_free(p2p_rangeset *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

void p2p_rangeset_clear(p2p_rangeset *s) { s->n = 0; }

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
        if (s->v[m].hi < x) a = m + 1; else b = m;
    }
    return a;
}

/* Index of the first range whose hi > x: the one holding x, or the next above it. */
static size_t above(const p2p_rangeset *s, uint64_t x)
{
    size_t a = 0, b = s->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s->v[m].hi <= x) a = m + 1; else b = m;
    }
    return a;
}

int p2p_rangeset_add(p2p_rangeset *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi) return 0;
    /* Fast path: appending above everything, the common case for in-order arrival. */
    if (s->n && s->v[s->n - 1].hi == lo) { s->v[s->n - 1].hi = hi; return 0; }
    if (!s->n || s->v[s->n - 1].hi < lo) {
        if (reserve(s, s->n + 1)) return P2P_ERR_NOMEM;
        s->v[s->n].lo = lo;
        s->v[s->n].hi = hi;
        s->n++;
        return 0;
    }
    size_t i = lower(s, lo);        /* first range that touches or follows lo */
    size_t j = i;                   /* ranges i..j-1 merge with [lo, hi) */
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
        if (r->lo < lo && r->hi > hi) {           /* split in two */
            if (reserve(s, s->n + 1)) return P2P_ERR_NOMEM;
            r = &s->v[i];
            memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof *s->v);
            s->n++;
            s->v[i].hi = lo;
            s->v[i + 1].lo = hi;
            return 0;
        }
        if (r->lo < lo) { r->hi = lo; i++; continue; }
        if (r->hi > hi) { r->lo = hi; break; }
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

int p2p_rangeset_first_gap(const p2p_rangeset *s, uint64_t lo, uint64_t hi,
                           uint64_t *glo, uint64_t *ghi)
{
    size_t i = above(s, lo);
    while (lo < hi) {
        if (i >= s->n || s->v[i].lo >= hi) { *glo = lo; *ghi = hi; return 1; }
        if (s->v[i].lo > lo) { *glo = lo; *ghi = s->v[i].lo; return 1; }
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
