"""Inner pytest sessions for the pytest plugin's tests (the `inner` fixture),
and helpers to read what they leave.

Import the fixture into a test module (``from plugin_sessions import inner``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import dhat_helpers

# pytest-asyncio (in the test extra) warns at every start until this is set.
_QUIET_ASYNCIO = (
    ("-o", "asyncio_default_fixture_loop_scope=function")
    if importlib.util.find_spec("pytest_asyncio") is not None
    else ()
)


class Inner:
    """Inner pytest sessions in a directory of their own (pytester's), each
    run in a fresh interpreter with dhatc's plugin loaded as users get it."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path: Path = pytester.path

    def makepyfile(self, *args: str, **modules: str) -> Path:
        return self.pytester.makepyfile(*args, **modules)

    def makeconftest(self, source: str) -> Path:
        return self.pytester.makeconftest(source)

    def makeini(self, source: str) -> Path:
        return self.pytester.makeini(source)

    def run(self, *args: str) -> pytest.RunResult:
        quiet = _QUIET_ASYNCIO if "no:asyncio" not in args else ()
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *quiet, *args)

    def dhat_files(self, directory: str = ".dhatc") -> List[str]:
        """The DHAT files the sessions left in `directory`, sorted."""
        return dhat_files(self.path / directory)

    def program_points(self, name: str, directory: str = ".dhatc") -> List[Tuple[List[str], Dict[str, Any]]]:
        """The program points of a DHAT file: (frames, innermost first; the PP's fields)."""
        data = dhat_helpers.load(self.path / directory / name)
        return [(frames, pp) for pp, frames in dhat_helpers.pps_with_frames(data)]


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Inner:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)  # figures of the plain allocator
    # On CI (these variables set) pytest prints each failure's whole message in
    # the short summary too; inner sessions print as on a developer's machine.
    for variable in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(variable, raising=False)
    return Inner(pytester)


def lines(result: pytest.RunResult) -> List[str]:
    return result.stdout.str().splitlines()


def dhat_files(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.glob("*.json")) if directory.exists() else []


def line_of(source: str, marker: str) -> int:
    """The number of the line of `source` that holds the comment ``# marker``."""
    return dhat_helpers.line_of(source, f"# {marker}")
