"""How ``dhatc report`` and ``dhatc diff`` scale: a 200 MB profile with a million PPs.

    python benchmarks/readers.py                 # generate, measure, print a table
    python benchmarks/readers.py --pps 100000    # a smaller one
    python benchmarks/readers.py --dir /tmp/x --keep   # keep the files
    python benchmarks/readers.py --layout valgrind     # written as Valgrind would

Generates two DHAT files the way dhatc writes them (one program point per
line; --layout: as Valgrind or the dhat crate would lay them out, or with a
space after each comma), OLD and NEW, from a synthetic program: a layered call graph of 40,000
functions in 2,000 modules, each program point a random walk from one of a
few entry points down to an allocation site (10 to 23 Python frames, hot
paths more likely, as in real profiles), under one of dhatc's allocator
entries.  NEW is OLD one run later: 1% of the program points gone, 1% new
ones, a tenth of the rest allocating more.  Figures are consistent (max <=
total, at t-gmax and at t-end <= max).

Each command runs as ``python -m dhatc ...`` in its own session, its output
thrown away: wall-clock seconds; CPU seconds (user and system, of the command
and every process it forked: report and diff read in two processes), and
those of its busiest process, which two idle cores would make its wall time,
about; the peak of the summed resident memory of all its processes, sampled
every 20 ms;
and the load average (1 minute) when it ended, since the machine may be shared
and its wall-clock time then says more about the others than about dhatc.
Each figure is the median of --rounds runs, memory the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

ALLOCATORS = ("PyObject_Malloc", "PyObject_Realloc", "PyObject_Calloc", "PyMem_Malloc",
              "PyMem_Realloc", "PyMem_RawMalloc", "malloc")


def _program(rng: random.Random, n_functions: int = 40000, levels: int = 23) -> \
        Tuple[List[str], List[List[int]], List[List[int]]]:
    """Frame strings, and per function its frames (one per call line) and callees."""
    frames: List[str] = []
    frames_of: List[List[int]] = []
    for f in range(n_functions):
        module = f % 2000
        name = (f"Handler{f % 97}.method_{f}" if f % 3 else f"helper_{f}")
        path = f"/srv/app/pkg{module % 40}/sub{module % 7}/mod{module}.py"
        first = 10 + (f * 37) % 400
        ids = []
        for line in range(first, first + 3 * 7, 7):
            ids.append(len(frames))
            frames.append(f"{name} ({path}:{line})")
        frames_of.append(ids)
    per_level = n_functions // levels
    callees: List[List[int]] = []
    for f in range(n_functions):
        level = min(f // per_level, levels - 1)
        if level == levels - 1:
            callees.append([])
            continue
        base = (level + 1) * per_level
        callees.append(sorted({base + rng.randrange(per_level) for _ in range(rng.randint(2, 6))}))
    return frames, frames_of, callees


def _stacks(rng: random.Random, n: int, frames_of: List[List[int]], callees: List[List[int]]) \
        -> List[Tuple[int, ...]]:
    """n distinct stacks, outermost first, as indices into the frame strings."""
    roots = list(range(8))
    seen = set()
    stacks: List[Tuple[int, ...]] = []
    while len(stacks) < n:
        f = rng.choice(roots)
        depth = rng.randint(10, 23)
        stack = []
        for _ in range(depth):
            stack.append(frames_of[f][rng.randrange(3)])
            if not callees[f]:
                break
            # Hot paths: the first callees are taken more often.
            options = callees[f]
            f = options[min(int(rng.expovariate(1.0)), len(options) - 1)]
        key = tuple(stack)
        if key not in seen:
            seen.add(key)
            stacks.append(key)
    return stacks


def _figures(rng: random.Random, scale: float = 1.0) -> Dict[str, int]:
    blocks = max(1, int(rng.paretovariate(1.2) * 3 * scale))
    size = rng.choice((16, 32, 48, 64, 100, 256, 1000, 4096))
    tb = blocks * size
    mbk = max(1, blocks // rng.randint(1, 8))
    gbk = rng.randint(0, mbk)
    ebk = rng.randint(0, gbk)
    return {"tb": tb, "tbk": blocks, "tl": blocks * rng.randint(1, 5_000_000),
            "mb": mbk * size, "mbk": mbk, "gb": gbk * size, "gbk": gbk,
            "eb": ebk * size, "ebk": ebk}


#: How a file's JSON is laid out: as dhatc writes it (a program point a line,
#: compact), the same with a space after each comma, as Valgrind writes it (a
#: few keys a line, commas first, indented), as the dhat crate writes it (a
#: value a line).  The same figures and frames in each.
LAYOUTS = ("dhatc", "spaced", "valgrind", "crate")


def _header(fields: List[Tuple[str, object]], layout: str) -> str:
    """The top-level fields before pps, and the start of pps."""
    if layout == "valgrind":  # dh_main.c: some fields share a line, te comes before tg
        lines, line = [], []
        order = {"tg": 1, "te": 0}
        for key, value in sorted(fields, key=lambda field: order.get(field[0], -1)):
            line.append(f"{json.dumps(key)}:{json.dumps(value)}")
            if key not in ("mode", "bklt", "tu"):
                lines.append(",".join(line))
                line = []
        return "{" + "\n,".join(lines) + '\n,"pps":\n ['
    if layout == "crate":
        return "{\n" + "".join(f"{json.dumps(k)}: {json.dumps(v)},\n" for k, v in fields) \
            + '"pps": ['
    separator = ", " if layout == "spaced" else ","
    return ("{" + separator.join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields)
            + f'{separator}\n"pps":[')


def _pp_text(pp: Dict[str, object], layout: str) -> str:
    """One program point, without what joins it to the one before."""
    if layout == "valgrind":
        pairs = [f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}" for k, v in pp.items()]
        groups = [pairs[:2]] + [[p] for p in pairs[2:3]] + [pairs[i:i + 2]
                                                            for i in range(3, len(pairs) - 1, 2)]
        groups.append(pairs[-1:])
        return "{" + "\n  ,".join(",".join(g) for g in groups if g) + "\n  }"
    if layout == "crate":
        return json.dumps(pp, indent=0)
    if layout == "spaced":
        return json.dumps(pp, separators=(", ", ":"))
    return json.dumps(pp, separators=(",", ":"))


def _frames_text(frames: List[str], layout: str) -> str:
    """The frame table and the end of the file, after pps's last program point."""
    if layout == "valgrind":
        return '\n ]\n,"ftbl":\n [' + "\n ,".join(map(json.dumps, frames)) + "\n ]\n}\n"
    if layout == "crate":
        return "\n],\n\"ftbl\": [\n" + ",\n".join(map(json.dumps, frames)) + "\n]\n}\n"
    return '\n],\n"ftbl":[\n' + ",\n".join(map(json.dumps, frames)) + "\n]\n}\n"


