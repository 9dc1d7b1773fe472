"""Shared fixtures.  Exact-count tests run their code in a fresh interpreter
(`run_python`), so nothing else in the test process can allocate under them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest


RunPython = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_python(tmp_path: Path) -> RunPython:
    """Runs dedented `code` with this interpreter in `tmp_path` (the default cwd).

    Returns the CompletedProcess (text mode); fails the test with the child's
    output if it exits with a status other than `expect_status`.
    """

    def run(
        code: str,
        *,
        cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
        expect_status: Optional[int] = 0,
        args: tuple = (),
        timeout: float = 300,
    ) -> "subprocess.CompletedProcess[str]":
        script = tmp_path / "snippet.py"
        script.write_text(textwrap.dedent(code))
        full_env = dict(os.environ)
        full_env.pop("PYTHONMALLOC", None)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=str(cwd or tmp_path),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if expect_status is not None and proc.returncode != expect_status:
            pytest.fail(
                f"child exited with {proc.returncode}, expected {expect_status}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    return run
