"""Instructions per allocation: one benchmark under Valgrind's callgrind, with
and without a profiler.

Usage::

    python benchmarks/callgrind.py regex_compile [deepcopy ...] [--tools none,dhatc] [--scale 0.5]
    python benchmarks/callgrind.py churn            # a workload of workloads.py

Wall-clock times on a shared VM move by 2x; instruction counts repeat to a few
parts in a thousand, so they show what a change to the engine gains.  Each
target runs in a fresh interpreter under ``valgrind --tool=callgrind``, built
as for ``realcode.py`` (a pyperformance benchmark) or ``run.py`` (a workload),
with the profilers of ``realcode.py`` (dhatc writes its file).  The timed
region is bracketed by two calls of ``os.sched_getscheduler(0)``, and callgrind
dumps its counters before each (``--dump-before=sched_getscheduler``), so
the second dump holds exactly the region: start the profiler, the work, stop it
(and write its file).

Reported per tool: the region's instructions (Ir); for each profiler its extra
instructions over ``none``, divided by the blocks the region allocates (dhatc's
``total_blocks``, from its file: the same program under every tool).  That is
the profiler's cost per allocation, its free and its share of start, stop and
file included.  Runs are about 50-100x slower than natively: ``--scale`` shrinks
the loop counts of a realcode benchmark.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import realcode  # noqa: E402  (needs the path above)
import run as workloads_runner  # noqa: E402
from workloads import WORKLOADS  # noqa: E402
from harness import BASELINE, Tool, child_env, expand_run, tail, unavailable_reason  # noqa: E402

# libc's function behind os.sched_getscheduler: callgrind dumps before each call.
# A libc symbol rather than one of the interpreter's: Debian's CPython 3.14 and
# 3.15 are stripped of their static functions' names, and callgrind cannot
# match what it cannot name.
MARKER_FUNCTION = "sched_getscheduler"
MARKER = '__import__("os").sched_getscheduler(0)  # callgrind: dump the counters here\n'
REGION_START = "_t0 = _time.perf_counter()\n"
REGION_END = "_t1 = _time.perf_counter()\n"

# The region's blocks, from dhatc's file (when the tool wrote one).
BLOCKS_REPORT = """\
import os as _os
if _os.path.exists("dhat-heap.json"):
    with open("dhat-heap.json") as _f:
        _pps = _json.load(_f)["pps"]
    print(_json.dumps({"blocks": sum(pp["tbk"] for pp in _pps), "pps": len(_pps)}))
