"""Tests of the viewer harness (tests/dh_viewer.py) itself, independent of dhatc.

They check that a file the real viewer accepts renders with no error and shows
its totals, and that files the viewer rejects come back with ``error`` set, so
that ``assert result.error is None`` in dhatc's tests means something.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import dh_viewer

pytestmark = pytest.mark.skipif(
    dh_viewer.chromium_path() is None,
    reason="chromium is not installed (apt-get install chromium-headless-shell "
    "or chromium); "
    "needed to run Valgrind's DHAT viewer headless",
)

# A minimal valid DHAT v2 heap-mode file: two PPs sharing their outer frame.
MINIMAL: dict[str, Any] = {
    "dhatFileVersion": 2,
    "mode": "heap",
    "verb": "Allocated",
    "bklt": True,
    "bkacc": False,
    "tu": "µs",
    "Mtu": "s",
    "tuth": 10,
    "cmd": "python3 prog.py",
    "pid": 4242,
    "tg": 50,
    "te": 100,
    "pps": [
        {"tb": 1000, "tbk": 2, "tl": 30, "mb": 1000, "mbk": 2,
         "gb": 1000, "gbk": 2, "eb": 0, "ebk": 0, "fs": [1, 2]},
        {"tb": 256, "tbk": 4, "tl": 20, "mb": 128, "mbk": 2,
         "gb": 0, "gbk": 0, "eb": 64, "ebk": 1, "fs": [1, 3]},
    ],
    "ftbl": ["[root]", "main (prog.py:1)", "alloc_a (prog.py:10)",
             "alloc_b (prog.py:20)"],
}

C_PROGRAM = r"""
#include <stdlib.h>
int main(void) {
    void *volatile p[3];
    for (int i = 0; i < 3; i++) p[i] = malloc(1000);
    for (int i = 0; i < 3; i++) free(p[i]);
    return 0;
}
"""


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_real_valgrind_dhat_output_renders(tmp_path: Path) -> None:
    src = tmp_path / "three.c"
    src.write_text(C_PROGRAM)
    exe = tmp_path / "three"
    subprocess.run(["gcc", "-O0", "-g", "-o", str(exe), str(src)], check=True)
    out = tmp_path / "x.json"
    subprocess.run(
        ["valgrind", "--tool=dhat", f"--dhat-out-file={out}", str(exe)],
        check=True, capture_output=True,
    )

    result = dh_viewer.render(out)

    assert result.error is None
    # The root node of the tree, e.g.
    # "Total:     3,000 bytes (100%, 20,034.99/Minstr) in 3 blocks (100%, ...".
    assert re.search(r"Total:\s+3,000 bytes \(100%[^)]*\) in 3 blocks \(100%",
                     result.text), result.text
    assert re.search(r"At t-gmax: 3,000 bytes \(100%\) in 3 blocks", result.text)
    assert re.search(r"At t-end:\s+0 bytes \(0%\) in 0 blocks", result.text)
    assert "main (three.c:" in result.text


def test_minimal_hand_built_file_renders(tmp_path: Path) -> None:
    result = dh_viewer.render(write_json(tmp_path / "min.json", MINIMAL))

    assert result.error is None
    assert "Command: python3 prog.py" in result.text
    assert re.search(r"Total:\s+1,256 bytes \(100%[^)]*\) in 6 blocks \(100%",
                     result.text), result.text
    assert re.search(r"Total:\s+1,000 bytes \(79\.62%[^)]*\) in 2 blocks",
                     result.text)
    assert re.search(r"Total:\s+256 bytes \(20\.38%[^)]*\) in 4 blocks",
                     result.text)
    assert re.search(r"At t-end:\s+64 bytes \(100%\) in 1 blocks", result.text)
    assert "alloc_a (prog.py:10)" in result.text
    assert "alloc_b (prog.py:20)" in result.text


def test_repeated_location_is_an_error(tmp_path: Path) -> None:
    data = copy.deepcopy(MINIMAL)
    data["pps"][1]["fs"] = [1, 2]  # same stack as pps[0]

    result = dh_viewer.render(write_json(tmp_path / "dup.json", data))

    assert result.error is not None
    assert "repeated location" in result.error
    assert "Total:" not in result.text


def test_wrong_file_version_is_an_error(tmp_path: Path) -> None:
    data = copy.deepcopy(MINIMAL)
    data["dhatFileVersion"] = 1

    result = dh_viewer.render(write_json(tmp_path / "v1.json", data))

    assert result.error is not None
    assert "version number 1" in result.error


def test_script_end_tag_in_data_is_embedded_safely(tmp_path: Path) -> None:
    data = copy.deepcopy(MINIMAL)
    data["ftbl"][2] = "</script><!-- weird (x.py:1)"

    result = dh_viewer.render(write_json(tmp_path / "weird.json", data))

    assert result.error is None
    assert "</script><!-- weird (x.py:1)" in result.text
