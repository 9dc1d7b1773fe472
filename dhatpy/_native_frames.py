"""Native frames (``Profiler(native=True)``): what the engine needs to capture
them, and their strings in the DHAT file.

The engine records a native frame as an instruction address and, the first
time an address of an object is seen, that object's file and load bias
(``StopData["native_objects"]``).  Names are found here, once per distinct
address when the file is written, by the optional extension
``dhatc._unwinder`` (elfutils' libdwfl reads each file's symbols and DWARF
lines from disk, so libraries unloaded during the profile are named too).
Strings follow Valgrind's DHAT::

    0x7F12AB34: my_alloc (my_ext.c:41)         where debug information gives a line
    0x7F12AB34: my_alloc (in my_ext.so)        a symbol without a line
    0x7F12AB34: ??? (in my_ext.so+0x1a2b)      no symbol: the object and the offset in it
    0x7F12AB34: ??? (no object: generated code)

A function inlined at an address is a frame of its own, innermost first,
each with that address and its own line (as Valgrind shows them)::

    0x7F12AB34: leaf (my_ext.c:10)             leaf's code, inlined into outer
    0x7F12AB34: outer (my_ext.c:30)            the line of outer's call of leaf

A native frame at address 0 stands for the C frames that an unwinding which
stopped early (no unwind information, or information saying there is no
caller) did not reach, above the Python frames it did not reach either::

    [native unwinding stopped here] (the C frames below are missing)
"""

from __future__ import annotations

import bisect
import os
import shutil
import subprocess
from types import CodeType
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from . import _engine
from ._engine_data import RawFrame

#: The evaluation loop: each C frame of it is replaced by the Python frames it runs.
EVAL_LOOP = "_PyEval_EvalFrameDefault"

#: The frame at address 0: the C frames an unwinding that stopped early did not reach.
UNWINDING_STOPPED = "[native unwinding stopped here] (the C frames below are missing)"

#: (start, end, path, bias) of each object native frames were found in.
NativeObject = Tuple[int, int, str, int]

MISSING = (
    "dhatc: native frames need dhatc._unwinder, which was not built: install libunwind "
    "and elfutils' libdw with their headers (Debian: apt install libunwind-dev libdw-dev), "
    "then reinstall dhatc"
)


def available() -> bool:
    """Whether this dhatc was built with native frame support."""
    try:
        from . import _unwinder  # noqa: F401
    except ImportError:
        return False
    return True


_eval_ranges: Optional[List[Tuple[int, int]]] = None


def start_argument(interpreter_frames: bool) -> Tuple[object, List[Tuple[int, int]], bool]:
    """The ``native`` argument of ``_engine.start``: the unwinder's capsule,
    the evaluation loop's address ranges, whether to keep the interpreter's
    own C frames.  RuntimeError, saying what to install, without the unwinder
    or when the interpreter's evaluation loop cannot be found."""
    global _eval_ranges
    try:
        from . import _unwinder
    except ImportError as e:
        raise RuntimeError(MISSING) from e
    if _eval_ranges is None:
        path, bias = _engine.interpreter_object()
        ranges = set(_unwinder.function_ranges(path, bias, EVAL_LOOP))
        # Where the interpreter is stripped, the symbol may be a small entry
        # to a loop that has no name (Debian's 3.14): the loop's range is
        # the unwind information's for the C frame that holds the shim below
        # this very frame (3.12+).
        boundary = _engine.call_boundary()
        if boundary is not None:
            holding = _unwinder.function_holding(boundary)
            if holding is not None:
                ranges.add(holding)
        if not ranges:
            raise RuntimeError(
                f"dhatc: native frames: no symbol {EVAL_LOOP} in {path}, where this "
                "interpreter's evaluation loop should be (a stripped build without its "
                "debug symbols?)"
            )
        # The engine holds a few ranges: the function and its split-off parts.
        _eval_ranges = sorted(ranges)[:8]
    return _unwinder._C_API, _eval_ranges, interpreter_frames


#: What dhatc._unwinder.symbolize says of a place: function, source file, line.
Place = Tuple[Optional[str], Optional[str], int]

#: A frame of a program point once its native frames are strings.
ResolvedFrame = Union[Tuple[Optional[CodeType], int], str]

_UNKNOWN: List[Place] = [(None, None, 0)]


