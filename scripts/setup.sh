#!/usr/bin/env bash
# Sets up everything on a fresh machine: a virtual environment in .venv with the CPU build of PyTorch,
# the engine, the training package, the test tools, and the Debian tools the tests run against.
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
# Debian tools the tests run against: the DICOM validator, dcmtk, and Orthanc (a real PACS on localhost,
# started and stopped by the test fixture).
if ! command -v dciodvfy >/dev/null 2>&1 || ! command -v storescu >/dev/null 2>&1 \
    || ! command -v Orthanc >/dev/null 2>&1 || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    dicom3tools dcmtk orthanc orthanc-dicomweb >/dev/null
fi
