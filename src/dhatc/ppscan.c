/* dhatc._ppscan: the program points of a DHAT file parsed straight into flat
 * arrays (dhatpy/_dhat_reader.py, _Parser.stream_pps).
 *
 * Every writer writes a program point as one JSON object of a few keys:
 * dhatc one a line, `{"tb":640,"tbk":40,...,"fs":[120001,78455,11]}`,
 * Valgrind a few keys a line with its read and write figures and access
 * counts (`"rb"`, `"wb"`, `"acc":[-100,10]`), the dhat crate a value a line.
 * scan() reads as many of them as follow each other from a position of the
 * text, with any JSON white space and the keys in any order, and stops
 * before the first it cannot read exactly as the reader's Python code would
 * (a key unknown or repeated, an escape in a key, a sign, a fraction, a
 * leading zero, a figure past 2**64-1, a frame index 0 or past 2**32-1, an
 * access count the reader would refuse, a character that is not ASCII...):
 * that code reads the rest, as JSON, and says what is wrong if anything is.
 * What it reads here is valid JSON that the Python code would read to the
 * same numbers: this is only a faster way to the same table.
 *
 * keys() cuts the frame indices of each program point out as bytes, the keys
 * `dhatc diff` matches program points by (dhatpy/_report_diff.py), and
 * match() matches them, the keys left in their arrays;
 * sorted_keys() sorts them and gather() moves the figures into that order,
 * for the tree of `dhatc report --tree` (dhatpy/_report_tree.py).
 *
 * Not part of the profiling engine: it links no engine file and runs only in
 * `dhatc report`, `diff` and the other readers of files.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* A growing buffer of fixed-size items, kept in a bytearray. */
typedef struct {
    PyObject *bytes; /* a bytearray */
    Py_ssize_t used; /* bytes written */
} Buffer;

static int buffer_init(Buffer *b, Py_ssize_t capacity)
{
    b->bytes = PyByteArray_FromStringAndSize(NULL, capacity > 0 ? capacity : 64);
    b->used = 0;
    return b->bytes ? 0 : -1;
}

/* Room for `more` bytes past `used`; its start, or NULL (MemoryError set). */
static char *buffer_room(Buffer *b, Py_ssize_t more)
{
    Py_ssize_t size = PyByteArray_GET_SIZE(b->bytes);
    if (b->used + more > size) {
        Py_ssize_t wanted = size + size / 2;
        if (wanted < b->used + more)
            wanted = b->used + more;
        if (PyByteArray_Resize(b->bytes, wanted) < 0)
            return NULL;
    }
    return PyByteArray_AS_STRING(b->bytes) + b->used;
}

static int buffer_finish(Buffer *b)
{
    return PyByteArray_Resize(b->bytes, b->used);
}

/* What a key of a program point is to the scanner. */
enum { KEY_FIGURE, KEY_IGNORED, KEY_FS, KEY_ACC };
/* Keys it knows: the figures, those it skips, fs, acc. */
#define MAX_NAMES 32

typedef struct {
    uint64_t name; /* its letters, the first in the low byte */
    int kind;
    Py_ssize_t slot; /* a figure's place among the PP's figures */
} KeyName;

/* What one call reads into. */
typedef struct {
    Py_ssize_t n_keys; /* figures per PP */
    KeyName names[MAX_NAMES];
    int n_names;
    uint64_t required; /* a bit per name a PP must have: the figures and fs */
    Buffer figures;  /* uint64_t, n_keys per PP */
    Buffer indices;  /* uint32_t */
    Buffer offsets;  /* uint64_t: where each PP's indices end, base added */
    Buffer text;     /* the PP's indices as text, "3,1,4", for its hash */
    Buffer counts;   /* uint32_t: the PP's access counts, decoded */
    PyObject *hashes; /* a set: the hash of each PP's indices as text; NULL: not made */
    PyObject *accesses; /* a dict: PP -> its access counts; NULL: "acc" not read */
    Py_ssize_t max_accesses; /* counts a PP may have */
    uint32_t latch;          /* the largest count */
    uint32_t max_index;
    Py_ssize_t count;
} Scan;

/* A PP's decoded access counts as a list of ints; NULL on error. */
static PyObject *counts_list(const Scan *s)
{
    Py_ssize_t n = s->counts.used / 4;
    const uint32_t *counts = (const uint32_t *)PyByteArray_AS_STRING(s->counts.bytes);
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    PyObject *last = NULL; /* runs of one count share one int */
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!last || counts[k] != counts[k - 1]) {
            last = PyLong_FromUnsignedLong(counts[k]);
            if (!last) {
                Py_DECREF(list);
                return NULL;
            }
        } else {
            Py_INCREF(last);
        }
        PyList_SET_ITEM(list, k, last);
    }
    return list;
}

