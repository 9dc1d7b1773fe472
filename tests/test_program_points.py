"""Program points are what the file shows: code objects with one file and
qualified name stand for one another, so a program point's figures are exact
(its max included) however many code objects make it up; and finding a new
program point's line costs the same in a huge function as in a small one."""

from __future__ import annotations

import json


def test_two_lambdas_on_one_line_are_one_program_point_with_its_true_max(run_python):
    # One 1,033-byte block is live at a time; summing the two code objects'
    # figures gave mb=2066, mbk=2.
    proc = run_python(
        """
        import json, dhatc
        f = lambda n: bytes(n); g = lambda n: bytes(n)
        with dhatc.Profiler(testing=True) as p:
            for h in (f, g):
                h(1000)
        pps = [pp for pp in p.profile.pps
               if pp.frames[1].startswith("<lambda> (") and pp.total_bytes >= 1033]
        print(json.dumps([[pp.total_blocks, pp.total_bytes, pp.max_blocks, pp.max_bytes,
                           pp.end_blocks] for pp in pps]))
        """
    )
    assert json.loads(proc.stdout) == [[2, 2066, 1, 1033, 0]]


def test_one_source_compiled_many_times_is_one_program_point_with_its_true_max(run_python):
    # As dataclasses make every __init__ (all "__create_fn__.<locals>.__init__
    # (<string>:3)"): twenty code objects with one file and qualified name,
    # each allocating a block that is freed at once.  One block is live at a
    # time; summing the code objects' figures gave twenty.
    proc = run_python(
        """
        import json, dhatc
        SOURCE = "def make():\\n    def init(n):\\n        return bytes(n)\\n    return init\\n"
        inits = []
        for _ in range(20):
            namespace = {}
            exec(compile(SOURCE, "<string>", "exec"), namespace)
            inits.append(namespace["make"]())
        for init in inits:  # first calls outside the profile (3.9/3.10 keep a spare frame)
            init(1000)
        with dhatc.Profiler(testing=True) as p:
            for _ in range(3):
                for init in inits:
                    init(1000)
        pps = [pp for pp in p.profile.pps
               if pp.frames[1] == "make.<locals>.init (<string>:3)" or
                  pp.frames[1] == "init (<string>:3)"]  # (3.9/3.10 name functions unqualified)
        print(json.dumps([[pp.total_blocks, pp.total_bytes, pp.max_blocks, pp.max_bytes]
                          for pp in pps if pp.total_bytes >= 1033]))
        """
    )
    assert json.loads(proc.stdout) == [[60, 60 * 1033, 1, 1033]]


def test_a_huge_function_decodes_its_line_table_once(run_python):
    # A new program point on each of 20,000 lines: with PyCode_Addr2Line each
    # rescanned the table from the start (3.5 s against 0.0025 s unprofiled);
    # now each code object's table is decoded once.
    proc = run_python(
        """
        import json, dhatc
        from dhatc import _engine
        body = "".join(f"    x{i} = bytes({i % 50 + 2})\\n" for i in range(20_000))
        namespace = {}
        exec(compile(f"def huge():\\n{body}", "huge.py", "exec"), namespace)
        with dhatc.Profiler(testing=True) as p:
            namespace["huge"]()
        lines = sorted({int(pp.frames[1].rsplit(":", 1)[1][:-1]) for pp in p.profile.pps
                        if pp.frames[1].startswith("huge (huge.py:")})
        print(json.dumps([len(lines), lines[:2], lines[-1], _engine._lines_decoded()]))
        """
    )
    count, first, last, decoded = json.loads(proc.stdout)
    assert (count, first, last) == (20_000, [2, 3], 20_001)
    assert decoded <= 3  # huge, and whatever the profiler's own stop runs
