"""dhatc.Profiler: the object whose lifetime bounds what is measured.

A Profiler's phases mirror the crate's (the engine is process-wide, so at most
one profiler is current at a time, in DURING or POST_ASSERT)::

    PRE --start()/with--> DURING --stop()/with-exit/last ref dropped/exit--> POST_DROP
                            |  ^
                            |  +-- a stop() interrupted before the profile was built
                            |      (KeyboardInterrupt, MemoryError): the engine keeps
                            |      the data, the next stop() collects it
                            |
                            +--failed dhatc.assert_* (testing mode)--> POST_ASSERT --stop()--> POST_DROP

:class:`_Session` is the one owner of "which profiler is current" and of
every change of phase; the C engine keeps its own session (start, stop,
release, asserted) that these transitions drive.
"""

from __future__ import annotations

import atexit
import enum
import functools
import os
import sys
import weakref
from types import TracebackType
from typing import Any, Callable, Optional, Type, Union

from . import _dhat_file, _engine, _native_frames
from ._dhat_file import Profile
from ._engine_data import StopData

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


def skip_native_note() -> None:
    """Keeps the note from being printed in this process (``dhatc run`` says
    itself why malloc is or is not tracked)."""
    global _native_note_shown
    _native_note_shown = True


class Phase(enum.Enum):
    """Where a Profiler is in its life (the module's diagram): the crate's
    ``Pre``, ``During``, ``PostAssert`` and the phase after the drop."""

    PRE = "pre"  # created, not started
    DURING = "during"  # profiling (or stopped, the profile not built yet)
    POST_ASSERT = "post-assert"  # a dhatc.assert_* failed: saved; stop() saves nothing more
    POST_DROP = "post-drop"  # stopped: Profiler.profile holds the profile


# The checks on paths that must not allocate (a passing assertion, __del__
# while profiling) compare against these globals: looking one up allocates
# nothing, an Enum attribute may run Python code.
_PRE, _DURING, _POST_ASSERT, _POST_DROP = (
    Phase.PRE, Phase.DURING, Phase.POST_ASSERT, Phase.POST_DROP
)

ALREADY_RUNNING = "dhat: creating a profiler while a profiler is already running"


class _Session:
    """The one owner, on the Python side, of which profiler is current in this
    process (in DURING or POST_ASSERT; held weakly, since dropping the last
    reference to a running profiler must stop it, as dropping a Rust Profiler
    does) and of every change of a profiler's phase."""

    def __init__(self) -> None:
        self.ref: Optional["weakref.ReferenceType[Profiler]"] = None

    def current(self) -> Optional["Profiler"]:
        ref = self.ref
        return ref() if ref is not None else None

    def enter(self, profiler: "Profiler") -> None:
        """PRE -> DURING, just before the engine starts (:meth:`abort` if it cannot)."""
        if profiler.phase is not _PRE:
            raise RuntimeError(
                "dhatc: this Profiler has already been started; create a new Profiler"
            )
        current = self.current()
        if current is not None:
            raise _engine.ProfilerAlreadyRunningError(
                ALREADY_RUNNING + current._already_running_hint()
            )
        self.ref = weakref.ref(profiler)
        profiler.phase = _DURING

    def abort(self, profiler: "Profiler") -> None:
        """DURING -> PRE: the engine did not start."""
        profiler.phase = _PRE
        self._let_go(profiler)

    def assertion_failed(self, profiler: "Profiler") -> None:
        """DURING -> POST_ASSERT: the stats and assertions refuse from now on."""
        _engine.set_asserted(True)
        profiler.phase = _POST_ASSERT

    def leave(self, profiler: "Profiler") -> None:
        """DURING or POST_ASSERT -> POST_DROP."""
        profiler.phase = _POST_DROP
        self._let_go(profiler)

    def forget_in_fork_child(self) -> None:
        """In the child of a fork: the parent's profile is the parent's, so the
        child neither records into it nor saves it."""
        profiler = self.current()
        if profiler is not None:
            self.leave(profiler)
            _engine.abandon()

    def _let_go(self, profiler: "Profiler") -> None:
        if self.current() is profiler:
            self.ref = None
        _engine.set_asserted(False)
        _tracemalloc_guard.disarm()


_session = _Session()


def running_profiler() -> Optional["Profiler"]:
    """The profiler that is running (or has asserted and not been stopped), if any."""
    ref = _session.ref  # (no method call: a passing assertion calls this)
    return ref() if ref is not None else None


