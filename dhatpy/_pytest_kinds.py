"""The kinds of tests, and how each is measured: the profiled call put in place
of the test's own.

* A test function: pytest calls ``item.obj(**kwargs)`` from its
  ``pytest_pyfunc_call``; :func:`profiled_function` is put there for that call
  and runs the function through a trampoline (:mod:`dhatc._pytest_call`), so
  that exactly the function's call is measured.
* An async test function (run by pytest-asyncio, anyio, or any plugin that
  calls ``item.obj`` to get the test's coroutine): ``item.obj`` becomes a
  coroutine function whose coroutine is measured from the test coroutine's
  first step to its return (:func:`dhatc._pytest_call.coroutine_trampoline`).
* A ``unittest.TestCase`` method: unittest's ``TestCase.run`` calls setUp,
  then ``self._callTestMethod(method)``, then tearDown.  The instance's
  ``_callTestMethod`` is replaced for the test, to call the original with a
  method that measures exactly the test method's call.  What pytest does when
  unittest 3.11+ hands it a subtest's result while the method runs is kept
  out of the profile (:class:`_SubtestReporting`).
* A doctest: its ``runtest`` (parsing, running and checking the examples) is
  measured as a whole.
* Anything else is not measured.

The kinds other than plain functions are installed around ``item.runtest``
(:func:`measured_runtest`), which also raises the limit failure once the
test's own machinery (an event loop, unittest) is done.
"""

from __future__ import annotations

import enum
import functools
import inspect
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple

import pytest

from ._pytest_call import bound_like, coroutine_trampoline, zero_allocation_call
from ._pytest_limits import HeapLimitExceeded
from ._pytest_messages import limit_message
from ._pytest_run import HeapRun


class Kind(enum.Enum):
    """What kind of test an item is, for the plugin."""

    FUNCTION = "test function"
    COROUTINE = "async test function"
    UNITTEST = "unittest.TestCase method"
    DOCTEST = "doctest"
    OTHER = "other"


def kind_of(item: pytest.Item) -> Kind:
    if isinstance(item, pytest.Function):
        unittest = sys.modules.get("unittest")  # imported if the item is one of its tests
        cls = getattr(item, "cls", None)
        if unittest is not None and isinstance(cls, type) and issubclass(cls, unittest.TestCase):
            return Kind.UNITTEST
        if inspect.iscoroutinefunction(item.obj):
            return Kind.COROUTINE
        return Kind.FUNCTION
    from _pytest.doctest import DoctestItem  # (pytest has no public name for it)

    if isinstance(item, DoctestItem):
        return Kind.DOCTEST
    return Kind.OTHER


# ---- test functions -------------------------------------------------------------


def profiled_function(function: Callable[..., Any], run: HeapRun) -> Callable[..., Any]:
    """`function`, profiled by `run` when pytest calls it; a test over its
    limits fails with :class:`HeapLimitExceeded` once the function returned."""

    @functools.wraps(function)
    def profiled(**kwargs: Any) -> Any:
        for _ in range(run.repeat - 1):
            function(**kwargs)
        call = zero_allocation_call(function, kwargs, run.profiler)
        run.begin()
        try:
            result = call()
        finally:
            run.finish()
        fail_if_exceeded(run)
        return result

    return profiled


def fail_if_exceeded(run: HeapRun) -> None:
    if run.over:
        run.save()
        raise HeapLimitExceeded(limit_message(run), pytrace=False)


# ---- the other kinds, around item.runtest ----------------------------------------------


def measured_runtest(item: pytest.Item, kind: Kind, run: HeapRun) -> Callable[[], None]:
    """What replaces ``item.runtest`` for the test: the item's own runtest with
    the profiled call of `kind` in place; fails with HeapLimitExceeded if the
    test passed but went over its limits."""
    runtest = item.runtest

    def profiled_runtest() -> None:
        undo = _install(item, kind, run)
        try:
            if kind is Kind.DOCTEST:
                call = zero_allocation_call(runtest, {}, run.profiler)
                run.begin()
                call()
            else:
                runtest()
        finally:
            undo()
            run.finish()  # (stops a coroutine's profiler if it never returned)
        # Here runtest passed; a unittest method that failed told its result
        # object instead of raising.
        if not run.raised:
            fail_if_exceeded(run)

    return profiled_runtest


def _install(item: pytest.Item, kind: Kind, run: HeapRun) -> Callable[[], None]:
    """Puts the profiled call in place; returns what takes it away."""
    if kind is Kind.COROUTINE:
        assert isinstance(item, pytest.Function)
        function = item.obj
        item.obj = coroutine_trampoline(
            function, run.profiler, run.begin, warm_ups=run.repeat - 1
        )

        def undo_coroutine() -> None:
            item.obj = function

        return undo_coroutine
    if kind is Kind.UNITTEST:
        testcase = _testcase_of(item)
        if testcase is None or not callable(getattr(testcase, "_callTestMethod", None)):
            return lambda: None  # not called: a marked test fails as not profiled
        testcase._callTestMethod = _profiled_call_test_method(
            item, run, testcase._callTestMethod
        )

        def undo_unittest() -> None:
            vars(testcase).pop("_callTestMethod", None)

        return undo_unittest
    return lambda: None


def _testcase_of(item: pytest.Item) -> Any:
    # pytest 8+: `instance`; pytest 7: `_testcase` (still a property in 8 and 9).
    testcase = getattr(item, "_testcase", None)
    return testcase if testcase is not None else getattr(item, "instance", None)


