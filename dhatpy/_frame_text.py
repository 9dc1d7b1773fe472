"""What a frame string of a DHAT file says: function, file, line, address.

The three writers of DHAT files word their frames differently:

* dhatc: ``name (path/file.py:LINE)``, and bare allocator entries such as
  ``PyObject_Malloc``;
* Valgrind: ``0x4AA1D9F: name (file.c:332)``, ``0x4AA1D9F: name (in /lib/x.so)``
  or ``0x4AA1D9F: ???``;
* the Rust crate: ``0x55d8c1a2: name (src/main.rs:12:5)`` (with a column).

Exports that have fields for these (pprof's Function and Line, speedscope's
frame ``file``/``line``) take them from here; the whole string stays the name
wherever the string itself is what a reader needs to see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_ADDRESS = re.compile(r"0x([0-9A-Fa-f]+): ")
# The first " (" starts the location, so that a path with parentheses stays whole.
_SOURCE = re.compile(r"(?P<name>.*?) \((?P<file>.+?):(?P<line>\d+|\?)(?::(?P<col>\d+))?\)")
_OBJECT = re.compile(r"(?P<name>.*?) \(in (?P<object>.+)\)")


@dataclass(frozen=True)
class FrameParts:
    """One frame string taken apart; the parts a writer did not record are None."""

    text: str
    name: str
    address: Optional[int] = None
    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    object: Optional[str] = None  # Valgrind's "(in /lib/libc.so.6)"


def parse_frame(text: str) -> FrameParts:
    """Takes one frame string apart; anything unrecognised is all name."""
    rest = text
    address = None
    match = _ADDRESS.match(rest)
    if match:
        address = int(match.group(1), 16)
        rest = rest[match.end():]
    match = _SOURCE.fullmatch(rest)
    if match:
        line = match.group("line")
        col = match.group("col")
        return FrameParts(
            text=text,
            name=match.group("name"),
            address=address,
            file=match.group("file"),
            line=int(line) if line != "?" else None,
            column=int(col) if col is not None else None,
        )
    match = _OBJECT.fullmatch(rest)
    if match:
        return FrameParts(text=text, name=match.group("name"), address=address,
                          object=match.group("object"))
    return FrameParts(text=text, name=rest, address=address)
