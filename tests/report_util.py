"""Shared by the tests of the reader, report and diff: real DHAT files of each
writer (dhatc's own, Valgrind's, the dhat crate's), hand-made ones with exact
figures, and an in-process runner of ``dhatc COMMAND``."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
#: A file written the way the dhat crate writes one (serde's pretty printer with
#: no indent), by hand from its source: mode "rust-heap", times in µs.
RUST_HEAP = FIXTURES / "dhat-rs-heap.json"

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("gcc") is None,
    reason="needs valgrind and gcc")

# Allocates 10 blocks of 100 bytes (argv[1] changes the count) and frees them,
# keeps one of 4,000 bytes, allocates and frees one of 16; writes every byte
# and reads one: exact figures, reads and writes, access counts.
C_PROGRAM = r"""
#include <stdlib.h>
#include <string.h>
static char *keep;
static void *make(size_t n) { char *p = malloc(n); memset(p, 1, n); return p; }
int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 10;
    for (int i = 0; i < count; i++) { char *p = make(100); free(p); }
    keep = make(4000);
    char *q = malloc(16); q[0] = 1; free(q);
    return keep[0] - 1;
}
"""
# Linked first, it moves every address of the program while its lines stay.
C_SHIFT = "int shift_the_code(int x) { return x * 3 + 1; }\n"


def valgrind_file(directory: Path, name: str, *args: str, shifted: bool = False) -> Path:
    """A DHAT file that Valgrind wrote for C_PROGRAM run with `args`."""
    source = directory / "prog.c"
    if not source.exists():
        source.write_text(C_PROGRAM)
        (directory / "shift.c").write_text(C_SHIFT)
    binary = directory / ("prog-shifted" if shifted else "prog")
    if not binary.exists():
        sources = ["shift.c", "prog.c"] if shifted else ["prog.c"]
        subprocess.run(["gcc", "-g", "-O0", *sources, "-o", binary.name], cwd=directory,
                       check=True)
    out = directory / name
    subprocess.run(["valgrind", "--tool=dhat", f"--dhat-out-file={out}", f"./{binary.name}",
                    *args], cwd=directory, check=True, capture_output=True, timeout=300)
    return out


def dhatc_file(run_python: Any, directory: Path, name: str, body: str,
               mode: str = "heap") -> Path:
    """A DHAT file that dhatc.Profiler wrote for `body` (run in a fresh interpreter)."""
    code = ("import dhatc\n\ndef main():\n"
            f"    with dhatc.Profiler(mode={mode!r}, file_name={name!r}):\n"
            + textwrap.indent(textwrap.dedent(body), "        ") + "\n\nmain()\n")
    run_python(code, cwd=directory)
    return directory / name


def document(pps: Sequence[Dict[str, Any]], ftbl: Sequence[str], *, bklt: bool = True,
             bkacc: bool = False, **header: Any) -> Dict[str, Any]:
    """A DHAT file's JSON with the figures and frames given."""
    doc: Dict[str, Any] = {"dhatFileVersion": 2, "mode": "heap" if bklt else "ad-hoc",
                           "verb": "Allocated" if bklt else "Occurred", "bklt": bklt,
                           "bkacc": bkacc}
    if not bklt:
        doc.update(bu="unit", bsu="units", bksu="events")
    doc.update(tu="allocs", Mtu="Mallocs")
    if bklt:
        doc["tuth"] = 10
    doc.update(cmd="python app.py", pid=1234)
    if bklt:
        doc["tg"] = 60
    doc["te"] = 100
    doc.update(header)
    doc["pps"] = list(pps)
    doc["ftbl"] = ["[root]", *ftbl]
    return doc


def heap_pp(fs: Sequence[int], tb: int, tbk: int, tl: int = 0, mb: Optional[int] = None,
            mbk: Optional[int] = None, gb: int = 0, gbk: int = 0, eb: int = 0, ebk: int = 0,
            **extra: Any) -> Dict[str, Any]:
    return {"tb": tb, "tbk": tbk, "tl": tl, "mb": tb if mb is None else mb,
            "mbk": tbk if mbk is None else mbk, "gb": gb, "gbk": gbk, "eb": eb, "ebk": ebk,
            **extra, "fs": list(fs)}


def write(path: Path, doc: Dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def random_document(rng: random.Random, *, n_pps: int, bklt: bool = True, bkacc: bool = False,
                    n_frames: int = 12, max_depth: int = 6, ties: bool = True) -> Dict[str, Any]:
    """Distinct stacks over a small pool of frames (so that they share
    prefixes, and some end where others go on), figures with many ties."""
    frames = [f"f{i} (mod{i % 3}.py:{10 + i})" for i in range(n_frames)]
    seen = set()
    pps = []
    while len(pps) < n_pps:
        depth = rng.randint(0, max_depth)
        fs = tuple(rng.randint(1, n_frames) for _ in range(depth))
        if fs in seen:
            continue
        seen.add(fs)
        value = rng.choice([0, 1, 1, 2, 5, 10, 100]) if ties else rng.randint(0, 10**6)
        tbk = value + rng.randint(0, 3)
        tb = tbk * rng.choice([8, 16, 24, 100, 1000])
        pp: Dict[str, Any] = {"tb": tb, "tbk": tbk}
        if bklt:
            mbk = rng.randint(0, tbk)
            size = tb // tbk if tbk else 0
            gbk, ebk = rng.randint(0, mbk), rng.randint(0, mbk)
            pp.update(tl=tbk * rng.choice([0, 1, 5, 10, 50, 500]), mb=mbk * size, mbk=mbk,
                      gb=gbk * size, gbk=gbk, eb=ebk * size, ebk=ebk)
        if bkacc:
            pp.update(rb=rng.choice([0, tb // 3, tb, tb * 2000]), wb=rng.choice([0, tb, tb * 3]))
            if rng.random() < 0.6:
                length = rng.choice([4, 8])
                pp["acc"] = [rng.choice([0, 1, 2, 65535]) for _ in range(length)]
        pp["fs"] = list(fs)
        pps.append(pp)
    doc = document(pps, frames, bklt=bklt, bkacc=bkacc)
    if bkacc:
        doc.update(tu="instrs", Mtu="Minstr", tuth=500, te=10**6, tg=5 * 10**5)
    return doc


def run_cli(*args: str, stdin: Optional[str] = None) -> Tuple[int, str, str]:
    """``dhatc ARGS`` in this process: (status, stdout, stderr).  Faster than a
    subprocess where a test runs many; the output is not a terminal."""
    from dhatc._cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(args))
    finally:
        sys.stdin = old_stdin
    return status, out.getvalue(), err.getvalue()


def frames_of(path: Path) -> List[List[str]]:
    data = json.loads(path.read_text())
    return [[data["ftbl"][i] for i in p["fs"]] for p in data["pps"]]
