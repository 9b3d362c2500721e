#!/usr/bin/env bash
# Sets up everything on a fresh machine: a virtual environment in .venv with the CPU build of PyTorch,
# the engine, the training package, the test tools, and Debian's dicom3tools (the DICOM validator).
# GPU users: create the venv yourself, install the CUDA build of torch (see README), then run this script;
# it keeps any torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  # The pinned CPU wheel: an unpinned "torch" pulls a multi-GB CUDA build.
  python -m pip install --quiet "torch==2.13.0"
fi
python -m pip install --quiet -e ".[test,reader,slicer-test]" -e ./training
if ! command -v dciodvfy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dicom3tools >/dev/null
fi
