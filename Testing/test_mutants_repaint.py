"""RePaint inpainting: the behaviour that mutation testing (scripts/mutation.sh pipelines/repaint) found unchecked —
the argument checks and their exact messages, the lesion drawn into the contexts, a forced chest-wall side, the jump
schedule's edge cases, which tile owns which pixel and what a paste leaves alone, the defaults, progress, dtypes,
x̂0 clipping with both samplers, the clip of a harmonised result, and the exact noise chain (which generator, which
draw, the re-noising of jumps, the SDEdit entry) — each with a known answer."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.anomaly import insert_mass
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines.repaint import (TileCanvas, check_arguments, inpaint_repaint, jump_schedule, owners,
                                               prepared_frame, with_lesion)
from MammoSynthLogic.preparation import prepare
from MammoSynthLogic.sampling import derive_seed
from oracles import asymmetric_breast, constant, mambo_oracles, recording_reporter
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
S, K = 16, 4  # canvas s·k² = 256 = the prepared side of a 256 × 192 image: nothing is resampled
ACP = ddpm_scheduler().alphas_cumprod.double()
IMAGE = asymmetric_breast(256, 192)  # a left breast
yy, xx = np.mgrid[:256, :192]
# inside tile (row 7, col 5) = pixels [98, 114) × [70, 86), clear of its 2-px overlaps: the only active tile
MASK = (yy - 106) ** 2 + (xx - 78) ** 2 < 4.5 ** 2
TILE = (slice(98, 114), slice(70, 86))
PREPARED = prepare(IMAGE).pixels  # = the working canvas (no resampling, no flip)
DDPM_TIMESTEPS = [750, 500, 250, 0]  # DDPM, 4 steps, diffusers' default leading spacing


def oracles(c: float, **scheduler_config):
    """Oracle bundles whose patch model predicts x̂0 = c (model space) everywhere; `scheduler_config` overrides the
    patch bundle's training schedule."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), constant(c))
    patch = dataclasses.replace(bundles[2], scheduler_config={**bundles[2].scheduler_config, **scheduler_config})
    return (*bundles[:2], patch), patch.unet


# ------------------------------------------------------------------ argument checks

GOOD = dict(steps=5, jumps=1, jump_length=10, side=None, sampler="ddpm")


@pytest.mark.parametrize("mask,overrides,what,why", [
    (np.ones((4, 4), bool), {}, "mask", "its shape (4, 4) differs from the image's (4, 5)"),
    (np.zeros((4, 5), bool), {}, "mask", "mask is empty: paint a region first"),
    (np.ones((4, 5), bool), {"sampler": "dpm++"}, "sampler dpm++",
     "RePaint needs ancestral steps; choose one of ddpm, ddim"),
    (np.ones((4, 5), bool), {"steps": 0}, "steps 0, jumps 1", "both must be at least 1"),
    (np.ones((4, 5), bool), {"jumps": 0}, "steps 5, jumps 0", "both must be at least 1"),
    (np.ones((4, 5), bool), {"jumps": 2, "jump_length": 0}, "jump length 0",
     "must be between 1 and the number of steps (5)"),
    (np.ones((4, 5), bool), {"jumps": 2, "jump_length": 6}, "jump length 6",
     "must be between 1 and the number of steps (5)"),
    (np.ones((4, 5), bool), {"side": "up"}, "side up",
     "choose left or right (the chest-wall side), or leave it to detection"),
])
def test_each_refusal_names_the_argument_and_the_remedy(mask, overrides, what, why):
    """One problem, one MammoSynthError: what is wrong (with its value) and why, word for word."""
    with pytest.raises(MammoSynthError) as caught:
        check_arguments(np.zeros((4, 5), np.float32), mask, **{**GOOD, **overrides})
    assert (caught.value.what, caught.value.why) == (what, why)


@pytest.mark.parametrize("overrides", [{"steps": 1}, {"steps": 3, "jumps": 2, "jump_length": 1},
                                       {"steps": 3, "jumps": 2, "jump_length": 3}, {"jump_length": 0},
                                       {"jump_length": 99}, {"side": "left"}, {"side": "right"},
                                       {"sampler": "ddim"}])
def test_the_limits_themselves_are_accepted(overrides):
    """One step is enough; a jump may be 1 step or all of them; without jumps the jump length is not looked at."""
    check_arguments(np.zeros((4, 5), np.float32), np.ones((4, 5), bool), **{**GOOD, **overrides})


