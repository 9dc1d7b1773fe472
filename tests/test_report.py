"""``dhatc report``: the viewer's figures and tree in a terminal.

The strongest check is the viewer itself: for files of every writer and
every sort metric they support, ``report --tree --wide`` must print what
DHAT's own dh_view.js renders (one Chromium run for all of them).  The rest
pins the 80-column layout, colour, JSON, the flat ranking and the errors."""

from __future__ import annotations

import html
import json
import os
import pty
import random
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from command_util import assert_one_line_error, dhatc, dump_dom
from dh_viewer import chromium_path, viewer_dir
from dhatc import _report_metrics as metrics
from dhatc._dhat_reader import loads_table
from dhatc._report_tree import build
from dhatc._terminal import display_width
from report_util import (RUST_HEAP, dhatc_file, document, heap_pp, needs_valgrind,
                         random_document, run_cli, valgrind_file, write)

VIEWER_METRICS = [m for m in metrics.METRICS if m.in_viewer]


# --- the viewer's own rendering ---------------------------------------------------------


def render_in_viewer(cases: Sequence[Tuple[str, int]]) -> List[str]:
    """What dh_view.js shows in its main div for each (file text, index of the
    sort metric in its menu), all in one headless Chromium run."""
    view = viewer_dir()
    assert view is not None
    data = json.dumps([{"text": text, "index": index} for text, index in cases])
    data = data.replace("</", "<\\/").replace("<!--", "<\\!--")
    page = f"""<!DOCTYPE html><html><head><meta charset="UTF-8">
<link rel="stylesheet" href="{(view / 'dh_view.css').as_uri()}">
<script src="{(view / 'dh_view.js').as_uri()}"></script></head><body><script>
onLoad();
const cases = {data};
cases.forEach((c, n) => {{
  const out = document.createElement("pre");
  out.id = "case" + n;
  try {{
    gData = JSON.parse(c.text);
    gSelect.selectedIndex = c.index;
    buildTree();
    displayTree(0, 0, 0);
    out.textContent = gMainDiv.innerText;
  }} catch (e) {{
    out.textContent = "ERROR " + e;
  }}
  document.body.appendChild(out);
}});
</script></body></html>"""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dhatc-report-viewer-{os.getpid()}.html"
    path.write_text(page, encoding="utf-8")
    try:
        dom = dump_dom(path.as_uri())
    finally:
        path.unlink()
    texts = dict(re.findall(r'<pre id="case(\d+)">(.*?)</pre>', dom, re.S))
    return [html.unescape(texts[str(n)]) for n in range(len(cases))]


def normalized(text: str) -> List[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def viewer_part(report: str) -> List[str]:
    """report --tree's output without what the viewer does not show: the time
    unit's line and the Totals block."""
    lines = normalized(report)
    lines = [line for line in lines if not line.startswith("  unit:   ")]
    start = lines.index("Totals {")
    end = lines.index("}", start)
    return lines[:start] + lines[end + 2:]


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory, allocmod_dir: Path) -> List[Path]:
    """Files of every writer, and synthetic ones with many PPs, ties, PPs that
    end where others go on, no frames at all, one PP, none."""
    tmp = tmp_path_factory.mktemp("report-files")
    files = [RUST_HEAP]
    from conftest import child_environment

    env = dict(child_environment(), PYTHONPATH=str(allocmod_dir))
    script = tmp / "prog.py"
    script.write_text("import dhatc\n\ndef build(n):\n    return [bytes(100 * i) for i in range(n)]\n\n"
                      "def churn():\n    for i in range(50):\n        b = bytearray(i)\n\n"
                      "def main():\n    with dhatc.Profiler(file_name='heap.json'):\n"
                      "        keep = build(30)\n        churn()\n"
                      "    with dhatc.Profiler(mode='ad-hoc', file_name='adhoc.json'):\n"
                      "        for i in range(7):\n            dhatc.ad_hoc_event(i)\n\nmain()\n")
    subprocess.run([sys.executable, str(script)], cwd=tmp, env=env, check=True,
                   capture_output=True)
    files += [tmp / "heap.json", tmp / "adhoc.json"]
    if not needs_valgrind.args[0]:
        files.append(valgrind_file(tmp, "vg.json"))
    rng = random.Random(1313)
    synthetic = [
        random_document(rng, n_pps=80),
        random_document(rng, n_pps=150, ties=False, max_depth=8),
        random_document(rng, n_pps=60, bkacc=True),
        random_document(rng, n_pps=40, bklt=False),
        document([heap_pp([1, 2, 3], 100, 2, tl=30, gb=100, gbk=2)], ["a (x.py:1)", "b (x.py:2)",
                                                                       "c (x.py:3)"]),
        document([heap_pp([], 10, 1), heap_pp([1], 20, 2), heap_pp([1, 2], 20, 2)],
                 ["a (x.py:1)", "b (x.py:2)"]),
        document([], []),
    ]
    for n, doc in enumerate(synthetic):
        files.append(write(tmp / f"synthetic{n}.json", doc))
    return files


