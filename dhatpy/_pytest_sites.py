"""Where blocks come from, as the plugin's messages name it: a program point's
innermost Python frame, ``name (file:line)``, the file relative to a directory
when it is below it."""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple

_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+|\?)\)$")


def relative_frame(frame: str, base: Optional[str] = None) -> str:
    """`frame` (``name (file:line)``) with its file relative to `base` (default:
    the working directory) when it is below it; other frames unchanged."""
    match = _FRAME_RE.match(frame)
    if match is None:
        return frame
    file = match["file"]
    try:
        relative = os.path.relpath(file, base) if os.path.isabs(file) else file
    except ValueError:
        relative = file
    if relative.startswith(".."):
        relative = file
    return f"{match['name']} ({relative}:{match['line']})"


def innermost_python_frame(frames: Tuple[str, ...], base: Optional[str] = None) -> str:
    """`name (file:line)` of the innermost Python frame (see relative_frame)."""
    python = frames[1:]  # frames[0] is the allocator entry (PyObject_Malloc, ...)
    if not python:
        return f"[no Python frame] ({frames[0] if frames else '?'})"
    return relative_frame(python[0], base)
