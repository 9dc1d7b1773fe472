"""The contract between the C engine and Python (dhatc._engine_data): what
_engine.stop() returns has exactly the keys, shapes and field order that
StopData and EngineProgramPoint name, for both modes."""

from __future__ import annotations

import json


def test_stop_returns_what_engine_data_describes(run_python):
    proc = run_python(
        """
        import json, types, typing
        import dhatc
        import dhatc._engine as engine
        from dhatc._engine_data import EngineProgramPoint, StopData

        HINTS = typing.get_type_hints(StopData)

        def check(data, kind_type):
            problems = []
            if type(data) is not dict or set(data) != set(HINTS):
                problems.append(("keys", sorted(data)))
            for key, hint in HINTS.items():
                if hint is int and not (type(data[key]) is int and data[key] >= 0):
                    problems.append((key, data[key]))
            if type(data["pps"]) is not list:
                problems.append(("pps", type(data["pps"]).__name__))
            for raw in data["pps"]:
                if type(raw) is not tuple or len(raw) != len(EngineProgramPoint._fields):
                    problems.append(("pp", raw))
                    continue
                pp = EngineProgramPoint(*raw)
                if type(pp.kind) is not kind_type:
                    problems.append(("kind", pp.kind))
                for frame in pp.frames:
                    if type(frame) is str:  # a frame standing for ones not kept
                        if not frame.startswith("[subinterpreter "):
                            problems.append(("frame", frame))
                        continue
                    code, line = frame
                    if type(frame) is not tuple or not (
                            code is None or type(code) is types.CodeType) or type(line) is not int:
                        problems.append(("frame", frame))
                if any(type(v) is not int or v < 0 for v in raw[2:]):
                    problems.append(("figures", raw[2:]))
            pps = [EngineProgramPoint(*raw) for raw in data["pps"]]
            # The fields are where their names say: the profile's totals are
            # the sums of its program points' figures.
            sums = {
                "total_bytes": sum(pp.total_bytes for pp in pps),
                "total_blocks": sum(pp.total_blocks for pp in pps),
                "curr_bytes": sum(pp.end_bytes for pp in pps),
                "curr_blocks": sum(pp.end_blocks for pp in pps),
                "max_bytes": sum(pp.gmax_bytes for pp in pps),
                "max_blocks": sum(pp.gmax_blocks for pp in pps),
            }
            if kind_type is type(None):  # ad hoc: events and units only
                sums = {k: v for k, v in sums.items() if k.startswith("total_")}
            problems += [(k, v, data[k]) for k, v in sums.items() if v != data[k]]
            return problems

        def work():
            kept = [bytes(1000) for _ in range(5)]
            del kept[0]
            return kept

        engine.start(engine.MODE_HEAP, 10, 0)
        kept = work()
        heap = engine.stop()
        heap_problems = check(heap, str)
        heap_pps = len(heap["pps"])
        engine.release()

        engine.start(engine.MODE_AD_HOC, 10, 0)
        for w in (3, 4):
            dhatc.ad_hoc_event(w)
        ad_hoc = engine.stop()
        ad_hoc_problems = check(ad_hoc, type(None))
        engine.release()
        # An ad hoc profile's units are its "bytes".
        print(json.dumps([heap["mode"], heap_pps > 0, heap_problems,
                          ad_hoc["mode"], ad_hoc["total_bytes"], ad_hoc_problems]))
        """
    )
    assert json.loads(proc.stdout) == ["heap", True, [], "ad-hoc", 7, []]


def test_stop_shares_each_frame_and_keeps_its_tuples_from_the_collector(run_python):
    """A stop with thousands of program points makes one tuple per (code,
    line), shared by the program points that have it, and none of its tuples
    is watched by the cycle collector (they cannot be part of a cycle, and
    walking them took a sixth of a save)."""
    proc = run_python(
        """
        import gc, json
        import dhatc._engine as engine

        def leaf(n):
            return bytearray(n)  # one line: many program points share its frame

        def caller_a(n):
            return leaf(n)

        def caller_b(n):
            return leaf(n)

        engine.start(engine.MODE_HEAP, 10, 0)
        kept = [caller_a(10) for _ in range(3)] + [caller_b(20) for _ in range(3)]
        data = engine.stop()
        pairs = {}
        distinct = set()
        tracked = []
        for raw in data["pps"]:
            for thing in (raw, raw[1], *raw[1]):
                if gc.is_tracked(thing):
                    tracked.append(repr(thing))
            for frame in raw[1]:
                code, line = frame
                pairs.setdefault((id(code), line), set()).add(id(frame))
        engine.release()
        leaf_code = leaf.__code__
        callers = sorted({raw[1][1][0].co_name for raw in data["pps"]
                          if raw[1] and raw[1][0][0] is leaf_code})
        print(json.dumps([tracked, sorted(len(ids) for ids in pairs.values())[-1], callers]))
        """
    )
    tracked, most_objects_of_one_frame, callers = json.loads(proc.stdout)
    assert tracked == []
    assert most_objects_of_one_frame == 1  # each (code, line) is one object
    assert callers == ["caller_a", "caller_b"]  # ... the leaf's in both callers' PPs
