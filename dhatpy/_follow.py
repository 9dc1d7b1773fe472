"""``dhatc run --follow-children``: every Python process the target starts is
profiled too, each into its own file.

A child's file is named after the target's with the child's pid
(``dhat-heap.4242.json`` beside ``dhat-heap.json``, ``out.4242.json`` beside
``-o out.json``), in the same directory; its ``cmd`` says what ran and whose
child it is (``... (child of pid 4241)``, ``... (fork child of pid 4241)``).
Children save quietly: their stderr is the program's, which their parent may
read.  Each child appends its file's name to a ledger (a file in a temporary
directory the target's process made); when the target ends, its summary
lists every child's file written by then and, with ``--merge``, writes
``dhat-heap.merged.json`` from all of them (:mod:`dhatc._merge`).

Two kinds of children:

* **fork children** (``os.fork``, multiprocessing's fork method, the workers
  a forkserver forks): ``dhatc._profiler``'s at-fork hook abandons the
  parent's profile in the child; the hook registered here, which runs after
  it, starts the child's own, rooted at the frame that called ``os.fork``.
* **children that start a new Python program** (``subprocess`` running
  Python, multiprocessing's spawn method, the forkserver itself): they keep
  ``LD_PRELOAD`` (native blocks are recorded there too) and find first on
  ``PYTHONPATH`` a directory that holds only a ``sitecustomize.py``
  (``dhatc/_follow_site/``).  Python imports it at startup, before the
  program; it takes its directory off ``sys.path`` again, reads a
  :class:`ChildConfig` from the environment variable
  ``DHATC_FOLLOW_CHILDREN``, starts a profile at the first line of the
  child's ``__main__`` (as ``dhatc run`` does for the target), and then
  imports the ``sitecustomize`` the child would have imported without dhatc.

A child is profiled until it ends: at exit, in ``os._exit``, and at a
SIGTERM that would kill it (multiprocessing's ``Pool.terminate``): dhatc then
saves first and dies of the signal as the child would have.

Limits (the README says them too): a child started with another environment
(``env=`` without ``PYTHONPATH``), with ``-E``, ``-I`` or ``-S``, or by another
Python version than the target's is not profiled; a non-Python child runs as
it would, but with the preload library loaded (which does nothing there); a
process that replaces itself with ``exec`` keeps only the new program's
profile; a child that ends after the target is not in the target's summary
(nor in the merged file), though its file is written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType
from typing import Any, List, Optional, Tuple

from . import _dhat_file, _engine, _profiler, _run_profiler
from ._run_config import CHILD_CONFIG_VARIABLE, ChildConfig, RunConfig
from ._run_profiler import RunProfiler

#: The directory put first on PYTHONPATH for exec'd children.
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_follow_site")


def child_file_name(output: str, tag: object) -> str:
    """The file of child `tag` (a pid, or "merged"), named after `output`."""
    root, ext = os.path.splitext(output)
    return f"{root}.{tag}{ext}" if ext else f"{output}.{tag}"


class ChildProfiler(RunProfiler):
    """The profile of a child of the target: saved quietly into its own file,
    which it then adds to the ledger."""

    fails_the_exit = False  # the child's exit status is its parent program's business

    def __init__(self, config: ChildConfig, forked: bool,
                 is_target: Any = None) -> None:
        self.parent_pid = os.getppid()
        self.child_pid = os.getpid()
        self._forked = forked
        self._ledger = config.ledger
        super().__init__(
            config.output_dir,
            is_target if is_target is not None else (lambda frame: False),
            mode=config.mode,
            file_name=child_file_name(config.output, self.child_pid),
            trim_backtraces=config.trim,
            native=config.native,
            native_interpreter_frames=config.native_interpreter_frames,
        )

    def _command(self) -> str:
        kind = "fork child" if self._forked else "child"
        return f"{_profiler.command_line()} ({kind} of pid {self.parent_pid})"

    def _report(self) -> None:
        self.save()
        _record(self._ledger, self.child_pid, self.file_name)


# --- the ledger of the children's files ------------------------------------------------


def _record(ledger: str, pid: int, file_name: str) -> None:
    """Adds a child's file to the ledger, in one write (O_APPEND: whole lines
    from concurrent children).  The ledger may be gone (the target ended)."""
    line = (json.dumps([pid, file_name]) + "\n").encode("utf-8")
    try:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


def _read_ledger(ledger: str) -> List[Tuple[int, str]]:
    try:
        with open(ledger, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    children = []
    for line in lines:
        try:
            pid, name = json.loads(line)
            children.append((int(pid), str(name)))
        except (ValueError, TypeError):
            continue  # a line cut short by a child killed mid-write
    return children


# --- in the target's process -----------------------------------------------------------


def follow_children(config: RunConfig, profiler: RunProfiler) -> None:
    """Sets up the target's process so that its children are profiled: the
    environment of exec'd children, the fork hook, and the end of the run."""
    ledger_dir = tempfile.mkdtemp(prefix="dhatc-run-")
    child_config = ChildConfig(
        mode=config.mode,
        trim=config.trim,
        output=config.output,
        output_dir=config.output_dir,
        ledger=os.path.join(ledger_dir, "children"),
        package_dir=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        cache_tag=sys.implementation.cache_tag or "",
        native=config.native,
        native_interpreter_frames=config.native_interpreter_frames,
    )
    os.environ[CHILD_CONFIG_VARIABLE] = child_config.to_json()
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = SITE_DIR if not path else f"{SITE_DIR}{os.pathsep}{path}"
    _register_fork_hook(child_config)

    def end() -> None:
        _end_of_run(profiler, child_config, config.merge)
        shutil.rmtree(ledger_dir, ignore_errors=True)

    profiler.on_end = end


