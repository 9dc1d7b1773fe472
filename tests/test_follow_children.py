"""`python -m dhatc run --follow-children`: every Python process the target
starts is profiled too, each into its own file beside the target's
(dhat-heap.<pid>.json), its cmd saying whose child it is; the target's
summary lists the files; --merge adds one merged file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from dhat_helpers import frame, line_of, load, pps_with_frames

CTYPES = """\
import ctypes, os, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
"""

LISTED = re.compile(r"^dhat: The data of child process (\d+) has been saved to (\S+)$")


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def follow(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
           flags: tuple = ("--follow-children",)) -> "subprocess.CompletedProcess[str]":
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONPATH")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "dhatc", "run", *flags, *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300)


def listed_children(stderr: str) -> Dict[int, str]:
    """The child files the target's summary lists, by pid."""
    found = {}
    for line in stderr.splitlines():
        match = LISTED.match(line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def natives(data: dict) -> Dict[int, List[List[str]]]:
    """The frames of the malloc program points, by block size (one block each)."""
    out: Dict[int, List[List[str]]] = {}
    for pp, fs in pps_with_frames(data):
        if fs[0] == "malloc":
            out.setdefault(pp["tb"], []).append(fs)
    return out


# --- fork children ------------------------------------------------------------------------

FORK = CTYPES + """\
kept = libc.malloc(11_111)                                  # @parent

def forker():
    pid = os.fork()                                         # @fork
    if pid == 0:
        kept_too = libc.malloc(22_222)                      # @child
        END
    return pid

pid = forker()
if pid:
    _, status = os.waitpid(pid, 0)
    print(os.getpid(), pid, os.WEXITSTATUS(status))
after = libc.malloc(33_333)                                 # @after
"""


@pytest.mark.parametrize(
    "end, status",
    [("os._exit(0)", 0), ("sys.exit(3)", 3), ("return 0", 0)],
    ids=["os-exit", "sys-exit", "falls-through"],
)
def test_a_fork_child_gets_its_own_profile_rooted_at_the_fork(tmp_path, end, status):
    code = FORK.replace("END", end)
    write(tmp_path / "prog.py", code)
    got = follow(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    first = got.stdout.splitlines()[0].split()
    parent, child, child_status = (int(x) for x in first)
    assert child_status == status
    # The child's file beside the parent's, named by its pid, and listed.
    assert listed_children(got.stderr) == {child: f"dhat-heap.{child}.json"}
    script = tmp_path / "prog.py"
    child_data = load(tmp_path / f"dhat-heap.{child}.json")
    assert child_data["pid"] == child
    assert child_data["cmd"] == f"{sys.executable} prog.py (fork child of pid {parent})"
    # Rooted at the frame that called os.fork: forker, and nothing below it.
    assert natives(child_data)[22_222] == [[
        "malloc", frame("forker", script, line_of(code, "# @child")),
    ]]
    assert 11_111 not in natives(child_data)  # the parent's, from before the fork
    if end == "return 0":
        # The child went on with the parent's code, below the fork's frame:
        # then its stacks go down to the bottom (the root frame is gone).
        after, = natives(child_data)[33_333]
        assert after[:2] == ["malloc", frame("<module>", script, line_of(code, "# @after"))]
    parent_data = load(tmp_path / "dhat-heap.json")
    assert parent_data["pid"] == parent and parent_data["cmd"] == f"{sys.executable} prog.py"
    assert 22_222 not in natives(parent_data)
    assert natives(parent_data)[11_111] == [[
        "malloc", frame("<module>", script, line_of(code, "# @parent"))]]
    # The parent's summary, once, then the list of children.
    assert got.stderr.count("dhat: Total:") == 1


def test_fork_children_of_fork_children_are_followed(tmp_path):
    code = CTYPES + textwrap.dedent("""\
    def spawn_tree(depth):
        if depth == 0:
            libc.malloc(7_777)
            return
        pid = os.fork()
        if pid == 0:
            spawn_tree(depth - 1)
            os._exit(0)
        os.waitpid(pid, 0)
    spawn_tree(2)
    """)
    write(tmp_path / "prog.py", code)
    got = follow(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    children = listed_children(got.stderr)
    assert len(children) == 2
    target = load(tmp_path / "dhat-heap.json")["pid"]
    parent_of = {pid: int(re.search(r"\(fork child of pid (\d+)\)$",
                                    load(tmp_path / name)["cmd"]).group(1))
                 for pid, name in children.items()}
    child, = [pid for pid, parent in parent_of.items() if parent == target]
    grandchild, = [pid for pid, parent in parent_of.items() if parent == child]
    assert 7_777 in natives(load(tmp_path / children[grandchild]))
    assert 7_777 not in natives(load(tmp_path / children[child]))


# --- children that start a new Python program ----------------------------------------------

CHILD = CTYPES + """\
block = libc.malloc(44_444)                                 # @child
print("child out", sys.argv[1:], [p for p in sys.path if "_follow_site" in p])
print("child err", file=sys.stderr)
"""

PARENT = """\
import os, subprocess, sys
proc = subprocess.run([sys.executable, "child.py", "an arg"], capture_output=True, text=True)
print(os.getpid(), proc.returncode, repr(proc.stdout), repr(proc.stderr))
sh = subprocess.run(["sh", "-c", "echo not python"], capture_output=True, text=True)
print(repr(sh.stdout))
"""


def test_a_python_subprocess_gets_its_own_profile_and_its_output_is_untouched(tmp_path):
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "prog.py", PARENT)
    got = follow(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    line, sh_line = got.stdout.splitlines()
    parent = int(line.split()[0])
    # What the child printed reaches its parent unchanged: no dhat line, no
    # dhatc directory on its sys.path.
    assert line == f"{parent} 0 \"child out ['an arg'] []\\n\" 'child err\\n'"
    assert sh_line == "'not python\\n'"  # a non-Python child runs as it would
    children = listed_children(got.stderr)
    assert len(children) == 1
    (child, name), = children.items()
    data = load(tmp_path / name)
    assert data["cmd"] == f"{sys.executable} child.py an arg (child of pid {parent})"
    # Rooted at the child's own top frame, with its native blocks (LD_PRELOAD kept).
    assert natives(data)[44_444] == [[
        "malloc", frame("<module>", tmp_path / "child.py", line_of(CHILD, "# @child"))]]
    assert 44_444 not in natives(load(tmp_path / "dhat-heap.json"))
    # Nothing else: the shell wrote no file.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["child.py", "prog.py", "dhat-heap.json", name])


def test_a_childs_own_sitecustomize_still_runs(tmp_path):
    write(tmp_path / "site" / "sitecustomize.py", "import os\nos.environ['MINE'] = 'ran'\n")
    write(tmp_path / "child.py", "import os, sitecustomize\n"
                                 "print(os.environ.get('MINE'), sitecustomize.__file__)\n")
    write(tmp_path / "prog.py", "import subprocess, sys\n"
                                "subprocess.run([sys.executable, 'child.py'], check=True)\n")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    got = follow(["prog.py"], tmp_path, env=env)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"ran {tmp_path / 'site' / 'sitecustomize.py'}\n"
    assert len(listed_children(got.stderr)) == 1


def test_options_of_the_run_reach_the_children(tmp_path):
    write(tmp_path / "child.py", "import dhatc\nfor w in (3, 4):\n    dhatc.ad_hoc_event(w)\n")
    write(tmp_path / "prog.py", "import subprocess, sys\n"
                                "subprocess.run([sys.executable, 'child.py'], check=True)\n")
    got = follow(["--mode", "ad-hoc", "-o", "events.json", "prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    (child, name), = listed_children(got.stderr).items()
    assert name == f"events.{child}.json"
    data = load(tmp_path / name)
    assert data["mode"] == "ad-hoc" and [(pp["tb"], pp["tbk"]) for pp in data["pps"]] == [(7, 2)]


# --- multiprocessing -------------------------------------------------------------------------

MULTIPROCESSING = CTYPES + """\
import multiprocessing

def child(queue):
    block = libc.malloc(55_555)                             # @child
    queue.put(os.getpid())

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    queue = ctx.Queue()
    p = ctx.Process(target=child, args=(queue,))
    p.start()
    print(queue.get())
    p.join()
    print("exitcode", p.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_are_followed(tmp_path, method):
    write(tmp_path / "prog.py", MULTIPROCESSING)
    got = follow(["prog.py", method], tmp_path)
    assert got.returncode == 0, got.stderr
    worker, exitcode = got.stdout.splitlines()
    assert exitcode == "exitcode 0"
    children = listed_children(got.stderr)
    # The worker's file is written and listed (a forkserver and a resource
    # tracker end after the target: their files come later, unlisted).
    assert int(worker) in children
    data = load(tmp_path / children[int(worker)])
    frames = natives(data)[55_555]
    assert len(frames) == 1
    assert frames[0][:2] == [
        "malloc", frame("child", tmp_path / "prog.py", line_of(MULTIPROCESSING, "# @child"))]
    assert 55_555 not in natives(load(tmp_path / "dhat-heap.json"))


POOL = CTYPES + """\
import multiprocessing

def task(n):
    libc.malloc(66_666)
    return os.getpid()

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pids = set(pool.map(task, range(8), chunksize=1))
    print(" ".join(str(pid) for pid in sorted(pids)))
"""


def test_pool_workers_stopped_by_terminate_are_saved(tmp_path):
    # Pool.__exit__ terminates its workers with SIGTERM: they save first.
    write(tmp_path / "prog.py", POOL)
    got = follow(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    pids = {int(pid) for pid in got.stdout.split()}
    children = listed_children(got.stderr)
    assert pids <= set(children)
    blocks = [(pp["tb"], pp["tbk"]) for pid in pids
              for pp, fs in pps_with_frames(load(tmp_path / children[pid]))
              if fs[0] == "malloc" and fs[1].startswith("task (")]
    assert sum(tbk for _, tbk in blocks) == 8
    assert all(tb == 66_666 * tbk for tb, tbk in blocks)


LATE_SIGTERM_C = Path(__file__).parent / "fixtures" / "late_sigterm.c"

# A child that gets SIGTERM when it is about to block, every time: the
# library's call sends it and then waits, with no return to the interpreter
# in between, for a semaphore nobody posts (a Pool worker going to wait for
# the task queue's lock its terminating parent holds: the hang of the test
# above, once in a while).  Each mode puts the child somewhere else.
LATE_SIGTERM = CTYPES + """\
import subprocess
late = ctypes.CDLL(os.environ["LATE_SIGTERM"])

def doomed():
    libc.malloc(77_777)                                     # @doomed
    while True:  # a wait that only a signal ends; the handler runs once it returns
        late.sigterm_then_block()

def fork_and_wait(depth):
    pid = os.fork()
    if pid == 0:
        if depth == 1:
            doomed()
        fork_and_wait(depth - 1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(pid, os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exited", flush=True)

how = sys.argv[1]
if how == "fork":
    fork_and_wait(1)
elif how == "fork of a fork":
    fork_and_wait(2)
elif how == "exec":
    proc = subprocess.Popen([sys.executable, "prog.py", "doomed"])
    print(proc.pid, -proc.wait())
else:
    doomed()
"""


@pytest.fixture(scope="module")
def late_sigterm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("late_sigterm") / "late_sigterm.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror",
         str(LATE_SIGTERM_C), "-o", str(out)],
        check=True,
    )
    return out


@pytest.mark.parametrize("how", ["fork", "fork of a fork", "exec"])
def test_a_sigterm_just_before_a_blocking_call_still_saves_the_child(tmp_path, late_sigterm, how):
    write(tmp_path / "prog.py", LATE_SIGTERM)
    got = follow(["prog.py", how], tmp_path, env={"LATE_SIGTERM": str(late_sigterm)})
    assert got.returncode == 0, got.stderr
    # The doomed child died of the signal (it did not hang), and its file was
    # written first, with its block.
    doomed, died_of = got.stdout.splitlines()[0].split()
    assert died_of == str(int(signal.SIGTERM))
    children = listed_children(got.stderr)
    assert int(doomed) in children
    frames = natives(load(tmp_path / children[int(doomed)]))[77_777]
    assert [fs[:2] for fs in frames] == [
        ["malloc", frame("doomed", tmp_path / "prog.py", line_of(LATE_SIGTERM, "# @doomed"))]]
    if how == "fork of a fork":
        middle, status = got.stdout.splitlines()[1].split()
        assert status == "exited" and int(middle) in children
    assert len(got.stdout.splitlines()) == (2 if how == "fork of a fork" else 1)


# --- the merged file, and the options -----------------------------------------------------------


def test_merge_writes_one_file_of_the_target_and_its_children(tmp_path):
    code = FORK.replace("END", "os._exit(0)")
    write(tmp_path / "prog.py", code)
    got = follow(["prog.py"], tmp_path, flags=("--follow-children", "--merge"))
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines()[-1] == (
        "dhat: The merged data of 2 processes has been saved to dhat-heap.merged.json")
    merged = load(tmp_path / "dhat-heap.merged.json")
    sizes = natives(merged)
    assert 11_111 in sizes and 22_222 in sizes and 33_333 in sizes
    assert merged["cmd"].startswith("dhatc merge of")


def test_merge_needs_follow_children(tmp_path):
    write(tmp_path / "prog.py", "pass\n")
    got = follow(["prog.py"], tmp_path, flags=("--merge",))
    assert got.returncode == 2
    assert got.stderr == "dhatc run: error: --merge merges the files of --follow-children: give both\n"


def test_without_the_flag_children_write_nothing(tmp_path):
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "prog.py", PARENT)
    write(tmp_path / "fork.py", FORK.replace("END", "os._exit(0)"))
    for prog in ("prog.py", "fork.py"):
        got = follow([prog], tmp_path, flags=())
        assert got.returncode == 0, got.stderr
        assert listed_children(got.stderr) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "child.py", "dhat-heap.json", "fork.py", "prog.py"]
