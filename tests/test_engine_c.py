"""The engine's own C tests (no Python inside), built with AddressSanitizer
and UBSan and the figures' invariant checks (src/dhatc/check.h): a model
check of every figure against a naive rescanning model, concurrent recording
from several threads, and ad hoc events."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ["profile.c", "livemap.c", "blockhash.c", "stacktable.c", "rawmem.c"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_engine_model_under_sanitizers(tmp_path):
    exe = tmp_path / "test_profile_model"
    subprocess.run(
        [
            "gcc", "-std=c11", "-D_GNU_SOURCE", "-DDHATC_CHECKS", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-I", str(ROOT / "src" / "dhatc"),
            str(ROOT / "tests" / "c" / "test_profile_model.c"),
            *[str(ROOT / "src" / "dhatc" / name) for name in ENGINE],
            "-lpthread", "-o", str(exe),
        ],
        check=True,
    )
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "livemap: 3000000 random operations agree with the reference" in proc.stdout
    assert "livemap memory: " in proc.stdout  # its bounds are CHECKed in C
    assert "all figures agree" in proc.stdout
    assert "threads: 4 x 50000 allocations recorded exactly" in proc.stdout
    assert "ad hoc: 11 events, 143 units" in proc.stdout
