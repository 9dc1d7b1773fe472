"""The Profiler's lifetime bounds what is measured, as a Rust Profiler's
scope does: with-blocks, start/stop, a dropped profiler, interpreter exit,
exceptions and KeyboardInterrupt inside the block."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import child_environment
from dhat_helpers import load


def saved_total(tmp_path, name="out.json"):
    data = load(tmp_path / name)
    return sum(pp["tb"] for pp in data["pps"]), data


@pytest.mark.parametrize("exc", ["ValueError('boom')", "KeyboardInterrupt()"])
def test_exception_in_block_still_saves_and_propagates(run_python, tmp_path, exc):
    proc = run_python(
        f"""
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(file_name="out.json"):
                m.alloc(0, m.RAW, 77777)
                raise {exc}

        try:
            main()
        except BaseException as e:
            print("caught", type(e).__name__)
        """
    )
    assert proc.stdout.split() == ["caught", exc.split("(")[0]]
    total, _ = saved_total(tmp_path)
    assert total >= 77777
    assert "dhat: The data has been saved to out.json" in proc.stderr


def test_start_returns_the_profiler_and_stop_saves(run_python, tmp_path):
    proc = run_python(
        """
        import allocmod as m
        import dhatc

        p = dhatc.Profiler(file_name="out.json")
        assert p.start() is p
        m.alloc(0, m.RAW, 4096)
        p.stop()
        p.stop()        # a second stop does nothing
        m.alloc(1, m.RAW, 8192)
        print(p.profile.total_bytes >= 4096, p.profile.total_bytes < 8192)
        """
    )
    assert proc.stdout.split() == ["True", "True"]
    assert proc.stderr.count("dhat: Total:") == 1


def test_dropping_the_last_reference_stops_and_saves(run_python, tmp_path):
    proc = run_python(
        """
        import allocmod as m
        import dhatc

        def main():
            p = dhatc.Profiler(file_name="out.json").start()
            m.alloc(0, m.RAW, 55555)
            # p goes away when main returns

        main()
        print("after main")
        m.alloc(1, m.RAW, 99999)
        """
    )
    assert proc.stdout.strip() == "after main"
    assert proc.stderr.index("dhat: Total:") >= 0
    total, _ = saved_total(tmp_path)
    assert 55555 <= total < 55555 + 99999


def test_running_at_interpreter_exit_is_saved(run_python, tmp_path):
    proc = run_python(
        """
        import allocmod as m
        import dhatc

        profiler = dhatc.Profiler(file_name="out.json").start()
        m.alloc(0, m.RAW, 31337)
        """
    )
    total, _ = saved_total(tmp_path)
    assert total >= 31337
    assert "dhat: The data has been saved to out.json" in proc.stderr


def test_sys_exit_inside_with_block_saves(run_python, tmp_path):
    proc = run_python(
        """
        import sys
        import dhatc

        with dhatc.Profiler(file_name="out.json"):
            data = [bytes(100) for _ in range(10)]
            sys.exit(3)
        """,
        expect_status=3,
    )
    total, _ = saved_total(tmp_path)
    assert total >= 10 * 100


def test_a_profiler_runs_again_after_the_previous_one_stopped(run_python):
    proc = run_python(
        """
        import json
        import allocmod as m
        import dhatc

        results = []
        for size in (1000, 2000):
            with dhatc.Profiler(testing=True):
                m.alloc(0, m.RAW, size)
                m.free(0)
                results.append(dhatc.HeapStats.get().total_bytes)
        print(json.dumps(results))
        """
    )
    assert json.loads(proc.stdout) == [1000, 2000]


def test_fork_child_neither_records_nor_saves(run_python, tmp_path):
    proc = run_python(
        """
        import os
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(file_name="out.json"):
                m.alloc(0, m.RAW, 1000)
                pid = os.fork()
                if pid == 0:
                    m.alloc(1, m.RAW, 500000)   # the child's own business
                    os._exit(0)
                os.waitpid(pid, 0)
                m.alloc(2, m.RAW, 2000)

        main()
        """
    )
    total, data = saved_total(tmp_path)
    sizes = sorted(pp["tb"] for pp in data["pps"] if pp["tb"] in (1000, 2000, 500000))
    assert sizes == [1000, 2000]
    assert proc.stderr.count("dhat: Total:") == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.9/3.10 use ctypes for spare frames")
def test_importing_dhatc_does_not_import_ctypes(run_python):
    # ctypes serves only the 3.9/3.10 spare-frame workaround in dhatc._testing.
    proc = run_python(
        """
        import sys
        import dhatc
        print("ctypes" in sys.modules)
        dhatc._testing.give_spare_frames(dhatc.assert_)
        print("ctypes" in sys.modules)
        """
    )
    assert proc.stdout.split() == ["False", "False"]


def test_results_survive_a_stop_that_runs_out_of_memory(run_python):
    """stop() raising MemoryError while gathering results loses nothing: the
    engine keeps them and the next stop() returns them."""
    proc = run_python(
        """
        import _testcapi
        import dhatc

        def work():
            return [bytearray(1000) for _ in range(10)]

        profiler = dhatc.Profiler(testing=True).start()
        kept = work()
        before = dhatc.HeapStats.get()
        _testcapi.set_nomemory(0)  # every allocation fails from here
        try:
            profiler.stop()
            outcome = "stopped"
        except MemoryError:
            outcome = "MemoryError"
        finally:
            _testcapi.remove_mem_hooks()
        print("first stop:", outcome)
        try:
            dhatc.Profiler(testing=True).start()
        except RuntimeError as e:
            print("new profiler:", e)
        profiler.stop()
        profile = profiler.profile
        # One block more than the snapshot: the HeapStats object, made after it.
        print("kept:", (profile.total_blocks - before.total_blocks,
                        profile.curr_blocks - before.curr_blocks))
        pps = [pp for pp in profile.pps if any("work" in f for f in pp.frames)]
        print("work's blocks live at the end:", sum(pp.end_blocks for pp in pps) >= 20)
        dhatc.Profiler(testing=True).start().stop()
        print("then a new profile runs")
        """
    )
    lines = [line for line in proc.stdout.splitlines()]
    assert lines == [
        "first stop: MemoryError",
        "new profiler: dhat: creating a profiler while a profiler is already running",
        "kept: (1, 1)",
        "work's blocks live at the end: True",
        "then a new profile runs",
    ], proc.stdout + proc.stderr
    assert proc.stderr == ""  # no false "hooks replaced" warning either


# ---- save first, print after: nothing printed can stop the save -------------------


@pytest.mark.parametrize(
    "break_stderr",
    ["sys.stderr.close()", "sys.stderr = None", "os.close(2)"],
    ids=["closed", "none", "fd-closed"],
)
@pytest.mark.parametrize("how", ["with", "at-exit", "dropped"])
def test_the_profile_is_saved_whatever_stderr_became(run_python, tmp_path, break_stderr, how):
    body = {
        "with": "with dhatc.Profiler(file_name='out.json'):\n    work()\n",
        "at-exit": "p = dhatc.Profiler(file_name='out.json').start()\nwork()\n",
        "dropped": "def f():\n    p = dhatc.Profiler(file_name='out.json').start()\n    work()\nf()\n",
    }[how]
    proc = run_python(
        "import os, sys\nimport dhatc\n\n"
        "def work():\n    return [bytes(100) for _ in range(10)]\n\n"
        f"{break_stderr}\n{body}print('done')\n"
    )
    assert proc.stdout.strip() == "done"
    assert sum(pp["tbk"] for pp in load(tmp_path / "out.json")["pps"]) >= 10


def test_the_profile_is_saved_when_stderr_is_a_broken_pipe(tmp_path):
    (tmp_path / "prog.py").write_text(
        "import dhatc\nwith dhatc.Profiler(file_name='out.json'):\n    x = [bytes(100)] * 10\n"
        "print('done')\n"
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # whoever read stderr has gone (2>&1 | head -1)
    try:
        proc = subprocess.run([sys.executable, "prog.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=write_end, env=child_environment(), text=True, timeout=300)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stdout) == (0, "done\n")
    assert load(tmp_path / "out.json")["dhatFileVersion"] == 2


def test_a_save_error_goes_to_descriptor_2_when_sys_stderr_cannot_take_it(run_python, tmp_path):
    proc = run_python(
        """
        import sys
        import dhatc
        sys.stderr.close()
        p = dhatc.Profiler(file_name="no-such-dir/out.json").start()   # saved at exit
        """
    )
    assert proc.stderr == (
        "dhat: error: [Errno 2] dhatc: cannot write the profile to 'no-such-dir/out.json': "
        "No such file or directory\n"
    )
