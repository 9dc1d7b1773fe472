/* libdhatc_preload.so: interposes the C allocator so that blocks allocated
 * directly with malloc (by C extensions and the libraries they use) can be
 * recorded.  Loaded with LD_PRELOAD by `python -m dhatc run`.
 *
 * It knows nothing of Python and keeps no figures: while a heap profile runs
 * the extension attaches a table of callbacks (native_abi.h), and each
 * interposer reports to it; otherwise an interposer is the real function
 * plus one atomic load.
 *
 * Rules it lives by (docs/ARCHITECTURE.md, "The preload library"):
 * - The real functions come from dlsym(RTLD_NEXT, ...), resolved once, before
 *   main when possible.  dlsym itself may call calloc/malloc: while resolving,
 *   those calls are served from a static buffer whose blocks never reach the
 *   real free or realloc.
 * - A free is reported before the real free (the address may be handed out
 *   again at once), and errno is preserved around every callback.
 * - glibc's realloc(p, 0) frees p and returns NULL: reported as a free.
 * - No thread-local state here (the reentrancy flag lives in the extension,
 *   in initial-exec TLS), no locks, so nothing to do at fork.
 * - Built with -z now: no lazy symbol binding inside malloc. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif

#include <dlfcn.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "native_abi.h"

#define EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The allocator being interposed (glibc's, or whatever comes next). */
static struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
} real;

static _Atomic(const dhatc_native_hooks_t *) attached;

EXPORT const unsigned dhatc_preload_abi = DHATC_NATIVE_ABI;

EXPORT int dhatc_preload_attach(const dhatc_native_hooks_t *hooks)
{
    if (hooks != NULL && hooks->abi != DHATC_NATIVE_ABI) {
        return -1;
    }
    atomic_store_explicit(&attached, hooks, memory_order_release);
    return 0;
}

/* The fast path's only cost when no profile runs. */
static inline const dhatc_native_hooks_t *hooks_now(void)
{
    return atomic_load_explicit(&attached, memory_order_acquire);
}

/* ---- bootstrap: memory for dlsym while the real functions are unknown --- */

enum { BOOTSTRAP_SIZE = 64 * 1024, BOOTSTRAP_HEADER = 16 };

static alignas(16) unsigned char bootstrap_buffer[BOOTSTRAP_SIZE];
static atomic_size_t bootstrap_used;

static bool is_bootstrap_block(const void *block)
{
    /* As integers: comparing pointers into different objects is undefined. */
    uintptr_t p = (uintptr_t)block, start = (uintptr_t)bootstrap_buffer;
    return p >= start && p - start < BOOTSTRAP_SIZE;
}

/* Bump allocation, 16-byte aligned, the size stored in front (for realloc).
 * Zeroed, since the buffer is static and never reused. */
