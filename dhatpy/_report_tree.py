"""The viewer's tree of program points, as ``dh_view.js`` builds and shows it.

The viewer's tree (``buildTree``) is the radix tree of the PPs' frame
sequences, read from the top (the allocation point) down: a node holds the
frames its PPs share until they part, one-child chains are merged into their
parent, a PP whose frames end where others go on gets a leaf with no frames.
The viewer builds it PP by PP; its children end up in the order of the first
PP under each.  :func:`build` makes the same tree from the PPs sorted by their
frames: the PPs under a node are then a run of that order, a stack of the
nodes on the last PP's path and the longest common prefix of each PP with the
one before place every PP, and each node's figures are a difference of
running sums.  A million PPs take seconds, not minutes; the children get the
viewer's order (by their first PP) when shown.

:func:`mark_significance` is the viewer's ``sigTree``, skipping subtrees whose
figure is under the threshold (nothing below them can pass); :func:`layout`
yields the nodes in display order, each node's insignificant children folded
into one "[N insignificant]" node and the children sorted by the metric, then
by total bytes, as ``appendTreeInner`` does.  No recursion anywhere: stacks can
be thousands of frames deep.
"""

from __future__ import annotations

import itertools
import math
import operator
from array import array
from typing import Iterator, List, MutableSequence, Optional, Sequence, Tuple

from ._dhat_reader import ACCESS_LATCH, FIGURES, DhatFileError, DhatTable
from ._report_format import N_FIGURES, TB
from ._report_metrics import Metric

LEAF, INTERNAL, AGGREGATE = 1, 2, 3
SIG_NONE, SIG_DESCENDANT, SIG_SELF = 1, 2, 3


class Node:
    """A node: the PPs at positions lo..hi of the sorted order, sharing their
    first `depth` frames; it holds frames top..depth (its parent has the rest)."""

    __slots__ = ("lo", "hi", "top", "depth", "rep", "pp", "kids", "ordered", "sig", "label", "v")

    def __init__(self, lo: int, top: int, depth: int, rep: int, pp: Optional[int] = None) -> None:
        self.lo = lo
        self.hi = lo + 1
        self.top = top
        self.depth = depth
        self.rep = rep  # a PP under the node: where its frames come from
        self.pp = pp  # the PP whose frames end here
        self.kids: Optional[List[Node]] = None
        self.ordered = False  # kids in the viewer's order yet
        self.sig = SIG_NONE
        self.label = ""  # an aggregate's "[N insignificant]"
        self.v: Optional[List[int]] = None  # an aggregate's figures

    @property
    def kind(self) -> int:
        if self.label:
            return AGGREGATE
        return LEAF if self.kids is None else INTERNAL


class Tree:
    """The tree of a table's PPs: the root, the sorted order, running sums."""

    def __init__(self, table: DhatTable, root: Node, order: List[int]) -> None:
        self.table = table
        self.root = root
        self.order = order
        self._sums: List[Optional[MutableSequence[int]]] = [None] * N_FIGURES

    def _running_sum(self, k: int) -> MutableSequence[int]:
        sums = self._sums[k]
        if sums is None:
            column = self.table.column(FIGURES[k])
            if column is None:
                sums = array("Q", bytes(8 * (len(self.order) + 1)))
            else:
                running = itertools.accumulate(map(column.__getitem__, self.order), initial=0)
                try:
                    sums = array("Q", running)
                except OverflowError:  # more than 2**64 in all
                    sums = list(itertools.accumulate(map(column.__getitem__, self.order),
                                                     initial=0))
            self._sums[k] = sums
        return sums

    def figure(self, node: Node, k: int) -> int:
        if node.v is not None:
            return node.v[k]
        sums = self._running_sum(k)
        return sums[node.hi] - sums[node.lo]

    def figures(self, node: Node) -> List[int]:
        """TB...WB summed over the node's PPs (max: a leaf's own)."""
        return [self.figure(node, k) for k in range(N_FIGURES)]

    def sequence(self, node: Node) -> "array[int]":
        if not len(self.table):  # no PPs: a root alone
            return array("I")
        return self.table.frame_indices(node.rep)

    def frames(self, node: Node) -> List[int]:
        """The node's own frames, as ftbl indices; the root's start with 0, "[root]"."""
        own = self.sequence(node)[node.top:node.depth].tolist()
        return [0] + own if node is self.root else own

    def ancestor_frames(self, node: Node) -> List[int]:
        """The frames of the nodes above it, without "[root]"."""
        return self.sequence(node)[:node.top].tolist()

    def kids(self, node: Node) -> Optional[List[Node]]:
        """Its children, in the viewer's order (by their first PP); a PP that ends
        at a node with children is a leaf of its own, with no frames.  Settled
        the first time they are asked for."""
        if node.kids is None or node.ordered:
            return node.kids
        if node.pp is not None:
            node.kids.insert(0, Node(node.lo, node.depth, node.depth, node.pp, node.pp))
            node.pp = None
        order = self.order
        node.kids.sort(key=lambda kid: min(order[kid.lo:kid.hi]))
        node.ordered = True
        return node.kids

    def accesses(self, node: Node) -> Optional[List[float]]:
        """Valgrind's access counts summed, as the viewer sums them: only when
        every PP under the node has them, all of one length; infinity for 65535."""
        if node.kind == AGGREGATE or not self.table.accesses:
            return None
        parts: List[List[int]] = []
        for i in self.order[node.lo:node.hi]:
            counts = self.table.accesses.get(i)
            if counts is None or (parts and len(counts) != len(parts[0])):
                return None
            parts.append(counts)
        if not parts or not parts[0]:
            return None
        return [math.inf if ACCESS_LATCH in column else sum(column) for column in zip(*parts)]


