"""dhatc's pytest plugin: heap limits per test, exact heap figures inside tests,
and a session summary of the tests that allocate most.

Loaded automatically when dhatc is installed (entry point ``pytest11``, module
:mod:`dhatc.pytest_plugin`; turn it off with ``-p no:dhatc``).  It does nothing
to a test unless asked to:

* ``@pytest.mark.limit_heap(max_bytes="10 MiB", curr_blocks=0, ...)`` bounds
  the test's heap use.  Each of ``total_blocks``, ``total_bytes``,
  ``max_blocks``, ``max_bytes``, ``curr_blocks``, ``curr_bytes`` is an upper
  bound (the figures of :class:`dhatc.HeapStats`); byte figures also take
  strings such as ``"10 MiB"`` or ``"1.5 KB"`` (see
  :func:`dhatc._pytest_limits.parse_size`).  ``curr_blocks=0`` means "frees
  everything it allocates".  A test over a limit fails with a message naming
  each exceeded figure, the top program points for it, and a DHAT file.
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
* ``limit_heap(..., repeat=N)`` runs the test body N times and checks the last
  run, so a cache filled by the first run is not a leak.
* ``--dhatc-save-baseline DIR`` writes every passing test's profile to DIR;
  ``--dhatc-baseline DIR`` fails a test that grew past it by more than
  ``--dhatc-max-increase`` percent (:mod:`._pytest_baseline`).

What is measured is the test's own call and nothing else: for a test
function, the profiler starts just before its first line runs and stops as
soon as it returns or raises; unittest.TestCase methods, async tests and
doctests are measured as :mod:`._pytest_kinds` says.  Fixture setup and
teardown and pytest's own work are outside.  By default only blocks allocated by the test's thread count
(``--dhatc-all-threads`` counts every thread's).  Every profiled test that fails
leaves a DHAT file named after its node id in ``--dhatc-dir`` (default
``.dhatc`` in the rootdir), to open in Valgrind's DHAT viewer.

The parts: this module (pytest's hooks, the options, the fixture),
:mod:`._pytest_limits` (figures, sizes, limits), :mod:`._pytest_run` (one
profiled test and its file), :mod:`._pytest_kinds` (the profiled call of each
kind of test), :mod:`._pytest_call` (the zero-allocation trampoline),
:mod:`._pytest_baseline` (baselines), :mod:`._pytest_sites` (naming where
blocks come from) and :mod:`._pytest_messages` (what the plugin says).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional, Tuple

import pytest

from ._engine import ProfilerAlreadyRunningError
from ._profiler import Profiler
from ._pytest_baseline import Baselines, directory_exists, parse_percent
from ._pytest_kinds import Kind, kind_of, measured_runtest, profiled_function
from ._pytest_limits import (
    LIMIT_FIELDS,
    MARKER,
    NO_PROFILE_MARKER,
    REPEAT,
    HeapLimitExceeded,
    LimitError,
    figures_of,
    limit_markers,
    limits_of,
    parse_limit_option,
)
from ._pytest_messages import (
    NOT_PROFILED_DOCTEST,
    baseline_lines,
    NOT_PROFILED_MARKED,
    failed_test_section,
    not_called_message,
    not_measurable_message,
    not_profiled_line,
    plugin_could_not_start,
    summary_table,
    summary_title,
    test_started_a_profiler,
)
from ._pytest_run import HeapRun, directory_problem, make_directory

__all__ = ["FIXTURE", "dhatc_heap"]

FIXTURE = "dhatc_heap"

_RUN = pytest.StashKey[Optional[HeapRun]]()
_KIND = pytest.StashKey[Kind]()
# Why a test was not profiled when profiling was asked for (see not_profiled_line).
_NOT_PROFILED = pytest.StashKey[Optional[str]]()


@dataclasses.dataclass
class _Settings:
    directory: Path
    all_threads: bool
    profile_all: bool
    top: int
    sort: str
    default_limits: Dict[str, int]
    baselines: Optional[Baselines] = None

    @property
    def profile_every_test(self) -> bool:
        """--dhatc-profile-all, or a baseline to compare with or to write."""
        return self.profile_all or self.baselines is not None


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
    group.addoption(
        "--dhatc-baseline",
        metavar="DIR",
        default=None,
        help="compare every test's heap figures with its profile in DIR (written by "
        "--dhatc-save-baseline) and fail a test that grew by more than --dhatc-max-increase",
    )
    group.addoption(
        "--dhatc-max-increase",
        metavar="PERCENT",
        default="0",
        help="how much a figure may grow over its baseline, in percent (default: 0, any "
        "growth fails)",
    )
    group.addoption(
        "--dhatc-save-baseline",
        metavar="DIR",
        default=None,
        help="write the profile of every test that passes to DIR, a DHAT file per test, "
        "for --dhatc-baseline (may be the same DIR: a test that grew keeps its old one)",
    )
    parser.addini("dhatc_dir", "default for --dhatc-dir (relative to the rootdir)", default=None)
    parser.addini("dhatc_all_threads", "default for --dhatc-all-threads", type="bool", default=False)
    parser.addini("dhatc_limit", "default for --dhatc-limit", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(total_blocks=, total_bytes=, max_blocks=, max_bytes=, curr_blocks=, "
        f"curr_bytes=, {REPEAT}=1): fail the test if its call exceeds any of these heap figures "
        "(upper bounds; byte figures also take strings like \"10 MiB\"; curr_blocks=0: frees "
        f"everything it allocates; {REPEAT}=N: run the body N times, check the last run).  "
        "dhatc plugin.",
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
        default_limits = parse_limit_option(limit_text or "", where)
    except LimitError as e:
        raise pytest.UsageError(f"dhatc: {e}") from None
    all_threads = config.getoption("--dhatc-all-threads")
    if all_threads is None:
        all_threads = config.getini("dhatc_all_threads")
    settings = config.stash[_SETTINGS] = _Settings(
        baselines=_baselines(config),
        directory=_directory(config),
        all_threads=bool(all_threads),
        profile_all=config.getoption("--dhatc-profile-all"),
        top=config.getoption("--dhatc-top"),
        sort=config.getoption("--dhatc-sort"),
        default_limits=default_limits,
    )
    if settings.profile_every_test or settings.default_limits:
        config.pluginmanager.register(_SessionSummary(settings), "dhatc-session-summary")


def _baselines(config: pytest.Config) -> Optional[Baselines]:
    """The baseline options, checked: a directory to compare with must exist,
    one to write to must be writable."""
    compare: Optional[str] = config.getoption("--dhatc-baseline")
    save: Optional[str] = config.getoption("--dhatc-save-baseline")
    if compare is None and save is None:
        return None
    here = config.invocation_params.dir
    compare_dir = (here / compare).resolve() if compare is not None else None
    save_dir = (here / save).resolve() if save is not None else None
    problem: Optional[str] = None
    unreadable = directory_exists(compare_dir) if compare_dir is not None else None
    unwritable = directory_problem(save_dir) if save_dir is not None else None
    if unreadable is not None:
        problem = f"--dhatc-baseline {compare}: {unreadable}"
    elif unwritable is not None:
        problem = f"--dhatc-save-baseline {save}: {unwritable}"
    text = config.getoption("--dhatc-max-increase")
    try:
        max_increase = parse_percent(text)
    except ValueError as e:
        problem = problem or f"--dhatc-max-increase: {e}"
    if problem is not None:
        raise pytest.UsageError(f"dhatc: {problem}")
    return Baselines(config.rootpath, compare_dir, save_dir, max_increase)


def _directory(config: pytest.Config) -> Path:
    """Where DHAT files go.  One the user named must be usable: a bad one is a
    usage error now rather than an error in every test that needs it."""
    option: Optional[str] = config.getoption("--dhatc-dir")
    ini: Optional[str] = config.getini("dhatc_dir")
    if option:
        directory = (config.invocation_params.dir / option).resolve()
        where = f"--dhatc-dir {option}"
    elif ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        directory = (base / ini).resolve()
        where = f"the dhatc_dir ini option ({ini})"
    else:  # the default, used only if a test fails or uses the fixture
        return (config.rootpath / ".dhatc").resolve()
    problem = directory_problem(directory)
    if problem is not None:
        raise pytest.UsageError(
            f"dhatc: {where}: {problem}; name a directory the DHAT files can be written to"
        )
    return directory


# ---- which tests are profiled, with which limits ----------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Decides whether the test is profiled and checks its limits, before any
    fixture runs (the dhatc_heap fixture needs the profiler)."""
    item.stash[_RUN] = None
    item.stash[_NOT_PROFILED] = None
    settings = item.config.stash[_SETTINGS]
    kind = item.stash[_KIND] = kind_of(item)
    asked_for_all = settings.profile_every_test or bool(settings.default_limits)
    markers = limit_markers(item)
    wants_fixture = FIXTURE in getattr(item, "fixturenames", ())
    if item.get_closest_marker(NO_PROFILE_MARKER) is not None:
        if markers or wants_fixture:
            pytest.fail(
                f"dhatc: {item.nodeid} is marked {NO_PROFILE_MARKER} but also uses "
                f"{'@pytest.mark.' + MARKER if markers else 'the ' + FIXTURE + ' fixture'}; "
                "remove one of them",
                pytrace=False,
            )
        if asked_for_all:
            item.stash[_NOT_PROFILED] = NOT_PROFILED_MARKED
        return
    explicit = bool(markers) or wants_fixture
    if kind is Kind.DOCTEST:  # measured as a whole, by --dhatc-profile-all (baselines) only
        if not settings.profile_every_test:
            if settings.default_limits:
                item.stash[_NOT_PROFILED] = NOT_PROFILED_DOCTEST
            return
        limits_from: Dict[str, int] = {}
    elif kind is Kind.OTHER:
        if not explicit:  # a marked one runs, and fails as not profiled
            if asked_for_all:
                item.stash[_NOT_PROFILED] = type(item).__name__
            return
        limits_from = settings.default_limits
    else:
        explicit = explicit or bool(settings.default_limits)
        limits_from = settings.default_limits
    if not explicit and not settings.profile_every_test:
        return
    problem: Optional[str] = None
    try:
        limits = limits_of(markers, limits_from)
    except LimitError as e:
        problem = str(e)
    else:
        if limits.repeat > 1 and wants_fixture:
            problem = (
                f"{REPEAT}= and the {FIXTURE} fixture do not go together: only the last run "
                "is profiled, so dhatc.HeapStats.get() would fail in the others"
            )
    if problem is not None:  # (outside the except: no chained traceback)
        pytest.fail(f"dhatc: {item.nodeid}: {problem}", pytrace=False)
    item.stash[_RUN] = HeapRun.create(
        item.nodeid,
        settings.directory,
        limits.figures,
        explicit=explicit,
        all_threads=settings.all_threads,
        repeat=limits.repeat,
        baselines=settings.baselines,
    )


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
    run: Optional[HeapRun] = request.node.stash.get(_RUN, None)
    if run is None:
        pytest.fail(
            f"dhatc: the {FIXTURE} fixture must be a parameter of the test function "
            "(it cannot be requested with request.getfixturevalue), and works only on "
            "test functions",
            pytrace=False,
        )
    # A failing dhatc.assert_* saves the profile there while the test runs.
    problem = make_directory(run.path.parent)
    if problem is not None:
        pytest.fail(f"dhatc: {problem}; set --dhatc-dir to a directory dhatc can write to",
                    pytrace=False)
    return run.profiler


