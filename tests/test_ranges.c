/* test_ranges.c - range sets: edge cases by hand, then thousands of random operations checked
 * against a plain bitmap after every one. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_ranges.h"
#include "../csrc/p2p_crypto.h"

#include <stdint.h>

/* 1 when the set is sorted, disjoint, never adjacent and has no empty range. */
static int well_formed(const p2p_rangeset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].lo >= s->v[i].hi) return 0;
        if (i && s->v[i - 1].hi >= s->v[i].lo) return 0;
    }
    return 1;
}

/* 1 when the set holds exactly the listed ranges. */
static int is(const p2p_rangeset *s, size_t n, const p2p_range *want)
{
    if (s->n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (s->v[i].lo != want[i].lo || s->v[i].hi != want[i].hi) return 0;
    return 1;
}

#define IS(s, ...)                                               \
    do {                                                         \
        const p2p_range want_[] = {__VA_ARGS__};                 \
        T_CHECK(is((s), sizeof want_ / sizeof want_[0], want_)); \
        T_CHECK(well_formed(s));                                 \
    } while (0)

static void test_add_merge(void)
{
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    T_EQ_INT(s.n, 0);
    T_EQ_INT(p2p_rangeset_add(&s, 5, 5), 0); /* empty: no-op */
    T_EQ_INT(p2p_rangeset_add(&s, 7, 3), 0); /* reversed: no-op */
    T_EQ_INT(s.n, 0);
    T_EQ_INT(p2p_rangeset_add(&s, 10, 20), 0);
    IS(&s, {10, 20});
    p2p_rangeset_add(&s, 20, 25); /* adjacent above: merges */
    IS(&s, {10, 25});
    p2p_rangeset_add(&s, 5, 10); /* adjacent below: merges */
    IS(&s, {5, 25});
    p2p_rangeset_add(&s, 30, 40);
    p2p_rangeset_add(&s, 0, 2);
    IS(&s, {0, 2}, {5, 25}, {30, 40});
    p2p_rangeset_add(&s, 26, 28); /* between, touching neither */
    IS(&s, {0, 2}, {5, 25}, {26, 28}, {30, 40});
    p2p_rangeset_add(&s, 25, 26); /* fills a one-wide hole */
    IS(&s, {0, 2}, {5, 28}, {30, 40});
    p2p_rangeset_add(&s, 7, 12); /* inside: no change */
    IS(&s, {0, 2}, {5, 28}, {30, 40});
    p2p_rangeset_add(&s, 1, 35); /* overlaps three */
    IS(&s, {0, 40});
    p2p_rangeset_add(&s, 100, 101);
    p2p_rangeset_add(&s, 102, 103);
    p2p_rangeset_add(&s, 104, 105);
    p2p_rangeset_add(&s, 99, 106); /* swallows several */
    IS(&s, {0, 40}, {99, 106});
    p2p_rangeset_add(&s, 40, 99); /* adjacent on both sides */
    IS(&s, {0, 106});
    /* values near the top of the 64-bit range */
    p2p_rangeset_add(&s, UINT64_MAX - 10, UINT64_MAX);
    IS(&s, {0, 106}, {UINT64_MAX - 10, UINT64_MAX});
    T_CHECK(p2p_rangeset_contains(&s, UINT64_MAX - 1));
    T_CHECK(p2p_rangeset_contains(&s, UINT64_MAX - 10));
    T_CHECK(!p2p_rangeset_contains(&s, UINT64_MAX - 11));
    p2p_rangeset_clear(&s);
    T_EQ_INT(s.n, 0);
    T_CHECK(!p2p_rangeset_contains(&s, 0));
    p2p_rangeset_add(&s, 3, 4);
    IS(&s, {3, 4});
    p2p_rangeset_free(&s);
    T_CHECK(s.v == NULL && s.n == 0 && s.cap == 0);
}

static void test_in_order_growth(void)
{
    /* One range no matter how many in-order packets arrive; out-of-order ones make holes. */
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    for (uint64_t pn = 0; pn < 10000; pn++) T_EQ_INT(p2p_rangeset_add(&s, pn, pn + 1), 0);
    IS(&s, {0, 10000});
    for (uint64_t pn = 10001; pn < 10200; pn += 2) p2p_rangeset_add(&s, pn, pn + 1);
    T_EQ_INT(s.n, 101);
    T_CHECK(well_formed(&s));
    for (uint64_t pn = 10000; pn < 10200; pn += 2) p2p_rangeset_add(&s, pn, pn + 1);
    IS(&s, {0, 10200});
    p2p_rangeset_free(&s);
}

static void test_remove_split(void)
{
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    T_EQ_INT(p2p_rangeset_remove(&s, 0, 10), 0); /* from empty */
    T_EQ_INT(s.n, 0);
    p2p_rangeset_add(&s, 0, 100);
    T_EQ_INT(p2p_rangeset_remove(&s, 40, 60), 0); /* split */
    IS(&s, {0, 40}, {60, 100});
    p2p_rangeset_remove(&s, 50, 55); /* in the hole: nothing */
    IS(&s, {0, 40}, {60, 100});
    p2p_rangeset_remove(&s, 10, 10); /* empty: nothing */
    p2p_rangeset_remove(&s, 20, 10);
    IS(&s, {0, 40}, {60, 100});
    p2p_rangeset_remove(&s, 0, 1); /* trim the bottom */
    IS(&s, {1, 40}, {60, 100});
    p2p_rangeset_remove(&s, 99, 200); /* trim the top */
    IS(&s, {1, 40}, {60, 99});
    p2p_rangeset_remove(&s, 39, 61); /* clips both sides of a hole */
    IS(&s, {1, 39}, {61, 99});
    p2p_rangeset_remove(&s, 61, 99); /* exactly one whole range */
    IS(&s, {1, 39});
    p2p_rangeset_add(&s, 50, 60);
    p2p_rangeset_add(&s, 70, 80);
    p2p_rangeset_add(&s, 90, 95);
    p2p_rangeset_remove(&s, 39, 50); /* touches, removes nothing */
    IS(&s, {1, 39}, {50, 60}, {70, 80}, {90, 95});
    p2p_rangeset_remove(&s, 30, 92); /* clip, drop two, clip */
    IS(&s, {1, 30}, {92, 95});
    p2p_rangeset_remove(&s, 2, 3); /* one-wide split */
    IS(&s, {1, 2}, {3, 30}, {92, 95});
    p2p_rangeset_remove(&s, 0, UINT64_MAX);
    T_EQ_INT(s.n, 0);
    /* remove at the very top */
    p2p_rangeset_add(&s, UINT64_MAX - 5, UINT64_MAX);
    p2p_rangeset_remove(&s, UINT64_MAX - 3, UINT64_MAX - 2);
    IS(&s, {UINT64_MAX - 5, UINT64_MAX - 3}, {UINT64_MAX - 2, UINT64_MAX});
    p2p_rangeset_free(&s);
}

static void test_contains_and_gap(void)
{
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    uint64_t glo = 77, ghi = 77;
    T_EQ_INT(p2p_rangeset_first_gap(&s, 5, 9, &glo, &ghi), 1);
    T_CHECK(glo == 5 && ghi == 9);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 5, 5, &glo, &ghi), 0); /* empty query: covered */
    p2p_rangeset_add(&s, 10, 20);
    p2p_rangeset_add(&s, 30, 40);
    T_CHECK(!p2p_rangeset_contains(&s, 9));
    T_CHECK(p2p_rangeset_contains(&s, 10));
    T_CHECK(p2p_rangeset_contains(&s, 19));
    T_CHECK(!p2p_rangeset_contains(&s, 20));
    T_CHECK(!p2p_rangeset_contains(&s, 29));
    T_CHECK(p2p_rangeset_contains(&s, 30));
    T_CHECK(!p2p_rangeset_contains(&s, 40));
    T_CHECK(!p2p_rangeset_contains(&s, 0));

    T_EQ_INT(p2p_rangeset_first_gap(&s, 10, 20, &glo, &ghi), 0);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 12, 15, &glo, &ghi), 0);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 0, 50, &glo, &ghi), 1);
    T_CHECK(glo == 0 && ghi == 10);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 10, 50, &glo, &ghi), 1);
    T_CHECK(glo == 20 && ghi == 30);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 15, 25, &glo, &ghi), 1);
    T_CHECK(glo == 20 && ghi == 25); /* clipped to the query */
    T_EQ_INT(p2p_rangeset_first_gap(&s, 35, 45, &glo, &ghi), 1);
    T_CHECK(glo == 40 && ghi == 45);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 30, 40, &glo, &ghi), 0);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 20, 30, &glo, &ghi), 1);
    T_CHECK(glo == 20 && ghi == 30);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 45, 1000, &glo, &ghi), 1);
    T_CHECK(glo == 45 && ghi == 1000);
    T_EQ_INT(p2p_rangeset_first_gap(&s, 5, 8, &glo, &ghi), 1);
    T_CHECK(glo == 5 && ghi == 8);
    p2p_rangeset_free(&s);
}

