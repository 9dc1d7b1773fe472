"""Native frames (``Profiler(native=True)``, ``dhatc run --native``): each
program point's stack holds the C frames between the allocator and the
Python code, with the Python frames spliced in where the interpreter runs
them, named from the object files' symbols and DWARF lines when the file is
written.  The C and C++ code is the tests' own (tests/fixtures/), built here
with known functions on known lines."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from command_util import dhatc_command
from conftest import FIXTURES, child_environment
from dh_viewer import ViewerHarnessError, render, viewer_dir
from dhat_helpers import load, pps_with_frames

import dhatc._native_frames as native_frames

if not native_frames.available():
    # The test command installs libunwind and libdw: there the build has them.
    pytestmark = pytest.mark.skip(reason="dhatc was built without native frames "
                                  "(libunwind-dev and libdw-dev missing)")

ADDRESS = re.compile(r"^0x[0-9A-F]+: ")


def line(source: str, marker: str) -> int:
    """The line of tests/fixtures/`source` that holds ``@marker``."""
    lines = (FIXTURES / source).read_text().splitlines()
    hits = [n for n, text in enumerate(lines, 1) if f"@{marker} " in text or text.endswith(f"@{marker}")]
    assert len(hits) == 1, (source, marker, hits)
    return hits[0]


def bare(frames: List[str]) -> List[str]:
    """Frames without their addresses (each native frame has one)."""
    return [ADDRESS.sub("", f) for f in frames]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures' extension and libraries, built for this interpreter."""
    out = tmp_path_factory.mktemp("nframes")
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    builds = [
        ["gcc", "-shared", "-fPIC", "-O0", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-I", include, str(FIXTURES / "nframes_ext.c"), "-o", str(out / f"nframes_ext{suffix}")],
        ["gcc", "-shared", "-fPIC", "-O0", "-g", "-pthread", str(FIXTURES / "libnframes.c"),
         "-o", str(out / "libnframes.so")],
        # No debug information and no local symbols: exported names only.
        ["gcc", "-shared", "-fPIC", "-O1", "-s", "-pthread", str(FIXTURES / "libnframes.c"),
         "-o", str(out / "libnframes_nodebug.so")],
        ["gcc", "-shared", "-fPIC", "-O0", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-I", include, str(FIXTURES / "nframes_signal.c"),
         "-o", str(out / f"nframes_signal{suffix}")],
        ["g++", "-shared", "-fPIC", "-O0", "-g", str(FIXTURES / "libnframes_cxx.cpp"),
         "-o", str(out / "libnframes_cxx.so")],
    ]
    if platform.machine() == "x86_64":
        builds.append(["gcc", "-shared", "-fPIC", "-O0", "-g", str(FIXTURES / "libnframes_jit.c"),
                       "-o", str(out / "libnframes_jit.so")])
    # Inlined functions: optimised, with debug information.
    builds.append(["gcc", "-shared", "-fPIC", "-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror",
                   str(FIXTURES / "libnframes_inline.c"), "-o", str(out / "libnframes_inline.so")])
    if platform.machine() in ("x86_64", "aarch64"):
        builds.append(["gcc", "-shared", "-fPIC", "-O0", "-g", "-std=c11", "-Wall", "-Wextra",
                       "-Werror", str(FIXTURES / "libnframes_stop.c"),
                       "-o", str(out / "libnframes_stop.so")])
    for command in builds:
        subprocess.run(command, check=True)
    return out


def run(built: Path, code: str, *, dhatc_run: List[str] = (), tmp_path: Path,
        expect_status: int = 0) -> "subprocess.CompletedProcess[str]":
    """Runs `code` (a script in tmp_path, the fixtures' build importable), as
    ``python script.py`` or, with `dhatc_run` options, ``python -m dhatc run
    OPTIONS script.py``."""
    script = tmp_path / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(built)!r})\nBUILT = {str(built)!r}\n" + code)
    command = ([*dhatc_command("run", *dhatc_run, str(script))] if dhatc_run
               else [sys.executable, str(script)])
    proc = subprocess.run(command, cwd=tmp_path, env=child_environment(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == expect_status, (proc.stdout, proc.stderr)
    return proc


def script_line(code: str, marker: str) -> int:
    """The line of the script `run` writes from `code` that holds ``# marker``."""
    lines = code.splitlines()
    hits = [n for n, text in enumerate(lines, 1) if text.endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0] + 3  # run() puts three lines first


PROFILED = """
import json
import dhatc, nframes_ext

def inner():
    nframes_ext.alloc(1000)  # inner

def callback():
    return bytes(777)  # callback

def main(**options):
    with dhatc.Profiler(native=True, testing=True, **options) as profiler:
        inner()  # main_inner
        kept = nframes_ext.call(callback)  # main_call
        nframes_ext.two_on_one_line(100)  # main_two
        made = nframes_ext.bytes(5000)  # main_bytes
    return profiler

options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
profiler = main(**options)
print(json.dumps([[list(pp.frames), pp.total_bytes, pp.total_blocks, pp.max_bytes,
                   pp.gmax_bytes, pp.end_bytes] for pp in profiler.profile.pps]))
"""


def profiled(built: Path, tmp_path: Path, **options: object) -> List[list]:
    script = tmp_path / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(built)!r})\n" + "\n" + PROFILED)
    proc = subprocess.run([sys.executable, str(script), json.dumps(options)], cwd=tmp_path,
                          env=child_environment(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def py(tmp_path: Path, name: str, marker: str) -> str:
    return f"{name} ({tmp_path / 'script.py'}:{script_line(PROFILED, marker)})"


def find(pps: List[list], total_bytes: int) -> list:
    found = [pp for pp in pps if pp[1] == total_bytes]
    assert len(found) == 1, (total_bytes, [(pp[0], pp[1]) for pp in pps])
    return found[0]


def test_c_frames_between_the_allocator_and_python(built: Path, tmp_path: Path) -> None:
    pps = profiled(built, tmp_path, trim_backtraces=None)
    frames, total_bytes, blocks, max_bytes, gmax_bytes, end_bytes = find(pps, 1000)
    assert bare(frames) == [
        "PyMem_Malloc",
        f"make_block (nframes_ext.c:{line('nframes_ext.c', 'make_block')})",
        f"ext_alloc (nframes_ext.c:{line('nframes_ext.c', 'ext_alloc')})",
        py(tmp_path, "inner", "inner"),
        py(tmp_path, "main", "main_inner"),  # the frame that started the profiler: the last
    ]
    assert (blocks, max_bytes, gmax_bytes, end_bytes) == (1, 1000, 1000, 1000)
    assert all(ADDRESS.match(f) for f in frames[1:3])


def test_python_called_from_c_sits_above_the_c_frame(built: Path, tmp_path: Path) -> None:
    pps = profiled(built, tmp_path, trim_backtraces=None)
    frames = find(pps, 777 + sys.getsizeof(b""))[0]  # bytes(777): one block, the object and its bytes
    assert bare(frames) == [
        "PyObject_Calloc",  # bytes(n) is zeroed
        py(tmp_path, "callback", "callback"),
        f"ext_call (nframes_ext.c:{line('nframes_ext.c', 'ext_call')})",
        py(tmp_path, "main", "main_call"),
    ]


def test_the_interpreters_own_frames_only_on_request(built: Path, tmp_path: Path) -> None:
    size = 5000 + sys.getsizeof(b"")
    plain = bare(find(profiled(built, tmp_path, trim_backtraces=None), size)[0])
    assert plain == ["PyObject_Malloc",
                     f"ext_bytes (nframes_ext.c:{line('nframes_ext.c', 'ext_bytes')})",
                     py(tmp_path, "main", "main_bytes")]
    full = bare(find(profiled(built, tmp_path, trim_backtraces=None,
                              native_interpreter_frames=True), size)[0])
    # The interpreter's C functions between the allocator and the extension
    # (PyObject_Malloc's own frames, bytes' constructor), and the ones that
    # call the extension from the evaluation loop.
    ext = full.index(plain[1])
    assert full[0] == "PyObject_Malloc" and full[-1] == plain[-1] and ext > 1
    assert any(f.startswith("PyBytes_FromStringAndSize ") for f in full[1:ext]), full


def test_two_calls_on_one_line_are_told_apart_by_their_addresses(built: Path, tmp_path: Path) -> None:
    """As in Valgrind's DHAT: one line, two call sites, two program points."""
    pps = profiled(built, tmp_path, trim_backtraces=None)
    first, second = find(pps, 100), find(pps, 101)
    two = f"ext_two_on_one_line (nframes_ext.c:{line('nframes_ext.c', 'two')})"
    assert bare(first[0]) == bare(second[0]) and bare(first[0])[2] == two
    assert first[0][2] != second[0][2]  # the addresses differ
    assert [pp[2:] for pp in (first, second)] == [[1, 100, 100, 100], [1, 101, 101, 101]]


def test_trim_backtraces_bounds_all_the_frames(built: Path, tmp_path: Path) -> None:
    frames = find(profiled(built, tmp_path, trim_backtraces=3), 1000)[0]
    assert bare(frames) == [
        "PyMem_Malloc",
        f"make_block (nframes_ext.c:{line('nframes_ext.c', 'make_block')})",
        f"ext_alloc (nframes_ext.c:{line('nframes_ext.c', 'ext_alloc')})",
        py(tmp_path, "inner", "inner"),
    ]


def test_native_profile_data_is_what_the_contract_says(built: Path, tmp_path: Path) -> None:
    code = """
import dhatc._engine as engine
from dhatc import _native_frames
import nframes_ext
engine.start(engine.MODE_HEAP, -1, 0, False, _native_frames.start_argument(False))
nframes_ext.alloc(321)
data = engine.stop()
objects = data["native_objects"]
assert all(type(s) is int and type(e) is int and s < e and type(p) is str and type(b) is int
           for s, e, p, b in objects), objects
addresses = [f for pp in data["pps"] for f in pp[1] if type(f) is int]
assert addresses and all(any(s <= a < e for s, e, _, _ in objects) for a in addresses)
assert any(p.endswith("nframes_ext" + __import__("sysconfig").get_config_var("EXT_SUFFIX"))
           for _, _, p, _ in objects)
engine.release()
engine.start(engine.MODE_HEAP, -1, 0)
assert engine.stop()["native_objects"] is None
engine.release()
print("ok")
"""
    assert run(built, code, tmp_path=tmp_path).stdout.strip() == "ok"


# ---- C code calling malloc, under dhatc run --native -------------------------

def run_file(built: Path, tmp_path: Path, code: str, *options: str) -> Dict[tuple, dict]:
    """Runs `code` under ``dhatc run --native OPTIONS``; its program points by
    their frames without addresses (those with equal ones summed: one call
    site or another of the same line)."""
    run(built, code, dhatc_run=["--native", "-o", str(tmp_path / "out.json"), *options],
        tmp_path=tmp_path)
    data = load(tmp_path / "out.json")
    found: Dict[tuple, dict] = {}
    seen = set()
    for pp, frames in pps_with_frames(data):
        assert tuple(frames) not in seen  # the viewer rejects repeated locations
        seen.add(tuple(frames))
        key = tuple(bare(frames))
        if key in found:
            found[key] = {k: found[key][k] + pp[k] for k in ("tb", "tbk", "eb")}
        else:
            found[key] = pp
    return found


def with_frames(pps: Dict[tuple, dict], *wanted: str) -> List[tuple]:
    return [frames for frames in pps if all(w in frames for w in wanted)]


MALLOC_FROM_C = """
import ctypes
lib = ctypes.CDLL(BUILT + "/libnframes.so")
lib.c_outer.restype = ctypes.c_void_p
lib.c_from_thread.restype = ctypes.c_void_p

def work():
    return [lib.c_outer(4000) for _ in range(3)]  # work

kept = work()  # module
from_thread = lib.c_from_thread(3000)
"""


def test_malloc_from_c_called_by_python(built: Path, tmp_path: Path) -> None:
    pps = run_file(built, tmp_path, MALLOC_FROM_C, "--trim", "64")
    c_make = f"c_make (libnframes.c:{line('libnframes.c', 'c_make')})"
    c_outer = f"c_outer (libnframes.c:{line('libnframes.c', 'c_outer')})"
    [frames] = [f for f in with_frames(pps, c_make, c_outer)
                if pps[f]["tb"] == 12000]
    assert frames[:3] == ("malloc", c_make, c_outer)
    assert pps[frames]["tbk"] == 3 and pps[frames]["eb"] == 12000
    script = tmp_path / "script.py"
    work = f"work ({script}:{script_line(MALLOC_FROM_C, 'work')})"
    module = f"<module> ({script}:{script_line(MALLOC_FROM_C, 'module')})"
    # ctypes' own C code (libffi, _ctypes) comes between: it is not the interpreter.
    assert frames.index(c_outer) < frames.index(work) < frames.index(module) == len(frames) - 1
    assert any("ffi_call" in f for f in frames[3:frames.index(work)])


def test_a_thread_made_by_c_gets_its_native_stack(built: Path, tmp_path: Path) -> None:
    pps = run_file(built, tmp_path, MALLOC_FROM_C, "--trim", "64")
    thread_main = f"thread_main (libnframes.c:{line('libnframes.c', 'thread_main')})"
    [frames] = with_frames(pps, thread_main)
    assert frames[:3] == ("malloc", f"c_make (libnframes.c:{line('libnframes.c', 'c_make')})",
                          thread_main)
    assert pps[frames]["tb"] == 3000
    assert not any(f.endswith(".py:" + f.rpartition(":")[2]) for f in frames)  # no Python


def test_a_library_unloaded_during_the_profile_is_named(built: Path, tmp_path: Path) -> None:
    code = """
import ctypes, _ctypes
lib = ctypes.CDLL(BUILT + "/libnframes.so")
lib.c_outer.restype = ctypes.c_void_p
block = lib.c_outer(2500)
handle = lib._handle
del lib
_ctypes.dlclose(handle)
with open("/proc/self/maps") as maps:
    assert "libnframes.so" not in maps.read()  # gone before the file is written
"""
    pps = run_file(built, tmp_path, code)
    c_make = f"c_make (libnframes.c:{line('libnframes.c', 'c_make')})"
    [frames] = with_frames(pps, c_make)
    assert pps[frames]["tb"] == 2500 and frames[2].startswith("c_outer (libnframes.c:")


def test_a_library_without_debug_information(built: Path, tmp_path: Path) -> None:
    code = """
import ctypes
lib = ctypes.CDLL(BUILT + "/libnframes_nodebug.so")
lib.c_outer.restype = ctypes.c_void_p
block = lib.c_outer(1500)
"""
    pps = run_file(built, tmp_path, code)
    [frames] = [f for f in with_frames(pps, "c_outer (in libnframes_nodebug.so)")
                if pps[f]["tb"] == 1500]
    # c_make is static: no symbol left, only the library and the offset in it.
    assert frames[0] == "malloc"
    assert re.fullmatch(r"\?\?\? \(in libnframes_nodebug\.so\+0x[0-9a-f]+\)", frames[1]), frames
    assert frames[2] == "c_outer (in libnframes_nodebug.so)"


def test_cxx_exceptions_work_while_every_stack_is_unwound(built: Path, tmp_path: Path) -> None:
    """libunwind defines the _Unwind_* functions of C++ exceptions too: they
    must not replace the C++ runtime's while dhatc unwinds."""
    code = """
import ctypes
lib = ctypes.CDLL(BUILT + "/libnframes_cxx.so")
lib.cxx_grow.restype = ctypes.c_void_p
assert lib.cxx_throw_and_catch(300) == 300
vector = lib.cxx_grow(1000)
print("caught them all")
"""
    run(built, code, dhatc_run=["--native", "-o", str(tmp_path / "out.json")], tmp_path=tmp_path)
    data = load(tmp_path / "out.json")
    frames = [bare(f) for _, f in pps_with_frames(data)]
    grow = f"nframes::grow(int) (libnframes_cxx.cpp:{line('libnframes_cxx.cpp', 'grow')})"
    assert any(grow in f for f in frames), frames
    fail = f"nframes::fail(int) (libnframes_cxx.cpp:{line('libnframes_cxx.cpp', 'fail')})"
    thrown = [f for f in frames if fail in f]
    assert thrown and any(any("__cxa_allocate_exception" in g for g in f) for f in thrown)


def test_the_file_loads_in_the_viewer(built: Path, tmp_path: Path) -> None:
    if viewer_dir() is None:
        pytest.skip("Valgrind's DHAT viewer is not installed")
    run_file(built, tmp_path, MALLOC_FROM_C)
    try:
        shown = render(tmp_path / "out.json")
    except ViewerHarnessError as e:
        pytest.fail(f"the viewer could not run: {e}")
    assert shown.error is None
    total = sum(pp["tb"] for pp in load(tmp_path / "out.json")["pps"])
    assert f"{total:,} bytes" in shown.text


# ---- signal handlers ------------------------------------------------------------

SIGNALS = """
import json, platform, signal
import dhatc, nframes_signal

kept = []

def on_usr2(signum, frame):
    kept.append(bytes(7300))  # on_usr2

def inner():
    nframes_signal.raise_in_c(7100)  # inner_raise
    if platform.machine() == "x86_64":
        nframes_signal.fault_in_c(7200)  # inner_fault
    signal.raise_signal(signal.SIGUSR2)  # inner_python

def main():
    signal.signal(signal.SIGUSR2, on_usr2)
    inner()  # main
"""

SIGNALS_RUN = SIGNALS + """
main()  # module
"""

SIGNALS_PROFILER = SIGNALS + """
with dhatc.Profiler(native=True, testing=True, trim_backtraces=None) as profiler:
    main()  # module
print(json.dumps([[list(pp.frames), pp.total_bytes] for pp in profiler.profile.pps]))
"""

#: The kernel's signal frame returns to libc's trampoline, which calls rt_sigreturn: named at
#: its own address (the kernel made it the handler's return address: no call precedes it).
TRAMPOLINE = "__restore_rt (in libc.so.6)"
LIBC_FRAME = re.compile(r"[\w.]+ \((?:[\w./-]+\.c:\d+|in libc\.so\.6)\)")


def signal_stacks(built: Path, tmp_path: Path, under_run: bool) -> Dict[int, tuple]:
    """The frames (without addresses) of SIGNALS' program points by total bytes."""
    if under_run:
        pps = run_file(built, tmp_path, SIGNALS_RUN)
        return {pp["tb"]: frames for frames, pp in pps.items()}
    out = run(built, SIGNALS_PROFILER, tmp_path=tmp_path).stdout
    return {tb: tuple(bare(frames)) for frames, tb in json.loads(out.splitlines()[-1])}


def signal_blocks(under_run: bool, size: int) -> List[Tuple[str, str, int]]:
    """(allocator, its line's marker in allocate(), total bytes) of the blocks a
    C handler of nframes_signal makes for `size`: malloc's are seen under
    dhatc run only."""
    raw = [("PyMem_RawMalloc", "allocate_raw", size + 1)]
    return ([("malloc", "allocate_malloc", size)] if under_run else []) + raw


def c_signal_frames(under_run: bool, tmp_path: Path, allocator: str, allocate_marker: str,
                    handler: str, below: List[str], inner_marker: str) -> List[str]:
    """The frames of a block a C handler of nframes_signal made: `below` are
    those between the signal trampoline and the Python caller."""
    code = SIGNALS_RUN if under_run else SIGNALS_PROFILER
    script = tmp_path / "script.py"
    signal_c = "nframes_signal.c"
    return [
        allocator,
        f"allocate ({signal_c}:{line(signal_c, allocate_marker)})",
        f"{handler} ({signal_c}:{line(signal_c, handler)})",
        TRAMPOLINE,
        *below,
        f"inner ({script}:{script_line(code, inner_marker)})",
        f"main ({script}:{script_line(code, 'main')})",
        f"<module> ({script}:{script_line(code, 'module')})",
    ]


@pytest.mark.parametrize("under_run", [False, True], ids=["profiler", "dhatc-run"])
def test_a_c_signal_handler_shows_the_code_that_raised_the_signal(
        built: Path, tmp_path: Path, under_run: bool) -> None:
    """handler <- the signal trampoline <- raise()'s libc frames <- the C
    function that raised <- the extension's function <- the Python callers."""
    stacks = signal_stacks(built, tmp_path, under_run)
    signal_c = "nframes_signal.c"
    raiser = [f"raiser ({signal_c}:{line(signal_c, 'raiser')})",
              f"sig_raise_in_c ({signal_c}:{line(signal_c, 'raise_in_c')})"]
    for allocator, marker, size in signal_blocks(under_run, 7100):
        frames = list(stacks[size])
        libc = frames[4:frames.index(raiser[0])]
        # raise() in libc: pthread_kill's frames, named from libc's symbols or lines.
        assert libc and libc[-1].startswith("raise ") and all(LIBC_FRAME.fullmatch(f) for f in libc)
        assert frames == c_signal_frames(under_run, tmp_path, allocator, marker, "on_usr1",
                                         libc + raiser, "inner_raise")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the faulting instruction is x86-64's")
@pytest.mark.parametrize("under_run", [False, True], ids=["profiler", "dhatc-run"])
def test_a_fault_shows_the_faulting_instruction(built: Path, tmp_path: Path,
                                                under_run: bool) -> None:
    """The frame a signal interrupted is named at the address the signal
    frame holds, not as a call returning there: here the invalid instruction
    of trap() (the byte before it is its prologue's, on another line)."""
    stacks = signal_stacks(built, tmp_path, under_run)
    signal_c = "nframes_signal.c"
    faulting = [f"trap ({signal_c}:{line(signal_c, 'trap')})",
                f"sig_fault_in_c ({signal_c}:{line(signal_c, 'fault_in_c')})"]
    for allocator, marker, size in signal_blocks(under_run, 7200):
        assert list(stacks[size]) == c_signal_frames(under_run, tmp_path, allocator, marker,
                                                     "on_fault", faulting, "inner_fault")


@pytest.mark.parametrize("under_run", [False, True], ids=["profiler", "dhatc-run"])
def test_a_python_signal_handler_sits_on_the_line_that_raised(
        built: Path, tmp_path: Path, under_run: bool) -> None:
    """A Python handler runs from the interpreter's check of pending signals:
    its frame comes right above the Python line that raised the signal, the
    interpreter's C frames between them left out."""
    stacks = signal_stacks(built, tmp_path, under_run)
    code = SIGNALS_RUN if under_run else SIGNALS_PROFILER
    script = tmp_path / "script.py"
    assert list(stacks[7300 + sys.getsizeof(b"")]) == [
        "PyObject_Calloc",  # bytes(n) is zeroed
        f"on_usr2 ({script}:{script_line(code, 'on_usr2')})",
        f"inner ({script}:{script_line(code, 'inner_python')})",
        f"main ({script}:{script_line(code, 'main')})",
        f"<module> ({script}:{script_line(code, 'module')})",
    ]


# ---- what users get wrong ------------------------------------------------------

def test_without_the_unwinder_the_error_says_what_to_install(tmp_path: Path) -> None:
    code = """
import sys
sys.modules["dhatc._unwinder"] = None  # as if it had not been built
import dhatc
try:
    dhatc.Profiler(native=True)
except RuntimeError as e:
    print(e)
"""
    (tmp_path / "s.py").write_text(code)
    proc = subprocess.run([sys.executable, str(tmp_path / "s.py")], capture_output=True,
                          text=True, env=child_environment(), check=True)
    assert "apt install libunwind-dev libdw-dev" in proc.stdout
    assert "reinstall dhatc" in proc.stdout


def test_run_refuses_interpreter_frames_without_native(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("pass\n")
    proc = subprocess.run(dhatc_command("run", "--native-interpreter-frames", str(tmp_path / "s.py")),
                          capture_output=True, text=True, env=child_environment())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "--native-interpreter-frames is an option of --native: give both")


def test_native_must_be_a_bool() -> None:
    import dhatc

    with pytest.raises(TypeError, match="native must be a bool"):
        dhatc.Profiler(native=1)  # type: ignore[arg-type]


def test_loading_and_unloading_libraries_while_threads_unwind(built: Path, tmp_path: Path) -> None:
    """The dynamic linker's lock and the unwinder's reading of the loaded
    objects meet here: no deadlock, every block counted."""
    code = """
import ctypes, _ctypes, os, threading
lib = ctypes.CDLL(BUILT + "/libnframes.so")
lib.c_outer.restype = ctypes.c_void_p
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]

def allocate():
    for _ in range(2000):
        libc.free(lib.c_outer(64))

def load_and_unload():
    for _ in range(200):
        other = ctypes.CDLL(BUILT + "/libnframes_nodebug.so")
        other.c_outer.restype = ctypes.c_void_p
        libc.free(other.c_outer(32))
        _ctypes.dlclose(other._handle)

threads = [threading.Thread(target=allocate) for _ in range(2)]
threads.append(threading.Thread(target=load_and_unload))
for t in threads:
    t.start()
for t in threads:
    t.join()
if os.fork() == 0:  # a child of a native profile goes on as a plain program
    libc.free(lib.c_outer(16))
    os._exit(0)
os.wait()
"""
    pps = run_file(built, tmp_path, code)
    c_make = f"c_make (libnframes.c:{line('libnframes.c', 'c_make')})"
    blocks = sum(pp["tbk"] for frames, pp in pps.items() if c_make in frames and pp["tb"] % 64 == 0
                 and pp["tb"] // pp["tbk"] == 64)
    assert blocks == 4000
    unloaded = [pp for frames, pp in pps.items() if "c_outer (in libnframes_nodebug.so)" in frames]
    assert sum(pp["tbk"] for pp in unloaded) == 200


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the generated code is x86-64's")
def test_generated_code_without_unwind_information(built: Path, tmp_path: Path) -> None:
    """A JIT's frame: no crash, the block counted, the frame says what it is,
    and the Python frames on both sides are there."""
    code = """
import ctypes, dhatc
lib = ctypes.CDLL(BUILT + "/libnframes_jit.so")
kept = []
def callback():
    kept.append(bytes(4321))  # callback
function = ctypes.CFUNCTYPE(None)(callback)
def main():
    with dhatc.Profiler(native=True, testing=True, trim_backtraces=None) as profiler:
        for _ in range(3):
            lib.call_through_generated_code(function)  # main
    [pp] = [pp for pp in profiler.profile.pps if pp.total_bytes == 3 * (4321 + sys.getsizeof(b""))]
    print(pp.total_blocks)
    for frame in pp.frames:
        print(frame)
main()
"""
    out = run(built, code, tmp_path=tmp_path).stdout.splitlines()
    assert out[0] == "3"
    frames = bare(out[1:])
    script = tmp_path / "script.py"
    assert frames[1] == f"callback ({script}:{script_line(code, 'callback')})"
    assert frames[-1] == f"main ({script}:{script_line(code, 'main')})"
    assert "??? (no object: generated code)" in frames


INLINED = """
import ctypes
lib = ctypes.CDLL(BUILT + "/libnframes_inline.so")
lib.inline_outer.restype = ctypes.c_void_p
other = ctypes.c_void_p()
block = lib.inline_outer(6400, ctypes.byref(other))  # module
"""


def inlined_frames(which: str) -> List[str]:
    """The frames inline_outer's `which` ("first", "second") call of inlined
    functions gives in libnframes_inline.c, innermost first."""
    source = "libnframes_inline.c"
    return [f"inline_leaf ({source}:{line(source, 'inline_leaf')})",
            f"inline_middle ({source}:{line(source, 'inline_middle')})",
            f"inline_outer ({source}:{line(source, 'inline_outer_' + which)})"]


def test_inlined_functions_are_frames_of_their_own(built: Path, tmp_path: Path) -> None:
    """Each function inlined at an address is a frame, innermost first, at
    the line of its own code or of the call it inlines; all of them with
    that one address, as Valgrind shows them."""
    run(built, INLINED, dhatc_run=["--native", "-o", str(tmp_path / "out.json")], tmp_path=tmp_path)
    found = {pp["tb"]: frames for pp, frames in pps_with_frames(load(tmp_path / "out.json"))}
    module = f"<module> ({tmp_path / 'script.py'}:{script_line(INLINED, 'module')})"
    for size, which in ((6400, "first"), (6401, "second")):
        frames = found[size]
        assert bare(frames[:4]) == ["malloc", *inlined_frames(which)]
        assert len({ADDRESS.match(f).group() for f in frames[1:4]}) == 1, frames  # one address
        assert ADDRESS.match(frames[4]) and bare(frames)[-1] == module


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_inlined_frames_read_as_valgrinds(built: Path, tmp_path: Path) -> None:
    """Valgrind's DHAT on a C program calling the same library shows the same
    strings for its frames (its addresses aside) and repeats the address."""
    program = tmp_path / "inline_main.c"
    program.write_text("#include <stdlib.h>\n"
                       "void *inline_outer(size_t size, void **other);\n"
                       "int main(void) {\n"
                       "    void *other;\n"
                       "    return inline_outer(6400, &other) == NULL;\n"
                       "}\n")
    subprocess.run(["gcc", "-O0", "-g", str(program), "-o", str(tmp_path / "inline_main"),
                    f"-L{built}", "-lnframes_inline", f"-Wl,-rpath,{built}"], check=True)
    out = tmp_path / "valgrind.json"
    subprocess.run(["valgrind", "--tool=dhat", f"--dhat-out-file={out}",
                    str(tmp_path / "inline_main")], check=True, capture_output=True, timeout=300)
    found = {pp["tb"]: frames for pp, frames in pps_with_frames(load(out))}
    for size, which in ((6400, "first"), (6401, "second")):
        frames = found[size]
        # Valgrind 3.19 starts the stack at its malloc replacement; newer ones
        # (Debian sid's) leave that frame out: the library's frames follow it.
        [leaf] = [i for i, f in enumerate(bare(frames)) if f.startswith("inline_leaf ")]
        assert all("malloc" in f for f in frames[:leaf]), frames
        assert bare(frames[leaf:leaf + 3]) == inlined_frames(which)
        assert len({ADDRESS.match(f).group() for f in frames[leaf:leaf + 3]}) == 1, frames


#: The frame that stands for the C frames an unwinding that stopped early did not reach.
STOPPED = "[native unwinding stopped here] (the C frames below are missing)"

STOPS = """
import ctypes, platform
lib = ctypes.CDLL(BUILT + "/libnframes_stop.so")
lib.stop_outer.restype = ctypes.c_void_p

def work():
    kept = [lib.stop_outer(6100)]  # work_outer
    if platform.machine() == "x86_64":
        lib.stop_in_generated_code.restype = ctypes.c_void_p
        kept.append(lib.stop_in_generated_code(6200))  # work_generated
    return kept

kept = work()  # module
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"),
                    reason="the fixture's unwind information is written for x86-64 and AArch64")
def test_an_unwinding_that_stops_early_is_marked(built: Path, tmp_path: Path) -> None:
    """Where the C stack cannot be unwound down to the evaluation loop that
    runs the Python frames below, a frame says that C frames are missing
    there, between the last native frame found and those Python frames."""
    pps = run_file(built, tmp_path, STOPS)
    script = tmp_path / "script.py"
    below = [f"<module> ({script}:{script_line(STOPS, 'module')})"]
    [outer] = [f for f in pps if pps[f]["tb"] == 6100]
    stop_make = f"stop_make (libnframes_stop.c:{line('libnframes_stop.c', 'stop_make')})"
    assert outer == ("malloc", stop_make, STOPPED,
                     f"work ({script}:{script_line(STOPS, 'work_outer')})", *below)
    if platform.machine() == "x86_64":
        [generated] = [f for f in pps if pps[f]["tb"] == 6200]
        assert generated == ("malloc", "??? (no object: generated code)", STOPPED,
                             f"work ({script}:{script_line(STOPS, 'work_generated')})", *below)
    # A stack that reaches its Python frames has no such frame.
    assert [frames for frames in pps
            if STOPPED in frames and pps[frames]["tb"] not in (6100, 6200)] == []


def test_the_unwinders_unwind_functions_stay_its_own(tmp_path: Path) -> None:
    """libunwind defines _Unwind_RaiseException & co.: loaded with dhatc._unwinder
    they must not become the ones C++ code loaded later finds."""
    code = """
import ctypes, ctypes.util, dhatc._unwinder
libdl = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
address = ctypes.cast(libdl._Unwind_RaiseException, ctypes.c_void_p).value \\
    if hasattr(libdl, "_Unwind_RaiseException") else None
if address is None:
    print("none")
else:
    info = Info()
    assert libdl.dladdr(ctypes.c_void_p(address), ctypes.byref(info))
    print(info.fname.decode())
"""
    (tmp_path / "s.py").write_text(code)
    proc = subprocess.run([sys.executable, str(tmp_path / "s.py")], capture_output=True,
                          text=True, env=child_environment(), check=True)
    found = proc.stdout.strip()
    assert found == "none" or "libunwind" not in found, found


def test_followed_children_get_native_frames_too(built: Path, tmp_path: Path) -> None:
    code = """
import subprocess
child = ("import ctypes; lib = ctypes.CDLL(%r); lib.c_outer.restype = ctypes.c_void_p; "
         "lib.c_outer(7777)" % (BUILT + "/libnframes.so"))
subprocess.run([sys.executable, "-c", child], check=True)
"""
    run(built, code, dhatc_run=["--native", "--follow-children", "-o", str(tmp_path / "out.json")],
        tmp_path=tmp_path)
    [child_file] = [p for p in tmp_path.glob("out.*.json")]
    c_make = f"c_make (libnframes.c:{line('libnframes.c', 'c_make')})"
    frames = [bare(f) for pp, f in pps_with_frames(load(child_file)) if pp["tb"] == 7777]
    assert frames and frames[0][:2] == ["malloc", c_make]
