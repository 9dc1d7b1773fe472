#include "record.h"

#include "codetable.h"
#include "frames.h"
#include "nativestack.h"

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

__thread int dhatc_in_hook __attribute__((tls_model("initial-exec")));

/* Written by the session while no profile runs (see record.h). */
static dhatc_record_config_t config = {.frames_limit = 10};

void dhatc_record_configure(const dhatc_record_config_t *new_config)
{
    config = *new_config;
}

bool dhatc_record_thread_counts(void)
{
    return !config.one_thread_only || pthread_equal(pthread_self(), config.only_thread);
}

/* Whether the calling thread holds the GIL of the profile's interpreter: its
 * own thread state is the one running, and of that interpreter.  Not
 * PyGILState_Check(), which answers yes on every thread once a
 * subinterpreter has been created; and a subinterpreter with a GIL of its own
 * (3.12+) must never touch the profile's code objects. */
static bool holds_profile_gil(bool gil_held)
{
    PyThreadState *running = running_thread_state();
    return running != NULL && running->interp == config.interp &&
           (gil_held || running == PyGILState_GetThisThreadState());
}

/* Takes references on the code objects of new program points, if the caller
 * holds the profile's interpreter's GIL (`gil_held`: known to hold a GIL).
 * The check is inline: nearly every call finds nothing new. */
static __attribute__((noinline)) void retain_code_now(bool gil_held)
{
    if (holds_profile_gil(gil_held)) {
        dhatc_codetable_retain_new();
    }
}

static inline void retain_new_code(bool gil_held)
{
    if (__builtin_expect(dhatc_codetable_has_new(), 0)) {
        retain_code_now(gil_held);
    }
}

/* The thread state whose Python stack a block of the calling thread gets:
 * the running one when this thread is known to run it (from 3.12 it is this
 * thread's own, a thread-local, and right where a thread swapped states; up
 * to 3.11 it is the GIL holder's, this thread's when the caller holds the
 * GIL), else this thread's GILState one, else NULL (a thread Python does not
 * know). */
static PyThreadState *stack_owner(bool gil_held)
{
#if PY_VERSION_HEX >= 0x030C0000
    (void)gil_held;
    PyThreadState *running = running_thread_state();
#else
    PyThreadState *running = gil_held ? running_thread_state() : NULL;
#endif
    return running != NULL ? running : PyGILState_GetThisThreadState();
}

/* The stack of a block or an event in a thread running another interpreter:
 * one frame saying so (that interpreter's code objects die with it: the
 * profile never keeps them). */
static uint32_t other_interpreter(PyThreadState *tstate, dhatc_frame_t *frames, uint32_t limit,
                                  uint64_t *hash, dhatc_kind_t kind)
{
    uint32_t depth = 0;
    uint64_t h = DHATC_HASH_SEED;
    if (limit > 0) {
        frames[0] = (dhatc_frame_t){.code = NULL,
                                    .where = (int32_t)PyInterpreterState_GetID(tstate->interp),
                                    .kind = DHATC_FRAME_SUBINTERPRETER};
        h = dhatc_hash_step(h, &frames[0]);
        depth = 1;
    }
    *hash = dhatc_hash_finish(h, (uint32_t)kind, depth);
    return depth;
}

/* A block whose stack is not in the thread's cache: capture it, record it,
 * and remember its program point (if `to_cache`).  Out of line: the frame buffer is sized by
 * the limit (160 bytes for the default 10 frames rather than the 8 KiB the
 * maximum needs, since C threads may have small stacks). */
