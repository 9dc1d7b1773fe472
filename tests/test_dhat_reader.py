"""dhatc._dhat_reader: any DHAT file in, DhatFile (or DhatTable) out, or one
DhatFileError line saying what is wrong, never another exception."""

from __future__ import annotations

import copy
import json
import os
import pickle
import random
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from dhatc import _dhat_reader as reader
from dhatc._dhat_reader import DhatFile, DhatFileError, ReadProgramPoint, load, load_table, loads
from dhatc._errors import CommandError
from report_util import (RUST_HEAP, dhatc_file, document, heap_pp, needs_valgrind,
                         random_document, valgrind_file, write)

FIELDS = ("tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk", "rb", "wb")


def expected_pps(data: Dict[str, Any]) -> List[ReadProgramPoint]:
    """The program points as a plain reading of the JSON gives them (the oracle)."""
    result = []
    for p in data["pps"]:
        values = [p.get(key) for key in FIELDS]
        if not data["bklt"]:
            values[2:9] = [None] * 7
        if not data["bkacc"]:
            values[9:] = [None, None]
        result.append(ReadProgramPoint(tuple(data["ftbl"][i] for i in p["fs"]), *values))
    return result


def check_against_json(f: DhatFile, data: Dict[str, Any]) -> None:
    assert f.pps == tuple(expected_pps(data))
    assert (f.mode, f.verb, f.cmd, f.pid, f.time_of_end) == (
        data["mode"], data["verb"], data["cmd"], data["pid"], data["te"])
    assert f.total_bytes == sum(p["tb"] for p in data["pps"])
    assert f.total_blocks == sum(p["tbk"] for p in data["pps"])
    if data["bklt"]:
        assert f.gmax_bytes == sum(p["gb"] for p in data["pps"])
        assert f.end_blocks == sum(p["ebk"] for p in data["pps"])
        assert (f.time_of_peak, f.short_lived_threshold) == (data["tg"], data["tuth"])
    else:
        assert f.gmax_bytes is None and f.time_of_peak is None and f.short_lived_threshold is None


# --- real files of every writer ---------------------------------------------------------


def test_dhatc_heap_file(run_python, tmp_path):
    path = dhatc_file(run_python, tmp_path, "heap.json", """
        keep = [bytes(1000) for _ in range(3)]
        for _ in range(5):
            bytearray(64)
    """)
    data = json.loads(path.read_text())
    f = load(path)
    check_against_json(f, data)
    assert (f.mode, f.verb, f.time_unit, f.time_unit_million) == ("heap", "Allocated", "allocs",
                                                                   "Mallocs")
    assert (f.block_lifetimes, f.block_accesses, f.short_lived_threshold) == (True, False, 10)
    assert (f.byte_unit, f.bytes_unit, f.blocks_unit) == ("byte", "bytes", "blocks")
    assert all("[root]" not in pp.frames for pp in f.pps)
    assert any(pp.frames[0] == "PyObject_Malloc" for pp in f.pps)
    assert f.reads is None and all(pp.reads is None and pp.writes is None for pp in f.pps)


def test_dhatc_ad_hoc_file(run_python, tmp_path):
    path = dhatc_file(run_python, tmp_path, "ad.json", """
        for n in (3, 4, 5):
            dhatc.ad_hoc_event(n)
    """, mode="ad-hoc")
    f = load(path)
    check_against_json(f, json.loads(path.read_text()))
    assert (f.mode, f.verb, f.bytes_unit, f.blocks_unit, f.byte_unit) == (
        "ad-hoc", "Occurred", "units", "events", "unit")
    assert (f.total_bytes, f.total_blocks) == (12, 3)
    assert f.total_lifetime is None and all(pp.max_bytes is None for pp in f.pps)


@needs_valgrind
def test_valgrind_file(tmp_path):
    path = valgrind_file(tmp_path, "vg.json")
    data = json.loads(path.read_text())
    f = load(path)
    check_against_json(f, data)
    assert (f.mode, f.time_unit, f.time_unit_million, f.short_lived_threshold) == (
        "heap", "instrs", "Minstr", 500)
    assert f.block_accesses and f.block_lifetimes
    by_caller = {reader.frame_without_address(pp.frames[-1]): pp for pp in f.pps}
    loop = by_caller["main (prog.c:8)"]
    # Valgrind up to 3.2x shows its malloc on top, later ones start at the caller.
    assert reader.frame_without_address(loop.frames[-2]) == "make (prog.c:5)"
    assert (loop.total_bytes, loop.total_blocks, loop.end_bytes) == (1000, 10, 0)
    assert (loop.reads, loop.writes) == (0, 1000)  # memset writes each byte once
    kept = [pp for pp in f.pps if pp.total_bytes == 4000][0]
    assert (kept.end_bytes, kept.end_blocks, kept.reads, kept.writes) == (4000, 1, 1, 4000)
    assert (f.reads, f.writes) == (1, 5001)
    table = load_table(path)
    # acc [-100, 10]: each byte of the 100-byte blocks was written 10 times.
    assert table.accesses[[pp.total_bytes for pp in f.pps].index(1000)] == [10] * 100


