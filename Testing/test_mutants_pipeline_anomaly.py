"""Anomaly pipeline: the behaviour that mutation testing (scripts/mutation.sh pipelines/anomaly) found unchecked —
the error messages, the strided chain's length, the exact noised input x_λ (which timestep, which noise stream, which
seed, global and per tile), progress, the heat map's type and the floor on the labels, and the native level's tiling
(tile positions and overlap, U-Net chunks, draws, pixels no tile covers, tile edges) — each with a known answer."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.anomaly import AnomalySettings, heat_map
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines import anomaly as pipeline
from MammoSynthLogic.pipelines.anomaly import AnomalyPipeline, denoising_timesteps
from MammoSynthLogic.pipelines.mambo import image_contexts
from MammoSynthLogic.preparation import PreparedImage, PrepareTransform
from MammoSynthLogic.sampling import generators
from oracles import constant, image, oracle_bundle, recording_reporter
from tiny_bundles import ddpm_scheduler

torch.set_num_threads(1)
ACP = ddpm_scheduler().alphas_cumprod


def prepared(pixels: np.ndarray, mask: np.ndarray) -> PreparedImage:
    """A prepared image built directly: square, not flipped, no padding (the source frame is the prepared one)."""
    n = pixels.shape[0]
    return PreparedImage(pixels=pixels.astype(np.float32), region=mask, mask=mask,
                         transform=PrepareTransform(source_shape=(n, n), flipped=False, size=n), breast_side="left")


def ramp(n: int) -> np.ndarray:
    """Smooth, non-zero everywhere: 0.2 .. 0.8 across the image."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    return (0.2 + 0.3 * y / (n - 1) + 0.3 * x / (n - 1)).astype(np.float32)


def noise(seed: int, key: tuple, shape: tuple) -> torch.Tensor:
    """The draw the pipeline must use for one batch element: that element's own keyed generator."""
    return torch.randn((1, *shape), generator=generators(seed, [key])[0])


# ---------------------------------------------------------------- errors and the chain

def test_error_messages_are_exact():
    """An empty breast mask, native without a patch bundle and an unknown level each give their own message."""
    pixels = ramp(16)
    global_ = oracle_bundle("mambo-global", 16, constant(0.0), k=2)
    with pytest.raises(MammoSynthError) as err:
        AnomalyPipeline(global_)(prepared(pixels, np.zeros((16, 16), bool)), AnomalySettings(), 0)
    assert str(err.value) == "breast mask: empty: no breast found in this image, nothing to compare"
    full = prepared(pixels, np.ones((16, 16), bool))
    with pytest.raises(MammoSynthError) as err:
        AnomalyPipeline(global_)(full, AnomalySettings(level="native"), 0)
    assert str(err.value) == "--level native: needs a mambo-patch bundle beside the global one"
    with pytest.raises(MammoSynthError) as err:
        AnomalyPipeline(global_)(full, AnomalySettings(level="tiled"), 0)
    assert str(err.value) == "--level tiled: choose global or native"


def test_denoising_timesteps_one_step_is_lambda_minus_one_alone():
    """steps = 1 is one step at λ − 1 (not λ − 1 and 0); more steps than λ give every t; λ = 1 is t = 0."""
    assert denoising_timesteps(700, 1) == [699]
    assert denoising_timesteps(5, 10) == [4, 3, 2, 1, 0]
    assert denoising_timesteps(1, 50) == [0]
    assert denoising_timesteps(700, 3) == [699, 350, 0]


# ---------------------------------------------------------------- global level

def test_global_first_input_is_the_image_noised_to_lambda_with_each_draws_own_noise():
    """x_λ = √ᾱ·x0 + √(1 − ᾱ)·ε at t = timesteps[0] = λ − 1, x0 = working·2 − 1 as one channel per draw, ε of draw
    d from the generator keyed ("anomaly", d) of the seed; progress reports every step of the chain."""
    pixels = ramp(16)
    global_ = oracle_bundle("mambo-global", 16, constant(0.0), k=2)
    log, reporter = recording_reporter()
    result = AnomalyPipeline(global_)(prepared(pixels, np.ones((16, 16), bool)),
                                      AnomalySettings(lam=700, steps=3, draws=2), 5, reporter)
    assert [t for _, t in global_.unet.calls] == [699, 350, 0]
    first = global_.unet.calls[0][0]
    a = ACP[699]
    x0 = torch.from_numpy(pixels * 2 - 1)
    expected = torch.cat([a.sqrt() * x0 + (1 - a).sqrt() * noise(5, ("anomaly", d), (1, 16, 16)) for d in (0, 1)])
    # same formula, different order of float32 operations: rounding only
    torch.testing.assert_close(first, expected, atol=1e-6, rtol=0)
    assert log == [("anomaly: reconstruct", i, 3) for i in (1, 2, 3)]
    np.testing.assert_array_equal(result.working, pixels)


