#!/usr/bin/env bash
# Runs the test suite on one CPython:
#   scripts/test-python.sh PYTHON DIR [pytest args]
# makes a fresh virtualenv DIR, installs dhatc into it with pip (".[test]"),
# and runs pytest there with a JUnit report, DIR/junit.xml.  scripts/test.sh
# runs it on the host, and in the Debian sid root for CPython 3.14 and 3.15.
# DIR/version gets the interpreter's version; if a setup step fails,
# DIR/setup-failed names it and no test runs.  Exits with pytest's status, or
# 1 when the setup failed.
set -euo pipefail
python="$1"
dir="$2"
shift 2
cd "$(dirname "$0")/.."

setup_failed() {  # STEP
    echo "dhatc: $1 failed for $python; no tests ran on it" >&2
    echo "$1 failed" >"$dir/setup-failed"
    exit 1
}

rm -rf "$dir"
mkdir -p "$dir"
"$python" -c 'import platform; print(platform.python_version())' >"$dir/version" ||
    setup_failed "running $python"
"$python" -m venv "$dir" || setup_failed "$python -m venv"
# setuptools: the build backend, for tests/test_packaging.py.
"$dir/bin/python" -m pip install -q --upgrade pip "setuptools>=77" ||
    setup_failed "pip install --upgrade pip setuptools"
"$dir/bin/python" -m pip install -q ".[test]" || setup_failed 'pip install ".[test]"'
exec "$dir/bin/python" -m pytest -q -p no:cacheprovider -n 2 --junitxml="$dir/junit.xml" "$@"
