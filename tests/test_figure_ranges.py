"""Figures never wrap: out-of-range values are refused, and sums that cannot
be held stop at 2**64 - 1 with a warning saying so."""

from __future__ import annotations

import json

import pytest

import dhatc

HEAP_FIELDS = ("total_blocks", "total_bytes", "curr_blocks", "curr_bytes", "max_blocks", "max_bytes")


def heap_stats(**overrides: object) -> dhatc.HeapStats:
    values = {name: 0 for name in HEAP_FIELDS}
    values.update(overrides)
    return dhatc.HeapStats(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", HEAP_FIELDS)
@pytest.mark.parametrize("value", [-1, 2**64, -(2**70), 2**100])
def test_heap_stats_refuses_values_outside_0_to_2_64(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be an int from 0 to 2\*\*64 - 1, got {value}$"):
        heap_stats(**{field: value})


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_heap_stats_refuses_what_is_not_an_int(value):
    with pytest.raises(TypeError, match=r"^total_bytes must be an int, not "):
        heap_stats(total_bytes=value)


def test_heap_stats_keeps_the_extremes_exactly():
    stats = heap_stats(total_bytes=2**64 - 1, curr_blocks=0)
    assert (stats.total_bytes, stats.curr_blocks) == (2**64 - 1, 0)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_ad_hoc_stats_refuses_values_outside_0_to_2_64(value):
    with pytest.raises(ValueError, match=r"^total_units must be an int from 0 to 2\*\*64 - 1"):
        dhatc.AdHocStats(total_events=1, total_units=value)


def test_ad_hoc_totals_stop_at_2_64_and_the_profile_says_so(run_python, tmp_path):
    proc = run_python(
        """
        import json, dhatc
        def tick(weight):
            dhatc.ad_hoc_event(weight)
        with dhatc.Profiler(mode="ad-hoc", file_name="events.json") as p:
            tick(2**64 - 1)
            tick(2**64 - 1)
            tick(5)
            stats = dhatc.AdHocStats.get()
        print(json.dumps([stats.total_events, stats.total_units, p.profile.saturated]))
        """
    )
    assert json.loads(proc.stdout) == [3, 2**64 - 1, 2]
    assert (
        "dhat: warning: the weights of 2 ad hoc events took the totals past 2**64 - 1 units; "
        "those totals are shown as 2**64 - 1"
    ) in proc.stderr.splitlines()
    data = json.loads((tmp_path / "events.json").read_text())
    # Each call is its own program point (its caller's line differs); the total is capped.
    assert [pp["tb"] for pp in data["pps"]] == [2**64 - 1, 2**64 - 1, 5]
