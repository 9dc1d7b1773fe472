/* Whether the running interpreter lays out the structs the frame walker reads
 * (frames.c) as this build of dhatc expects.
 *
 * Internal offsets have changed between patch releases of one minor version
 * before, and a walker reading the wrong offsets crashes or records garbage.
 * From 3.13 CPython publishes the offsets out-of-process tools rely on
 * (_Py_DebugOffsets, at the start of _PyRuntime); the ones dhatc reads are
 * compared with the offsets it was compiled with.  Before 3.13 nothing is
 * published, and the extension's ABI tag already pins the minor version. */
#ifndef DHATC_LAYOUT_H
#define DHATC_LAYOUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* 0 if the layout matches; -1 with a RuntimeError set that names the
 * interpreter's version, the field that differs and what to do.  `published`
 * is a copy of the interpreter's _Py_DebugOffsets (for tests), NULL for the
 * running interpreter's own; `size` its size in bytes.  Needs the GIL. */
int dhatc_layout_check(const void *published, size_t size);

/* Makes dhatc_layout_check(NULL, 0) check a copy of offsets instead of the
 * interpreter's own (bytes, for tests; None: its own again).  -1 with a
 * TypeError for anything else. */
int dhatc_layout_set_override(PyObject *offsets);

/* The running interpreter's published offsets as bytes (a copy to doctor in
 * tests), or None before 3.13 or when the interpreter does not export them. */
PyObject *dhatc_layout_published(void);

#endif