@pytest.mark.skipif(chromium_path() is None or viewer_dir() is None,
                    reason="needs chromium and Valgrind's dh_view.js")
def test_tree_is_the_viewers(sample_files: List[Path]) -> None:
    cases: List[Tuple[Path, metrics.Metric]] = []
    for path in sample_files:
        header = loads_table(path.read_bytes(), str(path)).header
        cases += [(path, m) for m in VIEWER_METRICS if m.usable(header)]
    shown = render_in_viewer([(path.read_text(encoding="utf-8", errors="replace"),
                               VIEWER_METRICS.index(m)) for path, m in cases])
    assert len(cases) > 60
    for (path, metric), viewer_text in zip(cases, shown):
        status, out, err = run_cli("report", str(path), "--tree", "--wide", "--sort", metric.name)
        assert status == 0, err
        assert not viewer_text.startswith("ERROR"), (path, viewer_text)
        assert viewer_part(out) == normalized(viewer_text), (path.name, metric.name)


# --- the tree, built as the viewer builds it --------------------------------------------


def viewer_tree(seqs: Sequence[Sequence[int]]) -> Any:
    """dh_view.js's buildTree, transcribed: a node is [frames, pp, kids]."""
    root: List[Any] = [[0], None, None]
    for i, fs in enumerate(seqs):
        if i == 0:
            root[0] += list(fs)
            root[1] = 0
            continue

        def split(t: List[Any], ti: int, new: List[int]) -> None:
            inherited = [t[0][ti + 1:], t[1], t[2]]
            del t[0][ti + 1:]
            t[1], t[2] = None, [inherited, [new, i, None]]

        t, ti, done = root, 0, False
        for j, frame in enumerate(fs):
            if ti + 1 < len(t[0]):
                if t[0][ti + 1] == frame:
                    ti += 1
                else:
                    split(t, ti, list(fs[j:]))
                    done = True
                    break
            elif t[2] is None:
                split(t, ti, list(fs[j:]))
                done = True
                break
            else:
                kid = next((k for k in t[2] if k[0] and k[0][0] == frame), None)
                if kid is None:
                    t[2].append([list(fs[j:]), i, None])
                    done = True
                    break
                t, ti = kid, 0
        if not done:
            if ti + 1 < len(t[0]):
                split(t, ti, [])
            else:
                assert t[2] is not None and all(k[0] for k in t[2]), "repeated location"
                t[2].append([[], i, None])
    return root


def as_lists(tree: Any, node: Any) -> Any:
    kids = tree.kids(node)
    return [tree.frames(node), node.pp if kids is None else None,
            None if kids is None else [as_lists(tree, kid) for kid in kids]]


def test_build_makes_the_viewers_tree() -> None:
    """On thousands of random sets of stacks: the same nodes, frames and order."""
    rng = random.Random(99)
    for n in range(1500):
        n_frames, max_depth = rng.choice([2, 4, 9]), rng.choice([1, 3, 7])
        possible = sum(n_frames ** d for d in range(max_depth + 1))
        doc = random_document(rng, n_pps=min(rng.randint(1, 40), possible), n_frames=n_frames,
                              max_depth=max_depth)
        table = loads_table(json.dumps(doc))
        tree = build(table)
        expected = viewer_tree([p["fs"] for p in doc["pps"]])
        assert as_lists(tree, tree.root) == expected, n


