"""dhatc._ppscan, the C half of reading big profiles: program points of
any writer's layout (dhatc's, Valgrind's, the dhat crate's, any JSON white
space, any key order) parsed into flat arrays (and the keys that diff and
the tree are made of).  Whatever it reads is read as the JSON parser reads
it; whatever it does not read, the Python code reads and judges."""

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
from report_util import RUST_HEAP, needs_valgrind, random_document, valgrind_file
from test_dhat_reader import (_mutate_document, _mutate_text, dhatc_layout, outcome,
                              without_fast_path)

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


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def valgrind_layout(doc: Dict[str, Any]) -> str:
    """`doc` as Valgrind's dh_main.c writes a file: a few fields a line, the
    commas first, the program points and frames indented by one space, each
    PP's keys two at a time ("tb" and "tbk", "mb" and "mbk", ...), "acc" and
    "fs" on lines of their own."""
    header = [f"{_compact(k)}:{_compact(v)}" for k, v in doc.items() if k not in ("pps", "ftbl")]
    if not isinstance(doc.get("pps"), list) or not isinstance(doc.get("ftbl"), list):  # mutated
        return json.dumps(doc, indent=1)
    pps = []
    for pp in doc["pps"]:
        if not isinstance(pp, dict) or not pp:
            pps.append(_compact(pp))
            continue
        lines, pair = [], []
        for key, value in pp.items():
            pair.append(f"{_compact(key)}:{_compact(value)}")
            if len(pair) == 2 or key in ("tl", "acc", "fs") or key == list(pp)[-1]:
                lines.append(",".join(pair))
                pair = []
        pps.append("{" + "\n  ,".join(lines) + "\n  }")
    return ("{" + "\n,".join(header) + '\n,"pps":\n [' + "\n ,".join(pps) + '\n ]\n,"ftbl":\n ['
            + "\n ,".join(map(_compact, doc["ftbl"])) + "\n ]\n}\n")


def crate_layout(doc: Dict[str, Any]) -> str:
    """`doc` as the dhat crate writes a file (serde's pretty printer, no indent):
    a value a line."""
    return json.dumps(doc, indent=0, ensure_ascii=False)


def random_layout(doc: Dict[str, Any], rng: random.Random) -> str:
    """`doc` with random JSON white space between all tokens and each program
    point's keys in a random order."""
    def ws() -> str:
        return rng.choice(["", "", "", " ", "\n", "\t", "\r\n", " \n\t ", "\r"])

    def text(value: Any, shuffle: bool = False) -> str:
        if isinstance(value, dict):
            items = list(value.items())
            if shuffle:
                rng.shuffle(items)
            return "{" + ",".join(f"{ws()}{_compact(k)}{ws()}:{ws()}{text(v)}{ws()}"
                                  for k, v in items) + "}" if items else "{" + ws() + "}"
        if isinstance(value, list):
            return "[" + (",".join(ws() + text(v) + ws() for v in value) or ws()) + "]"
        return _compact(value)

    fields = [f"{ws()}{_compact(k)}{ws()}:{ws()}"
              + ("[" + ",".join(ws() + text(pp, True) + ws() for pp in v) + ws() + "]"
                 if k == "pps" and isinstance(v, list) else text(v)) + ws()
              for k, v in doc.items()]
    return ws() + "{" + ",".join(fields) + "}" + ws()


def _accesses_doc(seed: int, n_pps: int = 60, **kwargs: Any) -> Dict[str, Any]:
    """A file of Valgrind's kind: reads, writes and access counts, some of them
    run-length encoded as Valgrind writes them ([-100, 10]: 100 times 10)."""
    rng = random.Random(seed)
    doc = random_document(rng, n_pps=n_pps, bkacc=True, ties=False, **kwargs)
    for pp in doc["pps"]:
        if "acc" in pp and rng.random() < 0.5:
            pp["acc"] = [-rng.randint(1, 300), rng.choice([0, 1, 7, 65535]),
                         *pp["acc"], -2, 0, 3]
    return doc


LAYOUTS: Dict[str, Any] = {
    "dhatc": dhatc_layout,
    "valgrind": valgrind_layout,
    "crate": crate_layout,
    "spaced": lambda doc: json.dumps(doc, ensure_ascii=False),
    "indented": lambda doc: json.dumps(doc, indent=2, ensure_ascii=False),
    "random": lambda doc: random_layout(doc, random.Random(len(doc["pps"]))),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["heap", "ad hoc", "accesses"])
