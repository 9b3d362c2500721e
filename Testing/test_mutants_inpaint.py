"""Inpainting route around Stable Diffusion and the blend into stored pixels: the behaviour that mutation testing
(scripts/mutation.sh pipelines/inpaint) found unchecked — the crop box's exact geometry and defaults, the empty-mask
and wrong-model errors, what the model is handed (float32 image, float32 hole that a small mask never leaves empty,
stage name, size, strength, margin and padding), the clip of its output, the output type, and the bit-identical copy
of pixels the synthetic image does not change even where the stored → display mapping cannot be inverted."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import MammoSynthLogic.pipelines.inpaint as inpaint
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.masks import EMPTY
from MammoSynthLogic.pipelines.inpaint import Box, blend_into, crop_box, encode_like, inpaint_sd
from MammoSynthLogic.pipelines.text2mammo import SDSettings
from MammoSynthLogic.preparation import resize
from oracles import asymmetric_breast

SIZE = 64
BUNDLE = SimpleNamespace(role="mame-inpaint", image_size=SIZE, pipeline=None, path="<stand-in>")
SETTINGS = SDSettings("a mammogram with a lesion", steps=2)


def marks(shape, points) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for y, x in points:
        mask[y, x] = True
    return mask


# ------------------------------------------------------------------ crop_box


def test_the_box_is_the_masks_extent_centred_when_nothing_enlarges_it():
    """Rows 10–14 and columns 20–31 marked by single pixels (so the second and second-last ones differ from the ends):
    the extent is 12, the box 12² with its top 7 = 10 − ⌊(12 − 5) / 2⌋ (a half would round it to 6)."""
    mask = marks((100, 100), [(10, 25), (14, 25), (12, 20), (12, 22), (12, 29), (12, 31)])
    assert crop_box(mask, margin=0, min_side=0) == Box(7, 20, 12, 12)
    tall = marks((100, 100), [(10, 41), (12, 41), (27, 41), (29, 41), (20, 40), (20, 44)])  # 20 rows, 5 columns
    assert crop_box(tall, margin=0, min_side=0) == Box(10, 33, 20, 20)  # left 40 − ⌊15 / 2⌋


def test_margin_padding_and_minimum_side_each_enlarge_the_box():
    mask = marks((1000, 1000), [(500, 500), (519, 519)])  # extent 20
    assert crop_box(mask, margin=0, min_side=0, pad=5) == Box(495, 495, 30, 30)  # extent + 2·pad
    assert crop_box(mask, margin=1.0, min_side=0) == Box(480, 480, 60, 60)  # extent·(1 + 2·margin)
    assert crop_box(mask) == Box(254, 254, 512, 512)  # defaults: margin ½ (40 px), at least 512, no padding
    big = marks((1000, 1000), [(300, 300), (699, 699)])  # extent 400: margin ½ makes 800, 1.5 would clip to 1000
    assert crop_box(big) == Box(100, 100, 800, 800)


def test_the_box_is_shifted_inside_the_image_at_every_edge():
    assert crop_box(marks((100, 100), [(97, 97), (99, 99)]), margin=0, min_side=20) == Box(80, 80, 20, 20)
    assert crop_box(marks((100, 100), [(0, 0), (2, 2)]), margin=0, min_side=20) == Box(0, 0, 20, 20)
    assert crop_box(marks((100, 100), [(50, 0), (52, 2)]), margin=0, min_side=20) == Box(42, 0, 20, 20)  # 50 − ⌊17 / 2⌋


def test_an_empty_mask_is_named_in_the_error():
    with pytest.raises(MammoSynthError) as error:
        crop_box(np.zeros((10, 10), bool))
    assert str(error.value) == f"mask: {EMPTY}"


# ------------------------------------------------------------------ blend_into / encode_like


def test_mismatched_shapes_are_refused_with_one_message():
    with pytest.raises(ValueError, match="^stored, original, synthetic and weights must have one shape$"):
        blend_into(np.zeros((4, 4), np.uint16), np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)))


def test_unchanged_pixels_keep_their_stored_value_where_the_display_mapping_saturates():
    """Stored 0–99 shown through a window that saturates from level 60 up: the display value 1.0 comes from 40
    levels, so encoding it back cannot give each its own. Where the synthetic image equals the original, even at
    full weight, the stored value must be copied, not re-encoded."""
    stored = np.arange(100, dtype=np.uint16).reshape(10, 10)
    original01 = np.minimum(stored / 60.0, 1.0).astype(np.float32)
    synthetic01 = original01.copy()
    synthetic01[0, :5] = 0.5  # the changed pixels: stored level 30 displays as 0.5
    out = blend_into(stored, original01, synthetic01, np.ones((10, 10), np.float32))
    expected = stored.copy()
    expected[0, :5] = 30
    np.testing.assert_array_equal(out, expected)


def test_encoding_returns_the_stored_type_and_the_last_of_tied_levels():
    """Levels 60–99 all display as 1.0: display 1.0 encodes to the highest of them (a stable sort of the tied levels,
    whatever sort the CPU would pick), in the stored integer type."""
    stored = np.arange(100, dtype=np.uint16).reshape(10, 10)
    shown = np.minimum(stored / 60.0, 1.0).astype(np.float32)
    levels = encode_like(np.array([0.0, 0.5, 1.0], np.float32), stored, shown)
    assert levels.dtype == np.uint16 and levels.tolist() == [0, 30, 99]


# ------------------------------------------------------------------ inpaint_sd around a stand-in model


class Recorder:
    """Stand-in SD inpainting model: records its inputs and returns `paint` inside the hole, the image elsewhere."""

    def __init__(self, paint: float = 0.5):
        self.paint, self.seen = paint, {}

    def __call__(self, pipeline, settings, seed, stage, reporter, *, image, mask_image, **kwargs):
        self.seen = {"image": image, "hole": mask_image, "stage": stage, "kwargs": kwargs}
        return np.where(mask_image[0, ..., 0] > 0.5, np.float32(self.paint), image[0, ..., 0])


@pytest.fixture
def model(monkeypatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(inpaint, "run_sd", recorder)
    return recorder


def test_a_model_of_another_role_is_refused_by_its_path():
    text = SimpleNamespace(role="mame-text", image_size=SIZE, pipeline=None, path="<text model>")
    with pytest.raises(MammoSynthError) as error:
        inpaint_sd(text, np.zeros((100, 100), np.float32), marks((100, 100), [(5, 5)]), SETTINGS, seed=0)
    assert str(error.value) == ("<text model>: a mame-text model cannot inpaint; pass a mame-inpaint model "
                                "(9-channel U-Net)")


def test_the_model_gets_float32_inputs_its_size_full_strength_and_the_stage_name(model):
    pixels = asymmetric_breast(300, 200).astype(np.float64)
    mask = marks((300, 200), [(150, 61)])  # one pixel in a 193-px box shrunk to 64: area averaging keeps it
    out, box = inpaint_sd(BUNDLE, pixels, mask, SETTINGS, seed=0, pad=96)
    assert box == crop_box(mask, 0.5, SIZE, 96) and box.height == 193
    image, hole = model.seen["image"], model.seen["hole"]
    assert image.dtype == np.float32 and image.shape == (1, SIZE, SIZE, 3) and hole.dtype == np.float32
    assert hole.any(), "a one-pixel mask must not vanish from the hole"
    assert model.seen["stage"] == "inpaint"
    assert model.seen["kwargs"] == {"height": SIZE, "width": SIZE, "strength": 1.0}
    assert out.dtype == np.float32


def test_margin_and_padding_reach_the_crop(model):
    pixels = asymmetric_breast(300, 200)
    mask = marks((300, 200), [(100, 60), (139, 99)])  # extent 40
    _, box = inpaint_sd(BUNDLE, pixels, mask, SETTINGS, seed=0, margin=1.0, pad=0)
    assert box == crop_box(mask, 1.0, SIZE, 0) and box.height == 120
    _, box = inpaint_sd(BUNDLE, pixels, mask, SETTINGS, seed=0, margin=0.0, pad=40)
    assert box == crop_box(mask, 0.0, SIZE, 40) and box.height == 120


def test_a_right_breast_crop_and_hole_are_mirrored_whole(model):
    """The model sees the crop mirrored (every column, not every other) and the hole mirrored with it: exactly the
    resized mirror of each."""
    pixels = asymmetric_breast(300, 200, side="right")
    mask = marks((300, 200), [(140, 150), (150, 170)])
    _, box = inpaint_sd(BUNDLE, pixels, mask, SETTINGS, seed=0, side="right")
    crop, region = pixels[box.slices][:, ::-1], mask[box.slices][:, ::-1]
    np.testing.assert_allclose(model.seen["image"][0, ..., 0], resize(np.ascontiguousarray(crop), (SIZE, SIZE)),
                               rtol=0, atol=1e-6)  # the same resize of the same pixels
    expected_hole = resize(np.ascontiguousarray(region, dtype=np.float32), (SIZE, SIZE)) > 0
    np.testing.assert_array_equal(model.seen["hole"][0, ..., 0] > 0.5, expected_hole)


@pytest.mark.parametrize("paint,expected", [(-0.5, 0.0), (1.7, 1.0)])
def test_the_models_output_is_clipped_to_the_unit_range(monkeypatch, paint, expected):
    monkeypatch.setattr(inpaint, "run_sd", Recorder(paint))
    pixels = np.full((200, 200), 0.5, np.float32)
    mask = np.zeros((200, 200), bool)
    mask[60:140, 60:140] = True
    out, _ = inpaint_sd(BUNDLE, pixels, mask, SETTINGS, seed=0)
    # the hole's core, away from the bilinear resampling at its edge
    np.testing.assert_allclose(out[90:110, 90:110], expected, rtol=0, atol=1e-6)
