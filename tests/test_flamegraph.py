"""`python -m dhatc flamegraph`: the page loads in headless Chromium without
script errors and shows the file's totals; search, zoom (real mouse events on
the canvas), the tooltip, the metric and orientation menus and the URL hash
work; 100,000 PPs are drawn pruned; bad input is one line and status 2."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Dict

import pytest

from command_util import assert_one_line_error, dhatc, dump_dom, pp, write_profile
from dh_viewer import render as render_in_viewer
from dh_viewer import viewer_dir
from dhatc import _dhat_reader
from dhatc._cmd_flamegraph import page_data, page_html

MAIN10, MAIN11, MAIN12 = "main (app.py:10)", "main (app.py:11)", "main (app.py:12)"
MID, LEAF, OTHER = "mid (app.py:7)", "leaf (app.py:3)", "other (app.py:5)"
REC20, REC21 = "rec (app.py:20)", "rec (app.py:21)"
MALLOC, REALLOC = "PyObject_Malloc", "PyMem_Realloc"

# Totals: 2,000 bytes in 20 blocks; t-gmax 1,000 in 10; t-end 150 in 2.
TREE = [
    pp([MALLOC, LEAF, MID, MAIN10], 600, 6, tl=60, mb=400, mbk=4, gb=300, gbk=3, eb=100, ebk=1),
    pp([MALLOC, OTHER, MAIN11], 300, 3, tl=30, mb=300, mbk=3, gb=200, gbk=2),
    pp([REALLOC, LEAF, MID, MAIN10], 100, 1, tl=5, mb=100, mbk=1, eb=50, ebk=1),
    pp([MALLOC, REC20, REC21, REC21, MAIN12], 1000, 10, tl=100, mb=500, mbk=5, gb=500, gbk=5),
]

# Runs in the page after its own script: helpers that act as a user would
# (events dispatched at the canvas, the inputs), then the test's own steps.
DRIVER = """
(function () {
  const out = {};
  const fg = window.dhatcFlamegraph;
  const canvas = document.getElementById("fg-canvas");
  const text = (id) => document.getElementById(id).textContent;
  function point(frames) {
    const node = fg.findPath(frames);
    if (node < 0) throw new Error("no node " + JSON.stringify(frames));
    const b = fg.boxOf(node);
    if (!b) throw new Error("not drawn: " + JSON.stringify(frames));
    const r = canvas.getBoundingClientRect();
    return {clientX: r.left + b.x + b.w / 2, clientY: r.top + b.y + b.h / 2, bubbles: true};
  }
  const click = (frames) => canvas.dispatchEvent(new MouseEvent("click", point(frames)));
  const hover = (frames) => canvas.dispatchEvent(new MouseEvent("mousemove", point(frames)));
  function type(value) {
    const input = document.getElementById("fg-search");
    input.value = value;
    input.dispatchEvent(new Event("input", {bubbles: true}));
  }
  function choose(id, value) {
    const select = document.getElementById(id);
    select.value = value;
    select.dispatchEvent(new Event("change", {bubbles: true}));
  }
  const key = (k) => document.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true}));
  const snapshot = () => ({
    summary: text("fg-summary"), metricTotal: text("fg-metric-total"), match: text("fg-match"),
    zoom: text("fg-zoom"), zoomPath: fg.pathOf(fg.zoom()), metric: fg.metric(),
    order: fg.order(), drawn: fg.lastDrawn(), nodes: fg.nodeCount(), hash: location.hash,
    canvasWidth: canvas.getBoundingClientRect().width,
    tooltip: document.getElementById("fg-tooltip").hidden ? null : text("fg-tooltip"),
  });
  try {
    STEPS
  } catch (e) {
    window.__errors.push("driver: " + e);
  }
  out.errors = window.__errors;
  const pre = document.createElement("pre");
  pre.id = "test-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""

ERROR_CATCHER = ('<script>window.__errors = []; window.addEventListener("error", '
                 '(e) => window.__errors.push(String(e.message)));</script>')


