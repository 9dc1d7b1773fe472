/* The live-block map: address -> (program point, size, allocation time).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), so lookups stay short however much the heap churns.  No
 * per-entry allocation; the slot array comes from rawmem and doubles when
 * half full.  Not thread-safe: the caller holds the engine lock. */
#ifndef DHATC_LIVEMAP_H
#define DHATC_LIVEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uintptr_t address; /* 0 marks an empty slot */
    uint64_t size;
    uint64_t allocated_at; /* engine clock value when it was allocated */
    uint32_t pp;
    uint32_t unused;
} dhatc_block_t;

typedef struct {
    dhatc_block_t *slots;
    size_t mask; /* slot count - 1; slot count is a power of two */
    size_t count;
} dhatc_livemap_t;

bool dhatc_livemap_init(dhatc_livemap_t *map);
void dhatc_livemap_release(dhatc_livemap_t *map);

/* Stores `block` under block->address.  If that address is already present
 * (a block whose free we never saw), the old entry is copied to *replaced and
 * true is returned through *had_old.  Returns false only when memory for a
 * bigger table could not be had. */
bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                       dhatc_block_t *replaced, bool *had_old);

/* Removes the entry for `address`, copying it to *removed.  False if absent. */
bool dhatc_livemap_take(dhatc_livemap_t *map, uintptr_t address, dhatc_block_t *removed);

#endif
