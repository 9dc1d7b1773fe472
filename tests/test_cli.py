"""`python -m dhatc run` (and the `dhatc` script): runs a target as python
would, under the preload library, profiling the whole run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import dhatc._cli
from dhatc._errors import CommandError
from dhat_helpers import all_frames as frames_of, line_of, load
from native_util import PRELOAD

SUMMARY = re.compile(r"^dhat: (Total|At t-gmax|At t-end|The data has been saved)")


def run(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
        launcher: Optional[List[str]] = None) -> "subprocess.CompletedProcess[str]":
    full_env = dict(os.environ)
    full_env.pop("LD_PRELOAD", None)
    full_env.pop("PYTHONMALLOC", None)
    full_env.update(env or {})
    return subprocess.run(
        [*(launcher or [sys.executable, "-m", "dhatc"]), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
    )


def dhatc_run(args: List[str], cwd: Path, **kw) -> "subprocess.CompletedProcess[str]":
    return run(["run", *args], cwd, **kw)


def plain_python(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None):
    return run(args, cwd, env, launcher=[sys.executable])


def non_dhat_lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if not line.startswith("dhat: ")]


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


# --- running the target as python does -------------------------------------------------

INTROSPECT = """\
import json, os, sys
print(json.dumps({
    "argv": sys.argv,
    "name": __name__,
    "file": globals().get("__file__"),
    "path0": sys.path[0],
    "globals": sorted(globals()),
    "spec": getattr(__spec__, "name", None),
    "loader": getattr(__loader__, "__name__", type(__loader__).__name__),
    "main_is_us": sys.modules["__main__"].__dict__ is globals(),
    "ld_preload": os.environ.get("LD_PRELOAD"),
}))
"""


@pytest.mark.parametrize(
    "target",
    [
        ["prog.py", "a", "--b", "-c"],
        ["sub/prog.py", "x"],
        ["-m", "prog", "a", "-m"],
        ["-m", "pkg", "y"],
        ["-c", INTROSPECT, "a", "b"],
        ["pkg", "z"],  # a directory with __main__.py
    ],
    ids=["script", "script-in-subdir", "module", "package", "code", "directory"],
)
def test_the_target_sees_what_python_gives_it(tmp_path, target):
    write(tmp_path / "prog.py", INTROSPECT)
    write(tmp_path / "sub" / "prog.py", INTROSPECT)
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "__main__.py", INTROSPECT)
    expected = plain_python(target, tmp_path)
    got = dhatc_run(target, tmp_path)
    assert got.returncode == expected.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(expected.stdout)
    assert non_dhat_lines(got.stderr) == []
    assert (tmp_path / "dhat-heap.json").exists()


def test_existing_ld_preload_is_kept_for_the_target(tmp_path):
    libm = next(
        (p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                     "/lib64/libm.so.6") if os.path.exists(p)),
        None,
    )
    if libm is None:
        pytest.skip("no libm.so.6 at a known path")
    code = ("import os; from dhatc import _engine; "
            "print(os.environ['LD_PRELOAD'], _engine.native_tracking())")
    got = dhatc_run(["-c", code], tmp_path, env={"LD_PRELOAD": libm})
    assert got.stdout.split() == [libm, "True"]


@pytest.mark.parametrize(
    "body, status",
    [
        ("pass", 0),
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit('bye now')", 1),
        ("import sys; sys.exit(None)", 0),
        ("def f():\n    raise ValueError('boom')\nf()", 1),
        ("raise KeyboardInterrupt", None),  # whatever python gives (killed by SIGINT)
        ("import os, sys; sys.stdout.flush(); os._exit(7)", 7),
    ],
    ids=["normal", "exit-3", "exit-message", "exit-none", "exception", "keyboard-interrupt",
         "os-exit"],
)
def test_exit_status_and_output_match_python_and_the_profile_is_saved(tmp_path, body, status):
    script = write(tmp_path / "prog.py", "import ctypes\nprint('out')\n" + body + "\n")
    expected = plain_python(["prog.py"], tmp_path)
    got = dhatc_run(["prog.py"], tmp_path)
    assert got.returncode == expected.returncode
    if status is not None:
        assert got.returncode == status
    assert got.stdout == expected.stdout
    # Tracebacks and exit messages exactly as python prints them (no dhatc frames).
    assert non_dhat_lines(got.stderr) == non_dhat_lines(expected.stderr)
    summary = [line for line in got.stderr.splitlines() if line.startswith("dhat: ")]
    assert [bool(SUMMARY.match(line)) for line in summary] == [True] * 4
    # Python's own output comes first, then the summary (saved at exit).
    assert got.stderr.splitlines()[-4:] == summary
    assert load(tmp_path / "dhat-heap.json")["cmd"].endswith("prog.py")
    assert script.exists()


def test_native_blocks_are_recorded_with_the_target_frame_as_root(tmp_path):
    code = """\
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]

    def helper():
        return libc.malloc(31_337)                     # @helper

    kept = [libc.malloc(27_183)]                       # @top
    kept.append(helper())                              # @call
    """
    write(tmp_path / "prog.py", code)
    got = dhatc_run(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    data = load(tmp_path / "dhat-heap.json")
    frames = frames_of(data)
    path = str(tmp_path / "prog.py")
    top, call, helper = (line_of(code, f"# @{m}") for m in ("top", "call", "helper"))
    assert ["malloc", f"<module> ({path}:{top})"] in frames
    assert ["malloc", f"helper ({path}:{helper})", f"<module> ({path}:{call})"] in frames
    for pp, fs in zip(data["pps"], frames):
        if fs[0] == "malloc" and fs[1:] and path in fs[1]:
            assert pp["tb"] in (27_183, 31_337) and pp["tbk"] == 1
    # Nothing of the bootstrap or runpy below the target's frame.
    assert not [fs for fs in frames if any("_bootstrap.py" in f or "runpy" in f for f in fs)]


def test_module_target_stacks_stop_at_the_module_frame(tmp_path):
    write(tmp_path / "mod.py", "data = [bytes(5000) for _ in range(3)]\n")
    got = dhatc_run(["-m", "mod"], tmp_path)
    assert got.returncode == 0, got.stderr
    frames = frames_of(load(tmp_path / "dhat-heap.json"))
    module_pps = [fs for fs in frames if any("mod.py" in f for f in fs)]
    assert module_pps and all(fs[-1].startswith("<module> (") for fs in module_pps)
    assert not [fs for fs in frames if any("_bootstrap.py" in f or "runpy" in f for f in fs)]


# --- options ----------------------------------------------------------------------------


def test_output_file_is_relative_to_where_dhatc_was_started(tmp_path):
    write(tmp_path / "prog.py", "import os\nos.makedirs('elsewhere')\nos.chdir('elsewhere')\n")
    got = dhatc_run(["-o", "out.json", "prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert load(tmp_path / "out.json")["dhatFileVersion"] == 2
    assert not (tmp_path / "elsewhere" / "out.json").exists()
    assert got.stderr.splitlines()[-1] == (
        "dhat: The data has been saved to out.json, and is viewable with dhat/dh_view.html"
    )


@pytest.mark.parametrize("spelling", [["--output", "o.json"], ["--output=o.json"], ["-oo.json"]])
def test_output_option_spellings(tmp_path, spelling):
    got = dhatc_run([*spelling, "-c", "x = [0] * 100"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "o.json").exists()


def test_trim_bounds_the_python_frames(tmp_path):
    code = "def f(n):\n    return bytes(4000) if n == 0 else f(n - 1)\nx = f(6)\n"
    write(tmp_path / "prog.py", code)
    for trim, depth in ((2, 2), (0, 0), (20, 8)):
        got = dhatc_run(["--trim", str(trim), "prog.py"], tmp_path)
        assert got.returncode == 0, got.stderr
        frames = frames_of(load(tmp_path / "dhat-heap.json"))
        deep = [fs for fs in frames if fs[0].startswith("PyObject_") and len(fs) - 1 == depth]
        assert deep, (trim, frames)
        assert max(len(fs) - 1 for fs in frames) <= depth


def test_ad_hoc_mode(tmp_path):
    code = "import dhatc\nfor _ in range(3):\n    dhatc.ad_hoc_event(5)\n"
    write(tmp_path / "prog.py", code)
    got = dhatc_run(["--mode", "ad-hoc", "prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    data = load(tmp_path / "dhat-ad-hoc.json")
    assert data["mode"] == "ad-hoc"
    assert [(pp["tb"], pp["tbk"]) for pp in data["pps"]] == [(15, 3)]
    assert "dhat: Total:     15 units in 3 events" in got.stderr.splitlines()


def test_the_dhatc_console_script(tmp_path):
    script = Path(sys.executable).with_name("dhatc")
    if not script.exists():
        pytest.skip("the dhatc script is not installed next to this interpreter")
    got = run(["run", "-c", "import sys; print(sys.argv)", "q"], tmp_path, launcher=[str(script)])
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "['-c', 'q']"
    assert (tmp_path / "dhat-heap.json").exists()


def test_empty_script_still_gives_a_profile(tmp_path):
    write(tmp_path / "empty.py", "")
    got = dhatc_run(["empty.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert load(tmp_path / "dhat-heap.json")["dhatFileVersion"] == 2


# --- errors -----------------------------------------------------------------------------


def test_missing_script_fails_like_python(tmp_path):
    got = dhatc_run(["nope.py"], tmp_path)
    assert got.returncode == 2 == plain_python(["nope.py"], tmp_path).returncode
    assert got.stderr.strip() == (
        f"dhatc run: can't open file {str(tmp_path / 'nope.py')!r}: "
        "[Errno 2] No such file or directory"
    )
    assert not (tmp_path / "dhat-heap.json").exists()


@pytest.mark.parametrize(
    "target",
    [["-m", "no_such_module_here"], ["-m", "pkg.no_such_module"], ["nomain"], ["nomain.zip"]],
    ids=["no-module", "no-submodule", "directory-without-main", "zip-without-main"],
)
def test_a_target_that_never_starts_fails_like_python_and_saves_nothing(tmp_path, target):
    write(tmp_path / "pkg" / "__init__.py", "")
    (tmp_path / "nomain").mkdir()
    write(tmp_path / "nomain" / "other.py", "")
    with zipfile.ZipFile(tmp_path / "nomain.zip", "w") as z:
        z.writestr("other.py", "")
    expected = plain_python(target, tmp_path)
    got = dhatc_run(target, tmp_path)
    assert got.returncode == expected.returncode == 1
    # python's own message, and nothing else: no summary, no "saved" line.
    assert got.stderr == expected.stderr
    assert got.stderr.startswith(f"{sys.executable}: ")
    assert got.stdout == ""
    assert not (tmp_path / "dhat-heap.json").exists()


def test_a_target_that_never_starts_leaves_an_existing_profile_alone(tmp_path):
    old = b'{"an earlier profile": true}\n'
    (tmp_path / "dhat-heap.json").write_bytes(old)
    got = dhatc_run(["-m", "no_such_module_here"], tmp_path)
    assert got.returncode == 1
    assert got.stderr == f"{sys.executable}: No module named no_such_module_here\n"
    assert (tmp_path / "dhat-heap.json").read_bytes() == old


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to run"),
        (["--mode", "stack", "x.py"], "invalid choice"),
        (["--trim", "-1", "x.py"], "must be >= 0"),
        (["--trim", "ten", "x.py"], "not an integer"),
        (["--frobnicate", "x.py"], "unrecognized option"),
        (["-u", "x.py"], "'-u' is an option of python, not of dhatc run; give it to python "
                         "before '-m dhatc', and the target runs with it: "
                         "python -u -m dhatc run ..."),
        (["-OO", "x.py"], "python -OO -m dhatc run ..."),
        (["-X", "dev", "x.py"], "python -X ... -m dhatc run ..."),
        (["--check-hash-based-pycs", "always", "x.py"], "is an option of python"),
        (["-m"], "expected one argument"),
        (["-o"], "expected one argument"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    got = dhatc_run(args, tmp_path)
    assert got.returncode == 2
    assert got.stderr.startswith("usage: ")
    assert message in got.stderr.splitlines()[-1]


@pytest.mark.parametrize("flag, stream_buffer", [(None, "BufferedWriter"), ("-u", "FileIO")])
def test_python_options_given_before_dhatc_reach_the_target(tmp_path, flag, stream_buffer):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONUNBUFFERED")}
    code = ("import sys; print(type(sys.stdout.buffer).__name__, sys.flags.optimize, "
            "sys.flags.dev_mode)")
    got = subprocess.run(
        [sys.executable, *([flag] if flag else []), "-O", "-X", "dev", "-m", "dhatc", "run",
         "-c", code],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [stream_buffer, "1", "True"]


def test_help_and_preload_path(tmp_path):
    got = run(["--help"], tmp_path)
    assert got.returncode == 0 and got.stdout.startswith("usage: ")
    assert run([], tmp_path).returncode == 2
    assert run(["frob"], tmp_path).returncode == 2
    got = run(["preload-path"], tmp_path)
    assert got.returncode == 0 and got.stdout.strip() == PRELOAD


# --- the command line: one parser, a module per command ----------------------------------


def test_help_lists_every_command_with_its_one_line_help(tmp_path):
    got = run(["--help"], tmp_path)
    assert got.returncode == 0, got.stderr
    listed = " ".join(got.stdout.split())  # argparse wraps long lines
    for name in dhatc._cli.COMMANDS:
        module = dhatc._cli.command_module(name)
        assert isinstance(module.HELP, str) and "\n" not in module.HELP
        assert callable(module.add_arguments) and callable(module.run)
        assert f"{name} {module.HELP}" in listed
        sub = run([name, "--help"], tmp_path)
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: dhatc {name} ")


@pytest.mark.parametrize(
    "args, usage, message",
    [
        (["preload-path", "extra"], "dhatc preload-path", "unrecognized arguments: extra"),
        (["frob"], "dhatc", "invalid choice: 'frob'"),
        ([], "dhatc", "the following arguments are required: COMMAND"),
    ],
)
def test_a_bad_command_line_is_the_usage_and_one_error_line(tmp_path, args, usage, message):
    got = run(args, tmp_path)
    assert got.returncode == 2
    first, *_, last = got.stderr.splitlines()
    assert first.startswith(f"usage: {usage} ")
    assert last.startswith(f"{usage}: error: ") and message in last
    assert got.stdout == ""


def test_a_command_error_is_one_line_and_status_2(tmp_path):
    got = dhatc_run(["-"], tmp_path)
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == (
        "dhatc run: error: reading the program from stdin is not supported; save it to a file\n"
    )


def test_a_closed_stdout_ends_a_command_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the command writes (| head -0)
    try:
        got = subprocess.run([sys.executable, "-m", "dhatc", "preload-path"], cwd=tmp_path,
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert (got.returncode, got.stderr) == (1, "")


class _FakeCommand:
    """A command module whose run() raises what the test gives it."""

    HELP = "a command for the tests"

    def __init__(self, raises: BaseException) -> None:
        self.raises = raises

    def add_arguments(self, parser) -> None:
        parser.add_argument("--flag", action="store_true")

    def run(self, args) -> int:
        assert args.flag and args.passthrough is None
        raise self.raises


@pytest.mark.parametrize(
    "raises, status, stderr",
    [
        (CommandError("cannot do that; try this"), 2, "dhatc fake: error: cannot do that; try this\n"),
        (KeyboardInterrupt(), 130, ""),
        (BrokenPipeError(), 1, ""),
    ],
    ids=["command-error", "keyboard-interrupt", "broken-pipe"],
)
def test_main_turns_what_a_command_raises_into_an_exit_status(monkeypatch, capsys, raises,
                                                              status, stderr):
    fake = _FakeCommand(raises)
    real = dhatc._cli.command_module
    monkeypatch.setattr(dhatc._cli, "COMMANDS", (*dhatc._cli.COMMANDS, "fake"))
    monkeypatch.setattr(dhatc._cli, "command_module",
                        lambda name: fake if name == "fake" else real(name))
    monkeypatch.setattr(dhatc._cli, "_after_broken_pipe", lambda: 1)  # keep pytest's stdout
    assert dhatc._cli.main(["fake", "--flag"]) == status
    assert capsys.readouterr().err == stderr


# --- processes ---------------------------------------------------------------------------

FORK = """\
import ctypes, os
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

