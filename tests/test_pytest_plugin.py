"""The pytest plugin (dhatc.pytest_plugin), driven through pytest's own pytester.

Every inner session runs in a fresh interpreter (the `inner` fixture), so the
figures the tests see are exact.  Inner test modules call bytes() once at import:
3.9/3.10 intern a name on the first call.  On 64-bit CPython, bytes(n) for
n >= 2 is one block of n + 33 bytes.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import dh_viewer
import dhat_helpers
from dhatc._pytest_limits import LimitError, parse_size
from dhatc._pytest_run import file_name
from plugin_sessions import Inner, dhat_files, inner, line_of, lines  # noqa: F401 (fixture)

TRAMPOLINE_FILE = "<dhatc pytest plugin>"


def short_hash(nodeid: str) -> str:
    """What a DHAT file name ends with when its node id had to be changed."""
    return hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]


# ---- registration -------------------------------------------------------------------


def test_plugin_is_loaded_by_its_entry_point(inner: Inner) -> None:
    markers = inner.run("--markers")
    markers.stdout.fnmatch_lines(
        [
            "@pytest.mark.limit_heap(total_blocks=, total_bytes=, max_blocks=, max_bytes=, "
            "curr_blocks=, curr_bytes=, repeat=1): fail the test if its call exceeds *",
            "@pytest.mark.no_heap_profile: never heap-profile this test *",
        ]
    )
    help_text = inner.run("--help")
    help_text.stdout.fnmatch_lines(
        [
            "dhatc heap profiling*",
            "  --dhatc-dir=DIR *",
            "  --dhatc-all-threads *",
            "  --dhatc-profile-all *",
            "  --dhatc-top=N *",
            "  --dhatc-sort=FIGURE *",
            "  --dhatc-limit=LIMITS*",
            "  --dhatc-baseline=DIR*",
            "  --dhatc-max-increase=PERCENT*",
            "  --dhatc-save-baseline=DIR*",
        ]
    )
    fixtures = inner.run("--fixtures")
    fixtures.stdout.fnmatch_lines(["dhatc_heap*", "*Runs the test function under a testing-mode heap profiler*"])

    disabled = inner.run("-p", "no:dhatc", "--markers")
    assert "limit_heap" not in disabled.stdout.str()


# ---- the dhatc_heap fixture: exact figures of the test call ----------------------------


def test_fixture_gives_exact_figures_of_the_test_call_only(inner: Inner) -> None:
    inner.makeconftest(
        """
        import pytest

        @pytest.fixture
        def big_fixture():
            data = [bytes(100) for _ in range(1000)]  # setup: not measured
            yield data
            data += [bytes(100) for _ in range(1000)]  # teardown: not measured

        @pytest.fixture(autouse=True)
        def busy_autouse():
            yield bytes(50_000)
        """
    )
    inner.makepyfile(
        test_exact="""
        import pytest
        import dhatc

        bytes(10)

        def test_nothing_allocates_nothing(dhatc_heap, big_fixture):
            assert dhatc.HeapStats.get() == dhatc.HeapStats(
                total_blocks=0, total_bytes=0, curr_blocks=0, curr_bytes=0,
                max_blocks=0, max_bytes=0)

        def test_issue_example(dhatc_heap):
            b1 = bytes(1000)
            b2 = bytes(2000)
            del b1
            s = dhatc.HeapStats.get()
            assert (s.total_blocks, s.total_bytes) == (2, 3066)
            assert (s.max_blocks, s.max_bytes) == (2, 3066)
            assert (s.curr_blocks, s.curr_bytes) == (1, 2033)

        @pytest.mark.parametrize("n", [2, 100, 10_000])
        def test_parametrized(dhatc_heap, n):
            b = bytes(n)
            s = dhatc.HeapStats.get()
            assert (s.total_blocks, s.total_bytes, s.curr_bytes) == (1, n + 33, n + 33)

        class TestInAClass:
            def test_method(self, dhatc_heap, big_fixture):
                b = bytes(500)
                dhatc.assert_eq(dhatc.HeapStats.get().total_bytes, 533)

        def test_fixture_value_is_the_running_profiler(dhatc_heap, request):
            assert isinstance(dhatc_heap, dhatc.Profiler)
            assert (dhatc_heap.mode, dhatc_heap.testing) == ("heap", True)
            assert dhatc_heap.file_name.endswith(
                "test_exact.py__test_fixture_value_is_the_running_profiler.json")
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=7)
    assert inner.dhat_files() == []


