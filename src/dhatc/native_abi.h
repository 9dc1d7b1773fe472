/* The interface between the preload library (libdhatc_preload.so, which
 * interposes the C allocator) and the extension module (native.c, which
 * records into the running profile).
 *
 * The two are separate shared objects: the preload library is loaded by the
 * dynamic linker before Python starts and knows nothing of Python; the
 * extension finds it with dlsym(RTLD_DEFAULT, DHATC_PRELOAD_ATTACH_SYMBOL)
 * and hands it a table of callbacks while a heap profile runs.  A preload
 * library from another dhatc build (another virtualenv, say) is refused by
 * the ABI number rather than called with a table it does not understand. */
#ifndef DHATC_NATIVE_ABI_H
#define DHATC_NATIVE_ABI_H

#include <stddef.h>
#include <stdint.h>

/* Bump whenever dhatc_native_hooks_t or the meaning of a call changes. */
#define DHATC_NATIVE_ABI 2

#define DHATC_PRELOAD_ATTACH_SYMBOL "dhatc_preload_attach"
/* An exported `const unsigned` holding the library's DHATC_NATIVE_ABI. */
#define DHATC_PRELOAD_ABI_SYMBOL "dhatc_preload_abi"

/* The C entry point a block came through; the order matches the native part
 * of DHATC_KINDS in stack.h (native.c checks it at compile time). */
typedef enum {
    DHATC_NATIVE_MALLOC,
    DHATC_NATIVE_CALLOC,
    DHATC_NATIVE_REALLOC,
    DHATC_NATIVE_POSIX_MEMALIGN,
    DHATC_NATIVE_ALIGNED_ALLOC,
    DHATC_NATIVE_MEMALIGN,
    DHATC_NATIVE_VALLOC,
    DHATC_NATIVE_PVALLOC,
} dhatc_native_kind_t;

/* What `reallocating` hands to `reallocated`, kept on the caller's stack. */
typedef struct {
    uint64_t opaque[4];
} dhatc_native_realloc_state_t;

/* Called by the interposers while attached, on the allocating thread, with
 * errno saved and restored around the call.  They must not call the C
 * allocator without setting the reentrancy guard first. */
typedef struct {
    unsigned abi; /* DHATC_NATIVE_ABI */
    /* After a successful allocation of `size` requested bytes. */
    void (*allocated)(void *block, size_t size, dhatc_native_kind_t kind);
    /* Before the real free of a non-NULL block (the address may be reused by
     * another thread the moment it is freed). */
    void (*freeing)(void *block);
    /* Around realloc(old, size) with old != NULL and size != 0: before the
     * real realloc (which may free `old`, and another thread may get that
     * address at once), then after it with the result, NULL if it failed
     * (`old` is then still live).  `state` is the caller's, opaque to it. */
    void (*reallocating)(void *old, dhatc_native_realloc_state_t *state);
    void (*reallocated)(dhatc_native_realloc_state_t *state, void *block, size_t size);
} dhatc_native_hooks_t;

/* Exported by the preload library.  Installs `hooks` (NULL detaches) and
 * returns 0, or returns -1 without installing anything if hooks->abi is not
 * this library's DHATC_NATIVE_ABI.  A detached table may still be in use by
 * calls that loaded it just before, so its functions must stay callable (the
 * extension is never unloaded) and must check that a profile runs. */
typedef int (*dhatc_preload_attach_fn)(const dhatc_native_hooks_t *hooks);

#endif
