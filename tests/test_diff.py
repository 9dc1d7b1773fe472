"""``dhatc diff OLD NEW``: program points matched by frames without
addresses, totals side by side, and --fail-if-more as a CI gate."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from command_util import NO_SCANNER, assert_one_line_error, dhatc, dhatc_command
from dhatc import _report_diff
from dhatc._dhat_reader import frame_without_address
from report_util import (RUST_HEAP, dhatc_file, document, heap_pp, needs_valgrind,
                         random_document, run_cli, valgrind_file, write)

FRAMES = ["PyObject_Malloc", "load (app.py:10)", "parse (app.py:20)", "main (app.py:30)",
          "cache (app.py:40)", "render (app.py:50)"]


@pytest.fixture
def pair(tmp_path: Path) -> Tuple[str, str]:
    """OLD and NEW of a program whose load() grew, cache() went, render() came."""
    old = document([heap_pp([1, 2, 4], 1000, 10, gb=500, gbk=5),
                    heap_pp([1, 3, 4], 4000, 40, gb=2000, gbk=20, eb=1000, ebk=10),
                    heap_pp([1, 5, 4], 300, 3, gb=300, gbk=3, eb=300, ebk=3)], FRAMES, pid=100)
    new = document([heap_pp([1, 2, 4], 1500, 15, gb=600, gbk=6),
                    heap_pp([1, 3, 4], 4000, 40, gb=2000, gbk=20, eb=1000, ebk=10),
                    heap_pp([1, 6, 4], 2000, 2, gb=2000, gbk=2, eb=2000, ebk=2)], FRAMES,
                   pid=200, cmd="python app.py --fast")
    return str(write(tmp_path / "old.json", old)), str(write(tmp_path / "new.json", new))


def expected_text(old: str, new: str) -> str:
    return f"""\
OLD: {old}  heap, pid 100, 3 program points
     python app.py
NEW: {new}  heap, pid 200, 3 program points
     python app.py --fast

                      OLD    NEW  change
Total (bytes)       5,300  7,500  +2,200  +41.51%
Total (blocks)         53     57      +4  +7.55%
At t-gmax (bytes)   2,800  4,600  +1,800  +64.29%
At t-gmax (blocks)     28     28       0
At t-end (bytes)    1,300  3,000  +1,700  +130.77%
At t-end (blocks)      13     12      -1  -7.69%

Program points by change of Total (bytes): 1 grew, 0 shrank, 1 new, 1 vanished,
1 unchanged:

+2,000 bytes (new)
    #1: PyObject_Malloc
    #2: render (app.py:50)
    #3: main (app.py:30)

+500 bytes (+50%): 1,000 → 1,500
    #1: PyObject_Malloc
    #2: load (app.py:10)
    #3: main (app.py:30)

-300 bytes (vanished)
    #1: PyObject_Malloc
    #2: cache (app.py:40)
    #3: main (app.py:30)

0 bytes (unchanged): 4,000 → 4,000
    #1: PyObject_Malloc
    #2: parse (app.py:20)
    #3: main (app.py:30)