def command_line() -> str:
    """The file's ``cmd``: sys.executable and sys.argv, whatever the program
    made of them (an argv that holds non-strings, an executable of None)."""
    executable = getattr(sys, "executable", None)
    parts = [executable if isinstance(executable, str) and executable else "python"]
    argv = getattr(sys, "argv", None)
    if isinstance(argv, (list, tuple)):
        parts.extend(arg if isinstance(arg, str) else _safe_repr(arg) for arg in argv)
    return " ".join(parts)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


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

    With ``native`` each program point's stack holds native (C) frames too,
    unwound with libunwind, the Python frames spliced in where the
    interpreter's evaluation loop runs them; the interpreter's own C frames
    between them are left out unless ``native_interpreter_frames`` is set.
    ``trim_backtraces`` then bounds all the frames of a stack.  Needs dhatc
    built with libunwind and libdw (RuntimeError otherwise, saying what to
    install); C code calling ``malloc`` is seen under ``python -m dhatc run``.

    Bad arguments raise at construction: ``TypeError`` for a wrong type (the
    flags must be ``bool``), ``ValueError`` for an unknown mode, an empty
    ``file_name`` or one holding a NUL character, or a negative
    ``trim_backtraces``.
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
        native: bool = False,
        native_interpreter_frames: bool = False,
    ) -> None:
        #: The phase (read-only: the session changes it).
        self.phase = _PRE
        if not isinstance(mode, str):
            raise TypeError(f"dhatc: mode must be a str, not {type(mode).__name__}")
        if mode not in _MODES:
            raise ValueError(f"dhatc: unknown mode {mode!r}; use mode=\"heap\" or mode=\"ad-hoc\"")
        path = _check_file_name(file_name)
        for flag, value in (
            ("testing", testing),
            ("eprint_json", eprint_json),
            ("this_thread_only", this_thread_only),
            ("native", native),
            ("native_interpreter_frames", native_interpreter_frames),
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
        self.file_name: str = path if path is not None else _DEFAULT_FILE_NAMES[mode]
        self.testing = testing
        self.trim_backtraces: Optional[int] = trim_backtraces
        self.eprint_json = eprint_json
        self.this_thread_only = this_thread_only
        if native and not _native_frames.available():
            raise RuntimeError(_native_frames.MISSING)
        self.native = native
        self.native_interpreter_frames = native_interpreter_frames
        #: The finished profile, once stopped (kept even if saving it failed).
        self.profile: Optional[Profile] = None
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
        """Starts the profile, the caller of this method's caller being the
        root of every stack (for start() and __enter__, their caller; a
        subclass may call it from elsewhere, a trace function say)."""
        _session.enter(self)
        try:
            if self.mode == "heap" and not self.testing:
                _note_native_tracking()  # before start: printing allocates
            if self.mode == "heap":
                _tracemalloc_guard.arm()
            trim = -1 if self.trim_backtraces is None else self.trim_backtraces
            native = (_native_frames.start_argument(self.native_interpreter_frames)
                      if self.native else None)
            self._pid = os.getpid()
            # The root is two frames up from here.  Nothing may allocate after
            # this call on the way back to the user.
            _engine.start(_MODES[self.mode], trim, 2, self.this_thread_only, native)
        except BaseException:
            _session.abort(self)
            raise

    def stop(self) -> None:
        """Stops profiling and, outside testing mode, saves the profile.

        Does nothing if the profiler is not running.  If the file cannot be
        written, raises OSError; the profile stays in :attr:`profile` and can be
        written again with :meth:`save`.  If building the profile is cut short
        (MemoryError, KeyboardInterrupt), the data stays with the engine and
        calling stop() again collects it.
        """
        phase = self.phase
        if phase is _POST_ASSERT:
            if self.profile is None and _engine.has_uncollected():
                # The failed assertion was cut short before its profile existed.
                data = _engine.stop()
                self._collect(data, leave=True)
                self._report()
            else:
                _session.leave(self)
            return
        if phase is not _DURING:
            return
        if _engine.running() is None and not _engine.has_uncollected():
            # The engine stopped under us: this is the child of a fork (made
            # from C, so Python's at-fork hook did not run).  The parent owns
            # the profile; the child neither records into it nor saves it.
            _session.leave(self)
            _engine.abandon()
            return
        data = _engine.stop()  # first: (3.9) a keyword call makes a bound method
        self._collect(data, leave=True)
        if not self.testing:
            self._report()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        # Save even when the block raised (KeyboardInterrupt included).  The
        # block's exception propagates unchanged: a failure to save is then
        # reported on stderr (the profile stays in self.profile).
        if exc is None:
            self.stop()
            return
        try:
            self.stop()
        except Exception as e:
            _dhat_file.eprint_error(f"dhat: error: {e}")

    def __del__(self) -> None:
        # No os.getpid() here or in _stop_at_exit: it allocates, while the
        # profile still records; a fork child is recognised in stop().
        phase = getattr(self, "phase", None)
        if phase is _DURING or phase is _POST_ASSERT:
            try:
                self.stop()
            except Exception as e:  # a finaliser must not raise
                _dhat_file.eprint_error(f"dhat: error: {e}")

    def _assertion_failed(self, data: StopData) -> None:
        """Called by a failing ``dhatc.assert_*`` (testing mode) with what
        ``_engine.stop()`` returned (it stops the engine itself, before any
        Python call that could allocate): keeps the profile, saves it and prints
        the summary as a non-testing stop does, and enters POST_ASSERT, so that
        :meth:`stop` does not save again.

        Raises OSError if the file cannot be written (the phase is POST_ASSERT
        and :attr:`profile` is set all the same).
        """
        _session.assertion_failed(self)
        self._collect(data, leave=False)
        self._report()

    def _collect(self, data: StopData, *, leave: bool) -> None:
        """Builds :attr:`profile` from the engine's data; then (if `leave`)
        the session lets go of this profiler, and the engine drops the data.

        In that order: until the profile exists, stop() can build it again
        (a KeyboardInterrupt or MemoryError here leaves the phase as it was);
        and dropping the data can run any Python code (it holds the last
        references to code objects), a new profile included.
        """
        self.profile = _dhat_file.profile_from_engine(data, cmd=self._command(), pid=self._pid)
        try:
            if leave:
                _session.leave(self)
        finally:
            _engine.release()
        for line in _dhat_file.warning_lines(self.profile):
            _dhat_file.eprint(line)

    def _command(self) -> str:
        """What the file's ``cmd`` says ran."""
        return command_line()

    def _already_running_hint(self) -> str:
        """What the error says when another profiler is started while this one runs."""
        return ""

    # ---- output -----------------------------------------------------------

    def _report(self) -> None:
        """Saves the profile (or prints its JSON), and prints the summary: after
        the save, so that nothing printed can stop it."""
        assert self.profile is not None
        summary = _dhat_file.summary_lines(self.profile)
        if self.eprint_json:
            for line in summary:
                _dhat_file.eprint(line)
            _dhat_file.print_json(self.profile)
            return
        try:
            self.save()
        except OSError:
            for line in summary:  # the figures all the same
                _dhat_file.eprint(line)
            raise
        for line in summary:
            _dhat_file.eprint(line)
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
            f"<{self.phase.value}>"
        )


