"""The pytest plugin on every kind of test: unittest.TestCase methods, async
tests (pytest-asyncio, anyio), doctests, and other plugins' items.

Inner sessions run in a fresh interpreter (the `inner` fixture).  The exact
figures are those the plain-function tests see (tests/test_pytest_plugin.py):
on 64-bit CPython, bytes(n) for n >= 2 is one block of n + 33 bytes, on every
supported version; inner modules call bytes() once at import (3.9/3.10
intern a name on the first call).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Dict, List

import pytest

from plugin_sessions import Inner, inner, line_of, lines  # noqa: F401 (fixture)

needs_asyncio_plugin = pytest.mark.skipif(
    importlib.util.find_spec("pytest_asyncio") is None, reason="needs pytest-asyncio (test extra)"
)
needs_anyio = pytest.mark.skipif(
    importlib.util.find_spec("anyio") is None, reason="needs anyio (test extra)"
)


TRAMPOLINE_LABEL = "[calling the test function] (dhatc pytest plugin)"


def without_pytest_frames(frames: List[str], dhatc_too: bool = True) -> bool:
    """True if no frame is pytest's or pluggy's code (or dhatc's)."""
    own = r"_pytest|pluggy|dhatc" if dhatc_too else r"_pytest|pluggy"
    return not any(
        re.search(rf"[/\\]({own})[/\\]", frame) or (dhatc_too and "dhatc pytest plugin" in frame)
        for frame in frames
    )


def method(qualified_name: str) -> str:
    """How a frame names a method: by its qualified name from 3.11 (co_qualname),
    by its bare name before."""
    return qualified_name if sys.version_info >= (3, 11) else qualified_name.rsplit(".", 1)[-1]


def outcomes(result: pytest.RunResult) -> Dict[str, int]:
    """The session's outcome counts, warnings aside (without the plugin, its
    markers are unknown ones)."""
    return {k: n for k, n in result.parseoutcomes().items() if not k.startswith("warning")}


def summary_rows(result: pytest.RunResult) -> Dict[str, List[int]]:
    """The --dhatc-profile-all table: node id -> the six figures, as printed."""
    rows: Dict[str, List[int]] = {}
    for line in lines(result):
        match = re.match(r"^\s*((?:[\d,]+\s+){6})(\S+)$", line)
        if match:
            rows[match[2]] = [int(n.replace(",", "")) for n in match[1].split()]
    return rows


# ---- unittest.TestCase ----------------------------------------------------------------

UNIT = """\
import threading
import unittest
import pytest
import dhatc

bytes(10)
_kept = [None]


def worker():
    bytes(1_000_000)


class TestExact(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.big = [bytes(1000) for _ in range(100)]

    def setUp(self):
        self.data = [bytes(100) for _ in range(100)]
        self.addCleanup(lambda: [bytes(100) for _ in range(100)])

    def tearDown(self):
        self.data += [bytes(100) for _ in range(100)]

    @pytest.mark.usefixtures("dhatc_heap")
    def test_issue_example(self):
        b1 = bytes(1000)
        b2 = bytes(2000)
        del b1
        s = dhatc.HeapStats.get()
        assert (s.total_blocks, s.total_bytes) == (2, 3066), s
        assert (s.max_blocks, s.max_bytes) == (2, 3066), s
        assert (s.curr_blocks, s.curr_bytes) == (1, 2033), s

    @pytest.mark.limit_heap(total_blocks=0)
    def test_nothing_allocates_nothing(self):
        pass

    @pytest.mark.limit_heap(total_bytes="500 KB")
    def test_other_threads_do_not_count(self):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()

    @pytest.mark.limit_heap(curr_blocks=0)
    def test_leaks(self):
        _kept[0] = bytes(5000)  # LEAK

    @unittest.skip("not today")
    @pytest.mark.limit_heap(total_blocks=0)
    def test_skipped(self):
        bytes(100)


class TestAsync(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.data = [bytes(100) for _ in range(100)]

    @pytest.mark.usefixtures("dhatc_heap")
    async def test_issue_example(self):
        b1 = bytes(1000)
        b2 = bytes(2000)
        del b1
        s = dhatc.HeapStats.get()
        assert (s.total_blocks, s.total_bytes) == (2, 3066), s
        assert (s.curr_blocks, s.curr_bytes) == (1, 2033), s

    @pytest.mark.limit_heap(total_blocks=0)
    async def test_nothing_allocates_nothing(self):
        pass
"""


def test_unittest_methods_are_measured_exactly_and_only_their_call(inner: Inner) -> None:
    # Before: every limited method failed as "not heap-profiled", and
    # --dhatc-profile-all measured none of them.
    inner.makepyfile(test_unit=UNIT)
    result = inner.run("-rA")
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    path = inner.path / ".dhatc" / "test_unit.py__TestExact__test_leaks.json"
    block = [
        "dhatc: test_unit.py::TestExact::test_leaks exceeded its heap limits:",
        "  curr_blocks: 1 block still live when the test returned (t-end), over the limit of 0 blocks",
        "    top program points (innermost Python frame):",
        f"      1 block, 5,033 bytes  {method('TestExact.test_leaks')} (test_unit.py:{line_of(UNIT, 'LEAK')})",
        f"  DHAT file: {path}",
        "  (open it in Valgrind's DHAT viewer, dh_view.html; sort by 'At t-end (bytes)')",
    ]
    out = lines(result)
    start = out.index(block[0])
    assert out[start : start + len(block)] == block
    assert out.count(block[0]) == 1
    # The stack ends at the test method: no unittest, pytest or dhatc frame.
    source = inner.path / "test_unit.py"
    assert [(frames[1:], pp["tb"], pp["eb"]) for frames, pp in inner.program_points(path.name)] == [
        ([f"{method('TestExact.test_leaks')} ({source}:{line_of(UNIT, 'LEAK')})"], 5033, 5033)
    ]
    assert inner.dhat_files() == [path.name]

    profiled = inner.run("--dhatc-profile-all", "-k", "issue or nothing")
    rows = summary_rows(profiled)
    assert rows["test_unit.py::TestExact::test_nothing_allocates_nothing"] == [0] * 6
    assert rows["test_unit.py::TestAsync::test_nothing_allocates_nothing"] == [0] * 6
    profiled.stdout.fnmatch_lines(["*= dhatc: 4 of 4 profiled tests, most total_bytes first =*"])


UNIT_LEVELS = """\
import unittest
import pytest

bytes(10)
pytestmark = pytest.mark.limit_heap(total_blocks=0, total_bytes=0)


@pytest.mark.limit_heap(total_bytes=5000)
class TestLevels(unittest.TestCase):
    @pytest.mark.limit_heap(total_blocks=1)
    def test_function_allows_a_block(self):
        bytes(1000)

    def test_class_allows_bytes_not_blocks(self):
        bytes(1000)


class TestModule(unittest.TestCase):
    def test_module_limits(self):
        pass

    def test_big(self):
        bytes(2000)
"""


def test_unittest_markers_combine_and_options_apply_as_for_functions(inner: Inner) -> None:
    inner.makepyfile(test_levels=UNIT_LEVELS)
    result = inner.run("-rA", "-k", "not big")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_levels.py::TestModule::test_module_limits",
            "PASSED test_levels.py::TestLevels::test_function_allows_a_block",
            "FAILED test_levels.py::TestLevels::test_class_allows_bytes_not_blocks - *",
            "  total_blocks: 1 block allocated in total, over the limit of 0 blocks",
        ]
    )
    inner.makepyfile(test_levels=UNIT_LEVELS.replace("pytestmark", "_no_marks"))
    limited = inner.run("-rA", "--dhatc-limit", "total_bytes=1 KiB", "--dhatc-profile-all")
    limited.assert_outcomes(passed=3, failed=1)
    limited.stdout.fnmatch_lines_random(
        [
            "FAILED test_levels.py::TestModule::test_big - *",
            "  total_bytes: 2,033 bytes (1.99 KiB) allocated in total, over the limit of 1,024 bytes (1 KiB)",
        ]
    )
    assert summary_rows(limited) == {
        "test_levels.py::TestModule::test_big": [2033, 1, 2033, 1, 0, 0],
        "test_levels.py::TestLevels::test_function_allows_a_block": [1033, 1, 1033, 1, 0, 0],
        "test_levels.py::TestLevels::test_class_allows_bytes_not_blocks": [1033, 1, 1033, 1, 0, 0],
        "test_levels.py::TestModule::test_module_limits": [0, 0, 0, 0, 0, 0],
    }


