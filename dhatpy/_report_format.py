"""Program points as DHAT's viewer shows them, as text: its numbers, its lines.

The viewer (``dh_view.js``) formats numbers with ``Intl.NumberFormat``: at
most two decimals, rounded half away from zero from the double's shortest
decimal form, thousands separators, percentages the same way.  :func:`number`
and :func:`percent` reproduce that, so that ``dhatc report --wide`` prints
the viewer's very lines.  :class:`Formatter` holds a file's units and
totals and builds a node's lines (``PP 1.2/3 {``, ``Total: ...``, frames)
the way the viewer's ``appendTreeInner`` does, including what an
insignificant node leaves out.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import AbstractSet, List, Optional, Sequence, Tuple

from ._dhat_reader import DhatHeader
from ._terminal import Line, Output, display_width, plain, shorten_frame, wrap

# Indices of a node's figures (ReadProgramPoint's, in FIGURES order).
TB, TBK, TL, MB, MBK, GB, GBK, EB, EBK, RB, WB = range(11)
N_FIGURES = 11

_CENT = Decimal("0.01")


def div(num: float, denom: float) -> float:
    """The viewer's division: 0 for 0/0, infinity for x/0, in doubles."""
    if num == 0 and denom == 0:
        return 0.0
    if denom == 0:
        return math.copysign(math.inf, num)
    return float(num) / float(denom)


def _decimal(value: Decimal) -> str:
    text = f"{value.quantize(_CENT, rounding=ROUND_HALF_UP):,.2f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def number(value: float) -> str:
    """``Intl.NumberFormat(undefined, {maximumFractionDigits: 2})`` in en-US:
    ``1,234``, ``36.34``, ``0.33``, ``∞``."""
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return _decimal(Decimal(repr(value)))


def percent(num: float, denom: float) -> str:
    """The viewer's ``perc``: ``57.04%``, ``100%``, ``0%``."""
    value = div(num, denom)
    if math.isnan(value):
        return "NaN%"
    if math.isinf(value):
        return ("∞" if value > 0 else "-∞") + "%"
    return _decimal(Decimal(repr(value)) * 100) + "%"


