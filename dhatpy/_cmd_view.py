"""``dhatc view FILE``: serves FILE on 127.0.0.1 to DHAT's own viewer (loaded,
no clicking) and to dhatc's flame graph, side by side, and opens a browser.

Pages (all built when the server starts; nothing is read afterwards but the
viewer's two files):

* ``/``: the two side by side, in frames;
* ``/viewer.html``: Valgrind's ``dh_view.js`` and ``dh_view.css`` with FILE
  given to it as its own "Load…" does (``gData``, ``buildTree()``,
  ``displayTree()``), or, without Valgrind, how to get the viewer;
* ``/flamegraph.html``: the page of ``dhatc flamegraph``;
* ``/data/NAME``: FILE itself.

The server listens on 127.0.0.1 only and answers only requests addressed to
it by that name or ``localhost`` (a web page elsewhere cannot read the
profile through a DNS name pointing here).  It stops on Ctrl-C, exit status 0.
"""

from __future__ import annotations

import argparse
import errno
import html
import http.server
import json
import os
import shutil
import signal
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import quote

from . import _dhat_reader
from ._cmd_flamegraph import page_html
from ._errors import CommandError

HELP = "open a DHAT file in DHAT's viewer and the flame graph, served on 127.0.0.1"

#: Where Valgrind installs the viewer (Debian/Ubuntu, Fedora, source builds, Homebrew).
VIEWER_DIRS: Tuple[str, ...] = (
    "/usr/libexec/valgrind",
    "/usr/lib/valgrind",
    "/usr/lib64/valgrind",
    "/usr/local/libexec/valgrind",
    "/usr/local/lib/valgrind",
    "/opt/homebrew/libexec/valgrind",
)
ONLINE_VIEWER = "https://nnethercote.github.io/dh_view/dh_view.html"
VIEWER_FILES = ("dh_view.js", "dh_view.css")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a DHAT file")
    parser.add_argument("--port", type=int, default=0,
                        help="the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print the URL (no browser is opened without a display anyway)")
    parser.add_argument("--viewer-dir", metavar="DIR",
                        help="the directory holding DHAT's dh_view.js and dh_view.css "
                        "(default: $DHATC_DH_VIEW_DIR, then where Valgrind installs them)")


def find_viewer(explicit: Optional[str] = None) -> Optional[Path]:
    """The directory of dh_view.js/dh_view.css: `explicit`, $DHATC_DH_VIEW_DIR,
    the usual install paths, then the libexec beside a `valgrind` on PATH."""
    if explicit is not None:
        if not all((Path(explicit) / name).is_file() for name in VIEWER_FILES):
            raise CommandError(f"--viewer-dir {explicit}: no dh_view.js and dh_view.css there")
        return Path(explicit)
    candidates = [os.environ.get("DHATC_DH_VIEW_DIR", ""), *VIEWER_DIRS]
    valgrind = shutil.which("valgrind")
    if valgrind:
        prefix = Path(os.path.realpath(valgrind)).parent.parent
        candidates += [str(prefix / "libexec" / "valgrind"), str(prefix / "lib" / "valgrind")]
    for candidate in candidates:
        if candidate and all((Path(candidate) / name).is_file() for name in VIEWER_FILES):
            return Path(candidate)
    return None


def how_to_get_the_viewer(file_name: str) -> str:
    """What to do without a local viewer, in one paragraph."""
    return (
        "DHAT's viewer (dh_view.html, part of Valgrind) is not installed here. Install "
        "Valgrind (Debian/Ubuntu: sudo apt-get install valgrind; Fedora: sudo dnf install "
        f"valgrind), or open the online copy, {ONLINE_VIEWER}, and load {file_name} with "
        "its Load… button."
    )


def _script_string(text: str) -> str:
    """A JS string literal safe inside a <script> element."""
    return json.dumps(text, ensure_ascii=True).replace("</", "<\\/").replace("<!--", "<\\!--")


def viewer_page(json_text: str, file_name: str) -> str:
    """DHAT's viewer page with the file loaded as its Load… button would do it."""
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<link rel="stylesheet" href="/dh_view/dh_view.css">
<script src="/dh_view/dh_view.js"></script>
</head>
<body>
<script>
// What dh_view.js does on <body onload>, then in loadFile() once it has read a file.
onLoad();
gFilename = {_script_string(file_name)};
tryFunc(() => {{
  gData = JSON.parse({_script_string(json_text)});
  buildTree();
  displayTree();
}});
</script>
</body>
</html>
"""


def no_viewer_page(file_name: str) -> str:
    data_url = "/data/" + quote(file_name)
    return f"""<!DOCTYPE html>