def test_deep_stacks_do_not_recurse(tmp_path: Path) -> None:
    frames = [f"f{i} (deep.py:{i})" for i in range(1, 4001)]
    doc = document([heap_pp(list(range(1, 4001)), 100, 1),
                    heap_pp(list(range(1, 3001)) + [4000], 50, 1)], frames)
    path = write(tmp_path / "deep.json", doc)
    status, out, err = run_cli("report", str(path), "--tree", "--wide")
    assert status == 0, err
    assert "#4000: f4000 (deep.py:4000)" in out and "^3000: f3000 (deep.py:3000)" in out


# --- exact output -----------------------------------------------------------------------

RUST_FLAT = """\
Invocation {
  Mode:    rust-heap
  Command: target/release/dhatter --words input.txt
  PID:     41237
}

Times {
  t-gmax: 1,873 µs (77.72% of program duration)
  t-end:  2,410 µs
  unit:   µs = microseconds
}

Totals {
  Total:     3,472 bytes in 13 blocks
  At t-gmax: 2,192 bytes in 5 blocks
  At t-end:  1,040 bytes in 2 blocks
}

4 program points, sorted by At t-gmax (bytes), the top 2:

PP 1/4 {
  Total:     2,304 bytes (66.36%, 956,016.6/s) in 6 blocks (46.15%, 2,489.63/s),
             avg size 384 bytes,
             avg lifetime 686.67 µs (28.49% of program duration)
  Max:       1,152 bytes in 3 blocks, avg size 384 bytes
  At t-gmax: 1,152 bytes (52.55%) in 3 blocks (60%), avg size 384 bytes
  At t-end:  0 bytes (0%) in 0 blocks (0%), avg size 0 bytes
  Allocated at {
    #1: …::alloc::Global as core::alloc::Allocator>::allocate (…/alloc.rs:241:9)
    #2: alloc::raw_vec::finish_grow (alloc/src/raw_vec.rs:466:13)
    #3: hashbrown::raw::RawTable<T,A>::reserve_rehash (src/raw/mod.rs:1046:32)
    #4: std::collections::hash::map::HashMap<K,V,S>::insert (…/map.rs:1105:9)
    #5: dhatter::count_words (src/main.rs:21:9)
    #6: dhatter::main (src/main.rs:31:17)
  }
}

PP 2/4 {
  Total:     1,024 bytes (29.49%, 424,896.27/s) in 1 blocks (7.69%, 414.94/s),
             avg size 1,024 bytes,
             avg lifetime 2,340 µs (97.1% of program duration)
  Max:       1,024 bytes in 1 blocks, avg size 1,024 bytes
  At t-gmax: 1,024 bytes (46.72%) in 1 blocks (20%), avg size 1,024 bytes
  At t-end:  1,024 bytes (98.46%) in 1 blocks (50%), avg size 1,024 bytes
  Allocated at {
    #1: …::alloc::Global as core::alloc::Allocator>::allocate (…/alloc.rs:241:9)
    #2: alloc::raw_vec::RawVec<T,A>::allocate_in (alloc/src/raw_vec.rs:185:45)
    #3: alloc::vec::Vec<T>::with_capacity (src/vec/mod.rs:483:9)
    #4: …uffered::bufwriter::BufWriter<W>::with_capacity (…/bufwriter.rs:115:33)
    #5: std::io::stdio::stdout::{{closure}} (src/io/stdio.rs:601:58)
  }
}
"""

