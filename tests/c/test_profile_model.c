/* Model check of the engine (profile.c and its tables), without Python.
 *
 * Random allocations, frees and reallocations over a few hundred stacks are
 * fed both to the engine and to a naive model that does what Valgrind and
 * dhat-rs do (rescan every program point at each new global peak).  Every
 * figure of every program point must agree.  A second part records from
 * several threads at once and checks the totals.  Built and run by
 * tests/test_engine_c.py, with AddressSanitizer and UBSan. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "livemap.h"
#include "profile.h"

/* What record_alloc reports of the profile (the stack cache's key): unused. */
static uint64_t generation;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* Captured stacks: `where` is an "instruction offset"; two offsets map to one
 * "line", so distinct captured stacks share program points. */
static bool canonicalize(const dhatc_frame_t *captured, uint32_t depth, dhatc_frame_t *out)
{
    for (uint32_t i = 0; i < depth; i++) {
        out[i] = (dhatc_frame_t){.code = captured[i].code, .where = captured[i].where / 2};
    }
    return true;
}

enum { STACKS = 5000, DEPTH = 3, MAX_LIVE = 60000, OPS = 400000 };

static dhatc_frame_t stacks[STACKS][DEPTH];
static uint64_t stack_hash[STACKS];
static char codes[8]; /* distinct addresses standing for code objects */

typedef struct {
    uint64_t tb, tbk, tl, mb, mbk, gb, gbk, cb, cbk;
} model_pp_t;

typedef struct {
    uintptr_t address;
    uint64_t size;
    uint64_t born;
    int pp;
} model_block_t;

static model_pp_t model[STACKS / 2];
static model_block_t live[MAX_LIVE];
static int live_count;
static uint64_t clock_now, curr_bytes, curr_blocks, max_bytes, max_blocks, peak_time;
static uint64_t total_bytes;

static int pp_of_stack(int s)
{
    return s / 2; /* stacks 2k and 2k+1 differ only in offset parity */
}

static void model_peak_check(void)
{
    if (curr_bytes >= max_bytes) {
        max_bytes = curr_bytes;
        max_blocks = curr_blocks;
        peak_time = clock_now;
        for (int i = 0; i < STACKS / 2; i++) {
            model[i].gb = model[i].cb;
            model[i].gbk = model[i].cbk;
        }
    }
}

static void model_pp_max(model_pp_t *pp)
{
    if (pp->cb >= pp->mb) {
        pp->mb = pp->cb;
        pp->mbk = pp->cbk;
    }
}

static uintptr_t next_address = 0x10000;

static void do_alloc(int s, uint64_t size)
{
    uintptr_t address = next_address;
    next_address += 16 * (1 + (size / 16)); /* never reused: the model keys by index */
    dhatc_profile_record_alloc(address, size, DHATC_KIND_MALLOC, stacks[s], DEPTH, stack_hash[s], &generation);
    clock_now++;
    total_bytes += size;
    model_pp_t *pp = &model[pp_of_stack(s)];
    pp->tb += size;
    pp->tbk++;
    pp->cb += size;
    pp->cbk++;
    model_pp_max(pp);
    curr_bytes += size;
    curr_blocks++;
    live[live_count++] = (model_block_t){address, size, clock_now, pp_of_stack(s)};
    model_peak_check();
}

static void do_free(int index)
{
    model_block_t b = live[index];
    live[index] = live[--live_count];
    dhatc_profile_record_free(b.address);
    model_pp_t *pp = &model[b.pp];
    pp->cb -= b.size;
    pp->cbk--;
    pp->tl += clock_now - b.born;
    curr_bytes -= b.size;
    curr_blocks--;
}

static void do_realloc(int index, uint64_t size)
{
    model_block_t *b = &live[index];
    uintptr_t moved = (rand() & 1) ? next_address : b->address;
    if (moved == next_address) {
        next_address += 16 * (1 + (size / 16));
    }
    dhatc_realloc_ticket_t ticket;
    CHECK(dhatc_profile_realloc_begin(b->address, &ticket));
    if (rand() % 8 == 0) {
        /* A failed realloc puts the block back, unchanged. */
        dhatc_profile_realloc_end(&ticket, 0, size);
        CHECK(dhatc_profile_realloc_begin(b->address, &ticket));
    }
    dhatc_profile_realloc_end(&ticket, moved, size);
    clock_now++;
    total_bytes += size;
    model_pp_t *pp = &model[b->pp];
    pp->tb += size;
    pp->tbk++;
    pp->cb = pp->cb - b->size + size;
    model_pp_max(pp);
    curr_bytes = curr_bytes - b->size + size;
    b->address = moved;
    b->size = size;
    model_peak_check();
}

