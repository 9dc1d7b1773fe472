/* The live-block map: address -> (program point, size), for every block of
 * the heap profile.
 *
 * Mostly a shadow of the heap: a three-level radix table over the address
 * space with one 8-byte slot for every 16-byte unit of memory that holds the
 * start of a block.  An insert or a removal is three dependent loads and a
 * store, with no probing, no hashing and no rehashing as the heap grows (a
 * hash table grown from empty to a million blocks rehashes them all again
 * and again, inside the profiled program).  Blocks allocated one after the
 * other sit in neighbouring slots, so a large heap is walked sequentially.
 *
 * Memory: one 32 KiB leaf for every 64 KiB of address space that has held a
 * block.  A leaf made for a small block is made resident at once (small
 * blocks are packed densely, so their leaf fills), one made for a big block
 * page by page as it is used.  Around small blocks the map costs 8 bytes per
 * 16-byte unit of the heap -- less than a hash table's 16 to 23 bytes per
 * block for the small blocks Python is made of -- and for a big block alone
 * in its region one 4 KiB page.  Given back when the profile ends.
 *
 * Blocks the shadow cannot hold -- addresses not 16-byte aligned (a custom
 * allocator may hand out 8-byte aligned ones) or above the 48-bit user
 * address space -- go to a hash table (blockhash.h).  An address always
 * takes the same route, so a lookup searches one structure.  Not
 * thread-safe: the caller holds the engine lock. */
#ifndef DHATC_LIVEMAP_H
#define DHATC_LIVEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "blockhash.h"

typedef struct dhatc_shadow_slab dhatc_shadow_slab_t;

typedef struct {
    uint64_t ***top;            /* [address bits 47..32] -> middle table */
    char *slab_next, *slab_end; /* where the next leaf is carved from */
    dhatc_shadow_slab_t *slabs; /* every slab, to give back at release */
    dhatc_blockhash_t odd;      /* blocks the shadow cannot hold */
    size_t count;               /* live blocks in both */
} dhatc_livemap_t;

bool dhatc_livemap_init(dhatc_livemap_t *map);
void dhatc_livemap_release(dhatc_livemap_t *map);

/* Out of line: the rare cases of put() and take() below (an address with no
 * table yet, an address the shadow cannot hold). */
__attribute__((cold)) uint64_t *dhatc_livemap_slot_to_make(dhatc_livemap_t *map,
                                                           uintptr_t address, uint64_t size);
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

/* A slot holds the block's size_and_pp with the program point plus one, so
 * that no block is stored as 0, the empty slot. */
#define DHATC_LIVEMAP_PP_ONE (UINT64_C(1) << DHATC_BLOCK_SIZE_BITS)

static inline bool dhatc_livemap_in_shadow(uintptr_t address)
{
    return (address & ((1u << DHATC_LIVEMAP_UNIT_SHIFT) - 1)) == 0 &&
           (uint64_t)address >> DHATC_LIVEMAP_ADDRESS_BITS == 0;
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
static inline uint64_t *dhatc_livemap_existing_slot(const dhatc_livemap_t *map, uintptr_t address)
{
    uint64_t **middle = map->top[dhatc_livemap_top_index(address)];
    if (__builtin_expect(middle == NULL, 0)) {
        return NULL;
    }
    uint64_t *leaf = middle[dhatc_livemap_middle_index(address)];
    return __builtin_expect(leaf == NULL, 0) ? NULL : &leaf[dhatc_livemap_leaf_index(address)];
}

/* Stores `block` under block->address.  If that address is already present
 * (a block whose free we never saw), the old entry is copied to *replaced and
 * true is returned through *had_old.  Returns false only when memory for the
 * map could not be had. */
static inline bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                                     dhatc_block_t *replaced, bool *had_old)
{
    *had_old = false;
    if (__builtin_expect(!dhatc_livemap_in_shadow(block->address), 0)) {
        return dhatc_livemap_put_odd(map, block, replaced, had_old);
    }
    uint64_t *slot = dhatc_livemap_existing_slot(map, block->address);
    if (__builtin_expect(slot == NULL, 0)) {
        slot = dhatc_livemap_slot_to_make(map, block->address, dhatc_block_size(block));
        if (slot == NULL) {
            return false;
        }
    }
    if (*slot != 0) {
        *replaced = (dhatc_block_t){block->address, *slot - DHATC_LIVEMAP_PP_ONE};
        *had_old = true;
    } else {
        map->count++;
    }
    *slot = block->size_and_pp + DHATC_LIVEMAP_PP_ONE;
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
    uint64_t *slot = dhatc_livemap_existing_slot(map, address);
    if (slot == NULL || *slot == 0) {
        return false;
    }
    *removed = (dhatc_block_t){address, *slot - DHATC_LIVEMAP_PP_ONE};
    *slot = 0;
    map->count--;
    return true;
}

#endif