RUST_TREE_40 = """\
▼ PP 1/1 (2 children) {
    Total:     3,472 bytes (100%, 1,440,663.9/s)
               in 13 blocks (100%, 5,394.19/s), avg size 267.08 bytes,
               avg lifetime 498.54 µs (20.69% of program duration)
    At t-gmax: 2,192 bytes (100%) in 5 blocks (100%), avg size 438.4 bytes
    At t-end:  1,040 bytes (100%) in 2 blocks (100%), avg size 520 bytes
    Allocated at {
      #0: [root]
      #1: …alloc::Global as core::alloc::Allocator>::allocate (…/alloc.rs:241:9)
    }
  }
  ├─▼ PP 1.1/2 (2 children) {
  │     Total:     2,400 bytes (69.12%, 995,850.62/s)
  │                in 9 blocks (69.23%, 3,734.44/s), avg size 266.67 bytes,
  │                avg lifetime 459.11 µs (19.05% of program duration)
  │     At t-gmax: 1,152 bytes (52.55%) in 3 blocks (60%), avg size 384 bytes
  │     At t-end:  0 bytes (0%) in 0 blocks (0%), avg size 0 bytes
  │     Allocated at {
  │       ^1: …c::Global as core::alloc::Allocator>::allocate (…/alloc.rs:241:9)
  │       #2: alloc::raw_vec::finish_grow (alloc/src/raw_vec.rs:466:13)
  │     }
  │   }
  │   ├── PP 1.1.1/2 {
  │   │     Total:     2,304 bytes (66.36%, 956,016.6/s)
  │   │                in 6 blocks (46.15%, 2,489.63/s), avg size 384 bytes,
  │   │                avg lifetime 686.67 µs (28.49% of program duration)
  │   │     Max:       1,152 bytes in 3 blocks, avg size 384 bytes
  │   │     At t-gmax: 1,152 bytes (52.55%) in 3 blocks (60%),
  │   │                avg size 384 bytes
  │   │     At t-end:  0 bytes (0%) in 0 blocks (0%), avg size 0 bytes
  │   │     Allocated at {
  │   │       ^1: …lobal as core::alloc::Allocator>::allocate (…/alloc.rs:241:9)
  │   │       ^2: alloc::raw_vec::finish_grow (alloc/src/raw_vec.rs:466:13)
  │   │       #3: …hbrown::raw::RawTable<T,A>::reserve_rehash (…/mod.rs:1046:32)
  │   │       #4: …lections::hash::map::HashMap<K,V,S>::insert (…/map.rs:1105:9)
  │   │       #5: dhatter::count_words (src/main.rs:21:9)
  │   │       #6: dhatter::main (src/main.rs:31:17)
  │   │     }
  │   │   }
  │   └── PP 1.1.2/2 {
  │         Total:     3 blocks (23.08%, 1,244.81/s)
  │         Allocated at {
  │           [1 insignificant]
  │         }
  │       }
  └── PP 1.2/2 {
        Total:     4 blocks (30.77%, 1,659.75/s)
        Allocated at {
          [2 insignificant]
        }
      }

PP significance threshold: total >= 5.2 blocks (40%)
"""


def test_flat_report_of_a_rust_file() -> None:
    status, out, err = run_cli("report", str(RUST_HEAP), "--sort", "gmax_bytes", "--top", "2")
    assert (status, err) == (0, "")
    assert out == RUST_FLAT


def test_tree_of_a_rust_file_with_a_threshold() -> None:
    status, out, err = run_cli("report", str(RUST_HEAP), "--tree", "--threshold", "40")
    assert (status, err) == (0, "")
    assert out.split("}\n\n", 3)[3] == RUST_TREE_40


def test_lines_fit_80_columns(sample_files: List[Path]) -> None:
    for path in sample_files:
        header = loads_table(path.read_bytes(), str(path)).header
        for metric in metrics.METRICS:
            if not metric.usable(header):
                continue
            for extra in ([], ["--tree"]) if metric.in_viewer else ([],):
                status, out, err = run_cli("report", str(path), "--sort", metric.name,
                                           "--top", "0", *extra)
                assert status == 0, err
                too_wide = [line for line in out.splitlines() if display_width(line) > 80]
                assert not too_wide, (path.name, metric.name, extra, too_wide[:3])


def test_columns_follow_the_environment(tmp_path: Path) -> None:
    proc = dhatc("report", str(RUST_HEAP), "--top", "1", env={"COLUMNS": "120"})
    widths = [display_width(line) for line in proc.stdout.splitlines()]
    assert 80 < max(widths) <= 120
    assert "0x55d4" not in proc.stdout  # addresses only with --wide
    wide = dhatc("report", str(RUST_HEAP), "--top", "1", "--wide").stdout
    assert "#1: 0x55d4a3b2c1d0: <alloc::alloc::Global as core::alloc::Allocator>::allocate " \
           "(alloc/src/alloc.rs:241:9)" in wide
    assert "  Total:     2,304 bytes (66.36%, 956,016.6/s) in 6 blocks (46.15%, 2,489.63/s), " \
           "avg size 384 bytes, avg lifetime 686.67 µs (28.49% of program duration)" in wide


def test_all_program_points_and_more_than_there_are() -> None:
    for top in ("0", "99"):
        out = run_cli("report", str(RUST_HEAP), "--top", top)[1]
        assert "4 program points, sorted by Total (blocks):" in out
        assert [line for line in out.splitlines() if line.startswith("PP ")] == [
            "PP 1/4 {", "PP 2/4 {", "PP 3/4 {", "PP 4/4 {"]


