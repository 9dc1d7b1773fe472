"""What lets ``dhatc report`` and ``dhatc diff`` read a million program points
quickly gives the answers a plain reading gives: the tree that makes only the
nodes over the threshold folds and orders like one made whole, the top N by
C-level passes is the top N of a full sort, and a figure that is a boolean
is refused deep inside a big file too."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any, List, Optional, Sequence, Tuple

import pytest

from dhatc import _dhat_reader
from dhatc import _report_metrics as metrics
from dhatc._cmd_report import qualifying
from dhatc._dhat_reader import FIGURES, DhatFileError, loads_table
from dhatc._report_common import top_indices
from dhatc._report_format import N_FIGURES, TB
from dhatc._report_tree import (SIG_DESCENDANT, SIG_NONE, SIG_SELF, Node, Tree, build, layout,
                                mark_significance)
from report_util import random_document

VIEWER_METRICS = [m for m in metrics.METRICS if m.in_viewer]


# --- the tree --------------------------------------------------------------------------


def whole_significance(tree: Tree, metric: metrics.Metric, fraction: Optional[float]) -> None:
    """The viewer's sigTree over every node, each node's children all made."""
    root_v = tree.figures(tree.root)
    order: List[Node] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(tree.kids(node) or ())
    for node in reversed(order):
        kids = tree.kids(node) or []
        if metric.significant(tree.figures(node), root_v, tree.table.header, fraction):
            node.sig = SIG_SELF
        elif any(kid.sig != SIG_NONE for kid in kids):
            node.sig = SIG_DESCENDANT
        else:
            node.sig = SIG_NONE


def whole_layout(tree: Tree, metric: metrics.Metric) -> List[Tuple[Any, ...]]:
    """appendTreeInner over the whole tree: the insignificant children of a node
    folded where the first of them is, their figures summed, then a stable sort."""
    shown: List[Tuple[Any, ...]] = []
    stack: List[Tuple[Node, Tuple[int, ...], Optional[List[int]], str]] = [
        (tree.root, (1,), None, "")]
    while stack:
        node, ids, v, label = stack.pop()
        if label:
            shown.append((ids, label, v, None))
            continue
        kids = tree.kids(node)
        entries: List[Tuple[Node, Optional[List[int]], str]] = []
        folded: List[Node] = []
        for kid in kids or ():
            if kid.sig != SIG_NONE:
                entries.append((kid, None, ""))
            else:
                if not folded:
                    entries.append((kid, None, "aggregate"))
                folded.append(kid)
        if folded:
            summed = [sum(tree.figures(kid)[k] for kid in folded) for k in range(N_FIGURES)]
            entries = [(kid, summed, f"[{len(folded)} insignificant]") if label else
                       (kid, None, "") for kid, _, label in entries]

        def figure(entry: Tuple[Node, Optional[List[int]], str], k: int) -> int:
            kid, summed, _ = entry
            return summed[k] if summed is not None else tree.figure(kid, k)

        entries.sort(key=lambda e: (-figure(e, metric.field), -figure(e, TB)))
        shown.append((ids, tree.frames(node), tree.figures(node),
                      None if kids is None else len(entries)))
        for i, (kid, summed, label) in reversed(list(enumerate(entries, 1))):
            stack.append((kid, ids + (i,), summed, label))
    return shown


def lazy_layout(tree: Tree, metric: metrics.Metric) -> List[Tuple[Any, ...]]:
    result = []
    for shown in layout(tree, metric):
        node = shown.node
        if node.label:
            result.append((shown.ids, node.label, tree.figures(node), None))
        else:
            result.append((shown.ids, tree.frames(node), tree.figures(node),
                           None if shown.kids is None else len(shown.kids)))
    return result


@pytest.mark.parametrize("seed", range(6))
def test_the_tree_made_as_asked_folds_as_the_whole_tree(seed: int) -> None:
    rng = random.Random(seed)
    for n in range(60):
        n_frames, max_depth = rng.choice([3, 6, 12]), rng.choice([2, 4, 8])
        possible = sum(n_frames ** d for d in range(max_depth + 1))
        doc = random_document(rng, n_pps=min(rng.randint(0, 120), possible), n_frames=n_frames,
                              max_depth=max_depth, bkacc=seed % 3 == 0, ties=rng.random() < 0.5)
        table = loads_table(json.dumps(doc))
        metric = rng.choice([m for m in VIEWER_METRICS if m.usable(table.header)])
        fraction = rng.choice([None, 0.0, 0.02, 0.1, 0.5, 1.0])
        lazy = build(table)
        mark_significance(lazy, metric, fraction)
        whole = build(table)
        whole_significance(whole, metric, fraction)
        assert lazy_layout(lazy, metric) == whole_layout(whole, metric), (seed, n)


@pytest.mark.parametrize("seed", range(3))
def test_many_children_are_counted_as_the_whole_tree_has_them(seed: int) -> None:
    """Nodes of more than 64 children: those over the threshold found from the
    running sums, the others counted, folded as in the whole tree."""
    rng = random.Random(100 + seed)
    doc = random_document(rng, n_pps=600, n_frames=150, max_depth=3, ties=rng.random() < 0.5)
    table = loads_table(json.dumps(doc))
    for metric in (m for m in VIEWER_METRICS if m.usable(table.header)):
        for fraction in (None, 0.0, 0.004, 0.05):
            lazy = build(table)
            mark_significance(lazy, metric, fraction)
            whole = build(table)
            whole_significance(whole, metric, fraction)
            assert lazy_layout(lazy, metric) == whole_layout(whole, metric), (metric, fraction)
            assert len(lazy.starts(lazy.root)) > 64


def test_children_asked_for_after_marking_are_the_marked_ones() -> None:
    table = loads_table(json.dumps(random_document(random.Random(3), n_pps=200, n_frames=4,
                                                   max_depth=6)))
    tree = build(table)
    mark_significance(tree, metrics.BY_NAME["total_bytes"], 0.05)
    over = tree.root.over or []
    assert over and all(kid in (tree.kids(tree.root) or []) for kid in over)


# --- ranking ---------------------------------------------------------------------------


def test_top_indices_is_the_top_of_a_full_sort() -> None:
    rng = random.Random(7)
    for _ in range(400):
        size = rng.randint(0, 60)
        columns = [[rng.choice([0, 1, 1, 2, 3, 10**20]) for _ in range(size)]
                   for _ in range(rng.randint(1, 3))]
        candidates: Sequence[int] = sorted(rng.sample(range(size), rng.randint(0, size)))
        full = sorted(candidates, key=lambda i: [-c[i] for c in columns] + [i])
        for n in (0, 1, 2, 5, len(candidates), len(candidates) + 3):
            assert top_indices(candidates, columns, n) == (full[:n] if n else full)


@pytest.mark.parametrize("name", ["tiny", "short_lived", "zero_rw_bytes", "low_access_blocks",
                                  "high_access_reads"])
def test_qualifying_is_each_program_points_test(name: str) -> None:
    table = loads_table(json.dumps(random_document(random.Random(11), n_pps=300, bkacc=True)))
    metric = metrics.BY_NAME[name]
    assert metric.qualifies is not None
    expected = []
    for i in range(len(table)):
        v = [table.figures_of(i)[figure] or 0 for figure in FIGURES]
        if metric.qualifies(v, table.header):
            expected.append(i)
    assert list(qualifying(table, metric)) == expected and expected


# --- reading ---------------------------------------------------------------------------


def big_text(pps: int, bad: Optional[Tuple[int, str, str]] = None) -> str:
    """A dhatc-like file of `pps` one-line program points (several megabytes);
    `bad`: (PP, field, JSON text) put in one of them."""
    lines = []
    for i in range(pps):
        fields = {"tb": str(100 + i), "tbk": "1", "tl": "5", "mb": "100", "mbk": "1", "gb": "0",
                  "gbk": "0", "eb": "0", "ebk": "0", "fs": f"[{i % 50 + 1},{i // 50 + 1}]"}
        if bad is not None and bad[0] == i:
            fields[bad[1]] = bad[2]
        lines.append("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}")
    n_frames = pps // 50 + 51
    ftbl = ",\n".join(json.dumps(f"f{i} (m.py:{i})") for i in range(1, n_frames + 1))
    return ('{"dhatFileVersion":2,"mode":"heap","verb":"Allocated","bklt":true,"bkacc":false,'
            '"tu":"allocs","Mtu":"Mallocs","tuth":10,"cmd":"x","pid":1,"tg":1,"te":2,\n"pps":[\n'
            + ",\n".join(lines) + '\n],\n"ftbl":[\n"[root]",\n' + ftbl + "\n]\n}\n")


@pytest.mark.parametrize("bad, message", [
    ((40_000, "tb", "true"), "pps[40,000]: field 'tb' is true, expected an integer"),
    ((30_123, "gbk", "false"), "pps[30,123]: field 'gbk' is false, expected an integer"),
    ((45_000, "fs", "[3,true]"), "pps[45,000]: fs[1] is true, not an index into 'ftbl'"),
])
@pytest.mark.parametrize("scanner", [True, False])
def test_a_boolean_deep_in_a_big_file_is_refused(bad: Tuple[int, str, str], message: str,
                                                 scanner: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the C scanner (it reads up to the bad PP), and without (the pieces
    parsed in Python, half in a forked process)."""
    if not scanner:
        monkeypatch.setattr(_dhat_reader, "_ppscan", None)
    monkeypatch.setattr(_dhat_reader, "PARALLEL_MIN_PIECES", 2)  # fork for a few pieces
    assert len(loads_table(big_text(50_000))) == 50_000
    text = big_text(50_000, bad)
    assert len(text) > 3 << 20  # several of the pieces parsed at a time
    for parallel in (False, True):
        with pytest.raises(DhatFileError) as error:
            loads_table(text, "big.json", parallel=parallel)
        assert str(error.value).startswith(f"big.json: {message}")


@pytest.mark.parametrize("scanner", [True, False])
def test_figures_of_a_big_file_are_its_own(scanner: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not scanner:
        monkeypatch.setattr(_dhat_reader, "_ppscan", None)
    table = loads_table(big_text(50_000), parallel=True)
    assert list(itertools.islice(table.column("total_bytes") or (), 3)) == [100, 101, 102]
    assert table.total("total_bytes") == sum(range(100, 50_100))
    assert table.frames(49_999) == ("f50 (m.py:50)", "f1000 (m.py:1000)")