@pytest.mark.parametrize("kwargs,what,why", [
    ({"start": np.zeros((4, 4), np.float32)}, "start image", "its shape (4, 4) differs from the image's (256, 192)"),
    ({"start": IMAGE, "strength": 0.0}, "--strength 0.0", "must be in (0, 1]"),
    ({"start": IMAGE, "strength": 1.5}, "--strength 1.5", "must be in (0, 1]"),
])
def test_a_bad_start_or_strength_is_refused_word_for_word(kwargs, what, why):
    """Strength 0 would leave no step to take: refused by the range check itself, not further down."""
    bundles, _ = oracles(0.0)
    with pytest.raises(MammoSynthError) as caught:
        inpaint_repaint(IMAGE, MASK, bundles, seed=0, steps=4, **kwargs)
    assert (caught.value.what, caught.value.why) == (what, why)


# ------------------------------------------------------------------ helpers: lesion, side, schedule, owners


def test_the_lesion_is_a_mass_as_large_as_the_mask_with_lobes_from_the_seed():
    """A disc of 113 px gets a mass of radius √(113 / π) ≈ 6 at its centre, lobe phases from the generator keyed
    [seed, 7], inside the mask only, as float32 even for a float64 image."""
    image = asymmetric_breast(40, 40).astype(np.float64)
    y, x = np.mgrid[:40, :40]
    mask = (y - 20) ** 2 + (x - 15) ** 2 < 6 ** 2
    massed, _ = insert_mass(image, (20, 15), float(np.sqrt(mask.sum() / np.pi)), 0.3, np.random.default_rng([4, 7]))
    out = with_lesion(image, mask, 0.3, seed=4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.where(mask, massed, image).astype(np.float32))  # the same computation


def test_a_tiny_mask_gets_a_mass_of_radius_one():
    """Two pixels: √(2 / π) < 1, so the radius is held at 1 px (centre (10, 10); its neighbour at distance 1)."""
    image = np.full((20, 20), 0.3, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[10, 10:12] = True
    massed, _ = insert_mass(image, (10, 10), 1.0, 0.3, np.random.default_rng([2, 7]))
    np.testing.assert_array_equal(with_lesion(image, mask, 0.3, seed=2), np.where(mask, massed, image))


def test_a_left_breast_forced_to_the_right_is_mirrored():
    """side="right" on a breast detected on the left: the prepared frame is the source mirrored (then padded)."""
    pixels, transform = prepared_frame(IMAGE, "right")
    assert transform.flipped is True
    np.testing.assert_array_equal(pixels[:, :192], PREPARED[:, :192][:, ::-1])
    assert not pixels[:, 192:].any()
    same, kept = prepared_frame(IMAGE, "left")
    assert kept.flipped is False and np.array_equal(same, PREPARED)


@pytest.mark.parametrize("args,moves", [
    ((5, 1, 0), [(p, p + 1) for p in range(5)]),  # without jumps the jump length is ignored, even 0
    ((5, 2, 3), [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 2), (2, 3), (3, 4), (4, 5)]),  # no jump back from 2
    ((4, 3, 2), [(0, 1), (1, 2), (2, 0), (0, 1), (1, 2), (2, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 2), (2, 3),
                 (3, 4), (4, 2), (2, 3), (3, 4)]),  # jumps 3: two jumps back at each jump position
])
def test_jump_schedule_edge_cases(args, moves):
    """Jumps only at positions ≥ jump_length counted from the clean end, each `jumps` − 1 times."""
    assert jump_schedule(*args) == moves


def two_tiles():
    return [tiling.Tile(0, 0, 0, 0, 4, 0), tiling.Tile(0, 1, 0, 2, 4, 1)]  # 4 × 4, overlapping in columns 2, 3


def test_the_highest_weight_owns_a_pixel_and_the_earlier_tile_wins_ties():
    """Columns 2 and 3 are shared: with weights (1, 2, 2, 1) across a tile, column 2 is tile 0's (2 > 1) and
    column 3 tile 1's; with equal weights both go to tile 0."""
    ramp = np.tile(np.array([1, 2, 2, 1], np.float32), (4, 1))
    own = owners(two_tiles(), (4, 6), ramp)
    np.testing.assert_array_equal(own[0], np.tile([True, True, True, False], (4, 1)))
    np.testing.assert_array_equal(own[1], np.tile([False, True, True, True], (4, 1)))
    flat = owners(two_tiles(), (4, 6), np.ones((4, 4), np.float32))
    np.testing.assert_array_equal(flat[0], np.ones((4, 4), bool))
    np.testing.assert_array_equal(flat[1], np.tile([False, False, True, True], (4, 1)))


