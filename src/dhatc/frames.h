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

#include <stdbool.h>
#include <stdint.h>

#include "stack.h"

/* Remembers the frame `skip` levels above the current one of the calling
 * thread as the root: captures stop after it, dropping the common frames
 * below the place where profiling started. */
void dhatc_frames_set_root(int skip);
void dhatc_frames_clear_root(void);

/* Captures at most `limit` frames of `tstate`'s stack into `out`, innermost
 * first; returns the depth and sets *hash.  `tstate` may be NULL (a thread
 * with no Python state); it must belong to the profile's interpreter. */
uint32_t dhatc_frames_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                              uint64_t *hash, dhatc_kind_t kind);

/* dhatc_canonicalize_fn: (code, instruction offset) -> (the code object
 * standing for every one with its file and name, line); other frames are
 * kept as they are.  Reads only the code objects' immutable fields, so it is
 * safe without the GIL (codetable.h). */
bool dhatc_frames_canonicalize(const dhatc_frame_t *captured, uint32_t depth, dhatc_frame_t *out);

#endif
