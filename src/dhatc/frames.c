#include "frames.h"

#include <pthread.h>
#include <string.h>

#include "codetable.h"
#include "cpython_internal.h"
#include "rawmem.h"

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

/* ---- what places a frame in the chain -------------------------------------- */

/* What tells one position of a frame in the chain from another without
 * reading its code object: the frame's address, and from 3.11 its instruction
 * pointer (which points into one code object's bytecode, and every code
 * object of a captured stack is kept alive, so the address is never another
 * code's) and owner; up to 3.10 its code object and instruction index (frame
 * objects are reused for other code). */
typedef dhatc_raw_frame_t raw_frame_t;

static inline raw_frame_t raw_frame(frame_t *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    /* Addresses use the low 48 bits: the owner fits above them, exactly. */
    return (raw_frame_t){frame, (uintptr_t)frame->instr_ptr | ((uintptr_t)frame->owner << 56)};
#elif PY_VERSION_HEX >= 0x030C0000
    return (raw_frame_t){frame, (uintptr_t)frame->prev_instr | ((uintptr_t)frame->owner << 56)};
#elif PY_VERSION_HEX >= 0x030B0000
    return (raw_frame_t){frame, (uintptr_t)frame->prev_instr};
#else
    return (raw_frame_t){frame, (uintptr_t)frame->f_code, frame->f_lasti};
#endif
}

/* The capture, made twice by the compiler: with `record_walk` (for the
 * cache) and without, so that the common loop tests nothing it does not need. */
static inline __attribute__((always_inline)) uint32_t
capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit, uint64_t *hash,
        dhatc_kind_t kind, dhatc_frames_walk_t *walk, const bool record_walk)
{
    uint64_t h = DHATC_HASH_SEED;
    uint32_t depth = 0, walked = 0;
    bool ended = true;
    const frame_t *const root = root_frame;
    const PyCodeObject *const rootcode = root_code;
    frame_t *frame = tstate != NULL ? top_frame(tstate) : NULL;
    for (; frame != NULL; frame = caller_of(frame)) {
        if (depth == limit) {
            ended = false;
            break;
        }
        if (record_walk) {
            if (walked < DHATC_FRAMES_CACHE_DEPTH) {
                walk->frames[walked] = raw_frame(frame);
            }
            walked++;
        }
        int32_t offset;
        PyCodeObject *code = code_and_offset(frame, &offset);
        if (code == NULL) {
            continue;
        }
        out[depth] = (dhatc_frame_t){.code = code, .where = offset, .kind = DHATC_FRAME_PYTHON};
        h = dhatc_hash_step(h, &out[depth]);
        depth++;
        if (frame == root && code == rootcode) {
            ended = false;
            break;
        }
    }
    if (record_walk) {
        walk->count = walked;
        walk->ended = ended;
        walk->too_deep = walked > DHATC_FRAMES_CACHE_DEPTH;
    }
    *hash = dhatc_hash_finish(h, (uint32_t)kind, depth);
    return depth;
}

uint32_t dhatc_frames_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                              uint64_t *hash, dhatc_kind_t kind, dhatc_frames_walk_t *walk)
{
    return walk != NULL ? capture(tstate, out, limit, hash, kind, walk, true)
                        : capture(tstate, out, limit, hash, kind, NULL, false);
}

/* ---- one call of the evaluation loop at a time ---------------------------- */

/* Whether `frame` is the shim an evaluation-loop call links below the first
 * frame it runs (3.12+), which marks where that call began. */
static inline bool is_call_boundary(const frame_t *frame)
{
#if PY_VERSION_HEX >= 0x030E0000
    return frame->owner >= FRAME_OWNED_BY_INTERPRETER;
#elif PY_VERSION_HEX >= 0x030C0000
    return frame->owner == FRAME_OWNED_BY_CSTACK;
#else
    (void)frame;
    return false;
#endif
}

/* Whether `frame` is the first frame its evaluation-loop call ran (up to
 * 3.11: a flag of 3.11's frames, and every frame of 3.9/3.10). */
static inline bool is_first_of_call(const frame_t *frame)
{
#if PY_VERSION_HEX >= 0x030C0000
    (void)frame;
    return false;
#elif PY_VERSION_HEX >= 0x030B0000
    return frame->is_entry;
#else
    (void)frame;
    return true;
#endif
}

const void *dhatc_frames_first_call_boundary(void)
{
    for (frame_t *frame = top_frame(PyThreadState_Get()); frame != NULL; frame = caller_of(frame)) {
        if (is_call_boundary(frame)) {
            return frame;
        }
    }
    return NULL;
}

/* `frame`, or NULL if no Python code is left from it on: 3.15 ends every
 * thread's chain with a base frame owned by the interpreter, which no
 * evaluation-loop call of the C stack runs. */
static frame_t *rest_of_chain(frame_t *frame)
{
    for (frame_t *f = frame; f != NULL; f = caller_of(f)) {
        if (!is_call_boundary(f)) {
            return frame;
        }
    }
    return NULL;
}