/* JSON's white space; one comparison for the characters that are not. */
#define IS_WS(c) ((c) <= ' ' && ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t'))
#define SKIP_WS                                                                          \
    while (i < len && IS_WS(t[i]))                                                       \
    i++
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* The scanner, once for each width of str characters.  A program point is a
 * JSON object of the keys it knows, each once, in any order, with any JSON
 * white space; the figures unsigned integers (no sign, no fraction, no
 * exponent, no leading zero) up to 2**64-1, fs an array of integers from 1
 * to 2**32-1, acc an array of integers that decodes as the reader decodes it.
 * REJECT: the PP begun is not so (or the JSON parser might read it otherwise,
 * or refuse it); stop after the one before it. */
#define REJECT                                                                           \
    do {                                                                                 \
        s->indices.used = mark;                                                          \
        return end;                                                                      \
    } while (0)
/* An unsigned JSON integer into v (uint64_t): digits, no leading zero. */
#define READ_U64(v)                                                                      \
    do {                                                                                 \
        if (i >= len || !IS_DIGIT(t[i]))                                                 \
            REJECT;                                                                      \
        v = (uint64_t)(t[i] - '0');                                                      \
        i++;                                                                             \
        if (v != 0) { /* JSON: no leading zeros; "01" is refused by what follows */     \
            while (i < len && IS_DIGIT(t[i])) {                                          \
                uint64_t d_ = (uint64_t)(t[i] - '0');                                    \
                if (v > (UINT64_MAX - d_) / 10)                                          \
                    REJECT; /* past 2**64-1 */                                           \
                v = v * 10 + d_;                                                         \
                i++;                                                                     \
            }                                                                            \
        }                                                                                \
    } while (0)
