"""``dhatc diff OLD NEW``: what changed between two profiles of one program.

Program points are matched by their frames without addresses; the totals of
both files are shown side by side, then the program points whose ``--sort``
figure changed most, new and vanished ones marked.  ``--fail-if-more
FIGURE=LIMIT`` (repeatable) makes it a CI gate: exit status 1 when NEW's
total exceeds OLD's by more than LIMIT (``10%``, or an amount: ``+1MiB``,
``+10``), each exceeded figure and the program points that grew most said
on stderr.
"""

from __future__ import annotations

import argparse
import decimal
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ._dhat_reader import FIGURES, DhatHeader, collection_paused
from ._errors import CommandError
from ._report_common import figures_json, file_json
from ._report_diff import LIMIT_FIGURES, SORT_FIGURES, Change, Comparison, compare
from ._report_format import number, percent
from ._report_tree import pp_figures
from ._terminal import Line, Output, add_output_arguments, display_width, shorten_frame, wrap

HELP = "compare two DHAT files program point by program point; fail a CI job on growth"

DEFAULT_TOP = 10
DEFAULT_SORT = "total_bytes"
#: Program points named under an exceeded limit.
GATE_PPS = 3

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Limit:
    """One --fail-if-more: NEW's total of `figure` may exceed OLD's by at most
    `percent` percent of OLD's, or by `amount`."""

    text: str  # as given
    name: str  # as given: max_bytes
    figure: str  # what it bounds: gmax_bytes
    percent: Optional[decimal.Decimal]
    amount: Optional[int]

    def allowed(self, old: int) -> decimal.Decimal:
        if self.amount is not None:
            return decimal.Decimal(self.amount)
        assert self.percent is not None
        return decimal.Decimal(old) * self.percent / 100

    def describe(self, old: int, unit: str) -> str:
        if self.amount is not None:
            return f"the {number(self.amount)} {unit} allowed"
        allowed = self.allowed(old)
        amount = number(int(allowed)) if allowed == int(allowed) else number(float(allowed))
        return f"the {self.percent}% allowed ({amount} {unit})"


def parse_limit(text: str) -> Limit:
    """``total_bytes=10%``, ``total_bytes=10``, ``total_bytes=+1MiB``, ``max_blocks=+10``."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    example = "e.g. total_bytes=10% or max_blocks=+10"
    if not sep or not value:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write FIGURE=PERCENT or FIGURE=+AMOUNT, {example}")
    if name not in LIMIT_FIGURES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown figure {name!r}; use one of {', '.join(LIMIT_FIGURES)}")
    figure = LIMIT_FIGURES[name]
    if value.startswith("+"):
        match = _SIZE.match(value[1:])
        unit = match.group(2).lower() if match else None
        blocks = figure.endswith("_blocks")
        if match is None or unit not in _SIZE_UNITS or (blocks and unit):
            what = ("a whole number of blocks (events)" if blocks else
                    "an amount of bytes like +1MiB, +1.5 KB or +512 (KB = 1000, KiB = 1024)")
            raise argparse.ArgumentTypeError(f"{text!r}: after '+' comes {what}")
        with decimal.localcontext() as context:
            context.prec = len(match.group(1)) + 13
            amount = decimal.Decimal(match.group(1)) * _SIZE_UNITS[unit]
        return Limit(text, name, figure, None, int(amount))  # whole bytes: rounds down
    try:
        share = decimal.Decimal(value[:-1] if value.endswith("%") else value)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {value!r} is not a percentage; {example}") from None
    if not share.is_finite() or share < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the percentage must be 0 or more")
    return Limit(text, name, figure, share, None)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare two DHAT files of one program (any mix of dhatc's, the dhat crate's and "
        "Valgrind's): totals side by side, then the program points whose figure changed "
        "most, matched by their frames without addresses.")
    parser.add_argument("old", metavar="OLD", help="the DHAT file before ('-': standard input)")
    parser.add_argument("new", metavar="NEW", help="the DHAT file after")
    parser.add_argument("--sort", metavar="FIGURE", default=DEFAULT_SORT,
                        help=f"the figure whose change ranks program points (default: "
                             f"{DEFAULT_SORT}): {', '.join(SORT_FIGURES)}")
    parser.add_argument("--top", metavar="N", type=_count, default=DEFAULT_TOP,
                        help=f"show the N program points that changed most (default: "
                             f"{DEFAULT_TOP}; 0: all)")
    parser.add_argument("--fail-if-more", metavar="FIGURE=LIMIT", type=parse_limit,
                        action="append", default=[], dest="limits",
                        help="exit 1 if NEW's total FIGURE exceeds OLD's by more than LIMIT: "
                             "a percentage of OLD's (10%%, or just 10) or an amount (+1MiB, "
                             "+10); repeatable. FIGURE: total_bytes, total_blocks, max_bytes "
                             "and max_blocks (the global peak, t-gmax), curr_bytes and "
                             "curr_blocks (t-end), reads, writes")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output (see docs/report-json.md)")
    add_output_arguments(parser)


# --- figures and their names -----------------------------------------------------------


def _unit(cmp: Comparison, figure: str) -> str:
    """The files' unit for a figure ("bytes", "events"); both if they differ."""
    units = []
    for side in (cmp.old, cmp.new):
        header = side.table.header
        if header.records(figure):
            unit = header.blocks_unit if figure.endswith("_blocks") else header.bytes_unit
            if unit not in units:
                units.append(unit)
    return "/".join(units)