def test_fixture_and_limit_together(inner: Inner) -> None:
    inner.makepyfile(
        test_both="""
        import pytest
        import dhatc

        bytes(10)

        @pytest.mark.limit_heap(total_blocks=2)
        def test_within(dhatc_heap):
            b = bytes(100)
            assert dhatc.HeapStats.get().total_blocks == 1  # and the HeapStats: 2

        @pytest.mark.limit_heap(total_blocks=1)
        def test_over(dhatc_heap):
            b = bytes(100)
            assert dhatc.HeapStats.get().total_blocks == 1
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["  total_blocks: 2 blocks allocated in total, over the limit of 1 block"]
    )


def test_request_getfixturevalue_is_refused(inner: Inner) -> None:
    inner.makepyfile(
        """
        def test_dynamic(request):
            request.getfixturevalue("dhatc_heap")
        """
    )
    result = inner.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*dhatc: the dhatc_heap fixture must be a parameter of the test function*"]
    )


# ---- limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("8.2 MB", 8_200_000),  # not 8,199,999 (float)
        ("2.01 KB", 2010),
        ("0.29 KB", 290),
        ("4.35 MB", 4_350_000),
        ("1.1 KB", 1100),
        ("1.5 KiB", 1536),
        ("512", 512),
        (".5 kb", 500),
        ("3. GB", 3_000_000_000),
        ("1.000000000000000000000000000001 TiB", 1024**4),
        ("123456789012345678901234567890 TB", 123456789012345678901234567890 * 1000**4),
        # Not whole bytes: rounded down, the same bound for whole-byte figures.
        ("0.1 KiB", 102),
        ("1.5 B", 1),
        ("0.0001 KB", 0),
    ],
)
def test_sizes_are_read_exactly(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1e3 B", "-1 KB", "1,5 KB", "1.2.3 KB", "nan", "inf KB"])
def test_sizes_that_are_not_sizes(text: str) -> None:
    with pytest.raises(LimitError, match="is not a size"):
        parse_size(text, "max_bytes")


def test_limits_are_inclusive_upper_bounds_in_blocks_and_bytes(inner: Inner) -> None:
    inner.makepyfile(
        test_late="""
        import pytest

        bytes(10)
        pytestmark = pytest.mark.limit_heap(total_bytes="1 MB")  # profiled, within it

        @pytest.fixture
        def late_limits(request, limits):
            request.node.add_marker(pytest.mark.limit_heap(**limits))  # too late: ignored

        @pytest.mark.parametrize("limits", [
            dict(total_bytes=1033), dict(total_bytes="1033 B"), dict(total_bytes="1.1 KB"),
            dict(total_blocks=1, max_blocks=1, max_bytes=1033, curr_blocks=0, curr_bytes=0),
            dict(total_bytes=1032), dict(total_bytes="1 KiB"), dict(total_bytes="1 kb"),
            dict(total_blocks=0), dict(max_blocks=0), dict(max_bytes=1032),
        ])
        def test_bytes_1000(late_limits):
            bytes(1000)
        """,
        test_markers="""
        import pytest

        bytes(10)

        @pytest.mark.limit_heap(total_bytes=1033)
        def test_at_bound(): bytes(1000)

        @pytest.mark.limit_heap(total_bytes="1033 B")
        def test_at_bound_string(): bytes(1000)

        @pytest.mark.limit_heap(total_bytes="1.1 KB", max_bytes="1.1KB")
        def test_under_kb(): bytes(1000)

        @pytest.mark.limit_heap(total_blocks=1, max_blocks=1, max_bytes=1033, curr_blocks=0, curr_bytes=0)
        def test_all_figures_at_bound(): bytes(1000)

        @pytest.mark.limit_heap(total_bytes=1032)
        def test_one_byte_over(): bytes(1000)

        @pytest.mark.limit_heap(total_bytes="1 KiB")
        def test_over_kib(): bytes(1000)

        @pytest.mark.limit_heap(total_blocks=0)
        def test_one_block_over(): bytes(1000)

        @pytest.mark.limit_heap(max_bytes="1 kb")
        def test_peak_over(): bytes(1000)
        """,
    )
    result = inner.run("test_markers.py", "-rA")
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_markers.py::test_at_bound",
            "PASSED test_markers.py::test_at_bound_string",
            "PASSED test_markers.py::test_under_kb",
            "PASSED test_markers.py::test_all_figures_at_bound",
            "FAILED test_markers.py::test_one_byte_over - Failed: dhatc: *",
            "FAILED test_markers.py::test_over_kib - Failed: dhatc: *",
            "FAILED test_markers.py::test_one_block_over - Failed: dhatc: *",
            "FAILED test_markers.py::test_peak_over - Failed: dhatc: *",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "  total_bytes: 1,033 bytes (1.01 KiB) allocated in total, over the limit of 1,032 bytes (1.01 KiB)",
            "  total_bytes: 1,033 bytes (1.01 KiB) allocated in total, over the limit of 1,024 bytes (1 KiB)",
            "  total_blocks: 1 block allocated in total, over the limit of 0 blocks",
            "  max_bytes: 1,033 bytes (1.01 KiB) live at the peak (t-gmax), over the limit of 1,000 bytes",
        ]
    )
    # A marker added once the test is set up (by a fixture; the test body is
    # later still) is too late to count: the six tests whose late limits they
    # exceed pass, each profiled under the module's limit all the same.
    late = inner.run("test_late.py", "--dhatc-profile-all")
    late.assert_outcomes(passed=10)
    late.stdout.fnmatch_lines(["*= dhatc: 10 of 10 profiled tests, most total_bytes first =*"])
    late.stdout.fnmatch_lines_random(
        [
            "      1,033             1       1,033            1          0           0  "
            f"test_late.py::test_bytes_1000?limits{i}?"
            for i in range(10)
        ]
    )


LEAKY = """\
import pytest

bytes(10)
_kept = [None]


def leak(n):
    _kept[0] = bytes(n)  # LEAK


def churn():
    bytes(20_000)  # CHURN


leak(10), churn()  # (3.9/3.10 keep a spare frame per function once it has run)


@pytest.mark.limit_heap(curr_blocks=0, max_bytes="16 KiB", total_blocks=2)
def test_leaky():
    churn()  # CALL-CHURN
    leak(5000)  # CALL-LEAK
"""


def test_failure_message_names_each_figure_its_top_program_points_and_the_file(
    inner: Inner,
) -> None:
    inner.makepyfile(test_leaky=LEAKY)
    result = inner.run()
    result.assert_outcomes(failed=1)
    path = inner.path / ".dhatc" / "test_leaky.py__test_leaky.json"
    at = lambda name, marker: f"{name} (test_leaky.py:{line_of(LEAKY, marker)})"  # noqa: E731
    block = [
        "dhatc: test_leaky.py::test_leaky exceeded its heap limits:",
        "  max_bytes: 20,033 bytes (19.6 KiB) live at the peak (t-gmax), over the limit of 16,384 bytes (16 KiB)",
        "    top program points (innermost Python frame):",
        f"      20,033 bytes, 1 block  {at('churn', 'CHURN')}",
        "  curr_blocks: 1 block still live when the test returned (t-end), over the limit of 0 blocks",
        "    top program points (innermost Python frame):",
        f"      1 block, 5,033 bytes  {at('leak', 'LEAK')}",
        f"  DHAT file: {path}",
        "  (open it in Valgrind's DHAT viewer, dh_view.html; sort by 'At t-gmax (bytes)' / 'At t-end (bytes)')",
    ]
    out = lines(result)
    start = out.index(block[0])
    assert out[start : start + len(block)] == block
    assert inner.dhat_files() == ["test_leaky.py__test_leaky.json"]


def test_dhat_file_stacks_end_at_the_test_function(inner: Inner) -> None:
    inner.makepyfile(test_leaky=LEAKY)
    inner.run().assert_outcomes(failed=1)
    path = inner.path / ".dhatc" / "test_leaky.py__test_leaky.json"
    data = dhat_helpers.load(path)
    stacks = dhat_helpers.all_frames(data)
    source = str(inner.path / "test_leaky.py")
    at = lambda name, marker: f"{name} ({source}:{line_of(LEAKY, marker)})"  # noqa: E731
    # Innermost first: the allocator entry, then Python frames down to the
    # test function and no further (no pytest, no dhatc frame).
    assert [stack[1:] for stack in stacks] == [
        [at("churn", "CHURN"), at("test_leaky", "CALL-CHURN")],
        [at("leak", "LEAK"), at("test_leaky", "CALL-LEAK")],
    ]
    assert {stack[0] for stack in stacks} <= {"PyObject_Malloc", "PyObject_Calloc", "PyMem_RawMalloc", "PyMem_RawCalloc"}
    assert not any(TRAMPOLINE_FILE in frame for stack in stacks for frame in stack)
    assert [(pp["tb"], pp["tbk"], pp["gb"], pp["eb"]) for pp in data["pps"]] == [
        (20_033, 1, 20_033, 0),
        (5_033, 1, 0, 5_033),
    ]


def test_a_failing_tests_file_renders_in_the_real_viewer(inner: Inner) -> None:
    if dh_viewer.chromium_path() is None or dh_viewer.viewer_dir() is None:
        pytest.skip("needs chromium and Valgrind's dh_view.html")
    inner.makepyfile(test_leaky=LEAKY)
    inner.run().assert_outcomes(failed=1)

    view = dh_viewer.render(inner.path / ".dhatc" / "test_leaky.py__test_leaky.json")

    assert view.error is None
    assert "Total:     25,066 bytes (100%" in view.text
    assert "At t-end:  5,033 bytes (100%) in 1 blocks (100%)" in view.text
    source = inner.path / "test_leaky.py"
    assert f"test_leaky ({source}:{line_of(LEAKY, 'CALL-LEAK')})" in view.text


def test_parametrized_tests_get_their_own_limits_and_files(inner: Inner) -> None:
    inner.makepyfile(
        test_param="""
        import pytest

        bytes(10)

        @pytest.mark.limit_heap(total_bytes="100 KB")
        @pytest.mark.parametrize("n", [
            10,
            pytest.param(150_000, marks=pytest.mark.limit_heap(total_bytes="1 MB")),
            200_000,
            pytest.param(50, marks=pytest.mark.limit_heap(total_bytes=82), id="tight"),
        ])
        def test_p(n):
            bytes(n)
        """
    )
    result = inner.run("-rA")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_param.py::test_p?10?",
            "PASSED test_param.py::test_p?150000?",
            "FAILED test_param.py::test_p?200000? - *",  # (? for [ and ]: fnmatch)
            "FAILED test_param.py::test_p?tight? - *",
            "  total_bytes: 200,033 bytes (195 KiB) allocated in total, over the limit of 100,000 bytes (97.7 KiB)",
            "  total_bytes: 83 bytes allocated in total, over the limit of 82 bytes",
        ]
    )
    assert inner.dhat_files() == [
        "test_param.py__test_p[200000].json",
        "test_param.py__test_p[tight].json",
    ]


def test_module_class_and_function_markers_combine_figure_by_figure(inner: Inner) -> None:
    inner.makepyfile(
        test_levels="""
        import pytest

        bytes(10)
        pytestmark = pytest.mark.limit_heap(total_blocks=0, total_bytes=0)

        @pytest.mark.limit_heap(total_bytes=5000)
        class TestLevels:
            @pytest.mark.limit_heap(total_blocks=1)
            def test_function_allows_a_block(self):
                bytes(1000)

            def test_class_allows_bytes_not_blocks(self):
                bytes(1000)

        def test_module_limits():
            pass
        """
    )
    result = inner.run("-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_levels.py::test_module_limits",
            "PASSED test_levels.py::TestLevels::test_function_allows_a_block",
            "FAILED test_levels.py::TestLevels::test_class_allows_bytes_not_blocks - *",
            "  total_blocks: 1 block allocated in total, over the limit of 0 blocks",
        ]
    )


def test_bad_limits_are_setup_errors_that_say_what_to_write(inner: Inner) -> None:
    inner.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.limit_heap(max_byte=1)
        def test_typo(): pass

        @pytest.mark.limit_heap(max_bytes="ten")
        def test_not_a_size(): pass

        @pytest.mark.limit_heap(max_bytes="10 MB/s")
        def test_unknown_unit(): pass

        @pytest.mark.limit_heap(curr_blocks=-1)
        def test_negative(): pass

        @pytest.mark.limit_heap(curr_blocks="3")
        def test_blocks_as_text(): pass

        @pytest.mark.limit_heap(total_bytes=True)
        def test_bool(): pass

        @pytest.mark.limit_heap(5)
        def test_positional(): pass

        @pytest.mark.limit_heap()
        def test_empty(): pass

        @pytest.mark.no_heap_profile
        @pytest.mark.limit_heap(total_blocks=1)
        def test_contradiction(): pass
        """
    )
    result = inner.run()
    result.assert_outcomes(errors=9)
    result.stdout.fnmatch_lines_random(
        [
            "dhatc: test_bad.py::test_typo: @pytest.mark.limit_heap: unknown figure 'max_byte'; "
            "use any of total_blocks, total_bytes, max_blocks, max_bytes, curr_blocks, curr_bytes",
            "dhatc: test_bad.py::test_not_a_size: @pytest.mark.limit_heap: max_bytes='ten' is not "
            "a size; write an int or a string like \"10 MiB\", \"1.5 KB\" or \"512 B\" (KB = 1000 bytes, KiB = 1024)",
            "dhatc: test_bad.py::test_unknown_unit: @pytest.mark.limit_heap: max_bytes='10 MB/s' is not a size; *",
            "dhatc: test_bad.py::test_negative: @pytest.mark.limit_heap: curr_blocks must be an int >= 0 "
            "(a number of blocks), got -1",
            "dhatc: test_bad.py::test_blocks_as_text: @pytest.mark.limit_heap: curr_blocks must be an int >= 0 "
            "(a number of blocks), got '3'",
            "dhatc: test_bad.py::test_bool: @pytest.mark.limit_heap: total_bytes must be an int or a size "
            "string like \"10 MiB\", not bool",
            "dhatc: test_bad.py::test_positional: @pytest.mark.limit_heap takes keyword arguments only, "
            "e.g. @pytest.mark.limit_heap(max_bytes=\"10 MiB\", curr_blocks=0)",
            "dhatc: test_bad.py::test_empty: @pytest.mark.limit_heap needs at least one limit, any of *",
            "dhatc: test_bad.py::test_contradiction is marked no_heap_profile but also uses "
            "@pytest.mark.limit_heap; remove one of them",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


# ---- what is measured -------------------------------------------------------------------


def test_fixtures_and_pytest_itself_are_not_measured(inner: Inner) -> None:
    inner.makeconftest(
        """
        import pytest

        @pytest.fixture
        def allocating_fixture():
            data = [bytes(1000) for _ in range(100)]
            yield data
            data.extend(bytes(1000) for _ in range(100))

        @pytest.fixture(autouse=True)
        def leaky_autouse():
            import sys
            sys.modules[__name__].__dict__.setdefault("kept", []).append(bytes(10_000))
        """
    )
    inner.makepyfile(
        test_clean="""
        import pytest

        @pytest.mark.limit_heap(total_blocks=0)
        def test_empty():
            pass

        @pytest.mark.limit_heap(total_blocks=0)
        def test_with_fixture(allocating_fixture):
            assert len(allocating_fixture) == 100

        @pytest.mark.limit_heap(total_blocks=0)
        @pytest.mark.parametrize("x", ["a", "b"])
        def test_parametrized(x, allocating_fixture):
            pass
        """
    )
    inner.run().assert_outcomes(passed=4)


THREADED = """\
import threading
import pytest

bytes(10)


def worker():
    bytes(1_000_000)  # WORKER


@pytest.mark.limit_heap(total_bytes="500 KB")
def test_thread():
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
"""


def test_only_the_test_thread_counts_by_default(inner: Inner) -> None:
    inner.makepyfile(test_thread=THREADED)
    inner.run().assert_outcomes(passed=1)


@pytest.mark.parametrize("how", ["option", "ini"])
def test_all_threads_count_when_asked(inner: Inner, how: str) -> None:
    inner.makepyfile(test_thread=THREADED)
    if how == "ini":
        inner.makeini("[pytest]\ndhatc_all_threads = true\n")
    result = inner.run(*(["--dhatc-all-threads"] if how == "option" else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  total_bytes: 1,0??,??? bytes (*) allocated in total, over the limit of 500,000 bytes (488 KiB)",
            "    top program points (innermost Python frame):",
            f"      1,000,033 bytes, 1 block  worker (test_thread.py:{line_of(THREADED, 'WORKER')})",
        ]
    )


# ---- tests that fail on their own -----------------------------------------------------


def test_a_test_that_raises_keeps_its_error_and_gets_a_profile(inner: Inner) -> None:
    inner.makepyfile(
        test_raise="""
        import pytest
        import dhatc

        bytes(10)

        @pytest.mark.limit_heap(curr_blocks=0)
        def test_raises():
            global kept
            kept = bytes(50)
            raise ValueError("boom")

        @pytest.mark.limit_heap(total_blocks=0)
        def test_skips():
            pytest.skip("not today")

        @pytest.mark.limit_heap(total_blocks=100)
        def test_expects_an_error():
            with pytest.raises(KeyError):
                {}["x"]

        def test_next_test_is_profiled_afresh(dhatc_heap):
            assert dhatc.HeapStats.get().total_blocks == 0

        def test_plain_assert_fails(dhatc_heap):
            b = bytes(100)
            assert dhatc.HeapStats.get().total_blocks == 5
        """
    )
    result = inner.run()
    result.assert_outcomes(failed=2, passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "E       ValueError: boom",
            "*- dhatc heap profile -*",
            "The test also exceeded its heap limits:",
            "  curr_blocks: * still live when the test returned (t-end), over the limit of 0 blocks",
            "    top program points (innermost Python frame):",
            "*DHAT file: */.dhatc/test_raise.py__test_raises.json",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: assert 1 == 5",
            "*- dhatc heap profile -*",
            "DHAT file: */.dhatc/test_raise.py__test_plain_assert_fails.json",
            "  (open it in Valgrind's DHAT viewer, dh_view.html)",
        ]
    )
    assert inner.dhat_files() == [
        "test_raise.py__test_plain_assert_fails.json",
        "test_raise.py__test_raises.json",
    ]


def test_failed_dhatc_assertion_in_the_fixture_saves_the_profile(inner: Inner) -> None:
    inner.makepyfile(
        test_assert="""
        import dhatc

        bytes(10)

        def test_counts(dhatc_heap):
            b = bytes(1000)
            stats = dhatc.HeapStats.get()
            dhatc.assert_eq(stats.total_blocks, 3, "three blocks")
        """
    )
    result = inner.run()
    result.assert_outcomes(failed=1)
    path = inner.path / ".dhatc" / "test_assert.py__test_counts.json"
    result.stdout.fnmatch_lines(
        [
            ">       dhatc.assert_eq(stats.total_blocks, 3, \"three blocks\")",
            "E       AssertionError: dhat: assertion failed: `(left == right)`",
            "E         left: `1`,",
            "E        right: `3`: three blocks",
            "*- Captured stderr call -*",
            "dhat: Total:     1,097 bytes in 2 blocks",
            "dhat: At t-gmax: 1,097 bytes in 2 blocks",
            "dhat: At t-end:  1,097 bytes in 2 blocks",
            f"dhat: The data has been saved to {path}, and is viewable with dhat/dh_view.html",
            "*- dhatc heap profile -*",
            f"DHAT file: {path}",
        ]
    )
    data = dhat_helpers.load(path)
    assert not any(  # rewritten without it
        TRAMPOLINE_FILE in frame for stack in dhat_helpers.all_frames(data) for frame in stack
    )
    assert sum(pp["tbk"] for pp in data["pps"]) == 2


def test_a_file_from_an_earlier_failure_goes_when_the_test_passes(inner: Inner) -> None:
    test_file = inner.makepyfile(
        test_fixed="""
        import pytest

        @pytest.mark.limit_heap(total_blocks=0)
        def test_it():
            bytes(100)
        """
    )
    inner.run().assert_outcomes(failed=1)
    assert inner.dhat_files() == ["test_fixed.py__test_it.json"]

    test_file.write_text(test_file.read_text().replace("bytes(100)", "pass"))
    inner.run().assert_outcomes(passed=1)
    assert inner.dhat_files() == []


# ---- where files go ------------------------------------------------------------------


@pytest.mark.parametrize(
    "nodeid, name",
    [
        ("test_a.py::test_x", "test_a.py__test_x.json"),
        ("test_a.py::TestK::test_x[1-b=c,d+e.f]", "test_a.py__TestK__test_x[1-b=c,d+e.f].json"),
        ("test_a.py::test_x[a b]", f"test_a.py__test_x[a_b]-{short_hash('test_a.py::test_x[a b]')}.json"),
        ("tests/test_a.py::test_x", f"tests_test_a.py__test_x-{short_hash('tests/test_a.py::test_x')}.json"),
        # Underscores next to '::' could meet another id's: these get a hash too.
        ("test_a.py::test__x", f"test_a.py__test__x-{short_hash('test_a.py::test__x')}.json"),
        ("test_a.py::Test_::x", f"test_a.py__Test___x-{short_hash('test_a.py::Test_::x')}.json"),
        ("test_a.py::t[" + "x" * 200 + "]",
         f"test_a.py__t[{'x' * 147}-{short_hash('test_a.py::t[' + 'x' * 200 + ']')}.json"),
    ],
)
def test_file_names_of_node_ids(nodeid: str, name: str) -> None:
    assert file_name(nodeid) == name


def test_tests_whose_ids_differ_only_in_awkward_characters_get_their_own_files(
    inner: Inner,
) -> None:
    # Before: both were test_p.py__test_it[a_b].json, and the second test's
    # removal of its stale file took the first test's file away.
    inner.makepyfile(
        test_p="""
        import pytest

        @pytest.mark.limit_heap(total_blocks=0)
        @pytest.mark.parametrize("case", ["a b", "a_b", "a/b"])
        def test_it(case):
            bytes(100)
        """
    )
    inner.run().assert_outcomes(failed=3)
    assert inner.dhat_files() == sorted([
        "test_p.py__test_it[a_b].json",
        f"test_p.py__test_it[a_b]-{short_hash('test_p.py::test_it[a b]')}.json",
        f"test_p.py__test_it[a_b]-{short_hash('test_p.py::test_it[a/b]')}.json",
    ])


@pytest.mark.parametrize("how", ["option", "ini"])
def test_dhatc_dir_sets_where_files_go(inner: Inner, how: str) -> None:
    inner.makepyfile(
        test_dir="""
        import pytest

        class TestK:
            @pytest.mark.limit_heap(total_blocks=0)
            @pytest.mark.parametrize("case", ["a b/c"])
            def test_it(self, case):
                bytes(100)
        """
    )
    if how == "ini":
        inner.makeini("[pytest]\ndhatc_dir = profiles/heap\n")
        args: tuple = ()
    else:
        args = ("--dhatc-dir", "profiles/heap")
    inner.run(*args).assert_outcomes(failed=1)
    assert inner.dhat_files("profiles/heap") == [
        f"test_dir.py__TestK__test_it[a_b_c]-{short_hash('test_dir.py::TestK::test_it[a b/c]')}.json"
    ]
    assert not (inner.path / ".dhatc").exists()


USES_THE_DIRECTORY = """
import pytest

def test_fixture(dhatc_heap):
    pass

@pytest.mark.limit_heap(total_blocks=0)
def test_over():
    bytes(100)
"""


@pytest.mark.parametrize(
    "how, given, problem",
    [
        ("option", "/dev/null/x", "/dev/null is not a directory"),
        ("option", "a_file", "{path}/a_file is not a directory"),
        ("option", "a_file/sub", "{path}/a_file is not a directory"),
        # Not writable, even by root.
        ("option", "/proc/self/x", "/proc/*/x cannot be created: /proc/* is not writable"),
        ("ini", "a_file/sub", "{path}/a_file is not a directory"),
    ],
)
def test_a_directory_that_cannot_hold_files_is_a_usage_error(
    inner: Inner, given: str, problem: str, how: str
) -> None:
    # Before: tests using the fixture errored at setup with a NotADirectoryError
    # traceback from the fixture, and the others ran on.
    (inner.path / "a_file").write_text("not a directory\n")
    inner.makepyfile(test_dir=USES_THE_DIRECTORY)
    if how == "ini":
        inner.makeini(f"[pytest]\ndhatc_dir = {given}\n")
        where = f"the dhatc_dir ini option ({given})"
        result = inner.run()
    else:
        where = f"--dhatc-dir {given}"
        result = inner.run("--dhatc-dir", given)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: dhatc: {where}: {problem.format(path=inner.path)}; name a directory "
         "the DHAT files can be written to"]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert (inner.path / "a_file").read_text() == "not a directory\n"