static void test_trim(void)
{
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    for (uint64_t i = 0; i < 10; i++) p2p_rangeset_add(&s, 10 * i, 10 * i + 5);
    p2p_rangeset_trim(&s, 20);
    T_EQ_INT(s.n, 10);
    p2p_rangeset_trim(&s, 10);
    T_EQ_INT(s.n, 10);
    p2p_rangeset_trim(&s, 3); /* keeps the highest three */
    IS(&s, {70, 75}, {80, 85}, {90, 95});
    p2p_rangeset_trim(&s, 1);
    IS(&s, {90, 95});
    p2p_rangeset_trim(&s, 0);
    T_EQ_INT(s.n, 0);
    p2p_rangeset_add(&s, 1, 2); /* still usable */
    IS(&s, {1, 2});
    p2p_rangeset_free(&s);
}

/* ---- the model ---- */

#define MODEL_N 512
typedef struct model {
    uint8_t in[MODEL_N];
} model;

static int model_eq(const model *m, const p2p_rangeset *s)
{
    if (!well_formed(s)) return 0;
    uint8_t got[MODEL_N];
    memset(got, 0, sizeof got);
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].hi > MODEL_N) return 0;
        for (uint64_t x = s->v[i].lo; x < s->v[i].hi; x++) got[x] = 1;
    }
    return memcmp(got, m->in, MODEL_N) == 0;
}