static __attribute__((noinline)) void record_with_stack(PyThreadState *tstate, bool own_interp,
                                                        bool to_cache, void *block, size_t size,
                                                        dhatc_kind_t kind, bool gil_held)
{
    const uint32_t limit = __atomic_load_n(&config.frames_limit, __ATOMIC_RELAXED);
    dhatc_frame_t frames[limit + 1]; /* + 1: never a zero-length array */
    uint64_t hash, generation = 0;
    dhatc_frames_walk_t walk;
    walk.count = 0; /* nothing to remember unless the capture below walks */
    uint32_t depth;
    if (!own_interp) {
        depth = other_interpreter(tstate, frames, limit, &hash, kind);
    } else if (config.native) {
        /* Not cached: two calls from one Python line can come through
         * different C code. */
        depth = dhatc_nativestack_capture(tstate, frames, limit, &hash, kind);
    } else {
        depth = dhatc_frames_capture(tstate, frames, limit, &hash, kind,
                                     to_cache ? &walk : NULL);
    }
    uint32_t pp = dhatc_profile_record_alloc((uintptr_t)block, size, kind, frames, depth, hash,
                                             &generation);
    /* A new program point's code objects are kept alive by a reference,
     * which needs the GIL; without it, the next hooked call that holds it. */
    retain_new_code(gil_held);
    if (pp != DHATC_NO_PP && own_interp && tstate != NULL && walk.count > 0 &&
        !dhatc_codetable_has_new()) {
        dhatc_frames_cache_pp(&walk, kind, generation, pp);
    }
}

void dhatc_record_block(void *block, size_t size, dhatc_kind_t kind, bool gil_held)
{
    const uint64_t generation = dhatc_profile_heap_generation();
    if (generation == 0) {
        return; /* the profile stopped since the hook looked */
    }
    PyThreadState *tstate = stack_owner(gil_held);
    bool own_interp = tstate == NULL || tstate->interp == config.interp;
    bool to_cache = false;
    if (own_interp && tstate != NULL && !config.native) {
        uint32_t pp;
        dhatc_cache_answer_t cached = dhatc_frames_cached_pp(tstate, kind, generation, &pp);
        if (cached == DHATC_CACHE_HIT &&
            dhatc_profile_record_alloc_at((uintptr_t)block, size, pp, generation)) {
            retain_new_code(gil_held);
            return;
        }
        to_cache = cached != DHATC_CACHE_OFF;
    }
    record_with_stack(tstate, own_interp, to_cache, block, size, kind, gil_held);
}

void dhatc_record_free(void *block, bool gil_held)
{
    dhatc_profile_record_free((uintptr_t)block);
    /* Before `block` (maybe a dying code object) is gone. */
    retain_new_code(gil_held);
}

bool dhatc_record_realloc_begin(void *old, dhatc_realloc_ticket_t *ticket)
{
    return old != NULL && dhatc_profile_realloc_begin((uintptr_t)old, ticket);
}

void dhatc_record_realloc_end(bool known, const dhatc_realloc_ticket_t *ticket, void *block,
                              size_t size, dhatc_kind_t kind, bool gil_held)
{
    if (known) {
        dhatc_profile_realloc_end(ticket, (uintptr_t)block, size); /* NULL: put back */
    } else if (block != NULL && dhatc_record_thread_counts()) {
        /* New, or a block from before the profile: a new block within. */
        dhatc_record_block(block, size, kind, gil_held);
    }
}

void dhatc_record_event(uint64_t weight)
{
    const uint32_t limit = __atomic_load_n(&config.frames_limit, __ATOMIC_RELAXED);
    dhatc_frame_t frames[limit + 1];
    uint64_t hash;
    PyThreadState *tstate = stack_owner(true);
    uint32_t depth;
    if (tstate != NULL && tstate->interp != config.interp) {
        depth = other_interpreter(tstate, frames, limit, &hash, DHATC_KIND_AD_HOC);
    } else if (config.native) {
        depth = dhatc_nativestack_capture(tstate, frames, limit, &hash, DHATC_KIND_AD_HOC);
    } else {
        depth = dhatc_frames_capture(tstate, frames, limit, &hash, DHATC_KIND_AD_HOC, NULL);
    }
    dhatc_profile_record_event(weight, frames, depth, hash);
    retain_new_code(true);
}