def test_an_unwritable_directory_is_a_usage_error(inner: Inner) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write in a directory without write permission")
    locked = inner.path / "locked"
    locked.mkdir(mode=0o555)
    inner.makepyfile(test_dir=USES_THE_DIRECTORY)
    for given, problem in [
        ("locked", f"{locked} is not writable"),
        ("locked/sub", f"{locked}/sub cannot be created: {locked} is not writable"),
    ]:
        result = inner.run("--dhatc-dir", given)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: dhatc: --dhatc-dir {given}: {problem}; *"])


def test_a_default_directory_that_cannot_be_made_fails_only_the_tests_that_need_it(
    inner: Inner,
) -> None:
    # The default (.dhatc) is not checked up front: a session that never
    # needs it must run wherever it is started.
    (inner.path / ".dhatc").write_text("a file where the directory would go\n")
    inner.makepyfile(test_dir=USES_THE_DIRECTORY + "\ndef test_plain():\n    bytes(100)\n")
    result = inner.run("-rA")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            f"dhatc: cannot create the directory {inner.path}/.dhatc (File exists); "
            "set --dhatc-dir to a directory dhatc can write to",
            "ERROR test_dir.py::test_fixture - Failed: dhatc: cannot create the directory *",
            "  the DHAT file could not be written: *",
            "PASSED test_dir.py::test_plain",
        ]
    )
    assert "Traceback" not in result.stdout.str()


