/* The profile: program points, their DHAT figures, the live blocks and the
 * global counters.  Pure C, no Python.h, so the preload library could link it.
 *
 * Lifecycle (one profile at a time, process-wide):
 *
 *     IDLE --start()--> RUNNING --stop()--> STOPPED --release()--> IDLE
 *                          |                   ^
 *                          +--(records)--------+ (figures readable while STOPPED)
 *
 * Every record_* call may come from any thread at any time; each takes the
 * engine lock and ignores the event unless a profile of the right mode is
 * RUNNING.  start/stop/release and the readers are called by the binding with
 * the GIL held and never concurrently with each other.
 *
 * Time is a logical clock: the number of allocations made so far in the
 * profile (reallocations included).  It costs nothing to read, and it makes
 * two runs of the same program give the same file. */
#ifndef DHATC_PROFILE_H
#define DHATC_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "stack.h"

#define DHATC_MAX_DEPTH 512

typedef enum {
    DHATC_MODE_NONE = 0,
    DHATC_MODE_HEAP = 1,
    DHATC_MODE_AD_HOC = 2,
} dhatc_mode_t;

/* Maps a captured stack (code, instruction offset) to the program point's
 * frames (code, line): stacks whose frames map alike are one program point.
 * Called under the engine lock when a stack is seen for the first time; must
 * not call the allocators the engine hooks.  False: out of memory (the event
 * is dropped). */
typedef bool (*dhatc_canonicalize_fn)(const dhatc_frame_t *captured, uint32_t depth,
                                      dhatc_frame_t *out);

typedef struct {
    uint64_t total_blocks, total_bytes;
    uint64_t curr_blocks, curr_bytes;
    uint64_t max_blocks, max_bytes;
} dhatc_stats_t;

typedef struct {
    uint32_t kind;
    uint32_t depth;
    const dhatc_frame_t *frames; /* (code, line), innermost first */
    uint64_t total_bytes, total_blocks; /* tb, tbk */
    uint64_t total_lifetime;            /* tl */
    uint64_t max_bytes, max_blocks;     /* mb, mbk */
    uint64_t gmax_bytes, gmax_blocks;   /* gb, gbk */
    uint64_t end_bytes, end_blocks;     /* eb, ebk */
} dhatc_pp_figures_t;

/* The mode of the running profile, DHATC_MODE_NONE when none runs.  A cheap
 * unlocked read for the hooks' fast path (an acquire: a hook that sees a
 * profile running also sees the configuration written before it started);
 * record_* re-check under the lock. */
dhatc_mode_t dhatc_profile_running(void);

bool dhatc_profile_start(dhatc_mode_t mode, dhatc_canonicalize_fn canonicalize);
void dhatc_profile_stop(void);
void dhatc_profile_release(void);

/* Records a new block at the program point of a captured stack.  Returns
 * that program point and sets *generation to the profile's (for the
 * per-thread stack cache, frames.h), or DHATC_NO_PP if nothing was recorded. */
uint32_t dhatc_profile_record_alloc(uintptr_t address, uint64_t size, dhatc_kind_t kind,
                                    const dhatc_frame_t *frames, uint32_t depth, uint64_t hash,
                                    uint64_t *generation);

/* Records a new block at program point `pp` of heap profile `generation`
 * (non-zero), known from the stack cache.  False, recording nothing, if that
 * profile is not the one running (the caller then records it with its
 * stack). */
bool dhatc_profile_record_alloc_at(uintptr_t address, uint64_t size, uint32_t pp,
                                   uint64_t generation);

/* The running heap profile's generation (profiles are counted from 1), 0
 * when no heap profile runs: an unlocked read (an acquire, as
 * dhatc_profile_running()) for the hooks' fast path and the stack cache,
 * confirmed under the lock by record_alloc_at(). */
uint64_t dhatc_profile_heap_generation(void);

#define DHATC_NO_PP UINT32_MAX
void dhatc_profile_record_free(uintptr_t address);

/* A reallocation is recorded in two steps around the real realloc, so that
 * the old address is out of the live map before realloc frees it: another
 * thread may get that address the moment it is free and record it first.
 * begin() is false when `old_address` is not a block of this profile
 * (allocated before it started): the caller then records the result as a new
 * allocation and does not call end().  end() takes the new address, or 0 if
 * the realloc failed (the old block is then put back). */
typedef struct {
    uint64_t generation; /* the profile the block belongs to */
    uintptr_t address;
    uint64_t size_and_pp;
} dhatc_realloc_ticket_t;

bool dhatc_profile_realloc_begin(uintptr_t old_address, dhatc_realloc_ticket_t *ticket);
void dhatc_profile_realloc_end(const dhatc_realloc_ticket_t *ticket, uintptr_t new_address,
                               uint64_t size);
void dhatc_profile_record_event(uint64_t weight, const dhatc_frame_t *frames, uint32_t depth,
                                uint64_t hash);

/* Readers: stats while running or stopped; the rest once stopped. */
dhatc_stats_t dhatc_profile_stats(void);
uint64_t dhatc_profile_time_of_peak(void);
uint64_t dhatc_profile_time_of_end(void);
uint64_t dhatc_profile_dropped(void);
/* Ad hoc weights whose sums would pass 2**64 - 1: the totals stop there. */
uint64_t dhatc_profile_saturated(void);
uint32_t dhatc_profile_pp_count(void);
void dhatc_profile_pp_figures(uint32_t pp, dhatc_pp_figures_t *out);

/* fork(2) handlers: the lock must not be inherited held, and the child does
 * not go on recording into the parent's profile. */
void dhatc_profile_after_fork_child(void);

#endif
