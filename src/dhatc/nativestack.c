#include "nativestack.h"

#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "frames.h"
#include "lock.h"

/* Native frames a capture looks at: dhatc's own on top, the interpreter's
 * dropped ones, the program's, with room to spare for deep C stacks. */
enum { MAX_NATIVE_FRAMES = 256 };

/* Written by configure() while no profile runs; read by the hooks after
 * they see a profile run (an acquire, profile.h). */
static dhatc_nativestack_config_t config;
static dhatc_range_t interpreter;  /* the interpreter's object */
static dhatc_range_t own[3];       /* the engine, the unwinder, the preload library */
static uint32_t own_count;
static char executable_path[4096]; /* the main program's file (its link map has no name) */

/* ---- the objects addresses were found in ------------------------------- */

enum { MAX_OBJECTS = 1024, PATH_POOL = 1 << 17 };

static dhatc_native_object_t objects[MAX_OBJECTS];
static _Atomic uint32_t object_count; /* entries below it are complete (release) */
static char path_pool[PATH_POOL];
static size_t path_pool_used;
static dhatc_lock_t objects_lock = DHATC_LOCK_INIT;

/* The object mapped at `address` as the dynamic linker knows it now: its
 * range, file and bias.  _dl_find_object takes no lock and allocates
 * nothing, so it is safe inside malloc; before glibc 2.35, dladdr1. */
static bool locate(uintptr_t address, uintptr_t *start, uintptr_t *end, uintptr_t *bias,
                   const char **path)
{
    struct link_map *map;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    struct dl_find_object found;
    if (_dl_find_object((void *)address, &found) != 0) {
        return false;
    }
    map = found.dlfo_link_map;
    *start = (uintptr_t)found.dlfo_map_start;
    *end = (uintptr_t)found.dlfo_map_end;
#else
    Dl_info info;
    if (dladdr1((void *)address, &info, (void **)&map, RTLD_DL_LINKMAP) == 0 || map == NULL) {
        return false;
    }
    /* Without the mapping's end: the object spans up to the next one found. */
    *start = (uintptr_t)info.dli_fbase;
    *end = address + 1;
#endif
    *bias = (uintptr_t)map->l_addr;
    *path = map->l_name != NULL && map->l_name[0] != '\0' ? map->l_name : executable_path;
    return true;
}

static const dhatc_native_object_t *known_object(uintptr_t address)
{
    uint32_t count = atomic_load_explicit(&object_count, memory_order_acquire);
    for (uint32_t i = count; i-- > 0;) { /* the newest first: recently loaded objects */
        if (objects[i].start <= address && address < objects[i].end) {
            return &objects[i];
        }
    }
    return NULL;
}

/* Remembers the object of a native frame's address, the first time an
 * address of it is seen.  (An object unloaded and another loaded at the same
 * place within one profile would keep the first one's name.) */
static void note_object(uintptr_t address)
{
    if (known_object(address) != NULL) {
        return;
    }
    uintptr_t start, end, bias;
    const char *path;
    if (!locate(address, &start, &end, &bias, &path)) {
        return; /* generated code: named by its address alone */
    }
    size_t length = strlen(path) + 1;
    dhatc_lock(&objects_lock);
    uint32_t count = atomic_load_explicit(&object_count, memory_order_relaxed);
    if (known_object(address) == NULL && count < MAX_OBJECTS &&
        length <= PATH_POOL - path_pool_used) {
        char *copy = path_pool + path_pool_used;
        memcpy(copy, path, length);
        path_pool_used += length;
        objects[count] = (dhatc_native_object_t){start, end, bias, copy};
        atomic_store_explicit(&object_count, count + 1, memory_order_release);
    }
    dhatc_unlock(&objects_lock);
}

void dhatc_nativestack_after_fork_child(void)
{
    dhatc_lock_reset(&objects_lock);
}

const dhatc_native_object_t *dhatc_nativestack_objects(uint32_t *count)
{
    *count = atomic_load_explicit(&object_count, memory_order_acquire);
    return objects;
}

/* ---- configuration ------------------------------------------------------- */

static int object_range(const void *address, const char *what, dhatc_range_t *range)
{
    uintptr_t bias;
    const char *path;
    if (!locate((uintptr_t)address, &range->start, &range->end, &bias, &path)) {
        PyErr_Format(PyExc_RuntimeError, "dhatc: cannot find %s's object in the process", what);
        return -1;
    }
    return 0;
}

static void find_executable(void)
{
    ssize_t n = readlink("/proc/self/exe", executable_path, sizeof executable_path - 1);
    executable_path[n > 0 ? n : 0] = '\0';
}

/* Any function of this object: the engine. */
static int engine_anchor(void) { return 0; }

int dhatc_nativestack_interpreter_object(const char **path, uintptr_t *bias)
{
    find_executable();
    uintptr_t start, end;
    if (!locate((uintptr_t)&_PyEval_EvalFrameDefault, &start, &end, bias, path)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dhatc: cannot find the interpreter's object in the process");
        return -1;
    }
    return 0;
}

