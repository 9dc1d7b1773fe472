"""Calling a test under a profiler with nothing of the plugin's own in the profile.

The code that calls the test (a *trampoline*) starts the profiler, calls the
test, and stops the profiler as soon as the test returns or raises.  Between
the start and the test's first line nothing may be allocated, so the
trampoline is generated for the test's keyword names: a call with constant
keyword names builds no dict and no tuple.  Its frame is the root of every
stack (the frame that started the profiler); :func:`without_trampoline`
removes it again, so that stacks end at the test.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._dhat_file import Profile, ProgramPoint
from ._profiler import Profiler
from ._testing import give_spare_frames

TRAMPOLINE_FILE = "<dhatc pytest plugin>"
_TRAMPOLINE_FRAME_SUFFIX = f" ({TRAMPOLINE_FILE}:"
# What the frame of a block the trampoline itself allocated is called.
_TRAMPOLINE_FRAME = "[calling the test function] (dhatc pytest plugin)"


@functools.lru_cache(maxsize=256)
def _trampoline_factory(names: Tuple[str, ...]) -> Callable[..., Callable[[], Any]]:
    params = "".join(f", _a{i}" for i in range(len(names)))
    keywords = ", ".join(f"{name}=_a{i}" for i, name in enumerate(names))
    source = (
        f"def make(_function, _start, _stop{params}):\n"
        f"    def call_test():\n"
        f"        _start()\n"
        f"        try:\n"
        f"            return _function({keywords})\n"
        f"        finally:\n"
        f"            _stop()\n"
        f"    return call_test\n"
    )
    namespace: Dict[str, Any] = {}
    exec(compile(source, TRAMPOLINE_FILE, "exec"), namespace)
    return namespace["make"]  # type: ignore[no-any-return]


def zero_allocation_call(
    function: Callable[..., Any], kwargs: Dict[str, Any], profiler: Profiler
) -> Callable[[], Any]:
    """A callable that calls ``function(**kwargs)`` under `profiler`,
    allocating nothing between the profiler's start and the function's first
    line, nor between its return and the profiler's stop."""
    names = tuple(kwargs)
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        # Not seen with pytest (argument names are identifiers); still correct,
        # but the keyword dict is built inside the profile.
        def call_test() -> Any:
            profiler.start()
            try:
                return function(**kwargs)
            finally:
                profiler.stop()

        return call_test
    # 3.9/3.10: the test function runs once, and Profiler.stop maybe for the
    # first time: without a spare frame each would allocate one in the profile.
    give_spare_frames(function, Profiler.stop)
    return _trampoline_factory(names)(function, profiler.start, profiler.stop, *kwargs.values())


def without_trampoline(profile: Optional[Profile]) -> Optional[Profile]:
    """`profile` with the trampoline's frame removed from the bottom of every
    stack, program points merged where their stacks become equal."""
    if profile is None:
        return None
    merged: Dict[Tuple[str, ...], ProgramPoint] = {}
    pps: List[ProgramPoint] = []
    for pp in profile.pps:
        frames = pp.frames
        if frames and _TRAMPOLINE_FRAME_SUFFIX in frames[-1]:
            # Blocks of the trampoline itself (an exception leaving the test
            # gets a traceback entry there) keep a frame that says so.
            frames = frames[:-1] if len(frames) > 2 else (*frames[:-1], _TRAMPOLINE_FRAME)
        same = merged.get(frames)
        if same is None:
            same = merged[frames] = dataclasses.replace(pp, frames=frames)
            pps.append(same)
        else:
            for f in dataclasses.fields(ProgramPoint):
                if f.name != "frames":
                    setattr(same, f.name, getattr(same, f.name) + getattr(pp, f.name))
    return dataclasses.replace(profile, pps=pps)
