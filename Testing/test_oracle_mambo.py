"""MAMBO pipeline driven by exact denoisers: stand-in U-Nets whose correct output is known analytically.

Point mass: the clean tile is the aligned context channel (the coarser stage under the tile) plus `offset`, so
its exact noise prediction is ε = (x_t − √ᾱ·x0) / √(1−ᾱ) and every correct sampler, tiling and blend lands on
that image: the mid canvas is the global image upsampled bilinearly, the full canvas the mid one upsampled. Gaussian: each pixel
is N(x0, sd²) with the analytic posterior noise prediction, so the samples' spread and their dependence on the
per-step noise (DDIM eta) are known too.
"""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from MammoSynthLogic import sampling
from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.pipelines import mambo
from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S, K = 16, 3
MID, FULL = S * K, S * K * K
CONFIG = dict(ddpm_scheduler().config)
ACP = ddpm_scheduler().alphas_cumprod
# DPM-Solver++ / DDIM on an exact point-mass denoiser end on x0 up to float32 rounding of the update coefficients;
# 2e-3 in [0, 1] is far below what a wrong blend, shift or mirror gives (> 0.05 at the affected pixels)
ATOL = 2e-3


class Oracle(torch.nn.Module):
    """Exact noise prediction for clean data x0 = target(context) (+ N(0, sd²) per pixel when sd > 0)."""

    def __init__(self, target, sd: float = 0.0):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.target, self.sd, self.seen, self.contexts = target, sd, [], []

    def forward(self, x: torch.Tensor, t) -> types.SimpleNamespace:
        self.seen.append((int(t), x.shape[0]))
        self.contexts.append(x[:, 1:3].clone())
        a, x0 = ACP[int(t)], self.target(x)
        if self.sd == 0:
            eps = (x[:, :1] - a.sqrt() * x0) / (1 - a).sqrt()
        else:
            eps = (1 - a).sqrt() * (x[:, :1] - a.sqrt() * x0) / (a * self.sd ** 2 + 1 - a)
        return types.SimpleNamespace(sample=eps)


def aligned_plus(offset: float = 0.0):
    """Target: the aligned context channel (index 3) plus `offset`."""
    return lambda x: x[:, 3:4] + offset


def pipeline(global_target: np.ndarray | None = None, offset: float = 0.0, sd: float = 0.0) -> MamboPipeline:
    """Three oracle bundles; the global one is a point mass on `global_target` (model space)."""
    g = None if global_target is None else torch.from_numpy(global_target)[None, None]

    def bundle(role: str, unet) -> Bundle:
        manifest = {"role": role, "image_size": S, "k": K, "aligned_context": role != "mambo-global"}
        return Bundle(manifest=manifest, path=Path(role), unet=unet, scheduler_config=CONFIG)

    return MamboPipeline(bundle("mambo-global", Oracle(lambda x: g.expand(x.shape[0], -1, -1, -1))),
                         bundle("mambo-local", Oracle(aligned_plus(offset), sd)),
                         bundle("mambo-patch", Oracle(aligned_plus(offset), sd)))


def up(image: np.ndarray, n: int) -> np.ndarray:
    """Bilinear upsampling with pixel centres aligned (the analytic expectation, computed independently)."""
    return F.interpolate(torch.from_numpy(image)[None, None], size=(n, n), mode="bilinear",
                         align_corners=False)[0, 0].numpy()


def asymmetric_global() -> np.ndarray:
    """[0, 1] global image: a breast against the left edge, brighter at the top, a bright dot at the lower left."""
    yy, xx = np.mgrid[:S, :S] / S
    img = np.where((yy - 0.5) ** 2 + xx ** 2 < 0.42 ** 2, 0.75 - 0.4 * yy, 0.0)
    img[11:13, 1:3] = 1.0
    return img.astype(np.float32)


def tissue_global() -> np.ndarray:
    """[0, 1] global image of tissue only (0.35-0.65): every tile active, samples far from ±1 in model space."""
    yy, xx = np.mgrid[:S, :S] / S
    return (0.35 + 0.3 * xx * (1 - yy)).astype(np.float32)


