"""Ad hoc profiling: dhatc.Profiler(mode="ad-hoc") and dhatc.ad_hoc_event.

Each event records `weight` units with the caller's Python stack; the profile
is written as dhat-ad-hoc.json (units/events, verb "Occurred", no lifetimes)
and summarised on stderr as "dhat: Total:     141 units in 11 events".
Programs whose output is checked exactly run in a fresh interpreter.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import dhatc
import dh_viewer
from dhat_helpers import all_frames, load, line_of

# 11 events of 141 units in all: 10 from hot() via caller(), weights 9..18
# (135 units), and one of 6 units straight from main().
ELEVEN_EVENTS = """\
import dhatc

def hot(weight):
    dhatc.ad_hoc_event(weight)  # HOT

def caller():
    for weight in range(9, 19):
        hot(weight)  # CALLER

def main():
    with dhatc.Profiler(mode="ad-hoc"):
        caller()  # MAIN-1
        dhatc.ad_hoc_event(weight=6)  # MAIN-2

main()
"""


# ---- the file and the summary -------------------------------------------------


def test_eleven_events_give_the_crate_summary_and_file(run_python, tmp_path: Path) -> None:
    proc = run_python(ELEVEN_EVENTS)

    assert proc.stderr.splitlines() == [
        "dhat: Total:     141 units in 11 events",
        "dhat: The data has been saved to dhat-ad-hoc.json, and is viewable with "
        "dhat/dh_view.html",
    ]
    data = load(tmp_path / "dhat-ad-hoc.json")
    assert list(data) == [
        "dhatFileVersion", "mode", "verb", "bklt", "bkacc", "bu", "bsu", "bksu",
        "tu", "Mtu", "cmd", "pid", "te", "pps", "ftbl",
    ]  # no tuth, no tg: those are for block lifetimes
    assert (data["dhatFileVersion"], data["mode"], data["verb"]) == (2, "ad-hoc", "Occurred")
    assert (data["bklt"], data["bkacc"]) == (False, False)
    assert (data["bu"], data["bsu"], data["bksu"]) == ("unit", "units", "events")
    assert (data["tu"], data["Mtu"], data["te"]) == ("events", "Mevents", 11)
    assert [sorted(pp) for pp in data["pps"]] == [["fs", "tb", "tbk"]] * 2
    assert [(pp["tb"], pp["tbk"]) for pp in data["pps"]] == [(135, 10), (6, 1)]
    script = tmp_path / "snippet.py"
    at = lambda func, marker: f"{func} ({script}:{line_of(ELEVEN_EVENTS, '# ' + marker)})"  # noqa: E731
    # Innermost first, no allocator frame, trimmed below main() (which started
    # the profiler): no <module> frame.
    assert all_frames(data) == [
        [at("hot", "HOT"), at("caller", "CALLER"), at("main", "MAIN-1")],
        [at("main", "MAIN-2")],
    ]
    assert data["ftbl"][0] == "[root]"


def test_ad_hoc_file_renders_in_the_real_viewer(run_python, tmp_path: Path) -> None:
    if dh_viewer.chromium_path() is None or dh_viewer.viewer_dir() is None:
        pytest.skip("needs chromium and Valgrind's dh_view.html")
    run_python(ELEVEN_EVENTS)

    result = dh_viewer.render(tmp_path / "dhat-ad-hoc.json")

    assert result.error is None
    assert "Mode:    ad-hoc" in result.text
    assert "Total:     141 units (100%" in result.text
    assert "in 11 events (100%" in result.text
    assert "Total:     135 units (95.74%" in result.text
    assert "Occurred at {" in result.text
    assert f"hot ({tmp_path / 'snippet.py'}:{line_of(ELEVEN_EVENTS, '# HOT')})" in result.text
    assert "t-end:  11 events" in result.text


def test_file_name_and_trim_backtraces_apply(run_python, tmp_path: Path) -> None:
    run_python(
        """\
        import dhatc

        def f():
            dhatc.ad_hoc_event(3)

        def g():
            f()

        with dhatc.Profiler(mode="ad-hoc", file_name="events.json", trim_backtraces=1):
            g()
            g()
        """
    )

    data = load(tmp_path / "events.json")
    assert [(pp["tb"], pp["tbk"], len(pp["fs"])) for pp in data["pps"]] == [(6, 2, 1)]
    assert all_frames(data)[0][0].startswith("f (")


# ---- ad_hoc_event ---------------------------------------------------------------


def test_ad_hoc_stats_count_events_and_units() -> None:
    with dhatc.Profiler(mode="ad-hoc", testing=True):
        assert dhatc.AdHocStats.get() == dhatc.AdHocStats(total_events=0, total_units=0)
        dhatc.ad_hoc_event()  # weight 1 by default
        dhatc.ad_hoc_event(0)  # an event of no units still counts as an event
        dhatc.ad_hoc_event(weight=40)
        dhatc.ad_hoc_event(2**64 - 1 - 41)
        stats = dhatc.AdHocStats.get()

    assert (stats.total_events, stats.total_units) == (4, 2**64 - 1)


def test_ad_hoc_event_is_a_no_op_without_an_ad_hoc_profiler(run_python) -> None:
    proc = run_python(
        """\
        import dhatc

        dhatc.ad_hoc_event(5)  # no profiler at all

        def main():
            with dhatc.Profiler(mode="heap", testing=True):
                dhatc.ad_hoc_event(5)  # a heap profiler: ignored, allocates nothing
                dhatc.ad_hoc_event(weight=7)
                stats = dhatc.HeapStats.get()
            print(stats.total_blocks, stats.total_bytes)
            with dhatc.Profiler(mode="ad-hoc", testing=True):
                dhatc.ad_hoc_event(1)
                print(dhatc.AdHocStats.get())

        main()
        """
    )

    assert proc.stdout.splitlines() == ["0 0", "AdHocStats(total_events=1, total_units=1)"]


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((1.5,), {}, TypeError, "ad_hoc_event() weight must be an int, not float"),
        (("3",), {}, TypeError, "ad_hoc_event() weight must be an int, not str"),
        ((None,), {}, TypeError, "ad_hoc_event() weight must be an int, not NoneType"),
        ((True,), {}, TypeError, "ad_hoc_event() weight must be an int, not bool"),
        ((-1,), {}, ValueError, "ad_hoc_event() weight must be a non-negative int below 2**64, got -1"),
        ((2**64,), {}, ValueError, "ad_hoc_event() weight must be a non-negative int below 2**64, got 18446744073709551616"),
        ((1, 2), {}, TypeError, "ad_hoc_event() takes at most 1 argument (2 given)"),
        ((1,), {"weight": 2}, TypeError, "ad_hoc_event() takes at most 1 argument (2 given)"),
        ((), {"units": 2}, TypeError, "ad_hoc_event() got an unexpected keyword argument 'units'"),
    ],
)
@pytest.mark.parametrize("running", [False, True], ids=["idle", "profiling"])
def test_bad_weights_raise_whether_or_not_profiling(
    args: tuple, kwargs: dict, error: type, message: str, running: bool
) -> None:
    profiler = dhatc.Profiler(mode="ad-hoc", testing=True)
    if running:
        profiler.start()
    try:
        with pytest.raises(error) as excinfo:
            dhatc.ad_hoc_event(*args, **kwargs)
        if running:
            assert dhatc.AdHocStats.get().total_events == 0
    finally:
        profiler.stop()
    assert str(excinfo.value) == message


def test_events_from_many_threads_are_all_counted() -> None:
    threads, per_thread = 8, 2_000
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            dhatc.ad_hoc_event(3)

    with dhatc.Profiler(mode="ad-hoc", testing=True) as profiler:
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        stats = dhatc.AdHocStats.get()

    assert (stats.total_events, stats.total_units) == (threads * per_thread, 3 * threads * per_thread)
    assert profiler.profile is not None
    assert sum(pp.total_blocks for pp in profiler.profile.pps) == threads * per_thread
    # Other threads have no frame of main's below them: their stacks show the
    # worker (innermost) and the threading machinery that ran it.
    assert {pp.frames[0].split(" (")[0] for pp in profiler.profile.pps} == {
        "test_events_from_many_threads_are_all_counted.<locals>.worker"
        if hasattr(worker.__code__, "co_qualname")
        else "worker"
    }


def test_an_event_allocates_nothing_once_its_program_point_exists(run_python) -> None:
    # The cost promise ("no more than a heap allocation") in a form a test can
    # check without a clock: after the first event at a place, events allocate
    # no memory at all.  tracemalloc's peak rises with any allocation, even one
    # freed at once; a loop without events shows the probe itself is silent.
    proc = run_python(
        """\
        import itertools, tracemalloc
        import dhatc

        def fire(events):
            for _ in events:
                dhatc.ad_hoc_event(2)

        def idle(events):
            for _ in events:
                pass

        def peak_while(loop):
            loop(itertools.repeat(None, 1))  # the first event makes the program point
            events = itertools.repeat(None, 100_000)
            tracemalloc.start()
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()  # (after: the result of get_traced_memory is freed)
            loop(events)
            after, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return after - before, peak - before

        with dhatc.Profiler(mode="ad-hoc", testing=True):
            print(*peak_while(idle), *peak_while(fire), dhatc.AdHocStats.get().total_events)
        """
    )

    idle_kept, idle_peak, fire_kept, fire_peak, events = map(int, proc.stdout.split())
    assert events == 100_001
    assert (idle_kept, idle_peak) == (0, 0)  # the probe itself is silent
    assert (fire_kept, fire_peak) == (0, 0)


# ---- stats in the wrong mode ----------------------------------------------------


def test_stats_of_the_other_mode_raise_with_the_crate_wording() -> None:
    with dhatc.Profiler(mode="ad-hoc", testing=True):
        with pytest.raises(RuntimeError, match=r"^dhat: getting heap stats while doing ad hoc profiling$"):
            dhatc.HeapStats.get()
    with dhatc.Profiler(mode="heap", testing=True):
        with pytest.raises(RuntimeError, match=r"^dhat: getting ad hoc stats while doing heap profiling$"):
            dhatc.AdHocStats.get()
    with pytest.raises(RuntimeError, match=r"^dhat: getting ad hoc stats when no profiler is running"):
        dhatc.AdHocStats.get()
