/* The PyMem allocator hooks for the raw, mem and object domains. */
#ifndef DHATC_HOOKS_H
#define DHATC_HOOKS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "guard.h"
#include "profile.h"
#include "stack.h"

/* When set, only allocations and frees of dhatc_hooks_only_thread count
 * (a test's own thread, say).  Written only while no profile runs. */
extern bool dhatc_hooks_one_thread_only;
extern pthread_t dhatc_hooks_only_thread;

/* The fast-path test every hook makes before doing any work: not already
 * inside a hook on this thread, and a heap profile running. */
static inline bool dhatc_hooks_active(void)
{
    return !dhatc_in_hook && dhatc_profile_running() == DHATC_MODE_HEAP;
}

/* Whether new blocks of the calling thread count.  Frees count from every
 * thread: a block the measured thread made and another thread freed is gone. */
static inline bool dhatc_hooks_thread_counts(void)
{
    return !dhatc_hooks_one_thread_only ||
           pthread_equal(pthread_self(), dhatc_hooks_only_thread);
}

/* Records a new block made by the calling thread (under the guard), with its
 * Python stack.  `gil_held`: whether the caller is known to hold the GIL. */
void dhatc_hooks_record_new_block(void *block, size_t size, dhatc_kind_t kind, bool gil_held);

/* Wraps whatever allocators are installed now (tracemalloc's, a debug
 * allocator, pymalloc).  If our hooks from an earlier profile are still in a
 * domain's chain (someone wrapped them, so they could not be removed), they
 * are reused rather than stacked again.  -1 with a Python error set if no
 * hook context is left.  Needs the GIL. */
int dhatc_hooks_install(void);

/* Domains (bit 1 << domain) where calls no longer reach our hooks because
 * another hook replaced them (tracemalloc.stop() after dhatc started).
 * Needs the GIL. */
int dhatc_hooks_lost(void);

/* Puts the previous allocators back in each domain where ours is still on
 * top.  Where another hook has wrapped ours, ours stays in the chain and
 * passes calls straight through while no profile runs. */
void dhatc_hooks_uninstall(void);

/* Takes references on the code objects of new program points.  Needs the GIL. */
void dhatc_hooks_retain_code(void);
/* The same, when there are new program points and this thread holds the GIL
 * (`gil_held`: the caller knows it does; otherwise it is checked). */
void dhatc_hooks_retain_code_if_gil(bool gil_held);

#endif
