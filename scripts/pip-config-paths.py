"""Prints, one per line, the files and directories of this machine that pip's
configuration here names: its configuration files, the CA bundles, the local
wheel directories and package indexes they point to.  scripts/sid-root.sh
makes each of them visible at the same path inside the sid root, so that pip
there reaches the package index exactly as pip here does.

Read: every pip configuration file that pip would load (global, user and
$PIP_CONFIG_FILE), the PIP_* environment variables, and the CA variables
SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE.  Only
absolute paths and file:// URLs that exist here are printed.  Standard
library only (it runs on the host's python3, whatever that is).
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, List, Tuple
from urllib.parse import unquote, urlparse

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# A local PEP 503 index links to its files with relative URLs, commonly
# "../../files/...": for these options the index's parent directory is needed.
INDEX_OPTIONS = ("index-url", "extra-index-url")
# Mounted in the root anyway (PIP_CONFIG_FILE=/dev/null, say).
ALREADY_THERE = (Path("/dev"), Path("/proc"), Path("/sys"))


def config_files() -> List[Path]:
    """The configuration files pip loads, in pip's order, that exist here."""
    home = Path.home()
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    candidates = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(":") if d]
    candidates.append(Path("/etc/pip.conf"))
    candidates.append(home / ".pip" / "pip.conf")
    xdg_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    candidates.append(Path(xdg_home) / "pip" / "pip.conf")
    explicit = os.environ.get("PIP_CONFIG_FILE")
    if explicit and explicit != os.devnull:
        candidates.append(Path(explicit))
    return [path for path in candidates if path.is_file()]


def options() -> Iterator[Tuple[str, str]]:
    """(option name, value) of every option in the files and PIP_* variables."""
    for path in config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except configparser.Error as exc:
            sys.exit(f"dhatc: cannot read pip's configuration {path}: {exc}")
        for section in parser.sections():
            for name, value in parser.items(section):
                yield name, value
    for variable, value in os.environ.items():
        if variable.startswith("PIP_"):
            yield variable[4:].lower().replace("_", "-"), value


def paths_in(name: str, value: str) -> Iterator[Path]:
    """The local paths that one option's value names."""
    for token in value.split():
        if token.startswith("file:"):
            path = Path(unquote(urlparse(token).path))
        elif token.startswith("/"):
            path = Path(token)
        else:
            continue
        if name in INDEX_OPTIONS and path.parent != Path("/"):
            yield path.parent
        yield path


def outermost(paths: Iterable[Path]) -> List[str]:
    """Existing paths, without those inside another one of them."""
    kept: List[Path] = []
    for path in sorted({Path(os.path.normpath(p)) for p in paths if p.exists()}):
        if any(path == k or k in path.parents for k in [*ALREADY_THERE, *kept]):
            continue
        kept.append(path)
    return [str(p) for p in kept]


def main() -> None:
    paths: List[Path] = list(config_files())
    for name, value in options():
        paths.extend(paths_in(name, value))
    for variable in CA_VARIABLES:
        ca_path = os.environ.get(variable, "")
        if ca_path.startswith("/"):
            paths.append(Path(ca_path))
    for path in outermost(paths):
        print(path)


if __name__ == "__main__":
    main()
