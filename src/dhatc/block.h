/* One live block as the engine keeps it: its address, its size and the
 * program point that allocated it, in sixteen bytes. */
#ifndef DHATC_BLOCK_H
#define DHATC_BLOCK_H

#include <stdint.h>

#define DHATC_BLOCK_SIZE_BITS 40 /* blocks up to 1 TiB */
#define DHATC_BLOCK_MAX_SIZE ((UINT64_C(1) << DHATC_BLOCK_SIZE_BITS) - 1)
/* One program-point number fewer than the field holds: the live map stores
 * pp + 1 so that a stored block is never all zero bits (an empty slot). */
#define DHATC_BLOCK_MAX_PP ((UINT32_C(1) << (64 - DHATC_BLOCK_SIZE_BITS)) - 2)

typedef struct {
    uintptr_t address;    /* 0 marks an empty slot in a table */
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

#endif