def _label(cmp: Comparison, figure: str) -> str:
    what = {"total": "Total", "max": "Max", "gmax": "At t-gmax", "end": "At t-end"}
    if figure in ("reads", "writes"):
        return f"{figure.capitalize()} ({_unit(cmp, figure)})"
    kind, _, _ = figure.partition("_")
    return f"{what[kind]} ({_unit(cmp, figure)})"


def _signed(n: int) -> str:
    return f"+{number(n)}" if n > 0 else number(n)


def _relative(delta: int, old: Optional[int]) -> str:
    """The change as a percentage of OLD, the viewer's way; "" from 0."""
    if not old or not delta:
        return ""
    text = percent(abs(delta), old)
    return f"+{text}" if delta > 0 else f"-{text}" if delta < 0 else text


@dataclass
class _Verdict:
    limit: Limit
    old: int
    new: int
    exceeded: bool
    growers: List[Change]


def _total_figures(cmp: Comparison) -> List[str]:
    """The figures either file records, in FIGURES order (not lifetimes, not max)."""
    return [f for f in FIGURES
            if f not in ("total_lifetime", "max_bytes", "max_blocks")
            and (cmp.old.table.header.records(f) or cmp.new.table.header.records(f))]


def _check_figure(cmp: Comparison, figure: str, option: str) -> None:
    for side in (cmp.old, cmp.new):
        header = side.table.header
        if not header.records(figure):
            what = ("block lifetimes (an ad hoc or copy profile?)" if figure not in
                    ("reads", "writes") else "reads and writes (only Valgrind's heap "
                                             "profiles do)")
            raise CommandError(f"{option}: {header.path} records no {what}")


def _verdicts(cmp: Comparison, limits: List[Limit]) -> List[_Verdict]:
    verdicts = []
    for limit in limits:
        _check_figure(cmp, limit.figure, f"--fail-if-more {limit.text}")
        old_total, new_total = cmp.totals(limit.figure)
        assert old_total is not None and new_total is not None
        growth = new_total - old_total
        exceeded = growth > limit.allowed(old_total)
        growers = cmp.top(limit.figure, GATE_PPS, growth_only=True) if exceeded else []
        verdicts.append(_Verdict(limit, old_total, new_total, exceeded, growers))
    return verdicts