SUBTESTS = """\
import unittest
import pytest

bytes(10)
kept = [None, None, None]


class TestSub(unittest.TestCase):
    def test_passing_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                pass

    def test_failing_subtest(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)

    @pytest.mark.limit_heap(curr_bytes="2 KB")
    def test_limit(self):
        for i in range(3):
            with self.subTest(i=i):
                kept[i] = bytes(1000)  # KEEP
"""


@pytest.mark.parametrize("threads", ["this thread", "all threads"])
def test_subtests_are_part_of_the_test_and_their_reporting_is_not(inner: Inner, threads: str) -> None:
    inner.makepyfile(test_sub=SUBTESTS)
    options = ["--dhatc-all-threads"] if threads == "all threads" else []
    plain = outcomes(inner.run("-p", "no:dhatc", "-k", "not limit"))
    profiled = inner.run("--dhatc-profile-all", "-k", "not limit", *options)
    assert outcomes(profiled) == plain  # subtests reported as without dhatc
    profiled.stdout.fnmatch_lines(["*= dhatc: 2 of 2 profiled tests, most total_bytes first =*"])

    result = inner.run("-k", "limit", *options)
    out = result.stdout.str()
    assert out.count("exceeded its heap limits") == 1  # once, for the test
    result.stdout.fnmatch_lines(
        [
            "dhatc: test_sub.py::TestSub::test_limit exceeded its heap limits:",
            "  curr_bytes: * still live when the test returned (t-end), over the limit of "
            "2,000 bytes (1.95 KiB)",
            "    top program points (innermost Python frame):",
            f"      3,099 bytes, 3 blocks*  {method('TestSub.test_limit')} (test_sub.py:{line_of(SUBTESTS, 'KEEP')})",
        ]
    )
    # What pytest does to report each subtest is not in the profile (3.11+
    # reports them while the method runs; before: thousands of blocks, tens
    # of thousands for a failing one).  With every thread profiled, each
    # subtest's report is kept until the method returns: a tuple each, in
    # dhatc's frame.
    inner.run("-k", "limit or failing", "--dhatc-limit", "total_blocks=0", *options)
    for test in ("test_limit", "test_failing_subtest"):
        for frames, _ in inner.program_points(f"test_sub.py__TestSub__{test}.json"):
            # (A block allocated as the method returned, when its frame outlives it
            # in a traceback, is named after the call.)
            frames = [f for f in frames if f != TRAMPOLINE_LABEL]
            assert without_pytest_frames(frames, dhatc_too=not options), frames


