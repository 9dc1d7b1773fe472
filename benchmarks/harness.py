"""What the benchmark runners share: tools, one measurement in a fresh
interpreter, interleaved rounds, the machine line and the statistics.

``run.py`` (the allocation-heavy workloads of ``workloads.py``) and
``realcode.py`` (pyperformance's benchmarks) differ only in the script their
children run and in the tables they print; everything else is here.

A child script prints one JSON object per line on stdout; the last one that
holds ``"seconds"`` is the result: the region's wall time, and with it
``"cpu_seconds"``, the CPU time the child's process spent in the region (all its
threads; ``time.process_time``).  The wall clock counts the time other processes
of a shared machine take the CPU from the child; the CPU time does not, and the
runners can report either (``--clock``).  Every child runs with ``sys.executable``,
``PYTHONHASHSEED=0``, in a fresh temporary directory that is also its working
directory.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "none"


@dataclass(frozen=True)
class Tool:
    """How to run a measurement under one profiler, in the child process."""

    description: str
    # Statements run inside the timed region.  They must contain ``run()`` (the
    # work) exactly once, on a line of its own, and start/stop the profiler
    # around it.
    region: str
    # Statements run once before the warm-up, untimed: imports, configuration.
    setup: str = ""
    # A module the tool needs.  If it cannot be imported, the tool is reported
    # as "<module> not installed" and skipped.
    requires: str | None = None
    # Command-line tools: arguments between ``sys.executable`` and the child
    # script, e.g. ("-m", "memray", "run", "-o", "{tmpdir}/out.bin").
    # ``{tmpdir}`` becomes a fresh temporary directory (also the child's cwd).
    launcher: tuple[str, ...] = field(default_factory=tuple)
    # Statements that must run without an exception for the tool to be usable
    # (after ``requires`` imports); else the tool is skipped with
    # ``probe_failure`` and the exception's last line.  For features that may
    # not exist yet, e.g. ``dhatc.Profiler(native=True)``.
    probe: str = ""
    probe_failure: str = ""


class MeasurementError(Exception):
    """A child process failed or printed no result."""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Same string hashes in every child: dict layouts (and so timings) repeat.
    env["PYTHONHASHSEED"] = "0"
    return env


def tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class ChildResult:
    """What one child reported, and how long the whole child took."""

    seconds: float  # the timed region's wall time, measured by the child
    child_seconds: float  # the whole child process, measured by the parent
    data: dict[str, Any]  # the child's whole result line
    cpu_seconds: float | None = None  # the region's CPU time, if the child gave it


def run_child(
    script_text: str, tool: Tool, timeout: float, prefix: str = "dhatc-bench-"
) -> ChildResult:
    """Run one child script (under the tool's launcher, if any) in a fresh
    interpreter and temporary directory; return its result."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        script = Path(tmpdir) / "bench_child.py"
        script.write_text(script_text)
        launcher = [arg.replace("{tmpdir}", tmpdir) for arg in tool.launcher]
        cmd = [sys.executable, *launcher, str(script)]
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=tmpdir,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise MeasurementError(f"timed out after {timeout:g} s") from exc
        child_seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise MeasurementError(
            f"exit status {proc.returncode}:\n{tail(proc.stderr or proc.stdout)}"
        )
    # The last JSON line with "seconds": a tool may print its own output too.
    for line in reversed(proc.stdout.splitlines()):
        try:
            result = json.loads(line)
        except ValueError:
            continue
        if isinstance(result, dict) and "seconds" in result:
            cpu = result.get("cpu_seconds")
            return ChildResult(float(result["seconds"]), child_seconds, result,
                               None if cpu is None else float(cpu))
    raise MeasurementError(f"no result on stdout:\n{tail(proc.stdout)}")


def unavailable_reason(tool: Tool) -> str | None:
    """None if the tool can run here, else why not (e.g. "dhatc not installed")."""
    if tool.requires is None:
        return None
    code = f"import {tool.requires}\n"
    if tool.probe:
        code += f"try:\n    {tool.probe}\nexcept Exception as e:\n    raise SystemExit('probe: ' + repr(e))\n"
    with tempfile.TemporaryDirectory(prefix="dhatc-bench-") as tmpdir:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmpdir,
            env=child_env(),
            capture_output=True,
            text=True,
        )
    if proc.returncode == 0:
        return None
    if "ModuleNotFoundError" in proc.stderr and repr(tool.requires) in proc.stderr:
        return f"{tool.requires} not installed"
    last = tail(proc.stderr, 1)
    if last.startswith("probe: "):
        return f"{tool.probe_failure} ({last[len('probe: '):]})"
    return f"import {tool.requires} failed: {last}"


def expand_run(region: str, body: str) -> str:
    """``region`` with its ``run()`` line replaced by ``body``, indented like
    it: the work runs inline, with no extra frame under the profiler."""
    lines: list[str] = []
    for line in region.rstrip().splitlines():
        if line.strip() == "run()":
            indent = line[: len(line) - len(line.lstrip())]
            lines.extend(indent + b if b.strip() else "" for b in body.rstrip().splitlines())
        else:
            lines.append(line)
    return "\n".join(lines)


