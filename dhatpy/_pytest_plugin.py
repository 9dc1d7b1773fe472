"""dhatc's pytest plugin: heap limits per test, exact heap figures inside tests,
and a session summary of the tests that allocate most.

Loaded automatically when dhatc is installed (entry point ``pytest11``; turn it
off with ``-p no:dhatc``).  It does nothing to a test unless asked to:

* ``@pytest.mark.limit_heap(max_bytes="10 MiB", curr_blocks=0, ...)`` bounds
  the test's heap use.  Each of ``total_blocks``, ``total_bytes``,
  ``max_blocks``, ``max_bytes``, ``curr_blocks``, ``curr_bytes`` is an upper
  bound (the figures of :class:`dhatc.HeapStats`); byte figures also take
  strings such as ``"10 MiB"`` or ``"1.5 KB"`` (see :func:`parse_size`).
  ``curr_blocks=0`` means "frees everything it allocates".  A test over a
  limit fails with a message naming each exceeded figure, the top program
  points for it, and a DHAT file.
* The ``dhatc_heap`` fixture runs the test under a testing-mode heap profiler,
  so the test can call :meth:`dhatc.HeapStats.get` and assert exact numbers
  (with ``assert`` or :func:`dhatc.assert_eq`).  Its value is that
  :class:`dhatc.Profiler`.
* ``--dhatc-profile-all`` profiles every test and prints the tests that
  allocate most at the end of the session (``--dhatc-top``, ``--dhatc-sort``).
* ``--dhatc-limit "max_bytes=100 MiB"`` (or the ``dhatc_limit`` ini option)
  gives every test default limits; a marker overrides them figure by figure.
* ``@pytest.mark.no_heap_profile`` keeps a test out of all of this (needed by
  tests that start a dhatc.Profiler themselves: one runs at a time).

What is measured is the call of the test function and nothing else: the
profiler starts just before the function's first line runs and stops as soon
as it returns or raises.  Fixture setup and teardown and pytest's own work are
outside.  By default only blocks allocated by the test's thread count
(``--dhatc-all-threads`` counts every thread's).  Every profiled test that fails
leaves a DHAT file named after its node id in ``--dhatc-dir`` (default
``.dhatc`` in the rootdir), to open in Valgrind's DHAT viewer.  In the name,
``::`` becomes ``__``; a node id with characters a file name should not have
(such as ``/`` or a space, which become ``_``) also gets a short hash of
itself at the end, so two tests never share a file
(``tests_test_a.py__test[x_y]-1a2b3c4d.json``).
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import hashlib
import inspect
import keyword
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple

import pytest

from . import _dhat_file
from ._dhat_file import Profile, ProgramPoint
from ._profiler import Profiler
from ._testing import give_spare_frames

__all__ = ["LIMIT_FIELDS", "parse_size"]

#: The figures a limit can bound, in the order messages list them.
LIMIT_FIELDS = (
    "total_blocks",
    "total_bytes",
    "max_blocks",
    "max_bytes",
    "curr_blocks",
    "curr_bytes",
)
_BYTE_FIELDS = frozenset(f for f in LIMIT_FIELDS if f.endswith("_bytes"))

# What each figure means, which ProgramPoint fields break it down, and the
# viewer's sort metric that shows it best (the crate's advice).
_MEANING = {
    "total": "allocated in total",
    "max": "live at the peak (t-gmax)",
    "curr": "still live when the test returned (t-end)",
}
_PP_FIELDS = {
    "total": ("total_bytes", "total_blocks"),
    "max": ("gmax_bytes", "gmax_blocks"),
    "curr": ("end_bytes", "end_blocks"),
}
_VIEWER_SORT = {
    "total_blocks": "Total (blocks)",
    "total_bytes": "Total (bytes)",
    "max_blocks": "At t-gmax (bytes)",
    "max_bytes": "At t-gmax (bytes)",
    "curr_blocks": "At t-end (bytes)",
    "curr_bytes": "At t-end (bytes)",
}

#: Program points listed per exceeded figure in a failure message.
TOP_PROGRAM_POINTS = 5
# Python frames kept per stack: 10 of the test's own, plus the trampoline's.
_TRIM_BACKTRACES = 11

MARKER = "limit_heap"
NO_PROFILE_MARKER = "no_heap_profile"
FIXTURE = "dhatc_heap"

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


class LimitError(ValueError):
    """A limit that cannot be understood (unknown figure, bad value)."""


def parse_size(value: object, field: str = "size") -> int:
    """Bytes from an int or a string such as ``"10 MiB"``, ``"1.5 KB"``, ``"512"``.

    Units: B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB (powers of
    1024), case-insensitive.  Raises LimitError for anything else.

    The number is read in decimal, exactly (``"8.2 MB"`` is 8,200,000 bytes).
    A size that is not a whole number of bytes (``"0.1 KiB"``, 102.4) is
    rounded down: figures are whole bytes, and ``n <= 102.4`` exactly when
    ``n <= 102``, so the limit means the same.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise LimitError(f"{field} must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise LimitError(
                f"{field}={value!r} is not a size; write an int or a string like "
                "\"10 MiB\", \"1.5 KB\" or \"512 B\" (KB = 1000 bytes, KiB = 1024)"
            )
        number = match.group(1)
        with decimal.localcontext() as context:
            context.prec = len(number) + 13  # digits enough for number * 1024**4
            context.traps[decimal.Inexact] = True
            size = decimal.Decimal(number) * _SIZE_UNITS[unit]
        return int(size)  # rounds down (towards zero), see above
    raise LimitError(
        f"{field} must be an int or a size string like \"10 MiB\", not {type(value).__name__}"
    )


