#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs on this machine (Debian) the system packages that dhatc's build,
# demo and tests need: the list in scripts/system-packages.sh, which the sid
# root of scripts/sid-root.sh gets too.  Skips apt when everything is there.
set -euo pipefail
source "$(dirname "$0")/system-packages.sh"

missing=()
for pkg in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "dhatc: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
