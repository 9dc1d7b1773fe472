"""Memory: what each profiler adds to a program's memory, and dhatc's per block.

Usage::

    python benchmarks/memory.py [--targets grow,realcode:deepcopy] \\
        [--tools none,dhatc,dhatc-run,tracemalloc1,memray-py] [--rounds N] [--markdown] [--json out.json]

A target is a workload of ``workloads.py`` (``grow``) or a benchmark of
``realcode.py`` (``realcode:NAME``).  Each measurement runs the target once in
a fresh interpreter (no warm-up: the peak is the profiled run's) under one
tool, as ``run.py`` and ``realcode.py`` do, and reads from ``/proc/self``:

- ``anon``: the process's anonymous resident memory (``Anonymous`` in
  ``smaps_rollup``) at the end of the work, *while the profile still runs*
  (dhatc gives its memory back when the profile stops);
- ``hwm``: the peak resident memory of the whole run (``VmHWM``), read after
  the profiler has stopped and written its file.

Both are reported minus the same figure of the unprofiled run (the median over
the rounds).  dhatc's own memory comes from ``mmap``, so it is in no
allocator's figures and shows only here.  The child also records dhatc's block
counts (``HeapStats`` inside the profile: live at the end, ``curr_blocks``, and
at the peak, ``max_blocks``) and the program points of its file, and the table
divides the extra peak RSS by the peak live blocks.  On ``grow`` (1.2M blocks
live at the peak, 16 program points) that is dhatc's memory per live block; on
a benchmark with many program points and a small live heap the extra is mostly
per program point (and per stack frame).  The blocks are dhatc's counts of the
same program under every tool (``dhatc-run`` counts its own: the whole process,
malloc included).  For tracemalloc the child also records
``tracemalloc.get_tracemalloc_memory()`` at the end of the work.

The split of dhatc's memory between the live map, the program points and the
stacks needs figures from the engine; from outside only the total is seen.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from harness import (  # noqa: E402  (needs the path above)
    BASELINE,
    MeasurementError,
    Tool,
    expand_run,
    machine_line,
    run_child,
    unavailable_reason,
)
import realcode  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

TOOLS: dict[str, Tool] = {name: realcode.TOOLS[name] for name in realcode.TOOL_GROUPS["main"]}
TOOLS.update({n: t for n, t in realcode.TOOLS.items() if n not in TOOLS})

DEFAULT_TARGETS = ["grow", "realcode:deepcopy", "realcode:regex_compile"]

# Reads /proc/self at the end of the work (inside the profile) and at the end of
# the run.  Defined before the region; called inside it after the work.
SAMPLER = '''\
def _proc(path, keys):
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0]) * 1024
    return out

def _inside():
    result = {"anon": _proc("/proc/self/smaps_rollup", ("Anonymous",))["Anonymous"]}
    if "dhatc" in _sys.modules:
        try:
            stats = _sys.modules["dhatc"].HeapStats.get()
        except RuntimeError:  # no heap profile runs: another tool
            pass
        else:
            result.update(curr_blocks=stats.curr_blocks, max_blocks=stats.max_blocks,
                          total_blocks=stats.total_blocks)
    if "tracemalloc" in _sys.modules and _sys.modules["tracemalloc"].is_tracing():
        result["tracemalloc_own"] = _sys.modules["tracemalloc"].get_tracemalloc_memory()
    return result
'''

CHILD_TEMPLATE = """\
import gc as _gc
import json as _json
import os as _os
import sys as _sys
import time as _time

_sys.path.insert(0, {bench_dir!r})
{prelude}
{sampler}
{setup}
_gc.collect()
_t0 = _time.perf_counter()
{region}
_t1 = _time.perf_counter()
_result = dict(_sample, seconds=_t1 - _t0)
_result.update(_proc("/proc/self/status", ("VmHWM",)))
if _os.path.exists("dhat-heap.json"):
    with open("dhat-heap.json") as _f:
        _file = _json.load(_f)
    _result["pps"] = len(_file["pps"])
    _result["frames"] = len(_file["ftbl"])
