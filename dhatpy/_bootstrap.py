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

Processes: without ``--follow-children`` only the process running the target
is profiled.  A child made by ``os.fork`` or multiprocessing's fork method
neither records into nor saves the parent's profile; a child started by exec
(subprocess, multiprocessing's spawn method, and the forkserver method, whose
server is such a child) starts without the preload library.  Either kind can
start a ``dhatc.Profiler`` of its own.  With ``--follow-children``, see
:mod:`dhatc._follow`.  How the profile ends (at exit, in ``os._exit``, and the
exit status when it cannot be saved): :mod:`dhatc._run_profiler`.
"""

from __future__ import annotations

import functools
import os
import sys
from types import CodeType, FrameType, TracebackType
from typing import Any, Dict, List, Optional, Tuple

from importlib.machinery import BuiltinImporter

from . import _dhat_file, _engine, _follow, _profiler, _run_profiler
from ._preload import PRELOAD_LIBRARY
from ._run_config import RunConfig

_PRE = _profiler.Phase.PRE


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
    out.  (_bootstrap_main took off the entry python put there for itself.)"""
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
        namespace["__loader__"] = BuiltinImporter  # what python -c has
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
# only to a call the original accepts.  (os._exit: see _run_profiler.)


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

    Called by _bootstrap_main, the program of the re-executed interpreter; exceptions
    from the target propagate to the interpreter's top level on purpose, so
    that python prints them and picks the exit status as it always does.
    """
    boot_code = sys._getframe(1).f_code
    config = RunConfig.from_json(sys.argv[1])
    target_args: List[str] = sys.argv[2:]
    if not config.follow_children:
        _restore_preload(config.ld_preload)
    _check_native_tracking(config)
    _strip_bootstrap_frames(boot_code)
    namespace = _main_namespace()
    code, run_as_module = _prepare_target(config, target_args, namespace)

    def is_target(frame: FrameType) -> bool:
        if code is not None:
            return frame.f_code is code
        return frame.f_globals is namespace and frame.f_code.co_name == "<module>"

    profiler = _run_profiler.RunProfiler(
        config.output_dir,
        is_target,
        mode=config.mode,
        file_name=config.output,
        trim_backtraces=config.trim,
        native=config.native,
        native_interpreter_frames=config.native_interpreter_frames,
    )
    # Held until exit: the profile is saved at exit, after the target's own
    # atexit handlers, not when this function returns.
    _run_profiler.adopt(profiler)
    _run_profiler.install_exit_handlers()
    if config.follow_children:
        _follow.follow_children(config, profiler)
    import runpy

    alter_argv = run_as_module != "__main__"
    profiler.arm()
    try:
        if code is not None:
            exec(code, namespace)
        else:
            runpy._run_module_as_main(run_as_module, alter_argv)  # type: ignore[attr-defined]
    except BaseException as e:
        _run_profiler.ended_with = e  # (a store to an existing name: allocates nothing)
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
