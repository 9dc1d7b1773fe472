"""The viewer's tree of program points, built and laid out as ``dh_view.js`` does.

:func:`build` makes the viewer's radix tree: PPs merged by their frames from
the top (the allocation point) down, a node holding the frames its PPs share
until they part, one-child chains merged into their parent.  Its node order
and split rules are the viewer's (``buildTree``), so that sorting gives the
same order, ties included.  :func:`layout` then marks what is significant
(``sigTree``), folds each node's insignificant children into one
"[N insignificant]" node, sorts the children by the metric (then by total
bytes) and yields the nodes in display order with their tree lines, as
``appendTreeInner`` does.  Both walk with explicit stacks: a stack may be
thousands of frames deep.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ._dhat_reader import FIGURES, DhatFileError, DhatTable
from ._report_format import N_FIGURES, TB
from ._report_metrics import Metric

LEAF, INTERNAL, AGGREGATE = 1, 2, 3
SIG_NONE, SIG_DESCENDANT, SIG_SELF = 1, 2, 3


class Node:
    __slots__ = ("kind", "frames", "kids", "by_first", "pp", "v", "sig", "label")

    def __init__(self, kind: int, frames: List[int], pp: Optional[int] = None) -> None:
        self.kind = kind
        self.frames = frames  # indices into ftbl
        self.kids: Optional[List[Node]] = None
        self.by_first: Optional[Dict[int, Node]] = None  # kid by its first frame
        self.pp = pp  # a leaf's program point
        self.v: List[int] = []
        self.sig = SIG_NONE
        self.label = ""  # an aggregate's "[N insignificant]"

    def set_kids(self, kids: List["Node"]) -> None:
        self.kids = kids
        self.by_first = {kid.frames[0]: kid for kid in kids if kid.frames}

    def add_kid(self, kid: "Node") -> None:
        assert self.kids is not None and self.by_first is not None
        self.kids.append(kid)
        if kid.frames:
            self.by_first[kid.frames[0]] = kid

    def split(self, ti: int, pp: int, new_frames: List[int]) -> None:
        """The viewer's _split: this node keeps its frames up to ti; a first kid
        inherits the rest (and this node's kids or PP), a second gets the new PP."""
        inheritor = Node(self.kind, self.frames[ti + 1:], self.pp)
        if self.kids is not None:
            inheritor.kids, inheritor.by_first = self.kids, self.by_first
        del self.frames[ti + 1:]
        self.kind = INTERNAL
        self.pp = None
        self.set_kids([inheritor, Node(LEAF, new_frames, pp)])


def build(table: DhatTable) -> Node:
    """The viewer's radix tree of `table`'s program points, figures summed."""
    fs, offsets = table.frame_index_array, table.offsets
    root = Node(LEAF, [0])  # frame 0 is "[root]"
    for i in range(len(table)):
        frames = fs[offsets[i]:offsets[i + 1]].tolist()
        if i == 0:
            root.frames.extend(frames)
            root.pp = 0
            continue
        t, ti, done = root, 0, False
        for j, frame in enumerate(frames):
            if ti + 1 < len(t.frames):
                if t.frames[ti + 1] == frame:
                    ti += 1
                else:
                    t.split(ti, i, frames[j:])
                    done = True
                    break
            elif t.kids is None:
                t.split(ti, i, frames[j:])
                done = True
                break
            else:
                assert t.by_first is not None
                kid = t.by_first.get(frame)
                if kid is None:
                    t.add_kid(Node(LEAF, frames[j:], i))
                    done = True
                    break
                t, ti = kid, 0
        if not done:
            if ti + 1 < len(t.frames):
                t.split(ti, i, [])
            elif t.kids is None or any(not kid.frames for kid in t.kids):
                # The reader refuses repeated locations; the viewer's own check.
                raise DhatFileError(f"{table.header.path}: pps[{i:,}] repeats a location")
            else:
                t.add_kid(Node(LEAF, [], i))
    _sum(root, table)
    return root


def pp_figures(table: DhatTable, i: int) -> List[int]:
    """PP i's figures, TB...WB, 0 for those the file does not record."""
    values = dict(zip(table.figure_names, table.figures[i * table.width:(i + 1) * table.width]))
    return [values.get(name, 0) for name in FIGURES]


def _sum(root: Node, table: DhatTable) -> None:
    """Each node's figures: a leaf's PP's; an internal node's, its kids' sums."""
    order: List[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if node.kids:
            stack.extend(node.kids)
    for node in reversed(order):  # kids before their parent
        if node.kids:
            v = [0] * N_FIGURES
            for kid in node.kids:
                v = [a + b for a, b in zip(v, kid.v)]
            node.v = v
        elif node.pp is not None:
            node.v = pp_figures(table, node.pp)
        else:
            node.v = [0] * N_FIGURES


def mark_significance(root: Node, metric: Metric, table: DhatTable,
                      fraction: Optional[float]) -> None:
    """The viewer's sigTree: SIG_SELF, SIG_DESCENDANT or SIG_NONE on every node."""
    header, root_v = table.header, root.v
    order: List[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if node.kids:
            stack.extend(node.kids)
    for node in reversed(order):
        if metric.significant(node.v, root_v, header, fraction):
            node.sig = SIG_SELF
        elif node.kids and any(kid.sig != SIG_NONE for kid in node.kids):
            node.sig = SIG_DESCENDANT
        else:
            node.sig = SIG_NONE


class Shown:
    """One node as displayed: its id ("1.2.3"), siblings, tree lines, and the
    frames above its own (for the ^N lines)."""

    __slots__ = ("node", "ids", "siblings", "tl_first", "tl_rest", "parent", "kids")

    def __init__(self, node: Node, ids: Tuple[int, ...], siblings: int, tl_first: str,
                 tl_rest: str, parent: Optional["Shown"]) -> None:
        self.node = node
        self.ids = ids
        self.siblings = siblings  # the number of its parent's (displayed) kids
        self.tl_first = tl_first
        self.tl_rest = tl_rest
        self.parent = parent
        self.kids: Optional[List[Node]] = None

    @property
    def id(self) -> str:
        return ".".join(map(str, self.ids))

    def ancestor_frames(self) -> List[int]:
        chain: List[Node] = []
        shown = self.parent
        while shown is not None:
            chain.append(shown.node)
            shown = shown.parent
        frames: List[int] = []
        for node in reversed(chain):
            frames.extend(node.frames)
        return frames


def _display_kids(node: Node, metric: Metric) -> Optional[List[Node]]:
    """Its kids as shown: insignificant ones folded into one, sorted."""
    if node.kids is None:
        return None
    kids: List[Node] = []
    aggregate: Optional[Node] = None
    folded = 0
    for kid in node.kids:
        if kid.sig != SIG_NONE:
            kids.append(kid)
            continue
        if aggregate is None:
            aggregate = Node(AGGREGATE, [])
            aggregate.v = [0] * N_FIGURES
            kids.append(aggregate)
        folded += 1
        aggregate.v = [a + b for a, b in zip(aggregate.v, kid.v)]
    if aggregate is not None:
        aggregate.label = f"[{folded} insignificant]"
    field = metric.field
    # The viewer's cmp: the metric, then total bytes, both descending; stable.
    kids.sort(key=lambda k: (-k.v[field], -k.v[TB]))
    return kids


def layout(root: Node, metric: Metric) -> Iterator[Shown]:
    """The nodes in display order (pre-order), with their tree lines."""
    stack = [Shown(root, (1,), 1, "", "  ", None)]
    while stack:
        shown = stack.pop()
        shown.kids = _display_kids(shown.node, metric)
        yield shown
        kids = shown.kids
        if not kids:
            continue
        rest = shown.tl_rest
        entries = []
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            entries.append(Shown(kid, shown.ids + (i + 1,), len(kids),
                                 rest + ("└─" if last else "├─"),
                                 rest + ("    " if last else "│   "), shown))
        stack.extend(reversed(entries))


def arrow(shown: Shown) -> str:
    return "▼ " if shown.kids is not None else "─ "


def title(shown: Shown) -> str:
    children = f"({len(shown.kids)} children) " if shown.kids is not None else ""
    return f"PP {shown.id}/{shown.siblings} {children}"


def frame_strings(table: DhatTable, indices: Sequence[int]) -> List[str]:
    return [table.ftbl[i] for i in indices]
