"""The bootstrap of ``dhatc run``: runs the target under a profiler, inside
the interpreter the launcher (:mod:`dhatc._cmd_run`) re-executed.

It puts ``LD_PRELOAD`` back as it was (so child processes start as they would
without dhatc), sets up ``sys.argv``, ``sys.path[0]`` and ``__main__`` as
``python`` would, and runs the target.  The profiler starts at the target's
first line, with the target's top frame as the root (no dhatc or runpy frames
below it), and stops at interpreter exit, after the target's own ``atexit``
handlers, as a running ``dhatc.Profiler`` does; so a normal end, ``sys.exit``,
an uncaught exception (its traceback printed first, as usual, without the
bootstrap's frames) and ``KeyboardInterrupt`` all save the profile and print
the summary, with the exit status ``python`` gives.  ``os._exit`` saves it too
(dhatc wraps it); a fatal signal does not.  A target that never starts (``-m``
naming no module, a directory without ``__main__.py``) fails as it does under
``python``, with no profile: an existing file is left as it was.

Processes: only the process running the target is profiled.  A child made by
``os.fork`` or multiprocessing's fork method neither records into nor saves
the parent's profile; a child started by exec (subprocess, multiprocessing's
spawn method, and the forkserver method, whose server is such a child) starts
without the preload library.  Either kind can start a ``dhatc.Profiler`` of
its own.
"""

from __future__ import annotations

import atexit
import functools
import operator
import os
import sys
from types import CodeType, FrameType, TracebackType
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _dhat_file, _engine, _profiler
from ._preload import PRELOAD_LIBRARY
from ._run_config import RunConfig
from ._testing import give_spare_frames

_PRE = _profiler.Phase.PRE

# The profiler of the bootstrap, kept alive until interpreter exit, and what
# ended the target (None: it returned), for the exit status.
_target_profiler: Optional["_TargetProfiler"] = None
_target_exception: Optional[BaseException] = None

# os._exit as python has it, before dhatc wraps it.
_real_os_exit = os._exit


