/* Mixed stacks (Profiler(native=True)): the calling thread's native stack,
 * unwound by dhatc._unwinder, with each C frame of the evaluation loop
 * replaced by the Python frames it runs (frames.h), innermost first.
 *
 * What a stack keeps: the native frames of every object but dhatc's own
 * (the engine, the unwinder, the preload library: the allocator hook on top)
 * and, unless configured to keep them, the interpreter's (call dispatch,
 * object internals: the program reads like a program, not like CPython);
 * the Python frames as without native frames, the root frame last.
 *
 * Frames are instruction addresses; they are named when the file is written
 * (dhatpy/_native_frames.py), from the object each address was found in when
 * first seen, so objects unloaded meanwhile are still named (objects()).  A
 * native frame at address NULL stands for the C frames an unwinding that
 * stopped early did not reach, above the Python frames it did not reach. */
#ifndef DHATC_NATIVESTACK_H
#define DHATC_NATIVESTACK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

#include "stack.h"
#include "unwinder_api.h"

/* An address range [start, end). */
typedef struct {
    uintptr_t start, end;
} dhatc_range_t;

enum { DHATC_NATIVESTACK_MAX_EVAL_RANGES = 8 };

typedef struct {
    const dhatc_unwinder_api_t *unwinder;
    /* _PyEval_EvalFrameDefault and the parts the compiler split off. */
    dhatc_range_t eval[DHATC_NATIVESTACK_MAX_EVAL_RANGES];
    uint32_t eval_count;
    bool interpreter_frames; /* keep the interpreter's own C frames */
    const void *preload;     /* a function of the preload library, if it is there */
} dhatc_nativestack_config_t;

/* Called by the session while no profile runs, with the GIL.  Finds the
 * interpreter's object and dhatc's own; -1 with a Python error set if they
 * cannot be found. */
int dhatc_nativestack_configure(const dhatc_nativestack_config_t *config);

/* The calling thread's mixed stack, at most `limit` frames, into `out`;
 * returns the depth and sets *hash.  `tstate` as for dhatc_frames_capture. */
uint32_t dhatc_nativestack_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                                   uint64_t *hash, dhatc_kind_t kind);

/* The objects the addresses of the profile's native frames were found in:
 * `count` entries, each an address range, the object's file and its load
 * bias.  Valid until the next configure(). */
typedef struct {
    uintptr_t start, end, bias;
    const char *path;
} dhatc_native_object_t;

const dhatc_native_object_t *dhatc_nativestack_objects(uint32_t *count);

/* fork(2), in the child: the lock of the objects' table is free (a parent
 * thread may have held it). */
void dhatc_nativestack_after_fork_child(void);

/* The object holding the interpreter (the executable or libpython): its file
 * and load bias, for finding the evaluation loop's parts in it.  -1 with a
 * Python error set if it cannot be found. */
int dhatc_nativestack_interpreter_object(const char **path, uintptr_t *bias);

#endif
