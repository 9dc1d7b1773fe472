"""The pytest plugin's leak check that tells leaks from caches
(``limit_heap(..., repeat=N)``) and its baselines (``--dhatc-save-baseline``,
``--dhatc-baseline``, ``--dhatc-max-increase``).

Inner sessions run in a fresh interpreter (the `inner` fixture).  On 64-bit
CPython, bytes(n) for n >= 2 is one block of n + 33 bytes; inner modules call
every function once at import (3.9/3.10 keep a spare frame per function once
it has run, and intern a name on the first call of bytes()).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

import dhat_helpers
from dhatc._dhat_reader import load
from plugin_sessions import Inner, inner, line_of, lines  # noqa: F401 (fixture)
from test_pytest_plugin_kinds import summary_rows

# ---- repeat= ------------------------------------------------------------------------

REPEAT = """\
import pytest

bytes(10)
_cache = {}
kept = []


def lookup(key):
    if key not in _cache:
        _cache[key] = bytes(4096)  # CACHE
    return _cache[key]


lookup("warm"), kept.append(None), kept.clear()


@pytest.mark.limit_heap(curr_blocks=0, repeat=2)
def test_a_cache_filled_by_the_first_run_is_not_a_leak():
    lookup("a")


@pytest.mark.limit_heap(curr_blocks=0)
def test_without_repeat_it_looks_like_one():
    lookup("b")


@pytest.mark.limit_heap(curr_blocks=0, repeat=3)
def test_a_leak_leaks_on_every_run():
    kept.append(bytes(100))  # LEAK
"""


def test_repeat_checks_what_the_last_run_leaves_live(inner: Inner) -> None:
    inner.makepyfile(test_repeat=REPEAT)
    result = inner.run("-rA", "--dhatc-profile-all", "-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_repeat.py::test_a_cache_filled_by_the_first_run_is_not_a_leak",
            "FAILED test_repeat.py::test_without_repeat_it_looks_like_one - *",
            "FAILED test_repeat.py::test_a_leak_leaks_on_every_run - *",
            f"      1 block, 4,129 bytes  lookup (test_repeat.py:{line_of(REPEAT, 'CACHE')})",
        ]
    )
    # Only the last run's block: the two before it are older than the profile.
    block = [
        "dhatc: test_repeat.py::test_a_leak_leaks_on_every_run exceeded its heap limits:",
        "  curr_blocks: 1 block still live when the test returned (t-end), over the limit of 0 blocks",
        "    top program points (innermost Python frame):",
        f"      1 block, 133 bytes  test_a_leak_leaks_on_every_run (test_repeat.py:{line_of(REPEAT, 'LEAK')})",
    ]
    out = lines(result)
    start = out.index(block[0])
    assert out[start : start + len(block)] == block
    # Every figure is the last run's.
    assert summary_rows(result) == {
        "test_repeat.py::test_a_cache_filled_by_the_first_run_is_not_a_leak": [0, 0, 0, 0, 0, 0],
        "test_repeat.py::test_without_repeat_it_looks_like_one": [4129, 1, 4129, 1, 4129, 1],
        "test_repeat.py::test_a_leak_leaks_on_every_run": [133, 1, 133, 1, 133, 1],
    }


REPEAT_KINDS = """\
import unittest
import pytest

bytes(10)
_cache = {}


def lookup(key):
    if key not in _cache:
        _cache[key] = bytes(4096)
    return _cache[key]


lookup("warm")


class TestCache(unittest.TestCase):
    @pytest.mark.limit_heap(curr_blocks=0, repeat=2)
    def test_method(self):
        lookup("method")


@pytest.mark.limit_heap(curr_blocks=0, repeat=2)
async def test_coroutine():
    lookup("coroutine")
