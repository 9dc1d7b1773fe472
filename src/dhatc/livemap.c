#include "livemap.h"

#include "rawmem.h"

enum { INITIAL_SLOTS = 1 << 16 };

static inline size_t slot_of(const dhatc_livemap_t *map, uintptr_t address)
{
    /* Fibonacci hashing: heap addresses are 16-byte aligned and clustered,
     * the multiply spreads them over the high bits. */
    return (size_t)((address * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & map->mask;
}

bool dhatc_livemap_init(dhatc_livemap_t *map)
{
    map->slots = dhatc_rawmem_alloc(INITIAL_SLOTS * sizeof(dhatc_block_t));
    map->mask = INITIAL_SLOTS - 1;
    map->count = 0;
    return map->slots != NULL;
}

void dhatc_livemap_release(dhatc_livemap_t *map)
{
    dhatc_rawmem_free(map->slots, (map->mask + 1) * sizeof(dhatc_block_t));
    map->slots = NULL;
    map->mask = 0;
    map->count = 0;
}

static bool grow(dhatc_livemap_t *map)
{
    size_t old_slots = map->mask + 1;
    dhatc_block_t *old = map->slots;
    dhatc_block_t *fresh = dhatc_rawmem_alloc(2 * old_slots * sizeof(dhatc_block_t));
    if (fresh == NULL) {
        return false;
    }
    map->slots = fresh;
    map->mask = 2 * old_slots - 1;
    for (size_t i = 0; i < old_slots; i++) {
        if (old[i].address != 0) {
            size_t j = slot_of(map, old[i].address);
            while (fresh[j].address != 0) {
                j = (j + 1) & map->mask;
            }
            fresh[j] = old[i];
        }
    }
    dhatc_rawmem_free(old, old_slots * sizeof(dhatc_block_t));
    return true;
}

bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                       dhatc_block_t *replaced, bool *had_old)
{
    *had_old = false;
    if ((map->count + 1) * 2 > map->mask + 1 && !grow(map)) {
        return false;
    }
    size_t i = slot_of(map, block->address);
    while (map->slots[i].address != 0) {
        if (map->slots[i].address == block->address) {
            *replaced = map->slots[i];
            *had_old = true;
            map->slots[i] = *block;
            return true;
        }
        i = (i + 1) & map->mask;
    }
    map->slots[i] = *block;
    map->count++;
    return true;
}

bool dhatc_livemap_take(dhatc_livemap_t *map, uintptr_t address, dhatc_block_t *removed)
{
    if (map->slots == NULL) {
        return false;
    }
    size_t i = slot_of(map, address);
    while (map->slots[i].address != address) {
        if (map->slots[i].address == 0) {
            return false;
        }
        i = (i + 1) & map->mask;
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