"""

IN_PROCESS_TOOLS = {n: t for n, t in realcode.TOOLS.items() if not t.launcher}


class CallgrindError(Exception):
    """valgrind failed or wrote no counters for the region."""


def child_script(target: str, tool: Tool, scale: float) -> str:
    """The child for ``target`` under ``tool``, its region bracketed by the marker."""
    # A third marker right after the work, before the profiler stops: dump 3
    # is then the stop (and the file) alone.
    tool = replace(tool, region=expand_run(tool.region, "run()\n" + MARKER))
    if target in WORKLOADS:
        script = workloads_runner.child_script(target, tool)
    else:
        bench = realcode.scaled(realcode.BENCHMARKS[target], scale)
        script = realcode.child_script(realcode.catalogue().scripts[target], bench, tool)
    if script.count(REGION_START) != 1 or script.count(REGION_END) != 1:
        raise AssertionError("the child script's region is not where callgrind.py expects it")
    script = script.replace(REGION_START, REGION_START + MARKER).replace(REGION_END, MARKER + REGION_END)
    return script + BLOCKS_REPORT


@dataclass(frozen=True)
class Counts:
    """One callgrind run of a target under a tool."""

    region: int  # instructions of the region: start, work, stop and file
    stop: int  # of which the stop and the file
    blocks: int | None  # the region's blocks, from dhatc's file (dhatc only)
    pps: int | None  # its program points


def _summary(path: Path) -> int:
    if not path.exists():
        raise CallgrindError(f"callgrind wrote no {path.name} (no call of {MARKER_FUNCTION}?)")
    match = re.search(r"^summary:\s*(\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise CallgrindError(f"no summary line in {path.name}")
    return int(match.group(1))


def measure(target: str, tool: Tool, scale: float, timeout: float,
            keep: Path | None = None) -> Counts:
    """Run the target under callgrind and the tool; count the region's instructions.
    With ``keep``, callgrind's files are copied to ``keep/TARGET-TOOL/`` for
    ``callgrind_annotate`` (``keep`` is then that directory)."""
    with tempfile.TemporaryDirectory(prefix="dhatc-callgrind-") as tmpdir:
        script = Path(tmpdir) / "bench_child.py"
        script.write_text(child_script(target, tool, scale))
        out = Path(tmpdir) / "callgrind.out"
        cmd = [
            "valgrind", "--tool=callgrind", f"--dump-before={MARKER_FUNCTION}",
            f"--callgrind-out-file={out}", sys.executable, str(script),
        ]
        try:
            proc = subprocess.run(cmd, cwd=tmpdir, env=child_env(), capture_output=True,
                                  text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise CallgrindError("valgrind is not installed (apt-get install valgrind)") from exc
        except subprocess.TimeoutExpired as exc:
            raise CallgrindError(f"timed out after {timeout:g} s") from exc
        if proc.returncode != 0:
            raise CallgrindError(f"exit status {proc.returncode}:\n{tail(proc.stderr)}")
        # Dump 1: up to the first marker; 2: start and work; 3: stop and file.
        work, stop = _summary(Path(f"{out}.2")), _summary(Path(f"{out}.3"))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for dump in Path(tmpdir).glob("callgrind.out*"):
                shutil.copy(dump, keep / dump.name)
    blocks = pps = None
    for line in proc.stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "blocks" in data:
            blocks, pps = int(data["blocks"]), int(data["pps"])
    return Counts(work + stop, stop, blocks, pps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Instructions per allocation under callgrind.")
    parser.add_argument("targets", nargs="+", metavar="TARGET",
                        help="a realcode.py benchmark or a run.py workload")
    parser.add_argument("--tools", default="none,dhatc",
                        help=f"comma-separated, in-process ones (default: none,dhatc; "
                             f"known: {', '.join(IN_PROCESS_TOOLS)})")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply a realcode benchmark's loop counts (default 1)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep callgrind's files in DIR/TARGET-TOOL/ (the region is "
                             "callgrind.out.2, the stop callgrind.out.3)")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in IN_PROCESS_TOOLS]
    if unknown:
        parser.error(f"unknown or launcher tool: {', '.join(unknown)} (known: {', '.join(IN_PROCESS_TOOLS)})")
    if BASELINE not in tools:
        tools.insert(0, BASELINE)
    if "dhatc" not in tools:
        tools.append("dhatc")  # its file gives the blocks per region
    for target in args.targets:
        if target not in WORKLOADS and target not in realcode.BENCHMARKS:
            parser.error(f"unknown target: {target} (a realcode.py benchmark or a run.py workload)")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    try:
        if any(t in realcode.BENCHMARKS for t in args.targets):
            realcode.catalogue()
    except realcode.SetupError as exc:
        print(f"callgrind.py: error: {exc}", file=sys.stderr)
        return 2
    for name in list(tools):
        reason = unavailable_reason(IN_PROCESS_TOOLS[name])
        if reason is not None:
            print(f"{name}: {reason}; skipped", file=sys.stderr)
            tools.remove(name)

    failed = False
    header = (f"{'target':16} {'tool':14} {'instructions':>15} {'of which stop':>15} "
              f"{'blocks':>10} {'PPs':>6} {'extra Ir/block':>15} {'stop Ir/PP':>11}")
    print(header)
    for target in args.targets:
        counts: dict[str, Counts] = {}
        for tool in tools:
            print(f"callgrind: {target} {tool} ...", file=sys.stderr)
            try:
                kept = args.keep / f"{target}-{tool}" if args.keep else None
                counts[tool] = measure(target, IN_PROCESS_TOOLS[tool], args.scale, args.timeout,
                                       kept)
            except CallgrindError as exc:
                print(f"{target} {tool}: {exc}", file=sys.stderr)
                failed = True
        # The blocks and program points of dhatc's file: the same program under every tool.
        blocks = next((c.blocks for c in counts.values() if c.blocks), None)
        pps = next((c.pps for c in counts.values() if c.pps), None)
        base = counts.get(BASELINE)
        for tool, c in counts.items():
            per_block = per_pp = ""
            if tool != BASELINE and base is not None and blocks:
                per_block = f"{(c.region - base.region) / blocks:.0f}"
            if tool != BASELINE and base is not None and pps:
                per_pp = f"{(c.stop - base.stop) / pps:.0f}"
            print(
                f"{target:16} {tool:14} {c.region:>15,} {c.stop:>15,} "
                f"{blocks or 0:>10,} {pps or 0:>6,} {per_block:>15} {per_pp:>11}",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
