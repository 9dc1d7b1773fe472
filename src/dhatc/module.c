/* dhatc._engine: the thin CPython binding of the engine.  Each function here
 * checks its arguments and calls the engine; the Python half of the package
 * (dhatpy/) shapes the results and writes the file. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdbool.h>

#include "codetable.h"
#include "frames.h"
#include "guard.h"
#include "layout.h"
#include "linetable.h"
#include "native.h"
#include "profile.h"
#include "record.h"
#include "session.h"
#include "sigterm.h"
#include "stats_types.h"

/* Py_BuildValue's "K" reads an unsigned long long, which uint64_t need not be. */
#define ULL(value) ((unsigned long long)(value))

static const char *const kind_names[] = {
#define DHATC_KIND_NAME(name, text) text,
    DHATC_KINDS(DHATC_KIND_NAME)
#undef DHATC_KIND_NAME
};

/* start()'s `native`: None, or (the unwinder's capsule, the evaluation
 * loop's ranges [(start, end), ...], keep the interpreter's C frames). */
static int parse_native(PyObject *native, dhatc_nativestack_config_t *out)
{
    PyObject *capsule, *ranges;
    int interpreter_frames;
    if (!PyArg_ParseTuple(native, "OOp;native must be (capsule, ranges, interpreter_frames)",
                          &capsule, &ranges, &interpreter_frames)) {
        return -1;
    }
    const dhatc_unwinder_api_t *api = PyCapsule_GetPointer(capsule, DHATC_UNWINDER_CAPSULE);
    if (api == NULL) {
        return -1;
    }
    if (api->abi != DHATC_UNWINDER_ABI) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhatc._unwinder is from another dhatc build: reinstall dhatc");
        return -1;
    }
    PyObject *items = PySequence_Fast(ranges, "native's ranges must be a sequence");
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n == 0 || n > DHATC_NATIVESTACK_MAX_EVAL_RANGES) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "native's ranges: 1 to %d (start, end) pairs",
                     DHATC_NATIVESTACK_MAX_EVAL_RANGES);
        return -1;
    }
    *out = (dhatc_nativestack_config_t){.unwinder = api, .eval_count = (uint32_t)n,
                                        .interpreter_frames = interpreter_frames};
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long start, end;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "KK;a (start, end) pair",
                              &start, &end)) {
            Py_DECREF(items);
            return -1;
        }
        out->eval[i] = (dhatc_range_t){(uintptr_t)start, (uintptr_t)end};
    }
    Py_DECREF(items);
    return 0;
}

static PyObject *engine_start(PyObject *module, PyObject *args)
{
    (void)module;
    int mode, skip, this_thread_only = 0;
    Py_ssize_t trim;
    PyObject *native = Py_None;
    if (!PyArg_ParseTuple(args, "ini|pO:start", &mode, &trim, &skip, &this_thread_only, &native)) {
        return NULL;
    }
    dhatc_nativestack_config_t native_config;
    if (native != Py_None && parse_native(native, &native_config) < 0) {
        return NULL;
    }
    if (mode != DHATC_MODE_HEAP && mode != DHATC_MODE_AD_HOC) {
        PyErr_Format(PyExc_ValueError, "dhatc._engine.start: unknown mode %d", mode);
        return NULL;
    }
    dhatc_session_config_t config = {
        .mode = (dhatc_mode_t)mode,
        .trim = trim < 0 || trim > DHATC_MAX_DEPTH ? -1 : (int32_t)trim,
        .skip = skip,
        .this_thread_only = this_thread_only,
        .native = native != Py_None ? &native_config : NULL,
    };
    if (dhatc_session_start(&config) < 0) {
        return NULL;
    }
    /* Nothing may allocate after the start on the way back to the user. */
    Py_RETURN_NONE;
}

/* `tuple`, no longer watched by the cycle collector: a stop's tuples hold
 * only code objects, numbers, strings and other such tuples, so none can be
 * part of a cycle, and the collector would walk hundreds of thousands of
 * them, collection after collection, until the profile is saved. */
static PyObject *acyclic(PyObject *tuple)
{
    if (tuple != NULL && PyObject_GC_IsTracked(tuple)) {
        PyObject_GC_UnTrack(tuple);
    }
    return tuple;
}

/* The Python frames of a stop's program points, each (code, line) made into
 * one tuple shared by every program point that has it: program points
 * share most of their frames, and a tuple per frame of each was most of the
 * objects a stop made (and of the collector's work).  Open addressing on
 * (code, line); without memory for it, each frame gets a tuple of its own. */
typedef struct {
    const void *code;
    int32_t where;
    PyObject *pair; /* NULL: an empty slot */
} frame_slot_t;

typedef struct {
    frame_slot_t *slots;
    size_t capacity, used; /* capacity a power of two, or 0 */
} frame_objects_t;

