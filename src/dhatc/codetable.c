#include "codetable.h"

#include <string.h>

#include "linetable.h"
#include "lock.h"
#include "rawmem.h"

enum { STATE_NEW, STATE_RETAINED, STATE_DEAD };

typedef struct {
    PyCodeObject *code;
    uint64_t name_hash;          /* of its file and qualified name */
    uint32_t representative;     /* the entry standing for it: itself, or the first
                                  * seen with the same file and name */
    uint32_t range_count;        /* 0: its line table is not decoded yet */
    dhatc_line_range_t *ranges;  /* in `arena` */
    int state;
} entry_t;

/* Index tables: open addressing, a slot holds an entry index + 1 (0: empty),
 * grown to keep them at most half full. */
typedef struct {
    uint32_t *slots;
    uint32_t mask;
} index_t;

/* All protected by `lock`, except `count` and `retained`, which
 * has_new() peeks at. */
static struct {
    dhatc_lock_t lock;
    entry_t *entries;
    uint32_t count, capacity;
    uint32_t retained; /* entries below it were seen by retain_new() */
    uint64_t decodes;  /* line tables decoded */
    index_t by_code;   /* code object address -> entry */
    index_t by_name;   /* name hash -> representative entries */
    dhatc_arena_t arena;
} t = {.lock = DHATC_LOCK_INIT};

enum { INITIAL_ENTRIES = 1024, INITIAL_SLOTS = 2048 };

/* ---- names --------------------------------------------------------------- */

/* The name the viewer shows for a code object's function. */
static PyObject *shown_name(PyCodeObject *code)
{
#if PY_VERSION_HEX >= 0x030B0000
    return code->co_qualname;
#else
    return code->co_name;
#endif
}

/* Whether a str is laid out as PEP 393 strings are (always so from 3.12;
 * code objects' names and files are always ready before). */
static bool readable(PyObject *text)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyUnicode_Check(text);
#else
    return PyUnicode_Check(text) && PyUnicode_IS_READY(text);
#endif
}

/* Equal strings have the same kind (the narrowest that holds them), so
 * equal contents are equal bytes.  Reads the strings only: no allocation, no
 * GIL needed (they are immutable). */
static bool same_text(PyObject *a, PyObject *b)
{
    if (a == b) {
        return true;
    }
    if (!readable(a) || !readable(b)) {
        return false;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(a);
    return length == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)length * PyUnicode_KIND(a)) == 0;
}

static uint64_t hash_text(uint64_t hash, PyObject *text)
{
    if (!readable(text)) {
        return hash ^ (uint64_t)(uintptr_t)text; /* compared by identity then */
    }
    const unsigned char *data = PyUnicode_DATA(text);
    size_t size = (size_t)PyUnicode_GET_LENGTH(text) * PyUnicode_KIND(text);
    for (size_t i = 0; i < size; i++) {
        hash = (hash ^ data[i]) * UINT64_C(0x100000001B3);
    }
    return (hash ^ size) * UINT64_C(0x9E3779B97F4A7C15);
}

static uint64_t name_hash(PyCodeObject *code)
{
    uint64_t hash = hash_text(UINT64_C(0xCBF29CE484222325), code->co_filename);
    return hash_text(hash, shown_name(code));
}

static bool same_name(PyCodeObject *a, PyCodeObject *b)
{
    return same_text(a->co_filename, b->co_filename) && same_text(shown_name(a), shown_name(b));
}

/* ---- index tables -------------------------------------------------------- */

static bool index_init(index_t *index)
{
    index->slots = dhatc_rawmem_alloc(INITIAL_SLOTS * sizeof(uint32_t));
    index->mask = INITIAL_SLOTS - 1;
    return index->slots != NULL;
}

static void index_release(index_t *index)
{
    dhatc_rawmem_free(index->slots, ((size_t)index->mask + 1) * sizeof(uint32_t));
    index->slots = NULL;
    index->mask = 0;
}

