/* A hash table of live blocks: address -> (program point, size), for the
 * blocks the live map's shadow cannot hold (see livemap.h).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), so lookups stay short however much the heap churns.  No
 * per-entry allocation; the slot array comes from rawmem and doubles when
 * 70% full.  Sixteen bytes a block, four to a cache line: with a large heap
 * nearly every lookup is a cache miss, so the entry size is the cost.  Not
 * thread-safe: the caller holds the engine lock. */
#ifndef DHATC_BLOCKHASH_H
#define DHATC_BLOCKHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"

typedef struct {
    dhatc_block_t *slots;
    size_t mask; /* slot count - 1; slot count is a power of two */
    unsigned shift; /* 64 - log2(slot count): the hash is the product's top bits */
    size_t count;
} dhatc_blockhash_t;

bool dhatc_blockhash_init(dhatc_blockhash_t *map);
void dhatc_blockhash_release(dhatc_blockhash_t *map);

/* Stores `block` under block->address.  If that address is already present
 * (a block whose free we never saw), the old entry is copied to *replaced and
 * true is returned through *had_old.  Returns false only when memory for a
 * bigger table could not be had. */
bool dhatc_blockhash_put(dhatc_blockhash_t *map, const dhatc_block_t *block,
                         dhatc_block_t *replaced, bool *had_old);

/* Removes the entry for `address`, copying it to *removed.  False if absent. */
bool dhatc_blockhash_take(dhatc_blockhash_t *map, uintptr_t address, dhatc_block_t *removed);

#endif