def test_heat_is_float32_heat_working_is_returned_and_the_floor_applies_to_the_labels():
    """A one-pixel lesion the model does not know: its blurred heat stays below a floor the raw difference passes,
    so the floor must empty the label map (not just the difference map); heat is float32 in the source frame and
    heat_working is the working-frame map."""
    pixels = ramp(16)
    known = torch.from_numpy(pixels * 2 - 1)[None]
    lesioned = pixels.copy()
    lesioned[6, 7] += 0.5
    mask = np.ones((16, 16), bool)
    settings = AnomalySettings(lam=300, steps=4, sigma_fraction=1 / 16)
    global_ = oracle_bundle("mambo-global", 16, image(known), k=2)
    result = AnomalyPipeline(global_)(prepared(lesioned, mask), settings, 0)
    assert result.heat.dtype == np.float32
    np.testing.assert_array_equal(result.heat_working, heat_map(result.working, result.reconstruction, mask, settings))
    peak = float(result.heat.max())
    assert 0 < peak < 0.3 and result.labels[6, 7]  # σ = 1 px spreads 0.5 over ~2π px
    floored = dataclasses.replace(settings, min_difference=0.4)  # below the raw 0.5, above the blurred peak
    result = AnomalyPipeline(global_)(prepared(lesioned, mask), floored, 0)
    assert result.heat.max() > 0 and not result.labels.any()


# ---------------------------------------------------------------- native level

S, K, N = 8, 2, 32  # tiles of 8 px, overlap s/4 = 2 px, canvas s·k² = 32 px


def native_bundles(clean):
    return (oracle_bundle("mambo-global", S, constant(0.0), k=K),
            oracle_bundle("mambo-patch", S, clean, in_channels=4, k=K, aligned=True))


def test_native_tiles_are_noised_per_tile_and_draw_with_the_seed_in_chunks(monkeypatch):
    """Tiles touching the breast (overlap s/4), in groups of default_chunk: each row of the first U-Net inputs is
    the tile of working·2 − 1 noised to λ − 1 with the noise keyed ("anomaly", row, col, draw) of the seed, beside
    that tile's own context; no U-Net call holds more than default_chunk rows; progress counts the groups."""
    monkeypatch.setattr(pipeline, "default_chunk", lambda device: 2)
    pixels = ramp(N)
    mask = np.zeros((N, N), bool)
    mask[2:10, 2:10] = True  # touches the tiles at 0 and 6 in both directions: 4 tiles, 2 groups of 2
    global_, patch = native_bundles(constant(0.4))
    log, reporter = recording_reporter()
    result = AnomalyPipeline(global_, patch)(prepared(pixels, mask),
                                             AnomalySettings(level="native", lam=700, steps=2, draws=2), 11, reporter)
    tiles = tiling.active(tiling.grid(N, N, S, 2), mask)
    assert [(t.y, t.x) for t in tiles] == [(0, 0), (0, 6), (6, 0), (6, 6)]
    assert log == [("anomaly: tiles", 0, 2), ("anomaly: tiles", 1, 2), ("anomaly: tiles", 2, 2)]
    calls = patch.unet.calls
    assert all(inp.shape[0] <= 2 for inp, _ in calls)
    first = torch.cat([inp for inp, t in calls if t == 699])
    assert first.shape == (8, 4, S, S)
    a = ACP[699]
    model = torch.from_numpy(pixels * 2 - 1)
    expected = torch.cat([a.sqrt() * model[t.slices][None, None] + (1 - a).sqrt()
                          * noise(11, ("anomaly", t.row, t.col, d), (1, S, S)) for t in tiles for d in (0, 1)])
    # same formula, different order of float32 operations: rounding only
    torch.testing.assert_close(first[:, :1], expected, atol=1e-6, rtol=0)
    contexts = image_contexts(pixels, patch, tiles, "cpu").repeat_interleave(2, 0)
    torch.testing.assert_close(first[:, 1:], contexts, atol=0, rtol=0)  # the same computation twice
    assert result.reconstruction.shape == (N, N)


def test_native_reconstruction_covers_tile_edges_and_keeps_uncovered_pixels(monkeypatch):
    """A patch model that returns 0.4 (model space): every pixel any tile covers, however small its ramp weight
    there, reconstructs to 0.7; pixels no tile covers keep the working image."""
    monkeypatch.setattr(pipeline, "default_chunk", lambda device: 3)
    pixels = ramp(N)
    mask = np.zeros((N, N), bool)
    mask[2:10, 2:10] = True
    global_, patch = native_bundles(constant(0.4))
    result = AnomalyPipeline(global_, patch)(prepared(pixels, mask),
                                             AnomalySettings(level="native", lam=500, steps=3, draws=3), 2)
    covered = np.zeros((N, N), bool)
    covered[:14, :14] = True  # tiles at 0 and 6: pixels 0 .. 13
    # DDPM's last step returns the model's x̂0; float32 rounding of the strided chain stays well below 1e-4
    np.testing.assert_allclose(result.reconstruction[covered], 0.7, atol=1e-4)
    # uncovered: (working·2 − 1 + 1)·0.5 in float32, rounding only
    np.testing.assert_allclose(result.reconstruction[~covered], pixels[~covered], atol=1e-6)
    np.testing.assert_array_equal(result.working, pixels)


def test_native_overlap_is_32_px_for_large_tiles():
    """Tiles of s = 136 overlap min(32, s/4) = 32 px: a 240 px canvas is 2 × 2 tiles (stride 104), one U-Net call."""
    s, n = 136, 240
    global_ = oracle_bundle("mambo-global", s, constant(0.0), k=2)
    patch = oracle_bundle("mambo-patch", s, constant(0.0), in_channels=4, k=2, aligned=True, full_size=n)
    pixels = ramp(n)
    AnomalyPipeline(global_, patch)(prepared(pixels, np.ones((n, n), bool)),
                                    AnomalySettings(level="native", lam=1, steps=1), 0)
    assert [(inp.shape, t) for inp, t in patch.unet.calls] == [((4, 4, s, s), 0)]
