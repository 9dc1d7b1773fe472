"""The heap figures a test can be limited on, and how limits are read: sizes
(``"10 MiB"``), ``@pytest.mark.limit_heap`` markers and the ``--dhatc-limit``
option.

:data:`FIGURES` is the one table of the six figures: everything the plugin
says or shows about a figure (what it means, which program point field breaks
it down, the viewer's sort metric for it, its column in the summary) is read
from there.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
from typing import TYPE_CHECKING, Dict, List, Mapping, Tuple

import pytest

from ._dhat_file import Profile

__all__ = ["FIGURES", "LIMIT_FIELDS", "LimitError", "parse_size"]

MARKER = "limit_heap"
NO_PROFILE_MARKER = "no_heap_profile"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One heap figure of a test (a field of :class:`dhatc.HeapStats`)."""

    name: str  # the HeapStats field and the limit's keyword, e.g. "max_bytes"
    moment: str  # "total", "max" (the peak, t-gmax) or "curr" (the end, t-end)
    unit: str  # "blocks" or "bytes"
    meaning: str  # what it counts, as a failure message says it
    pp_field: str  # the ProgramPoint field that breaks it down per program point
    viewer_sort: str  # the sort metric of DHAT's viewer that shows it best
    column: str  # its header in the --dhatc-profile-all summary


