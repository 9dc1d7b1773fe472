/* dhatc._engine: the thin CPython binding of the engine.  Each function here
 * checks its arguments and calls the engine; the Python half of the package
 * (dhatpy/) shapes the results and writes the file. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>

#include "frames.h"
#include "guard.h"
#include "hooks.h"
#include "layout.h"
#include "native.h"
#include "profile.h"
#include "stats_types.h"

/* Py_BuildValue's "K" reads an unsigned long long, which uint64_t need not be. */
#define ULL(value) ((unsigned long long)(value))

static const char *const kind_names[] = {
#define DHATC_KIND_NAME(name, text) text,
    DHATC_KINDS(DHATC_KIND_NAME)
#undef DHATC_KIND_NAME
};

/* A stopped profile whose results stop() could not build (out of memory):
 * kept, so that calling stop() again returns them.  Data collected is never
 * dropped because building its Python form failed once. */
static struct {
    bool pending;
    dhatc_mode_t mode;
    int hooks_lost;
} uncollected;

/* Raised, by this module and by the Python half alike, when a profile is
 * asked for while one runs: callers tell it apart by type, not by text. */
static PyObject *ProfilerAlreadyRunningError;

/* Offsets start() checks instead of the interpreter's own (tests only). */
static PyObject *test_layout;

