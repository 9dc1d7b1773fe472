"""The DHAT file: its header fields, per-PP figures, frames, trimming, merging,
order, and the summary printed to stderr."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from dhatc import _dhat_file
from dhat_helpers import all_frames, frames_of, load, pp_at_line

SCRIPT = """
import allocmod as m
import dhatc

def leaf():
    m.alloc(0, m.OBJ, 1000)          # line 6: PP A, freed before the peak
    m.free(0)

def middle():
    m.alloc(1, m.MEM, 2000)          # line 10: PP B, live at peak and end
    leaf()
    m.alloc(2, m.RAW, 3000)          # line 12: PP C, live at peak, freed at end
    m.alloc(3, m.RAW, 10)            # line 13: PP D, the global peak, then freed
    m.free(3)
    m.free(2)
    m.alloc(4, m.OBJ, 700)           # line 16: PP E, live at end only

def main():
    with dhatc.Profiler(file_name="out.json", trim_backtraces=TRIM):
        middle()

main()
"""


def run_script(run_python, tmp_path: Path, trim="10", extra=""):
    proc = run_python(SCRIPT.replace("TRIM", trim) + extra)
    return proc, load(tmp_path / "out.json")


def test_header_fields(run_python, tmp_path):
    proc, data = run_script(run_python, tmp_path)
    assert data["dhatFileVersion"] == 2
    assert data["mode"] == "heap"
    assert data["verb"] == "Allocated"
    assert data["bklt"] is True and data["bkacc"] is False
    assert (data["tu"], data["Mtu"], data["tuth"]) == ("allocs", "Mallocs", 10)
    assert "snippet.py" in data["cmd"]
    assert isinstance(data["pid"], int) and data["pid"] > 0
    assert data["ftbl"][0] == "[root]"
    # The clock counts allocations: five allocmod blocks plus whatever the
    # interpreter allocated around them.
    assert data["te"] >= 5 and 0 < data["tg"] <= data["te"]
    assert "bu" not in data and "bsu" not in data and "bksu" not in data


def test_per_pp_figures(run_python, tmp_path):
    _, data = run_script(run_python, tmp_path)
    a, b, c, d, e = (pp_at_line(data, n) for n in (6, 10, 12, 13, 16))
    #        tb    tbk  mb    mbk gb    gbk eb    ebk
    assert [(pp["tb"], pp["tbk"], pp["mb"], pp["mbk"], pp["gb"], pp["gbk"], pp["eb"], pp["ebk"])
            for pp in (a, b, c, d, e)] == [
        (1000, 1, 1000, 1, 0, 0, 0, 0),
        (2000, 1, 2000, 1, 2000, 1, 2000, 1),
        (3000, 1, 3000, 1, 3000, 1, 0, 0),
        (10, 1, 10, 1, 10, 1, 0, 0),
        (700, 1, 700, 1, 0, 0, 700, 1),
    ]
    # Lifetimes are in allocations: A and D are freed before anything else is
    # allocated, C lives through D's allocation.
    assert (a["tl"], d["tl"], c["tl"]) == (0, 0, 1)
    # B and E live to the end; B was allocated at least 4 allocations earlier.
    assert b["tl"] - e["tl"] >= 4 and e["tl"] < data["te"]
    assert data["tg"] == data["te"] - e["tl"] - 1  # the peak is D's allocation, just before E


def test_frames_name_allocator_then_python_stack_and_trim_below_root(run_python, tmp_path):
    _, data = run_script(run_python, tmp_path)
    frames = frames_of(data, pp_at_line(data, 6))
    path = str(tmp_path / "snippet.py")
    assert frames == [
        "PyObject_Malloc",
        f"leaf ({path}:6)",
        f"middle ({path}:11)",
        f"main ({path}:20)",  # the frame that started the profiler is kept ...
    ]  # ... and <module> below it is trimmed
    assert frames_of(data, pp_at_line(data, 12))[0] == "PyMem_RawMalloc"
    assert frames_of(data, pp_at_line(data, 10))[0] == "PyMem_Malloc"


def test_trim_backtraces_bounds_python_frames(run_python, tmp_path):
    _, data = run_script(run_python, tmp_path, trim="1")
    for pp in data["pps"]:
        assert len(pp["fs"]) <= 2  # allocator frame + one Python frame
    # leaf's block and middle's blocks are distinct PPs even when trimmed.
    assert frames_of(data, pp_at_line(data, 6))[1:] == [f"leaf ({tmp_path / 'snippet.py'}:6)"]


def test_trim_none_keeps_every_frame(run_python, tmp_path):
    proc = run_python(
        """
        import allocmod as m
        import dhatc

        def deep(n):
            if n == 0:
                m.alloc(0, m.MEM, 123)
            else:
                deep(n - 1)

        def main():
            with dhatc.Profiler(file_name="out.json", trim_backtraces=None):
                deep(40)

        main()
        """
    )
    data = load(tmp_path / "out.json")
    pp = next(pp for pp in data["pps"] if pp["tb"] == 123)
    # allocator + 41 deep frames + main
    assert len(pp["fs"]) == 1 + 41 + 1


def test_equal_frames_merge_into_one_pp(run_python, tmp_path):
    # Two allocations on one line (different instructions) are one PP; the
    # viewer rejects repeated locations.
    run_python(
        """
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(file_name="out.json"):
                m.alloc(0, m.MEM, 100); m.alloc(1, m.MEM, 200); m.free(0)

        main()
        """
    )
    data = load(tmp_path / "out.json")
    fs = [tuple(pp["fs"]) for pp in data["pps"]]
    assert len(fs) == len(set(fs))
    pp = next(pp for pp in data["pps"] if pp["tb"] == 300)
    assert (pp["tbk"], pp["mb"], pp["mbk"], pp["eb"], pp["ebk"]) == (2, 300, 2, 200, 1)


def test_same_run_gives_same_file_but_pid_and_cmd(run_python, tmp_path):
    run_script(run_python, tmp_path)
    first = (tmp_path / "out.json").read_text()
    run_script(run_python, tmp_path)
    second = (tmp_path / "out.json").read_text()

    def strip(text: str) -> str:
        return re.sub(r'"(pid|cmd)":[^\n]*', "", text)

    assert strip(first) == strip(second)


def test_summary_lines_on_stderr(run_python, tmp_path):
    proc = run_python(
        """
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(file_name="out.json"):
                m.alloc(0, m.RAW, 1234567)
                m.alloc(1, m.RAW, 1000)
                m.free(1)
        main()
        """
    )
    lines = proc.stderr.splitlines()
    data = load(tmp_path / "out.json")
    total_bytes = sum(pp["tb"] for pp in data["pps"])
    total_blocks = sum(pp["tbk"] for pp in data["pps"])
    assert lines[0] == f"dhat: Total:     {total_bytes:,} bytes in {total_blocks:,} blocks"
    assert lines[1].startswith("dhat: At t-gmax: 1,23")
    assert lines[2].startswith("dhat: At t-end:  1,23")
    assert lines[3] == (
        "dhat: The data has been saved to out.json, and is viewable with dhat/dh_view.html"
    )
    assert len(lines) == 4


def test_default_file_name(run_python, tmp_path):
    run_python("import dhatc\nwith dhatc.Profiler():\n    x = [1] * 1000\n")
    assert load(tmp_path / "dhat-heap.json")["mode"] == "heap"


def test_eprint_json_prints_instead_of_saving(run_python, tmp_path):
    proc = run_python(
        "import dhatc\nwith dhatc.Profiler(eprint_json=True):\n    x = [1] * 1000\n"
    )
    assert not (tmp_path / "dhat-heap.json").exists()
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("dhat: Total:")
    data = json.loads("\n".join(lines[3:]))
    assert data["dhatFileVersion"] == 2


def test_file_written_atomically_leaves_no_temporaries(run_python, tmp_path):
    run_script(run_python, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["out.json", "snippet.py"]


def test_file_has_the_usual_permissions(run_python, tmp_path):
    run_script(run_python, tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_trim_zero_keeps_only_the_allocator_frame(run_python, tmp_path):
    _, data = run_script(run_python, tmp_path, trim="0")
    assert {len(pp["fs"]) for pp in data["pps"]} == {1}
    assert {fs[0] for fs in all_frames(data)} <= {
        "PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc", "PyMem_Malloc",
        "PyMem_Calloc", "PyMem_Realloc", "PyMem_RawMalloc", "PyMem_RawCalloc", "PyMem_RawRealloc"}


# ---- profile_from_engine and save, in process --------------------------------


def engine_data(pps: list) -> dict:
    """What _engine.stop() returns for a heap profile holding `pps`, rows of
    (allocator entry, ((code, line), ...), tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk)."""
    return {
        "mode": "heap",
        "total_blocks": sum(row[3] for row in pps),
        "total_bytes": sum(row[2] for row in pps),
        "curr_blocks": 0, "curr_bytes": 0, "max_blocks": 0, "max_bytes": 0,
        "time_of_peak": 0, "time_of_end": 0, "dropped": 0, "saturated": 0, "hooks_lost": 0,
        "pps": pps,
    }


def test_equal_code_objects_from_different_files_stay_apart():
    # GIVEN two code objects that compare equal (CPython compares code by
    # value and ignores co_filename) but come from different files
    source = "def work():\n    return 1\n"
    code_a = compile(source, "a.py", "exec").co_consts[0]
    code_b = compile(source, "b.py", "exec").co_consts[0]
    assert code_a == code_b and hash(code_a) == hash(code_b)
    data = engine_data([
        ("PyMem_Malloc", ((code_a, 2),), 100, 1, 0, 0, 0, 0, 0, 0, 0),
        ("PyMem_Malloc", ((code_b, 2),), 250, 2, 0, 0, 0, 0, 0, 0, 0),
    ])
    # WHEN the engine's rows are resolved
    profile = _dhat_file.profile_from_engine(data, cmd="cmd", pid=1)
    # THEN each keeps its own file name and figures
    assert [(pp.frames, pp.total_bytes, pp.total_blocks) for pp in profile.pps] == [
        (("PyMem_Malloc", "work (a.py:2)"), 100, 1),
        (("PyMem_Malloc", "work (b.py:2)"), 250, 2),
    ]


def test_equal_strings_still_merge_and_destroyed_code_reads_as_such():
    source = "def work():\n    return 1\n"
    code_1 = compile(source, "same.py", "exec").co_consts[0]
    code_2 = compile(source, "same.py", "exec").co_consts[0]
    data = engine_data([
        ("PyMem_Malloc", ((code_1, 2),), 100, 1, 0, 0, 0, 0, 0, 0, 0),
        ("PyMem_Malloc", ((code_2, 2),), 250, 2, 0, 0, 0, 0, 0, 0, 0),
        ("PyMem_Malloc", ((None, 7),), 5, 1, 0, 0, 0, 0, 0, 0, 0),
    ])
    profile = _dhat_file.profile_from_engine(data, cmd="cmd", pid=1)
    assert [(pp.frames, pp.total_bytes, pp.total_blocks) for pp in profile.pps] == [
        (("PyMem_Malloc", "work (same.py:2)"), 350, 3),
        (("PyMem_Malloc", "[code object destroyed while profiling] (?:7)"), 5, 1),
    ]


def _interrupt_midway(monkeypatch):
    """Makes write_json write part of the file, then raise KeyboardInterrupt."""
    def interrupted(profile, out):
        out.write('{\n"dhatFileVersion":2')
        raise KeyboardInterrupt

    monkeypatch.setattr(_dhat_file, "write_json", interrupted)


def a_profile():
    return _dhat_file.profile_from_engine(engine_data([]), cmd="cmd", pid=1)


def test_interrupted_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    _interrupt_midway(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _dhat_file.save(a_profile(), str(tmp_path / "out.json"))
    assert os.listdir(tmp_path) == []


def test_interrupted_save_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("the previous profile")
    _interrupt_midway(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _dhat_file.save(a_profile(), str(target))
    assert os.listdir(tmp_path) == ["out.json"]
    assert target.read_text() == "the previous profile"


def test_identical_functions_in_two_files_are_two_pps(run_python, tmp_path):
    # Their code objects compare equal; only co_filename tells them apart.
    for name in ("twin_a", "twin_b"):
        (tmp_path / f"{name}.py").write_text(
            "import allocmod as m\n\ndef work(slot, size):\n    m.alloc(slot, m.RAW, size)\n"
        )
    run_python(
        """
        import dhatc
        import twin_a, twin_b  # beside the script, so on sys.path
        assert twin_a.work.__code__ == twin_b.work.__code__

        with dhatc.Profiler(file_name="out.json", trim_backtraces=1):
            twin_a.work(0, 1111)
            twin_b.work(1, 2222)
        """
    )
    data = load(tmp_path / "out.json")
    found = {
        frames_of(data, pp)[1]: pp["tb"]
        for pp in data["pps"]
        if "twin_" in frames_of(data, pp)[-1]
    }
    assert found == {
        f"work ({tmp_path / 'twin_a.py'}:4)": 1111,
        f"work ({tmp_path / 'twin_b.py'}:4)": 2222,
    }


# ---- what save() writes to: regular files replaced, anything else in place ------


def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real" / "profile.json"
    real.parent.mkdir()
    real.write_text("the previous profile")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    _dhat_file.save(a_profile(), str(link))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert load(real)["dhatFileVersion"] == 2
    assert sorted(os.listdir(real.parent)) == ["profile.json"]  # no temporary left


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "new.json")
    _dhat_file.save(a_profile(), str(link))
    assert link.is_symlink() and load(tmp_path / "new.json")["dhatFileVersion"] == 2


def test_save_to_a_fifo_writes_into_it(tmp_path):
    fifo = tmp_path / "profile.fifo"
    os.mkfifo(fifo)
    # The reading end, opened first (without waiting for a writer), so that
    # the writer does not block and a test that fails does not hang.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        _dhat_file.save(a_profile(), str(fifo))  # small: fits the pipe's buffer
        received = os.read(reader, 1 << 16)
    except BlockingIOError:
        received = b""
    finally:
        os.close(reader)
    assert json.loads(received)["dhatFileVersion"] == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["profile.fifo"]


def test_save_to_a_device_through_a_symlink_writes_into_the_device(tmp_path):
    # (Through a link of our own: a broken fix must not touch /dev itself.)
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    _dhat_file.save(a_profile(), str(link))
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null.json"]


def test_save_to_a_descriptor_path_appends_to_what_it_names(tmp_path):
    # /dev/fd/N names an open descriptor: the profile goes after what was
    # written through it, into the same file.
    target = tmp_path / "out.txt"
    with open(target, "w") as f:
        f.write("program output\n")
        f.flush()
        _dhat_file.save(a_profile(), f"/dev/fd/{f.fileno()}")
    text = target.read_text()
    assert text.startswith("program output\n{")
    assert json.loads(text.split("\n", 1)[1])["dhatFileVersion"] == 2
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_save_to_a_directory_fails_naming_it(tmp_path):
    with pytest.raises(IsADirectoryError, match="cannot write the profile to .*: Is a directory"):
        _dhat_file.save(a_profile(), str(tmp_path))


@pytest.mark.parametrize(
    "name, problem",
    [
        ("out.json", None),
        ("missing/out.json", "there is no directory"),
        (".", "it is a directory"),
        ("/dev/null", None),
    ],
)
def test_writable_problem_foresees_what_save_would_say(tmp_path, monkeypatch, name, problem):
    monkeypatch.chdir(tmp_path)
    found = _dhat_file.writable_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