class Formatter:
    """The viewer's pretty-printers for one file: its units, t-end and root totals."""

    def __init__(self, header: DhatHeader, root: Sequence[float]) -> None:
        self.header = header
        self.root = root
        self.bytes_unit = header.bytes_unit
        self.blocks_unit = header.blocks_unit

    # -- the viewer's helpers, one for one

    def rate(self, n: float) -> str:  # perMinstr
        value = div(1000000 * float(n), self.header.time_of_end)
        return f"{number(value)}/{self.header.time_unit_million}"

    def bytes(self, n: float) -> str:
        return f"{number(n)} {self.bytes_unit}"

    def bytes_perc(self, n: float, total: float) -> str:
        return f"{self.bytes(n)} ({percent(n, total)})"

    def bytes_perc_rate(self, n: float, total: float) -> str:
        return f"{self.bytes(n)} ({percent(n, total)}, {self.rate(n)})"

    def blocks(self, n: float) -> str:
        return f"{number(n)} {self.blocks_unit}"

    def blocks_perc(self, n: float, total: float) -> str:
        return f"{self.blocks(n)} ({percent(n, total)})"

    def blocks_perc_rate(self, n: float, total: float) -> str:
        return f"{self.blocks(n)} ({percent(n, total)}, {self.rate(n)})"

    def avg_size(self, n: float) -> str:
        return f"avg size {self.bytes(n)}"

    def per_byte(self, n: float) -> str:
        return f"{number(n)}/{self.header.byte_unit}"

    def time(self, n: float) -> str:
        return f"{number(n)} {self.header.time_unit}"

    # -- the header

    def invocation_lines(self) -> List[str]:
        """The viewer's "Invocation {...}" and "Times {...}" blocks."""
        h = self.header
        lines = ["Invocation {", f"  Mode:    {h.mode}", f"  Command: {h.cmd}",
                 f"  PID:     {h.pid}", "}", "", "Times {"]
        if h.block_lifetimes and h.time_of_peak is not None:
            lines.append(f"  t-gmax: {self.time(h.time_of_peak)} "
                         f"({percent(h.time_of_peak, h.time_of_end)} of program duration)")
        lines += [f"  t-end:  {self.time(h.time_of_end)}", "}"]
        return lines

    # -- a node

    def node_lines(self, v: Sequence[float], *, title: str, significant: bool,
                   bolds: AbstractSet[str], leaf: bool, frames: Sequence[str],
                   ancestors: Sequence[str] = (), first_number: int = 1,
                   aggregate: bool = False,
                   accesses: Optional[Sequence[float]] = None) -> List[Tuple[Line, int]]:
        """A node's lines as appendTreeInner builds them, each with the column
        its continuation lines start at when wrapped.

        `v` holds the node's figures (TB...WB); `title` is "PP 1.2/3 (2 children)
        " or similar; `leaf` adds the "Max" line (not for the root); an
        insignificant node shows only what the viewer shows of one: its title,
        the sort metric's own figures, its frames.  `ancestors` are the frames
        above the node's own (shown as ^N), `first_number` is 0 for the root
        (whose first frame is "[root]").
        """
        out = _NodeText(significant)
        fr, nl = out.fr, out.nl
        h = self.header
        root = self.root
        fr(f"{title}{{", True, False)
        nl(True)

        fr("  Total:     ", "totalTitle" in bolds)
        fr(self.bytes_perc_rate(v[TB], root[TB]), "totalBytes" in bolds)
        fr(" in ")
        fr(self.blocks_perc_rate(v[TBK], root[TBK]), "totalBlocks" in bolds)
        fr(", ", "totalAvgSizeBytes" in bolds, False)
        fr(self.avg_size(div(v[TB], v[TBK])), "totalAvgSizeBytes" in bolds)
        if h.block_lifetimes:
            lifetime = div(v[TL], v[TBK])
            fr(", ", "totalAvgLifetime" in bolds, False)
            fr(f"avg lifetime {self.time(lifetime)} "
               f"({percent(lifetime, h.time_of_end)} of program duration)",
               "totalAvgLifetime" in bolds)
        nl("totalTitle" in bolds)

        if h.block_lifetimes:
            if leaf:
                # Not in the viewer's bolds: dhatc's flat report sorts by them.
                fr("  Max:       ", "maxTitle" in bolds)
                fr(self.bytes(v[MB]), "maxBytes" in bolds)
                fr(" in ", "maxTitle" in bolds, False)
                fr(self.blocks(v[MBK]), "maxBlocks" in bolds)
                fr(f", {self.avg_size(div(v[MB], v[MBK]))}")
                nl("maxTitle" in bolds)
            fr("  At t-gmax: ", "atTGmaxTitle" in bolds)
            fr(self.bytes_perc(v[GB], root[GB]), "atTGmaxBytes" in bolds)
            fr(" in ", "atTGmaxBlocks" in bolds, False)
            fr(self.blocks_perc(v[GBK], root[GBK]), "atTGmaxBlocks" in bolds)
            fr(f", {self.avg_size(div(v[GB], v[GBK]))}")
            nl("atTGmaxTitle" in bolds)
            fr("  At t-end:  ", "atTEndTitle" in bolds)
            fr(self.bytes_perc(v[EB], root[EB]), "atTEndBytes" in bolds)
            fr(" in ", "atTEndBlocks" in bolds, False)
            fr(self.blocks_perc(v[EBK], root[EBK]), "atTEndBlocks" in bolds)
            fr(f", {self.avg_size(div(v[EB], v[EBK]))}")
            nl("atTEndTitle" in bolds)

        if h.block_accesses:
            for name, index in (("reads", RB), ("writes", WB)):
                fr(f"  {name.capitalize() + ':':<11}", f"{name}Title" in bolds)
                fr(self.bytes_perc_rate(v[index], root[index]), f"{name}Bytes" in bolds)
                fr(", ", f"{name}Bytes" in bolds and f"{name}AvgPerByte" in bolds, False)
                fr(self.per_byte(div(v[index], v[TB])), f"{name}AvgPerByte" in bolds)
                nl(f"{name}Title" in bolds)
            if accesses:  # significant nodes only, 32 counts a line
                row = "  Accesses: {"
                previous: Optional[float] = None
                for i, n in enumerate(accesses):
                    if i % 32 == 0:
                        out.text_line(row, 11)  # wrapped rows go on under the counts
                        row = f"    [{i:>3}]  {_access(n)} "
                    else:
                        row += "〃 " if n == previous and n != 0 else f"{_access(n)} "
                    previous = n
                out.text_line(row, 11)
                out.text_line("  }", 0)

        fr(f"  {h.verb} at {{", True, False)
        nl(True)
        if aggregate:
            for frame in frames:
                out.frame(f"    {frame}", True)
        else:
            i = first_number
            for frame in ancestors:
                out.frame(f"    ^{i}: ", False, frame)
                i += 1
            for frame in frames:
                out.frame(f"    #{i}: ", True, frame)
                i += 1
        fr("  }", True, False)
        nl(True)
        fr("}", True, False)
        nl(True)
        return out.lines