def generate(path: str, n: int, seed: int, *, later: bool = False, layout: str = "dhatc") -> None:
    """Writes a DHAT file of `n` program points; `later`: the same program's next
    run; `layout`: one of LAYOUTS."""
    rng = random.Random(seed)
    frames, frames_of, callees = _program(rng)
    stacks = _stacks(rng, int(n * 1.01) + 1, frames_of, callees)
    figure_rng = random.Random(seed + 1)
    # Each stack keeps its number, which picks its allocator entry, from run to run.
    numbered = list(enumerate(stacks))
    chosen = numbered[:n] if not later else numbered[n // 100:n] + numbered[n:n + n // 100]
    n_frames = len(frames)
    fields: List[Tuple[str, object]] = [
        ("dhatFileVersion", 2), ("mode", "heap"), ("verb", "Allocated"), ("bklt", True),
        ("bkacc", False), ("tu", "allocs"), ("Mtu", "Mallocs"), ("tuth", 10),
        ("cmd", f"python app.py --run {2 if later else 1}"), ("pid", 4242 + later),
        ("tg", n * 40), ("te", n * 50)]
    joint = "\n ," if layout == "valgrind" else ",\n"
    with open(path, "w", encoding="utf-8") as out:
        out.write(_header(fields, layout))
        for i, (number, stack) in enumerate(chosen):
            fig = _figures(figure_rng, 1.3 if later and i % 10 == 0 else 1.0)
            # innermost first: the allocator entry, then the allocation site...
            fs = [n_frames + 1 + number % len(ALLOCATORS)] + [s + 1 for s in reversed(stack)]
            if i == 0:
                out.write("" if layout == "valgrind" else "\n")
            else:
                out.write(joint)
            out.write(_pp_text({**fig, "fs": fs}, layout))
        out.write(_frames_text(["[root]"] + frames + list(ALLOCATORS), layout))


# --- measuring -------------------------------------------------------------------------


def _session_sample(sid: int) -> Tuple[int, Dict[int, int]]:
    """Resident bytes of all processes of session `sid`, and each one's CPU time
    so far (user + system, clock ticks)."""
    total = 0
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6, the session id
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24, rss pages
            ticks[int(entry)] = int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total, ticks


class Run(NamedTuple):
    """One run of a command."""

    wall: float  # seconds
    cpu: float  # user + system seconds, its forked processes included
    longest: float  # the CPU seconds of its busiest process (about the wall time, idle)
    peak: int  # the summed resident bytes of its processes, at most
    status: int  # exit status (1: diff's limits exceeded)
    load: float  # the 1-minute load average when it ended


def measure(args: Sequence[str], package: Optional[str] = None) -> Run:
    """One run of `python -m dhatc args`, its output thrown away; `package`: a
    directory with another dhatc package in it, to run that one."""
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package, env.get("PYTHONPATH"))))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dhatc", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)
    peak = 0
    ticks: Dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            rss, now = _session_sample(proc.pid)
            peak = max(peak, rss)
            ticks.update(now)
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    # The command's own times and those of the processes it waited for (one
    # command runs at a time; the sampler forks nothing).
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"dhatc {' '.join(args)} failed:\n{err.decode()}")
    longest = max(ticks.values(), default=0) / os.sysconf("SC_CLK_TCK")
    return Run(elapsed, cpu, longest, peak, proc.returncode, os.getloadavg()[0])


