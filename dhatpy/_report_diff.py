"""Two DHAT files compared program point by program point.

A program point is matched by its frames without their addresses (Valgrind
and the crate write ``0x4AA1D9F: func (file.c:332)``; ASLR moves the address
from run to run, ``func (file.c:332)`` stays).  Program points of one file
that differ only by addresses (two call instructions on one line) are one
program point here, their figures summed; for max_* that sum is an upper
bound of their combined peak, not the peak.

Scale: every address-free frame of either file gets a number, shared by both;
each program point's key is the bytes of the array of its frames' numbers,
made with C-level passes only (none at all for a file whose frame table the
numbers follow already), and the keys are matched with set operations.  The
two files are read in two processes (NEW in a forked one) where there are
CPUs to spare.
"""

from __future__ import annotations

import itertools
import multiprocessing
import operator
import os
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

from ._dhat_reader import FIGURES, DhatTable, frame_without_address
from ._errors import CommandError
from ._report_common import read_table, top_indices


@dataclass
class Side:
    """One file, ready to be matched: its table, the address-free frame of each
    ftbl entry, and a key per program point."""

    table: DhatTable
    frames: List[str]  # ftbl without addresses
    keys: List[bytes] = field(default_factory=list)
    index: Dict[bytes, int] = field(default_factory=dict)  # key -> its first PP
    groups: Dict[bytes, List[int]] = field(default_factory=dict)  # keys of more than one PP

    def finish(self) -> None:
        # In the order of each key's first PP; a key of several PPs (their
        # frames differ only in addresses) maps to its last, and to `groups`.
        self.index = dict(zip(self.keys, range(len(self.keys))))
        if len(self.index) != len(self.keys):  # addresses apart, the same frames
            seen: Dict[bytes, List[int]] = {}
            for i, key in enumerate(self.keys):
                seen.setdefault(key, []).append(i)
            self.groups = {key: pps for key, pps in seen.items() if len(pps) > 1}

    def figure(self, figure: str) -> Callable[[bytes], int]:
        """key -> the figure summed over the key's program points."""
        column = self.table.column(figure)
        if column is None:
            return lambda key: 0
        index, groups = self.index, self.groups
        if not groups:
            return lambda key: column[index[key]]
        return lambda key: (sum(column[i] for i in groups[key]) if key in groups
                            else column[index[key]])

    def frame_strings(self, key: bytes) -> List[str]:
        table = self.table
        return [self.frames[i] for i in table.frame_indices(self.index[key])]


def _numbers(frames: List[str], ids: Dict[str, int]) -> List[int]:
    """Each frame's number in `ids` (shared by both files), new ones added."""
    return [ids.setdefault(frame, len(ids)) for frame in frames]


def _keys(table: DhatTable, numbers: List[int], typecode: str) -> List[bytes]:
    """Each PP's key: the bytes of the array (of `typecode`) of its frames' numbers."""
    flat = table.frame_index_array
    if flat.typecode != typecode or numbers != list(range(len(numbers))):
        flat = array(typecode, map(numbers.__getitem__, flat))
    data, size = flat.tobytes(), flat.itemsize
    starts = map(operator.mul, table.offsets, itertools.repeat(size))
    ends = map(operator.mul, itertools.islice(table.offsets, 1, None), itertools.repeat(size))
    return list(map(data.__getitem__, map(slice, starts, ends)))


def prepare(path: str) -> Side:
    """Reads the file at `path` (its keys come when both files are there)."""
    table = read_table(path)
    return Side(table, [frame_without_address(frame) for frame in table.ftbl])


