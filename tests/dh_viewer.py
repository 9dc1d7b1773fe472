"""Render a DHAT JSON file with Valgrind's *real* viewer, in headless Chromium.

Why this exists: dhatc writes files in Valgrind DHAT's JSON format (version 2),
and the only judge of whether such a file is right is the viewer that ships
with Valgrind (``dh_view.html`` / ``dh_view.js``).  That viewer checks things
a schema check would miss (e.g. it refuses two program points with the same
``fs``: "data file contains a repeated location"), and it is what users will
actually look at.  Tests therefore load dhatc's output into the viewer's own,
unmodified JavaScript and look at what the page shows.

How: we write a small HTML page into a temporary directory.  It includes the
viewer's ``dh_view.css`` and ``dh_view.js`` by absolute ``file://`` URL, then
runs the same call sequence as the viewer's own ``loadFile()`` does once it
has read a file::

    onLoad();                       // the page's normal <body onload>
    tryFunc(() => {
      gData = JSON.parse(text);
      buildTree();
      displayTree(...);
    });

``tryFunc`` is the viewer's own error handler: on an exception it replaces the
main div with ``<span class="error">…</span>``.  Headless Chromium dumps the
resulting DOM (``--dump-dom``) and we pull the error text and the visible
text out of it with :mod:`html.parser`.

Only the standard library is used.  Chromium is found with
:func:`chromium_path` (override with ``$DHATC_CHROMIUM``); the viewer's
directory can be overridden with ``$DHATC_DH_VIEW_DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = [
    "ViewerResult",
    "ViewerHarnessError",
    "chromium_path",
    "viewer_dir",
    "render",
]

#: Seconds to wait for Chromium before giving up.
TIMEOUT_S = 120.0

# The headless shell comes first: it starts about twice as fast.
_CHROMIUM_NAMES = (
    "chromium-headless-shell",
    "headless_shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)

_VIEWER_DIRS = (
    "/usr/libexec/valgrind",
    "/usr/lib/valgrind",
    "/usr/local/libexec/valgrind",
    "/usr/local/lib/valgrind",
)

# Set on <body> by our script as its very last step; if it is missing from
# the dumped DOM, our script did not run to the end (a harness problem, not a
# viewer verdict).
_DONE_ATTR = "data-dhv-done"
# Set on <body> if our script failed outside the viewer's tryFunc.
_HARNESS_ERROR_ATTR = "data-dhv-harness-error"


@dataclass(frozen=True)
class ViewerResult:
    """What the viewer rendered for one file."""

    #: Text of the viewer's ``class="error"`` element(s) (e.g.
    #: ``"Error: data file contains a repeated location (1)"``), else None.
    error: str | None
    #: Visible text of the page, roughly ``document.body.innerText``:
    #: header, invocation, times, the tree (``Total: 3,000 bytes (100%, …)
    #: in 3 blocks (100%, …)``), legend.
    text: str


class ViewerHarnessError(RuntimeError):
    """The harness itself failed (Chromium missing, crashed, timed out...).

    Distinct from the viewer rejecting a file, which is reported in
    :attr:`ViewerResult.error`.
    """


def chromium_path() -> str | None:
    """Return the path of a Chromium/Chrome binary, or None if there is none."""
    override = os.environ.get("DHATC_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def viewer_dir() -> Path | None:
    """Return the directory holding ``dh_view.js`` and ``dh_view.css``."""
    candidates = [os.environ.get("DHATC_DH_VIEW_DIR", ""), *_VIEWER_DIRS]
    for candidate in candidates:
        if candidate and (Path(candidate) / "dh_view.js").is_file():
            return Path(candidate)
    return None


def _js_string(text: str) -> str:
    """A JS string literal for *text* that is safe inside a <script> element."""
    # json.dumps gives a valid JS string literal (ensure_ascii also escapes
    # U+2028/U+2029).  "<\/" means "</" in JS, and keeps the HTML parser from
    # seeing "</script>" or "<!--" in the data.
    return (
        json.dumps(text, ensure_ascii=True)
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--")
    )


def _page(json_text: str, filename: str, view_dir: Path) -> str:
    css = (view_dir / "dh_view.css").as_uri()
    js = (view_dir / "dh_view.js").as_uri()
    return f"""<!DOCTYPE html>
<html>
  <head>
    <meta charset="UTF-8">
    <link rel="stylesheet" href="{css}">
    <script src="{js}"></script>
  </head>
  <body>
    <script>
      // Mirrors dh_view.js: <body onload="onLoad()"> then loadFile()'s
      // reader.onload callback (read -> JSON.parse -> buildTree -> displayTree).
      try {{
        onLoad();
        gFilename = {_js_string(filename)};
        document.title = `${{kDocumentTitle}} - ${{gFilename}}`;
        const dhvText = {_js_string(json_text)};
        tryFunc(() => {{
          let now = performance.now();
          gData = JSON.parse(dhvText);
          let tParse = performance.now() - now;

          now = performance.now();
          buildTree();
          let tBuild = performance.now() - now;

          displayTree(0, tParse, tBuild);
        }});
      }} catch (ex) {{
        // tryFunc has already shown the viewer's error and rethrown it.  If
        // there is no error element, the failure happened outside tryFunc
        // (e.g. dh_view.js did not load): that is a harness failure.
        if (!document.querySelector(".error")) {{
          document.body.setAttribute("{_HARNESS_ERROR_ATTR}", String(ex));
        }}
      }}
      document.body.setAttribute("{_DONE_ATTR}", "1");
    </script>
  </body>
