#!/usr/bin/env bash
# Installs everything and runs the whole test suite on every CPython >= 3.9
# this machine has (see scripts/pythons.sh; DHATC_TEST_PYTHONS="python ..."
# picks them instead), each in a fresh virtualenv with dhatc installed by pip,
# then prints one line per version and the total.  Arguments go to pytest.
# Exits non-zero if any version failed to install or to pass, or none ran.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh || exit 1

if [ -n "${DHATC_TEST_PYTHONS:-}" ]; then
    pythons="$DHATC_TEST_PYTHONS"
else
    pythons=$(bash scripts/pythons.sh) || exit 1  # (it says why)
fi
if [ -z "${pythons//[[:space:]]/}" ]; then
    echo "dhatc: no CPython >= 3.9 to test with" >&2
    exit 1
fi

reports=()  # VERSION=JUNIT-FILE, or VERSION= when the setup failed
status=0
for python in $pythons; do
    version=$("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null) ||
        version="?"
    echo "=== CPython $version ($python)"
    if [ "$version" = "?" ]; then
        echo "dhatc: cannot run $python"
        reports+=("$python=")
        status=1
        continue
    fi
    venv=".venvs/py$version"
    rm -rf "$venv"
    # setuptools: the build backend, for tests/test_packaging.py.
    if ! { "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --upgrade pip "setuptools>=77" &&
        "$venv/bin/python" -m pip install -q ".[test]"; }; then
        echo "dhatc: setting up $venv failed (venv or pip install); no tests ran on $version"
        reports+=("$version=")
        status=1
        continue
    fi
    report="$venv/junit.xml"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --junitxml="$report" "$@" || status=1
    reports+=("$version=$report")
done

python3 - "${reports[@]}" <<'PY' || status=1
import sys
import xml.etree.ElementTree as ET

totals = {"passed": 0, "failed": 0, "skipped": 0}
print("\n=== dhatc test summary")
for arg in sys.argv[1:]:
    version, path = arg.rsplit("=", 1)
    if not path:
        print(f"CPython {version}: FAILED: setup failed, no tests ran")
        totals["failed"] += 1
        continue
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        print(f"CPython {version}: FAILED: no test report")
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
