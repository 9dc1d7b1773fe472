/* Stacks as the engine sees them: opaque (code, where, kind) frames plus the
 * kind of allocator entry on top.  The engine never looks inside `code`; the
 * binding decides what `where` means (an instruction offset in a captured
 * stack, a line number in a program point). */
#ifndef DHATC_STACK_H
#define DHATC_STACK_H

#include <stdint.h>

/* What a frame is.  A Python frame's `code` is its code object; a
 * subinterpreter frame stands for the Python frames of another interpreter,
 * which the profile never keeps (their code objects die with it): `code` is
 * NULL and `where` the interpreter's id.  A native frame (Profiler(native=True))
 * is an instruction address of the C stack: `code` is that address, `where` 0. */
typedef enum {
    DHATC_FRAME_PYTHON = 0,
    DHATC_FRAME_SUBINTERPRETER = 1,
    DHATC_FRAME_NATIVE = 2,
} dhatc_frame_kind_t;

typedef struct {
    const void *code;
    int32_t where;
    int32_t kind; /* dhatc_frame_kind_t */
} dhatc_frame_t;

/* The entry points a block can come through, listed once.  The name is the
 * top frame of every program point of that kind. */
#define DHATC_KINDS(X)                          \
    X(RAW_MALLOC, "PyMem_RawMalloc")            \
    X(RAW_CALLOC, "PyMem_RawCalloc")            \
    X(RAW_REALLOC, "PyMem_RawRealloc")          \
    X(MEM_MALLOC, "PyMem_Malloc")               \
    X(MEM_CALLOC, "PyMem_Calloc")               \
    X(MEM_REALLOC, "PyMem_Realloc")             \
    X(OBJ_MALLOC, "PyObject_Malloc")            \
    X(OBJ_CALLOC, "PyObject_Calloc")            \
    X(OBJ_REALLOC, "PyObject_Realloc")          \
    X(MALLOC, "malloc")                         \
    X(CALLOC, "calloc")                         \
    X(REALLOC, "realloc")                       \
    X(POSIX_MEMALIGN, "posix_memalign")         \
    X(ALIGNED_ALLOC, "aligned_alloc")           \
    X(MEMALIGN, "memalign")                     \
    X(VALLOC, "valloc")                         \
    X(PVALLOC, "pvalloc")                       \
    X(AD_HOC, "")

typedef enum {
#define DHATC_KIND_ENUM(name, text) DHATC_KIND_##name,
    DHATC_KINDS(DHATC_KIND_ENUM)
#undef DHATC_KIND_ENUM
    DHATC_KIND_COUNT
} dhatc_kind_t;

/* Hash of a stack, mixed frame by frame while it is captured. */
static inline uint64_t dhatc_hash_step(uint64_t hash, const dhatc_frame_t *frame)
{
    hash ^= (uint64_t)(uintptr_t)frame->code;
    hash *= UINT64_C(0x100000001B3);
    hash ^= (uint64_t)(uint32_t)frame->where | ((uint64_t)(uint32_t)frame->kind << 32);
    hash *= UINT64_C(0x9E3779B97F4A7C15);
    return hash;
}

static inline uint64_t dhatc_hash_finish(uint64_t hash, uint32_t kind, uint32_t depth)
{
    hash ^= ((uint64_t)kind << 32) | depth;
    hash *= UINT64_C(0xFF51AFD7ED558CCD);
    return hash ^ (hash >> 29);
}

#define DHATC_HASH_SEED UINT64_C(0xCBF29CE484222325)

#endif
