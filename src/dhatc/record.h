/* Recording: the one service every entry point (the PyMem hooks, the preload
 * library's callbacks, ad_hoc_event) uses to put a block, a free or an event
 * into the running profile with the calling thread's stack.
 *
 * It decides what counts (the thread filter), whose stack a block gets (this
 * thread's own Python frames, those of the profile's interpreter only), and
 * keeps the profile's code objects alive (codetable.h) whenever a call holds
 * the GIL.  Callers set the reentrancy guard (guard.h) around their calls,
 * so that nothing recording allocates is recorded.
 *
 * Its configuration is written by the session (session.h) only while no
 * profile runs; the hooks read it after seeing a profile run (an acquire,
 * profile.h), so they see it whole. */
#ifndef DHATC_RECORD_H
#define DHATC_RECORD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "guard.h"
#include "profile.h"
#include "stack.h"

typedef struct {
    uint32_t frames_limit;       /* frames kept per stack (trim_backtraces) */
    bool native;                 /* mixed native and Python stacks (nativestack.h) */
    bool one_thread_only;        /* only `only_thread`'s new blocks count */
    pthread_t only_thread;
    PyInterpreterState *interp;  /* whose Python frames are recorded */
} dhatc_record_config_t;

/* Written by the session while no profile runs. */
void dhatc_record_configure(const dhatc_record_config_t *config);

/* The fast-path test every hook makes before doing any work: not already
 * inside a hook on this thread, and a heap profile running. */
static inline bool dhatc_record_heap_active(void)
{
    return !dhatc_in_hook && dhatc_profile_heap_generation() != 0;
}

/* Whether new blocks of the calling thread count.  Frees count from every
 * thread: a block the measured thread made and another thread freed is gone. */
bool dhatc_record_thread_counts(void);

/* A new block of the calling thread, with its stack.  `gil_held`: the caller
 * is known to hold the GIL (the mem and object domains); otherwise it may not
 * (the raw domain, C code calling malloc from any thread). */
void dhatc_record_block(void *block, size_t size, dhatc_kind_t kind, bool gil_held);

/* A block about to be freed (before the real free: the address may be
 * reused by another thread the moment it is). */
void dhatc_record_free(void *block, bool gil_held);

/* A reallocation, around the real realloc (profile.h explains why in two
 * steps).  end() takes what begin() returned; a block that was not the
 * profile's (allocated before it started) counts as a new one. */
bool dhatc_record_realloc_begin(void *old, dhatc_realloc_ticket_t *ticket);
void dhatc_record_realloc_end(bool known, const dhatc_realloc_ticket_t *ticket, void *block,
                              size_t size, dhatc_kind_t kind, bool gil_held);

/* An ad hoc event of `weight` units at the caller's stack.  Needs the GIL. */
void dhatc_record_event(uint64_t weight);

#endif