def test_any_layout_reads_as_json_does(scanned, layout, kind):
    """Every PP read by the scanner, in each writer's layout, to what the JSON
    parser gives; Valgrind's reads, writes and access counts too."""
    doc = (_accesses_doc(60, n_pps=400) if kind == "accesses"
           else _doc(60, n_pps=400, bklt=kind == "heap"))
    text = LAYOUTS[layout](doc)
    assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned[0] == len(doc["pps"])


@pytest.mark.parametrize("seed", range(8))
def test_random_white_space_and_key_orders(scanned, seed):
    rng = random.Random(seed)
    doc = _accesses_doc(70 + seed) if seed % 2 else _doc(70 + seed, bklt=seed % 4 == 0)
    text = random_layout(doc, rng)
    assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned[0] == len(doc["pps"])


def test_other_writers_files_are_scanned(scanned):
    """The crate's file (one value a line), Valgrind's layout, the crate's file
    on one line: each read by the scanner alone."""
    crate = RUST_HEAP.read_text("utf-8")
    doc = json.loads(crate)
    for text in (crate, valgrind_layout(doc), json.dumps(doc)):
        assert outcome(text) == without_fast_path(text, pytest.MonkeyPatch())
    assert scanned == [len(doc["pps"])] * 3


@needs_valgrind
def test_valgrind_files_are_scanned(tmp_path: Path, scanned):
    """Files that Valgrind wrote (reads, writes, access counts), as they are and
    in other layouts: read by the scanner, as the JSON parser reads them; the
    commands print the same with the scanner and without it."""
    path = valgrind_file(tmp_path, "dhat.out")
    text = path.read_text("utf-8")
    doc = json.loads(text)
    assert any("acc" in pp for pp in doc["pps"]) and doc["bkacc"]
    for variant in (text, crate_layout(doc), random_layout(doc, random.Random(1))):
        assert outcome(variant) == without_fast_path(variant, pytest.MonkeyPatch())
    assert scanned == [len(doc["pps"])] * 3
    other = valgrind_file(tmp_path, "dhat2.out", "25")
    for args in (["report", str(path)], ["report", str(path), "--tree", "--json"],
                 ["diff", str(path), str(other)], ["diff", str(other), str(path), "--json"]):
        outputs = [subprocess.run(dhatc_command(*args, prelude=prelude), capture_output=True,
                                  text=True, check=True).stdout
                   for prelude in ("", NO_SCANNER)]
        assert outputs[0] == outputs[1] and outputs[0]


#: Changes to a program point (its text in Valgrind's layout) that the JSON path
#: reads, or refuses, as the scanner cannot: it stops before that PP.
_ODD = [
    ('"tb":', '"tb":1,"tb":'),  # a key twice: the last one counts
    ('"tbk":', '"tbk":3, "tbk":'),
    ('"fs":', '"fs":[1],"fs":'),
    ('"tb":', '"x":1,"tb":'),  # a key the reader ignores
    ('"tb":', '"TB":1,"tb":'),
    ('"tb":', '"tbkk":1,"tb":'),
    ('"tb":', '"tl":"ignored, any value","tb":'),  # ad hoc: tl is not read
    ('"tb":', '"t\\u0062":'),  # an escape in a key
    ('"tb":', '"tb":-'),  # figures: not unsigned integers, or not plain ones
    ('"tb":', '"tb":0'),
    ('"tb":', '"tb":1.5e3,"x":'),
    ('"tbk":', '"tbk":1e2,"x":'),
    ('"tbk":', '"tbk":2.0,"x":'),
    ('"tbk":', '"tbk":true,"x":'),
    ('"tbk":', '"tbk":null,"x":'),
    ('"tbk":', '"tbk":"1","x":'),
    ('"tbk":', '"tbk":[1],"x":'),
    ('"tbk":', '"tbk":18446744073709551616,"x":'),
    ('"tbk":', '"tbk":99999999999999999999999999,"x":'),
    ('"tbk":', '"tbk":18446744073709551615,"x":'),
    ('"fs":[', '"fs":[0,'),  # frame indices
    ('"fs":[', '"fs":[-1,'),
    ('"fs":[', '"fs":[1.0,'),
    ('"fs":[', '"fs":[4294967296,'),
    ('"fs":[', '"fs":[01,'),
    ('"fs":[', '"fs":[true,'),
    ('"fs":[', '"fs":{},"y":['),
    ('"fs":[', '"fs":[[1],'),
    ('"tb":', '"acc":[-0,1],"tb":'),  # access counts
    ('"tb":', '"acc":[-1,-1,3],"tb":'),
    ('"tb":', '"acc":[-2],"tb":'),
    ('"tb":', '"acc":[65536],"tb":'),
    ('"tb":', '"acc":[-65537,1],"tb":'),
    ('"tb":', '"acc":[-65535,1,2,3],"tb":'),
    ('"tb":', '"acc":[1.0],"tb":'),
    ('"tb":', '"acc":[01],"tb":'),
    ('"tb":', '"acc":5,"tb":'),
    ('"tb":', '"acc":[1],"acc":[2],"tb":'),
    ('"tb":', '"acc":[1,],"tb":'),  # not JSON
    ('"tb":', '"tb" "x":1,"tb":'),
    ('"tb":', '"tb":1,,"x":'),
    ('"tb":', '"tb":1 2,"x":'),
    ('"tb":', '\u00a0"tb":'),  # white space JSON does not take
    ('"tb":', '\f"tb":'),
    ('"tb":', '"tb":\u0661,"x":'),  # a digit that is not ASCII
]


