/*
 * p2p_ranges.h - a set of disjoint half-open ranges [lo, hi) of 64-bit numbers, kept sorted
 * and merged. It tracks which packet numbers arrived (for ACK frames), which stream bytes the
 * peer acknowledged, which must be resent, and which arrived out of order.
 */
#ifndef P2P_RANGES_H
#define P2P_RANGES_H

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_range { uint64_t lo, hi; } p2p_range;

typedef struct p2p_rangeset {
    p2p_range *v;   /* sorted by lo, disjoint, never adjacent */
    size_t n, cap;
} p2p_rangeset;

void p2p_rangeset_init(p2p_rangeset *s);
void p2p_rangeset_free(p2p_rangeset *s);
void p2p_rangeset_clear(p2p_rangeset *s);
/* Adds [lo, hi). Returns 0 or P2P_ERR_NOMEM (the set is unchanged then). */
int p2p_rangeset_add(p2p_rangeset *s, uint64_t lo, uint64_t hi);
/* Removes [lo, hi). Returns 0 or P2P_ERR_NOMEM (splitting a range needs room). */
int p2p_rangeset_remove(p2p_rangeset *s, uint64_t lo, uint64_t hi);
/* 1 when x is in the set. */
int p2p_rangeset_contains(const p2p_rangeset *s, uint64_t x);
/* The first gap of [lo, hi) not covered by the set: writes it to *glo, *ghi and returns 1,
 * or returns 0 when [lo, hi) is fully covered. */
int p2p_rangeset_first_gap(const p2p_rangeset *s, uint64_t lo, uint64_t hi,
                           uint64_t *glo, uint64_t *ghi);
/* Drops the lowest ranges until at most max remain. */
void p2p_rangeset_trim(p2p_rangeset *s, size_t max);

#endif