# ---- async tests ---------------------------------------------------------------------

ASYNCIO = """\
import asyncio
import pytest
import pytest_asyncio
import dhatc

bytes(10)
kept = [None, None]


@pytest_asyncio.fixture
async def big_fixture():
    data = [bytes(100) for _ in range(1000)]  # setup: not measured
    await asyncio.sleep(0)
    yield data
    data += [bytes(100) for _ in range(1000)]  # teardown: not measured


@pytest.mark.asyncio
async def test_issue_example(dhatc_heap, big_fixture):
    b1 = bytes(1000)
    b2 = bytes(2000)
    del b1
    s = dhatc.HeapStats.get()
    assert (s.total_blocks, s.total_bytes) == (2, 3066), s
    assert (s.max_blocks, s.max_bytes) == (2, 3066), s
    assert (s.curr_blocks, s.curr_bytes) == (1, 2033), s


@pytest.mark.asyncio
@pytest.mark.limit_heap(total_blocks=0)
async def test_nothing_allocates_nothing(big_fixture):
    pass


async def child():
    return bytes(5000)  # CHILD


@pytest.mark.asyncio
@pytest.mark.limit_heap(total_bytes="4 KB")
async def test_awaited_tasks_count():
    assert len(await asyncio.create_task(child())) == 5000


async def allocate_now():
    kept[0] = bytes(100_000)  # NOW


@pytest.mark.asyncio
@pytest.mark.limit_heap(total_bytes="50 KB")
async def test_what_a_task_does_while_the_test_runs_counts():
    asyncio.create_task(allocate_now())
    await asyncio.sleep(0)


async def allocate_later():
    await asyncio.sleep(0)  # its first step, while the test waits
    kept[1] = bytes(100_000)  # its second, after the test returned


@pytest.mark.asyncio
@pytest.mark.limit_heap(total_bytes="50 KB")
async def test_what_a_task_does_after_the_test_does_not_count():
    asyncio.create_task(allocate_later())
    await asyncio.sleep(0)


@pytest.mark.asyncio
@pytest.mark.limit_heap(curr_blocks=0)
async def test_raises():
    raise ValueError("boom")
"""