def _prepare_both(old_path: str, new_path: str) -> Tuple[Side, Side]:
    """Reads both, the second in a forked process when there are CPUs to spare.
    Its result is received once this process has read the first: a thread
    receiving it meanwhile would wait for the interpreter lock at every piece
    of the pipe (seconds, for a big file)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpus or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods() \
            or "-" in (old_path, new_path):
        return prepare(old_path), prepare(new_path)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_prepare_for, args=(new_path, sender), daemon=True)
    try:
        child.start()
    except OSError:
        return prepare(old_path), prepare(new_path)
    sender.close()
    try:
        old = prepare(old_path)
        try:
            outcome, new = receiver.recv()
        except (EOFError, OSError):
            outcome, new = "failed", None
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
        child.join()
    if outcome != "ok":  # read it here, to say what is wrong with it
        new = prepare(new_path)
    return old, new


def _prepare_for(path: str, sender: Any) -> None:
    """In the forked process: prepare, and send the Side back (or "failed")."""
    try:
        side = prepare(path)
    except BaseException:
        sender.send(("failed", None))
    else:
        sender.send(("ok", side))
    sender.close()


@dataclass
class Change:
    """A program point of either file, with the change of one figure."""

    key: bytes
    status: str  # "grew", "shrank", "unchanged", "new", "vanished"
    old: Optional[int]  # the figure in OLD (None: not there)
    new: Optional[int]
    change: int


STATUSES = ("grew", "shrank", "unchanged", "new", "vanished")


class Comparison:
    """Both files' program points, matched by key.  Each program point of either
    file is one entry: matched ones first (in NEW's order), then NEW's own, then
    OLD's; an entry's figure is its key's, summed over the key's PPs."""

    def __init__(self, old: Side, new: Side) -> None:
        self.old = old
        self.new = new
        # In the files' own order, so that ties come out the same from run to run.
        new_keys = list(new.index) if new.groups else new.keys
        found = list(map(old.index.get, new_keys))  # OLD's PP of each NEW key, or None
        matches = list(map(operator.is_not, found, itertools.repeat(None)))
        self.matched = list(itertools.compress(new_keys, matches))
        self.added = list(itertools.compress(new_keys, map(operator.not_, matches)))
        self.vanished = list(itertools.filterfalse(new.index.__contains__, old.index))
        self.keys = self.matched + self.added + self.vanished
        # Each entry's PP in each file: what its figures are, where no key has several PPs.
        new_pps = range(len(new_keys))  # without groups, key i is PP i
        matched_in_old = cast(List[int], list(itertools.compress(found, matches)))  # no None
        self._pps = (matched_in_old,
                     list(map(old.index.__getitem__, self.vanished)),
                     list(itertools.compress(new_pps, matches)),
                     list(itertools.compress(new_pps, map(operator.not_, matches))))
        self._deltas: Dict[str, Tuple[List[int], List[int], List[int]]] = {}

    def frames(self, change: Change) -> List[str]:
        side = self.new if change.key in self.new.index else self.old
        return side.frame_strings(change.key)

    def totals(self, figure: str) -> Tuple[Optional[int], Optional[int]]:
        return self.old.table.total(figure), self.new.table.total(figure)

    def _figures(self, figure: str) -> Tuple[List[int], List[int], List[int]]:
        """OLD's figure, NEW's and the change, per entry (0 where a file lacks it)."""
        cached = self._deltas.get(figure)
        if cached is None:
            n_added, n_vanished = len(self.added), len(self.vanished)
            old_matched, old_vanished, new_matched, new_added = self._pps
            before = (_values(self.old, figure, self.matched, old_matched) + [0] * n_added
                      + _values(self.old, figure, self.vanished, old_vanished))
            after = (_values(self.new, figure, self.matched, new_matched)
                     + _values(self.new, figure, self.added, new_added) + [0] * n_vanished)
            cached = (before, after, list(map(operator.sub, after, before)))
            self._deltas[figure] = cached
        return cached

    def counts(self, figure: str) -> Dict[str, int]:
        deltas = self._figures(figure)[2][:len(self.matched)]
        grew = sum(map(operator.gt, deltas, itertools.repeat(0)))
        shrank = sum(map(operator.lt, deltas, itertools.repeat(0)))
        return {"grew": grew, "shrank": shrank, "unchanged": len(deltas) - grew - shrank,
                "new": len(self.added), "vanished": len(self.vanished)}

    def top(self, figure: str, n: int, *, growth_only: bool = False) -> List[Change]:
        """The `n` program points (0: all) whose `figure` changed most: the biggest
        change first, growth before shrinkage at equal size, then the bigger
        figure, then the entries' order.  `growth_only`: those that grew."""
        before, after, deltas = self._figures(figure)
        sizes = list(map(abs, deltas))
        candidates: Sequence[int] = range(len(deltas))
        if growth_only:
            candidates = list(itertools.compress(candidates, map(operator.gt, deltas,
                                                                 itertools.repeat(0))))
        chosen = top_indices(candidates, (sizes, deltas, list(map(max, before, after))), n)
        n_matched, n_new = len(self.matched), len(self.matched) + len(self.added)
        result = []
        for i in chosen:
            delta = deltas[i]
            status = ("new" if n_matched <= i < n_new else "vanished" if i >= n_new else
                      "grew" if delta > 0 else "shrank" if delta < 0 else "unchanged")
            result.append(Change(self.keys[i], status, None if status == "new" else before[i],
                                 None if status == "vanished" else after[i], delta))
        return result


def _values(side: Side, figure: str, keys: List[bytes], pps: List[int]) -> List[int]:
    """The figure of each key, summed over the key's program points; `pps`: the
    key's PP (its only one when no key of the side has several)."""
    column = side.table.column(figure)
    if column is None:
        return [0] * len(keys)
    if not side.groups:
        return list(map(column.__getitem__, pps))
    get = side.figure(figure)
    return [get(key) for key in keys]


def compare(old_path: str, new_path: str) -> Comparison:
    """Reads both files and matches their program points."""
    if old_path == "-" and new_path == "-":
        raise CommandError("only one of OLD and NEW can be '-' (standard input)")
    old, new = _prepare_both(old_path, new_path)
    ids: Dict[str, int] = {}
    old_numbers, new_numbers = _numbers(old.frames, ids), _numbers(new.frames, ids)
    typecode = "I" if len(ids) <= 1 << 32 else "Q"
    old.keys = _keys(old.table, old_numbers, typecode)
    new.keys = _keys(new.table, new_numbers, typecode)
    old.finish()
    new.finish()
    return Comparison(old, new)


# --- limits (--fail-if-more) -----------------------------------------------------------


#: Figures a limit can name: the totals of a file.  max_* is the global peak, as
#: in HeapStats (the most bytes live at once), that is the t-gmax figure.
LIMIT_FIGURES: Dict[str, str] = {
    "total_bytes": "total_bytes", "total_blocks": "total_blocks",
    "units": "total_bytes", "events": "total_blocks",
    "max_bytes": "gmax_bytes", "max_blocks": "gmax_blocks",
    "gmax_bytes": "gmax_bytes", "gmax_blocks": "gmax_blocks",
    "end_bytes": "end_bytes", "end_blocks": "end_blocks",
    "curr_bytes": "end_bytes", "curr_blocks": "end_blocks",
    "reads": "reads", "writes": "writes",
}

#: Figures diff can sort by: per program point, additive.
SORT_FIGURES: Dict[str, str] = {
    **{name: name for name in FIGURES if name != "total_lifetime"},
    "units": "total_bytes", "events": "total_blocks",
    "curr_bytes": "end_bytes", "curr_blocks": "end_blocks",
}

