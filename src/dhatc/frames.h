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

/* The frames a capture walked, as the stack cache (below) compares them:
 * each frame's address and what places it (see frames.c). */
enum { DHATC_FRAMES_CACHE_DEPTH = 16 };

typedef struct {
    const void *frame;
    uintptr_t position;
#if PY_VERSION_HEX < 0x030B0000
    intptr_t extra;
#endif
} dhatc_raw_frame_t;

typedef struct {
    uint32_t count;    /* frames walked, skipped ones included */
    bool ended;        /* the walk ran to the end of the chain */
    bool too_deep;     /* more than DHATC_FRAMES_CACHE_DEPTH: not cacheable */
    dhatc_raw_frame_t frames[DHATC_FRAMES_CACHE_DEPTH];
} dhatc_frames_walk_t;

/* Captures at most `limit` frames of `tstate`'s stack into `out`, innermost
 * first; returns the depth and sets *hash.  `tstate` may be NULL (a thread
 * with no Python state); it must belong to the profile's interpreter.  If
 * `walk` is not NULL it receives the frames walked, for cache_pp(). */
uint32_t dhatc_frames_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                              uint64_t *hash, dhatc_kind_t kind, dhatc_frames_walk_t *walk);

/* A thread's Python frames one call of the evaluation loop at a time, for
 * stacks mixed with native frames (nativestack.h): each C frame of
 * _PyEval_EvalFrameDefault runs a run of Python frames (one up to 3.10; from
 * 3.11 the ones it entered without a C call in between), innermost first. */
typedef struct {
    const void *next;  /* the next frame of the chain; NULL: no Python code is left */
    bool at_root;      /* the frame that started the profiler was given */
} dhatc_frames_cursor_t;

void dhatc_frames_cursor_start(dhatc_frames_cursor_t *cursor, PyThreadState *tstate);

/* The address of the shim the innermost call of the evaluation loop keeps
 * on its C stack (3.12+), below the calling thread's current frames; NULL
 * before 3.12 (no such shim) or if there is none.  Lets the unwinder find
 * which C function is the evaluation loop where no symbol says so. */
const void *dhatc_frames_first_call_boundary(void);

/* Writes the Python frames of the innermost call of the evaluation loop not
 * yet given (at most `room`; the rest of that call is skipped) and returns
 * how many.  After the root frame, at_root is set and nothing more comes. */
uint32_t dhatc_frames_next_call(dhatc_frames_cursor_t *cursor, dhatc_frame_t *out, uint32_t room);

/* A per-thread cache of the program points of recent stacks, so that a
 * stack seen a moment ago costs a walk comparing frame addresses and
 * instruction pointers instead of a capture, a hash and a table lookup (a
 * loop allocating at a few places hits it nearly always).  Entries belong to
 * one profile (`generation`, profile.h) and one allocator kind.
 *
 * cached_pp(): whether `tstate`'s stack is one the cache knows, and its
 * program point.  cache_pp(): remembers that the stack a capture walked is
 * program point `pp` -- only once every code object in it is
 * kept alive (codetable.h), or an address could come back as another
 * function's.  Both for the calling thread's own stack, of the profile's
 * interpreter; neither allocates from the hooked allocators.  A thread whose
 * lookups rarely hit stops looking for a while (OFF). */
typedef enum {
    DHATC_CACHE_HIT,  /* *pp is the stack's program point */
    DHATC_CACHE_MISS, /* capture with a walk, and give it to cache_pp() */
    DHATC_CACHE_OFF,  /* capture without one: the cache is not used now */
} dhatc_cache_answer_t;

dhatc_cache_answer_t dhatc_frames_cached_pp(PyThreadState *tstate, dhatc_kind_t kind,
                                            uint64_t generation, uint32_t *pp);
void dhatc_frames_cache_pp(const dhatc_frames_walk_t *walk, dhatc_kind_t kind,
                           uint64_t generation, uint32_t pp);

/* dhatc_canonicalize_fn: (code, instruction offset) -> (the code object
 * standing for every one with its file and name, line); other frames are
 * kept as they are.  Reads only the code objects' immutable fields, so it is
 * safe without the GIL (codetable.h). */
bool dhatc_frames_canonicalize(const dhatc_frame_t *captured, uint32_t depth, dhatc_frame_t *out);

#endif
