"""Helpers for the tests of the commands that read DHAT files (flamegraph,
view, export, merge): DHAT files with exactly the figures a test names, a
runner for ``python -m dhatc COMMAND``, and headless Chromium's DOM of a page."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from dh_viewer import chromium_path
from dhatc._dhat_file import Profile, ProgramPoint, write_json

def dhatc_command(*args: str, prelude: str = "") -> List[str]:
    """The argv that runs ``python -m dhatc ARGS``; with `prelude`, Python
    statements run first (to change a module of dhatc before the command runs)."""
    if not prelude:
        return [sys.executable, "-m", "dhatc", *args]
    code = f"{prelude}\nimport sys\nfrom dhatc._cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


#: A prelude for dhatc_command: the command without the C scanner
#: (dhatc._ppscan), as where it is not built: the Python paths alone.
NO_SCANNER = ("import dhatc._dhat_reader, dhatc._report_diff, dhatc._report_tree\n"
              "for module in (dhatc._dhat_reader, dhatc._report_diff, dhatc._report_tree):\n"
              "    module._ppscan = None")


def dhatc(*args: str, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
          stdin: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    full_env = dict(os.environ, DHATC_QUIET="1")
    full_env.update(env or {})
    return subprocess.run(dhatc_command(*args), cwd=cwd, env=full_env, capture_output=True,
                          text=True, input=stdin, timeout=300)


def assert_one_line_error(proc: "subprocess.CompletedProcess[str]", command: str,
                          *fragments: str) -> None:
    """Exit status 2 and one line `dhatc COMMAND: error: ...` holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dhatc {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pp(frames: Sequence[str], tb: int, tbk: int, *, tl: int = 0, mb: int = 0, mbk: int = 0,
       gb: int = 0, gbk: int = 0, eb: int = 0, ebk: int = 0) -> ProgramPoint:
    """A program point; frames innermost first, as in the file."""
    return ProgramPoint(tuple(frames), tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk)


def write_profile(path: Path, pps: Sequence[ProgramPoint], *, mode: str = "heap",
                  cmd: str = "python app.py", pid: int = 1234, time_of_peak: int = 50,
                  time_of_end: int = 100, **kw: object) -> Path:
    """A DHAT file written by dhatc's own writer, figures exactly as given."""
    profile = Profile(mode=mode, total_blocks=sum(p.total_blocks for p in pps),
                      total_bytes=sum(p.total_bytes for p in pps), cmd=cmd, pid=pid,
                      time_of_peak=time_of_peak, time_of_end=time_of_end, pps=list(pps),
                      **kw)  # type: ignore[arg-type]
    with open(path, "w", encoding="utf-8") as out:
        write_json(profile, out)
    return path


def need_chromium() -> str:
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no chromium/chrome binary found")
    return chromium


def dump_dom(url: str, *, window: Tuple[int, int] = (1200, 800)) -> str:
    """The DOM of `url` after its scripts ran, from headless Chromium."""
    chromium = need_chromium()
    with tempfile.TemporaryDirectory(prefix="dhatc-chromium-") as tmp:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--lang=en-US", f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--dump-dom", url,
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(os.environ, HOME=tmp, LANG="en_US.UTF-8"),
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"chromium did not finish with {url}") from None
    assert proc.returncode == 0, err.decode("utf-8", "replace")[-3000:]
    return out.decode("utf-8", "replace")
