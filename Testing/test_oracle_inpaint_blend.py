"""The Stable Diffusion inpainting route around the model, with a stand-in model whose output is known: the crop it
sees (chest wall on the left, the hole where the mask is), the way its output comes back (un-mirrored, resized into
the box) and the feathered blend into the stored integers, checked against values computed by hand."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import MammoSynthLogic.pipelines.inpaint as inpaint
from MammoSynthLogic.pipelines.inpaint import blend_into, feather_weights, inpaint_sd
from MammoSynthLogic.pipelines.text2mammo import SDSettings
from oracles import asymmetric_breast

SIZE = 64  # the stand-in model's image size
yy, xx = np.mgrid[:400, :300]


class RampPainter:
    """Stand-in SD inpainting model: keeps the image outside the hole and paints a ramp rising from 0.2 at the
    left of its canvas to 0.8 at the right inside it; records what it was given."""

    def __init__(self):
        self.seen: dict = {}

    def __call__(self, pipeline, settings, seed, kind, reporter, *, image, mask_image, **kwargs):
        self.seen = {"image": image[0, ..., 0].copy(), "hole": mask_image[0, ..., 0] > 0.5, "kind": kind, **kwargs}
        ramp = np.broadcast_to(np.linspace(0.2, 0.8, image.shape[2], dtype=np.float32), image.shape[1:3])
        return np.where(self.seen["hole"], ramp, self.seen["image"])


@pytest.fixture
def painter(monkeypatch) -> RampPainter:
    model = RampPainter()
    monkeypatch.setattr(inpaint, "run_sd", model)
    return model


BUNDLE = SimpleNamespace(role="mame-inpaint", image_size=SIZE, pipeline=None, path="<stand-in>")
SETTINGS = SDSettings("a mammogram with a lesion", steps=2)


@pytest.mark.parametrize("side", ["left", "right"])
def test_model_sees_the_chest_wall_on_the_left_and_its_output_comes_back_mirrored(painter, side):
    breast = asymmetric_breast(400, 300, side=side)
    cx = 230 if side == "right" else 69
    mask = (yy - 200) ** 2 + (xx - cx) ** 2 < 30 ** 2
    out, box = inpaint_sd(BUNDLE, breast, mask, SETTINGS, seed=0, side=side)
    crop = painter.seen["image"]
    assert crop.shape == (SIZE, SIZE) and crop[:, :8].mean() > crop[:, -8:].mean()  # chest wall on the left
    seen_hole = painter.seen["hole"]
    expected_hole = mask[box.slices][:, ::-1] if side == "right" else mask[box.slices]
    assert np.nonzero(seen_hole.any(axis=0))[0].mean() / SIZE == pytest.approx(
        np.nonzero(expected_hole.any(axis=0))[0].mean() / box.width, abs=0.03)  # the hole mirrored with the crop
    assert out.shape == breast.shape
    outside_box = np.ones_like(mask)
    outside_box[box.slices] = False
    np.testing.assert_array_equal(out[outside_box], breast[outside_box])
    # the ramp rises away from the chest wall: to the right for a left breast, to the left for a right one
    core = (yy - 200) ** 2 + (xx - cx) ** 2 < 20 ** 2
    slope = np.polyfit(xx[core], out[core], 1)[0]
    expected = 0.6 / box.width  # 0.6 over the crop's width
    assert slope == pytest.approx(expected if side == "left" else -expected, rel=0.1)


def test_outside_the_hole_the_crop_comes_back_up_to_resampling(painter):
    breast = asymmetric_breast(400, 300, side="right")
    mask = (yy - 200) ** 2 + (xx - 230) ** 2 < 30 ** 2
    out, box = inpaint_sd(BUNDLE, breast, mask, SETTINGS, seed=0, side="right")
    ring = np.zeros_like(mask)
    ring[box.slices] = True
    ring &= ~((yy - 200) ** 2 + (xx - 230) ** 2 < 45 ** 2)  # clear of the hole and its resampling blur
    # area-averaged down to 64² and bilinear back up: the smooth breast changes by well under 1 %
    assert np.abs(out - breast)[ring].max() < 0.02


def test_blend_matches_hand_computed_values_in_the_feather_zone():
    """Mask = columns < 50; the distance of column c ≥ 50 from it is c − 49, so the weight is the half cosine
    0.5·(1 + cos(π·(c − 49) / f)) up to f, and the stored value is rint(w·target + (1 − w)·stored)."""
    feather = 8.0
    mask = np.zeros((60, 100), bool)
    mask[:, :50] = True
    weights = feather_weights(mask, feather)
    c = np.arange(100)
    expected_w = np.where(c < 50, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((c - 49) / feather, 0, 1))))
    np.testing.assert_allclose(weights, np.broadcast_to(expected_w, mask.shape), atol=1e-6)

    # a 12-bit MONOCHROME1-like source: display value = 1 − stored / 4095, so display v is stored 4095·(1 − v)
    stored = np.tile(np.arange(100, dtype=np.uint16) * 40, (60, 1))
    original01 = (1 - stored / 4095).astype(np.float32)
    synthetic01 = np.where(mask | (c >= 50), np.float32(0.25), original01)  # the model paints display 0.25
    out = blend_into(stored, original01, synthetic01, weights)
    target = 4095 * (1 - 0.25)  # 3071.25: the stored level that displays as 0.25 (interpolated between levels)
    expected = np.rint(expected_w * np.rint(target) + (1 - expected_w) * stored[0])
    np.testing.assert_array_equal(out[0], expected.astype(np.uint16))
    np.testing.assert_array_equal(out[:, 58:], stored[:, 58:])  # weight 0 from 8 px out: bit-identical
