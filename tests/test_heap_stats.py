"""Exact HeapStats figures: the crate's rules for realloc, blocks allocated
before/within/after the profile, and peaks.  Each case runs in a fresh
interpreter; `allocmod` allocates exactly what the case asks for."""

from __future__ import annotations

import json
import sys

import pytest

STATS_FIELDS = ("total_blocks", "total_bytes", "curr_blocks", "curr_bytes", "max_blocks", "max_bytes")


def stats_of(run_python, body: str) -> dict:
    """Runs `body` (which must bind `s = dhatc.HeapStats.get()`) inside a
    function under a testing-mode heap profiler; returns s as a dict."""
    proc = run_python(
        f"""
import json
import allocmod as m
import dhatc

def case():
    with dhatc.Profiler(testing=True):
{_indent(body, 8)}
    return s

s = case()
print(json.dumps({{f: getattr(s, f) for f in {STATS_FIELDS!r}}}))
"""
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _indent(text: str, spaces: int) -> str:
    import textwrap

    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces)


def expect(total=(0, 0), curr=(0, 0), peak=(0, 0)) -> dict:
    return {
        "total_blocks": total[0], "total_bytes": total[1],
        "curr_blocks": curr[0], "curr_bytes": curr[1],
        "max_blocks": peak[0], "max_bytes": peak[1],
    }


@pytest.mark.skipif(sys.version_info < (3, 11), reason="bytes(n) is one n+33 block from 3.11 on")
def test_issue_example_bytes(run_python):
    # GIVEN two bytes objects, one freed  WHEN HeapStats.get()  THEN exactly them
    s = stats_of(run_python, "b1 = bytes(1000); b2 = bytes(2000); del b1\ns = dhatc.HeapStats.get()")
    assert s == expect(total=(2, 3066), curr=(1, 2033), peak=(2, 3066))


def test_bytes_current_and_peak_every_version(run_python):
    s = stats_of(run_python, "b1 = bytes(1000); b2 = bytes(2000); del b1\ns = dhatc.HeapStats.get()")
    assert (s["curr_blocks"], s["curr_bytes"]) == (1, 2033)
    assert (s["max_blocks"], s["max_bytes"]) == (2, 3066)


@pytest.mark.parametrize("domain", ["RAW", "MEM", "OBJ"])
def test_each_domain_counts_once(run_python, domain):
    # 1000 bytes in the object domain goes through pymalloc to the raw
    # domain: still one block.
    s = stats_of(
        run_python,
        f"""
        m.alloc(0, m.{domain}, 1000)
        m.alloc(1, m.{domain}, 24)
        m.free(1)
        s = dhatc.HeapStats.get()
        """,
    )
    assert s == expect(total=(2, 1024), curr=(1, 1000), peak=(2, 1024))


def test_realloc_within_counts_a_block_and_changes_bytes_by_the_difference(run_python):
    s = stats_of(
        run_python,
        """
        m.alloc(0, m.MEM, 100)
        m.realloc(0, 300)
        m.realloc(0, 50)
        s = dhatc.HeapStats.get()
        """,
    )
    assert s == expect(total=(3, 450), curr=(1, 50), peak=(1, 300))


def test_blocks_before_within_after(run_python):
    proc = run_python(
        """
        import json
        import allocmod as m
        import dhatc

        m.alloc(0, m.RAW, 100)     # before, freed within: ignored
        m.alloc(1, m.RAW, 200)     # before, reallocated within: a new block within
        m.alloc(2, m.RAW, 300)     # before, untouched: ignored
        p = s = big = None         # new globals inside the profile could grow the module's dict
        p = dhatc.Profiler(testing=True).start()
        m.free(0)
        m.realloc(1, 250)
        m.alloc(3, m.RAW, 1000)
        s = dhatc.HeapStats.get()
        p.stop()
        m.alloc(4, m.RAW, 5000)    # after: ignored
        m.free(3)
        big = [pp for pp in p.profile.pps if pp.total_bytes >= 1000]
        print(json.dumps([s.total_blocks, s.total_bytes, s.curr_blocks, s.curr_bytes,
                          s.max_blocks, s.max_bytes, [(pp.total_bytes, pp.end_bytes) for pp in big]]))
        """
    )
    # After stop, neither the 5000-byte block nor the free of the 1000-byte one counts.
    assert json.loads(proc.stdout) == [2, 1250, 2, 1250, 2, 1250, [[1000, 1000]]]


def test_peak_then_free(run_python):
    s = stats_of(
        run_python,
        """
        m.alloc(0, m.OBJ, 1000)
        m.alloc(1, m.OBJ, 2000)
        m.free(0)
        m.alloc(2, m.OBJ, 500)
        s = dhatc.HeapStats.get()
        """,
    )
    assert s == expect(total=(3, 3500), curr=(2, 2500), peak=(2, 3000))


def test_realloc_of_a_block_from_before_is_a_new_block(run_python):
    proc = run_python(
        """
        import json
        import allocmod as m
        import dhatc

        m.alloc(0, m.MEM, 64)
        with dhatc.Profiler(testing=True):
            m.realloc(0, 4096)
            s = dhatc.HeapStats.get()
        print(json.dumps([s.total_blocks, s.total_bytes, s.curr_blocks, s.curr_bytes]))
        """
    )
    assert json.loads(proc.stdout) == [1, 4096, 1, 4096]


def test_stats_object_is_immutable_and_comparable(run_python):
    proc = run_python(
        """
        import dhatc
        with dhatc.Profiler(testing=True):
            s = dhatc.HeapStats.get()
        try:
            s.total_blocks = 5
        except AttributeError:
            print("immutable")
        same = dhatc.HeapStats(total_blocks=s.total_blocks, total_bytes=s.total_bytes,
                               curr_blocks=s.curr_blocks, curr_bytes=s.curr_bytes,
                               max_blocks=s.max_blocks, max_bytes=s.max_bytes)
        print(same == s, hash(same) == hash(s), repr(s).startswith("HeapStats(total_blocks="))
        """
    )
    assert proc.stdout.split() == ["immutable", "True", "True", "True"]
