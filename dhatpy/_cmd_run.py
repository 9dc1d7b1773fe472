"""``dhatc run [--mode heap|ad-hoc] [-o FILE] [--trim N] TARGET``: the launcher.

Profiles a whole program, C allocations included.  TARGET is ``script.py
[args]``, ``-m module [args]`` or ``-c code [args]``, as for ``python``.

The launcher checks the arguments and replaces itself (``os.execve``, same
pid) with ``sys.executable`` started with ``LD_PRELOAD`` naming the preload
library installed with the package (appended to any ``LD_PRELOAD`` already
set), running the script ``_bootstrap_main.py``, which calls
:func:`dhatc._bootstrap.bootstrap`: it runs the target under a profiler
inside the new interpreter.

Python's own options go before ``-m dhatc``, as in ``python -u -X dev -m
dhatc run script.py``; the target runs with those multiprocessing passes on to
its children (``-X``, ``-W``, ``-O``, ``-B``, ``-E``, ``-I``, ...) and ``-u``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from ._dhat_file import writable_problem
from ._errors import CommandError
from ._native_frames import MISSING as NATIVE_MISSING
from ._native_frames import available as native_frames_available
from ._preload import PRELOAD_LIBRARY
from ._run_config import CHILD_CONFIG_VARIABLE, RunConfig, Target

HELP = "run a Python program under the profiler, C allocations included"

_EPILOG = """\
TARGET is one of:
  script.py [args]   run a script (or a directory or zip with __main__.py)
  -m module [args]   run a module as a script, as python -m does
  -c code [args]     run a string of code, as python -c does
Options stop at the target: everything after it belongs to the target.

'run' starts the target under dhatc's preload library, so blocks allocated
directly with malloc (C extensions, native libraries) are recorded too, with
the Python stack of the thread that allocated them.  Only the target's own
process is profiled: forked children do not record into it, and programs it
starts (subprocess, multiprocessing's spawn) run without the library.  With
--follow-children, every Python process it starts is profiled as well, each
into its own file named after the target's with its pid (dhat-heap.PID.json);
the summary lists them.

python's own options go before '-m dhatc', and the target runs with them:
  python -u -X dev -m dhatc run script.py
"""

# The program of the re-executed interpreter (see that file).
BOOTSTRAP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap_main.py")

DEFAULT_OUTPUTS = {"heap": "dhat-heap.json", "ad-hoc": "dhat-ad-hoc.json"}


def _output_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the file name is empty")
    return text


def _trim(text: str) -> int:
    try:
        trim = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if trim < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {trim}")
    return trim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("%(prog)s [-h] [--mode heap|ad-hoc] [-o FILE] [--trim N] "
                    "[--native [--native-interpreter-frames]] [--follow-children [--merge]] "
                    "TARGET")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Runs a Python program as python would, profiling the whole run."
    parser.epilog = _EPILOG
    parser.add_argument("--mode", choices=("heap", "ad-hoc"), default="heap",
                        help="what to profile (default: heap)")
    parser.add_argument("-o", "--output", metavar="FILE", type=_output_name, default=None,
                        help="where to write the profile (default: dhat-heap.json, or "
                        "dhat-ad-hoc.json in ad-hoc mode), relative to the current directory")
    parser.add_argument("--trim", metavar="N", type=_trim, default=10,
                        help="keep at most N Python frames per stack (default: 10)")
    parser.add_argument("--native", action="store_true",
                        help="native (C) frames in every stack, with the Python frames "
                        "spliced in where the interpreter runs them (--trim then bounds "
                        "all the frames)")
    parser.add_argument("--native-interpreter-frames", action="store_true",
                        help="with --native: keep the interpreter's own C frames too")
    parser.add_argument("--follow-children", action="store_true",
                        help="profile every Python process the target starts too, each "
                        "into its own file beside the target's (dhat-heap.PID.json)")
    parser.add_argument("--merge", action="store_true",
                        help="with --follow-children: also write one merged file of all "
                        "of them at the end (dhat-heap.merged.json)")


# Options of `run` that take a value, and python's own command-line options
# (dhatc's -c, -m, -h and -o aside), so that the scan below agrees with argparse.
_VALUE_OPTIONS = ("--mode", "-o", "--output", "--trim")
_FLAG_OPTIONS = ("--follow-children", "--merge", "--native", "--native-interpreter-frames")
_PYTHON_FLAGS = frozenset("bBdEiIOPqRsSuvVWxX")
_PYTHON_LONG_OPTIONS = ("--check-hash-based-pycs", "--version", "--help-env",
                        "--help-xoptions", "--help-all")


def _is_python_option(arg: str) -> bool:
    """True for an option of the interpreter itself, such as -u, -OO or -Xdev."""
    if arg.startswith("--"):
        return arg.partition("=")[0] in _PYTHON_LONG_OPTIONS
    return len(arg) >= 2 and arg[0] == "-" and arg[1] in _PYTHON_FLAGS


def split_passthrough(argv: List[str]) -> Tuple[List[str], Optional[Target]]:
    """Splits ``run``'s arguments at the target: the options before it (for
    argparse) and the target with its arguments.  The target is None only
    when ``-h``/``--help`` comes first (argparse then prints the help).
    Raises CommandError."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return argv[: i + 1], None
        if arg in _VALUE_OPTIONS:
            if i + 1 >= len(argv):
                raise CommandError(f"argument {arg}: expected one argument")
            i += 2
            continue
        if arg in _FLAG_OPTIONS:
            i += 1
            continue
        if arg.partition("=")[0] in _VALUE_OPTIONS[1:] or (arg.startswith("-o") and arg != "-o"):
            i += 1  # --mode=heap, --output=FILE, -oFILE
            continue
        if arg[:2] in ("-m", "-c"):
            kind = "module" if arg[1] == "m" else "code"
            if len(arg) > 2:
                return argv[:i], Target(kind, arg[2:], tuple(argv[i + 1 :]))
            if i + 1 >= len(argv):
                raise CommandError(f"argument {arg}: expected one argument")
            return argv[:i], Target(kind, argv[i + 1], tuple(argv[i + 2 :]))
        if arg == "--":
            if i + 1 >= len(argv):
                raise CommandError("no script after --")
            return argv[:i], Target("path", argv[i + 1], tuple(argv[i + 2 :]))
        if _is_python_option(arg):
            example = f"{arg} ..." if arg in ("-W", "-X") else arg
            raise CommandError(
                f"{arg!r} is an option of python, not of dhatc run; give it to python "
                f"before '-m dhatc', and the target runs with it: "
                f"python {example} -m dhatc run ..."
            )
        if arg.startswith("-") and arg != "-":
            raise CommandError(f"unrecognized option {arg!r} (options go before the target)")
        return argv[:i], Target("path", arg, tuple(argv[i + 1 :]))
    raise CommandError("nothing to run: give script.py, -m module or -c code")