def expected_chain(g01: np.ndarray, keep_background: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mid and full images ([0, 1]) the point-mass oracle must give; with `keep_background` (strength < 1), pixels
    where the upsampled coarser stage is background (< tolerance) or outside its dilated breast region are background
    (the region is the breast-mask module's, tested there)."""
    def stage(coarse01: np.ndarray, n: int) -> np.ndarray:
        fine = up(coarse01, n)
        keep = (fine >= mambo.BACKGROUND_TOLERANCE) & (mambo.background_mask(coarse01, (n, n)) > 0.5)
        return np.where(keep, fine, 0.0) if keep_background else fine

    mid = stage(g01, MID)
    return mid, stage(mid, FULL)


def quick(**kw) -> MamboSettings:
    return MamboSettings.preset(kw.pop("preset", "fast"), **{"steps": 10, "global_steps": 10, **kw})


@pytest.mark.parametrize("tiling", ["parallel", "wavefront", "sequential"])
@pytest.mark.parametrize("sampler,strength", [("dpm++", 0.6), ("ddim", 1.0)])
def test_every_tiling_lands_on_the_exact_image(tiling, sampler, strength):
    """Upscale of an asymmetric image: mid = global upsampled, full = mid upsampled, the right way round."""
    g01 = asymmetric_global()
    pipe = pipeline()
    result = pipe(FULL, 0, quick(tiling=tiling, sampler=sampler, strength=strength), global01=g01)
    mid, full = expected_chain(g01, keep_background=strength < 1)
    np.testing.assert_allclose(result.mid, mid, atol=ATOL)
    np.testing.assert_allclose(result.image, full, atol=ATOL)
    assert result.tiles["full"][0] < result.tiles["full"][1], "background tiles must have been skipped"


def test_generate_samples_the_global_image_then_each_stage():
    """From noise: the global point-mass oracle gives its image (SDE-DPM-Solver++), the stages upsample it."""
    g01 = asymmetric_global()
    result = pipeline(global_target=g01 * 2 - 1)(FULL, 3, quick())
    np.testing.assert_allclose(result.global_image, g01, atol=ATOL)
    mid, full = expected_chain(g01, keep_background=True)
    np.testing.assert_allclose(result.image, full, atol=ATOL)


def test_upscale_keeps_orientation_of_an_asymmetric_image():
    """A real image's s×s version is the context: the result matches it, not its mirror or transpose."""
    from MammoSynthLogic.preparation import resize

    yy, xx = np.mgrid[:FULL, :FULL] / FULL
    real = np.where((yy - 0.5) ** 2 + xx ** 2 < 0.45 ** 2, 0.8 - 0.5 * yy - 0.2 * xx, 0.0).astype(np.float32)
    real[100:110, 5:15] = 1.0  # lower left marker
    result = pipeline().upscale(real, 1, quick(tiling="wavefront"))
    _, full = expected_chain(resize(real, (S, S)), keep_background=True)
    np.testing.assert_allclose(result.image, full, atol=ATOL)
    left, right = result.image[:, :FULL // 2].mean(), result.image[:, FULL // 2:].mean()
    top, bottom = result.image[:FULL // 2].mean(), result.image[FULL // 2:].mean()
    assert left > 3 * right and top > bottom
    assert np.abs(result.image - real).mean() < np.abs(result.image - real[:, ::-1]).mean() / 3


def active_cover(coarse01: np.ndarray, n: int) -> tuple[np.ndarray, int, int]:
    """Pixels covered by tiles that touch the coarser stage's dilated breast region; active and all tile counts."""
    region = mambo.background_mask(coarse01, (n, n))
    grid = mambo.tiling.grid(n, n, S, S // 8)
    covered = np.zeros((n, n), bool)
    active = [t for t in grid if region[t.slices].any()]
    for t in active:
        covered[t.slices] = True
    return covered, len(active), len(grid)


@pytest.mark.parametrize("tiling", ["parallel", "sequential"])
def test_background_tiles_are_skipped_and_stay_background(tiling):
    """Target = context + 0.4: a denoised tile never stays background, so the background pixels show exactly which
    tiles were skipped: those whose crop of the coarser stage's dilated breast region is empty."""
    g01 = asymmetric_global()
    pipe = pipeline(offset=0.4)
    result = pipe(FULL, 0, quick(tiling=tiling, strength=1.0), global01=g01)
    for stage, image, coarse01, n in (("mid", result.mid, g01, MID), ("full", result.image, result.mid, FULL)):
        covered, active, total = active_cover(coarse01, n)
        assert result.tiles[stage] == (active, total) and 0 < active < total
        assert np.all(image[~covered] == 0.0), f"{stage}: skipped tiles must stay background"
        assert image[covered].min() > 0.15, f"{stage}: every active tile is denoised"
        np.testing.assert_allclose(image[covered], (np.clip(up(coarse01 * 2 - 1, n) + 0.4, -1, 1)[covered] + 1) / 2,
                                   atol=ATOL)
    covered, active, _ = active_cover(g01, MID)
    shifted = [t for t in mambo.tiling.grid(MID, MID, S, S // 8, shifted=True) if covered[t.slices].any()]
    per_step = [active, len(shifted) if tiling == "parallel" else active]  # parallel: the grids alternate
    forwards: dict[int, int] = {}
    for t, n in pipe.local.unet.seen:
        forwards[t] = forwards.get(t, 0) + n
    last = mambo.BOTH_GRIDS_BELOW * 1000  # the last steps blend both grids
    both = sum(per_step) if tiling == "parallel" else active
    assert list(forwards.values()) == [both if t < last else per_step[i % 2] for i, t in enumerate(forwards)], \
        "one forward per active tile of the step's grid(s)"
    assert tiling != "parallel" or len(set(forwards.values())) == 3 and min(forwards) < last


@pytest.mark.parametrize("sampler", ["dpm++", "ddim"])
def test_strength_enters_the_schedule_below_strength_T(sampler):
    """strength 0.5 with a 10-step schedule: the tile models are asked only below t = 500, 5 times per stage."""
    pipe = pipeline()
    result = pipe(FULL, 0, quick(sampler=sampler, strength=0.5), global01=asymmetric_global())
    for unet in (pipe.local.unet, pipe.patch.unet):
        steps = sorted({t for t, _ in unet.seen}, reverse=True)
        assert steps and max(steps) < 500 and len(steps) == 5, steps
    whole = pipeline()
    full = whole(FULL, 0, quick(sampler=sampler, strength=1.0), global01=asymmetric_global())
    assert max(t for t, _ in whole.local.unet.seen) > 900, "strength 1 starts from pure noise"
    def per_step(unet) -> list[int]:
        forwards: dict[int, int] = {}
        for t, n in unet.seen:
            forwards[t] = forwards.get(t, 0) + n
        return list(forwards.values())

    entered, whole_steps = per_step(pipe.patch.unet), per_step(whole.patch.unet)
    assert entered[:4] == whole_steps[:4], "the same tiles per step, half the steps"
    assert entered[4] == whole_steps[-1] == sum(whole_steps[:2]), "the last step (t = 99) on both grids"


@pytest.mark.parametrize("tiling", ["parallel", "sequential"])
def test_ddim_eta_draws_fresh_noise_each_step(tiling):
    """Gaussian data N(context, sd²): with eta = 0 (an ODE) the residuals are a fixed function of the initial noise,
    with eta = 1 they come from the per-step noise and are nearly independent of it (correlation of order √ᾱ_T), so
    eta = 1 and eta = 0 runs with one seed must be almost uncorrelated (eta ignored: identical, correlation 1). Both
    keep a spread near sd (25 steps of x̂0 = posterior mean shrink it somewhat, measured 0.63-0.7·sd)."""
    sd = 0.15
    g01 = tissue_global()

    def residual(eta: float) -> np.ndarray:
        result = pipeline(sd=sd)(FULL, 4, quick(sampler="ddim", eta=eta, steps=25, strength=1.0, tiling=tiling),
                                 global01=g01)
        return (result.mid - up(g01, MID)) * 2  # model space

    r1, r0 = residual(1.0), residual(0.0)
    assert 0.5 * sd < r0.std() < 1.1 * sd and 0.5 * sd < r1.std() < 1.1 * sd
    assert abs(np.corrcoef(r1.ravel(), r0.ravel())[0, 1]) < 0.3


def test_thresholding_leaves_samples_unchanged_where_inactive(monkeypatch):
    """DPM-Solver++ clips its x̂0 to ±1 on the canvas taken as one image (sample_max_value 1): with Gaussian data well
    inside [-1, 1] (all tissue, x̂0 never beyond ±0.6) the clip is the identity, so the samples equal those without
    thresholding bit for bit (the same computation otherwise). The switch reaches both the tile schedulers and the
    canvas's in-place solver (that it then does not clip: test_sampling's comparison with diffusers)."""
    real = sampling.make_scheduler
    made = []

    def without(kind, config, **kwargs):
        scheduler = real(kind, config, **kwargs)
        scheduler.register_to_config(thresholding=False)
        made.append(scheduler)
        return scheduler

    settings = quick(strength=1.0, sampler="dpm++")
    g01 = tissue_global()
    with_clip = pipeline(sd=0.05)(FULL, 2, settings, global01=g01)
    monkeypatch.setattr(mambo, "make_scheduler", without)
    monkeypatch.setattr(sampling, "make_scheduler", without)
    no_clip = pipeline(sd=0.05)(FULL, 2, settings, global01=g01)
    assert any(type(m).__name__ == "InPlaceDPMSolver" for m in made), "the canvas's scheduler was switched too"
    assert np.array_equal(with_clip.image, no_clip.image) and np.array_equal(with_clip.mid, no_clip.mid)


def test_each_tile_sees_the_global_shifted_to_its_centre_and_the_mid_crop_around_it():
    """MAMBO's context channels, computed here by padding and slicing: local tiles get the global image moved so that
    the tile centre is at its centre, patches the s × s mid-resolution crop centred on them; both get the global."""
    g = asymmetric_global() * 2 - 1
    pipe = pipeline()
    steps = 3
    result = pipe(FULL, 0, quick(tiling="sequential", steps=steps, strength=1.0, sampler="ddim", skip_background=False),
                  global01=(g + 1) / 2)
    mid = result.mid * 2 - 1
    for unet, source, side in ((pipe.local.unet, g, MID), (pipe.patch.unet, mid, FULL)):
        tiles = mambo.tiling.grid(side, side, S, S // 8)
        first_calls = unet.contexts[::steps]  # sequential: one tile per call, `steps` calls each
        assert len(first_calls) == len(tiles)
        padded = np.pad(source, S, constant_values=-1.0)
        n = source.shape[0]
        for tile, ctx in zip(tiles, first_calls):
            top, left = round((tile.y + S / 2) / side * n - S / 2), round((tile.x + S / 2) / side * n - S / 2)
            np.testing.assert_allclose(ctx[0, 0].numpy(), padded[top + S:top + 2 * S, left + S:left + 2 * S],
                                       atol=1e-5)  # the mid image went through [0, 1] and back
            np.testing.assert_allclose(ctx[0, 1].numpy(), g, atol=1e-6)
