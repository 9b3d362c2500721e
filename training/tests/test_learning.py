"""A small model trained briefly on generated discs samples discs whose radii follow the training distribution.

This runs the whole chain (cache -> dataset -> fit -> EMA export -> bundle -> the engine's sampler) and catches
schedule, scaling and channel mix-ups that a falling loss curve hides.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import disc_image, tiny_config, write_cache
from scipy import ndimage, stats

from mammosynth_training.fit import train

SIZE, R_LOW, R_HIGH = 16, 2.5, 6.0


def _radius(image01: np.ndarray) -> float:
    """Radius of the largest bright blob, from its area."""
    labels, n = ndimage.label(image01 > 0.4)
    if n == 0:
        return 0.0
    return float(np.sqrt(np.bincount(labels.ravel())[1:].max() / np.pi))


def _main_blob_fraction(image01: np.ndarray) -> float:
    """Share of the bright pixels that lie in the largest connected blob (1 = a single disc)."""
    labels, n = ndimage.label(image01 > 0.4)
    return float(np.bincount(labels.ravel())[1:].max() / max((labels > 0).sum(), 1)) if n else 0.0


@pytest.mark.slow
def test_trained_model_samples_match_disc_radii(tmp_path):
    rng = np.random.default_rng(1)
    radii = rng.uniform(R_LOW, R_HIGH, 400)
    images = [disc_image(SIZE, r, *rng.uniform(6.5, 9.5, 2)) for r in radii]
    cache = write_cache(tmp_path / "cache", images)
    config = tiny_config(tmp_path / "run", cache, role="mambo-global", image_size=SIZE, batch_size=32,
                         max_steps=700, learning_rate=2e-3, lr_warmup_steps=50, ema_decay=0.995, log_every=100,
                         checkpoint_every=700, export_dir=str(tmp_path / "bundle"))
    config.model.block_out_channels = (32, 64)
    result = train(config, resume="none")
    assert result["loss"] < 0.1

    from MammoSynthLogic.bundles import load_bundle
    from MammoSynthLogic.sampling import generators, make_scheduler, randn, sample, unet_predictor

    bundle = load_bundle(tmp_path / "bundle")
    torch.set_num_threads(1)
    gens = generators(0, range(200))
    x = sample(unet_predictor(bundle.unet, None, chunk=200), make_scheduler("ddim", bundle.scheduler_config),
               randn((200, 1, SIZE, SIZE), gens), gens, 50)
    generated = ((x[:, 0].numpy() + 1) / 2).clip(0, 1)
    sampled = np.array([_radius(g) for g in generated])
    real = np.array([_radius(im) for im in images])
    assert stats.ks_2samp(sampled, real).pvalue > 0.01, (np.percentile(sampled, [5, 50, 95]), np.percentile(real, [5, 50, 95]))
    # disc-shaped: one blob on a black background, as bright as the training discs
    assert np.mean([_main_blob_fraction(g) > 0.9 for g in generated]) > 0.7  # 0.78 measured
    blob = np.concatenate([g[g > 0.4] for g in generated])
    assert abs(np.median(blob) - 0.8) < 0.15
    outside = np.concatenate([g[ndimage.binary_dilation(g > 0.4, iterations=2) == 0] for g in generated])
    assert np.mean(outside < 0.1) > 0.9