def drive(page: Path, steps: str, hash: str = "") -> Dict[str, Any]:
    """Loads `page` (plus `hash`) in Chromium with the driver running `steps`;
    returns the driver's `out`, after checking that no script error happened."""
    html = page.read_text(encoding="utf-8")
    assert html.count("</body>") == 1
    html = html.replace("<head>", "<head>\n" + ERROR_CATCHER, 1)
    html = html.replace("</body>", "<script>" + DRIVER.replace("STEPS", steps) + "</script>\n</body>")
    driven = page.with_name(page.stem + "-driven.html")
    driven.write_text(html, encoding="utf-8")
    dom = dump_dom(driven.as_uri() + hash)
    match = re.search(r'<pre id="test-out">(.*?)</pre>', dom, re.S)
    assert match, dom[-3000:]
    out: Dict[str, Any] = json.loads(
        match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert out["errors"] == []
    return out


@pytest.fixture
def tree_page(tmp_path: Path) -> Path:
    write_profile(tmp_path / "tree.json", TREE, time_of_end=100)
    proc = dhatc("flamegraph", "tree.json", "-o", "tree.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "dhatc flamegraph: wrote tree.html (4 program points)\n"
    return tmp_path / "tree.html"


def test_page_shows_the_totals_and_draws(tree_page: Path) -> None:
    out = drive(tree_page, "out.start = snapshot();")
    start = out["start"]
    assert start["summary"].splitlines() == [
        "Total:     2,000 bytes in 20 blocks",
        "At t-gmax: 1,000 bytes in 10 blocks",
        "At t-end:  150 bytes in 2 blocks",
        "4 program points",
    ]
    assert start["metricTotal"] == "Total (bytes): 2,000 bytes."
    assert (start["metric"], start["order"], start["zoomPath"]) == ("total_bytes", "callers", [])
    # The root; main (app.py:10), mid, leaf, 2 allocators; main (app.py:11), other,
    # 1 allocator; main (app.py:12), rec, rec, rec, 1 allocator.
    assert start["nodes"] == 14
    assert start["drawn"] == 14


def test_search_highlights_and_counts_each_block_once(tree_page: Path) -> None:
    out = drive(tree_page, """
      type("rec"); out.rec = snapshot();
      type("LEAF"); out.leaf = snapshot();
      type("malloc"); out.malloc = snapshot();
      choose("fg-metric", "gmax_bytes"); out.gmax = snapshot();
      type("no such frame"); out.none = snapshot();
      type(""); out.cleared = snapshot();
    """)
    # rec appears three times on one stack: its 1,000 bytes count once.
    assert out["rec"]["match"] == 'Matched "rec": 1,000 bytes (50% of the total).'
    assert out["leaf"]["match"] == 'Matched "LEAF": 700 bytes (35% of the total).'
    assert out["malloc"]["match"] == 'Matched "malloc": 1,900 bytes (95% of the total).'
    assert out["gmax"]["metricTotal"] == "At t-gmax (bytes): 1,000 bytes."
    assert out["gmax"]["match"] == 'Matched "malloc": 1,000 bytes (100% of the total).'
    assert out["none"]["match"] == 'Matched "no such frame": 0 bytes (0% of the total).'
    assert out["cleared"]["match"] == ""
    assert "search=malloc" in out["gmax"]["hash"]


def test_click_zooms_in_and_back_out(tree_page: Path) -> None:
    out = drive(tree_page, f"""
      click({json.dumps([MAIN10])}); out.zoomed = snapshot();
      out.midBox = fg.boxOf(fg.findPath({json.dumps([MAIN10, MID])}));
      out.otherBox = fg.boxOf(fg.findPath({json.dumps([MAIN11])}));
      click({json.dumps([MAIN10, MID])}); out.deeper = snapshot();
      click({json.dumps([MAIN10])}); out.up = snapshot();
      click([]); out.root = snapshot();
      click({json.dumps([MAIN12, REC21])}); key("Escape"); out.escaped = snapshot();
      click({json.dumps([MAIN11])}); document.getElementById("fg-reset").click();
      out.reset = snapshot();
    """)
    zoomed = out["zoomed"]
    assert zoomed["zoomPath"] == [MAIN10]
    assert zoomed["zoom"] == "Zoomed into main (app.py:10): 700 bytes (35% of the total)."
    assert "zoom=main+%28app.py%3A10%29" in zoomed["hash"]
    # In the zoomed view main's only child is as wide as the canvas; main (app.py:11) is gone.
    assert out["midBox"]["x"] == 0 and out["midBox"]["w"] == zoomed["canvasWidth"]
    assert out["otherBox"] is None
    # Drawn: root (dimmed, above), main, mid, leaf, its 2 allocators.
    assert zoomed["drawn"] == 6
    assert out["deeper"]["zoomPath"] == [MAIN10, MID]
    assert out["up"]["zoomPath"] == [MAIN10]  # a frame above the zoomed one zooms out to it
    assert out["root"]["zoomPath"] == [] and out["root"]["zoom"] == ""
    assert out["escaped"]["zoomPath"] == []
    assert out["reset"]["zoomPath"] == []


def test_tooltip_gives_the_figures_as_dhats_viewer_does(tree_page: Path) -> None:
    out = drive(tree_page, f"""
      hover({json.dumps([MAIN10, MID, LEAF, MALLOC])}); out.leafpp = snapshot();
      hover({json.dumps([MAIN10])}); out.main = snapshot();
    """)
    lines = out["leafpp"]["tooltip"].splitlines()
    assert lines == [
        "PyObject_Malloc",
        "  Total:     600 bytes (30%, 6,000,000/Mallocs) in 6 blocks (30%, 60,000/Mallocs), "
        "avg size 100 bytes, avg lifetime 10 allocs (10% of program duration)",
        "  Max:       400 bytes in 4 blocks, avg size 100 bytes",
        "  At t-gmax: 300 bytes (30%) in 3 blocks (30%), avg size 100 bytes",
        "  At t-end:  100 bytes (66.67%) in 1 blocks (50%), avg size 100 bytes",
        "  1 program point, depth 4",
    ]
    # Two PPs under main (app.py:10): no Max line (maxima do not add up).
    assert out["main"]["tooltip"].splitlines() == [
        "main (app.py:10)",
        "  Total:     700 bytes (35%, 7,000,000/Mallocs) in 7 blocks (35%, 70,000/Mallocs), "
        "avg size 100 bytes, avg lifetime 9.29 allocs (9.29% of program duration)",
        "  At t-gmax: 300 bytes (30%) in 3 blocks (30%), avg size 100 bytes",
        "  At t-end:  150 bytes (100%) in 2 blocks (100%), avg size 75 bytes",
        "  2 program points, depth 1",
    ]
    # The same PP's lines in DHAT's own viewer, word for word.
    if viewer_dir() is not None:
        shown = render_in_viewer(tree_page.with_name("tree.json"))
        assert shown.error is None
        for line in lines[1:5]:
            assert line.strip() in shown.text


def test_metric_order_and_hash(tree_page: Path) -> None:
    out = drive(tree_page, f"""
      choose("fg-metric", "end_blocks"); out.endBlocks = snapshot();
      choose("fg-order", "allocation"); out.alloc = snapshot();
      out.mallocValue = fg.value(fg.findPath(["PyObject_Malloc"]));
      out.mallocChildren = fg.findPath({json.dumps([MALLOC, LEAF])}) > 0;
    """)
    assert out["endBlocks"]["metricTotal"] == "At t-end (blocks): 2 blocks."
    assert out["alloc"]["order"] == "allocation"
    assert out["mallocValue"] == 1  # end_blocks of the three PyObject_Malloc PPs
    assert out["mallocChildren"] is True
    assert "order=allocation" in out["alloc"]["hash"]

    # A link with a hash opens that view.
    restored = drive(tree_page, "out.view = snapshot();",
                     hash="#metric=end_bytes&search=leaf&zoom=main%20(app.py%3A10)")["view"]
    assert restored["metric"] == "end_bytes"
    assert restored["zoomPath"] == [MAIN10]
    assert restored["match"] == 'Matched "leaf": 150 bytes (100% of the total).'
    assert restored["zoom"] == "Zoomed into main (app.py:10): 150 bytes (100% of the total)."


def test_ad_hoc_file(tmp_path: Path) -> None:
    write_profile(tmp_path / "events.json", [pp(["parse (tokens.py:5)", "main (tokens.py:9)"], 35, 9)],
                  mode="ad-hoc")
    assert dhatc("flamegraph", "events.json", cwd=tmp_path).returncode == 0  # -> events.html
    out = drive(tmp_path / "events.html", """
      out.start = snapshot();
      out.options = Array.from(document.getElementById("fg-metric").options).map((o) => o.text);
      hover(["main (tokens.py:9)"]); out.hovered = snapshot();
    """)
    assert out["start"]["summary"].splitlines() == ["Total:     35 units in 9 events", "1 program points"]
    assert out["options"] == ["Total (units)", "Total (events)"]
    assert out["hovered"]["tooltip"].splitlines()[1] == (
        "  Total:     35 units (100%, 350,000/Mevents) in 9 events (100%, 90,000/Mevents), "
        "avg size 3.89 units")
    proc = dhatc("flamegraph", "events.json", "--metric", "gmax_bytes", cwd=tmp_path)
    assert_one_line_error(proc, "flamegraph", "events.json is an ad hoc profile")


def test_frames_that_look_like_markup_or_placeholders(tmp_path: Path) -> None:
    odd = ["</script><!-- {{DATA}} {{JS}} ü \u2028 & <b>", "main (weird;name\n.py:1)"]
    write_profile(tmp_path / "odd.json", [pp(odd, 10, 1, gb=10, gbk=1)])
    assert dhatc("flamegraph", "odd.json", "-o", "odd.html", cwd=tmp_path).returncode == 0
    out = drive(tmp_path / "odd.html", """
      type("<\\/script>"); out.s = snapshot();
      out.frames = fg.pathOf(fg.findPath(fg.pathOf(2)));
      choose("fg-metric", "end_bytes"); out.end = snapshot();
      out.empty = document.getElementById("fg-empty").hidden ? null : text("fg-empty");
    """)
    assert out["s"]["match"] == 'Matched "</script>": 10 bytes (100% of the total).'
    assert out["frames"] == [odd[1], odd[0]]
    # Nothing live at t-end: said, not drawn as an empty canvas.
    assert out["empty"] == "Nothing to draw: the total At t-end (bytes) is 0."
    assert out["end"]["drawn"] == 0


def test_100000_program_points_are_drawn_pruned(tmp_path: Path) -> None:
    # Written as JSON directly: 100,000 ProgramPoint objects take longer than the test.
    rng = random.Random(14)
    ftbl = ["[root]", "main (main.py:1)"]
    ftbl += [f"f{i % 31} (mod{i % 40}.py:{i % 50 + 1})" for i in range(2000)]
    lines = []
    total_bytes = total_blocks = 0
    for i in range(100_000):
        ftbl.append(f"site{i} (alloc.py:{i})")
        middle = [rng.randrange(2, 2002) for _ in range(rng.randint(3, 9))]
        tb, tbk, gb = 100 + i % 7, 1 + i % 3, i % 5
        total_bytes += tb
        total_blocks += tbk
        lines.append(f'{{"tb":{tb},"tbk":{tbk},"tl":0,"mb":{tb},"mbk":{tbk},"gb":{gb},'
                     f'"gbk":{min(gb, 1)},"eb":0,"ebk":0,"fs":{[len(ftbl) - 1, *middle, 1]}}}')
    (tmp_path / "big.json").write_text(
        '{"dhatFileVersion":2,"mode":"heap","verb":"Allocated","bklt":true,"bkacc":false,'
        '"tu":"allocs","Mtu":"Mallocs","tuth":10,"cmd":"big","pid":1,"tg":1,"te":2,'
        f'"pps":[{",".join(lines)}],"ftbl":{json.dumps(ftbl)}}}')
    proc = dhatc("flamegraph", "big.json", "-o", "big.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = drive(tmp_path / "big.html", """
      out.start = snapshot();
      type("mod7.py"); out.searched = snapshot();
      click(["main (main.py:1)"]); out.zoomed = snapshot();
    """)
    start = out["start"]
    assert start["summary"].splitlines()[0] == f"Total:     {total_bytes:,} bytes in {total_blocks:,} blocks"
    assert start["nodes"] > 500_000
    # Pruned: far fewer boxes than nodes, and never more than a row of pixels can hold.
    assert 0 < start["drawn"] <= start["canvasWidth"] * 12
    assert out["searched"]["match"].startswith('Matched "mod7.py": ')
    assert out["zoomed"]["zoomPath"] == ["main (main.py:1)"]


def test_page_data_is_the_file_s_figures(tmp_path: Path) -> None:
    file = _dhat_reader.load(str(write_profile(tmp_path / "tree.json", TREE)))
    data = page_data(file)
    assert data["n"] == [4, 3, 4, 5]
    assert [data["ftbl"][i] for i in data["fs"][:4]] == [MALLOC, LEAF, MID, MAIN10]
    assert len(data["ftbl"]) == 10  # each frame once
    assert data["tb"] == [600, 300, 100, 1000]
    assert data["gbk"] == [3, 2, 0, 5]
    assert data["mb"] == [400, 300, 100, 500]
    assert (data["tu"], data["Mtu"], data["te"], data["heap"]) == ("allocs", "Mallocs", 100, True)
    page = page_html(file)
    assert "<script" not in page.split('<script id="dhatc-data" type="application/json">')[1].split("</script>")[0]
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_output_options(tmp_path: Path) -> None:
    write_profile(tmp_path / "tree.json", TREE)
    proc = dhatc("flamegraph", "tree.json", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("<!DOCTYPE html>")
    (tmp_path / "adir").mkdir()
    assert_one_line_error(dhatc("flamegraph", "tree.json", "-o", "adir", cwd=tmp_path),
                          "flamegraph", "adir is a directory")
    assert_one_line_error(dhatc("flamegraph", "tree.json", "-o", "nodir/x.html", cwd=tmp_path),
                          "flamegraph", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "tree.json"]  # no stray file


@pytest.mark.parametrize("content", [None, "not json", '{"dhatFileVersion": 1}', ""])
def test_bad_input_is_one_line(tmp_path: Path, content: Any) -> None:
    # (What the reader says of each problem is the reader's tests' business.)
    if content is not None:
        (tmp_path / "bad.json").write_text(content)
    proc = dhatc("flamegraph", "bad.json", "-o", "out.html", cwd=tmp_path)
    assert_one_line_error(proc, "flamegraph", "bad.json")
    assert not (tmp_path / "out.html").exists()


def test_page_assets_are_installed() -> None:
    import dhatc

    assets = Path(dhatc.__file__).parent / "flamegraph"
    assert sorted(p.name for p in assets.iterdir() if not p.name.startswith(".")) == [
        "flamegraph.css", "flamegraph.html", "flamegraph.js"]
