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
