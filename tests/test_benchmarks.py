"""The benchmark runners' own logic (benchmarks/): not their timings.

pyperformance is not a test dependency: the real-code runner's end-to-end test
is skipped where it is not installed (``pip install pyperformance`` in the test
environment to run it).  The pyperf shim is tested on a stand-in benchmark
script with a stand-in ``pyperf`` module, so it runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import child_environment

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(*args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=child_environment(),
        capture_output=True, text=True, timeout=300,
    )


# A benchmark script in pyperformance's style, and just enough of pyperf for it.
FAKE_PYPERF = """\
import time
perf_counter = time.perf_counter
class Runner:
    def __init__(self, *args, **kwargs):
        raise AssertionError("the shim must replace pyperf.Runner")
"""

FAKE_BENCHMARK = """\
import pyperf

CALLS = []

def timed(loops, tag):
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        CALLS.append(("timed", tag))
    return pyperf.perf_counter() - t0

def plain(tag):
    CALLS.append(("plain", tag))

async def coro():
    CALLS.append(("async", None))

if __name__ == "__main__":
    runner = pyperf.Runner()
    runner.metadata["description"] = "a stand-in"
    runner.argparser.add_argument("size", type=int)
    args = runner.parse_args()
    runner.bench_time_func("timed", timed, args.size)
    runner.bench_func("plain", plain, "p", inner_loops=10)
    runner.bench_async_func("async", coro)