def _end_of_run(profiler: RunProfiler, config: ChildConfig, merge: bool) -> None:
    """Lists the children's files; with `merge`, writes the merged file."""
    children = _read_ledger(config.ledger)
    for pid, name in children:
        _dhat_file.eprint(f"dhat: The data of child process {pid} has been saved to {name}")
    if not merge:
        return
    names = [profiler.file_name, *(name for _, name in children)]
    paths = [profiler.path_of(name) for name in names if os.path.exists(profiler.path_of(name))]
    merged_name = child_file_name(config.output, "merged")
    if not paths:
        return
    from ._errors import CommandError
    from ._merge import merge_files

    try:
        merged = merge_files(paths)
        _dhat_file.save(merged, profiler.path_of(merged_name))
    except (CommandError, OSError) as e:
        _dhat_file.eprint_error(f"dhat: error: cannot write the merged profile: {e}")
        return
    _dhat_file.eprint(
        f"dhat: The merged data of {len(paths)} processes has been saved to {merged_name}"
    )


# --- in a child ----------------------------------------------------------------------------


def _register_fork_hook(config: ChildConfig) -> None:
    """Once per process image (a fork child inherits it): each fork child
    starts its own profile."""

    def after_fork_in_child() -> None:
        try:
            profiler = ChildProfiler(config, forked=True)
            _run_profiler.adopt(profiler)
            _save_on_sigterm()
        except Exception as e:
            _dhat_file.eprint_error(f"dhat: warning: not profiling process {os.getpid()}: {e}")
            return
        # The root is two levels up from _begin: it, this hook, then the frame
        # that called os.fork.  Nothing may allocate on the way back.
        profiler._begin()

    os.register_at_fork(after_in_child=after_fork_in_child)


def _is_main_module_frame(frame: FrameType) -> bool:
    return frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"


def start_in_exec_child(text: str) -> None:
    """Called by _follow_site/sitecustomize.py in a child that started a new
    Python program: profiles it from the first line of its __main__."""
    config = ChildConfig.from_json(text)
    _profiler.skip_native_note()
    profiler = ChildProfiler(config, forked=False, is_target=_is_main_module_frame)
    _run_profiler.adopt(profiler)
    _run_profiler.install_exit_handlers()
    _register_fork_hook(config)
    _save_on_sigterm()
    profiler.arm()


def _save_on_sigterm() -> None:
    """A SIGTERM that would kill the child (its default action) saves the
    profile first, then kills it as before.  A child that handles SIGTERM
    itself, or ignores it, is left as it is.

    The handler is Python code, which runs only once the main thread is back
    in the interpreter: the engine sends SIGTERM again until it has run, so
    that one that came just before a blocking call (a Pool worker about to
    wait for the lock its terminating parent holds) interrupts it all the
    same (src/dhatc/sigterm.h).  A fork child inherits the handler but not
    the engine's timer: it sets both up again."""
    try:
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, _on_sigterm):
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread
        return
    try:
        _engine.retry_sigterm()
    except OSError as e:
        # Without the retry the handler could wait for ever: SIGTERM kills
        # at once, unsaved, as it would without dhatc.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _dhat_file.eprint_error(
            f"dhat: warning: a SIGTERM will not save the profile of process {os.getpid()}: {e}")


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    _engine.stop_sigterm_retry()
    if _run_profiler.ending:
        # The child is saving already (it was exiting): it dies of the
        # signal once the file is written.
        _run_profiler.after_ending = _die_of_sigterm
        return
    profiler = _run_profiler.current
    if profiler is not None and _profiler.running_profiler() is profiler:
        _run_profiler.stop_and_save(profiler)
    _die_of_sigterm()


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
