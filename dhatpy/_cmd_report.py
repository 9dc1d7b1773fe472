"""``dhatc report FILE``: a DHAT file's header and top program points, or its tree.

Reads any DHAT file (dhatc's, the dhat crate's, Valgrind's).  Without
``--tree``: the viewer's Invocation and Times, the totals, then the top
``--top N`` program points by ``--sort METRIC``, each as the viewer shows a
leaf (figures, percentages of the totals, averages, frames).  With
``--tree``: the viewer's tree, nodes under ``--threshold`` folded.
``--json``: the same data for programs (schema in docs/report-json.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any, Dict, List, Optional, Sequence

from . import _report_metrics as metrics
from ._dhat_reader import FIGURES, DhatTable, collection_paused
from ._errors import CommandError
from ._report_common import (figures_json, file_json, header_lines, read_table, top_indices,
                             totals)
from ._report_format import Formatter, emit_node
from ._report_metrics import Metric
from ._report_tree import (AGGREGATE, LEAF, SIG_SELF, arrow, build, frame_strings,
                           layout, mark_significance, pp_accesses, pp_figures, title)
from ._terminal import Output, add_output_arguments

HELP = "show a DHAT file's top program points (or its tree) in the terminal"

#: Program points shown by default.
DEFAULT_TOP = 10


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, got {value}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 0 to 100, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show a DHAT file (dhatc's, the dhat crate's or Valgrind's) in the terminal: "
        "its command, times and totals, then its top program points by a sort metric "
        "as DHAT's viewer shows them, or the viewer's tree with --tree.")
    parser.add_argument("file", metavar="FILE", help="the DHAT file ('-': standard input)")
    parser.add_argument(
        "--sort", metavar="METRIC", default=metrics.DEFAULT,
        help=f"what to rank by (default: {metrics.DEFAULT}): "
             + "; ".join(f"{m.name}: {m.help}" for m in metrics.METRICS)
             + "; units and events for ad hoc files (total_bytes, total_blocks)")
    parser.add_argument("--top", metavar="N", type=_count, default=DEFAULT_TOP,
                        help=f"show the first N program points (default: {DEFAULT_TOP}; 0: all)")
    parser.add_argument("--tree", action="store_true",
                        help="the viewer's tree: program points merged by their frames from "
                             "the allocation point down")
    parser.add_argument("--threshold", metavar="PERCENT", type=_percent,
                        help="with --tree: fold nodes under PERCENT of the total into one "
                             "line (default: the viewer's, 1%%, or 0.5%% for tiny, "
                             "short_lived and the access metrics)")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output (see docs/report-json.md)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.threshold is not None and not args.tree:
        raise CommandError("--threshold applies to the tree; add --tree")
    with collection_paused():  # millions of objects and no cycles: see collection_paused
        table = read_table(args.file, parallel=True)  # a command: it may fork
        metric = metrics.find(args.sort, table.header, tree=args.tree)
        fraction = None if args.threshold is None else args.threshold / 100
        out = Output(args.output, args.color, args.wide)
        if args.tree:
            _tree(out, table, metric, fraction, args.json)
        else:
            _flat(out, table, metric, args.top, args.json)
        out.close()
    return 0


# --- the flat report -------------------------------------------------------------------


def qualifying(table: DhatTable, metric: Metric) -> Sequence[int]:
    """The PPs that qualify for the metric (all of them but for tiny and the like), in
    file order."""
    n = len(table)
    if metric.qualifies is None:
        return range(n)
    columns = [table.column(name) for name in FIGURES]
    # PP i's figures, TB...WB, 0 where the file does not record one (TB and TBK it always does).
    rows = zip(*(itertools.repeat(0) if c is None else c for c in columns))
    return list(itertools.compress(range(n), map(metric.qualifies, rows,
                                                 itertools.repeat(table.header))))


def ranked(table: DhatTable, metric: Metric, top: int,
           candidates: Optional[Sequence[int]] = None) -> List[int]:
    """The PPs to show, best first: by the metric, then total bytes (descending), then
    file order; only those that qualify for a metric such as tiny (`candidates`, if
    they are known already)."""
    column = table.column(FIGURES[metric.field])
    total_bytes = table.column("total_bytes")
    assert column is not None and total_bytes is not None
    if candidates is None:
        candidates = qualifying(table, metric)
    return top_indices(candidates, (column, total_bytes), top)


def _flat(out: Output, table: DhatTable, metric: Metric, top: int, as_json: bool) -> None:
    root = totals(table)
    candidates = qualifying(table, metric)
    chosen = ranked(table, metric, top, candidates)
    matching = len(candidates)
    if as_json:
        document: Dict[str, Any] = {
            "format": "dhatc-report", "version": 1,
            "file": file_json(table),
            "totals": figures_json(table, root, leaf=False),
            "sort": {"metric": metric.name, "label": metric.title(table.header)},
            "matching": matching,
            "program_points": [
                {"rank": rank, "index": i, "frames": list(table.frames(i)),
                 **figures_json(table, pp_figures(table, i))}
                for rank, i in enumerate(chosen, 1)
            ],
        }
        out.write(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return
    fmt = Formatter(table.header, root)
    for line in header_lines(fmt, table):
        out.paragraph(line)
    out.text()
    label = metric.title(table.header)
    n = len(table)
    if metric.qualifies is not None:
        what = (f"{matching:,} of {n:,} program points whose "
                f"{metric.qualifier_text(table.header)}")
    else:
        what = f"{n:,} program point{'s' if n != 1 else ''}"
    shown = "" if len(chosen) == matching else f", the top {len(chosen):,}"
    out.paragraph(f"{what}, sorted by {label}{shown}{':' if chosen else '.'}")
    for rank, i in enumerate(chosen, 1):
        out.text()
        lines = fmt.node_lines(pp_figures(table, i), title=f"PP {rank}/{matching} ",
                               significant=True, bolds=metric.bolds, leaf=True,
                               frames=table.frames(i), accesses=pp_accesses(table, i))
        emit_node(out, lines, [], [])


# --- the tree --------------------------------------------------------------------------


def _tree(out: Output, table: DhatTable, metric: Metric, fraction: Optional[float],
          as_json: bool) -> None:
    tree = build(table)
    mark_significance(tree, metric, fraction)
    root_v = tree.figures(tree.root)
    fmt = Formatter(table.header, root_v)
    threshold = metric.threshold_label(fmt, root_v, fraction)
    share = metric.fraction if fraction is None else fraction
    if as_json:
        nodes = []
        for shown in layout(tree, metric):
            node = shown.node
            entry: Dict[str, Any] = {
                "id": shown.id,
                "parent": shown.parent.id if shown.parent is not None else None,
                "kind": {LEAF: "leaf", AGGREGATE: "aggregate"}.get(node.kind, "internal"),
                "significant": node.sig == SIG_SELF,
                "children": len(shown.kids) if shown.kids is not None else 0,
                "frames": [node.label] if node.kind == AGGREGATE
                else frame_strings(table, tree.frames(node)[1 if shown.parent is None else 0:]),
            }
            entry.update(figures_json(table, tree.figures(node),
                                      leaf=node.kind == LEAF and shown.parent is not None))
            nodes.append(entry)
        document = {
            "format": "dhatc-report-tree", "version": 1,
            "file": file_json(table),
            "totals": figures_json(table, root_v, leaf=False),
            "sort": {"metric": metric.name, "label": metric.title(table.header)},
            "threshold": {"percent": share * 100, "text": threshold},
            "nodes": nodes,
        }
        out.write(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return
    for line in header_lines(fmt, table):
        out.paragraph(line)
    out.text()
    for shown in layout(tree, metric):
        node = shown.node
        is_root = shown.parent is None
        if node.kind == AGGREGATE:
            frames, ancestors = [node.label], []
        else:
            frames = frame_strings(table, tree.frames(node))
            ancestors = frame_strings(table, tree.ancestor_frames(node))
        significant = node.sig == SIG_SELF
        lines = fmt.node_lines(tree.figures(node), title=title(shown), significant=significant,
                               bolds=metric.bolds, leaf=node.kind == LEAF and not is_root,
                               frames=frames, ancestors=ancestors,
                               first_number=0 if is_root else 1,
                               aggregate=node.kind == AGGREGATE,
                               accesses=tree.accesses(node) if significant else None)
        first = [(shown.tl_first, "dim"), (arrow(shown), "dim")]
        emit_node(out, lines, first, [(shown.tl_rest, "dim")], dim=not significant)
    out.text()
    out.paragraph(f"PP significance threshold: {threshold}")
