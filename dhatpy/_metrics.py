"""The figures of a program point that add up along a stack, and so can be
drawn as a flame graph or exported as sample values: total bytes and blocks,
and (heap files only) bytes and blocks live at t-gmax and at t-end.

A PP's own maximum (``mb``/``mbk``) is left out on purpose: two PPs reach
their maxima at different times, so a sum of them measures nothing.  The
names are those of :class:`dhatc._dhat_reader.ReadProgramPoint`'s fields,
and are what ``--metric`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ._dhat_reader import DhatFile, ReadProgramPoint
from ._errors import CommandError


@dataclass(frozen=True)
class Metric:
    """One additive figure of a program point."""

    name: str  # the ReadProgramPoint field, and the --metric value
    title: str  # as the viewer's sort menu words it: "Total", "At t-gmax", "At t-end"
    counts_bytes: bool  # bytes (units) rather than blocks (events)
    heap_only: bool  # needs block lifetimes (absent from ad hoc files)

    def value(self, pp: ReadProgramPoint) -> int:
        """The PP's figure; 0 where the file does not record it."""
        value = getattr(pp, self.name)
        return int(value) if value is not None else 0

    def unit(self, file: DhatFile) -> str:
        """The file's own plural unit name: "bytes"/"blocks", or "units"/"events"."""
        return file.bytes_unit if self.counts_bytes else file.blocks_unit

    def label(self, file: DhatFile) -> str:
        """``Total (bytes)``, ``At t-gmax (blocks)``, ... in the file's units."""
        return f"{self.title} ({self.unit(file)})"


METRICS: Tuple[Metric, ...] = (
    Metric("total_bytes", "Total", True, False),
    Metric("total_blocks", "Total", False, False),
    Metric("gmax_bytes", "At t-gmax", True, True),
    Metric("gmax_blocks", "At t-gmax", False, True),
    Metric("end_bytes", "At t-end", True, True),
    Metric("end_blocks", "At t-end", False, True),
)

METRIC_NAMES: Tuple[str, ...] = tuple(m.name for m in METRICS)


def metrics_of(file: DhatFile) -> Tuple[Metric, ...]:
    """The metrics `file` records: all six for a heap file, the totals for ad hoc."""
    return tuple(m for m in METRICS if file.block_lifetimes or not m.heap_only)


def metric_named(file: DhatFile, name: str) -> Metric:
    """The metric called `name`; CommandError if `file` does not record it."""
    for metric in METRICS:
        if metric.name == name:
            if metric.heap_only and not file.block_lifetimes:
                raise CommandError(
                    f"{file.path} is an ad hoc profile, with no t-gmax or t-end figures: "
                    "choose --metric total_bytes or total_blocks"
                )
            return metric
    raise CommandError(f"unknown metric {name!r} (choose from {', '.join(METRIC_NAMES)})")