# ---- default limits, opting out ---------------------------------------------------------


def test_default_limits_apply_to_every_test_and_markers_override_them(inner: Inner) -> None:
    inner.makepyfile(
        test_default="""
        import pytest
        import dhatc

        bytes(10)

        def test_small():
            bytes(100)

        def test_big():
            bytes(10_000)

        @pytest.mark.limit_heap(total_bytes="20 KB")
        def test_big_but_allowed():
            bytes(10_000)

        @pytest.mark.limit_heap(total_bytes="20 KB")
        def test_leaks_despite_its_marker():
            global kept
            kept = bytes(10)

        @pytest.mark.no_heap_profile
        def test_runs_its_own_profiler():
            with dhatc.Profiler(testing=True):
                pass
        """
    )
    result = inner.run("--dhatc-limit", "total_bytes=1 KiB, curr_blocks=0", "-rA")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_default.py::test_small",
            "FAILED test_default.py::test_big - *",
            "PASSED test_default.py::test_big_but_allowed",
            "FAILED test_default.py::test_leaks_despite_its_marker - *",
            "PASSED test_default.py::test_runs_its_own_profiler",
        ]
    )
    inner.makeini("[pytest]\ndhatc_limit = total_bytes=1 KiB, curr_blocks=0\n")
    inner.run().assert_outcomes(passed=3, failed=2)


