"""scripts/gpu_check.sh: the CPU smoke run (tiny sizes) prints the JSON a GPU run prints, with counts that match the
tiling grids; without CUDA and without --cpu-smoke it is a one-line error."""
from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from training_helpers import ROOT, subprocess_env

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_cpu_smoke_run_prints_every_figure():  # ~15 s on 2 cores
    proc = subprocess.run([str(SCRIPT), "--cpu-smoke", "--train-steps", "1"], capture_output=True, text=True,
                          env=subprocess_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["device"] == "cpu" and report["smoke"] is True
    assert report["parameters"]["sd2-base-unet"] == 865910724
    generate = report["generate"]
    for preset in ("fast", "paper"):  # every tile denoised: the grids give the exact number of U-Net calls
        assert generate[preset]["unet_forwards"] == generate[preset]["expected_unet_forwards"] > 0
        assert generate[preset]["wall_s"] > 0 and generate[preset]["peak_memory_mb"] > 0
    assert generate["paper"]["unet_forwards"] > generate["fast"]["unet_forwards"]  # fast enters at strength 0.6
    assert set(report["train"]) == {"mambo-global", "mambo-local", "mambo-patch", "dualview", "mame-text",
                                    "mame-inpaint"}
    for role, figures in report["train"].items():
        assert figures["weights_moved"] and math.isfinite(figures["loss"]) and figures["images_per_s"] > 0, role
    text = report["text2mammo"]
    assert text["image_shape"] == [text["size"], text["size"], 3] and text["s_per_image"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line():
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: no CUDA device") and proc.stderr.count("\n") == 1