@needs_asyncio_plugin
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_asyncio_tests_are_measured_from_their_first_step_to_their_return(
    inner: Inner, mode: str
) -> None:
    # Before: the event loop's set-up and teardown were measured with the
    # test (test_nothing_allocates_nothing allocated dozens of blocks).
    source = ASYNCIO if mode == "strict" else ASYNCIO.replace("@pytest.mark.asyncio\n", "")
    inner.makepyfile(test_async=source)
    result = inner.run("-rA", "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_async.py::test_issue_example",
            "PASSED test_async.py::test_nothing_allocates_nothing",
            "PASSED test_async.py::test_what_a_task_does_after_the_test_does_not_count",
            "FAILED test_async.py::test_awaited_tasks_count - Failed: dhatc: *",
            "FAILED test_async.py::test_what_a_task_does_while_the_test_runs_counts - *",
            "FAILED test_async.py::test_raises - ValueError: boom",
            f"      5,033 bytes, 1 block*  child (test_async.py:{line_of(source, 'CHILD')})",
            f"      100,033 bytes, 1 block*  allocate_now (test_async.py:{line_of(source, 'NOW')})",
        ]
    )
    assert lines(result).count("dhatc: test_async.py::test_awaited_tasks_count exceeded its heap limits:") == 1
    # A test that raises keeps its error and gets its profile.
    result.stdout.fnmatch_lines(
        ["E       ValueError: boom", "*- dhatc heap profile -*", "DHAT file: */test_async.py__test_raises.json"]
    )
    # The task's block has the task's own stack; the test's stack ends at the test.
    source_path = inner.path / "test_async.py"
    pps = inner.program_points("test_async.py__test_awaited_tasks_count.json")
    child_pps = [(frames, pp) for frames, pp in pps if frames[1].startswith("child ")]
    assert [(frames[1], pp["tb"], pp["tbk"]) for frames, pp in child_pps] == [
        (f"child ({source_path}:{line_of(source, 'CHILD')})", 5033, 1)
    ]
    # Under the test's coroutine, stacks end at it; the rest is the event loop's.
    for frames, _ in pps:
        assert without_pytest_frames(frames) or "/asyncio/" in "".join(frames), frames


ANYIO = """\
import anyio
import pytest
import dhatc

bytes(10)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_issue_example(dhatc_heap):
    b1 = bytes(1000)
    b2 = bytes(2000)
    del b1
    s = dhatc.HeapStats.get()
    assert (s.total_blocks, s.total_bytes) == (2, 3066), s
    assert (s.curr_blocks, s.curr_bytes) == (1, 2033), s


@pytest.mark.anyio
@pytest.mark.limit_heap(total_blocks=0)
async def test_nothing_allocates_nothing():
    pass


async def child():
    bytes(5000)  # CHILD


@pytest.mark.anyio
@pytest.mark.limit_heap(total_bytes="4 KB")
async def test_a_task_groups_children_count():
    async with anyio.create_task_group() as group:
        group.start_soon(child)
"""


@needs_anyio
def test_anyio_tests_are_measured_from_their_first_step_to_their_return(inner: Inner) -> None:
    inner.makepyfile(test_anyio=ANYIO)
    result = inner.run("-rA", "-p", "no:asyncio")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_anyio.py::test_issue_example",
            "PASSED test_anyio.py::test_nothing_allocates_nothing",
            "FAILED test_anyio.py::test_a_task_groups_children_count - Failed: dhatc: *",
            f"      5,033 bytes, 1 block*  child (test_anyio.py:{line_of(ANYIO, 'CHILD')})",
        ]
    )


# ---- doctests --------------------------------------------------------------------------

DOCTESTS = '''\
def build():
    """
    >>> data = bytes(100_000)
    >>> len(data)
    100000
    """


def broken():
    """
    >>> 1 + 1
    3
    """
'''


