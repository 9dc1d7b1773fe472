"""Heap- and ad-hoc-usage assertions: ``dhatc.assert_``, ``assert_eq``, ``assert_ne``.

The crate's ``dhat::assert!``, ``assert_eq!`` and ``assert_ne!``.  They work
only while a profiler runs in testing mode (``Profiler(testing=True)``).  When
one fails it stops the profiler, saves the profile to the profiler's
``file_name`` and prints the summary (as a normal stop outside testing mode
does), then raises ``AssertionError`` with the crate's message.  From then on
the profiler is "asserted": ``HeapStats.get()``/``AdHocStats.get()`` and further
assertions raise ``RuntimeError`` until it is stopped (``with``-exit or
``stop()``), which does not save again.

The checks run before the comparison, so an assertion outside testing mode
raises even when its condition holds, as in the crate.  Like the crate's, the
assertions keep their own work out of the profile: a passing one allocates
nothing (its first call included), and a failing one stops the profile before
it builds its message.  The values compared are the caller's: take the stats
snapshot first (``stats = dhatc.HeapStats.get()``), then assert on it.
"""

from __future__ import annotations

import ast
import functools
import linecache
import sys
from types import CodeType, FrameType
from typing import Any, Callable, Optional, Tuple

from . import _dhat_file, _engine, _profiler
from ._engine_data import StopData

# A global, so that the check in a passing assertion allocates nothing.
_POST_ASSERT = _profiler.Phase.POST_ASSERT

__all__ = ["assert_", "assert_eq", "assert_ne"]


def _check_phase() -> "_profiler.Profiler":
    """The running testing-mode profiler, or the crate's RuntimeError."""
    profiler = _profiler.running_profiler()
    if profiler is None:
        raise RuntimeError(
            "dhat: asserting when no profiler is running "
            "(start one with dhatc.Profiler(..., testing=True))"
        )
    if profiler.phase is _POST_ASSERT:
        raise RuntimeError("dhat: asserting after the profiler has asserted")
    if not profiler.testing:
        raise RuntimeError(
            "dhat: asserting while not in testing mode "
            "(create the profiler with dhatc.Profiler(..., testing=True))"
        )
    return profiler


def _report_failure(profiler: "_profiler.Profiler", data: StopData) -> None:
    """Finishes `profiler` as the crate does on a failed assertion: saves the
    profile and prints the summary.  `data` is what ``_engine.stop()`` returned:
    the callers stop the engine first, with a C call, so that nothing the
    failure path allocates is recorded.  A profile that cannot be written is
    reported on stderr; the assertion still fails with its own message."""
    try:
        profiler._assertion_failed(data)
    except OSError as e:
        _dhat_file.eprint_error(f"dhat: error: {e}")


def _with_msg(text: str, msg: Optional[object]) -> str:
    return text if msg is None else f"{text}: {msg}"


