"""dhatc._ppscan, the C half of reading big profiles: program points in
dhatc's own layout parsed into flat arrays (and the keys that diff and the
tree are made of).  Whatever it reads is read as the JSON parser reads it;
whatever it does not read, the Python code reads and judges."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
from array import array
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from command_util import NO_SCANNER, assert_one_line_error, dhatc, dhatc_command
from dhatc import _dhat_reader as reader
from dhatc import _ppscan
from dhatc import _report_diff, _report_tree
from report_util import RUST_HEAP, random_document
from test_dhat_reader import _mutate_text, dhatc_layout, outcome, without_fast_path

KEYS = ("tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk")


@pytest.fixture
def scanned(monkeypatch: Any) -> List[int]:
    """The program points each call of the C scanner read (0: it read none)."""
    counts: List[int] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(_ppscan, name)

        @staticmethod
        def scan(*args: Any) -> Any:
            result = _ppscan.scan(*args)
            counts.append(0 if result is None else result[1])
            return result

    monkeypatch.setattr(reader, "_ppscan", Spy())
    return counts


def _doc(seed: int, n_pps: int = 60, **kwargs: Any) -> Dict[str, Any]:
    doc = random_document(random.Random(seed), n_pps=n_pps, ties=False, **kwargs)
    for pp in doc["pps"]:
        pp.pop("acc", None)
    return doc


@pytest.mark.parametrize("kind", ["heap", "ad hoc", "accesses"])
def test_the_layout_reads_as_json_does(scanned, kind):
    """Every PP read by the scanner, fs=[] too, to what the JSON parser gives."""
    doc = _doc(40, n_pps=400, bklt=kind != "ad hoc", bkacc=kind == "accesses")
    assert any(not pp["fs"] for pp in doc["pps"])
    text = dhatc_layout(doc)
    assert outcome(text) == without_fast_path(json.dumps(doc, indent=1), pytest.MonkeyPatch())
    assert scanned[0] == len(doc["pps"])


def test_other_writers_files_are_left_to_the_json_path(scanned):
    """The crate's file (one value a line) and Valgrind's layout: not scanned."""
    crate = RUST_HEAP.read_text("utf-8")
    valgrind = json.dumps(json.loads(crate), indent=1).replace('\n  "fs"', ',"fs"')
    for text in (crate, valgrind, json.dumps(json.loads(crate))):
        assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned == [0, 0, 0]


@pytest.mark.parametrize("frame", ["caf\u00e9 (x.py:1)", "\u03a9 (x.py:1)", "\U0001F600 (x.py:1)"])
def test_text_of_any_width(scanned, frame):
    """A frame table with Latin-1, UCS-2 or astral characters makes the whole
    text one of wider characters: the scanner reads each width."""
    doc = _doc(41)
    doc["ftbl"][1] = frame
    text = dhatc_layout(doc)
    assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned == [len(doc["pps"])]


@pytest.mark.parametrize("figure, taken", [(2**64 - 1, True), (2**64, False), (0, True)])
def test_figures_up_to_2_64_minus_1(scanned, figure, taken):
    doc = _doc(42)
    doc["pps"][5]["tb"] = figure
    doc["pps"][6]["tb"] = 2**64 - 1  # sums past 2**64
    text = dhatc_layout(doc)
    assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned[0] == (len(doc["pps"]) if taken else 5)


@pytest.mark.parametrize("index", [2**32 - 1, 2**32, 0])
def test_frame_indices_up_to_2_32_minus_1(scanned, index):
    """Past the frame table: the same message from either path."""
    doc = _doc(43)
    doc["pps"][3]["fs"] = [1, index]
    text = dhatc_layout(doc)
    result = outcome(text)
    assert result == without_fast_path(text, pytest.MonkeyPatch())
    assert isinstance(result, str) and "pps[3]: fs[1]" in result
    assert scanned[0] == (len(doc["pps"]) if index == 2**32 - 1 else 3)


@pytest.mark.parametrize("second", [1, 30, 59])
@pytest.mark.parametrize("broken", [None, 0, 10, 40])
def test_repeats_are_said_as_the_json_path_says_them(scanned, second, broken):
    """A repeated location among the PPs scanned, or between them and those
    after a PP the scanner stops at: one message, the JSON path's."""
    doc = _doc(44)
    doc["pps"][second]["fs"] = list(doc["pps"][0 if second > 1 else 2]["fs"]) or [1]
    doc["pps"][0 if second > 1 else 2]["fs"] = doc["pps"][second]["fs"]
    text = dhatc_layout(doc)
    if broken is not None:  # one PP not in the layout (still JSON)
        lines = text.split("\n")
        first = next(i for i, line in enumerate(lines) if line.startswith('{"tb"'))
        lines[first + broken] = lines[first + broken].replace(":", ": ", 1)
        text = "\n".join(lines)
    result = outcome(text)
    assert result == without_fast_path(text, pytest.MonkeyPatch())
    assert isinstance(result, str) and "a repeated location" in result


