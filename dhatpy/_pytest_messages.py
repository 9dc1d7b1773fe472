"""What the plugin says: failure messages, report sections, the session summary.

Texts only: each function takes the results it describes and returns lines.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ._dhat_file import Profile
from ._pytest_limits import FIGURE, MARKER, NO_PROFILE_MARKER, SUMMARY_COLUMNS, same_moment
from ._pytest_run import HeapRun
from ._pytest_sites import innermost_python_frame

#: Program points listed per exceeded figure in a failure message.
TOP_PROGRAM_POINTS = 5


def amount(value: int, unit: str) -> str:
    """``1 block``, ``3 blocks``, ``1,033 bytes (1.01 KiB)``."""
    if unit == "blocks":
        return f"{value:,} block" + ("" if value == 1 else "s")
    text = f"{value:,} byte" + ("" if value == 1 else "s")
    return f"{text} ({_human(value)})" if value >= 1024 else text


def _human(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} TiB"


# ---- a test over its limits -----------------------------------------------------


def limit_message(run: HeapRun) -> str:
    """The failure of a test that exceeded its limits or grew past its
    baseline (and did not fail otherwise)."""
    lines: List[str] = []
    if run.exceeded:
        lines.append(f"dhatc: {run.nodeid} exceeded its heap limits:")
        lines.extend(describe_exceeded(run))
    lines.extend(describe_growth(run, f"dhatc: {run.nodeid} "))
    lines.append(saved_line(run))
    return "\n".join(lines)


def failed_test_section(run: HeapRun) -> str:
    """The "dhatc heap profile" section of a profiled test that failed on its own."""
    section: List[str] = []
    if run.exceeded:
        section += ["The test also exceeded its heap limits:", *describe_exceeded(run)]
    section += describe_growth(run, "The test also ")
    section.append(saved_line(run).lstrip())
    return "\n".join(section)


def describe_exceeded(run: HeapRun) -> List[str]:
    """Per exceeded figure: the figure, its value and limit, and where it came from."""
    assert run.profile is not None
    lines: List[str] = []
    for name in run.exceeded:
        figure = FIGURE[name]
        actual = getattr(run.profile, name)
        lines.append(
            f"  {name}: {amount(actual, figure.unit)} {figure.meaning}, "
            f"over the limit of {amount(run.limits[name], figure.unit)}"
        )
        top = top_sites(run.profile, name)
        if top:
            lines.append("    top program points (innermost Python frame):")
            lines.extend(f"      {line}" for line in top)
    return lines


def describe_growth(run: HeapRun, subject: str) -> List[str]:
    """Per figure that grew past the baseline: its value and the baseline's,
    and the sites that grew most.  `subject` starts the first line."""
    comparison = run.comparison
    if comparison is None:
        return []
    if comparison.problem is not None:
        return [
            f"{subject}could not be compared with its baseline: {comparison.problem}; "
            "write it again with --dhatc-save-baseline"
        ]
    if not comparison.grew:
        return []
    assert run.baselines is not None
    lines = [
        f"{subject}grew past its baseline "
        f"(--dhatc-max-increase {_percent(run.baselines.max_increase)}):"
    ]
    for growth in comparison.grew:
        figure = growth.figure
        if growth.old:
            change = f"{_percent((growth.new - growth.old) * 100 / growth.old, sign=True)}"
        else:
            change = "none before"
        lines.append(
            f"  {figure.name}: {amount(growth.new, figure.unit)} {figure.meaning}, "
            f"{amount(growth.old, figure.unit)} in the baseline ({change})"
        )
        if growth.sites:
            lines.append("    program points that grew most (innermost Python frame):")
            by_blocks = figure.unit == "blocks"
            amounts = [
                f"+{amount(k, 'blocks')}, {b:+,} bytes" if by_blocks
                else f"+{b:,} bytes, {k:+,} block{'' if abs(k) == 1 else 's'}"
                for _, b, k in growth.sites
            ]
            width = max(len(a) for a in amounts)
            lines.extend(
                f"      {a.ljust(width)}  {site}" for a, (site, _, _) in zip(amounts, growth.sites)
            )
    lines.append(f"  baseline: {comparison.path}")
    return lines


def _percent(value: Union[float, Decimal], sign: bool = False) -> str:
    """``10%``, ``+2.5%``: one decimal, none when it is 0."""
    text = f"{value:+.1f}" if sign else f"{value:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def saved_line(run: HeapRun) -> str:
    """Where the test's DHAT file is, and how to look at it."""
    if run.save_error is not None:
        return f"  the DHAT file could not be written: {run.save_error}"
    if not run.saved:
        return "  (no DHAT file was written)"
    grew = [g.figure.name for g in run.comparison.grew] if run.comparison else []
    sorts = list(dict.fromkeys(FIGURE[name].viewer_sort for name in [*run.exceeded, *grew]))
    hint = f"; sort by {' / '.join(repr(s) for s in sorts)}" if sorts else ""
    return (
        f"  DHAT file: {run.path}\n"
        f"  (open it in Valgrind's DHAT viewer, dh_view.html{hint})"
    )