int dhatc_nativestack_configure(const dhatc_nativestack_config_t *new_config)
{
    find_executable();
    if (object_range((const void *)&_PyEval_EvalFrameDefault, "the interpreter", &interpreter) < 0) {
        return -1;
    }
    own_count = 0;
    void *backtrace;
    memcpy(&backtrace, &new_config->unwinder->backtrace, sizeof backtrace);
    int (*anchor)(void) = engine_anchor;
    void *engine;
    memcpy(&engine, &anchor, sizeof engine);
    if (object_range(engine, "dhatc's engine", &own[own_count++]) < 0 ||
        object_range(backtrace, "dhatc's unwinder", &own[own_count++]) < 0) {
        return -1;
    }
    if (new_config->preload != NULL &&
        object_range(new_config->preload, "dhatc's preload library", &own[own_count]) < 0) {
        return -1;
    }
    own_count += new_config->preload != NULL;
    config = *new_config;
    atomic_store_explicit(&object_count, 0, memory_order_relaxed);
    path_pool_used = 0;
    return 0;
}

/* ---- capture --------------------------------------------------------------- */

static inline bool in_range(const dhatc_range_t *range, uintptr_t address)
{
    return range->start <= address && address < range->end;
}

static inline bool is_own(uintptr_t address)
{
    for (uint32_t i = 0; i < own_count; i++) {
        if (in_range(&own[i], address)) {
            return true;
        }
    }
    return false;
}

static inline bool is_eval(uintptr_t address)
{
    for (uint32_t i = 0; i < config.eval_count; i++) {
        if (in_range(&config.eval[i], address)) {
            return true;
        }
    }
    return false;
}

/* How many native frames a capture of this thread asks the unwinder for:
 * enough to reach the frame where recent captures ended (the root's
 * evaluation loop, or the frame limit), and a little more.  The C stack below that
 * point (the interpreter's start, libc's) is never shown, and unwinding it
 * was half the cost.  A capture that runs out before it ends asks again for
 * everything. */
static __thread int room_hint __attribute__((tls_model("initial-exec")));
static __thread unsigned captures __attribute__((tls_model("initial-exec")));
enum { ROOM_SLACK = 2, ROOM_RESET = 1024 };

/* The mixed stack of `ips[0..count)`; *ended: it ended before the last
 * address (the root, or the limit). */
static uint32_t splice(void *const *ips, int count, PyThreadState *tstate, dhatc_frame_t *out,
                       uint32_t limit, int *used)
{
    dhatc_frames_cursor_t cursor;
    dhatc_frames_cursor_start(&cursor, tstate);
    uint32_t depth = 0;
    int i = 0;
    while (i < count && is_own((uintptr_t)ips[i])) {
        i++; /* the allocator hook: its name is the top frame (the kind) */
    }
    for (; i < count && depth < limit && !cursor.at_root; i++) {
        uintptr_t address = (uintptr_t)ips[i];
        if (in_range(&interpreter, address)) {
            if (is_eval(address)) {
                depth += dhatc_frames_next_call(&cursor, out + depth, limit - depth);
                continue;
            }
            if (!config.interpreter_frames) {
                continue;
            }
        }
        note_object(address);
        out[depth++] = (dhatc_frame_t){.code = (const void *)address, .where = 0,
                                       .kind = DHATC_FRAME_NATIVE};
    }
    *used = i;
    if (depth < limit && !cursor.at_root && cursor.next != NULL && i == count) {
        *used = count + 1; /* the Python frames go on below what was unwound */
        /* The native stack ended before the evaluation loop's frame that
         * runs them: the unwinder stopped (a frame without unwind
         * information, or with information that says it has no caller) or
         * the stack is deeper than MAX_NATIVE_FRAMES.  The frame at NULL
         * says that C frames are missing here (dhatpy/_native_frames.py). */
        out[depth++] = (dhatc_frame_t){.code = NULL, .where = 0, .kind = DHATC_FRAME_NATIVE};
    }
    /* Python frames no evaluation-loop frame of the C stack claimed (the
     * unwinding stopped early, or another frame evaluator runs them). */
    while (depth < limit && !cursor.at_root && cursor.next != NULL) {
        depth += dhatc_frames_next_call(&cursor, out + depth, limit - depth);
    }
    return depth;
}

uint32_t dhatc_nativestack_capture(PyThreadState *tstate, dhatc_frame_t *out, uint32_t limit,
                                   uint64_t *hash, dhatc_kind_t kind)
{
    void *ips[MAX_NATIVE_FRAMES];
    int room = room_hint > 0 && room_hint < MAX_NATIVE_FRAMES ? room_hint : MAX_NATIVE_FRAMES;
    int count = config.unwinder->backtrace(ips, room);
    int used;
    uint32_t depth = splice(ips, count, tstate, out, limit, &used);
    if (used > count && count == room && room < MAX_NATIVE_FRAMES) {
        /* The stack goes on below the hint: all of it, then. */
        count = config.unwinder->backtrace(ips, MAX_NATIVE_FRAMES);
        depth = splice(ips, count, tstate, out, limit, &used);
    }
    /* The deepest end lately: a loop alternating between two depths must
     * not ask again every other time.  A stack the unwinder ended before
     * the room did (it stopped early) needs no more room than it gave: all
     * of it would only slow down every capture after it. */
    int wanted = used <= count ? used + ROOM_SLACK
                 : count < room ? count + ROOM_SLACK
                                : MAX_NATIVE_FRAMES;
    if (wanted > room_hint || ++captures % ROOM_RESET == 0) {
        room_hint = wanted;
    }
    uint64_t h = DHATC_HASH_SEED;
    for (uint32_t j = 0; j < depth; j++) {
        h = dhatc_hash_step(h, &out[j]);
    }
    *hash = dhatc_hash_finish(h, (uint32_t)kind, depth);
    return depth;
}