kept = libc.malloc(11_111)                                # @parent
pid = os.fork()
if pid == 0:
    # The child's blocks go nowhere: not into the parent's profile, no file.
    for _ in range(100):
        libc.free(libc.malloc(22_222))
    libc.free(kept)                                       # the parent's block, in the child
    raise SystemExit(5)                                   # unwinds through the bootstrap
_, status = os.waitpid(pid, 0)
print("child", os.WEXITSTATUS(status))
"""


def test_fork_child_does_not_touch_the_parents_profile(tmp_path):
    write(tmp_path / "prog.py", FORK)
    got = dhatc_run(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "child 5"
    assert got.stderr.count("dhat: Total:") == 1  # the parent's summary only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dhat-heap.json", "prog.py"]
    data = load(tmp_path / "dhat-heap.json")
    path = str(tmp_path / "prog.py")
    by_frames = {tuple(fs): pp for pp, fs in zip(data["pps"], frames_of(data))}
    parent = by_frames[("malloc", f"<module> ({path}:{line_of(FORK, '# @parent')})")]
    assert (parent["tb"], parent["tbk"], parent["eb"], parent["ebk"]) == (11_111, 1, 11_111, 1)
    # Nothing from the lines only the child ran.
    child_lines = range(line_of(FORK, "if pid == 0:"), line_of(FORK, "raise SystemExit(5)") + 1)
    assert not [fs for fs in by_frames
                if any(f"{path}:{n})" in f for f in fs for n in child_lines)]


MULTIPROCESSING = """\
import ctypes, multiprocessing, os, sys

