"""Our files load in Valgrind's real DHAT viewer (dh_view.js in headless
Chromium) and the page shows our totals."""

from __future__ import annotations

import pytest

import dh_viewer
from dhat_helpers import load

pytestmark = [
    pytest.mark.skipif(dh_viewer.chromium_path() is None, reason="chromium not installed"),
    pytest.mark.skipif(
        dh_viewer.viewer_dir() is None,
        reason="Valgrind's DHAT viewer (dh_view.js) not found; install valgrind or set "
        "DHATC_DH_VIEW_DIR",
    ),
]


def test_heap_file_renders_with_our_totals(run_python, tmp_path):
    run_python(
        """
        import allocmod as m
        import dhatc

        def work():
            for i in range(3):
                m.alloc(i, m.RAW, 100000 * (i + 1))
            m.free(0)
            m.alloc(0, m.MEM, 50000); m.alloc(10, m.MEM, 50000)   # one line, one PP

        def main():
            with dhatc.Profiler(file_name="heap.json"):
                work()

        main()
        """
    )
    data = load(tmp_path / "heap.json")
    result = dh_viewer.render(tmp_path / "heap.json")
    assert result.error is None, result.error
    total_bytes = sum(pp["tb"] for pp in data["pps"])
    total_blocks = sum(pp["tbk"] for pp in data["pps"])
    assert f"Total:     {total_bytes:,} bytes (100%" in result.text
    assert f"in {total_blocks:,} blocks (100%" in result.text
    path = tmp_path / "snippet.py"
    assert f"work ({path}:7)" in result.text and "PyMem_RawMalloc" in result.text
    assert f"work ({path}:9)" in result.text and "PyMem_Malloc" in result.text
    assert "avg lifetime" in result.text and "allocs" in result.text


def test_threads_and_deep_stacks_render(run_python, tmp_path):
    run_python(
        """
        import threading
        import dhatc

        def deep(n):
            return deep(n - 1) if n else [bytes(64) for _ in range(20)]

        def main():
            with dhatc.Profiler(file_name="heap.json", trim_backtraces=None):
                ts = [threading.Thread(target=deep, args=(30,)) for _ in range(3)]
                for t in ts: t.start()
                for t in ts: t.join()
                deep(50)

        main()
        """
    )
    result = dh_viewer.render(tmp_path / "heap.json")
    assert result.error is None, result.error
    assert "deep (" in result.text
