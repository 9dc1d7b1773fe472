"""The DHAT file (format version 2) and the summary lines, built from the engine's data.

The engine hands over program points as (allocator entry, ((code, line), ...),
figures...), see :mod:`dhatc._engine_data`.  This module turns each frame into the string the viewer shows,
merges program points whose strings are equal (the viewer rejects repeated
locations), and writes the JSON in one place that mirrors the format.  First-
seen order everywhere, so two runs of the same program give the same file but
for `pid` and `cmd`.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, TextIO, Tuple, cast

from ._engine_data import EngineProgramPoint, StopData
from ._file_write import write_file, written_in_place
from ._native_frames import NativeNamer, ResolvedFrame

# The engine's clock counts allocations (reallocations included), so times and
# lifetimes are in allocations: reproducible from run to run, and free to read.
TIME_UNIT = "allocs"
TIME_UNIT_MILLION = "Mallocs"
# A block freed before this many further allocations counts as short-lived.
SHORT_LIVED_THRESHOLD = 10

VIEWER_HINT = "dhat/dh_view.html"


@dataclass
class ProgramPoint:
    """One program point of a finished profile (``dhatc.Profile.pps``): its
    frames as the viewer shows them, innermost first (the allocator entry, then
    ``name (file.py:LINE)``), and its figures.  Times are in allocations."""

    frames: Tuple[str, ...]
    total_bytes: int
    total_blocks: int
    total_lifetime: int = 0  # summed over its blocks
    max_bytes: int = 0  # its own peak of live bytes
    max_blocks: int = 0
    gmax_bytes: int = 0  # live at the global peak (t-gmax)
    gmax_blocks: int = 0
    end_bytes: int = 0  # live at the end (t-end)
    end_blocks: int = 0


@dataclass
class Profile:
    """Everything a finished profile holds (``Profiler.profile`` once stopped);
    enough to write the file again.  For an ad hoc profile, blocks are events
    and bytes are units."""

    mode: str  # "heap" or "ad-hoc"
    total_blocks: int
    total_bytes: int
    curr_blocks: int = 0
    curr_bytes: int = 0
    max_blocks: int = 0
    max_bytes: int = 0
    time_of_peak: int = 0
    time_of_end: int = 0
    dropped: int = 0
    #: Ad hoc events whose weights the totals could not hold (capped at 2**64 - 1).
    saturated: int = 0
    #: Domains whose hooks another allocator hook removed mid-profile (bits 1<<domain).
    hooks_lost: int = 0
    cmd: str = ""
    pid: int = 0
    pps: List[ProgramPoint] = field(default_factory=list)
    #: The time unit, its million and the short-lived threshold, for a profile
    #: that did not come from dhatc's clock (a merge of Valgrind's or the Rust
    #: crate's files keeps theirs); None: dhatc's own.
    time_unit: Optional[str] = None
    time_unit_million: Optional[str] = None
    short_lived_threshold: Optional[int] = None

    @property
    def is_heap(self) -> bool:
        """True for a heap profile, False for an ad hoc one."""
        return self.mode == "heap"


def frame_string(code: Optional[CodeType], line: Optional[int]) -> str:
    """`qualified.name (file.py:LINE)`, the form Valgrind uses without the address."""
    if code is None:  # destroyed before dhatc could take a reference to it
        return f"[code object destroyed while profiling] (?:{line})"
    name = getattr(code, "co_qualname", code.co_name)
    return f"{name} ({code.co_filename}:{line if line is not None and line >= 0 else '?'})"


def profile_from_engine(data: StopData, *, cmd: str, pid: int) -> Profile:
    """Resolves the engine's raw program points into a Profile, merging equal ones."""
    profile = Profile(
        mode=data["mode"],
        total_blocks=data["total_blocks"],
        total_bytes=data["total_bytes"],
        curr_blocks=data["curr_blocks"],
        curr_bytes=data["curr_bytes"],
        max_blocks=data["max_blocks"],
        max_bytes=data["max_bytes"],
        time_of_peak=data["time_of_peak"],
        time_of_end=data["time_of_end"],
        dropped=data["dropped"],
        saturated=data["saturated"],
        hooks_lost=data["hooks_lost"],
        cmd=cmd,
        pid=pid,
    )
    # Keyed on the code object's identity: code objects compare equal by value,
    # co_filename and co_qualname aside, so the same function in two files
    # would share one string.  `data` keeps every code object alive meanwhile.
    strings: Dict[Tuple[int, int], str] = {}
    known = strings.get  # bound once: this loop runs for every frame of every PP
    by_frames: Dict[Tuple[str, ...], ProgramPoint] = {}
    pps = profile.pps
    objects = data.get("native_objects")
    namer = None
    if objects is not None:  # native frames are addresses, named all at once
        namer = NativeNamer(objects, (raw[1] for raw in data["pps"]))
    # Each raw PP is read by index (kind, frames, figures...: see
    # EngineProgramPoint), not made into a named tuple: a stop can have
    # thousands of them.
    for raw in data["pps"]:
        kind = raw[0]
        resolved: List[str] = [] if kind is None else [kind]
        add = resolved.append
        # Native frames become their strings (the engine gives them, as ints,
        # in native profiles only).
        # (The type as a string: subscripting it per PP took a quarter of a save.)
        frames = cast("Sequence[ResolvedFrame]", raw[1]) if namer is None else namer.resolve(raw[1])
        for frame in frames:
            if isinstance(frame, str):  # stands for frames the engine does not keep
                add(frame)
                continue
            code, line = frame
            text = known((id(code), line))
            if text is None:
                text = strings[(id(code), line)] = frame_string(code, line)
            add(text)
        key = tuple(resolved)
        pp = by_frames.get(key)
        if pp is None:
            by_frames[key] = pp = ProgramPoint(key, *raw[2:])
            pps.append(pp)
        else:
            # The engine keys program points by what they show (code objects
            # with one file and name stand for one another), so equal strings
            # meet here only where a code object died before the engine could
            # keep it ("[code object destroyed ...]"): their max figures add
            # up to an upper bound.  (Native frames carry their addresses.)
            _add_figures(pp, EngineProgramPoint(*raw))
    return profile


