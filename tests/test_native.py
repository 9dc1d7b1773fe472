"""Native allocations: the preload library (libdhatc_preload.so) and the
extension's side of it.  Blocks that C code allocates with malloc & co. are
recorded with the calling thread's Python stack, under a top frame naming the
C function; each block is counted once; without the library, Profiler says
so once."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

from dhat_helpers import frames_of, line_of, load, pps_with_frames
from native_util import (
    NATIVE_KINDS,
    PRELOAD,
    by_kind_and_line,
    last_json_line,
    native_only,
    with_prelude,
)

WITH_PRELOAD = {"LD_PRELOAD": PRELOAD}
PAGE = os.sysconf("SC_PAGESIZE")


# --- the library as built ------------------------------------------------------


def _readelf(*args: str) -> str:
    return subprocess.run(["readelf", *args, PRELOAD], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_library_is_installed_without_python_and_binds_now():
    assert os.path.isfile(PRELOAD)
    dynamic = _readelf("-dW")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dynamic)
    assert not [lib for lib in needed if "python" in lib], needed
    assert "BIND_NOW" in dynamic or "NOW" in dynamic  # no lazy binding inside malloc
    # No thread-local storage of its own (initial-exec TLS lives in the extension).
    assert " TLS " not in _readelf("-lW")


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_library_exports_the_interposers_and_the_attach_function_only():
    out = subprocess.run(["nm", "-D", "--defined-only", PRELOAD], capture_output=True,
                         text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert exported == {*NATIVE_KINDS, "free", "dhatc_preload_attach", "dhatc_preload_abi"}


def test_native_tracking_reports_whether_the_library_is_loaded(run_python):
    code = "from dhatc import _engine\nprint(_engine.native_tracking())\n"
    assert run_python(code).stdout.strip() == "False"
    assert run_python(code, env=WITH_PRELOAD).stdout.strip() == "True"


def test_library_runs_a_program_without_python(tmp_path):
    """The library stands on its own: any program can run with it."""
    proc = subprocess.run(["sort"], input="b\na\n", env={**os.environ, **WITH_PRELOAD},
                          capture_output=True, text=True, check=True)
    assert proc.stdout == "a\nb\n"
    assert proc.stderr == ""


# --- exact figures -----------------------------------------------------------------

EXACT = with_prelude("""
def work():
    a = malloc(1000)                                         # @malloc
    c = calloc(10, 123)                                      # @calloc
    r = malloc(1000)                                         # @grow
    r = realloc(r, 5000)
    r = realloc(r, 200)
    free(r)
    free(a)
    free(c)
    p = ctypes.c_void_p()
    assert posix_memalign(ctypes.byref(p), 64, 4000) == 0    # @posix_memalign
    free(p.value)
    q = aligned_alloc(256, 2048)                             # @aligned_alloc
    m = memalign(128, 3000)                                  # @memalign
    v = valloc(5000)                                         # @valloc
    pv = pvalloc(5000)                                       # @pvalloc
    n = realloc(None, 700)                                   # @realloc_null
    z = realloc(malloc(300), 0)                              # @realloc_zero
    assert z is None
    ctypes.set_errno(0)
    assert malloc(1 << 62) is None                           # @failed_malloc
    assert ctypes.get_errno() == errno.ENOMEM
    assert calloc(1 << 62, 16) is None                       # @failed_calloc
    assert realloc(q, 1 << 62) is None                       # @failed_realloc
    bad = ctypes.c_void_p()
    assert posix_memalign(ctypes.byref(bad), 3, 100) == errno.EINVAL  # @failed_memalign
    # errno survives a recorded allocation and a recorded free.
    ctypes.set_errno(1234)
    t = malloc(10)                                           # @errno
    free(t)
    assert ctypes.get_errno() == 1234
    return [q, m, v, pv, n]

with dhatc.Profiler(testing=True) as profiler:
    live = work()
dump(profiler.profile)
for block in live:
    free(block)
