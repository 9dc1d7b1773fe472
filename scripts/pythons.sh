#!/usr/bin/env bash
# Prints the CPython interpreters to test with, one per line: every pyenv
# CPython from 3.9 up (newest patch release of each minor version), or
# python3 when there is no pyenv.  Fails, saying why, when there is none.
# (CPython 3.14 and 3.15 come from the Debian sid root: scripts/sid-root.sh.)
set -euo pipefail

at_least_3_9='import sys; sys.exit(sys.version_info < (3, 9))'
root="${PYENV_ROOT:-$HOME/.pyenv}"
found=0
if [ -d "$root/versions" ]; then
    # The newest patch release of each minor version, oldest minor first.
    newest_per_minor="$(
        for dir in "$root"/versions/3.*.*; do
            name="${dir##*/}"
            if [[ "$name" =~ ^3\.[0-9]+\.[0-9]+$ ]]; then echo "$name"; fi
        done | sort -V | awk -F. '{ newest[$1 "." $2] = $0 } END { for (m in newest) print newest[m] }' |
            sort -V
    )"
    for version in $newest_per_minor; do
        minor="${version%.*}"
        [ "$(printf '%s\n3.9\n' "$minor" | sort -V | head -1)" = "3.9" ] || continue
        exe="$root/versions/$version/bin/python3"
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
