"""Benchmark runner: time the workloads of ``workloads.py`` under each profiler.

Usage::

    python benchmarks/run.py [--repeat N] [--workloads churn,grow] \\
        [--tools none,tracemalloc1,dhatc] [--markdown] [--json out.json]

Every measurement runs in a fresh interpreter (``sys.executable``).  The child
imports the workloads, runs the tool's ``setup`` (imports; untimed), calls the
workload once unprofiled as a warm-up, collects garbage, and then times only the
profiled region -- start profiler, run the workload, stop the profiler (stop
included) -- with ``time.perf_counter`` and ``time.process_time``.  It prints
``{"seconds": ..., "cpu_seconds": ...}`` as a JSON line on stdout; the report
uses the wall time, or the CPU time with ``--clock cpu``.

Runs are interleaved (for each repeat: for each workload: for each tool) so
that slow drifts of the machine spread over all tools alike.  The report gives
the median per (workload, tool) and its ratio to the median of ``none``
(unprofiled), which is therefore always measured; ``--stat min`` uses the
best of the runs instead of the median.

Adding a tool: add an entry to ``TOOLS``.  An in-process tool gives Python
statements (``region``) that start the profiler, call ``run()`` and stop it.
A command-line tool (``memray run``, ``python -m dhatc run``) gives a
``launcher``: the arguments placed between the interpreter and the child
script; then ``region`` is usually just ``run()`` and only the workload itself
is timed (the profiler is already running during the warm-up and its start and
stop are not included).  See the commented examples at the end of ``TOOLS``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from harness import (  # noqa: E402  (needs the path above)
    BASELINE,
    CLOCK_HELP,
    Results,
    Tool,
    check_tools,
    clock_words,
    format_ratio,
    machine_line,
    notes,
    run_child,
    run_rounds,
    samples_json,
)
from workloads import WORKLOADS  # noqa: E402


def _tracemalloc_tool(frames: int) -> Tool:
    return Tool(
        description=f"tracemalloc, {frames} frame{'s' if frames > 1 else ''}",
        setup="import tracemalloc",
        region=f"tracemalloc.start({frames})\nrun()\ntracemalloc.stop()\n",
    )


TOOLS: dict[str, Tool] = {
    "none": Tool(
        description="unprofiled",
        region="run()",
    ),
    "tracemalloc1": _tracemalloc_tool(1),
    "tracemalloc25": _tracemalloc_tool(25),
    "dhatc": Tool(
        description="dhatc, heap mode (trim_backtraces=10, no file written)",
        setup="import dhatc",
        region=textwrap.dedent(
            """\
            with dhatc.Profiler(mode="heap", testing=True):
                run()
            """
        ),
        requires="dhatc",
    ),
    # Command-line tools: the whole child runs under the profiler, and only the
    # workload itself is timed (see "launcher" above).
    "dhatc-run": Tool(
        description="python -m dhatc run (preload library: malloc & co. too)",
        launcher=("-m", "dhatc", "run", "-o", "{tmpdir}/dhat-heap.json"),
        region="run()",
        requires="dhatc",
    ),
    "memray-py": Tool(
        description="memray run --trace-python-allocators",
        launcher=("-m", "memray", "run", "--trace-python-allocators", "-q", "-o",
                  "{tmpdir}/memray.bin"),
        region="run()",
        requires="memray",
    ),
    # Native stacks (issue 12): C frames and Python frames in every stack.
    "dhatc-native": Tool(
        description="dhatc, heap mode, native=True (no file written)",
        setup="import dhatc",
        region=textwrap.dedent(
            """\
            with dhatc.Profiler(mode="heap", testing=True, native=True):
                run()
            """
        ),
        requires="dhatc",
    ),
    "dhatc-run-native": Tool(
        description="python -m dhatc run --native (malloc & co. too)",
        launcher=("-m", "dhatc", "run", "--native", "-o", "{tmpdir}/dhat-heap.json"),
        region="run()",
        requires="dhatc",
    ),
    "memray-native-py": Tool(
        description="memray run --native --trace-python-allocators",
        launcher=("-m", "memray", "run", "--native", "--trace-python-allocators", "-q", "-o",
                  "{tmpdir}/memray.bin"),
        region="run()",
        requires="memray",
    ),
    "memray-native": Tool(
        description="memray run --native",
        launcher=("-m", "memray", "run", "--native", "-q", "-o", "{tmpdir}/memray.bin"),
        region="run()",
        requires="memray",
    ),
}

# dhatc's native mode is measured on request (--tools), against memray's.
NATIVE_TOOLS = ("dhatc-native", "dhatc-run-native", "memray-native-py")
DEFAULT_TOOLS = [name for name in TOOLS if name not in NATIVE_TOOLS]

# The script each child runs.  Top-level code on purpose: the profiled stack is
# just "<child module> -> workload", with no runner frames under it (tools that
# record many frames pay per frame, so extra harness frames would bias them).
CHILD_TEMPLATE = """\
import gc as _gc
import json as _json
import sys as _sys
import time as _time

_sys.path.insert(0, {bench_dir!r})
from workloads import WORKLOADS as _WORKLOADS

