"""Reads any DHAT file (format version 2): dhatc's, the Rust crate ``dhat``'s, Valgrind's.

    f = load("dhat-heap.json")        # or loads(text, name="...")
    f.mode, f.cmd, f.total_bytes, f.gmax_bytes
    for pp in f.pps:
        pp.frames                     # innermost first, "[root]" never included
        pp.total_bytes, pp.gmax_bytes # None where the file has no such figure

    t = load_table("big.json")        # the same checks, kept compact: a million
    t.column("gmax_bytes"), t.frames(i)   # program points in about 130 MB

What a file must hold is what DHAT's viewer (``dh_view.js``) needs, with the
types that Valgrind's format comment (``dhat/dh_main.c``) gives them:

* top level: ``dhatFileVersion`` 2, ``mode``, ``verb``, ``tu``, ``Mtu``,
  ``cmd`` (strings), ``bklt``, ``bkacc`` (booleans), ``pid``, ``te``
  (integers), ``pps``, ``ftbl`` (arrays); with ``bklt`` also ``tg`` and
  ``tuth``; ``bu``, ``bsu``, ``bksu`` are optional strings.  Other fields are
  ignored.
* each program point: ``tb``, ``tbk`` and ``fs``; with ``bklt`` also ``tl``,
  ``mb``, ``mbk``, ``gb``, ``gbk``, ``eb``, ``ebk``; with ``bkacc`` also
  ``rb``, ``wb``; ``acc`` (Valgrind's run-length-encoded access counts) is
  decoded as the viewer decodes it, kept in the table only.
* figures are integers from 0 to 2**64 - 1 (not booleans, not 1.0); frame
  indices point into ``ftbl`` past its entry 0 (the root); ``ftbl`` holds
  strings.

Stricter than the viewer where the viewer would show garbage: it takes the
string "2" as the version and shows ``NaN`` for a missing ``tl`` or any
number for a figure.  As strict as the viewer on repeated locations: two
program points with the same frames are refused (the viewer throws "data
file contains a repeated location"); frames are compared as strings, so a
frame table that lists one string twice cannot hide a repeat.  ``mode`` is
free-form, as in the format ("heap", "ad-hoc", "copy", "rust-heap", ...): what
a file records follows from ``bklt``/``bkacc``, not from its mode.  Bytes that
are not UTF-8 are read as U+FFFD, as the viewer reads them (Valgrind writes
file and function names as it finds them).

Everything wrong with a file is a :class:`DhatFileError`, one line naming
the file and the problem.  Nothing else escapes: JSON nested too deeply,
numbers with thousands of digits, a file too big for memory, a directory, a
device, a FIFO (read to its end; one that no writer opens within
FIFO_WAIT_SECONDS is given up on).

How it scales: the top-level object is parsed field by field.  The ``pps``
array is read straight into flat arrays of figures and frame indices by a
C scanner (``dhatc._ppscan``, src/dhatc/ppscan.c), whatever the writer's
layout (any JSON white space, the keys in any order, Valgrind's ``rb``,
``wb`` and ``acc``): a 200 MB file in about a second.  It stops before a
program point it cannot read exactly as the JSON path would (a key unknown
or repeated, a number that is not a plain unsigned integer, anything
wrong).  What it does not read (the rest of the file from there on, or all
of it without the scanner) is parsed a
megabyte at a time by the C JSON scanner; each chunk is checked with a few
C-level passes (``map``, ``set``, ``min``/``max``) and its figures and frame
indices go into the same arrays, so memory stays near the file's size and
a 200 MB file takes a few seconds; ``parallel=True`` parses half of those
pieces in a forked process.  Both give the same table, and any message
comes from the JSON path.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import itertools
import json
import multiprocessing
import operator
import os
import re
import select
import stat
import sys
from array import array
from dataclasses import dataclass, fields
from typing import (Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple,
                    Union)

from ._errors import CommandError

try:  # the C scanner of the pps array; without it, the same in Python, slower
    from . import _ppscan as _ppscan  # re-exported: the report modules use it too
except ImportError:  # pragma: no cover - built with the package
    _ppscan = None  # type: ignore[assignment]
if array("I").itemsize != 4 or array("Q").itemsize != 8:  # pragma: no cover
    _ppscan = None  # type: ignore[assignment]  # it writes 32- and 64-bit numbers

#: The only format version there is (Valgrind 3.15 and later, the dhat crate, dhatc).
FILE_VERSION = 2
#: Figures are written as unsigned 64-bit integers (Valgrind's %llu, Rust's u64).
MAX_FIGURE = 2**64 - 1
_MAX_DIGITS = len(str(MAX_FIGURE))
_MAX_FRAME_INDEX = 2**32 - 1  # frame indices are kept in an array('I')
#: An access count Valgrind stopped counting at: it means "65535 or more".
ACCESS_LATCH = 0xFFFF
#: Access counts per program point dhatc keeps; Valgrind records them for blocks
#: of up to 1 KiB, and a repeat count must not make a small file take gigabytes.
MAX_ACCESS_COUNTS = 1 << 16
#: How long a FIFO may stay without a writer before it is given up on.
FIFO_WAIT_SECONDS = 10.0
#: Characters of the pps array parsed at a time.
_CHUNK_CHARS = 1 << 20
#: Pieces of the pps array worth a second process (load_table(parallel=True)).
PARALLEL_MIN_PIECES = 16


class DhatFileError(CommandError):
    """One line: '<path>: <problem>' — what is wrong and, where useful, what to do."""


@dataclass(frozen=True)
class ReadProgramPoint:
    """One program point as the file gives it.  Figures a file does not record
    are None: all but the totals without block lifetimes (``bklt``), and
    ``reads``/``writes`` without block accesses (``bkacc``)."""

    __slots__ = (
        "frames", "total_bytes", "total_blocks", "total_lifetime", "max_bytes",
        "max_blocks", "gmax_bytes", "gmax_blocks", "end_bytes", "end_blocks",
        "reads", "writes",
    )  # 128 bytes each instead of about 400: files have a million of them

    frames: Tuple[str, ...]  # innermost first; "[root]" never included
    total_bytes: int  # tb: bytes (ad hoc: units) allocated here over the run
    total_blocks: int  # tbk: blocks (ad hoc: events)
    total_lifetime: Optional[int]  # tl: the lifetimes of its blocks, summed, in time units
    max_bytes: Optional[int]  # mb: its own peak of live bytes
    max_blocks: Optional[int]  # mbk: live blocks at that peak
    gmax_bytes: Optional[int]  # gb: live bytes at the global peak (t-gmax)
    gmax_blocks: Optional[int]  # gbk
    end_bytes: Optional[int]  # eb: live bytes at the end (t-end)
    end_blocks: Optional[int]  # ebk
    reads: Optional[int]  # rb: bytes read from its blocks (Valgrind)
    writes: Optional[int]  # wb: bytes written to its blocks (Valgrind)

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        # Slots and frozen: pickle and copy would set the slots one by one, which
        # a frozen class refuses; rebuilding through __init__ works everywhere.
        return (ReadProgramPoint, tuple(getattr(self, name) for name in self.__slots__))


#: ReadProgramPoint's figures, in field order (the order of the file's keys).
FIGURES = (
    "total_bytes", "total_blocks", "total_lifetime", "max_bytes", "max_blocks",
    "gmax_bytes", "gmax_blocks", "end_bytes", "end_blocks", "reads", "writes",
)
_KEY_OF = dict(zip(FIGURES, ("tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk", "rb",
                             "wb")))
_LIFETIME_FIGURES = FIGURES[2:9]
_ACCESS_FIGURES = FIGURES[9:]


def recorded_figures(block_lifetimes: bool, block_accesses: bool) -> Tuple[str, ...]:
    """The figures a file with these flags records, in FIGURES order."""
    return (FIGURES[:2] + (_LIFETIME_FIGURES if block_lifetimes else ())
            + (_ACCESS_FIGURES if block_accesses else ()))


@dataclass(frozen=True)
class DhatHeader:
    """What a file says besides its program points.  Units default as in the
    viewer."""

    path: str  # as given to load(); the name given to loads()
    mode: str  # free-form: "heap", "ad-hoc", "copy", "rust-heap", "rust-ad-hoc", ...
    verb: str  # "Allocated", "Occurred", "Copied": shown as "<verb> at {"
    block_lifetimes: bool  # bklt: lifetimes, max, t-gmax and t-end figures recorded
    block_accesses: bool  # bkacc: reads and writes recorded (Valgrind's heap mode)
    byte_unit: str  # bu, default "byte" (ad hoc: "unit")
    bytes_unit: str  # bsu, default "bytes" (ad hoc: "units")
    blocks_unit: str  # bksu, default "blocks" (ad hoc: "events")
    time_unit: str  # tu: "instrs" (Valgrind), "µs" (crate), "allocs" (dhatc)
    time_unit_million: str  # Mtu: "Minstr", "s", "Mallocs"
    short_lived_threshold: Optional[int]  # tuth, in time units; None without bklt
    cmd: str
    pid: int
    time_of_peak: Optional[int]  # tg (t-gmax); None without bklt
    time_of_end: int  # te (t-end)

    def records(self, figure: str) -> bool:
        """Whether the file records a ReadProgramPoint figure ("gmax_bytes", ...)."""
        return figure in recorded_figures(self.block_lifetimes, self.block_accesses)


@dataclass(frozen=True)
class DhatFile(DhatHeader):
    """A whole file.  Totals are sums over the program points, as the viewer
    computes them; None where the file does not record the figure."""

    pps: Tuple[ReadProgramPoint, ...]

    @functools.cached_property
    def _totals(self) -> Dict[str, Optional[int]]:
        return {
            name: sum(map(operator.attrgetter(name), self.pps)) if self.records(name) else None
            for name in FIGURES
        }

    def total(self, figure: str) -> Optional[int]:
        """The sum of a ReadProgramPoint figure over all program points; None if the
        file does not record it.  (For max_bytes/max_blocks, each PP's own peak,
        the sum is only an upper bound of the global peak, which is gmax_*.)"""
        if figure not in FIGURES:
            raise ValueError(f"unknown figure {figure!r}; figures: {', '.join(FIGURES)}")
        return self._totals[figure]

    @property
    def total_bytes(self) -> int:
        return self._totals["total_bytes"] or 0  # always recorded

    @property
    def total_blocks(self) -> int:
        return self._totals["total_blocks"] or 0

    @property
    def total_lifetime(self) -> Optional[int]:
        return self._totals["total_lifetime"]

    @property
    def gmax_bytes(self) -> Optional[int]:
        """Live bytes at t-gmax, the global peak."""
        return self._totals["gmax_bytes"]

    @property
    def gmax_blocks(self) -> Optional[int]:
        return self._totals["gmax_blocks"]

    @property
    def end_bytes(self) -> Optional[int]:
        """Live bytes at t-end."""
        return self._totals["end_bytes"]

    @property
    def end_blocks(self) -> Optional[int]:
        return self._totals["end_blocks"]

    @property
    def reads(self) -> Optional[int]:
        return self._totals["reads"]

    @property
    def writes(self) -> Optional[int]:
        return self._totals["writes"]


class DhatTable:
    """The program points of a file, kept compact: one flat array of figures
    (``width`` per PP, the recorded figures in FIGURES order), one of frame
    indices into ``ftbl`` and the offsets of each PP's indices in it.  What
    commands that must scale to a million PPs work on; ``to_file()`` makes
    the DhatFile."""

    def __init__(self, header: DhatHeader, ftbl: List[str], figures: "array[int]",
                 frame_indices: "array[int]", offsets: "array[int]",
                 accesses: Optional[Dict[int, List[int]]] = None,
                 sums: Optional[Sequence[int]] = None) -> None:
        self.header = header
        self.ftbl = ftbl  # entry 0 is the root
        self.figure_names = recorded_figures(header.block_lifetimes, header.block_accesses)
        self.width = len(self.figure_names)
        self.figures = figures
        self.frame_index_array = frame_indices
        self.offsets = offsets  # len(self) + 1 entries
        #: Valgrind's access counts of the PPs that have them (`acc`, decoded): one
        #: per byte offset of the PP's blocks, ACCESS_LATCH meaning "that or more".
        self.accesses = accesses or {}
        #: The sum of each recorded figure, if the reader added them up already.
        self._sums = None if sums is None else dict(zip(self.figure_names, sums))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def column(self, figure: str) -> "Optional[array[int]]":
        """One figure of every PP, in file order; None if the file does not record it."""
        if figure not in self.figure_names:
            if figure not in FIGURES:
                raise ValueError(f"unknown figure {figure!r}; figures: {', '.join(FIGURES)}")
            return None
        return self.figures[self.figure_names.index(figure)::self.width]

    def total(self, figure: str) -> Optional[int]:
        """The sum over all PPs, as the viewer computes its root; None if not recorded."""
        if self._sums is not None and figure in self._sums:
            return self._sums[figure]
        column = self.column(figure)
        return None if column is None else sum(column)

    def frame_indices(self, i: int) -> "array[int]":
        """PP i's frames as indices into ``ftbl``, innermost first."""
        return self.frame_index_array[self.offsets[i]:self.offsets[i + 1]]

    def frames(self, i: int) -> Tuple[str, ...]:
        """PP i's frames, innermost first."""
        return tuple(map(self.ftbl.__getitem__, self.frame_indices(i)))

    def figures_of(self, i: int) -> Dict[str, Optional[int]]:
        """PP i's figures by name, None for those the file does not record."""
        values = dict(zip(self.figure_names, self.figures[i * self.width:(i + 1) * self.width]))
        return {name: values.get(name) for name in FIGURES}

    def program_point(self, i: int) -> ReadProgramPoint:
        return ReadProgramPoint(self.frames(i), **self.figures_of(i))  # type: ignore[arg-type]

    def to_file(self) -> DhatFile:
        """The DhatFile: every PP as a ReadProgramPoint (a few seconds per million)."""
        make = _constructor(self.header.block_lifetimes, self.header.block_accesses)
        frame_of = self.ftbl.__getitem__
        figures, fs, offsets, width = self.figures, self.frame_index_array, self.offsets, self.width
        with collection_paused():
            pps = tuple(
                make(tuple(map(frame_of, fs[offsets[i]:offsets[i + 1]])),
                     figures[i * width:(i + 1) * width])
                for i in range(len(self))
            )
        header = {f.name: getattr(self.header, f.name) for f in fields(DhatHeader)}
        result = DhatFile(pps=pps, **header)
        # The table has the totals already: fill cached_property's cache.
        result.__dict__["_totals"] = {name: self.total(name) for name in FIGURES}
        return result


