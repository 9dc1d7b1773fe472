#!/usr/bin/env bash
# System packages dhatc's build, demo and tests need (Debian): a C compiler,
# Valgrind (DHAT is the tests' oracle, its viewer their client), a headless
# Chromium to load files into that viewer.  libunwind is reserved for native
# (C) frames in stacks: nothing builds against it yet.
# Skips apt when everything is already there.
set -euo pipefail

packages=(gcc make valgrind chromium-headless-shell libunwind-dev)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "dhatc: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
