"""A DHAT file as folded stacks, the input of Brendan Gregg's flamegraph.pl
(``flamegraph.pl --countname=bytes``) and of many other tools: one line per
stack, ``outermost;...;innermost COUNT``.

A frame can hold what the format uses as separators, so ``%``, ``;``, CR and
LF in a frame string are written as ``%25``, ``%3B``, ``%0D`` and ``%0A``
(percent-encoding, which :func:`unescape_frame` undoes).  Stacks whose count
is 0 are left out; equal stacks would be summed (a DHAT file has none).
"""

from __future__ import annotations

import re
from typing import Dict, Iterator

from ._dhat_reader import DhatFile
from ._metrics import Metric

_ESCAPES = {"%": "%25", ";": "%3B", "\r": "%0D", "\n": "%0A"}
_UNESCAPES = {escaped: plain for plain, escaped in _ESCAPES.items()}
_ESCAPED = re.compile("|".join(_UNESCAPES))
NO_FRAMES = "[unknown]"


def escape_frame(frame: str) -> str:
    """The frame as one field of a folded stack."""
    return "".join(_ESCAPES.get(c, c) for c in frame) if any(c in frame for c in _ESCAPES) else frame


def unescape_frame(field: str) -> str:
    """The inverse of :func:`escape_frame`."""
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0)], field)


def collapsed_lines(file: DhatFile, metric: Metric) -> Iterator[str]:
    """The lines, each with its newline, first-seen order."""
    counts: Dict[str, int] = {}
    for pp in file.pps:
        count = metric.value(pp)
        if count:
            stack = ";".join(escape_frame(f) for f in reversed(pp.frames or (NO_FRAMES,)))
            counts[stack] = counts.get(stack, 0) + count
    for stack, count in counts.items():
        yield f"{stack} {count}\n"