# --- running ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.sort not in SORT_FIGURES:
        raise CommandError(f"unknown figure {args.sort!r} for --sort; choose from "
                           f"{', '.join(SORT_FIGURES)}")
    figure = SORT_FIGURES[args.sort]
    with collection_paused():  # millions of objects and no cycles: see collection_paused
        cmp = compare(args.old, args.new)
        _check_figure(cmp, figure, f"--sort {args.sort}")
        changes = cmp.top(figure, args.top)
        counts = cmp.counts(figure)
        verdicts = _verdicts(cmp, args.limits)
    status = 1 if any(v.exceeded for v in verdicts) else 0
    out = Output(args.output, args.color, args.wide)
    try:
        if args.json:
            _write_json(out, cmp, figure, changes, counts, verdicts)
        else:
            _write_text(out, cmp, figure, changes, counts)
        out.close()
    finally:
        # Said even when stdout's reader went away: the verdict is the point.
        for verdict in verdicts:
            if verdict.exceeded:
                for line in _verdict_lines(cmp, verdict):
                    print(line, file=sys.stderr)
    return status


def _write_text(out: Output, cmp: Comparison, figure: str, changes: List[Change],
                counts: Dict[str, int]) -> None:
    width = out.width
    for tag, side in (("OLD", cmp.old), ("NEW", cmp.new)):
        h = side.table.header
        n = len(side.table)
        out.line([(f"{tag}: ", "bold"), (h.path, "bold"),
                  (f"  {h.mode}, pid {h.pid}, {n:,} program point{'s' if n != 1 else ''}", "")])
        for line in wrap([("     ", "")], [(h.cmd, "")], [("     ", "")], width):
            out.line(line)
    out.text()
    rows: List[Tuple[str, str, str, str, str, int]] = []
    for name in _total_figures(cmp):
        old_total, new_total = cmp.totals(name)
        delta = (new_total or 0) - (old_total or 0)
        rows.append((_label(cmp, name),
                     "–" if old_total is None else number(old_total),
                     "–" if new_total is None else number(new_total),
                     _signed(delta) if None not in (old_total, new_total) else "",
                     _relative(delta, old_total) if new_total is not None else "", delta))
    widths = [max(display_width(str(r[k])) for r in rows + [("", "OLD", "NEW", "change", "", 0)])
              for k in range(5)]
    out.line([(" " * widths[0], ""), ("  " + "OLD".rjust(widths[1]), "bold"),
              ("  " + "NEW".rjust(widths[2]), "bold"), ("  " + "change".rjust(widths[3]), "bold")])
    for label, old_text, new_text, delta_text, relative, delta in rows:
        style = "red" if delta > 0 else "green" if delta < 0 else ""
        out.line([(label.ljust(widths[0]), ""), ("  " + old_text.rjust(widths[1]), ""),
                  ("  " + new_text.rjust(widths[2]), ""),
                  ("  " + delta_text.rjust(widths[3]), style), ("  " + relative, style)])
    out.text()
    what = _label(cmp, figure)
    summary = (f"Program points by change of {what}: {counts['grew']:,} grew, "
               f"{counts['shrank']:,} shrank, {counts['new']:,} new, "
               f"{counts['vanished']:,} vanished, {counts['unchanged']:,} unchanged")
    shown = len(changes)
    everything = sum(counts.values())
    summary += ("." if not changes else ":" if shown == everything
                else f"; the top {shown:,}:")
    for line in wrap([], [(summary, "")], [], width):
        out.line(line)
    unit = _unit(cmp, figure)
    for change in changes:
        out.text()
        out.line(_change_line(change, unit))
        for i, frame in enumerate(cmp.frames(change), 1):
            label = f"    #{i}: "
            room = None if width is None else max(width - len(label), 20)
            out.line([(label, ""), (shorten_frame(frame, room), "")])


def _change_line(change: Change, unit: str) -> Line:
    style = "red" if change.change > 0 else "green" if change.change < 0 else ""
    amount = f"{_signed(change.change)} {unit}"
    if change.status == "new":
        return [(amount, style), (" (new)", "bold red")]
    if change.status == "vanished":
        return [(amount, style), (" (vanished)", "bold green")]
    assert change.old is not None and change.new is not None
    relative = _relative(change.change, change.old)
    detail = f" ({relative})" if relative else (" (unchanged)" if not change.change else "")
    return [(amount + detail, style), (f": {number(change.old)} → {number(change.new)}", "")]


