#!/usr/bin/env bash
# One-shot check of a CUDA machine: MAMBO 3840² generation (fast and paper presets), training throughput per role
# at the paper batch sizes, and text2mammo at 512² with Stable Diffusion 2-base-size models; prints JSON.
#   scripts/gpu_check.sh [--skip generate,train,text2mammo] [--train-steps 3] [--compile no]
#   scripts/gpu_check.sh --cpu-smoke        # tiny sizes on the CPU, seconds (the test suite runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export PYTHONPATH="$PWD:$PWD/training${PYTHONPATH:+:$PYTHONPATH}"
exec python -m mammosynth_training.gpu_check "$@"
