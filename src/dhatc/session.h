/* The session: the one owner of a profile's lifecycle in the engine.
 *
 *              start()              stop()                release()
 *     IDLE ------------> RUNNING ------------> STOPPED ------------> IDLE
 *                           |                     | (the data is held until the
 *                           | abandon()           |  Python profile is built:
 *                           v                     |  stop() returns it again)
 *                          IDLE <-----------------+ abandon()
 *
 * Orthogonal to the phase, `asserted`: a dhatc assertion failed and the
 * Profiler has not been stopped yet (the stats getters then refuse, as the
 * crate's do).  After fork() the child is IDLE with nothing held.
 *
 * The session configures recording (record.h) and the frame walker's root,
 * installs the PyMem hooks, attaches the preload library and starts the
 * profile; stop undoes it in the reverse order.  All of it needs the GIL and
 * is never called concurrently with itself. */
#ifndef DHATC_SESSION_H
#define DHATC_SESSION_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

#include "nativestack.h"
#include "profile.h"

typedef enum {
    DHATC_SESSION_IDLE,
    DHATC_SESSION_RUNNING,
    DHATC_SESSION_STOPPED,
} dhatc_session_phase_t;

typedef struct {
    dhatc_mode_t mode;
    int32_t trim;           /* Python frames per stack; < 0: the most there can be */
    int skip;               /* the root: the frame `skip` levels above the caller's */
    bool this_thread_only;  /* only the calling thread's new blocks count */
    const dhatc_nativestack_config_t *native; /* mixed stacks; NULL: Python frames only */
} dhatc_session_config_t;

dhatc_session_phase_t dhatc_session_phase(void);
/* Whether the profile running or held has native frames. */
bool dhatc_session_native(void);
bool dhatc_session_asserted(void);
void dhatc_session_set_asserted(bool asserted);

/* Starts a profile.  -1 with a Python error set (one runs already, a layout
 * mismatch, no memory, no hook left); nothing is left half started. */
int dhatc_session_start(const dhatc_session_config_t *config);

/* Stops the running profile (then STOPPED), or finds the one STOPPED; sets
 * its mode and the domains whose hooks were lost while it ran.  -1 with a
 * RuntimeError set if there is neither. */
int dhatc_session_stop(dhatc_mode_t *mode, int *hooks_lost);

/* Drops a STOPPED profile's data (its code references included). */
void dhatc_session_release(void);

/* Stops a running profile, if any, and drops its data. */
void dhatc_session_abandon(void);

/* While a heap profile runs: hooks again every domain whose chain no longer
 * reaches dhatc (after tracemalloc.stop()).  -1 with a Python error set. */
int dhatc_session_rehook(void);

/* The frame a stopped profile's program point shows is alive (held). */
bool dhatc_session_code_alive(const void *code);

/* fork(2), in the child: no profile, nothing held, no lock held. */
void dhatc_session_after_fork_child(void);

/* Creates what the session raises (at module init; needs the GIL). */
int dhatc_session_ready(void);
/* dhatc.ProfilerAlreadyRunningError (a RuntimeError): raised by start() and
 * by the Python Profiler alike, so callers tell it apart by type.  A borrowed
 * reference, valid after dhatc_session_ready(). */
PyObject *dhatc_session_already_running_error(void);

#endif
