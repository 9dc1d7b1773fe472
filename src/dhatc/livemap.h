/* The live-block map: address -> (program point, size).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), so lookups stay short however much the heap churns.  No
 * per-entry allocation; the slot array comes from rawmem and doubles when
 * 70% full.  Sixteen bytes a block, four to a cache line: with a large heap
 * nearly every lookup is a cache miss, so the entry size is the cost.  Not
 * thread-safe: the caller holds the engine lock. */
#ifndef DHATC_LIVEMAP_H
#define DHATC_LIVEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHATC_BLOCK_SIZE_BITS 40 /* blocks up to 1 TiB */
#define DHATC_BLOCK_MAX_SIZE ((UINT64_C(1) << DHATC_BLOCK_SIZE_BITS) - 1)
#define DHATC_BLOCK_MAX_PP ((UINT32_C(1) << (64 - DHATC_BLOCK_SIZE_BITS)) - 1)

typedef struct {
    uintptr_t address;    /* 0 marks an empty slot */
    uint64_t size_and_pp; /* size in the low 40 bits, program point above */
} dhatc_block_t;

static inline dhatc_block_t dhatc_block(uintptr_t address, uint64_t size, uint32_t pp)
{
    return (dhatc_block_t){address, size | ((uint64_t)pp << DHATC_BLOCK_SIZE_BITS)};
}

static inline uint64_t dhatc_block_size(const dhatc_block_t *block)
{
    return block->size_and_pp & DHATC_BLOCK_MAX_SIZE;
}

static inline uint32_t dhatc_block_pp(const dhatc_block_t *block)
{
    return (uint32_t)(block->size_and_pp >> DHATC_BLOCK_SIZE_BITS);
}

typedef struct {
    dhatc_block_t *slots;
    size_t mask; /* slot count - 1; slot count is a power of two */
    unsigned shift; /* 64 - log2(slot count): the hash is the product's top bits */
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