"""


@pytest.mark.skipif(importlib.util.find_spec("pytest_asyncio") is None, reason="needs pytest-asyncio")
def test_repeat_runs_unittest_methods_and_coroutines_again_too(inner: Inner) -> None:
    inner.makepyfile(test_kinds=REPEAT_KINDS)
    result = inner.run("-rA", "-o", "asyncio_mode=auto", "--dhatc-profile-all")
    result.assert_outcomes(passed=2)
    rows = summary_rows(result)
    assert rows["test_kinds.py::TestCache::test_method"] == [0, 0, 0, 0, 0, 0]
    assert rows["test_kinds.py::test_coroutine"] == [0, 0, 0, 0, 0, 0]
    result = inner.run("-rA", "-o", "asyncio_mode=auto", "-p", "no:anyio")
    result.assert_outcomes(passed=2)
    (inner.path / "test_kinds.py").write_text(REPEAT_KINDS.replace("repeat=2", "repeat=1"))
    inner.run("-o", "asyncio_mode=auto").assert_outcomes(failed=2)


def test_bad_repeats_are_setup_errors(inner: Inner) -> None:
    inner.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.limit_heap(curr_blocks=0, repeat=0)
        def test_zero(): pass

        @pytest.mark.limit_heap(curr_blocks=0, repeat="2")
        def test_text(): pass

        @pytest.mark.limit_heap(curr_blocks=0, repeat=True)
        def test_bool(): pass

        @pytest.mark.limit_heap(repeat=2)
        def test_nothing_to_check(): pass

        @pytest.mark.limit_heap(curr_blocks=0, repeat=2)
        def test_with_the_fixture(dhatc_heap): pass
        """
    )
    result = inner.run("-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(errors=5)
    must = "repeat must be an int >= 1 (how many times the test body runs; the last run is measured)"
    result.stdout.fnmatch_lines_random(
        [
            f"dhatc: test_bad.py::test_zero: @pytest.mark.limit_heap: {must}, got 0",
            f"dhatc: test_bad.py::test_text: @pytest.mark.limit_heap: {must}, got '2'",
            f"dhatc: test_bad.py::test_bool: @pytest.mark.limit_heap: {must}, got True",
            "dhatc: test_bad.py::test_nothing_to_check: @pytest.mark.limit_heap(repeat=2) needs a "
            "limit to check on the last run, any of total_blocks, *",
            "dhatc: test_bad.py::test_with_the_fixture: repeat= and the dhatc_heap fixture do not "
            "go together: only the last run is profiled, so dhatc.HeapStats.get() would fail in "
            "the others",
        ]
    )
    assert "Traceback" not in result.stdout.str()


# ---- baselines ----------------------------------------------------------------------

GROWING = """\
import pytest

bytes(10)
_kept = [None] * 10


def build(n):
    i = 0
    while i < n:  # (no range iterator: only the blocks below)
        _kept[i] = bytes(1000)  # BUILD
        i += 1


build(0)


def test_build():
    build(BLOCKS)  # CALL


def test_steady():
    bytes(100)
"""

NEW_TEST = """

def test_new():
    bytes(100)
"""


def growing(blocks: int, extra: str = "") -> str:
    return GROWING.replace("BLOCKS", str(blocks)) + extra


def figure_lines(name: str, meaning: str, new: str, old: str, sort: str) -> list:
    return [
        f"  {name}: {new} {meaning}, {old} in the baseline (+66.7%)",
        "    program points that grew most (innermost Python frame):",
        f"      {sort}  build (test_grow.py:{line_of(GROWING, 'BUILD')})",
    ]


def test_a_test_that_grew_past_its_baseline_fails_naming_the_figures_and_lines(inner: Inner) -> None:
    args = ("-p", "no:asyncio", "-p", "no:anyio")
    inner.makepyfile(test_grow=growing(3))
    saved = inner.run(*args, "--dhatc-save-baseline", "base")
    saved.assert_outcomes(passed=2)
    saved.stdout.fnmatch_lines([f"dhatc: baseline of 2 tests written to {inner.path}/base"])
    assert sorted(p.name for p in (inner.path / "base").iterdir()) == [
        "test_grow.py__test_build.json",
        "test_grow.py__test_steady.json",
    ]
    # An ordinary DHAT file, its paths relative to the rootdir (portable).
    baseline = load(inner.path / "base" / "test_grow.py__test_build.json")
    assert [(pp.frames[1:], pp.total_bytes, pp.end_blocks) for pp in baseline.pps] == [
        ((f"build (test_grow.py:{line_of(GROWING, 'BUILD')})",
          f"test_build (test_grow.py:{line_of(GROWING, 'CALL')})"), 3099, 3)
    ]

    same = inner.run(*args, "--dhatc-baseline", "base")
    same.assert_outcomes(passed=2)
    same.stdout.fnmatch_lines([f"dhatc: 2 tests compared with the baseline in {inner.path}/base"])

    inner.makepyfile(test_grow=growing(5, NEW_TEST))
    grown = inner.run(*args, "--dhatc-baseline", "base", "--dhatc-max-increase", "50%")
    grown.assert_outcomes(passed=2, failed=1)
    path = inner.path / ".dhatc" / "test_grow.py__test_build.json"
    block = [
        "dhatc: test_grow.py::test_build grew past its baseline (--dhatc-max-increase 50%):",
        *figure_lines("total_blocks", "allocated in total", "5 blocks", "3 blocks", "+2 blocks, +2,066 bytes"),
        *figure_lines("total_bytes", "allocated in total", "5,165 bytes (5.04 KiB)", "3,099 bytes (3.03 KiB)",
                      "+2,066 bytes, +2 blocks"),
        *figure_lines("max_blocks", "live at the peak (t-gmax)", "5 blocks", "3 blocks", "+2 blocks, +2,066 bytes"),
        *figure_lines("max_bytes", "live at the peak (t-gmax)", "5,165 bytes (5.04 KiB)",
                      "3,099 bytes (3.03 KiB)", "+2,066 bytes, +2 blocks"),
        *figure_lines("curr_blocks", "still live when the test returned (t-end)", "5 blocks", "3 blocks",
                      "+2 blocks, +2,066 bytes"),
        *figure_lines("curr_bytes", "still live when the test returned (t-end)", "5,165 bytes (5.04 KiB)",
                      "3,099 bytes (3.03 KiB)", "+2,066 bytes, +2 blocks"),
        f"  baseline: {inner.path}/base/test_grow.py__test_build.json",
        f"  DHAT file: {path}",
        "  (open it in Valgrind's DHAT viewer, dh_view.html; sort by 'Total (blocks)' / "
        "'Total (bytes)' / 'At t-gmax (bytes)' / 'At t-end (bytes)')",
    ]
    out = lines(grown)
    start = out.index(block[0])
    assert out[start : start + len(block)] == block
    grown.stdout.fnmatch_lines(
        [f"dhatc: 2 tests compared with the baseline in {inner.path}/base; 1 had none there"]
    )
    # Growth within the allowance passes.
    inner.run(*args, "--dhatc-baseline", "base", "--dhatc-max-increase", "66.7").assert_outcomes(passed=3)
    inner.run(*args, "--dhatc-baseline", "base", "--dhatc-max-increase", "66.6").assert_outcomes(
        passed=2, failed=1
    )


def test_one_directory_for_both_keeps_the_baseline_of_a_test_that_grew(inner: Inner) -> None:
    args = ("-p", "no:asyncio", "-p", "no:anyio", "--dhatc-baseline", "base", "--dhatc-save-baseline", "base")
    inner.makepyfile(test_grow=growing(3))
    inner.run("-p", "no:asyncio", "--dhatc-save-baseline", "base").assert_outcomes(passed=2)
    before = (inner.path / "base" / "test_grow.py__test_build.json").read_text()
    inner.makepyfile(test_grow=growing(5))
    inner.run(*args).assert_outcomes(passed=1, failed=1)
    assert (inner.path / "base" / "test_grow.py__test_build.json").read_text() == before
    inner.makepyfile(test_grow=growing(2))  # shrank: passes, and is the baseline from now on
    inner.run(*args).assert_outcomes(passed=2)
    inner.makepyfile(test_grow=growing(3))
    inner.run(*args).assert_outcomes(passed=1, failed=1)


def test_baselines_work_under_xdist(inner: Inner) -> None:
    pytest.importorskip("xdist")
    inner.makepyfile(test_grow=growing(3))
    inner.run("-n", "2", "--dhatc-save-baseline", "base").assert_outcomes(passed=2)
    inner.makepyfile(test_grow=growing(4))
    result = inner.run("-n", "2", "--dhatc-baseline", "base")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "dhatc: test_grow.py::test_build grew past its baseline (--dhatc-max-increase 0%):",
            f"dhatc: 2 tests compared with the baseline in {inner.path}/base",
        ]
    )