class NativeNamer:
    """The strings of a profile's native frames, found all at once.

    A native frame's address is where a call returns to: its call is the
    instruction before, and so are its line and function.  Two kinds of
    address are no such thing: a signal frame's (the code a signal handler
    returns to, which the kernel called by making it the handler's return
    address), named at the address itself, and the address of the frame the
    signal interrupted, right below it, also named as it is (the instruction
    a fault happened at, or the next one to run).  An address gives one
    string per function inlined there, innermost first, each with the same
    address (as Valgrind shows them), then the function holding it."""

    def __init__(self, objects: Sequence[NativeObject],
                 stacks: Iterable[Sequence[RawFrame]]) -> None:
        self._objects = sorted(objects)
        self._starts = [o[0] for o in self._objects]
        self._stacks = list(stacks)
        self._names: Dict[int, Tuple[str, ...]] = {0: (UNWINDING_STOPPED,)}
        self._exact: Dict[int, Tuple[str, ...]] = {}  # interrupted by a signal
        self._signal_frames: Set[int] = set()
        addresses = {f for stack in self._stacks for f in stack if isinstance(f, int) and f != 0}
        interrupted: Set[int] = set()
        self._name_all(sorted(addresses), exact=False)
        for stack in self._stacks if self._signal_frames else ():
            for frame, below in zip(stack, stack[1:]):
                if isinstance(below, int) and below != 0 and frame in self._signal_frames:
                    interrupted.add(below)
        self._name_all(sorted(interrupted), exact=True)
        self._stacks = []

    def resolve(self, frames: Sequence[RawFrame]) -> List[ResolvedFrame]:
        """A program point's frames with each native frame (an int) replaced
        by its strings, the others as they are."""
        out: List[ResolvedFrame] = []
        after_signal = False
        for frame in frames:
            if isinstance(frame, int):
                out.extend(self._exact[frame] if after_signal and frame in self._exact
                           else self._names[frame])
                after_signal = frame in self._signal_frames
            else:
                out.append(frame)
                after_signal = False
        return out

    def _object_of(self, address: int) -> Optional[NativeObject]:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._objects[i][1]:
            return self._objects[i]
        return None

    def _name_all(self, addresses: List[int], exact: bool) -> None:
        located = [(address, self._object_of(address if exact else address - 1))
                   for address in addresses]
        named = iter(_symbolize([(address, obj[2], obj[3], exact)
                                 for address, obj in located if obj is not None]))
        found: List[Tuple[int, Optional[NativeObject], bool, List[Place]]] = []
        for address, obj in located:
            signal, places = next(named) if obj is not None else (False, _UNKNOWN)
            found.append((address, obj, signal, places))
        readable = _demangled(function for _, _, _, places in found for function, _, _ in places
                              if function is not None and function.startswith("_Z"))
        names = self._exact if exact else self._names
        for address, obj, signal, places in found:
            at = address if exact or signal else address - 1
            prefix = f"0x{at:X}: "
            if signal:
                self._signal_frames.add(address)
            if obj is None:
                names[address] = (prefix + "??? (no object: generated code)",)
                continue
            library = os.path.basename(obj[2]) or obj[2]
            strings = []
            for i, (function, file, line) in enumerate(places):
                shown = readable.get(function, function) if function is not None else None
                if shown is None and i == len(places) - 1:
                    strings.append(f"{prefix}??? (in {library}+0x{at - obj[3]:x})")
                elif file is not None and line > 0:
                    strings.append(f"{prefix}{shown or '???'} ({os.path.basename(file)}:{line})")
                else:
                    strings.append(f"{prefix}{shown or '???'} (in {library})")
            names[address] = tuple(strings)


def _symbolize(requests: List[Tuple[int, str, int, bool]]) -> List[Tuple[bool, List[Place]]]:
    if not requests:
        return []
    try:
        from . import _unwinder
    except ImportError:  # a profile made elsewhere: nothing to name with
        return [(False, _UNKNOWN)] * len(requests)
    return _unwinder.symbolize(requests)


def _demangled(names: Iterable[str]) -> Dict[str, str]:
    """C++ names as people read them, by binutils' c++filt where it is
    installed (the mangled names otherwise)."""
    wanted = sorted(set(names))
    program = shutil.which("c++filt")
    if not wanted or program is None:
        return {}
    try:
        done = subprocess.run([program], input="\n".join(wanted) + "\n", capture_output=True,
                              text=True, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = done.stdout.splitlines()
    return dict(zip(wanted, lines)) if len(lines) == len(wanted) else {}