# ---- measuring exactly the test call ----------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, None]:
    """A test function: swaps it for one that profiles exactly its call."""
    run = pyfuncitem.stash.get(_RUN, None)
    if run is None or pyfuncitem.stash.get(_KIND, None) is not Kind.FUNCTION:
        yield
        return
    function = pyfuncitem.obj
    pyfuncitem.obj = profiled_function(function, run)
    try:
        yield
    finally:
        pyfuncitem.obj = function


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """The other kinds: the item's runtest with the profiled call in place."""
    run = item.stash.get(_RUN, None)
    kind = item.stash.get(_KIND, None)
    if run is None or kind not in (Kind.COROUTINE, Kind.UNITTEST, Kind.DOCTEST):
        yield
        return
    item.runtest = measured_runtest(item, kind, run)  # type: ignore[method-assign]
    try:
        yield
    finally:
        vars(item).pop("runtest", None)


# ---- reports ----------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attaches the test's figures to its report; for a profiled test that
    failed, saves its DHAT file and adds a "dhatc heap profile" section."""
    outcome = yield
    if call.when == "setup":
        reason = item.stash.get(_NOT_PROFILED, None)
        if reason is not None:  # read by _SessionSummary, here or in the xdist controller
            outcome.get_result().dhatc_not_profiled = reason
        return
    if call.when != "call":
        return
    run = item.stash.get(_RUN, None)
    if run is None:
        return
    if run.called and not run.finished:
        return  # a report made while the test runs: a subtest's (pytest 9, unittest)
    item.stash[_RUN] = None  # the profile goes with the report, not the item
    report: pytest.TestReport = outcome.get_result()
    if not run.called:
        if run.explicit and report.passed:
            report.outcome = "failed"
            kind = item.stash.get(_KIND, Kind.OTHER)
            report.longrepr = (
                not_measurable_message(item.nodeid, type(item).__name__)
                if kind is Kind.OTHER
                else not_called_message(item.nodeid)
            )
        return
    conflict = _profiler_conflict(call, run)
    if conflict is not None:
        report.sections.append(("dhatc heap profile", conflict))
        return
    if run.profile is None:
        return
    # Read by pytest_runtest_logreport, in this process or the xdist controller.
    report.dhatc_heap = figures_of(run.profile)  # type: ignore[attr-defined]
    if run.baselines is not None:
        _baseline_report(run, report)
    if not report.failed or _is_limit_failure(call):
        return  # the limit message already names the file
    # (A failed dhatc.assert_* saved the profile there already, with the
    # trampoline's frame: this rewrites it without.)
    run.save()
    report.sections.append(("dhatc heap profile", failed_test_section(run)))


def _baseline_report(run: HeapRun, report: pytest.TestReport) -> None:
    """Notes on the report how the test went with baselines, and writes its
    baseline if it passed."""
    assert run.baselines is not None and run.profile is not None
    if run.baselines.compare_dir is not None:
        report.dhatc_baseline = run.comparison is not None  # type: ignore[attr-defined]
    if run.baselines.save_dir is not None:
        error = run.baselines.save(run.path.name, run.profile) if report.passed else "failed"
        if report.passed and error is not None:
            report.sections.append(("dhatc heap profile", f"The baseline could not be written: {error}"))
        report.dhatc_baseline_saved = error is None  # type: ignore[attr-defined]


def _profiler_conflict(call: pytest.CallInfo[None], run: HeapRun) -> Optional[str]:
    """What to do when the test failed because two dhatc profilers met."""
    excinfo = call.excinfo
    if excinfo is None or not excinfo.errisinstance(ProfilerAlreadyRunningError):
        return None
    if run.profile is None:  # the plugin's profiler could not start
        return plugin_could_not_start()
    return test_started_a_profiler()


def _is_limit_failure(call: pytest.CallInfo[None]) -> bool:
    return call.excinfo is not None and call.excinfo.errisinstance(HeapLimitExceeded)


class _SessionSummary:
    """Collects every profiled test's figures, and why tests were not
    profiled, from the reports (so that it works in the xdist controller too),
    and prints the tests that allocate most (--dhatc-profile-all), how many
    were not profiled, and what was compared with or written to baselines.
    Registered when every test is profiled or default limits are set."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.results: List[Tuple[str, Dict[str, int]]] = []
        self.not_profiled: Dict[str, int] = {}
        self.baseline_counts = {"compared": 0, "missing": 0, "saved": 0, "not_saved": 0}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        figures = getattr(report, "dhatc_heap", None)
        if report.when == "call" and isinstance(figures, dict):
            self.results.append((report.nodeid, figures))
        counts = self.baseline_counts
        compared = getattr(report, "dhatc_baseline", None)
        if report.when == "call" and isinstance(compared, bool):
            counts["compared" if compared else "missing"] += 1
        saved = getattr(report, "dhatc_baseline_saved", None)
        if report.when == "call" and isinstance(saved, bool):
            counts["saved" if saved else "not_saved"] += 1
        reason = getattr(report, "dhatc_not_profiled", None)
        if report.when == "setup" and isinstance(reason, str):
            self.not_profiled[reason] = self.not_profiled.get(reason, 0) + 1

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):  # an xdist worker: the controller prints
            return
        if self.settings.profile_all:
            self._print_table(terminalreporter)
        lines = [not_profiled_line(self.not_profiled)] if self.not_profiled else []
        baselines = self.settings.baselines
        if baselines is not None:
            lines += baseline_lines(
                **self.baseline_counts,
                compare_dir=str(baselines.compare_dir) if baselines.compare_dir else None,
                save_dir=str(baselines.save_dir) if baselines.save_dir else None,
            )
        if lines and not self.settings.profile_all:
            terminalreporter.write_sep("=", "dhatc")
        for line in lines:
            terminalreporter.write_line(line)

    def _print_table(self, terminalreporter: Any) -> None:
        sort = self.settings.sort
        results = sorted(self.results, key=lambda r: r[1][sort], reverse=True)
        shown = results[: max(self.settings.top, 0)]
        if not results:
            terminalreporter.write_sep("=", "dhatc: no test was heap-profiled to the end")
            return
        terminalreporter.write_sep("=", summary_title(len(shown), len(results), sort))
        for line in summary_table(shown):
            terminalreporter.write_line(line)
