/* The live-block map: address -> (program point, size), for every block of
 * the heap profile.
 *
 * Mostly a shadow of the heap: a three-level radix table over the address
 * space with one 4-byte slot for every 16-byte unit of memory that holds the
 * start of a block.  An insert or a removal is three dependent loads and a
 * store, with no probing, no hashing and no rehashing as the heap grows (a
 * hash table grown from empty to a million blocks rehashes them all again
 * and again, inside the profiled program).  Blocks allocated one after the
 * other sit in neighbouring slots, so a large heap is walked sequentially.
 *
 * A slot holds the block's size and program point when they are small (below
 * 4 KiB, and one of the first 2**19 program points): nearly every block of a
 * Python program.  Four bytes rather than eight because the shadow's memory
 * traffic is what it costs: a heap of a million small blocks is written and
 * read once more through its shadow, and with 8-byte slots that doubled the
 * cache misses of a program building a large heap.  A bigger block's slot
 * says "escaped", and the block itself is in a hash table (blockhash.h).
 *
 * Memory: one 16 KiB leaf for every 64 KiB of address space that has held a
 * block.  A leaf made for a small block is made resident at once (small
 * blocks are packed densely, so their leaf fills), one made for a big block
 * page by page as it is used.  Around small blocks the map costs 4 bytes per
 * 16-byte unit of the heap -- a quarter of a hash table's 16 to 23 bytes per
 * block for the small blocks Python is made of -- and for a big block alone
 * in its region one 4 KiB page and its hash table entry.  Given back when the
 * profile ends.
 *
 * Blocks the shadow cannot hold at all -- addresses not 16-byte aligned (a
 * custom allocator may hand out 8-byte aligned ones) or above the 48-bit user
 * address space -- go to the hash table too.  An address always takes the
 * same route, so a lookup searches one structure.  Not thread-safe: the
 * caller holds the engine lock. */
#ifndef DHATC_LIVEMAP_H
#define DHATC_LIVEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "blockhash.h"

typedef struct dhatc_shadow_slab dhatc_shadow_slab_t;

typedef struct {
    uint32_t ***top;            /* [address bits 47..32] -> middle table */
    char *slab_next, *slab_end; /* where the next leaf is carved from */
    dhatc_shadow_slab_t *slabs; /* every slab, to give back at release */
    dhatc_blockhash_t odd;      /* blocks the shadow cannot hold, or holds as escaped */
    size_t count;               /* live blocks in both */
} dhatc_livemap_t;

bool dhatc_livemap_init(dhatc_livemap_t *map);
void dhatc_livemap_release(dhatc_livemap_t *map);

/* Out of line: the rare cases of put() and take() below (an address with no
 * table yet, an address the shadow cannot hold, a block too big for a slot
 * or a slot that says "escaped"). */
__attribute__((cold)) uint32_t *dhatc_livemap_slot_to_make(dhatc_livemap_t *map,
                                                           uintptr_t address, uint64_t size);
__attribute__((cold)) bool dhatc_livemap_put_escaped(dhatc_livemap_t *map, uint32_t *slot,
                                                     const dhatc_block_t *block,
                                                     dhatc_block_t *replaced, bool *had_old);
__attribute__((cold)) bool dhatc_livemap_take_escaped(dhatc_livemap_t *map, uint32_t *slot,
                                                      uintptr_t address, dhatc_block_t *removed);
__attribute__((cold)) bool dhatc_livemap_put_odd(dhatc_livemap_t *map, const dhatc_block_t *block,
                                                 dhatc_block_t *replaced, bool *had_old);
__attribute__((cold)) bool dhatc_livemap_take_odd(dhatc_livemap_t *map, uintptr_t address,
                                                  dhatc_block_t *removed);

/* Address bits: 47..32 pick a middle table in `top`, 31..16 a leaf in it,
 * 15..4 the slot in the leaf.  Inline below: a put and a take happen for
 * every block, and a call each (with its saved registers) cost as much as the
 * work. */
enum {
    DHATC_LIVEMAP_UNIT_SHIFT = 4,
    DHATC_LIVEMAP_LEAF_BITS = 12,
    DHATC_LIVEMAP_MIDDLE_BITS = 16,
    DHATC_LIVEMAP_TOP_BITS = 16,
    DHATC_LIVEMAP_ADDRESS_BITS = DHATC_LIVEMAP_UNIT_SHIFT + DHATC_LIVEMAP_LEAF_BITS +
                                 DHATC_LIVEMAP_MIDDLE_BITS + DHATC_LIVEMAP_TOP_BITS,
};

/* A slot: 0 empty; DHATC_LIVEMAP_ESCAPED the block is in the hash table;
 * else the program point plus one above the size's 12 bits (never 0, never
 * all ones: program points below 2**19). */
#define DHATC_LIVEMAP_SLOT_SIZE_BITS 12
#define DHATC_LIVEMAP_SLOT_PP_BITS 19
#define DHATC_LIVEMAP_ESCAPED UINT32_MAX

/* Whether a block fits in a slot: one test of its size_and_pp. */
static inline bool dhatc_livemap_fits(const dhatc_block_t *block)
{
    const uint64_t too_big =
        (DHATC_BLOCK_MAX_SIZE & ~((UINT64_C(1) << DHATC_LIVEMAP_SLOT_SIZE_BITS) - 1)) |
        (~UINT64_C(0) << (DHATC_BLOCK_SIZE_BITS + DHATC_LIVEMAP_SLOT_PP_BITS));
    return (block->size_and_pp & too_big) == 0;
}