def test_a_paste_leaves_the_pixels_no_tile_covers():
    """Three tiles of a 2 × 2 grid (an L): the fourth corner of their window keeps the canvas's value; each tile's
    pixels take that tile's value."""
    tiles = [t for t in tiling.grid(8, 8, 4, 0) if t.index != 3]
    canvas = TileCanvas(tiles, 0, torch.device("cpu"))
    batch = torch.tensor([1.0, 2.0, 3.0])[:, None, None, None].expand(3, 1, 4, 4)
    out = canvas.paste(torch.full((8, 8), 7.0), batch)
    expected = torch.full((8, 8), 7.0)
    expected[:4, :4], expected[:4, 4:], expected[4:, :4] = 1.0, 2.0, 3.0
    assert torch.equal(out, expected)


# ------------------------------------------------------------------ defaults, progress, dtypes


def test_defaults_are_fifty_steps_and_jumps_of_ten_reported_step_by_step():
    """Progress: stage "inpaint (RePaint)", 0 of total first, then every denoising step (jumps are not steps):
    50 by default; with 2 jumps over 20 steps, 20 + (2 − 1)·10·⌊20 / 10⌋ = 40."""
    bundles, stub = oracles(0.0)
    log, reporter = recording_reporter()
    inpaint_repaint(IMAGE, MASK, bundles, seed=0, reporter=reporter)
    assert log == [("inpaint (RePaint)", i, 50) for i in range(51)] and len(stub.calls) == 50
    log, reporter = recording_reporter()
    inpaint_repaint(IMAGE, MASK, bundles, seed=0, steps=20, jumps=2, reporter=reporter)
    assert log == [("inpaint (RePaint)", i, 40) for i in range(41)]


def test_strength_without_a_start_image_is_ignored():
    """SDEdit needs `start`: without it the chain runs from pure noise whatever the strength (same computation)."""
    bundles, _ = oracles(0.3)
    full = inpaint_repaint(IMAGE, MASK, bundles, seed=3, steps=4)
    np.testing.assert_array_equal(inpaint_repaint(IMAGE, MASK, bundles, seed=3, steps=4, strength=0.5), full)


@pytest.mark.parametrize("c", [1.0, -1.0])
def test_a_harmonised_result_is_clipped_to_the_unit_range(c):
    """A 320 × 240 image is prepared to 512² and sampled on a 256² canvas. `start` adds ±0.2 in a pixel
    checkerboard, which the 2× area average cancels: the model's white (c = 1) or black (c = −1) plus start's
    change reaches 1.2 or −0.2 there, and is clipped to [0, 1]; float64 inputs give float32."""
    image = asymmetric_breast(320, 240).astype(np.float64)
    y, x = np.mgrid[:320, :240]
    mask = (y - 160) ** 2 + (x - 80) ** 2 < 20 ** 2
    inner = (y - 160) ** 2 + (x - 80) ** 2 < 12 ** 2
    checker = np.where((y + x) % 2 == 0, 0.2, -0.2)
    start = np.where(mask, image + checker, image)
    assert 0.2 < image[mask].min() and image[mask].max() < 0.8  # start stays in [0, 1] there
    bundles, _ = oracles(c)
    out = inpaint_repaint(image, mask, bundles, seed=0, steps=2, start=start, strength=1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[~mask], image[~mask].astype(np.float32))
    assert out.min() >= 0 and out.max() <= 1
    clipped = inner & ((checker > 0) if c > 0 else (checker < 0))
    np.testing.assert_array_equal(out[clipped], np.float32(max(c, 0)))
    # the other half: the model's value ∓ 0.2 (1e-2: the canvas average of a clipped smooth image, bilinear back)
    np.testing.assert_allclose(out[inner & ~clipped], max(c, 0) - np.sign(c) * 0.2, atol=1e-2)


def test_a_float64_image_gives_float32_and_keeps_its_outside():
    bundles, _ = oracles(0.0)
    out = inpaint_repaint(IMAGE.astype(np.float64), MASK, bundles, seed=0, steps=2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[~MASK], IMAGE[~MASK])


# ------------------------------------------------------------------ x̂0 clipping


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_clean_estimate_is_clipped_whatever_the_bundle_says(sampler):
    """RePaint clips x̂0 to [−1, 1] (DDIM then re-derives ε from the clipped x̂0, with eta 1): a model predicting 3
    is followed step for step as one predicting 1, even when the bundle's schedule asks for no clipping."""
    inputs = {}
    for c in (3.0, 1.0):
        bundles, stub = oracles(c, clip_sample=False)
        inpaint_repaint(IMAGE, MASK, bundles, seed=5, steps=4, sampler=sampler)
        inputs[c] = torch.stack([inp[:, 0] for inp, _ in stub.calls])
    # 1e-4: x̂0 is recovered from ε through 1/√ᾱ (≈ 150 at t = 999), amplifying float32 rounding to ~1e-5; without
    # clipping the chains differ by ~1 (DDPM) and by ~0.1 (DDIM without the clipped model output or without eta)
    torch.testing.assert_close(inputs[3.0], inputs[1.0], atol=1e-4, rtol=0)


