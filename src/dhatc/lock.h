/* A tiny test-and-set lock for the engine's tables.
 *
 * Critical sections are a few dozen instructions (no stack walk, no I/O, no
 * calls into unknown code), so spinning beats a futex-backed mutex here: an
 * uncontended pthread mutex lock/unlock pair costs about half of the per-
 * allocation budget.  Waiters yield the CPU rather than burn it. */
#ifndef DHATC_LOCK_H
#define DHATC_LOCK_H

#include <sched.h>
#include <stdatomic.h>

typedef struct {
    atomic_flag held;
} dhatc_lock_t;

#define DHATC_LOCK_INIT {ATOMIC_FLAG_INIT}

/* Out of line: the loop and its call would take registers that the hooks'
 * inlined fast path, which takes the lock once per block, then saves and
 * restores on every call. */
static __attribute__((noinline, cold, unused)) void dhatc_lock_wait(dhatc_lock_t *lock)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&lock->held, memory_order_acquire)) {
        if (++spins >= 64) {
            sched_yield();
            spins = 0;
        }
    }
}

static inline void dhatc_lock(dhatc_lock_t *lock)
{
    if (__builtin_expect(atomic_flag_test_and_set_explicit(&lock->held, memory_order_acquire), 0)) {
        dhatc_lock_wait(lock);
    }
}

static inline void dhatc_unlock(dhatc_lock_t *lock)
{
    atomic_flag_clear_explicit(&lock->held, memory_order_release);
}

/* After fork the child has one thread; whatever the lock looked like in the
 * parent, no one in the child holds it. */
static inline void dhatc_lock_reset(dhatc_lock_t *lock)
{
    atomic_flag_clear_explicit(&lock->held, memory_order_relaxed);
}

#endif
