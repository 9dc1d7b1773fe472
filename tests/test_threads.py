"""Every thread's allocations count, and the engine is thread-safe: the raw
domain runs without the GIL, so several threads record at once."""

from __future__ import annotations

import json

from dhat_helpers import frames_of, load, pps_with_frames


def test_threads_without_gil_give_exact_totals(run_python):
    proc = run_python(
        """
        import json, threading
        import allocmod as m
        import dhatc

        THREADS, COUNT, SIZE, KEEP = 4, 20000, 48, 10
        barrier = threading.Barrier(THREADS)

        def worker():
            barrier.wait()
            m.raw_churn(COUNT, SIZE, KEEP)   # releases the GIL inside

        def main():
            ts = [threading.Thread(target=worker) for _ in range(THREADS)]
            p = dhatc.Profiler(testing=True, file_name="t.json").start()
            for t in ts: t.start()
            for t in ts: t.join()
            p.stop()
            churn_line = worker.__code__.co_firstlineno + 2
            churn = [pp for pp in p.profile.pps if pp.frames[0] == "PyMem_RawMalloc"
                     and pp.frames[1].endswith(f":{churn_line})")]
            out = {
                "blocks": sum(pp.total_blocks for pp in churn),
                "bytes": sum(pp.total_bytes for pp in churn),
                "end_blocks": sum(pp.end_blocks for pp in churn),
                "pps": len(churn),
            }
            print(json.dumps(out))

        main()
        """
    )
    out = json.loads(proc.stdout)
    # All four threads allocate at the same line with the same stack: one PP.
    assert out == {"blocks": 80000, "bytes": 80000 * 48, "end_blocks": 40, "pps": 1}


def test_python_threads_are_attributed_to_their_own_stacks(run_python, tmp_path):
    proc = run_python(
        """
        import json, threading
        import allocmod as m
        import dhatc

        def in_thread(slot):
            m.alloc(slot, m.MEM, 1111)

        def main():
            with dhatc.Profiler(file_name="t.json"):
                ts = [threading.Thread(target=in_thread, args=(i,)) for i in range(5)]
                for t in ts: t.start()
                for t in ts: t.join()
                m.alloc(9, m.MEM, 2222)

        main()
        """
    )
    data = load(tmp_path / "t.json")
    thread_pp = [pp for pp in data["pps"] if pp["tb"] == 5 * 1111]
    assert len(thread_pp) == 1 and thread_pp[0]["tbk"] == 5
    frames = frames_of(data, thread_pp[0])
    assert frames[0] == "PyMem_Malloc" and frames[1].startswith("in_thread (")
    assert any(f.startswith("Thread.run (") or f.startswith("run (") for f in frames)
    main_pp = [pp for pp in data["pps"] if pp["tb"] == 2222]
    assert frames_of(data, main_pp[0])[1].startswith("main (")


def test_this_thread_only_ignores_other_threads(run_python):
    proc = run_python(
        """
        import json, threading
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(testing=True, this_thread_only=True):
                t = threading.Thread(target=m.raw_churn, args=(1000, 64, 0))
                t.start(); t.join()
                m.alloc(0, m.RAW, 4242)
                s = dhatc.HeapStats.get()
            print(json.dumps([s.total_bytes >= 4242, s.total_bytes < 64000]))

        main()
        """
    )
    assert json.loads(proc.stdout) == [True, True]


def test_code_destroyed_before_its_pp_could_hold_it(run_python, tmp_path):
    # A PP made without the GIL (raw domain) takes its code reference at the
    # next hooked call holding the GIL. If the code object dies first, the
    # frame is left nameless instead of resurrecting freed memory.
    run_python(
        """
        import gc
        import allocmod as m
        import dhatc

        def main():
            with dhatc.Profiler(file_name="out.json"):
                for i in range(200):
                    ns = {"m": m}
                    exec(f"def f{i}():\\n    m.raw_churn(1, {100 + i}, 0)\\n", ns)
                    ns[f"f{i}"]()
                    del ns
                    gc.collect()

        main()
        """
    )
    data = load(tmp_path / "out.json")
    churn = [pp for pp, fs in pps_with_frames(data) if 100 <= pp["tb"] < 300 and pp["tbk"] == 1
             and fs[0] == "PyMem_RawMalloc"]
    assert len(churn) == 200
    for pp in churn:
        # Which frames stay named depends on when the interpreter next calls
        # a hook with the GIL; a named frame must be the right function.
        inner = frames_of(data, pp)[1]
        i = pp["tb"] - 100
        assert inner.startswith(f"f{i} (") or inner.startswith(
            "[code object destroyed while profiling]"
        ), (i, inner)