# ------------------------------------------------------------------ the exact noise chain

X0 = torch.from_numpy(PREPARED[TILE] * 2 - 1).double()
KNOWN = torch.from_numpy(~MASK[TILE])


def simulate(c: float, steps: int, moves, seed: int, begin=None, first: int = 0):
    """The tile's chain in float64 from the DDPM formulas: its generator is keyed ("repaint", row 7, col 5) and
    each draw is one s × s normal field — the start noise, then per denoising step the known pixels' noise and the
    scheduler's (none at t = 0), per jump the re-noising. Returns the U-Net inputs and the final sample."""
    g = torch.Generator().manual_seed(derive_seed(seed, "repaint", 7, 5))

    def z():
        return torch.randn((1, 1, S, S), generator=g)[0, 0].double()

    timesteps = DDPM_TIMESTEPS if steps == 4 else None
    level = [float(ACP[t]) for t in timesteps] + [1.0]
    x = z()
    if begin is not None:  # SDEdit: the start image noised to the first timestep taken
        x = level[first] ** 0.5 * (begin * 2 - 1) + (1 - level[first]) ** 0.5 * x
    inputs = []
    for p, q in moves:
        if q < p:
            a = level[q] / level[p]
            x = a ** 0.5 * x + (1 - a) ** 0.5 * z()
            continue
        t, ab = timesteps[p], level[p]
        x = torch.where(KNOWN, ab ** 0.5 * X0 + (1 - ab) ** 0.5 * z(), x)
        inputs.append((x, t))
        prev = level[p + 1]
        alpha, x0 = ab / prev, min(max(c, -1.0), 1.0)
        x = (prev ** 0.5 * (1 - alpha) * x0 + alpha ** 0.5 * (1 - prev) * x) / (1 - ab)
        if t > 0:
            x = x + ((1 - prev) / (1 - ab) * (1 - alpha)) ** 0.5 * z()
    return inputs, x


def check_chain(stub, out, expected, final, mask=MASK):
    # 1e-4: the float32 chain against float64 (measured < 1e-5); a wrong draw or level moves pixels by > 1e-2
    assert [t for _, t in stub.calls] == [t for _, t in expected]
    for (inp, _), (x, _) in zip(stub.calls, expected):
        assert inp.shape == (1, 4, S, S)
        torch.testing.assert_close(inp[0, 0].double(), x, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out[mask], ((final.numpy() + 1) / 2).clip(0, 1)[mask[TILE]], atol=1e-4)


def test_the_noise_chain_with_jumps_is_the_tiles_own_generator_step_by_step():
    """x̂0 = 1.4 (clipped to 1), 4 DDPM steps, jumps 2 of length 1: every U-Net input of the one active tile is
    the simulated chain's — masked pixels from the tile's generator and the DDPM posterior, known pixels the image
    noised with the next draw, jumps re-noised by ᾱ_q / ᾱ_p (2 → 1: ᾱ_500 / ᾱ_250 = 0.15) with a fresh draw."""
    bundles, stub = oracles(1.4, clip_sample=False)
    out = inpaint_repaint(IMAGE, MASK, bundles, seed=11, steps=4, jumps=2, jump_length=1)
    expected, final = simulate(1.4, 4, jump_schedule(4, 2, 1), seed=11)
    assert len(expected) == 8
    check_chain(stub, out, expected, final)


@pytest.mark.parametrize("strength,first", [(1.0, 0), (0.5, 2)])
def test_harmonisation_enters_the_chain_at_strength_from_the_start_image(strength, first):
    """`start` (the image brightened by 0.3 inside the mask): strength 1 starts from the pure noise draw as plain
    inpainting does; strength 0.5 enters at t = 250 (the first timestep below 500) with √ᾱ·(2·start − 1) + √(1 −
    ᾱ)·noise and takes only the steps from there."""
    start = np.where(MASK, IMAGE + 0.3, IMAGE).astype(np.float32)
    bundles, stub = oracles(0.2)
    out = inpaint_repaint(IMAGE, MASK, bundles, seed=4, steps=4, start=start, strength=strength)
    begin = torch.from_numpy(PREPARED[TILE] + (start - IMAGE)[TILE]).double()
    moves = [(p, p + 1) for p in range(first, 4)]
    expected, final = simulate(0.2, 4, moves, seed=4, begin=begin if first else None, first=first)
    check_chain(stub, out, expected, final)