class _TargetProfiler(_profiler.Profiler):
    """A Profiler that starts at the first line of the target's top frame.

    ``Profiler`` takes the caller of ``start()`` as the root of every stack.
    Here that caller must be the target's own module frame, which does not
    exist until the target runs: a trace function waits for that frame's
    first "line" event (the frame is then fully set up on every CPython
    version) and starts the profile from there, then removes itself.
    """

    def __init__(self, is_target: Callable[[FrameType], bool], output_dir: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._is_target = is_target
        self._output_dir = output_dir
        self._previous_trace: Any = None
        # Set when the target's frame is entered: the target has started,
        # even if it never runs a line (an empty script).
        self.target_started = False

    def arm(self) -> None:
        """Installs the trace function that starts the profile."""
        self._previous_trace = sys.gettrace()
        sys.settrace(self._on_call)

    def disarm(self) -> None:
        """Removes it while it is still waiting (the target never ran a line)."""
        sys.settrace(self._previous_trace)

    def _on_call(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and self._is_target(frame):
            self.target_started = True
            return self._on_first_line
        return None  # no tracing of any other frame

    def _on_first_line(self, frame: FrameType, event: str, arg: Any) -> Any:
        sys.settrace(self._previous_trace)
        frame.f_trace = None
        if self.phase is _PRE:
            # Profiler._begin takes the frame two levels up from itself as the
            # root: it, this function, then the target frame being traced.
            self._begin()
        return None

    def save(self, file_name: Optional[Union[str, "os.PathLike[str]"]] = None) -> str:
        """Writes the profile as Profiler.save does, a relative file name taken
        from the directory dhatc was started in, not the current one."""
        path = os.fspath(file_name) if file_name is not None else self.file_name
        return super().save(os.path.join(self._output_dir, path))

    def _already_running_hint(self) -> str:
        return (" (this process runs under `dhatc run`, which profiles all of it: run the "
                "program without `dhatc run` to use a dhatc.Profiler of its own)")


# --- what python would give the target ----------------------------------------------


def _main_namespace() -> Dict[str, Any]:
    """``__main__``'s namespace, emptied to what a fresh interpreter has."""
    namespace = sys.modules["__main__"].__dict__
    keep = {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__builtins__"}
    for name in [n for n in namespace if n not in keep]:
        del namespace[name]
    if sys.version_info < (3, 14):  # 3.14+ makes module annotations lazily (PEP 649)
        namespace["__annotations__"] = {}
    return namespace


def _set_path0(path0: str) -> None:
    """Puts sys.path[0] as python does for its target, unless -P/-I keep it
    out.  (The -c program took off the '' python put there for it.)"""
    if getattr(sys.flags, "safe_path", False) or sys.flags.isolated:
        return
    sys.path.insert(0, path0)


def _compile_script(path: str) -> CodeType:
    with open(path, "rb") as f:  # as python does: bytes, so the coding cookie applies
        source = f.read()
    return compile(source, path, "exec", dont_inherit=True)


def _is_source_file(path: str) -> bool:
    """False for a zip file (python runs its __main__.py), True otherwise."""
    import zipfile

    try:
        return not zipfile.is_zipfile(path)
    except OSError:
        return True


def _prepare_target(config: RunConfig, args: List[str],
                    namespace: Dict[str, Any]) -> Tuple[Optional[CodeType], Optional[str]]:
    """Sets sys.argv, sys.path[0] and __main__ as python would for the target;
    returns its code, or the module runpy is to run as __main__."""
    kind, target = config.kind, config.target
    if kind == "code":
        sys.argv[:] = ["-c", *args]
        _set_path0("")
        return compile(target, "<string>", "exec", dont_inherit=True), None
    if kind == "module":
        sys.argv[:] = ["-m", *args]  # runpy puts the module's file in argv[0]
        _set_path0(os.getcwd())
        return None, target
    sys.argv[:] = [target, *args]
    if os.path.isdir(target) or not _is_source_file(target):
        # A directory or zip file with a __main__.py: python runs it as a module.
        _set_path0(os.path.abspath(target))
        return None, "__main__"
    path = os.path.abspath(target)
    _set_path0(os.path.dirname(os.path.realpath(target)))
    from importlib.machinery import SourceFileLoader

    namespace.update(__file__=path, __loader__=SourceFileLoader("__main__", path))
    if sys.version_info < (3, 15):  # 3.15 no longer sets __cached__ on __main__
        namespace["__cached__"] = None
    return _compile_script(path), None


# --- what dhatc installs into the target ---------------------------------------------
#
# Each wrapper behaves exactly as what it wraps for every call, wrong ones
# included: it passes the arguments on as they came, and adds its own work
# only to a call the original accepts.


def _strip_bootstrap_frames(boot_code: CodeType) -> None:
    """Uncaught exceptions are shown as python shows them: without the
    bootstrap's frames at the bottom of the traceback."""
    ours = globals()

    def strip(tb: Optional[TracebackType]) -> Optional[TracebackType]:
        while tb is not None and (
            tb.tb_frame.f_globals is ours or tb.tb_frame.f_code is boot_code
        ):
            tb = tb.tb_next
        return tb

    previous_hook = sys.excepthook

    @functools.wraps(previous_hook)
    def excepthook(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 3 and not kwargs and isinstance(args[2], TracebackType):
            exc_type, exc, tb = args
            stripped = strip(tb)
            if isinstance(exc, BaseException) and exc.__traceback__ is tb:
                exc.__traceback__ = stripped  # what 3.12+ prints from
            args = (exc_type, exc, stripped)
        return previous_hook(*args, **kwargs)

    sys.excepthook = excepthook


def _exit_status_of_call(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[int]:
    """The status of ``os._exit(*args, **kwargs)``, None if os._exit would
    refuse the call (it takes one C int, ``status``)."""
    if len(args) + len(kwargs) != 1 or (kwargs and "status" not in kwargs):
        return None
    value = args[0] if args else kwargs["status"]
    if isinstance(value, float):
        return None
    try:
        status = operator.index(value)
    except Exception:
        return None
    return status if -(2**31) <= status < 2**31 else None


def _save_on_os_exit(profiler: "_TargetProfiler") -> None:
    """os._exit skips atexit: save the profile first, in the profiled process
    only (not in a forked child, which calls it too)."""

    @functools.wraps(_real_os_exit)
    def _exit(*args: Any, **kwargs: Any) -> Any:
        status = _exit_status_of_call(args, kwargs)
        if status is not None and _profiler.running_profiler() is profiler:
            if not _stop_and_save(profiler) and status == 0:
                args, kwargs = (SAVE_FAILED_STATUS,), {}
        return _real_os_exit(*args, **kwargs)

    os._exit = _exit


# --- the end of the run -------------------------------------------------------------

#: The exit status when the profile cannot be saved and the target would
#: have exited 0.
SAVE_FAILED_STATUS = 2


def _stop_and_save(profiler: "_TargetProfiler") -> bool:
    """Stops and saves the profile; False, the error printed (to file
    descriptor 2 where sys.stderr cannot take it), if it could not be saved."""
    try:
        profiler.stop()
        return True
    except Exception as e:
        _dhat_file.eprint_error(f"dhat: error: {e}")
        return False


def _exit_status(exception: Optional[BaseException]) -> int:
    """The status python exits with when the target ended with `exception`
    (0 for a target that returned; any non-zero value stands for a failure)."""
    if exception is None:
        return 0
    if isinstance(exception, SystemExit):
        code = exception.code
        if code is None:
            return 0
        return int(code) if isinstance(code, int) else 1
    return 1


def _stop_at_exit() -> None:
    """Registered before the target runs, so called after the target's own
    atexit handlers: stops and saves the profile.  A target that would exit 0
    exits with SAVE_FAILED_STATUS if the profile cannot be saved."""
    profiler = _target_profiler
    if profiler is None or _profiler.running_profiler() is not profiler:
        return  # never started, already saved (os._exit), or a fork child
    if not _stop_and_save(profiler) and _exit_status(_target_exception) == 0:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        _real_os_exit(SAVE_FAILED_STATUS)


def _restore_preload(previous: Optional[str]) -> None:
    """Children start as they would without dhatc: LD_PRELOAD as it was."""
    if previous is None:
        os.environ.pop("LD_PRELOAD", None)
    else:
        os.environ["LD_PRELOAD"] = previous


def _check_native_tracking(config: RunConfig) -> None:
    """Says why malloc is not tracked, instead of Profiler's generic note."""
    _profiler.skip_native_note()
    if config.preloaded and not _engine.native_tracking():
        _dhat_file.eprint(
            "dhat: warning: blocks allocated directly with malloc are not tracked: another "
            f"library in LD_PRELOAD provides malloc first; to wrap it, put dhatc's first: "
            f"LD_PRELOAD={PRELOAD_LIBRARY}:{config.ld_preload} python -m dhatc run ..."
        )


def bootstrap() -> None:
    """Runs the target described by ``sys.argv[1]`` (a RunConfig) under a profiler.

    Called by the ``-c`` program of the re-executed interpreter; exceptions
    from the target propagate to the interpreter's top level on purpose, so
    that python prints them and picks the exit status as it always does.
    """
    global _target_profiler, _target_exception
    boot_code = sys._getframe(1).f_code
    config = RunConfig.from_json(sys.argv[1])
    target_args: List[str] = sys.argv[2:]
    _restore_preload(config.ld_preload)
    _check_native_tracking(config)
    _strip_bootstrap_frames(boot_code)
    namespace = _main_namespace()
    code, run_as_module = _prepare_target(config, target_args, namespace)

    def is_target(frame: FrameType) -> bool:
        if code is not None:
            return frame.f_code is code
        return frame.f_globals is namespace and frame.f_code.co_name == "<module>"

    profiler = _TargetProfiler(
        is_target,
        config.output_dir,
        mode=config.mode,
        file_name=config.output,
        trim_backtraces=config.trim,
    )
    # Held until exit: the profile is saved at exit, after the target's own
    # atexit handlers, not when this function returns.
    _target_profiler = profiler
    _save_on_os_exit(profiler)
    atexit.register(_stop_at_exit)
    # (3.9/3.10) so that the calls that end the profile at exit allocate no
    # frame objects in it.
    give_spare_frames(_stop_at_exit, _stop_and_save, _profiler.running_profiler, profiler.stop)
    import runpy

    alter_argv = run_as_module != "__main__"
    profiler.arm()
    try:
        if code is not None:
            exec(code, namespace)
        else:
            runpy._run_module_as_main(run_as_module, alter_argv)  # type: ignore[attr-defined]
    except BaseException as e:
        _target_exception = e  # (a store to an existing global: allocates nothing)
        raise
    finally:
        # Nothing here may allocate once the profile runs (it would be
        # recorded under the bootstrap's frames): plain attribute tests.
        if profiler.phase is _PRE:
            profiler.disarm()
            if profiler.target_started:
                profiler.start()  # the target ran no line: an empty profile all the same
            # Otherwise the target never started (runpy found no module, no
            # __main__.py): runpy's SystemExit goes on to python, which prints
            # its message and exits 1, and there is no profile to save.