static size_t model_ranges(const model *m)
{
    size_t n = 0;
    for (size_t x = 0; x < MODEL_N; x++)
        if (m->in[x] && (x == 0 || !m->in[x - 1])) n++;
    return n;
}

static void model_trim(model *m, size_t max)
{
    size_t n = model_ranges(m);
    for (size_t x = 0; x < MODEL_N && n > max; x++) {
        if (!m->in[x]) continue;
        while (x < MODEL_N && m->in[x]) m->in[x++] = 0;
        n--;
    }
}

static void test_random_vs_bitmap(void)
{
    p2p_rng rng;
    p2p_rng_init(&rng, 0x72616e6765);
    for (int round = 0; round < 6; round++) {
        p2p_rangeset s;
        p2p_rangeset_init(&s);
        model m;
        memset(&m, 0, sizeof m);
        /* Narrow ranges make many small pieces; wide ones exercise merging across many. */
        uint32_t width = round % 3 == 0 ? 4 : round % 3 == 1 ? 32 : 200;
        int bad = 0;
        for (int op = 0; op < 5000 && !bad; op++) {
            uint32_t kind = p2p_rng_below(&rng, 100);
            uint64_t lo = p2p_rng_below(&rng, MODEL_N);
            uint64_t hi = lo + p2p_rng_below(&rng, width + 1);
            if (hi > MODEL_N) hi = MODEL_N;
            if (kind < 45) {
                T_EQ_INT(p2p_rangeset_add(&s, lo, hi), 0);
                for (uint64_t x = lo; x < hi; x++) m.in[x] = 1;
            } else if (kind < 85) {
                T_EQ_INT(p2p_rangeset_remove(&s, lo, hi), 0);
                for (uint64_t x = lo; x < hi; x++) m.in[x] = 0;
            } else if (kind < 88) {
                size_t max = p2p_rng_below(&rng, 40);
                p2p_rangeset_trim(&s, max);
                model_trim(&m, max);
            } else if (kind < 89) {
                p2p_rangeset_clear(&s);
                memset(&m, 0, sizeof m);
            } else {
                /* queries do not change the set; check them against the bitmap */
                for (uint64_t x = lo; x < hi; x++)
                    if (p2p_rangeset_contains(&s, x) != m.in[x]) bad = 1;
                uint64_t glo = 0, ghi = 0;
                int got = p2p_rangeset_first_gap(&s, lo, hi, &glo, &ghi);
                uint64_t x = lo;
                while (x < hi && m.in[x]) x++;
                if (x == hi) {
                    if (got != 0) bad = 1;
                } else {
                    uint64_t y = x;
                    while (y < hi && !m.in[y]) y++;
                    if (got != 1 || glo != x || ghi != y) bad = 1;
                }
            }
            if (!model_eq(&m, &s)) bad = 1;
            if (bad)
                fprintf(stderr, "  round %d op %d kind %u [%llu, %llu)\n", round, op,
                        (unsigned)kind, (unsigned long long)lo, (unsigned long long)hi);
            T_CHECK(!bad);
            T_EQ_INT(s.n, model_ranges(&m));
        }
        /* every value against the bitmap once more, past the edge too */
        for (uint64_t x = 0; x < MODEL_N + 8; x++)
            T_EQ_INT(p2p_rangeset_contains(&s, x), x < MODEL_N ? m.in[x] : 0);
        p2p_rangeset_free(&s);
    }
}

