#!/usr/bin/env bash
# Installs what the project needs (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
export QT_QPA_PLATFORM=offscreen
python -m pytest -q -p no:cacheprovider "$@"
