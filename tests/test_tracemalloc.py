"""dhatc and tracemalloc hook the same allocator domains; both must work in
either order of starting and stopping."""

from __future__ import annotations

import json

import pytest

ORDERS = {
    # name: the sequence of steps; "work" allocates 3 known blocks
    "dhatc-outer": ["dstart", "tstart", "work", "tstop", "dstop"],
    "tracemalloc-outer": ["tstart", "dstart", "work", "dstop", "tstop"],
    "dhatc-first-stops-first": ["dstart", "tstart", "work", "dstop", "tstop"],
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_both_count_exactly(run_python, order):
    proc = run_python(
        f"""
        import json, tracemalloc
        import allocmod as m
        import dhatc

        result = {{}}
        def step(name):
            global p
            if name == "dstart":
                p = dhatc.Profiler(testing=True).start()
            elif name == "dstop":
                p.stop()
                result["dhatc"] = [pp.total_bytes for pp in p.profile.pps if pp.total_bytes >= 5000]
            elif name == "tstart":
                tracemalloc.start(1)
            elif name == "tstop":
                snap = tracemalloc.take_snapshot()
                result["tracemalloc"] = sorted(
                    st.size for st in snap.statistics("lineno") if st.size >= 5000)
                tracemalloc.stop()
            elif name == "work":
                # Not the raw domain: when tracemalloc wraps dhatc, its own
                # bookkeeping goes through the raw domain and counts there.
                m.alloc(0, m.MEM, 5001)
                m.alloc(1, m.OBJ, 6002)
                m.alloc(2, m.MEM, 7003)

        for name in {ORDERS[order]!r}:
            step(name)
        print(json.dumps(result))
        """
    )
    result = json.loads(proc.stdout)
    assert sorted(result["dhatc"]) == [5001, 6002, 7003]
    assert result["tracemalloc"] == [5001, 6002, 7003]


def test_profiling_again_after_tracemalloc_wrapped_us(run_python):
    # dhatc's hooks stay in tracemalloc's chain after dhatc stops; a second
    # profile must reuse them, not stack a second copy, and count exactly.
    proc = run_python(
        """
        import json, tracemalloc
        import allocmod as m
        import dhatc

        p = dhatc.Profiler(testing=True).start()
        tracemalloc.start()
        p.stop()
        with dhatc.Profiler(testing=True):
            m.alloc(0, m.MEM, 5001)
            s = dhatc.HeapStats.get()
        tracemalloc.stop()
        with dhatc.Profiler(testing=True):
            m.alloc(1, m.OBJ, 6002)
            s2 = dhatc.HeapStats.get()
        print(json.dumps([s.total_bytes, s.total_blocks, s2.total_bytes, s2.total_blocks]))
        """
    )
    # While tracemalloc wraps dhatc, tracemalloc's trace records (raw domain)
    # count too; once it is gone, the figures are exact again.
    first_bytes, first_blocks, second_bytes, second_blocks = json.loads(proc.stdout)
    assert first_bytes >= 5001 and first_blocks >= 1
    assert (second_bytes, second_blocks) == (6002, 1)


def test_tracemalloc_stopped_under_dhatc_keeps_dhatc_hooked(run_python):
    # tracemalloc.stop() puts back the allocators it saw at its start, which
    # would remove dhatc's hooks installed after it: dhatc hooks in again.
    proc = run_python(
        """
        import json, tracemalloc, _tracemalloc
        import allocmod as m
        import dhatc

        tracemalloc.start()
        p = dhatc.Profiler(testing=True).start()
        m.alloc(0, m.MEM, 5001)
        tracemalloc.stop()
        m.alloc(1, m.OBJ, 6002)
        m.alloc(2, m.RAW, 7003)
        p.stop()
        seen = sorted(pp.total_bytes for pp in p.profile.pps if pp.total_bytes > 5000)
        print(json.dumps([seen, p.profile.hooks_lost, tracemalloc.stop is _tracemalloc.stop]))
        """
    )
    # ... and puts tracemalloc.stop back when it stops.
    assert json.loads(proc.stdout) == [[5001, 6002, 7003], 0, True]
    assert "warning" not in proc.stderr


def test_hooks_removed_behind_dhatcs_back_warns_and_next_profile_is_exact(run_python):
    # Code holding its own reference to tracemalloc.stop bypasses the guard:
    # the profile says it missed allocations, and the next one hooks in again.
    proc = run_python(
        """
        import json, tracemalloc
        import allocmod as m
        import dhatc

        stop_tracemalloc = tracemalloc.stop
        tracemalloc.start()
        p = dhatc.Profiler(testing=True).start()
        m.alloc(0, m.MEM, 5001)
        stop_tracemalloc()
        m.alloc(1, m.MEM, 6002)     # not seen: no hook of dhatc's in the chain
        p.stop()
        seen = sorted(pp.total_bytes for pp in p.profile.pps if pp.total_bytes > 5000)
        with dhatc.Profiler(testing=True):
            m.alloc(2, m.OBJ, 7003)
            s = dhatc.HeapStats.get()
        print(json.dumps([seen, p.profile.hooks_lost, s.total_bytes, s.total_blocks]))
        """
    )
    assert json.loads(proc.stdout) == [[5001], 7, 7003, 1]
    assert "dhat: warning: another allocator hook replaced dhatc's (raw, mem, object domain)" in proc.stderr
    assert proc.stderr.count("dhat: warning") == 1


def test_the_wrapped_tracemalloc_stop_behaves_as_the_original_on_wrong_calls(run_python):
    # While a heap profile runs over a tracing tracemalloc, dhatc wraps
    # tracemalloc.stop; a wrong call gets the original's own error.
    proc = run_python(
        """
        import json, tracemalloc, _tracemalloc
        import dhatc

        def outcomes(function):
            out = [function.__name__, function.__doc__]
            for args, kwargs in [((1,), {}), ((), {"x": 1}), ((None, None), {})]:
                try:
                    out.append(repr(function(*args, **kwargs)))
                except BaseException as e:
                    out.append([type(e).__name__, str(e)])
            return out

        original = outcomes(tracemalloc.stop)
        tracemalloc.start()
        with dhatc.Profiler(testing=True):
            wrapped_is_ours = tracemalloc.stop is not _tracemalloc.stop
            wrapped = outcomes(tracemalloc.stop)
            still_tracing = tracemalloc.is_tracing()
            tracemalloc.stop()
        print(json.dumps([wrapped_is_ours, still_tracing, wrapped == original, wrapped]))
        """
    )
    wrapped_is_ours, still_tracing, same, wrapped = json.loads(proc.stdout)
    assert (wrapped_is_ours, still_tracing, same) == (True, True, True), wrapped
    assert wrapped[2][0] == "TypeError"