def build(table: DhatTable) -> Tree:
    """The viewer's radix tree of `table`'s program points."""
    n = len(table)
    fs, offsets = table.frame_index_array, table.offsets
    size = fs.itemsize
    view = memoryview(fs).cast("B")
    starts = map(operator.mul, offsets, itertools.repeat(size))
    ends = map(operator.mul, itertools.islice(offsets, 1, None), itertools.repeat(size))
    keys = list(map(bytes, map(view.__getitem__, map(slice, starts, ends))))
    order = sorted(range(n), key=keys.__getitem__)
    root = Node(0, 0, 0, order[0] if n else 0)
    stack = [root]
    previous = b""
    from_bytes = int.from_bytes
    for k, i in enumerate(order):
        key = keys[i]
        if k == 0:
            common = 0
        else:
            m = min(len(previous), len(key))
            if key.startswith(previous[:m]):
                common = m // size
            else:  # the first byte that differs, from the highest bit of the xor
                x = from_bytes(previous[:m], "big") ^ from_bytes(key[:m], "big")
                common = (m - (x.bit_length() + 7) // 8) // size
        depth = len(key) // size
        if k and common == depth:  # sorted, so a repeat is next to its twin
            raise DhatFileError(f"{table.header.path}: pps[{i:,}] repeats a location")
        last = None
        while stack[-1].depth > common:
            last = stack.pop()
            last.hi = k
        top = stack[-1]
        if top.depth < common:  # they part below `top`, inside `last`'s frames
            assert last is not None and top.kids is not None
            middle = Node(last.lo, top.depth, common, last.rep)
            last.top = common
            middle.kids = [last]
            top.kids[-1] = middle  # `last` was `top`'s newest child
            stack.append(middle)
            top = middle
        if depth == top.depth:  # the first PP, with no frames at all
            top.pp = i
        else:
            leaf = Node(k, top.depth, depth, i, i)
            if top.kids is None:
                top.kids = []
            top.kids.append(leaf)
            stack.append(leaf)
        previous = key
    for node in stack:
        node.hi = n
    # The root holds the frames all PPs share (the viewer starts from the first PP's).
    if root.pp is None and root.kids is not None and len(root.kids) == 1:
        only = root.kids[0]
        root.depth, root.kids, root.pp, root.rep = only.depth, only.kids, only.pp, only.rep
    return Tree(table, root, order)


def mark_significance(tree: Tree, metric: Metric, fraction: Optional[float]) -> None:
    """The viewer's sigTree: SIG_SELF, SIG_DESCENDANT or SIG_NONE.  A node whose
    figure is under the threshold is SIG_NONE with all below it (their figures
    are no bigger), so only the nodes over it are visited."""
    header = tree.table.header
    root_v = tree.figures(tree.root)
    bound = (metric.fraction if fraction is None else fraction) * root_v[metric.field]
    visited: List[Tuple[Node, Optional[List[Node]]]] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if not tree.figure(node, metric.field) >= bound:
            node.sig = SIG_NONE
            continue
        kids = tree.kids(node)
        visited.append((node, kids))
        if kids:
            stack.extend(kids)
    for node, kids in reversed(visited):  # children first
        if metric.significant(tree.figures(node), root_v, header, fraction):
            node.sig = SIG_SELF
        elif kids and any(kid.sig != SIG_NONE for kid in kids):
            node.sig = SIG_DESCENDANT
        else:
            node.sig = SIG_NONE


class Shown:
    """One node as displayed: its id ("1.2.3"), siblings and tree lines."""

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


def _display_kids(tree: Tree, node: Node, metric: Metric) -> Optional[List[Node]]:
    """Its kids as shown: insignificant ones folded into one, then sorted."""
    kids = tree.kids(node)
    if kids is None:
        return None
    shown: List[Node] = []
    aggregate: Optional[Node] = None
    folded = 0
    for kid in kids:
        if kid.sig != SIG_NONE:
            shown.append(kid)
            continue
        if aggregate is None:
            aggregate = Node(kid.lo, node.depth, node.depth, kid.rep)
            aggregate.v = [0] * N_FIGURES
            shown.append(aggregate)
        folded += 1
        aggregate.v = [a + b for a, b in zip(aggregate.v or (), tree.figures(kid))]
    if aggregate is not None:
        aggregate.label = f"[{folded} insignificant]"
    field = metric.field
    # The viewer's cmp: the metric, then total bytes, both descending; stable.
    shown.sort(key=lambda k: (-tree.figure(k, field), -tree.figure(k, TB)))
    return shown


def layout(tree: Tree, metric: Metric) -> Iterator[Shown]:
    """The nodes in display order (pre-order), with their tree lines."""
    stack = [Shown(tree.root, (1,), 1, "", "  ", None)]
    while stack:
        shown = stack.pop()
        shown.kids = _display_kids(tree, shown.node, metric)
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


def pp_figures(table: DhatTable, i: int) -> List[int]:
    """PP i's figures, TB...WB, 0 for those the file does not record."""
    values = dict(zip(table.figure_names, table.figures[i * table.width:(i + 1) * table.width]))
    return [values.get(name, 0) for name in FIGURES]


def pp_accesses(table: DhatTable, i: int) -> Optional[List[float]]:
    """PP i's access counts (Valgrind), the latched 65535 as infinity, as the viewer has them."""
    counts = table.accesses.get(i)
    if not counts:
        return None
    return [math.inf if n == ACCESS_LATCH else n for n in counts]
