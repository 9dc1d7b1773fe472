#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "hooks.h"

#include "frames.h"
#include "guard.h"
#include "native.h"
#include "profile.h"

__thread int dhatc_in_hook __attribute__((tls_model("initial-exec")));

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

/* A program point keeps its code objects alive until the file is written.
 * The reference is taken under the GIL, at the first hooked call that holds
 * it after the PP was made (at once for the mem and object domains; later
 * for a PP made by the raw domain or by C code without the GIL).  Until then
 * the code is alive because its frame is executing -- unless that frame has
 * returned and the code is being destroyed right now (its refcount is 0 and
 * this hook is one of the frees its destruction makes): that frame is then
 * left nameless rather than resurrected. */
static void take_code_reference(dhatc_frame_t *frames, uint32_t depth)
{
    for (uint32_t i = 0; i < depth; i++) {
        PyObject *code = (PyObject *)frames[i].code;
        if (code == NULL) {
            continue;
        }
        if (Py_REFCNT(code) <= 0) {
            frames[i].code = NULL;
            continue;
        }
        Py_INCREF(code);
    }
}

void dhatc_hooks_retain_code(void)
{
    dhatc_profile_visit_new_pps(take_code_reference);
}

/* The thread state running Python now, without checks: up to 3.11 the GIL
 * holder's (whichever thread that is), from 3.12 this thread's own (a
 * thread-local), NULL when none runs. */
static inline PyThreadState *running_thread_state(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

/* Whether the calling thread holds the GIL: its own thread state is the one
 * running.  Not PyGILState_Check(), which answers yes on every thread once
 * a subinterpreter has been created. */
static bool this_thread_holds_gil(void)
{
    PyThreadState *running = running_thread_state();
    return running != NULL && running == PyGILState_GetThisThreadState();
}

void dhatc_hooks_retain_code_if_gil(bool gil_held)
{
    if (dhatc_profile_has_new_pps() && (gil_held || this_thread_holds_gil())) {
        dhatc_hooks_retain_code();
    }
}

/* The thread state whose Python stack an allocation of the calling thread
 * belongs to: this thread's own, or NULL for a thread Python does not know.
 * Not PyThreadState_Get(): on 3.11 and earlier that is the GIL holder, and
 * the raw domain runs without the GIL.  From 3.12 the running thread state
 * is a thread-local, this thread's own when it runs Python (and right where
 * a thread swapped states), and is read first. */
static PyThreadState *this_thread(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyThreadState *running = running_thread_state();
    if (running != NULL) {
        return running;
    }
#endif
    return PyGILState_GetThisThreadState();
}

pthread_t dhatc_hooks_only_thread;
bool dhatc_hooks_one_thread_only;

void dhatc_hooks_record_new_block(void *block, size_t size, dhatc_kind_t kind, bool gil_held)
{
    /* Sized by the limit: 160 bytes for the default 10 frames rather than the
     * 8 KiB the maximum needs, since C threads may have small stacks. */
    const uint32_t limit = dhatc_frames_current_limit();
    dhatc_frame_t frames[limit + 1]; /* + 1: never a zero-length array */
    uint64_t hash;
    uint32_t depth = dhatc_frames_capture(this_thread(), frames, limit, &hash, kind);
    dhatc_profile_record_alloc((uintptr_t)block, size, kind, frames, depth, hash);
    /* A program point keeps its code objects alive until the file is
     * written.  Taking the references needs the GIL; the raw domain may not
     * have it, in which case the next hooked call that holds it does. */
    dhatc_hooks_retain_code_if_gil(gil_held);
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
        note_probe(hook);
        return next->realloc(next->ctx, old, size);
    }
    dhatc_in_hook = 1;
    dhatc_realloc_ticket_t ticket;
    bool known = old != NULL && dhatc_profile_realloc_begin((uintptr_t)old, &ticket);
    void *block = next->realloc(next->ctx, old, size);
    if (known) {
        dhatc_profile_realloc_end(&ticket, (uintptr_t)block, size); /* NULL: put back */
    } else if (block != NULL && dhatc_hooks_thread_counts()) {
        /* New, or a block from before the profile: a new block within. */
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
        note_probe(hook);
        next->free(next->ctx, block);
        return;
    }
    dhatc_in_hook = 1;
    /* Record before freeing: once freed, another thread may get the same
     * address and record it first. */
    dhatc_profile_record_free((uintptr_t)block);
    /* Before `block` (maybe a dying code object) is gone. */
    dhatc_hooks_retain_code_if_gil(hook->gil_held);
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
    /* malloc & co., when the process runs with the preload library. */
    dhatc_native_attach();
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
    dhatc_native_detach();
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
