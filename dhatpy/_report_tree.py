"""The viewer's tree of program points, as ``dh_view.js`` builds and shows it.

The viewer's tree (``buildTree``) is the radix tree of the PPs' frame
sequences, read from the top (the allocation point) down: a node holds the
frames its PPs share until they part, one-child chains are merged into their
parent, a PP whose frames end where others go on gets a leaf with no frames.
The viewer builds it PP by PP; its children end up in the order of the first
PP under each.  :func:`build` sorts the PPs by their frames instead: the PPs
under a node are then a run of that order, the frames they share are those
the run's first and last PP share, its children are the runs of the frame
that comes next (found by binary search), and its figures are differences of
running sums (or, for a figure few nodes are asked for, sums).  So a node's
children are made only when they are asked for,
and only the nodes over the significance threshold are ever asked: a million
PPs take a second or two, not minutes (the sort and the figures moved into
its order in C, dhatc._ppscan, where it is built).  The children get the
viewer's order (by their first PP) when made.

:func:`mark_significance` is the viewer's ``sigTree``, skipping subtrees whose
figure is under the threshold (nothing below them can pass); :func:`layout`
yields the nodes in display order, each node's insignificant children folded
into one "[N insignificant]" node and the children sorted by the metric, then
by total bytes, as ``appendTreeInner`` does.  No recursion anywhere: stacks can
be thousands of frames deep.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from array import array
from typing import Iterator, List, MutableSequence, Optional, Sequence, Tuple

from ._dhat_reader import ACCESS_LATCH, FIGURES, DhatTable, _ppscan
from ._report_format import N_FIGURES, TB
from ._report_metrics import Metric

LEAF, INTERNAL, AGGREGATE = 1, 2, 3
SIG_NONE, SIG_DESCENDANT, SIG_SELF = 1, 2, 3


class Node:
    """A node: the PPs at positions lo..hi of the sorted order, sharing their
    first `depth` frames; it holds frames top..depth (its parent has the rest)."""

    __slots__ = ("lo", "hi", "top", "depth", "rep", "pp", "kids", "starts", "over", "sig",
                 "label", "v", "summed")

    def __init__(self, lo: int, hi: int, top: int, depth: int, rep: int,
                 pp: Optional[int] = None) -> None:
        self.lo = lo
        self.hi = hi
        self.top = top
        self.depth = depth
        self.rep = rep  # a PP under the node: where its frames come from
        self.pp = pp  # a leaf's PP
        self.kids: Optional[List[Node]] = None  # made when first asked for
        self.starts: Optional[List[int]] = None  # where each child's run starts
        self.over: Optional[List[Node]] = None  # the children over the threshold
        self.sig = SIG_NONE
        self.label = ""  # an aggregate's "[N insignificant]"
        self.v: Optional[List[int]] = None  # an aggregate's figures
        self.summed: Optional[List[Optional[int]]] = None  # figures added up so far

    @property
    def kind(self) -> int:
        if self.label:
            return AGGREGATE
        return LEAF if self.hi - self.lo <= 1 else INTERNAL


def _common_bytes(a: bytes, b: bytes) -> int:
    """The length of the longest common prefix of `a` and `b`."""
    m = min(len(a), len(b))
    if b.startswith(a[:m]):
        return m
    # The first byte that differs, from the highest bit of the xor.
    x = int.from_bytes(a[:m], "big") ^ int.from_bytes(b[:m], "big")
    return m - (x.bit_length() + 7) // 8


def _after(prefix: bytes) -> Optional[bytes]:
    """The least byte string greater than every one that starts with `prefix`
    (None: there is none, the prefix is all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class Tree:
    """The tree of a table's PPs: the root, the sorted order, running sums."""

    def __init__(self, table: DhatTable, keys: List[bytes], order: List[int]) -> None:
        self.table = table
        self.keys = keys  # each PP's frame indices as bytes, in the sorted order
        self.order = order  # the PPs, sorted by their frames
        self.size = table.frame_index_array.itemsize
        self.root = self.node(0, len(order), 0)
        self._sums: List[Optional[MutableSequence[int]]] = [None] * N_FIGURES
        self._sorted: "Optional[array[int]]" = None
        self._columns: "List[Optional[array[int]]]" = [None] * N_FIGURES
        #: PPs summed one by one so far, per figure without running sums.
        self._summed = [0] * N_FIGURES

    def node(self, lo: int, hi: int, top: int) -> Node:
        """The node of the PPs at lo..hi (a run of the sorted order), below a
        parent that holds the first `top` frames."""
        keys = self.keys
        if hi - lo > 1:
            depth = _common_bytes(keys[lo], keys[hi - 1]) // self.size
            return Node(lo, hi, top, depth, self.order[lo])
        if hi == lo:  # no PPs: a root alone
            return Node(lo, hi, top, top, 0)
        pp = self.order[lo]
        return Node(lo, hi, top, len(keys[lo]) // self.size, pp, pp)

    def running_sum(self, k: int) -> MutableSequence[int]:
        """Figure k summed over the sorted order's first 0, 1, 2... PPs."""
        sums = self._sums[k]
        if sums is None:
            column = self.sorted_column(k)
            if column is None:
                sums = array("Q", bytes(8 * (len(self.order) + 1)))
            else:
                try:
                    sums = array("Q", itertools.accumulate(column, initial=0))
                except OverflowError:  # more than 2**64 in all
                    sums = list(itertools.accumulate(column, initial=0))
            self._sums[k] = sums
        return sums

    def sorted_column(self, k: int) -> "Optional[array[int]]":
        """Figure k of each PP in the sorted order; None if the file has no such figure."""
        table = self.table
        name = FIGURES[k]
        if name not in table.figure_names:
            return None
        column = self._columns[k]
        if column is None:
            column = self._sorted_figures()[table.figure_names.index(name)::table.width]
            self._columns[k] = column
        return column

    def _sorted_figures(self) -> "array[int]":
        """The table's figures with the PPs in the sorted order (rows moved as bytes:
        one pass in the sorted order, not one per figure)."""
        if self._sorted is None:
            figures = self.table.figures
            row = figures.itemsize * self.table.width
            if _ppscan is not None:  # the same, in C
                self._sorted = array(figures.typecode, _ppscan.gather(figures, self.order, row))
                return self._sorted
            flat = figures.tobytes()
            starts = list(map(operator.mul, self.order, itertools.repeat(row)))
            ends = map(operator.add, starts, itertools.repeat(row))
            rows = b"".join(map(flat.__getitem__, map(slice, starts, ends)))
            self._sorted = array(figures.typecode, rows)
        return self._sorted

    def figure(self, node: Node, k: int) -> int:
        if node.v is not None:
            return node.v[k]
        sums = self._sums[k]
        if sums is None:
            # The figures of a few nodes are quicker to add up than running sums.
            if node.summed is None:
                node.summed = [None] * N_FIGURES
            value = node.summed[k]
            if value is not None:
                return value
            self._summed[k] += node.hi - node.lo
            if self._summed[k] <= 4 * len(self.order):
                column = self.sorted_column(k)
                value = node.summed[k] = 0 if column is None else sum(column[node.lo:node.hi])
                return value
            sums = self.running_sum(k)
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

    def starts(self, node: Node) -> List[int]:
        """Where the runs of its children start in the sorted order (an internal
        node's): the runs of PPs that share one more frame, and first a run of
        one for a PP that ends at the node."""
        if node.starts is None:
            starts = self._starts(node)
            assert starts is not None  # no limit
            node.starts = starts
        return node.starts

    def _starts(self, node: Node, limit: Optional[int] = None) -> Optional[List[int]]:
        """starts(node); None if there are more than `limit`."""
        keys, size = self.keys, self.size
        depth, hi = node.depth, node.hi
        pos = node.lo
        starts = []
        if len(keys[pos]) == depth * size:  # sorted: it comes first
            starts.append(pos)
            pos += 1
        end_of_frame = (depth + 1) * size
        while pos < hi:
            if limit is not None and len(starts) == limit:
                return None
            starts.append(pos)
            prefix = keys[pos][:end_of_frame]
            pos += 1
            if pos < hi and keys[pos].startswith(prefix):  # more than one PP: search
                after = _after(prefix)
                pos = hi if after is None else bisect.bisect_left(keys, after, pos + 1, hi)
        return starts

    def child_count(self, node: Node) -> int:
        """How many children an internal node has.  A few are found by binary
        searches; many are counted: the distinct frames that come next, and
        the PP that ends at the node."""
        if node.starts is not None:
            return len(node.starts)
        starts = self._starts(node, limit=64)
        if starts is not None:
            node.starts = starts
            return len(starts)
        size = self.size
        ended = int(len(self.keys[node.lo]) == node.depth * size)  # sorted: first
        frame = slice(node.depth * size, (node.depth + 1) * size)
        nexts = map(operator.getitem, itertools.islice(self.keys, node.lo + ended, node.hi),
                    itertools.repeat(frame))
        return ended + len(set(nexts))

    def runs(self, node: Node) -> Iterator[Tuple[int, int]]:
        """Its children's runs, (lo, hi), in the sorted order."""
        starts = self.starts(node)
        return zip(starts, itertools.chain(itertools.islice(starts, 1, None), (node.hi,)))

    def kid(self, node: Node, lo: int, hi: int) -> Node:
        """The child of `node` whose run is lo..hi."""
        if hi - lo == 1 and len(self.keys[lo]) == node.depth * self.size:
            pp = self.order[lo]  # the PP that ends at the node: a leaf with no frames
            return Node(lo, hi, node.depth, node.depth, pp, pp)
        return self.node(lo, hi, node.depth)

    def first_pp(self, node: Node) -> int:
        """The first PP under the node in file order: the viewer orders children by it."""
        return self.order[node.lo] if node.hi - node.lo == 1 else min(
            self.order[node.lo:node.hi])

    def kids(self, node: Node) -> Optional[List[Node]]:
        """Its children (None for a leaf), in the viewer's order (by their first
        PP); a PP that ends at the node is a leaf of its own, with no frames.
        Made the first time they are asked for (those over the threshold are
        the ones mark_significance made)."""
        if node.kids is not None or node.kind != INTERNAL:
            return node.kids
        made = {kid.lo: kid for kid in node.over or ()}
        kids = [made.get(lo) or self.kid(node, lo, hi) for lo, hi in self.runs(node)]
        kids.sort(key=self.first_pp)
        node.kids = kids
        return kids

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
    """The viewer's radix tree of `table`'s program points (its nodes made as
    they are asked for)."""
    fs, offsets = table.frame_index_array, table.offsets
    size = fs.itemsize
    if _ppscan is not None and offsets.typecode == "Q":  # the same, in C
        order, keys = _ppscan.sorted_keys(fs, offsets, size)
        return Tree(table, keys, order)
    data = fs.tobytes()
    starts = map(operator.mul, offsets, itertools.repeat(size))
    ends = map(operator.mul, itertools.islice(offsets, 1, None), itertools.repeat(size))
    keys = list(map(data.__getitem__, map(slice, starts, ends)))
    del data
    order = sorted(range(len(table)), key=keys.__getitem__)
    keys = list(map(keys.__getitem__, order))
    # No two are equal: the reader refuses repeated locations.
    return Tree(table, keys, order)


def mark_significance(tree: Tree, metric: Metric, fraction: Optional[float]) -> None:
    """The viewer's sigTree: SIG_SELF, SIG_DESCENDANT or SIG_NONE.  A node whose
    figure is under the threshold is SIG_NONE with all below it (their figures
    are no bigger), so only the nodes over it are visited, and only their
    children over it are made (``Node.over``); the others stay runs of the
    sorted order, SIG_NONE."""
    header = tree.table.header
    root_v = tree.figures(tree.root)
    field = metric.field
    bound = (metric.fraction if fraction is None else fraction) * root_v[field]
    sums = tree.running_sum(field)
    visited: List[Node] = []
    stack = [tree.root] if tree.figure(tree.root, field) >= bound else []
    while stack:
        node = stack.pop()
        visited.append(node)
        if node.kind != INTERNAL:
            continue
        node.over = [tree.kid(node, lo, hi) for lo, hi in _runs_over(tree, node, sums, bound)]
        stack.extend(node.over)
    for node in reversed(visited):  # children first
        if metric.significant(tree.figures(node), root_v, header, fraction):
            node.sig = SIG_SELF
        elif any(kid.sig != SIG_NONE for kid in node.over or ()):
            node.sig = SIG_DESCENDANT
        else:
            node.sig = SIG_NONE


def _runs_over(tree: Tree, node: Node, sums: Sequence[int], bound: float) -> List[Tuple[int, int]]:
    """The runs of the node's children whose figure (by the running sums) is at
    least `bound`, in the sorted order.  Such a run holds a PP at which the
    running sum passes sums[lo] + m * ceil(bound), for some m >= 1: only the
    runs of those PPs (a hundred or so for a 1% threshold) are looked at, not
    every child."""
    step = math.ceil(bound)
    if step <= 0:  # every child
        return list(tree.runs(node))
    keys, size = tree.keys, tree.size
    lo, hi = node.lo, node.hi
    end_of_frame = (node.depth + 1) * size
    base, top = sums[lo], sums[hi]
    runs = []
    mark = base + step
    while mark <= top:
        pos = bisect.bisect_left(sums, mark, lo + 1, hi + 1) - 1  # the PP that passes it
        if len(keys[pos]) < end_of_frame:  # the PP that ends at the node
            start, end = pos, pos + 1
        else:
            prefix = keys[pos][:end_of_frame]
            start = bisect.bisect_left(keys, prefix, lo, pos)
            after = _after(prefix)
            end = hi if after is None else bisect.bisect_left(keys, after, pos + 1, hi)
        if sums[end] - sums[start] >= bound:
            runs.append((start, end))
        mark = base + ((sums[end] - base) // step + 1) * step  # past this run
    return runs


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
    """Its kids as shown: insignificant ones folded into one, then sorted.  The
    kids are in the viewer's order (by their first PP) first, the folded node
    where the first of its kids would be."""
    if node.kind != INTERNAL:
        return None
    shown = [kid for kid in node.over or () if kid.sig != SIG_NONE]
    placed = [(tree.first_pp(kid), kid) for kid in shown]
    folded = tree.child_count(node) - len(shown)
    if folded:
        # The kids share out the node's PPs: the folded ones have what the others
        # do not, and the first of them is the first PP outside the others' runs.
        v = tree.figures(node)
        gaps, lo = [], node.lo
        for kid in sorted(shown, key=operator.attrgetter("lo")):
            v = list(map(operator.sub, v, tree.figures(kid)))
            gaps.append(tree.order[lo:kid.lo])
            lo = kid.hi
        gaps.append(tree.order[lo:node.hi])
        first = min(min(gap) for gap in gaps if gap)
        aggregate = Node(node.lo, node.lo, node.depth, node.depth, tree.order[node.lo])
        aggregate.v = v
        aggregate.label = f"[{folded} insignificant]"
        placed.append((first, aggregate))
    placed.sort(key=operator.itemgetter(0))
    kids = [kid for _, kid in placed]
    field = metric.field
    # The viewer's cmp: the metric, then total bytes, both descending; stable.
    kids.sort(key=lambda k: (-tree.figure(k, field), -tree.figure(k, TB)))
    return kids


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