def test_rust_crate_file():
    f = load(RUST_HEAP)
    check_against_json(f, json.loads(RUST_HEAP.read_text(encoding="utf-8")))
    assert (f.mode, f.verb, f.time_unit, f.time_unit_million, f.short_lived_threshold) == (
        "rust-heap", "Allocated", "µs", "s", 10)
    assert (f.total_bytes, f.total_blocks, f.gmax_bytes, f.end_bytes) == (3472, 13, 2192, 1040)
    assert f.pps[3].frames == (
        "0x55d4a3b2c1d0: <alloc::alloc::Global as core::alloc::Allocator>::allocate "
        "(alloc/src/alloc.rs:241:9)",
        "0x55d4a3a93340: alloc::boxed::Box<T>::new (src/boxed.rs:218:9)",
        "0x55d4a3a935b5: dhatter::main::{{closure}} (src/main.rs:36:23)",
        "0x55d4a3a92f10: dhatter::main (src/main.rs:31:17)")


# --- the API ----------------------------------------------------------------------------


def small_doc() -> Dict[str, Any]:
    return document([heap_pp([1, 2], 100, 2, tl=6, gb=50, gbk=1, eb=50, ebk=1),
                     heap_pp([2], 40, 4, tl=3, mb=20, mbk=2)], ["f (a.py:1)", "g (a.py:2)"])


def test_loads_takes_text_bytes_and_names():
    text = json.dumps(small_doc())
    for source in (text, text.encode()):
        f = loads(source, "mine.json")
        assert f.path == "mine.json"
        assert [pp.frames for pp in f.pps] == [("f (a.py:1)", "g (a.py:2)"), ("g (a.py:2)",)]
    assert loads(text).path == "<string>"


def test_load_takes_a_path_like(tmp_path):
    write(tmp_path / "a.json", small_doc())
    assert load(tmp_path / "a.json").path == str(tmp_path / "a.json")


def test_file_and_program_points_are_values():
    f = loads(json.dumps(small_doc()))
    pp = f.pps[0]
    with pytest.raises(AttributeError):
        pp.total_bytes = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(pp)) == pp
    assert copy.deepcopy(pp) == pp and hash(copy.copy(pp)) == hash(pp)
    assert pickle.loads(pickle.dumps(f)).pps == f.pps


def test_totals_and_records():
    f = loads(json.dumps(small_doc()))
    assert [f.total(name) for name in reader.FIGURES] == [140, 6, 9, 120, 4, 50, 1, 50, 1, None,
                                                          None]
    assert f.records("gmax_bytes") and not f.records("reads")
    with pytest.raises(ValueError, match="unknown figure 'bytes'"):
        f.total("bytes")


def test_table_gives_what_the_file_gives():
    text = json.dumps(small_doc())
    table = reader.loads_table(text)
    f = loads(text)
    assert len(table) == 2
    assert [table.program_point(i) for i in range(2)] == list(f.pps)
    assert list(table.column("gmax_bytes") or []) == [50, 0]
    assert table.column("reads") is None
    assert table.total("total_blocks") == 6 and table.total("writes") is None


def test_error_is_a_command_error():
    assert issubclass(DhatFileError, CommandError)


def test_frame_without_address():
    strip = reader.frame_without_address
    assert strip("0x4AA1D9F: func (file.c:332)") == "func (file.c:332)"
    assert strip("0x55d4a3b2c1d0: a::b (src/main.rs:1:2)") == "a::b (src/main.rs:1:2)"
    assert strip("0x4AA1D9F: ???") == "???"
    assert strip("f (x.py:0x1: 2)") == "f (x.py:0x1: 2)"
    assert strip("PyObject_Malloc") == "PyObject_Malloc"


# --- what the viewer would make of odd but valid files ----------------------------------


def test_header_after_the_program_points(tmp_path):
    """pps before bklt (key order is free in JSON): read whole, checked after."""
    doc = small_doc()
    reordered = {"pps": doc["pps"], "ftbl": doc["ftbl"], **doc}
    assert loads(json.dumps(reordered)).pps == loads(json.dumps(doc)).pps


def test_nested_values_inside_program_points():
    """Extra fields with objects and braces in strings: the chunked fast path
    cannot cut there, the element-wise path reads them."""
    doc = small_doc()
    doc["pps"][0]["note"] = {"text": "a }, { b", "list": [{"x": "}"}]}
    doc["pps"][1]["tag"] = "},"
    f = loads(json.dumps(doc))
    assert [pp.total_bytes for pp in f.pps] == [100, 40]


