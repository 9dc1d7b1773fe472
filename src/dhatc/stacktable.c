#include "stacktable.h"

#include <string.h>

enum { INITIAL_SLOTS = 1 << 12 };

bool dhatc_stacktable_init(dhatc_stacktable_t *table)
{
    table->slots = dhatc_rawmem_alloc(INITIAL_SLOTS * sizeof(dhatc_stack_entry_t));
    table->mask = INITIAL_SLOTS - 1;
    table->count = 0;
    table->frames.head = NULL;
    return table->slots != NULL;
}

void dhatc_stacktable_release(dhatc_stacktable_t *table)
{
    dhatc_rawmem_free(table->slots, (table->mask + 1) * sizeof(dhatc_stack_entry_t));
    dhatc_arena_release(&table->frames);
    table->slots = NULL;
    table->mask = 0;
    table->count = 0;
}

/* Frames are compared as bytes (one memcmp, not three compares a frame),
 * which needs a frame to have no padding. */
_Static_assert(sizeof(dhatc_frame_t) == sizeof(void *) + 2 * sizeof(int32_t),
               "dhatc_frame_t has no padding");

static inline bool same_stack(const dhatc_stack_entry_t *entry, uint64_t hash, uint32_t kind,
                              const dhatc_frame_t *frames, uint32_t depth)
{
    return entry->hash == hash && entry->kind == kind && entry->depth == depth &&
           (depth == 0 || memcmp(entry->frames, frames, depth * sizeof *frames) == 0);
}

uint32_t dhatc_stacktable_find(const dhatc_stacktable_t *table, uint64_t hash, uint32_t kind,
                               const dhatc_frame_t *frames, uint32_t depth)
{
    size_t i = (size_t)hash & table->mask;
    while (table->slots[i].used) {
        if (same_stack(&table->slots[i], hash, kind, frames, depth)) {
            return table->slots[i].value;
        }
        i = (i + 1) & table->mask;
    }
    return DHATC_NO_VALUE;
}

static bool grow(dhatc_stacktable_t *table)
{
    size_t old_slots = table->mask + 1;
    dhatc_stack_entry_t *old = table->slots;
    dhatc_stack_entry_t *fresh = dhatc_rawmem_alloc(2 * old_slots * sizeof(dhatc_stack_entry_t));
    if (fresh == NULL) {
        return false;
    }
    table->slots = fresh;
    table->mask = 2 * old_slots - 1;
    for (size_t i = 0; i < old_slots; i++) {
        if (old[i].used) {
            size_t j = (size_t)old[i].hash & table->mask;
            while (fresh[j].used) {
                j = (j + 1) & table->mask;
            }
            fresh[j] = old[i];
        }
    }
    dhatc_rawmem_free(old, old_slots * sizeof(dhatc_stack_entry_t));
    return true;
}

bool dhatc_stacktable_add(dhatc_stacktable_t *table, uint64_t hash, uint32_t kind,
                          const dhatc_frame_t *frames, uint32_t depth, uint32_t value,
                          const dhatc_frame_t **stored)
{
    if ((table->count + 1) * 2 > table->mask + 1 && !grow(table)) {
        return false;
    }
    dhatc_frame_t *copy = NULL;
    if (depth > 0) {
        copy = dhatc_arena_alloc(&table->frames, depth * sizeof(dhatc_frame_t));
        if (copy == NULL) {
            return false;
        }
        memcpy(copy, frames, depth * sizeof(dhatc_frame_t));
    }
    size_t i = (size_t)hash & table->mask;
    while (table->slots[i].used) {
        i = (i + 1) & table->mask;
    }
    table->slots[i] = (dhatc_stack_entry_t){
        .hash = hash, .frames = copy, .depth = depth, .kind = kind, .value = value, .used = 1};
    table->count++;
    *stored = copy;
    return true;
}
