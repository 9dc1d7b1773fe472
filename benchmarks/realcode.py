"""Real code: pyperformance's standard-library benchmarks under each profiler.

Usage::

    python benchmarks/realcode.py [--rounds N] [--benchmarks deepcopy,go] \\
        [--tools main|native|all|none,dhatc,...] [--markdown] [--json out.json]

pyperformance (``pip install pyperformance``, in the environment that runs this
script; it is not a dependency of dhatc) ships its benchmarks as scripts,
``data-files/benchmarks/bm_NAME/run_benchmark.py``.  The ones that need nothing
beyond the standard library, and whose work can run inside one process, are
configured in ``BENCHMARKS`` with a fixed amount of work (a loop count, and for
a few of them which of their functions run or a smaller problem size) that
takes about 0.1-0.3 s unprofiled on a 2-core machine.

Each measurement runs in a fresh interpreter.  The child loads the
benchmark script with pyperf's runner replaced by one that only records the
benchmark's functions (``pyperf_shim.py``), runs the tool's setup (imports), calls
each function once with one loop as a warm-up (unprofiled, unless the tool is a
launcher), collects garbage, and times (wall and CPU time) the region:
start the profiler, run the functions with their loop counts, stop the profiler
(writing its file: dhatc's and memray's files go to the child's temporary
directory).  Rounds are interleaved (for each round: for each benchmark: for
each tool).  The report gives, per benchmark, the ratio of the tool's median to
the unprofiled median (and of the best runs, best of N), and per tool the
geometric mean and the worst ratio.

``python -m dhatc run`` is a launcher: the child runs under it from its first
line, and the same region is timed, which then holds only the work; its start
and its file, written at exit, are not in it.  The parent also times every whole
child (``child_seconds`` in ``--json``), so the cost outside the region can be
read there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
from dataclasses import dataclass, field, replace
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
    expand_run,
    format_ratio,
    geometric_mean,
    machine_line,
    notes,
    run_child,
    run_rounds,
    samples_json,
)
import pyperf_shim  # noqa: E402


@dataclass(frozen=True)
class RealBench:
    """How much of one pyperformance benchmark a measurement runs."""

    # Loops for each of the benchmark's functions (pyperf's "loops": the
    # argument of a bench_time_func function, or the number of calls of a
    # bench_func one).
    loops: int = 1
    # Only these functions (by the name the script registers), each with its
    # own loop count; None: all of them, with ``loops``.
    entries: dict[str, int] | None = None
    # The benchmark script's command line (its own options, e.g. a smaller size).
    argv: tuple[str, ...] = ()


def scaled(bench: RealBench, factor: float) -> RealBench:
    """``bench`` with every loop count multiplied by ``factor`` (at least 1)."""
    if factor == 1:
        return bench
    return replace(
        bench,
        loops=max(1, round(bench.loops * factor)),
        entries=None if bench.entries is None
        else {e: max(1, round(n * factor)) for e, n in bench.entries.items()},
    )


# Sized on a 2-core AMD EPYC VM with CPython 3.11 (unprofiled, about 0.1-0.3 s).
# A benchmark whose single loop takes longer than about 0.4 s is left out (see
# SKIPPED): under tracemalloc it would take several seconds a run.
BENCHMARKS: dict[str, RealBench] = {
    "argparse": RealBench(loops=200, argv=("many_optionals",)),
    "barnes_hut": RealBench(argv=("--iterations", "15")),
    "base64": RealBench(
        entries={
            "base64_small": 100,
            "base64_large": 2,
            "urlsafe_base64_small": 30,
            "base32_small": 2,
            "base16_small": 30,
            "ascii85_small": 2,
            "base85_small": 5,
        }
    ),
    "chaos": RealBench(loops=2),
    "comprehensions": RealBench(loops=5000),
    "coroutines": RealBench(loops=6),
    "decimal_pi": RealBench(),
    "deepcopy": RealBench(entries={"deepcopy": 150, "deepcopy_reduce": 3000, "deepcopy_memo": 500}),
    "deltablue": RealBench(loops=25),
    "float": RealBench(),
    "gc_collect": RealBench(loops=5),
    "gc_traversal": RealBench(loops=2),
    "generators": RealBench(),
    "go": RealBench(),
    "hexiom": RealBench(loops=15),
    "json_dumps": RealBench(loops=10),
    "json_loads": RealBench(loops=300),
    "logging": RealBench(
        entries={"logging_format": 400, "logging_silent": 10000, "logging_simple": 800}
    ),
    "meteor_contest": RealBench(loops=2),
    "nbody": RealBench(loops=3),
    "nqueens": RealBench(loops=2),
    "pickle": RealBench(loops=1000, argv=("pickle",)),
    "pidigits": RealBench(),
    "raytrace": RealBench(argv=("--width", "70", "--height", "70")),
    "regex_compile": RealBench(),
    "regex_dna": RealBench(argv=("--fasta-length", "50000")),
    "regex_effbot": RealBench(loops=6),
    "regex_v8": RealBench(loops=7),
    "richards": RealBench(loops=2),
    "richards_super": RealBench(loops=2),
    "scimark": RealBench(
        entries={"scimark_monte_carlo": 1, "scimark_sparse_mat_mult": 5}
    ),
    "spectral_norm": RealBench(),
    "sqlite_synth": RealBench(loops=50000),
    "telco": RealBench(loops=12),
    "typing_runtime_protocols": RealBench(loops=200),
    "unpack_sequence": RealBench(loops=5000),
    "xml_etree": RealBench(entries={"xml_etree_process": 1}),
}

# Standard-library benchmarks of pyperformance that are not run, and why.
SKIPPED: dict[str, str] = {
    "2to3": "times a command (a new process)",
    "python_startup": "times a command (a new process)",
    "concurrent_imap": "work runs in a process pool",
    "asyncio_tcp": "a TCP server and client: I/O bound",
    "pathlib": "file-system bound (and its setup removes its files before the work runs)",
    "async_tree": "one loop takes 1.5 s",
    "async_generators": "one loop takes 0.5-0.9 s",
    "bpe_tokeniser": "one loop takes 11 s",
    "decimal_factorial": "one loop takes 0.6 s",
    "fannkuch": "one loop takes 0.6-1.0 s",
    "mdp": "one loop takes 7.5 s",
    "pprint": "one call takes 1.6 s",
    "pyflate": "one loop takes 0.65-1.0 s",
}

# --- tools -------------------------------------------------------------------------

TOOLS: dict[str, Tool] = {
    "none": Tool(description="unprofiled", region="run()"),
    "dhatc": Tool(
        description="dhatc, heap mode (trim_backtraces=10, file written)",
        setup="import dhatc",
        region=textwrap.dedent(
            """\
            with dhatc.Profiler(file_name="dhat-heap.json"):
                run()
            """
        ),
        requires="dhatc",
    ),
    "dhatc-run": Tool(
        description="python -m dhatc run (malloc & co. too; start and file not timed)",
        launcher=("-m", "dhatc", "run", "-o", "{tmpdir}/dhat-heap.json"),
        region="run()",
        requires="dhatc",
    ),
    "tracemalloc1": Tool(
        description="tracemalloc, 1 frame",
        setup="import tracemalloc",
        region="tracemalloc.start(1)\nrun()\ntracemalloc.stop()\n",
    ),
    "memray-py": Tool(
        description="memray Tracker(trace_python_allocators=True)",
        setup="import memray",
        region=textwrap.dedent(
            """\
            with memray.Tracker("memray.bin", trace_python_allocators=True):
                run()
            """
        ),
        requires="memray",
    ),
    # Native stacks (issue 12).
    "dhatc-native": Tool(
        description="dhatc, heap mode, native=True",
        setup="import dhatc",
        region=textwrap.dedent(
            """\
            with dhatc.Profiler(file_name="dhat-heap.json", native=True):
                run()
            """
        ),
        requires="dhatc",
        probe="dhatc.Profiler(native=True, testing=True)",
        probe_failure="dhatc.Profiler does not take native=True yet",
    ),
    "memray-native": Tool(
        description="memray Tracker(native_traces=True, trace_python_allocators=True)",
        setup="import memray",
        region=textwrap.dedent(
            """\
            with memray.Tracker("memray.bin", native_traces=True,
                                trace_python_allocators=True):
                run()
            """
        ),
        requires="memray",
    ),
}

TOOL_GROUPS: dict[str, list[str]] = {
    "main": ["none", "dhatc", "dhatc-run", "tracemalloc1", "memray-py"],
    "native": ["none", "dhatc-native", "memray-native"],
    "all": list(TOOLS),
}

# --- the child -----------------------------------------------------------------------

# Top-level code on purpose: the profiled stacks are "<child module> -> the
# benchmark's function", with no frame of the runner under them.
CHILD_TEMPLATE = """\
import gc as _gc
import json as _json
import sys as _sys
import time as _time

