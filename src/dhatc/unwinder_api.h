/* The interface between the engine (nativestack.c) and the optional
 * extension dhatc._unwinder (unwinder.c), which links libunwind and
 * elfutils' libdw.  The engine itself links neither, so that the core works
 * where they are not installed; the extension hands the engine this table in
 * a capsule when a profile with native frames starts. */
#ifndef DHATC_UNWINDER_API_H
#define DHATC_UNWINDER_API_H

/* Bump whenever the table or the meaning of a call changes. */
#define DHATC_UNWINDER_ABI 1

#define DHATC_UNWINDER_CAPSULE "dhatc._unwinder._C_API"

typedef struct {
    unsigned abi; /* DHATC_UNWINDER_ABI */
    /* The calling thread's native stack: at most `room` instruction
     * addresses, innermost first, starting at the caller of backtrace()
     * (libunwind's local unwinding).  Returns how many; safe inside malloc
     * with the reentrancy guard set (what libunwind allocates on a thread's
     * first use is then not recorded). */
    int (*backtrace)(void **ips, int room);
} dhatc_unwinder_api_t;

#endif