def _parse_limits(values: Mapping[str, object], where: str) -> Dict[str, int]:
    """Checks and converts one set of limits (a marker's keywords, an option)."""
    limits: Dict[str, int] = {}
    for name, value in values.items():
        if name not in LIMIT_FIELDS:
            raise LimitError(
                f"{where}: unknown figure {name!r}; use any of {', '.join(LIMIT_FIELDS)}"
            )
        if name in _BYTE_FIELDS:
            try:
                limits[name] = parse_size(value, name)
            except LimitError as e:
                raise LimitError(f"{where}: {e}") from None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[name] = value
        else:
            raise LimitError(f"{where}: {name} must be an int >= 0 (a number of blocks), got {value!r}")
    return limits


def _parse_limit_option(text: str, where: str) -> Dict[str, int]:
    """``"max_bytes=10 MiB, curr_blocks=0"`` -> limits."""
    values: Dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise LimitError(f"{where}: {part!r} is not FIGURE=VALUE, e.g. \"max_bytes=10 MiB\"")
        name, value = name.strip(), value.strip()
        values[name] = value if name in _BYTE_FIELDS else _int_or_text(value)
    return _parse_limits(values, where)


def _int_or_text(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        return text


# ---- the per-test state -----------------------------------------------------


@dataclasses.dataclass
class _HeapRun:
    """One profiled test call."""

    profiler: Profiler
    path: Path  # where the DHAT file goes if the test fails
    limits: Dict[str, int]
    explicit: bool  # asked for by a marker, the fixture or a default limit
    called: bool = False  # the zero-allocation call path ran
    profile: Optional[Profile] = None
    saved: bool = False  # the DHAT file was written to `path`
    save_error: Optional[str] = None  # why it could not be
    exceeded: List[str] = dataclasses.field(default_factory=list)


_RUN = pytest.StashKey[Optional[_HeapRun]]()


@dataclasses.dataclass
class _Settings:
    directory: Path
    all_threads: bool
    profile_all: bool
    top: int
    sort: str
    default_limits: Dict[str, int]


_SETTINGS = pytest.StashKey[_Settings]()


# ---- options and markers ----------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dhatc", "dhatc heap profiling (limit_heap marker, dhatc_heap fixture)")
    group.addoption(
        "--dhatc-dir",
        metavar="DIR",
        default=None,
        help="where the DHAT files of failing profiled tests go, one per test named "
        "after its node id (default: .dhatc in the rootdir; ini: dhatc_dir)",
    )
    group.addoption(
        "--dhatc-all-threads",
        action="store_true",
        default=None,
        help="count blocks allocated by every thread during a profiled test, not only "
        "the test's own thread (ini: dhatc_all_threads)",
    )
    group.addoption(
        "--dhatc-profile-all",
        action="store_true",
        default=False,
        help="profile every test and print the tests that allocate most at the end",
    )
    group.addoption(
        "--dhatc-top",
        metavar="N",
        type=int,
        default=10,
        help="how many tests --dhatc-profile-all lists (default: 10)",
    )
    group.addoption(
        "--dhatc-sort",
        metavar="FIGURE",
        default="total_bytes",
        choices=LIMIT_FIELDS,
        help="the figure --dhatc-profile-all sorts by (default: total_bytes)",
    )
    group.addoption(
        "--dhatc-limit",
        metavar="LIMITS",
        default=None,
        help="default heap limits for every test, e.g. \"max_bytes=100 MiB, curr_blocks=0\"; "
        f"a @pytest.mark.{MARKER} overrides them figure by figure (ini: dhatc_limit)",
    )
    parser.addini("dhatc_dir", "default for --dhatc-dir (relative to the rootdir)", default=None)
    parser.addini("dhatc_all_threads", "default for --dhatc-all-threads", type="bool", default=False)
    parser.addini("dhatc_limit", "default for --dhatc-limit", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(total_blocks=, total_bytes=, max_blocks=, max_bytes=, curr_blocks=, "
        "curr_bytes=): fail the test if its call exceeds any of these heap figures (upper "
        "bounds; byte figures also take strings like \"10 MiB\"; curr_blocks=0: frees "
        "everything it allocates).  dhatc plugin.",
    )
    config.addinivalue_line(
        "markers",
        f"{NO_PROFILE_MARKER}: never heap-profile this test (e.g. it starts its own "
        "dhatc.Profiler).  dhatc plugin.",
    )
    limit_text = config.getoption("--dhatc-limit")
    where = "--dhatc-limit"
    if limit_text is None:
        limit_text, where = config.getini("dhatc_limit"), "the dhatc_limit ini option"
    try:
        default_limits = _parse_limit_option(limit_text or "", where)
    except LimitError as e:
        raise pytest.UsageError(f"dhatc: {e}") from None
    all_threads = config.getoption("--dhatc-all-threads")
    if all_threads is None:
        all_threads = config.getini("dhatc_all_threads")
    settings = config.stash[_SETTINGS] = _Settings(
        directory=_directory(config),
        all_threads=bool(all_threads),
        profile_all=config.getoption("--dhatc-profile-all"),
        top=config.getoption("--dhatc-top"),
        sort=config.getoption("--dhatc-sort"),
        default_limits=default_limits,
    )
    if settings.profile_all:
        config.pluginmanager.register(_SessionSummary(settings), "dhatc-session-summary")


def _directory(config: pytest.Config) -> Path:
    option: Optional[str] = config.getoption("--dhatc-dir")
    if option:
        return (config.invocation_params.dir / option).resolve()
    ini: Optional[str] = config.getini("dhatc_dir")
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / ini).resolve() if ini else (config.rootpath / ".dhatc").resolve()


# ---- which tests are profiled, with which limits ----------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Decides whether the test is profiled and checks its limits, before any
    fixture runs (the dhatc_heap fixture needs the profiler)."""
    item.stash[_RUN] = None
    settings = item.config.stash[_SETTINGS]
    markers = _limit_markers(item)
    wants_fixture = FIXTURE in getattr(item, "fixturenames", ())
    if item.get_closest_marker(NO_PROFILE_MARKER) is not None:
        if markers or wants_fixture:
            pytest.fail(
                f"dhatc: {item.nodeid} is marked {NO_PROFILE_MARKER} but also uses "
                f"{'@pytest.mark.' + MARKER if markers else 'the ' + FIXTURE + ' fixture'}; "
                "remove one of them",
                pytrace=False,
            )
        return
    explicit = bool(markers) or wants_fixture or bool(settings.default_limits)
    if not explicit and not settings.profile_all:
        return
    problem: Optional[str] = None
    try:
        limits = _limits_of(markers, settings.default_limits)
    except LimitError as e:
        problem = str(e)
    if problem is not None:  # (outside the except: no chained traceback)
        pytest.fail(f"dhatc: {item.nodeid}: {problem}", pytrace=False)
    profiler = Profiler(
        mode="heap",
        file_name=str(settings.directory / _file_name(item.nodeid)),
        testing=True,
        trim_backtraces=_TRIM_BACKTRACES,
        this_thread_only=not settings.all_threads,
    )
    item.stash[_RUN] = _HeapRun(
        profiler=profiler,
        path=Path(profiler.file_name),
        limits=limits,
        explicit=explicit,
    )


def _limit_markers(item: pytest.Item) -> List[pytest.Mark]:
    """The test's limit_heap markers, farthest first: module, class, function,
    then those of its parameter set (``pytest.param(..., marks=...)``), which
    pytest lists among the function's own but which are the most specific."""
    farthest_first: List[pytest.Mark] = []
    for node in item.listchain()[:-1]:
        farthest_first += [m for m in node.own_markers if m.name == MARKER]
    callspec = getattr(item, "callspec", None)
    param_marks = [m for m in getattr(callspec, "marks", ()) if m.name == MARKER]
    own = [m for m in item.own_markers if m.name == MARKER]
    farthest_first += [m for m in own if not any(m is p for p in param_marks)]
    farthest_first += [m for m in own if any(m is p for p in param_marks)]
    return farthest_first


def _limits_of(markers: List[pytest.Mark], defaults: Mapping[str, int]) -> Dict[str, int]:
    """The limits of a test: the defaults, then its markers from the farthest
    to the closest, each overriding the others figure by figure."""
    limits = dict(defaults)
    for marker in markers:
        if marker.args:
            raise LimitError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, e.g. "
                f"@pytest.mark.{MARKER}(max_bytes=\"10 MiB\", curr_blocks=0)"
            )
        if not marker.kwargs:
            raise LimitError(
                f"@pytest.mark.{MARKER} needs at least one limit, any of {', '.join(LIMIT_FIELDS)}"
            )
        limits.update(_parse_limits(marker.kwargs, f"@pytest.mark.{MARKER}"))
    return limits


