/* The PyMem allocator hooks for the raw, mem and object domains: they wrap
 * whatever allocators are installed and report every call to record.h. */
#ifndef DHATC_HOOKS_H
#define DHATC_HOOKS_H

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

#endif
