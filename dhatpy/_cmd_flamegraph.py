"""``dhatc flamegraph FILE -o OUT.html``: a flame graph of a DHAT file, as one
self-contained HTML page (no network, no library: the page's own script draws
on a canvas).

The page draws the program points merged into a tree by their common frames,
root at the top (an icicle).  By default the outermost callers are just
below the root and the allocation points at the tips, the usual flame graph,
where a wide box is a caller that much memory goes through; the page can also
put the allocation points first, as DHAT's viewer's tree does.  Metric, search
and zoom are switched in the page (see flamegraph/flamegraph.js).

The data is embedded compactly: the frame table once, then one array per
figure with one entry per PP, and each PP's frames as indices.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO, Dict, List

from . import _dhat_reader
from ._dhat_reader import DhatFile
from ._metrics import METRIC_NAMES, metric_named
from ._output import STDOUT, check_output_path, write_output

HELP = "write a flame graph of a DHAT file as one self-contained HTML page"

ASSETS = Path(__file__).resolve().parent / "flamegraph"

# Figures per PP in the page, by the DHAT file's own short keys.
_TOTAL_KEYS = (("tb", "total_bytes"), ("tbk", "total_blocks"))
_HEAP_KEYS = (
    ("tl", "total_lifetime"), ("mb", "max_bytes"), ("mbk", "max_blocks"),
    ("gb", "gmax_bytes"), ("gbk", "gmax_blocks"), ("eb", "end_bytes"), ("ebk", "end_blocks"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a DHAT file (dhatc's, Valgrind's or the Rust crate's)")
    parser.add_argument(
        "-o", "--output", metavar="OUT.html",
        help="where to write the page ('-' for standard output; default: FILE's name "
        "with .html instead of .json, in the current directory)",
    )
    parser.add_argument(
        "--metric", choices=METRIC_NAMES, default="total_bytes",
        help="the metric the page shows first (all are switchable in the page; default: total_bytes)",
    )


def page_data(file: DhatFile, metric: str = "total_bytes") -> Dict[str, Any]:
    """The page's data: header fields, frame table, and per-PP arrays."""
    ftbl: Dict[str, int] = {}
    counts: List[int] = []
    fs: List[int] = []
    keys = _TOTAL_KEYS + (_HEAP_KEYS if file.block_lifetimes else ())
    arrays: Dict[str, List[int]] = {key: [] for key, _ in keys}
    for pp in file.pps:
        counts.append(len(pp.frames))
        fs.extend(ftbl.setdefault(frame, len(ftbl)) for frame in pp.frames)
        for key, name in keys:
            value = getattr(pp, name)
            arrays[key].append(int(value) if value is not None else 0)
    data: Dict[str, Any] = {
        "name": os.path.basename(file.path),
        "cmd": file.cmd,
        "pid": file.pid,
        "mode": file.mode,
        "heap": file.block_lifetimes,
        "bu": file.byte_unit,
        "bsu": file.bytes_unit,
        "bksu": file.blocks_unit,
        "tu": file.time_unit,
        "Mtu": file.time_unit_million,
        "te": file.time_of_end,
        "metric": metric,
        "ftbl": list(ftbl),
        "n": counts,
        "fs": fs,
    }
    data.update(arrays)
    return data


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no "<" at all (so no
    "</script>" and no "<!--"), written as the JSON escape \\u003c."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def page_html(file: DhatFile, metric: str = "total_bytes") -> str:
    """The whole page for `file`, the template filled in."""
    template = (ASSETS / "flamegraph.html").read_text(encoding="utf-8")
    parts = {
        "TITLE": html.escape(f"dhatc flame graph - {os.path.basename(file.path)}"),
        "CSS": (ASSETS / "flamegraph.css").read_text(encoding="utf-8"),
        "JS": (ASSETS / "flamegraph.js").read_text(encoding="utf-8"),
        "DATA": _script_json(page_data(file, metric)),
    }
    # One pass, so that text inside the data is never taken for a placeholder.
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], template)


def default_output(path: str) -> str:
    """FILE's name with .html for .json (or added), in the current directory."""
    name = os.path.basename(path)
    stem = name[:-5] if name.lower().endswith(".json") else name
    return (stem or "flamegraph") + ".html"


def run(args: argparse.Namespace) -> int:
    output = args.output if args.output is not None else default_output(args.file)
    check_output_path(output)
    file = _dhat_reader.load(args.file)
    metric_named(file, args.metric)
    page = page_html(file, args.metric).encode("utf-8")

    def write(out: BinaryIO) -> None:
        out.write(page)

    write_output(output, write)
    if output != STDOUT:
        print(f"dhatc flamegraph: wrote {output} ({len(file.pps):,} program points)",
              file=sys.stderr)
    return 0