@pytest.fixture
def dhatc_heap(request: pytest.FixtureRequest) -> Profiler:
    """Runs the test function under a testing-mode heap profiler; the value is
    that :class:`dhatc.Profiler`.

    Inside the test, :meth:`dhatc.HeapStats.get` gives the figures of the test
    so far, exactly: only the test function's own call is measured (not
    fixtures, not pytest), and by default only its own thread.  Assert on them
    with ``assert`` or with :func:`dhatc.assert_eq` (which, on failure, also
    saves the profile and prints the summary).  A failing test leaves a DHAT
    file in ``--dhatc-dir``.
    """
    run: Optional[_HeapRun] = request.node.stash.get(_RUN, None)
    if run is None:
        pytest.fail(
            f"dhatc: the {FIXTURE} fixture must be a parameter of the test function "
            "(it cannot be requested with request.getfixturevalue), and works only on "
            "test functions",
            pytrace=False,
        )
    # A failing dhatc.assert_* saves the profile there while the test runs.
    run.path.parent.mkdir(parents=True, exist_ok=True)
    return run.profiler


# ---- measuring exactly the test call ----------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, None]:
    """Swaps the test function for one that profiles exactly its call."""
    run = pyfuncitem.stash.get(_RUN, None)
    function = pyfuncitem.obj
    if run is None or inspect.iscoroutinefunction(function):
        yield
        return
    pyfuncitem.obj = _profiled(function, run, pyfuncitem.nodeid)
    try:
        yield
    finally:
        pyfuncitem.obj = function


