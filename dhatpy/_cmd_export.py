"""``dhatc export FILE --format speedscope|collapsed|pprof [-o OUT] [--metric M]``:
a DHAT file in the format of another tool (see the _export_* modules).

``--metric`` picks the figure: the one profile of a speedscope file (default:
one profile per metric), the counts of folded stacks (default total_bytes),
pprof's default sample type (every figure is in the file anyway).  Text
formats go to standard output by default, pprof (binary) to FILE.pb.gz.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import BinaryIO, Callable, Optional

from . import _dhat_reader
from ._errors import CommandError
from ._export_collapsed import collapsed_lines
from ._export_pprof import pprof_bytes
from ._export_speedscope import speedscope_document
from ._metrics import METRIC_NAMES, metric_named, metrics_of
from ._output import STDOUT, check_output_path, write_output

HELP = "convert a DHAT file for speedscope, flamegraph.pl (folded stacks) or pprof"

FORMATS = ("speedscope", "collapsed", "pprof")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a DHAT file")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS,
                        help="speedscope (JSON), collapsed (folded stacks) or pprof "
                        "(gzipped protobuf)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="where to write ('-' for standard output; default: standard "
                        "output, or FILE's name with .pb.gz for pprof)")
    parser.add_argument("--metric", choices=METRIC_NAMES,
                        help="the figure to export (speedscope: default all, one profile "
                        "each; collapsed: default total_bytes; pprof: the default sample "
                        "type, default total_bytes)")


def _default_output(fmt: str, path: str) -> str:
    if fmt != "pprof":
        return STDOUT
    name = os.path.basename(path)
    return (name[:-5] if name.lower().endswith(".json") else name) + ".pb.gz"


def run(args: argparse.Namespace) -> int:
    output: str = args.output if args.output is not None else _default_output(args.format, args.file)
    check_output_path(output)
    if args.format == "pprof" and output == STDOUT and sys.stdout.isatty():
        raise CommandError("pprof data is binary: give -o FILE.pb.gz, or redirect the output")
    file = _dhat_reader.load(args.file)
    metric: Optional[str] = args.metric
    write: Callable[[BinaryIO], None]
    if args.format == "speedscope":
        chosen = (metric_named(file, metric),) if metric else metrics_of(file)
        text = json.dumps(speedscope_document(file, chosen), ensure_ascii=False,
                          separators=(",", ":")) + "\n"

        def write(out: BinaryIO) -> None:
            out.write(text.encode("utf-8"))

    elif args.format == "collapsed":
        lines = list(collapsed_lines(file, metric_named(file, metric or "total_bytes")))

        def write(out: BinaryIO) -> None:
            for line in lines:
                out.write(line.encode("utf-8", "surrogateescape"))

    else:
        data = pprof_bytes(file, metric_named(file, metric or "total_bytes"))

        def write(out: BinaryIO) -> None:
            out.write(data)

    write_output(output, write)
    if output != STDOUT:
        print(f"dhatc export: wrote {output} ({args.format}, {len(file.pps):,} program points)",
              file=sys.stderr)
    return 0
