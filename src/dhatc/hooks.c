#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "hooks.h"

#include <stdbool.h>

#include "guard.h"
#include "record.h"

typedef struct {
    PyMemAllocatorDomain domain;
    dhatc_kind_t first_kind; /* its malloc kind; calloc and realloc follow */
    bool gil_held;           /* the raw domain is called without the GIL */
    PyMemAllocatorEx wrapped;
} domain_hook_t;

/* Hook contexts, never freed: a hook that another one (tracemalloc's) has
 * wrapped stays reachable through that chain for as long as the wrapper
 * lives.  A new context is used only when none of ours is in the domain's
 * chain any more (tracemalloc.stop() restores the allocators it saw at its
 * start, which removes a hook installed after it). */
enum { CONTEXTS_PER_DOMAIN = 16 };
static domain_hook_t contexts[3][CONTEXTS_PER_DOMAIN];
static int contexts_used[3];
static domain_hook_t *latest[3]; /* the context installed last, per domain */

static const dhatc_kind_t first_kinds[3] = {DHATC_KIND_RAW_MALLOC, DHATC_KIND_MEM_MALLOC,
                                           DHATC_KIND_OBJ_MALLOC};

/* Guard values for probing whether one of our hooks is in a domain's chain:
 * any non-zero guard makes our hooks pass calls through; the hook of the
 * probed domain also flips the marker. */
enum { GUARD_PROBE = 0x100, GUARD_PROBE_SEEN = 0x200, GUARD_PROBE_NONE = GUARD_PROBE + 3 };

static inline void note_probe(const domain_hook_t *hook)
{
    if (dhatc_in_hook == GUARD_PROBE + (int)hook->domain) {
        dhatc_in_hook = GUARD_PROBE_SEEN;
    }
}

static inline void record_new_block(const domain_hook_t *hook, void *block, size_t size, int which)
{
    dhatc_record_block(block, size, (dhatc_kind_t)(hook->first_kind + which), hook->gil_held);
}

enum { WHICH_MALLOC = 0, WHICH_CALLOC = 1, WHICH_REALLOC = 2 };

/* Inline in hook_malloc and hook_calloc: one call fewer on every allocation. */
static inline __attribute__((always_inline)) void *hook_alloc(void *ctx, size_t nelem,
                                                               size_t elsize, int which)
{
    domain_hook_t *hook = ctx;
    const PyMemAllocatorEx *next = &hook->wrapped;
    if (!dhatc_record_heap_active() || !dhatc_record_thread_counts()) {
        note_probe(hook);
        return which == WHICH_CALLOC ? next->calloc(next->ctx, nelem, elsize)
                                     : next->malloc(next->ctx, elsize);
    }
    dhatc_in_hook = 1;
    void *block = which == WHICH_CALLOC ? next->calloc(next->ctx, nelem, elsize)
                                        : next->malloc(next->ctx, elsize);
    if (block != NULL) {
        record_new_block(hook, block, nelem * elsize, which);
    }
    dhatc_in_hook = 0;
    return block;
}

/* flatten: the recording of a block whose stack is in the thread's cache,
 * inlined whole (from record.c, frames.c and profile.c, by the link-time
 * optimizer); its rare cases stay calls (noinline there).  24 instructions
 * fewer per block than calls to each. */
static __attribute__((flatten)) void *hook_malloc(void *ctx, size_t size)
{
    return hook_alloc(ctx, 1, size, WHICH_MALLOC);
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    return hook_alloc(ctx, nelem, elsize, WHICH_CALLOC);
}

static void *hook_realloc(void *ctx, void *old, size_t size)
{
    domain_hook_t *hook = ctx;
    const PyMemAllocatorEx *next = &hook->wrapped;
    if (!dhatc_record_heap_active()) {
        note_probe(hook);
        return next->realloc(next->ctx, old, size);
    }
    dhatc_in_hook = 1;
    dhatc_realloc_ticket_t ticket;
    bool known = dhatc_record_realloc_begin(old, &ticket);
    void *block = next->realloc(next->ctx, old, size);
    dhatc_record_realloc_end(known, &ticket, block, size,
                             (dhatc_kind_t)(hook->first_kind + WHICH_REALLOC), hook->gil_held);
    dhatc_in_hook = 0;
    return block;
}