def test_chunked_parsing_matches_a_plain_reading(monkeypatch):
    """The pps array cut into pieces of a few characters reads the same."""
    rng = random.Random(7)
    for bkacc in (False, True):
        doc = random_document(rng, n_pps=300, bkacc=bkacc)
        text = json.dumps(doc, indent=rng.choice([None, 0, 1]))
        expected = tuple(expected_pps(doc))
        for size in (1, 37, 500, 1 << 20):
            monkeypatch.setattr(reader, "_CHUNK_CHARS", size)
            assert loads(text).pps == expected


def test_invalid_utf8_reads_as_the_viewer_reads_it():
    text = json.dumps(small_doc()).replace("f (a.py:1)", "f (caf\udce9.c:1)")
    data = text.encode("utf-8", "surrogateescape")
    assert loads(data).pps[0].frames[0] == "f (caf\ufffd.c:1)"


def test_byte_order_mark():
    assert len(loads(b"\xef\xbb\xbf" + json.dumps(small_doc()).encode()).pps) == 2


def test_empty_program_points_and_empty_frames():
    doc = document([heap_pp([], 10, 1)], [])
    f = loads(json.dumps(doc))
    assert f.pps[0].frames == () and f.total_bytes == 10
    assert loads(json.dumps(document([], []))).pps == ()


def test_unknown_fields_are_ignored():
    doc = small_doc()
    doc["extra"] = {"a": [1, 2]}
    assert len(loads(json.dumps(doc)).pps) == 2