def test_a_bad_default_limit_is_a_usage_error(inner: Inner) -> None:
    inner.makepyfile("def test_x(): pass")
    result = inner.run("--dhatc-limit", "max_bytes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: dhatc: --dhatc-limit: 'max_bytes' is not FIGURE=VALUE, e.g. \"max_bytes=10 MiB\""]
    )


def test_a_test_with_its_own_profiler_is_told_to_opt_out(inner: Inner) -> None:
    inner.makepyfile(
        test_own="""
        import dhatc

        def test_own_profiler():
            with dhatc.Profiler(testing=True):
                pass
        """
    )
    result = inner.run("--dhatc-profile-all")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*ProfilerAlreadyRunningError: dhat: creating a profiler while a profiler is already running",
            "*- dhatc heap profile -*",
            "This test starts a dhatc.Profiler while the dhatc pytest plugin profiles it (only one "
            "runs at a time).  Mark it @pytest.mark.no_heap_profile to keep the plugin away from it.",
        ]
    )
    inner.run().assert_outcomes(passed=1)  # without --dhatc-profile-all: untouched


def test_profilers_that_meet_are_told_apart_by_the_error_type_not_its_text(inner: Inner) -> None:
    inner.makepyfile(
        test_meet="""
        import pytest
        import dhatc

        @pytest.fixture
        def running_profiler():
            with dhatc.Profiler(testing=True):
                yield

        def test_under_a_running_profiler(running_profiler):
            pass

        def test_same_words_other_error():
            raise RuntimeError("dhat: creating a profiler while a profiler is already running")
        """
    )
    result = inner.run("--dhatc-profile-all")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*ProfilerAlreadyRunningError: dhat: creating a profiler while a profiler is already running",
            "*- dhatc heap profile -*",
            "The dhatc pytest plugin could not profile this test: another dhatc.Profiler was already "
            "running (only one runs at a time).  Stop it before the test, or mark the test "
            "@pytest.mark.no_heap_profile.",
        ]
    )
    # A RuntimeError that only says the same is the test's own failure.
    assert result.stdout.str().count("- dhatc heap profile -") == 2
    result.stdout.fnmatch_lines(
        ["E       RuntimeError: dhat: creating a profiler while a profiler is already running",
         "*- dhatc heap profile -*",
         "DHAT file: */.dhatc/test_meet.py__test_same_words_other_error.json"]
    )


