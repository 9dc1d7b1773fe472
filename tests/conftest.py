"""Shared fixtures.  Exact-count tests run their code in a fresh interpreter
(`run_python`), so nothing else in the test process can allocate under them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest


RunPython = Callable[..., "subprocess.CompletedProcess[str]"]

FIXTURES = Path(__file__).parent / "fixtures"


def child_environment() -> Dict[str, str]:
    """os.environ without what would change the figures a child process
    reports: a preloaded library (dhatc's own, when the suite runs under
    ``python -m dhatc run -m pytest`` or with the library exported), another
    allocator (PYTHONMALLOC), and dhatc's settings (DHATC_*; DHATC_QUIET=1
    keeps the "dhat: note: ... malloc is not tracked" line out of outputs
    that tests compare exactly; tests of the note set it themselves)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("LD_PRELOAD", "PYTHONMALLOC") and not name.startswith("DHATC_")
    }
    env["DHATC_QUIET"] = "1"
    return env


@pytest.fixture(scope="session")
def allocmod_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test-only `allocmod` extension, built for this
    interpreter (it allocates exactly what a test asks for)."""
    out = tmp_path_factory.mktemp("allocmod")
    target = out / ("allocmod" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(
        [
            "gcc", "-shared", "-fPIC", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror",
            "-I", sysconfig.get_paths()["include"],
            str(FIXTURES / "allocmod.c"), "-o", str(target),
        ],
        check=True,
    )
    return out


@pytest.fixture
def run_python(tmp_path: Path, allocmod_dir: Path) -> RunPython:
    """Runs dedented `code` with this interpreter in `tmp_path` (the default cwd),
    with `allocmod` importable, in :func:`child_environment` updated with `env`.

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
        full_env = child_environment()
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(allocmod_dir)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
        )
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