def test_ranking_ties_by_total_bytes_then_file_order(tmp_path: Path) -> None:
    doc = document([heap_pp([1], 10, 5), heap_pp([2], 30, 5), heap_pp([3], 30, 5),
                    heap_pp([4], 1, 7)], ["a (x.py:1)", "b (x.py:2)", "c (x.py:3)",
                                          "d (x.py:4)"])
    out = run_cli("report", str(write(tmp_path / "t.json", doc)))[1]
    firsts = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("    #1: ")]
    assert firsts == ["d (x.py:4)", "b (x.py:2)", "c (x.py:3)", "a (x.py:1)"]


def test_metrics_that_qualify_program_points(tmp_path: Path) -> None:
    doc = document([heap_pp([1], 100, 10, tl=50), heap_pp([2], 800, 10, tl=500),
                    heap_pp([3], 160, 20, tl=100)], ["a (x.py:1)", "b (x.py:2)", "c (x.py:3)"])
    path = str(write(tmp_path / "q.json", doc))
    out = run_cli("report", path, "--sort", "tiny")[1]
    assert "\n2 of 3 program points whose blocks average 16 bytes or less,\n" \
           "sorted by Total (blocks), tiny:\n" in out
    assert [line[8:] for line in out.splitlines() if line.startswith("    #1: ")] == [
        "c (x.py:3)", "a (x.py:1)"]
    out = run_cli("report", path, "--sort", "short_lived")[1]
    assert "\n2 of 3 program points whose blocks live 10 allocs or less on average,\n" \
           "sorted by Total (blocks), short-lived:\n" in out
    assert [line[8:] for line in out.splitlines() if line.startswith("    #1: ")] == [
        "c (x.py:3)", "a (x.py:1)"]


@needs_valgrind
def test_valgrind_metrics(tmp_path: Path) -> None:
    path = str(valgrind_file(tmp_path, "vg.json"))
    out = run_cli("report", path, "--sort", "reads", "--top", "1")[1]
    assert "  Reads:     1 bytes (100%, " in out and "  Writes:    4,000 bytes (79.98%, " in out
    assert "main (prog.c:9)" in out  # keep = make(4000), the only PP read from
    out = run_cli("report", path, "--sort", "zero_rw_blocks")[1]
    assert "\n2 of 3 program points whose blocks are never read or never written,\n" in out
    assert "    [  0]  10 〃 〃 〃" in out  # the viewer's access grid
    assert "  Accesses: {" in out


def test_ad_hoc_units_and_events(tmp_path: Path) -> None:
    doc = document([{"tb": 12, "tbk": 3, "fs": [1]}, {"tb": 5, "tbk": 5, "fs": [2]}],
                   ["a (x.py:1)", "b (x.py:2)"], bklt=False)
    path = str(write(tmp_path / "ad.json", doc))
    by_units, by_events = (run_cli("report", path, "--sort", s)[1] for s in ("units", "events"))
    assert "sorted by Total (units):" in by_units and "sorted by Total (events):" in by_events
    assert by_units.index("a (x.py:1)") < by_units.index("b (x.py:2)")
    assert by_events.index("b (x.py:2)") < by_events.index("a (x.py:1)")
    assert "  Total:     35 units" not in by_units
    assert "Totals {\n  Total:     17 units in 8 events\n}" in by_units
    assert "  Occurred at {" in by_units and "Max:" not in by_units and "t-gmax" not in by_units


# --- colour -----------------------------------------------------------------------------


def test_colour_only_when_asked() -> None:
    always = run_cli("report", str(RUST_HEAP), "--top", "1", "--color", "always")[1]
    assert "\x1b[1m6 blocks (46.15%, 2,489.63/s)\x1b[0m" in always  # the metric, bold
    assert "\x1b[" not in run_cli("report", str(RUST_HEAP), "--color", "never")[1]
    assert "\x1b[" not in run_cli("report", str(RUST_HEAP))[1]  # auto, not a terminal
    tree = run_cli("report", str(RUST_HEAP), "--tree", "--color", "always")[1]
    assert "\x1b[2m  ├─\x1b[0m" in tree  # tree lines dim