def top_sites(profile: Profile, name: str) -> List[str]:
    """The program points with most of a figure, grouped by innermost Python
    frame, each with its bytes and blocks of that figure's moment."""
    figure = FIGURE[name]
    bytes_field = same_moment(figure, "bytes").pp_field
    blocks_field = same_moment(figure, "blocks").pp_field
    sites: Dict[str, List[int]] = {}
    for pp in profile.pps:
        b, k = getattr(pp, bytes_field), getattr(pp, blocks_field)
        if b == 0 and k == 0:
            continue
        site = sites.setdefault(innermost_python_frame(pp.frames), [0, 0])
        site[0] += b
        site[1] += k
    by_blocks = figure.unit == "blocks"
    ranked = sorted(
        sites.items(),
        key=lambda site: (site[1][1], site[1][0]) if by_blocks else (site[1][0], site[1][1]),
        reverse=True,
    )[:TOP_PROGRAM_POINTS]
    amounts = [
        f"{amount(k, 'blocks')}, {b:,} bytes" if by_blocks else f"{b:,} bytes, {amount(k, 'blocks')}"
        for _, (b, k) in ranked
    ]
    width = max((len(a) for a in amounts), default=0)
    return [f"{a.ljust(width)}  {where}" for a, (where, _) in zip(amounts, ranked)]


# ---- tests the plugin could not measure ----------------------------------------------


def not_measurable_message(nodeid: str, item_type: str) -> str:
    """The failure of a test of a kind dhatc cannot measure that asked for limits."""
    return (
        f"dhatc: {nodeid} was not heap-profiled: dhatc measures test functions (plain or "
        f"async), unittest.TestCase methods and doctests, not {item_type} items; "
        f"its {MARKER} limits were not checked"
    )


def not_called_message(nodeid: str) -> str:
    """The failure of a test whose runner never made the call dhatc measures."""
    return (
        f"dhatc: {nodeid} was not heap-profiled: it passed without calling the test the "
        f"way dhatc measures it (a plugin ran it in its own way); its {MARKER} limits were "
        "not checked"
    )


#: Why a test was not profiled, as the session summary says it (for the
#: reasons that are not an item type).
NOT_PROFILED_MARKED = "marked"
NOT_PROFILED_DOCTEST = "doctest"


def not_profiled_line(reasons: Dict[str, int]) -> str:
    """One line: how many tests were not profiled, and why.  `reasons` counts
    tests by NOT_PROFILED_* or by the type of item dhatc cannot measure."""
    parts: List[str] = []
    kinds = {r: n for r, n in reasons.items() if r not in (NOT_PROFILED_MARKED, NOT_PROFILED_DOCTEST)}
    if kinds:
        names = ", ".join(sorted(kinds))
        parts.append(f"{sum(kinds.values())} of a kind dhatc does not measure ({names})")
    if reasons.get(NOT_PROFILED_DOCTEST):
        parts.append(
            f"{reasons[NOT_PROFILED_DOCTEST]} doctest{'s' if reasons[NOT_PROFILED_DOCTEST] != 1 else ''}"
            " (--dhatc-limit does not apply to doctests; --dhatc-profile-all measures them)"
        )
    if reasons.get(NOT_PROFILED_MARKED):
        parts.append(f"{reasons[NOT_PROFILED_MARKED]} marked {NO_PROFILE_MARKER}")
    total = sum(reasons.values())
    return f"dhatc: {total} test{'s' if total != 1 else ''} not profiled: {', '.join(parts)}"


def plugin_could_not_start() -> str:
    return (
        "The dhatc pytest plugin could not profile this test: another dhatc.Profiler "
        "was already running (only one runs at a time).  Stop it before the test, or "
        f"mark the test @pytest.mark.{NO_PROFILE_MARKER}."
    )


def test_started_a_profiler() -> str:
    return (
        "This test starts a dhatc.Profiler while the dhatc pytest plugin profiles it "
        "(only one runs at a time).  Mark it "
        f"@pytest.mark.{NO_PROFILE_MARKER} to keep the plugin away from it."
    )


# ---- the --dhatc-profile-all summary ------------------------------------------------


def summary_title(shown: int, profiled: int, sort: str) -> str:
    return f"dhatc: {shown} of {profiled} profiled tests, most {sort} first"


def summary_table(shown: Sequence[Tuple[str, Dict[str, int]]]) -> List[str]:
    """The figures of each test (node id, figures), one line each, under a header."""
    headers = [f.column for f in SUMMARY_COLUMNS]
    cells = [[f"{figures[f.name]:,}" for f in SUMMARY_COLUMNS] for _, figures in shown]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)) + "  test"]
    for (nodeid, _), row in zip(shown, cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)) + f"  {nodeid}")
    return lines


# ---- baselines -------------------------------------------------------------------


def baseline_lines(compared: int, missing: int, saved: int, not_saved: int,
                   compare_dir: Optional[str], save_dir: Optional[str]) -> List[str]:
    """What the session did with baselines, a line for reading and one for writing."""
    lines: List[str] = []
    if compare_dir is not None:
        line = f"dhatc: {compared} test{'s' if compared != 1 else ''} compared with the baseline in {compare_dir}"
        if missing:
            line += f"; {missing} had none there"
        lines.append(line)
    if save_dir is not None:
        line = f"dhatc: baseline of {saved} test{'s' if saved != 1 else ''} written to {save_dir}"
        if not_saved:
            line += f"; not that of {not_saved} that did not pass"
        lines.append(line)
    return lines
