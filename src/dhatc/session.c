#include "session.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>

#include "codetable.h"
#include "frames.h"
#include "hooks.h"
#include "layout.h"
#include "native.h"
#include "record.h"

/* Needs the GIL, like every function here. */
static struct {
    dhatc_session_phase_t phase;
    bool asserted;
    dhatc_mode_t mode; /* of the profile running or held */
    bool native;       /* its stacks have native frames */
    int hooks_lost;    /* of the profile held */
} session;

dhatc_session_phase_t dhatc_session_phase(void)
{
    return session.phase;
}

bool dhatc_session_native(void)
{
    return session.native;
}

bool dhatc_session_asserted(void)
{
    return session.asserted;
}

void dhatc_session_set_asserted(bool asserted)
{
    session.asserted = asserted;
}

/* Undoes a start that got as far as the hooks (each step is harmless when
 * its counterpart did not happen). */
static void undo_start(void)
{
    dhatc_native_detach();
    dhatc_hooks_uninstall();
    dhatc_frames_clear_root();
}

static void drop_into_list(PyObject *code, void *list)
{
    /* If the list cannot hold it, the reference is kept (a code object
     * outlives the profile) rather than dropped while tables may use it. */
    if (list != NULL && PyList_Append(list, code) == 0) {
        Py_DECREF(code); /* the list holds it now */
    }
}

/* Releases the profile's tables, then the references its program points hold
 * on code objects.  In that order: dropping a reference can run any Python
 * code (a weakref callback, a co_extra destructor), even code that starts a
 * new profile, so no table may be in use by then. */
static void release_data(void)
{
    PyObject *error_type, *error_value, *error_traceback;
    PyErr_Fetch(&error_type, &error_value, &error_traceback);
    PyObject *codes = PyList_New(0);
    PyErr_Clear();
    dhatc_codetable_release(drop_into_list, codes);
    dhatc_profile_release();
    Py_XDECREF(codes);
    PyErr_Restore(error_type, error_value, error_traceback);
}

int dhatc_session_start(const dhatc_session_config_t *config)
{
    if (session.phase != DHATC_SESSION_IDLE || session.asserted ||
        dhatc_profile_running() != DHATC_MODE_NONE) {
        PyErr_SetString(dhatc_session_already_running_error(),
                        "dhat: creating a profiler while a profiler is already running");
        return -1;
    }
    /* Checked at every start, cheaply: a mismatch must never become a crash
     * or garbage frames inside an allocator hook. */
    if (dhatc_layout_check(NULL, 0) < 0) {
        return -1;
    }
    if (config->native != NULL) {
        dhatc_nativestack_config_t native = *config->native;
        native.preload = dhatc_native_preload_address();
        if (dhatc_nativestack_configure(&native) < 0) {
            return -1;
        }
    }
    dhatc_record_config_t record = {
        .native = config->native != NULL,
        .frames_limit = config->trim < 0 || config->trim > DHATC_MAX_DEPTH
                            ? DHATC_MAX_DEPTH
                            : (uint32_t)config->trim,
        .one_thread_only = config->this_thread_only,
        .only_thread = pthread_self(),
        .interp = PyThreadState_Get()->interp,
    };
    dhatc_record_configure(&record);
    if (!dhatc_codetable_init()) {
        PyErr_NoMemory();
        return -1;
    }
    dhatc_frames_set_root(config->skip);
    /* Hooks first: they pass calls through until the profile runs. */
    if (config->mode == DHATC_MODE_HEAP) {
        if (dhatc_hooks_install() < 0) {
            undo_start();
            release_data();
            return -1;
        }
        dhatc_native_attach(); /* malloc & co., when the preload library is there */
    }
    /* Last: from here on every allocation counts, so nothing after it may
     * allocate on the way back to the user. */
    if (!dhatc_profile_start(config->mode, dhatc_frames_canonicalize)) {
        undo_start();
        release_data();
        PyErr_NoMemory();
        return -1;
    }
    session.phase = DHATC_SESSION_RUNNING;
    session.mode = config->mode;
    session.native = config->native != NULL;
    session.hooks_lost = 0;
    return 0;
}

/* Stops recording and takes references on every program point's code. */
static void stop_recording(void)
{
    dhatc_profile_stop();
    dhatc_native_detach();
    dhatc_hooks_uninstall();
    dhatc_codetable_retain_new();
    dhatc_frames_clear_root();
}

int dhatc_session_stop(dhatc_mode_t *mode, int *hooks_lost)
{
    if (session.phase == DHATC_SESSION_RUNNING) {
        /* Before stopping: a hook removed by someone else means a profile
         * that silently missed allocations, which the user must be told. */
        session.hooks_lost = session.mode == DHATC_MODE_HEAP ? dhatc_hooks_lost() : 0;
        stop_recording();
        session.phase = DHATC_SESSION_STOPPED;
    } else if (session.phase != DHATC_SESSION_STOPPED) {
        PyErr_SetString(PyExc_RuntimeError, "dhatc: no profile is running");
        return -1;
    }
    *mode = session.mode;
    *hooks_lost = session.hooks_lost;
    return 0;
}

void dhatc_session_release(void)
{
    if (session.phase == DHATC_SESSION_STOPPED) {
        session.phase = DHATC_SESSION_IDLE;
        release_data();
    }
}

void dhatc_session_abandon(void)
{
    if (session.phase == DHATC_SESSION_RUNNING) {
        stop_recording();
    }
    if (session.phase != DHATC_SESSION_IDLE) {
        session.phase = DHATC_SESSION_IDLE;
        release_data();
    }
}

int dhatc_session_rehook(void)
{
    if (session.phase == DHATC_SESSION_RUNNING && session.mode == DHATC_MODE_HEAP) {
        return dhatc_hooks_install();
    }
    return 0;
}

bool dhatc_session_code_alive(const void *code)
{
    return dhatc_codetable_alive(code);
}

void dhatc_session_after_fork_child(void)
{
    dhatc_profile_after_fork_child();
    dhatc_codetable_after_fork_child();
    dhatc_nativestack_after_fork_child();
    session.phase = DHATC_SESSION_IDLE;
    session.native = false;
    session.asserted = false;
    session.hooks_lost = 0;
}

/* ---- the exception ---------------------------------------------------------- */

static PyObject *already_running_error;

PyObject *dhatc_session_already_running_error(void)
{
    return already_running_error;
}

int dhatc_session_ready(void)
{
    if (already_running_error == NULL) {
        already_running_error = PyErr_NewExceptionWithDoc(
            "dhatc.ProfilerAlreadyRunningError",
            "A profiler was started while another one runs (one runs at a time).",
            PyExc_RuntimeError, NULL);
    }
    return already_running_error != NULL ? 0 : -1;
}