def on_a_terminal(*args: str, env: Optional[Dict[str, str]] = None) -> str:
    """stdout of ``dhatc ARGS`` run on a pseudo-terminal."""
    master, slave = pty.openpty()
    full_env = dict(os.environ, COLUMNS="80", DHATC_QUIET="1")
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "dhatc", *args], stdout=slave,
                            stderr=subprocess.DEVNULL, env=full_env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the command on the terminal")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_unless_no_color() -> None:
    assert "\x1b[1m" in on_a_terminal("report", str(RUST_HEAP))
    assert "\x1b[" not in on_a_terminal("report", str(RUST_HEAP), env={"NO_COLOR": "1"})
    assert "\x1b[" not in on_a_terminal("report", str(RUST_HEAP), env={"TERM": "dumb"})
    assert "\x1b[1m" in on_a_terminal("report", str(RUST_HEAP), "--color", "always",
                                      env={"NO_COLOR": "1"})


# --- JSON -------------------------------------------------------------------------------


def test_json_flat() -> None:
    status, out, _ = run_cli("report", str(RUST_HEAP), "--json", "--top", "1",
                             "--sort", "end_bytes")
    assert status == 0
    assert json.loads(out) == {
        "format": "dhatc-report", "version": 1,
        "file": {"path": str(RUST_HEAP), "mode": "rust-heap", "verb": "Allocated",
                 "cmd": "target/release/dhatter --words input.txt", "pid": 41237,
                 "block_lifetimes": True, "block_accesses": False,
                 "units": {"byte": "byte", "bytes": "bytes", "blocks": "blocks", "time": "µs",
                           "time_million": "s"},
                 "short_lived_threshold": 10, "time_of_peak": 1873, "time_of_end": 2410,
                 "program_points": 4},
        "totals": {"total_bytes": 3472, "total_blocks": 13, "total_lifetime": 6481,
                   "max_bytes": None, "max_blocks": None, "gmax_bytes": 2192, "gmax_blocks": 5,
                   "end_bytes": 1040, "end_blocks": 2, "reads": None, "writes": None},
        "sort": {"metric": "end_bytes", "label": "At t-end (bytes)"},
        "matching": 4,
        "program_points": [
            {"rank": 1, "index": 0,
             "frames": [
                 "0x55d4a3b2c1d0: <alloc::alloc::Global as core::alloc::Allocator>::allocate "
                 "(alloc/src/alloc.rs:241:9)",
                 "0x55d4a3b2c1d0: alloc::raw_vec::RawVec<T,A>::allocate_in "
                 "(alloc/src/raw_vec.rs:185:45)",
                 "0x55d4a3b2c1d0: alloc::vec::Vec<T>::with_capacity (src/vec/mod.rs:483:9)",
                 "0x55d4a3b2c1d0: std::io::buffered::bufwriter::BufWriter<W>::with_capacity "
                 "(io/buffered/bufwriter.rs:115:33)",
                 "0x55d4a3b0f2a4: std::io::stdio::stdout::{{closure}} (src/io/stdio.rs:601:58)"],
             "total_bytes": 1024, "total_blocks": 1, "total_lifetime": 2340, "max_bytes": 1024,
             "max_blocks": 1, "gmax_bytes": 1024, "gmax_blocks": 1, "end_bytes": 1024,
             "end_blocks": 1, "reads": None, "writes": None}],
    }


def test_json_tree() -> None:
    status, out, _ = run_cli("report", str(RUST_HEAP), "--json", "--tree", "--threshold", "40")
    document_ = json.loads(out)
    assert document_["format"] == "dhatc-report-tree"
    assert document_["threshold"] == {"percent": 40.0,
                                      "text": "total >= 5.2 blocks (40%)"}
    nodes = [(n["id"], n["parent"], n["kind"], n["significant"], n["children"],
              n["total_blocks"], n["max_bytes"]) for n in document_["nodes"]]
    assert nodes == [
        ("1", None, "internal", True, 2, 13, None),
        ("1.1", "1", "internal", True, 2, 9, None),
        ("1.1.1", "1.1", "leaf", True, 0, 6, 1152),
        ("1.1.2", "1.1", "aggregate", False, 0, 3, None),
        ("1.2", "1", "aggregate", False, 0, 4, None),
    ]
    assert document_["nodes"][0]["frames"][0].endswith("Allocator>::allocate "
                                                       "(alloc/src/alloc.rs:241:9)")
    assert document_["nodes"][3]["frames"] == ["[1 insignificant]"]