/* Regression: contains(UINT64_MAX) used to compute x + 1, which wrapped to 0, so any non-empty
 * set claimed to hold UINT64_MAX although no half-open [lo, hi) can (fixed in 5fbe5b7). */
static void test_contains_max_value(void)
{
    p2p_rangeset s;
    p2p_rangeset_init(&s);
    p2p_rangeset_add(&s, 0, 1);
    T_CHECK(!p2p_rangeset_contains(&s, UINT64_MAX));
    p2p_rangeset_add(&s, UINT64_MAX - 1, UINT64_MAX);
    T_CHECK(!p2p_rangeset_contains(&s, UINT64_MAX));
    uint64_t glo, ghi;
    T_EQ_INT(p2p_rangeset_first_gap(&s, UINT64_MAX - 1, UINT64_MAX, &glo, &ghi), 0);
    p2p_rangeset_remove(&s, UINT64_MAX - 1, UINT64_MAX);
    IS(&s, {0, 1});
    p2p_rangeset_free(&s);
}

/* ---- out-of-order pieces (p2p_pieces) ---- */

typedef struct {
    uint64_t room, held;
} test_budget;
static uint64_t tb_room(void *ud)
{
    test_budget *t = ud;
    return t->room > t->held ? t->room - t->held : 0;
}
static void tb_take(void *ud, size_t n)
{
    test_budget *t = ud;
    t->held += n;
}
static void tb_give(void *ud, size_t n)
{
    test_budget *t = ud;
    t->held -= n;
}

/* Checks the pieces against a reference: which bytes are held, their values, that no two
 * pieces touch, and the counters. */
static void pieces_match(p2p_pieces *q, const uint8_t *have, const uint8_t *val, size_t n,
                         const test_budget *tb)
{
    /* walk by popping a copy is destructive: walk the tree in order instead */
    p2p_piece *stack[2048];
    size_t sp = 0, count = 0;
    uint64_t bytes = 0, held = 0, prev_end = 0;
    int first = 1;
    p2p_piece *t = q->root;
    uint8_t *seen = calloc(n, 1);
    while (t || sp) {
        while (t) {
            if (sp == 2048) abort();
            stack[sp++] = t;
            t = t->l;
        }
        t = stack[--sp];
        count++;
        bytes += t->len;
        held += sizeof *t + t->cap;
        T_CHECK(first || t->off > prev_end); /* disjoint, never adjacent */
        T_CHECK(t->start <= t->off && t->off + t->len <= t->start + t->cap);
        for (size_t i = 0; i < t->len; i++) {
            uint64_t o = t->off + i;
            T_CHECK(o < n && have[o]);
            if (o < n) {
                seen[o] = 1;
                if (t->buf[o - t->start] != val[o]) {
                    T_CHECK(!"value");
                    break;
                }
            }
        }
        prev_end = t->off + t->len;
        first = 0;
        t = t->r;
    }
    for (size_t i = 0; i < n; i++)
        if (have[i] && !seen[i]) {
            T_CHECK(!"missing byte");
            break;
        }
    free(seen);
    T_EQ_INT(count, q->n);
    T_EQ_INT(bytes, q->bytes);
    T_EQ_INT(held, q->held);
    if (tb) T_EQ_INT(tb->held, q->held);
}

static void test_pieces_random(void)
{
    enum { N = 20000 };
    static uint8_t have[N], val[N], data[600];
    memset(have, 0, sizeof have);
    p2p_pieces q;
    p2p_pieces_init(&q);
    q.seed = 7;
    test_budget tb = {UINT64_MAX, 0};
    p2p_budget b = {&tb, tb_room, tb_take, tb_give};
    uint32_t x = 12345;
    for (int round = 0; round < 6000; round++) {
        x = x * 1103515245u + 12345u;
        size_t off = (x >> 8) % (N - 600);
        x = x * 1103515245u + 12345u;
        size_t len = 1 + (x >> 8) % (round % 3 ? 8 : 500);
        for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(round + i);
        T_EQ_INT(p2p_pieces_add(&q, off, data, len, 0, N, &b), 0);
        for (size_t i = 0; i < len; i++)
            if (!have[off + i]) {
                have[off + i] = 1;
                val[off + i] = data[i];
            } /* first value wins */
        if (round % 500 == 0) pieces_match(&q, have, val, N, &tb);
        if (round % 97 == 0) { /* deliver the front, as the stream does */
            const p2p_piece *f = p2p_pieces_first(&q);
            if (f) {
                for (uint64_t i = f->off; i < f->off + f->len; i++) have[i] = 0;
                p2p_pieces_pop(&q, &b);
            }
        }
    }
    pieces_match(&q, have, val, N, &tb);
    T_CHECK(q.n <= P2P_PIECES_MAX);
    p2p_pieces_free(&q, &b);
    T_EQ_INT(tb.held, 0);
    T_EQ_INT(q.n, 0);
}

