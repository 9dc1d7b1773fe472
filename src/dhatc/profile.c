#include "profile.h"

#include <stdatomic.h>
#include <string.h>

#include "check.h"
#include "livemap.h"
#include "lock.h"
#include "rawmem.h"
#include "stacktable.h"

typedef struct {
    uint64_t total_bytes, total_blocks;
    uint64_t curr_bytes, curr_blocks;
    uint64_t max_bytes, max_blocks;
    /* Lazy t-gmax snapshot: the PP's live figures as they were at global
     * peak number `snapshot_peak`, taken the first time the PP changes after
     * that peak.  If it has not changed since, its current figures are the
     * ones at the peak.  O(1) per event, no rescans. */
    uint64_t snapshot_bytes, snapshot_blocks;
    uint64_t snapshot_peak;
    /* Lifetimes without a per-block time: the sum of lifetimes is the sum of
     * free times (the end time for live blocks) minus the sum of allocation
     * times, so each sum is kept and the live blocks are added at the end. */
    uint64_t allocation_times;
    uint64_t free_times;
    const dhatc_frame_t *frames;
    uint32_t depth;
    uint32_t kind;
} pp_t;

/* All state below is protected by `lock`, except `mode`, which is also read
 * without it by the hooks' fast path. */
static struct {
    dhatc_lock_t lock;
    _Atomic int mode;
    dhatc_canonicalize_fn canonicalize;
    dhatc_stacktable_t captured_stacks; /* (code, offset) stacks -> PP */
    dhatc_stacktable_t pp_stacks;       /* (code, line) stacks -> PP */
    pp_t *pps;
    uint32_t pp_count, pp_capacity;
    dhatc_livemap_t live;
    dhatc_stats_t stats;
    uint64_t peaks;     /* how many times a new global peak was reached */
    uint64_t peak_time; /* clock at the latest global peak (t-gmax) */
    uint64_t dropped;   /* events lost because the engine had no memory */
    uint64_t saturated; /* ad hoc events whose weight the totals could not hold */
    uint64_t generation; /* counts profiles, so a realloc ticket from an
                          * earlier one is never applied to this one */
    /* `generation` while a heap profile runs, else 0: the one word the
     * hooks' fast path reads, and the one compare under the lock that tells a
     * cached program point (frames.h) is of the running profile. */
    _Atomic uint64_t heap_generation;
    dhatc_frame_t canonical[DHATC_MAX_DEPTH];
} g = {.lock = DHATC_LOCK_INIT};

dhatc_mode_t dhatc_profile_running(void)
{
    return (dhatc_mode_t)atomic_load_explicit(&g.mode, memory_order_acquire);
}

/* Under the lock: a thread still in a hook (one that passed the unlocked mode
 * check just before a stop) must never see the tables half released. */
static void release_tables(void)
{
    dhatc_lock(&g.lock);
    dhatc_stacktable_release(&g.captured_stacks);
    dhatc_stacktable_release(&g.pp_stacks);
    dhatc_livemap_release(&g.live);
    dhatc_rawmem_free(g.pps, (size_t)g.pp_capacity * sizeof(pp_t));
    g.pps = NULL;
    g.pp_capacity = 0;
    g.pp_count = 0;
    dhatc_unlock(&g.lock);
}

bool dhatc_profile_start(dhatc_mode_t mode, dhatc_canonicalize_fn canonicalize)
{
    release_tables();
    dhatc_lock(&g.lock);
    memset(&g.stats, 0, sizeof g.stats);
    g.peaks = g.peak_time = g.dropped = g.saturated = 0;
    __atomic_store_n(&g.generation, g.generation + 1, __ATOMIC_RELAXED);
    g.canonicalize = canonicalize;
    g.pp_capacity = 1024;
    g.pps = dhatc_rawmem_alloc((size_t)g.pp_capacity * sizeof(pp_t));
    bool ready = g.pps != NULL && dhatc_stacktable_init(&g.captured_stacks) &&
                 dhatc_stacktable_init(&g.pp_stacks) &&
                 (mode != DHATC_MODE_HEAP || dhatc_livemap_init(&g.live));
    if (ready) {
        /* Published under the lock: a hook that takes it and sees the mode
         * also sees the tables; a release, for the hooks' unlocked read. */
        atomic_store_explicit(&g.heap_generation, mode == DHATC_MODE_HEAP ? g.generation : 0,
                              memory_order_release);
        atomic_store_explicit(&g.mode, mode, memory_order_release);
    }
    dhatc_unlock(&g.lock);
    if (!ready) {
        release_tables();
    }
    return ready;
}