"""


def test_diff_text(pair: Tuple[str, str], tmp_path: Path) -> None:
    old, new = pair
    proc = dhatc("diff", "old.json", "new.json", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == expected_text("old.json", "new.json")


def test_sort_and_top(pair: Tuple[str, str]) -> None:
    out = run_cli("diff", *pair, "--sort", "end_blocks", "--top", "2")[1]
    assert "Program points by change of At t-end (blocks): 0 grew, 0 shrank, 1 new,\n" \
           "1 vanished, 2 unchanged; the top 2:" in out
    heads = [line for line in out.splitlines() if line and line[0] in "+-0"]
    assert heads == ["-3 blocks (vanished)", "+2 blocks (new)"]  # |change| 3 before 2


def test_json(pair: Tuple[str, str]) -> None:
    status, out, err = run_cli("diff", *pair, "--json", "--top", "2",
                               "--fail-if-more", "total_blocks=+4")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["format"] == "dhatc-diff" and doc["version"] == 1
    assert (doc["old"]["pid"], doc["new"]["pid"]) == (100, 200)
    assert doc["totals"]["total_bytes"] == {"old": 5300, "new": 7500, "change": 2200}
    assert doc["totals"]["end_blocks"] == {"old": 13, "new": 12, "change": -1}
    assert set(doc["totals"]) == {"total_bytes", "total_blocks", "gmax_bytes", "gmax_blocks",
                                  "end_bytes", "end_blocks"}
    assert doc["sort"] == {"figure": "total_bytes"}
    assert doc["counts"] == {"grew": 1, "shrank": 0, "unchanged": 1, "new": 1, "vanished": 1}
    first, second = doc["program_points"]
    assert (first["status"], first["change"], first["old"]) == ("new", 2000, None)
    assert first["frames"] == ["PyObject_Malloc", "render (app.py:50)", "main (app.py:30)"]
    assert first["new"]["gmax_bytes"] == 2000
    assert (second["status"], second["change"]) == ("grew", 500)
    assert (second["old"]["total_blocks"], second["new"]["total_blocks"]) == (10, 15)
    assert doc["limits"] == [{"limit": "total_blocks=+4", "figure": "total_blocks", "old": 53,
                              "new": 57, "change": 4, "exceeded": False, "grew_most": []}]
    assert doc["exceeded"] is False


# --- the CI gate ------------------------------------------------------------------------


@pytest.mark.parametrize("limit, exceeded", [
    ("total_bytes=41.5", True),       # +41.509...%
    ("total_bytes=41.5%", True),
    ("total_bytes=41.51", False),
    ("total_bytes=+2200", False),     # at the limit is within it
    ("total_bytes=+2199", True),
    ("total_bytes=+2.2KB", False),    # KB = 1000
    ("total_bytes=+2.14 KiB", True),  # 2,191.36 bytes
    ("total_blocks=+4", False),
    ("total_blocks=+3", True),
    ("max_bytes=64.28", True),        # the peak: t-gmax
    ("max_bytes=64.29", False),
    ("max_blocks=0", False),          # 28 -> 28
    ("curr_bytes=+1700", False),      # t-end
    ("curr_blocks=0", False),         # 13 -> 12
    ("events=+3", True),
])
def test_limits(pair: Tuple[str, str], limit: str, exceeded: bool) -> None:
    status, _, err = run_cli("diff", *pair, "--fail-if-more", limit)
    assert status == (1 if exceeded else 0), err
    assert bool(err) == exceeded


def test_exceeded_limits_name_the_figure_and_the_growers(pair: Tuple[str, str]) -> None:
    proc = dhatc("diff", *pair, "--fail-if-more", "total_bytes=10%", "--fail-if-more",
                 "max_bytes=+1KiB", "--fail-if-more", "curr_blocks=0")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "dhatc diff: total_bytes grew by 2,200 bytes (+41.51%), from 5,300 to 7,500: more than "
        "the 10% allowed (530 bytes)",
        "  program points that grew most:",
        "    +2,000 bytes (new)  render (app.py:50) via PyObject_Malloc",
        "    +500 bytes  load (app.py:10) via PyObject_Malloc",
        "dhatc diff: max_bytes (bytes at the peak, t-gmax) grew by 1,800 bytes (+64.29%), from "
        "2,800 to 4,600: more than the 1,024 bytes allowed",
        "  program points that grew most:",
        "    +2,000 bytes (new)  render (app.py:50) via PyObject_Malloc",
        "    +100 bytes  load (app.py:10) via PyObject_Malloc",
    ]
    assert proc.stdout.startswith("OLD: ")  # the diff itself, as without limits


def test_growth_from_nothing(tmp_path: Path) -> None:
    old = write(tmp_path / "o.json", document([heap_pp([1], 0, 0)], ["f (a.py:1)"]))
    new = write(tmp_path / "n.json", document([heap_pp([1], 10, 1)], ["f (a.py:1)"]))
    status, out, err = run_cli("diff", str(old), str(new), "--fail-if-more", "total_bytes=1000")
    assert status == 1
    assert err.splitlines()[0] == ("dhatc diff: total_bytes grew by 10 bytes, from 0 to 10: more "
                                   "than the 1000% allowed (0 bytes)")
    assert "+10 bytes: 0 → 10" in out
    assert run_cli("diff", str(old), str(old), "--fail-if-more", "total_bytes=0")[0] == 0


@pytest.mark.parametrize("limit, message", [
    ("total_bytes", "'total_bytes': write FIGURE=PERCENT or FIGURE=+AMOUNT, e.g. "
                    "total_bytes=10% or max_blocks=+10"),
    ("bytes=10", "'bytes=10': unknown figure 'bytes'; use one of total_bytes, total_blocks"),
    ("total_bytes=ten", "'total_bytes=ten': 'ten' is not a percentage; e.g. total_bytes=10% "
                        "or max_blocks=+10"),
    ("total_bytes=-5", "'total_bytes=-5': the percentage must be 0 or more"),
    ("total_bytes=+1XB", "'total_bytes=+1XB': after '+' comes an amount of bytes like +1MiB, "
                         "+1.5 KB or +512 (KB = 1000, KiB = 1024)"),
    ("max_blocks=+1KiB", "'max_blocks=+1KiB': after '+' comes a whole number of blocks (events)"),
])
def test_bad_limits(pair: Tuple[str, str], limit: str, message: str) -> None:
    proc = dhatc("diff", *pair, "--fail-if-more", limit)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(
        f"dhatc diff: error: argument --fail-if-more: {message}")


def test_limit_on_a_figure_a_file_lacks(pair: Tuple[str, str], tmp_path: Path) -> None:
    adhoc = write(tmp_path / "ad.json", document([{"tb": 1, "tbk": 1, "fs": [1]}], ["f"],
                                                  bklt=False))
    assert_one_line_error(dhatc("diff", pair[0], str(adhoc), "--fail-if-more", "max_bytes=1"),
                          "diff", f"--fail-if-more max_bytes=1: {adhoc} records no block "
                                  "lifetimes")
    assert_one_line_error(dhatc("diff", pair[0], pair[1], "--fail-if-more", "reads=1"),
                          "diff", "records no reads and writes")


# --- matching ---------------------------------------------------------------------------


def test_addresses_do_not_matter(tmp_path: Path) -> None:
    """Two runs of a native program: same functions and lines, other addresses;
    two call instructions on one line are one program point, summed."""
    old = document([heap_pp([1, 2], 100, 1), heap_pp([1, 3], 50, 1, gb=50, gbk=1)],
                   ["0x1000: malloc (in /lib/libc.so.6)", "0x2000: f (a.c:3)",
                    "0x2008: f (a.c:3)"])
    new = document([heap_pp([1, 2], 400, 2)],
                   ["0x7000: malloc (in /lib/libc.so.6)", "0x9abc: f (a.c:3)"])
    status, out, _ = run_cli("diff", str(write(tmp_path / "o.json", old)),
                             str(write(tmp_path / "n.json", new)), "--json")
    doc = json.loads(out)
    assert doc["counts"] == {"grew": 1, "shrank": 0, "unchanged": 0, "new": 0, "vanished": 0}
    (point,) = doc["program_points"]
    assert point["frames"] == ["malloc (in /lib/libc.so.6)", "f (a.c:3)"]
    assert (point["old"]["total_bytes"], point["old"]["total_blocks"]) == (150, 2)
    assert (point["old"]["gmax_bytes"], point["new"]["total_bytes"]) == (50, 400)
    assert point["change"] == 250


@needs_valgrind
def test_two_valgrind_runs_of_a_rebuilt_program(tmp_path: Path) -> None:
    """NEW loops 15 times instead of 10, and its code moved (another object file
    linked first): every address differs, every program point matches."""
    old = valgrind_file(tmp_path, "old.json", "10")
    new = valgrind_file(tmp_path, "new.json", "15", shifted=True)
    old_frames = {f for p in json.loads(old.read_text())["ftbl"][1:] for f in [p]}
    new_frames = set(json.loads(new.read_text())["ftbl"][1:])
    assert not (old_frames & new_frames - {f for f in old_frames if "(in " in f})
    status, out, _ = run_cli("diff", str(old), str(new), "--json", "--top", "0")
    doc = json.loads(out)
    assert doc["counts"] == {"grew": 1, "shrank": 0, "unchanged": 2, "new": 0, "vanished": 0}
    grew = doc["program_points"][0]
    # (Valgrind up to 3.2x shows its malloc on top, later ones start at the caller.)
    assert grew["frames"][-2:] == ["make (prog.c:5)", "main (prog.c:8)"]
    assert (grew["old"]["total_blocks"], grew["new"]["total_blocks"], grew["change"]) == (
        10, 15, 500)
    assert (grew["old"]["writes"], grew["new"]["writes"]) == (1000, 1500)
    assert doc["totals"]["reads"] == {"old": 1, "new": 1, "change": 0}


def test_two_dhatc_runs(run_python: Any, tmp_path: Path) -> None:
    """Real profiles: every figure of the diff is the files' own, by a plain
    reading of their JSON."""
    for name, n in (("one.json", 10), ("two.json", 25)):
        dhatc_file(run_python, tmp_path, name, f"""
            keep = [bytes(500) for _ in range({n})]
            other = [bytearray(100) for _ in range({35 - n})]
        """)
    status, out, _ = run_cli("diff", str(tmp_path / "one.json"), str(tmp_path / "two.json"),
                             "--json", "--top", "0", "--sort", "total_blocks")
    doc = json.loads(out)

    def by_frames(path: Path) -> Dict[Tuple[str, ...], Dict[str, int]]:
        data = json.loads(path.read_text())
        return {tuple(data["ftbl"][i] for i in p["fs"]): p for p in data["pps"]}

    old, new = by_frames(tmp_path / "one.json"), by_frames(tmp_path / "two.json")
    assert len(doc["program_points"]) == len(set(old) | set(new))
    for point in doc["program_points"]:
        key = tuple(point["frames"])
        before = old[key]["tbk"] if key in old else 0
        after = new[key]["tbk"] if key in new else 0
        assert point["change"] == after - before
        assert point["status"] == ("new" if key not in old else "vanished" if key not in new
                                   else "grew" if after > before else "shrank"
                                   if after < before else "unchanged")
    changes = [abs(p["change"]) for p in doc["program_points"]]
    assert changes == sorted(changes, reverse=True)


ONE_CPU = "import os; os.sched_getaffinity = lambda pid: {0}"


def _outputs(args: List[str]) -> List[str]:
    """The output with the C scanner (both files read in one process), and
    without it in two processes (NEW in a forked one) and in one."""
    return [subprocess.run(dhatc_command(*args, prelude=prelude), capture_output=True,
                           text=True, check=True).stdout
            for prelude in ("", NO_SCANNER, NO_SCANNER + "\n" + ONE_CPU)]


def test_same_result_in_one_process_and_two(pair: Tuple[str, str]) -> None:
    """Without the C scanner, NEW is read in a forked process when there are
    CPUs to spare; the same result every way."""
    with_c, two, one = _outputs(["diff", *pair, "--json", "--top", "0"])
    assert one == two == with_c


def test_frames_sharing_a_hash(pair: Tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """If two different frames had one hash, keys would mix them up: then the
    keys are made of the strings, and the answer is the same."""
    expected = run_cli("diff", *pair, "--json", "--top", "0")[1]
    monkeypatch.setattr(_report_diff, "hash", lambda value: 7, raising=False)
    monkeypatch.setattr(_report_diff.os, "sched_getaffinity", lambda pid: {0})
    assert run_cli("diff", *pair, "--json", "--top", "0")[1] == expected


def test_many_program_points_match_as_a_plain_reading_says(tmp_path: Path) -> None:
    rng = random.Random(5)
    old_doc = random_document(rng, n_pps=400, ties=False)
    new_doc = json.loads(json.dumps(old_doc))
    new_doc["pps"] = [dict(p, tb=p["tb"] * rng.choice([1, 1, 2])) for p in new_doc["pps"]
                      if rng.random() < 0.9]
    old, new = write(tmp_path / "o.json", old_doc), write(tmp_path / "n.json", new_doc)
    doc = json.loads(run_cli("diff", str(old), str(new), "--json", "--top", "0")[1])

    def keyed(d: Dict[str, Any]) -> Dict[Tuple[str, ...], int]:
        return {tuple(frame_without_address(d["ftbl"][i]) for i in p["fs"]): p["tb"]
                for p in d["pps"]}

    a, b = keyed(old_doc), keyed(new_doc)
    assert {tuple(p["frames"]): p["change"] for p in doc["program_points"]} == {
        key: b.get(key, 0) - a.get(key, 0) for key in set(a) | set(b)}


# --- the command line -------------------------------------------------------------------


def test_different_writers(pair: Tuple[str, str]) -> None:
    """Any two DHAT files compare; totals a file lacks show as –."""
    status, out, _ = run_cli("diff", str(RUST_HEAP), pair[0])
    assert status == 0
    assert "Total (bytes)       3,472  5,300  +1,828  +52.65%" in out


def test_ad_hoc_against_heap_shows_what_both_have(pair: Tuple[str, str], tmp_path: Path) -> None:
    adhoc = write(tmp_path / "ad.json", document([{"tb": 5, "tbk": 1, "fs": [1]}], ["f"],
                                                  bklt=False))
    out = run_cli("diff", pair[0], str(adhoc))[1]
    assert "Total (bytes/units)    5,300    5  -5,295  -99.91%" in out
    assert "At t-gmax (bytes)      2,800    –\n" in out
    assert_one_line_error(dhatc("diff", pair[0], str(adhoc), "--sort", "gmax_bytes"), "diff",
                          f"--sort gmax_bytes: {adhoc} records no block lifetimes")


def test_errors(pair: Tuple[str, str], tmp_path: Path) -> None:
    assert_one_line_error(dhatc("diff", pair[0], "nope.json", cwd=tmp_path), "diff",
                          "nope.json: no such file")
    assert_one_line_error(dhatc("diff", "-", "-"), "diff", "only one of OLD and NEW can be '-'")
    assert_one_line_error(dhatc("diff", *pair, "--sort", "tiny"), "diff",
                          "unknown figure 'tiny' for --sort; choose from total_bytes")
    (tmp_path / "cut.json").write_text(Path(pair[1]).read_text()[:200])
    assert_one_line_error(dhatc("diff", pair[0], "cut.json", cwd=tmp_path), "diff",
                          "cut.json: the JSON stops in the middle")


def test_standard_input(pair: Tuple[str, str]) -> None:
    status, out, _ = run_cli("diff", pair[0], "-", stdin=Path(pair[1]).read_text())
    assert status == 0 and "NEW: <stdin>  heap, pid 200" in out


def test_broken_pipe_keeps_the_verdict(pair: Tuple[str, str]) -> None:
    proc = subprocess.run(f"{sys.executable} -m dhatc diff {pair[0]} {pair[1]} "
                          "--fail-if-more total_bytes=1 | head -1", shell=True,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout == f"OLD: {pair[0]}  heap, pid 100, 3 program points\n"
    assert proc.stderr.startswith("dhatc diff: total_bytes grew by 2,200 bytes")


def test_help_says_what_it_does() -> None:
    assert "compare two DHAT files program point by program point" in dhatc("--help").stdout
    own = dhatc("diff", "--help").stdout
    assert "--fail-if-more FIGURE=LIMIT" in own and "--sort FIGURE" in own


def _shuffled_frame_table(doc: Dict[str, Any], rng: random.Random) -> Dict[str, Any]:
    """`doc` with its frame table in another order (as another run of dhatc may
    write it), the same frames."""
    order = list(range(1, len(doc["ftbl"])))
    rng.shuffle(order)
    position = {old: new for new, old in enumerate(order, 1)}
    result = dict(doc, ftbl=["[root]"] + [doc["ftbl"][i] for i in order])
    result["pps"] = [dict(p, fs=[position[i] for i in p["fs"]]) for p in doc["pps"]]
    return result


@pytest.mark.parametrize("layout", ["ftbl last", "ftbl first", "a nested ftbl last"])
def test_new_numbered_in_the_forked_process_or_not(tmp_path: Path, layout: str) -> None:
    """The forked process numbers NEW's frames after OLD's frame table when a
    quick look finds it (the last "ftbl" of OLD's text); a wrong guess is
    noticed, and the answer is the same as in one process."""
    rng = random.Random(6)
    old_doc = random_document(rng, n_pps=300, ties=False)
    new_doc = _shuffled_frame_table(old_doc, rng)
    new_doc["pps"] = [dict(p, tb=p["tb"] * rng.choice([1, 2])) for p in new_doc["pps"]
                      if rng.random() < 0.9]
    if layout == "ftbl first":
        old_doc = {"ftbl": old_doc["ftbl"], **{k: v for k, v in old_doc.items() if k != "ftbl"}}
    elif layout == "a nested ftbl last":
        old_doc = dict(old_doc, zz={"ftbl": ["[root]", "not a frame"]})
    old, new = write(tmp_path / "o.json", old_doc), write(tmp_path / "n.json", new_doc)
    with_c, two, one = _outputs(["diff", str(old), str(new), "--json", "--top", "0"])
    assert one == two == with_c
    doc = json.loads(two)
    assert doc["counts"]["vanished"] == 300 - len(new_doc["pps"]) and doc["counts"]["new"] == 0
