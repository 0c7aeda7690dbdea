/*
 * p2p_ranges.h - a set of disjoint half-open ranges [lo, hi) of 64-bit numbers, kept sorted
 * and merged. It tracks which packet numbers arrived (for ACK frames), which stream bytes the
 * peer acknowledged, which must be resent, and which arrived out of order.
 */
#ifndef P2P_RANGES_H
#define P2P_RANGES_H

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_range {
    uint64_t lo, hi;
} p2p_range;

typedef struct p2p_rangeset {
    p2p_range *v; /* sorted by lo, disjoint, never adjacent */
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
int p2p_rangeset_first_gap(const p2p_rangeset *s, uint64_t lo, uint64_t hi, uint64_t *glo,
                           uint64_t *ghi);
/* Drops the lowest ranges until at most max remain. */
void p2p_rangeset_trim(p2p_rangeset *s, size_t max);

/* ---- out-of-order stream bytes (hardening: stream) ------------------------------------------
 * The pieces of a receive stream that arrived ahead of the first missing byte, in a treap keyed
 * by stream offset: finding, inserting and removing a piece costs O(log n). Pieces never touch:
 * one that arrives next to or over another is merged with it into one contiguous buffer, the
 * smaller copied into the larger, and a buffer that grows keeps as much room again on the side
 * it grew (the back when both; never past the bounds the caller gives), so a piece extended a byte at a time costs
 * amortised O(1) per byte (each byte copied O(log n) times in merges). At most P2P_PIECES_MAX pieces are held, and every byte allocated
 * (buffers and nodes) is charged to a budget: an add that would pass either is refused whole. */
#define P2P_PIECES_MAX 1024

/* Where the held bytes are charged. room() says how many more may be taken; take() charges
 * (it is only called for what room() allowed) and give() returns a charge. */
typedef struct p2p_budget {
    void *ud;
    uint64_t (*room)(void *ud);
    void (*take)(void *ud, size_t n);
    void (*give)(void *ud, size_t n);
} p2p_budget;

typedef struct p2p_piece {
    struct p2p_piece *l, *r; /* treap children: lower and higher offsets */
    uint32_t prio;           /* random: a parent's is above its children's */
    uint64_t off;            /* stream offset of the first byte held */
    size_t len;              /* bytes held, at buf + (off - start) */
    uint64_t start;          /* stream offset of buf[0]: room before off is for growing */
    size_t cap;              /* bytes allocated at buf */
    uint8_t *buf;
} p2p_piece;

typedef struct p2p_pieces {
    p2p_piece *root;
    size_t n;       /* pieces held */
    uint64_t bytes; /* stream bytes held */
    uint64_t held;  /* bytes allocated for them (nodes and buffers), as charged */
    uint64_t work;  /* tree nodes visited in all: a CPU measure for tests */
    uint32_t seed;  /* priorities: the owner seeds it with unpredictable bits
                     * (0 falls back to a fixed seed) */
} p2p_pieces;

/* All zero is an empty set: init is memset. */
void p2p_pieces_init(p2p_pieces *q);
/* Frees every piece, giving its charge back to b (may be NULL). */
void p2p_pieces_free(p2p_pieces *q, const p2p_budget *b);
/* Holds the stream bytes [off, off + len) (data is copied; bytes already held keep their first
 * value). room_lo and room_hi bound where a growing buffer may leave room: the first byte not
 * yet delivered and the end of the flow-control grant. Returns 0 (held, or nothing new), or
 * P2P_ERR_LIMIT when the piece cap or the budget (b may be NULL: no budget) refused it, or
 * P2P_ERR_NOMEM; nothing is held then. */
int p2p_pieces_add(p2p_pieces *q, uint64_t off, const uint8_t *data, size_t len, uint64_t room_lo,
                   uint64_t room_hi, const p2p_budget *b);
/* The piece with the lowest offset, or NULL. Valid until the next add, pop or free. */
const p2p_piece *p2p_pieces_first(p2p_pieces *q);
/* Frees the piece with the lowest offset. */
void p2p_pieces_pop(p2p_pieces *q, const p2p_budget *b);

#endif
