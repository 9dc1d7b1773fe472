#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "hooks.h"

#include "frames.h"
#include "guard.h"
#include "profile.h"

__thread int dhatc_in_hook __attribute__((tls_model("initial-exec")));

typedef struct {
    PyMemAllocatorDomain domain;
    dhatc_kind_t first_kind; /* its malloc kind; calloc and realloc follow */
    bool gil_held;           /* the raw domain is called without the GIL */
    bool installed;
    PyMemAllocatorEx wrapped;
} domain_hook_t;

/* Static storage: a hook that someone else wrapped stays reachable through
 * their chain for the rest of the process, so its context must never die. */
static domain_hook_t domain_hooks[3] = {
    {PYMEM_DOMAIN_RAW, DHATC_KIND_RAW_MALLOC, false, false, {0}},
    {PYMEM_DOMAIN_MEM, DHATC_KIND_MEM_MALLOC, true, false, {0}},
    {PYMEM_DOMAIN_OBJ, DHATC_KIND_OBJ_MALLOC, true, false, {0}},
};

static void take_code_reference(const dhatc_frame_t *frames, uint32_t depth)
{
    for (uint32_t i = 0; i < depth; i++) {
        Py_INCREF((PyObject *)frames[i].code);
    }
}

void dhatc_hooks_retain_code(void)
{
    dhatc_profile_visit_new_pps(take_code_reference);
}

static PyThreadState *this_thread(void)
{
    /* Not PyThreadState_Get(): on 3.11 and earlier that is the GIL holder,
     * and the raw domain runs without the GIL.  This is the calling thread's
     * own state, or NULL for a thread Python does not know. */
    return PyGILState_GetThisThreadState();
}

pthread_t dhatc_hooks_only_thread;
bool dhatc_hooks_one_thread_only;

void dhatc_hooks_record_new_block(void *block, size_t size, dhatc_kind_t kind, bool gil_held)
{
    dhatc_frame_t frames[DHATC_MAX_DEPTH];
    uint64_t hash;
    uint32_t depth = dhatc_frames_capture(this_thread(), frames, &hash, kind);
    dhatc_profile_record_alloc((uintptr_t)block, size, kind, frames, depth, hash);
    /* A program point keeps its code objects alive until the file is
     * written.  Taking the references needs the GIL; the raw domain may not
     * have it, in which case the next hooked call that holds it does. */
    if (dhatc_profile_has_new_pps() && (gil_held || PyGILState_Check())) {
        dhatc_hooks_retain_code();
    }
}

static inline void record_new_block(const domain_hook_t *hook, void *block, size_t size, int which)
{
    dhatc_hooks_record_new_block(block, size, (dhatc_kind_t)(hook->first_kind + which),
                                 hook->gil_held);
}

enum { WHICH_MALLOC = 0, WHICH_CALLOC = 1, WHICH_REALLOC = 2 };

static void *hook_alloc(void *ctx, size_t nelem, size_t elsize, int which)
{
    domain_hook_t *hook = ctx;
    const PyMemAllocatorEx *next = &hook->wrapped;
    if (!dhatc_hooks_active() || !dhatc_hooks_thread_counts()) {
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

static void *hook_malloc(void *ctx, size_t size)
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
    if (!dhatc_hooks_active()) {
        return next->realloc(next->ctx, old, size);
    }
    dhatc_in_hook = 1;
    void *block = next->realloc(next->ctx, old, size);
    /* On failure the old block is untouched: nothing to record. */
    if (block != NULL &&
        (old == NULL || !dhatc_profile_record_realloc((uintptr_t)old, (uintptr_t)block, size)) &&
        dhatc_hooks_thread_counts()) {
        record_new_block(hook, block, size, WHICH_REALLOC);
    }
    dhatc_in_hook = 0;
    return block;
}

static void hook_free(void *ctx, void *block)
{
    domain_hook_t *hook = ctx;
    const PyMemAllocatorEx *next = &hook->wrapped;
    if (block == NULL || !dhatc_hooks_active()) {
        next->free(next->ctx, block);
        return;
    }
    dhatc_in_hook = 1;
    /* Record before freeing: once freed, another thread may get the same
     * address and record it first. */
    dhatc_profile_record_free((uintptr_t)block);
    next->free(next->ctx, block);
    dhatc_in_hook = 0;
}

static bool ours_on_top(domain_hook_t *hook)
{
    PyMemAllocatorEx current;
    PyMem_GetAllocator(hook->domain, &current);
    return current.ctx == hook && current.malloc == hook_malloc;
}

void dhatc_hooks_install(void)
{
    for (int i = 0; i < 3; i++) {
        domain_hook_t *hook = &domain_hooks[i];
        if (hook->installed && ours_on_top(hook)) {
            continue;
        }
        if (hook->installed) {
            /* Still wrapped by someone else: ours is in their chain already
             * and becomes live again when the profile starts. */
            continue;
        }
        PyMem_GetAllocator(hook->domain, &hook->wrapped);
        PyMemAllocatorEx ours = {hook, hook_malloc, hook_calloc, hook_realloc, hook_free};
        PyMem_SetAllocator(hook->domain, &ours);
        hook->installed = true;
    }
}

void dhatc_hooks_uninstall(void)
{
    for (int i = 0; i < 3; i++) {
        domain_hook_t *hook = &domain_hooks[i];
        if (hook->installed && ours_on_top(hook)) {
            PyMem_SetAllocator(hook->domain, &hook->wrapped);
            hook->installed = false;
        }
    }
}