@pytest.mark.parametrize("kind", ["heap", "ad hoc"])
@pytest.mark.parametrize("old, new", _ODD)
def test_what_the_scanner_cannot_read_exactly_is_left_to_the_json_path(scanned, kind, old, new):
    """PP 7 changed so that the JSON path reads it otherwise, or refuses it: the
    scanner reads the seven before it, the JSON path the rest, and the outcome
    (the same PPs, or the same message) is the JSON path's alone."""
    doc = _doc(61, bklt=kind == "heap")
    text = valgrind_layout(doc)
    at = [i for i in range(len(text)) if text.startswith("{", i)][8]  # after the top level
    assert text.startswith('{"tb":', at)
    changed = text[:at] + text[at:].replace(old, new, 1)
    assert changed != text
    assert outcome(changed) == without_fast_path(changed, pytest.MonkeyPatch())
    assert scanned[0] == 7


@pytest.mark.parametrize("first, second, message", [
    (lambda pp: pp.__setitem__("acc", [-2]), lambda pp: pp.__setitem__("tb", -1),
     "pps[5]: field 'acc' ends with a repeat count and no count to repeat"),
    (lambda pp: pp.__setitem__("acc", {}), lambda pp: pp.__setitem__("acc", [-2]),
     "pps[5]: field 'acc' is an object, expected an array of integers"),
    (lambda pp: pp.__setitem__("fs", [1, 2, 3]), lambda pp: pp.__setitem__("tb", -1),
     "pps[5] has the same frames as pps[4] (a repeated location, which DHAT's viewer "
     "refuses too)"),
    (lambda pp: pp.__setitem__("tb", 1.5), lambda pp: pp.__setitem__("fs", [1, 2, 3]),
     "pps[5]: field 'tb' is 1.5, expected an integer from 0 to 2**64-1"),
    (lambda pp: pp.__setitem__("tb", 1.5), lambda pp: pp.__setitem__("fs", "}{"),
     "pps[5]: field 'tb' is 1.5, expected an integer from 0 to 2**64-1"),
])
def test_the_first_problem_is_told_wherever_the_reading_is_cut(monkeypatch, first, second,
                                                               message):
    """Two problems, in PPs 5 and 38 (a repeat: of PP 4's frames): the message is
    about the first, with any chunk size and with the scanner or without it,
    which stops before PP 5."""
    doc = _accesses_doc(64, n_pps=40)
    doc["pps"][4]["fs"] = [1, 2, 3]
    first(doc["pps"][5])
    second(doc["pps"][38])
    for text in (valgrind_layout(doc), json.dumps(doc).replace('"}{"', "}{")):
        for size in (1, 100, 400, 1 << 20):
            monkeypatch.setattr(reader, "_CHUNK_CHARS", size)
            assert outcome(text) == without_fast_path(text, monkeypatch) == f"x.json: {message}"


