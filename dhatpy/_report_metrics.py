"""The sort metrics of ``dhatc report`` and ``dhatc diff``: the viewer's, by name.

Each of the viewer's "Sort metric" choices (``gSelectData`` in ``dh_view.js``)
is here with a command-line name, the figure it sorts by, the fields it
highlights, what the file must record for it, and its significance test:
a node is significant when its figure is at least a fraction of the root's
(1%, or 0.5% for the metrics that also ask something of the average: tiny,
short-lived, low-access...) and, for those, when the average qualifies.
Some metrics the viewer leaves out because they do not add up in a tree
(max, t-gmax blocks, t-end blocks) are here for the flat report only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence

from ._dhat_reader import DhatHeader
from ._errors import CommandError
from ._report_format import EB, EBK, GB, GBK, MB, MBK, RB, TB, TBK, TL, WB, Formatter, div

Figures = Sequence[float]


@dataclass(frozen=True)
class Metric:
    name: str  # on the command line
    label: str  # the viewer's, "{bytes}"/"{blocks}" standing for the file's units
    field: int  # the figure it sorts by (TB...WB)
    bolds: FrozenSet[str]  # fields the viewer highlights
    needs: str = ""  # "lifetimes" (bklt) or "accesses" (bkacc)
    fraction: float = 0.01  # of the root's figure, for significance
    qualifies: Optional[Callable[[Figures, DhatHeader], bool]] = None  # tiny, short-lived...
    in_viewer: bool = True  # False: the flat report only (not additive in a tree)
    help: str = ""
    qualifier: str = ""  # what `qualifies` asks, after "program points whose ..."

    def title(self, header: DhatHeader) -> str:
        return self.label.format(bytes=header.bytes_unit, blocks=header.blocks_unit)

    def qualifier_text(self, header: DhatHeader) -> str:
        return self.qualifier.format(
            tuth=f"{header.short_lived_threshold or 0:,}", tu=header.time_unit)

    def usable(self, header: DhatHeader) -> bool:
        if self.needs == "lifetimes":
            return header.block_lifetimes
        if self.needs == "accesses":
            return header.block_accesses
        return True

    def significant(self, v: Figures, root: Figures, header: DhatHeader,
                    fraction: Optional[float] = None) -> bool:
        share = self.fraction if fraction is None else fraction
        if not v[self.field] >= share * root[self.field]:
            return False
        return self.qualifies is None or self.qualifies(v, header)

    def threshold_label(self, fmt: Formatter, root: Figures,
                        fraction: Optional[float] = None) -> str:
        """The viewer's "PP significance threshold: ..." text."""
        share = self.fraction if fraction is None else fraction
        bound = share * root[self.field]
        is_blocks = self.field in (TBK, MBK, GBK, EBK)
        amount = (fmt.blocks_perc if is_blocks else fmt.bytes_perc)(bound, root[self.field])
        subject = _SUBJECT[self.field]
        if self.name == "tiny":
            return f"(total >= {amount}) && (avg size <= {fmt.bytes(16)})"
        if self.name == "short_lived":
            tuth = fmt.header.short_lived_threshold or 0
            return f"(total >= {amount}) && (avg lifetime <= {fmt.time(tuth)})"
        if self.name.startswith("zero_rw"):
            return (f"(total >= {amount}) && ((reads == {fmt.bytes(0)}) || "
                    f"(writes == {fmt.bytes(0)}))")
        if self.name.startswith("low_access"):
            return (f"(total >= {amount}) && (reads != {fmt.bytes(0)}) && "
                    f"(writes != {fmt.bytes(0)}) && ((reads <= {fmt.per_byte(0.4)}) || "
                    f"(writes <= {fmt.per_byte(0.4)}))")
        if self.name.startswith("high_access"):
            return (f"({subject} >= {amount}) && ((reads >= {fmt.per_byte(1000)}) || "
                    f"(writes >= {fmt.per_byte(1000)}))")
        return f"{subject} >= {amount}"


_SUBJECT = {TB: "total", TBK: "total", GB: "at-t-gmax", EB: "at-t-end", RB: "reads",
            WB: "writes", MB: "max", MBK: "max", GBK: "at-t-gmax", EBK: "at-t-end", TL: "total"}


def _tiny(v: Figures, header: DhatHeader) -> bool:
    return div(v[TB], v[TBK]) <= 16


def _short_lived(v: Figures, header: DhatHeader) -> bool:
    return div(v[TL], v[TBK]) <= (header.short_lived_threshold or 0)


def _zero_rw(v: Figures, header: DhatHeader) -> bool:
    return v[RB] == 0 or v[WB] == 0


def _low_access(v: Figures, header: DhatHeader) -> bool:
    return (v[RB] != 0 and v[WB] != 0
            and (div(v[RB], v[TB]) <= 0.4 or div(v[WB], v[TB]) <= 0.4))


def _high_access(v: Figures, header: DhatHeader) -> bool:
    return div(v[RB], v[TB]) >= 1000 or div(v[WB], v[TB]) >= 1000


def _b(*names: str) -> FrozenSet[str]:
    return frozenset(names)


_TOTAL_B = _b("totalTitle", "totalBytes")
_TOTAL_BK = _b("totalTitle", "totalBlocks")
_RW_B = _b("totalTitle", "totalBytes", "readsTitle", "readsBytes", "writesTitle", "writesBytes")
_RW_BK = _b("totalTitle", "totalBlocks", "readsTitle", "readsBytes", "writesTitle",
            "writesBytes")
_LOW_B = _b("totalTitle", "totalBytes", "readsTitle", "readsAvgPerByte", "writesTitle",
            "writesAvgPerByte")
