"""Preparation: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — bilinear (not bicubic)
enlarging by default, multi-channel arrays, the refusals, the fill of the padding and the output type of histogram
matching — each with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.preparation import PrepareTransform, PreparedImage, histogram_match, padded_side, prepare, resize


def test_enlarging_is_bilinear_by_default_and_bicubic_on_request():
    step = np.zeros((4, 4), np.float32)
    step[:, 2:] = 1.0
    up = resize(step, (8, 8))
    # bilinear: output column c samples the input at (c + 0.5) / 2 - 0.5; the step rises over columns 3 and 4
    np.testing.assert_allclose(up[0], [0, 0, 0, 0.25, 0.75, 1, 1, 1], atol=1e-6)
    smooth = resize(step, (8, 8), smooth_enlarge=True)
    assert smooth.min() < -0.01 and smooth.max() > 1.01  # a cubic kernel overshoots at a step; bilinear never does


def test_enlarging_only_the_columns_is_still_bilinear():
    step = np.zeros((4, 4), np.float32)
    step[:, 2:] = 1.0
    np.testing.assert_allclose(resize(step, (4, 8)), np.tile([0, 0, 0, 0.25, 0.75, 1, 1, 1], (4, 1)), atol=1e-6)


def test_masks_and_labels_are_enlarged_by_pixel_replication():
    rng = np.random.default_rng(1)
    mask = rng.random((5, 7)) > 0.5
    labels = rng.integers(0, 5, (5, 7)).astype(np.uint8)
    for array in (mask, labels, labels.astype(np.int16)):
        up = resize(array, (15, 21))
        assert up.dtype == array.dtype
        np.testing.assert_array_equal(up, np.kron(array, np.ones((3, 3), array.dtype)))


def test_masks_and_labels_are_shrunk_by_picking_the_middle_pixel():
    rng = np.random.default_rng(2)
    mask = rng.random((12, 15)) > 0.5
    labels = rng.integers(0, 5, (12, 15)).astype(np.uint8)
    for array in (mask, labels):  # nearest: output pixel (r, c) takes input pixel (3r + 1, 3c + 1); no mixing
        np.testing.assert_array_equal(resize(array, (4, 5)), array[1::3, 1::3])


def test_a_multichannel_array_of_the_right_size_is_returned_as_it_is():
    rgb = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)
    assert resize(rgb, (6, 5)) is rgb


def test_to_prepared_fills_the_padding_and_refuses_another_shape():
    t = PrepareTransform(source_shape=(2, 3), flipped=True, size=4)
    out = t.to_prepared(np.array([[1, 2, 3], [4, 5, 6]], np.float32), fill=-1)
    np.testing.assert_array_equal(out, [[3, 2, 1, -1], [6, 5, 4, -1], [-1, -1, -1, -1], [-1, -1, -1, -1]])
    with pytest.raises(ValueError, match=r"^array shape \(3, 2\) differs from the source \(2, 3\)$"):
        t.to_prepared(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"^array shape \(3, 2\) differs"):  # rows and columns, not channels
        t.to_prepared(np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"^prepared-frame arrays are square, got \(4, 3\)$"):
        t.to_source(np.zeros((4, 3), np.float32))


def test_to_source_stored_needs_a_source_image():
    t = PrepareTransform(source_shape=(2, 2), flipped=False, size=256)
    image = PreparedImage(pixels=np.zeros((256, 256), np.float32), region=np.zeros((256, 256), bool),
                          mask=np.zeros((256, 256), bool), transform=t, breast_side="left")
    with pytest.raises(ValueError, match="^prepared from an array: no stored format to go back to$"):
        image.to_source_stored(image.pixels)


def test_padded_side_rounds_the_longer_side_up_to_the_multiple():
    assert padded_side((300, 200)) == 512 and padded_side((256, 100)) == 256 and padded_side((257, 10)) == 512
    assert padded_side((300, 200), multiple=64) == 320 and padded_side((100, 130), multiple=64) == 192


def test_prepare_refuses_a_preview_and_pads_to_the_multiple_asked(real_dicom):
    preview = read_mammogram(real_dicom, max_side=512)
    with pytest.raises(ValueError, match=r"^prepare\(\) needs the full image, not a preview read with max_side$"):
        prepare(preview)
    pixels = np.zeros((300, 200), np.float32)
    pixels[50:250, :120] = 0.6  # a breast against the left edge
    prepared = prepare(pixels, multiple=64)
    assert prepared.pixels.shape == (320, 320) and prepared.source is None and prepared.breast_side == "left"
    assert prepared.pixels.dtype == np.float32 and not prepared.transform.flipped


def test_histogram_match_returns_float32_for_any_input_and_copies_it():
    image = np.linspace(0, 1, 64, dtype=np.float64).reshape(8, 8)
    reference = np.linspace(0.5, 1, 64, dtype=np.float64).reshape(8, 8)
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    out = histogram_match(image, reference, mask)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[4:], image[4:].astype(np.float32))
    single = image.astype(np.float32)
    kept = single.copy()
    assert histogram_match(single, reference, mask) is not single
    np.testing.assert_array_equal(single, kept)


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_symmetric_breast_region_takes_the_side_of_the_brighter_third(mirrored):
    pixels = np.zeros((300, 300), np.float32)
    pixels[50:250, 50:250] = 0.5  # the region is mirror-symmetric: its thirds tie
    pixels[120:180, 60:90] = 1.0  # brightness decides: a bright patch in the left third
    pixels = pixels[:, ::-1] if mirrored else pixels
    prepared = prepare(pixels)
    assert prepared.breast_side == ("right" if mirrored else "left") and prepared.transform.flipped == mirrored