<html>
<head><meta charset="UTF-8"><title>DHAT's viewer is not installed</title></head>
<body style="font: 14px/1.5 system-ui, sans-serif; margin: 2em; max-width: 50em">
<p class="no-viewer">{html.escape(how_to_get_the_viewer(file_name))}</p>
<p><a href="{html.escape(data_url)}" download>Download {html.escape(file_name)}</a> to load it
there. The <a href="/flamegraph.html" target="_top">flame graph</a> works without it.</p>
</body>
</html>
"""


def index_page(file_name: str) -> str:
    name = html.escape(file_name)
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<title>dhatc view - {name}</title>
<style>
body {{ margin: 0; height: 100vh; display: flex; flex-direction: column; font: 13px system-ui, sans-serif; }}
nav {{ padding: 4px 10px; background: #eee; border-bottom: 1px solid #ccc; }}
#panes {{ flex: 1; display: flex; min-height: 0; }}
iframe {{ flex: 1; min-width: 0; border: 0; }}
iframe + iframe {{ border-left: 1px solid #ccc; }}
</style>
</head>
<body>
<nav>dhatc view: <b>{name}</b> &mdash; open alone:
<a href="/viewer.html" target="_blank">DHAT's viewer</a> &middot;
<a href="/flamegraph.html" target="_blank">flame graph</a> &middot;
<a href="/data/{html.escape(quote(file_name))}" download>the file</a></nav>
<div id="panes">
<iframe src="/viewer.html" title="DHAT's viewer"></iframe>
<iframe src="/flamegraph.html" title="Flame graph"></iframe>
</div>
</body>
</html>
"""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    pages: Dict[str, Tuple[str, bytes]]
    viewer: Optional[Path]

    def handle_error(self, request: object, client_address: object) -> None:
        # A browser that closes a connection early is no error worth a traceback.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"dhatc view: error answering a request: {error!r}", file=sys.stderr)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "dhatc-view"

    def log_message(self, format: str, *args: object) -> None:
        pass  # no line per request on the terminal

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            self._send(403, "text/plain; charset=utf-8", b"dhatc view answers 127.0.0.1 only\n")
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        page = self.server.pages.get(path)
        if page is None and path.startswith("/dh_view/") and self.server.viewer is not None:
            name = path[len("/dh_view/"):]
            if name in VIEWER_FILES:
                kind = "text/javascript" if name.endswith(".js") else "text/css"
                try:
                    page = (f"{kind}; charset=utf-8", (self.server.viewer / name).read_bytes())
                except OSError:
                    page = None
        if page is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        self._send(200, *page)

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _has_display() -> bool:
    """False where webbrowser would start a text browser in this terminal, or nothing."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _bind(port: int) -> _Server:
    if not 0 <= port <= 65535:
        raise CommandError(f"--port {port}: give a port from 1 to 65535 (or none, for a free one)")
    try:
        return _Server(("127.0.0.1", port), _Handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise CommandError(f"port {port} on 127.0.0.1 is in use: choose another --port, "
                               "or leave it out for a free one") from None
        raise CommandError(f"cannot listen on 127.0.0.1 port {port}: {e.strerror}") from None


def serve(file_path: str, port: int = 0, *, viewer_dir: Optional[str] = None,
          open_browser: bool = True) -> int:
    """Serves until Ctrl-C; returns the exit status."""
    file = _dhat_reader.load(file_path)
    viewer = find_viewer(viewer_dir)
    with open(file_path, "rb") as f:
        raw = f.read()
    name = os.path.basename(file_path) or "profile.json"
    html_kind = "text/html; charset=utf-8"
    pages: Dict[str, Tuple[str, bytes]] = {
        "/": (html_kind, index_page(name).encode("utf-8")),
        "/index.html": (html_kind, index_page(name).encode("utf-8")),
        "/flamegraph.html": (html_kind, page_html(file).encode("utf-8")),
        "/data/" + quote(name): ("application/json", raw),
    }
    if viewer is not None:
        text = raw.decode("utf-8", errors="replace")  # as the viewer's FileReader reads it
        pages["/viewer.html"] = (html_kind, viewer_page(text, name).encode("utf-8"))
    else:
        pages["/viewer.html"] = (html_kind, no_viewer_page(name).encode("utf-8"))
    server = _bind(port)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops the server even where the shell started it with SIGINT
        # ignored (a background job of a script).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    server.pages = pages
    server.viewer = viewer
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        if viewer is None:
            print(f"dhatc view: {how_to_get_the_viewer(name)} The flame graph is served anyway.",
                  file=sys.stderr)
        print(f"dhatc view: serving {file_path} at {url} (Ctrl-C to stop)", flush=True)
        if open_browser and _has_display():
            # Some browsers' launchers wait for the browser: not in this thread.
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever()
    except KeyboardInterrupt:
        print("dhatc view: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def run(args: argparse.Namespace) -> int:
    return serve(args.file, args.port, viewer_dir=args.viewer_dir,
                 open_browser=not args.no_browser)