void dhatc_frames_cursor_start(dhatc_frames_cursor_t *cursor, PyThreadState *tstate)
{
    cursor->next = tstate != NULL ? rest_of_chain(top_frame(tstate)) : NULL;
    cursor->at_root = false;
}

uint32_t dhatc_frames_next_call(dhatc_frames_cursor_t *cursor, dhatc_frame_t *out, uint32_t room)
{
    uint32_t depth = 0;
    frame_t *frame = (frame_t *)cursor->next;
    while (frame != NULL && !cursor->at_root) {
        frame_t *caller = caller_of(frame);
        if (is_call_boundary(frame)) {
            frame = caller;
            break;
        }
        int32_t offset;
        PyCodeObject *code = code_and_offset(frame, &offset);
        if (code != NULL && depth < room) {
            out[depth++] = (dhatc_frame_t){.code = code, .where = offset, .kind = DHATC_FRAME_PYTHON};
        }
        cursor->at_root = frame == root_frame && code != NULL && code == root_code;
        bool first = is_first_of_call(frame);
        frame = caller;
        if (first) {
            break;
        }
    }
    cursor->next = rest_of_chain(frame);
    return depth;
}

/* ---- the per-thread cache of recent stacks ------------------------------- */

/* Whether `frame` is where `cached` was: its address first, so that a chain
 * shorter than the cached one (a NULL frame) is told apart before anything
 * is read through it (a cached frame is never NULL). */
static inline bool is_cached_frame(frame_t *frame, const raw_frame_t *cached)
{
    if ((const void *)frame != cached->frame) {
        return false;
    }
    raw_frame_t raw = raw_frame(frame);
#if PY_VERSION_HEX < 0x030B0000
    if (raw.extra != cached->extra) {
        return false;
    }
#endif
    return raw.position == cached->position;
}

/* Sets of two ways: with one way per set, two stacks of a loop that fell in
 * one set (how the frames' addresses hash decides; seen in some layouts of
 * the process and not others) would evict each other on every call. */
enum {
    CACHE_SET_BITS = 5,
    CACHE_SETS = 1 << CACHE_SET_BITS,
    CACHE_DEPTH = DHATC_FRAMES_CACHE_DEPTH,
};

/* Code that allocates from frames at new addresses each time (coroutines,
 * generators made per item) misses every lookup, and each miss costs the
 * lookup and remembering the walk: after a run of misses the thread's cache
 * rests for a while (it is not looked at), then it is tried again.  Counted
 * on the misses' path only, so that a hit costs nothing more. */
enum {
    CACHE_MAX_MISSES = 64, /* misses in a row that rest the cache */
    CACHE_REST = 4096,     /* lookups skipped while resting */
};

typedef struct {
    uint64_t tag;        /* the profile's generation and the allocator kind; 0: empty */
    uint32_t pp;
    uint32_t count;      /* raw frames walked, skipped ones included */
    bool ended;          /* the walk ran to the end of the chain */
    raw_frame_t frames[CACHE_DEPTH];
} cache_entry_t;

typedef struct {
    cache_entry_t ways[2];
    uint32_t recent; /* the way hit or filled last: looked at first, replaced last */
} cache_set_t;

typedef struct {
    cache_set_t sets[CACHE_SETS];
    uint32_t misses; /* in a row */
    uint32_t rest;   /* lookups still to skip while resting */
} thread_cache_t;

/* This thread's cache, made on first use (one mapping per thread that
 * allocates while a profile runs), unmapped at thread exit; `thread_cache`
 * is the same one when it is looked at, NULL while it rests. */
static __thread thread_cache_t *thread_cache_made __attribute__((tls_model("initial-exec")));
static __thread thread_cache_t *thread_cache __attribute__((tls_model("initial-exec")));
static pthread_key_t cache_key;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;

static void forget_thread_cache(void *cache)
{
    /* Before unmapping: later destructors may allocate. */
    thread_cache = thread_cache_made = NULL;
    dhatc_rawmem_free(cache, sizeof(thread_cache_t));
}

static void make_cache_key(void)
{
    if (pthread_key_create(&cache_key, forget_thread_cache) != 0) {
        cache_key = (pthread_key_t)-1;
    }
}

static thread_cache_t *this_thread_cache(void)
{
    if (thread_cache_made == NULL) {
        pthread_once(&cache_key_once, make_cache_key);
        thread_cache_t *cache = dhatc_rawmem_alloc(sizeof(thread_cache_t));
        if (cache == NULL || cache_key == (pthread_key_t)-1 ||
            pthread_setspecific(cache_key, cache) != 0) {
            dhatc_rawmem_free(cache, sizeof(thread_cache_t));
            return NULL;
        }
        thread_cache = thread_cache_made = cache;
    }
    return thread_cache_made;
}

/* Generations count from 1, so no tag is 0. */
_Static_assert(DHATC_KIND_COUNT <= 256, "a kind fits in a tag's low byte");
static inline uint64_t tag_of(uint64_t generation, uint32_t kind)
{
    return generation << 8 | kind;
}