# ---- the session summary and xdist ------------------------------------------------------


SESSION = """\
import pytest

bytes(10)


def test_a():
    bytes(1000)


def test_b():
    global kept
    kept = bytes(5000)


@pytest.mark.limit_heap(total_blocks=0)
def test_c():
    bytes(100)


def test_d():
    pass
"""


def test_profile_all_prints_the_tests_that_allocate_most(inner: Inner) -> None:
    inner.makepyfile(test_session=SESSION)
    result = inner.run("--dhatc-profile-all", "--dhatc-top", "3")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= dhatc: 3 of 4 profiled tests, most total_bytes first =*",
            "total bytes  total blocks  peak bytes  peak blocks  end bytes  end blocks  test",
            "      5,033             1       5,033            1      5,033           1  test_session.py::test_b",
            "      1,033             1       1,033            1          0           0  test_session.py::test_a",
            "        133             1         133            1          0           0  test_session.py::test_c",
        ]
    )
    by_end = inner.run("--dhatc-profile-all", "--dhatc-top", "1", "--dhatc-sort", "curr_blocks")
    by_end.stdout.fnmatch_lines(
        [
            "*= dhatc: 1 of 4 profiled tests, most curr_blocks first =*",
            "*5,033           1  test_session.py::test_b",
        ]
    )
    assert "dhatc:" not in inner.run().stdout.str().split("FAILURES")[0]  # no summary without the option


