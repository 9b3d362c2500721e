"""RePaint harmonisation of a drawn-in lesion (`inpaint_repaint(start=..., strength=...)`) against stand-in
denoisers with known answers: contexts come from the image with the lesion, the chain starts at strength·T, the
outside is the image bit for bit, and detail finer than the model's canvas survives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MammoSynthLogic.pipelines.repaint import inpaint_repaint
from oracles import asymmetric_breast, channel, constant, mambo_oracles

torch.set_num_threads(1)
S, K = 32, 4  # canvas s·k² = 512
yy, xx = np.mgrid[:400, :300]
RIGHT = asymmetric_breast(400, 300, side="right")
MASK = (yy - 200) ** 2 + (xx - 200) ** 2 < 45 ** 2
LESION = (yy - 200) ** 2 + (xx - 200) ** 2 < 25 ** 2
WITH_LESION = np.where(LESION, np.clip(RIGHT + 0.2, 0, 1), RIGHT).astype(np.float32)


def test_a_context_copying_model_keeps_the_drawn_lesion():
    """The aligned context is `start` under the tile: copying it must give back the image with the lesion (and the
    same model without `start` gives back the image without it), the outside bit for bit."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), channel(3))
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=10, start=WITH_LESION, strength=0.5)
    np.testing.assert_array_equal(out[~MASK], RIGHT[~MASK])
    # the context is a bilinear 1/k copy of a smooth image: measured ~0.002 mean; the lesion step is 0.2
    assert np.abs(out - WITH_LESION)[MASK].mean() < 0.01
    plain = inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=10)
    assert np.abs(plain - RIGHT)[MASK].mean() < 0.01
    assert (out - plain)[LESION & (np.hypot(yy - 200, xx - 200) < 18)].mean() > 0.15


def test_strength_sets_where_the_chain_starts():
    """strength 0.3: the patch model is asked only timesteps below 300, and fewer of them than from pure noise."""
    asked = {}
    for strength in (1.0, 0.3):
        bundles = mambo_oracles(S, K, constant(0), constant(0), channel(3))
        inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=10, start=WITH_LESION, strength=strength)
        asked[strength] = sorted({t for _, t in bundles[2].unet.calls})
    assert max(asked[0.3]) < 300 and max(asked[1.0]) > 800
    assert len(asked[0.3]) == 3 and len(asked[1.0]) == 10


def test_start_is_noised_not_replaced():
    """A model that predicts a constant x̂0 ends on that constant inside the mask whatever the start (the chain is a
    real denoising from strength·T); its change is added to `start`, so the result is the constant there."""
    bundles = mambo_oracles(S, K, constant(0), constant(0), constant(0.0))  # x̂0 = 0 in model space: 0.5
    out = inpaint_repaint(RIGHT, MASK, bundles, seed=1, steps=10, start=WITH_LESION, strength=0.6)
    inner = np.hypot(yy - 200, xx - 200) < 35  # away from the resampled mask edge
    assert np.abs(out[inner] - 0.5).max() < 0.02


def test_detail_finer_than_the_canvas_survives():
    """A 640 × 480 image is prepared to 768² and sampled on a 512² canvas: one-pixel calcifications drawn into
    `start` would blur away if the canvas result replaced the source pixels; as `start` + the model's change (zero
    for a context copier) they stay."""
    rows, cols = 640, 480
    y, x = np.mgrid[:rows, :cols]
    image = asymmetric_breast(rows, cols, side="left")
    mask = (y - 320) ** 2 + (x - 150) ** 2 < 60 ** 2
    dots = np.zeros_like(mask)
    dots[300:340:8, 130:170:8] = True
    start = np.where(dots, np.clip(image + 0.4, 0, 1), image).astype(np.float32)
    bundles = mambo_oracles(S, K, constant(0), constant(0), channel(3))
    out = inpaint_repaint(image, mask, bundles, seed=0, steps=8, start=start, strength=0.4)
    neighbours = np.roll(dots, 2, axis=1)
    # drawn +0.4 (+0.3 after clipping at 1); measured +0.25 kept. A 1-px dot through a 2/3-scale canvas and back
    # keeps under (2/3)² of its height, and the context copier's 1/k context blurs it further.
    assert (out[dots] - out[neighbours]).mean() > 0.15, "one-pixel dots kept at the source resolution"


@pytest.mark.parametrize("kwargs, message", [({"strength": 0.0}, "strength"), ({"strength": 1.5}, "strength"),
                                             ({"start": np.zeros((4, 4), np.float32)}, "shape")])
def test_bad_start_or_strength_is_refused(kwargs, message):
    from MammoSynthLogic.errors import MammoSynthError

    bundles = mambo_oracles(S, K, constant(0), constant(0), channel(3))
    kwargs = {"start": WITH_LESION, **kwargs}
    with pytest.raises(MammoSynthError, match=message):
        inpaint_repaint(RIGHT, MASK, bundles, seed=0, steps=4, **kwargs)