def _check_script(path: str) -> Optional[str]:
    """python's message (``python missing.py`` exits 2) if the script cannot be opened."""
    try:
        if not os.path.isdir(path):
            with open(path, "rb"):
                pass
    except OSError as e:
        return (f"dhatc run: can't open file {os.path.abspath(path)!r}: "
                f"[Errno {e.errno}] {e.strerror}")
    return None


def _child_environment(previous_preload: Optional[str]) -> Dict[str, str]:
    """The library goes last: a library the user preloads (ASan's runtime, which
    insists on being first, or another malloc) keeps its place.  Put ours
    first by hand to wrap another malloc; then it is left where it is."""
    env = dict(os.environ)
    entries = re.split(r"[:\s]+", previous_preload or "")
    if PRELOAD_LIBRARY not in entries:
        env["LD_PRELOAD"] = (
            PRELOAD_LIBRARY if not previous_preload else f"{previous_preload}:{PRELOAD_LIBRARY}"
        )
    return env


def _interpreter_flags() -> List[str]:
    """-X, -W, -O, -B, ... as this interpreter was given them (what
    multiprocessing passes to its children), and -u."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    args = list(flags()) if flags is not None else []
    # -u is not in sys.flags; it shows as standard streams without a buffer.
    if isinstance(getattr(sys.__stdout__, "buffer", None), io.FileIO):
        args.append("-u")
    return args


def run(args: argparse.Namespace) -> int:
    """Re-executes the interpreter on the bootstrap; returns only on error."""
    target: Target = args.passthrough
    if target.kind == "path":
        if target.value == "-":
            raise CommandError("reading the program from stdin is not supported; save it to a file")
        problem = _check_script(target.value)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
    if not sys.executable:
        raise CommandError("cannot tell which Python to run (sys.executable is empty)")
    if args.merge and not args.follow_children:
        raise CommandError("--merge merges the files of --follow-children: give both")
    if args.native_interpreter_frames and not args.native:
        raise CommandError("--native-interpreter-frames is an option of --native: give both")
    if args.native and not native_frames_available():
        raise CommandError(NATIVE_MISSING.partition("dhatc: ")[2])
    output = args.output if args.output is not None else DEFAULT_OUTPUTS[args.mode]
    # Found now rather than after a long run.
    problem = writable_problem(output)
    if problem is not None:
        raise CommandError(f"cannot write the profile to {output!r}: {problem}; "
                           "give -o a file where it can be written")
    previous = os.environ.get("LD_PRELOAD")
    preloaded = os.path.exists(PRELOAD_LIBRARY)
    config = RunConfig(
        kind=target.kind,
        target=target.value,
        mode=args.mode,
        output=output,
        trim=args.trim,
        # The file goes where the user meant, even if the target changes directory.
        output_dir=os.getcwd(),
        ld_preload=previous,
        preloaded=preloaded,
        follow_children=args.follow_children,
        merge=args.merge,
        native=args.native,
        native_interpreter_frames=args.native_interpreter_frames,
    )
    env = dict(os.environ)
    if preloaded:
        env = _child_environment(previous)
    else:
        print(
            f"dhat: warning: the preload library {PRELOAD_LIBRARY} is missing (was dhatc built "
            "from source without a C compiler?); blocks allocated directly with malloc will "
            "not be tracked",
            file=sys.stderr,
        )
    # Under a followed dhatc run, this one is a target of its own, not a child.
    env.pop(CHILD_CONFIG_VARIABLE, None)
    argv = [
        sys.executable,
        *_interpreter_flags(),
        BOOTSTRAP_SCRIPT,
        config.to_json(),
        *target.args,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