def test_works_under_xdist(inner: Inner) -> None:
    pytest.importorskip("xdist")
    inner.makepyfile(test_session=SESSION)
    inner.makepyfile(
        test_more="""
        import pytest
        import dhatc

        bytes(10)

        @pytest.mark.parametrize("n", [2, 3000])
        def test_exact(dhatc_heap, n):
            bytes(n)
            assert dhatc.HeapStats.get().total_bytes == n + 33

        @pytest.mark.limit_heap(curr_blocks=0)
        def test_leak():
            global kept
            kept = bytes(64)
        """
    )
    result = inner.run("-n", "2", "--dhatc-profile-all", "--dhatc-top", "1")
    result.assert_outcomes(passed=5, failed=2)
    # The controller prints the figures the two workers sent with their reports.
    result.stdout.fnmatch_lines(
        [
            "*= dhatc: 1 of 7 profiled tests, most total_bytes first =*",
            "total bytes  total blocks  peak bytes  peak blocks  end bytes  end blocks  test",
            "      5,033             1       5,033            1      5,033           1  test_session.py::test_b",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "  curr_blocks: 1 block still live when the test returned (t-end), over the limit of 0 blocks",
            "      1 block, 97 bytes  test_leak (test_more.py:14)",
            "  total_blocks: 1 block allocated in total, over the limit of 0 blocks",
            "      1 block, 133 bytes  test_c (test_session.py:17)",
        ]
    )
    assert inner.dhat_files() == [
        "test_more.py__test_leak.json",
        "test_session.py__test_c.json",
    ]


