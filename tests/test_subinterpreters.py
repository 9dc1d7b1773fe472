"""Subinterpreters: a profile never keeps code objects of another interpreter.

Their code objects die with the interpreter; a program point holding them
crashed the process at stop() or at exit (legacy subinterpreters: a
segfault; isolated ones: a double free).  Blocks allocated while a thread runs
another interpreter get one frame saying so instead of that interpreter's
Python frames; the profile's own interpreter is profiled as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The private module that creates interpreters, on every supported version.
MAKE = """
import json, sys, threading

def make(isolated):
    try:
        import _interpreters as interpreters  # 3.13+
        return interpreters, interpreters.create("isolated" if isolated else "legacy")
    except ImportError:
        import _xxsubinterpreters as interpreters  # 3.9-3.12
        try:
            return interpreters, interpreters.create(isolated=isolated)
        except TypeError:  # before 3.12: one kind only
            return interpreters, interpreters.create()

CODE = '''
x = [bytes(100) for _ in range(1000)]
def f():
    return [bytearray(50) for _ in range(10)]
y = f()
del x, y
'''

def run_in_subinterpreter(isolated):
    interpreters, interp = make(isolated)
    interpreters.run_string(interp, CODE)
    interpreters.destroy(interp)

def summary(profile):
    marked = [pp for pp in profile.pps if any(f.startswith("[subinterpreter ") for f in pp.frames)]
    return {
        "marked_blocks": sum(pp.total_blocks for pp in marked),
        "marked_frames": sorted({f for pp in marked for f in pp.frames[1:]}),
        "has_subinterpreter_code": any("<module> (<string>" in f or "f (<string>" in f
                                       for pp in profile.pps for f in pp.frames),
        "main": sorted([pp.total_bytes, pp.total_blocks] for pp in profile.pps
                       if any("main_work (" in f for f in pp.frames)),
    }

def main_work():
    return [bytes(1000) for _ in range(3)]
"""


@pytest.mark.parametrize("isolated", [False, True], ids=["legacy", "isolated"])
def test_a_profile_that_saw_a_subinterpreter_stops_and_exits_cleanly(run_python, isolated):
    proc = run_python(
        MAKE
        + f"""
import dhatc
p = dhatc.Profiler(testing=True).start()
kept = main_work()
run_in_subinterpreter({isolated})
run_in_subinterpreter({isolated})
p.stop()
print(json.dumps(summary(p.profile)))
"""
    )
    got = json.loads(proc.stdout)
    # The subinterpreters allocated (well over the 2 x 1,010 blocks of CODE),
    # under a frame naming each, and none of their Python frames is kept.
    assert got["marked_blocks"] > 2 * 1010
    assert len(got["marked_frames"]) == 2
    assert all(f.endswith(": its Python frames are not recorded]") for f in got["marked_frames"])
    assert got["has_subinterpreter_code"] is False
    # The main interpreter's blocks keep their own frames, exactly: the
    # three bytes objects of main_work (and its list's blocks).
    assert [3 * 1033, 3] in got["main"]


@pytest.mark.parametrize("isolated", [False, True], ids=["legacy", "isolated"])
def test_under_dhatc_run_the_file_is_written_at_exit(tmp_path, isolated):
    script = tmp_path / "target.py"
    script.write_text(MAKE + f"\nkept = main_work()\nrun_in_subinterpreter({isolated})\n")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run(
        [sys.executable, "-m", "dhatc", "run", "-o", "out.json", str(script)],
        cwd=tmp_path, env={**env, "DHATC_QUIET": "1"}, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    assert any(f.startswith("[subinterpreter ") for f in data["ftbl"])
    assert not any("(<string>:" in f for f in data["ftbl"])


@pytest.mark.skipif(sys.version_info < (3, 12), reason="per-interpreter GILs are 3.12+")
def test_isolated_subinterpreters_in_threads_while_the_main_one_allocates(run_python):
    # Each isolated interpreter runs with its own GIL, in parallel with the
    # main interpreter: its threads must not touch the profile's code objects.
    proc = run_python(
        MAKE
        + """
import dhatc
p = dhatc.Profiler(testing=True).start()
threads = [threading.Thread(target=run_in_subinterpreter, args=(True,)) for _ in range(4)]
for t in threads:
    t.start()
kept = [main_work() for _ in range(200)]
for t in threads:
    t.join()
p.stop()
got = summary(p.profile)
print(json.dumps([len(got["marked_frames"]), got["has_subinterpreter_code"],
                  [200 * 3 * 1033, 600] in got["main"]]))
"""
    )
    assert json.loads(proc.stdout) == [4, False, True]


def test_ad_hoc_events_in_a_legacy_subinterpreter(run_python):
    # A legacy subinterpreter shares dhatc's C module: its events count,
    # under the frame naming it.
    proc = run_python(
        MAKE
        + """
import dhatc
interpreters, interp = make(False)
with dhatc.Profiler(mode="ad-hoc", testing=True) as p:
    dhatc.ad_hoc_event(5)
    interpreters.run_string(interp, "import dhatc\\nfor _ in range(3): dhatc.ad_hoc_event(7)")
interpreters.destroy(interp)
print(json.dumps(sorted((list(pp.frames[:1]), pp.total_blocks, pp.total_bytes) for pp in p.profile.pps)))
"""
    )
    rows = json.loads(proc.stdout)
    assert [r[1:] for r in rows] == [[1, 5], [3, 21]] or [r[1:] for r in rows] == [[3, 21], [1, 5]]
    marked = [r for r in rows if r[0] and r[0][0].startswith("[subinterpreter ")]
    assert [m[1:] for m in marked] == [[3, 21]]
