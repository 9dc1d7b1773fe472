"""Stress: native threads of their own (no Python state, no GIL) and Python
threads calling C without the GIL allocate and free at once, through every
interposed function, with failures, realloc(p, 0) and allocations during
thread exit, while the main thread forks again and again.  The figures must
be exact, the children must be able to profile themselves, and nothing may
hang (the subprocess timeout is only a hang detector; nothing is timed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from native_util import PRELOAD, last_json_line, totals_by_kind, with_prelude

FIXTURE = Path(__file__).parent / "fixtures" / "native_stress.c"
KINDS = ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc"]


@pytest.fixture(scope="module")
def stress_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("native_stress") / "libnative_stress.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-D_GNU_SOURCE", "-pthread", str(FIXTURE), "-o", str(out)],
        check=True,
    )
    return out


STRESS = """
import threading
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with threads (3.12+)

NATIVE_THREADS, PYTHON_THREADS, ROUNDS, FORKS = 4, 2, 3000, 16
lib = ctypes.CDLL(sys.argv[1])
lib.stress_expected.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]

def py_worker(i):
    lib.stress_python_worker(i, ROUNDS)

def in_child():
    # The child does not record into the parent's profile; it can profile itself.
    status = 3
    try:
        with dhatc.Profiler(testing=True) as child_profiler:
            block = malloc(54_321)
            free(block)
        hits = [pp for pp in child_profiler.profile.pps
                if pp.frames[0] == "malloc" and pp.total_bytes == 54_321]
        status = 0 if len(hits) == 1 and hits[0].total_blocks == 1 else 4
    finally:
        os._exit(status)

with dhatc.Profiler(testing=True) as profiler:
    assert lib.stress_start(NATIVE_THREADS, ROUNDS) == 0
    workers = [threading.Thread(target=py_worker, args=(i,)) for i in range(PYTHON_THREADS)]
    for t in workers:
        t.start()
    statuses = []
    for _ in range(FORKS):
        pid = os.fork()
        if pid == 0:
            in_child()
        statuses.append(os.waitpid(pid, 0)[1])
    for t in workers:
        t.join()
    lib.stress_join()

expected = {}
for group in (0, 1):
    for kind in range(5):
        out = (ctypes.c_uint64 * 4)()
        lib.stress_expected(group, kind, out)
        expected[f"{group}:{kind}"] = list(out)
print(json.dumps({"statuses": statuses, "failures": lib.stress_failures(),
                  "dropped": profiler.profile.dropped, "expected": expected}))
dump(profiler.profile)
lib.stress_release()
"""


@pytest.mark.parametrize("pythonmalloc", [None, "malloc"])
def test_threads_and_forks_give_exact_figures(run_python, stress_lib, pythonmalloc):
    env = {"LD_PRELOAD": PRELOAD}
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    proc = run_python(with_prelude(STRESS), env=env, args=(str(stress_lib),), timeout=600)
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-2])
    dumped = last_json_line(proc.stdout)
    assert summary["statuses"] == [0] * len(summary["statuses"])
    assert summary["failures"] == 0
    assert summary["dropped"] == 0

    def expected(group: int) -> dict:
        out = {}
        for index, kind in enumerate(KINDS):
            figures = summary["expected"][f"{group}:{index}"]
            if figures[1]:
                out[kind] = figures
        return out

    # Our own threads have no Python frames: their blocks have the C function alone.
    native = {k: v for k, v in totals_by_kind(dumped, depth=0).items() if k in KINDS}
    assert native == expected(0)

    # Python threads: under py_worker's frame, whatever lies below it.
    from collections import defaultdict

    python: dict = defaultdict(lambda: [0, 0, 0, 0])
    for frames, tb, tbk, _mb, _mbk, eb, ebk in dumped:
        if frames[0] in KINDS and any(f.startswith("py_worker (") for f in frames[1:]):
            for i, value in enumerate((tb, tbk, eb, ebk)):
                python[frames[0]][i] += value
    assert dict(python) == expected(1)
