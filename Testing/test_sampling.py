"""Channel-conditioned sampling, schedulers and tile grids (no trained weights needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MammoSynthLogic import sampling, tiling
from MammoSynthLogic.errors import MammoSynthError
from tiny_bundles import ddpm_scheduler, tiny_unet

torch.set_num_threads(1)
CONFIG = dict(ddpm_scheduler().config)


def test_context_channels_reach_the_unet_unchanged_every_step():
    unet = tiny_unet(3, 16)
    ctx = torch.rand(2, 2, 16, 16) * 2 - 1
    ctx_before = ctx.clone()
    seen = []
    unet.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, 1:].clone()))
    gens = sampling.generators(0, [0, 1])
    out = sampling.sample(sampling.unet_predictor(unet, ctx), sampling.make_scheduler("ddim", CONFIG),
                          sampling.randn((2, 1, 16, 16), gens), gens, 6, eta=1.0)
    assert len(seen) == 6 and all(torch.equal(s, ctx_before) for s in seen)
    assert torch.equal(ctx, ctx_before) and out.shape == (2, 1, 16, 16)


def test_batched_tiles_equal_tiles_one_by_one_with_known_pixels():
    unet = tiny_unet(3, 16)
    ctx = torch.rand(3, 2, 16, 16)
    known = torch.rand(3, 1, 16, 16)
    mask = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    mask[0, :, :4] = True
    mask[2, :, :, :4] = True
    keys = [("mid", 0, 0), ("mid", 0, 1), ("mid", 1, 0)]

    def run(idx):
        gens = sampling.generators(7, [keys[i] for i in idx])
        return sampling.sample(sampling.unet_predictor(unet, ctx[idx]), sampling.make_scheduler("ddim", CONFIG),
                               sampling.randn((len(idx), 1, 16, 16), gens), gens, 5, eta=1.0,
                               known=known[idx], known_mask=mask[idx])

    batched = run([0, 1, 2])
    single = torch.cat([run([i]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-3, rtol=1e-3)  # float rounding of batched convs only
    assert torch.equal(batched[mask], known[mask]), "finished pixels must come back exactly"


@pytest.mark.parametrize("kind,steps,eta", [("ddpm", 1000, 0.0), ("ddim", 50, 0.0), ("ddim", 50, 1.0), ("dpm++", 25, 0.0),
                                            ("sde-dpm++", 25, 0.0)])
def test_each_sampler_reaches_the_data_distribution_with_an_exact_denoiser(kind, steps, eta):
    """Gaussian data N(mu, sd²): the optimal noise prediction is analytic; every sampler must land on mu, sd."""
    mu, sd = 0.2, 0.3
    scheduler = sampling.make_scheduler(kind, CONFIG)
    acp_all = scheduler.alphas_cumprod

    def oracle(x, t):
        a = acp_all[int(t)]
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * sd ** 2 + 1 - a)

    gens = [torch.Generator().manual_seed(1)]
    x = sampling.sample(oracle, scheduler, sampling.randn((1, 1, 64, 64), gens), gens, steps, eta=eta)
    assert abs(float(x.mean()) - mu) < 0.03
    assert abs(float(x.std()) - sd) < 0.05 * (3 if kind == "ddim" and eta == 0 else 1)


def test_scheduler_pitfalls_are_handled():
    assert sampling.make_scheduler("ddim", CONFIG).config.clip_sample is False
    dpm = sampling.make_scheduler("dpm++", CONFIG)
    assert dpm.config.thresholding is True and dpm.config.algorithm_type == "dpmsolver++"
    assert sampling.make_scheduler("sde-dpm++", CONFIG).config.algorithm_type == "sde-dpmsolver++"
    with pytest.raises(MammoSynthError, match="unknown sampler"):
        sampling.make_scheduler("euler", CONFIG)


def test_seeds_are_derived_per_tile():
    assert sampling.derive_seed(5, "mid", 0, 1) == sampling.derive_seed(5, "mid", 0, 1)
    assert len({sampling.derive_seed(5, "mid", i, j) for i in range(10) for j in range(10)}) == 100
    assert sampling.derive_seed(5, "mid", 0, 1) != sampling.derive_seed(6, "mid", 0, 1)


@pytest.mark.parametrize("length,size,overlap", [(100, 32, 8), (96, 32, 8), (32, 32, 8), (3840, 256, 32), (1280, 256, 32)])
def test_grid_covers_every_pixel_with_at_least_the_overlap(length, size, overlap):
    starts = tiling.positions(length, size, overlap)
    covered = np.zeros(length, bool)
    for p in starts:
        covered[p:p + size] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == max(0, length - size)
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_wave_tiles_overlap_only_where_earlier_waves_finished():
    tiles = tiling.grid(100, 100, 32, 8)
    done = np.zeros((100, 100), bool)
    def footprint(t):
        m = np.zeros_like(done)
        m[t.slices] = True
        return m

    for wave in tiling.wavefronts(tiles):
        for a in wave:
            for b in wave:
                shared = footprint(a) & footprint(b)
                if a is not b:
                    assert done[shared].all(), f"tiles {a} and {b} share pixels no earlier wave finished"
        for a in wave:
            done[a.slices] = True
    assert done.all()


def test_blend_weights_are_smooth_positive_and_symmetric():
    w = tiling.ramp_weights(32, 8)
    assert w.min() > 0 and w.max() == 1 and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert np.all(np.diff(w[16, :8]) > 0)
    total = tiling.weight_sum(tiling.grid(100, 100, 32, 8), (100, 100), w)
    assert total.min() > 0


def test_seam_mse_sees_a_step_at_a_tile_border():
    tiles = tiling.grid(64, 64, 32, 0)
    img = np.zeros((64, 64), np.float32)
    img[:, 32:] = 1.0
    assert tiling.seam_mse(img, tiles) > 0.1 and tiling.seam_mse(img, tiles, inside=True) == 0.0


@pytest.mark.parametrize("kind", ["dpm++", "sde-dpm++", "ddim", "ddpm"])
def test_strength_enters_the_schedule_below_strength_T_from_the_start_image(kind):
    """An oracle that knows the clean image: sampling from `start` with strength 0.5 runs only the steps below
    t = 500 and ends at `start` (so the noise level it was entered at matched the schedule)."""
    start = torch.rand(1, 1, 8, 8) * 2 - 1
    scheduler = sampling.make_scheduler(kind, CONFIG)
    acp = scheduler.alphas_cumprod
    seen = []

    def oracle(x, t):
        seen.append(int(t))
        a = acp[int(t)]
        return (x - a.sqrt() * start) / (1 - a).sqrt()

    gens = sampling.generators(0, [0])
    out = sampling.sample(oracle, scheduler, sampling.randn((1, 1, 8, 8), gens), gens, 10, start=start, strength=0.5)
    assert seen and max(seen) < 500 and len(seen) < 10
    torch.testing.assert_close(out, start, atol=2e-3, rtol=0)
    with pytest.raises(MammoSynthError, match="too low"):
        sampling.sample(oracle, sampling.make_scheduler(kind, CONFIG), sampling.randn((1, 1, 8, 8), gens), gens, 10,
                        start=start, strength=0.0)