# --- machine description -------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    cores = os.cpu_count() or 0
    return (
        f"Machine: {platform.machine()}, {cpu_model()}, {cores} cores; "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


# --- results ---------------------------------------------------------------------


@dataclass
class Results:
    """Samples per (item, tool); an item is a workload or a benchmark."""

    items: list[str]
    tools: list[str]
    repeat: int
    stat: str = "median"  # "median" or "min": the statistic ratios are made of
    clock: str = "wall"  # "wall" or "cpu": which of the region's times they are made of
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # wall time
    # The region's CPU time per sample, in the same order as samples.
    cpu_samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # The whole child's wall time per sample, in the same order as samples.
    child_samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def values(self, item: str, tool: str) -> list[float]:
        """One pair's samples on the chosen clock (wall or CPU time)."""
        table = self.cpu_samples if self.clock == "cpu" else self.samples
        return table.get((item, tool), [])

    def summary(self, item: str, tool: str, stat: str | None = None) -> float | None:
        """The chosen statistic (median by default) of one pair's samples."""
        values = self.values(item, tool)
        if not values:
            return None
        return min(values) if (stat or self.stat) == "min" else statistics.median(values)

    def ratio(self, item: str, tool: str, stat: str | None = None) -> float | None:
        """summary(tool) / summary(none), for the same item."""
        value = self.summary(item, tool, stat)
        base = self.summary(item, BASELINE, stat)
        if value is None or not base:
            return None
        return value / base

    def measured_tools(self) -> list[str]:
        return [t for t in self.tools if t not in self.unavailable]


def geometric_mean(values: Iterable[float]) -> float | None:
    values = list(values)
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_ratio(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def notes(res: Results) -> str:
    lines = [f"{tool}: {why}" for tool, why in res.unavailable.items()]
    for (item, tool), error in res.errors.items():
        # First line (what failed) and last line (usually the exception).
        parts = error.strip().splitlines() or [""]
        summary = parts[0] if len(parts) == 1 else f"{parts[0]} {parts[-1].strip()}"
        lines.append(f"{tool} on {item}: {summary}")
    return "\n".join(lines)


def check_tools(res: Results, tools: dict[str, Tool]) -> None:
    """Mark the tools that cannot run here as unavailable (and say so on stderr)."""
    for name in res.tools:
        reason = unavailable_reason(tools[name])
        if reason is not None:
            res.unavailable[name] = reason
            print(f"{name}: {reason}; skipped", file=sys.stderr)


def run_rounds(
    res: Results,
    measure_one: Callable[[str, str], ChildResult],
    item_width: int = 6,
) -> None:
    """Fill ``res`` with interleaved rounds: for each round, for each item, for
    each available tool, one measurement.  A pair that fails is reported on
    stderr and not tried again."""
    for round_no in range(1, res.repeat + 1):
        for item in res.items:
            for name in res.measured_tools():
                key = (item, name)
                if key in res.errors:
                    continue  # failed before: do not keep paying for it
                try:
                    result = measure_one(item, name)
                except MeasurementError as exc:
                    res.errors[key] = str(exc)
                    print(
                        f"[{round_no}/{res.repeat}] {item:{item_width}} {name:14} "
                        f"FAILED: {exc}",
                        file=sys.stderr,
                    )
                    continue
                if res.clock == "cpu" and result.cpu_seconds is None:
                    res.errors[key] = "the child gave no cpu_seconds"
                    print(f"[{round_no}/{res.repeat}] {item:{item_width}} {name:14} "
                          "FAILED: no cpu_seconds", file=sys.stderr)
                    continue
                res.samples.setdefault(key, []).append(result.seconds)
                res.child_samples.setdefault(key, []).append(result.child_seconds)
                if result.cpu_seconds is not None:
                    res.cpu_samples.setdefault(key, []).append(result.cpu_seconds)
                cpu = "" if result.cpu_seconds is None else f" (CPU {result.cpu_seconds:.4f} s)"
                print(
                    f"[{round_no}/{res.repeat}] {item:{item_width}} {name:14} "
                    f"{result.seconds:.4f} s{cpu}",
                    file=sys.stderr,
                )


def samples_json(res: Results, item_key: str) -> list[dict[str, Any]]:
    """Every sample as a dict: ``{item_key: ..., "tool", "seconds", "cpu_seconds",
    "child_seconds"}`` (the region's wall and CPU time, the whole child's wall time)."""
    out: list[dict[str, Any]] = []
    for (item, tool), values in res.samples.items():
        whole = res.child_samples.get((item, tool), [])
        cpu = res.cpu_samples.get((item, tool), [])
        for i, seconds in enumerate(values):
            sample: dict[str, Any] = {item_key: item, "tool": tool, "seconds": seconds}
            if i < len(cpu):
                sample["cpu_seconds"] = cpu[i]
            if i < len(whole):
                sample["child_seconds"] = whole[i]
            out.append(sample)
    return out


CLOCK_HELP = (
    "which time of the region the figures use (default wall; cpu = the child's CPU time, "
    "which leaves out the time other processes of a shared machine take)"
)


def clock_words(clock: str) -> str:
    """How a table names the times it is made of."""
    return "CPU time" if clock == "cpu" else "wall time"