_sys.path.insert(0, {bench_dir!r})
import pyperf_shim as _shim

_plan = _shim.plan(_shim.load_entries({script!r}, {argv!r}), {loops!r}, {entries!r})
{setup}
_shim.run_plan(_plan, loops=1)  # warm-up, unprofiled (unless the tool is a launcher)
_gc.collect()
_c0 = _time.process_time()
_t0 = _time.perf_counter()
{region}
_t1 = _time.perf_counter()
_c1 = _time.process_time()
print(_json.dumps({{"seconds": _t1 - _t0, "cpu_seconds": _c1 - _c0}}), flush=True)
"""

# The work, inlined in the region (see pyperf_shim.run_plan, which does the same).
WORK = """\
for _kind, _func, _args, _loops in _plan:
    if _kind == "time":
        _func(_loops, *_args)
    elif _kind == "func":
        for _i in range(_loops):
            _func(*_args)
    else:
        _shim.run_async(_func, _args, _loops)
"""


def child_script(script: Path, bench: RealBench, tool: Tool, region: str | None = None) -> str:
    """The source of the child process for one (benchmark, tool) measurement."""
    return CHILD_TEMPLATE.format(
        bench_dir=str(BENCH_DIR),
        script=str(script),
        argv=list(bench.argv),
        loops=bench.loops,
        entries=bench.entries,
        setup=tool.setup.rstrip(),
        region=expand_run(region if region is not None else tool.region, WORK),
    )


# --- finding the benchmarks -------------------------------------------------------------


class SetupError(Exception):
    """Something this script needs is missing (a one-line message for the user)."""


@dataclass
class Catalogue:
    """The configured benchmarks that this pyperformance has, with their scripts."""

    scripts: dict[str, Path] = field(default_factory=dict)
    # Configured but missing from (or no longer stdlib-only in) this pyperformance.
    missing: list[str] = field(default_factory=list)
    # Standard-library benchmarks of this pyperformance that are not configured.
    unconfigured: list[str] = field(default_factory=list)


def catalogue() -> Catalogue:
    root = pyperf_shim.benchmarks_dir()
    if root is None:
        raise SetupError(
            "pyperformance is not installed: pip install pyperformance "
            f"(into the environment of {sys.executable})"
        )
    found = pyperf_shim.stdlib_only(root)
    cat = Catalogue()
    for name in BENCHMARKS:
        if name in found:
            cat.scripts[name] = found[name]
        else:
            cat.missing.append(name)
    cat.unconfigured = [n for n in found if n not in BENCHMARKS and n not in SKIPPED]
    return cat


# --- report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSummary:
    geomean: float | None
    worst: float | None
    worst_name: str
    count: int  # benchmarks with a ratio


def tool_summary(res: Results, tool: str, stat: str) -> ToolSummary:
    ratios = {b: res.ratio(b, tool, stat) for b in res.items}
    have = {b: r for b, r in ratios.items() if r is not None}
    if not have:
        return ToolSummary(None, None, "", 0)
    worst_name = max(have, key=lambda b: have[b])
    return ToolSummary(geometric_mean(have.values()), have[worst_name], worst_name, len(have))


def above(res: Results, tool: str, limit: float, stat: str = "median") -> list[tuple[str, float]]:
    """The benchmarks whose ratio is above ``limit``, worst first."""
    out = [(b, r) for b in res.items if (r := res.ratio(b, tool, stat)) is not None and r > limit]
    return sorted(out, key=lambda p: -p[1])


def _cell(ratio: float | None) -> str:
    return format_ratio(ratio) if ratio is not None else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def plain_report(res: Results) -> str:
    tools = [t for t in res.measured_tools() if t != BASELINE]
    parts = []
    for stat, title in (("median", "median of"), ("min", "best of")):
        header = ["benchmark", f"unprofiled s ({stat})", *tools]
        rows = []
        for bench in res.items:
            base = res.summary(bench, BASELINE, stat)
            rows.append(
                [bench, f"{base:.4f}" if base is not None else "error"]
                + [_cell(res.ratio(bench, t, stat)) for t in tools]
            )
        parts.append(f"Ratios to unprofiled, {title} {res.repeat} rounds:\n" + _table(header, rows))
    header = ["tool", "geomean (median)", "worst (median)", "geomean (best)", "worst (best)", "benchmarks"]
    rows = []
    for tool in tools:
        med = tool_summary(res, tool, "median")
        best = tool_summary(res, tool, "min")
        rows.append(
            [
                tool,
                _cell(med.geomean),
                f"{_cell(med.worst)} {med.worst_name}".rstrip(),
                _cell(best.geomean),
                f"{_cell(best.worst)} {best.worst_name}".rstrip(),
                f"{med.count}/{len(res.items)}",
            ]
        )
    parts.append("Per tool:\n" + _table(header, rows))
    return "\n\n".join(parts)


def markdown_report(res: Results) -> str:
    tools = [t for t in res.measured_tools() if t != BASELINE]
    lines = [
        f"{machine_line()}; {len(res.items)} benchmarks, {res.repeat} interleaved rounds, "
        f"each measurement in a fresh process; the region's {clock_words(res.clock)}.",
        "",
        "| tool | geometric mean | worst | above 2x (median) | geometric mean, best of "
        f"{res.repeat} |",
        "|---|---|---|---|---|",
    ]
    for tool in tools:
        med = tool_summary(res, tool, "median")
        best = tool_summary(res, tool, "min")
        over = above(res, tool, 2.0)
        high = ", ".join(f"{b} {r:.2f}" for b, r in over[:8]) or "none"
        if len(over) > 8:
            high += f" and {len(over) - 8} more"
        count = "" if med.count == len(res.items) else f" ({med.count} of {len(res.items)})"
        lines.append(
            f"| {TOOLS[tool].description}{count} | "
            + (f"{med.geomean:.2f}x" if med.geomean else "-")
            + " | "
            + (f"{med.worst:.2f}x ({med.worst_name})" if med.worst else "-")
            + f" | {high} | "
            + (f"{best.geomean:.2f}x" if best.geomean else "-")
            + " |"
        )
    lines += [
        "",
        "Per benchmark, median ratio (best of N in brackets); unprofiled median in seconds"
        + (" of CPU time:" if res.clock == "cpu" else ":"),
        "",
        "| benchmark | unprofiled | " + " | ".join(tools) + " |",
        "|---|---|" + "---|" * len(tools),
    ]
    for bench in res.items:
        base = res.summary(bench, BASELINE)
        cells = []
        for tool in tools:
            by_median, by_best = res.ratio(bench, tool), res.ratio(bench, tool, "min")
            cells.append(
                "-" if by_median is None or by_best is None else f"{by_median:.2f} ({by_best:.2f})"
            )
        lines.append(
            f"| {bench} | " + (f"{base:.3f} s" if base is not None else "error") + " | "
            + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def whole_child_note(res: Results) -> str:
    """Median whole-child seconds per tool, summed over the benchmarks: what the
    launchers' start and exit-time file cost, outside the region."""
    totals = {}
    for tool in res.measured_tools():
        values = [statistics.median(v) for (b, t), v in res.child_samples.items() if t == tool and v]
        if len(values) == len(res.items):
            totals[tool] = sum(values)
    if BASELINE not in totals:
        return ""
    base = totals[BASELINE]
    parts = [f"{t} {v:.1f} s ({v / base:.2f}x)" for t, v in totals.items()]
    return (
        "Whole child processes (start, load, warm-up, region, exit; median per benchmark, "
        "summed): " + ", ".join(parts)
    )


