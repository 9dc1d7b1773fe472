#!/usr/bin/env bash
# Prints the CPython interpreters to test with, one per line: every pyenv
# CPython from 3.9 up (newest patch release of each minor version), or
# python3 when there is no pyenv.  Fails, saying why, when there is none.
set -euo pipefail

at_least_3_9='import sys; sys.exit(sys.version_info < (3, 9))'
root="${PYENV_ROOT:-$HOME/.pyenv}"
found=0
if [ -d "$root/versions" ]; then
    for minor in $(ls "$root/versions" | grep -E '^3\.[0-9]+\.[0-9]+$' | cut -d. -f1,2 | sort -u -V); do
        [ "$(printf '%s\n3.9\n' "$minor" | sort -V | head -1)" = "3.9" ] || continue
        newest=$(ls "$root/versions" | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -1)
        exe="$root/versions/$newest/bin/python3"
        if [ -x "$exe" ]; then
            echo "$exe"
            found=1
        fi
    done
fi
if [ "$found" -eq 0 ]; then
    exe=$(command -v python3 || true)
    if [ -n "$exe" ] && "$exe" -c "$at_least_3_9" 2>/dev/null; then
        echo "$exe"
    else
        echo "dhatc: no CPython >= 3.9: none in $root/versions (pyenv)," \
            "and python3 on PATH is ${exe:-missing}${exe:+ (older than 3.9)}" >&2
        exit 1
    fi
fi
