"""A DHAT file as a speedscope file (speedscope's JSON file format, whose
schema is https://www.speedscope.app/file-format-schema.json).

One "sampled" profile per metric: one sample per program point whose figure
is not 0, its stack outermost frame first, weighted by the figure (unit
"bytes" for bytes, "none" for blocks and for ad hoc units).  Frames carry the
function name, and the file and line where the frame string has them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

from . import __version__
from ._dhat_reader import DhatFile
from ._frame_text import parse_frame
from ._metrics import Metric

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
# The name of the one frame of a program point that has none.
NO_FRAMES = "[unknown]"


def speedscope_document(file: DhatFile, metrics: Sequence[Metric]) -> Dict[str, Any]:
    """The speedscope file for `file`, one profile per metric."""
    frame_index: Dict[str, int] = {}
    frames: List[Dict[str, Any]] = []

    def index(text: str) -> int:
        found = frame_index.get(text)
        if found is None:
            found = frame_index[text] = len(frames)
            parts = parse_frame(text)
            frame: Dict[str, Any] = {"name": parts.name or text}
            if parts.file is not None:
                frame["file"] = parts.file
            elif parts.object is not None:
                frame["file"] = parts.object
            if parts.line is not None:
                frame["line"] = parts.line
            if parts.column is not None:
                frame["col"] = parts.column
            frames.append(frame)
        return found

    stacks = [[index(f) for f in reversed(pp.frames or (NO_FRAMES,))] for pp in file.pps]
    name = os.path.basename(file.path)
    profiles = []
    for metric in metrics:
        samples: List[List[int]] = []
        weights: List[int] = []
        for pp, stack in zip(file.pps, stacks):
            weight = metric.value(pp)
            if weight:
                samples.append(stack)
                weights.append(weight)
        profiles.append({
            "type": "sampled",
            "name": f"{name}: {metric.label(file)}",
            "unit": "bytes" if metric.counts_bytes and file.bytes_unit == "bytes" else "none",
            "startValue": 0,
            "endValue": sum(weights),
            "samples": samples,
            "weights": weights,
        })
    return {
        "$schema": SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"dhatc {__version__}",
    }
