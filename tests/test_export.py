"""`python -m dhatc export`: each format checked against its own definition —
pprof decoded by a real protobuf decoder with the message layout of pprof's
profile.proto, speedscope against the required fields and types of its file
format schema, folded stacks parsed back — and with the tools themselves
where they are installed (`go tool pprof`)."""

from __future__ import annotations

import gzip
import json
import os
import pty
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from command_util import assert_one_line_error, dhatc, dhatc_command, pp, write_profile
from dhatc._export_collapsed import escape_frame, unescape_frame

VALGRIND_MALLOC = "0x483B7F3: malloc (in /usr/libexec/valgrind/vgpreload_dhat-amd64-linux.so)"
VALGRIND_MAIN = "0x109182: main (prog.c:12)"
RUST_FRAME = "0x55d8c1a2b3c4: app::build (src/main.rs:40:17)"
PYTHON = ["PyObject_Malloc", "build (/home/me/app.py:7)", "main (/home/me/app.py:20)"]

PPS = [
    pp(PYTHON, 600, 6, tl=60, mb=400, mbk=4, gb=300, gbk=3, eb=100, ebk=1),
    pp([VALGRIND_MALLOC, VALGRIND_MAIN], 300, 3, tl=30, mb=300, mbk=3, gb=200, gbk=2),
    pp([RUST_FRAME, "main (/home/me/app.py:20)"], 100, 1, tl=5, mb=100, mbk=1, eb=50, ebk=1),
]
FIELDS = ("total_blocks", "total_bytes", "end_blocks", "end_bytes", "gmax_blocks", "gmax_bytes")


@pytest.fixture
def heap_file(tmp_path: Path) -> Path:
    return write_profile(tmp_path / "heap.json", PPS, cmd="python app.py", pid=77)


# --- pprof ---------------------------------------------------------------------

# The messages and field numbers of pprof's proto/profile.proto (package
# perftools.profiles), as published: (message, [(field, number, type, repeated, message type)]).
_INT64, _UINT64, _BOOL, _STRING, _MESSAGE = 3, 4, 8, 9, 11
PROFILE_PROTO: List[Tuple[str, List[Tuple[str, int, int, bool, str]]]] = [
    ("Profile", [
        ("sample_type", 1, _MESSAGE, True, "ValueType"), ("sample", 2, _MESSAGE, True, "Sample"),
        ("mapping", 3, _MESSAGE, True, "Mapping"), ("location", 4, _MESSAGE, True, "Location"),
        ("function", 5, _MESSAGE, True, "Function"), ("string_table", 6, _STRING, True, ""),
        ("drop_frames", 7, _INT64, False, ""), ("keep_frames", 8, _INT64, False, ""),
        ("time_nanos", 9, _INT64, False, ""), ("duration_nanos", 10, _INT64, False, ""),
        ("period_type", 11, _MESSAGE, False, "ValueType"), ("period", 12, _INT64, False, ""),
        ("comment", 13, _INT64, True, ""), ("default_sample_type", 14, _INT64, False, ""),
    ]),
    ("ValueType", [("type", 1, _INT64, False, ""), ("unit", 2, _INT64, False, "")]),
    ("Sample", [("location_id", 1, _UINT64, True, ""), ("value", 2, _INT64, True, ""),
                ("label", 3, _MESSAGE, True, "Label")]),
    ("Label", [("key", 1, _INT64, False, ""), ("str", 2, _INT64, False, ""),
               ("num", 3, _INT64, False, ""), ("num_unit", 4, _INT64, False, "")]),
    ("Mapping", [("id", 1, _UINT64, False, ""), ("memory_start", 2, _UINT64, False, ""),
                 ("memory_limit", 3, _UINT64, False, ""), ("file_offset", 4, _UINT64, False, ""),
                 ("filename", 5, _INT64, False, ""), ("build_id", 6, _INT64, False, ""),
                 ("has_functions", 7, _BOOL, False, ""), ("has_filenames", 8, _BOOL, False, ""),
                 ("has_line_numbers", 9, _BOOL, False, ""),
                 ("has_inline_frames", 10, _BOOL, False, "")]),
    ("Location", [("id", 1, _UINT64, False, ""), ("mapping_id", 2, _UINT64, False, ""),
                  ("address", 3, _UINT64, False, ""), ("line", 4, _MESSAGE, True, "Line"),
                  ("is_folded", 5, _BOOL, False, "")]),
    ("Line", [("function_id", 1, _UINT64, False, ""), ("line", 2, _INT64, False, ""),
              ("column", 3, _INT64, False, "")]),
    ("Function", [("id", 1, _UINT64, False, ""), ("name", 2, _INT64, False, ""),
                  ("system_name", 3, _INT64, False, ""), ("filename", 4, _INT64, False, ""),
                  ("start_line", 5, _INT64, False, "")]),
]


