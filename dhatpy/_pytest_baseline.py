"""Baselines: each profiled test's profile from an earlier run, to compare with.

``--dhatc-save-baseline DIR`` writes the profile of every profiled test that
passed to ``DIR``, a DHAT file per test named as the failure files are
(:func:`dhatc._pytest_run.file_name`), with the paths of files below the
rootdir made relative to it, so that a baseline made in one checkout compares
with a run in another.  They are ordinary DHAT files: the viewer, ``dhatc
report`` and ``dhatc diff`` read them.

``--dhatc-baseline DIR`` compares each profiled test with its file there
(read with :mod:`dhatc._dhat_reader`), figure by figure: the six figures of
``limit_heap``, a profile's totals (t-gmax for the peak, t-end for the end).
A figure grew when it is more than ``--dhatc-max-increase`` percent over the
baseline's (0 by default: any growth; anything over a baseline of 0).  The
lines that grew most are found by grouping both profiles' program points by
their innermost Python frame.
"""

from __future__ import annotations

import dataclasses
import decimal
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import _dhat_file
from ._dhat_file import Profile
from ._dhat_reader import DhatFile, DhatFileError, load
from ._pytest_limits import FIGURES, Figure, figures_of, same_moment
from ._pytest_sites import innermost_python_frame, relative_frame

#: Sites listed per figure that grew.
TOP_SITES = 5


@dataclasses.dataclass(frozen=True)
class Growth:
    """A figure that grew past the baseline, and the sites that grew most."""

    figure: Figure
    old: int
    new: int
    #: (site, change in bytes, change in blocks) of the figure's moment, most first.
    sites: Tuple[Tuple[str, int, int], ...]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A test compared with its baseline file."""

    path: Path
    grew: Tuple[Growth, ...] = ()
    problem: Optional[str] = None  # why the baseline file could not be used


def parse_percent(text: str) -> decimal.Decimal:
    """``"10"``, ``"2.5%"`` -> a percentage >= 0; ValueError otherwise."""
    number = text.strip()
    if number.endswith("%"):
        number = number[:-1].strip()
    try:
        percent = decimal.Decimal(number)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not a percentage; write e.g. 10 or 2.5%") from None
    if not percent.is_finite() or percent < 0:
        raise ValueError(f"{text!r} is not a percentage >= 0; write e.g. 10 or 2.5%")
    return percent


@dataclasses.dataclass(frozen=True)
class Baselines:
    """Where baselines are read from and written to, and how much growth passes."""

    rootdir: Path
    compare_dir: Optional[Path] = None
    save_dir: Optional[Path] = None
    max_increase: decimal.Decimal = decimal.Decimal(0)

    def compare(self, file_name: str, profile: Profile) -> Optional[Comparison]:
        """`profile` against its baseline file; None if there is none."""
        if self.compare_dir is None:
            return None
        path = self.compare_dir / file_name
        if not path.exists():
            return None
        try:
            old = load(path)
        except DhatFileError as e:
            return Comparison(path, problem=str(e))
        if old.mode != "heap" or old.gmax_bytes is None or old.end_bytes is None:
            return Comparison(path, problem=f"{path}: not a heap profile with block lifetimes")
        old_figures = _figures_of_file(old)
        new_figures = figures_of(profile)
        base = str(self.rootdir)
        grew = tuple(
            Growth(f, old_figures[f.name], new_figures[f.name], _sites_that_grew(f, old, profile, base))
            for f in FIGURES
            if self._grew(old_figures[f.name], new_figures[f.name])
        )
        return Comparison(path, grew=grew)

    def _grew(self, old: int, new: int) -> bool:
        # new > old * (1 + p/100), in exact arithmetic.
        return new * 100 > old * (100 + self.max_increase)

    def save(self, file_name: str, profile: Profile) -> Optional[str]:
        """Writes `profile` as the test's baseline; why it could not be, or None."""
        if self.save_dir is None:
            return None
        base = str(self.rootdir)
        portable = dataclasses.replace(
            profile,
            pps=[
                dataclasses.replace(pp, frames=tuple(relative_frame(f, base) for f in pp.frames))
                for pp in profile.pps
            ],
        )
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            _dhat_file.save(portable, str(self.save_dir / file_name))
        except OSError as e:
            return str(e)
        return None


def _figures_of_file(old: DhatFile) -> Dict[str, int]:
    """A baseline file's figures: its totals, and at t-gmax and t-end."""
    return {
        "total_blocks": old.total_blocks,
        "total_bytes": old.total_bytes,
        "max_blocks": old.gmax_blocks or 0,
        "max_bytes": old.gmax_bytes or 0,
        "curr_blocks": old.end_blocks or 0,
        "curr_bytes": old.end_bytes or 0,
    }


def _sites_that_grew(
    figure: Figure, old: DhatFile, new: Profile, base: str
) -> Tuple[Tuple[str, int, int], ...]:
    bytes_field = same_moment(figure, "bytes").pp_field
    blocks_field = same_moment(figure, "blocks").pp_field
    change: Dict[str, List[int]] = {}
    for frames, sign, b, k in [
        *((pp.frames, -1, getattr(pp, bytes_field) or 0, getattr(pp, blocks_field) or 0)
          for pp in old.pps),
        *((pp.frames, 1, getattr(pp, bytes_field), getattr(pp, blocks_field)) for pp in new.pps),
    ]:
        # The baseline's frames start at the allocator entry too; its files are
        # relative to the rootdir it was made in.
        site = change.setdefault(innermost_python_frame(frames, base), [0, 0])
        site[0] += sign * b
        site[1] += sign * k
    by_blocks = figure.unit == "blocks"
    ranked = sorted(
        ((site, b, k) for site, (b, k) in change.items() if (k if by_blocks else b) > 0),
        key=lambda s: (s[2], s[1]) if by_blocks else (s[1], s[2]),
        reverse=True,
    )
    return tuple(ranked[:TOP_SITES])


def directory_exists(path: Path) -> Optional[str]:
    """Why `path` cannot be read as a baseline directory, or None."""
    if not path.exists():
        return f"{path} does not exist; write a baseline there first with --dhatc-save-baseline"
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{path} is not readable"
    return None