def _constructor(bklt: bool, bkacc: bool) -> Callable[[Tuple[str, ...], Sequence[int]],
                                                      ReadProgramPoint]:
    """Builds a ReadProgramPoint from its frames and the figures the file records."""
    rpp = ReadProgramPoint
    if bklt and bkacc:
        return lambda frames, f: rpp(frames, *f)
    if bklt:
        return lambda frames, f: rpp(frames, *f, None, None)  # type: ignore[call-arg]
    if bkacc:
        return lambda frames, f: rpp(frames, f[0], f[1], None, None, None, None, None, None,
                                     None, f[2], f[3])
    return lambda frames, f: rpp(frames, f[0], f[1], None, None, None, None, None, None,
                                 None, None, None)


# Valgrind's frames start with the instruction's address, the crate's too:
# "0x4AA1D9F: func (file.c:332)", "0x55d4a3b2c1d0: alloc::... (src/main.rs:12:5)".
_ADDRESS = re.compile(r"0x[0-9A-Fa-f]+: ")


def frame_without_address(frame: str) -> str:
    """``func (file.c:332)`` for ``0x4AA1D9F: func (file.c:332)``: what stays the
    same between two runs of a native program (ASLR moves the addresses)."""
    match = _ADDRESS.match(frame)
    return frame[match.end():] if match else frame


