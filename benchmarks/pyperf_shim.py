"""Run a pyperformance benchmark's own functions in-process, without pyperf's runner.

pyperformance's benchmarks are scripts (``bm_NAME/run_benchmark.py``) whose
``__main__`` block builds a ``pyperf.Runner`` and registers functions with it
(``bench_time_func``, ``bench_func``, ``bench_async_func``); pyperf then spawns
worker processes, calibrates loop counts and times them.  A heap profiler has to
run inside the process that does the work, around the work only, so
:func:`load_entries` runs the script's ``__main__`` block with ``pyperf.Runner``
replaced by :class:`RecordingRunner`, which only records what is registered.
:func:`run_entries` then calls those functions with a fixed loop count.

Used in the child processes of ``realcode.py`` (and by it to list the
benchmarks).  Standard library only, apart from ``pyperf`` itself, which the
benchmark scripts import.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Tuple

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - 3.9, 3.10
    _toml = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Entry:
    """One function a benchmark script registered with its runner."""

    name: str
    # "time": ``func(loops, *args)`` times itself (pyperf's bench_time_func);
    # "func": ``func(*args)`` is one loop (bench_func);
    # "async": ``await func(*args)`` is one loop (bench_async_func).
    kind: str
    func: Callable[..., Any]
    args: tuple[Any, ...]


class RecordingRunner:
    """Stands in for ``pyperf.Runner``: same attributes that the benchmark
    scripts use, but ``bench_*`` only record the function and its arguments."""

    # Set by load_entries before the script runs: the command line that
    # parse_args parses (benchmarks with a required positional argument, such
    # as pickle's, need one).
    argv: Sequence[str] = ()
    registered: list[Entry] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.metadata: dict[str, Any] = {}
        self.argparser = argparse.ArgumentParser(prog="run_benchmark.py")
        self.args: argparse.Namespace | None = None

    def parse_args(self, args: Sequence[str] | None = None) -> argparse.Namespace:
        self.args = self.argparser.parse_args(list(self.argv))
        return self.args

    def _record(self, kind: str, name: str, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        RecordingRunner.registered.append(Entry(name, kind, func, args))

    def bench_time_func(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._record("time", name, func, args)

    def bench_func(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._record("func", name, func, args)

    def bench_async_func(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._record("async", name, func, args)

    def bench_command(self, name: str, command: Sequence[str]) -> None:
        raise RuntimeError(
            f"{name}: the benchmark times a command (a new process), "
            "which an in-process profiler cannot see"
        )


def load_entries(script: str | Path, argv: Sequence[str] = ()) -> list[Entry]:
    """Run ``script``'s ``__main__`` block with pyperf's runner replaced by a
    :class:`RecordingRunner`; return what it registered, in order."""
    import pyperf

    original = pyperf.Runner
    RecordingRunner.argv = tuple(argv)
    RecordingRunner.registered = []
    setattr(pyperf, "Runner", RecordingRunner)  # noqa: B010 (pyperf has no type hints)
    # The scripts find their data files next to themselves (os.path.dirname(__file__))
    # and some import sibling modules.
    script_dir = str(Path(script).parent)
    sys.path.insert(0, script_dir)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        setattr(pyperf, "Runner", original)  # noqa: B010
        if script_dir in sys.path:
            sys.path.remove(script_dir)
    entries = RecordingRunner.registered
    RecordingRunner.registered = []
    if not entries:
        raise RuntimeError(f"{script}: registered no benchmark function")
    return entries


Step = Tuple[str, Callable[..., Any], Tuple[Any, ...], int]


def plan(
    entries: Sequence[Entry], loops: int, only: Mapping[str, int] | None = None
) -> list[Step]:
    """``(kind, func, args, loops)`` for each entry to run: all of them with
    ``loops``, or those named in ``only`` (name -> loops), in the script's order."""
    if only is None:
        return [(e.kind, e.func, e.args, loops) for e in entries]
    names = {e.name for e in entries}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise RuntimeError(
            f"the benchmark registered no function named {', '.join(unknown)} "
            f"(it has: {', '.join(sorted(names))})"
        )
    return [(e.kind, e.func, e.args, only[e.name]) for e in entries if e.name in only]


async def _await_loops(func: Callable[..., Any], args: tuple[Any, ...], loops: int) -> None:
    for _ in range(loops):
        await func(*args)


def run_async(func: Callable[..., Any], args: tuple[Any, ...], loops: int) -> None:
    """``await func(*args)`` ``loops`` times in one new event loop (as pyperf does)."""
    asyncio.run(_await_loops(func, args, loops))


def run_plan(steps: Sequence[Step], loops: int | None = None) -> None:
    """Run every step once, with its own loop count or ``loops``.

    realcode.py's children inline this loop at top level for the timed run, so
    that the profiled stacks hold no frame of it; this function is for the
    warm-up and for tests."""
    for kind, func, args, own_loops in steps:
        n = own_loops if loops is None else loops
        if kind == "time":
            func(n, *args)
        elif kind == "func":
            for _ in range(n):
                func(*args)
        else:
            run_async(func, args, n)


# --- finding the benchmarks ---------------------------------------------------


def benchmarks_dir() -> Path | None:
    """pyperformance's bundled benchmarks (``data-files/benchmarks``), found
    without importing pyperformance; None if it is not installed."""
    spec = importlib.util.find_spec("pyperformance")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data-files" / "benchmarks"
        if candidate.is_dir():
            return candidate
    return None


def _requirements(bench_dir: Path) -> list[str]:
    """What a benchmark needs beyond the standard library and pyperf: the lines
    of its requirements.txt and the dependencies of its pyproject.toml."""
    needs: list[str] = []
    req = bench_dir / "requirements.txt"
    if req.exists():
        for line in req.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                needs.append(line)
    project = bench_dir / "pyproject.toml"
    if _toml is not None and project.exists():
        with project.open("rb") as f:
            data = _toml.load(f)
        for dep in data.get("project", {}).get("dependencies", []):
            if dep.strip().lower() != "pyperf":
                needs.append(dep)
    return needs


def stdlib_only(root: Path) -> dict[str, Path]:
    """``{directory name without bm_: run_benchmark.py}`` for every benchmark
    of ``root`` that needs nothing beyond the standard library (and pyperf)."""
    found: dict[str, Path] = {}
    for bench_dir in sorted(root.glob("bm_*")):
        script = bench_dir / "run_benchmark.py"
        if script.exists() and not _requirements(bench_dir):
            found[bench_dir.name[len("bm_"):]] = script
    return found