"""


def test_shim_records_and_runs_what_a_script_registers(tmp_path: Path) -> None:
    (tmp_path / "pyperf.py").write_text(FAKE_PYPERF)
    bench_dir = tmp_path / "bm_fake"
    bench_dir.mkdir()
    (bench_dir / "run_benchmark.py").write_text(FAKE_BENCHMARK)
    code = textwrap.dedent(
        f"""\
        import json, sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(BENCHMARKS)!r}]
        import pyperf, pyperf_shim
        entries = pyperf_shim.load_entries({str(bench_dir / "run_benchmark.py")!r}, ["7"])
        assert pyperf.Runner.__module__ == "pyperf"  # put back
        calls = entries[0].func.__globals__["CALLS"]
        out = {{"entries": [[e.name, e.kind, list(e.args)] for e in entries]}}
        pyperf_shim.run_plan(pyperf_shim.plan(entries, 3))
        out["all"] = list(calls)
        del calls[:]
        pyperf_shim.run_plan(pyperf_shim.plan(entries, 3, {{"plain": 2, "async": 1}}))
        out["some"] = list(calls)
        try:
            pyperf_shim.plan(entries, 1, {{"missing": 1}})
        except RuntimeError as exc:
            out["error"] = str(exc)
        print(json.dumps(out))
        """
    )
    proc = run_script("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["entries"] == [["timed", "time", [7]], ["plain", "func", ["p"]], ["async", "async", []]]
    assert out["all"] == [["timed", 7]] * 3 + [["plain", "p"]] * 3 + [["async", None]] * 3
    assert out["some"] == [["plain", "p"]] * 2 + [["async", None]]
    assert "no function named missing" in out["error"] and "timed" in out["error"]


def test_shim_selects_stdlib_only_benchmarks(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import pyperf_shim
    finally:
        sys.path.remove(str(BENCHMARKS))
    for name, req in (("plain", None), ("empty", "# nothing\n\n"), ("needs", "six==1.16\n")):
        (tmp_path / f"bm_{name}").mkdir()
        (tmp_path / f"bm_{name}" / "run_benchmark.py").write_text("")
        if req is not None:
            (tmp_path / f"bm_{name}" / "requirements.txt").write_text(req)
    (tmp_path / "bm_noscript").mkdir()
    assert sorted(pyperf_shim.stdlib_only(tmp_path)) == ["empty", "plain"]


def test_run_py_child_script_and_one_round(tmp_path: Path) -> None:
    proc = run_script(str(BENCHMARKS / "run.py"), "--show-child", "deep:dhatc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "with dhatc.Profiler(mode=\"heap\", testing=True):\n    run()\n" in proc.stdout
    out = tmp_path / "samples.json"
    proc = run_script(
        str(BENCHMARKS / "run.py"), "--repeat", "1", "--workloads", "deep",
        "--tools", "none", "--json", str(out), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert lines[2].split() == ["workload", "tool", "median", "s", "min", "s", "max", "s",
                                "ratio", "of", "medians", "runs"]
    assert lines[4].split()[:2] == ["deep", "none"] and lines[4].split()[-2:] == ["1.0x", "1"]
    data = json.loads(out.read_text())
    assert [(s["workload"], s["tool"]) for s in data["samples"]] == [("deep", "none")]
    assert data["clock"] == "wall"
    sample = data["samples"][0]
    assert 0 < sample["cpu_seconds"] and 0 < sample["seconds"] < sample["child_seconds"]
    assert lines[4].split()[2] == f"{sample['seconds']:.4f}"


def test_run_py_reports_cpu_time_with_clock_cpu(tmp_path: Path) -> None:
    out = tmp_path / "samples.json"
    proc = run_script(
        str(BENCHMARKS / "run.py"), "--repeat", "3", "--workloads", "deep",
        "--tools", "none", "--clock", "cpu", "--markdown", "--json", str(out), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["clock"] == "cpu"
    cpu = sorted(s["cpu_seconds"] for s in data["samples"])
    assert len(cpu) == 3 and cpu[0] > 0
    lines = proc.stdout.splitlines()
    assert lines[2].split()[:5] == ["workload", "tool", "median", "CPU", "s"]
    assert lines[4].split()[2:5] == [f"{cpu[1]:.4f}", f"{cpu[0]:.4f}", f"{cpu[2]:.4f}"]
    assert "each in a fresh process; the region's CPU time." in proc.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("pyperformance") is None,
    reason="pyperformance is not installed (not a test dependency)",
)
def test_realcode_one_round_unprofiled_and_dhatc(tmp_path: Path) -> None:
    out = tmp_path / "samples.json"
    proc = run_script(
        str(BENCHMARKS / "realcode.py"), "--benchmarks", "json_loads,unpack_sequence",
        "--rounds", "1", "--tools", "dhatc", "--scale", "0.05", "--markdown",
        "--json", str(out), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    pairs = sorted((s["benchmark"], s["tool"]) for s in data["samples"])
    assert pairs == [("json_loads", "dhatc"), ("json_loads", "none"),
                     ("unpack_sequence", "dhatc"), ("unpack_sequence", "none")]
    assert all(s["seconds"] > 0 and s["child_seconds"] > s["seconds"] for s in data["samples"])
    assert all(s["cpu_seconds"] > 0 for s in data["samples"]) and data["clock"] == "wall"
    assert data["errors"] == {} and data["unavailable"] == {}
    text = proc.stdout
    assert "Ratios to unprofiled, median of 1 rounds:" in text
    assert "Ratios to unprofiled, best of 1 rounds:" in text
    summary = text.split("Per tool:\n", 1)[1].splitlines()
    assert summary[0].split()[:3] == ["tool", "geomean", "(median)"]
    assert summary[2].split()[0] == "dhatc" and summary[2].split()[-1] == "2/2"
    assert "| benchmark | unprofiled | dhatc |" in text
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| json_loads")] == ["| json_loads"]


@pytest.mark.skipif(
    importlib.util.find_spec("pyperformance") is None,
    reason="pyperformance is not installed (not a test dependency)",
)
def test_realcode_native_tool_is_skipped_with_a_reason_or_runs(tmp_path: Path) -> None:
    proc = run_script(
        str(BENCHMARKS / "realcode.py"), "--benchmarks", "json_loads", "--rounds", "1",
        "--tools", "dhatc-native", "--scale", "0.05", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    if "dhatc-native:" in proc.stderr:
        assert "dhatc.Profiler does not take native=True yet" in proc.stderr
    else:
        assert "dhatc-native" in proc.stdout.split("Per tool:\n", 1)[1]


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    proc = run_script(str(BENCHMARKS / "realcode.py"), "--benchmarks", "pathlib", cwd=tmp_path)
    assert proc.returncode == 2
    assert "benchmark pathlib is not run: file-system bound" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_script(str(BENCHMARKS / "realcode.py"), "--tools", "dhatc,nope", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown tool: nope" in proc.stderr
