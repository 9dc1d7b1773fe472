"""The sdist holds everything a wheel is built from (the C headers too: see
MANIFEST.in), and the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pyproject.toml's build-system requirement (license = "MIT" needs it).
SETUPTOOLS_MIN = 77


def source_files() -> List[str]:
    """The repository's files, tracked or new, as git lists them (skips the
    test outside a git checkout, e.g. in an unpacked sdist)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if listed.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout")
    # (A file deleted but not yet removed from the index is not a source.)
    return sorted(f for f in listed.stdout.split("\0") if f and (ROOT / f).is_file())


def setuptools_version() -> int:
    try:
        import setuptools
    except ImportError:
        return 0
    return int(setuptools.__version__.split(".")[0])


def test_the_sdist_has_every_source_file(tmp_path: Path) -> None:
    files = source_files()
    if setuptools_version() < SETUPTOOLS_MIN:
        pytest.skip(f"needs setuptools >= {SETUPTOOLS_MIN}, the build backend pyproject.toml names")
    tree = tmp_path / "tree"
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    dist.mkdir()
    # The call pip makes to the build backend (no C compiler runs for an sdist).
    built = subprocess.run(
        [sys.executable, "-c",
         "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
         str(dist)],
        cwd=tree, capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    sdist = dist / built.stdout.splitlines()[-1]
    with tarfile.open(sdist) as tar:
        # Each member is under one top directory, dhatc-<version>/.
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}

    needed = [
        f for f in files
        if f.startswith(("src/dhatc/", "dhatpy/", "tests/"))
        or f in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE")
    ]
    assert any(f.endswith(".h") for f in needed)
    assert [f for f in needed if f not in members] == []