def child(queue):
    from dhatc import _engine
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    for _ in range(50):
        libc.free(libc.malloc(33_333))
    queue.put((os.environ.get("LD_PRELOAD"), _engine.native_tracking()))

if __name__ == "__main__":
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    ctx = multiprocessing.get_context(sys.argv[1])
    kept = libc.malloc(44_444)
    queue = ctx.Queue()
    p = ctx.Process(target=child, args=(queue,))
    p.start()
    print(queue.get())
    p.join()
    print("exitcode", p.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_are_left_alone(tmp_path, method):
    write(tmp_path / "prog.py", MULTIPROCESSING)
    got = dhatc_run(["prog.py", method], tmp_path)
    assert got.returncode == 0, got.stderr
    out = got.stdout.splitlines()
    assert out[1] == "exitcode 0"
    if method == "fork":
        # Same process image: the library is there, but unattached.
        assert out[0] == "(None, True)"
    else:
        # Started afresh, with LD_PRELOAD as it was before dhatc (unset here).
        assert out[0] == "(None, False)"
    assert got.stderr.count("dhat: Total:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dhat-heap.json", "prog.py"]
    data = load(tmp_path / "dhat-heap.json")
    natives = {pp["tb"] for pp, fs in zip(data["pps"], frames_of(data)) if fs[0] == "malloc"}
    assert 44_444 in natives and 33_333 not in natives


def test_the_suites_own_children_start_without_the_library(run_python, monkeypatch):
    # As when the suite runs under `python -m dhatc run -m pytest`, or with the
    # library exported: run_python's children must not inherit either.
    monkeypatch.setenv("LD_PRELOAD", PRELOAD)
    monkeypatch.setenv("DHATC_SOMETHING", "1")
    monkeypatch.setenv("DHATC_QUIET", "0")
    proc = run_python(
        """
        import os
        from dhatc import _engine
        print(os.environ.get("LD_PRELOAD"), _engine.native_tracking(),
              sorted((k, v) for k, v in os.environ.items() if k.startswith("DHATC_")))
        """
    )
    assert proc.stdout.strip() == "None False [('DHATC_QUIET', '1')]"


def test_subprocess_children_run_without_the_library(tmp_path):
    code = (
        "import subprocess, sys\n"
        "print(subprocess.run([sys.executable, '-c', "
        "'import os; print(os.environ.get(\"LD_PRELOAD\"))'], capture_output=True, text=True)"
        ".stdout.strip())\n"
    )
    write(tmp_path / "prog.py", code)
    got = dhatc_run(["prog.py"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "None"


OTHER_MALLOC = r"""
#include <stddef.h>
/* Another allocator library, as one might preload (jemalloc, ...): here
 * glibc's own, under its public names. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n) { return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
"""

NATIVE_PROBE = """\
import ctypes, os
from dhatc import _engine
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
kept = libc.malloc(12_345)
print(os.environ.get("LD_PRELOAD"), _engine.native_tracking())
"""


@pytest.fixture
def other_malloc(tmp_path) -> str:
    source = tmp_path / "other_malloc.c"
    source.write_text(OTHER_MALLOC)
    lib = tmp_path / "libother_malloc.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(source), "-o", str(lib)], check=True)
    return str(lib)


def test_another_preloaded_malloc_first_is_reported(tmp_path, other_malloc):
    write(tmp_path / "prog.py", NATIVE_PROBE)
    got = dhatc_run(["prog.py"], tmp_path, env={"LD_PRELOAD": other_malloc})
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [other_malloc, "False"]
    warnings = [line for line in got.stderr.splitlines() if line.startswith("dhat: warning:")]
    assert len(warnings) == 1 and f"LD_PRELOAD={PRELOAD}:{other_malloc}" in warnings[0]
    assert "dhat: note:" not in got.stderr


def test_dhatc_library_put_first_by_hand_wraps_another_malloc(tmp_path, other_malloc):
    write(tmp_path / "prog.py", NATIVE_PROBE)
    preload = f"{PRELOAD}:{other_malloc}"
    got = dhatc_run(["prog.py"], tmp_path, env={"LD_PRELOAD": preload})
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [preload, "True"]
    assert "dhat: warning:" not in got.stderr
    data = load(tmp_path / "dhat-heap.json")
    line = line_of(NATIVE_PROBE, "12_345")
    assert [pp["tb"] for pp, fs in zip(data["pps"], frames_of(data))
            if fs[0] == "malloc" and fs[-1].endswith(f":{line})")] == [12_345]


# --- the profile is never lost, and a failure to save is never silent ---------------------


def test_an_unwritable_output_is_refused_before_the_target_runs(tmp_path):
    write(tmp_path / "prog.py", "open('ran', 'w').close()\n")
    for output, problem in (("no-such-dir/x.json", "there is no directory"),
                            (".", "it is a directory")):
        got = dhatc_run(["-o", output, "prog.py"], tmp_path)
        assert (got.returncode, got.stdout) == (2, "")
        assert got.stderr.startswith(f"dhatc run: error: cannot write the profile to {output!r}: ")
        assert problem in got.stderr and len(got.stderr.splitlines()) == 1
        assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "ending, status",
    [("pass", 2), ("raise SystemExit(0)", 2), ("raise SystemExit(3)", 3),
     ("raise ValueError('x')", 1), ("os._exit(0)", 2), ("os._exit(5)", 5)],
)
def test_a_profile_that_cannot_be_saved_at_the_end_fails_the_run(tmp_path, ending, status):
    # The output's directory goes away while the target runs.
    write(tmp_path / "prog.py", f"import os, shutil\nshutil.rmtree('out')\n{ending}\n")
    (tmp_path / "out").mkdir()
    got = dhatc_run(["-o", "out/x.json", "prog.py"], tmp_path)
    assert got.returncode == status
    errors = [line for line in got.stderr.splitlines() if line.startswith("dhat: error:")]
    assert errors == ["dhat: error: [Errno 2] dhatc: cannot write the profile to "
                      f"{str(tmp_path / 'out' / 'x.json')!r}: No such file or directory"]


@pytest.mark.parametrize("stderr_fate", ["sys.stderr.close()", "sys.stderr = None"])
def test_a_save_error_under_run_reaches_descriptor_2_and_the_status(tmp_path, stderr_fate):
    write(tmp_path / "prog.py", f"import shutil, sys\nshutil.rmtree('out')\n{stderr_fate}\n")
    (tmp_path / "out").mkdir()
    got = dhatc_run(["-o", "out/x.json", "prog.py"], tmp_path)
    assert got.returncode == 2
    assert "dhat: error: [Errno 2] dhatc: cannot write the profile to" in got.stderr


def test_under_run_a_broken_stderr_does_not_stop_the_save(tmp_path):
    write(tmp_path / "prog.py", "import sys\nx = [bytes(100)] * 10\nprint('done')\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # dhatc run script.py 2>&1 | head -1, the reader gone
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    try:
        got = subprocess.run([sys.executable, "-m", "dhatc", "run", "prog.py"], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=write_end, text=True,
                             timeout=300)
    finally:
        os.close(write_end)
    assert (got.returncode, got.stdout) == (0, "done\n")
    assert load(tmp_path / "dhat-heap.json")["dhatFileVersion"] == 2


def test_output_to_a_descriptor_path(tmp_path):
    got = dhatc_run(["-o", "/dev/fd/1", "-c", "x = [bytes(100)] * 10"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["dhatFileVersion"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- what dhatc puts into the target behaves as python's own -------------------------------

WRONG_CALLS = """\
import os, sys, json
calls = {
    "excepthook": [((1, '1', 1), {}), ((), {}), ((1, 2, 3, 4), {}),
                   ((ValueError, ValueError('v'), None), {}),
                   ((ValueError, ValueError('v'), None), {"x": 1})],
    "_exit": [(("x",), {}), ((), {}), ((1, 2), {}), ((), {"stat": 0}), ((1,), {"status": 0}),
              ((2**40,), {}), ((1.5,), {}), ((None,), {})],
}
results = []
for name, cases in calls.items():
    function = sys.excepthook if name == "excepthook" else os._exit
    results.append([name, function.__name__, function.__doc__ == (
        sys.__excepthook__ if name == "excepthook" else os._exit).__doc__ or name == "_exit"])
    for args, kwargs in cases:
        try:
            results.append([name, repr(function(*args, **kwargs))])
        except BaseException as e:
            results.append([name, type(e).__name__, str(e)])
print(json.dumps(results))
sys.stdout.flush()
os._exit(status=True)
"""


def test_wrappers_in_the_target_behave_as_the_originals_on_wrong_calls(tmp_path):
    write(tmp_path / "prog.py", WRONG_CALLS)
    expected = plain_python(["prog.py"], tmp_path)
    got = dhatc_run(["prog.py"], tmp_path)
    assert got.returncode == expected.returncode == 1
    assert json.loads(got.stdout) == json.loads(expected.stdout)
    assert non_dhat_lines(got.stderr) == non_dhat_lines(expected.stderr)
    # The profile ran on after the wrong calls, and was saved by os._exit(status=True).
    assert got.stderr.count("dhat: The data has been saved to dhat-heap.json") == 1


def test_the_bootstrap_imports_nothing_from_the_current_directory(tmp_path):
    # GIVEN a directory holding a module of the name of everything dhatc's
    # bootstrap imports (zipfile, json, tempfile, ...), each failing loudly
    listing = dhatc_run(["-c", "import sys; print(' '.join(sorted(sys.modules)))"], tmp_path)
    names = {name.split(".")[0] for name in listing.stdout.split()}
    names -= set(sys.builtin_module_names) | {"dhatc", "__main__"}
    here = tmp_path / "untrusted"
    for name in names:
        write(here / f"{name}.py", f"raise SystemExit('imported {name} from the current directory')\n")
    script = write(tmp_path / "elsewhere" / "ok.py", "import sys\nprint(sys.path[0])\n")
    # WHEN a script elsewhere runs from there (the launcher as the console script runs
    # it: a script in another directory, so without the current directory on sys.path)
    launch = write(tmp_path / "bin" / "launch.py",
                   "import sys\nfrom dhatc._cli import main\nsys.exit(main())\n")
    got = run(["run", str(script)], here, launcher=[sys.executable, str(launch)])
    # THEN it runs as python runs it
    expected = plain_python([str(script)], here)
    assert got.returncode == expected.returncode == 0, got.stderr
    assert got.stdout == expected.stdout == f"{script.parent}\n"
    assert len(names) > 20 and {"json", "zipfile", "tempfile"} & names


def test_a_profiler_started_by_the_target_says_run_profiles_it_already(tmp_path):
    got = dhatc_run(["-c", "import dhatc\nwith dhatc.Profiler():\n    pass\n"], tmp_path)
    assert got.returncode == 1
    assert ("dhatc.ProfilerAlreadyRunningError: dhat: creating a profiler while a profiler is "
            "already running (this process runs under `dhatc run`, which profiles all of it: "
            "run the program without `dhatc run` to use a dhatc.Profiler of its own)"
            ) in got.stderr.splitlines()
    assert load(tmp_path / "dhat-heap.json")["dhatFileVersion"] == 2
