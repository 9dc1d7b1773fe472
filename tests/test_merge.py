"""`python -m dhatc merge` and `dhatc._merge.merge`: PPs matched by their
frames and summed, t-gmax as the sum of each process's own peak (said in
`cmd`), times laid end to end, units kept; modes and time units never mixed;
the merged file loads in DHAT's real viewer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from command_util import assert_one_line_error, dhatc, pp, write_profile
from dh_viewer import render, viewer_dir
from dhatc import _dhat_reader
from dhatc._errors import CommandError
from dhatc._merge import merge, merge_files

SHARED = ["PyObject_Malloc", "load (app.py:3)", "main (app.py:9)"]
PARENT_ONLY = ["PyObject_Malloc", "serve (app.py:5)", "main (app.py:9)"]
CHILD_ONLY = ["PyMem_Malloc", "work (app.py:7)", "main (app.py:9)"]


@pytest.fixture
def two_processes(tmp_path: Path) -> Path:
    write_profile(tmp_path / "parent.json", [
        pp(SHARED, 100, 2, tl=10, mb=100, mbk=2, gb=50, gbk=1, eb=0, ebk=0),
        pp(PARENT_ONLY, 40, 1, tl=4, mb=40, mbk=1, gb=40, gbk=1, eb=40, ebk=1),
    ], cmd="python app.py", pid=100, time_of_peak=30, time_of_end=40)
    write_profile(tmp_path / "child.json", [
        pp(CHILD_ONLY, 7, 7, tl=7, mb=3, mbk=3, gb=3, gbk=3, eb=1, ebk=1),
        pp(SHARED, 1000, 1, tl=2, mb=1000, mbk=1, gb=1000, gbk=1, eb=1000, ebk=1),
    ], cmd="python app.py --worker", pid=101, time_of_peak=5, time_of_end=10)
    return tmp_path


def test_merge_sums_matching_program_points(two_processes: Path) -> None:
    proc = dhatc("merge", "parent.json", "child.json", "-o", "all.json", cwd=two_processes)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "dhatc merge: wrote all.json (2 files, 3 program points)",
        "dhat: Total:     1,147 bytes in 11 blocks",
        "dhat: At t-gmax: 1,093 bytes in 6 blocks",
        "dhat: At t-end:  1,041 bytes in 3 blocks",
    ]
    data = json.loads((two_processes / "all.json").read_text())
    assert data["cmd"] == (
        "dhatc merge of 2 files; t-gmax = the sum of each process's own t-gmax figures, not one "
        "moment; times laid end to end: [pid 100] python app.py | [pid 101] python app.py --worker")
    assert (data["mode"], data["pid"], data["tu"], data["Mtu"], data["tuth"]) == (
        "heap", 100, "allocs", "Mallocs", 10)
    # Laid end to end: 40 + 10; the larger peak (the child's, 1,003 bytes) at 40 + 5.
    assert (data["te"], data["tg"]) == (50, 45)
    frames = [tuple(data["ftbl"][i] for i in p["fs"]) for p in data["pps"]]
    assert frames == [tuple(SHARED), tuple(PARENT_ONLY), tuple(CHILD_ONLY)]
    shared = {k: v for k, v in data["pps"][0].items() if k != "fs"}
    assert shared == {"tb": 1100, "tbk": 3, "tl": 12, "mb": 1100, "mbk": 3, "gb": 1050, "gbk": 2,
                      "eb": 1000, "ebk": 1}
    if viewer_dir() is not None:
        shown = render(two_processes / "all.json")
        assert shown.error is None
        assert "Total:     1,147 bytes (100%" in shown.text
        assert "At t-gmax: 1,093 bytes (100%) in 6 blocks (100%)" in shown.text
        assert "Command: dhatc merge of 2 files; t-gmax = the sum" in shown.text


def test_merge_function_for_other_commands(two_processes: Path) -> None:
    paths = [str(two_processes / "parent.json"), str(two_processes / "child.json")]
    profile = merge_files(paths)
    assert profile.mode == "heap" and profile.is_heap
    assert (profile.total_bytes, profile.max_bytes, profile.curr_bytes) == (1147, 1093, 1041)
    assert profile == merge([_dhat_reader.load(p) for p in paths])
    # One file merges into itself, but for cmd.
    alone = merge([_dhat_reader.load(paths[0])])
    assert [p.frames for p in alone.pps] == [tuple(SHARED), tuple(PARENT_ONLY)]
    with pytest.raises(CommandError, match="nothing to merge"):
        merge([])


def test_foreign_time_units_are_kept(tmp_path: Path) -> None:
    for name, pid in [("a.json", 1), ("b.json", 2)]:
        write_profile(tmp_path / name, [pp(["0x1: main (a.c:1)"], 10, 1, gb=10, gbk=1)], pid=pid,
                      time_unit="instrs", time_unit_million="Minstr", short_lived_threshold=500)
    assert dhatc("merge", "a.json", "b.json", "-o", "ab.json", cwd=tmp_path).returncode == 0
    data = json.loads((tmp_path / "ab.json").read_text())
    assert (data["tu"], data["Mtu"], data["tuth"]) == ("instrs", "Minstr", 500)
    assert data["pps"][0]["tb"] == 20


def test_ad_hoc_files_merge(tmp_path: Path) -> None:
    write_profile(tmp_path / "a.json", [pp(["parse (t.py:5)"], 35, 9)], mode="ad-hoc", pid=1)
    write_profile(tmp_path / "b.json", [pp(["parse (t.py:5)"], 5, 1)], mode="ad-hoc", pid=2)
    proc = dhatc("merge", "a.json", "b.json", "-o", "ab.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[1] == "dhat: Total:     40 units in 10 events"
    data = json.loads((tmp_path / "ab.json").read_text())
    assert (data["mode"], data["verb"], data["bklt"], data["te"]) == ("ad-hoc", "Occurred", False, 200)
    assert data["cmd"].startswith("dhatc merge of 2 files; times laid end to end: [pid 1]")
    if viewer_dir() is not None:
        assert render(tmp_path / "ab.json").error is None


def test_what_cannot_be_merged(two_processes: Path) -> None:
    tmp = two_processes
    write_profile(tmp / "adhoc.json", [pp(["parse (t.py:5)"], 35, 9)], mode="ad-hoc")
    write_profile(tmp / "valgrind.json", [pp(["0x1: main (a.c:1)"], 10, 1)],
                  time_unit="instrs", time_unit_million="Minstr", short_lived_threshold=500)
    (tmp / "adir").mkdir()
    cases = [
        (["parent.json", "adhoc.json"], "parent.json is a heap profile and adhoc.json an ad hoc profile"),
        (["parent.json", "valgrind.json"], "parent.json counts time in 'allocs' and valgrind.json in 'instrs'"),
        (["parent.json", "missing.json"], "missing.json"),
    ]
    for files, fragment in cases:
        assert_one_line_error(dhatc("merge", *files, "-o", "out.json", cwd=tmp), "merge", fragment)
    assert_one_line_error(dhatc("merge", "parent.json", "-o", "adir", cwd=tmp), "merge", "adir is a directory")
    assert not (tmp / "out.json").exists()
    # argparse's own errors: no file at all, no -o.
    assert dhatc("merge", "-o", "x.json", cwd=tmp).returncode == 2
    assert dhatc("merge", "parent.json", cwd=tmp).returncode == 2


def test_profiles_of_two_real_processes(tmp_path: Path, run_python) -> None:  # type: ignore[no-untyped-def]
    code = """
        import sys, dhatc
        def build(n):
            return [bytes(100) for _ in range(n)]
        with dhatc.Profiler(file_name=sys.argv[1]):
            kept = build(int(sys.argv[2]))
    """
    run_python(code, args=("one.json", "10"))
    run_python(code, args=("two.json", "30"))
    proc = dhatc("merge", "one.json", "two.json", "-o", "both.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    one, two, both = (_dhat_reader.load(str(tmp_path / n)) for n in ("one.json", "two.json", "both.json"))
    assert sum(p.total_bytes for p in both.pps) == (
        sum(p.total_bytes for p in one.pps) + sum(p.total_bytes for p in two.pps))
    # The same lines allocated in both: the same program points.
    assert {p.frames for p in both.pps} == {p.frames for p in one.pps} | {p.frames for p in two.pps}
    assert len(both.pps) < len(one.pps) + len(two.pps)
    if viewer_dir() is not None:
        assert render(tmp_path / "both.json").error is None
