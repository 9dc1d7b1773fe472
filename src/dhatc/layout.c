#include "layout.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#include "cpython_internal.h"

/* What check(NULL) compares instead of the interpreter's own (tests only). */
static PyObject *override;

int dhatc_layout_set_override(PyObject *offsets)
{
    if (offsets != Py_None && !PyBytes_Check(offsets)) {
        PyErr_SetString(PyExc_TypeError, "dhatc: the offsets must be bytes or None");
        return -1;
    }
    Py_XDECREF(override);
    override = NULL;
    if (offsets != Py_None) {
        Py_INCREF(offsets);
        override = offsets;
    }
    return 0;
}

#if PY_VERSION_HEX >= 0x030D0000

/* The running interpreter's offsets: the first field of _PyRuntime. */
static const _Py_DebugOffsets *running_offsets(void)
{
    return (const _Py_DebugOffsets *)dlsym(RTLD_DEFAULT, "_PyRuntime");
}

/* "3.14.10" from Py_GetVersion()'s "3.14.10 (main, ...": no allocation. */
static int version_length(const char *version)
{
    int n = 0;
    while (version[n] != '\0' && version[n] != ' ') {
        n++;
    }
    return n;
}

static int mismatch(const char *what, unsigned long long found, unsigned long long expected)
{
    const char *version = Py_GetVersion();
    PyErr_Format(PyExc_RuntimeError,
                 "dhatc: this build of dhatc does not match the running interpreter, CPython "
                 "%.*s (%s: %llu, dhatc was built for %llu), so it cannot read its frames "
                 "safely; rebuild dhatc for this interpreter "
                 "(pip install --force-reinstall --no-cache-dir --no-binary dhatc dhatc, or "
                 "pip install --force-reinstall . in a checkout)",
                 version_length(version), version, what, found, expected);
    return -1;
}

#define SAME(field, expected)                                                     \
    do {                                                                          \
        if (offsets->field != (uint64_t)(expected)) {                             \
            return mismatch(#field, (unsigned long long)offsets->field,           \
                            (unsigned long long)(expected));                      \
        }                                                                         \
    } while (0)

int dhatc_layout_check(const void *published, size_t size)
{
    if (published == NULL && override != NULL) {
        published = PyBytes_AS_STRING(override);
        size = (size_t)PyBytes_GET_SIZE(override);
    }
    const _Py_DebugOffsets *offsets = published != NULL ? published : running_offsets();
    if (offsets == NULL) {
        return 0; /* not exported (an unusual embedding): nothing to compare with */
    }
    if (published != NULL && size < sizeof(_Py_DebugOffsets)) {
        PyErr_Format(PyExc_ValueError, "dhatc: %zu bytes of offsets, %zu needed", size,
                     sizeof(_Py_DebugOffsets));
        return -1;
    }
    if (memcmp(offsets->cookie, _Py_Debug_Cookie, sizeof offsets->cookie) != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhatc: the running interpreter publishes no debug offsets where "
                        "CPython keeps them, so dhatc cannot check that it reads its frames "
                        "safely; rebuild dhatc for this interpreter");
        return -1;
    }
    /* Major and minor versions; offsets pin down the patch releases. */
    SAME(version >> 16, PY_VERSION_HEX >> 16);
    SAME(free_threaded, 0);
    SAME(thread_state.interp, offsetof(PyThreadState, interp));
    SAME(thread_state.current_frame, offsetof(PyThreadState, current_frame));
    SAME(interpreter_frame.previous, offsetof(_PyInterpreterFrame, previous));
    SAME(interpreter_frame.executable, offsetof(_PyInterpreterFrame, f_executable));
    SAME(interpreter_frame.instr_ptr, offsetof(_PyInterpreterFrame, instr_ptr));
    SAME(interpreter_frame.owner, offsetof(_PyInterpreterFrame, owner));
    SAME(code_object.filename, offsetof(PyCodeObject, co_filename));
    SAME(code_object.qualname, offsetof(PyCodeObject, co_qualname));
    SAME(code_object.co_code_adaptive, offsetof(PyCodeObject, co_code_adaptive));
    return 0;
}

PyObject *dhatc_layout_published(void)
{
    const _Py_DebugOffsets *offsets = running_offsets();
    if (offsets == NULL) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)offsets, sizeof *offsets);
}

#else /* 3.9 to 3.12: nothing published */

int dhatc_layout_check(const void *published, size_t size)
{
    (void)published;
    (void)size;
    (void)override;
    return 0;
}

PyObject *dhatc_layout_published(void)
{
    Py_RETURN_NONE;
}

#endif