def test_fuzz(monkeypatch, scanned):
    """2,000 mutated dhatc files: read or refused as the JSON parser alone does."""
    rng = random.Random(20261203)
    text = dhatc_layout(_doc(45, n_pps=40))
    for n in range(2000):
        changed = _mutate_text(rng, text)
        monkeypatch.setattr(reader, "_CHUNK_CHARS", rng.choice([1, 100, 400]))
        assert outcome(changed) == without_fast_path(changed, monkeypatch), n
    # Most mutations fall among the PPs: the scanner reads up to them.
    assert sum(1 for count in scanned if count == 40) > 100
    assert sum(1 for count in scanned if 0 < count < 40) > 1000


@pytest.mark.parametrize("change, message", [
    ('"tb":-', "pps[19]: field 'tb' is -"),  # still JSON, not a figure
    ('"tb":x', "not valid JSON: Expecting value at line "),
])
def test_a_broken_file_is_one_line_error(tmp_path: Path, change, message):
    """A PP the scanner stops at, after 19 it read: the message of the JSON path."""
    lines = dhatc_layout(_doc(46, n_pps=30)).split("\n")
    twentieth = [i for i, line in enumerate(lines) if line.startswith('{"tb"')][19]
    lines[twentieth] = lines[twentieth].replace('"tb":', change, 1)
    path = tmp_path / "broken.json"
    path.write_text("\n".join(lines))
    if "line" in message:
        message += f"{twentieth + 1}, column 7"
    for command in (("report", str(path)), ("diff", str(path), str(path))):
        proc = dhatc(*command)
        assert_one_line_error(proc, command[0], f"broken.json: {message}")


@pytest.mark.parametrize("command", [["report"], ["report", "--tree"],
                                     ["report", "--tree", "--json", "--sort", "tiny"],
                                     ["report", "--sort", "gmax_bytes"], ["diff"],
                                     ["diff", "--json", "--top", "0"]])
def test_commands_print_the_same_without_the_scanner(tmp_path: Path, command: List[str]):
    paths = []
    for name, seed in (("old.json", 53), ("new.json", 54)):
        path = tmp_path / name
        path.write_text(dhatc_layout(_doc(seed, n_pps=300)))
        paths.append(str(path))
    args = [command[0], *(paths if command[0] == "diff" else paths[:1]), *command[1:]]
    outputs = [subprocess.run(dhatc_command(*args, prelude=prelude), capture_output=True,
                              text=True, check=True).stdout for prelude in ("", NO_SCANNER)]
    assert outputs[0] == outputs[1] and outputs[0]


def test_in_dhatc_layout(tmp_path: Path, monkeypatch: Any):
    """The guess diff reads NEW in this process by."""
    ours = tmp_path / "ours.json"
    ours.write_text(dhatc_layout(_doc(55, n_pps=5)))
    spaced = tmp_path / "spaced.json"
    spaced.write_text(ours.read_text().replace(',"', ', "'))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert reader.in_dhatc_layout(str(ours))
    assert not any(map(reader.in_dhatc_layout, (str(spaced), str(RUST_HEAP), str(fifo),
                                                str(tmp_path), str(tmp_path / "none"))))
    monkeypatch.setattr(reader, "_ppscan", None)
    assert not reader.in_dhatc_layout(str(ours))