#define DEFINE_SCAN(NAME, CHAR)                                                          \
    static Py_ssize_t NAME(Scan *s, const CHAR *t, Py_ssize_t len, Py_ssize_t pos,      \
                           uint64_t base, int *error)                                    \
    {                                                                                    \
        Py_ssize_t end = -1; /* after the last PP read */                                \
        int hint = 0;        /* the name expected next: keys come in one order, mostly */ \
        for (;;) {                                                                       \
            Py_ssize_t i = pos;                                                          \
            Py_ssize_t mark = s->indices.used; /* a PP not read leaves none */           \
            uint32_t highest = s->max_index;                                             \
            uint64_t seen = 0;                                                           \
            int has_counts = 0;                                                          \
            uint64_t *fig = (uint64_t *)buffer_room(&s->figures, s->n_keys * 8);         \
            if (!fig)                                                                    \
                goto failed;                                                             \
            s->text.used = 0;                                                            \
            s->counts.used = 0;                                                          \
            if (i >= len || t[i] != '{')                                                 \
                REJECT;                                                                  \
            i++;                                                                         \
            for (;;) { /* a key and its value */                                         \
                SKIP_WS;                                                                 \
                if (i >= len || t[i] != '"')                                             \
                    REJECT;                                                              \
                i++;                                                                     \
                uint64_t name = 0;                                                       \
                int n_letters = 0;                                                       \
                while (i < len && t[i] >= 'a' && t[i] <= 'z') {                          \
                    if (n_letters == 8)                                                  \
                        REJECT; /* no key of ours is that long */                        \
                    name |= (uint64_t)t[i] << (8 * n_letters++);                         \
                    i++;                                                                 \
                }                                                                        \
                if (i >= len || t[i] != '"' || !n_letters)                               \
                    REJECT; /* an escape, another character, the end */                  \
                i++;                                                                     \
                int id = hint < s->n_names && s->names[hint].name == name ? hint : -1;   \
                for (int n = 0; id < 0 && n < s->n_names; n++)                           \
                    if (s->names[n].name == name)                                        \
                        id = n;                                                          \
                if (id < 0 || (seen >> id & 1))                                          \
                    REJECT; /* a key unknown or repeated: the JSON path decides */       \
                seen |= (uint64_t)1 << id;                                               \
                hint = id + 1;                                                           \
                SKIP_WS;                                                                 \
                if (i >= len || t[i] != ':')                                             \
                    REJECT;                                                              \
                i++;                                                                     \
                SKIP_WS;                                                                 \
                const KeyName *key = &s->names[id];                                      \
                if (key->kind == KEY_FIGURE || key->kind == KEY_IGNORED) {               \
                    uint64_t v;                                                          \
                    READ_U64(v);                                                         \
                    if (key->kind == KEY_FIGURE)                                         \
                        fig[key->slot] = v;                                              \
                } else { /* an array: fs or acc */                                       \
                    int is_fs = key->kind == KEY_FS;                                     \
                    uint64_t repeat = 0;                                                 \
                    if (i >= len || t[i] != '[')                                         \
                        REJECT;                                                          \
                    i++;                                                                 \
                    SKIP_WS;                                                             \
                    if (i < len && t[i] == ']') {                                        \
                        i++;                                                             \
                    } else {                                                             \
                        for (;;) {                                                       \
                            int negative = 0;                                            \
                            Py_ssize_t digits = i;                                       \
                            if (!is_fs && i < len && t[i] == '-') {                      \
                                negative = 1;                                            \
                                i++;                                                     \
                                digits = i;                                              \
                            }                                                            \
                            uint64_t v;                                                  \
                            READ_U64(v);                                                 \
                            if (is_fs) {                                                 \
                                if (v == 0 || v > UINT32_MAX)                            \
                                    REJECT; /* 0 is the root, not a frame */             \
                                uint32_t *slot = (uint32_t *)buffer_room(&s->indices, 4); \
                                if (!slot)                                               \
                                    goto failed;                                         \
                                *slot = (uint32_t)v;                                     \
                                s->indices.used += 4;                                    \
                                if (v > highest)                                         \
                                    highest = (uint32_t)v;                               \
                                if (s->hashes) {                                         \
                                    char *out = buffer_room(&s->text, i - digits + 1);   \
                                    if (!out)                                            \
                                        goto failed;                                     \
                                    if (s->text.used) {                                  \
                                        *out++ = ',';                                    \
                                        s->text.used++;                                  \
                                    }                                                    \
                                    for (Py_ssize_t d = digits; d < i; d++)              \
                                        *out++ = (char)t[d];                             \
                                    s->text.used += i - digits;                          \
                                }                                                        \
                            } else if (negative) { /* a repeat count */                  \
                                if (v == 0 || repeat                                     \
                                    || v > (uint64_t)s->max_accesses)                    \
                                    REJECT; /* -0, two in a row, too many */             \
                                repeat = v;                                              \
                            } else { /* a count, `repeat` times or once */               \
                                uint64_t times = repeat ? repeat : 1;                    \
                                Py_ssize_t have = s->counts.used / 4;                    \
                                if (v > s->latch                                         \
                                    || times > (uint64_t)(s->max_accesses - have))       \
                                    REJECT;                                              \
                                uint32_t *c = (uint32_t *)buffer_room(                   \
                                    &s->counts, (Py_ssize_t)times * 4);                  \
                                if (!c)                                                  \
                                    goto failed;                                         \
                                for (uint64_t r = 0; r < times; r++)                     \
                                    c[r] = (uint32_t)v;                                  \
                                s->counts.used += (Py_ssize_t)times * 4;                 \
                                repeat = 0;                                              \
                            }                                                            \
                            SKIP_WS;                                                     \
                            if (i < len && t[i] == ',') {                                \
                                i++;                                                     \
                                SKIP_WS;                                                 \
                                continue;                                                \
                            }                                                            \
                            if (i < len && t[i] == ']') {                                \
                                i++;                                                     \
                                break;                                                   \
                            }                                                            \
                            REJECT;                                                      \
                        }                                                                \
                    }                                                                    \
                    if (repeat)                                                          \
                        REJECT; /* a repeat count and no count to repeat */              \
                    if (!is_fs)                                                          \
                        has_counts = 1;                                                  \
                }                                                                        \
                SKIP_WS;                                                                 \
                if (i < len && t[i] == ',') {                                            \
                    i++;                                                                 \
                    continue;                                                            \
                }                                                                        \
                if (i < len && t[i] == '}') {                                            \
                    i++;                                                                 \
                    break;                                                               \
                }                                                                        \
                REJECT;                                                                  \
            }                                                                            \
            if ((seen & s->required) != s->required)                                     \
                REJECT; /* a key missing */                                              \
            /* The PP is read: keep it. */                                               \
            if (s->hashes) {                                                             \
                PyObject *piece = PyUnicode_FromKindAndData(                             \
                    PyUnicode_1BYTE_KIND, PyByteArray_AS_STRING(s->text.bytes),          \
                    s->text.used);                                                       \
                if (!piece)                                                              \
                    goto failed;                                                         \
                Py_hash_t h = PyObject_Hash(piece);                                      \
                Py_DECREF(piece);                                                        \
                PyObject *hash = h == -1 ? NULL : PyLong_FromSsize_t(h);                 \
                if (!hash)                                                               \
                    goto failed;                                                         \
                int added = PySet_Add(s->hashes, hash);                                  \
                Py_DECREF(hash);                                                         \
                if (added < 0)                                                           \
                    goto failed;                                                         \
            }                                                                            \
            if (has_counts) {                                                            \
                PyObject *list = counts_list(s);                                         \
                PyObject *which = list ? PyLong_FromSsize_t(s->count) : NULL;            \
                int stored = which ? PyDict_SetItem(s->accesses, which, list) : -1;      \
                Py_XDECREF(list);                                                        \
                Py_XDECREF(which);                                                       \
                if (stored < 0)                                                          \
                    goto failed;                                                         \
            }                                                                            \
            uint64_t *offset = (uint64_t *)buffer_room(&s->offsets, 8);                  \
            if (!offset)                                                                 \
                goto failed;                                                             \
            *offset = base + (uint64_t)(s->indices.used / 4);                            \
            s->offsets.used += 8;                                                        \
            s->figures.used += s->n_keys * 8;                                            \
            s->count++;                                                                  \
            s->max_index = highest;                                                      \
            end = i;                                                                     \
            SKIP_WS;                                                                     \
            if (i >= len || t[i] != ',')                                                 \
                return end;                                                              \
            i++;                                                                         \
            SKIP_WS;                                                                     \
            if (i >= len || t[i] != '{')                                                 \
                return end;                                                              \
            pos = i;                                                                     \
        }                                                                                \
    failed:                                                                              \
        *error = 1;                                                                      \
        return -1;                                                                       \
    }