def test_fifo_with_a_writer(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    text = json.dumps(small_doc())

    def feed() -> None:
        with open(path, "w") as out:
            out.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert len(load(path).pps) == 2
    finally:
        writer.join()


# --- bad input: one line each -----------------------------------------------------------


def fails(source: Any, message: str, name: str = "bad.json") -> None:
    text = source if isinstance(source, (str, bytes)) else json.dumps(source)
    with pytest.raises(DhatFileError) as info:
        loads(text, name)
    assert str(info.value) == f"{name}: {message}"


def mutated(change: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
    doc = small_doc()
    change(doc)
    return doc


def test_not_json():
    fails("", "empty file (only white space)")
    fails(" \n\t", "empty file (only white space)")
    fails("hello", "not JSON (it starts with 'hello'), so not a DHAT file")
    fails(b"\x1f\x8b\x08\x00", "gzip-compressed; decompress it first (gunzip, or zcat it to '-')")
    fails("[1, 2]", "not a DHAT file: the JSON is an array, not an object")
    fails('"x"', "not a DHAT file: the JSON is the string 'x', not an object")
    fails('{"a": 1,}', "not valid JSON: Expecting property name enclosed in double quotes at "
                       "line 1, column 9")
    fails('{"a" 1}', "not valid JSON: Expecting ':' delimiter at line 1, column 6")
    fails('{"a": 1 "b": 2}', "not valid JSON: Expecting ',' delimiter at line 1, column 9")
    fails('{"a": 1}\n{}', "not valid JSON: Extra data at line 2, column 1")
    fails(json.dumps(small_doc()).replace('"tb": 100', '"tb": NaN'),
          "not a DHAT file: NaN is not JSON")
    fails('{"dhatFileVersion": Infinity}', "not a DHAT file: Infinity is not JSON")


def test_truncated_files():
    text = json.dumps(small_doc(), indent=1)
    lines = text.count("\n")
    for end in (1, 10, len(text) // 2, len(text) - 2, len(text) - 1):
        piece = text[:end]
        line = piece.count("\n") + 1
        with pytest.raises(DhatFileError) as info:
            loads(piece, "cut.json")
        message = str(info.value)
        assert message.startswith("cut.json: the JSON stops in the middle, at line "), message
        assert message.endswith(" (truncated, or still being written?)")
        assert int(message.split("at line ")[1].split()[0]) in (line, line - 1, lines + 1)


def test_nested_too_deeply():
    fails("[" * 100000, "the JSON is nested too deeply to be a DHAT file")
    doc = json.dumps(small_doc())
    deep = doc.replace('"tb": 100', '"tb": 100, "x": ' + "[" * 100000 + "]" * 100000)
    fails(deep, "the JSON is nested too deeply to be a DHAT file")


def test_numbers_with_too_many_digits():
    doc = json.dumps(small_doc()).replace('"tb": 100', '"tb": 1' + "0" * 5000)
    with pytest.raises(DhatFileError) as info:
        loads(doc, "bad.json")
    assert str(info.value).startswith("bad.json: ")
    assert "digits" in str(info.value)


def test_without_the_int_digit_limit_long_numbers_are_refused_first(monkeypatch):
    """With PYTHONINTMAXSTRDIGITS=0 the hook refuses numbers no figure can be."""
    if not hasattr(reader.sys, "get_int_max_str_digits"):
        pytest.skip("no integer digit limit in this CPython")
    monkeypatch.setattr(reader.sys, "get_int_max_str_digits", lambda: 0)
    doc = json.dumps(small_doc()).replace('"tb": 100', '"tb": 1' + "0" * 100000)
    fails(doc, "not a DHAT file: a number with more digits than any figure has")
    assert len(loads(json.dumps(small_doc())).pps) == 2


def test_wrong_version():
    fails({"dhatFileVersion": 3}, "DHAT file version 3; dhatc reads version 2, the one Valgrind, "
                                  "the dhat crate and dhatc write")
    fails({"dhatFileVersion": "2"}, "DHAT file version the string '2'; dhatc reads version 2, "
                                    "the one Valgrind, the dhat crate and dhatc write")
    fails({"dhatFileVersion": True}, "DHAT file version true; dhatc reads version 2, the one "
                                     "Valgrind, the dhat crate and dhatc write")
    fails({"mode": "heap"}, "not a DHAT file (no 'dhatFileVersion' field)")


@pytest.mark.parametrize("key", ["mode", "verb", "bklt", "bkacc", "tu", "Mtu", "tuth", "cmd",
                                 "pid", "tg", "te", "pps", "ftbl"])
def test_missing_fields(key):
    why = " (required when 'bklt' is true)" if key in ("tg", "tuth") else ""
    fails(mutated(lambda d: d.pop(key)), f"missing field '{key}'{why}")


def test_tg_and_tuth_need_only_lifetimes():
    doc = document([{"tb": 1, "tbk": 1, "fs": [1]}], ["f"], bklt=False)
    assert "tg" not in doc and "tuth" not in doc
    assert loads(json.dumps(doc)).time_of_peak is None


@pytest.mark.parametrize("key, value, described, expected", [
    ("mode", 5, "5", "a string"),
    ("verb", None, "null", "a string"),
    ("bklt", "yes", "the string 'yes'", "a boolean"),
    ("bkacc", 0, "0", "a boolean"),
    ("tu", ["x"], "an array", "a string"),
    ("cmd", {}, "an object", "a string"),
    ("pid", -1, "-1", "an integer from 0 to 2**64-1"),
    ("pid", True, "true", "an integer from 0 to 2**64-1"),
    ("te", 1.5, "1.5", "an integer from 0 to 2**64-1"),
    ("tg", 2**64, "18446744073709551616", "an integer from 0 to 2**64-1"),
    ("tuth", "10", "the string '10'", "an integer from 0 to 2**64-1"),
    ("pps", {}, "an object", "an array"),
    ("ftbl", "x", "the string 'x'", "an array"),
    ("bu", 1, "1", "a string"),
])
def test_wrongly_typed_fields(key, value, described, expected):
    fails(mutated(lambda d: d.__setitem__(key, value)),
          f"field '{key}' is {described}, expected {expected}")


def test_frame_table():
    fails(mutated(lambda d: d.__setitem__("ftbl", [])),
          "'ftbl' is empty; its entry 0 must be \"[root]\"")
    fails(mutated(lambda d: d["ftbl"].append(7)), "ftbl[3] is 7, expected a string")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["pps"].__setitem__(1, [1]), "pps[1] is an array, expected an object"),
    (lambda d: d["pps"][0].pop("tb"), "pps[0] has no field 'tb'"),
    (lambda d: d["pps"][1].pop("tl"), "pps[1] has no field 'tl' (required when 'bklt' is true)"),
    (lambda d: d["pps"][0].pop("fs"), "pps[0] has no field 'fs'"),
    (lambda d: d["pps"][0].__setitem__("tb", -5),
     "pps[0]: field 'tb' is -5, expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][0].__setitem__("tb", True),
     "pps[0]: field 'tb' is true, expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][1].__setitem__("gbk", 2.0),
     "pps[1]: field 'gbk' is 2.0, expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][1].__setitem__("eb", 2**64),
     "pps[1]: field 'eb' is 18446744073709551616, expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][1].__setitem__("mb", "1"),
     "pps[1]: field 'mb' is the string '1', expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][0].__setitem__("fs", "1"),
     "pps[0]: field 'fs' is the string '1', expected an array of indices into 'ftbl'"),
    (lambda d: d["pps"][0].__setitem__("fs", [1, 3]),
     "pps[0]: fs[1] is 3, not an index into 'ftbl' (1 to 2; 0 is the root)"),
    (lambda d: d["pps"][1].__setitem__("fs", [0]),
     "pps[1]: fs[0] is 0, not an index into 'ftbl' (0 is the root, not a frame)"),
    (lambda d: d["pps"][1].__setitem__("fs", [-1]),
     "pps[1]: fs[0] is -1, not an index into 'ftbl'"),
    (lambda d: d["pps"][1].__setitem__("fs", [True]),
     "pps[1]: fs[0] is true, not an index into 'ftbl'"),
    (lambda d: d["pps"][1].__setitem__("fs", [2**40]),
     "pps[1]: fs[0] is 1099511627776, not an index into 'ftbl'"),
    (lambda d: d["pps"][1].__setitem__("fs", [1, 2]),
     "pps[1] has the same frames as pps[0] (a repeated location, which DHAT's viewer "
     "refuses too)"),
    (lambda d: (d["ftbl"].append("f (a.py:1)"), d["pps"][1].__setitem__("fs", [3, 2])),
     "pps[1] has the same frames as pps[0] (a repeated location, which DHAT's viewer "
     "refuses too)"),
])
def test_bad_program_points(change, message):
    fails(mutated(change), message)