def _check_file_name(file_name: object) -> Optional[str]:
    """`file_name` as a str (None for the default), or TypeError/ValueError."""
    if file_name is None:
        return None
    if not isinstance(file_name, (str, os.PathLike)):
        raise TypeError(
            f"dhatc: file_name must be a str or os.PathLike, not {type(file_name).__name__}"
        )
    path = os.fspath(file_name)
    if not isinstance(path, str):
        raise TypeError(f"dhatc: file_name must name a str path, not {type(path).__name__}")
    if path == "":
        raise ValueError("dhatc: file_name must not be empty; give a path, or None for the default")
    if "\0" in path:
        raise ValueError(f"dhatc: file_name must not contain a NUL character: {path!r}")
    return path

class _TracemallocGuard:
    """Keeps dhatc's hooks through tracemalloc.stop().

    tracemalloc.stop() puts back the allocators it saw when it started; if it
    started before dhatc, that removes dhatc's hooks.  While a heap profile
    runs over a tracing tracemalloc, `tracemalloc.stop` is wrapped so dhatc
    hooks in again right after it.  (Code that kept its own reference to the
    function still removes them; the profile then warns when it stops.)
    """

    def __init__(self) -> None:
        self._original: Optional[Callable[..., Any]] = None

    def arm(self) -> None:
        import _tracemalloc  # built in: cheap, unlike the tracemalloc module

        if self._original is not None or not _tracemalloc.is_tracing():
            return
        import tracemalloc

        original = tracemalloc.stop

        # Exactly the original for every call, wrong ones included (its own
        # TypeError), then the hooks again.
        @functools.wraps(original)
        def stop(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if _engine.running() == "heap":
                _engine.rehook()
            return result

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
        except Exception as e:  # the interpreter goes on exiting
            _dhat_file.eprint_error(f"dhat: error: {e}")


def _after_fork_in_child() -> None:
    _session.forget_in_fork_child()


atexit.register(_stop_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
