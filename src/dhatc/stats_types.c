#include "stats_types.h"

#include <structmember.h>

#include "profile.h"
#include "session.h"

/* The constructors' figures: ints from 0 to 2**64 - 1, checked exactly
 * ("K" would wrap -1 to 2**64 - 1 and 2**64 to 0). */
static int figures_from(PyObject *const *objects, char *const *names, unsigned long long *out,
                        int count)
{
    for (int i = 0; i < count; i++) {
        if (!PyLong_Check(objects[i]) || PyBool_Check(objects[i])) {
            PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", names[i],
                         Py_TYPE(objects[i])->tp_name);
            return -1;
        }
        out[i] = PyLong_AsUnsignedLongLong(objects[i]);
        if (out[i] == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be an int from 0 to 2**64 - 1, got %R",
                         names[i], objects[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- HeapStats ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    unsigned long long total_blocks, total_bytes;
    unsigned long long curr_blocks, curr_bytes;
    unsigned long long max_blocks, max_bytes;
} HeapStatsObject;

static PyObject *heap_stats_new_from(PyTypeObject *type, const dhatc_stats_t *stats)
{
    HeapStatsObject *self = (HeapStatsObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->total_blocks = stats->total_blocks;
        self->total_bytes = stats->total_bytes;
        self->curr_blocks = stats->curr_blocks;
        self->curr_bytes = stats->curr_bytes;
        self->max_blocks = stats->max_blocks;
        self->max_bytes = stats->max_bytes;
    }
    return (PyObject *)self;
}

static PyObject *heap_stats_get(PyObject *unused_self, PyObject *unused_args)
{
    (void)unused_self;
    (void)unused_args;
    /* Snapshot first: nothing may allocate before it. */
    dhatc_mode_t mode = dhatc_profile_running();
    dhatc_stats_t stats = dhatc_profile_stats();
    if (mode == DHATC_MODE_HEAP) {
        return heap_stats_new_from(&dhatc_HeapStats_Type, &stats);
    }
    if (mode == DHATC_MODE_AD_HOC) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting heap stats while doing ad hoc profiling");
    } else if (dhatc_session_asserted()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting heap stats after the profiler has asserted");
    } else {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting heap stats when no profiler is running "
                        "(start one with dhatc.Profiler(mode=\"heap\"))");
    }
    return NULL;
}

static PyObject *heap_stats_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"total_blocks", "total_bytes", "curr_blocks",
                            "curr_bytes",   "max_blocks",  "max_bytes", NULL};
    PyObject *o[6];
    unsigned long long v[6];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOO:HeapStats", names, &o[0], &o[1],
                                     &o[2], &o[3], &o[4], &o[5]) ||
        figures_from(o, names, v, 6) < 0) {
        return NULL;
    }
    dhatc_stats_t stats = {.total_blocks = v[0], .total_bytes = v[1], .curr_blocks = v[2],
                           .curr_bytes = v[3], .max_blocks = v[4], .max_bytes = v[5]};
    return heap_stats_new_from(type, &stats);
}

static PyObject *heap_stats_as_tuple(PyObject *self)
{
    HeapStatsObject *s = (HeapStatsObject *)self;
    return Py_BuildValue("(KKKKKK)", s->total_blocks, s->total_bytes, s->curr_blocks,
                         s->curr_bytes, s->max_blocks, s->max_bytes);
}

static PyObject *heap_stats_repr(PyObject *self)
{
    HeapStatsObject *s = (HeapStatsObject *)self;
    return PyUnicode_FromFormat(
        "HeapStats(total_blocks=%llu, total_bytes=%llu, curr_blocks=%llu, curr_bytes=%llu, "
        "max_blocks=%llu, max_bytes=%llu)",
        s->total_blocks, s->total_bytes, s->curr_blocks, s->curr_bytes, s->max_blocks,
        s->max_bytes);
}