/* The set of a stack: by its top two frames (recursive code has many stacks
 * that share the top one) and the kind, which goes to the high bits: in the
 * low ones, blocks of two kinds made by neighbouring instructions could
 * cancel out and evict each other on every call. */
static inline cache_set_t *set_of(thread_cache_t *cache, const raw_frame_t *top,
                                  uintptr_t caller_position, uint32_t kind)
{
    uintptr_t key = (uintptr_t)top->frame ^ (top->position >> 1) ^ (caller_position << 7) ^
                    ((uintptr_t)kind << 58);
    key *= UINT64_C(0x9E3779B97F4A7C15);
    return &cache->sets[key >> (64 - CACHE_SET_BITS)];
}

static inline bool same_raw_frame(const raw_frame_t *a, const raw_frame_t *b)
{
#if PY_VERSION_HEX < 0x030B0000
    if (a->extra != b->extra) {
        return false;
    }
#endif
    return a->frame == b->frame && a->position == b->position;
}

/* The top two frames of a chain, read once: they choose the set, and they
 * are the first two an entry is compared with (most stacks of a loop differ
 * there), so only the frames below them are read again. */
typedef struct {
    raw_frame_t top;
    frame_t *caller; /* NULL: the chain ends below the top */
    raw_frame_t caller_raw;
} chain_head_t;

/* Whether the chain of `head` is the stack `entry` remembers (an entry
 * remembers one frame at least). */
static inline bool entry_matches(const cache_entry_t *entry, const chain_head_t *head,
                                 uint64_t tag)
{
    if (entry->tag != tag || !same_raw_frame(&entry->frames[0], &head->top)) {
        return false;
    }
    frame_t *frame = head->caller;
    if (entry->count > 1) {
        if (frame == NULL || !same_raw_frame(&entry->frames[1], &head->caller_raw)) {
            return false;
        }
        frame = caller_of(frame);
        for (uint32_t i = 2; i < entry->count; i++) {
            if (!is_cached_frame(frame, &entry->frames[i])) {
                return false;
            }
            frame = caller_of(frame);
        }
    }
    return !entry->ended || frame == NULL; /* not if the chain goes on below now */
}

/* Not looked at: the cache is not made yet (cache_pp() makes it), or rests. */
static __attribute__((noinline)) dhatc_cache_answer_t no_cache(const frame_t *frame)
{
    thread_cache_t *cache = thread_cache_made;
    if (cache == NULL) {
        return frame != NULL ? DHATC_CACHE_MISS : DHATC_CACHE_OFF;
    }
    if (--cache->rest == 0) {
        thread_cache = cache;
    }
    return DHATC_CACHE_OFF;
}

static __attribute__((noinline)) dhatc_cache_answer_t missed(thread_cache_t *cache)
{
    if (++cache->misses == CACHE_MAX_MISSES) {
        cache->misses = 0;
        cache->rest = CACHE_REST;
        thread_cache = NULL;
    }
    return DHATC_CACHE_MISS;
}

dhatc_cache_answer_t dhatc_frames_cached_pp(PyThreadState *tstate, dhatc_kind_t kind,
                                            uint64_t generation, uint32_t *pp)
{
    thread_cache_t *cache = thread_cache;
    frame_t *frame = top_frame(tstate);
    if (cache == NULL) {
        return no_cache(frame);
    }
    if (frame == NULL) {
        return DHATC_CACHE_OFF;
    }
    chain_head_t head = {.top = raw_frame(frame), .caller = caller_of(frame)};
    if (head.caller != NULL) {
        head.caller_raw = raw_frame(head.caller);
    } else {
        head.caller_raw = (raw_frame_t){0};
    }
    cache_set_t *set = set_of(cache, &head.top, head.caller_raw.position, (uint32_t)kind);
    uint64_t tag = tag_of(generation, (uint32_t)kind);
    uint32_t way = set->recent;
    if (!entry_matches(&set->ways[way], &head, tag)) {
        way ^= 1;
        if (!entry_matches(&set->ways[way], &head, tag)) {
            return missed(cache);
        }
        set->recent = way;
    }
    cache->misses = 0;
    *pp = set->ways[way].pp;
    return DHATC_CACHE_HIT;
}

void dhatc_frames_cache_pp(const dhatc_frames_walk_t *walk, dhatc_kind_t kind,
                           uint64_t generation, uint32_t pp)
{
    if (walk->too_deep || walk->count == 0) {
        return;
    }
    thread_cache_t *cache = this_thread_cache();
    if (cache == NULL) {
        return;
    }
    uintptr_t caller_position = 0;
    if (walk->count > 1) {
        caller_position = walk->frames[1].position;
    } else if (!walk->ended) {
        return; /* the walk stopped at the top: its caller is not known */
    }
    cache_set_t *set = set_of(cache, &walk->frames[0], caller_position, (uint32_t)kind);
    set->recent ^= 1;
    cache_entry_t *entry = &set->ways[set->recent];
    entry->tag = tag_of(generation, (uint32_t)kind);
    entry->pp = pp;
    entry->count = walk->count;
    entry->ended = walk->ended;
    memcpy(entry->frames, walk->frames, walk->count * sizeof walk->frames[0]);
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
