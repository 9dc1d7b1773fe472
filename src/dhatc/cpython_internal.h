/* The interpreter's internal structs that dhatc reads directly, per CPython
 * version: frames (frames.c) and the layout they are checked against
 * (layout.c).  Included only by those two files.
 *
 * The public frame API allocates (it makes frame objects on 3.11+), and an
 * allocator hook must not, so the frame walker reads _PyInterpreterFrame
 * (3.11+) or PyFrameObject (3.9/3.10) itself.  Their layouts are known for
 * these versions only; a new version needs a new branch here, in frames.c's
 * code_and_offset(), and in layout.c. */
#ifndef DHATC_CPYTHON_INTERNAL_H
#define DHATC_CPYTHON_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x03100000
#error "dhatc supports CPython 3.9 to 3.15"
#endif
#ifdef Py_GIL_DISABLED
#error "dhatc does not support free-threaded CPython builds yet"
#endif

#if PY_VERSION_HEX >= 0x030B0000
#define Py_BUILD_CORE 1
/* CPython's internal headers are not written for -Wextra -Werror. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#if PY_VERSION_HEX >= 0x030E0000
/* 3.14+: frames hold tagged stack references (_PyStackRef); the helpers
 * moved to pycore_interpframe.h; the debug offsets have a header of their own. */
#include "internal/pycore_debug_offsets.h"
#include "internal/pycore_interpframe.h"
#elif PY_VERSION_HEX >= 0x030D0000
/* 3.13: _Py_DebugOffsets lives in the runtime state's header. */
#include "internal/pycore_frame.h"
#include "internal/pycore_runtime.h"
#else
#include "internal/pycore_frame.h"
#endif
#pragma GCC diagnostic pop
#undef Py_BUILD_CORE
typedef _PyInterpreterFrame dhatc_py_frame_t;
#else
#include <frameobject.h>
typedef PyFrameObject dhatc_py_frame_t;
#endif

#endif