static inline uint32_t dhatc_livemap_slot_of(const dhatc_block_t *block)
{
    uint64_t size = block->size_and_pp & ((UINT64_C(1) << DHATC_LIVEMAP_SLOT_SIZE_BITS) - 1);
    uint64_t pp_one = (block->size_and_pp >> DHATC_BLOCK_SIZE_BITS) + 1;
    return (uint32_t)(pp_one << DHATC_LIVEMAP_SLOT_SIZE_BITS | size);
}

static inline dhatc_block_t dhatc_livemap_block_in(uintptr_t address, uint32_t slot)
{
    uint64_t size = slot & ((UINT32_C(1) << DHATC_LIVEMAP_SLOT_SIZE_BITS) - 1);
    uint64_t pp = (slot >> DHATC_LIVEMAP_SLOT_SIZE_BITS) - 1;
    return (dhatc_block_t){address, size | pp << DHATC_BLOCK_SIZE_BITS};
}

/* One mask for both tests (aligned to a unit, below the 48 bits): a single
 * `test` on every put and take. */
static inline bool dhatc_livemap_in_shadow(uintptr_t address)
{
    const uint64_t outside = ~UINT64_C(0) << DHATC_LIVEMAP_ADDRESS_BITS |
                             ((UINT64_C(1) << DHATC_LIVEMAP_UNIT_SHIFT) - 1);
    return ((uint64_t)address & outside) == 0;
}

static inline size_t dhatc_livemap_top_index(uintptr_t address)
{
    return (size_t)(address >>
                    (DHATC_LIVEMAP_UNIT_SHIFT + DHATC_LIVEMAP_LEAF_BITS + DHATC_LIVEMAP_MIDDLE_BITS));
}

static inline size_t dhatc_livemap_middle_index(uintptr_t address)
{
    return (size_t)(address >> (DHATC_LIVEMAP_UNIT_SHIFT + DHATC_LIVEMAP_LEAF_BITS)) &
           (((size_t)1 << DHATC_LIVEMAP_MIDDLE_BITS) - 1);
}

static inline size_t dhatc_livemap_leaf_index(uintptr_t address)
{
    return (size_t)(address >> DHATC_LIVEMAP_UNIT_SHIFT) &
           (((size_t)1 << DHATC_LIVEMAP_LEAF_BITS) - 1);
}

/* The slot for a shadowed address, or NULL if no block was ever there. */
static inline uint32_t *dhatc_livemap_existing_slot(const dhatc_livemap_t *map, uintptr_t address)
{
    uint32_t **middle = map->top[dhatc_livemap_top_index(address)];
    if (__builtin_expect(middle == NULL, 0)) {
        return NULL;
    }
    uint32_t *leaf = middle[dhatc_livemap_middle_index(address)];
    return __builtin_expect(leaf == NULL, 0) ? NULL : &leaf[dhatc_livemap_leaf_index(address)];
}

/* Stores `block` under block->address.  If that address is already present
 * (a block whose free we never saw), the old entry is copied to *replaced and
 * true is returned through *had_old.  Returns false, changing nothing, only
 * when memory for the map could not be had. */
static inline bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                                     dhatc_block_t *replaced, bool *had_old)
{
    *had_old = false;
    if (__builtin_expect(!dhatc_livemap_in_shadow(block->address), 0)) {
        return dhatc_livemap_put_odd(map, block, replaced, had_old);
    }
    uint32_t *slot = dhatc_livemap_existing_slot(map, block->address);
    if (__builtin_expect(slot == NULL, 0)) {
        slot = dhatc_livemap_slot_to_make(map, block->address, dhatc_block_size(block));
        if (slot == NULL) {
            return false;
        }
    }
    uint32_t old = *slot;
    if (__builtin_expect(old == DHATC_LIVEMAP_ESCAPED || !dhatc_livemap_fits(block), 0)) {
        return dhatc_livemap_put_escaped(map, slot, block, replaced, had_old);
    }
    if (old != 0) {
        *replaced = dhatc_livemap_block_in(block->address, old);
        *had_old = true;
    } else {
        map->count++;
    }
    *slot = dhatc_livemap_slot_of(block);
    return true;
}

/* Removes the entry for `address`, copying it to *removed.  False if absent. */
static inline bool dhatc_livemap_take(dhatc_livemap_t *map, uintptr_t address,
                                      dhatc_block_t *removed)
{
    if (__builtin_expect(map->top == NULL, 0)) {
        return false;
    }
    if (__builtin_expect(!dhatc_livemap_in_shadow(address), 0)) {
        return dhatc_livemap_take_odd(map, address, removed);
    }
    uint32_t *slot = dhatc_livemap_existing_slot(map, address);
    if (slot == NULL || *slot == 0) {
        return false;
    }
    if (__builtin_expect(*slot == DHATC_LIVEMAP_ESCAPED, 0)) {
        return dhatc_livemap_take_escaped(map, slot, address, removed);
    }
    *removed = dhatc_livemap_block_in(address, *slot);
    *slot = 0;
    map->count--;
    return true;
}

#endif
