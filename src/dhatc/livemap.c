#include "livemap.h"

#include "rawmem.h"

/* Address bits: 47..32 pick a middle table in `top`, 31..16 a leaf in it,
 * 15..4 the slot in the leaf. */
enum {
    UNIT_SHIFT = 4,
    LEAF_BITS = 12,
    MIDDLE_BITS = 16,
    TOP_BITS = 16,
    ADDRESS_BITS = UNIT_SHIFT + LEAF_BITS + MIDDLE_BITS + TOP_BITS,
};
#define LEAF_BYTES (((size_t)1 << LEAF_BITS) * sizeof(uint64_t))
#define MIDDLE_BYTES (((size_t)1 << MIDDLE_BITS) * sizeof(uint64_t *))
#define TOP_BYTES (((size_t)1 << TOP_BITS) * sizeof(uint64_t **))
/* Leaves are carved 63 to a 2 MiB slab, to spare a system call per 64 KiB of
 * heap; the slab's last leaf-sized space holds its record. */
#define SLAB_BYTES ((size_t)2 << 20)
#define SLAB_LEAVES_BYTES (SLAB_BYTES - LEAF_BYTES)

struct dhatc_shadow_slab {
    dhatc_shadow_slab_t *next;
};

/* A slot holds the block's size_and_pp with the program point plus one, so
 * that no block is stored as 0, the empty slot. */
#define PP_ONE (UINT64_C(1) << DHATC_BLOCK_SIZE_BITS)

static inline bool in_shadow(uintptr_t address)
{
    return (address & ((1u << UNIT_SHIFT) - 1)) == 0 && (uint64_t)address >> ADDRESS_BITS == 0;
}

static inline size_t top_index(uintptr_t address)
{
    return (size_t)(address >> (UNIT_SHIFT + LEAF_BITS + MIDDLE_BITS));
}

static inline size_t middle_index(uintptr_t address)
{
    return (size_t)(address >> (UNIT_SHIFT + LEAF_BITS)) & (((size_t)1 << MIDDLE_BITS) - 1);
}

static inline size_t leaf_index(uintptr_t address)
{
    return (size_t)(address >> UNIT_SHIFT) & (((size_t)1 << LEAF_BITS) - 1);
}

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

static uint64_t *new_leaf(dhatc_livemap_t *map, uint64_t first_block_size)
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
    uint64_t *leaf = (uint64_t *)(void *)map->slab_next;
    map->slab_next += LEAF_BYTES;
    /* Where small blocks are, the leaf will be used densely: one system call
     * now costs less than the eight page faults of touching it slot by slot.
     * A leaf made for a big block (likely alone in its 64 KiB) costs a page. */
    if (first_block_size < SMALL_BLOCK) {
        dhatc_rawmem_prefault(leaf, LEAF_BYTES);
    }
    return leaf;
}

/* The slot for a shadowed address, or NULL if no block was ever there. */
static inline uint64_t *existing_slot(const dhatc_livemap_t *map, uintptr_t address)
{
    uint64_t **middle = map->top[top_index(address)];
    if (__builtin_expect(middle == NULL, 0)) {
        return NULL;
    }
    uint64_t *leaf = middle[middle_index(address)];
    return __builtin_expect(leaf == NULL, 0) ? NULL : &leaf[leaf_index(address)];
}

/* Out of line, so that the common case stays a leaf function: the slot for a
 * shadowed block whose tables do not exist yet; NULL without memory. */
__attribute__((noinline, cold)) static uint64_t *slot_to_make(dhatc_livemap_t *map,
                                                              uintptr_t address, uint64_t size)
{
    uint64_t ***middle = &map->top[top_index(address)];
    if (*middle == NULL && (*middle = dhatc_rawmem_alloc_sparse(MIDDLE_BYTES)) == NULL) {
        return NULL;
    }
    uint64_t **leaf = &(*middle)[middle_index(address)];
    if (*leaf == NULL && (*leaf = new_leaf(map, size)) == NULL) {
        return NULL;
    }
    return &(*leaf)[leaf_index(address)];
}

__attribute__((noinline)) static bool put_odd(dhatc_livemap_t *map, const dhatc_block_t *block,
                                              dhatc_block_t *replaced, bool *had_old)
{
    if (!dhatc_blockhash_put(&map->odd, block, replaced, had_old)) {
        return false;
    }
    map->count += !*had_old;
    return true;
}

bool dhatc_livemap_put(dhatc_livemap_t *map, const dhatc_block_t *block,
                       dhatc_block_t *replaced, bool *had_old)
{
    *had_old = false;
    if (__builtin_expect(!in_shadow(block->address), 0)) {
        return put_odd(map, block, replaced, had_old);
    }
    uint64_t *slot = existing_slot(map, block->address);
    if (__builtin_expect(slot == NULL, 0)) {
        slot = slot_to_make(map, block->address, dhatc_block_size(block));
        if (slot == NULL) {
            return false;
        }
    }
    if (*slot != 0) {
        *replaced = (dhatc_block_t){block->address, *slot - PP_ONE};
        *had_old = true;
    } else {
        map->count++;
    }
    *slot = block->size_and_pp + PP_ONE;
    return true;
}

__attribute__((noinline)) static bool take_odd(dhatc_livemap_t *map, uintptr_t address,
                                               dhatc_block_t *removed)
{
    if (!dhatc_blockhash_take(&map->odd, address, removed)) {
        return false;
    }
    map->count--;
    return true;
}

bool dhatc_livemap_take(dhatc_livemap_t *map, uintptr_t address, dhatc_block_t *removed)
{
    if (__builtin_expect(map->top == NULL, 0)) {
        return false;
    }
    if (__builtin_expect(!in_shadow(address), 0)) {
        return take_odd(map, address, removed);
    }
    uint64_t *slot = existing_slot(map, address);
    if (slot == NULL || *slot == 0) {
        return false;
    }
    *removed = (dhatc_block_t){address, *slot - PP_ONE};
    *slot = 0;
    map->count--;
    return true;
}