static void frame_objects_release(frame_objects_t *table)
{
    for (size_t i = 0; i < table->capacity; i++) {
        Py_XDECREF(table->slots[i].pair);
    }
    PyMem_RawFree(table->slots);
    *table = (frame_objects_t){0};
}

static size_t frame_slot_index(const frame_objects_t *table, const void *code, int32_t where)
{
    uint64_t key = ((uint64_t)(uintptr_t)code ^ ((uint64_t)(uint32_t)where << 40)) *
                   UINT64_C(0x9E3779B97F4A7C15);
    size_t mask = table->capacity - 1;
    size_t i = (size_t)(key >> 20) & mask;
    while (table->slots[i].pair != NULL &&
           (table->slots[i].code != code || table->slots[i].where != where)) {
        i = (i + 1) & mask;
    }
    return i;
}

/* Room for one more entry, the table kept at most half full; false if
 * there is no memory for it (the table stays as it was). */
static bool frame_objects_room(frame_objects_t *table)
{
    if (2 * (table->used + 1) <= table->capacity) {
        return true;
    }
    size_t capacity = table->capacity == 0 ? 1024 : 2 * table->capacity;
    frame_slot_t *slots = PyMem_RawCalloc(capacity, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    frame_objects_t grown = {slots, capacity, table->used};
    for (size_t i = 0; i < table->capacity; i++) {
        if (table->slots[i].pair != NULL) {
            const frame_slot_t *old = &table->slots[i];
            grown.slots[frame_slot_index(&grown, old->code, old->where)] = *old;
        }
    }
    PyMem_RawFree(table->slots);
    *table = grown;
    return true;
}

static PyObject *python_frame_object(const dhatc_frame_t *frame)
{
    PyObject *code = frame->code != NULL && dhatc_session_code_alive(frame->code)
                         ? (PyObject *)frame->code
                         : Py_None;
    PyObject *line = PyLong_FromLong(frame->where);
    if (line == NULL) {
        return NULL;
    }
    PyObject *pair = acyclic(PyTuple_Pack(2, code, line));
    Py_DECREF(line);
    return pair;
}

/* One frame of a program point as _dhat_file.py reads it: a Python frame is
 * (code object, line), the code None if it died before the profile could
 * keep it; a frame standing for another interpreter's is its text. */
static PyObject *frame_as_object(frame_objects_t *table, const dhatc_frame_t *frame)
{
    if (frame->kind == DHATC_FRAME_NATIVE) {
        return PyLong_FromUnsignedLongLong(ULL((uintptr_t)frame->code));
    }
    if (frame->kind == DHATC_FRAME_SUBINTERPRETER) {
        return PyUnicode_FromFormat(
            "[subinterpreter %d: its Python frames are not recorded]", (int)frame->where);
    }
    if (!frame_objects_room(table)) {
        return python_frame_object(frame);
    }
    frame_slot_t *slot = &table->slots[frame_slot_index(table, frame->code, frame->where)];
    if (slot->pair == NULL) {
        PyObject *pair = python_frame_object(frame);
        if (pair == NULL) {
            return NULL;
        }
        *slot = (frame_slot_t){frame->code, frame->where, pair};
        table->used++;
    }
    Py_INCREF(slot->pair);
    return slot->pair;
}

/* A new tuple of `count` items, stealing the references of `items` (each of
 * them, even on failure).  Py_BuildValue parsed its format again for each
 * of the thousands of program points a stop gives. */
static PyObject *tuple_stealing(PyObject *const *items, Py_ssize_t count)
{
    PyObject *tuple = NULL;
    bool complete = true;
    for (Py_ssize_t i = 0; i < count; i++) {
        complete = complete && items[i] != NULL;
    }
    if (complete) {
        tuple = PyTuple_New(count);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (tuple != NULL) {
            PyTuple_SET_ITEM(tuple, i, items[i]);
        } else {
            Py_XDECREF(items[i]);
        }
    }
    return tuple;
}

/* One program point as dhatpy/_engine_data.py's RawProgramPoint, the fields
 * in EngineProgramPoint's order: (kind, frames, tb, tbk, tl, mb, mbk, gb, gbk,
 * eb, ebk), kind the allocator entry's name or None for an ad hoc event,
 * frames innermost first, each as frame_as_object() makes it.  Change both
 * together (tests/test_engine_data.py checks them against each other). */
static PyObject *pp_as_tuple(frame_objects_t *frame_objects, const dhatc_pp_figures_t *pp)
{
    PyObject *frames = acyclic(PyTuple_New(pp->depth));
    if (frames == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < pp->depth; i++) {
        PyObject *frame = frame_as_object(frame_objects, &pp->frames[i]);
        if (frame == NULL) {
            Py_DECREF(frames);
            return NULL;
        }
        PyTuple_SET_ITEM(frames, i, frame);
    }
    PyObject *kind = Py_None;
    if (pp->kind == DHATC_KIND_AD_HOC) {
        Py_INCREF(kind);
    } else {
        kind = PyUnicode_FromString(kind_names[pp->kind]);
    }
    const uint64_t figures[] = {pp->total_bytes, pp->total_blocks, pp->total_lifetime,
                                pp->max_bytes,   pp->max_blocks,   pp->gmax_bytes,
                                pp->gmax_blocks, pp->end_bytes,    pp->end_blocks};
    enum { FIGURES = sizeof figures / sizeof figures[0] };
    PyObject *items[2 + FIGURES] = {kind, frames};
    for (size_t i = 0; i < FIGURES; i++) {
        items[2 + i] = PyLong_FromUnsignedLongLong(ULL(figures[i]));
    }
    return acyclic(tuple_stealing(items, 2 + FIGURES));
}

/* The objects native frames were found in: [(start, end, path, bias), ...];
 * None for a profile without native frames. */
static PyObject *native_objects(void)
{
    if (!dhatc_session_native()) {
        Py_RETURN_NONE;
    }
    uint32_t count;
    const dhatc_native_object_t *objects = dhatc_nativestack_objects(&count);
    PyObject *list = PyList_New(count);
    for (uint32_t i = 0; list != NULL && i < count; i++) {
        PyObject *path = PyUnicode_DecodeFSDefault(objects[i].path);
        PyObject *item = path == NULL ? NULL
                                      : Py_BuildValue("(KKNK)", ULL(objects[i].start),
                                                      ULL(objects[i].end), path,
                                                      ULL(objects[i].bias));
        if (item == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *engine_call_boundary(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    const void *boundary = dhatc_frames_first_call_boundary();
    if (boundary == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong(ULL((uintptr_t)boundary));
}

static PyObject *engine_interpreter_object(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    const char *path;
    uintptr_t bias;
    if (dhatc_nativestack_interpreter_object(&path, &bias) < 0) {
        return NULL;
    }
    return Py_BuildValue("(NK)", PyUnicode_DecodeFSDefault(path), ULL(bias));
}

/* stop(): the dict dhatpy/_engine_data.py's StopData describes (its keys,
 * each figure an unsigned 64-bit int, "pps" a list of pp_as_tuple's). */
static PyObject *engine_stop(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    dhatc_mode_t mode;
    int lost;
    if (dhatc_session_stop(&mode, &lost) < 0) {
        return NULL;
    }

    dhatc_stats_t stats = dhatc_profile_stats();
    uint32_t count = dhatc_profile_pp_count();
    frame_objects_t frame_objects = {0};
    PyObject *pps = PyList_New(count);
    for (uint32_t id = 0; pps != NULL && id < count; id++) {
        dhatc_pp_figures_t pp;
        dhatc_profile_pp_figures(id, &pp);
        PyObject *item = pp_as_tuple(&frame_objects, &pp);
        if (item == NULL) {
            Py_CLEAR(pps);
            break;
        }
        PyList_SET_ITEM(pps, id, item);
    }
    frame_objects_release(&frame_objects);
    PyObject *objects = pps != NULL ? native_objects() : NULL;
    if (objects == NULL) {
        Py_CLEAR(pps);
    }
    PyObject *result = NULL;
    if (pps != NULL) {
        result = Py_BuildValue("{s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:i,s:N}", "mode",
                               mode == DHATC_MODE_HEAP ? "heap" : "ad-hoc", "total_blocks",
                               ULL(stats.total_blocks), "total_bytes", ULL(stats.total_bytes),
                               "curr_blocks", ULL(stats.curr_blocks), "curr_bytes",
                               ULL(stats.curr_bytes), "max_blocks", ULL(stats.max_blocks),
                               "max_bytes", ULL(stats.max_bytes), "time_of_peak",
                               ULL(dhatc_profile_time_of_peak()), "time_of_end",
                               ULL(dhatc_profile_time_of_end()), "dropped",
                               ULL(dhatc_profile_dropped()), "saturated",
                               ULL(dhatc_profile_saturated()), "pps", pps, "hooks_lost", lost, "native_objects", objects);
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
    dhatc_session_release();
    Py_RETURN_NONE;
}

static PyObject *engine_has_uncollected(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(dhatc_session_phase() == DHATC_SESSION_STOPPED);
}

static PyObject *engine_abandon(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    dhatc_session_abandon();
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
    if (dhatc_session_rehook() < 0) {
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
    dhatc_session_set_asserted(asserted);
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
        dhatc_record_event(weight);
    }
    Py_RETURN_NONE;
}

static PyObject *engine_native_tracking(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(dhatc_native_available());
}

static PyObject *engine_retry_sigterm(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (dhatc_sigterm_retry_install() != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *engine_stop_sigterm_retry(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    dhatc_sigterm_retry_cancel();
    Py_RETURN_NONE;
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
    if (dhatc_layout_set_override(arg) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *engine_check_lines(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyCode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_check_lines() takes a code object");
        return NULL;
    }
    PyCodeObject *code = (PyCodeObject *)arg;
    uint32_t room = dhatc_linetable_max_ranges(code);
    dhatc_line_range_t *ranges = PyMem_Malloc(room * sizeof *ranges);
    if (ranges == NULL) {
        return PyErr_NoMemory();
    }
    uint32_t count = dhatc_linetable_decode(code, ranges);
    PyObject *result = NULL;
    Py_ssize_t size = dhatc_linetable_code_bytes(code);
    for (Py_ssize_t offset = -4; offset < size + 6 && result == NULL; offset += 2) {
        /* PyCode_Addr2Line's own range (3.10+ asserts 0 <= offset < size). */
        if (offset >= size && PY_VERSION_HEX >= 0x030A0000) {
            break;
        }
        int expected = PyCode_Addr2Line(code, (int)offset);
        int32_t got = dhatc_linetable_line(ranges, count, (int32_t)offset);
        if (expected != got || count > room) {
            result = Py_BuildValue("(nii)", offset, expected, (int)got);
        }
    }
    PyMem_Free(ranges);
    if (result == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return result;
}

static PyObject *engine_lines_decoded(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(dhatc_codetable_decodes());
}

static PyMethodDef engine_methods[] = {
    {"call_boundary", engine_call_boundary, METH_NOARGS,
     "call_boundary()\n--\n\nThe address of the shim (3.12+) that the evaluation loop's "
     "call running the caller keeps on its C stack; None before 3.12."},
    {"interpreter_object", engine_interpreter_object, METH_NOARGS,
     "interpreter_object()\n--\n\nThe file and load bias of the object holding the "
     "interpreter (the executable or libpython), for finding its evaluation loop."},
    {"start", engine_start, METH_VARARGS,
     "start(mode, trim, skip, this_thread_only=False, native=None)\n--\n\nStarts a profile "
     "(1 heap, 2 ad hoc), keeping at most `trim` frames per stack (-1: all) and treating the "
     "frame `skip` levels up as the root; optionally counting only the calling thread; with "
     "native=(unwinder capsule, evaluation loop ranges, keep interpreter frames), mixed "
     "native and Python stacks."},
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
    {"retry_sigterm", engine_retry_sigterm, METH_NOARGS,
     "retry_sigterm()\n--\n\nOnce signal.signal has set a Python handler for SIGTERM, in "
     "the main thread: until stop_sigterm_retry(), each SIGTERM is followed by another "
     "one to this thread a moment later, so that one that came just before a blocking "
     "call still interrupts it and the handler runs.  Per process (again after fork); "
     "OSError if it cannot be set up."},
    {"stop_sigterm_retry", engine_stop_sigterm_retry, METH_NOARGS,
     "stop_sigterm_retry()\n--\n\nThe SIGTERM handler has run: no SIGTERM is sent again."},
    {"_layout_offsets", engine_layout_offsets, METH_NOARGS,
     "_layout_offsets()\n--\n\nA copy of the running interpreter's published debug offsets "
     "(bytes; CPython 3.13+), or None."},
    {"_check_layout", engine_check_layout, METH_O,
     "_check_layout(offsets)\n--\n\nThe check start() makes, on a given copy of the "
     "offsets (for tests): raises RuntimeError on a mismatch."},
    {"_set_test_layout", engine_set_test_layout, METH_O,
     "_set_test_layout(offsets)\n--\n\nMakes start() check these offsets instead of the "
     "interpreter's own (None: its own again).  For tests."},
    {"_lines_decoded", engine_lines_decoded, METH_NOARGS,
     "_lines_decoded()\n--\n\nHow many line tables the running or last profile decoded "
     "(one per code object).  For tests."},
    {"_check_lines", engine_check_lines, METH_O,
     "_check_lines(code)\n--\n\nCompares the engine's decoded line table of `code` with "
     "PyCode_Addr2Line at every offset: None, or the first (offset, expected, got) that "
     "differs.  For tests."},
    {NULL, NULL, 0, NULL},
};

/* fork: the child must not record into (or save) the parent's profile. */
static void after_fork_child(void)
{
    dhatc_session_after_fork_child();
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
    if (dhatc_stats_types_ready() < 0 || dhatc_session_ready() < 0) {
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
    PyObject *already_running = dhatc_session_already_running_error();
    Py_INCREF(already_running);
    if (PyModule_AddObject(module, "ProfilerAlreadyRunningError", already_running) < 0) {
        Py_DECREF(already_running);
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