# --- entry points ----------------------------------------------------------------------


def load(path: Union[str, "os.PathLike[str]"]) -> DhatFile:
    """Reads and checks the DHAT file at `path`.  Raises DhatFileError."""
    return load_table(path).to_file()


def loads(text: Union[str, bytes], name: str = "<string>") -> DhatFile:
    """Checks the DHAT file whose content is `text`; `name` goes into messages."""
    return loads_table(text, name).to_file()


def load_table(path: Union[str, "os.PathLike[str]"], *, parallel: bool = False) -> DhatTable:
    """Reads and checks the DHAT file at `path`, keeping it compact.  Raises DhatFileError.

    `parallel`: a big file's program points are parsed half in a forked process
    (the same result, sooner, where there is a CPU to spare).  Only for a
    program that may fork: a single-threaded command, not a library call."""
    name = os.fspath(path)
    return loads_table(_read_bytes(name), name, parallel=parallel)


def loads_table(text: Union[str, bytes], name: str = "<string>", *,
                parallel: bool = False) -> DhatTable:
    """Checks the DHAT file whose content is `text`, keeping it compact."""
    if isinstance(text, bytes):
        text = _decode(text, name)
    try:
        with collection_paused():
            return _Parser(text, name, parallel=parallel).table()
    except RecursionError:
        _fail(name, "the JSON is nested too deeply to be a DHAT file")
    except MemoryError:
        _fail(name, "too big to read into memory")
    except ValueError as e:  # from the JSON hooks: NaN/Infinity, too many digits
        _fail(name, f"not a DHAT file: {e}")


