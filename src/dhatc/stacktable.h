/* A set of distinct stacks, each mapped to a 32-bit value (a program point
 * id).  Open addressing on the precomputed hash; the frames of each stored
 * stack are copied into an arena.  Not thread-safe: caller holds the lock. */
#ifndef DHATC_STACKTABLE_H
#define DHATC_STACKTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rawmem.h"
#include "stack.h"

#define DHATC_NO_VALUE UINT32_MAX

typedef struct {
    uint64_t hash;
    const dhatc_frame_t *frames;
    uint32_t depth;
    uint32_t kind;
    uint32_t value;
    uint32_t used;
} dhatc_stack_entry_t;

typedef struct {
    dhatc_stack_entry_t *slots;
    size_t mask;
    size_t count;
    dhatc_arena_t frames;
} dhatc_stacktable_t;

bool dhatc_stacktable_init(dhatc_stacktable_t *table);
void dhatc_stacktable_release(dhatc_stacktable_t *table);

/* The value stored for this stack, or DHATC_NO_VALUE. */
uint32_t dhatc_stacktable_find(const dhatc_stacktable_t *table, uint64_t hash, uint32_t kind,
                               const dhatc_frame_t *frames, uint32_t depth);

/* Stores a stack that find() did not return, copying its frames; *stored
 * points at the copy.  False when out of memory. */
bool dhatc_stacktable_add(dhatc_stacktable_t *table, uint64_t hash, uint32_t kind,
                          const dhatc_frame_t *frames, uint32_t depth, uint32_t value,
                          const dhatc_frame_t **stored);

#endif
