#include "linetable.h"

/* The table and its format, per version:
 *   3.9   co_lnotab: (byte increment, signed line increment) pairs
 *   3.10  co_linetable: (byte delta, signed line delta; -128: no line) pairs
 *   3.11+ co_linetable: the location table, one entry per run of code units */
#if PY_VERSION_HEX >= 0x030A0000
#define LINE_TABLE(code) ((code)->co_linetable)
#else
#define LINE_TABLE(code) ((code)->co_lnotab)
#endif

/* sizeof(_Py_CODEUNIT), which 3.13+ declares only in internal headers. */
enum { CODE_UNIT_BYTES = 2 };

Py_ssize_t dhatc_linetable_code_bytes(PyCodeObject *code)
{
#if PY_VERSION_HEX >= 0x030B0000
    return Py_SIZE(code) * CODE_UNIT_BYTES;
#else
    return PyBytes_GET_SIZE(code->co_code);
#endif
}

uint32_t dhatc_linetable_max_ranges(PyCodeObject *code)
{
    /* Every entry starts one range at most, and each takes two bytes or
     * more (3.9/3.10) or one byte (3.11+); plus the ranges before the first
     * and after the last. */
    return (uint32_t)PyBytes_GET_SIZE(LINE_TABLE(code)) + 3;
}

/* Appends a range, merging it into the previous one when the line is the
 * same (so a lookup finds the first offset of a line's run). */
static void add(dhatc_line_range_t *out, uint32_t *count, int32_t start, int32_t line)
{
    if (*count > 0 && out[*count - 1].line == line) {
        return;
    }
    if (*count > 0 && out[*count - 1].start == start) {
        out[*count - 1].line = line; /* an empty range: the later one wins */
        if (*count > 1 && out[*count - 2].line == line) {
            (*count)--;
        }
        return;
    }
    out[(*count)++] = (dhatc_line_range_t){start, line};
}

#if PY_VERSION_HEX >= 0x030B0000

static uint32_t scan_varint(const uint8_t **p)
{
    uint32_t byte = *(*p)++;
    uint32_t value = byte & 63;
    unsigned shift = 0;
    while (byte & 64) {
        byte = *(*p)++;
        shift += 6;
        value |= (byte & 63) << shift;
    }
    return value;
}

static int32_t scan_signed_varint(const uint8_t **p)
{
    uint32_t value = scan_varint(p);
    return (value & 1) ? -(int32_t)(value >> 1) : (int32_t)(value >> 1);
}

enum { NO_COLUMNS = 13, LONG_FORM = 14, NO_LOCATION = 15, ONE_LINE0 = 10 };

uint32_t dhatc_linetable_decode(PyCodeObject *code, dhatc_line_range_t *out)
{
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(LINE_TABLE(code));
    const uint8_t *end = p + PyBytes_GET_SIZE(LINE_TABLE(code));
    int32_t line = code->co_firstlineno;
    int32_t offset = 0;
    uint32_t count = 0;
    add(out, &count, INT32_MIN, line); /* offsets before the first: the first line */
    while (p < end) {
        uint8_t first = *p;
        int kind = (first >> 3) & 15;
        int32_t units = (first & 7) + 1;
        const uint8_t *after = p + 1;
        if (kind == NO_COLUMNS || kind == LONG_FORM) {
            line += scan_signed_varint(&after);
        } else if (kind >= ONE_LINE0 && kind < NO_COLUMNS) {
            line += kind - ONE_LINE0;
        }
        add(out, &count, offset, kind == NO_LOCATION ? -1 : line);
        offset += units * CODE_UNIT_BYTES;
        /* Skip the entry's other bytes: the next entry's first has bit 7 set. */
        p++;
        while (p < end && (*p & 128) == 0) {
            p++;
        }
    }
    add(out, &count, offset, -1); /* past the table */
    return count;
}

#elif PY_VERSION_HEX >= 0x030A0000

uint32_t dhatc_linetable_decode(PyCodeObject *code, dhatc_line_range_t *out)
{
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(LINE_TABLE(code));
    Py_ssize_t pairs = PyBytes_GET_SIZE(LINE_TABLE(code)) / 2;
    int32_t line = code->co_firstlineno;
    int32_t offset = 0;
    uint32_t count = 0;
    add(out, &count, INT32_MIN, line); /* offsets before the first: the first line */
    for (Py_ssize_t i = 0; i < pairs; i++, p += 2) {
        int32_t delta = p[0];
        int32_t line_delta = (int8_t)p[1];
        int32_t this_line = -1;
        if (line_delta != -128) {
            line += line_delta;
            this_line = line;
        }
        if (delta > 0) { /* empty ranges are skipped, their line deltas kept */
            add(out, &count, offset, this_line);
            offset += delta;
        }
    }
    add(out, &count, offset, -1);
    return count;
}

#else /* 3.9 */

uint32_t dhatc_linetable_decode(PyCodeObject *code, dhatc_line_range_t *out)
{
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(LINE_TABLE(code));
    Py_ssize_t pairs = PyBytes_GET_SIZE(LINE_TABLE(code)) / 2;
    /* PyCode_Addr2Line: each pair moves the address on, and its line
     * increment applies from that address on (to any offset, even past the
     * code; and offsets before 0 have the first line). */
    int32_t line = code->co_firstlineno;
    int32_t offset = 0;
    uint32_t count = 0;
    add(out, &count, INT32_MIN, line);
    for (Py_ssize_t i = 0; i < pairs; i++, p += 2) {
        offset += p[0];
        line += (int8_t)p[1];
        add(out, &count, offset, line);
    }
    return count;
}

#endif

int32_t dhatc_linetable_line(const dhatc_line_range_t *ranges, uint32_t count, int32_t offset)
{
    /* The last range starting at or before `offset` (the first one starts
     * at INT32_MIN). */
    if (count == 0) {
        return -1;
    }
    uint32_t lo = 0, hi = count; /* ranges[lo].start <= offset < ranges[hi].start */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ranges[mid].start <= offset) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return ranges[lo].line;
}