void dhatc_profile_stop(void)
{
    dhatc_lock(&g.lock);
    atomic_store_explicit(&g.mode, DHATC_MODE_NONE, memory_order_relaxed);
    atomic_store_explicit(&g.heap_generation, 0, memory_order_relaxed);
    dhatc_unlock(&g.lock);
}

void dhatc_profile_release(void)
{
    release_tables();
}

/* ---- program points ---------------------------------------------------- */

static uint32_t new_pp_unlocked(uint32_t kind)
{
    if (g.pp_count > DHATC_BLOCK_MAX_PP) {
        return DHATC_NO_VALUE; /* no room in a live-map entry for its id */
    }
    if (g.pp_count == g.pp_capacity) {
        size_t old_size = (size_t)g.pp_capacity * sizeof(pp_t);
        pp_t *grown = dhatc_rawmem_resize(g.pps, old_size, 2 * old_size);
        if (grown == NULL) {
            return DHATC_NO_VALUE;
        }
        g.pps = grown;
        g.pp_capacity *= 2;
    }
    pp_t *pp = &g.pps[g.pp_count];
    memset(pp, 0, sizeof *pp);
    pp->kind = kind;
    pp->snapshot_peak = g.peaks;
    return g.pp_count++;
}

/* The PP of a captured stack.  The hot path is one lookup; the first time a
 * stack is seen its offsets become lines, and stacks that agree line by line
 * share one PP, so the figures of a PP are exact even when several
 * instructions of one line allocate. */
static uint32_t pp_of_stack_unlocked(uint64_t hash, uint32_t kind, const dhatc_frame_t *frames,
                                     uint32_t depth)
{
    uint32_t pp = dhatc_stacktable_find(&g.captured_stacks, hash, kind, frames, depth);
    if (pp != DHATC_NO_VALUE) {
        return pp;
    }
    if (!g.canonicalize(frames, depth, g.canonical)) {
        return DHATC_NO_VALUE;
    }
    uint64_t canonical_hash = DHATC_HASH_SEED;
    for (uint32_t i = 0; i < depth; i++) {
        canonical_hash = dhatc_hash_step(canonical_hash, &g.canonical[i]);
    }
    canonical_hash = dhatc_hash_finish(canonical_hash, kind, depth);
    pp = dhatc_stacktable_find(&g.pp_stacks, canonical_hash, kind, g.canonical, depth);
    if (pp == DHATC_NO_VALUE) {
        pp = new_pp_unlocked(kind);
        const dhatc_frame_t *stored;
        if (pp == DHATC_NO_VALUE ||
            !dhatc_stacktable_add(&g.pp_stacks, canonical_hash, kind, g.canonical, depth, pp,
                                  &stored)) {
            if (pp != DHATC_NO_VALUE) {
                g.pp_count = pp; /* not stored: unmade */
            }
            return DHATC_NO_VALUE;
        }
        g.pps[pp].frames = stored;
        g.pps[pp].depth = depth;
    }
    const dhatc_frame_t *ignored;
    if (!dhatc_stacktable_add(&g.captured_stacks, hash, kind, frames, depth, pp, &ignored)) {
        return DHATC_NO_VALUE;
    }
    return pp;
}

/* ---- figures ----------------------------------------------------------- */