@pytest.mark.parametrize("spaced", ["old", "new", "both"])
def test_diff_of_files_in_other_layouts(tmp_path: Path, spaced: str):
    """A NEW not in dhatc's layout is read in a forked process, OLD either way
    (the C scanner or the Python paths): the same output as without the scanner."""
    paths = []
    for name, seed in (("old", 56), ("new", 57)):
        text = dhatc_layout(_doc(seed, n_pps=300))
        path = tmp_path / f"{name}.json"
        path.write_text(text.replace(',"', ', "') if spaced in (name, "both") else text)
        paths.append(str(path))
    args = ["diff", *paths, "--json", "--top", "0"]
    outputs = [subprocess.run(dhatc_command(*args, prelude=prelude), capture_output=True,
                              text=True, check=True).stdout for prelude in ("", NO_SCANNER)]
    assert outputs[0] == outputs[1] and outputs[0]


# --- scan itself -----------------------------------------------------------------------


def test_scan_stops_before_the_first_pp_not_in_the_layout():
    text = ('{"tb":1,"tbk":2,"fs":[3,4]},\n{"tb":5,"tbk":0,"fs":[]},\n'
            '{"tb":01,"tbk":2,"fs":[3]}')
    end, count, figures, indices, offsets, hashes, max_index, sums = _ppscan.scan(
        text, 0, ("tb", "tbk"), 7, True)
    assert text[:end].endswith('"fs":[]}') and count == 2
    assert array("Q", bytes(figures)).tolist() == [1, 2, 5, 0]
    assert array("I", bytes(indices)).tolist() == [3, 4]
    assert array("Q", bytes(offsets)).tolist() == [9, 9]  # ends, `base` added
    assert hashes == {hash("3,4"), hash("")} and max_index == 4 and sums == [6, 2]
    assert _ppscan.scan(text, 0, ("tb", "tbk"), 0, False)[5] is None
    assert _ppscan.scan(text, 1, ("tb", "tbk"), 0, False) is None
    assert _ppscan.scan(text, len(text), ("tb", "tbk"), 0, False) is None
    assert _ppscan.scan(text, 0, ("tbk", "tb"), 0, False) is None  # another order


def test_scan_refuses_a_repeat():
    text = '{"tb":1,"fs":[3,4]},\n{"tb":5,"fs":[3]},\n{"tb":1,"fs":[3,4]}'
    assert _ppscan.scan(text, 0, ("tb",), 0, False) is None
    assert _ppscan.scan(text[:text.rindex(",\n")], 0, ("tb",), 0, False)[1] == 2


def test_scan_arguments():
    with pytest.raises(ValueError):
        _ppscan.scan("x", 5, ("tb",), 0, False)
    with pytest.raises(ValueError):
        _ppscan.scan("x", 0, (), 0, False)
    with pytest.raises(TypeError):
        _ppscan.scan("x", 0, ("t\u00e9",), 0, False)


# --- keys, the tree's order, diff's matching ---------------------------------------------


def _indices(rng: random.Random, n: int, n_frames: int = 9) -> Tuple["array[int]", "array[int]"]:
    """Distinct runs of frame numbers (some prefixes of others), and their offsets."""
    runs = set()
    while len(runs) < n:
        runs.add(tuple(rng.randint(0, n_frames) for _ in range(rng.randint(0, 7))))
    ordered = list(runs)
    rng.shuffle(ordered)
    flat = array("I", itertools.chain.from_iterable(ordered))
    offsets = array("Q", itertools.accumulate(map(len, ordered), initial=0))
    return flat, offsets


