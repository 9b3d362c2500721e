#!/usr/bin/env bash
# Installs what the project needs and runs the main job on the embedded default model:
# a synthetic 1024x1024 mammogram written to out/synthetic.dcm (and a PNG preview beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
mkdir -p out
mammosynth generate --size 1024 --seed 7 --out out/synthetic.dcm
mammosynth generate --size 1024 --seed 7 --out out/synthetic.png
echo "wrote out/synthetic.dcm and out/synthetic.png"
