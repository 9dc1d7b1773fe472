"""Reading DHAT files back in tests: load a file, the frames of its program
points (``fs`` indexes ``ftbl``), and the line of a marker in a test's
source.  Every test that reads a file goes through here rather than ``ftbl``
by hand."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any, Dict, List, Tuple, Union

DhatFile = Dict[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


def load(path: PathLike) -> DhatFile:
    """The parsed DHAT file at `path`."""
    with open(path, encoding="utf-8") as f:
        data: DhatFile = json.load(f)
    return data


def frames_of(data: DhatFile, pp: Dict[str, Any]) -> List[str]:
    """The frames of program point `pp`, innermost first (the allocator entry,
    then ``name (file:line)``), as the viewer shows them."""
    return [data["ftbl"][i] for i in pp["fs"]]


def all_frames(data: DhatFile) -> List[List[str]]:
    """The frames of every program point, in the file's order."""
    return [frames_of(data, pp) for pp in data["pps"]]


def pps_with_frames(data: DhatFile) -> List[Tuple[Dict[str, Any], List[str]]]:
    """(program point, its frames) for every program point."""
    return [(pp, frames_of(data, pp)) for pp in data["pps"]]


def line_of(source: str, marker: str) -> int:
    """The 1-based line of `source` that holds `marker`, counted as the child
    runs it: dedented, as ``run_python`` and ``textwrap.dedent`` leave it.
    The marker must be on exactly one line."""
    lines = textwrap.dedent(source).splitlines()
    hits = [n for n, text in enumerate(lines, 1) if marker in text]
    assert len(hits) == 1, f"marker {marker!r} found on {len(hits)} lines"
    return hits[0]


def frame(function: str, path: PathLike, line: int) -> str:
    """A Python frame as the file writes it."""
    return f"{function} ({os.fspath(path)}:{line})"


def pp_at_line(data: DhatFile, line: int, script: str = "snippet.py") -> Dict[str, Any]:
    """The one program point whose innermost Python frame is at `script`:`line`."""
    hits = [pp for pp, fs in pps_with_frames(data)
            if len(fs) > 1 and fs[1].endswith(f"{script}:{line})")]
    assert len(hits) == 1, (line, hits)
    return hits[0]