run = _WORKLOADS[{workload!r}]
{setup}
run()  # warm-up, unprofiled (unless the tool is a launcher)
_gc.collect()
_c0 = _time.process_time()
_t0 = _time.perf_counter()
{region}
_t1 = _time.perf_counter()
_c1 = _time.process_time()
print(_json.dumps({{"seconds": _t1 - _t0, "cpu_seconds": _c1 - _c0}}), flush=True)
"""


def child_script(workload: str, tool: Tool) -> str:
    """The source of the child process for one (workload, tool) measurement."""
    return CHILD_TEMPLATE.format(
        bench_dir=str(BENCH_DIR),
        workload=workload,
        setup=tool.setup.rstrip(),
        region=tool.region.rstrip(),
    )


def measure(workload: str, tool: Tool, timeout: float) -> float:
    """Run one measurement in a fresh interpreter; return the seconds."""
    return run_child(child_script(workload, tool), tool, timeout).seconds


def plain_table(res: Results) -> str:
    ratio_title = f"ratio of {res.stat}s"
    unit = "s" if res.clock == "wall" else "CPU s"
    header = ("workload", "tool", f"median {unit}", f"min {unit}", f"max {unit}", ratio_title, "runs")
    rows: list[tuple[str, ...]] = []
    for workload in res.items:
        for tool in res.measured_tools():
            values = res.values(workload, tool)
            error = res.errors.get((workload, tool))
            if not values:
                rows.append((workload, tool, "error", "", "", "", "0"))
                continue
            ratio = res.ratio(workload, tool)
            rows.append(
                (
                    workload,
                    tool,
                    f"{statistics.median(values):.4f}",
                    f"{min(values):.4f}",
                    f"{max(values):.4f}",
                    format_ratio(ratio) if ratio is not None else "-",
                    f"{len(values)}" + (" (error)" if error else ""),
                )
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def markdown_table(res: Results) -> str:
    """Tools as rows, workloads as columns, cells "ratio (seconds)", the
    layout of BENCHMARKS.md."""
    stat = "median" if res.stat == "median" else "best"
    lines = [
        f"{machine_line()}; {stat} of {res.repeat} interleaved runs, "
        f"each in a fresh process; the region's {clock_words(res.clock)}.",
        "",
        "| tool | " + " | ".join(res.items) + " |",
        "|---|" + "---|" * len(res.items),
    ]
    for tool in res.measured_tools():
        cells = []
        for workload in res.items:
            value = res.summary(workload, tool)
            ratio = res.ratio(workload, tool)
            if value is None:
                cells.append("error")
            elif ratio is None:
                cells.append(f"{value:.2f} s")
            else:
                cells.append(f"{format_ratio(ratio)} ({value:.2f} s)")
        lines.append(f"| {TOOLS[tool].description} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------


def _parse_list(value: str, known: Mapping[str, object], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time allocation-heavy workloads under heap profilers.",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="interleaved rounds (default 5)"
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: _parse_list(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help=f"comma-separated (default: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--tools",
        type=lambda v: _parse_list(v, TOOLS, "tool"),
        default=DEFAULT_TOOLS,
        help=f"comma-separated (default: {','.join(DEFAULT_TOOLS)}; also: "
        f"{','.join(t for t in TOOLS if t not in DEFAULT_TOOLS)}); "
        f"'{BASELINE}' is always added, ratios are relative to it",
    )
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic the ratios and the Markdown table use (default median; "
        "min = best of N: steadier for short runs, but inflates large ratios)",
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help=CLOCK_HELP)
    parser.add_argument(
        "--markdown", action="store_true", help="also print a Markdown table"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write every sample as JSON to PATH"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before one measurement is abandoned (default 600)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list workloads and tools, then exit"
    )
    parser.add_argument(
        "--show-child",
        metavar="WORKLOAD:TOOL",
        help="print the child script for one measurement, then exit",
    )
    args = parser.parse_args(argv)

    if args.list:
        for name, func in WORKLOADS.items():
            doc = (func.__doc__ or "").strip().split("\n")[0]
            print(f"workload {name:14} {doc}")
        for name, tool in TOOLS.items():
            print(f"tool     {name:14} {tool.description}")
        return 0
    if args.show_child:
        workload, _, tool_name = args.show_child.partition(":")
        if workload not in WORKLOADS or tool_name not in TOOLS:
            parser.error(f"--show-child: unknown workload or tool in {args.show_child!r}")
        print(child_script(workload, TOOLS[tool_name]), end="")
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    tools: list[str] = args.tools
    if BASELINE not in tools:
        tools = [BASELINE, *tools]
    res = Results(
        items=args.workloads, tools=tools, repeat=args.repeat, stat=args.stat,
        clock=args.clock,
    )

    print(machine_line(), file=sys.stderr)
    check_tools(res, TOOLS)
    run_rounds(
        res,
        lambda workload, name: run_child(
            child_script(workload, TOOLS[name]), TOOLS[name], args.timeout
        ),
    )

    print(machine_line())
    print()
    print(plain_table(res))
    extra = notes(res)
    if extra:
        print()
        print(extra)
    if args.markdown:
        print()
        print(markdown_table(res))
        if extra:
            print()
            print("\n".join(f"- {line}" for line in extra.splitlines()))
    if args.json:
        data = {
            "machine": machine_line(),
            "repeat": res.repeat,
            "stat": res.stat,
            "clock": res.clock,
            "samples": samples_json(res, "workload"),
            "errors": {f"{w}:{t}": e for (w, t), e in res.errors.items()},
            "unavailable": res.unavailable,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