def test_reads_and_writes_with_accesses():
    def accesses(d: Dict[str, Any]) -> None:
        d["bkacc"] = True
        for p in d["pps"]:
            p.update(rb=1, wb=2)

    assert loads(json.dumps(mutated(accesses))).reads == 2
    fails(mutated(lambda d: (accesses(d), d["pps"][0].pop("wb"))),
          "pps[0] has no field 'wb' (required when 'bkacc' is true)")


@pytest.mark.parametrize("acc, message", [
    ("x", " is the string 'x', expected an array of integers"),
    ([1, "2"], ": entry 1 is the string '2', expected an integer"),
    ([1, 65536], ": entry 1 is 65536, expected an access count from 0 to 65535"),
    ([-3, -4], ": entry 1 is -4, expected an access count from 0 to 65535"),
    ([1, -3], " ends with a repeat count and no count to repeat"),
    ([-70000, 1], " holds more than 65,536 counts, one per byte of a block (Valgrind records "
                  "them for small blocks only)"),
])
def test_bad_access_counts(acc, message):
    fails(mutated(lambda d: d["pps"][0].__setitem__("acc", acc)),
          f"pps[0]: field 'acc'{message}")


def test_access_counts_decoded():
    table = reader.loads_table(json.dumps(mutated(
        lambda d: d["pps"][1].__setitem__("acc", [5, -3, 4, 65535]))))
    assert table.accesses == {1: [5, 4, 4, 4, 65535]}


# --- files that are not files -----------------------------------------------------------


def fails_to_load(path: Any, message: str) -> None:
    with pytest.raises(DhatFileError) as info:
        load(path)
    assert str(info.value) == f"{path}: {message}"


def test_missing_file(tmp_path):
    fails_to_load(tmp_path / "nope.json", "no such file")


def test_directory(tmp_path):
    fails_to_load(tmp_path, "a directory, not a DHAT file")


def test_fifo_nobody_writes_to(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "FIFO_WAIT_SECONDS", 0.2)
    path = tmp_path / "pipe"
    os.mkfifo(path)
    fails_to_load(path, "a pipe that nobody wrote to in 0.2 seconds")


def test_fifo_closed_without_data(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: open(path, "w").close())
    writer.start()
    try:
        fails_to_load(path, "empty (a pipe closed before anything was written)")
    finally:
        writer.join()


def test_device():
    fails_to_load("/dev/zero", "not a regular file (a device or a socket?); give the path of a "
                               "DHAT file")