def test_doctests_are_measured_as_a_whole_by_profile_all_only(inner: Inner) -> None:
    inner.makepyfile(mod=DOCTESTS)
    (inner.path / "guide.txt").write_text(">>> words = [bytes(10_000) for _ in range(5)]\n")
    args = ("--doctest-modules", "--doctest-glob", "*.txt", "-p", "no:asyncio", "-p", "no:anyio")
    result = inner.run(*args, "--dhatc-profile-all")
    result.assert_outcomes(passed=2, failed=1)
    rows = summary_rows(result)
    assert set(rows) == {"mod.py::mod.build", "mod.py::mod.broken", "guide.txt::guide.txt"}
    # The whole doctest: its examples and doctest's own work.
    assert rows["mod.py::mod.build"][0] >= 100_033
    assert rows["guide.txt::guide.txt"][0] >= 5 * 10_033
    assert inner.dhat_files() == ["mod.py__mod.broken.json"]
    result.stdout.fnmatch_lines(["*- dhatc heap profile -*", "DHAT file: */.dhatc/mod.py__mod.broken.json"])

    # Limits do not apply to them: a default limit leaves them alone, and says so.
    limited = inner.run(*args, "--dhatc-limit", "total_blocks=0")
    limited.assert_outcomes(passed=2, failed=1)
    limited.stdout.fnmatch_lines(
        [
            "dhatc: 3 tests not profiled: 3 doctests (--dhatc-limit does not apply to doctests; "
            "--dhatc-profile-all measures them)"
        ]
    )


# ---- other plugins' items -----------------------------------------------------------------

SPEC_PLUGIN = """
import pytest


class SpecItem(pytest.Item):
    def runtest(self):
        bytes(100)

    def reportinfo(self):
        return self.path, 0, self.name


class SpecFile(pytest.File):
    def collect(self):
        for name in self.path.read_text().split():
            item = SpecItem.from_parent(self, name=name)
            if name.startswith("limited"):
                item.add_marker(pytest.mark.limit_heap(total_blocks=0))
            yield item


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".spec":
        return SpecFile.from_parent(parent, path=file_path)
"""


@pytest.mark.parametrize("xdist", [False, True])
def test_items_dhatc_cannot_measure_are_counted_and_limits_on_them_fail(inner: Inner, xdist: bool) -> None:
    if xdist:
        pytest.importorskip("xdist")
    inner.makeconftest(SPEC_PLUGIN)
    (inner.path / "checks.spec").write_text("first second limited\n")
    inner.makepyfile(
        test_plain="""
        import pytest

        def test_a():
            bytes(10)

        @pytest.mark.no_heap_profile
        def test_b():
            pass
        """
    )
    result = inner.run("--dhatc-profile-all", "-p", "no:asyncio", "-p", "no:anyio",
                       *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= dhatc: 1 of 1 profiled tests, most total_bytes first =*",
            "*  test_plain.py::test_a",
            "dhatc: 3 tests not profiled: 2 of a kind dhatc does not measure (SpecItem), "
            "1 marked no_heap_profile",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "dhatc: checks.spec::limited was not heap-profiled: dhatc measures test functions "
            "(plain or async), unittest.TestCase methods and doctests, not SpecItem items; its "
            "limit_heap limits were not checked"
        ]
    )


# ---- a real unittest suite -------------------------------------------------------------

# CPython's own tests, which ship with the interpreter: unittest classes with
# subtests, mixins and (under pytest) some failures of their own.
CPYTHON_TESTS = ["test.test_shlex", "test.test_base64", "test.test_textwrap", "test.test_bisect"]


def test_a_real_unittest_suite_is_profiled_test_by_test_with_the_same_outcomes(inner: Inner) -> None:
    for module in CPYTHON_TESTS:
        pytest.importorskip(module)
    args = ("-p", "no:asyncio", "-p", "no:anyio", "--pyargs", *CPYTHON_TESTS)
    plain = outcomes(inner.run("-p", "no:dhatc", *args))
    profiled = inner.run("--dhatc-profile-all", "--dhatc-top", "1", *args)
    assert outcomes(profiled) == plain
    ran = plain.get("passed", 0) + plain.get("failed", 0)
    assert ran > 100
    profiled.stdout.fnmatch_lines([f"*= dhatc: 1 of {ran} profiled tests, most total_bytes first =*"])
    assert "not profiled" not in profiled.stdout.str()