/* Call before changing a PP's live figures. */
static inline void snapshot_if_first_change_since_peak(pp_t *pp)
{
    if (pp->snapshot_peak != g.peaks) {
        pp->snapshot_bytes = pp->curr_bytes;
        pp->snapshot_blocks = pp->curr_blocks;
        pp->snapshot_peak = g.peaks;
    }
}

/* `>=`: of several equal peaks the latest counts, as in Valgrind and dhat-rs. */
static inline void note_global_peak_unlocked(void)
{
    DHATC_CHECK(g.stats.curr_blocks <= g.stats.total_blocks);
    if (g.stats.curr_bytes >= g.stats.max_bytes) {
        g.stats.max_bytes = g.stats.curr_bytes;
        g.stats.max_blocks = g.stats.curr_blocks;
        g.peaks++;
        g.peak_time = g.stats.total_blocks;
    }
    DHATC_CHECK(g.stats.max_bytes >= g.stats.curr_bytes);
}

static inline void note_pp_peak(pp_t *pp)
{
    if (pp->curr_bytes >= pp->max_bytes) {
        pp->max_bytes = pp->curr_bytes;
        pp->max_blocks = pp->curr_blocks;
    }
    DHATC_CHECK(pp->curr_bytes <= pp->max_bytes && pp->curr_blocks <= pp->total_blocks);
}

static inline __attribute__((always_inline)) void forget_block_unlocked(const dhatc_block_t *block)
{
    pp_t *pp = &g.pps[dhatc_block_pp(block)];
    uint64_t size = dhatc_block_size(block);
    snapshot_if_first_change_since_peak(pp);
    /* Live counts never go below zero: a block is forgotten once. */
    DHATC_CHECK(pp->curr_blocks > 0 && pp->curr_bytes >= size);
    DHATC_CHECK(g.stats.curr_blocks > 0 && g.stats.curr_bytes >= size);
    pp->curr_blocks--;
    pp->curr_bytes -= size;
    pp->free_times += g.stats.total_blocks;
    g.stats.curr_blocks--;
    g.stats.curr_bytes -= size;
}

/* Under the lock, in a heap profile: a new block at program point `id`. */
static inline __attribute__((always_inline)) void add_block_unlocked(uintptr_t address,
                                                                 uint64_t size, uint32_t id)
{
    if (size > DHATC_BLOCK_MAX_SIZE) {
        g.dropped++;
        return;
    }
    dhatc_block_t block = dhatc_block(address, size, id);
    dhatc_block_t stale;
    bool had_stale;
    if (!dhatc_livemap_put(&g.live, &block, &stale, &had_stale)) {
        g.dropped++;
        return;
    }
    if (had_stale) {
        /* A free we did not see (or a concurrent realloc not recorded yet):
         * the address is in use again, so the old block is gone. */
        forget_block_unlocked(&stale);
    }
    pp_t *pp = &g.pps[id];
    snapshot_if_first_change_since_peak(pp);
    pp->total_blocks++;
    pp->total_bytes += size;
    pp->curr_blocks++;
    pp->curr_bytes += size;
    pp->allocation_times += g.stats.total_blocks + 1; /* the clock after this allocation */
    note_pp_peak(pp);
    g.stats.total_blocks++;
    g.stats.total_bytes += size;
    g.stats.curr_blocks++;
    g.stats.curr_bytes += size;
    note_global_peak_unlocked();
}

uint32_t dhatc_profile_record_alloc(uintptr_t address, uint64_t size, dhatc_kind_t kind,
                                    const dhatc_frame_t *frames, uint32_t depth, uint64_t hash,
                                    uint64_t *generation)
{
    uint32_t id = DHATC_NO_PP;
    dhatc_lock(&g.lock);
    if (atomic_load_explicit(&g.mode, memory_order_relaxed) == DHATC_MODE_HEAP) {
        id = size > DHATC_BLOCK_MAX_SIZE ? DHATC_NO_VALUE
                                         : pp_of_stack_unlocked(hash, (uint32_t)kind, frames, depth);
        if (id == DHATC_NO_VALUE) {
            g.dropped++;
        } else {
            add_block_unlocked(address, size, id);
        }
        *generation = g.generation;
    }
    dhatc_unlock(&g.lock);
    return id;
}

