"""Two CPU processes (torchrun, gloo): both ranks train on different samples and the exported bundle loads."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from training_helpers import subprocess_env, tiny_config

from mammosynth_training.config import save_config


def test_two_process_torchrun_run(tmp_path, disc_cache):
    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=str(sys.prefix) + "/bin")
    if torchrun is None:
        pytest.fail("torchrun not found (it comes with torch)")
    config = tiny_config(tmp_path / "run", disc_cache, role="mambo-patch", max_steps=3, log_sample_ids=True,
                         export_dir=str(tmp_path / "bundle"), checkpoint_every=2)
    save_config(config, tmp_path / "cfg.yaml")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mammosynth_training.fit",
                           "--config", str(tmp_path / "cfg.yaml")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ids = [json.loads((tmp_path / "run" / f"sample_ids_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == 3 * config.batch_size
    assert not set(ids[0]) & set(ids[1])  # the ranks drew different samples
    assert {i % 2 for i in ids[0]} == {0} and {i % 2 for i in ids[1]} == {1}

    from MammoSynthLogic.bundles import load_bundle

    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.role == "mambo-patch" and bundle.manifest["step"] == 3 and bundle.k == 2
    assert bundle.manifest["in_channels"] == 3 and bundle.manifest["config"]["max_steps"] == 3
    out = bundle.unet(torch.zeros(1, 3, 16, 16), torch.tensor([10])).sample
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