DEFINE_SCAN(scan_ucs1, Py_UCS1)
DEFINE_SCAN(scan_ucs2, Py_UCS2)
DEFINE_SCAN(scan_ucs4, Py_UCS4)

/* The sum of each figure, as Python ints (2**64 program points could not fit). */
static PyObject *sums_of(const uint64_t *figures, Py_ssize_t count, Py_ssize_t n_keys)
{
    PyObject *result = PyList_New(n_keys);
    if (!result)
        return NULL;
    unsigned __int128 *totals = PyMem_Calloc((size_t)n_keys, sizeof *totals);
    if (!totals) {
        Py_DECREF(result);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) /* one pass: the rows in memory order */
        for (Py_ssize_t k = 0; k < n_keys; k++)
            totals[k] += figures[i * n_keys + k];
    for (Py_ssize_t k = 0; k < n_keys; k++) {
        unsigned __int128 total = totals[k];
        PyObject *low = PyLong_FromUnsignedLongLong((unsigned long long)total);
        PyObject *high = PyLong_FromUnsignedLongLong((unsigned long long)(total >> 64));
        PyObject *shift = PyLong_FromLong(64);
        PyObject *shifted = high && shift ? PyNumber_Lshift(high, shift) : NULL;
        PyObject *sum = shifted && low ? PyNumber_Or(shifted, low) : NULL;
        Py_XDECREF(low);
        Py_XDECREF(high);
        Py_XDECREF(shift);
        Py_XDECREF(shifted);
        if (!sum) {
            PyMem_Free(totals);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, k, sum);
    }
    PyMem_Free(totals);
    return result;
}

/* A PP's frame indices, hashed. */
static uint64_t hash_run(const uint32_t *run, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t k = 0; k < n; k++) {
        h = (h ^ run[k]) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    h ^= h >> 33; /* the low bits pick the slot: mix the high ones in */
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
}

/* Whether two of the `count` PPs have the same frame indices (a repeated
 * location, which the reader refuses: the Python code then says which); -1
 * and MemoryError if there is no memory for the table. */
static int has_repeat(const uint32_t *indices, const uint64_t *offsets, Py_ssize_t count,
                      uint64_t base)
{
    if ((uint64_t)count >= UINT32_MAX)
        return 1; /* too many for the table: let the Python code look */
    size_t size = 16;
    while (size < 2 * (size_t)count)
        size *= 2;
    /* Each slot: the high half of a PP's hash, and the PP + 1 (0: empty). */
    uint64_t *table = PyMem_Calloc(size, sizeof *table);
    uint64_t *hashes = PyMem_Malloc(((size_t)count + 1) * sizeof *hashes);
    if (!table || !hashes) {
        PyMem_Free(table);
        PyMem_Free(hashes);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t start = i ? offsets[i - 1] - base : 0, end = offsets[i] - base;
        hashes[i] = hash_run(indices + start, (size_t)(end - start));
    }
    int found = 0;
    for (Py_ssize_t i = 0; i < count && !found; i++) {
        uint64_t start = i ? offsets[i - 1] - base : 0, end = offsets[i] - base;
        uint64_t h = hashes[i], high = h & 0xFFFFFFFF00000000ull;
        if (i + 16 < count) /* the table is far bigger than the caches: fetch ahead */
            __builtin_prefetch(&table[(size_t)hashes[i + 16] & (size - 1)], 1);
        for (size_t slot = (size_t)h & (size - 1);; slot = (slot + 1) & (size - 1)) {
            uint64_t entry = table[slot];
            if (!entry) {
                table[slot] = high | (uint64_t)(i + 1);
                break;
            }
            if ((entry & 0xFFFFFFFF00000000ull) != high)
                continue;
            Py_ssize_t j = (Py_ssize_t)(entry & 0xFFFFFFFFu) - 1;
            uint64_t j_start = j ? offsets[j - 1] - base : 0, j_end = offsets[j] - base;
            if (j_end - j_start == end - start
                && !memcmp(indices + start, indices + j_start, (end - start) * 4)) {
                found = 1;
                break;
            }
        }
    }
    PyMem_Free(table);
    PyMem_Free(hashes);
    return found;
}

