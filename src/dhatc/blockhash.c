#include "blockhash.h"

#include "rawmem.h"

enum { INITIAL_SLOT_BITS = 12 }; /* 64 KiB: a small live heap stays in cache */

/* Locality-preserving hash.  Each CHUNK of the heap (CHUNK_BYTES, aligned)
 * owns a run of slots, one per 16-byte unit, at a pseudo-random place in the
 * table (Fibonacci hashing of the chunk number), so blocks allocated or freed
 * one after another -- the common pattern of pymalloc and malloc -- land in
 * neighbouring slots and share cache lines, while chunks spread over the
 * table.  A purely random hash makes every lookup in a large heap a cache and
 * TLB miss; runs much longer than a few cache lines make neighbouring chunks
 * overflow into each other.  The unit's place in its run is rotated by more
 * bits of the chunk's hash, so chunks holding one block at the same offset
 * (page-aligned buffers) still spread over the whole run. */
enum { CHUNK_SHIFT = 10, RUN_MASK = (1 << (CHUNK_SHIFT - 4)) - 1 };

static inline size_t slot_of(const dhatc_blockhash_t *map, uintptr_t address)
{
    size_t chunk_hash =
        (size_t)(((address >> CHUNK_SHIFT) * UINT64_C(0x9E3779B97F4A7C15)) >> map->shift);
    size_t unit = (size_t)(address >> 4);
    return ((chunk_hash & ~(size_t)RUN_MASK) | ((unit + chunk_hash) & RUN_MASK)) & map->mask;
}

bool dhatc_blockhash_init(dhatc_blockhash_t *map)
{
    map->slots = dhatc_rawmem_alloc(((size_t)1 << INITIAL_SLOT_BITS) * sizeof(dhatc_block_t));
    map->mask = ((size_t)1 << INITIAL_SLOT_BITS) - 1;
    map->shift = 64 - INITIAL_SLOT_BITS;
    map->count = 0;
    return map->slots != NULL;
}

void dhatc_blockhash_release(dhatc_blockhash_t *map)
{
    dhatc_rawmem_free(map->slots, (map->mask + 1) * sizeof(dhatc_block_t));
    map->slots = NULL;
    map->mask = 0;
    map->shift = 0;
    map->count = 0;
}

static inline size_t distance_from_home(const dhatc_blockhash_t *map, size_t slot)
{
    return (slot - slot_of(map, map->slots[slot].address)) & map->mask;
}

/* Robin Hood insertion of an address known to be absent, from slot `i` at
 * `distance` from its home: an entry further from its home takes the slot of
 * one nearer to its own, which moves on.  Probe runs stay ordered by
 * distance, so a lookup for an absent address (a block from before the
 * profile) stops as soon as it has gone further than the entries it meets,
 * even inside the dense runs the locality-preserving hash makes. */
static void insert_absent(dhatc_blockhash_t *map, dhatc_block_t carried, size_t i, size_t distance)
{
    for (;; i = (i + 1) & map->mask, distance++) {
        dhatc_block_t *slot = &map->slots[i];
        if (slot->address == 0) {
            *slot = carried;
            map->count++;
            return;
        }
        size_t resident = distance_from_home(map, i);
        if (resident < distance) {
            dhatc_block_t evicted = *slot;
            *slot = carried;
            carried = evicted;
            distance = resident;
        }
    }
}

static bool grow(dhatc_blockhash_t *map)
{
    size_t old_slots = map->mask + 1;
    dhatc_block_t *old = map->slots;
    dhatc_block_t *fresh = dhatc_rawmem_alloc(2 * old_slots * sizeof(dhatc_block_t));
    if (fresh == NULL) {
        return false;
    }
    map->slots = fresh;
    map->mask = 2 * old_slots - 1;
    map->shift--;
    map->count = 0;
    for (size_t i = 0; i < old_slots; i++) {
        if (old[i].address != 0) {
            insert_absent(map, old[i], slot_of(map, old[i].address), 0);
        }
    }
    dhatc_rawmem_free(old, old_slots * sizeof(dhatc_block_t));
    return true;
}

bool dhatc_blockhash_put(dhatc_blockhash_t *map, const dhatc_block_t *block,
                         dhatc_block_t *replaced, bool *had_old)
{
    *had_old = false;
    if ((map->count + 1) * 10 > (map->mask + 1) * 7 && !grow(map)) {
        return false;
    }
    size_t i = slot_of(map, block->address);
    size_t distance = 0;
    for (; map->slots[i].address != 0; distance++, i = (i + 1) & map->mask) {
        if (map->slots[i].address == block->address) {
            *replaced = map->slots[i];
            *had_old = true;
            map->slots[i] = *block;
            return true;
        }
        if (distance_from_home(map, i) < distance) {
            break; /* it would sit before here: absent */
        }
    }
    insert_absent(map, *block, i, distance);
    return true;
}

bool dhatc_blockhash_take(dhatc_blockhash_t *map, uintptr_t address, dhatc_block_t *removed)
{
    if (map->slots == NULL) {
        return false;
    }
    size_t i = slot_of(map, address);
    for (size_t distance = 0; map->slots[i].address != address;
         distance++, i = (i + 1) & map->mask) {
        if (map->slots[i].address == 0 || distance_from_home(map, i) < distance) {
            return false;
        }
    }
    *removed = map->slots[i];
    map->count--;
    /* Backward-shift deletion: pull later members of the probe run into the
     * hole so that no lookup ever stops early at it. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & map->mask;
        if (map->slots[j].address == 0) {
            break;
        }
        size_t home = slot_of(map, map->slots[j].address);
        /* Move slot j into the hole unless its home lies cyclically in (hole, j]. */
        bool home_in_range = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!home_in_range) {
            map->slots[hole] = map->slots[j];
            hole = j;
        }
    }
    map->slots[hole].address = 0;
    return true;
}