def test_empty_file(tmp_path):
    (tmp_path / "e.json").write_text("")
    fails_to_load(tmp_path / "e.json",
                  "empty file (not written yet, or its writer was killed?)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.json"
    write(path, small_doc())
    path.chmod(0)
    fails_to_load(path, "permission denied")


def test_too_big_for_memory(monkeypatch, tmp_path):
    write(tmp_path / "a.json", small_doc())

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(reader.json.JSONDecoder, "decode", no_memory)
    monkeypatch.setattr(reader, "_CHUNK_CHARS", 1)
    monkeypatch.setattr(reader, "_ppscan", None)  # the JSON path, which the C scanner skips
    fails_to_load(tmp_path / "a.json", "too big to read into memory")


# --- fuzz: thousands of broken files, never another exception ---------------------------


def _bases() -> List[str]:
    rng = random.Random(2)
    docs = [small_doc(), random_document(rng, n_pps=30), random_document(rng, n_pps=20, bkacc=True),
            random_document(rng, n_pps=15, bklt=False), json.loads(RUST_HEAP.read_text("utf-8"))]
    return [json.dumps(doc, indent=rng.choice([None, 1])) for doc in docs]


_TOKENS = ['"', "{", "}", "[", "]", ",", ":", "-", "0", "1e400", "true", "null", "NaN",
           '"fs"', '"tb"', "\\u0000", "\x00", "\xff", "99999999999999999999999", "-1", " ", "\n"]
_VALUES: List[Any] = [-1, 0, 2**64, 1.5, True, None, "x", [], {}, [0], [1, 1], [-1, 5], 10**30]


def _mutate_text(rng: random.Random, text: str) -> str:
    kind = rng.randrange(6)
    i = rng.randrange(len(text) + 1)
    if kind == 0:  # truncated, as while being written
        return text[:i]
    if kind == 1:  # a byte flipped
        return text[:i] + chr(rng.randrange(256)) + text[i + 1:]
    if kind == 2:  # a token inserted
        return text[:i] + rng.choice(_TOKENS) + text[i:]
    if kind == 3:  # a span dropped
        return text[:i] + text[i + rng.randrange(1, 40):]
    if kind == 4:  # a span repeated
        return text[:i] + text[max(0, i - 30):i] + text[i:]
    return text[:i] + rng.choice(_TOKENS) * rng.randrange(1, 200) + text[i:]


def _mutate_document(rng: random.Random, text: str) -> str:
    doc = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        target: Any = doc
        pps = doc.get("pps")
        if isinstance(pps, list) and pps and all(isinstance(p, dict) for p in pps) \
                and rng.random() < 0.7:
            target = rng.choice(pps)
            if rng.random() < 0.2 and isinstance(target.get("fs"), list) and target["fs"]:
                target["fs"][rng.randrange(len(target["fs"]))] = rng.choice(_VALUES)
                continue
        if not target:
            continue
        key = rng.choice(sorted(target))
        action = rng.randrange(4)
        if action == 0:
            del target[key]
        elif action == 1:
            target[key] = copy.deepcopy(rng.choice(_VALUES))
        elif action == 2 and isinstance(pps, list) and pps:  # a repeated location
            pps.append(copy.deepcopy(rng.choice(pps)))
        else:
            target[key] = {"deep": [[[target[key]]]]}
    return json.dumps(doc, indent=rng.choice([None, 1]))


def test_fuzz(monkeypatch):
    """5,000 mutated and truncated files from all writers' kinds: each reads
    as a DhatFile that matches a plain reading of its JSON, or fails with a
    one-line DhatFileError naming it.  Half with a tiny chunk size, so that the
    chunk boundaries fall everywhere."""
    rng = random.Random(20261201)
    bases = _bases()
    outcomes = {"read": 0, "refused": 0}
    for n in range(5000):
        base = rng.choice(bases)
        text = (_mutate_document if rng.random() < 0.4 else _mutate_text)(rng, base)
        monkeypatch.setattr(reader, "_CHUNK_CHARS", rng.choice([1, 50, 1 << 20]))
        source: Any = text.encode("utf-8", "surrogatepass") if n % 2 else text
        try:
            f = loads(source, f"case{n}.json")
        except DhatFileError as e:
            message = str(e)
            assert message.startswith(f"case{n}.json: ") and "\n" not in message, message
            outcomes["refused"] += 1
            continue
        # Accepted: it is JSON, and every figure is the JSON's own.
        decoded = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        data = json.loads(decoded.lstrip("\ufeff"))
        assert f.pps == tuple(expected_pps(data)), n
        outcomes["read"] += 1
    assert outcomes["read"] > 200 and outcomes["refused"] > 2000, outcomes


# --- parsed in two processes ------------------------------------------------------------


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 200 characters, and two processes from 4 of them (the JSON
    path's: the C scanner, which reads these files alone, turned off)."""
    monkeypatch.setattr(reader, "_ppscan", None)
    monkeypatch.setattr(reader, "_CHUNK_CHARS", 200)
    monkeypatch.setattr(reader, "PARALLEL_MIN_PIECES", 4)
    monkeypatch.setattr(reader, "_cpus", lambda: 2)


def test_two_processes_read_what_one_reads(small_pieces, monkeypatch):
    outcomes: List[Any] = []
    split = reader._Parser.stream_in_two

    def spy(self: Any, pos: int) -> Any:
        outcomes.append(split(self, pos))
        return outcomes[-1]

    monkeypatch.setattr(reader._Parser, "stream_in_two", spy)
    rng = random.Random(11)
    for bkacc in (False, True):
        doc = random_document(rng, n_pps=500, bkacc=bkacc, ties=False)
        text = json.dumps(doc, indent=rng.choice([None, 1]))
        one = reader.loads_table(text)
        two = reader.loads_table(text, parallel=True)
        assert [two.program_point(i) for i in range(len(two))] == \
               [one.program_point(i) for i in range(len(one))]
        assert two.accesses == one.accesses and len(two) == 500
    assert len(outcomes) == 2 and None not in outcomes  # both read in two processes


@pytest.mark.parametrize("change, message", [
    (lambda d: d["pps"][450].__setitem__("tb", -1),
     "pps[450]: field 'tb' is -1, expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"][20].__setitem__("tb", "x"),
     "pps[20]: field 'tb' is the string 'x', expected an integer from 0 to 2**64-1"),
    (lambda d: d["pps"].__setitem__(400, dict(d["pps"][3])),
     "pps[400] has the same frames as pps[3] (a repeated location, which DHAT's viewer "
     "refuses too)"),
    (lambda d: d["pps"][300].__setitem__("fs", [9999]),
     "pps[300]: fs[0] is 9,999, not an index into 'ftbl' (1 to 12; 0 is the root)"),
    (lambda d: d["pps"][350].__setitem__("note", {"x": "}, {"}),
     None),  # nested objects: the pieces cannot be cut there, one process reads it
])
def test_two_processes_say_what_one_says(small_pieces, change, message):
    doc = random_document(random.Random(12), n_pps=500, ties=False)
    change(doc)
    text = json.dumps(doc)
    if message is None:
        assert len(reader.loads_table(text, parallel=True)) == 500
        return
    for parallel in (False, True):
        with pytest.raises(DhatFileError) as info:
            reader.loads_table(text, "p.json", parallel=parallel)
        assert str(info.value) == f"p.json: {message}"


def test_a_failed_fork_reads_in_one_process(small_pieces, monkeypatch):
    def no_fork(self: Any) -> None:
        raise OSError("no processes left")

    monkeypatch.setattr(reader.multiprocessing.get_context("fork").Process, "start", no_fork)
    doc = random_document(random.Random(13), n_pps=300)
    assert len(reader.loads_table(json.dumps(doc), parallel=True)) == 300


@pytest.mark.parametrize("key, value, message", [
    ("tb", True, "pps[1]: field 'tb' is true, expected an integer from 0 to 2**64-1"),
    ("gbk", False, "pps[1]: field 'gbk' is false, expected an integer from 0 to 2**64-1"),
    ("fs", [True], "pps[1]: fs[0] is true, not an index into 'ftbl'"),
    ("fs", [1.0], "pps[1]: fs[0] is 1.0, not an index into 'ftbl'"),
    ("tl", 3.0, "pps[1]: field 'tl' is 3.0, expected an integer from 0 to 2**64-1"),
])
def test_booleans_and_floats_in_cut_pieces(monkeypatch, key, value, message):
    """The fast path cuts pieces of a few characters: each is checked as strictly."""
    monkeypatch.setattr(reader, "_CHUNK_CHARS", 1)
    fails(mutated(lambda d: d["pps"][1].__setitem__(key, value)), message)


# --- dhatc's own layout: numbers parsed in two flat arrays ------------------------------


def dhatc_layout(doc: Dict[str, Any]) -> str:
    """`doc` as dhatc writes a file (dhatc._dhat_file.write_json): a field per
    line, a program point per line, compact."""
    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    header = [f"\n{compact(k)}:{compact(v)}" for k, v in doc.items() if k not in ("pps", "ftbl")]
    return ("{" + ",".join(header) + ',\n"pps":['
            + ",".join(f"\n{compact(pp)}" for pp in doc["pps"])
            + '\n],\n"ftbl":[' + ",".join(f"\n{compact(frame)}" for frame in doc["ftbl"])
            + "\n]\n}\n")


def outcome(text: str, name: str = "x.json") -> Any:
    """What reading `text` gives: its program points and accesses, or the message."""
    try:
        table = reader.loads_table(text, name)
    except DhatFileError as e:
        return str(e)
    for figure in reader.FIGURES:  # the sums the reader kept are the columns' sums
        column = table.column(figure)
        assert table.total(figure) == (None if column is None else sum(column))
    return [table.program_point(i) for i in range(len(table))], table.accesses


@pytest.fixture
def fast_path_spied(monkeypatch):
    """Counts the pieces feed_text reads (True) and leaves (False), the C
    scanner (dhatc._ppscan, which reads them first) turned off."""
    monkeypatch.setattr(reader, "_ppscan", None)
    seen = {True: 0, False: 0}
    original = reader._TableBuilder.feed_text

    def spy(self: Any, piece: str) -> bool:
        taken = original(self, piece)
        seen[taken] += 1
        return taken

    monkeypatch.setattr(reader._TableBuilder, "feed_text", spy)
    return seen


def without_fast_path(text: str, monkeypatch: Any) -> Any:
    """outcome(text) with the JSON parser alone: no C scanner, no feed_text."""
    with monkeypatch.context() as m:
        m.setattr(reader._TableBuilder, "feed_text", lambda self, piece: False)
        m.setattr(reader, "_ppscan", None)
        return outcome(text)


@pytest.mark.parametrize("kind", ["heap", "ad hoc", "accesses"])
def test_dhatc_layout_reads_as_json_does(monkeypatch, fast_path_spied, kind):
    rng = random.Random(31)
    doc = random_document(rng, n_pps=400, bklt=kind != "ad hoc", bkacc=kind == "accesses",
                          ties=False)
    for pp in doc["pps"]:
        pp.pop("acc", None)
    doc["pps"] = [pp for pp in doc["pps"] if pp["fs"]]  # fs=[] is left to the JSON parser
    text = dhatc_layout(doc)
    plain = outcome(json.dumps(doc, indent=1))
    for size in (1, 50, 300, 5000):
        monkeypatch.setattr(reader, "_CHUNK_CHARS", size)
        assert outcome(text) == plain, size
    assert fast_path_spied[True] > 100 and plain[0] == expected_pps(doc)


def test_a_big_dhatc_file_is_read_without_a_dict_per_pp(fast_path_spied):
    doc = random_document(random.Random(32), n_pps=30000, n_frames=40, max_depth=9,
                          ties=False)
    doc["pps"] = [pp for pp in doc["pps"] if pp["fs"]]
    table = reader.loads_table(dhatc_layout(doc))
    assert [table.program_point(i) for i in range(len(table))] == expected_pps(doc)
    assert fast_path_spied[True] >= 1 and fast_path_spied[False] == 0


def _small_dhatc_text() -> str:
    doc = random_document(random.Random(33), n_pps=40, ties=False)
    doc["pps"] = [pp for pp in doc["pps"] if pp["fs"]]
    return dhatc_layout(doc)


@pytest.mark.parametrize("old, new", [
    ('"tb":', '"t1b":'),  # a digit in a key...
    ('"tbk":', '"tb1k":'),
    ('"tl":3', '"tl":'),  # ...a value missing
    ('"tb":1', '"tb":01'),  # leading zeros
    ('"gb":', '"gb":-'),
    ('"fs":[', '"fs":[0,'),  # the root
    ('"fs":[', '"fs":[01,'),
    ('"fs":[', '"fs":[true,'),
    ('"fs":[', '"fs":[1.0,'),
    ('"fs":[', '"fs":[ 7 ,'),  # white space: still JSON, the same location
    ('"fs":[', '"fs":["1",'),
    ('"fs":[', '"fs":[[1],'),
    ('"fs":[', '"fs":[{"a":1},'),
    ('"fs":[', '"fs":[99999999999,'),
    ('"fs":[', '"fs":[],"fs":['),
    ('"fs":[', '"fs":[5],"fs":['),
    ('"fs":[', '"x":1,"fs":['),
    (',"fs":[', '}, {"fs":['),
    (']},\n', ']}, \n'),
    (']},\n', ',"fs":['),  # the two cuts swapped
    ('"ebk":', '"ebk":1]},\n{"ebk":'),
    ('"tb":', '"tb":18446744073709551616,"x":'),
    ('"mb":', '"mb":1,"mb":'),
    ('{"tb"', '{"tb":1,"tb"'),
    ('"eb":', '"eb":true,"x":'),
])
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("scanner", ["C", "Python"])
def test_dhatc_layout_broken_reads_as_json_does(monkeypatch, old, new, where, scanner):
    """Each change, at the first, a middle or the last program point: what the
    fast paths give (or say) is what the JSON parser gives; the C scanner
    reads up to the change, feed_text the rest (or, without it, all)."""
    if scanner == "Python":
        monkeypatch.setattr(reader, "_ppscan", None)
    text = _small_dhatc_text()
    spots = [i for i in range(len(text)) if text.startswith(old, i)]
    spot = spots[int(where * (len(spots) - 1))]
    changed = text[:spot] + new + text[spot + len(old):]
    for size in (1, 200, 1 << 20):
        monkeypatch.setattr(reader, "_CHUNK_CHARS", size)
        assert outcome(changed) == without_fast_path(changed, monkeypatch), (size, changed)


def test_dhatc_layout_repeats_across_pieces(monkeypatch):
    doc = random_document(random.Random(34), n_pps=60, ties=False)
    doc["pps"] = [pp for pp in doc["pps"] if pp["fs"]]
    doc["pps"].append(dict(doc["pps"][2]))
    monkeypatch.setattr(reader, "_CHUNK_CHARS", 100)
    n = len(doc["pps"]) - 1
    assert outcome(dhatc_layout(doc)) == (f"x.json: pps[{n:,}] has the same frames as pps[2] "
                                          "(a repeated location, which DHAT's viewer refuses too)")


def test_dhatc_layout_fuzz(monkeypatch, fast_path_spied):
    """2,000 mutated dhatc files: the fast path reads or refuses each as the JSON
    parser does."""
    rng = random.Random(20261202)
    text = _small_dhatc_text()
    for n in range(2000):
        changed = _mutate_text(rng, text)
        monkeypatch.setattr(reader, "_CHUNK_CHARS", rng.choice([1, 100, 400]))
        assert outcome(changed) == without_fast_path(changed, monkeypatch), n
    assert fast_path_spied[True] > 2000 and fast_path_spied[False] > 200