</html>
"""


# Elements whose content is never visible text.
_INVISIBLE = frozenset({"head", "script", "style", "title", "template"})
# Elements after/before which innerText would break the line.
_BLOCK = frozenset(
    {"address", "article", "aside", "blockquote", "body", "div", "dl", "dd",
     "dt", "fieldset", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
     "header", "hr", "li", "main", "nav", "ol", "option", "p", "pre",
     "section", "table", "tr", "ul"}
)
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
     "meta", "source", "track", "wbr"}
)


class _DomText(HTMLParser):
    """Collect visible text and the text of ``class="error"`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, invisible, error)
        self._text: list[str] = []
        self._errors: list[list[str]] = []
        self._pre_depth = 0
        self.done = False
        self.harness_error: str | None = None

    def _newline(self) -> None:
        """Start a new line unless already at the start of one."""
        if self._text and not self._text[-1].endswith("\n"):
            self._text.append("\n")

    def _invisible(self) -> bool:
        return bool(self._stack) and self._stack[-1][1]

    def _in_error(self) -> bool:
        return bool(self._stack) and self._stack[-1][2]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "body":
            self.done = attr.get(_DONE_ATTR) == "1"
            self.harness_error = attr.get(_HARNESS_ERROR_ATTR)
        if tag in _VOID:
            if tag == "br" and not self._invisible():
                self._text.append("\n")
            return
        classes = (attr.get("class") or "").split()
        invisible = self._invisible() or tag in _INVISIBLE or "hidden" in classes
        is_error = "error" in classes
        if is_error:
            self._errors.append([])
        self._stack.append((tag, invisible, self._in_error() or is_error))
        if tag == "pre":
            self._pre_depth += 1
        if tag in _BLOCK and not invisible:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Pop up to and including the matching tag (tolerates sloppy HTML).
        while self._stack:
            popped, invisible, _ = self._stack.pop()
            if popped == "pre":
                self._pre_depth -= 1
            if popped in _BLOCK and not invisible:
                self._newline()
            if popped == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._in_error() and self._errors:
            self._errors[-1].append(data)
        if self._invisible():
            return
        if self._pre_depth == 0:
            data = " ".join(data.split())
        if data:
            self._text.append(data)

    @property
    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self._text).splitlines()]
        return "\n".join(lines).strip("\n")

    @property
    def error(self) -> str | None:
        texts = ["".join(parts).strip() for parts in self._errors]
        texts = [t for t in texts if t]
        return "\n".join(texts) if texts else None


def render(json_path: str | os.PathLike[str]) -> ViewerResult:
    """Load *json_path* into Valgrind's viewer and return what it rendered.

    Raises :class:`ViewerHarnessError` if Chromium or the viewer is missing,
    if Chromium fails or takes longer than :data:`TIMEOUT_S`, or if the page
    script did not run to completion.  A file the viewer rejects is not an
    exception: its message is in ``result.error``.
    """
    chromium = chromium_path()
    if chromium is None:
        raise ViewerHarnessError("no chromium/chrome binary found on PATH")
    view_dir = viewer_dir()
    if view_dir is None:
        raise ViewerHarnessError("Valgrind's dh_view.js not found")

    path = Path(json_path)
    # FileReader.readAsText (what the viewer uses) decodes as UTF-8, with
    # replacement characters for invalid bytes.
    json_text = path.read_bytes().decode("utf-8", errors="replace")

    with tempfile.TemporaryDirectory(prefix="dh_viewer-") as tmp:
        page = Path(tmp) / "view.html"
        page.write_text(_page(json_text, path.name, view_dir), encoding="utf-8")
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",  # needed when running as root (CI containers)
            "--disable-gpu",
            "--disable-dev-shm-usage",  # small /dev/shm in containers
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            f"--user-data-dir={Path(tmp) / 'profile'}",  # no $HOME writes
            "--dump-dom",
            page.as_uri(),
        ]
        env = dict(os.environ, HOME=tmp)  # some builds write under $HOME
        # Own session so that on timeout we can kill Chromium's helper
        # processes (zygote, renderer, ...) too, by process group id.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ViewerHarnessError(
                f"chromium did not finish rendering {path} within {TIMEOUT_S:.0f} s"
            ) from None

    stderr = err.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise ViewerHarnessError(
            f"chromium exited with status {proc.returncode} rendering {path}:\n"
            f"{stderr[-4000:]}"
        )
    parser = _DomText()
    parser.feed(out.decode("utf-8", errors="replace"))
    parser.close()
    if parser.harness_error is not None:
        raise ViewerHarnessError(
            f"viewer page script failed for {path}: {parser.harness_error}"
        )
    if not parser.done:
        raise ViewerHarnessError(
            f"viewer page did not finish for {path}; chromium stderr:\n"
            f"{stderr[-4000:]}"
        )
    return ViewerResult(error=parser.error, text=parser.text)
