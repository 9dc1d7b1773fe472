"""Bad input gets a clear exception that says what to do; data collected is
never lost to an error in saving it."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

import dhatc
from dhat_helpers import load


class _BytesPath(os.PathLike):
    def __fspath__(self) -> bytes:  # type: ignore[override]
        return b"out.json"


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"mode": "stack"}, ValueError, "unknown mode 'stack'"),
        ({"mode": 1}, TypeError, "mode must be a str"),
        ({"trim_backtraces": -1}, ValueError, "trim_backtraces must be >= 0"),
        ({"trim_backtraces": 2.5}, TypeError, "trim_backtraces must be an int or None"),
        ({"trim_backtraces": True}, TypeError, "trim_backtraces must be an int or None"),
        ({"file_name": 42}, TypeError, "file_name must be a str or os.PathLike"),
        ({"file_name": ""}, ValueError, "file_name must not be empty"),
        ({"file_name": "a\0b.json"}, ValueError, "must not contain a NUL character"),
        ({"file_name": pathlib.PurePath("x\0")}, ValueError, "must not contain a NUL character"),
        ({"file_name": _BytesPath()}, TypeError, "file_name must name a str path, not bytes"),
        ({"testing": 1}, TypeError, "testing must be a bool, not int"),
        ({"testing": "yes"}, TypeError, "testing must be a bool, not str"),
        ({"eprint_json": None}, TypeError, "eprint_json must be a bool, not NoneType"),
        ({"this_thread_only": 0}, TypeError, "this_thread_only must be a bool, not int"),
    ],
)
def test_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        dhatc.Profiler(**kwargs)


def test_positional_options_are_rejected():
    with pytest.raises(TypeError):
        dhatc.Profiler("heap", "out.json")  # type: ignore[misc]


def test_stats_without_a_profiler():
    with pytest.raises(RuntimeError, match="dhat: getting heap stats when no profiler is running"):
        dhatc.HeapStats.get()
    with pytest.raises(RuntimeError, match="dhat: getting ad hoc stats when no profiler is running"):
        dhatc.AdHocStats.get()


def test_second_profiler_is_refused(run_python):
    proc = run_python(
        """
        import dhatc
        with dhatc.Profiler(testing=True):
            try:
                dhatc.Profiler(testing=True).start()
            except RuntimeError as e:
                print(e)
            with dhatc.Profiler(testing=True, mode="ad-hoc") as q:
                pass
        """,
        expect_status=1,
    )
    assert proc.stdout.strip() == "dhat: creating a profiler while a profiler is already running"
    # A RuntimeError (caught above as one), of its own class so callers can tell it apart.
    assert "dhatc.ProfilerAlreadyRunningError: dhat: creating a profiler while a profiler is already running" in proc.stderr


def test_a_profiler_starts_once(run_python):
    proc = run_python(
        """
        import dhatc
        p = dhatc.Profiler(testing=True)
        with p:
            pass
        try:
            p.start()
        except RuntimeError as e:
            print(e)
        """
    )
    assert "already been started; create a new Profiler" in proc.stdout


def test_unwritable_path_raises_oserror_naming_it_and_keeps_the_data(run_python, tmp_path):
    target = tmp_path / "no-such-dir" / "out.json"
    proc = run_python(
        f"""
        import allocmod as m
        import dhatc

        p = dhatc.Profiler(file_name={str(target)!r})
        try:
            with p:
                m.alloc(0, m.RAW, 12345)
        except OSError as e:
            print("OSError:", e)
        print(p.profile.total_bytes >= 12345)
        print(p.save("rescued.json"))
        """
    )
    first, kept, saved = proc.stdout.splitlines()
    assert first.startswith("OSError:") and str(target) in first
    assert kept == "True"
    assert saved == "rescued.json"
    assert (tmp_path / "rescued.json").exists()
    assert not target.parent.exists()


def test_save_before_stop_is_refused():
    p = dhatc.Profiler(testing=True)
    with pytest.raises(RuntimeError, match="stop the profiler first"):
        p.save("x.json")


def test_path_like_file_name(run_python, tmp_path):
    run_python(
        """
        import pathlib
        import dhatc
        with dhatc.Profiler(file_name=pathlib.Path("sub.json")):
            pass
        """
    )
    assert (tmp_path / "sub.json").exists()
    assert os.path.getsize(tmp_path / "sub.json") > 0


@pytest.mark.parametrize("trim", [dhatc._engine.MAX_DEPTH + 1, 10**30])
def test_trim_backtraces_above_the_maximum_is_clamped(trim):
    assert dhatc._engine.MAX_DEPTH == 512
    assert dhatc.Profiler(trim_backtraces=trim).trim_backtraces == 512


def test_huge_trim_backtraces_keeps_every_frame_like_none(run_python, tmp_path):
    # GIVEN a stack deeper than the engine keeps
    run_python(
        """
        import allocmod as m
        import dhatc

        def deep(n, slot):
            if n == 0:
                m.alloc(slot, m.MEM, 100 + slot)
            else:
                deep(n - 1, slot)

        def main():
            for slot, trim in enumerate([None, 10**30]):
                # WHEN trim_backtraces is None or far above the maximum
                with dhatc.Profiler(file_name=f"out{slot}.json", trim_backtraces=trim):
                    deep(600, slot)

        main()
        """
    )
    # THEN both keep the allocator frame and the engine's 512 Python frames
    lengths = []
    for slot in (0, 1):
        data = load(tmp_path / f"out{slot}.json")
        pp = next(pp for pp in data["pps"] if pp["tb"] == 100 + slot)
        lengths.append(len(pp["fs"]))
    assert lengths == [1 + 512, 1 + 512]


def test_already_running_is_one_class_from_c_and_python(run_python):
    # Python refuses a second Profiler; the engine refuses a second start: same class.
    proc = run_python(
        """
        import dhatc, dhatc._engine as engine
        with dhatc.Profiler(testing=True):
            for attempt in (dhatc.Profiler(testing=True).start, lambda: engine.start(1, 10, 0)):
                try:
                    attempt()
                except dhatc.ProfilerAlreadyRunningError as e:
                    print(type(e) is engine.ProfilerAlreadyRunningError, isinstance(e, RuntimeError))
        """
    )
    assert proc.stdout.split() == ["True", "True", "True", "True"]


def test_engine_keeps_a_stopped_profile_until_released(run_python):
    # Until the Python profile is built, stop() hands the same data out again.
    proc = run_python(
        """
        import dhatc._engine as engine
        engine.start(1, 10, 0)
        x = [bytes(100) for _ in range(10)]
        first = engine.stop()
        again = engine.stop()
        print(engine.has_uncollected(), first == again, len(first["pps"]) > 0)
        engine.release()
        print(engine.has_uncollected())
        try:
            engine.stop()
        except RuntimeError as e:
            print(e)
        """
    )
    assert proc.stdout.splitlines() == ["True True True", "False", "dhatc: no profile is running"]


# ---- the data survives whatever happens after the engine hands it over ------


@pytest.mark.parametrize(
    "setup, cmd",
    [
        ("sys.argv = ['prog', 5, None]", "EXE prog 5 None"),
        ("sys.argv = 'not a list'", "EXE"),
        ("del sys.argv", "EXE"),
        ("sys.executable = None", "python SCRIPT"),
        ("sys.executable = ''; sys.argv = [b'bytes', 'x']", "python b'bytes' x"),
    ],
)
def test_odd_sys_argv_or_executable_still_give_a_file(run_python, tmp_path, setup, cmd):
    # GIVEN a program that changed sys.argv or sys.executable in ways that
    # " ".join([sys.executable, *sys.argv]) cannot take
    proc = run_python(
        f"""
        import sys
        import dhatc
        p = dhatc.Profiler(file_name="out.json").start()
        x = [bytes(100) for _ in range(10)]
        {setup}
        # WHEN the profiler stops
        p.stop()
        print(p.profile is not None)
        """
    )
    # THEN the file is there, its cmd made of what could be read
    assert proc.stdout.strip() == "True"
    data = load(tmp_path / "out.json")
    assert data["cmd"] == cmd.replace("EXE", sys.executable).replace(
        "SCRIPT", str(tmp_path / "snippet.py"))
    assert sum(pp["tbk"] for pp in data["pps"]) >= 10


INTERRUPTED_STOP = """
    import dhatc
    from dhatc import _dhat_file

    real = _dhat_file.profile_from_engine
    calls = []

    def interrupted_once(*args, **kwargs):
        # A KeyboardInterrupt (a second Ctrl-C) while the profile is built.
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    _dhat_file.profile_from_engine = interrupted_once

    def work():
        return [bytearray(1000) for _ in range(10)]

    profiler = dhatc.Profiler(file_name="out.json").start()
    kept = work()
    try:
        profiler.stop()
    except KeyboardInterrupt:
        print("interrupted:", profiler.profile is None, profiler.phase.name)
    """


def test_a_stop_interrupted_while_the_profile_is_built_can_be_repeated(run_python, tmp_path):
    proc = run_python(
        INTERRUPTED_STOP
        + """
    profiler.stop()
    blocks = sum(pp.total_blocks for pp in profiler.profile.pps
                 if any("work" in f for f in pp.frames))
    print("again:", profiler.phase.name, blocks >= 10)
    dhatc.Profiler(testing=True).start().stop()
    print("then a new profile runs")
    """
    )
    assert proc.stdout.splitlines() == [
        "interrupted: True DURING",
        "again: POST_DROP True",
        "then a new profile runs",
    ]
    assert load(tmp_path / "out.json")["dhatFileVersion"] == 2


def test_a_stop_interrupted_while_the_profile_is_built_is_saved_at_exit(run_python, tmp_path):
    proc = run_python(INTERRUPTED_STOP)
    assert proc.stdout.splitlines() == ["interrupted: True DURING"]
    data = load(tmp_path / "out.json")
    assert sum(pp["tbk"] for pp in data["pps"]) >= 10
    assert "dhat: The data has been saved to out.json" in proc.stderr


# ---- a failed save does not hide the block's own exception -------------------------


@pytest.mark.parametrize(
    "exc, caught",
    [
        ("ValueError('real')", "caught ValueError real"),
        ("KeyboardInterrupt()", "caught KeyboardInterrupt"),
        ("SystemExit(4)", "caught SystemExit 4"),
    ],
)
def test_a_failed_save_lets_the_blocks_exception_through(run_python, exc, caught):
    proc = run_python(
        f"""
        import dhatc

        p = dhatc.Profiler(file_name="no-such-dir/x.json")
        try:
            with p:
                x = [bytes(100) for _ in range(10)]
                raise {exc}
        except {exc.split("(")[0]} as e:
            print(" ".join(["caught", type(e).__name__, str(e)]).strip())
        print("kept:", p.profile.total_blocks >= 10, p.save("rescued.json"))
        """
    )
    assert proc.stdout.splitlines() == [caught, "kept: True rescued.json"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dhat: error:")]
    assert errors == [
        "dhat: error: [Errno 2] dhatc: cannot write the profile to 'no-such-dir/x.json': "
        "No such file or directory"
    ]


def test_without_an_exception_in_the_block_a_failed_save_raises(run_python):
    proc = run_python(
        """
        import dhatc
        try:
            with dhatc.Profiler(file_name="no-such-dir/x.json"):
                pass
        except OSError as e:
            print(type(e).__name__, e.errno)
        """
    )
    assert proc.stdout.strip() == "FileNotFoundError 2"