""")


def test_exact_figures_for_each_allocator(run_python):
    proc = run_python(EXACT, env=WITH_PRELOAD)
    got = native_only(by_kind_and_line(last_json_line(proc.stdout), "work"))
    source = EXACT

    def at(marker: str) -> int:
        return line_of(source, f"# @{marker}")

    pv_size = (5000 + PAGE - 1) // PAGE * PAGE  # pvalloc hands out whole pages
    # (tb, tbk, mb, mbk, eb, ebk)
    expected = {
        ("malloc", at("malloc")): (1000, 1, 1000, 1, 0, 0),
        ("calloc", at("calloc")): (1230, 1, 1230, 1, 0, 0),
        # grow then shrink: one block, counted three times in the totals (as
        # Valgrind and dhat-rs count a realloc), at its allocation's PP.
        ("malloc", at("grow")): (1000 + 5000 + 200, 3, 5000, 1, 0, 0),
        ("posix_memalign", at("posix_memalign")): (4000, 1, 4000, 1, 0, 0),
        ("aligned_alloc", at("aligned_alloc")): (2048, 1, 2048, 1, 2048, 1),
        ("memalign", at("memalign")): (3000, 1, 3000, 1, 3000, 1),
        ("valloc", at("valloc")): (5000, 1, 5000, 1, 5000, 1),
        ("pvalloc", at("pvalloc")): (pv_size, 1, pv_size, 1, pv_size, 1),
        ("realloc", at("realloc_null")): (700, 1, 700, 1, 700, 1),
        # realloc(p, 0) frees p (glibc) and returns NULL.
        ("malloc", at("realloc_zero")): (300, 1, 300, 1, 0, 0),
        ("malloc", at("errno")): (10, 1, 10, 1, 0, 0),
    }
    assert got == expected


def _libc_has(name: str) -> bool:
    return hasattr(ctypes.CDLL(None), name)


@pytest.mark.skipif(not _libc_has("free_sized"),
                    reason="the C library has no free_sized (C23; glibc 2.43+)")
def test_frees_through_free_sized_are_seen(run_python):
    """C23's free_sized and free_aligned_sized end in the free the library
    interposes (glibc routes them there): their blocks are freed in the
    profile, not left live."""
    code = with_prelude("""
    free_sized = _fn("free_sized", None, _vp, _sz)
    free_aligned_sized = _fn("free_aligned_sized", None, _vp, _sz, _sz)

    def work():
        a = malloc(1000)                                         # @malloc
        free_sized(a, 1000)
        b = aligned_alloc(64, 640)                               # @aligned_alloc
        free_aligned_sized(b, 64, 640)

    with dhatc.Profiler(testing=True) as profiler:
        work()
    dump(profiler.profile)
    """)
    proc = run_python(code, env=WITH_PRELOAD)
    got = native_only(by_kind_and_line(last_json_line(proc.stdout), "work"))
    assert got == {
        ("malloc", line_of(code, "# @malloc")): (1000, 1, 1000, 1, 0, 0),
        ("aligned_alloc", line_of(code, "# @aligned_alloc")): (640, 1, 640, 1, 0, 0),
    }


def test_blocks_allocated_before_the_profile_are_ignored_or_renewed(run_python):
    code = with_prelude("""
    old_freed = malloc(1111)
    old_kept = malloc(2222)
    old_grown = malloc(3333)

    def work():
        free(old_freed)
        g = realloc(old_grown, 4444)                          # @grown
        return g

    with dhatc.Profiler(testing=True) as profiler:
        grown = work()
        stats = dhatc.HeapStats.get()
    dump(profiler.profile)
    """)
    proc = run_python(code, env=WITH_PRELOAD)
    got = native_only(by_kind_and_line(last_json_line(proc.stdout), "work"))
    # A block from before the profile, reallocated within it: a new block.
    assert got == {("realloc", line_of(code, "# @grown")): (4444, 1, 4444, 1, 4444, 1)}


# --- counted once --------------------------------------------------------------------

COUNTED_ONCE = with_prelude("""
raw_malloc = ctypes.pythonapi.PyMem_RawMalloc
raw_malloc.restype = ctypes.c_void_p
raw_malloc.argtypes = [ctypes.c_size_t]
raw_free = ctypes.pythonapi.PyMem_RawFree
raw_free.argtypes = [ctypes.c_void_p]

def work():
    b = bytes(200_000)                                       # @bytes
    p = raw_malloc(123_457)                                  # @raw
    raw_free(p)
    return b

with dhatc.Profiler(testing=True) as profiler:
    work()