@pytest.mark.parametrize("acc, counts", [
    ([], []), ([-1, 5], [5]), ([3, -2, 0, 65535], [3, 0, 0, 65535]),
    ([-65536, 1], [1] * 65536), ([-65535, 1, 2], [1] * 65535 + [2]),
    ([-3, 0, -2, 7, 1], [0, 0, 0, 7, 7, 1]),
])
def test_access_counts_decoded_as_the_json_path_decodes_them(scanned, acc, counts):
    doc = _accesses_doc(62, n_pps=10)
    for pp in doc["pps"]:
        pp.pop("acc", None)
    doc["pps"][4]["acc"] = acc
    text = valgrind_layout(doc)
    result = outcome(text)
    assert result == without_fast_path(text, pytest.MonkeyPatch())
    assert result[1] == {4: counts} and scanned == [10]


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
    if broken is not None:  # one PP the scanner does not read (still JSON)
        lines = text.split("\n")
        first = next(i for i, line in enumerate(lines) if line.startswith('{"tb"'))
        lines[first + broken] = lines[first + broken].replace("{", '{"note":0,', 1)
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


@pytest.mark.parametrize("layout", ["valgrind", "crate", "random"])
def test_fuzz_other_layouts(monkeypatch, scanned, layout):
    """1,500 mutated files in another writer's layout (Valgrind's with access
    counts, the crate's, random white space and key orders), and 500 whose
    JSON was changed (keys dropped, values of every type, repeated
    locations, deep nesting) before being laid out so: read or refused as
    the JSON parser alone does."""
    rng = random.Random(20261204)
    doc = _accesses_doc(63, n_pps=40)
    for pp in doc["pps"][::3]:
        pp.pop("acc", None)
    render = LAYOUTS[layout] if layout != "random" else lambda d: random_layout(d, rng)
    text = render(doc)
    for n in range(2000):
        if n < 1500:
            changed = _mutate_text(rng, text)
        else:
            mutated = json.loads(_mutate_document(rng, json.dumps(doc)))
            changed = render(mutated) if isinstance(mutated, dict) else json.dumps(mutated)
        monkeypatch.setattr(reader, "_CHUNK_CHARS", rng.choice([1, 100, 400]))
        assert outcome(changed) == without_fast_path(changed, monkeypatch), n
    assert sum(1 for count in scanned if count == 40) > 100
    assert sum(1 for count in scanned if 0 < count < 40) > 700


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


def _odd_first_pp(text: str) -> str:
    """`text` with a key the scanner does not know in its first program point."""
    at = text.index('{"tb":', text.index('"pps"'))
    return text[:at + 1] + '"note":"x",' + text[at + 1:]


def test_scanner_reads(tmp_path: Path, monkeypatch: Any):
    """The guess diff reads NEW in this process by: any writer's layout, as
    long as the scanner reads its first program point."""
    ours = tmp_path / "ours.json"
    ours.write_text(dhatc_layout(_doc(55, n_pps=5)))
    spaced = tmp_path / "spaced.json"
    spaced.write_text(ours.read_text().replace(',"', ', "'))
    valgrind = tmp_path / "valgrind.json"
    valgrind.write_text(valgrind_layout(_accesses_doc(55, n_pps=5)))
    odd = tmp_path / "odd.json"
    odd.write_text(_odd_first_pp(ours.read_text()))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert all(map(reader.scanner_reads, (str(ours), str(spaced), str(valgrind), str(RUST_HEAP))))
    assert not any(map(reader.scanner_reads, (str(odd), str(fifo), str(tmp_path),
                                              str(tmp_path / "none"))))
    monkeypatch.setattr(reader, "_ppscan", None)
    assert not reader.scanner_reads(str(ours))


@pytest.mark.parametrize("old_kind", ["valgrind", "odd"])
@pytest.mark.parametrize("new_kind", ["valgrind", "odd"])
def test_diff_of_files_in_other_layouts(tmp_path: Path, old_kind: str, new_kind: str):
    """A NEW that the scanner reads (Valgrind's layout) is read in this process,
    one whose first PP it does not read in a forked one, OLD either way (the C
    scanner or the Python paths): the same output as without the scanner."""
    paths = []
    for name, seed, kind in (("old", 56, old_kind), ("new", 57, new_kind)):
        text = valgrind_layout(_doc(seed, n_pps=300))
        path = tmp_path / f"{name}.json"
        path.write_text(_odd_first_pp(text) if kind == "odd" else text)
        paths.append(str(path))
    assert reader.scanner_reads(paths[1]) == (new_kind == "valgrind")
    args = ["diff", *paths, "--json", "--top", "0"]
    outputs = [subprocess.run(dhatc_command(*args, prelude=prelude), capture_output=True,
                              text=True, check=True).stdout for prelude in ("", NO_SCANNER)]
    assert outputs[0] == outputs[1] and outputs[0]


