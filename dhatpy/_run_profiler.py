"""The profilers of ``dhatc run``, and how a profiled process of the run ends.

The target's process (:mod:`dhatc._bootstrap`) and, with
``--follow-children``, every Python child of it (:mod:`dhatc._follow`) have
one :class:`RunProfiler` each, this process's :data:`current` one.  It starts
at the first line of the program's top frame (a fork child's: at once,
rooted at the frame that called ``os.fork``), and is stopped and saved when
the process ends: at interpreter exit, after the program's own atexit
handlers (:func:`install_exit_handlers` registers first, so runs last), or in
``os._exit``, which skips atexit, so dhatc wraps it.
"""

from __future__ import annotations

import atexit
import functools
import operator
import os
import sys
from types import FrameType
from typing import Any, Callable, Dict, Optional, Tuple, Union

from . import _dhat_file, _profiler
from ._testing import give_spare_frames

_PRE = _profiler.Phase.PRE

#: The exit status when the target's profile cannot be saved and the target
#: would have exited 0.
SAVE_FAILED_STATUS = 2

# os._exit as python has it, before dhatc wraps it.
_real_os_exit = os._exit


class RunProfiler(_profiler.Profiler):
    """A Profiler of ``dhatc run``: saves relative to the directory dhatc was
    started in, and can start at the first line of the program's top frame.

    ``Profiler`` takes the caller of ``start()`` as the root of every stack.
    Here that caller must be the program's own module frame, which does not
    exist until the program runs: :meth:`arm` installs a trace function that
    waits for the first "line" event of the frame `is_target` recognises (the
    frame is then fully set up on every CPython version), starts the profile
    from there, and removes itself.
    """

    #: Whether a failure to save at the end turns an exit status of 0 into
    #: SAVE_FAILED_STATUS (the target's own run; not a child's, whose status
    #: its parent program reads).
    fails_the_exit = True

    def __init__(self, output_dir: str, is_target: Callable[[FrameType], bool],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._is_target = is_target
        self._output_dir = output_dir
        self._previous_trace: Any = None
        # Set when the target's frame is entered: the target has started,
        # even if it never runs a line (an empty script).
        self.target_started = False
        #: Called once the process's profile is saved (or failed to be).
        self.on_end: Optional[Callable[[], None]] = None

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
        return super().save(self.path_of(path))

    def path_of(self, file_name: str) -> str:
        """Where `file_name` (as the user gave it) is."""
        return os.path.join(self._output_dir, file_name)

    def _already_running_hint(self) -> str:
        return (" (this process runs under `dhatc run`, which profiles all of it: run the "
                "program without `dhatc run` to use a dhatc.Profiler of its own)")


#: This process's profiler of the run: the target's, or in a child, the child's.
current: Optional[RunProfiler] = None
#: What ended the target (None: it returned), for the exit status; set by the
#: bootstrap.
ended_with: Optional[BaseException] = None


def adopt(profiler: RunProfiler) -> None:
    """Makes `profiler` the one the end of this process stops and saves."""
    global current
    current = profiler
    # (3.9/3.10) so that the calls that end the profile allocate no frame
    # objects in it.
    give_spare_frames(_stop_at_exit, stop_and_save, _profiler.running_profiler, profiler.stop)


#: True while this process's profile is being saved at its end; a signal
#: that would end the process waits for the save (see _follow's SIGTERM).
ending = False
#: A function that finishes what such a signal was doing, once the save is done.
after_ending: Optional[Callable[[], None]] = None


def stop_and_save(profiler: RunProfiler) -> bool:
    """Stops and saves the profile; False, the error printed (to file
    descriptor 2 where sys.stderr cannot take it), if it could not be saved."""
    global ending
    ending = True
    try:
        profiler.stop()
        return True
    except Exception as e:
        _dhat_file.eprint_error(f"dhat: error: {e}")
        return False
    finally:
        ending = False


def _end(profiler: RunProfiler) -> bool:
    """Stops and saves `profiler` and runs its on_end; False if the save failed.
    Then whatever a signal that came meanwhile was to do (die of it)."""
    saved = stop_and_save(profiler)
    if profiler.on_end is not None:
        try:
            profiler.on_end()
        except Exception as e:
            _dhat_file.eprint_error(f"dhat: error: {e}")
    deferred = after_ending
    if deferred is not None:
        deferred()
    return saved


def exit_status(exception: Optional[BaseException]) -> int:
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


def _ours(profiler: Optional[RunProfiler]) -> bool:
    """Whether `profiler` runs in this process (not a fork child's inherited copy)."""
    return profiler is not None and _profiler.running_profiler() is profiler


def _stop_at_exit() -> None:
    """Stops and saves this process's profile at interpreter exit.  A target
    that would exit 0 exits with SAVE_FAILED_STATUS if it cannot be saved."""
    profiler = current
    if not _ours(profiler):
        return  # never started, already saved (os._exit), or not this process's
    assert profiler is not None
    if not _end(profiler) and profiler.fails_the_exit and exit_status(ended_with) == 0:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        _real_os_exit(SAVE_FAILED_STATUS)


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


@functools.wraps(_real_os_exit)
def _os_exit(*args: Any, **kwargs: Any) -> Any:
    # Exactly os._exit for every call, wrong ones included; a call it accepts
    # saves this process's profile first.
    status = _exit_status_of_call(args, kwargs)
    profiler = current
    if status is not None and _ours(profiler):
        assert profiler is not None
        if not _end(profiler) and profiler.fails_the_exit and status == 0:
            args, kwargs = (SAVE_FAILED_STATUS,), {}
    return _real_os_exit(*args, **kwargs)


def install_exit_handlers() -> None:
    """At exit and in os._exit, this process's profile is saved (once per
    process image: a fork child inherits them)."""
    atexit.register(_stop_at_exit)
    os._exit = _os_exit
    give_spare_frames(_os_exit, _exit_status_of_call, _end)