static PyObject *engine_start(PyObject *module, PyObject *args)
{
    (void)module;
    int mode, skip, this_thread_only = 0;
    Py_ssize_t trim;
    if (!PyArg_ParseTuple(args, "ini|p:start", &mode, &trim, &skip, &this_thread_only)) {
        return NULL;
    }
    if (mode != DHATC_MODE_HEAP && mode != DHATC_MODE_AD_HOC) {
        PyErr_Format(PyExc_ValueError, "dhatc._engine.start: unknown mode %d", mode);
        return NULL;
    }
    if (dhatc_phase != DHATC_PHASE_IDLE || dhatc_profile_running() != DHATC_MODE_NONE ||
        uncollected.pending) {
        PyErr_SetString(ProfilerAlreadyRunningError,
                        "dhat: creating a profiler while a profiler is already running");
        return NULL;
    }
    /* Checked at every start, cheaply: a mismatch must never become a crash
     * or garbage frames inside an allocator hook. */
    if (dhatc_layout_check(test_layout == NULL ? NULL : PyBytes_AS_STRING(test_layout),
                           test_layout == NULL ? 0 : (size_t)PyBytes_GET_SIZE(test_layout)) < 0) {
        return NULL;
    }
    __atomic_store_n(&dhatc_frames_limit,
                     trim < 0 || trim > DHATC_MAX_DEPTH ? DHATC_MAX_DEPTH : (uint32_t)trim,
                     __ATOMIC_RELAXED);
    dhatc_frames_set_root(skip);
    dhatc_hooks_one_thread_only = this_thread_only;
    dhatc_hooks_only_thread = pthread_self();
    /* Hooks first: they pass calls through until the profile runs. */
    if (mode == DHATC_MODE_HEAP && dhatc_hooks_install() < 0) {
        dhatc_hooks_uninstall(); /* the domains hooked before the failure */
        dhatc_frames_clear_root();
        return NULL;
    }
    dhatc_phase = DHATC_PHASE_RUNNING;
    /* Last: from here on every allocation counts, so nothing after it may
     * allocate on this path. */
    if (!dhatc_profile_start((dhatc_mode_t)mode, dhatc_frames_canonicalize)) {
        dhatc_phase = DHATC_PHASE_IDLE;
        dhatc_hooks_uninstall();
        dhatc_frames_clear_root();
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

/* Stops recording and takes references on every program point's code. */
static void stop_recording(void)
{
    dhatc_profile_stop();
    dhatc_hooks_uninstall();
    dhatc_hooks_retain_code();
    dhatc_frames_clear_root();
}

/* Releases the profile's tables, then the references its program points
 * hold on code objects.  In that order: dropping a reference can run any
 * Python code (a weakref callback, a co_extra destructor), even code that
 * starts a new profile, so no table may be in use by then.  The references
 * are moved into a list first; if even that fails they are kept (a few code
 * objects outlive the profile) rather than dropped early. */
static void release_profile(void)
{
    PyObject *error_type, *error_value, *error_traceback;
    PyErr_Fetch(&error_type, &error_value, &error_traceback);
    PyObject *codes = PyList_New(0);
    uint32_t count = dhatc_profile_pp_count();
    for (uint32_t id = 0; id < count; id++) {
        dhatc_pp_figures_t pp;
        dhatc_profile_pp_figures(id, &pp);
        for (uint32_t i = 0; i < pp.depth; i++) {
            PyObject *code = (PyObject *)pp.frames[i].code; /* NULL: never held */
            if (code != NULL && codes != NULL && PyList_Append(codes, code) == 0) {
                Py_DECREF(code); /* the list holds it now */
            }
        }
    }
    PyErr_Clear();
    dhatc_profile_release();
    Py_XDECREF(codes);
    PyErr_Restore(error_type, error_value, error_traceback);
}

static PyObject *pp_as_tuple(const dhatc_pp_figures_t *pp)
{
    PyObject *frames = PyTuple_New(pp->depth);
    if (frames == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < pp->depth; i++) {
        PyObject *code = pp->frames[i].code != NULL ? (PyObject *)pp->frames[i].code : Py_None;
        PyObject *frame = Py_BuildValue("(Oi)", code, pp->frames[i].where);
        if (frame == NULL) {
            Py_DECREF(frames);
            return NULL;
        }
        PyTuple_SET_ITEM(frames, i, frame);
    }
    const char *kind = pp->kind == DHATC_KIND_AD_HOC ? NULL : kind_names[pp->kind];
    return Py_BuildValue("(zNKKKKKKKKK)", kind, frames, ULL(pp->total_bytes),
                         ULL(pp->total_blocks), ULL(pp->total_lifetime), ULL(pp->max_bytes),
                         ULL(pp->max_blocks), ULL(pp->gmax_bytes), ULL(pp->gmax_blocks),
                         ULL(pp->end_bytes), ULL(pp->end_blocks));
}

static PyObject *engine_stop(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    dhatc_mode_t mode = dhatc_profile_running();
    int lost;
    if (mode != DHATC_MODE_NONE) {
        /* Before stopping: a hook removed by someone else means a profile
         * that silently missed allocations, which the user must be told. */
        lost = mode == DHATC_MODE_HEAP ? dhatc_hooks_lost() : 0;
        stop_recording();
        dhatc_phase = DHATC_PHASE_IDLE;
        uncollected.pending = true;
        uncollected.mode = mode;
        uncollected.hooks_lost = lost;
    } else if (uncollected.pending) {
        mode = uncollected.mode;
        lost = uncollected.hooks_lost;
    } else {
        PyErr_SetString(PyExc_RuntimeError, "dhatc: no profile is running");
        return NULL;
    }

    dhatc_stats_t stats = dhatc_profile_stats();
    uint32_t count = dhatc_profile_pp_count();
    PyObject *pps = PyList_New(count);
    for (uint32_t id = 0; pps != NULL && id < count; id++) {
        dhatc_pp_figures_t pp;
        dhatc_profile_pp_figures(id, &pp);
        PyObject *item = pp_as_tuple(&pp);
        if (item == NULL) {
            Py_CLEAR(pps);
            break;
        }
        PyList_SET_ITEM(pps, id, item);
    }
    PyObject *result = NULL;
    if (pps != NULL) {
        result = Py_BuildValue("{s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:i}", "mode",
                               mode == DHATC_MODE_HEAP ? "heap" : "ad-hoc", "total_blocks",
                               ULL(stats.total_blocks), "total_bytes", ULL(stats.total_bytes),
                               "curr_blocks", ULL(stats.curr_blocks), "curr_bytes",
                               ULL(stats.curr_bytes), "max_blocks", ULL(stats.max_blocks),
                               "max_bytes", ULL(stats.max_bytes), "time_of_peak",
                               ULL(dhatc_profile_time_of_peak()), "time_of_end",
                               ULL(dhatc_profile_time_of_end()), "dropped",
                               ULL(dhatc_profile_dropped()), "pps", pps, "hooks_lost", lost);
    }
    /* The results stay in the engine until release(): if building the
     * Python profile from them fails (MemoryError, KeyboardInterrupt, a bad
     * sys.argv), stop() returns them again. */
    return result;
}

static PyObject *engine_release(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (uncollected.pending) {
        uncollected.pending = false;
        release_profile();
    }
    Py_RETURN_NONE;
}

static PyObject *engine_has_uncollected(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(uncollected.pending);
}

static PyObject *engine_abandon(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    stop_recording();
    dhatc_phase = DHATC_PHASE_IDLE;
    uncollected.pending = false;
    release_profile();
    Py_RETURN_NONE;
}

/* Interned once: running() is called while a profile records, so it must
 * not allocate. */
static PyObject *heap_name, *ad_hoc_name;

static PyObject *engine_running(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    switch (dhatc_profile_running()) {
    case DHATC_MODE_HEAP:
        Py_INCREF(heap_name);
        return heap_name;
    case DHATC_MODE_AD_HOC:
        Py_INCREF(ad_hoc_name);
        return ad_hoc_name;
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *engine_rehook(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (dhatc_profile_running() == DHATC_MODE_HEAP && dhatc_hooks_install() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *engine_set_asserted(PyObject *module, PyObject *arg)
{
    (void)module;
    int asserted = PyObject_IsTrue(arg);
    if (asserted < 0) {
        return NULL;
    }
    dhatc_phase = asserted ? DHATC_PHASE_ASSERTED : DHATC_PHASE_IDLE;
    Py_RETURN_NONE;
}

static PyObject *engine_ad_hoc_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    (void)module;
    unsigned long long weight = 1;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "ad_hoc_event() takes at most 1 argument (%zd given)",
                     nargs + nkw);
        return NULL;
    }
    if (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "weight") != 0) {
        PyErr_Format(PyExc_TypeError, "ad_hoc_event() got an unexpected keyword argument %R",
                     PyTuple_GET_ITEM(kwnames, 0));
        return NULL;
    }
    if (nargs + nkw == 1) { /* a keyword's value follows the positional ones: args[0] */
        if (!PyLong_Check(args[0]) || PyBool_Check(args[0])) {
            PyErr_Format(PyExc_TypeError, "ad_hoc_event() weight must be an int, not %.100s",
                         Py_TYPE(args[0])->tp_name);
            return NULL;
        }
        weight = PyLong_AsUnsignedLongLong(args[0]);
        if (weight == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "ad_hoc_event() weight must be a non-negative int below 2**64, got %R",
                         args[0]);
            return NULL;
        }
    }
    if (dhatc_profile_running() == DHATC_MODE_AD_HOC) {
        const uint32_t limit = dhatc_frames_current_limit();
        dhatc_frame_t frames[limit + 1]; /* + 1: never a zero-length array */
        uint64_t hash;
        uint32_t depth =
            dhatc_frames_capture(PyThreadState_Get(), frames, limit, &hash, DHATC_KIND_AD_HOC);
        dhatc_profile_record_event(weight, frames, depth, hash);
        dhatc_hooks_retain_code_if_gil(true);
    }
    Py_RETURN_NONE;
}

static PyObject *engine_native_tracking(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(dhatc_native_available());
}

static PyObject *engine_layout_offsets(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return dhatc_layout_published();
}

static PyObject *engine_check_layout(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int status = dhatc_layout_check(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *engine_set_test_layout(PyObject *module, PyObject *arg)
{
    (void)module;
    if (arg != Py_None && !PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_set_test_layout() takes bytes or None");
        return NULL;
    }
    if (arg != Py_None) {
        Py_INCREF(arg);
    }
    Py_XSETREF(test_layout, arg == Py_None ? NULL : arg);
    Py_RETURN_NONE;
}

static PyMethodDef engine_methods[] = {
    {"start", engine_start, METH_VARARGS,
     "start(mode, trim, skip, this_thread_only=False)\n--\n\nStarts a profile (1 heap, 2 ad "
     "hoc), keeping at most `trim` Python frames per stack (-1: all) and treating the frame "
     "`skip` levels up as the root; optionally counting only the calling thread."},
    {"stop", engine_stop, METH_NOARGS,
     "stop()\n--\n\nStops the running profile and returns its data as a dict.  The data "
     "stays in the engine (stop() returns it again) until release() is called."},
    {"release", engine_release, METH_NOARGS,
     "release()\n--\n\nDiscards a stopped profile's data once its Python form exists."},
    {"abandon", engine_abandon, METH_NOARGS,
     "abandon()\n--\n\nStops the running profile, if any, and discards its data."},
    {"has_uncollected", engine_has_uncollected, METH_NOARGS,
     "has_uncollected()\n--\n\nWhether a stopped profile's results wait in the engine "
     "for release()."},
    {"running", engine_running, METH_NOARGS,
     "running()\n--\n\n'heap', 'ad-hoc' or None."},
    {"rehook", engine_rehook, METH_NOARGS,
     "rehook()\n--\n\nWhile a heap profile runs, hooks the allocators again in every domain "
     "whose chain no longer reaches dhatc (after tracemalloc.stop(), say)."},
    {"set_asserted", engine_set_asserted, METH_O,
     "set_asserted(flag)\n--\n\nRecords that a dhatc assertion failed (or clears it)."},
    {"ad_hoc_event", (PyCFunction)(void (*)(void))engine_ad_hoc_event,
     METH_FASTCALL | METH_KEYWORDS,
     "ad_hoc_event(weight=1)\n--\n\nRecords an ad hoc event of `weight` units with the "
     "caller's stack.  Does nothing unless an ad hoc profiler runs."},
    {"native_tracking", engine_native_tracking, METH_NOARGS,
     "native_tracking()\n--\n\nWhether heap profiles also record blocks from malloc & co. "
     "(the process runs with dhatc's preload library)."},
    {"_layout_offsets", engine_layout_offsets, METH_NOARGS,
     "_layout_offsets()\n--\n\nA copy of the running interpreter's published debug offsets "
     "(bytes; CPython 3.13+), or None."},
    {"_check_layout", engine_check_layout, METH_O,
     "_check_layout(offsets)\n--\n\nThe check start() makes, on a given copy of the "
     "offsets (for tests): raises RuntimeError on a mismatch."},
    {"_set_test_layout", engine_set_test_layout, METH_O,
     "_set_test_layout(offsets)\n--\n\nMakes start() check these offsets instead of the "
     "interpreter's own (None: its own again).  For tests."},
    {NULL, NULL, 0, NULL},
};

/* fork: the child must not record into (or save) the parent's profile. */
static void after_fork_child(void)
{
    dhatc_profile_after_fork_child();
    uncollected.pending = false; /* the parent's, and the tables are forgotten */
}

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT, "dhatc._engine",
    "The C engine of dhatc.  Use the dhatc package, not this module.", -1, engine_methods,
    NULL, NULL, NULL, NULL,
};

/* PyModule_AddObject steals the reference only when it succeeds. */
static int add_type(PyObject *module, const char *name, PyTypeObject *type)
{
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__engine(void)
{
    if (dhatc_stats_types_ready() < 0) {
        return NULL;
    }
    if (heap_name == NULL) {
        heap_name = PyUnicode_InternFromString("heap");
        ad_hoc_name = PyUnicode_InternFromString("ad-hoc");
        if (heap_name == NULL || ad_hoc_name == NULL) {
            return NULL;
        }
    }
    PyObject *module = PyModule_Create(&engine_module);
    if (module == NULL) {
        return NULL;
    }
    if (ProfilerAlreadyRunningError == NULL) {
        ProfilerAlreadyRunningError = PyErr_NewExceptionWithDoc(
            "dhatc.ProfilerAlreadyRunningError",
            "A profiler was started while another one runs (one runs at a time).",
            PyExc_RuntimeError, NULL);
        if (ProfilerAlreadyRunningError == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    Py_INCREF(ProfilerAlreadyRunningError);
    if (PyModule_AddObject(module, "ProfilerAlreadyRunningError", ProfilerAlreadyRunningError) <
        0) {
        Py_DECREF(ProfilerAlreadyRunningError);
        Py_DECREF(module);
        return NULL;
    }
    if (add_type(module, "HeapStats", &dhatc_HeapStats_Type) < 0 ||
        add_type(module, "AdHocStats", &dhatc_AdHocStats_Type) < 0 ||
        PyModule_AddIntConstant(module, "MODE_HEAP", DHATC_MODE_HEAP) < 0 ||
        PyModule_AddIntConstant(module, "MODE_AD_HOC", DHATC_MODE_AD_HOC) < 0 ||
        PyModule_AddIntConstant(module, "MAX_DEPTH", DHATC_MAX_DEPTH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    static int atfork_registered;
    if (!atfork_registered) {
        if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
            Py_DECREF(module);
            PyErr_SetString(PyExc_OSError, "dhatc: pthread_atfork failed");
            return NULL;
        }
        atfork_registered = 1;
    }
    return module;
}