def guess_frame_table(text: str) -> Optional[List[str]]:
    """The frame table of the DHAT file whose content is `text`, if a quick look
    finds it: the array of strings after the last '"ftbl":' (dhatc, Valgrind
    and the crate write it last).  A guess: a caller checks it against the
    frame table that reading the file gives."""
    pos = text.rfind('"ftbl":')
    if pos < 0:
        return None
    try:
        scan = getattr(_decoder(), "scan_once")
        value, _ = scan(text, _WS.match(text, pos + 7).end())  # type: ignore[union-attr]
    except (StopIteration, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(value, list) or not set(map(type, value)) <= {str}:
        return None
    return value


#: Where the program points of a file start: after '"pps":[' and any white space.
_PPS_START = re.compile(r'"pps"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*')


def scanner_reads(path: str) -> bool:
    """Whether the C scanner is there and reads the first program point of the
    file at `path`, any writer's (then the file is read in about a second per
    200 MB).  A guess, from the file's first 64 KiB, for choosing how to read
    it; False for anything but a regular file (a pipe's data must not be
    taken)."""
    if _ppscan is None:
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
    except (OSError, ValueError):
        return False
    match = _PPS_START.search(head)
    if match is None:
        return False
    ignored = tuple(key for key in _KEY_OF.values() if key not in ("tb", "tbk"))
    return _ppscan.scan(head, match.end(), ("tb", "tbk"), 0, False, ignored,
                        (MAX_ACCESS_COUNTS, ACCESS_LATCH)) is not None


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: the parsed program points, millions of
    dicts and lists with no cycles among them, would make the collector walk all
    the containers alive again and again (a third of a big file's reading time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- the bytes -------------------------------------------------------------------------


def _fail(name: str, problem: str) -> NoReturn:
    raise DhatFileError(f"{name}: {problem}")


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read_bytes(name: str) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO that nobody writes to would wait forever.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        _fail(name, "no such file")
    except IsADirectoryError:
        _fail(name, "a directory, not a DHAT file")
    except PermissionError:
        _fail(name, "permission denied")
    except OSError as e:
        _fail(name, f"cannot open it: {e.strerror or e}")
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            _fail(name, "a directory, not a DHAT file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            _fail(name, "not a regular file (a device or a socket?); give the path of a DHAT file")
        if stat.S_ISFIFO(mode):
            # Nothing to read before a writer comes; one that never comes must
            # not keep us waiting for ever.
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(FIFO_WAIT_SECONDS * 1000):
                _fail(name, f"a pipe that nobody wrote to in {FIFO_WAIT_SECONDS:g} seconds")
        os.set_blocking(fd, True)  # then wait for all the writer writes
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except MemoryError:
        _fail(name, "too big to read into memory")
    except OSError as e:
        _fail(name, f"cannot read it: {e.strerror or e}")
    finally:
        os.close(fd)
    if not data:
        _fail(name, "empty (a pipe closed before anything was written)" if stat.S_ISFIFO(mode)
              else "empty file (not written yet, or its writer was killed?)")
    return data


def _decode(data: bytes, name: str) -> str:
    if data[:2] == b"\x1f\x8b":
        _fail(name, "gzip-compressed; decompress it first (gunzip, or zcat it to '-')")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    try:
        # As the viewer reads it (FileReader.readAsText): invalid UTF-8 becomes U+FFFD.
        return data.decode("utf-8", "replace")
    except MemoryError:
        _fail(name, "too big to read into memory")


# --- the JSON --------------------------------------------------------------------------


def _reject_constant(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _bounded_int(digits: str) -> int:
    if len(digits) > _MAX_DIGITS + 1:
        raise ValueError("a number with more digits than any figure has")
    return int(digits)


def _decoder() -> json.JSONDecoder:
    """The stdlib decoder, refusing NaN/Infinity.  Without CPython's limit on
    integer digits (PYTHONINTMAXSTRDIGITS=0) a 100-million-digit number would take
    hours to convert: then long numbers are refused first, at some cost in speed."""
    get_limit = getattr(sys, "get_int_max_str_digits", None)
    limit = get_limit() if get_limit is not None else 0
    hook = None if 0 < limit <= 5000 else _bounded_int
    return json.JSONDecoder(parse_constant=_reject_constant, parse_int=hook)


_WS = re.compile(r"[ \t\n\r]*")


def _show_text(text: str) -> str:
    return repr(text[:20] + ("..." if len(text) > 20 else ""))


def _describe(value: Any) -> str:
    """A JSON value, briefly, for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {_show_text(value)}"
    text = repr(value)
    return text if len(text) <= 30 else f"a number with {len(text):,} digits"


def _is_figure(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_FIGURE


_INT = {int}
_STREAMED = object()  # fields["pps"] when the parser fed the array to the builder

# dhatc's own layout of a program point, which _TableBuilder.feed_text reads
# without parsing each one: '{"tb":1,"tbk":2,...,"fs":[3,4]}', one per line.
_FS_START = ',"fs":['
_PP_END = ']},\n'
_DIGITS = "0123456789"
#: ASCII text without its digits.
_WITHOUT_DIGITS = str.maketrans("", "", _DIGITS)
#: Digits as "0", colons kept, every other ASCII character as "x": where numbers start.
_NUMBER_STARTS = str.maketrans({**{c: "x" for c in map(chr, range(128))}, **dict.fromkeys(_DIGITS, "0"),
                                ":": ":"})
#: Only the digits and the commas of ASCII text.
_NUMBERS_ONLY = str.maketrans(dict.fromkeys((c for c in map(chr, range(128))
                                             if c not in _DIGITS + ","), None))


class _Parser:
    """Parses one document: the top-level object field by field, the ``pps``
    array chunk by chunk into a _TableBuilder, then checks the header."""

    def __init__(self, text: str, name: str, parallel: bool = False) -> None:
        self.text = text
        self.name = name
        self.parallel = parallel and _cpus() >= 2
        self.decoder = _decoder()
        self.scan: Callable[[str, int], Tuple[Any, int]] = getattr(self.decoder, "scan_once")
        self.builder: Optional[_TableBuilder] = None

    def fail(self, problem: str) -> NoReturn:
        _fail(self.name, problem)

    # -- syntax

    def syntax_error(self, message: str, pos: int) -> NoReturn:
        text = self.text
        if not text[pos:].strip() or message.startswith("Unterminated string"):
            line = text.count("\n", 0, pos) + 1
            self.fail(f"the JSON stops in the middle, at line {line:,} "
                      "(truncated, or still being written?)")
        line = text.count("\n", 0, pos) + 1
        column = pos - text.rfind("\n", 0, pos)
        self.fail(f"not valid JSON: {message} at line {line:,}, column {column:,}")

    def ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]  # always matches

    def value(self, pos: int) -> Tuple[Any, int]:
        try:
            return self.scan(self.text, pos)
        except StopIteration as e:
            self.syntax_error("Expecting value", e.value)
        except json.JSONDecodeError as e:
            self.syntax_error(e.msg, e.pos)

    def table(self) -> DhatTable:
        text = self.text
        pos = self.ws(0)
        if pos == len(text):
            self.fail("empty file (only white space)")
        if not text.startswith("{", pos):
            if text[pos] not in '["-0123456789tfn':
                self.fail(f"not JSON (it starts with {_show_text(text[pos:])}), so not a "
                          "DHAT file")
            value, end = self.value(pos)
            self.fail(f"not a DHAT file: the JSON is {_describe(value)}, not an object")
        fields_ = self.top_level(pos + 1)
        return _Checker(self, fields_).table()

    def top_level(self, pos: int) -> Dict[str, Any]:
        """The fields of the object that starts before `pos`, pps streamed."""
        text = self.text
        result: Dict[str, Any] = {}
        pos = self.ws(pos)
        if text.startswith("}", pos):
            pos += 1
        else:
            while True:
                if not text.startswith('"', pos):
                    self.syntax_error("Expecting property name enclosed in double quotes", pos)
                key, pos = self.value(pos)
                pos = self.ws(pos)
                if not text.startswith(":", pos):
                    self.syntax_error("Expecting ':' delimiter", pos)
                pos = self.ws(pos + 1)
                if key == "pps" and text.startswith("[", pos) and self.can_stream(result):
                    self.builder = _TableBuilder(self.name, result["bklt"], result["bkacc"])
                    pos = self.stream_pps(pos + 1)
                    result[key] = _STREAMED
                else:
                    result[key], pos = self.value(pos)
                pos = self.ws(pos)
                if text.startswith(",", pos):
                    pos = self.ws(pos + 1)
                elif text.startswith("}", pos):
                    pos += 1
                    break
                else:
                    self.syntax_error("Expecting ',' delimiter", pos)
        pos = self.ws(pos)
        if pos != len(text):
            self.syntax_error("Extra data", pos)
        return result

    @staticmethod
    def can_stream(seen: Dict[str, Any]) -> bool:
        """Whether the fields before pps tell how to read it; otherwise it is
        parsed whole and read after the header is checked."""
        version = seen.get("dhatFileVersion")
        return (type(version) is int and version == FILE_VERSION
                and isinstance(seen.get("bklt"), bool) and isinstance(seen.get("bkacc"), bool))

    def stream_pps(self, pos: int) -> int:
        """Feeds the pps array (its '[' before `pos`) to the builder; returns the
        position after its ']'.  Fastest path: the C scanner reads the program
        points (scan_layout), all of them in a file of dhatc's, Valgrind's or
        the crate's.  For the rest, fast path: cut the array after a '}' that a ','
        or the ']' follows and parse the piece as an array of its own (or, in
        dhatc's layout, as two arrays of numbers: _TableBuilder.feed_text).  A cut
        in the wrong place (inside a string or a nested object) cannot parse as
        an array, and then the rest is read one element at a time."""
        text = self.text
        assert self.builder is not None
        pos = self.ws(pos)
        if text.startswith("]", pos):
            return pos + 1
        scanned = self.scan_layout(pos)
        if scanned is not None:
            after = self.ws(scanned)
            if text.startswith("]", after):
                return after + 1
            if not text.startswith(",", after):
                self.syntax_error("Expecting ',' delimiter", after)
            pos = self.ws(after + 1)  # the rest is not for the scanner: read as JSON
        elif self.parallel:
            builder = self.builder
            rest = self.stream_in_two(pos)
            if rest is not None:
                pos = rest
            else:  # start again, one process, for the exact message if there is one
                self.builder = _TableBuilder(self.name, builder.bklt, builder.bkacc)
        while True:
            cut = text.find("}", pos + _CHUNK_CHARS)
            if cut >= 0:
                after = self.ws(cut + 1)
                if text.startswith(",", after) or text.startswith("]", after):
                    piece = text[pos:cut + 1]
                    if self.builder.feed_text(piece):
                        chunk: Optional[List[Any]] = []
                    else:
                        source = "[" + piece + "]"
                        try:
                            chunk = self.decoder.decode(source)
                        except (ValueError, RecursionError):
                            chunk = None  # read it one element at a time, for the right message
                        if chunk is not None:
                            self.builder.feed(chunk, source)
                    if chunk is not None:
                        if text.startswith("]", after):
                            return after + 1
                        pos = self.ws(after + 1)
                        continue
            return self.stream_elements(pos)

    def scan_layout(self, pos: int) -> Optional[int]:
        """Reads the program points from `pos` on with the C scanner
        (dhatc._ppscan), into the builder, up to one it cannot read exactly as
        the JSON path would; the position after the last one read, or None if
        none was (the first is such, no scanner, or a repeated location among
        them: the JSON path says which)."""
        builder = self.builder
        assert builder is not None and not builder.count
        if _ppscan is None:
            return None
        # The figures a file of other flags has are skipped, as the JSON path
        # skips them; "acc" is decoded as check_accesses decodes it.
        ignored = tuple(key for key in _KEY_OF.values() if key not in builder.keys)
        limits = (MAX_ACCESS_COUNTS, ACCESS_LATCH)
        result = _ppscan.scan(self.text, pos, builder.keys, 0, False, ignored, limits)
        if result is None:
            return None
        end, count, figures, indices, offsets, hashes, max_index, sums, accesses = result
        if not self.text.startswith("]", self.ws(end)):
            # More PPs follow that the scanner does not read: the JSON path checks
            # them for repeats against these by the hashes of their locations' text.
            result = _ppscan.scan(self.text, pos, builder.keys, 0, True, ignored, limits)
            assert result is not None and result[1] == count
            hashes = result[5]
        builder.keep_arrays(count, figures, indices, offsets, hashes or set(), max_index, sums,
                            accesses)
        return int(end)

    def cuts(self, pos: int) -> Tuple[List[Tuple[int, int]], int]:
        """The pieces the fast path would parse, as (start, end) pairs, and where
        the rest begins: from the last piece on, the '}' found may be past the
        array, and the one-process loop reads it."""
        text = self.text
        pieces: List[Tuple[int, int]] = []
        while True:
            cut = text.find("}", pos + _CHUNK_CHARS)
            if cut < 0:
                return pieces, pos
            after = self.ws(cut + 1)
            if not text.startswith(",", after):
                return pieces, pos
            pieces.append((pos, cut + 1))
            pos = self.ws(after + 1)

    def stream_in_two(self, pos: int) -> Optional[int]:
        """The pieces before the last, parsed half here and half in a forked
        process, fed in order; None if anything at all went wrong (a piece that
        does not parse, a bad program point, a repeat across the halves, no
        fork), and the caller starts over in one process."""
        pieces, rest = self.cuts(pos)
        if len(pieces) < PARALLEL_MIN_PIECES:
            return None
        builder = self.builder
        assert builder is not None
        half = len(pieces) // 2
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=self._parse_pieces_for, args=(pieces[half:], sender),
                                daemon=True)
        try:
            child.start()
        except OSError:
            return None
        sender.close()
        try:
            self.parse_pieces(builder, pieces[:half])
            outcome, part = receiver.recv()
            if outcome != "ok" or not builder.absorb(part):
                return None
        except (DhatFileError, ValueError, RecursionError, EOFError, OSError):
            return None
        finally:
            receiver.close()
            if child.is_alive():
                child.terminate()
            child.join()
        return rest

    def parse_pieces(self, builder: "_TableBuilder", pieces: Sequence[Tuple[int, int]]) -> None:
        text, decode = self.text, self.decoder.decode
        for start, end in pieces:
            piece = text[start:end]
            if not builder.feed_text(piece):
                source = "[" + piece + "]"
                builder.feed(decode(source), source)

    def _parse_pieces_for(self, pieces: Sequence[Tuple[int, int]], sender: Any) -> None:
        """In the forked process: parse, and send the arrays back (or "failed")."""
        assert self.builder is not None
        builder = _TableBuilder(self.name, self.builder.bklt, self.builder.bkacc)
        try:
            self.parse_pieces(builder, pieces)
            sender.send(("ok", builder.part()))
        except BaseException:  # the parent starts over and says what is wrong
            sender.send(("failed", None))
        sender.close()

    def stream_elements(self, pos: int) -> int:
        """Feeds the elements of the pps array from `pos` on one at a time (in
        batches), up to its ']'.  Those before a syntax error are fed before it
        is told: the first problem in the file's order is the one told, wherever
        the reading by chunks began."""
        text = self.text
        assert self.builder is not None
        batch: List[Any] = []
        while True:
            try:
                value, pos = self.value(pos)
            except (DhatFileError, RecursionError):
                self.builder.feed(batch)
                raise
            batch.append(value)
            if len(batch) == 4096:
                self.builder.feed(batch)
                batch = []
            pos = self.ws(pos)
            if text.startswith(",", pos):
                pos = self.ws(pos + 1)
            elif text.startswith("]", pos):
                self.builder.feed(batch)
                return pos + 1
            else:
                self.builder.feed(batch)
                self.syntax_error("Expecting ',' delimiter", pos)


class _Checker:
    """Checks the top-level fields and finishes the table."""

    def __init__(self, parser: _Parser, doc: Dict[str, Any]) -> None:
        self.parser = parser
        self.name = parser.name
        self.doc = doc

    def fail(self, problem: str) -> NoReturn:
        _fail(self.name, problem)

    def field(self, key: str, kind: str, why: str = "", required: bool = True) -> Any:
        """Top-level field `key`, checked to be of `kind`: "string", "boolean",
        "integer" (0 to 2**64-1) or "array"."""
        if key not in self.doc:
            if not required:
                return None
            self.fail(f"missing field '{key}'{why}")
        value = self.doc[key]
        if value is _STREAMED:
            return value
        checks: Dict[str, Callable[[Any], bool]] = {
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "integer": _is_figure,
            "array": lambda v: isinstance(v, list),
        }
        if not checks[kind](value):
            article = "an" if kind[0] in "ai" else "a"
            bound = " from 0 to 2**64-1" if kind == "integer" else ""
            self.fail(f"field '{key}' is {_describe(value)}, expected {article} {kind}{bound}")
        return value

    def table(self) -> DhatTable:
        doc = self.doc
        if "dhatFileVersion" not in doc:
            self.fail("not a DHAT file (no 'dhatFileVersion' field)")
        version = doc["dhatFileVersion"]
        if type(version) is not int or version != FILE_VERSION:
            self.fail(f"DHAT file version {_describe(version)}; dhatc reads version "
                      f"{FILE_VERSION}, the one Valgrind, the dhat crate and dhatc write")
        mode = self.field("mode", "string")
        verb = self.field("verb", "string")
        bklt = self.field("bklt", "boolean")
        bkacc = self.field("bkacc", "boolean")
        units = [self.field(key, "string", required=False) for key in ("bu", "bsu", "bksu")]
        tu = self.field("tu", "string")
        mtu = self.field("Mtu", "string")
        with_bklt = " (required when 'bklt' is true)"
        tuth = self.field("tuth", "integer", with_bklt) if bklt else None
        cmd = self.field("cmd", "string")
        pid = self.field("pid", "integer")
        tg = self.field("tg", "integer", with_bklt) if bklt else None
        te = self.field("te", "integer")
        pps = self.field("pps", "array")
        ftbl = self.field("ftbl", "array")
        if not ftbl:
            self.fail("'ftbl' is empty; its entry 0 must be \"[root]\"")
        if set(map(type, ftbl)) != {str}:
            index = next(i for i, f in enumerate(ftbl) if not isinstance(f, str))
            self.fail(f"ftbl[{index:,}] is {_describe(ftbl[index])}, expected a string")
        builder = self.parser.builder
        if pps is not _STREAMED:  # read whole: the header came after it
            builder = _TableBuilder(self.name, bklt, bkacc)
            for start in range(0, len(pps), 4096):
                builder.feed(pps[start:start + 4096])
            del pps, self.doc["pps"]
        assert builder is not None
        header = DhatHeader(
            path=self.name, mode=mode, verb=verb, block_lifetimes=bklt, block_accesses=bkacc,
            byte_unit=units[0] if units[0] is not None else "byte",
            bytes_unit=units[1] if units[1] is not None else "bytes",
            blocks_unit=units[2] if units[2] is not None else "blocks",
            time_unit=tu, time_unit_million=mtu, short_lived_threshold=tuth,
            cmd=cmd, pid=pid, time_of_peak=tg, time_of_end=te,
        )
        return builder.finish(header, ftbl)


def _location_hashes(fss: List[List[int]]) -> "set[int]":
    """The hash of each program point's location: of its frame indices written as
    dhatc writes them, "3,1,4" (a piece in dhatc's layout has that text already)."""
    return set(map(hash, map(",".join, map(map, itertools.repeat(str), fss))))


class _TableBuilder:
    """Checks program points a chunk at a time and keeps them in flat arrays.

    A chunk is checked by a few C-level passes over all of it; only when one
    of them finds something wrong does a Python loop look for the first bad
    program point, to say what is wrong with it.  Frame indices are checked
    against the frame table at the end (``ftbl`` usually comes after ``pps``).
    Repeats are found by the hash of each PP's frame indices written as text
    (the same in a process and in the processes it forks), confirmed by
    comparing the indices themselves.
    """

    def __init__(self, name: str, bklt: bool, bkacc: bool) -> None:
        self.name = name
        self.bklt, self.bkacc = bklt, bkacc
        self.keys = tuple(_KEY_OF[f] for f in recorded_figures(bklt, bkacc))
        self.figures_of = operator.itemgetter(*self.keys)
        #: A program point's figures in dhatc's layout, their digits left out.
        self.template = "{" + ",".join(f'"{key}":' for key in self.keys)
        self.decoder = _decoder()
        self.n_keys = len(self.keys) + 1  # and fs
        self.count = 0
        self.sums = [0] * len(self.keys)  # of each figure, over the PPs kept
        self.figures: "array[int]" = array("Q")
        self.fs: "array[int]" = array("I")
        self.offsets: "array[int]" = array("Q", [0])
        self.max_index = 0
        self.hashes: set = set()  # type: ignore[type-arg]
        self.accesses: Dict[int, List[int]] = {}

    def fail(self, problem: str) -> NoReturn:
        _fail(self.name, problem)

    def feed(self, chunk: List[Any], source: Optional[str] = None) -> None:
        """Checks and keeps the program points of `chunk`; `source`, the JSON text
        they were parsed from, when there is one."""
        if not chunk:
            return
        # The typed arrays refuse negatives, numbers past their range, floats,
        # strings, null, arrays and objects; booleans they take for 1 and 0, so
        # types are checked too, unless the text has neither a "u" nor an "a"
        # (no "true", no "false"; no key of a figure or of fs has either).
        check_types = source is None or "u" in source or "a" in source
        try:
            figures = itertools.chain.from_iterable(map(self.figures_of, chunk))
            if check_types:
                figures = list(figures)  # type: ignore[assignment]  # looked at twice
            packed = array("Q", figures)
            fss = list(map(operator.itemgetter("fs"), chunk))
        except (KeyError, TypeError, OverflowError):
            self.find_bad(chunk)
        if set(map(type, fss)) != {list} or (check_types and set(map(type, figures)) != _INT):
            self.find_bad(chunk)
        indices = list(itertools.chain.from_iterable(fss))
        try:
            packed_indices = array("I", indices)
        except (TypeError, OverflowError):
            self.find_bad(chunk)
        if indices:
            if min(indices) < 1 or (check_types and set(map(type, indices)) != _INT):
                self.find_bad(chunk)
            highest = max(indices)
            if highest > self.max_index:
                self.max_index = highest
        if set(map(len, chunk)) != {self.n_keys}:  # more keys than needed: acc?
            for i, pp in enumerate(chunk):
                if "acc" in pp:
                    try:
                        counts = self.check_accesses(self.count + i, pp["acc"])
                    except DhatFileError:
                        self.check_repeats(chunk[:i])  # a repeat before it comes first
                        raise
                    self.accesses[self.count + i] = counts
        ends = list(itertools.accumulate(map(len, fss)))
        hashes = _location_hashes(fss)
        if len(hashes) != len(fss) or not self.hashes.isdisjoint(hashes):
            self.find_repeat(fss)
        self.keep(packed, packed_indices, ends, hashes)

    def keep(self, figures: "array[int]", indices: "array[int]", ends: List[int],
             hashes: "set[int]", values: Optional[List[int]] = None) -> None:
        """Takes checked program points: their figures (`values`: the same as a
        list, if there is one), frame indices, where the indices of each end
        (counted from the first of them), and the hashes of their locations."""
        width = len(self.sums)
        source: Sequence[int] = figures if values is None else values
        self.sums = [total + sum(source[k::width]) for k, total in enumerate(self.sums)]
        self.hashes |= hashes
        self.figures.extend(figures)
        self.fs.extend(indices)
        base = self.offsets[-1]
        self.offsets.extend(map(operator.add, ends, itertools.repeat(base)) if base else ends)
        self.count += len(ends)

    def keep_arrays(self, count: int, figures: bytearray, indices: bytearray,
                    offsets: bytearray, hashes: "set[int]", max_index: int,
                    sums: List[int], accesses: Dict[int, List[int]]) -> None:
        """Takes `count` checked program points as dhatc._ppscan.scan gives them:
        the machine bytes of their figures, frame indices and offsets (the
        offsets counted from the start of this builder's indices), and the
        decoded access counts of those that have them (by PP, from 0)."""
        if accesses:
            self.accesses.update((self.count + i, counts) for i, counts in accesses.items())
        self.figures.frombytes(figures)
        self.fs.frombytes(indices)
        self.offsets.frombytes(offsets)
        self.sums = list(map(operator.add, self.sums, sums))
        if self.hashes:
            self.hashes |= hashes
        else:
            self.hashes = hashes
        self.max_index = max(self.max_index, max_index)
        self.count += count

    def feed_text(self, piece: str) -> bool:
        """Checks and keeps the program points of `piece`, the text of some elements
        of the pps array, if it is in dhatc's own layout (what dhatc writes); False
        (and nothing kept) if it is not, or if anything in it is wrong: then the
        caller parses it as JSON, and feed() says what.

        Instead of a dict per program point, two flat JSON arrays: every figure
        of the piece, every frame index.  The piece is cut at each ',"fs":[' and
        at each ']},' + newline: the pieces between must be, in turn, a program
        point's figures in the layout (checked for the whole piece at once: its
        characters other than digits, where its numbers start) and its frame
        indices (integers: one JSON array of them all, counted by commas), and
        put together with the cuts, they must give the piece back."""
        if not piece.isascii():
            return False
        parts = piece.replace(_PP_END, _FS_START).split(_FS_START)
        n = len(parts) // 2
        last = parts[-1]
        if not n or len(parts) != 2 * n or not last.endswith("]}"):
            return False
        parts[-1] = last[:-2]
        figure_parts, index_parts = parts[0::2], parts[1::2]
        joined: List[str] = [_FS_START] * (4 * n - 1)
        joined[0::4] = figure_parts
        joined[2::4] = index_parts
        joined[3::4] = [_PP_END] * (n - 1)
        if "".join(joined) + "]}" != piece:
            return False
        figures_text = ",".join(figure_parts)
        width = len(self.keys)
        starts = figures_text.translate(_NUMBER_STARTS)
        if (figures_text.translate(_WITHOUT_DIGITS) != ",".join(itertools.repeat(self.template, n))
                or not figures_text.startswith("{") or "x0" in starts
                or starts.count(":0") != width * n):
            return False
        indices_text = ",".join(index_parts)
        # No true, false or null; no white space: each PP's text is its indices' one way.
        if any(map(operator.contains, itertools.repeat(indices_text), "ua \n\r\t")):
            return False
        decode = self.decoder.decode
        try:
            values = decode("[" + figures_text.translate(_NUMBERS_ONLY) + "]")
            figures = array("Q", values)
            indices = decode("[" + indices_text + "]")
            packed_indices = array("I", indices)
        except (ValueError, TypeError, OverflowError):
            return False
        # Where each PP's indices end: one more than its commas, counted up.
        ends = list(map(operator.add, itertools.accumulate(
            map(str.count, index_parts, itertools.repeat(","))), itertools.count(1)))
        if len(figures) != width * n or ends[-1] != len(indices):
            return False
        if b"\0\0\0\0" in packed_indices.tobytes() and min(indices) < 1:
            return False
        hashes = set(map(hash, index_parts))
        if len(hashes) != n or not self.hashes.isdisjoint(hashes):
            return False
        highest = max(indices)
        if highest > self.max_index:
            self.max_index = highest
        self.keep(figures, packed_indices, ends, hashes, values)
        return True

    def part(self) -> Tuple[Any, ...]:
        """What another builder needs to take these PPs after its own."""
        return (self.count, self.figures, self.fs, self.offsets, self.max_index, self.hashes,
                self.accesses, self.sums)

    def absorb(self, part: Tuple[Any, ...]) -> bool:
        """Takes the PPs of another builder's part after its own; False (and nothing
        taken) if one of them repeats a location of these (then the caller reads
        the file again in one process, to say which)."""
        count, figures, fs, offsets, max_index, hashes, accesses, sums = part
        if not self.hashes.isdisjoint(hashes):
            return False
        base = len(self.fs)
        self.figures.extend(figures)
        self.fs.extend(fs)
        self.offsets.extend(map(operator.add, itertools.islice(offsets, 1, None),
                                itertools.repeat(base)))
        self.max_index = max(self.max_index, max_index)
        self.hashes |= hashes
        self.accesses.update((self.count + i, counts) for i, counts in accesses.items())
        self.sums = list(map(operator.add, self.sums, sums))
        self.count += count
        return True

    def find_bad(self, chunk: List[Any]) -> NoReturn:
        """Says what is wrong with the first program point of `chunk` that is wrong
        (its figures, its fs, its acc), or that one before it repeats a location:
        the first problem in the file's order, wherever the chunks are cut (and
        wherever the C scanner stopped)."""
        for i, pp in enumerate(chunk):
            try:
                self.check_pp(self.count + i, pp)
                if "acc" in pp:
                    self.check_accesses(self.count + i, pp["acc"])
            except DhatFileError:
                self.check_repeats(chunk[:i])
                raise
        raise AssertionError("a chunk failed a check that none of its PPs fails")

    def check_repeats(self, pps: List[Any]) -> None:
        """Fails if one of `pps` (checked ones, the next after those kept) has the
        frames of one before it."""
        fss = list(map(operator.itemgetter("fs"), pps))
        hashes = _location_hashes(fss)
        if len(hashes) != len(fss) or not self.hashes.isdisjoint(hashes):
            self.find_repeat(fss)

    def check_pp(self, i: int, pp: Any, n_frames: Optional[int] = None) -> None:
        where = f"pps[{i:,}]"
        if not isinstance(pp, dict):
            self.fail(f"{where} is {_describe(pp)}, expected an object")
        for key in (*self.keys, "fs"):
            if key not in pp:
                why = (" (required when 'bklt' is true)" if key in ("tl", "mb", "mbk", "gb", "gbk",
                                                                    "eb", "ebk") else
                       " (required when 'bkacc' is true)" if key in ("rb", "wb") else "")
                self.fail(f"{where} has no field '{key}'{why}")
        for key in self.keys:
            if not _is_figure(pp[key]):
                self.fail(f"{where}: field '{key}' is {_describe(pp[key])}, "
                          "expected an integer from 0 to 2**64-1")
        fs = pp["fs"]
        if not isinstance(fs, list):
            self.fail(f"{where}: field 'fs' is {_describe(fs)}, expected an array of "
                      "indices into 'ftbl'")
        limit = _MAX_FRAME_INDEX if n_frames is None else n_frames - 1
        for j, index in enumerate(fs):
            if type(index) is not int or not 1 <= index <= limit:
                bounds = f" (1 to {n_frames - 1:,}; 0 is the root)" if n_frames else \
                    " (0 is the root, not a frame)" if index == 0 else ""
                self.fail(f"{where}: fs[{j}] is {_describe(index)}, not an index into "
                          f"'ftbl'{bounds}")

    def check_accesses(self, i: int, acc: Any) -> List[int]:
        """Valgrind's `acc` decoded as the viewer decodes it: a count per byte of
        the blocks, 65535 meaning "that or more"; a negative entry repeats the
        count after it."""
        where = f"pps[{i:,}]: field 'acc'"
        if not isinstance(acc, list):
            self.fail(f"{where} is {_describe(acc)}, expected an array of integers")
        counts: List[int] = []
        repeat = 0
        for j, value in enumerate(acc):
            if type(value) is not int:
                self.fail(f"{where}: entry {j} is {_describe(value)}, expected an integer")
            if value < 0 and not repeat:
                repeat = -value  # a repeat count; the count to repeat follows
                continue
            if not 0 <= value <= ACCESS_LATCH:
                self.fail(f"{where}: entry {j} is {value}, expected an access count "
                          f"from 0 to {ACCESS_LATCH}")
            if len(counts) + max(repeat, 1) > MAX_ACCESS_COUNTS:
                self.fail(f"{where} holds more than {MAX_ACCESS_COUNTS:,} counts, one per "
                          "byte of a block (Valgrind records them for small blocks only)")
            counts.extend([value] * max(repeat, 1))
            repeat = 0
        if repeat:
            self.fail(f"{where} ends with a repeat count and no count to repeat")
        return counts

    def stored(self) -> "Dict[Tuple[int, ...], int]":
        """Index tuple -> first PP with it, for the PPs stored so far (slow: only
        when a hash repeats)."""
        first: Dict[Tuple[int, ...], int] = {}
        fs, offsets = self.fs, self.offsets
        for i in range(self.count):
            first.setdefault(tuple(fs[offsets[i]:offsets[i + 1]]), i)
        return first

    def find_repeat(self, fss: List[List[int]]) -> None:
        """A hash repeated: a repeated location, or (rarely) two tuples sharing a hash."""
        first = self.stored()
        for i, fs in enumerate(fss):
            earlier = first.setdefault(tuple(fs), self.count + i)
            if earlier != self.count + i:
                self.repeated(self.count + i, earlier)

    def repeated(self, later: int, earlier: int) -> NoReturn:
        self.fail(f"pps[{later:,}] has the same frames as pps[{earlier:,}] (a repeated "
                  "location, which DHAT's viewer refuses too)")

    def finish(self, header: DhatHeader, ftbl: List[str]) -> DhatTable:
        n_frames = len(ftbl)
        if self.max_index >= n_frames:
            position = next(k for k, index in enumerate(self.fs) if index >= n_frames)
            pp = bisect.bisect_right(self.offsets, position) - 1
            j = position - self.offsets[pp]
            self.fail(f"pps[{pp:,}]: fs[{j}] is {self.fs[position]:,}, not an index into "
                      f"'ftbl' (1 to {n_frames - 1:,}; 0 is the root)")
        if len(set(ftbl)) != n_frames:
            self.repeats_by_string(ftbl)
        self.hashes = set()
        return DhatTable(header, ftbl, self.figures, self.fs, self.offsets, self.accesses,
                         self.sums)

    def repeats_by_string(self, ftbl: List[str]) -> None:
        """The frame table lists a string twice: PPs with different indices may
        still have the same frames."""
        canonical: Dict[str, int] = {}
        remap = [canonical.setdefault(frame, i) for i, frame in enumerate(ftbl)]
        fs, offsets = self.fs, self.offsets
        first: Dict[Tuple[int, ...], int] = {}
        for i in range(self.count):
            key = tuple(remap[k] for k in fs[offsets[i]:offsets[i + 1]])
            earlier = first.setdefault(key, i)
            if earlier != i:
                self.repeated(i, earlier)