PyDoc_STRVAR(scan_doc,
"scan(text, pos, keys, base, hashes, ignored=(), acc=None) -> None or\n"
"    (end, count, figures, indices, offsets, hashes, max_index, sums, accesses)\n\n"
"Reads the program points that follow each other from text[pos] on (JSON\n"
"objects joined by commas: each holds the keys `keys` with unsigned\n"
"integers, \"fs\" with an array of frame indices, maybe keys of `ignored`\n"
"with unsigned integers, which are skipped, and with `acc` = (limit, latch)\n"
"\"acc\" with access counts, decoded as the reader decodes them; any JSON\n"
"white space, any order), stopping before the first that is not so.  None\n"
"if not even the first is, or if two of them have the same frame indices.\n"
"`end`: the position after the last one read; `count`: how many; `figures`,\n"
"`indices`, `offsets`: bytearrays of uint64 (len(keys) per PP, in the order\n"
"of `keys`), uint32 and uint64 (where each PP's indices end, plus `base`) in\n"
"native byte order; `hashes` (if asked for, else None): the set of hash() of\n"
"each PP's indices as text ('3,1,4'); `max_index`: the largest index (0:\n"
"none); `sums`: each figure summed, a list of ints; `accesses`: a dict, PP\n"
"(counted from the first read) -> the list of its access counts, one per\n"
"byte, for the PPs with \"acc\".");

PyDoc_STRVAR(keys_doc,
"keys(data, offsets, itemsize) -> list of bytes\n\n"
"Program point i's key: data[offsets[i] * itemsize:offsets[i + 1] * itemsize],\n"
"for each i; `offsets`: a buffer of uint64, one more than there are PPs.");

static PyObject *keys(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer data, offsets;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*y*n:keys", &data, &offsets, &itemsize))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets.len / 8 - 1;
    const uint64_t *off = (const uint64_t *)offsets.buf;
    if (itemsize < 1 || n < 0 || offsets.len % 8) {
        PyErr_SetString(PyExc_ValueError, "keys: bad offsets or item size");
        goto done;
    }
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (off[i] > (uint64_t)(data.len / itemsize) || (i && off[i] < off[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "keys: offsets out of order or past the data");
            goto done;
        }
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyBytes_FromStringAndSize(
            (const char *)data.buf + off[i] * (uint64_t)itemsize,
            (Py_ssize_t)((off[i + 1] - off[i]) * (uint64_t)itemsize));
        if (!key) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, key);
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

/* A key's letters as KeyName.name; 0 if it is not 1 to 8 of a-z. */
static uint64_t key_name(PyObject *key)
{
    Py_ssize_t n;
    const char *letters = PyUnicode_AsUTF8AndSize(key, &n);
    if (!letters || n < 1 || n > 8)
        return 0;
    uint64_t name = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        if (letters[j] < 'a' || letters[j] > 'z')
            return 0;
        name |= (uint64_t)(unsigned char)letters[j] << (8 * j);
    }
    return name;
}

/* Adds the names of `keys` (a tuple of str) as `kind`; -1 and an exception if
 * one is not ASCII, not 1 to 8 lowercase letters, or there already. */