static void *bootstrap_alloc(size_t size)
{
    if (size > BOOTSTRAP_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = BOOTSTRAP_HEADER + ((size + 15) & ~(size_t)15);
    size_t offset = atomic_fetch_add_explicit(&bootstrap_used, need, memory_order_relaxed);
    if (need > BOOTSTRAP_SIZE || offset > BOOTSTRAP_SIZE - need) { /* no wrap-around */
        errno = ENOMEM;
        return NULL;
    }
    unsigned char *block = bootstrap_buffer + offset;
    memcpy(block, &size, sizeof size);
    return block + BOOTSTRAP_HEADER;
}

static size_t bootstrap_size(const void *block)
{
    size_t size;
    memcpy(&size, (const unsigned char *)block - BOOTSTRAP_HEADER, sizeof size);
    return size;
}

static void fail(const char *message)
{
    /* No stdio: it allocates. */
    ssize_t ignored = write(2, message, strlen(message));
    (void)ignored;
    _exit(127);
}

/* Set while dlsym runs: allocations it makes come from the bootstrap buffer.
 * Resolution happens before main (the constructor below), when the process
 * has one thread; a plain flag is enough. */
static volatile bool resolving;

#define RESOLVE(name)                                                       \
    do {                                                                    \
        void *symbol = dlsym(RTLD_NEXT, #name);                             \
        if (symbol == NULL) {                                               \
            fail("dhatc: libdhatc_preload.so: cannot find the real " #name  \
                 "; is the C library's allocator dynamically linked?\n");  \
        }                                                                   \
        memcpy(&real.name, &symbol, sizeof symbol);                         \
    } while (0)

/* False while resolution is under way (the caller is dlsym itself). */
static bool resolve(void)
{
    if (resolving) {
        return false;
    }
    resolving = true;
    RESOLVE(calloc); /* first: dlsym's own first allocation is usually a calloc */
    RESOLVE(malloc);
    RESOLVE(free);
    RESOLVE(realloc);
    RESOLVE(posix_memalign);
    RESOLVE(aligned_alloc);
    RESOLVE(memalign);
    RESOLVE(valloc);
    RESOLVE(pvalloc);
    resolving = false;
    return true;
}

__attribute__((constructor)) static void resolve_early(void)
{
    if (real.free == NULL) {
        resolve();
    }
}

/* True when the real functions are known; resolves them on first use. */
static inline bool ready(void)
{
    return real.free != NULL || resolve();
}

/* ---- reporting --------------------------------------------------------- */

static inline void report_alloc(const dhatc_native_hooks_t *hooks, void *block, size_t size,
                                dhatc_native_kind_t kind)
{
    int saved = errno;
    hooks->allocated(block, size, kind);
    errno = saved;
}

static inline void report_free(const dhatc_native_hooks_t *hooks, void *block)
{
    int saved = errno;
    hooks->freeing(block);
    errno = saved;
}

static inline void report_reallocating(const dhatc_native_hooks_t *hooks, void *old,
                                       dhatc_native_realloc_state_t *state)
{
    int saved = errno;
    hooks->reallocating(old, state);
    errno = saved;
}

static inline void report_reallocated(const dhatc_native_hooks_t *hooks,
                                      dhatc_native_realloc_state_t *state, void *block,
                                      size_t size)
{
    int saved = errno;
    hooks->reallocated(state, block, size);
    errno = saved;
}

/* ---- the interposers --------------------------------------------------- */

EXPORT void *malloc(size_t size)
{
    if (UNLIKELY(!ready())) {
        return bootstrap_alloc(size);
    }
    void *block = real.malloc(size);
    const dhatc_native_hooks_t *hooks = hooks_now();
    if (UNLIKELY(hooks != NULL) && block != NULL) {
        report_alloc(hooks, block, size, DHATC_NATIVE_MALLOC);
    }
    return block;
}

EXPORT void *calloc(size_t count, size_t size)
{
    size_t bytes;
    if (UNLIKELY(!ready())) {
        if (__builtin_mul_overflow(count, size, &bytes)) {
            errno = ENOMEM;
            return NULL;
        }
        return bootstrap_alloc(bytes);
    }
    void *block = real.calloc(count, size);
    const dhatc_native_hooks_t *hooks = hooks_now();
    /* A successful calloc's product did not overflow. */
    if (UNLIKELY(hooks != NULL) && block != NULL) {
        report_alloc(hooks, block, count * size, DHATC_NATIVE_CALLOC);
    }
    return block;
}

EXPORT void free(void *block)
{
    if (UNLIKELY(block == NULL || is_bootstrap_block(block) || !ready())) {
        return; /* bootstrap blocks are never given back */
    }
    const dhatc_native_hooks_t *hooks = hooks_now();
    if (UNLIKELY(hooks != NULL)) {
        report_free(hooks, block);
    }
    int saved = errno; /* glibc before 2.33 may clobber it */
    real.free(block);
    errno = saved;
}

/* realloc of a block dlsym got from the bootstrap buffer: move it out. */
static void *realloc_bootstrap_block(void *old, size_t size)
{
    void *block = ready() ? malloc(size) : bootstrap_alloc(size);
    if (block != NULL) {
        size_t old_size = bootstrap_size(old);
        memcpy(block, old, old_size < size ? old_size : size);
    }
    return block;
}

EXPORT void *realloc(void *old, size_t size)
{
    if (UNLIKELY(old != NULL && is_bootstrap_block(old))) {
        return realloc_bootstrap_block(old, size);
    }
    if (UNLIKELY(!ready())) {
        /* Only dlsym calls in here before resolution, and only with blocks
         * it got from the bootstrap buffer (handled above). */
        return old == NULL ? bootstrap_alloc(size) : NULL;
    }
    const dhatc_native_hooks_t *hooks = hooks_now();
    if (hooks == NULL) {
        return real.realloc(old, size);
    }
    if (old != NULL && size == 0) {
        /* glibc frees `old` and returns NULL.  Report the free first, as for
         * free(); a C library that returns a fresh minimum block instead gets
         * that block reported as a new one. */
        report_free(hooks, old);
        void *block = real.realloc(old, 0);
        if (block != NULL) {
            report_alloc(hooks, block, 0, DHATC_NATIVE_REALLOC);
        }
        return block;
    }
    if (old == NULL) {
        void *block = real.realloc(NULL, size);
        if (block != NULL) {
            report_alloc(hooks, block, size, DHATC_NATIVE_REALLOC);
        }
        return block;
    }
    /* In two steps around the real realloc: it may free `old`, and the
     * address must be out of the profile before another thread can get it. */
    dhatc_native_realloc_state_t state;
    report_reallocating(hooks, old, &state);
    void *block = real.realloc(old, size);
    report_reallocated(hooks, &state, block, size); /* NULL: `old` still live */
    return block;
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (UNLIKELY(!ready())) {
        return ENOMEM;
    }
    int status = real.posix_memalign(out, alignment, size);
    const dhatc_native_hooks_t *hooks = hooks_now();
    if (UNLIKELY(hooks != NULL) && status == 0 && *out != NULL) {
        report_alloc(hooks, *out, size, DHATC_NATIVE_POSIX_MEMALIGN);
    }
    return status;
}

/* aligned_alloc, memalign, valloc: (alignment,) size -> block. */
#define ALIGNED_INTERPOSER(name, kind, params, args, size_expr)             \
    EXPORT void *name params                                                \
    {                                                                       \
        if (UNLIKELY(!ready())) {                                           \
            errno = ENOMEM;                                                 \
            return NULL;                                                    \
        }                                                                   \
        void *block = real.name args;                                       \
        const dhatc_native_hooks_t *hooks = hooks_now();                    \
        if (UNLIKELY(hooks != NULL) && block != NULL) {                     \
            report_alloc(hooks, block, (size_expr), kind);                  \
        }                                                                   \
        return block;                                                       \
    }

ALIGNED_INTERPOSER(aligned_alloc, DHATC_NATIVE_ALIGNED_ALLOC,
                   (size_t alignment, size_t size), (alignment, size), size)
ALIGNED_INTERPOSER(memalign, DHATC_NATIVE_MEMALIGN, (size_t alignment, size_t size),
                   (alignment, size), size)
ALIGNED_INTERPOSER(valloc, DHATC_NATIVE_VALLOC, (size_t size), (size), size)

/* pvalloc hands out whole pages (at least one): that is the block's size. */
static size_t whole_pages(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return size == 0 ? page : (size + page - 1) / page * page;
}

ALIGNED_INTERPOSER(pvalloc, DHATC_NATIVE_PVALLOC, (size_t size), (size), whole_pages(size))
