"""``dhatc preload-path``: prints the path of the preload library."""

from __future__ import annotations

import argparse

from ._preload import PRELOAD_LIBRARY

HELP = "print the path of the preload library, for LD_PRELOAD by hand"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Prints the path of libdhatc_preload.so, for running a process with the "
        "library by hand: LD_PRELOAD=$(python -m dhatc preload-path) python app.py"
    )


def run(args: argparse.Namespace) -> int:
    print(PRELOAD_LIBRARY)
    return 0