def assert_(cond: object, msg: Optional[object] = None) -> None:
    """Asserts that `cond` is true (the crate's ``dhat::assert!``).

    On failure: saves the profile, prints the summary and raises
    ``AssertionError("dhat: assertion failed: <cond>")`` (``: <msg>`` appended
    when `msg` is given), where ``<cond>`` is the source text of the argument
    when it can be found, else its repr.  Raises ``RuntimeError`` when no
    profiler runs, when it is not in testing mode, or after an assertion has
    failed.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    profiler = _check_phase()
    if cond:
        return
    _report_failure(profiler, _engine.stop())  # before finding the source text: it allocates
    raise AssertionError(_with_msg(f"dhat: assertion failed: {_condition_text(cond)}", msg))


def assert_eq(left: Any, right: Any, msg: Optional[object] = None) -> None:
    """Asserts that ``left == right`` (the crate's ``dhat::assert_eq!``).

    On failure: saves the profile, prints the summary and raises
    ``AssertionError`` with the crate's message showing both values (their
    reprs).  Raises ``RuntimeError`` in the situations :func:`assert_` does.
    """
    __tracebackhide__ = True
    profiler = _check_phase()
    if left == right:
        return
    _report_failure(profiler, _engine.stop())
    raise AssertionError(_with_msg(_comparison("==", left, right), msg))


def assert_ne(left: Any, right: Any, msg: Optional[object] = None) -> None:
    """Asserts that ``left != right`` (the crate's ``dhat::assert_ne!``).

    On failure: saves the profile, prints the summary and raises
    ``AssertionError`` with the crate's message showing both values (their
    reprs).  Raises ``RuntimeError`` in the situations :func:`assert_` does.
    """
    __tracebackhide__ = True
    profiler = _check_phase()
    if left != right:
        return
    _report_failure(profiler, _engine.stop())
    raise AssertionError(_with_msg(_comparison("!=", left, right), msg))


def _comparison(op: str, left: Any, right: Any) -> str:
    return (
        f"dhat: assertion failed: `(left {op} right)`\n"
        f"  left: `{left!r}`,\n"
        f" right: `{right!r}`"
    )


# ---- the source text of assert_'s condition (failure path only) ------------


def _condition_text(cond: object) -> str:
    """The source text of the first argument of the ``assert_(...)`` call that
    failed, like Rust's ``stringify!``; the repr of `cond` when the source is
    not available (``python -c``, the REPL) or the call cannot be told apart
    from others on its line."""
    try:
        frame = sys._getframe(2)  # _condition_text <- assert_ <- the caller
        text = _call_argument_source(frame)
    except Exception:  # any surprise in the source lookup: fall back
        text = None
    return text if text is not None else repr(cond)


def _call_argument_source(frame: FrameType) -> Optional[str]:
    code = frame.f_code
    lines = linecache.getlines(code.co_filename, frame.f_globals)
    if not lines:
        return None
    source = "".join(lines)
    tree = ast.parse(source)
    lineno = frame.f_lineno
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (node.args or node.keywords)
        and node.lineno <= lineno <= (node.end_lineno or node.lineno)
    ]
    # 3.11+: the exact source span of the call being executed.
    span = _current_call_span(frame)
    if span is not None:
        exact = [
            c
            for c in calls
            if (c.lineno, c.end_lineno, c.col_offset, c.end_col_offset) == span
        ]
        if len(exact) == 1:
            return _first_argument(source, exact[0])
    named = [c for c in calls if _callee_name(c) == "assert_"]
    if len(named) == 1:
        return _first_argument(source, named[0])
    return None


def _current_call_span(frame: FrameType) -> Optional[Tuple[Optional[int], ...]]:
    positions = getattr(frame.f_code, "co_positions", None)
    if positions is None or frame.f_lasti < 0:
        return None
    for i, span in enumerate(positions()):
        if i == frame.f_lasti // 2:  # one position per 2-byte code unit
            return span if None not in span else None
    return None


def _callee_name(call: ast.Call) -> Optional[str]:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _first_argument(source: str, call: ast.Call) -> Optional[str]:
    if call.args:
        node: ast.AST = call.args[0]
    else:
        node = next((k.value for k in call.keywords if k.arg == "cond"), None)  # type: ignore[assignment]
        if node is None:
            return None
    text = ast.get_source_segment(source, node)
    return " ".join(text.split()) if text else None


# ---- spare frames (CPython 3.9/3.10) ----------------------------------------


def give_spare_frames(*functions: Callable[..., Any]) -> None:
    """CPython 3.9/3.10 allocate a frame object for a call unless the function's
    code object keeps a spare ("zombie") frame from an earlier call, so the
    first call of a function allocates.  This leaves a spare frame on each of
    `functions` (or the functions of bound methods) by creating one with
    PyFrame_New and dropping it at once, so that their first call inside a
    profile allocates nothing.  Does nothing on 3.11+ (frames need no heap
    block there) or where it cannot work; best effort."""
    if sys.version_info >= (3, 11):
        return
    import ctypes  # only here: 3.11+ never needs it

    if not hasattr(ctypes, "pythonapi"):
        return
    for function in functions:
        target = getattr(function, "__func__", function)
        code, globals_ = getattr(target, "__code__", None), getattr(target, "__globals__", None)
        if isinstance(code, CodeType) and isinstance(globals_, dict):
            try:
                _frame_new()(ctypes.pythonapi.PyThreadState_Get(), code, globals_, None)
            except Exception:  # the figures then include a frame: no worse than before
                pass


@functools.lru_cache(maxsize=None)
def _frame_new() -> Any:
    import ctypes

    api = ctypes.pythonapi
    api.PyThreadState_Get.restype = ctypes.c_void_p
    api.PyFrame_New.restype = ctypes.py_object  # a new reference, dropped by the caller
    api.PyFrame_New.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object, ctypes.c_void_p]
    return api.PyFrame_New


# A passing assertion allocates nothing, its first call included.
give_spare_frames(assert_, assert_eq, assert_ne, _check_phase, _profiler.running_profiler)
