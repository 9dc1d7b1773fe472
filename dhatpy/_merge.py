"""One profile from the DHAT files of several processes of one program
(``dhatc merge``, and ``dhatc run --follow-children --merge``).

    from dhatc._merge import merge, merge_files
    profile = merge_files(["dhat-heap.json", "dhat-heap.4242.json"])  # -> dhatc.Profile
    dhatc._dhat_file.save(profile, "all.json")

How the figures combine, per program point matched by its frame strings:

* totals (bytes, blocks, lifetimes) and the figures at t-end add up: each
  process's blocks are its own, and "at t-end" is what each one left live
  when it ended;
* **t-gmax is not one moment**: the processes peak at different times, and
  their peaks do not add up to a global peak.  A merged file's t-gmax figures
  (``gb``/``gbk``, and the file's peak) are *the sum of each process's own
  figures at its own t-gmax*: what the processes held at their peaks, an upper
  bound of what they held together at any one moment;
* a PP's own maximum (``mb``/``mbk``) is likewise the sum of the maxima, an
  upper bound;
* times are laid end to end: ``te`` is the sum of the processes' durations,
  and ``tg`` is the t-gmax of the process with the largest peak, counted from
  the start of its place in that sequence.

The file's ``cmd`` says so and lists every process merged, so the viewer
shows it.  Heap and ad hoc profiles are never mixed, and every file must
count time in the same unit.  Read and write counts (Valgrind's
``--mode=heap`` files) are not carried over.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from . import _dhat_reader
from ._dhat_file import Profile, ProgramPoint
from ._dhat_reader import DhatFile
from ._errors import CommandError

#: The start of a merged file's `cmd`.
CMD_PREFIX = "dhatc merge of"


def _kind(file: DhatFile) -> str:
    return "a heap profile" if file.block_lifetimes else "an ad hoc profile"


def _check_compatible(files: Sequence[DhatFile]) -> None:
    first = files[0]
    for other in files[1:]:
        if other.block_lifetimes != first.block_lifetimes:
            raise CommandError(
                f"{first.path} is {_kind(first)} and {other.path} {_kind(other)}: "
                "merge heap profiles with heap profiles, ad hoc with ad hoc"
            )
        if (other.time_unit, other.time_unit_million) != (first.time_unit, first.time_unit_million):
            raise CommandError(
                f"{first.path} counts time in {first.time_unit!r} and {other.path} in "
                f"{other.time_unit!r}: merge profiles written by the same tool"
            )
        if (other.bytes_unit, other.blocks_unit) != (first.bytes_unit, first.blocks_unit):
            raise CommandError(
                f"{first.path} counts {first.bytes_unit} in {first.blocks_unit} and "
                f"{other.path} {other.bytes_unit} in {other.blocks_unit}: merge profiles of "
                "the same kind"
            )
        if other.short_lived_threshold != first.short_lived_threshold:
            raise CommandError(
                f"{first.path} calls blocks short-lived under {first.short_lived_threshold} "
                f"{first.time_unit} and {other.path} under {other.short_lived_threshold}: "
                "merge profiles written by the same tool"
            )


def merged_cmd(files: Sequence[DhatFile]) -> str:
    """The merged file's `cmd`: what was merged and what its t-gmax means."""
    processes = " | ".join(f"[pid {f.pid}] {f.cmd}" for f in files)
    peak = (
        "t-gmax = the sum of each process's own t-gmax figures, not one moment; "
        if files[0].block_lifetimes else ""
    )
    return f"{CMD_PREFIX} {len(files)} files; {peak}times laid end to end: {processes}"


def merge(files: Sequence[DhatFile]) -> Profile:
    """The profile of all `files` together (see the module's doc for what the
    figures mean).  Raises CommandError for files that cannot be merged."""
    if not files:
        raise CommandError("nothing to merge: give at least one DHAT file")
    _check_compatible(files)
    heap = files[0].block_lifetimes
    by_frames: Dict[Tuple[str, ...], ProgramPoint] = {}
    pps: List[ProgramPoint] = []
    time_of_end = 0
    best_peak, time_of_peak = -1, 0
    for file in files:
        peak = 0
        for read in file.pps:
            pp = by_frames.get(read.frames)
            if pp is None:
                pp = by_frames[read.frames] = ProgramPoint(frames=read.frames, total_bytes=0,
                                                           total_blocks=0)
                pps.append(pp)
            pp.total_bytes += read.total_bytes
            pp.total_blocks += read.total_blocks
            pp.total_lifetime += read.total_lifetime or 0
            pp.max_bytes += read.max_bytes or 0
            pp.max_blocks += read.max_blocks or 0
            pp.gmax_bytes += read.gmax_bytes or 0
            pp.gmax_blocks += read.gmax_blocks or 0
            pp.end_bytes += read.end_bytes or 0
            pp.end_blocks += read.end_blocks or 0
            peak += read.gmax_bytes or 0
        if peak > best_peak:
            best_peak, time_of_peak = peak, time_of_end + (file.time_of_peak or 0)
        time_of_end += file.time_of_end
    first = files[0]
    return Profile(
        mode="heap" if heap else "ad-hoc",
        total_blocks=sum(pp.total_blocks for pp in pps),
        total_bytes=sum(pp.total_bytes for pp in pps),
        curr_blocks=sum(pp.end_blocks for pp in pps),
        curr_bytes=sum(pp.end_bytes for pp in pps),
        max_blocks=sum(pp.gmax_blocks for pp in pps),
        max_bytes=sum(pp.gmax_bytes for pp in pps),
        time_of_peak=time_of_peak if heap else 0,
        time_of_end=time_of_end,
        cmd=merged_cmd(files),
        pid=first.pid,
        pps=pps,
        time_unit=first.time_unit,
        time_unit_million=first.time_unit_million,
        short_lived_threshold=first.short_lived_threshold,
    )


def merge_files(paths: Sequence[str]) -> Profile:
    """:func:`merge` of the files at `paths` (DhatFileError for an unreadable one)."""
    return merge([_dhat_reader.load(path) for path in paths])