def _add_figures(pp: ProgramPoint, engine_pp: EngineProgramPoint) -> None:
    pp.total_bytes += engine_pp.total_bytes
    pp.total_blocks += engine_pp.total_blocks
    pp.total_lifetime += engine_pp.total_lifetime
    pp.max_bytes += engine_pp.max_bytes
    pp.max_blocks += engine_pp.max_blocks
    pp.gmax_bytes += engine_pp.gmax_bytes
    pp.gmax_blocks += engine_pp.gmax_blocks
    pp.end_bytes += engine_pp.end_bytes
    pp.end_blocks += engine_pp.end_blocks


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps does to a str


class _FrameTable(Dict[str, str]):
    """The file's ``ftbl`` while it is built: each frame's index in it, as the
    text the ``fs`` lists hold; a frame not seen yet gets the next index."""

    def __missing__(self, frame: str) -> str:
        self[frame] = index = str(len(self))
        return index


def _pp_lines(profile: Profile, ftbl: _FrameTable) -> List[str]:
    """Each program point's line of the file, its frames (innermost first)
    entered in `ftbl`.  Formatted directly, its figures being ints (json.dumps
    per program point was most of the time of a save), by one f-string per
    line, the frames' indices already text: a save with thousands of program
    points spends its time here."""
    index = ftbl.__getitem__
    if profile.is_heap:
        return [
            f'{{"tb":{pp.total_bytes},"tbk":{pp.total_blocks},'  # total bytes, blocks
            f'"tl":{pp.total_lifetime},'  # total lifetime of its blocks
            f'"mb":{pp.max_bytes},"mbk":{pp.max_blocks},'  # max live bytes, blocks at this PP
            f'"gb":{pp.gmax_bytes},"gbk":{pp.gmax_blocks},'  # live at the global peak (t-gmax)
            f'"eb":{pp.end_bytes},"ebk":{pp.end_blocks},'  # live at the end (t-end)
            f'"fs":[{",".join(map(index, pp.frames))}]}}'
            for pp in profile.pps
        ]
    return [  # units, events
        f'{{"tb":{pp.total_bytes},"tbk":{pp.total_blocks},"fs":[{",".join(map(index, pp.frames))}]}}'
        for pp in profile.pps
    ]


def write_json(profile: Profile, out: TextIO) -> None:
    """Streams the DHAT JSON of `profile` to `out`: one line per PP and frame."""
    heap = profile.is_heap
    ftbl = _FrameTable({"[root]": "0"})  # entry 0 is the viewer's root
    pp_lines = _pp_lines(profile, ftbl)
    header: Dict[str, Any] = {
        "dhatFileVersion": 2,
        "mode": profile.mode,
        "verb": "Allocated" if heap else "Occurred",
        "bklt": heap,  # block lifetimes recorded
        "bkacc": False,  # block accesses never recorded
    }
    if heap:
        header.update(tu=profile.time_unit or TIME_UNIT,
                      Mtu=profile.time_unit_million or TIME_UNIT_MILLION)
    else:  # units of the events' weights; the clock counts events
        header.update(bu="unit", bsu="units", bksu="events", tu=profile.time_unit or "events",
                      Mtu=profile.time_unit_million or "Mevents")
    if heap:
        header["tuth"] = (SHORT_LIVED_THRESHOLD if profile.short_lived_threshold is None
                          else profile.short_lived_threshold)
    header.update(cmd=profile.cmd, pid=profile.pid)
    if heap:
        header["tg"] = profile.time_of_peak  # time of the global peak
    header["te"] = profile.time_of_end  # time of the end
    out.write("{")
    out.write(",".join(f"\n{json.dumps(k)}:{json.dumps(v)}" for k, v in header.items()))
    out.write(',\n"pps":[')
    out.write(",".join(f"\n{line}" for line in pp_lines))
    out.write('\n],\n"ftbl":[')
    out.write(",".join(f"\n{_json_string(frame)}" for frame in ftbl))
    out.write("\n]\n}\n")