static int add_names(Scan *s, PyObject *keys, int kind)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        PyObject *item = PyTuple_GET_ITEM(keys, k);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item)) {
            PyErr_SetString(PyExc_TypeError, "scan: keys must be ASCII strings");
            return -1;
        }
        uint64_t name = key_name(item);
        if (PyErr_Occurred())
            return -1;
        for (int n = 0; n < s->n_names; n++)
            if (s->names[n].name == name)
                name = 0;
        if (!name || s->n_names == MAX_NAMES) {
            PyErr_SetString(PyExc_ValueError, "scan: keys must be 1 to 8 lowercase letters, "
                                              "each once, at most 32 in all");
            return -1;
        }
        s->names[s->n_names].name = name;
        s->names[s->n_names].kind = kind;
        s->names[s->n_names].slot = k;
        s->n_names++;
    }
    return 0;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *text, *keys, *ignored = NULL, *acc = Py_None;
    Py_ssize_t pos;
    unsigned long long base;
    int want_hashes;
    if (!PyArg_ParseTuple(args, "UnO!Kp|O!O:scan", &text, &pos, &PyTuple_Type, &keys, &base,
                          &want_hashes, &PyTuple_Type, &ignored, &acc))
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    Py_ssize_t n_keys = PyTuple_GET_SIZE(keys);
    if (pos < 0 || pos > len || n_keys < 1) {
        PyErr_SetString(PyExc_ValueError, "scan: position out of range, or no keys");
        return NULL;
    }
    PyObject *result = NULL;
    Scan s;
    memset(&s, 0, sizeof s);
    s.n_keys = n_keys;
    if (acc != Py_None) {
        Py_ssize_t latch;
        if (!PyArg_ParseTuple(acc, "nn:scan's acc", &s.max_accesses, &latch))
            return NULL;
        if (s.max_accesses < 0 || s.max_accesses > (1 << 24) || latch < 0
            || (uint64_t)latch > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "scan: acc's limits out of range");
            return NULL;
        }
        s.latch = (uint32_t)latch;
    }
    PyObject *fs = PyUnicode_FromString("fs"), *acc_key = PyUnicode_FromString("acc");
    PyObject *fs_keys = fs ? PyTuple_Pack(1, fs) : NULL;
    PyObject *acc_keys = acc_key ? PyTuple_Pack(1, acc_key) : NULL;
    int named = fs_keys && acc_keys && add_names(&s, keys, KEY_FIGURE) == 0
                && add_names(&s, fs_keys, KEY_FS) == 0
                && (!ignored || add_names(&s, ignored, KEY_IGNORED) == 0)
                && (acc == Py_None || add_names(&s, acc_keys, KEY_ACC) == 0);
    Py_XDECREF(fs);
    Py_XDECREF(acc_key);
    Py_XDECREF(fs_keys);
    Py_XDECREF(acc_keys);
    if (!named)
        return NULL;
    for (int n = 0; n < s.n_names; n++)
        if (s.names[n].kind == KEY_FIGURE || s.names[n].kind == KEY_FS)
            s.required |= (uint64_t)1 << n;
    /* A guess at the sizes: dhatc's lines are 100 to 200 characters long. */
    Py_ssize_t pps = (len - pos) / 128 + 1;
    if (buffer_init(&s.figures, pps * n_keys * 8) < 0 || buffer_init(&s.indices, pps * 64) < 0
        || buffer_init(&s.offsets, pps * 8) < 0 || buffer_init(&s.text, 256) < 0
        || buffer_init(&s.counts, 256) < 0 || (want_hashes && !(s.hashes = PySet_New(NULL)))
        || !(s.accesses = PyDict_New()))
        goto done;
    int error = 0;
    Py_ssize_t end;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        end = scan_ucs1(&s, PyUnicode_1BYTE_DATA(text), len, pos, base, &error);
        break;
    case PyUnicode_2BYTE_KIND:
        end = scan_ucs2(&s, PyUnicode_2BYTE_DATA(text), len, pos, base, &error);
        break;
    default:
        end = scan_ucs4(&s, PyUnicode_4BYTE_DATA(text), len, pos, base, &error);
        break;
    }
    if (error)
        goto done;
    if (end < 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    if (buffer_finish(&s.indices) < 0 || buffer_finish(&s.offsets) < 0)
        goto done;
    s.figures.used = s.count * n_keys * 8; /* a PP read in part leaves its figures */
    if (buffer_finish(&s.figures) < 0)
        goto done;
    int repeat = has_repeat((const uint32_t *)PyByteArray_AS_STRING(s.indices.bytes),
                            (const uint64_t *)PyByteArray_AS_STRING(s.offsets.bytes), s.count,
                            base);
    if (repeat < 0)
        goto done;
    if (repeat) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    PyObject *sums = sums_of((const uint64_t *)PyByteArray_AS_STRING(s.figures.bytes), s.count,
                             n_keys);
    if (!sums)
        goto done;
    result = Py_BuildValue("nnOOOOkNO", end, s.count, s.figures.bytes, s.indices.bytes,
                           s.offsets.bytes, s.hashes ? s.hashes : Py_None,
                           (unsigned long)s.max_index, sums, s.accesses);
done:
    Py_XDECREF(s.figures.bytes);
    Py_XDECREF(s.indices.bytes);
    Py_XDECREF(s.offsets.bytes);
    Py_XDECREF(s.text.bytes);
    Py_XDECREF(s.counts.bytes);
    Py_XDECREF(s.hashes);
    Py_XDECREF(s.accesses);
    return result;
}

/* The keys sorted_keys sorts: where each starts in the data, and its length. */
typedef struct {
    uint64_t head[2]; /* its first 16 bytes, 0 after its end, as big-endian numbers */
    const unsigned char *start;
    uint32_t len; /* in bytes */
    uint32_t pp;
} Key;

/* As Python compares bytes: byte by byte, then the shorter first.  The heads
 * decide most comparisons without reading the keys themselves (which are all
 * over memory): heads that differ differ as the keys do, since a key that
 * ends within its head is followed by zeros there, which sort first. */
static inline int key_cmp(const Key *x, const Key *y)
{
    if (x->head[0] != y->head[0])
        return x->head[0] < y->head[0] ? -1 : 1;
    if (x->head[1] != y->head[1])
        return x->head[1] < y->head[1] ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->start, y->start, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

/* Sorts the n keys (a merge sort, bottom up; `spare`: room for n more). */
static void sort_keys(Key *keys, Key *spare, size_t n)
{
    Key *from = keys, *to = spare;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                to[k++] = key_cmp(&from[j], &from[i]) < 0 ? from[j++] : from[i++];
            while (i < mid)
                to[k++] = from[i++];
            while (j < hi)
                to[k++] = from[j++];
        }
        Key *t = from;
        from = to;
        to = t;
    }
    if (from != keys)
        memcpy(keys, from, n * sizeof *keys);
}