static void model_check(void)
{
    srand(12345);
    for (int s = 0; s < STACKS; s++) {
        uint64_t h = DHATC_HASH_SEED;
        for (int d = 0; d < DEPTH; d++) {
            /* Stacks 2k and 2k+1: same code, offsets 2n and 2n+1, so one "line". */
            int k = s / 2;
            stacks[s][d] = (dhatc_frame_t){.code = &codes[(k + d) % 8],
                                           .where = (int32_t)((k * 10 + d * 1000000) * 2 + s % 2)};
            h = dhatc_hash_step(h, &stacks[s][d]);
        }
        stack_hash[s] = dhatc_hash_finish(h, DHATC_KIND_MALLOC, DEPTH);
    }
    CHECK(dhatc_profile_start(DHATC_MODE_HEAP, canonicalize));
    /* Phases: grow past the live map's first resize, churn, shrink. */
    for (int op = 0; op < OPS; op++) {
        int r = rand() % 100;
        int grow_phase = op < OPS / 4;
        int shrink_phase = op > (OPS * 3) / 4;
        if (live_count < MAX_LIVE && (live_count == 0 || r < (grow_phase ? 80 : shrink_phase ? 20 : 45))) {
            uint64_t size = (uint64_t)(rand() % 4) == 0 ? (uint64_t)(rand() % 100000) : (uint64_t)(rand() % 200);
            do_alloc(rand() % STACKS, size);
        } else if (r < 90 || live_count == 0) {
            if (live_count > 0) {
                do_free(rand() % live_count);
            }
        } else {
            do_realloc(rand() % live_count, (uint64_t)(rand() % 3000));
        }
    }
    dhatc_profile_stop();

    dhatc_stats_t stats = dhatc_profile_stats();
    CHECK(stats.total_blocks == clock_now);
    CHECK(stats.total_bytes == total_bytes);
    CHECK(stats.curr_blocks == curr_blocks && stats.curr_bytes == curr_bytes);
    CHECK(stats.max_blocks == max_blocks && stats.max_bytes == max_bytes);
    CHECK(dhatc_profile_time_of_peak() == peak_time);
    CHECK(dhatc_profile_time_of_end() == clock_now);
    CHECK(dhatc_profile_dropped() == 0);
    CHECK(dhatc_profile_pp_count() == STACKS / 2);

    /* Blocks still live count to the end. */
    for (int i = 0; i < live_count; i++) {
        model[live[i].pp].tl += clock_now - live[i].born;
    }
    /* Engine PPs are in first-seen order: match them by their frames. */
    int matched = 0;
    for (uint32_t id = 0; id < dhatc_profile_pp_count(); id++) {
        dhatc_pp_figures_t f;
        dhatc_profile_pp_figures(id, &f);
        CHECK(f.depth == DEPTH);
        int k = (f.frames[0].where / 10);
        CHECK(k >= 0 && k < STACKS / 2);
        model_pp_t *m = &model[k];
        CHECK(f.total_bytes == m->tb && f.total_blocks == m->tbk);
        CHECK(f.total_lifetime == m->tl);
        CHECK(f.max_bytes == m->mb && f.max_blocks == m->mbk);
        CHECK(f.gmax_bytes == m->gb && f.gmax_blocks == m->gbk);
        CHECK(f.end_bytes == m->cb && f.end_blocks == m->cbk);
        matched++;
    }
    CHECK(matched == STACKS / 2);
    dhatc_profile_release();
    printf("model: %d ops, %llu blocks, peak %llu bytes: all figures agree\n", OPS,
           (unsigned long long)clock_now, (unsigned long long)max_bytes);
}

/* ---- threads ------------------------------------------------------------ */

/* Threads recording at once.  Besides their own blocks, thread 1 hands
 * blocks to thread 2, which frees them: if the lock let the two in together,
 * the live map and the figures would break.  Several profiles in a row. */
enum { THREADS = 4, PER_THREAD = 50000, HANDED = 1 << 14, PROFILES = 4 };

static _Atomic uintptr_t handed[HANDED];
static atomic_uint handed_count, freed_count;

