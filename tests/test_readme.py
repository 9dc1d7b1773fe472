"""The README's examples run and say what the README says they say."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from command_util import dhatc_command

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()

# The README's figures are CPython 3.11+'s: on 3.9/3.10 the first call of a
# function also allocates a frame object that CPython keeps for reuse.
needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="README figures are 3.11+'s")


def example(name: str) -> str:
    """The ```python block of the README whose first line is `# name`."""
    for body in re.findall(r"```python\n(.*?)```", README, re.S):
        if body.startswith(f"# {name}"):
            return body
    raise AssertionError(f"no example {name} in README.md")


def run(args, cwd, **kwargs):
    env = dict(os.environ, DHATC_QUIET="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, **kwargs)


def test_ad_hoc_example(tmp_path):
    (tmp_path / "tokens.py").write_text(example("tokens.py"))
    proc = run(["tokens.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "dhat: Total:     35 units in 9 events",
        "dhat: The data has been saved to dhat-ad-hoc.json, and is viewable with dhat/dh_view.html",
    ]
    assert "dhat: Total:     35 units in 9 events" in README


@needs_311
def test_heap_usage_testing_example_passes(tmp_path):
    (tmp_path / "test_build.py").write_text(example("test_build.py"))
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_build.py"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


@needs_311
def test_plugin_example_fails_as_shown(tmp_path):
    (tmp_path / "test_cache.py").write_text(example("test_cache.py"))
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_cache.py"], tmp_path)
    assert proc.returncode == 1
    assert "1 failed, 1 passed" in proc.stdout
    for line in [
        "dhatc: test_cache.py::test_lookup_does_not_leak exceeded its heap limits:",
        "  curr_blocks: 1 block still live when the test returned (t-end), over the limit of 0 blocks",
        "      1 block, 4,129 bytes  lookup (test_cache.py:9)",
    ]:
        assert line in proc.stdout
        assert line in README
    assert (tmp_path / ".dhatc" / "test_cache.py__test_lookup_does_not_leak.json").is_file()


def console_session(first_command: str) -> List[Tuple[str, List[str]]]:
    """The ```console block of the README that starts with `$ first_command`:
    its commands, each with the lines it prints."""
    for body in re.findall(r"```console\n(.*?)```", README, re.S):
        if body.startswith(f"$ {first_command}\n"):
            session: List[Tuple[str, List[str]]] = []
            for line in body.splitlines():
                if line.startswith("$ "):
                    session.append((line[2:], []))
                else:
                    session[-1][1].append(line)
            return session
    raise AssertionError(f"no console block starting with $ {first_command} in README.md")


@needs_311
def test_see_and_share_session(tmp_path):
    (tmp_path / "shapes.py").write_text(example("shapes.py"))
    session = console_session("python shapes.py")
    assert [c.split()[3] for c, _ in session if c.startswith("python -m dhatc")] == [
        "flamegraph", "export", "export", "export", "export", "merge"]
    dhatc = " ".join(shlex.quote(a) for a in dhatc_command())
    for command, expected in session:
        if command.startswith("python -m dhatc "):
            line = dhatc + command[len("python -m dhatc"):]
        elif command.startswith("python "):
            line = shlex.quote(sys.executable) + command[len("python"):]
        else:
            line = command
        proc = subprocess.run(["bash", "-c", f"{line} 2>&1"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, DHATC_QUIET="1"))
        assert proc.returncode == 0, (command, proc.stdout)
        assert proc.stdout.replace(str(tmp_path), "/path/to").splitlines() == expected, command
    for name in ("shapes.html", "shapes.pb.gz", "shapes.speedscope.json", "all.json"):
        assert (tmp_path / name).stat().st_size > 0


@needs_311
def test_kinds_of_tests_example_passes(tmp_path):
    pytest.importorskip("pytest_asyncio")
    (tmp_path / "test_kinds.py").write_text(example("test_kinds.py"))
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                "asyncio_default_fixture_loop_scope=function", "--dhatc-profile-all",
                "test_kinds.py"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert "dhatc: 3 of 3 profiled tests, most total_bytes first" in proc.stdout


@needs_311
def test_plugin_example_passes_with_repeat(tmp_path):
    source = example("test_cache.py")
    marker = '@pytest.mark.limit_heap(max_bytes="1 MiB", curr_blocks=0)'
    assert marker in source and "With `repeat=2`, `test_lookup_does_not_leak` above" in README
    (tmp_path / "test_cache.py").write_text(source.replace(marker, marker[:-1] + ", repeat=2)"))
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_cache.py"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def _as_in_readme(text: str, directory: str, pids: Dict[str, int]) -> List[str]:
    """The output as the README shows it: `python` for the interpreter's path (a
    command line wrapped because of it joined again), the README's directory and
    pids."""
    lines = text.replace(directory, "/home/you/app").replace(sys.executable, "python").splitlines()
    joined: List[str] = []
    for line in lines:
        continues = joined and (
            (joined[-1].startswith("  Command: ") and line.startswith(" " * 11) and line.strip())
            or (joined[-1].startswith("     python") and line.startswith("     ")
                and not line.startswith("     #")))
        if continues:
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    readme_pids = {str(pids[name]): pid for name, pid in (("before.json", "4241"),
                                                          ("after.json", "4242")) if name in pids}
    pid = re.compile(r"(?<=PID:     )\d+|(?<=, pid )\d+(?=,)")
    return [pid.sub(lambda m: readme_pids.get(m.group(0), m.group(0)), line) for line in joined]


@needs_311
def test_report_and_diff_session():
    # A directory name as long as the README's /home/you/app, so that frames
    # are shortened (or not) in the same places.
    directory = tempfile.mkdtemp(prefix="", dir="/tmp")
    assert len(directory) == len("/home/you/app")
    try:
        Path(directory, "service.py").write_text(example("service.py"))
        session = console_session("python service.py before.json 1000")
        dhatc = " ".join(shlex.quote(a) for a in dhatc_command())
        pids: Dict[str, int] = {}
        for command, expected in session:
            line = command.replace("python -m dhatc", dhatc).replace(
                "python service.py", f"{shlex.quote(sys.executable)} service.py")
            proc = subprocess.run(["bash", "-c", f"{{ {line}; }} 2>&1"], cwd=directory,
                                  capture_output=True, text=True, timeout=300,
                                  env=dict(os.environ, DHATC_QUIET="1"))
            assert proc.returncode == 0, (command, proc.stdout)
            for name in ("before.json", "after.json"):
                if name not in pids and Path(directory, name).exists():
                    pids[name] = json.loads(Path(directory, name).read_text())["pid"]
            assert _as_in_readme(proc.stdout, directory, pids) == expected, command
    finally:
        shutil.rmtree(directory)
