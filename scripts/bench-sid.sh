#!/usr/bin/env bash
# Benchmarks dhatc on the Debian sid root's CPython 3.14 and 3.15 (the root of
# scripts/sid-root.sh, made first if needed), one benchmarks/run.py run per
# version with every tool interleaved (scripts/bench-python.sh), for
# BENCHMARKS.md's section "CPython 3.14 and 3.15".
#   scripts/bench-sid.sh [benchmarks/run.py args]   (default: --repeat 9 --markdown)
# DHATC_BENCH_PYTHONS="3.15" picks the versions.  Reports: stdout, and
# .venvs/bench-sid-pyX.Y/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$#" -gt 0 ] || set -- --repeat 9 --markdown
read -ra versions <<<"${DHATC_BENCH_PYTHONS:-$(bash scripts/sid-root.sh pythons)}"
bash scripts/sid-root.sh ensure
status=0
for version in "${versions[@]}"; do
    echo "=== benchmarks on CPython $version in the Debian sid root ($(date -u +%F))"
    bash scripts/sid-root.sh run bash scripts/bench-python.sh "python$version" \
        ".venvs/bench-sid-py$version" "$@" || status=1
done
exit "$status"