static void *thread_body(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    bool owner = id == 1; /* the one that hands blocks over */
    uintptr_t base = id * 0x10000000u;
    dhatc_frame_t frame = {.code = &codes[(int)id], .where = 2};
    uint64_t h = dhatc_hash_finish(dhatc_hash_step(DHATC_HASH_SEED, &frame), DHATC_KIND_MALLOC, 1);
    for (uintptr_t i = 0; i < PER_THREAD; i++) {
        dhatc_profile_record_alloc(base + 16 * i, 32, DHATC_KIND_MALLOC, &frame, 1, h, &generation);
        if (i % 2 == 0) {
            dhatc_profile_record_free(base + 16 * i);
        }
        if (owner && i < HANDED) { /* a block for the guest below to free */
            uintptr_t address = 0x70000000u + 16 * i;
            dhatc_profile_record_alloc(address, 48, DHATC_KIND_MALLOC, &frame, 1, h,
                                       &generation);
            atomic_store(&handed[i], address);
            atomic_fetch_add(&handed_count, 1);
        }
        if (id == 2) { /* the guest that frees what the owner handed over */
            unsigned next = atomic_load(&freed_count);
            if (next < atomic_load(&handed_count)) {
                dhatc_profile_record_free(atomic_load(&handed[next]));
                atomic_store(&freed_count, next + 1);
            }
        }
    }
    if (id == 2) {
        while (atomic_load(&freed_count) < HANDED) {
            unsigned next = atomic_load(&freed_count);
            if (next < atomic_load(&handed_count)) {
                dhatc_profile_record_free(atomic_load(&handed[next]));
                atomic_store(&freed_count, next + 1);
            }
        }
    }
    return NULL;
}

static void thread_check(void)
{
    for (int round = 0; round < PROFILES; round++) {
        atomic_store(&handed_count, 0);
        atomic_store(&freed_count, 0);
        CHECK(dhatc_profile_start(DHATC_MODE_HEAP, canonicalize));
        pthread_t threads[THREADS];
        for (uintptr_t t = 0; t < THREADS; t++) {
            CHECK(pthread_create(&threads[t], NULL, thread_body, (void *)(t + 1)) == 0);
        }
        for (int t = 0; t < THREADS; t++) {
            pthread_join(threads[t], NULL);
        }
        dhatc_profile_stop();
        dhatc_stats_t s = dhatc_profile_stats();
        CHECK(s.total_blocks == THREADS * PER_THREAD + HANDED);
        CHECK(s.total_bytes == 32ull * THREADS * PER_THREAD + 48ull * HANDED);
        CHECK(s.curr_blocks == THREADS * PER_THREAD / 2);
        CHECK(s.curr_bytes == 32ull * THREADS * PER_THREAD / 2);
        CHECK(dhatc_profile_pp_count() == THREADS);
        dhatc_profile_release();
    }
    printf("threads: %d x %d allocations recorded exactly\n", THREADS, PER_THREAD);
}

/* ---- ad hoc ------------------------------------------------------------- */

static void ad_hoc_check(void)
{
    CHECK(dhatc_profile_start(DHATC_MODE_AD_HOC, canonicalize));
    dhatc_frame_t frame = {.code = &codes[0], .where = 4};
    uint64_t h = dhatc_hash_finish(dhatc_hash_step(DHATC_HASH_SEED, &frame), DHATC_KIND_AD_HOC, 1);
    uint64_t units = 0;
    for (uint64_t w = 0; w < 11; w++) {
        dhatc_profile_record_event(w * 2 + 3, &frame, 1, h);
        units += w * 2 + 3;
    }
    /* Heap events are ignored in ad hoc mode. */
    dhatc_profile_record_alloc(0x1000, 10, DHATC_KIND_MALLOC, &frame, 1, h, &generation);
    dhatc_profile_stop();
    dhatc_stats_t s = dhatc_profile_stats();
    CHECK(s.total_blocks == 11 && s.total_bytes == units && s.curr_blocks == 0);
    dhatc_profile_release();
    printf("ad hoc: 11 events, %llu units\n", (unsigned long long)units);
}

/* ---- live map ------------------------------------------------------------ */

/* Random puts, takes and misses over a universe of addresses mixing dense
 * 16-byte neighbours, page-aligned blocks and far-apart ones, checked against
 * a plain array; the Robin Hood invariant and backward-shift deletion must
 * keep every present address findable and every absent one absent. */
enum { UNIVERSE = 1 << 18 };
static uint64_t present_size[UNIVERSE];
static uint32_t present_pp[UNIVERSE];

/* Addresses of every kind the live map routes: 16-byte aligned ones go to
 * its shadow (dense, page-aligned, and far apart so that many leaves and
 * middle tables are made), unaligned and very high ones to its hash table. */
static uintptr_t address_of(uint32_t k)
{
    switch (k % 5) {
    case 0: return 0x7f0000000000u + 16u * (uintptr_t)k;              /* dense */
    case 1: return 0x7e0000000000u + 4096u * (uintptr_t)k;            /* page-aligned */
    case 2: return 0x100000000u + ((uintptr_t)k << 21) + 16u * (k & 7); /* far apart */
    case 3: return 0x7d0000000000u + 16u * (uintptr_t)k + 8u;         /* 8-byte aligned */
    default: return (uintptr_t)0xff000000000000u + 16u * (uintptr_t)k; /* above 48 bits */
    }
}

