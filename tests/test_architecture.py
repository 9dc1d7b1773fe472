"""docs/ARCHITECTURE.md is the map of the tree, and it stays true: every file of
the engine and of the Python package is on it, the engine's includes go only
from a layer to its own or lower ones with no two units including each
other, and the README's development map names no engine file the map lacks."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
ENGINE = ROOT / "src" / "dhatc"

LAYER_ROW = re.compile(r"^\| `src/dhatc/([\w.]+)` \| (\d+) \|", re.M)


def layers() -> Dict[str, int]:
    """Each listed file's layer; a unit's header (X.h beside X.c) shares it."""
    listed = {name: int(layer) for name, layer in LAYER_ROW.findall(ARCHITECTURE)}
    for name, layer in list(listed.items()):
        if name.endswith(".c") and (ENGINE / (unit(name) + ".h")).exists():
            listed.setdefault(unit(name) + ".h", layer)
    return listed


def unit(name: str) -> str:
    return name.rsplit(".", 1)[0]


def includes(path: Path) -> Set[str]:
    return set(re.findall(r'^#include "([\w.]+)"', path.read_text(), re.M))


def test_every_engine_file_has_a_layer():
    files = {p.name for p in ENGINE.iterdir() if p.suffix in (".c", ".h")}
    assert files == set(layers())


def test_includes_go_downwards_and_units_do_not_include_each_other():
    layer = layers()
    upward = []
    graph: Dict[str, Set[str]] = {}
    for path in sorted(ENGINE.iterdir()):
        if path.suffix not in (".c", ".h"):
            continue
        for header in includes(path):
            if layer[header] < layer[path.name]:
                upward.append(f"{path.name} (layer {layer[path.name]}) includes {header} "
                              f"(layer {layer[header]})")
            if unit(header) != unit(path.name):
                graph.setdefault(unit(path.name), set()).add(unit(header))
    assert upward == []
    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a]
                    if a < b and a in graph.get(b, set()))
    assert cycles == []


def test_every_python_module_is_on_the_map():
    names = set(re.findall(r"`([\w/*.]+\.py)`", ARCHITECTURE))
    package = ROOT / "dhatpy"
    modules = sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))
    missing = [m for m in modules if not any(fnmatch.fnmatch(m, n) for n in names)]
    assert missing == []


def test_the_readmes_development_map_points_at_the_map_and_names_real_files():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Development"):]
    assert "docs/ARCHITECTURE.md" in section
    engine_line = next(line for line in section.splitlines() if line.startswith("src/dhatc/"))
    named = set(re.findall(r"\b([a-z_]+\.[ch])\b", engine_line))
    assert named <= set(layers()), named - set(layers())


def test_no_project_file_cites_a_document_outside_the_project():
    # The notes the project was built from are not part of it.
    cited = []
    for path in [*ROOT.glob("src/dhatc/*"), *ROOT.glob("dhatpy/**/*.py"), *ROOT.glob("benchmarks/*"),
                 *ROOT.glob("scripts/*"), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md")]:
        if path.is_file() and re.search(r"\b(python-mapping|design-notes|anchors)\.md\b|"
                                        r"the design notes", path.read_text(errors="replace")):
            cited.append(str(path.relative_to(ROOT)))
    assert cited == []