# --- main -------------------------------------------------------------------------------


def _parse_tools(value: str) -> list[str]:
    names: list[str] = []
    for name in (n.strip() for n in value.split(",")):
        if not name:
            continue
        group = TOOL_GROUPS.get(name)
        if group is None and name not in TOOLS:
            raise argparse.ArgumentTypeError(
                f"unknown tool: {name} (known: {', '.join(TOOLS)}; groups: {', '.join(TOOL_GROUPS)})"
            )
        for n in group or [name]:
            if n not in names:
                names.append(n)
    return names


def _parse_benchmarks(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if name in SKIPPED:
            raise argparse.ArgumentTypeError(f"benchmark {name} is not run: {SKIPPED[name]}")
        if name not in BENCHMARKS:
            raise argparse.ArgumentTypeError(
                f"unknown benchmark: {name} (see --list)"
            )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time pyperformance's standard-library benchmarks under heap profilers.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--benchmarks",
        type=_parse_benchmarks,
        help="comma-separated (default: all configured; see --list)",
    )
    parser.add_argument(
        "--tools",
        type=_parse_tools,
        default=TOOL_GROUPS["main"],
        help=f"comma-separated tools or groups (default: main = {','.join(TOOL_GROUPS['main'])}; "
        f"native = {','.join(TOOL_GROUPS['native'])}; all); '{BASELINE}' is always added",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="multiply every loop count (at least 1 loop) by this (default 1; for quick checks)",
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help=CLOCK_HELP)
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    parser.add_argument("--json", metavar="PATH", help="write every sample as JSON to PATH")
    parser.add_argument(
        "--timeout", type=float, default=600.0,
        help="seconds before one measurement is abandoned (default 600)",
    )
    parser.add_argument("--list", action="store_true", help="list benchmarks and tools, then exit")
    parser.add_argument(
        "--show-child", metavar="BENCHMARK:TOOL",
        help="print the child script for one measurement, then exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.json:
        # Fail now, not after the measurements: the samples are saved first.
        try:
            Path(args.json).write_text("")
        except OSError as exc:
            print(f"realcode.py: error: cannot write --json {args.json}: {exc.strerror}", file=sys.stderr)
            return 2
    if args.scale <= 0:
        parser.error("--scale must be positive")
    try:
        cat = catalogue()
    except SetupError as exc:
        print(f"realcode.py: error: {exc}", file=sys.stderr)
        return 2

    if args.list:
        for name, bench in BENCHMARKS.items():
            where = "" if name in cat.scripts else "  (not in this pyperformance)"
            work = (
                ", ".join(f"{e} x{n}" for e, n in bench.entries.items())
                if bench.entries else f"{bench.loops} loop{'s' if bench.loops > 1 else ''}"
            )
            argv_text = f" [{' '.join(bench.argv)}]" if bench.argv else ""
            print(f"benchmark {name:26} {work}{argv_text}{where}")
        for name, why in SKIPPED.items():
            print(f"skipped   {name:26} {why}")
        for name in cat.unconfigured:
            print(f"new       {name:26} stdlib-only in this pyperformance, not configured here")
        for name, tool in TOOLS.items():
            print(f"tool      {name:26} {tool.description}")
        return 0
    if args.show_child:
        bench_name, _, tool_name = args.show_child.partition(":")
        if bench_name not in cat.scripts or tool_name not in TOOLS:
            parser.error(f"--show-child: unknown benchmark or tool in {args.show_child!r}")
        print(child_script(cat.scripts[bench_name], BENCHMARKS[bench_name], TOOLS[tool_name]), end="")
        return 0

    benchmarks = args.benchmarks or [b for b in BENCHMARKS if b in cat.scripts]
    missing = [b for b in benchmarks if b not in cat.scripts]
    if missing:
        print(
            f"realcode.py: error: not in this pyperformance (or not stdlib-only): "
            f"{', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    tools: list[str] = args.tools
    if BASELINE not in tools:
        tools = [BASELINE, *tools]
    res = Results(items=benchmarks, tools=tools, repeat=args.rounds, clock=args.clock)

    load_start = os.getloadavg()[0]
    print(machine_line(), file=sys.stderr)
    for name in cat.missing:
        print(f"{name}: not in this pyperformance; skipped", file=sys.stderr)
    check_tools(res, TOOLS)
    run_rounds(
        res,
        lambda bench, tool: run_child(
            child_script(cat.scripts[bench], scaled(BENCHMARKS[bench], args.scale), TOOLS[tool]),
            TOOLS[tool],
            args.timeout,
        ),
        item_width=max(len(b) for b in benchmarks),
    )

    load_end = os.getloadavg()[0]
    load_line = f"Load average (1 min): {load_start:.1f} at the start, {load_end:.1f} at the end"
    # Save first: the samples survive a broken pipe on stdout.
    if args.json:
        data = {
            "machine": machine_line(),
            "rounds": res.repeat,
            "scale": args.scale,
            "clock": res.clock,
            "benchmarks": {b: str(cat.scripts[b]) for b in benchmarks},
            "tools": {t: TOOLS[t].description for t in res.measured_tools()},
            "samples": samples_json(res, "benchmark"),
            "errors": {f"{b}:{t}": e for (b, t), e in res.errors.items()},
            "unavailable": res.unavailable,
            "load_average": [load_start, load_end],
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    print(machine_line())
    print(load_line)
    print()
    print(plain_report(res))
    extra = notes(res)
    whole = whole_child_note(res)
    if extra:
        print()
        print(extra)
    if whole:
        print()
        print(whole)
    if args.markdown:
        print()
        print(markdown_report(res))
        print()
        print(f"{load_line}.")
        if whole:
            print()
            print(f"{whole}.")
        if extra:
            print()
            print("\n".join(f"- {line}" for line in extra.splitlines()))
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