/* flatten: as hook_malloc. */
static __attribute__((flatten)) void hook_free(void *ctx, void *block)
{
    domain_hook_t *hook = ctx;
    const PyMemAllocatorEx *next = &hook->wrapped;
    if (block == NULL || !dhatc_record_heap_active()) {
        note_probe(hook);
        next->free(next->ctx, block);
        return;
    }
    dhatc_in_hook = 1;
    /* Record before freeing: once freed, another thread may get the same
     * address and record it first. */
    dhatc_record_free(block, hook->gil_held);
    next->free(next->ctx, block);
    dhatc_in_hook = 0;
}

static bool ours_on_top(const domain_hook_t *hook)
{
    PyMemAllocatorEx current;
    PyMem_GetAllocator(hook->domain, &current);
    return current.ctx == hook && current.malloc == hook_malloc;
}

/* Whether a call into `domain` passes through one of our hooks: allocates
 * and frees one byte with the probe marker in the guard.  Needs the GIL. */
static bool ours_in_chain(PyMemAllocatorDomain domain)
{
    int saved = dhatc_in_hook;
    dhatc_in_hook = GUARD_PROBE + (int)domain;
    void *probe = domain == PYMEM_DOMAIN_RAW   ? PyMem_RawMalloc(1)
                  : domain == PYMEM_DOMAIN_MEM ? PyMem_Malloc(1)
                                               : PyObject_Malloc(1);
    /* A probe that could not be allocated proves nothing (the allocator on
     * top may be failing every call): no false alarm then. */
    bool seen = dhatc_in_hook == GUARD_PROBE_SEEN || probe == NULL;
    dhatc_in_hook = GUARD_PROBE_NONE;
    if (domain == PYMEM_DOMAIN_RAW) {
        PyMem_RawFree(probe);
    } else if (domain == PYMEM_DOMAIN_MEM) {
        PyMem_Free(probe);
    } else {
        PyObject_Free(probe);
    }
    dhatc_in_hook = saved;
    return seen;
}

int dhatc_hooks_install(void)
{
    for (int d = 0; d < 3; d++) {
        if (latest[d] != NULL && (ours_on_top(latest[d]) || ours_in_chain(latest[d]->domain))) {
            continue; /* on top, or wrapped by another hook: calls reach it */
        }
        if (contexts_used[d] == CONTEXTS_PER_DOMAIN) {
            PyErr_SetString(PyExc_RuntimeError,
                            "dhatc: too many allocator hooks stacked over dhatc's; stop "
                            "tracemalloc (or other allocator hooks) before starting dhatc");
            return -1;
        }
        domain_hook_t *hook = &contexts[d][contexts_used[d]++];
        hook->domain = (PyMemAllocatorDomain)d;
        hook->first_kind = first_kinds[d];
        hook->gil_held = d != PYMEM_DOMAIN_RAW;
        PyMem_GetAllocator(hook->domain, &hook->wrapped);
        PyMemAllocatorEx ours = {hook, hook_malloc, hook_calloc, hook_realloc, hook_free};
        PyMem_SetAllocator(hook->domain, &ours);
        latest[d] = hook;
    }
    return 0;
}

int dhatc_hooks_lost(void)
{
    int lost = 0;
    for (int d = 0; d < 3; d++) {
        if (latest[d] != NULL && !ours_on_top(latest[d]) && !ours_in_chain(latest[d]->domain)) {
            lost |= 1 << d;
        }
    }
    return lost;
}

void dhatc_hooks_uninstall(void)
{
    for (int d = 0; d < 3; d++) {
        domain_hook_t *hook = latest[d];
        if (hook != NULL && ours_on_top(hook)) {
            PyMem_SetAllocator(hook->domain, &hook->wrapped);
            latest[d] = NULL;
            if (hook == &contexts[d][contexts_used[d] - 1]) {
                contexts_used[d]--; /* unreachable now: reusable */
            }
        }
    }
}
