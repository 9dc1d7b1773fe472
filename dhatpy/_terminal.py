"""Text for a terminal: styled lines, width, wrapping, shortened frames, colour.

A line is a list of fragments ``(text, style)``; style is "" or one of
:data:`STYLES`.  :class:`Output` writes lines to stdout or a file, with ANSI
colour only when asked or on a terminal (``--color auto``, ``NO_COLOR``).  A
reader that goes away (``| head -1``) raises BrokenPipeError, which the CLI
turns into a quiet exit, as for every command.  Nothing here knows about DHAT
files; the report and diff commands, and others, build on it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import unicodedata
from typing import IO, List, Optional, Sequence, Tuple

from ._errors import CommandError

Fragment = Tuple[str, str]
Line = List[Fragment]

#: ANSI SGR codes of the styles lines may use.
STYLES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "cyan": "36",
    "bold red": "1;31",
    "bold green": "1;32",
}

#: The width when the output is not a terminal (and COLUMNS is not set).
DEFAULT_WIDTH = 80
#: Narrower than this, shortened frames would say nothing.
MIN_WIDTH = 40
ELLIPSIS = "\u2026"


# --- options shared by commands --------------------------------------------------------


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o/--output``, ``--color``, ``--wide``: as every terminal command takes them."""
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of standard output")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour: on a terminal unless NO_COLOR is set (auto, the "
                             "default), always or never")
    parser.add_argument("--wide", action="store_true",
                        help="no line limit: full frames, figures on one line")


def use_color(choice: str, stream: IO[str]) -> bool:
    """--color: "always", "never", or "auto" = a terminal, NO_COLOR unset or
    empty (https://no-color.org), and TERM not "dumb"."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty() and not os.environ.get("NO_COLOR")
                and os.environ.get("TERM") != "dumb")


def output_width(stream: IO[str], wide: bool) -> Optional[int]:
    """None with --wide; else a terminal's width, or $COLUMNS, or 80; at least 40."""
    if wide:
        return None
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        columns = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    else:
        try:
            columns = int(os.environ.get("COLUMNS", ""))
        except ValueError:
            columns = DEFAULT_WIDTH
        if columns <= 0:
            columns = DEFAULT_WIDTH
    return max(columns, MIN_WIDTH)


# --- measuring and cutting text --------------------------------------------------------


def display_width(text: str) -> int:
    """Columns the text takes: East Asian wide characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def _fit_end(text: str, width: int) -> str:
    """The longest end of `text` that fits in `width` columns."""
    if display_width(text) <= width:
        return text
    kept = ""
    for char in reversed(text):
        if display_width(char + kept) > width:
            break
        kept = char + kept
    return kept


def _fit_start(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` columns."""
    if display_width(text) <= width:
        return text
    kept = ""
    for char in text:
        if display_width(kept + char) > width:
            break
        kept += char
    return kept


def cut(text: str, width: int) -> str:
    """`text`, or its start and an ellipsis, in at most `width` columns."""
    if display_width(text) <= width:
        return text
    return _fit_start(text, max(width - 1, 0)) + ELLIPSIS


# "name (location)": Python's "f (app.py:12)", Valgrind's "0x1: f (a.c:3)" and
# "0x1: ??? (in /lib/libc.so.6)", the crate's "0x1: f (src/main.rs:12:5)".
_ADDRESS = re.compile(r"0x[0-9A-Fa-f]+: ")
_LOCATION = re.compile(r"^(?P<name>.*?) \((?P<prefix>in )?(?P<path>[^()]*)\)$")


def shorten_frame(frame: str, width: Optional[int]) -> str:
    """A frame string for a line of `width` columns (None: as it is).

    The address goes (``0x4AA1D9F: ``): it changes from run to run and only
    --wide shows it.  Then, as long as it does not fit: the path is shortened
    to its last components (``…/pkg/mod.py:12``), the function name keeps its
    end (``…Class.method``), and last the end is cut.
    """
    if width is None:
        return frame
    frame = _ADDRESS.sub("", frame, count=1)
    if display_width(frame) <= width:
        return frame
    match = _LOCATION.match(frame)
    if match is None:
        return ELLIPSIS + _fit_end(frame, width - 1)
    name, prefix, path = match["name"], match["prefix"] or "", match["path"]
    parts = path.split("/")
    # The shortest location keeps the file name (and line).
    for keep in range(len(parts) - 1, 0, -1):
        short_path = ELLIPSIS + "/" + "/".join(parts[-keep:])
        candidate = f"{name} ({prefix}{short_path})"
        if display_width(candidate) <= width:
            return candidate
    short_path = ELLIPSIS + "/" + parts[-1] if len(parts) > 1 else path
    location = f" ({prefix}{short_path})"
    room = width - display_width(location)
    if room >= 8:  # enough for "…" and a method name
        return ELLIPSIS + _fit_end(name, room - 1) + location
    return cut(f"{name}{location}", width)