static void livemap_check(void)
{
    dhatc_livemap_t map;
    CHECK(dhatc_livemap_init(&map));
    srand(777);
    size_t count = 0;
    for (int op = 0; op < 3000000; op++) {
        uint32_t k = (uint32_t)rand() % UNIVERSE;
        int r = rand() % 10;
        dhatc_block_t found, old;
        bool had;
        if (r < (op < 1500000 ? 6 : 3)) {
            /* Sizes and program points on both sides of what a shadow slot
             * holds (below 4 KiB, below 2**19), changing from one block at
             * an address to the next. */
            uint64_t size = ((uint64_t)k % 5000 + 1) << (rand() % 4 == 0 ? 10 : 0);
            uint32_t pp = rand() % 8 == 0 ? (1u << 19) + (k & 0xFFFF) : k & 0xFFFF;
            dhatc_block_t b = dhatc_block(address_of(k), size, pp);
            CHECK(dhatc_livemap_put(&map, &b, &old, &had));
            CHECK(had == (present_size[k] != 0));
            if (had) {
                CHECK(dhatc_block_size(&old) == present_size[k]);
                CHECK(dhatc_block_pp(&old) == present_pp[k]);
                CHECK(old.address == address_of(k));
            } else {
                count++;
            }
            present_size[k] = size;
            present_pp[k] = pp;
        } else {
            bool took = dhatc_livemap_take(&map, address_of(k), &found);
            CHECK(took == (present_size[k] != 0));
            if (took) {
                CHECK(dhatc_block_size(&found) == present_size[k]);
                CHECK(dhatc_block_pp(&found) == present_pp[k]);
                CHECK(found.address == address_of(k));
                present_size[k] = 0;
                count--;
            }
        }
        CHECK(map.count == count);
    }
    for (uint32_t k = 0; k < UNIVERSE; k++) {
        dhatc_block_t found;
        CHECK(dhatc_livemap_take(&map, address_of(k), &found) == (present_size[k] != 0));
    }
    CHECK(map.count == 0);
    dhatc_livemap_release(&map);
    printf("livemap: 3000000 random operations agree with the reference\n");
}

/* Resident memory of this process, from /proc/self/statm. */
static size_t resident_bytes(void)
{
    FILE *statm = fopen("/proc/self/statm", "r");
    CHECK(statm != NULL);
    unsigned long size = 0, resident = 0;
    CHECK(fscanf(statm, "%lu %lu", &size, &resident) == 2);
    fclose(statm);
    return (size_t)resident * 4096u;
}

/* What the live map's shadow costs: a quarter of the span of a dense heap of
 * small blocks, about a page for a big block alone in its 64 KiB. */
static void livemap_memory_check(void)
{
    enum { BIG_BLOCKS = 2048, SMALL_BLOCKS = 1 << 20 };
    dhatc_livemap_t map;
    dhatc_block_t old;
    bool had;
    CHECK(dhatc_livemap_init(&map));
    size_t before = resident_bytes();
    for (uintptr_t i = 0; i < BIG_BLOCKS; i++) {
        dhatc_block_t b = dhatc_block(0x7f1000000000u + (i << 20), 1u << 20, 1);
        CHECK(dhatc_livemap_put(&map, &b, &old, &had) && !had);
    }
    size_t big = resident_bytes() - before;
    for (uintptr_t i = 0; i < SMALL_BLOCKS; i++) {
        dhatc_block_t b = dhatc_block(0x7f2000000000u + 32u * i, 32, 2);
        CHECK(dhatc_livemap_put(&map, &b, &old, &had) && !had);
    }
    size_t small = resident_bytes() - before - big;
    CHECK(map.count == BIG_BLOCKS + SMALL_BLOCKS);
    dhatc_livemap_release(&map);
    /* 2,048 pages and hash table entries for the big blocks (not 2,048
     * prefaulted 16 KiB leaves, 32 MiB); 8 MiB for 32 MiB of small blocks (a
     * quarter of the span). */
    CHECK(big < (size_t)12 << 20);
    CHECK(small >= (size_t)7 << 20 && small < (size_t)10 << 20);
    printf("livemap memory: %zu KiB for %d big blocks, %zu KiB for %d small ones\n",
           big >> 10, BIG_BLOCKS, small >> 10, SMALL_BLOCKS);
}

int main(void)
{
    livemap_check();
    livemap_memory_check();
    model_check();
    thread_check();
    ad_hoc_check();
    return 0;
}
