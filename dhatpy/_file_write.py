"""Writing a file whole or not at all, for every file dhatc makes (profiles,
and what ``export``, ``flamegraph`` and ``merge`` write).

A regular file is written atomically: into a temporary file beside it, then
renamed over it, so an error or an interrupt half way (KeyboardInterrupt
included) never leaves half a file, nor the temporary one, nor destroys what
was there.  Through a symbolic link, the file it points to is replaced and
the link stays.  Anything else (a FIFO, a device such as /dev/null,
/dev/stdout) is written to in place, never renamed over: as root, renaming
over /dev/null would replace the system's.  Errors are OSError; the callers
say which file in their own words.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import BinaryIO, Callable

Writer = Callable[[BinaryIO], None]


def write_file(path: str, write: Writer) -> None:
    """Calls `write` with a binary stream whose bytes end up at `path`."""
    if written_in_place(path):
        _write_in_place(path, write)
    else:
        _replace_atomically(os.path.realpath(path), write)


def written_in_place(path: str) -> bool:
    """True for what is not a regular file, and for the files that /dev and
    /proc name (/dev/stdout, /dev/fd/3): they stand for a descriptor that
    someone holds open, which a new file would cut off."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # not there (yet): created as a regular file
    if not stat.S_ISREG(mode):
        return True
    return os.path.abspath(path).startswith(("/dev/", "/proc/"))


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly,
    for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _write_in_place(path: str, write: Writer) -> None:
    # Appending to a regular file: /dev/stdout redirected to a file has the
    # program's own output before ours.
    regular = os.path.isfile(path)
    flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_APPEND if regular else 0)
    with os.fdopen(os.open(path, flags), "wb") as out:
        write(out)


def _replace_atomically(path: str, write: Writer) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".dhatc-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: no temporary file left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
