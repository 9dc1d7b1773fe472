#include "native.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "guard.h"
#include "native_abi.h"
#include "record.h"
#include "stack.h"

/* The preload library reports kinds in stack.h's order. */
#define SAME_ORDER(native, engine) \
    _Static_assert(DHATC_KIND_MALLOC + (int)(native) == (int)(engine), #native)
SAME_ORDER(DHATC_NATIVE_MALLOC, DHATC_KIND_MALLOC);
SAME_ORDER(DHATC_NATIVE_CALLOC, DHATC_KIND_CALLOC);
SAME_ORDER(DHATC_NATIVE_REALLOC, DHATC_KIND_REALLOC);
SAME_ORDER(DHATC_NATIVE_POSIX_MEMALIGN, DHATC_KIND_POSIX_MEMALIGN);
SAME_ORDER(DHATC_NATIVE_ALIGNED_ALLOC, DHATC_KIND_ALIGNED_ALLOC);
SAME_ORDER(DHATC_NATIVE_MEMALIGN, DHATC_KIND_MEMALIGN);
SAME_ORDER(DHATC_NATIVE_VALLOC, DHATC_KIND_VALLOC);
SAME_ORDER(DHATC_NATIVE_PVALLOC, DHATC_KIND_PVALLOC);

/* ---- the callbacks: the same rules as the PyMem hooks (hooks.c) --------- */

/* dhatc_record_heap_active() is false inside any dhatc hook on this thread: a
 * PyMem hook that leads into malloc has already recorded the block, so it is
 * counted once, at the outermost entry.  The guard stays set while
 * recording, so anything the recording itself allocates is not recorded (and
 * cannot come back in here). */

static void on_allocated(void *block, size_t size, dhatc_native_kind_t kind)
{
    if (!dhatc_record_heap_active() || !dhatc_record_thread_counts()) {
        return;
    }
    dhatc_in_hook = 1;
    /* gil_held false: C code may call malloc from any thread, with or
     * without the GIL, or from a thread Python does not know. */
    dhatc_record_block(block, size, (dhatc_kind_t)(DHATC_KIND_MALLOC + (int)kind), false);
    dhatc_in_hook = 0;
}

static void on_freeing(void *block)
{
    if (!dhatc_record_heap_active()) {
        return;
    }
    dhatc_in_hook = 1;
    dhatc_record_free(block, false);
    dhatc_in_hook = 0;
}

/* What on_reallocating tells on_reallocated, in the state's first word; the
 * engine's ticket follows. */
enum { REALLOC_NOT_OURS, REALLOC_KNOWN, REALLOC_UNKNOWN };
_Static_assert(sizeof(uint64_t) + sizeof(dhatc_realloc_ticket_t) <=
                   sizeof(dhatc_native_realloc_state_t),
               "the engine's realloc ticket must fit the ABI's opaque state");

static void on_reallocating(void *old, dhatc_native_realloc_state_t *state)
{
    state->opaque[0] = REALLOC_NOT_OURS; /* e.g. a PyMem hook already records it */
    if (!dhatc_record_heap_active()) {
        return;
    }
    dhatc_in_hook = 1;
    dhatc_realloc_ticket_t ticket;
    if (dhatc_record_realloc_begin(old, &ticket)) {
        state->opaque[0] = REALLOC_KNOWN;
        memcpy(&state->opaque[1], &ticket, sizeof ticket);
    } else {
        state->opaque[0] = REALLOC_UNKNOWN;
    }
    dhatc_in_hook = 0;
}

static void on_reallocated(dhatc_native_realloc_state_t *state, void *block, size_t size)
{
    if (state->opaque[0] == REALLOC_NOT_OURS) {
        return;
    }
    dhatc_in_hook = 1;
    dhatc_realloc_ticket_t ticket = {0};
    bool known = state->opaque[0] == REALLOC_KNOWN;
    if (known) {
        memcpy(&ticket, &state->opaque[1], sizeof ticket);
    }
    /* Unknown: a block allocated before the profile started, a new one of it. */
    dhatc_record_realloc_end(known, &ticket, block, size, DHATC_KIND_REALLOC, false);
    dhatc_in_hook = 0;
}

static const dhatc_native_hooks_t callbacks = {
    .abi = DHATC_NATIVE_ABI,
    .allocated = on_allocated,
    .freeing = on_freeing,
    .reallocating = on_reallocating,
    .reallocated = on_reallocated,
};

/* ---- finding the preload library -------------------------------------- */

static enum { UNKNOWN, ABSENT, PRESENT } preload_state = UNKNOWN;
static dhatc_preload_attach_fn preload_attach;

/* The base address of the object that defines `symbol` in the global scope. */
static void *defining_object(const char *symbol, void **address)
{
    Dl_info info;
    *address = dlsym(RTLD_DEFAULT, symbol);
    if (*address == NULL || dladdr(*address, &info) == 0) {
        return NULL;
    }
    return info.dli_fbase;
}

/* Whether the process's malloc calls land in the preload library: with the
 * probe table attached, one malloc of an odd size from this thread must come
 * back through it.  (Comparing dlsym(RTLD_DEFAULT, "malloc") with the library
 * is not enough: in a non-PIE executable that is the executable's own PLT
 * entry, whichever library it leads to.)  A library loaded later with dlopen
 * is found by dlsym but never called. */
enum { PROBE_SIZE = 4093 };
static pthread_t probing_thread;
static _Atomic int probe_seen;

static void probe_allocated(void *block, size_t size, dhatc_native_kind_t kind)
{
    (void)block;
    if (kind == DHATC_NATIVE_MALLOC && size == PROBE_SIZE &&
        pthread_equal(pthread_self(), probing_thread)) {
        atomic_store(&probe_seen, 1);
    }
}
static void probe_freeing(void *block) { (void)block; }
static void probe_reallocating(void *old, dhatc_native_realloc_state_t *state)
{
    (void)old;
    (void)state;
}
static void probe_reallocated(dhatc_native_realloc_state_t *state, void *block, size_t size)
{
    (void)state;
    (void)block;
    (void)size;
}

/* Static: other threads may still be inside these after the probe ends. */
static const dhatc_native_hooks_t probe_callbacks = {
    .abi = DHATC_NATIVE_ABI,
    .allocated = probe_allocated,
    .freeing = probe_freeing,
    .reallocating = probe_reallocating,
    .reallocated = probe_reallocated,
};

static bool malloc_reaches(dhatc_preload_attach_fn attach)
{
    /* Through a volatile pointer, so the compiler cannot drop the pair. */
    void *(*volatile allocate)(size_t) = malloc;
    void (*volatile release)(void *) = free;
    probing_thread = pthread_self();
    atomic_store(&probe_seen, 0);
    if (attach(&probe_callbacks) != 0) {
        return false;
    }
    void *block = allocate(PROBE_SIZE);
    attach(NULL);
    release(block);
    return atomic_load(&probe_seen) == 1;
}

static bool find_preload(void)
{
    void *attach, *abi;
    void *attach_object = defining_object(DHATC_PRELOAD_ATTACH_SYMBOL, &attach);
    void *abi_object = defining_object(DHATC_PRELOAD_ABI_SYMBOL, &abi);
    if (attach_object == NULL || abi_object != attach_object ||
        *(const unsigned *)abi != DHATC_NATIVE_ABI) {
        return false;
    }
    dhatc_preload_attach_fn attach_fn;
    memcpy(&attach_fn, &attach, sizeof attach); /* object -> function pointer */
    if (!malloc_reaches(attach_fn)) {
        return false;
    }
    preload_attach = attach_fn;
    return true;
}

bool dhatc_native_available(void)
{
    if (preload_state == UNKNOWN) {
        preload_state = find_preload() ? PRESENT : ABSENT;
    }
    return preload_state == PRESENT;
}

void dhatc_native_attach(void)
{
    if (dhatc_native_available()) {
        preload_attach(&callbacks);
    }
}

const void *dhatc_native_preload_address(void)
{
    if (!dhatc_native_available()) {
        return NULL;
    }
    void *address;
    memcpy(&address, &preload_attach, sizeof address); /* function -> object pointer */
    return address;
}

void dhatc_native_detach(void)
{
    if (preload_state == PRESENT) {
        preload_attach(NULL);
    }
}