def test_bad_baselines_say_what_is_wrong(inner: Inner) -> None:
    args = ("-p", "no:asyncio", "-p", "no:anyio")
    inner.makepyfile(test_grow=growing(3))
    for options, message in [
        (("--dhatc-baseline", "nowhere"),
         f"ERROR: dhatc: --dhatc-baseline nowhere: {inner.path}/nowhere does not exist; write a "
         "baseline there first with --dhatc-save-baseline"),
        (("--dhatc-save-baseline", "/dev/null/x"),
         "ERROR: dhatc: --dhatc-save-baseline /dev/null/x: /dev/null is not a directory"),
        (("--dhatc-save-baseline", "base", "--dhatc-max-increase", "ten"),
         "ERROR: dhatc: --dhatc-max-increase: 'ten' is not a percentage; write e.g. 10 or 2.5%"),
        (("--dhatc-save-baseline", "base", "--dhatc-max-increase", "-5"),
         "ERROR: dhatc: --dhatc-max-increase: '-5' is not a percentage >= 0; write e.g. 10 or 2.5%"),
    ]:
        result = inner.run(*args, *options)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, options
        result.stderr.fnmatch_lines([message])
    assert not (inner.path / "base").exists()

    inner.run(*args, "--dhatc-save-baseline", "base").assert_outcomes(passed=2)
    broken = inner.path / "base" / "test_grow.py__test_build.json"
    broken.write_text(broken.read_text()[:100])  # cut short, as by a crash
    ad_hoc = inner.path / "base" / "test_grow.py__test_steady.json"
    data = dhat_helpers.load(ad_hoc)
    ad_hoc.write_text(json.dumps({**data, "mode": "ad-hoc"}))
    result = inner.run(*args, "--dhatc-baseline", "base")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            f"dhatc: test_grow.py::test_build could not be compared with its baseline: {broken}: *; "
            "write it again with --dhatc-save-baseline",
            f"dhatc: test_grow.py::test_steady could not be compared with its baseline: {ad_hoc}: "
            "not a heap profile with block lifetimes; write it again with --dhatc-save-baseline",
        ]
    )
    assert "Traceback" not in result.stdout.str()