dump(profiler.profile)
""")


@pytest.mark.parametrize("pythonmalloc", [None, "malloc"])
def test_a_pymem_block_that_reaches_malloc_is_counted_once(run_python, pythonmalloc):
    env = dict(WITH_PRELOAD)
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    proc = run_python(COUNTED_ONCE, env=env)
    got = by_kind_and_line(last_json_line(proc.stdout), "work")
    bytes_line = line_of(COUNTED_ONCE, "# @bytes")
    raw_line = line_of(COUNTED_ONCE, "# @raw")
    assert got[("PyMem_RawMalloc", raw_line)] == (123_457, 1, 123_457, 1, 0, 0)
    big = [(k, v) for k, v in got.items() if k[1] == bytes_line and v[0] >= 200_000]
    assert len(big) == 1, got
    (kind, _), (tb, tbk, *_rest) = big[0]
    assert kind.startswith("PyObject_") and tbk == 1 and tb == 200_033
    assert not native_only({k: v for k, v in got.items() if k[1] in (bytes_line, raw_line)})


def test_allocations_of_other_threads_are_filtered_by_this_thread_only(run_python):
    code = with_prelude("""
    import threading

    def other():
        free(malloc(5555))

    def work():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        p = malloc(6666)                                      # @mine
        free(p)

    with dhatc.Profiler(testing=True, this_thread_only=True) as profiler:
        work()
    dump(profiler.profile)
    """)
    dumped = last_json_line(run_python(code, env=WITH_PRELOAD).stdout)
    sizes = {tb for frames, tb, *_ in dumped if frames[0] == "malloc"}
    assert 6666 in sizes and 5555 not in sizes


def test_native_blocks_appear_in_the_file_under_the_c_function(run_python, tmp_path):
    code = with_prelude("""
    def work():
        p = calloc(3, 33_333)                                # @calloc
        return p

    with dhatc.Profiler(file_name="out.json"):
        kept = work()
    """)
    run_python(code, env=WITH_PRELOAD)
    data = load(tmp_path / "out.json")
    line = line_of(code, "# @calloc")
    matches = [pp for pp, fs in pps_with_frames(data)
               if fs[0] == "calloc" and fs[1].endswith(f"snippet.py:{line})")]
    assert len(matches) == 1
    assert (matches[0]["tb"], matches[0]["tbk"], matches[0]["eb"]) == (99_999, 1, 99_999)


# --- the note without the library ------------------------------------------------------

NOTE_PREFIX = "dhat: note: blocks that C code allocates directly with malloc"


def test_without_the_library_profiles_work_and_say_so_once(run_python):
    code = with_prelude("""
    for _ in range(2):
        with dhatc.Profiler(testing=False, file_name="out.json") as profiler:
            p = malloc(4321)
        free(p)
    with dhatc.Profiler(testing=True) as profiler:
        stats = dhatc.HeapStats.get()
    """)
    proc = run_python(code, env={"DHATC_QUIET": "0"})
    lines = proc.stderr.splitlines()
    notes = [line for line in lines if line.startswith("dhat: note:")]
    assert len(notes) == 1 and notes[0].startswith(NOTE_PREFIX)
    assert "python -m dhatc run" in notes[0]
    assert lines[0] == notes[0]  # before the first summary
    assert sum(line.startswith("dhat: Total:") for line in lines) == 2  # both summaries


@pytest.mark.parametrize(
    "env, profiler",
    [
        ({"DHATC_QUIET": "1"}, 'dhatc.Profiler(file_name="out.json")'),
        ({"DHATC_QUIET": "0", **WITH_PRELOAD}, 'dhatc.Profiler(file_name="out.json")'),
        ({"DHATC_QUIET": "0"}, "dhatc.Profiler(testing=True)"),
        ({"DHATC_QUIET": "0"}, 'dhatc.Profiler(mode="ad-hoc", file_name="out.json")'),
    ],
    ids=["quiet", "with-library", "testing-mode", "ad-hoc"],
)
def test_no_note_when_quiet_tracked_testing_or_ad_hoc(run_python, env, profiler):
    proc = run_python(f"import dhatc\nwith {profiler}:\n    x = [0] * 100\n", env=env)
    assert "dhat: note:" not in proc.stderr


# --- oracle: Valgrind's DHAT ---------------------------------------------------------------

ORACLE = with_prelude("""
def work():
    kept = []
    for i in range(3):
        kept.append(malloc(777_001 + i))
    for i in range(2):
        kept.append(calloc(7, 11_111 + i))
    r = malloc(33_331)
    r = realloc(r, 99_991)
    r = realloc(r, 13_331)
    kept.append(r)
    p = ctypes.c_void_p()
    assert posix_memalign(ctypes.byref(p), 64, 45_451) == 0
    kept.append(p.value)
    kept.append(aligned_alloc(4096, 8192 * 3))
    kept.append(memalign(256, 54_321))
    for block in kept[:4]:
        free(block)
    return kept[4:]

