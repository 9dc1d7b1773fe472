#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap */
#endif
#include "rawmem.h"

#include <stdint.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

static void *map_anonymous(size_t size)
{
    void *block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return block == MAP_FAILED ? NULL : block;
}

void *dhatc_rawmem_alloc(size_t size)
{
    if (size < HUGE_PAGE) {
        return map_anonymous(size);
    }
    /* Big tables (the live-block map of a large heap) are probed at random:
     * with 4 KiB pages nearly every probe also misses the TLB, which costs
     * more than the cache miss in a VM.  Transparent huge pages need 2 MiB
     * alignment: map more, unmap the ends, and ask for huge pages. */
    char *raw = map_anonymous(size + HUGE_PAGE);
    if (raw == NULL) {
        return NULL;
    }
    char *aligned = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (aligned > raw) {
        munmap(raw, (size_t)(aligned - raw));
    }
    size_t tail = (size_t)(raw + size + HUGE_PAGE - (aligned + size));
    if (tail > 0) {
        munmap(aligned + size, tail);
    }
    madvise(aligned, size, MADV_HUGEPAGE);
    return aligned;
}

void *dhatc_rawmem_alloc_sparse(size_t size)
{
    void *block = map_anonymous(size);
    /* A huge page would make the kernel zero 2 MiB where a few bytes are
     * used (when transparent huge pages are on for every mapping). */
    if (block != NULL) {
        madvise(block, size, MADV_NOHUGEPAGE);
    }
    return block;
}

void dhatc_rawmem_prefault(void *block, size_t size)
{
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it, harmlessly */
#endif
    madvise(block, size, MADV_POPULATE_WRITE);
}

void *dhatc_rawmem_resize(void *block, size_t old_size, size_t new_size)
{
    void *moved = mremap(block, old_size, new_size, MREMAP_MAYMOVE);
    return moved == MAP_FAILED ? NULL : moved;
}

void dhatc_rawmem_free(void *block, size_t size)
{
    if (block != NULL) {
        munmap(block, size);
    }
}

struct dhatc_arena_chunk {
    dhatc_arena_chunk_t *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

enum { ARENA_CHUNK_SIZE = 1 << 20 };

void *dhatc_arena_alloc(dhatc_arena_t *arena, size_t size)
{
    const size_t align = sizeof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    dhatc_arena_chunk_t *chunk = arena->head;
    if (chunk == NULL || chunk->size - chunk->used < size) {
        size_t chunk_size = sizeof(dhatc_arena_chunk_t) + size;
        if (chunk_size < ARENA_CHUNK_SIZE) {
            chunk_size = ARENA_CHUNK_SIZE;
        }
        chunk = dhatc_rawmem_alloc(chunk_size);
        if (chunk == NULL) {
            return NULL;
        }
        chunk->next = arena->head;
        chunk->size = chunk_size - sizeof(dhatc_arena_chunk_t);
        chunk->used = 0;
        arena->head = chunk;
    }
    void *result = (char *)chunk->data + chunk->used;
    chunk->used += size;
    return result;
}

void dhatc_arena_release(dhatc_arena_t *arena)
{
    dhatc_arena_chunk_t *chunk = arena->head;
    while (chunk != NULL) {
        dhatc_arena_chunk_t *next = chunk->next;
        dhatc_rawmem_free(chunk, chunk->size + sizeof(dhatc_arena_chunk_t));
        chunk = next;
    }
    arena->head = NULL;
}
