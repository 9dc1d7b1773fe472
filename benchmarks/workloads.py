"""Allocation-heavy workloads for comparing heap profilers.

Each workload is a plain function taking no arguments.  They are sized so that,
unprofiled, each takes roughly this long on the reference machine (2 cores,
CPython 3.11): churn ~0.08 s, grow ~0.10 s, json ~0.20 s,
deep ~0.10 s.  They return a small value so the work cannot be optimised away and
so a caller can sanity-check the result.

``WORKLOADS`` maps a workload name to its function; the runner (``run.py``)
looks workloads up there and nowhere else.  To add a workload, write a function
here and add it to ``WORKLOADS``.  The ``native`` workload (allocations made by
C code through ``malloc``, which only a preload / native-mode profiler sees)
needs ``sqlite3``: like any workload whose module may be missing, it is
registered only when the import succeeds, so the runner's ``--workloads`` list
reports it as unknown rather than failing at import time.
"""

from __future__ import annotations

import json as _json
from typing import Any, Callable

# --- churn -----------------------------------------------------------------
CHURN_ITERATIONS = 300_000


def churn() -> int:
    """Short-lived objects: each iteration builds a small dict holding a str,
    a list and a tuple, and drops the previous one.  The live heap stays tiny;
    nearly every allocation is freed within an iteration."""
    last: dict[str, Any] = {}
    for i in range(CHURN_ITERATIONS):
        last = {"name": str(i), "items": [i, i + 1], "pair": (i, i + 1)}
    return len(last)


# --- grow ------------------------------------------------------------------
GROW_ITEMS = 400_000


def grow() -> int:
    """A growing heap: append 400k fresh tuples to one list (which is
    reallocated as it grows).  Everything stays live until the end."""
    out: list[tuple[int, int]] = []
    for i in range(GROW_ITEMS):
        out.append((i, i * 2))
    return len(out)


# --- json ------------------------------------------------------------------
JSON_OBJECTS = 4_000
JSON_ROUNDS = 30

# Built once at import time, so building it is not part of the measurement.
JSON_DOCUMENT: list[dict[str, Any]] = [
    {"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(JSON_OBJECTS)
]


def json() -> int:
    """Library code: 30 rounds of ``json.dumps`` then ``json.loads`` of a
    document of 4,000 small objects (~218 kB of JSON text).  Mostly C code
    allocating strings, dicts and lists, under a few Python frames of the
    ``json`` package."""
    decoded: Any = None
    for _ in range(JSON_ROUNDS):
        decoded = _json.loads(_json.dumps(JSON_DOCUMENT))
    return len(decoded)


# --- deep ------------------------------------------------------------------
DEEP_DEPTH = 60
DEEP_ITERATIONS = 40_000
DEEP_ROW = 96


def _allocate_in_loop() -> int:
    """The leaf of ``deep``: one 96-slot list per iteration (a few allocator
    calls), then a pass over it that does not allocate (small ints, xor).
    Allocations are much sparser than in ``churn`` -- tracemalloc with one
    frame costs ~2x here against ~10x there -- so what matters here is less
    the cost per allocation than how a profiler handles a 60-frame stack."""
    acc = 0
    for i in range(DEEP_ITERATIONS):
        row = [i & 255] * DEEP_ROW
        for x in row:
            acc ^= x
    return acc


def _descend(level: int) -> int:
    """Frame number ``level`` of the recursion (``deep`` itself is frame 1);
    the leaf runs as frame number ``DEEP_DEPTH``."""
    if level >= DEEP_DEPTH - 1:
        return _allocate_in_loop()
    return _descend(level + 1)


def deep() -> int:
    """Allocations made 60 Python frames deep: recurse until the stack holds 60
    frames (counting this one and the leaf), then allocate in a loop.
    Stresses stack capture and trimming (``trim_backtraces`` defaults to 10)."""
    return _descend(2)


# --- native ------------------------------------------------------------------
NATIVE_ROUNDS = 40
NATIVE_ROWS = 1_000

try:
    import sqlite3 as _sqlite3
except ImportError:  # an interpreter built without SQLite: no native workload
    _sqlite3 = None  # type: ignore[assignment]


def native() -> int:
    """C code allocating with ``malloc``: SQLite (which CPython leaves on the
    system allocator) inserts 1,000 rows, selects a seventh of them and
    deletes them, 40 times, in an in-memory database: about 120k blocks from
    malloc (and 180k from Python's allocators) per call, ~0.1 s unprofiled.
    Only a profiler that interposes malloc (``python -m dhatc run``, memray)
    sees the native ones."""
    con = _sqlite3.connect(":memory:")
    con.execute("create table t (id integer primary key, name text, v real)")
    total = 0
    for r in range(NATIVE_ROUNDS):
        con.executemany(
            "insert into t (name, v) values (?, ?)",
            ((f"n{i}", i * 0.5) for i in range(NATIVE_ROWS)),
        )
        for name, _v in con.execute("select name, v from t where id % 7 = ?", (r % 7,)):
            total += len(name)
        con.execute("delete from t")
    con.close()
    return total


# --- registry --------------------------------------------------------------
WORKLOADS: dict[str, Callable[[], object]] = {
    "churn": churn,
    "grow": grow,
    "json": json,
    "deep": deep,
}
if _sqlite3 is not None:
    WORKLOADS["native"] = native


if __name__ == "__main__":
    # Quick sanity check: time each workload once, unprofiled.
    import time

    for name, func in WORKLOADS.items():
        func()  # warm-up
        t0 = time.perf_counter()
        func()
        print(f"{name:6} {time.perf_counter() - t0:.3f} s")
