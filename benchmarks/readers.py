"""How ``dhatc report`` and ``dhatc diff`` scale: a 200 MB profile with a million PPs.

    python benchmarks/readers.py                 # generate, measure, print a table
    python benchmarks/readers.py --pps 100000    # a smaller one
    python benchmarks/readers.py --dir /tmp/x --keep   # keep the files

Generates two DHAT files the way dhatc writes them (one program point per
line), OLD and NEW, from a synthetic program: a layered call graph of 40,000
functions in 2,000 modules, each program point a random walk from one of a
few entry points down to an allocation site (10 to 23 Python frames, hot
paths more likely, as in real profiles), under one of dhatc's allocator
entries.  NEW is OLD one run later: 1% of the program points gone, 1% new
ones, a tenth of the rest allocating more.  Figures are consistent (max <=
total, at t-gmax and at t-end <= max).

Each command runs as ``python -m dhatc ...`` in its own session; the time is
wall-clock, the memory the peak of the summed resident memory of all its
processes (diff reads NEW in a forked process), sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Sequence, Tuple

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
    stacks = []
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


def generate(path: str, n: int, seed: int, *, later: bool = False) -> None:
    """Writes a DHAT file of `n` program points; `later`: the same program's next run."""
    rng = random.Random(seed)
    frames, frames_of, callees = _program(rng)
    stacks = _stacks(rng, int(n * 1.01) + 1, frames_of, callees)
    figure_rng = random.Random(seed + 1)
    # Each stack keeps its number, which picks its allocator entry, from run to run.
    numbered = list(enumerate(stacks))
    chosen = numbered[:n] if not later else numbered[n // 100:n] + numbered[n:n + n // 100]
    n_frames = len(frames)
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"dhatFileVersion":2,"mode":"heap","verb":"Allocated","bklt":true,'
                  '"bkacc":false,"tu":"allocs","Mtu":"Mallocs","tuth":10,'
                  f'"cmd":"python app.py --run {2 if later else 1}","pid":{4242 + later},'
                  f'"tg":{n * 40},"te":{n * 50},\n"pps":[')
        for i, (number, stack) in enumerate(chosen):
            fig = _figures(figure_rng, 1.3 if later and i % 10 == 0 else 1.0)
            # innermost first: the allocator entry, then the allocation site...
            fs = [n_frames + 1 + number % len(ALLOCATORS)] + [s + 1 for s in reversed(stack)]
            out.write(("\n" if i == 0 else ",\n") + json.dumps(
                {**fig, "fs": fs}, separators=(",", ":")))
        out.write('\n],\n"ftbl":[\n"[root]"')
        for frame in frames + list(ALLOCATORS):
            out.write(",\n" + json.dumps(frame))
        out.write("\n]\n}\n")


# --- measuring -------------------------------------------------------------------------


def _session_rss(sid: int) -> int:
    """Resident bytes of all processes of session `sid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6, the session id
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24, rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure(args: Sequence[str]) -> Tuple[float, int, int]:
    """Wall seconds, peak summed RSS (bytes) and exit status of `python -m dhatc args`."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dhatc", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _session_rss(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"dhatc {' '.join(args)} failed:\n{err.decode()}")
    return elapsed, peak, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pps", type=int, default=1_000_000, help="program points per file")
    parser.add_argument("--dir", help="where to write the files (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command (median)")
    options = parser.parse_args()
    directory = options.dir or tempfile.mkdtemp(prefix="dhatc-readers-")
    os.makedirs(directory, exist_ok=True)
    old, new = os.path.join(directory, "old.json"), os.path.join(directory, "new.json")
    try:
        if not (os.path.exists(old) and os.path.exists(new)):
            started = time.perf_counter()
            generate(old, options.pps, seed=1)
            generate(new, options.pps, seed=1, later=True)
            print(f"generated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for path in (old, new):
            print(f"{os.path.basename(path)}: {os.path.getsize(path) / 1e6:.0f} MB, "
                  f"{options.pps:,} program points", file=sys.stderr)
        commands = [
            ["report", old],
            ["report", old, "--sort", "gmax_bytes", "--top", "20"],
            ["report", old, "--sort", "tiny"],
            ["report", old, "--tree"],
            ["diff", old, new],
            ["diff", old, new, "--fail-if-more", "total_bytes=1%", "--fail-if-more",
             "max_bytes=+1MiB"],
        ]
        print(f"| command (files in {directory}) | wall s (median of {options.rounds}) | "
              "peak memory MB |")
        print("|---|---|---|")
        for command in commands:
            runs = sorted(measure(command)[:2] for _ in range(options.rounds))
            seconds = sorted(r[0] for r in runs)[len(runs) // 2]
            memory = max(r[1] for r in runs)
            shown = " ".join(os.path.basename(a) if a.startswith(directory) else a
                             for a in command)
            print(f"| `dhatc {shown}` | {seconds:.1f} | {memory / 1e6:,.0f} |", flush=True)
    finally:
        if not options.keep and not options.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