static uint64_t code_hash(const void *code)
{
    uint64_t hash = (uint64_t)(uintptr_t)code * UINT64_C(0x9E3779B97F4A7C15);
    return hash ^ (hash >> 31);
}

static uint64_t entry_key(const entry_t *entry, bool by_name)
{
    return by_name ? entry->name_hash : code_hash(entry->code);
}

static void index_put(index_t *index, uint64_t key, uint32_t entry)
{
    uint32_t i = (uint32_t)key & index->mask;
    while (index->slots[i] != 0) {
        i = (i + 1) & index->mask;
    }
    index->slots[i] = entry + 1;
}

/* Doubles `index` when one more entry would fill it past half. */
static bool index_make_room(index_t *index, bool by_name)
{
    if (((size_t)t.count + 1) * 2 <= (size_t)index->mask + 1) {
        return true;
    }
    index_t grown = {dhatc_rawmem_alloc(((size_t)index->mask + 1) * 2 * sizeof(uint32_t)),
                     index->mask * 2 + 1};
    if (grown.slots == NULL) {
        return false;
    }
    for (uint32_t i = 0; i <= index->mask; i++) {
        uint32_t slot = index->slots[i];
        if (slot != 0) {
            index_put(&grown, entry_key(&t.entries[slot - 1], by_name), slot - 1);
        }
    }
    index_release(index);
    *index = grown;
    return true;
}

/* ---- entries ------------------------------------------------------------- */

static uint32_t find_code(PyCodeObject *code)
{
    uint32_t i = (uint32_t)code_hash(code) & t.by_code.mask;
    for (uint32_t slot; (slot = t.by_code.slots[i]) != 0; i = (i + 1) & t.by_code.mask) {
        if (t.entries[slot - 1].code == code) {
            return slot - 1;
        }
    }
    return UINT32_MAX;
}

static uint32_t find_representative(PyCodeObject *code, uint64_t hash)
{
    uint32_t i = (uint32_t)hash & t.by_name.mask;
    for (uint32_t slot; (slot = t.by_name.slots[i]) != 0; i = (i + 1) & t.by_name.mask) {
        const entry_t *entry = &t.entries[slot - 1];
        /* (A dead entry's code object is gone: never read it.) */
        if (entry->name_hash == hash && entry->state != STATE_DEAD &&
            same_name(entry->code, code)) {
            return slot - 1;
        }
    }
    return UINT32_MAX;
}

static uint32_t add_code(PyCodeObject *code)
{
    if (t.count == t.capacity) {
        size_t size = (size_t)t.capacity * sizeof(entry_t);
        entry_t *grown = dhatc_rawmem_resize(t.entries, size, 2 * size);
        if (grown == NULL) {
            return UINT32_MAX;
        }
        t.entries = grown;
        t.capacity *= 2;
    }
    if (!index_make_room(&t.by_code, false) || !index_make_room(&t.by_name, true)) {
        return UINT32_MAX;
    }
    uint32_t id = t.count;
    uint64_t hash = name_hash(code);
    uint32_t representative = find_representative(code, hash);
    t.entries[id] = (entry_t){
        .code = code,
        .name_hash = hash,
        .representative = representative == UINT32_MAX ? id : representative,
        .state = STATE_NEW,
    };
    index_put(&t.by_code, code_hash(code), id);
    if (representative == UINT32_MAX) {
        index_put(&t.by_name, hash, id);
    }
    __atomic_store_n(&t.count, id + 1, __ATOMIC_RELEASE);
    return id;
}

static bool decode_lines(entry_t *entry)
{
    uint32_t room = dhatc_linetable_max_ranges(entry->code);
    entry->ranges = dhatc_arena_alloc(&t.arena, (size_t)room * sizeof(dhatc_line_range_t));
    if (entry->ranges == NULL) {
        return false;
    }
    entry->range_count = dhatc_linetable_decode(entry->code, entry->ranges);
    t.decodes++;
    return true;
}

