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
numbers follow already), and the keys are matched by a hash table in C
(dhatc._ppscan.match) or, where a key has several PPs, with dicts.  The C
scanner reads a file of any writer's in about a second: then both files are
read in this process; otherwise (no scanner, or a NEW whose first program
point it does not read) in two, NEW in a forked one, where there are CPUs
to spare.
"""

from __future__ import annotations

import itertools
import multiprocessing
import operator
import os
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

from ._dhat_reader import (FIGURES, DhatTable, _decode, _ppscan, _read_bytes,
                           frame_without_address, guess_frame_table, loads_table,
                           scanner_reads)
from ._errors import CommandError
from ._report_common import read_table, top_indices


@dataclass
class Side:
    """One file, ready to be matched: its table, the address-free frame of each
    ftbl entry, and a key per program point."""

    table: DhatTable
    frames: List[str]  # ftbl without addresses
    keys: List[bytes] = field(default_factory=list)
    groups: Dict[bytes, List[int]] = field(default_factory=dict)  # keys of more than one PP
    _index: Optional[Dict[bytes, int]] = None
    #: The frame indices as the numbers the keys are made of (see _Numbering).
    numbered: "Optional[array[int]]" = None

    @property
    def index(self) -> Dict[bytes, int]:
        """key -> its PP (a key of several PPs: its last), in the order of each
        key's first PP.  Made when first asked for."""
        if self._index is None:
            self._index = dict(zip(self.keys, range(len(self.keys))))
        return self._index

    def distinct_frames(self) -> bool:
        """Whether no two ftbl entries are one frame without their addresses:
        then no two PPs have one key (the reader refuses repeated locations)."""
        return len(set(self.frames)) == len(self.frames)

    def find_groups(self) -> None:
        """The keys of several PPs (their frames differ only in addresses)."""
        if len(self.index) != len(self.keys):
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

    def frame_strings(self, pp: int) -> List[str]:
        """PP `pp`'s frames without their addresses."""
        return [self.frames[i] for i in self.table.frame_indices(pp)]


def _numbers(frames: List[str], ids: Dict[str, int]) -> List[int]:
    """Each frame's number in `ids` (shared by both files), new ones added."""
    return [ids.setdefault(frame, len(ids)) for frame in frames]


def _typecode(ids: Dict[str, int]) -> str:
    return "I" if len(ids) <= 1 << 32 else "Q"


def _numbered(table: DhatTable, numbers: List[int], typecode: str) -> "array[int]":
    """The table's frame indices as the frames' numbers, in an array of `typecode`
    (the table's own array where the numbers are the indices)."""
    flat = table.frame_index_array
    if flat.typecode != typecode or numbers != list(range(len(numbers))):
        flat = array(typecode, map(numbers.__getitem__, flat))
    return flat


def _keys(numbered: "array[int]", offsets: Sequence[int]) -> List[bytes]:
    """Each PP's key: the bytes of the numbers of its frames."""
    if _ppscan is not None and isinstance(offsets, array) and offsets.typecode == "Q":
        return _ppscan.keys(numbered, offsets, numbered.itemsize)  # the same, in C
    data, size = numbered.tobytes(), numbered.itemsize
    starts = map(operator.mul, offsets, itertools.repeat(size))
    ends = map(operator.mul, itertools.islice(offsets, 1, None), itertools.repeat(size))
    return list(map(data.__getitem__, map(slice, starts, ends)))


def _without_addresses(ftbl: List[str]) -> List[str]:
    if not any(map(operator.contains, ftbl, itertools.repeat("0x"))):
        return ftbl  # dhatc's files: no addresses at all
    return [frame_without_address(frame) for frame in ftbl]


def prepare(path: str) -> Side:
    """Reads the file at `path` (its keys come when both files are there)."""
    table = read_table(path)
    return Side(table, _without_addresses(table.ftbl))


