"""Helpers shared by the tests of native allocations (the preload library and
`python -m dhatc run`): the library's path, a ctypes prelude for child
scripts, and reading program points back by (allocator, source line).  (The
line of a marker: dhat_helpers.line_of.)"""

from __future__ import annotations

import json
import re
import textwrap
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Tuple

import dhatc._preload

PRELOAD = dhatc._preload.PRELOAD_LIBRARY

NATIVE_KINDS = (
    "malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc",
    "pvalloc",
)

# Child scripts start with this: libc's allocator through ctypes, and a way to
# print a finished profile's program points as one JSON line on stdout.
CTYPES_PRELUDE = textwrap.dedent(
    """\
    import ctypes, errno, json, os, sys
    import dhatc

    libc = ctypes.CDLL(None, use_errno=True)

    def _fn(name, restype, *argtypes):
        f = getattr(libc, name)
        f.restype = restype
        f.argtypes = list(argtypes)
        return f

    _vp, _sz = ctypes.c_void_p, ctypes.c_size_t
    malloc = _fn("malloc", _vp, _sz)
    calloc = _fn("calloc", _vp, _sz, _sz)
    realloc = _fn("realloc", _vp, _vp, _sz)
    free = _fn("free", None, _vp)
    posix_memalign = _fn("posix_memalign", ctypes.c_int, ctypes.POINTER(_vp), _sz, _sz)
    aligned_alloc = _fn("aligned_alloc", _vp, _sz, _sz)
    memalign = _fn("memalign", _vp, _sz, _sz)
    valloc = _fn("valloc", _vp, _sz)
    pvalloc = _fn("pvalloc", _vp, _sz)

    def dump(profile):
        print(json.dumps([
            [list(pp.frames), pp.total_bytes, pp.total_blocks, pp.max_bytes, pp.max_blocks,
             pp.end_bytes, pp.end_blocks]
            for pp in profile.pps
        ]))
    """
)


def with_prelude(code: str) -> str:
    """A child script: the ctypes prelude, then dedented `code`."""
    return CTYPES_PRELUDE + textwrap.dedent(code)


def last_json_line(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


Figures = Dict[Tuple[str, int], Tuple[int, ...]]


def by_kind_and_line(dumped: Iterable[List[Any]], function: str) -> Figures:
    """Figures (tb, tbk, mb, mbk, eb, ebk) of the program points whose innermost
    Python frame is in `function`, keyed by (allocator, line of that frame)."""
    out: Figures = {}
    pattern = re.compile(re.escape(function) + r" \(.*:(\d+)\)$")
    for frames, *figures in dumped:
        if len(frames) < 2:
            continue
        match = pattern.match(frames[1])
        if match:
            key = (frames[0], int(match.group(1)))
            assert key not in out, f"two program points for {key}"
            out[key] = tuple(figures)
    return out


def native_only(figures: Figures) -> Figures:
    return {k: v for k, v in figures.items() if k[0] in NATIVE_KINDS}


def totals_by_kind(dumped: Iterable[List[Any]], depth: int) -> Dict[str, List[int]]:
    """tb, tbk, eb, ebk summed per allocator over the program points with exactly
    `depth` Python frames."""
    out: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for frames, tb, tbk, _mb, _mbk, eb, ebk in dumped:
        if len(frames) - 1 == depth:
            sums = out[frames[0]]
            sums[0] += tb
            sums[1] += tbk
            sums[2] += eb
            sums[3] += ebk
    return dict(out)