#: The figures, in the order messages list them.
FIGURES: Tuple[Figure, ...] = (
    Figure("total_blocks", "total", "blocks", "allocated in total", "total_blocks",
           "Total (blocks)", "total blocks"),
    Figure("total_bytes", "total", "bytes", "allocated in total", "total_bytes",
           "Total (bytes)", "total bytes"),
    Figure("max_blocks", "max", "blocks", "live at the peak (t-gmax)", "gmax_blocks",
           "At t-gmax (bytes)", "peak blocks"),
    Figure("max_bytes", "max", "bytes", "live at the peak (t-gmax)", "gmax_bytes",
           "At t-gmax (bytes)", "peak bytes"),
    Figure("curr_blocks", "curr", "blocks", "still live when the test returned (t-end)",
           "end_blocks", "At t-end (bytes)", "end blocks"),
    Figure("curr_bytes", "curr", "bytes", "still live when the test returned (t-end)",
           "end_bytes", "At t-end (bytes)", "end bytes"),
)
FIGURE: Dict[str, Figure] = {f.name: f for f in FIGURES}
#: The figures a limit can bound, in the order messages list them.
LIMIT_FIELDS = tuple(f.name for f in FIGURES)
#: The summary's columns: each moment's bytes, then its blocks.
SUMMARY_COLUMNS: Tuple[Figure, ...] = tuple(
    sorted(FIGURES, key=lambda f: (FIGURES.index(f) // 2, f.unit != "bytes"))
)


def same_moment(figure: Figure, unit: str) -> Figure:
    """The figure of the same moment as `figure` in `unit` ("bytes"/"blocks")."""
    return FIGURE[f"{figure.moment}_{unit}"]


def figures_of(profile: Profile) -> Dict[str, int]:
    """The six figures of a finished profile."""
    return {f.name: getattr(profile, f.name) for f in FIGURES}


def exceeded(figures: Mapping[str, int], limits: Mapping[str, int]) -> List[str]:
    """The figures over their limits, in FIGURES order."""
    return [f.name for f in FIGURES if f.name in limits and figures[f.name] > limits[f.name]]


if TYPE_CHECKING:
    from _pytest.outcomes import Failed as _Failed
else:
    _Failed = pytest.fail.Exception  # the public name of pytest's Failed


class HeapLimitExceeded(_Failed):
    """A test went over its heap limits (the message says which and where).

    A failure of pytest's own kind, so that pytest reports it as it reports
    ``pytest.fail()``, and its own type, so the plugin tells it apart from other
    failures.  Printed as ``Failed: ...``, like ``pytest.fail()``.
    """

    __module__ = "builtins"  # (what pytest does for its own Failed: a short name)
    __qualname__ = "Failed"


# ---- sizes --------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


class LimitError(ValueError):
    """A limit that cannot be understood (unknown figure, bad value)."""


def parse_size(value: object, field: str = "size") -> int:
    """Bytes from an int or a string such as ``"10 MiB"``, ``"1.5 KB"``, ``"512"``.

    Units: B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB (powers of
    1024), case-insensitive.  Raises LimitError for anything else.

    The number is read in decimal, exactly (``"8.2 MB"`` is 8,200,000 bytes).
    A size that is not a whole number of bytes (``"0.1 KiB"``, 102.4) is
    rounded down: figures are whole bytes, and ``n <= 102.4`` exactly when
    ``n <= 102``, so the limit means the same.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise LimitError(f"{field} must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise LimitError(
                f"{field}={value!r} is not a size; write an int or a string like "
                "\"10 MiB\", \"1.5 KB\" or \"512 B\" (KB = 1000 bytes, KiB = 1024)"
            )
        number = match.group(1)
        with decimal.localcontext() as context:
            context.prec = len(number) + 13  # digits enough for number * 1024**4
            context.traps[decimal.Inexact] = True
            size = decimal.Decimal(number) * _SIZE_UNITS[unit]
        return int(size)  # rounds down (towards zero), see above
    raise LimitError(
        f"{field} must be an int or a size string like \"10 MiB\", not {type(value).__name__}"
    )


# ---- limits -------------------------------------------------------------------


def parse_limits(values: Mapping[str, object], where: str) -> Dict[str, int]:
    """Checks and converts one set of limits (a marker's keywords, an option)."""
    limits: Dict[str, int] = {}
    for name, value in values.items():
        figure = FIGURE.get(name)
        if figure is None:
            raise LimitError(
                f"{where}: unknown figure {name!r}; use any of {', '.join(LIMIT_FIELDS)}"
            )
        if figure.unit == "bytes":
            try:
                limits[name] = parse_size(value, name)
            except LimitError as e:
                raise LimitError(f"{where}: {e}") from None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[name] = value
        else:
            raise LimitError(f"{where}: {name} must be an int >= 0 (a number of blocks), got {value!r}")
    return limits


def parse_limit_option(text: str, where: str) -> Dict[str, int]:
    """``"max_bytes=10 MiB, curr_blocks=0"`` -> limits."""
    values: Dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise LimitError(f"{where}: {part!r} is not FIGURE=VALUE, e.g. \"max_bytes=10 MiB\"")
        name, value = name.strip(), value.strip()
        is_bytes = name in FIGURE and FIGURE[name].unit == "bytes"
        values[name] = value if is_bytes else _int_or_text(value)
    return parse_limits(values, where)


def _int_or_text(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        return text


def limit_markers(item: pytest.Item) -> List[pytest.Mark]:
    """The test's limit_heap markers, farthest first: module, class, function,
    then those of its parameter set (``pytest.param(..., marks=...)``), which
    pytest lists among the function's own but which are the most specific."""
    farthest_first: List[pytest.Mark] = []
    for node in item.listchain()[:-1]:
        farthest_first += [m for m in node.own_markers if m.name == MARKER]
    callspec = getattr(item, "callspec", None)
    param_marks = [m for m in getattr(callspec, "marks", ()) if m.name == MARKER]
    own = [m for m in item.own_markers if m.name == MARKER]
    farthest_first += [m for m in own if not any(m is p for p in param_marks)]
    farthest_first += [m for m in own if any(m is p for p in param_marks)]
    return farthest_first


@dataclasses.dataclass(frozen=True)
class TestLimits:
    """What a test's markers and the default limits ask for."""

    figures: Dict[str, int]  # figure -> inclusive upper bound
    repeat: int = 1  # runs of the test body; the figures are the last run's


#: The marker's keyword that is not a figure.
REPEAT = "repeat"


def limits_of(markers: List[pytest.Mark], defaults: Mapping[str, int]) -> TestLimits:
    """The limits of a test: the defaults, then its markers from the farthest
    to the closest, each overriding the others figure by figure (and the
    closest ``repeat=`` wins)."""
    figures = dict(defaults)
    repeat = 1
    for marker in markers:
        if marker.args:
            raise LimitError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, e.g. "
                f"@pytest.mark.{MARKER}(max_bytes=\"10 MiB\", curr_blocks=0)"
            )
        if not marker.kwargs:
            raise LimitError(
                f"@pytest.mark.{MARKER} needs at least one limit, any of {', '.join(LIMIT_FIELDS)}"
            )
        kwargs = dict(marker.kwargs)
        if REPEAT in kwargs:
            repeat = _repeat(kwargs.pop(REPEAT))
        figures.update(parse_limits(kwargs, f"@pytest.mark.{MARKER}"))
    if repeat != 1 and not figures:
        raise LimitError(
            f"@pytest.mark.{MARKER}({REPEAT}={repeat}) needs a limit to check on the last run, "
            f"any of {', '.join(LIMIT_FIELDS)}"
        )
    return TestLimits(figures, repeat)


def _repeat(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise LimitError(
        f"@pytest.mark.{MARKER}: {REPEAT} must be an int >= 1 (how many times the test body "
        f"runs; the last run is measured), got {value!r}"
    )
