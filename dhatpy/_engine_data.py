"""What the C engine hands to Python: the result of ``_engine.stop()``.

This is the contract between ``src/dhatc/module.c`` (``engine_stop`` builds
the dict, ``pp_as_tuple`` each program point) and ``_dhat_file``, which turns
it into a :class:`dhatc.Profile`.  The stub ``_engine.pyi`` declares
``stop() -> StopData``.  C builds plain dicts and tuples (cheap to make, and
the engine owns no Python types for them); the names live here::

    {"mode": "heap" | "ad-hoc",
     "total_blocks": int, "total_bytes": int,      # the profile's totals
     "curr_blocks": int, "curr_bytes": int,        # live at the end (t-end)
     "max_blocks": int, "max_bytes": int,          # live at the global peak (t-gmax)
     "time_of_peak": int, "time_of_end": int,      # in allocations (events, ad hoc)
     "dropped": int,                               # events lost to the engine's memory
     "saturated": int,                             # ad hoc events past 2**64 - 1 units
     "hooks_lost": int,                            # bits 1 << domain, see _dhat_file
     "native_objects": None | [(start, end, path, bias), ...],
     "pps": [(kind, frames, tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk), ...]}

Every int is non-negative and below 2**64.  A program point's ``kind`` is
the allocator entry that made its blocks (``"PyObject_Malloc"``,
``"malloc"``, ...), None for ad hoc events; its ``frames`` are innermost first, each a ``(code,
line)`` pair -- the code object None when it was being destroyed as the
profile took a reference to it, the line -1 when unknown -- or a str, the text
of a frame that stands for frames the engine does not keep (another
interpreter's Python frames: ``"[subinterpreter N: ...]"``), or an int, a
native frame's instruction address (``Profiler(native=True)`` only; 0 stands
for the C frames an unwinding that stopped early did not reach).  For a
native profile ``native_objects`` lists the objects (address range, file,
load bias) its addresses were found in; it is None otherwise.
The code objects stay alive as long as the dict does.

To change the contract, change :data:`RawProgramPoint` /
:class:`EngineProgramPoint` and :class:`StopData` here, ``pp_as_tuple`` and
``engine_stop`` in module.c, and ``tests/test_engine_data.py``, which checks
the two against each other.
"""

from __future__ import annotations

from types import CodeType
from typing import List, NamedTuple, Optional, Tuple, TypedDict, Union

#: One frame of a program point: its code object (None if it was being
#: destroyed) and the line (-1 when unknown); or the text of a frame that
#: stands for frames the engine does not keep; or a native frame's address.
RawFrame = Union[Tuple[Optional[CodeType], int], str, int]

#: A program point as ``pp_as_tuple`` builds it; :class:`EngineProgramPoint`
#: names its fields.
RawProgramPoint = Tuple[
    Optional[str], Tuple[RawFrame, ...], int, int, int, int, int, int, int, int, int
]


class EngineProgramPoint(NamedTuple):
    """A :data:`RawProgramPoint` with its fields named (``EngineProgramPoint(*raw)``)."""

    kind: Optional[str]  # the allocator entry; None for an ad hoc event
    frames: Tuple[RawFrame, ...]  # innermost first
    total_bytes: int  # tb
    total_blocks: int  # tbk
    total_lifetime: int  # tl, summed over its blocks
    max_bytes: int  # mb, its own peak of live bytes
    max_blocks: int  # mbk
    gmax_bytes: int  # gb, live at the global peak
    gmax_blocks: int  # gbk
    end_bytes: int  # eb, live at the end
    end_blocks: int  # ebk


class StopData(TypedDict):
    """The dict ``_engine.stop()`` returns (see the module's docstring)."""

    mode: str
    total_blocks: int
    total_bytes: int
    curr_blocks: int
    curr_bytes: int
    max_blocks: int
    max_bytes: int
    time_of_peak: int
    time_of_end: int
    dropped: int
    saturated: int
    hooks_lost: int
    native_objects: Optional[List[Tuple[int, int, str, int]]]
    pps: List[RawProgramPoint]