bool dhatc_profile_record_alloc_at(uintptr_t address, uint64_t size, uint32_t pp,
                                   uint64_t generation)
{
    dhatc_lock(&g.lock);
    bool current = atomic_load_explicit(&g.heap_generation, memory_order_relaxed) == generation;
    if (current) {
        add_block_unlocked(address, size, pp);
    }
    dhatc_unlock(&g.lock);
    return current;
}

uint64_t dhatc_profile_heap_generation(void)
{
    return atomic_load_explicit(&g.heap_generation, memory_order_acquire);
}

void dhatc_profile_record_free(uintptr_t address)
{
    dhatc_lock(&g.lock);
    dhatc_block_t block;
    if (atomic_load_explicit(&g.mode, memory_order_relaxed) == DHATC_MODE_HEAP &&
        dhatc_livemap_take(&g.live, address, &block)) {
        forget_block_unlocked(&block);
    }
    dhatc_unlock(&g.lock);
}

bool dhatc_profile_realloc_begin(uintptr_t old_address, dhatc_realloc_ticket_t *ticket)
{
    bool known = false;
    dhatc_lock(&g.lock);
    dhatc_block_t block;
    if (atomic_load_explicit(&g.mode, memory_order_relaxed) == DHATC_MODE_HEAP &&
        dhatc_livemap_take(&g.live, old_address, &block)) {
        *ticket = (dhatc_realloc_ticket_t){g.generation, block.address, block.size_and_pp};
        known = true;
    }
    dhatc_unlock(&g.lock);
    return known;
}

/* Puts `block` in the live map; if that fails the block can no longer be
 * followed, so it is accounted as freed now. */
static void keep_block_unlocked(const dhatc_block_t *block)
{
    dhatc_block_t stale;
    bool had_stale;
    if (!dhatc_livemap_put(&g.live, block, &stale, &had_stale)) {
        forget_block_unlocked(block);
        g.dropped++;
    } else if (had_stale) {
        forget_block_unlocked(&stale);
    }
}

/* As in dhat-rs: a reallocation of a block of this profile stays with the
 * block's PP, counts as one more block and its new size in the totals, and
 * changes the live bytes by the difference.  The block's lifetime runs from
 * its first allocation (as in Valgrind's DHAT). */
void dhatc_profile_realloc_end(const dhatc_realloc_ticket_t *ticket, uintptr_t new_address,
                               uint64_t size)
{
    dhatc_lock(&g.lock);
    if (atomic_load_explicit(&g.mode, memory_order_relaxed) != DHATC_MODE_HEAP ||
        ticket->generation != g.generation) {
        goto out;
    }
    dhatc_block_t block = {ticket->address, ticket->size_and_pp};
    if (new_address == 0) {
        keep_block_unlocked(&block); /* failed: the old block lives on */
        goto out;
    }
    if (size > DHATC_BLOCK_MAX_SIZE) {
        forget_block_unlocked(&block);
        g.dropped++;
        goto out;
    }
    uint64_t old_size = dhatc_block_size(&block);
    pp_t *pp = &g.pps[dhatc_block_pp(&block)];
    snapshot_if_first_change_since_peak(pp);
    DHATC_CHECK(pp->curr_bytes >= old_size && g.stats.curr_bytes >= old_size);
    pp->total_blocks++;
    pp->total_bytes += size;
    pp->curr_bytes = pp->curr_bytes - old_size + size;
    note_pp_peak(pp);
    g.stats.total_blocks++;
    g.stats.total_bytes += size;
    g.stats.curr_bytes = g.stats.curr_bytes - old_size + size;
    note_global_peak_unlocked();
    block = dhatc_block(new_address, size, dhatc_block_pp(&block));
    keep_block_unlocked(&block);
out:
    dhatc_unlock(&g.lock);
}