def test_the_entry_point_module_exposes_every_hook_and_fixture():
    """pytest loads dhatc.pytest_plugin; the hooks live in _pytest_hooks."""
    import dhatc._pytest_hooks as impl
    import dhatc.pytest_plugin as entry

    wanted = {name for name in vars(impl) if name.startswith("pytest_")} | {"dhatc_heap"}
    assert entry.SUPPORTED
    assert {name: getattr(entry, name, None) for name in wanted} == {
        name: getattr(impl, name) for name in wanted
    }


def test_under_pytest_before_7_the_plugin_only_warns(run_python):
    """Installed next to an older pytest, dhatc must not keep pytest from
    starting: without pytest.StashKey (pytest < 7) the entry point module
    imports nothing of the plugin and warns once, at configure time."""
    proc = run_python(
        """
        import warnings
        import pytest
        del pytest.StashKey  # as in pytest 6
        import dhatc.pytest_plugin as plugin
        print(plugin.SUPPORTED, sorted(n for n in vars(plugin) if n.startswith(("pytest_", "dhatc"))))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plugin.pytest_configure(None)
        print([(w.category.__name__, str(w.message).split(";")[0]) for w in caught])
        """
    )
    assert proc.stdout.splitlines() == [
        "False ['pytest_configure']",
        f"[('PytestWarning', 'dhatc: the pytest plugin needs pytest >= 7 (this is {pytest.__version__})')]",
    ]
