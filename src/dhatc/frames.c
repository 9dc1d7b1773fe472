#include "frames.h"

#include "codetable.h"
#include "cpython_internal.h"

typedef dhatc_py_frame_t frame_t;

/* The frame that started the profiler and its code (the frame's memory can
 * be reused by a later call, so both must match). */
static const frame_t *root_frame;
static const PyCodeObject *root_code;

static inline frame_t *top_frame(PyThreadState *tstate)
{
#if PY_VERSION_HEX >= 0x030D0000
    return tstate->current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
    return tstate->cframe->current_frame;
#else
    return tstate->frame;
#endif
}

static inline frame_t *caller_of(frame_t *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    return frame->previous;
#else
    return frame->f_back;
#endif
}

/* The frame's code object and byte offset of its current instruction, or
 * NULL for frames that are not (yet) Python code: C-stack shims (3.12+) and
 * frames still being set up (3.11+). */
static inline PyCodeObject *code_and_offset(frame_t *frame, int32_t *offset)
{
#if PY_VERSION_HEX >= 0x030E0000
    /* Owners from FRAME_OWNED_BY_INTERPRETER up (entry frames, the C-stack
     * shim of 3.14, the base frame of 3.15) are not Python code; nor is a
     * frame whose executable is not a code object. */
    if (frame->owner >= FRAME_OWNED_BY_INTERPRETER || PyStackRef_IsNull(frame->f_executable)) {
        return NULL;
    }
    PyObject *executable = PyStackRef_AsPyObjectBorrow(frame->f_executable);
    if (executable == NULL || !PyCode_Check(executable) || _PyFrame_IsIncomplete(frame)) {
        return NULL;
    }
    PyCodeObject *code = (PyCodeObject *)executable;
    *offset = (int32_t)((char *)frame->instr_ptr - (char *)_PyCode_CODE(code));
    return code;
#elif PY_VERSION_HEX >= 0x030D0000
    if (frame->owner == FRAME_OWNED_BY_CSTACK || !PyCode_Check(frame->f_executable)) {
        return NULL;
    }
    PyCodeObject *code = (PyCodeObject *)frame->f_executable;
    if (_PyFrame_IsIncomplete(frame)) {
        return NULL;
    }
    *offset = (int32_t)((char *)frame->instr_ptr - (char *)_PyCode_CODE(code));
    return code;
#elif PY_VERSION_HEX >= 0x030B0000
#if PY_VERSION_HEX >= 0x030C0000
    if (frame->owner == FRAME_OWNED_BY_CSTACK) {
        return NULL;
    }
#endif
    if (_PyFrame_IsIncomplete(frame)) {
        return NULL;
    }
    PyCodeObject *code = frame->f_code;
    *offset = (int32_t)((char *)frame->prev_instr - (char *)_PyCode_CODE(code));
    return code;
#elif PY_VERSION_HEX >= 0x030A0000
    *offset = frame->f_lasti * (int32_t)sizeof(_Py_CODEUNIT); /* 3.10 counts code units */
    return frame->f_code;
#else
    *offset = frame->f_lasti; /* 3.9 counts bytes */
    return frame->f_code;
#endif
}

void dhatc_frames_set_root(int skip)
{
    PyThreadState *tstate = PyThreadState_Get();
    frame_t *frame = top_frame(tstate);
    int32_t offset;
    while (frame != NULL && (skip > 0 || code_and_offset(frame, &offset) == NULL)) {
        if (code_and_offset(frame, &offset) != NULL) {
            skip--;
        }
        frame = caller_of(frame);
    }
    root_frame = frame;
    root_code = frame != NULL ? code_and_offset(frame, &offset) : NULL;
}

void dhatc_frames_clear_root(void)
{
    root_frame = NULL;
    root_code = NULL;
}

uint32_t dhatc_frames_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                              uint64_t *hash, dhatc_kind_t kind)
{
    uint64_t h = DHATC_HASH_SEED;
    uint32_t depth = 0;
    frame_t *frame = tstate != NULL ? top_frame(tstate) : NULL;
    for (; frame != NULL && depth < limit; frame = caller_of(frame)) {
        int32_t offset;
        PyCodeObject *code = code_and_offset(frame, &offset);
        if (code == NULL) {
            continue;
        }
        out[depth] = (dhatc_frame_t){.code = code, .where = offset, .kind = DHATC_FRAME_PYTHON};
        h = dhatc_hash_step(h, &out[depth]);
        depth++;
        if (frame == root_frame && code == root_code) {
            break;
        }
    }
    *hash = dhatc_hash_finish(h, (uint32_t)kind, depth);
    return depth;
}

bool dhatc_frames_canonicalize(const dhatc_frame_t *captured, uint32_t depth, dhatc_frame_t *out)
{
    for (uint32_t i = 0; i < depth; i++) {
        out[i] = captured[i];
        if (captured[i].kind == DHATC_FRAME_PYTHON &&
            !dhatc_codetable_resolve((PyCodeObject *)captured[i].code, captured[i].where,
                                     &out[i].code, &out[i].where)) {
            return false;
        }
    }
    return true;
}
