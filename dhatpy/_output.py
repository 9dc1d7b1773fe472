"""Where the commands that make a file (flamegraph, export, merge) put it.

A file is written whole or not at all: into a temporary file beside it, then
renamed over it, so an error or Ctrl-C half way never leaves half a file nor
destroys the previous one.  What exists and is not a regular file (a device,
a FIFO, ``/dev/stdout``) is written to in place, never renamed over.  Every
failure is a CommandError of one line naming the path.  ``-`` means standard
output.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import BinaryIO, Callable

from ._errors import CommandError

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


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_output(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Calls `write` with a binary stream that ends up as `path` (or stdout)."""
    if path == STDOUT:
        _write_stdout(write)
        return
    check_output_path(path)
    if os.path.exists(path) and not os.path.isfile(path):
        _write_in_place(path, write)
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dhatc-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CommandError(f"cannot write {path}: {e.strerror}") from None
        raise


def _write_in_place(path: str, write: Callable[[BinaryIO], None]) -> None:
    """A device, a FIFO, /dev/stdout: written to as it is, never renamed over."""
    try:
        with open(path, "wb") as out:
            write(out)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None


def _write_stdout(write: Callable[[BinaryIO], None]) -> None:
    # A reader that goes away (`| head -1`) raises BrokenPipeError here, which
    # the CLI turns into a quiet exit, as for every command.
    sys.stdout.flush()
    write(sys.stdout.buffer)
    sys.stdout.buffer.flush()
