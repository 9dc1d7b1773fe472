"""Prints the summary that ends scripts/test.sh: one line per CPython and the
total, from the directories scripts/test-python.sh filled.

    python3 scripts/test-summary.py "NAME|DIR|WHY" ...

NAME is how scripts/test.sh was told of the interpreter (a path, or sid:3.14
for the Debian sid root's), DIR its test directory, WHY what to say when DIR
holds neither a setup failure nor a test report (the step that failed before
any test could run).  Exits 1 if any version failed or none ran.
Standard library only (it runs on the host's python3, whatever that is).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

SHOWN_FAILURES = 15


def label(name: str, directory: Path) -> str:
    """'CPython 3.14.10 (Debian sid root)', or the name if no version was read."""
    try:
        version = (directory / "version").read_text().strip()
    except OSError:
        version = ""
    if name.startswith("sid:"):
        return f"CPython {version or name[4:]} (Debian sid root)"
    return f"CPython {version}" if version else name


def read_report(path: Path) -> Tuple[Dict[str, int], List[str]]:
    """The counts of a JUnit report and the ids of its failed tests."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed: List[str] = []
    for suite in suites:
        tests = int(suite.get("tests", 0))
        errors = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts["passed"] += tests - errors - skipped
        counts["failed"] += errors
        counts["skipped"] += skipped
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return counts, failed


def summarize(name: str, directory: Path, why: str, totals: Dict[str, int]) -> bool:
    """Prints one version's lines, adds its counts to totals; True if it passed.
    A version on which no test could run counts as one failure in the total."""
    title = label(name, directory)
    setup = directory / "setup-failed"
    if setup.is_file():
        print(f"{title}: FAILED: {setup.read_text().strip()}, no tests ran")
        totals["failed"] += 1
        return False
    try:
        counts, failed = read_report(directory / "junit.xml")
    except (OSError, ET.ParseError):
        print(f"{title}: FAILED: {why or 'no test report'}")
        totals["failed"] += 1
        return False
    print(f"{title}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    for test in failed[:SHOWN_FAILURES]:
        print(f"    failed: {test}")
    if len(failed) > SHOWN_FAILURES:
        print(f"    ... and {len(failed) - SHOWN_FAILURES} more")
    for key, value in counts.items():
        totals[key] += value
    return counts["failed"] == 0 and counts["passed"] > 0


def main(args: List[str]) -> int:
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    passed = bool(args)
    print("\n=== dhatc test summary")
    for arg in args:
        name, directory, why = arg.split("|", 2)
        if not summarize(name, Path(directory or "/nonexistent"), why, totals):
            passed = False
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
