#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap */
#endif
#include "rawmem.h"

#include <stdint.h>
#include <sys/mman.h>

void *dhatc_rawmem_alloc(size_t size)
{
    void *block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return block == MAP_FAILED ? NULL : block;
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