/* Equality and hashing through the tuple of fields, shared by both types. */
static PyObject *stats_richcompare(PyObject *a, PyObject *b, int op,
                                   PyObject *(*as_tuple)(PyObject *))
{
    if (Py_TYPE(a) != Py_TYPE(b) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *ta = as_tuple(a), *tb = ta ? as_tuple(b) : NULL;
    PyObject *result = tb ? PyObject_RichCompare(ta, tb, op) : NULL;
    Py_XDECREF(ta);
    Py_XDECREF(tb);
    return result;
}

static Py_hash_t stats_hash(PyObject *self, PyObject *(*as_tuple)(PyObject *))
{
    PyObject *t = as_tuple(self);
    if (t == NULL) {
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(t);
    Py_DECREF(t);
    return hash;
}

static PyObject *heap_stats_richcompare(PyObject *a, PyObject *b, int op)
{
    return stats_richcompare(a, b, op, heap_stats_as_tuple);
}

static Py_hash_t heap_stats_hash(PyObject *self)
{
    return stats_hash(self, heap_stats_as_tuple);
}

static PyMemberDef heap_stats_members[] = {
    {"total_blocks", T_ULONGLONG, offsetof(HeapStatsObject, total_blocks), READONLY,
     "Number of blocks allocated over the whole profile."},
    {"total_bytes", T_ULONGLONG, offsetof(HeapStatsObject, total_bytes), READONLY,
     "Number of bytes allocated over the whole profile."},
    {"curr_blocks", T_ULONGLONG, offsetof(HeapStatsObject, curr_blocks), READONLY,
     "Number of blocks live now."},
    {"curr_bytes", T_ULONGLONG, offsetof(HeapStatsObject, curr_bytes), READONLY,
     "Number of bytes live now."},
    {"max_blocks", T_ULONGLONG, offsetof(HeapStatsObject, max_blocks), READONLY,
     "Number of blocks live at the global peak (t-gmax)."},
    {"max_bytes", T_ULONGLONG, offsetof(HeapStatsObject, max_bytes), READONLY,
     "Number of bytes live at the global peak (t-gmax)."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef heap_stats_methods[] = {
    {"get", heap_stats_get, METH_NOARGS | METH_STATIC,
     "get() -> HeapStats\n--\n\nA snapshot of the running heap profile's figures.  Raises "
     "RuntimeError when no heap profiler runs."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject dhatc_HeapStats_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dhatc.HeapStats",
    .tp_basicsize = sizeof(HeapStatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HeapStats(*, total_blocks, total_bytes, curr_blocks, curr_bytes, max_blocks, "
              "max_bytes)\n--\n\nFigures of a heap profile, as returned by HeapStats.get().",
    .tp_new = heap_stats_new,
    .tp_repr = heap_stats_repr,
    .tp_richcompare = heap_stats_richcompare,
    .tp_hash = heap_stats_hash,
    .tp_members = heap_stats_members,
    .tp_methods = heap_stats_methods,
};

/* ---- AdHocStats --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    unsigned long long total_events, total_units;
} AdHocStatsObject;

static PyObject *ad_hoc_stats_new_from(PyTypeObject *type, unsigned long long events,
                                       unsigned long long units)
{
    AdHocStatsObject *self = (AdHocStatsObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->total_events = events;
        self->total_units = units;
    }
    return (PyObject *)self;
}

static PyObject *ad_hoc_stats_get(PyObject *unused_self, PyObject *unused_args)
{
    (void)unused_self;
    (void)unused_args;
    dhatc_mode_t mode = dhatc_profile_running();
    dhatc_stats_t stats = dhatc_profile_stats();
    if (mode == DHATC_MODE_AD_HOC) {
        return ad_hoc_stats_new_from(&dhatc_AdHocStats_Type, stats.total_blocks,
                                     stats.total_bytes);
    }
    if (mode == DHATC_MODE_HEAP) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting ad hoc stats while doing heap profiling");
    } else if (dhatc_session_asserted()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting ad hoc stats after the profiler has asserted");
    } else {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhat: getting ad hoc stats when no profiler is running "
                        "(start one with dhatc.Profiler(mode=\"ad-hoc\"))");
    }
    return NULL;
}

static PyObject *ad_hoc_stats_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"total_events", "total_units", NULL};
    PyObject *o[2];
    unsigned long long v[2];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OO:AdHocStats", names, &o[0], &o[1]) ||
        figures_from(o, names, v, 2) < 0) {
        return NULL;
    }
    return ad_hoc_stats_new_from(type, v[0], v[1]);
}

static PyObject *ad_hoc_stats_as_tuple(PyObject *self)
{
    AdHocStatsObject *s = (AdHocStatsObject *)self;
    return Py_BuildValue("(KK)", s->total_events, s->total_units);
}

static PyObject *ad_hoc_stats_repr(PyObject *self)
{
    AdHocStatsObject *s = (AdHocStatsObject *)self;
    return PyUnicode_FromFormat("AdHocStats(total_events=%llu, total_units=%llu)",
                                s->total_events, s->total_units);
}

static PyObject *ad_hoc_stats_richcompare(PyObject *a, PyObject *b, int op)
{
    return stats_richcompare(a, b, op, ad_hoc_stats_as_tuple);
}

static Py_hash_t ad_hoc_stats_hash(PyObject *self)
{
    return stats_hash(self, ad_hoc_stats_as_tuple);
}

static PyMemberDef ad_hoc_stats_members[] = {
    {"total_events", T_ULONGLONG, offsetof(AdHocStatsObject, total_events), READONLY,
     "Number of ad hoc events recorded."},
    {"total_units", T_ULONGLONG, offsetof(AdHocStatsObject, total_units), READONLY,
     "Sum of the weights of the ad hoc events recorded."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef ad_hoc_stats_methods[] = {
    {"get", ad_hoc_stats_get, METH_NOARGS | METH_STATIC,
     "get() -> AdHocStats\n--\n\nA snapshot of the running ad hoc profile's figures.  Raises "
     "RuntimeError when no ad hoc profiler runs."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject dhatc_AdHocStats_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dhatc.AdHocStats",
    .tp_basicsize = sizeof(AdHocStatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AdHocStats(*, total_events, total_units)\n--\n\nFigures of an ad hoc profile, "
              "as returned by AdHocStats.get().",
    .tp_new = ad_hoc_stats_new,
    .tp_repr = ad_hoc_stats_repr,
    .tp_richcompare = ad_hoc_stats_richcompare,
    .tp_hash = ad_hoc_stats_hash,
    .tp_members = ad_hoc_stats_members,
    .tp_methods = ad_hoc_stats_methods,
};

int dhatc_stats_types_ready(void)
{
    return PyType_Ready(&dhatc_HeapStats_Type) < 0 || PyType_Ready(&dhatc_AdHocStats_Type) < 0
               ? -1
               : 0;
}
