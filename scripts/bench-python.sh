#!/usr/bin/env bash
# Runs the benchmarks on one CPython:
#   scripts/bench-python.sh PYTHON DIR [benchmarks/run.py args]
# makes a fresh virtualenv DIR with dhatc installed by pip, and memray if it
# installs from PyPI on this version (without it, run.py reports the memray
# tools as not installed and measures the others), then runs
# benchmarks/run.py there: every tool interleaved in one run.  The report
# goes to stdout and to DIR/results.txt.  scripts/bench-sid.sh runs it in
# the Debian sid root for CPython 3.14 and 3.15.
set -euo pipefail
python="$1"
dir="$2"
shift 2
cd "$(dirname "$0")/.."

rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install -q --upgrade pip "setuptools>=77"
"$dir/bin/python" -m pip install -q . || {
    echo "dhatc: pip install . failed for $python" >&2
    exit 1
}
if ! "$dir/bin/python" -m pip install -q memray >"$dir/memray-install.log" 2>&1; then
    echo "dhatc: memray does not install from PyPI on $python (the end of" \
        "$dir/memray-install.log follows); measuring without it" >&2
    tail -n 5 "$dir/memray-install.log" >&2
fi
"$dir/bin/python" - <<'PY' >&2
import importlib.metadata as metadata
import platform

installed = []
for name in ("dhatc", "memray"):
    try:
        installed.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        installed.append(f"no {name}")
print(f"CPython {platform.python_version()}: " + ", ".join(installed))
PY
"$dir/bin/python" benchmarks/run.py "$@" | tee "$dir/results.txt"