def _profiled(function: Callable[..., Any], run: _HeapRun, nodeid: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def profiled(**kwargs: Any) -> Any:
        call = _zero_allocation_call(function, kwargs, run.profiler)
        _remove_stale_file(run.path)
        run.called = True
        try:
            result = call()
        finally:
            run.profiler.stop()  # (call() stops it; this covers a failed start)
            run.profile = _without_trampoline(run.profiler.profile)
            run.exceeded = _exceeded(run.profile, run.limits) if run.profile else []
        if run.exceeded:
            _save(run)
            pytest.fail(_limit_message(nodeid, run), pytrace=False)
        return result

    return profiled


# The code that calls the test: it starts the profiler, calls the function with
# constant keyword names (a CALL with kwnames: no dict, no tuple, so nothing is
# allocated between the start and the test's first line), and stops the
# profiler as soon as the function returns or raises.  Its frame is the root of
# every stack (the frame that started the profiler); _without_trampoline
# removes it again, so stacks end at the test function.
_TRAMPOLINE_FILE = "<dhatc pytest plugin>"
_TRAMPOLINE_FRAME_SUFFIX = f" ({_TRAMPOLINE_FILE}:"
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
    exec(compile(source, _TRAMPOLINE_FILE, "exec"), namespace)
    return namespace["make"]  # type: ignore[no-any-return]


def _zero_allocation_call(
    function: Callable[..., Any], kwargs: Dict[str, Any], profiler: Profiler
) -> Callable[[], Any]:
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


def _without_trampoline(profile: Optional[Profile]) -> Optional[Profile]:
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


# ---- limits and the failure message -----------------------------------------


def _exceeded(profile: Profile, limits: Mapping[str, int]) -> List[str]:
    return [f for f in LIMIT_FIELDS if f in limits and getattr(profile, f) > limits[f]]


def _figures(profile: Profile) -> Dict[str, int]:
    return {f: getattr(profile, f) for f in LIMIT_FIELDS}


def _amount(value: int, unit: str) -> str:
    if unit == "blocks":
        return f"{value:,} block" + ("" if value == 1 else "s")
    text = f"{value:,} byte" + ("" if value == 1 else "s")
    return f"{text} ({_human(value)})" if value >= 1024 else text


def _human(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} TiB"


def _limit_message(nodeid: str, run: _HeapRun) -> str:
    assert run.profile is not None
    lines = [f"dhatc: {nodeid} exceeded its heap limits:"]
    lines.extend(_describe_exceeded(run))
    lines.append(_saved_line(run))
    return "\n".join(lines)


def _describe_exceeded(run: _HeapRun) -> List[str]:
    assert run.profile is not None
    lines: List[str] = []
    for field in run.exceeded:
        kind, unit = field.split("_")
        actual = getattr(run.profile, field)
        lines.append(
            f"  {field}: {_amount(actual, unit)} {_MEANING[kind]}, "
            f"over the limit of {_amount(run.limits[field], unit)}"
        )
        top = _top_sites(run.profile, kind, unit)
        if top:
            lines.append("    top program points (innermost Python frame):")
            lines.extend(f"      {line}" for line in top)
    return lines


def _saved_line(run: _HeapRun) -> str:
    if run.save_error is not None:
        return f"  the DHAT file could not be written: {run.save_error}"
    if not run.saved:
        return "  (no DHAT file was written)"
    sorts = list(dict.fromkeys(_VIEWER_SORT[f] for f in run.exceeded))
    hint = f"; sort by {' / '.join(repr(s) for s in sorts)}" if sorts else ""
    return (
        f"  DHAT file: {run.path}\n"
        f"  (open it in Valgrind's DHAT viewer, dh_view.html{hint})"
    )


def _top_sites(profile: Profile, kind: str, unit: str) -> List[str]:
    """The program points with most of a figure, grouped by innermost Python frame."""
    bytes_field, blocks_field = _PP_FIELDS[kind]
    sites: Dict[str, List[int]] = {}
    for pp in profile.pps:
        b, k = getattr(pp, bytes_field), getattr(pp, blocks_field)
        if b == 0 and k == 0:
            continue
        site = sites.setdefault(_innermost_python_frame(pp.frames), [0, 0])
        site[0] += b
        site[1] += k
    by_blocks = unit == "blocks"
    ranked = sorted(
        sites.items(),
        key=lambda site: (site[1][1], site[1][0]) if by_blocks else (site[1][0], site[1][1]),
        reverse=True,
    )[:TOP_PROGRAM_POINTS]
    amounts = [
        f"{_amount(k, 'blocks')}, {b:,} bytes" if by_blocks else f"{b:,} bytes, {_amount(k, 'blocks')}"
        for _, (b, k) in ranked
    ]
    width = max((len(a) for a in amounts), default=0)
    return [f"{a.ljust(width)}  {where}" for a, (where, _) in zip(amounts, ranked)]


_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+|\?)\)$")


