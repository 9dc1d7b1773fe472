"""Testing mode (Profiler(testing=True)) and dhatc.assert_ / assert_eq / assert_ne.

In testing mode a normal stop writes nothing and prints nothing.  A failing
assertion does what the crate's does: saves the profile under the configured
name, prints the summary, raises AssertionError with the crate's message, and
leaves the profiler "asserted" (stats and further assertions raise
RuntimeError; the stop that follows does not save again).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import dhatc
from dhat_helpers import load

SAVED = "dhat: The data has been saved to {}, and is viewable with dhat/dh_view.html"


# ---- a normal stop in testing mode ----------------------------------------------


@pytest.mark.parametrize("mode", ["heap", "ad-hoc"])
def test_testing_mode_writes_no_file_and_prints_nothing(run_python, tmp_path: Path, mode: str) -> None:
    proc = run_python(
        f"""\
        import dhatc

        with dhatc.Profiler(mode={mode!r}, testing=True) as p:
            data = [bytes(100) for _ in range(10)]
            dhatc.ad_hoc_event(3)
        p.stop()  # again: still nothing
        print(p.profile.total_blocks > 0 if p.mode == "heap" else p.profile.total_bytes)
        """
    )

    assert (proc.stdout, proc.stderr) == ("True\n" if mode == "heap" else "3\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snippet.py"]


def test_exact_heap_stats_in_testing_mode(run_python) -> None:
    # On 64-bit CPython, bytes(n) for n >= 2 is one block of n + 33 bytes
    # (once bytes() has run: 3.9/3.10 intern a name on the first call).
    proc = run_python(
        """\
        import dhatc

        def main():
            bytes(10)
            with dhatc.Profiler(testing=True):
                b1 = bytes(1000)
                b2 = bytes(2000)
                del b1
                stats = dhatc.HeapStats.get()
                dhatc.assert_eq(stats.total_blocks, 2)
                dhatc.assert_eq(stats.total_bytes, 3066)
                dhatc.assert_eq(stats.max_blocks, 2)
                dhatc.assert_eq(stats.max_bytes, 3066)
                dhatc.assert_eq(stats.curr_blocks, 1)
                dhatc.assert_eq(stats.curr_bytes, 2033)
                dhatc.assert_ne(stats.curr_bytes, 0)
                dhatc.assert_(stats.curr_blocks == 1)
            print("ok")

        main()
        """
    )

    assert (proc.stdout, proc.stderr) == ("ok\n", "")


def test_passing_assertions_allocate_nothing(run_python) -> None:
    # The figures a test reads after its assertions are not disturbed by them.
    proc = run_python(
        """\
        import dhatc

        def main():
            with dhatc.Profiler(testing=True):
                before = dhatc.HeapStats.get()
                dhatc.assert_eq(1, 1)  # the first calls of all three
                dhatc.assert_ne(1, 2, "msg")
                dhatc.assert_(True)
                dhatc.assert_(3 > 2, msg="three")
                dhatc.assert_eq(before.total_blocks, 0)
                after = dhatc.HeapStats.get()
            print(after.total_blocks - before.total_blocks)

        main()
        """
    )

    assert proc.stdout == "1\n"  # the second HeapStats object, nothing else


# ---- failing assertions -----------------------------------------------------------


def test_failed_assert_eq_saves_prints_and_raises_the_crate_message(run_python, tmp_path: Path) -> None:
    proc = run_python(
        """\
        import dhatc

        def main():
            bytes(10)  # (3.9/3.10 intern a name on the first bytes() call)
            with dhatc.Profiler(testing=True, file_name="failed.json") as p:
                b = bytes(1000)
                stats = dhatc.HeapStats.get()
                try:
                    dhatc.assert_eq(stats.total_blocks, 2)
                except AssertionError as e:
                    print(str(e))
                print(p.phase.name)
            print(p.phase.name)

        main()
        """
    )

    assert proc.stdout.splitlines() == [
        "dhat: assertion failed: `(left == right)`",
        "  left: `1`,",
        " right: `2`",
        "POST_ASSERT",
        "POST_DROP",
    ]
    # Printed once, at the failure (the with-exit saved nothing more).  The
    # blocks: bytes(1000) (1,033 bytes) and the HeapStats object (64).
    assert proc.stderr.splitlines() == [
        "dhat: Total:     1,097 bytes in 2 blocks",
        "dhat: At t-gmax: 1,097 bytes in 2 blocks",
        "dhat: At t-end:  1,097 bytes in 2 blocks",
        SAVED.format("failed.json"),
    ]
    data = load(tmp_path / "failed.json")
    assert (data["mode"], data["verb"]) == ("heap", "Allocated")
    assert sorted((pp["tb"], pp["tbk"]) for pp in data["pps"]) == [(64, 1), (1033, 1)]


def test_failed_assertion_figures_are_exact(run_python, tmp_path: Path) -> None:
    proc = run_python(
        """\
        import dhatc

        def main():
            bytes(10)
            with dhatc.Profiler(testing=True) as p:
                b = bytes(1000)
                try:
                    dhatc.assert_(b is None)
                except AssertionError as e:
                    print(e)
            print(p.profile.total_blocks, p.profile.total_bytes, p.profile.curr_blocks)

        main()
        """
    )

    assert proc.stdout.splitlines() == ["dhat: assertion failed: b is None", "1 1033 1"]
    assert proc.stderr.splitlines() == [
        "dhat: Total:     1,033 bytes in 1 blocks",
        "dhat: At t-gmax: 1,033 bytes in 1 blocks",
        "dhat: At t-end:  1,033 bytes in 1 blocks",
        SAVED.format("dhat-heap.json"),
    ]
    assert (tmp_path / "dhat-heap.json").exists()


def test_later_stop_does_not_save_again(run_python, tmp_path: Path) -> None:
    run_python(
        """\
        import os
        import dhatc

        p = dhatc.Profiler(testing=True).start()
        try:
            dhatc.assert_(False)
        except AssertionError:
            pass
        os.remove("dhat-heap.json")
        p.stop()
        """
    )

    assert not (tmp_path / "dhat-heap.json").exists()


def test_failed_ad_hoc_assertion_saves_the_ad_hoc_file(run_python, tmp_path: Path) -> None:
    proc = run_python(
        """\
        import dhatc

        with dhatc.Profiler(mode="ad-hoc", testing=True):
            for weight in range(9, 19):
                dhatc.ad_hoc_event(weight)
            dhatc.ad_hoc_event(6)
            stats = dhatc.AdHocStats.get()
            try:
                dhatc.assert_eq(stats.total_units, 140, "units")
            except AssertionError as e:
                print(e)
        """
    )

    assert proc.stdout.splitlines() == [
        "dhat: assertion failed: `(left == right)`",
        "  left: `141`,",
        " right: `140`: units",
    ]
    assert proc.stderr.splitlines() == [
        "dhat: Total:     141 units in 11 events",
        SAVED.format("dhat-ad-hoc.json"),
    ]
    data = load(tmp_path / "dhat-ad-hoc.json")
    assert (data["mode"], data["te"]) == ("ad-hoc", 11)


def test_eprint_json_prints_the_profile_instead_of_saving(run_python, tmp_path: Path) -> None:
    proc = run_python(
        """\
        import dhatc

        with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
            dhatc.ad_hoc_event(4)
            try:
                dhatc.assert_ne(dhatc.AdHocStats.get().total_units, 4)
            except AssertionError:
                pass
        """
    )

    summary, json_text = proc.stderr.split("\n", 1)
    assert summary == "dhat: Total:     4 units in 1 events"
    assert json.loads(json_text)["pps"][0]["tb"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snippet.py"]


def test_unwritable_file_still_fails_the_assertion(run_python, tmp_path: Path) -> None:
    proc = run_python(
        """\
        import dhatc

        with dhatc.Profiler(testing=True, file_name="no/such/dir/x.json"):
            try:
                dhatc.assert_(1 + 1 == 3, "arithmetic")
            except AssertionError as e:
                print(e)
        """
    )

    assert proc.stdout == "dhat: assertion failed: 1 + 1 == 3: arithmetic\n"
    assert proc.stderr.splitlines() == [
        "dhat: Total:     0 bytes in 0 blocks",
        "dhat: At t-gmax: 0 bytes in 0 blocks",
        "dhat: At t-end:  0 bytes in 0 blocks",
        "dhat: error: [Errno 2] dhatc: cannot write the profile to 'no/such/dir/x.json': "
        "No such file or directory",
    ]


# ---- messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "left, right, msg, expected",
    [
        (1, 2, None, "dhat: assertion failed: `(left == right)`\n  left: `1`,\n right: `2`"),
        ("a", [1], None, "dhat: assertion failed: `(left == right)`\n  left: `'a'`,\n right: `[1]`"),
        (1, 2, "why", "dhat: assertion failed: `(left == right)`\n  left: `1`,\n right: `2`: why"),
    ],
)
def test_assert_eq_messages(capfd, left: object, right: object, msg: object, expected: str) -> None:
    with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
        with pytest.raises(AssertionError) as excinfo:
            dhatc.assert_eq(left, right, msg)
    assert str(excinfo.value) == expected


def test_assert_ne_message(capfd) -> None:
    with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
        with pytest.raises(AssertionError) as excinfo:
            dhatc.assert_ne(3, 3, msg="three")
    assert str(excinfo.value) == (
        "dhat: assertion failed: `(left != right)`\n  left: `3`,\n right: `3`: three"
    )


def test_assert_message_shows_the_condition_source(capfd) -> None:
    stats = dhatc.AdHocStats(total_events=2, total_units=5)
    with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
        with pytest.raises(AssertionError) as excinfo:
            dhatc.assert_(
                stats.total_events
                == 3,
                "events",
            )
    assert str(excinfo.value) == "dhat: assertion failed: stats.total_events == 3: events"


def test_assert_message_with_two_assertions_on_one_line(capfd) -> None:
    # The condition of the assertion that failed, not of its neighbour.
    with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
        with pytest.raises(AssertionError) as excinfo:
            dhatc.assert_(1 == 1); dhatc.assert_(2 == 3)  # noqa: E702
    expected = "dhat: assertion failed: 2 == 3"
    if sys.version_info < (3, 11):  # no instruction positions: the line is ambiguous
        expected = "dhat: assertion failed: False"
    assert str(excinfo.value) == expected


def test_assert_message_falls_back_to_the_repr_without_source(capfd) -> None:
    # exec'd code has no source file to read the condition from.
    with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
        with pytest.raises(AssertionError) as excinfo:
            exec("dhatc.assert_([] , 'empty')", {"dhatc": dhatc})
    assert str(excinfo.value) == "dhat: assertion failed: []: empty"


# ---- RuntimeErrors ------------------------------------------------------------------


ASSERTIONS = [
    pytest.param(lambda: dhatc.assert_(True), id="assert_"),
    pytest.param(lambda: dhatc.assert_eq(1, 1), id="assert_eq"),
    pytest.param(lambda: dhatc.assert_ne(1, 2), id="assert_ne"),
]


@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_asserting_with_no_profiler_raises(assertion) -> None:
    with pytest.raises(RuntimeError, match=r"^dhat: asserting when no profiler is running"):
        assertion()


@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_asserting_outside_testing_mode_raises_even_if_true(assertion, tmp_path: Path, capfd) -> None:
    with dhatc.Profiler(mode="ad-hoc", file_name=str(tmp_path / "x.json")):
        with pytest.raises(RuntimeError, match=r"^dhat: asserting while not in testing mode"):
            assertion()


@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_after_a_failed_assertion_everything_raises_until_stop(assertion, capfd) -> None:
    with dhatc.Profiler(mode="heap", testing=True, eprint_json=True):
        with pytest.raises(AssertionError):
            dhatc.assert_(False)
        with pytest.raises(RuntimeError, match=r"^dhat: asserting after the profiler has asserted$"):
            assertion()
        with pytest.raises(RuntimeError, match=r"^dhat: getting heap stats after the profiler has asserted$"):
            dhatc.HeapStats.get()
        with pytest.raises(RuntimeError, match=r"^dhat: getting ad hoc stats after the profiler has asserted$"):
            dhatc.AdHocStats.get()
        with pytest.raises(RuntimeError, match=r"^dhat: creating a profiler while a profiler is already running$"):
            dhatc.Profiler(testing=True).start()
    # Stopped: a new profiler runs and asserts again.
    with dhatc.Profiler(mode="ad-hoc", testing=True):
        dhatc.ad_hoc_event(2)
        dhatc.assert_eq(dhatc.AdHocStats.get().total_units, 2)


def test_dropping_an_asserted_profiler_frees_the_engine(capfd) -> None:
    profiler = dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True).start()
    with pytest.raises(AssertionError):
        dhatc.assert_eq(1, 2)
    del profiler  # never stopped explicitly

    with dhatc.Profiler(mode="ad-hoc", testing=True):
        dhatc.ad_hoc_event()
        assert dhatc.AdHocStats.get().total_events == 1


def test_assertion_failure_traceback_points_at_the_caller(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import dhatc

        def test_it():
            with dhatc.Profiler(mode="ad-hoc", testing=True, eprint_json=True):
                dhatc.ad_hoc_event(5)
                dhatc.assert_eq(dhatc.AdHocStats.get().total_units, 4)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">*dhatc.assert_eq(dhatc.AdHocStats.get().total_units, 4)",
            "E*AssertionError: dhat: assertion failed: `(left == right)`",
            "E*  left: `5`,",
            "E* right: `4`",
            "test_assertion_failure_traceback_points_at_the_caller.py:6: AssertionError",
        ]
    )
    assert "_testing.py" not in result.stdout.str()  # dhatc's own frame is hidden
