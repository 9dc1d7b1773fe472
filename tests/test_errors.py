"""Bad input gets a clear exception that says what to do; data collected is
never lost to an error in saving it."""

from __future__ import annotations

import json
import os

import pytest

import dhatc


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
        data = json.loads((tmp_path / f"out{slot}.json").read_text())
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
