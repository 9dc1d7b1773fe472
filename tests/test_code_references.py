"""A profile keeps the code objects of its program points alive until its
results are built, and lets go of them only after its tables are released:
dropping a reference can run Python code, even code that starts a new
profile."""

from __future__ import annotations


def test_a_callback_run_by_a_released_code_object_can_start_a_profile(run_python):
    proc = run_python(
        """
        import gc, weakref
        import dhatc

        started = []

        def on_code_gone(_ref):
            # Runs when dhatc's result lets go of the last reference.
            started.append(dhatc.Profiler(testing=True).start())
            data = [bytes(100) for _ in range(50)]
            del data

        namespace = {}
        exec(compile("def build():\\n    return [bytearray(64) for _ in range(10)]\\n",
                     "generated.py", "exec"), namespace)
        code_ref = weakref.ref(namespace["build"].__code__, on_code_gone)

        profiler = dhatc.Profiler(testing=True).start()
        keep = namespace["build"]()
        del namespace["build"]
        gc.collect()
        print("held by the profile only:", code_ref() is not None)
        profiler.stop()
        print("generated.py in the profile:",
              any("generated.py" in f for pp in profiler.profile.pps for f in pp.frames))
        del profiler
        gc.collect()
        print("released:", code_ref() is None, "callbacks:", len(started))
        second = started[0]
        second.stop()
        mine = [pp for pp in second.profile.pps if any("on_code_gone" in f for f in pp.frames)]
        print("second profile:", sum(pp.total_blocks for pp in mine) >= 50)
        """
    )
    assert proc.stdout.splitlines() == [
        "held by the profile only: True",
        "generated.py in the profile: True",
        "released: True callbacks: 1",
        "second profile: True",
    ]