print(_json.dumps(_result), flush=True)
"""


def child_script(target: str, tool: Tool) -> str:
    """The source of the child for one (target, tool) memory measurement."""
    if target.startswith("realcode:"):
        name = target[len("realcode:"):]
        cat = realcode.catalogue()
        bench = realcode.BENCHMARKS[name]
        prelude = (
            "import pyperf_shim as _shim\n"
            f"_plan = _shim.plan(_shim.load_entries({str(cat.scripts[name])!r}, "
            f"{list(bench.argv)!r}), {bench.loops!r}, {bench.entries!r})"
        )
        work = realcode.WORK
    else:
        prelude = "from workloads import WORKLOADS as _WORKLOADS\n_work = _WORKLOADS[%r]" % target
        work = "_work()\n"
    # testing=True in run.py's dhatc tool would write no file: the realcode
    # tool, which writes one, is used for every target.
    return CHILD_TEMPLATE.format(
        bench_dir=str(BENCH_DIR),
        prelude=prelude,
        sampler=SAMPLER.rstrip(),
        setup=tool.setup.rstrip(),
        region=expand_run(tool.region, work + "_sample = _inside()\n"),
    )


@dataclass
class Row:
    target: str
    tool: str
    samples: list[dict[str, Any]]

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.samples if key in s]
        return statistics.median(values) if values else None


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def report(rows: dict[tuple[str, str], Row], targets: list[str], tools: list[str], markdown: bool) -> str:
    header = [
        "target", "tool", "anon at end of work, MB (+ over unprofiled)",
        "peak RSS, MB (+ over unprofiled)", "live blocks (end / peak)", "PPs",
        "extra peak RSS per peak live block, bytes", "tracemalloc's own, MB",
    ]
    out_rows: list[list[str]] = []
    for target in targets:
        base = rows.get((target, BASELINE))
        base_anon = base.median("anon") if base else None
        base_hwm = base.median("VmHWM") if base else None
        dhatc_row = rows.get((target, "dhatc"))
        for tool in tools:
            row = rows.get((target, tool))
            if row is None or not row.samples:
                continue
            anon, hwm = row.median("anon"), row.median("VmHWM")
            extra_anon = None if anon is None or base_anon is None else anon - base_anon
            extra_hwm = None if hwm is None or base_hwm is None else hwm - base_hwm
            # Blocks as dhatc counts them (the same program under every tool).
            counts = row if row.median("curr_blocks") is not None else dhatc_row
            curr = counts.median("curr_blocks") if counts else None
            peak = counts.median("max_blocks") if counts else None
            per_block = (
                f"{extra_hwm / peak:.0f}" if extra_hwm is not None and peak and tool != BASELINE else "-"
            )
            pps = row.median("pps")
            out_rows.append([
                target, tool,
                f"{_mb(anon)} (+{_mb(extra_anon)})" if tool != BASELINE else _mb(anon),
                f"{_mb(hwm)} (+{_mb(extra_hwm)})" if tool != BASELINE else _mb(hwm),
                "-" if curr is None else f"{curr:,.0f} / {peak:,.0f}",
                "-" if pps is None else f"{pps:,.0f}",
                per_block,
                _mb(row.median("tracemalloc_own")),
            ])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in out_rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *out_rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in out_rows]
    return "\n".join(lines)


def _parse_targets(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if name.startswith("realcode:"):
            if name[len("realcode:"):] not in realcode.BENCHMARKS:
                raise argparse.ArgumentTypeError(f"unknown benchmark in {name} (see realcode.py --list)")
        elif name not in WORKLOADS:
            raise argparse.ArgumentTypeError(
                f"unknown target: {name} (a workload: {', '.join(WORKLOADS)}; or realcode:BENCHMARK)"
            )
    return names


def _parse_tools(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tool: {', '.join(unknown)} (known: {', '.join(TOOLS)})")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Memory that heap profilers add to a program.")
    parser.add_argument("--targets", type=_parse_targets, default=DEFAULT_TARGETS,
                        help=f"comma-separated (default: {','.join(DEFAULT_TARGETS)})")
    parser.add_argument("--tools", type=_parse_tools, default=realcode.TOOL_GROUPS["main"],
                        help=f"comma-separated (default: {','.join(realcode.TOOL_GROUPS['main'])})")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    parser.add_argument("--json", metavar="PATH", help="write every sample as JSON to PATH")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.json:
        # Fail now, not after the measurements: the samples are saved first.
        try:
            Path(args.json).write_text("")
        except OSError as exc:
            print(f"memory.py: error: cannot write --json {args.json}: {exc.strerror}", file=sys.stderr)
            return 2
    if any(t.startswith("realcode:") for t in args.targets):
        try:
            realcode.catalogue()
        except realcode.SetupError as exc:
            print(f"memory.py: error: {exc}", file=sys.stderr)
            return 2
    tools: list[str] = args.tools
    if BASELINE not in tools:
        tools = [BASELINE, *tools]
    # dhatc's counts give the other tools' per-block figures: measure it too.
    unavailable = {}
    for name in tools:
        reason = unavailable_reason(TOOLS[name])
        if reason is not None:
            unavailable[name] = reason
            print(f"{name}: {reason}; skipped", file=sys.stderr)
    tools = [t for t in tools if t not in unavailable]

    print(machine_line(), file=sys.stderr)
    rows: dict[tuple[str, str], Row] = {}
    errors: dict[str, str] = {}
    for round_no in range(1, args.rounds + 1):
        for target in args.targets:
            for tool in tools:
                key = (target, tool)
                if f"{target}:{tool}" in errors:
                    continue
                try:
                    result = run_child(child_script(target, TOOLS[tool]), TOOLS[tool], args.timeout)
                except MeasurementError as exc:
                    errors[f"{target}:{tool}"] = str(exc)
                    print(f"[{round_no}/{args.rounds}] {target} {tool} FAILED: {exc}", file=sys.stderr)
                    continue
                rows.setdefault(key, Row(target, tool, [])).samples.append(result.data)
                print(
                    f"[{round_no}/{args.rounds}] {target} {tool}: anon "
                    f"{result.data['anon'] / 1e6:.1f} MB, peak {result.data['VmHWM'] / 1e6:.1f} MB",
                    file=sys.stderr,
                )
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_line(),
            "rounds": args.rounds,
            "samples": [dict(s, target=r.target, tool=r.tool) for r in rows.values() for s in r.samples],
            "errors": errors,
            "unavailable": unavailable,
        }, indent=2) + "\n")
    print(machine_line())
    print()
    print(report(rows, args.targets, tools, args.markdown))
    for pair, error in errors.items():
        print(f"{pair}: {error.strip().splitlines()[-1]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
