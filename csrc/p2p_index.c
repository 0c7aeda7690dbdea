/*
 * p2p_index.c - the table of sessions (p2p_index.h).
 */
#include "p2p_index.h"

#include <stdlib.h>

int p2p_index_init(p2p_index *t, size_t n)
{
    t->n = n;
    t->hwm = 0;
    t->slots = calloc(n, sizeof *t->slots);
    t->handle = calloc(n, sizeof *t->handle);
    t->local = calloc(n, sizeof *t->local);
    t->gens = calloc(n, sizeof *t->gens);
    if (t->slots && t->handle && t->local && t->gens) return 0;
    p2p_index_free(t);
    return -1;
}

void p2p_index_free(p2p_index *t)
{
    free(t->slots);
    free(t->handle);
    free(t->local);
    free(t->gens);
    t->slots = NULL;
    t->handle = t->local = NULL;
    t->gens = NULL;
    t->n = t->hwm = 0;
}

int p2p_index_add(p2p_index *t, void *e, uint32_t rnd, uint32_t *handle, uint32_t *local)
{
    size_t slot;
    for (slot = 0; slot < t->n && t->slots[slot]; slot++) {
    }
    if (slot == t->n) return -1;
    if (++t->gens[slot] == 0) t->gens[slot] = 1;
    t->slots[slot] = e;
    t->handle[slot] = ((uint32_t)t->gens[slot] << 16) | (uint32_t)slot;
    t->local[slot] = (rnd & 0xffff0000u) | (uint32_t)slot;
    if (slot + 1 > t->hwm) t->hwm = slot + 1;
    *handle = t->handle[slot];
    *local = t->local[slot];
    return 0;
}

void p2p_index_remove(p2p_index *t, uint32_t handle)
{
    size_t slot = handle & 0xffff;
    if (slot >= t->n || t->handle[slot] != handle) return;
    t->slots[slot] = NULL;
    t->handle[slot] = 0;
    t->local[slot] = 0;
    while (t->hwm && !t->slots[t->hwm - 1]) t->hwm--;
}
