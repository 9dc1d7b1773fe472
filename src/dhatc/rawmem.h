/* Memory for the engine's own tables, taken straight from the kernel.
 *
 * The engine runs inside allocator hooks, so it must never call the
 * allocators it is hooking (that would recurse, and be recorded).  mmap and
 * mremap are system calls: no hook can see them.  Blocks come back zeroed. */
#ifndef DHATC_RAWMEM_H
#define DHATC_RAWMEM_H

#include <stddef.h>

void *dhatc_rawmem_alloc(size_t size);
/* For tables used sparsely (the live map's shadow): only the pages touched
 * ever take memory, so never huge pages. */
void *dhatc_rawmem_alloc_sparse(size_t size);
/* Asks the kernel to supply a page-aligned range's pages now, in one call,
 * rather than at one fault per page when first touched.  Best effort. */
void dhatc_rawmem_prefault(void *block, size_t size);
void *dhatc_rawmem_resize(void *block, size_t old_size, size_t new_size);
void dhatc_rawmem_free(void *block, size_t size);

/* A bump allocator over rawmem chunks, for small records that live until the
 * profile is released (stored stacks).  Pointers into it never move. */
typedef struct dhatc_arena_chunk dhatc_arena_chunk_t;
typedef struct {
    dhatc_arena_chunk_t *head;
} dhatc_arena_t;

void *dhatc_arena_alloc(dhatc_arena_t *arena, size_t size);
void dhatc_arena_release(dhatc_arena_t *arena);

#endif
