"""``dhatc merge A.json B.json ... -o ALL.json``: one DHAT file from the files
of several processes of one program (see dhatc._merge for how figures combine,
t-gmax above all)."""

from __future__ import annotations

import argparse
import io
import sys
from typing import BinaryIO

from ._dhat_file import summary_lines, write_json
from ._merge import merge_files
from ._output import STDOUT, check_output_path, write_output

HELP = "merge the DHAT files of several processes into one (t-gmax: the sum of their peaks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", metavar="FILE", nargs="+", help="DHAT files of one mode")
    parser.add_argument("-o", "--output", metavar="ALL.json", required=True,
                        help="where to write the merged file ('-' for standard output)")


def run(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    profile = merge_files(args.files)

    def write(out: BinaryIO) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="\n")
        write_json(profile, text)
        text.flush()
        text.detach()

    write_output(args.output, write)
    if args.output != STDOUT:
        print(f"dhatc merge: wrote {args.output} ({len(args.files)} files, "
              f"{len(profile.pps):,} program points)", file=sys.stderr)
        for line in summary_lines(profile):
            print(line, file=sys.stderr)
    return 0
