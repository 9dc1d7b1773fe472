/* A code object's line table, decoded once into ranges of byte offsets.
 *
 * PyCode_Addr2Line decodes the table from its start on every call: for a new
 * program point in a function of n lines that is O(n), and a generated
 * 150,000-line function with a program point on each line costs O(n^2).
 * Decoding the whole table once per code object and searching the ranges
 * makes it O(n) in all.  The ranges give exactly what PyCode_Addr2Line gives
 * (tests/test_lines.py compares them on every offset of the standard
 * library's code).
 *
 * Reads only the code object's immutable fields: safe without the GIL.
 * Allocates nothing: the caller provides the memory. */
#ifndef DHATC_LINETABLE_H
#define DHATC_LINETABLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

typedef struct {
    int32_t start; /* first byte offset of the range */
    int32_t line;  /* -1: no line (PyCode_Addr2Line's answer too) */
} dhatc_line_range_t;

/* The size of `code`'s bytecode in bytes: the offsets its table covers. */
Py_ssize_t dhatc_linetable_code_bytes(PyCodeObject *code);

/* An upper bound on the ranges `code`'s table decodes to. */
uint32_t dhatc_linetable_max_ranges(PyCodeObject *code);

/* Decodes `code`'s table into `out` (room for max_ranges() entries),
 * consecutive offsets with one line merged, sorted by start; returns the
 * number of ranges.  Offsets from the last range's start up to the end of
 * the code have its line; past the code, -1. */
uint32_t dhatc_linetable_decode(PyCodeObject *code, dhatc_line_range_t *out);

/* The line of byte offset `offset` in ranges made by decode(). */
int32_t dhatc_linetable_line(const dhatc_line_range_t *ranges, uint32_t count, int32_t offset);

#endif