void dhatc_profile_record_event(uint64_t weight, const dhatc_frame_t *frames, uint32_t depth,
                                uint64_t hash)
{
    dhatc_lock(&g.lock);
    if (atomic_load_explicit(&g.mode, memory_order_relaxed) == DHATC_MODE_AD_HOC) {
        uint32_t id = pp_of_stack_unlocked(hash, DHATC_KIND_AD_HOC, frames, depth);
        if (id == DHATC_NO_VALUE) {
            g.dropped++;
        } else {
            /* Weights are the caller's: their sums may not fit.  They stop
             * at 2**64 - 1, and the profile says so, rather than wrap. */
            pp_t *pp = &g.pps[id];
            bool capped = __builtin_add_overflow(pp->total_bytes, weight, &pp->total_bytes);
            if (capped) {
                pp->total_bytes = UINT64_MAX;
            }
            if (__builtin_add_overflow(g.stats.total_bytes, weight, &g.stats.total_bytes)) {
                g.stats.total_bytes = UINT64_MAX;
                capped = true;
            }
            g.saturated += capped;
            pp->total_blocks++;
            g.stats.total_blocks++;
        }
    }
    dhatc_unlock(&g.lock);
}

/* ---- readers ----------------------------------------------------------- */

dhatc_stats_t dhatc_profile_stats(void)
{
    dhatc_lock(&g.lock);
    dhatc_stats_t stats = g.stats;
    dhatc_unlock(&g.lock);
    return stats;
}

uint64_t dhatc_profile_time_of_peak(void)
{
    return g.peak_time;
}

uint64_t dhatc_profile_time_of_end(void)
{
    return g.stats.total_blocks;
}

uint64_t dhatc_profile_dropped(void)
{
    return g.dropped;
}

uint64_t dhatc_profile_saturated(void)
{
    return g.saturated;
}

uint32_t dhatc_profile_pp_count(void)
{
    return g.pp_count;
}

void dhatc_profile_pp_figures(uint32_t id, dhatc_pp_figures_t *out)
{
    const pp_t *pp = &g.pps[id];
    uint64_t end = g.stats.total_blocks;
    bool changed_since_peak = pp->snapshot_peak == g.peaks;
    *out = (dhatc_pp_figures_t){
        .kind = pp->kind,
        .depth = pp->depth,
        .frames = pp->frames,
        .total_bytes = pp->total_bytes,
        .total_blocks = pp->total_blocks,
        .total_lifetime = pp->free_times + pp->curr_blocks * end - pp->allocation_times,
        .max_bytes = pp->max_bytes,
        .max_blocks = pp->max_blocks,
        .gmax_bytes = changed_since_peak ? pp->snapshot_bytes : pp->curr_bytes,
        .gmax_blocks = changed_since_peak ? pp->snapshot_blocks : pp->curr_blocks,
        .end_bytes = pp->curr_bytes,
        .end_blocks = pp->curr_blocks,
    };
}

/* ---- fork -------------------------------------------------------------- */

/* The child of a fork neither records into nor reports the parent's
 * profile.  No lock is held across fork() (other atfork handlers are unknown
 * code): a thread of the parent may have been inside the engine at that
 * moment, so in the child the lock is reset and the inherited tables, maybe
 * half updated, are left untouched -- forgotten, not freed. */
void dhatc_profile_after_fork_child(void)
{
    dhatc_lock_reset(&g.lock);
    atomic_store_explicit(&g.mode, DHATC_MODE_NONE, memory_order_relaxed);
    atomic_store_explicit(&g.heap_generation, 0, memory_order_relaxed);
    memset(&g.captured_stacks, 0, sizeof g.captured_stacks);
    memset(&g.pp_stacks, 0, sizeof g.pp_stacks);
    memset(&g.live, 0, sizeof g.live);
    g.pps = NULL;
    g.pp_count = g.pp_capacity = 0;
}
