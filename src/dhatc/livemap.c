#include "livemap.h"

#include "rawmem.h"

#define LEAF_BYTES (((size_t)1 << LEAF_BITS) * sizeof(uint32_t))
#define MIDDLE_BYTES (((size_t)1 << MIDDLE_BITS) * sizeof(uint32_t *))
#define TOP_BYTES (((size_t)1 << TOP_BITS) * sizeof(uint32_t **))
/* Leaves are carved 127 to a 2 MiB slab, to spare a system call per 64 KiB of
 * heap; the slab's last leaf-sized space holds its record. */
#define SLAB_BYTES ((size_t)2 << 20)
#define SLAB_LEAVES_BYTES (SLAB_BYTES - LEAF_BYTES)

struct dhatc_shadow_slab {
    dhatc_shadow_slab_t *next;
};

#define UNIT_SHIFT DHATC_LIVEMAP_UNIT_SHIFT
#define LEAF_BITS DHATC_LIVEMAP_LEAF_BITS
#define MIDDLE_BITS DHATC_LIVEMAP_MIDDLE_BITS
#define TOP_BITS DHATC_LIVEMAP_TOP_BITS
#define top_index dhatc_livemap_top_index
#define middle_index dhatc_livemap_middle_index
#define leaf_index dhatc_livemap_leaf_index

bool dhatc_livemap_init(dhatc_livemap_t *map)
{
    *map = (dhatc_livemap_t){0};
    map->top = dhatc_rawmem_alloc_sparse(TOP_BYTES);
    if (map->top == NULL) {
        return false;
    }
    if (!dhatc_blockhash_init(&map->odd)) {
        dhatc_rawmem_free(map->top, TOP_BYTES);
        map->top = NULL;
        return false;
    }
    return true;
}

void dhatc_livemap_release(dhatc_livemap_t *map)
{
    if (map->top != NULL) {
        for (size_t i = 0; i < ((size_t)1 << TOP_BITS); i++) {
            dhatc_rawmem_free(map->top[i], MIDDLE_BYTES);
        }
        dhatc_rawmem_free(map->top, TOP_BYTES);
    }
    while (map->slabs != NULL) {
        dhatc_shadow_slab_t *next = map->slabs->next;
        dhatc_rawmem_free((char *)map->slabs - SLAB_LEAVES_BYTES, SLAB_BYTES);
        map->slabs = next;
    }
    dhatc_blockhash_release(&map->odd);
    *map = (dhatc_livemap_t){0};
}

/* Blocks smaller than a page come from allocators that pack them densely
 * (pymalloc's pools, malloc's bins): a leaf made for one will be filled. */
#define SMALL_BLOCK 4096

static uint32_t *new_leaf(dhatc_livemap_t *map, uint64_t first_block_size)
{
    if (map->slab_next == NULL || (size_t)(map->slab_end - map->slab_next) < LEAF_BYTES) {
        char *slab = dhatc_rawmem_alloc_sparse(SLAB_BYTES);
        if (slab == NULL) {
            return NULL;
        }
        dhatc_shadow_slab_t *record = (dhatc_shadow_slab_t *)(void *)(slab + SLAB_LEAVES_BYTES);
        record->next = map->slabs;
        map->slabs = record;
        map->slab_next = slab;
        map->slab_end = slab + SLAB_LEAVES_BYTES;
    }
    uint32_t *leaf = (uint32_t *)(void *)map->slab_next;
    map->slab_next += LEAF_BYTES;
    /* Where small blocks are, the leaf will be used densely: one system call
     * now costs less than the four page faults of touching it slot by slot.
     * A leaf made for a big block (likely alone in its 64 KiB) costs a page. */
    if (first_block_size < SMALL_BLOCK) {
        dhatc_rawmem_prefault(leaf, LEAF_BYTES);
    }
    return leaf;
}

uint32_t *dhatc_livemap_slot_to_make(dhatc_livemap_t *map, uintptr_t address, uint64_t size)
{
    uint32_t ***middle = &map->top[top_index(address)];
    if (*middle == NULL && (*middle = dhatc_rawmem_alloc_sparse(MIDDLE_BYTES)) == NULL) {
        return NULL;
    }
    uint32_t **leaf = &(*middle)[middle_index(address)];
    if (*leaf == NULL && (*leaf = new_leaf(map, size)) == NULL) {
        return NULL;
    }
    return &(*leaf)[leaf_index(address)];
}

bool dhatc_livemap_put_odd(dhatc_livemap_t *map, const dhatc_block_t *block,
                          dhatc_block_t *replaced, bool *had_old)
{
    if (!dhatc_blockhash_put(&map->odd, block, replaced, had_old)) {
        return false;
    }
    map->count += !*had_old;
    return true;
}

bool dhatc_livemap_take_odd(dhatc_livemap_t *map, uintptr_t address, dhatc_block_t *removed)
{
    if (!dhatc_blockhash_take(&map->odd, address, removed)) {
        return false;
    }
    map->count--;
    return true;
}

/* A block that does not fit in its slot, or a slot that says its block is in
 * the hash table.  The hash table is written first: if it has no memory,
 * nothing has changed. */
bool dhatc_livemap_put_escaped(dhatc_livemap_t *map, uint32_t *slot, const dhatc_block_t *block,
                               dhatc_block_t *replaced, bool *had_old)
{
    uint32_t old = *slot;
    if (!dhatc_livemap_fits(block)) {
        if (!dhatc_blockhash_put(&map->odd, block, replaced, had_old)) {
            return false;
        }
        /* An escaped old block was replaced in the hash table above. */
        if (old != DHATC_LIVEMAP_ESCAPED && old != 0) {
            *replaced = dhatc_livemap_block_in(block->address, old);
            *had_old = true;
        }
        *slot = DHATC_LIVEMAP_ESCAPED;
    } else {
        /* The old block is in the hash table: the slot is ESCAPED. */
        *had_old = dhatc_blockhash_take(&map->odd, block->address, replaced);
        *slot = dhatc_livemap_slot_of(block);
    }
    map->count += !*had_old;
    return true;
}

bool dhatc_livemap_take_escaped(dhatc_livemap_t *map, uint32_t *slot, uintptr_t address,
                                dhatc_block_t *removed)
{
    *slot = 0;
    if (!dhatc_blockhash_take(&map->odd, address, removed)) {
        return false;
    }
    map->count--;
    return true;
}
