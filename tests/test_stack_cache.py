"""The per-thread cache of recent stacks (src/dhatc/frames.c) never changes a
figure: a stack it recognises is the same stack, and one it does not is
captured.  Each test makes the cache's hard cases -- frames at reused
addresses, stacks that differ only below the top, stacks too deep to cache,
code whose frames are new each time (the cache rests), threads, one profile
after another -- and checks every program point's blocks exactly."""

from __future__ import annotations

import json

# Counts the 1,033-byte blocks (bytes(1000)) of each program point whose
# innermost Python frame is one of the named functions, by that function and
# the depth of its stack ("f/4"); by_function() sums the depths.
COUNT = """
def counts(profile, names):
    found = {}
    for pp in profile.pps:
        if pp.total_bytes != 1033 * pp.total_blocks or not pp.total_blocks:
            continue
        python = [f.split(" (")[0] for f in pp.frames if ".py:" in f]
        if python and python[0] in names:
            key = f"{python[0]}/{len(pp.frames)}"
            found[key] = found.get(key, 0) + pp.total_blocks
    return dict(sorted(found.items()))

def by_function(found):
    summed = {}
    for key, blocks in found.items():
        summed[key.split("/")[0]] = summed.get(key.split("/")[0], 0) + blocks
    return summed
"""


def counts_of(run_python, body: str) -> dict:
    proc = run_python("import json, dhatc\n" + COUNT + body)
    return json.loads(proc.stdout)


def test_two_functions_alternating_in_one_frame_slot_keep_their_own_blocks(run_python):
    # f and g run in turn at the same frame address, called from one line.
    counts = counts_of(run_python, """
def f():
    return bytes(1000)
def g():
    return bytes(1000)
def caller():
    for i in range(3000):
        (f if i % 3 else g)()
caller(); caller()  # warm (3.9/3.10 keep spare frames)
with dhatc.Profiler(testing=True) as p:
    caller()
print(json.dumps(by_function(counts(p.profile, {"f", "g"}))))
""")
    assert counts == {"f": 2000, "g": 1000}


def test_stacks_that_differ_only_below_their_top_two_frames_are_told_apart(run_python):
    # leaf and mid run at the same addresses and instructions either way: only
    # the third frame (a or b, and where it called from) differs.
    counts = counts_of(run_python, """
def leaf():
    return bytes(1000)
def mid():
    return leaf()
def a():
    return mid()
def b():
    return mid()
def caller():
    for i in range(3000):
        (a if i % 3 else b)()
        if i % 7 == 0:
            a()
caller()
with dhatc.Profiler(testing=True) as p:
    caller()
found = {}
for pp in p.profile.pps:
    names = [f.split(" (")[0] for f in pp.frames if ".py:" in f]
    if pp.total_bytes == 1033 * pp.total_blocks and names[:2] == ["leaf", "mid"]:
        found[names[2]] = found.get(names[2], 0) + pp.total_blocks
print(json.dumps(found))
""")
    assert counts == {"a": 2000 + 429, "b": 1000}


def test_recursion_to_different_depths_gives_one_program_point_per_depth(run_python):
    # The top two frames are the same at every depth: only the rest differs.
    counts = counts_of(run_python, """
def r(n):
    return bytes(1000) if n == 0 else r(n - 1)
def caller():
    for i in range(4000):
        r(i % 4)
caller()
with dhatc.Profiler(testing=True, trim_backtraces=20) as p:
    caller()
print(json.dumps(sorted(counts(p.profile, {"r"}).values())))
""")
    assert counts == [1000, 1000, 1000, 1000]


def test_stacks_deeper_than_the_cache_are_counted_exactly(run_python):
    # 20 and 21 Python frames: more than the cache keeps (16), fewer than the
    # stack limit, so every block is captured.
    counts = counts_of(run_python, """
def r(n):
    return bytes(1000) if n == 0 else r(n - 1)
def caller():
    for i in range(2000):
        r(18 + i % 2)
caller()
with dhatc.Profiler(testing=True, trim_backtraces=40) as p:
    caller()
print(json.dumps(sorted(counts(p.profile, {"r"}).values())))
""")
    assert counts == [1000, 1000]


def test_fresh_frames_rest_the_cache_and_loops_after_them_stay_exact(run_python):
    # Thousands of live generators, each allocating in its own frame (every
    # lookup misses: the cache rests), then a loop at one place (it hits),
    # then both interleaved, twice over.
    counts = counts_of(run_python, """
def gen():
    while True:
        yield bytes(1000)
def loop(n):
    for _ in range(n):
        bytes(1000)
def work():
    gens = [gen() for _ in range(5000)]
    for g in gens:
        next(g)
    loop(5000)
    for i, g in enumerate(gens):
        next(g)
        if i % 5 == 0:
            loop(1)
work()
with dhatc.Profiler(testing=True) as p:
    work()
    work()
print(json.dumps(by_function(counts(p.profile, {"gen", "loop"}))))
""")
    assert counts == {"gen": 20000, "loop": 12000}


def test_threads_at_the_same_code_count_each_block_once(run_python):
    counts = counts_of(run_python, """
import threading
def f():
    return bytes(1000)
def g():
    return bytes(1000)
def worker(n):
    for i in range(n):
        (f if i % 2 else g)()
with dhatc.Profiler(testing=True) as p:
    threads = [threading.Thread(target=worker, args=(2000 + 1000 * k,)) for k in range(3)]
    for t in threads:
        t.start()
    worker(1000)
    for t in threads:
        t.join()
print(json.dumps(by_function(counts(p.profile, {"f", "g"}))))
""")
    # 1,000 + 2,000 + 3,000 + 4,000 calls, half of each at f and half at g.
    assert counts == {"f": 5000, "g": 5000}


def test_a_second_profile_does_not_reuse_the_first_ones_program_points(run_python):
    counts = counts_of(run_python, """
def f():
    return bytes(1000)
def g():
    return bytes(1000)
def caller(first, n):
    for _ in range(n):
        first()
results = []
with dhatc.Profiler(testing=True) as p:
    caller(f, 300)
    caller(g, 200)
results.append(counts(p.profile, {"f", "g"}))
with dhatc.Profiler(testing=True) as p:
    caller(g, 70)
    caller(f, 30)
results.append(counts(p.profile, {"f", "g"}))
print(json.dumps([by_function(r) for r in results]))
""")
    assert counts == [{"f": 300, "g": 200}, {"f": 30, "g": 70}]