PyDoc_STRVAR(sorted_keys_doc,
"sorted_keys(data, offsets, itemsize) -> (order, keys)\n\n"
"The PPs in the order of their keys (see keys()), and the keys in that order:\n"
"what sorted(range(n), key=keys.__getitem__) and keys in its order give, for\n"
"keys that are all different.");

static PyObject *sorted_keys(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *all = keys(self, args); /* checks the arguments too */
    if (!all)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(all);
    PyObject *order = NULL, *sorted = NULL, *result = NULL;
    Key *items = PyMem_Malloc((2 * (size_t)n + 1) * sizeof *items); /* and a spare n */
    if (!items) {
        PyErr_NoMemory();
        goto done;
    }
    if ((uint64_t)n > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "sorted_keys: more than 2**32 keys");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(all, i);
        items[i].start = (const unsigned char *)PyBytes_AS_STRING(key);
        if ((uint64_t)PyBytes_GET_SIZE(key) > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "sorted_keys: a key of more than 4 GiB");
            goto done;
        }
        items[i].len = (uint32_t)PyBytes_GET_SIZE(key);
        items[i].pp = (uint32_t)i;
        for (int w = 0; w < 2; w++) {
            uint64_t head = 0;
            for (size_t j = 8 * (size_t)w; j < 8 * (size_t)w + 8; j++)
                head = head << 8 | (j < items[i].len ? items[i].start[j] : 0);
            items[i].head[w] = head;
        }
    }
    sort_keys(items, items + n, (size_t)n);
    order = PyList_New(n);
    sorted = PyList_New(n);
    if (!order || !sorted)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pp = PyLong_FromSsize_t((Py_ssize_t)items[i].pp);
        if (!pp)
            goto done;
        PyList_SET_ITEM(order, i, pp);
        PyObject *key = PyList_GET_ITEM(all, items[i].pp);
        Py_INCREF(key);
        PyList_SET_ITEM(sorted, i, key);
    }
    result = PyTuple_Pack(2, order, sorted);
done:
    PyMem_Free(items);
    Py_XDECREF(order);
    Py_XDECREF(sorted);
    Py_DECREF(all);
    return result;
}

PyDoc_STRVAR(gather_doc,
"gather(data, order, row) -> bytes\n\n"
"The rows of `row` bytes of `data` in the order of `order` (a list of row\n"
"numbers): b''.join(data[i * row:(i + 1) * row] for i in order).");

static PyObject *gather(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer data;
    PyObject *order;
    Py_ssize_t row;
    if (!PyArg_ParseTuple(args, "y*O!n:gather", &data, &PyList_Type, &order, &row))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(order);
    if (row < 0 || (row && n > PY_SSIZE_T_MAX / row)) {
        PyErr_SetString(PyExc_ValueError, "gather: bad row size");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, n * row);
    if (!result)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    Py_ssize_t rows = row ? data.len / row : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t pp = PyLong_AsSsize_t(PyList_GET_ITEM(order, i));
        if (pp < 0 || pp >= rows) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "gather: a row past the data");
            Py_CLEAR(result);
            goto done;
        }
        memcpy(out + i * row, (const char *)data.buf + pp * row, (size_t)row);
    }
done:
    PyBuffer_Release(&data);
    return result;
}

/* Adds the bytes of `n` int64 numbers to a new bytearray; NULL on error. */
static PyObject *int64s(const int64_t *values, Py_ssize_t n)
{
    return PyByteArray_FromStringAndSize((const char *)values, n * 8);
}

PyDoc_STRVAR(match_doc,
"match(old, old_offsets, new, new_offsets) -> (matched_old, matched_new,\n"
"                                             added, vanished)\n\n"
"Matches the program points of two files by their keys (see keys(); `old`\n"
"and `new`: buffers of uint32 frame numbers, the offsets uint64, one more\n"
"than there are PPs), when no two of OLD's have one key.  Bytearrays of\n"
"int64: the PPs of OLD and of NEW that match, in NEW's order; NEW's that\n"
"match none, in order; OLD's that none matches, in order.");

