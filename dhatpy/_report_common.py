"""What ``dhatc report`` and ``dhatc diff`` share: reading a file named on the
command line, the header lines, the figures as JSON."""

from __future__ import annotations

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