static void test_pieces_cap_and_budget(void)
{
    p2p_pieces q;
    p2p_pieces_init(&q);
    test_budget tb = {1u << 20, 0};
    p2p_budget b = {&tb, tb_room, tb_take, tb_give};
    uint8_t d[1000];
    memset(d, 1, sizeof d);
    /* the cap: pieces that touch nothing stop at P2P_PIECES_MAX */
    for (uint64_t i = 0; i < 2 * P2P_PIECES_MAX; i++)
        T_EQ_INT(p2p_pieces_add(&q, 10 * i, d, 1, 0, UINT64_MAX, &b),
                 i < P2P_PIECES_MAX ? 0 : P2P_ERR_LIMIT);
    T_EQ_INT(q.n, P2P_PIECES_MAX);
    /* at the cap, a piece that extends one still goes in, and one that bridges two merges them */
    T_EQ_INT(p2p_pieces_add(&q, 1, d, 1, 0, UINT64_MAX, &b), 0);
    T_EQ_INT(p2p_pieces_add(&q, 2, d, 8, 0, UINT64_MAX, &b), 0);
    T_EQ_INT(q.n, P2P_PIECES_MAX - 1);
    T_EQ_INT(p2p_pieces_first(&q)->len, 11);
    /* duplicates change nothing */
    uint64_t held = q.held;
    T_EQ_INT(p2p_pieces_add(&q, 3, d, 5, 0, UINT64_MAX, &b), 0);
    T_EQ_INT(q.held, held);
    p2p_pieces_free(&q, &b);
    /* the budget: a piece that does not fit is refused whole */
    T_EQ_INT(tb.held, 0);
    size_t ok = 0;
    for (uint64_t i = 0; i < 2000; i++)
        if (p2p_pieces_add(&q, 2000 * i, d, sizeof d, 0, UINT64_MAX, &b) == 0) ok++;
    T_CHECK(ok < 2000);
    T_CHECK(tb.held <= tb.room);
    T_EQ_INT(tb.held, q.held);
    T_EQ_INT(q.bytes, ok * sizeof d);
    p2p_pieces_free(&q, &b);
    T_EQ_INT(tb.held, 0);
}

/* A piece grown a byte at a time, forwards or backwards, costs amortised O(1): its buffer
 * doubles, within the bounds given. */
static void test_pieces_growth(void)
{
    p2p_pieces q;
    p2p_pieces_init(&q);
    uint8_t d = 9;
    for (uint64_t i = 0; i < 5000; i++)
        T_EQ_INT(p2p_pieces_add(&q, 100000 + i, &d, 1, 0, 200000, NULL), 0);
    for (uint64_t i = 1; i <= 5000; i++)
        T_EQ_INT(p2p_pieces_add(&q, 100000 - i, &d, 1, 0, 200000, NULL), 0);
    T_EQ_INT(q.n, 1);
    T_EQ_INT(q.bytes, 10000);
    T_CHECK(q.held <= sizeof(p2p_piece) + 4 * 10000);
    T_CHECK(q.work <= 10000 * 6);
    /* the room a buffer leaves never passes its bounds */
    const p2p_piece *f = p2p_pieces_first(&q);
    T_CHECK(f->start + f->cap <= 200000);
    p2p_pieces_free(&q, NULL);
    p2p_pieces_init(&q);
    for (uint64_t i = 0; i < 100; i++)
        T_EQ_INT(p2p_pieces_add(&q, 50 + i, &d, 1, 40, 160, NULL), 0);
    f = p2p_pieces_first(&q);
    T_CHECK(f->start >= 40 && f->start + f->cap <= 160);
    p2p_pieces_free(&q, NULL);
}

int main(void)
{
    T_RUN(test_add_merge);
    T_RUN(test_in_order_growth);
    T_RUN(test_remove_split);
    T_RUN(test_contains_and_gap);
    T_RUN(test_trim);
    T_RUN(test_random_vs_bitmap);
    T_RUN(test_contains_max_value);
    T_RUN(test_pieces_random);
    T_RUN(test_pieces_cap_and_budget);
    T_RUN(test_pieces_growth);
    return t_summary("ranges");
}
