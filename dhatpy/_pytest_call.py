"""Calling a test under a profiler with nothing of the plugin's own in the profile.

The code that calls the test (a *trampoline*) starts the profiler, calls the
test, and stops the profiler as soon as the test returns or raises.  Between
the start and the test's first line nothing may be allocated, so the
trampoline is generated for the test's keyword names: a call with constant
keyword names builds no dict and no tuple.  Its frame is the root of every
stack (the frame that started the profiler); :func:`without_trampoline`
removes it again, so that stacks end at the test.

A coroutine's trampoline (:func:`coroutine_trampoline`) is a coroutine: it
creates the test's coroutine first, then starts the profiler and awaits it,
so the profile runs from the test coroutine's first step to its return.  Its
frame is the root of the stacks of everything that runs under the test's
coroutine (the coroutine's frame lives as long as it does).
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import types
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

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


@functools.lru_cache(maxsize=None)
def _coroutine_trampoline_factory() -> Callable[..., Callable[..., Awaitable[Any]]]:
    source = (
        "def make(_function, _start, _stop, _begin, _warm_ups):\n"
        "    async def call_test(*args, **kwargs):\n"
        "        for _ in range(_warm_ups):\n"
        "            await _function(*args, **kwargs)\n"
        "        _coroutine = _function(*args, **kwargs)\n"
        "        _begin()\n"
        "        _start()\n"
        "        try:\n"
        "            return await _coroutine\n"
        "        finally:\n"
        "            _stop()\n"
        "    return call_test\n"
    )
    namespace: Dict[str, Any] = {}
    exec(compile(source, TRAMPOLINE_FILE, "exec"), namespace)
    return namespace["make"]  # type: ignore[no-any-return]


def coroutine_trampoline(
    function: Callable[..., Awaitable[Any]],
    profiler: Profiler,
    begin: Callable[[], None],
    warm_ups: int = 0,
) -> Callable[..., Awaitable[Any]]:
    """A coroutine function standing for the coroutine function `function`:
    its coroutine awaits `function(*args, **kwargs)` `warm_ups` times, then
    calls `begin`, starts `profiler` and awaits the coroutine of one more call,
    and stops `profiler` when that coroutine returns or raises.

    Creating the coroutine allocates, before the start; awaiting it and its
    return (None) allocate nothing.  It looks like `function` (name, module,
    docstring), so the runner of async tests treats it as the test.
    """
    give_spare_frames(Profiler.stop)  # 3.9/3.10: see zero_allocation_call
    call_test = _coroutine_trampoline_factory()(
        function, profiler.start, profiler.stop, begin, warm_ups
    )
    return functools.wraps(function)(call_test)


def bound_like(method: Any, call: Callable[[], Any], is_async: bool) -> Any:
    """A method bound to `method`'s instance and named as `method` (so that its
    repr is the same, in unittest's warnings), whose call is ``call()``: a
    coroutine function's when `is_async`."""
    function = getattr(method, "__func__", method)

    async def unbound_async(self: Any) -> Any:
        return await call()

    def unbound_sync(self: Any) -> Any:
        return call()

    unbound: Callable[[Any], Any] = unbound_async if is_async else unbound_sync
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(unbound, name, getattr(function, name))
        except (AttributeError, TypeError):
            pass
    return types.MethodType(unbound, getattr(method, "__self__", None))


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
