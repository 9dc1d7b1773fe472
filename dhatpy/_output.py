"""Where the commands that make a file (flamegraph, export, merge) put it.

A file is written whole or not at all, as a profile is (see
:mod:`dhatc._file_write`: atomically, through a symbolic link its target, a
FIFO or a device in place).  Every failure is a CommandError of one line
naming the path.  ``-`` means standard output.
"""

from __future__ import annotations

import os
import sys

from ._errors import CommandError
from ._file_write import Writer, write_file

STDOUT = "-"


def check_output_path(path: str) -> None:
    """Fails early, before any work, on a path that cannot be a file."""
    if path == STDOUT:
        return
    if not path:
        raise CommandError("the output file name is empty")
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory: give a file name for the output")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"cannot write {path}: the directory {directory} does not exist")


def write_output(path: str, write: Writer) -> None:
    """Calls `write` with a binary stream that ends up as `path` (or stdout)."""
    if path == STDOUT:
        _write_stdout(write)
        return
    check_output_path(path)
    try:
        write_file(path, write)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror or e}") from None


def _write_stdout(write: Writer) -> None:
    # A reader that goes away (`| head -1`) raises BrokenPipeError here, which
    # the CLI turns into a quiet exit, as for every command.
    sys.stdout.flush()
    write(sys.stdout.buffer)
    sys.stdout.buffer.flush()
