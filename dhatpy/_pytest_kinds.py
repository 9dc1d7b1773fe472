"""How each kind of test is measured: the profiled call put in place of the test's own.

A test function: pytest calls ``item.obj(**kwargs)``; :func:`profiled_function`
is put there for that call, and runs the function through a trampoline
(:mod:`dhatc._pytest_call`) so that exactly the function's call is measured.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ._pytest_call import zero_allocation_call
from ._pytest_limits import HeapLimitExceeded
from ._pytest_messages import limit_message
from ._pytest_run import HeapRun


def profiled_function(function: Callable[..., Any], run: HeapRun) -> Callable[..., Any]:
    """`function`, profiled by `run` when pytest calls it; a test over its
    limits fails with :class:`HeapLimitExceeded` once the function returned."""

    @functools.wraps(function)
    def profiled(**kwargs: Any) -> Any:
        call = zero_allocation_call(function, kwargs, run.profiler)
        run.begin()
        try:
            result = call()
        finally:
            run.finish()
        _fail_if_exceeded(run)
        return result

    return profiled


def _fail_if_exceeded(run: HeapRun) -> None:
    if run.exceeded:
        run.save()
        raise HeapLimitExceeded(limit_message(run), pytrace=False)
