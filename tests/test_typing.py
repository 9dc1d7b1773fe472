"""The installed package is typed (py.typed, stubs for the C engine) and
passes mypy --strict, so users' type checkers see real signatures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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