def profile_class() -> Any:
    """The Profile message class, built from PROFILE_PROTO by protobuf itself."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(
        name="dhatc_test_profile.proto", package="perftools.profiles", syntax="proto3")
    for name, fields in PROFILE_PROTO:
        message = proto.message_type.add(name=name)
        for field, number, kind, repeated, type_name in fields:
            added = message.field.add(name=field, number=number, type=kind, label=3 if repeated else 1)
            if type_name:
                added.type_name = f".perftools.profiles.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    descriptor = pool.FindMessageTypeByName("perftools.profiles.Profile")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf < 4.22


def decode_pprof(path: Path) -> Any:
    profile = profile_class()()
    profile.ParseFromString(gzip.decompress(path.read_bytes()))
    return profile


def test_pprof_decodes_with_profile_proto(heap_file: Path, tmp_path: Path) -> None:
    proc = dhatc("export", "heap.json", "--format", "pprof", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "dhatc export: wrote heap.pb.gz (pprof, 3 program points)\n"
    profile = decode_pprof(tmp_path / "heap.pb.gz")
    strings = list(profile.string_table)
    assert strings[0] == "" and len(set(strings)) == len(strings)
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"),
        ("inuse_space", "bytes"), ("gmax_objects", "count"), ("gmax_space", "bytes"),
    ]
    assert strings[profile.default_sample_type] == "alloc_space"
    locations = {loc.id: loc for loc in profile.location}
    functions = {f.id: f for f in profile.function}
    assert len(locations) == len(profile.location) and 0 not in locations
    assert len(functions) == len(profile.function) and 0 not in functions

    def frame(location_id: int) -> Tuple[str, str, int, int]:
        loc = locations[location_id]
        (line,) = loc.line
        function = functions[line.function_id]
        assert strings[function.system_name] == strings[function.name]
        assert line.column == (17 if strings[function.name] == "app::build" else 0)
        return strings[function.name], strings[function.filename], line.line, loc.address

    samples = [([frame(i) for i in s.location_id], list(s.value)) for s in profile.sample]
    assert samples == [
        ([("PyObject_Malloc", "", 0, 0), ("build", "/home/me/app.py", 7, 0),
          ("main", "/home/me/app.py", 20, 0)], [6, 600, 1, 100, 3, 300]),
        ([("malloc", "/usr/libexec/valgrind/vgpreload_dhat-amd64-linux.so", 0, 0x483B7F3),
          ("main", "prog.c", 12, 0x109182)], [3, 300, 0, 0, 2, 200]),
        ([("app::build", "src/main.rs", 40, 0x55D8C1A2B3C4),
          ("main", "/home/me/app.py", 20, 0)], [1, 100, 1, 50, 0, 0]),
    ]
    # One Location per frame string, one Function per (name, file).
    assert len(profile.location) == 6 and len(profile.function) == 6
    comments = [strings[c] for c in profile.comment]
    assert comments[:3] == ["dhatc export of heap.json (heap)", "cmd: python app.py", "pid: 77"]

    again = dhatc("export", "heap.json", "-f", "pprof", "-o", "end.pb.gz", "--metric", "end_bytes",
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    end = decode_pprof(tmp_path / "end.pb.gz")
    assert end.string_table[end.default_sample_type] == "inuse_space"


def test_pprof_of_an_ad_hoc_file(tmp_path: Path) -> None:
    write_profile(tmp_path / "events.json", [pp(["parse (t.py:5)"], 35, 9)], mode="ad-hoc")
    assert dhatc("export", "events.json", "-f", "pprof", "-o", "e.pb.gz", cwd=tmp_path).returncode == 0
    profile = decode_pprof(tmp_path / "e.pb.gz")
    strings = profile.string_table
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("events", "count"), ("units", "count")]
    assert [list(s.value) for s in profile.sample] == [[9, 35]]
    assert strings[profile.default_sample_type] == "units"


@pytest.mark.skipif(shutil.which("go") is None, reason="go (Debian: golang-go) is not installed")
def test_go_tool_pprof_reads_it(heap_file: Path, tmp_path: Path) -> None:
    assert dhatc("export", "heap.json", "-f", "pprof", cwd=tmp_path).returncode == 0
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(["go", "tool", "pprof", "-raw", "heap.pb.gz"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HOME=str(home), GOCACHE=str(home / "cache")))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines.index("Samples:") + 1
    assert lines[header].split() == [
        "alloc_objects/count", "alloc_space/bytes[dflt]", "inuse_objects/count",
        "inuse_space/bytes", "gmax_objects/count", "gmax_space/bytes"]
    values = [[int(v) for v in line.split(":")[0].split()] for line in lines[header + 1:header + 4]]
    assert values == [[6, 600, 1, 100, 3, 300], [3, 300, 0, 0, 2, 200], [1, 100, 1, 50, 0, 0]]


def test_pprof_is_not_written_to_a_terminal(heap_file: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(dhatc_command("export", "heap.json", "-f", "pprof", "-o", "-"),
                              cwd=tmp_path, stdout=follower, stderr=subprocess.PIPE, text=True,
                              timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert proc.stderr == ("dhatc export: error: pprof data is binary: give -o FILE.pb.gz, "
                           "or redirect the output\n")


# --- speedscope ------------------------------------------------------------------

NUMBER = (int, float)
VALUE_UNITS = {"bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"}


def check_speedscope_schema(doc: Any) -> None:
    """The requirements of speedscope's file-format-schema.json (FileFormat.File,
    Frame and SampledProfile), plus what its spec says in words: one weight
    per sample, frame indices into shared.frames, endValue >= startValue."""
    assert isinstance(doc, dict)
    for field in ("$schema", "profiles", "shared"):
        assert field in doc, field
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert isinstance(doc.get("name", ""), str) and isinstance(doc.get("exporter", ""), str)
    assert isinstance(doc.get("activeProfileIndex", 0), NUMBER)
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for frame in frames:
        assert isinstance(frame, dict) and isinstance(frame["name"], str)
        assert isinstance(frame.get("file", ""), str)
        assert isinstance(frame.get("line", 0), NUMBER) and isinstance(frame.get("col", 0), NUMBER)
    assert isinstance(doc["profiles"], list)
    assert 0 <= doc.get("activeProfileIndex", 0) < max(len(doc["profiles"]), 1)
    for profile in doc["profiles"]:
        for field in ("endValue", "name", "samples", "startValue", "type", "unit", "weights"):
            assert field in profile, field
        assert profile["type"] == "sampled" and isinstance(profile["name"], str)
        assert profile["unit"] in VALUE_UNITS
        assert isinstance(profile["startValue"], NUMBER) and isinstance(profile["endValue"], NUMBER)
        assert profile["endValue"] >= profile["startValue"]
        assert len(profile["samples"]) == len(profile["weights"])
        for stack in profile["samples"]:
            assert isinstance(stack, list)
            assert all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
        assert all(isinstance(w, NUMBER) for w in profile["weights"])


def test_speedscope_follows_its_schema(heap_file: Path, tmp_path: Path) -> None:
    proc = dhatc("export", "heap.json", "--format", "speedscope", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    check_speedscope_schema(doc)
    assert [p["name"] for p in doc["profiles"]] == [
        "heap.json: Total (bytes)", "heap.json: Total (blocks)", "heap.json: At t-gmax (bytes)",
        "heap.json: At t-gmax (blocks)", "heap.json: At t-end (bytes)", "heap.json: At t-end (blocks)"]
    assert [p["unit"] for p in doc["profiles"]] == ["bytes", "none"] * 3
    frames = doc["shared"]["frames"]
    names = lambda stack: [frames[i]["name"] for i in stack]  # noqa: E731
    total_bytes, _, gmax_bytes = doc["profiles"][:3]
    assert [names(s) for s in total_bytes["samples"]] == [
        ["main", "build", "PyObject_Malloc"], ["main", "malloc"], ["main", "app::build"]]
    assert total_bytes["weights"] == [600, 300, 100] and total_bytes["endValue"] == 1000
    assert gmax_bytes["weights"] == [300, 200]  # PPs with nothing live at t-gmax are left out
    assert frames[total_bytes["samples"][0][1]] == {"name": "build", "file": "/home/me/app.py", "line": 7}
    assert {"name": "app::build", "file": "src/main.rs", "line": 40, "col": 17} in frames

    one = dhatc("export", "heap.json", "-f", "speedscope", "--metric", "end_blocks", "-o", "e.json",
                cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    doc = json.loads((tmp_path / "e.json").read_text())
    check_speedscope_schema(doc)
    assert [(p["name"], p["weights"]) for p in doc["profiles"]] == [
        ("heap.json: At t-end (blocks)", [1, 1])]


def test_speedscope_of_an_ad_hoc_file(tmp_path: Path) -> None:
    write_profile(tmp_path / "events.json", [pp(["parse (t.py:5)"], 35, 9)], mode="ad-hoc")
    doc = json.loads(dhatc("export", "events.json", "-f", "speedscope", cwd=tmp_path).stdout)
    check_speedscope_schema(doc)
    assert [(p["name"], p["unit"], p["weights"]) for p in doc["profiles"]] == [
        ("events.json: Total (units)", "none", [35]), ("events.json: Total (events)", "none", [9])]


# --- folded stacks ------------------------------------------------------------------


def parse_collapsed(text: str) -> Dict[Tuple[str, ...], int]:
    """Folded stacks read back: `a;b;c COUNT` per line, the count after the last space."""
    stacks: Dict[Tuple[str, ...], int] = {}
    for line in text.split("\n")[:-1]:
        stack, count = line.rsplit(" ", 1)
        key = tuple(unescape_frame(f) for f in stack.split(";"))
        assert key not in stacks
        stacks[key] = int(count)
    assert text.endswith("\n")
    return stacks


def test_collapsed_parses_back_to_the_file(heap_file: Path, tmp_path: Path) -> None:
    for metric, field in [("total_bytes", "total_bytes"), ("gmax_blocks", "gmax_blocks"),
                          ("end_bytes", "end_bytes")]:
        proc = dhatc("export", "heap.json", "-f", "collapsed", "--metric", metric, cwd=tmp_path)
        assert proc.returncode == 0 and proc.stderr == ""
        expected = {tuple(reversed(p.frames)): getattr(p, field) for p in PPS if getattr(p, field)}
        assert parse_collapsed(proc.stdout) == expected
    default = dhatc("export", "heap.json", "-f", "collapsed", cwd=tmp_path).stdout
    assert default.splitlines()[0] == "main (/home/me/app.py:20);build (/home/me/app.py:7);PyObject_Malloc 600"


def test_collapsed_escapes_separators(tmp_path: Path) -> None:
    odd = ["f;g (a b.py:1)", "line\nbreak\r (x.py:2)", "100% (p.py:3)", "%3B (q.py:4)"]
    write_profile(tmp_path / "odd.json", [pp(odd, 7, 1), pp(odd[1:], 5, 1)])
    out = dhatc("export", "odd.json", "-f", "collapsed", cwd=tmp_path).stdout
    assert out.count("\n") == 2 and "\r" not in out
    assert parse_collapsed(out) == {tuple(reversed(odd)): 7, tuple(reversed(odd[1:])): 5}
    for frame in odd:
        assert unescape_frame(escape_frame(frame)) == frame
        assert ";" not in escape_frame(frame) and "\n" not in escape_frame(frame)


def test_broken_pipe_ends_quietly(tmp_path: Path) -> None:
    write_profile(tmp_path / "many.json",
                  [pp([f"f{i} (m.py:{i})", "main (m.py:1)"], i + 1, 1) for i in range(20000)])
    command = " ".join(f"'{a}'" for a in dhatc_command("export", "many.json", "-f", "collapsed"))
    proc = subprocess.run(["bash", "-c", f"{command} | head -1; echo status=${{PIPESTATUS[0]}}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    # Status 1, as python's own on a broken pipe, and nothing on stderr.
    assert proc.stdout == "main (m.py:1);f0 (m.py:0) 1\nstatus=1\n"
    assert proc.stderr == ""


# --- where the file goes ------------------------------------------------------------

FILE_COMMANDS = {
    "export": ["export", "heap.json", "-f", "collapsed", "-o"],
    "flamegraph": ["flamegraph", "heap.json", "-o"],
    "merge": ["merge", "heap.json", "heap.json", "-o"],
}


@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_output_through_a_symlink_replaces_its_target_and_keeps_the_link(
        heap_file: Path, tmp_path: Path, command: str) -> None:
    direct = tmp_path / "direct.out"
    assert dhatc(*FILE_COMMANDS[command], str(direct), cwd=tmp_path).returncode == 0
    target = tmp_path / "target.out"
    target.write_text("old")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    proc = dhatc(*FILE_COMMANDS[command], str(link), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == direct.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "direct.out", "heap.json", "link.out", "target.out"]  # no temporary file left


@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_output_into_a_fifo_is_written_in_place(heap_file: Path, tmp_path: Path,
                                                command: str) -> None:
    direct = tmp_path / "direct.out"
    assert dhatc(*FILE_COMMANDS[command], str(direct), cwd=tmp_path).returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    argv = dhatc_command(*FILE_COMMANDS[command], str(fifo))
    child = subprocess.Popen(argv, cwd=tmp_path, env=dict(os.environ, DHATC_QUIET="1"),
                             stderr=subprocess.PIPE)
    with open(fifo, "rb") as reader:
        got = reader.read()
    assert child.stderr is not None
    errors = child.stderr.read()
    assert child.wait(timeout=300) == 0, errors
    assert got == direct.read_bytes()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --- errors -------------------------------------------------------------------------


def test_bad_requests_are_one_line(heap_file: Path, tmp_path: Path) -> None:
    write_profile(tmp_path / "events.json", [pp(["parse (t.py:5)"], 35, 9)], mode="ad-hoc")
    (tmp_path / "adir").mkdir()
    (tmp_path / "bad.json").write_text("{")
    cases = [
        (["events.json", "-f", "collapsed", "--metric", "end_bytes"], "events.json is an ad hoc profile"),
        (["heap.json", "-f", "collapsed", "-o", "adir"], "adir is a directory"),
        (["heap.json", "-f", "collapsed", "-o", "no/such/dir.txt"], "does not exist"),
        (["heap.json", "-f", "pprof", "-o", "/dev/full"], "cannot write /dev/full: No space left on device"),
        (["bad.json", "-f", "speedscope"], "bad.json"),
        (["missing.json", "-f", "speedscope"], "missing.json"),
    ]
    if os.path.isdir("/sys"):  # sysfs refuses new files, to root too
        cases.append((["heap.json", "-f", "collapsed", "-o", "/sys/dhatc.txt"],
                      "cannot write /sys/dhatc.txt: Permission denied"))
    for args, fragment in cases:
        assert_one_line_error(dhatc("export", *args, cwd=tmp_path), "export", fragment)
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")  # not renamed over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "bad.json", "events.json", "heap.json"]


@pytest.mark.parametrize("text, parts", [
    ("build (/home/me/app.py:7)", ("build", None, "/home/me/app.py", 7, None, None)),
    ("f (/home/me (copy)/a.py:3)", ("f", None, "/home/me (copy)/a.py", 3, None, None)),
    ("[code object destroyed while profiling] (?:12)",
     ("[code object destroyed while profiling]", None, "?", 12, None, None)),
    ("g (x.py:?)", ("g", None, "x.py", None, None, None)),
    ("PyObject_Malloc", ("PyObject_Malloc", None, None, None, None, None)),
    (VALGRIND_MAIN, ("main", 0x109182, "prog.c", 12, None, None)),
    (VALGRIND_MALLOC, ("malloc", 0x483B7F3, None, None, None,
                       "/usr/libexec/valgrind/vgpreload_dhat-amd64-linux.so")),
    ("0x4A1B: (below main) (libc-start.c:308)", ("(below main)", 0x4A1B, "libc-start.c", 308, None, None)),
    ("0x4A1B: ???", ("???", 0x4A1B, None, None, None, None)),
    (RUST_FRAME, ("app::build", 0x55D8C1A2B3C4, "src/main.rs", 40, 17, None)),
])
def test_frame_strings_of_every_writer(text: str, parts: Tuple[Any, ...]) -> None:
    from dhatc._frame_text import parse_frame

    got = parse_frame(text)
    assert (got.name, got.address, got.file, got.line, got.column, got.object) == parts


def test_commands_are_listed_in_help(tmp_path: Path) -> None:
    proc = dhatc("--help", cwd=tmp_path)
    assert proc.returncode == 0
    listed = " ".join(proc.stdout.split())
    for line in ["view open a DHAT file in DHAT's viewer and the flame graph, served on 127.0.0.1",
                 "flamegraph write a flame graph of a DHAT file as one self-contained HTML page",
                 "export convert a DHAT file for speedscope, flamegraph.pl (folded stacks) or pprof",
                 "merge merge the DHAT files of several processes into one (t-gmax: the sum of their peaks)"]:
        assert line in listed
