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

/* Stores `block` under block->address.  If that address is already present
 * (a block whose free we never saw), the old entry is copied to *replaced and
 * true is returned through *had_old.  Returns false only when memory for the
 * map could not be had. */
bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                       dhatc_block_t *replaced, bool *had_old);

/* Removes the entry for `address`, copying it to *removed.  False if absent. */
bool dhatc_livemap_take(dhatc_livemap_t *map, uintptr_t address, dhatc_block_t *removed);

#endif
