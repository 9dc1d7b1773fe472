/* Capturing a thread's Python stack inside an allocator hook.
 *
 * Walks the interpreter's own frame structs (their layout differs between
 * 3.9/3.10, 3.11/3.12 and 3.13): the public frame API creates frame objects on
 * 3.11+, which would allocate inside the hook.  Records (code object,
 * instruction offset in bytes) pairs only; lines are resolved later, once per
 * distinct stack (frames_canonicalize). */
#ifndef DHATC_FRAMES_H
#define DHATC_FRAMES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "stack.h"

/* How many frames a capture keeps (the profiler's trim_backtraces). */
extern uint32_t dhatc_frames_limit;

/* Remembers the frame `skip` levels above the current one of the calling
 * thread as the root: captures stop after it, dropping the common frames
 * below the place where profiling started. */
void dhatc_frames_set_root(int skip);
void dhatc_frames_clear_root(void);

/* Captures at most `limit` frames of `tstate`'s stack into `out`, innermost
 * first; returns the depth and sets *hash.  `tstate` may be NULL (a thread
 * with no Python state). */
uint32_t dhatc_frames_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                              uint64_t *hash, dhatc_kind_t kind);

/* The current limit, read once per capture (a profile starting on another
 * thread may change it). */
static inline uint32_t dhatc_frames_current_limit(void)
{
    return __atomic_load_n(&dhatc_frames_limit, __ATOMIC_RELAXED);
}

/* dhatc_canonicalize_fn: instruction offsets -> line numbers.  Reads only the
 * code objects' immutable line tables, so it is safe without the GIL. */
void dhatc_frames_canonicalize(const dhatc_frame_t *captured, uint32_t depth, dhatc_frame_t *out);

#endif