def _profiled_call_test_method(
    item: pytest.Item, run: HeapRun, call_test_method: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """A TestCase's ``_callTestMethod`` that calls the original with a method
    measuring exactly `method`'s call; warm-up runs (``repeat=``) first."""

    def profiled_call_test_method(method: Any) -> Any:
        for _ in range(run.repeat - 1):
            call_test_method(method)
        is_async = inspect.iscoroutinefunction(method)
        call: Callable[[], Any]
        if is_async:
            call = coroutine_trampoline(method, run.profiler, begin=lambda: None)
        else:
            call = zero_allocation_call(method, {}, run.profiler)
        measured = bound_like(method, call, is_async=is_async)
        reporting = _SubtestReporting(item, hand_over=run.profiler.this_thread_only)
        run.begin()
        run.raised = True
        try:
            result = call_test_method(measured)
        finally:
            reporting.finish()
        run.raised = False
        return result

    return profiled_call_test_method


class _SubtestReporting:
    """Keeps pytest's reporting of subtests out of the profile.

    unittest 3.11+ tells its result object (the pytest item) about each
    subtest as it ends, inside the test method: pytest then makes a report,
    logs it and may print it, thousands of blocks that are pytest's, not the
    test's.  (3.9/3.10 tell it after the method.)  While the measured method
    runs, the item's ``addSubTest`` and ``addSkip`` are replaced:

    * profiling only the test's thread (the default), the call is handed to a
      thread of the plugin's own while the test's thread waits, so it happens
      when it would, and nothing of it is counted: the test's thread allocates
      nothing to hand it over, and unittest frees its subtest objects as usual;
    * profiling every thread, the calls are kept and made once the method has
      returned (as on 3.9/3.10): the subtests' objects then stay live until
      the end of the method, one tuple each more.
    """

    #: The result methods unittest calls while a test method runs, and their
    #: arguments: addSubTest(test, subtest, exc_info), addSkip(subtest, reason).
    _METHODS = {"addSubTest": 3, "addSkip": 2}

    def __init__(self, result: Any, hand_over: bool) -> None:
        self.result = result
        self.kept: List[Tuple[Any, ...]] = []
        self.replaced: List[str] = []
        if sys.version_info < (3, 11):
            return  # unittest tells the result after the method
        names = [
            name for name in self._METHODS
            if callable(getattr(result, name, None)) and name not in vars(result)
        ]
        helper = _helper_thread() if hand_over and names else None
        for name in names:
            original = getattr(result, name)
            setattr(result, name, self._stand_in(original, self._METHODS[name], helper))
            self.replaced.append(name)

    def _stand_in(
        self, original: Callable[..., Any], count: int, helper: Optional["_HelperThread"]
    ) -> Callable[..., None]:
        kept = self.kept
        if helper is not None:

            def hand_over(a: Any, b: Any, c: Any = None) -> None:
                helper.call(original, count, a, b, c)

            return hand_over

        def keep(a: Any, b: Any, c: Any = None) -> None:
            kept.append((original, count, a, b, c))

        return keep

    def finish(self) -> None:
        """Puts the item's methods back, and makes the calls that were kept."""
        for name in self.replaced:
            delattr(self.result, name)
        kept = list(self.kept)
        del self.kept[:]
        for original, count, a, b, c in kept:
            original(*(a, b, c)[:count])


class _HelperThread:
    """A thread that makes a call for another thread, which waits meanwhile.

    Handing a call over allocates nothing on the calling thread: the callee
    and its arguments go into slots made beforehand, and the two threads take
    turns through two locks."""

    def __init__(self) -> None:
        self._turn = threading.Lock()  # one caller at a time (tests may have threads)
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._slots: List[Any] = [None, 0, None, None, None]  # callee, count, 3 arguments
        self._error: List[Optional[BaseException]] = [None]
        self._thread = threading.Thread(
            target=self._serve, name="dhatc pytest plugin: subtest reports", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, callee: Callable[..., Any], count: int, a: Any, b: Any, c: Any) -> None:
        """``callee(a, b, c)`` (or ``callee(a, b)`` when `count` is 2), made by
        the helper thread; what it raises is raised here."""
        self._turn.acquire()  # (not `with`: looking up __enter__ allocates)
        try:
            slots = self._slots
            slots[0] = callee
            slots[1] = count
            slots[2] = a
            slots[3] = b
            slots[4] = c
            self._go.release()
            self._done.acquire()
            error = self._error[0]
            self._error[0] = None
        finally:
            self._turn.release()
        if error is not None:
            raise error

    def _serve(self) -> None:
        slots = self._slots
        while True:
            self._go.acquire()
            callee, count, a, b, c = slots
            slots[0] = slots[2] = slots[3] = slots[4] = None
            try:
                if count == 2:
                    callee(a, b)
                else:
                    callee(a, b, c)
            except BaseException as e:  # raised again in the test's thread
                self._error[0] = e
            del callee, a, b, c
            self._done.release()


_helper: Optional[_HelperThread] = None


def _helper_thread() -> _HelperThread:
    """The helper thread, started the first time it is needed (outside any
    profile: starting a thread allocates), again in a forked child."""
    global _helper
    if _helper is None or not _helper.alive():
        _helper = _HelperThread()
    return _helper
