/*
 * p2p_index.h - the table of sessions (wireguard-go's indextable): a fixed array of slots, each
 * entry found in O(1) by its handle (what the application holds) or by its index (what the
 * peer writes in every DATA and handshake packet).
 *
 * Both carry the slot in their low 16 bits. A handle adds a generation that grows each time the
 * slot is reused, so a stale handle names nothing; an index adds 16 random bits, so a stale or
 * guessed index rarely names a live session. The table stores opaque pointers: it knows
 * nothing of what a session is.
 */
#ifndef P2P_INDEX_H
#define P2P_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_index {
    void **slots;     /* the entry of each slot, or NULL */
    uint32_t *handle; /* the handle and index of the entry in each slot */
    uint32_t *local;
    uint16_t *gens; /* the generation of each slot: never 0 once used */
    size_t n;       /* slots */
    size_t hwm;     /* every entry is below this slot */
} p2p_index;

/* Allocates n slots (at most 65536). Returns 0, or -1 when out of memory. */
int p2p_index_init(p2p_index *t, size_t n);
void p2p_index_free(p2p_index *t);
/* Puts e in the lowest free slot (so that scans up to hwm stay short); rnd gives the random
 * half of its index. Returns 0 with *handle and *local set, or -1 when the table is full. */
int p2p_index_add(p2p_index *t, void *e, uint32_t rnd, uint32_t *handle, uint32_t *local);
/* Empties the slot of a handle. */
void p2p_index_remove(p2p_index *t, uint32_t handle);

/* The entry a handle names, or NULL. */
static inline void *p2p_index_by_handle(const p2p_index *t, uint32_t handle)
{
    size_t slot = handle & 0xffff;
    if (!handle || slot >= t->n || t->handle[slot] != handle) return NULL;
    return t->slots[slot];
}

/* The entry an index names, or NULL. */
static inline void *p2p_index_by_local(const p2p_index *t, uint32_t local)
{
    size_t slot = local & 0xffff;
    if (slot >= t->n || !t->slots[slot] || t->local[slot] != local) return NULL;
    return t->slots[slot];
}

#endif
