"""Anomaly maps against stand-in models with known answers, on a right breast (chest wall on the right, so the
prepared frame is mirrored): a global model that knows the healthy breast reconstructs it exactly, so the map must
sit on the inserted lesion in source pixels; λ, steps, draws, invert and the floor each change what they should."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from MammoSynthLogic.anomaly import AnomalySettings, insert_mass, iou
from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.pipelines.anomaly import AnomalyPipeline
from MammoSynthLogic.preparation import prepare, resize
from oracles import asymmetric_breast, channel, image, oracle_bundle
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S, K = 64, 4
ACP = ddpm_scheduler().alphas_cumprod
HEALTHY = asymmetric_breast(400, 300, side="right")
CENTRE, RADIUS = (130, 230), 24  # upper half, near the chest wall on the right: no mirror of it lands there


def with_lesion(contrast: float, radius: float = RADIUS) -> tuple[np.ndarray, np.ndarray]:
    image01, truth = insert_mass(HEALTHY, CENTRE, radius, contrast)
    return image01, truth


def healthy_global(size: int = S) -> Bundle:
    """A global model of healthy tissue that knows this breast: x̂0 = the healthy prepared image at s."""
    known = resize(prepare(HEALTHY).pixels, (size, size)) * 2 - 1
    return oracle_bundle("mambo-global", size, image(torch.from_numpy(known)[None]), k=K)


def run(image01: np.ndarray, global_=None, patch=None, seed: int = 0, **settings):
    pipe = AnomalyPipeline(global_ or healthy_global(), patch)
    return pipe(prepare(image01), AnomalySettings(**settings), seed)


def near(mask: np.ndarray, truth: np.ndarray, grow: int) -> float:
    """Fraction of `mask` within `grow` px of `truth`."""
    return float((mask & ndimage.binary_dilation(truth, iterations=grow)).sum() / max(1, mask.sum()))


def test_global_map_lies_on_the_lesion_in_source_pixels():
    lesioned, truth = with_lesion(0.25)
    result = run(lesioned, steps=20)
    healthy_working = resize(prepare(HEALTHY).pixels, (S, S))
    # DDPM's last step returns the model's x̂0: the healthy breast, up to float rounding
    np.testing.assert_allclose(result.reconstruction, healthy_working, atol=2e-3)
    assert iou(result.labels, truth) > 0.4 and near(result.labels, truth, 10) > 0.99
    assert iou(result.labels, truth[:, ::-1]) == 0  # not the mirror image


def test_invert_finds_dark_lesions_and_only_then():
    dark, truth = with_lesion(-0.25)
    found = run(dark, steps=10, invert=True)
    assert iou(found.labels, truth) > 0.4 and near(found.labels, truth, 10) > 0.99
    missed = run(dark, steps=10, invert=False)
    assert (missed.labels & truth).sum() < 0.05 * truth.sum()


def test_min_difference_floor_empties_a_map_of_weak_changes():
    lesioned, truth = with_lesion(0.25)
    peak = float(run(lesioned, steps=10).heat.max())
    assert run(lesioned, steps=10, min_difference=peak * 0.5).labels.sum() > 0
    assert run(lesioned, steps=10, min_difference=peak * 1.5).labels.sum() == 0


@pytest.mark.parametrize("lam,steps", [(700, 50), (300, 12), (40, 100)])
def test_lambda_and_steps_set_the_chain(lam, steps):
    """Noised to λ: the first denoising step is at t = λ − 1 and sees the image at that noise level, then
    min(steps, λ) steps go down to t = 0."""
    global_ = healthy_global()
    result = run(with_lesion(0.25)[0], global_=global_, lam=lam, steps=steps)
    ts = [t for _, t in global_.unet.calls]
    assert ts[0] == lam - 1 and ts[-1] == 0 and len(ts) == min(steps, lam) and ts == sorted(ts, reverse=True)
    a = ACP[ts[0]]
    z = (global_.unet.calls[0][0][0, 0] - a.sqrt() * torch.from_numpy(result.working * 2 - 1)) / (1 - a).sqrt()
    assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1) < 0.1  # 4,096 N(0, 1) draws


def gaussian(inp: torch.Tensor, t: int, mu: float = 0.0, sd: float = 0.5) -> torch.Tensor:
    """E[x0 | x_t] for i.i.d. N(mu, sd²) pixels: each draw's reconstruction is a random posterior sample."""
    a = ACP[t]
    return mu + a.sqrt() * sd ** 2 / (a * sd ** 2 + 1 - a) * (inp[:, :1] - a.sqrt() * mu)


def test_draws_average_independent_reconstructions():
    """The spread between two seeds' reconstructions falls as 1/draws (their mean is what the map compares)."""
    global_ = oracle_bundle("mambo-global", S, gaussian, k=K)
    lesioned = with_lesion(0.25)[0]

    def spread(draws: int) -> float:
        a, b = (run(lesioned, global_=global_, seed=seed, lam=700, steps=20, draws=draws).reconstruction
                for seed in (1, 2))
        return float(np.var(a - b))

    ratio = spread(1) / spread(4)
    assert 2.5 < ratio < 6, ratio  # 4 expected; 4,096 pixels give a few percent of sampling error


def test_native_level_finds_a_small_lesion_on_full_resolution_tiles():
    """Patch model that copies its aligned context (the image at 1/k, under the tile): a lesion smaller than k
    pixels' blur is missing from it, so the native map must light up there, in source pixels."""
    lesioned, truth = with_lesion(0.3, radius=8)
    patch = oracle_bundle("mambo-patch", S // 2, channel(3), in_channels=4, k=K, aligned=True)
    result = run(lesioned, global_=healthy_global(S // 2), patch=patch, steps=10, level="native")
    assert result.working.shape == (512, 512)  # s·k² with s = 32: the prepared side, no resampling
    assert result.labels.any() and near(result.labels, truth, 12) > 0.95
    cy, cx = (float(np.mean(v)) for v in np.nonzero(result.labels))
    assert abs(cy - CENTRE[0]) < 8 and abs(cx - CENTRE[1]) < 8