def commands(old: str, new: str, *, tree_all: bool = False) -> List[List[str]]:
    """What is measured: report by each metric a heap profile of dhatc's supports,
    its tree (the default threshold, and 0.1%: all that a terminal can show),
    its JSON, and diff, plain and as a CI gate."""
    sorts = ["total_blocks", "total_bytes", "tiny", "short_lived", "gmax_bytes", "end_bytes",
             "max_bytes", "max_blocks", "gmax_blocks", "end_blocks"]
    result = [["report", old]] + [["report", old, "--sort", name] for name in sorts[1:]]
    result += [["report", old, "--tree"], ["report", old, "--tree", "--sort", "tiny"],
               ["report", old, "--tree", "--sort", "gmax_bytes"],
               ["report", old, "--tree", "--threshold", "0.1"]]
    if tree_all:
        result.append(["report", old, "--tree", "--threshold", "0"])
    result += [["report", old, "--json"], ["report", old, "--tree", "--json"],
               ["diff", old, new],
               ["diff", old, new, "--fail-if-more", "total_bytes=1%", "--fail-if-more",
                "max_bytes=+1MiB"],
               ["diff", old, new, "--json"]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pps", type=int, default=1_000_000, help="program points per file")
    parser.add_argument("--dir", help="where to write the files (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--layout", choices=LAYOUTS, default="dhatc",
                        help="how the files are written: as dhatc writes them (the default), "
                             "with a space after each comma, as Valgrind or as the dhat crate "
                             "would (the same figures and frames)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--only", metavar="TEXT", action="append", default=[],
                        help="only the commands whose arguments contain TEXT (repeatable: "
                             "any of them), e.g. --only diff --only tree")
    parser.add_argument("--tree-all", action="store_true",
                        help="also report --tree --threshold 0: every node of the tree, "
                             "gigabytes of text")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run each command with the dhatc package in DIR (on "
                             "PYTHONPATH), in turns with this one, e.g. an older commit's "
                             "dhatpy/ copied to DIR/dhatc with the built .so files")
    options = parser.parse_args()
    directory = options.dir or tempfile.mkdtemp(prefix="dhatc-readers-")
    os.makedirs(directory, exist_ok=True)
    old, new = os.path.join(directory, "old.json"), os.path.join(directory, "new.json")
    try:
        if not (os.path.exists(old) and os.path.exists(new)):
            started = time.perf_counter()
            generate(old, options.pps, seed=1, layout=options.layout)
            generate(new, options.pps, seed=1, later=True, layout=options.layout)
            print(f"generated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for path in (old, new):
            print(f"{os.path.basename(path)}: {os.path.getsize(path) / 1e6:.0f} MB, "
                  f"{options.pps:,} program points", file=sys.stderr)
        load = os.getloadavg()
        print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
              f"{os.cpu_count()} CPUs", file=sys.stderr)
        print(f"| command (files in {directory}) | wall s | CPU s | busiest process, CPU s | "
              "peak memory MB | load |")
        print("|---|---|---|---|---|---|")
        packages: List[Optional[str]] = [None] if options.baseline is None \
            else [options.baseline, None]
        for command in commands(old, new, tree_all=options.tree_all):
            shown = " ".join(os.path.basename(a) if a.startswith(directory) else a
                             for a in command)
            if options.only and not any(text in shown for text in options.only):
                continue
            runs: Dict[Optional[str], List[Run]] = {package: [] for package in packages}
            for _ in range(options.rounds):
                for package in packages:
                    runs[package].append(measure(command, package))
            for package in packages:
                row = runs[package]
                wall = statistics.median(r.wall for r in row)
                cpu = statistics.median(r.cpu for r in row)
                longest = statistics.median(r.longest for r in row)
                memory = max(r.peak for r in row)
                load_at_end = statistics.median(r.load for r in row)
                tag = "" if package is None else " (baseline)"
                print(f"| `dhatc {shown}`{tag} | {wall:.1f} | {cpu:.1f} | {longest:.1f} | "
                      f"{memory / 1e6:,.0f} | {load_at_end:.1f} |", flush=True)
    finally:
        if not options.keep and not options.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