def save(profile: Profile, path: str) -> None:
    """Writes the file, whole or not at all (see :mod:`dhatc._file_write`:
    a regular file atomically, through a symbolic link its target, a FIFO or
    a device such as /dev/null in place).  Raises OSError naming `path`."""

    def write(out: BinaryIO) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8")
        write_json(profile, text)
        text.flush()
        text.detach()  # `out` is closed by its owner

    try:
        write_file(path, write)
    except OSError as e:
        raise OSError(
            e.errno, f"dhatc: cannot write the profile to {path!r}: {e.strerror or e}"
        ) from e


def writable_problem(path: str) -> Optional[str]:
    """Why :func:`save` could not write `path`, as far as can be told without
    writing; None when it looks writable."""
    if written_in_place(path):
        if os.path.isdir(path):
            return "it is a directory"
        return None if os.access(path, os.W_OK) else "permission denied"
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        return f"there is no directory {directory!r}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory!r} is not writable"
    return None


def summary_lines(profile: Profile) -> List[str]:
    """The crate's summary: totals, then t-gmax and t-end for heap profiles."""
    if profile.is_heap:
        return [
            f"dhat: Total:     {profile.total_bytes:,} bytes in {profile.total_blocks:,} blocks",
            f"dhat: At t-gmax: {profile.max_bytes:,} bytes in {profile.max_blocks:,} blocks",
            f"dhat: At t-end:  {profile.curr_bytes:,} bytes in {profile.curr_blocks:,} blocks",
        ]
    return [f"dhat: Total:     {profile.total_bytes:,} units in {profile.total_blocks:,} events"]


_DOMAIN_NAMES = ("raw", "mem", "object")


def warning_lines(profile: Profile) -> List[str]:
    """Why a profile may be incomplete; printed even in testing mode."""
    lines = []
    if profile.dropped:
        lines.append(
            f"dhat: warning: {profile.dropped:,} events were not recorded "
            "because the engine ran out of memory"
        )
    if profile.saturated:
        lines.append(
            f"dhat: warning: the weights of {profile.saturated:,} ad hoc events took the "
            "totals past 2**64 - 1 units; those totals are shown as 2**64 - 1"
        )
    if profile.hooks_lost:
        domains = ", ".join(
            name for bit, name in enumerate(_DOMAIN_NAMES) if profile.hooks_lost & (1 << bit)
        )
        lines.append(
            f"dhat: warning: another allocator hook replaced dhatc's ({domains} domain) while "
            "profiling, so later allocations there were not recorded; tracemalloc.stop() does "
            "this when tracemalloc was started before dhatc: stop dhatc first"
        )
    return lines


def saved_line(path: str) -> str:
    return f"dhat: The data has been saved to {path}, and is viewable with {VIEWER_HINT}"


def _write_line(stream: TextIO, line: str) -> None:
    """Writes a line to `stream`, leaving nothing of it in the stream's buffer:
    where the stream has a file descriptor, the line goes to the descriptor
    (after what the program wrote before it), so that a broken pipe fails here,
    once, and not again when the interpreter flushes stderr at exit (which
    3.14+ reports with exit status 120: the program's status must not change
    because of a line of dhatc's).  Raises what the write raises."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # StringIO, a closed stream, ...
        print(line, file=stream, flush=True)
        return
    stream.flush()  # what the program wrote first stays first
    encoding = getattr(stream, "encoding", None) or "utf-8"
    data = (line + "\n").encode(encoding, getattr(stream, "errors", None) or "backslashreplace")
    while data:
        data = data[os.write(fd, data):]


def eprint(line: str) -> None:
    """Prints a line to stderr, if it can: a closed or broken stderr, or none
    at all (``sys.stderr = None``), must not stop what dhatc was doing."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        _write_line(stream, line)
    except Exception:
        pass


def eprint_error(line: str) -> None:
    """Prints an error to stderr, or where sys.stderr cannot take it, straight
    to file descriptor 2: an error must not be lost with the stream."""
    stream = sys.stderr
    if stream is not None:
        try:
            _write_line(stream, line)
            return
        except Exception:
            pass
    try:
        os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def print_json(profile: Profile) -> None:
    """Writes the JSON to stderr (``eprint_json=True``).  Raises OSError if
    stderr cannot take it; the profile is then still the caller's."""
    stream = sys.stderr
    try:
        if stream is None:
            raise OSError("sys.stderr is None")
        write_json(profile, stream)
        stream.flush()
    except (OSError, ValueError) as e:  # ValueError: a closed stream
        raise OSError(f"dhatc: cannot write the profile to stderr: {e}") from e