static PyObject *match(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer old, old_off, new, new_off;
    if (!PyArg_ParseTuple(args, "y*y*y*y*:match", &old, &old_off, &new, &new_off))
        return NULL;
    PyObject *result = NULL;
    uint64_t *table = NULL, *hashes = NULL;
    int64_t *out = NULL;
    unsigned char *hit = NULL;
    const uint32_t *o = old.buf, *nw = new.buf;
    const uint64_t *oo = old_off.buf, *no = new_off.buf;
    Py_ssize_t n_old = old_off.len / 8 - 1, n_new = new_off.len / 8 - 1;
    if (n_old < 0 || n_new < 0 || old_off.len % 8 || new_off.len % 8 || old.len % 4
        || new.len % 4 || (uint64_t)n_old >= UINT32_MAX || oo[0] || no[0]
        || oo[n_old] != (uint64_t)old.len / 4 || no[n_new] != (uint64_t)new.len / 4) {
        PyErr_SetString(PyExc_ValueError, "match: bad offsets");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_old; i++)
        if (oo[i + 1] < oo[i])
            goto unordered;
    for (Py_ssize_t i = 0; i < n_new; i++)
        if (no[i + 1] < no[i])
            goto unordered;
    size_t size = 16;
    while (size < 2 * (size_t)n_old)
        size *= 2;
    table = PyMem_Calloc(size, sizeof *table);
    hashes = PyMem_Malloc(((size_t)(n_old > n_new ? n_old : n_new) + 1) * sizeof *hashes);
    out = PyMem_Malloc(((size_t)n_new * 2 + (size_t)n_old + 1) * sizeof *out);
    hit = PyMem_Calloc((size_t)n_old + 1, 1);
    if (!table || !hashes || !out || !hit) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_old; i++)
        hashes[i] = hash_run(o + oo[i], (size_t)(oo[i + 1] - oo[i]));
    for (Py_ssize_t i = 0; i < n_old; i++) {
        uint64_t h = hashes[i];
        if (i + 16 < n_old)
            __builtin_prefetch(&table[(size_t)hashes[i + 16] & (size - 1)], 1);
        size_t slot = (size_t)h & (size - 1);
        while (table[slot])
            slot = (slot + 1) & (size - 1);
        table[slot] = (h & 0xFFFFFFFF00000000ull) | (uint64_t)(i + 1);
    }
    for (Py_ssize_t i = 0; i < n_new; i++)
        hashes[i] = hash_run(nw + no[i], (size_t)(no[i + 1] - no[i]));
    /* out: OLD's matches, then NEW's matches, then NEW's others, from both ends */
    int64_t *found = out, *unmatched = out + n_new;
    Py_ssize_t n_found = 0, n_unmatched = 0;
    for (Py_ssize_t i = 0; i < n_new; i++) {
        uint64_t h = hashes[i], high = h & 0xFFFFFFFF00000000ull;
        uint64_t len = no[i + 1] - no[i];
        if (i + 16 < n_new)
            __builtin_prefetch(&table[(size_t)hashes[i + 16] & (size - 1)], 0);
        Py_ssize_t pp = -1;
        for (size_t slot = (size_t)h & (size - 1); table[slot]; slot = (slot + 1) & (size - 1)) {
            uint64_t entry = table[slot];
            if ((entry & 0xFFFFFFFF00000000ull) != high)
                continue;
            Py_ssize_t j = (Py_ssize_t)(entry & 0xFFFFFFFFu) - 1;
            if (oo[j + 1] - oo[j] == len && !memcmp(o + oo[j], nw + no[i], len * 4)) {
                pp = j;
                break;
            }
        }
        if (pp >= 0) {
            found[n_found] = pp;
            hit[pp] = 1;
            /* NEW's PP, for now at the far end: moved after OLD's below */
            unmatched[n_new - 1 - n_found] = i;
            n_found++;
        } else {
            unmatched[n_unmatched++] = i;
        }
    }
    int64_t *vanished = out + 2 * (size_t)n_new;
    Py_ssize_t n_vanished = 0;
    for (Py_ssize_t j = 0; j < n_old; j++)
        if (!hit[j])
            vanished[n_vanished++] = j;
    /* NEW's matched PPs, reversed at the end of `unmatched`: into `hashes`. */
    int64_t *matched_new = (int64_t *)hashes;
    for (Py_ssize_t k = 0; k < n_found; k++)
        matched_new[k] = unmatched[n_new - 1 - k];
    PyObject *a = int64s(found, n_found), *b = int64s(matched_new, n_found);
    PyObject *c = int64s(unmatched, n_unmatched), *d = int64s(vanished, n_vanished);
    if (a && b && c && d)
        result = PyTuple_Pack(4, a, b, c, d);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    Py_XDECREF(d);
    goto done;
unordered:
    PyErr_SetString(PyExc_ValueError, "match: offsets out of order");
done:
    PyMem_Free(table);
    PyMem_Free(hashes);
    PyMem_Free(out);
    PyMem_Free(hit);
    PyBuffer_Release(&old);
    PyBuffer_Release(&old_off);
    PyBuffer_Release(&new);
    PyBuffer_Release(&new_off);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"keys", keys, METH_VARARGS, keys_doc},
    {"sorted_keys", sorted_keys, METH_VARARGS, sorted_keys_doc},
    {"gather", gather, METH_VARARGS, gather_doc},
    {"match", match, METH_VARARGS, match_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dhatc._ppscan",
    "Program points of any writer's DHAT file, parsed into flat arrays (scan); their\n"
    "keys for matching and for the tree (keys, match, sorted_keys, gather).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ppscan(void)
{
    return PyModule_Create(&module);
}
