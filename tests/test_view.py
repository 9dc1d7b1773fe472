"""`python -m dhatc view`: a server on 127.0.0.1 whose pages load FILE into
DHAT's real viewer and into the flame graph, checked in headless Chromium;
Ctrl-C stops it with status 0; without a viewer it says how to get one and
still serves the flame graph; a browser is opened only where there is a
display; bad requests are one line and status 2."""

from __future__ import annotations

import html
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest

from command_util import assert_one_line_error, dhatc, dhatc_command, dump_dom, pp, write_profile
from dh_viewer import viewer_dir

PPS = [
    pp(["PyObject_Malloc", "build (app.py:3)", "main (app.py:9)"], 1500, 3, tl=30, mb=1500, mbk=3,
       gb=1000, gbk=2, eb=500, ebk=1),
    pp(["PyMem_Realloc", "grow (app.py:5)", "main (app.py:10)"], 500, 1, tl=1, mb=500, mbk=1),
]
# A safety net for a broken server, not a measure of speed.
STARTUP_LIMIT_S = 120


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return write_profile(tmp_path / "app.json", PPS, cmd="python app.py", pid=4242)


@contextmanager
def serving(cwd: Path, *args: str, env: Optional[Dict[str, str]] = None,
            prelude: str = "") -> Iterator[Tuple["subprocess.Popen[str]", str]]:
    """Runs `dhatc view ARGS` until the block ends, then sends it SIGINT (Ctrl-C)."""
    full_env = dict(os.environ)
    full_env.pop("DISPLAY", None)
    full_env.pop("WAYLAND_DISPLAY", None)
    full_env.update(env or {})
    proc = subprocess.Popen(dhatc_command("view", *args, prelude=prelude), cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            assert selector.select(STARTUP_LIMIT_S), "dhatc view printed nothing"
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"dhatc view: serving .* at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)\n", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STARTUP_LIMIT_S)


def stop(proc: "subprocess.Popen[str]") -> Tuple[int, str]:
    """Ctrl-C, then the exit status and what was printed on stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=STARTUP_LIMIT_S)
    return proc.returncode, err


def visible_text(dom: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def get(url: str, host: Optional[str] = None) -> Tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=STARTUP_LIMIT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.skipif(viewer_dir() is None, reason="Valgrind's dh_view.js is not installed")
def test_served_viewer_shows_the_file(profile: Path, tmp_path: Path) -> None:
    with serving(tmp_path, "app.json", "--no-browser") as (proc, url):
        viewer = visible_text(dump_dom(url + "viewer.html"))
        flame = visible_text(dump_dom(url + "flamegraph.html"))
        code, err = stop(proc)
    assert "Command: python app.py" in viewer and "PID:     4242" in viewer
    assert "Total:     2,000 bytes (100%" in viewer
    assert "At t-gmax: 1,000 bytes (100%) in 2 blocks (100%)" in viewer
    assert "#2: build (app.py:3)" in viewer
    assert 'class="error"' not in viewer and "Error" not in viewer
    assert "Total:     2,000 bytes in 4 blocks" in flame
    assert (code, err) == (0, "dhatc view: stopped\n")


def test_pages_and_what_is_not_served(profile: Path, tmp_path: Path) -> None:
    with serving(tmp_path, "app.json", "--no-browser") as (proc, url):
        index = get(url)
        data = get(url + "data/app.json")
        missing = get(url + "../app.json")
        elsewhere = get(url + "data/app.json", host="attacker.example")
        viewer_js = get(url + "dh_view/dh_view.js")
        other_file = get(url + "dh_view/dh_view.html")
        code, err = stop(proc)
    assert index[0] == 200
    assert b'<iframe src="/viewer.html"' in index[1] and b'<iframe src="/flamegraph.html"' in index[1]
    assert data == (200, profile.read_bytes())
    assert missing[0] == 404 and elsewhere[0] == 403 and other_file[0] == 404
    found = viewer_dir()
    if found is not None:
        assert viewer_js == (200, (found / "dh_view.js").read_bytes())
    assert (code, err) == (0, "dhatc view: stopped\n")


def test_without_a_viewer(profile: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "DHATC_DH_VIEW_DIR": ""}
    with serving(tmp_path, "app.json", env=env,
                 prelude="import dhatc._cmd_view as v; v.VIEWER_DIRS = ()") as (proc, url):
        page = get(url + "viewer.html")
        flame = get(url + "flamegraph.html")
        code, err = stop(proc)
    how = ("DHAT's viewer (dh_view.html, part of Valgrind) is not installed here. Install Valgrind "
           "(Debian/Ubuntu: sudo apt-get install valgrind; Fedora: sudo dnf install valgrind), or "
           "open the online copy, https://nnethercote.github.io/dh_view/dh_view.html, and load "
           "app.json with its Load… button.")
    assert err.splitlines() == [f"dhatc view: {how} The flame graph is served anyway.",
                                "dhatc view: stopped"]
    assert page[0] == 200 and html.escape(how) in page[1].decode()
    assert flame[0] == 200 and b'id="dhatc-data"' in flame[1]
    assert code == 0


def fake_browser(tmp_path: Path) -> Tuple[Dict[str, str], Path]:
    """$BROWSER naming a script that writes down the URL it is given."""
    script = tmp_path / "browser.sh"
    opened = tmp_path / "opened.txt"
    script.write_text(f'#!/bin/sh\necho "$1" > "{opened}.part" && mv "{opened}.part" "{opened}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"BROWSER": str(script)}, opened


def test_browser_opens_only_with_a_display(profile: Path, tmp_path: Path) -> None:
    env, opened = fake_browser(tmp_path)
    with serving(tmp_path, "app.json", env=dict(env, DISPLAY=":99")) as (proc, url):
        deadline = time.monotonic() + STARTUP_LIMIT_S  # a safety net only
        while not opened.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert opened.read_text() == url + "\n"
    opened.unlink()
    with serving(tmp_path, "app.json", env=env) as (proc, url):  # no DISPLAY
        get(url)
    with serving(tmp_path, "app.json", "--no-browser", env=dict(env, DISPLAY=":99")) as (proc, url):
        get(url)
    assert not opened.exists()


def test_bad_requests(profile: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]")
    assert_one_line_error(dhatc("view", "bad.json", "--no-browser", cwd=tmp_path), "view", "bad.json")
    assert_one_line_error(dhatc("view", "app.json", "--port", "70000", cwd=tmp_path), "view",
                          "--port 70000: give a port from 1 to 65535")
    assert_one_line_error(dhatc("view", "app.json", "--viewer-dir", str(tmp_path), cwd=tmp_path),
                          "view", "no dh_view.js and dh_view.css there")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = dhatc("view", "app.json", "--no-browser", "--port", str(port), cwd=tmp_path)
    assert_one_line_error(proc, "view", f"port {port} on 127.0.0.1 is in use")