class _Numbering:
    """The frames' numbers, OLD's first, and the keys made of them."""

    def __init__(self, old: Side) -> None:
        self.ids: Dict[str, int] = {}
        self.old = old
        self.old_numbers = _numbers(old.frames, self.ids)
        self.typecode = "I"
        self.key_old()

    def key_old(self) -> None:
        old = self.old
        old.numbered = _numbered(old.table, self.old_numbers, self.typecode)
        old.keys = _keys(old.numbered, old.table.offsets)
        old._index = None
        old.groups = {}
        if not old.distinct_frames():
            old.find_groups()

    def key_new(self, new: Side, numbered: "Optional[array[int]]" = None) -> None:
        """NEW's keys (from its frame indices as numbers, if given: the forked
        process made them, from a frame table of OLD found by a quick look
        that turned out right)."""
        if numbered is None:
            new_numbers = _numbers(new.frames, self.ids)
            typecode = _typecode(self.ids)
            numbered = _numbered(new.table, new_numbers, typecode)
        if numbered.typecode != self.typecode:  # over 2**32 frames
            self.typecode = numbered.typecode
            self.key_old()
        new.numbered = numbered
        new.keys = _keys(numbered, new.table.offsets)
        if not new.distinct_frames():
            new.find_groups()


def _read_both(old_path: str, new_path: str) -> Tuple[Side, Side]:
    """Reads both and makes their keys: NEW in a forked process when there are
    CPUs to spare and it is not a file the C scanner (dhatc._ppscan) reads in a
    second (whoever wrote it: see scanner_reads); that process also numbers
    its frames if a quick look finds OLD's frame table.  Its result is
    received once this process has read OLD and made its keys: a thread
    receiving it meanwhile would wait for the interpreter lock at every piece
    of the pipe (seconds, for a big file)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # With the C scanner a file takes a second to read, about what sending its
    # table back from a forked process would take (a 200 MB file in Valgrind's
    # layout: 6.3 s in one process, 6.6 s with the fork, which also took 2 s
    # more CPU and 260 MB more memory).
    if (cpus or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods() \
            or "-" in (old_path, new_path) or scanner_reads(new_path):
        old = prepare(old_path)
        new = prepare(new_path)
        numbering = _Numbering(old)
        numbering.key_new(new)
        return old, new
    old_text = _decode(_read_bytes(old_path), old_path)
    guess = guess_frame_table(old_text)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child: Any = context.Process(target=_prepare_for, args=(new_path, guess, sender),
                                 daemon=True)
    try:
        child.start()
    except OSError:
        child = None
    sender.close()
    received: Tuple[str, Optional[Side], "Optional[array[int]]"] = ("failed", None, None)
    try:
        old_table = loads_table(old_text, old_path)
        del old_text
        old = Side(old_table, _without_addresses(old_table.ftbl))
        numbering = _Numbering(old)
        if child is not None:
            try:
                received = receiver.recv()
            except (EOFError, OSError):
                pass
    finally:
        receiver.close()
        if child is not None:
            if child.is_alive():
                child.terminate()
            child.join()
    outcome, sent, numbered = received
    if outcome != "ok" or sent is None:  # read it here, to say what is wrong with it
        sent, numbered = prepare(new_path), None
    if guess != old.table.ftbl:
        numbered = None
    numbering.key_new(sent, numbered)
    return old, sent


def _prepare_for(path: str, guess: Optional[List[str]], sender: Any) -> None:
    """In the forked process: prepare, number NEW's frames after `guess`'s (OLD's
    frame table, if found), and send them back (or "failed")."""
    try:
        side = prepare(path)
        numbered = None
        if guess is not None:
            ids: Dict[str, int] = {}
            _numbers(_without_addresses(guess), ids)
            numbered = _numbered(side.table, _numbers(side.frames, ids), _typecode(ids))
    except BaseException:
        sender.send(("failed", None, None))
    else:
        sender.send(("ok", side, numbered))
    sender.close()


@dataclass
class Change:
    """A program point of either file, with the change of one figure."""

    key: bytes
    status: str  # "grew", "shrank", "unchanged", "new", "vanished"
    old: Optional[int]  # the figure in OLD (None: not there)
    new: Optional[int]
    change: int
    old_pp: Optional[int] = None  # its PP in OLD (a key of several PPs: the last)
    new_pp: Optional[int] = None


STATUSES = ("grew", "shrank", "unchanged", "new", "vanished")


class Comparison:
    """Both files' program points, matched by key.  Each program point of either
    file is one entry: matched ones first (in NEW's order), then NEW's own, then
    OLD's; an entry's figure is its key's, summed over the key's PPs."""

    def __init__(self, old: Side, new: Side) -> None:
        self.old = old
        self.new = new
        self._deltas: Dict[str, Tuple[List[int], List[int], List[int]]] = {}
        if not self.match_in_c():
            self.match()

    def match_in_c(self) -> bool:
        """match(), by dhatc._ppscan.match: when no key of either side has several
        PPs and the keys are 32-bit numbers (all but files of 2**32 frames)."""
        old, new = self.old, self.new
        if (_ppscan is None or old.groups or new.groups or old.numbered is None
                or new.numbered is None or old.numbered.typecode != "I"
                or new.numbered.typecode != "I" or old.table.offsets.typecode != "Q"
                or new.table.offsets.typecode != "Q"):
            return False
        lists = []
        for part in _ppscan.match(old.numbered, old.table.offsets, new.numbered,
                                  new.table.offsets):
            numbers = array("q")
            numbers.frombytes(part)
            lists.append(numbers.tolist())
        matched_in_old, matched_new, added, vanished = lists
        self.matched = list(map(new.keys.__getitem__, matched_new))
        self.added = list(map(new.keys.__getitem__, added))
        self.vanished = list(map(old.keys.__getitem__, vanished))
        self.keys = self.matched + self.added + self.vanished
        self._pps = (matched_in_old, vanished, matched_new, added)
        return True

    def match(self) -> None:
        """Matches the two sides' keys: self.matched, added, vanished, keys, _pps."""
        old, new = self.old, self.new
        # In the files' own order, so that ties come out the same from run to run.
        new_keys = list(new.index) if new.groups else new.keys
        found = list(map(old.index.get, new_keys))  # OLD's PP of each NEW key, or None
        matches = list(map(operator.is_not, found, itertools.repeat(None)))
        unmatched = list(map(operator.not_, matches))
        self.matched = list(itertools.compress(new_keys, matches))
        self.added = list(itertools.compress(new_keys, unmatched))
        # OLD's keys NEW lacks: those whose PP no key of NEW found.
        found_pps = set(found)
        lacking = list(map(operator.not_, map(found_pps.__contains__, old.index.values())))
        self.vanished = list(itertools.compress(old.index, lacking))
        self.keys = self.matched + self.added + self.vanished
        # Each entry's PP in each file (a key of several PPs: its last).
        new_pps = list(new.index.values()) if new.groups else range(len(new_keys))
        matched_in_old = cast(List[int], list(itertools.compress(found, matches)))  # no None
        self._pps = (matched_in_old,
                     list(itertools.compress(old.index.values(), lacking)),
                     list(itertools.compress(new_pps, matches)),
                     list(itertools.compress(new_pps, unmatched)))

    def frames(self, change: Change) -> List[str]:
        if change.new_pp is not None:
            return self.new.frame_strings(change.new_pp)
        assert change.old_pp is not None
        return self.old.frame_strings(change.old_pp)

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
        old_matched, old_vanished, new_matched, new_added = self._pps
        result = []
        for i in chosen:
            delta = deltas[i]
            if i < n_matched:
                status = "grew" if delta > 0 else "shrank" if delta < 0 else "unchanged"
                old_pp, new_pp = old_matched[i], new_matched[i]
            elif i < n_new:
                status, old_pp, new_pp = "new", None, new_added[i - n_matched]
            else:
                status, old_pp, new_pp = "vanished", old_vanished[i - n_new], None
            result.append(Change(self.keys[i], status, None if status == "new" else before[i],
                                 None if status == "vanished" else after[i], delta,
                                 old_pp, new_pp))
        return result


def _values(side: Side, figure: str, keys: List[bytes], pps: Sequence[int]) -> List[int]:
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
    return Comparison(*_read_both(old_path, new_path))


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

