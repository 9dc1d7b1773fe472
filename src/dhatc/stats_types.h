/* dhatc.HeapStats and dhatc.AdHocStats: immutable snapshots whose `get` is a
 * static method, so `dhatc.HeapStats.get()` reaches C without allocating
 * (a classmethod would create a bound method first, which a heap profile
 * would count). */
#ifndef DHATC_STATS_TYPES_H
#define DHATC_STATS_TYPES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyTypeObject dhatc_HeapStats_Type;
extern PyTypeObject dhatc_AdHocStats_Type;

int dhatc_stats_types_ready(void);

#endif