with dhatc.Profiler(file_name="dhatc.json"):
    live = work()
""")


# Valgrind up to 3.2x showed its own replacement of the aligned allocators,
# memalign, as the top frame; later ones show ours (posix_memalign, ...).
# Both sides are compared with the three put together.
ALIGNED = {"posix_memalign": "aligned", "aligned_alloc": "aligned", "memalign": "aligned"}


def _called_by_ctypes(frames: list) -> bool:
    """A Valgrind stack of a block that a ctypes call allocated directly: only
    allocator functions (Valgrind's, then ours) above libffi's ffi_call.
    Python's own allocations made inside a ctypes call (PyFrame_New called
    through ctypes, say) are PyMem blocks in dhatc's file, not malloc ones, and
    what libffi allocates for itself (closures, ffi_closure_alloc) is not a
    call's."""
    allocators = {*NATIVE_KINDS, "free"}
    rest = iter(frames)
    for frame in rest:
        if _valgrind_function(frame) not in allocators:
            break
    else:
        return False
    for frame in [frame, *rest]:
        if "ffi_call" in frame:
            return True
        if "libffi" not in frame:
            return False
    return False


def _valgrind_function(frame: str) -> str:
    match = re.match(r"0x[0-9A-Fa-f]+: (\w+) ", frame)
    return match.group(1) if match else frame


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_valgrind_dhat_agrees_on_native_blocks(tmp_path):
    """Same process, two profilers: Valgrind's DHAT sees libc's allocator
    underneath ours.  With PYTHONMALLOC=malloc, the blocks C code allocates
    through ctypes (the ones under ffi_call in Valgrind's stacks) must have the
    same counts and bytes per C function in both files."""
    script = tmp_path / "oracle.py"
    script.write_text(ORACLE)
    env = {**os.environ, **WITH_PRELOAD, "PYTHONMALLOC": "malloc", "DHATC_QUIET": "1"}
    subprocess.run(
        # nouserintercepts: Valgrind replaces libc's allocator but leaves ours
        # (which otherwise it would replace too, as it does any library's malloc).
        ["valgrind", "--tool=dhat", "--soname-synonyms=somalloc=nouserintercepts",
         f"--dhat-out-file={tmp_path / 'valgrind.json'}",
         sys.executable, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=900,
    )
    ours = load(tmp_path / "dhatc.json")
    theirs = load(tmp_path / "valgrind.json")

    def sums(data, keep, name):
        out = {}
        for pp in data["pps"]:
            frames = frames_of(data, pp)
            if keep(frames):
                key = name(frames)
                tb, tbk, eb, ebk = out.get(key, (0, 0, 0, 0))
                out[key] = (tb + pp["tb"], tbk + pp["tbk"], eb + pp["eb"], ebk + pp["ebk"])
        return out

    ours_by_function = sums(
        ours,
        lambda fs: fs[0] in NATIVE_KINDS and any(f.startswith("work (") for f in fs),
        lambda fs: ALIGNED.get(fs[0], fs[0]),
    )
    theirs_by_function = sums(
        theirs,
        _called_by_ctypes,
        lambda fs: ALIGNED.get(_valgrind_function(fs[0]), _valgrind_function(fs[0])),
    )
    assert ours_by_function == theirs_by_function
    assert ours_by_function["malloc"] == (3 * 777_001 + 3 + 33_331 + 99_991 + 13_331, 6, 13_331, 1)
    assert ours_by_function["calloc"] == (7 * (11_111 + 11_112), 2, 7 * 11_112, 1)
    aligned = 45_451 + 8192 * 3 + 54_321
    assert ours_by_function["aligned"] == (aligned, 3, aligned, 3)
    assert set(ours_by_function) == {"malloc", "calloc", "aligned"}