def _innermost_python_frame(frames: Tuple[str, ...]) -> str:
    """`name (file:line)` of the innermost Python frame, the file relative to the
    working directory when it is below it."""
    python = frames[1:]  # frames[0] is the allocator entry (PyObject_Malloc, ...)
    if not python:
        return f"[no Python frame] ({frames[0] if frames else '?'})"
    match = _FRAME_RE.match(python[0])
    if match is None:
        return python[0]
    file = match["file"]
    try:
        relative = os.path.relpath(file)
        if not relative.startswith(".."):
            file = relative
    except ValueError:
        pass
    return f"{match['name']} ({file}:{match['line']})"


# Characters a node id keeps in its file name; any other becomes "_".
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.\-\[\]=+,]")
# Where "::" -> "__" could make two node ids look alike ("a::_b", "a_::b").
_AMBIGUOUS_UNDERSCORES = re.compile(r"__|_::|::_")


def _file_name(nodeid: str) -> str:
    """A file name for a node id, a different one for each node id.

    '::' becomes '__' and other awkward characters (path separators, spaces,
    ...) become '_'.  When that could make two node ids give the same name
    (``test[a b]`` and ``test[a_b]``), and when a very long id is shortened,
    a hash of the node id goes at the end: then each test still has its own
    file, which its next run replaces or removes.
    """
    readable = nodeid.replace("::", "__")
    name = _UNSAFE_FILE_CHARS.sub("_", readable)
    unique = name == readable and not _AMBIGUOUS_UNDERSCORES.search(nodeid)
    if len(name) > 180:
        name, unique = name[:160], False
    if not unique:
        name += "-" + hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]
    return name + ".json"


