"""dhatc.Profiler: the object whose lifetime bounds what is measured.

Phases, as in the crate (the engine is process-wide, so one profiler at a time):

    created --start()/with--> running --stop()/with-exit/last ref dropped/exit--> stopped
                                 |
                                 +--failed dhatc.assert_* (testing mode)--> asserted --stop()--> stopped
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type, Union

from . import _dhat_file, _engine
from ._dhat_file import Profile

_MODES = {"heap": _engine.MODE_HEAP, "ad-hoc": _engine.MODE_AD_HOC}
_DEFAULT_FILE_NAMES = {"heap": "dhat-heap.json", "ad-hoc": "dhat-ad-hoc.json"}

# Printed once per process when a heap profile starts without the preload
# library.  DHATC_QUIET=1 silences it (and any other "dhat: note:" line).
NATIVE_NOTE = (
    "dhat: note: blocks that C code allocates directly with malloc (C extensions, "
    "native libraries) are not tracked; run under `python -m dhatc run` to include them"
)
_native_note_shown = False


def _note_native_tracking() -> None:
    """Tells the user, once, that malloc is not tracked in this process."""
    global _native_note_shown
    if _native_note_shown or _engine.native_tracking():
        return
    _native_note_shown = True
    if os.environ.get("DHATC_QUIET", "") in ("", "0"):
        _dhat_file.eprint(NATIVE_NOTE)


# The running profiler, held weakly: dropping the last reference to it must
# stop it, as dropping a Rust Profiler does.
_running: Optional["weakref.ReferenceType[Profiler]"] = None


def running_profiler() -> Optional["Profiler"]:
    """The profiler that is running (or has asserted and not been stopped), if any."""
    return _running() if _running is not None else None


class Profiler:
    """Profiles the heap (``mode="heap"``) or ad hoc events (``mode="ad-hoc"``).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.  On
    stop, unless ``testing`` is set, the profile is written in DHAT's format to
    ``file_name`` (default ``dhat-heap.json`` / ``dhat-ad-hoc.json``) and a
    summary is printed to stderr; with ``eprint_json`` the JSON goes to stderr
    instead of a file.  ``trim_backtraces`` bounds the Python frames kept per
    program point (``None`` keeps all, up to the engine's limit of 512; so does
    any larger value, which is lowered to 512).  With ``this_thread_only`` only
    blocks allocated by the thread that starts the profiler count (frees count
    from any thread).

    Bad arguments raise at construction: ``TypeError`` for a wrong type (the
    flags must be ``bool``), ``ValueError`` for an unknown mode, an empty
    ``file_name`` or a negative ``trim_backtraces``.
    """

    def __init__(
        self,
        mode: str = "heap",
        *,
        file_name: Optional[Union[str, "os.PathLike[str]"]] = None,
        testing: bool = False,
        trim_backtraces: Optional[int] = 10,
        eprint_json: bool = False,
        this_thread_only: bool = False,
    ) -> None:
        if not isinstance(mode, str):
            raise TypeError(f"dhatc: mode must be a str, not {type(mode).__name__}")
        if mode not in _MODES:
            raise ValueError(f"dhatc: unknown mode {mode!r}; use mode=\"heap\" or mode=\"ad-hoc\"")
        if file_name is not None:
            if not isinstance(file_name, (str, os.PathLike)):
                raise TypeError(
                    f"dhatc: file_name must be a str or os.PathLike, not {type(file_name).__name__}"
                )
            if os.fspath(file_name) == "":
                raise ValueError(
                    "dhatc: file_name must not be empty; give a path, or None for the default"
                )
        for flag, value in (
            ("testing", testing),
            ("eprint_json", eprint_json),
            ("this_thread_only", this_thread_only),
        ):
            if not isinstance(value, bool):
                raise TypeError(
                    f"dhatc: {flag} must be a bool, not {type(value).__name__}"
                )
        if trim_backtraces is not None:
            if isinstance(trim_backtraces, bool) or not isinstance(trim_backtraces, int):
                raise TypeError(
                    "dhatc: trim_backtraces must be an int or None, "
                    f"not {type(trim_backtraces).__name__}"
                )
            if trim_backtraces < 0:
                raise ValueError(
                    f"dhatc: trim_backtraces must be >= 0 (or None for all frames), "
                    f"got {trim_backtraces}"
                )
            # The engine keeps at most MAX_DEPTH frames anyway (and takes a C
            # ssize_t): a larger bound means "all", as None does.
            trim_backtraces = min(trim_backtraces, _engine.MAX_DEPTH)
        self.mode = mode
        self.file_name: str = (
            os.fspath(file_name) if file_name is not None else _DEFAULT_FILE_NAMES[mode]
        )
        self.testing = testing
        self.trim_backtraces: Optional[int] = trim_backtraces
        self.eprint_json = eprint_json
        self.this_thread_only = this_thread_only
        #: The finished profile, once stopped (kept even if saving it failed).
        self.profile: Optional[Profile] = None
        self._phase = "created"  # created, running, asserted, stopped
        self._pid = 0

    # ---- lifetime ---------------------------------------------------------

    def start(self) -> "Profiler":
        """Starts profiling; returns the profiler."""
        self._begin()
        return self

    def __enter__(self) -> "Profiler":
        self._begin()
        return self

    def _begin(self) -> None:
        global _running
        if self._phase != "created":
            raise RuntimeError(
                "dhatc: this Profiler has already been started; create a new Profiler"
            )
        if running_profiler() is not None:
            raise _engine.ProfilerAlreadyRunningError(
                "dhat: creating a profiler while a profiler is already running"
            )
        if self.mode == "heap" and not self.testing:
            _note_native_tracking()  # before start: printing allocates
        if self.mode == "heap":
            _tracemalloc_guard.arm()
        trim = -1 if self.trim_backtraces is None else self.trim_backtraces
        self._pid = os.getpid()
        _running = weakref.ref(self)
        self._phase = "running"
        try:
            # The root is the caller of start()/__enter__: two frames up from here.
            # Nothing may allocate after this call on the way back to the user.
            _engine.start(_MODES[self.mode], trim, 2, self.this_thread_only)
        except BaseException:
            _running = None
            self._phase = "created"
            _tracemalloc_guard.disarm()
            raise

    def stop(self) -> None:
        """Stops profiling and, outside testing mode, saves the profile.

        Does nothing if the profiler is not running.  If the file cannot be
        written, raises OSError; the profile stays in :attr:`profile` and can be
        written again with :meth:`save`.  If memory runs out while the results
        are gathered, raises MemoryError; they are kept, and calling stop()
        again collects them.
        """
        if self._phase == "asserted":
            self._forget()
            return
        if self._phase != "running":
            return
        if _engine.running() is None and not _engine.has_uncollected():
            # The engine stopped under us: this is the child of a fork (made
            # from C, so Python's at-fork hook did not run).  The parent owns
            # the profile; the child neither records into it nor saves it.
            self._forget()
            _engine.abandon()
            return
        # A MemoryError leaves the phase "running" and the results in the
        # engine: calling stop() again collects them.
        data = _engine.stop()
        self._forget()
        self.profile = self._profile_from(data)
        _engine.release()  # only now: until the profile exists, stop() can build it again
        for line in _dhat_file.warning_lines(self.profile):
            _dhat_file.eprint(line)
        if not self.testing:
            self._report()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        # Save even when the block raised (KeyboardInterrupt included); the
        # exception propagates.
        self.stop()

    def __del__(self) -> None:
        # No os.getpid() here or in _stop_at_exit: it allocates, while the
        # profile still records; a fork child is recognised in stop().
        phase = getattr(self, "_phase", None)
        if phase in ("running", "asserted"):
            try:
                self.stop()
            except Exception as e:  # a finaliser must not raise
                print(f"dhat: error: {e}", file=sys.stderr)

    def _assertion_failed(self, data: Dict[str, Any]) -> None:
        """Called by a failing ``dhatc.assert_*`` (testing mode) with what
        ``_engine.stop()`` returned (it stops the engine itself, before any
        Python call that could allocate): keeps the profile, saves it and prints
        the summary as a non-testing stop does, and enters "asserted", so that
        :meth:`stop` does not save again.

        Raises OSError if the file cannot be written (the phase is "asserted"
        and :attr:`profile` is set all the same).
        """
        _engine.set_asserted(True)  # HeapStats/AdHocStats.get now raise
        self._phase = "asserted"
        self.profile = self._profile_from(data)
        _engine.release()
        self._report()

    def _profile_from(self, data: Dict[str, Any]) -> Profile:
        return _dhat_file.profile_from_engine(
            data, cmd=" ".join([sys.executable, *sys.argv]), pid=self._pid
        )

    def _forget(self) -> None:
        global _running
        self._phase = "stopped"
        if running_profiler() is self:
            _running = None
        _engine.set_asserted(False)
        _tracemalloc_guard.disarm()

    # ---- output -----------------------------------------------------------

    def _report(self) -> None:
        assert self.profile is not None
        for line in _dhat_file.summary_lines(self.profile):
            _dhat_file.eprint(line)
        if self.eprint_json:
            _dhat_file.write_json(self.profile, sys.stderr)
            sys.stderr.flush()
            return
        self.save()
        _dhat_file.eprint(_dhat_file.saved_line(self.file_name))

    def save(self, file_name: Optional[Union[str, "os.PathLike[str]"]] = None) -> str:
        """Writes the finished profile to `file_name` (default: the configured one).

        Returns the path written.  Raises RuntimeError if the profiler has not
        stopped yet, OSError if the file cannot be written.
        """
        if self.profile is None:
            raise RuntimeError("dhatc: nothing to save yet; stop the profiler first")
        path = os.fspath(file_name) if file_name is not None else self.file_name
        _dhat_file.save(self.profile, path)
        return path

    def __repr__(self) -> str:
        return (
            f"Profiler(mode={self.mode!r}, file_name={self.file_name!r}, testing={self.testing}, "
            f"trim_backtraces={self.trim_backtraces}, eprint_json={self.eprint_json}) "
            f"<{self._phase}>"
        )


class _TracemallocGuard:
    """Keeps dhatc's hooks through tracemalloc.stop().

    tracemalloc.stop() puts back the allocators it saw when it started; if it
    started before dhatc, that removes dhatc's hooks.  While a heap profile
    runs over a tracing tracemalloc, `tracemalloc.stop` is wrapped so dhatc
    hooks in again right after it.  (Code that kept its own reference to the
    function still removes them; the profile then warns when it stops.)
    """

    def __init__(self) -> None:
        self._original: Optional[Callable[[], None]] = None

    def arm(self) -> None:
        import _tracemalloc  # built in: cheap, unlike the tracemalloc module

        if self._original is not None or not _tracemalloc.is_tracing():
            return
        import tracemalloc

        original = tracemalloc.stop

        def stop() -> None:
            original()
            if _engine.running() == "heap":
                _engine.rehook()

        stop.__doc__ = original.__doc__
        self._original = original
        tracemalloc.stop = stop

    def disarm(self) -> None:
        if self._original is None:
            return
        import tracemalloc

        tracemalloc.stop = self._original
        self._original = None


_tracemalloc_guard = _TracemallocGuard()


def _stop_at_exit() -> None:
    """A profiler still running at interpreter exit is stopped and saved."""
    profiler = running_profiler()
    if profiler is not None:
        try:
            profiler.stop()
        except OSError as e:
            print(f"dhat: error: {e}", file=sys.stderr)


def _after_fork_in_child() -> None:
    """The child of a fork does not go on with the parent's profile: it neither
    records into it nor saves it (the parent does)."""
    global _running
    profiler = running_profiler()
    if profiler is not None:
        profiler._phase = "stopped"
        _running = None
        _engine.abandon()


atexit.register(_stop_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