def test_keys_sorted_keys_and_gather_as_python_makes_them():
    rng = random.Random(47)
    flat, offsets = _indices(rng, 3000)
    data = flat.tobytes()
    expected = [data[offsets[i] * 4:offsets[i + 1] * 4] for i in range(len(offsets) - 1)]
    assert _ppscan.keys(flat, offsets, 4) == expected
    order, keys = _ppscan.sorted_keys(flat, offsets, 4)
    assert order == sorted(range(len(expected)), key=expected.__getitem__)
    assert keys == [expected[i] for i in order]
    rows = bytes(rng.randrange(256) for _ in range(3000 * 24))
    assert _ppscan.gather(rows, order, 24) == b"".join(rows[i * 24:(i + 1) * 24] for i in order)
    assert _ppscan.keys(array("I"), array("Q", [0]), 4) == []
    with pytest.raises(ValueError):
        _ppscan.keys(flat, array("Q", [0, 5, 2]), 4)
    with pytest.raises(ValueError):
        _ppscan.keys(flat, array("Q", [0, len(flat) + 1]), 4)
    with pytest.raises(IndexError):
        _ppscan.gather(rows, [3000], 24)


def test_match_as_python_matches():
    rng = random.Random(48)
    old_flat, old_offsets = _indices(rng, 2000)
    old_keys = _ppscan.keys(old_flat, old_offsets, 4)
    # NEW: some of OLD's, in another order, and some of its own.
    new_flat, new_offsets = _indices(rng, 2000)
    new_keys = _ppscan.keys(new_flat, new_offsets, 4)
    index = dict(zip(old_keys, range(len(old_keys))))
    found = [index.get(key) for key in new_keys]
    assert 100 < sum(f is not None for f in found) < 1900
    as_lists = [array("q", bytes(part)).tolist()
                for part in _ppscan.match(old_flat, old_offsets, new_flat, new_offsets)]
    hits = set(found)
    assert as_lists == [[f for f in found if f is not None],
                        [i for i, f in enumerate(found) if f is not None],
                        [i for i, f in enumerate(found) if f is None],
                        [j for j in range(len(old_keys)) if j not in hits]]
    with pytest.raises(ValueError):
        _ppscan.match(old_flat, array("Q", [0, 3]), new_flat, new_offsets)


def _compared(old: Path, new: Path) -> Any:
    cmp = _report_diff.compare(str(old), str(new))
    tops = [(c.key, c.status, c.old, c.new, c.change, c.old_pp, c.new_pp)
            for figure in ("total_bytes", "gmax_blocks") for c in cmp.top(figure, 0)]
    return cmp.matched, cmp.added, cmp.vanished, cmp._pps, tops, cmp.counts("total_bytes")


@pytest.mark.parametrize("addresses", [False, True])
def test_diff_matches_as_without_the_scanner(monkeypatch, tmp_path, addresses):
    """The C matching and the Python one; with addresses (keys of several PPs),
    the Python one either way."""
    rng = random.Random(49)
    old, new = _doc(50, n_pps=300), _doc(51, n_pps=300)
    if addresses:
        for doc in (old, new):
            doc["ftbl"] = ["[root]"] + [f"0x{rng.randrange(16, 99):x}: {frame}"
                                        for frame in doc["ftbl"][1:]]
    paths = []
    for name, doc in (("old.json", old), ("new.json", new)):
        path = tmp_path / name
        path.write_text(dhatc_layout(doc))
        paths.append(path)
    with_c = _compared(*paths)
    monkeypatch.setattr(_report_diff, "_ppscan", None)
    monkeypatch.setattr(reader, "_ppscan", None)
    assert _compared(*paths) == with_c
    assert with_c[0] and with_c[1] and with_c[2]


def test_tree_is_built_as_without_the_scanner(monkeypatch):
    doc = _doc(52, n_pps=500)
    table = reader.loads_table(dhatc_layout(doc))
    tree = _report_tree.build(table)
    rows = tree._sorted_figures().tolist()
    monkeypatch.setattr(_report_tree, "_ppscan", None)
    python = _report_tree.build(table)
    assert (tree.order, tree.keys) == (python.order, python.keys)
    assert rows == python._sorted_figures().tolist()
