/* The PyMem allocator hooks for the raw, mem and object domains. */
#ifndef DHATC_HOOKS_H
#define DHATC_HOOKS_H

#include <stdbool.h>

/* Wraps whatever allocators are installed now (tracemalloc's, a debug
 * allocator, pymalloc).  If our hooks are still installed from an earlier
 * profile (someone wrapped them, so they could not be removed), they are
 * reused rather than stacked again. */
void dhatc_hooks_install(void);

/* Puts the previous allocators back in each domain where ours is still on
 * top.  Where another hook has wrapped ours, ours stays in the chain and
 * passes calls straight through while no profile runs. */
void dhatc_hooks_uninstall(void);

/* Takes references on the code objects of new program points.  Needs the GIL. */
void dhatc_hooks_retain_code(void);

#endif
