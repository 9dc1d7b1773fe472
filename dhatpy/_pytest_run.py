"""One profiled test: its profiler, limits and results, and its DHAT file.

Every profiled test that fails leaves a DHAT file named after its node id in
the plugin's directory (``--dhatc-dir``).  In the name, ``::`` becomes
``__``; a node id with characters a file name should not have (such as ``/``
or a space, which become ``_``) also gets a short hash of itself at the end,
so two tests never share a file (``tests_test_a.py__test[x_y]-1a2b3c4d.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Dict, List, Optional

from . import _dhat_file
from ._dhat_file import Profile
from ._profiler import Profiler
from ._pytest_baseline import Baselines, Comparison
from ._pytest_call import without_trampoline
from ._pytest_limits import exceeded, figures_of

# Python frames kept per stack: 10 of the test's own, plus the trampoline's.
TRIM_BACKTRACES = 11


@dataclasses.dataclass
class HeapRun:
    """One profiled test call."""

    nodeid: str
    profiler: Profiler
    path: Path  # where the DHAT file goes if the test fails
    limits: Dict[str, int]
    explicit: bool  # asked for by a marker, the fixture or a default limit
    repeat: int = 1  # runs of the test body; the last one is measured
    called: bool = False  # the zero-allocation call path ran
    raised: bool = False  # the measured call raised (for kinds that do not say otherwise)
    finished: bool = False
    profile: Optional[Profile] = None
    saved: bool = False  # the DHAT file was written to `path`
    save_error: Optional[str] = None  # why it could not be
    exceeded: List[str] = dataclasses.field(default_factory=list)
    baselines: Optional[Baselines] = None
    comparison: Optional[Comparison] = None  # with the test's baseline, if it has one

    @classmethod
    def create(
        cls,
        nodeid: str,
        directory: Path,
        limits: Dict[str, int],
        *,
        explicit: bool,
        all_threads: bool,
        repeat: int = 1,
        baselines: Optional[Baselines] = None,
    ) -> "HeapRun":
        profiler = Profiler(
            mode="heap",
            file_name=str(directory / file_name(nodeid)),
            testing=True,
            trim_backtraces=TRIM_BACKTRACES,
            this_thread_only=not all_threads,
        )
        return cls(
            nodeid=nodeid,
            profiler=profiler,
            path=Path(profiler.file_name),
            limits=limits,
            explicit=explicit,
            repeat=repeat,
            baselines=baselines,
        )

    def begin(self) -> None:
        """Called just before the profiled call: a file left by an earlier
        failing run of this test would be misleading."""
        self.called = True
        try:
            self.path.unlink()
        except OSError:
            pass

    def finish(self) -> None:
        """Called once the profiled call is over (it stops the profiler
        itself; this covers a start that failed): takes the profile and
        checks it against the limits.  Once."""
        if self.finished or not self.called:
            return
        self.finished = True
        self.profiler.stop()
        self.profile = without_trampoline(self.profiler.profile)
        if self.profile is not None:
            self.exceeded = exceeded(figures_of(self.profile), self.limits)
            if self.baselines is not None:
                self.comparison = self.baselines.compare(self.path.name, self.profile)

    @property
    def over(self) -> bool:
        """Whether the test exceeded a limit or grew past its baseline (or its
        baseline could not be read)."""
        comparison = self.comparison
        return bool(self.exceeded) or (
            comparison is not None and (bool(comparison.grew) or comparison.problem is not None)
        )

    def save(self) -> None:
        """Writes the test's profile to `path`, once."""
        if self.saved or self.save_error is not None or self.profile is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _dhat_file.save(self.profile, str(self.path))
            self.saved = True
        except OSError as e:
            self.save_error = str(e)


# Characters a node id keeps in its file name; any other becomes "_".
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.\-\[\]=+,]")
# Where "::" -> "__" could make two node ids look alike ("a::_b", "a_::b").
_AMBIGUOUS_UNDERSCORES = re.compile(r"__|_::|::_")


def file_name(nodeid: str) -> str:
    """A file name for a node id, a different one for each node id.

    '::' becomes '__' and other awkward characters (path separators, spaces,
    ...) become '_'.  When that could make two node ids give the same name
    (``test[a b]`` and ``test[a_b]``), and when a very long id is shortened,
    a hash of the node id goes at the end: then each test still has its own
    file, which its next run replaces or removes.
    """
    readable = nodeid.replace("::", "__")
    name = _UNSAFE_FILE_CHARS.sub("_", readable)
    unique = name == readable and not _AMBIGUOUS_UNDERSCORES.search(nodeid)
    if len(name) > 180:
        name, unique = name[:160], False
    if not unique:
        name += "-" + hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]
    return name + ".json"


def directory_problem(directory: Path) -> Optional[str]:
    """Why DHAT files could not be written in `directory` (created when first
    needed), or None.  Checked without creating anything."""
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == directory:
            return f"{directory} is not writable"
        return f"{directory} cannot be created: {existing} is not writable"
    return None


def make_directory(directory: Path) -> Optional[str]:
    """Creates `directory` if needed; why it could not be, or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the directory {directory} ({e.strerror or e})"
    return None
