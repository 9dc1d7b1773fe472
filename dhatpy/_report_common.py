"""What ``dhatc report`` and ``dhatc diff`` share: reading a file named on the
command line, ranking program points, the header lines, the figures as JSON."""

from __future__ import annotations

import heapq
import itertools
import operator
import sys
from typing import Any, Dict, List, Optional, Sequence

from ._dhat_reader import FIGURES, DhatFileError, DhatTable, load_table, loads_table
from ._report_format import EB, EBK, GB, GBK, RB, TB, TBK, WB, Formatter

#: What the time units of the known writers count.
_TIME_UNITS = {
    "instrs": "instructions executed",
    "allocs": "allocations made",
    "µs": "microseconds",
    "events": "events counted",
}


def read_table(path: str, *, parallel: bool = False) -> DhatTable:
    """The file at `path`, or standard input for "-"; `parallel`: see load_table."""
    if path == "-":
        try:
            data = sys.stdin.buffer.read()
        except (OSError, AttributeError, ValueError) as e:
            raise DhatFileError(f"<stdin>: cannot read it: {e}") from None
        if not data:
            raise DhatFileError("<stdin>: empty (nothing was piped in?)")
        return loads_table(data, "<stdin>", parallel=parallel)
    return load_table(path, parallel=parallel)


def top_indices(candidates: Sequence[int], columns: Sequence[Sequence[int]], n: int) -> List[int]:
    """The first `n` (0: all) of `candidates` (ascending indices into the columns)
    ranked by columns[0] descending, then columns[1] descending..., then by index.

    Only what can be among the first n is sorted: each column in turn keeps those
    at least as big as its n-th biggest (C-level passes; a million candidates take
    a fraction of a second), and the ties on every column go by index."""
    whole = isinstance(candidates, range) and candidates == range(len(columns[0]))
    chosen = list(candidates)
    if n and n < len(chosen):
        ahead: List[int] = []  # ranked above all of `chosen` by some column already
        need = n
        for column in columns:
            # Every candidate, the first time: the column itself.
            values = list(column) if whole else list(map(column.__getitem__, chosen))
            whole = False
            bound = heapq.nlargest(need, values)[-1]
            above = list(itertools.compress(chosen, map(operator.gt, values,
                                                        itertools.repeat(bound))))
            chosen = list(itertools.compress(chosen, map(operator.eq, values,
                                                         itertools.repeat(bound))))
            ahead += above
            need -= len(above)
            if len(chosen) <= need:
                break
        chosen = ahead + chosen[:need]

    def key(i: int) -> List[int]:
        return [-column[i] for column in columns] + [i]

    chosen.sort(key=key)
    return chosen


def totals(table: DhatTable) -> List[int]:
    """The root's figures, TB...WB (0 for those the file does not record)."""
    return [table.total(name) or 0 for name in FIGURES]


def header_lines(fmt: Formatter, table: DhatTable) -> List[str]:
    """The viewer's Invocation and Times blocks, the time unit, and the totals."""
    h = table.header
    lines = fmt.invocation_lines()
    meaning = _TIME_UNITS.get(h.time_unit)
    if meaning:
        lines.insert(-1, f"  unit:   {h.time_unit} = {meaning}")
    root = fmt.root
    lines += ["", "Totals {",
              f"  Total:     {fmt.bytes(root[TB])} in {fmt.blocks(root[TBK])}"]
    if h.block_lifetimes:
        lines += [f"  At t-gmax: {fmt.bytes(root[GB])} in {fmt.blocks(root[GBK])}",
                  f"  At t-end:  {fmt.bytes(root[EB])} in {fmt.blocks(root[EBK])}"]
    if h.block_accesses:
        lines += [f"  Reads:     {fmt.bytes(root[RB])}", f"  Writes:    {fmt.bytes(root[WB])}"]
    lines.append("}")
    return lines


def file_json(table: DhatTable) -> Dict[str, Any]:
    h = table.header
    return {
        "path": h.path,
        "mode": h.mode,
        "verb": h.verb,
        "cmd": h.cmd,
        "pid": h.pid,
        "block_lifetimes": h.block_lifetimes,
        "block_accesses": h.block_accesses,
        "units": {"byte": h.byte_unit, "bytes": h.bytes_unit, "blocks": h.blocks_unit,
                  "time": h.time_unit, "time_million": h.time_unit_million},
        "short_lived_threshold": h.short_lived_threshold,
        "time_of_peak": h.time_of_peak,
        "time_of_end": h.time_of_end,
        "program_points": len(table),
    }


def figures_json(table: DhatTable, v: Sequence[int], *, leaf: bool = True) -> Dict[str, Optional[int]]:
    """Figures by name, None for those the file does not record (and for max_*
    of a node that is not one program point: maxima do not add up)."""
    result: Dict[str, Optional[int]] = {}
    for k, name in enumerate(FIGURES):
        recorded = table.header.records(name) and (leaf or not name.startswith("max_"))
        result[name] = v[k] if recorded else None
    return result