# --- the command line -------------------------------------------------------------------


def test_reads_standard_input() -> None:
    status, out, _ = run_cli("report", "-", "--top", "1", stdin=RUST_HEAP.read_text("utf-8"))
    assert status == 0 and "PP 1/4 {" in out


def test_output_file(tmp_path: Path) -> None:
    proc = dhatc("report", str(RUST_HEAP), "-o", "out.txt", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (tmp_path / "out.txt").read_text().startswith("Invocation {\n  Mode:    rust-heap\n")
    (tmp_path / "file").write_text("")
    assert_one_line_error(dhatc("report", str(RUST_HEAP), "-o", "file/out.txt", cwd=tmp_path),
                          "report", "cannot write file/out.txt: Not a directory")


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    path = write(tmp_path / "many.json", random_document(random.Random(3), n_pps=3000,
                                                         ties=False))
    proc = subprocess.run(f"{sys.executable} -m dhatc report {path} --top 0 | head -1",
                          shell=True, capture_output=True, text=True, timeout=300)
    assert (proc.stdout, proc.stderr) == ("Invocation {\n", "")


@pytest.mark.parametrize("args, fragments", [
    (["--sort", "bytes"], ["unknown sort metric 'bytes'; choose from total_bytes, total_blocks"]),
    (["--sort", "reads"], ["--sort reads: ", "records no reads and writes (only Valgrind's "
                                            "heap profiles do)"]),
    (["--tree", "--sort", "max_bytes"], ["--sort max_bytes is per program point and does not "
                                         "add up in a tree"]),
    (["--threshold", "5"], ["--threshold applies to the tree; add --tree"]),
])
def test_usage_errors(args: List[str], fragments: List[str]) -> None:
    assert_one_line_error(dhatc("report", str(RUST_HEAP), *args), "report", *fragments)


def test_metric_the_file_does_not_record(tmp_path: Path) -> None:
    path = write(tmp_path / "ad.json", document([{"tb": 1, "tbk": 1, "fs": [1]}], ["a"],
                                                bklt=False))
    assert_one_line_error(dhatc("report", str(path), "--sort", "short_lived"), "report",
                          f"--sort short_lived: {path} records no block lifetimes")


@pytest.mark.parametrize("args, message", [
    (["--top", "-1"], "argument --top: must be 0 (all) or more, got -1"),
    (["--top", "x"], "argument --top: not a whole number: 'x'"),
    (["--tree", "--threshold", "101"], "argument --threshold: must be from 0 to 100, got 101"),
])
def test_bad_numbers(args: List[str], message: str) -> None:
    proc = dhatc("report", str(RUST_HEAP), *args)
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == f"dhatc report: error: {message}"


def test_bad_files(tmp_path: Path) -> None:
    assert_one_line_error(dhatc("report", "missing.json", cwd=tmp_path), "report",
                          "missing.json: no such file")
    (tmp_path / "cut.json").write_text(RUST_HEAP.read_text("utf-8")[:300])
    assert_one_line_error(dhatc("report", "cut.json", cwd=tmp_path), "report",
                          "cut.json: the JSON stops in the middle, at line")
    assert_one_line_error(dhatc("report", str(tmp_path)), "report", "a directory")


def test_help_says_what_it_does() -> None:
    proc = dhatc("--help")
    assert re.search(r"report\s+show a DHAT file's top program points \(or its tree\) in the\s+"
                     r"terminal", proc.stdout)
    own = dhatc("report", "--help").stdout
    assert "--sort METRIC" in own and "--tree" in own and "--threshold PERCENT" in own


def test_dhatc_file_of_a_real_program(run_python: Any, tmp_path: Path) -> None:
    path = dhatc_file(run_python, tmp_path, "h.json", """
        keep = [bytes(1000) for _ in range(20)]
    """)
    status, out, _ = run_cli("report", str(path), "--sort", "gmax_bytes", "--top", "1",
                             "--wide")
    assert status == 0
    snippet = tmp_path / "snippet.py"
    assert f"main.<locals>.<listcomp> ({snippet}:6)" in out or f"main ({snippet}:6)" in out
    assert "20 blocks" in out