def _access(n: float) -> str:
    """The viewer's `accesses`: "-" for none, "∞" for the latched count."""
    if n == 0:
        return "-"
    return "∞" if math.isinf(n) else str(int(n))


class _NodeText:
    """The viewer's fr()/nl(): fragments that an insignificant node does not
    show are dropped, and so are the lines they would have made."""

    def __init__(self, significant: bool) -> None:
        self.significant = significant
        self.current: Line = []
        self.lines: List[Tuple[Line, int]] = []
        self.indent = 0

    def fr(self, text: str, show_if_insignificant: Optional[bool] = False,
           bold: Optional[bool] = None) -> None:
        if not show_if_insignificant and not self.significant:
            return
        if bold is None:
            bold = bool(show_if_insignificant)
        if not self.current:
            self.indent = len(text)  # continuation lines start under the first figure
        self.current.append((text, "bold" if bold else ""))

    def nl(self, show_if_insignificant: Optional[bool] = False) -> None:
        if not show_if_insignificant and not self.significant:
            return
        self.lines.append((self.current, self.indent))
        self.current = []

    def text_line(self, text: str, indent: int) -> None:
        """A line of its own that significant nodes show (continued under `indent`)."""
        if self.significant:
            self.lines.append(([(text, "")], indent))

    def frame(self, label: str, show_if_insignificant: bool, frame: str = "") -> None:
        """A frame line; the frame is its own fragment, so it can be shortened."""
        if not show_if_insignificant and not self.significant:
            return
        line: Line = [(label, "")]
        if frame:
            line.append((frame, "frame"))
        self.lines.append((line, -1))  # -1: a frame line, shortened, not wrapped



def emit_node(out: Output, lines: Sequence[Tuple[Line, int]], first: Line, rest: Line,
              dim: bool = False) -> None:
    """Writes a node's lines: `first` before its first line (the tree line and
    arrow), `rest` before the others; figure lines wrapped to the output's
    width under their first figure, frames shortened to fit.  `dim`: an
    insignificant node, greyed as in the viewer (bold figures stay bold)."""
    width = out.width
    for n, (line, indent) in enumerate(lines):
        prefix = first if n == 0 else rest
        if dim:
            line = [(text, style or "dim") for text, style in line]
        if indent < 0:  # a frame line: its label, then the frame
            label = line[0]
            frame = line[1][0] if len(line) > 1 else ""
            room = None if width is None else max(
                width - display_width(plain(prefix) + label[0]), 20)
            out.line(list(prefix) + [label, (shorten_frame(frame, room), "dim" if dim else "")])
            continue
        continuation = list(rest) + [(" " * indent, "")]
        for wrapped in wrap(prefix, line, continuation, width):
            out.line(wrapped)