/* ---- the interface ------------------------------------------------------- */

bool dhatc_codetable_init(void)
{
    dhatc_lock(&t.lock);
    t.capacity = INITIAL_ENTRIES;
    t.entries = dhatc_rawmem_alloc((size_t)t.capacity * sizeof(entry_t));
    bool ready = t.entries != NULL && index_init(&t.by_code) && index_init(&t.by_name);
    t.count = t.retained = 0;
    t.decodes = 0;
    dhatc_unlock(&t.lock);
    return ready;
}

bool dhatc_codetable_resolve(PyCodeObject *code, int32_t offset, const void **shown,
                             int32_t *line)
{
    dhatc_lock(&t.lock);
    bool ok = false;
    uint32_t id = t.entries != NULL ? find_code(code) : UINT32_MAX;
    if (id == UINT32_MAX && t.entries != NULL) {
        id = add_code(code);
    }
    if (id != UINT32_MAX) {
        entry_t *entry = &t.entries[id];
        if (entry->range_count > 0 || decode_lines(entry)) {
            *line = dhatc_linetable_line(entry->ranges, entry->range_count, offset);
            *shown = t.entries[entry->representative].code;
            ok = true;
        }
    }
    dhatc_unlock(&t.lock);
    return ok;
}

bool dhatc_codetable_has_new(void)
{
    return __atomic_load_n(&t.retained, __ATOMIC_RELAXED) !=
           __atomic_load_n(&t.count, __ATOMIC_RELAXED);
}

void dhatc_codetable_retain_new(void)
{
    dhatc_lock(&t.lock);
    for (uint32_t id = t.retained; id < t.count; id++) {
        entry_t *entry = &t.entries[id];
        /* A refcount of 0: the code object is being destroyed right now (this
         * hooked call may be one of the frees its destruction makes), too
         * late to keep it. */
        if (Py_REFCNT(entry->code) <= 0) {
            entry->state = STATE_DEAD;
        } else {
            Py_INCREF(entry->code);
            entry->state = STATE_RETAINED;
        }
    }
    __atomic_store_n(&t.retained, t.count, __ATOMIC_RELAXED);
    dhatc_unlock(&t.lock);
}

bool dhatc_codetable_alive(const void *code)
{
    dhatc_lock(&t.lock);
    uint32_t id = t.entries != NULL ? find_code((PyCodeObject *)code) : UINT32_MAX;
    bool alive = id != UINT32_MAX && t.entries[id].state == STATE_RETAINED;
    dhatc_unlock(&t.lock);
    return alive;
}

void dhatc_codetable_release(void (*drop)(PyObject *code, void *context), void *context)
{
    dhatc_lock(&t.lock);
    entry_t *entries = t.entries;
    uint32_t count = t.count;
    size_t size = (size_t)t.capacity * sizeof(entry_t);
    t.entries = NULL;
    t.count = t.retained = t.capacity = 0;
    index_release(&t.by_code);
    index_release(&t.by_name);
    dhatc_arena_release(&t.arena);
    dhatc_unlock(&t.lock);
    /* Outside the lock: `drop` is the caller's. */
    for (uint32_t id = 0; id < count; id++) {
        if (entries[id].state == STATE_RETAINED) {
            drop((PyObject *)entries[id].code, context);
        }
    }
    dhatc_rawmem_free(entries, size);
}

uint64_t dhatc_codetable_decodes(void)
{
    dhatc_lock(&t.lock);
    uint64_t decodes = t.decodes;
    dhatc_unlock(&t.lock);
    return decodes;
}

void dhatc_codetable_after_fork_child(void)
{
    dhatc_lock_reset(&t.lock);
    memset(&t.by_code, 0, sizeof t.by_code);
    memset(&t.by_name, 0, sizeof t.by_name);
    t.arena.head = NULL;
    t.entries = NULL;
    t.count = t.retained = t.capacity = 0;
}
