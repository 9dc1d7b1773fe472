#!/usr/bin/env bash
# Installs everything (system packages, a virtualenv with dhatc) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
python="$(bash scripts/pythons.sh | tail -1)"
venv=".venvs/demo"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q .
"$venv/bin/python" examples/demo.py
