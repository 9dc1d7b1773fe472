"""The DHAT file (format version 2) and the summary lines, built from the engine's data.

The engine hands over program points as (allocator entry, ((code, line), ...),
figures...).  This module turns each frame into the string the viewer shows,
merges program points whose strings are equal (the viewer rejects repeated
locations), and writes the JSON in one place that mirrors the format.  First-
seen order everywhere, so two runs of the same program give the same file but
for `pid` and `cmd`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

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


def profile_from_engine(data: Dict[str, Any], *, cmd: str, pid: int) -> Profile:
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
        hooks_lost=data.get("hooks_lost", 0),
        cmd=cmd,
        pid=pid,
    )
    # Keyed on the code object's identity: code objects compare equal by value,
    # co_filename and co_qualname aside, so the same function in two files
    # would share one string.  `data` keeps every code object alive meanwhile.
    strings: Dict[Tuple[int, int], str] = {}
    by_frames: Dict[Tuple[str, ...], ProgramPoint] = {}
    for kind, frames, tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk in data["pps"]:
        resolved: List[str] = [] if kind is None else [kind]
        for code, line in frames:
            text = strings.get((id(code), line))
            if text is None:
                text = strings[(id(code), line)] = frame_string(code, line)
            resolved.append(text)
        key = tuple(resolved)
        pp = by_frames.get(key)
        if pp is None:
            pp = by_frames[key] = ProgramPoint(frames=key, total_bytes=0, total_blocks=0)
            profile.pps.append(pp)
        # Equal strings from distinct code objects (the same source compiled
        # twice) are rare; their max figures add up to an upper bound.
        pp.total_bytes += tb
        pp.total_blocks += tbk
        pp.total_lifetime += tl
        pp.max_bytes += mb
        pp.max_blocks += mbk
        pp.gmax_bytes += gb
        pp.gmax_blocks += gbk
        pp.end_bytes += eb
        pp.end_blocks += ebk
    return profile


def _pp_json(pp: ProgramPoint, fs: Sequence[int], heap: bool) -> str:
    fields: Dict[str, Any] = {"tb": pp.total_bytes, "tbk": pp.total_blocks}  # total bytes, blocks
    if heap:
        fields["tl"] = pp.total_lifetime  # total lifetime of its blocks
        fields["mb"] = pp.max_bytes  # max live bytes at this PP
        fields["mbk"] = pp.max_blocks  # max live blocks at this PP
        fields["gb"] = pp.gmax_bytes  # live bytes at the global peak (t-gmax)
        fields["gbk"] = pp.gmax_blocks  # live blocks at t-gmax
        fields["eb"] = pp.end_bytes  # live bytes at the end (t-end)
        fields["ebk"] = pp.end_blocks  # live blocks at t-end
    fields["fs"] = list(fs)  # frames, innermost first, as indices into ftbl
    return json.dumps(fields, separators=(",", ":"))


def write_json(profile: Profile, out: TextIO) -> None:
    """Streams the DHAT JSON of `profile` to `out`: one line per PP and frame."""
    heap = profile.is_heap
    ftbl: Dict[str, int] = {"[root]": 0}  # entry 0 is the viewer's root
    pp_lines: List[str] = []
    for pp in profile.pps:
        fs = [ftbl.setdefault(frame, len(ftbl)) for frame in pp.frames]
        pp_lines.append(_pp_json(pp, fs, heap))
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
    out.write(",".join(f"\n{json.dumps(frame)}" for frame in ftbl))
    out.write("\n]\n}\n")


def _current_umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly,
    for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def save(profile: Profile, path: str) -> None:
    """Writes the file atomically: a temporary file beside `path`, renamed into place,
    so an interrupted save (KeyboardInterrupt included) never leaves half a profile nor
    the temporary file.  Raises OSError naming `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dhatc-", suffix=".json.tmp", dir=directory)
    except OSError as e:
        raise OSError(e.errno, f"dhatc: cannot write the profile to {path!r}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            write_json(profile, out)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException as e:  # KeyboardInterrupt included: no temporary file left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(
                e.errno, f"dhatc: cannot write the profile to {path!r}: {e.strerror}"
            ) from e
        raise


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


def eprint(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
