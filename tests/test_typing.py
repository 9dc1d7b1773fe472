"""The installed package is typed (py.typed, stubs for the C engine) and
passes mypy --strict, so users' type checkers see real signatures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dhatc


def test_py_typed_and_engine_stub_are_installed():
    package = Path(dhatc.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_engine.pyi").is_file()


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_package_passes_mypy_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "dhatc"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def mypy_strict(tmp_path: Path, source: str) -> "subprocess.CompletedProcess[str]":
    """mypy --strict on `source` as a user's module, against the installed dhatc."""
    (tmp_path / "user_code.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--no-error-summary", "--hide-error-context", "user_code.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_profile_types_are_exported(tmp_path):
    assert dhatc.Profile is dhatc._dhat_file.Profile
    assert dhatc.ProgramPoint is dhatc._dhat_file.ProgramPoint
    assert {"Profile", "ProgramPoint"} <= set(dhatc.__all__)
    proc = mypy_strict(
        tmp_path,
        """
        from typing import List, Optional

        from dhatc import Profile, Profiler, ProgramPoint

        def program_points(profiler: Profiler) -> List[ProgramPoint]:
            profile: Optional[Profile] = profiler.profile
            return [] if profile is None else profile.pps
        """,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_stats_fields_are_read_only(tmp_path):
    proc = mypy_strict(
        tmp_path,
        """
        import dhatc

        stats = dhatc.HeapStats.get()
        stats.curr_blocks = 0
        events = dhatc.AdHocStats.get()
        events.total_units = 0
        blocks: int = stats.total_blocks + events.total_events
        """,
    )
    assert proc.stdout.splitlines() == [
        'user_code.py:5: error: Property "curr_blocks" defined in "HeapStats" is read-only  '
        "[misc]",
        'user_code.py:7: error: Property "total_units" defined in "AdHocStats" is read-only  '
        "[misc]",
    ]
    assert proc.returncode == 1
