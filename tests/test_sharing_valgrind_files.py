"""The sharing commands on files that Valgrind's DHAT itself wrote (a small C
program run under `valgrind --tool=dhat`): other units ("instrs"), read and
write counts, access histograms and addresses in every frame."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from command_util import dhatc
from dh_viewer import render, viewer_dir
from test_export import decode_pprof
from test_flamegraph import drive

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("gcc") is None,
    reason="needs valgrind and gcc")

PROGRAM = r"""
#include <stdlib.h>
#include <string.h>
static char *make(size_t n) { char *p = malloc(n); memset(p, 1, n); return p; }
int main(int argc, char **argv) {
    int count = atoi(argv[1]);
    char *keep = make(100);
    for (int i = 0; i < count; i++) free(make(1000));
    keep[0] = 2;
    return 0;
}
"""


@pytest.fixture(scope="module")
def valgrind_files(tmp_path_factory: pytest.TempPathFactory) -> List[Path]:
    tmp = tmp_path_factory.mktemp("valgrind")
    (tmp / "prog.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-g", "-O0", "prog.c", "-o", "prog"], cwd=tmp, check=True)
    files = []
    for count in (3, 5):
        out = tmp / f"dh.{count}.json"
        subprocess.run(["valgrind", "--tool=dhat", f"--dhat-out-file={out}", "./prog", str(count)],
                       cwd=tmp, check=True, capture_output=True, timeout=300)
        files.append(out)
    return files


def program_points(path: Path) -> List[dict]:
    data = json.loads(path.read_text())
    return [dict(p, frames=[data["ftbl"][i] for i in p["fs"]]) for p in data["pps"]]


def without_allocator(frames: List[str]) -> List[str]:
    """The frames below the allocator: Valgrind up to 3.2x shows its malloc
    on top of every stack, later ones start at the caller."""
    return frames[1:] if frames and ": malloc (" in frames[0] else frames


def test_merge_of_valgrind_files(valgrind_files: List[Path], tmp_path: Path) -> None:
    first, second = valgrind_files
    proc = dhatc("merge", str(first), str(second), "-o", "both.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "both.json").read_text())
    assert (merged["tu"], merged["Mtu"], merged["tuth"], merged["bkacc"]) == ("instrs", "Minstr", 500, False)
    loop = [p for p in program_points(tmp_path / "both.json") if p["tbk"] == 8]
    assert len(loop) == 1 and loop[0]["tb"] == 8000  # 3 + 5 blocks of 1,000 bytes, one PP
    assert without_allocator(loop[0]["frames"])[0].endswith(": make (prog.c:4)")
    if viewer_dir() is not None:
        shown = render(tmp_path / "both.json")
        assert shown.error is None
        assert "Total:     8,200 bytes (100%" in shown.text


def test_exports_of_a_valgrind_file(valgrind_files: List[Path], tmp_path: Path) -> None:
    source = valgrind_files[0]
    assert dhatc("export", str(source), "-f", "pprof", "-o", "v.pb.gz", cwd=tmp_path).returncode == 0
    profile = decode_pprof(tmp_path / "v.pb.gz")
    strings = profile.string_table
    names = {strings[f.name] for f in profile.function}
    assert {"make", "main"} <= names  # (and malloc, where Valgrind shows it)
    assert all(loc.address != 0 for loc in profile.location)
    assert sorted(s.value[1] for s in profile.sample) == [100, 3000]  # alloc_space
    folded = dhatc("export", str(source), "-f", "collapsed", cwd=tmp_path).stdout.splitlines()
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in folded) == [100, 3000]


def test_flamegraph_of_a_valgrind_file(valgrind_files: List[Path], tmp_path: Path) -> None:
    proc = dhatc("flamegraph", str(valgrind_files[1]), "-o", "v.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = drive(tmp_path / "v.html", """
      out.start = snapshot();
    """)
    assert out["start"]["summary"].splitlines()[0] == "Total:     5,100 bytes in 6 blocks"
    assert out["start"]["metricTotal"] == "Total (bytes): 5,100 bytes."