# --- scan itself -----------------------------------------------------------------------


def test_scan_stops_before_the_first_pp_it_cannot_read():
    text = ('{"tb":1,"tbk":2,"fs":[3,4]},\n{ "fs" : [ ] ,\r\n\t"tbk":0, "tb":5 }  ,\n'
            '{"tb":01,"tbk":2,"fs":[3]}')
    end, count, figures, indices, offsets, hashes, max_index, sums, accesses = _ppscan.scan(
        text, 0, ("tb", "tbk"), 7, True)
    assert text[:end].endswith('"tb":5 }') and count == 2
    assert array("Q", bytes(figures)).tolist() == [1, 2, 5, 0]  # in the order of the keys
    assert array("I", bytes(indices)).tolist() == [3, 4]
    assert array("Q", bytes(offsets)).tolist() == [9, 9]  # ends, `base` added
    assert hashes == {hash("3,4"), hash("")} and max_index == 4 and sums == [6, 2]
    assert accesses == {}
    assert _ppscan.scan(text, 0, ("tb", "tbk"), 0, False)[5] is None
    assert _ppscan.scan(text, 1, ("tb", "tbk"), 0, False) is None
    assert _ppscan.scan(text, len(text), ("tb", "tbk"), 0, False) is None
    assert _ppscan.scan(text, 0, ("tbk", "tb"), 0, False)[1] == 2  # figures in that order
    assert _ppscan.scan(text, 0, ("tb",), 0, False) is None  # "tbk": a key it does not know
    assert _ppscan.scan(text, 0, ("tb", "tbk", "tl"), 0, False) is None  # "tl" missing


def test_scan_skips_the_keys_it_is_told_to_and_decodes_access_counts():
    text = ('{"tb":1,"tbk":2,"rb":7,"acc":[-3,1,5],"fs":[3, 4]},\n'
            '{"wb":0,"tb":5,"tbk":0,"fs":[]},{"tb":5,"tbk":0,"rb":1.5,"fs":[6]}')
    result = _ppscan.scan(text, 0, ("tb", "tbk"), 0, True, ("rb", "wb"), (8, 65535))
    assert result[1] == 2 and result[5] == {hash("3,4"), hash("")}
    assert result[8] == {0: [1, 1, 1, 5]}
    assert _ppscan.scan(text, 0, ("tb", "tbk"), 0, False, ("rb", "wb")) is None  # acc not read
    assert _ppscan.scan(text, 0, ("tb", "tbk"), 0, False, ("rb", "wb"), (3, 65535)) is None
    assert _ppscan.scan(text, 0, ("tb", "tbk"), 0, False, ("rb", "wb"), (4, 4)) is None


def test_scan_refuses_a_repeat():
    text = '{"tb":1,"fs":[3,4]},\n{"tb":5,"fs":[3]},\n{"tb":1,"fs":[3 ,4]}'
    assert _ppscan.scan(text, 0, ("tb",), 0, False) is None
    assert _ppscan.scan(text[:text.rindex(",\n")], 0, ("tb",), 0, False)[1] == 2


def test_scan_arguments():
    with pytest.raises(ValueError):
        _ppscan.scan("x", 5, ("tb",), 0, False)
    with pytest.raises(ValueError):
        _ppscan.scan("x", 0, (), 0, False)
    with pytest.raises(TypeError):
        _ppscan.scan("x", 0, ("t\u00e9",), 0, False)
    with pytest.raises(TypeError):
        _ppscan.scan("x", 0, ("tb",), 0, False, (1,))
    for keys, ignored in [(("tb", "tb"), ()), (("tb",), ("tb",)), (("fs",), ()),
                          (("tb",), ("acc",)), (("TB",), ()), (("t_b",), ()),
                          (("abcdefghi",), ()), (("",), ()),
                          (tuple(f"k{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
                           ("qa", "qb", "qc", "qd", "qe"))]:
        with pytest.raises(ValueError):
            _ppscan.scan("x", 0, keys, 0, False, ignored, (1, 1))
    for acc in [(-1, 1), (1, -1), (2**25, 1), (1, 2**32)]:
        with pytest.raises(ValueError):
            _ppscan.scan("x", 0, ("tb",), 0, False, (), acc)
    with pytest.raises(TypeError):
        _ppscan.scan("x", 0, ("tb",), 0, False, (), (1,))


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
