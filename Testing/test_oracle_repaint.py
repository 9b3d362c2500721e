"""RePaint with the MAMBO patch model against stand-in denoisers with known answers: i.i.d. Gaussian pixels must be
drawn inside the mask exactly as the plain sampler draws them, and a model that copies the real image under the
tile (its aligned context) must give the real image back, on a right breast, with jumps, in every tile overlap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MammoSynthLogic import sampling
from MammoSynthLogic.pipelines.repaint import inpaint_repaint
from oracles import asymmetric_breast, channel, constant, mambo_oracles
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S, K = 32, 4  # canvas s·k² = 512 = the prepared side of a 400 × 300 image: no resampling
ACP = ddpm_scheduler().alphas_cumprod
MU, SD = 0.2, 0.3  # model space
RIGHT = asymmetric_breast(400, 300, side="right")
yy, xx = np.mgrid[:400, :300]
# over the blob of the right breast, across tile borders, and a strip on the chest wall at the image border
MASK = ((yy - 140) ** 2 + (xx - 209) ** 2 < 40 ** 2) | ((abs(yy - 200) < 20) & (xx >= 285))


def gaussian(inp: torch.Tensor, t: int) -> torch.Tensor:
    """E[x0 | x_t] for i.i.d. N(MU, SD²) pixels."""
    a = ACP[t]
    return MU + a.sqrt() * SD ** 2 / (a * SD ** 2 + 1 - a) * (inp[:, :1] - a.sqrt() * MU)


def plain_sampler_spread(sampler: str, steps: int) -> tuple[float, float]:
    """Mean and std the plain sampler (checked against the analytic answer in test_sampling) reaches with the
    same oracle and schedule: strided ancestral chains draw a narrower spread than the data's."""
    gens = [torch.Generator().manual_seed(1)]
    scheduler = sampling.make_scheduler(sampler, dict(ddpm_scheduler().config))

    def predict(x, t):
        a = ACP[int(t)]
        return (x - a.sqrt() * gaussian(x, int(t))) / (1 - a).sqrt()

    x = sampling.sample(predict, scheduler, sampling.randn((1, 1, 128, 128), gens), gens, steps, eta=1.0)
    return float(x.mean()), float(x.std())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_masked_pixels_follow_the_plain_samplers_distribution(sampler):
    bundles = mambo_oracles(S, K, constant(0), constant(0), gaussian)
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=50, sampler=sampler)
    inside = out[MASK] * 2 - 1
    mean, std = plain_sampler_spread(sampler, 50)  # about 0.20, 0.255
    # 5,000 pixels: the standard errors are 0.004 (mean) and 0.003 (std)
    assert abs(float(inside.mean()) - mean) < 0.02 and abs(float(inside.std()) - std) < 0.02
    np.testing.assert_array_equal(out[~MASK], RIGHT[~MASK])


def test_jumps_keep_the_masked_distribution():
    """RePaint's jumps re-noise to the level they jump back to: the marginal stays the plain chain's (too little
    noise would narrow it, too much would widen it)."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), gaussian)
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=50, jumps=3, jump_length=5)
    inside = out[MASK] * 2 - 1
    mean, std = plain_sampler_spread("ddpm", 50)
    assert abs(float(inside.mean()) - mean) < 0.02 and abs(float(inside.std()) - std) < 0.03


@pytest.mark.parametrize("jumps", [1, 2])
def test_a_model_that_copies_its_aligned_context_restores_a_right_breast(jumps):
    """The aligned context is the real image under the tile (at 1/k scale): copying it fills the mask with the
    real image, so any flip, shift or mis-blend of tiles shows against this left-right asymmetric breast."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), channel(3))
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=10, jumps=jumps, jump_length=5)
    np.testing.assert_array_equal(out[~MASK], RIGHT[~MASK])
    # measured 0.0004, max 0.0012 (the 1/k context is bilinear, the image smooth); the mirrored image is 0.76 away
    assert np.abs(out - RIGHT)[MASK].mean() < 0.01
    assert np.abs(out - RIGHT)[MASK].max() < 0.05


def away_from_chest_wall(shift: int):
    """A model trained on left-oriented breasts that draws the tissue `shift` px further from the chest wall
    (to the right in the prepared frame) than its aligned context has it."""
    def clean(inp: torch.Tensor, t: int) -> torch.Tensor:
        ctx = inp[:, 3:4]
        return torch.cat([ctx[..., :1].expand(*ctx.shape[:3], shift), ctx[..., :-shift]], dim=-1)

    return clean


def test_content_is_drawn_in_the_prepared_orientation_and_mirrored_back():
    """On a right breast the tissue must move left in the source (away from its chest wall on the right); without
    the flip to the prepared frame and back it would move right."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), away_from_chest_wall(4))
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=10)
    disc = MASK & (xx < 280)
    moved_left, moved_right = np.roll(RIGHT, -4, axis=1), np.roll(RIGHT, 4, axis=1)
    err_left, err_right = np.abs(out - moved_left)[disc].mean(), np.abs(out - moved_right)[disc].mean()
    assert err_left < 0.3 * err_right, (err_left, err_right)
