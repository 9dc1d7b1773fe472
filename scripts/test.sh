#!/usr/bin/env bash
# Installs everything and runs the whole test suite on every CPython >= 3.9
# this machine has (see scripts/pythons.sh), each in a fresh virtualenv with
# dhatc installed by pip, then prints one line per version and the total.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh || exit 1

reports=()
status=0
for python in $(bash scripts/pythons.sh); do
    version=$("$python" -c 'import platform; print(platform.python_version())')
    venv=".venvs/py$version"
    echo "=== CPython $version ($python)"
    rm -rf "$venv"
    "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --upgrade pip &&
        "$venv/bin/python" -m pip install -q ".[test]" || { echo "dhatc: install failed on $version"; status=1; continue; }
    report="$venv/junit.xml"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --junitxml="$report" "$@" || status=1
    reports+=("$version=$report")
done

python3 - "${reports[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET

totals = {"passed": 0, "failed": 0, "skipped": 0}
print("\n=== dhatc test summary")
for arg in sys.argv[1:]:
    version, path = arg.split("=", 1)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        print(f"CPython {version}: no report")
        totals["failed"] += 1
        continue
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    passed = tests - failed - skipped
    print(f"CPython {version}: {passed} passed, {failed} failed, {skipped} skipped")
    for key, value in (("passed", passed), ("failed", failed), ("skipped", skipped)):
        totals[key] += value
print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
PY
exit $status