_LOW_BK = _b("totalTitle", "totalBlocks", "readsTitle", "readsAvgPerByte", "writesTitle",
             "writesAvgPerByte")

#: In the viewer's menu order, then the flat report's own.
METRICS: List[Metric] = [
    Metric("total_bytes", "Total ({bytes})", TB, _TOTAL_B,
           help="bytes allocated over the whole run"),
    Metric("total_blocks", "Total ({blocks})", TBK, _TOTAL_BK,
           help="blocks allocated over the whole run (the viewer's default)"),
    Metric("tiny", "Total ({blocks}), tiny", TBK, _TOTAL_BK | {"totalAvgSizeBytes"},
           fraction=0.005, qualifies=_tiny, help="blocks of 16 bytes or less on average",
           qualifier="blocks average 16 bytes or less"),
    Metric("short_lived", "Total (blocks), short-lived", TBK, _TOTAL_BK | {"totalAvgLifetime"},
           needs="lifetimes", fraction=0.005, qualifies=_short_lived,
           help="blocks that live no longer than the file's short-lived threshold on average",
           qualifier="blocks live {tuth} {tu} or less on average"),
    Metric("zero_rw_bytes", "Total (bytes), zero reads or zero writes", TB, _RW_B,
           needs="accesses", fraction=0.005, qualifies=_zero_rw,
           help="bytes never read or never written (Valgrind)",
           qualifier="blocks are never read or never written"),
    Metric("zero_rw_blocks", "Total (blocks), zero reads or zero writes", TBK, _RW_BK,
           needs="accesses", fraction=0.005, qualifies=_zero_rw,
           help="blocks never read or never written (Valgrind)",
           qualifier="blocks are never read or never written"),
    Metric("low_access_bytes", "Total (bytes), low-access", TB, _LOW_B,
           needs="accesses", fraction=0.005, qualifies=_low_access,
           help="bytes read or written 0.4 times or less per byte (Valgrind)",
           qualifier="bytes are read or written 0.4 times or less"),
    Metric("low_access_blocks", "Total (blocks), low-access", TBK, _LOW_BK,
           needs="accesses", fraction=0.005, qualifies=_low_access,
           help="blocks read or written 0.4 times or less per byte (Valgrind)",
           qualifier="bytes are read or written 0.4 times or less"),
    Metric("gmax_bytes", "At t-gmax (bytes)", GB, _b("atTGmaxTitle", "atTGmaxBytes"),
           needs="lifetimes", help="bytes live at the global peak"),
    Metric("end_bytes", "At t-end (bytes)", EB, _b("atTEndTitle", "atTEndBytes"),
           needs="lifetimes", help="bytes still live at the end (leaks)"),
    Metric("reads", "Reads (bytes)", RB, _b("readsTitle", "readsBytes"),
           needs="accesses", help="bytes read (Valgrind)"),
    Metric("high_access_reads", "Reads (bytes), high-access", RB,
           _b("readsTitle", "readsBytes", "readsAvgPerByte"), needs="accesses",
           fraction=0.005, qualifies=_high_access,
           help="bytes read, of blocks read or written 1000 times or more per byte",
           qualifier="bytes are read or written 1,000 times or more"),
    Metric("writes", "Writes (bytes)", WB, _b("writesTitle", "writesBytes"),
           needs="accesses", help="bytes written (Valgrind)"),
    Metric("high_access_writes", "Writes (bytes), high-access", WB,
           _b("writesTitle", "writesBytes", "writesAvgPerByte"), needs="accesses",
           fraction=0.005, qualifies=_high_access,
           help="bytes written, of blocks read or written 1000 times or more per byte",
           qualifier="bytes are read or written 1,000 times or more"),
    Metric("max_bytes", "Max (bytes)", MB, _b("maxTitle", "maxBytes"), needs="lifetimes",
           in_viewer=False, help="each program point's own peak of live bytes"),
    Metric("max_blocks", "Max (blocks)", MBK, _b("maxTitle", "maxBlocks"), needs="lifetimes",
           in_viewer=False, help="blocks live at each program point's own peak"),
    Metric("gmax_blocks", "At t-gmax (blocks)", GBK, _b("atTGmaxTitle", "atTGmaxBlocks"),
           needs="lifetimes", in_viewer=False, help="blocks live at the global peak"),
    Metric("end_blocks", "At t-end (blocks)", EBK, _b("atTEndTitle", "atTEndBlocks"),
           needs="lifetimes", in_viewer=False, help="blocks still live at the end"),
]
BY_NAME: Dict[str, Metric] = {m.name: m for m in METRICS}
#: Other names: the ad hoc ones, and HeapStats' curr_* for t-end.
ALIASES = {"units": "total_bytes", "events": "total_blocks", "curr_bytes": "end_bytes",
           "curr_blocks": "end_blocks"}
DEFAULT = "total_blocks"


def metric_names() -> List[str]:
    return [m.name for m in METRICS] + list(ALIASES)


def find(name: str, header: DhatHeader, *, tree: bool = False) -> Metric:
    """The metric called `name`, if `header`'s file supports it; else CommandError."""
    metric = BY_NAME.get(ALIASES.get(name, name))
    if metric is None:
        raise CommandError(f"unknown sort metric {name!r}; choose from "
                           f"{', '.join(metric_names())}")
    if not metric.usable(header):
        what = ("block lifetimes (it is an ad hoc or copy profile)" if metric.needs == "lifetimes"
                else "reads and writes (only Valgrind's heap profiles do)")
        raise CommandError(f"--sort {name}: {header.path} records no {what}")
    if tree and not metric.in_viewer:
        raise CommandError(f"--sort {name} is per program point and does not add up in a "
                           "tree (the viewer has no such metric either); use it without --tree")
    return metric