# --- styled lines ----------------------------------------------------------------------


def plain(line: Sequence[Fragment]) -> str:
    return "".join(text for text, _ in line)


def _slice(line: Sequence[Fragment], start: int, end: int) -> Line:
    """The fragments covering characters start..end of the line's plain text."""
    result: Line = []
    pos = 0
    for text, style in line:
        lo, hi = max(start - pos, 0), min(end - pos, len(text))
        if lo < hi:
            result.append((text[lo:hi], style))
        pos += len(text)
    return result


def _breaks(text: str) -> Tuple[List[int], List[int], List[int]]:
    """Where `text` may be broken, best first: after ", " and before " in "
    outside parentheses; at other spaces outside them; at any space."""
    clauses, words, spaces = [], [], []
    depth = 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == " ":
            spaces.append(i)
            if depth == 0:
                words.append(i)
                if text[i - 1:i] == "," or text.startswith(" in ", i):
                    clauses.append(i)
    return clauses, words, spaces


def wrap(first: Sequence[Fragment], body: Sequence[Fragment], rest: Sequence[Fragment],
         width: Optional[int]) -> List[Line]:
    """`first` + `body` on lines of at most `width` columns, continuation lines
    starting with `rest` (for a figure line: spaces under the figures).  Breaks
    between clauses if it can, else between words; a word wider than a whole
    line is cut at the line's end and continued."""
    if width is None or display_width(plain(first) + plain(body)) <= width:
        return [list(first) + list(body)]
    text = plain(body)
    lines: List[Line] = []
    prefix: Sequence[Fragment] = first
    start = 0
    clauses, words, spaces = _breaks(text)
    while True:
        room = max(width - display_width(plain(prefix)), 10)
        if display_width(text[start:]) <= room:
            lines.append(list(prefix) + _slice(body, start, len(text)))
            return lines
        end = None
        for candidates in (clauses, words, spaces):
            fitting = [b for b in candidates if start < b and display_width(text[start:b]) <= room]
            if fitting:
                end = fitting[-1]
                break
        if end is None:
            end = start + len(_fit_start(text[start:], room))
            next_start = end
        else:
            next_start = end + 1
        lines.append(list(prefix) + _slice(body, start, end))
        start = next_start
        prefix = rest


# --- writing ---------------------------------------------------------------------------

_LABEL = re.compile(r"^\s*[A-Za-z][\w -]*: +")


class Output:
    """Where a command writes its lines: stdout (or ``-o FILE``), styled or not."""

    def __init__(self, path: Optional[str], color: str, wide: bool,
                 stream: Optional[IO[str]] = None) -> None:
        self.path = path
        if path is not None and path != "-":
            try:
                self.stream: IO[str] = open(path, "w", encoding="utf-8")
            except OSError as e:
                raise CommandError(f"cannot write {path}: {e.strerror or e}") from None
            self.owned = True
        else:
            self.stream = stream if stream is not None else sys.stdout
            self.owned = False
            reconfigure = getattr(self.stream, "reconfigure", None)
            if reconfigure is not None and getattr(self.stream, "errors", "") == "strict":
                # Frames may hold any character; an ASCII terminal gets '?' for them.
                reconfigure(errors="replace")
        self.color = use_color(color, self.stream)
        self.width = output_width(self.stream, wide)
        self.closed = False

    def render(self, line: Sequence[Fragment]) -> str:
        if not self.color:
            return plain(line).rstrip()
        parts = []
        for text, style in line:
            parts.append(f"\x1b[{STYLES[style]}m{text}\x1b[0m" if style and text else text)
        return "".join(parts).rstrip()

    def line(self, line: Sequence[Fragment] = ()) -> None:
        self.write(self.render(line) + "\n")

    def text(self, text: str = "", style: str = "") -> None:
        self.line([(text, style)])

    def paragraph(self, text: str, style: str = "") -> None:
        """A line of text wrapped to the width, continued under what follows its
        label ("  Command: ...", "PP significance threshold: ...")."""
        label = _LABEL.match(text)
        indent = " " * (label.end() if label else 0)
        for wrapped in wrap([], [(text, style)], [(indent, "")], self.width):
            self.line(wrapped)

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text)
        except BrokenPipeError:
            raise  # the CLI ends the command quietly
        except OSError as e:
            raise CommandError(f"cannot write {self.path or 'the output'}: "
                               f"{e.strerror or e}") from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.stream.flush()
            if self.owned:
                self.stream.close()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise CommandError(f"cannot write {self.path or 'the output'}: "
                               f"{e.strerror or e}") from None
