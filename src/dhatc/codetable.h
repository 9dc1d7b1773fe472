/* Every code object that appears in a stack the profile captured: the frame
 * a program point shows for it, its decoded line table, and the reference
 * that keeps it alive.
 *
 * Program points are keyed by what the viewer shows, not by object identity:
 * code objects with the same file and qualified name (the same source
 * compiled twice, two lambdas on one line, every dataclass's generated
 * __init__) stand for one another, so a program point's figures -- its max
 * included -- are exact for what the file shows.  The first code object seen
 * with a (file, name) is its representative.
 *
 * A captured stack is keyed by code object addresses, so every code object
 * in one must stay alive while the profile runs (a freed address could be
 * reused by another function): retain_new() takes a reference on each new
 * one, under the GIL, at the first hooked call that holds it.  One that died
 * before (its frame returned and it was destroyed while no GIL-holding call
 * came by) is marked dead and shown as destroyed.
 *
 * resolve() runs under the engine lock (profile.c's canonicalize step, on any
 * thread, with or without the GIL); the table has a lock of its own for
 * retain_new(), taken after the engine lock.  Memory from rawmem only. */
#ifndef DHATC_CODETABLE_H
#define DHATC_CODETABLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

/* At the start of a profile: an empty table.  False if out of memory. */
bool dhatc_codetable_init(void);

/* The frame a program point shows for byte offset `offset` of `code`: the
 * code object standing for it (*shown) and the line.  False if out of
 * memory. */
bool dhatc_codetable_resolve(PyCodeObject *code, int32_t offset, const void **shown,
                             int32_t *line);

/* Whether code objects wait for retain_new().  An unlocked peek for the hooks'
 * fast path; a stale answer only delays retain_new() to a later call. */
bool dhatc_codetable_has_new(void);

/* Takes a reference on each code object added since the last call.  Needs the
 * GIL of the profile's interpreter. */
void dhatc_codetable_retain_new(void);

/* After the profile stopped (and retain_new() ran): whether a program point
 * frame's code object is alive, held by the table. */
bool dhatc_codetable_alive(const void *code);

/* Empties the table, handing each reference it holds to `drop` (which must
 * not re-enter the engine: collect them, drop them after).  Needs the GIL. */
void dhatc_codetable_release(void (*drop)(PyObject *code, void *context), void *context);

/* How many line tables were decoded since the profile started: one per code
 * object, however many program points it has (for tests). */
uint64_t dhatc_codetable_decodes(void);

/* fork: the child forgets the table (maybe half updated by a parent thread). */
void dhatc_codetable_after_fork_child(void);

#endif