def _remove_stale_file(path: Path) -> None:
    """A file left by an earlier failing run of this test would be misleading."""
    try:
        path.unlink()
    except OSError:
        pass


def _save(run: _HeapRun) -> None:
    """Writes the test's profile to `run.path`, once."""
    if run.saved or run.save_error is not None or run.profile is None:
        return
    try:
        run.path.parent.mkdir(parents=True, exist_ok=True)
        _dhat_file.save(run.profile, str(run.path))
        run.saved = True
    except OSError as e:
        run.save_error = str(e)


# ---- reports ----------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attaches the test's figures to its report; for a profiled test that
    failed, saves its DHAT file and adds a "dhatc heap profile" section."""
    outcome = yield
    if call.when != "call":
        return
    run = item.stash.get(_RUN, None)
    if run is None:
        return
    item.stash[_RUN] = None  # the profile goes with the report, not the item
    report: pytest.TestReport = outcome.get_result()
    if not run.called:
        if run.explicit and report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"dhatc: {item.nodeid} was not heap-profiled: only plain (not async) test "
                "functions can be, not unittest.TestCase methods or other kinds of items; "
                f"its {MARKER} limits were not checked"
            )
        return
    conflict = _profiler_conflict(call, run)
    if conflict is not None:
        report.sections.append(("dhatc heap profile", conflict))
        return
    if run.profile is None:
        return
    # Read by pytest_runtest_logreport, in this process or the xdist controller.
    report.dhatc_heap = _figures(run.profile)  # type: ignore[attr-defined]
    if not report.failed or _is_limit_failure(call):
        return  # the limit message already names the file
    # (A failed dhatc.assert_* saved the profile there already, with the
    # trampoline's frame: this rewrites it without.)
    _save(run)
    section: List[str] = []
    if run.exceeded:
        section += ["The test also exceeded its heap limits:", *_describe_exceeded(run)]
    section.append(_saved_line(run).lstrip())
    report.sections.append(("dhatc heap profile", "\n".join(section)))


def _profiler_conflict(call: pytest.CallInfo[None], run: _HeapRun) -> Optional[str]:
    """What to do when the test failed because two dhatc profilers met."""
    excinfo = call.excinfo
    if excinfo is None or not excinfo.errisinstance(RuntimeError):
        return None
    if "a profiler is already running" not in str(excinfo.value):
        return None
    if run.profile is None:  # the plugin's profiler could not start
        return (
            "The dhatc pytest plugin could not profile this test: another dhatc.Profiler "
            "was already running (only one runs at a time).  Stop it before the test, or "
            f"mark the test @pytest.mark.{NO_PROFILE_MARKER}."
        )
    return (
        "This test starts a dhatc.Profiler while the dhatc pytest plugin profiles it "
        "(only one runs at a time).  Mark it "
        f"@pytest.mark.{NO_PROFILE_MARKER} to keep the plugin away from it."
    )


def _is_limit_failure(call: pytest.CallInfo[None]) -> bool:
    excinfo = call.excinfo
    return (
        excinfo is not None
        and excinfo.errisinstance(pytest.fail.Exception)
        and str(excinfo.value).startswith("dhatc: ")
        and "exceeded its heap limits" in str(excinfo.value)
    )


class _SessionSummary:
    """Collects every profiled test's figures (from the reports, so that it
    works in the xdist controller too) and prints the tests that allocate most.
    Registered only with --dhatc-profile-all."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.results: List[Tuple[str, Dict[str, int]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        figures = getattr(report, "dhatc_heap", None)
        if report.when == "call" and isinstance(figures, dict):
            self.results.append((report.nodeid, figures))

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):  # an xdist worker: the controller prints
            return
        sort = self.settings.sort
        results = sorted(self.results, key=lambda r: r[1][sort], reverse=True)
        shown = results[: max(self.settings.top, 0)]
        if not results:
            terminalreporter.write_sep("=", "dhatc: no test was heap-profiled to the end")
            return
        terminalreporter.write_sep(
            "=", f"dhatc: {len(shown)} of {len(results)} profiled tests, most {sort} first"
        )
        order = ("total_bytes", "total_blocks", "max_bytes", "max_blocks", "curr_bytes", "curr_blocks")
        headers = [_COLUMN[f] for f in order]
        cells = [[f"{figures[f]:,}" for f in order] for _, figures in shown]
        widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
        terminalreporter.write_line("  ".join(h.rjust(w) for h, w in zip(headers, widths)) + "  test")
        for (nodeid, _), row in zip(shown, cells):
            terminalreporter.write_line(
                "  ".join(c.rjust(w) for c, w in zip(row, widths)) + f"  {nodeid}"
            )


_COLUMN = {
    "total_bytes": "total bytes",
    "total_blocks": "total blocks",
    "max_bytes": "peak bytes",
    "max_blocks": "peak blocks",
    "curr_bytes": "end bytes",
    "curr_blocks": "end blocks",
}