def _verdict_lines(cmp: Comparison, verdict: _Verdict) -> List[str]:
    limit = verdict.limit
    unit = _unit(cmp, limit.figure)
    growth = verdict.new - verdict.old
    relative = _relative(growth, verdict.old)
    what = limit.name if limit.name == limit.figure else f"{limit.name} ({_MEANING[limit.figure]})"
    lines = [f"dhatc diff: {what} grew by {number(growth)} {unit}"
             f"{f' ({relative})' if relative else ''}, from {number(verdict.old)} to "
             f"{number(verdict.new)}: more than {limit.describe(verdict.old, unit)}"]
    if verdict.growers:
        lines.append("  program points that grew most:")
        for change in verdict.growers:
            frame = _innermost(cmp.frames(change))
            tag = " (new)" if change.status == "new" else ""
            lines.append(f"    {_signed(change.change)} {unit}{tag}  {frame}")
    return lines


# The allocator entries above a program's own frames: dhatc's, Valgrind's and
# the crate's.  A one-line summary of a program point names the frame below them.
_ALLOCATOR = re.compile(
    r"^(Py(Object|Mem)_(Raw)?\w*|(m|c|re|p?v)alloc|free|posix_memalign|aligned_alloc|memalign|"
    r"operator new(\[\])?|<?alloc::|__rg_|<dhat::|dhat::ad_hoc_event)")


_MEANING = {"gmax_bytes": "bytes at the peak, t-gmax", "gmax_blocks": "blocks at the peak, t-gmax",
            "end_bytes": "bytes at the end, t-end", "end_blocks": "blocks at the end, t-end",
            "total_bytes": "total bytes", "total_blocks": "total blocks"}


def _innermost(frames: List[str]) -> str:
    """The first frame that is not an allocator's, and the allocator entry above it."""
    for i, frame in enumerate(frames):
        if not _ALLOCATOR.match(frame):
            via = f" via {frames[i - 1].split(' (')[0]}" if i else ""
            return shorten_frame(frame, 60) + via
    return shorten_frame(frames[0], 60) if frames else "[no frames]"


def _write_json(out: Output, cmp: Comparison, figure: str, changes: List[Change],
                counts: Dict[str, int], verdicts: List[_Verdict]) -> None:
    def figures(side: Any, key: bytes, pp: Optional[int]) -> Optional[Dict[str, Optional[int]]]:
        if pp is None:  # not in that file
            return None
        if side.groups and key in side.groups:
            pps = side.groups[key]
            summed = [sum(pp_figures(side.table, i)[k] for i in pps) for k in range(11)]
            return figures_json(side.table, summed)
        return figures_json(side.table, pp_figures(side.table, pp))

    totals = {}
    for name in _total_figures(cmp):
        old_total, new_total = cmp.totals(name)
        totals[name] = {"old": old_total, "new": new_total,
                        "change": None if None in (old_total, new_total)
                        else (new_total or 0) - (old_total or 0)}
    document = {
        "format": "dhatc-diff", "version": 1,
        "old": file_json(cmp.old.table),
        "new": file_json(cmp.new.table),
        "totals": totals,
        "sort": {"figure": figure},
        "counts": counts,
        "program_points": [
            {"status": c.status, "change": c.change, "frames": cmp.frames(c),
             "old": figures(cmp.old, c.key, c.old_pp), "new": figures(cmp.new, c.key, c.new_pp)}
            for c in changes
        ],
        "limits": [
            {"limit": v.limit.text, "figure": v.limit.figure, "old": v.old, "new": v.new,
             "change": v.new - v.old, "exceeded": v.exceeded,
             "grew_most": [{"change": c.change, "status": c.status, "frames": cmp.frames(c)}
                           for c in v.growers]}
            for v in verdicts
        ],
        "exceeded": any(v.exceeded for v in verdicts),
    }
    out.write(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
