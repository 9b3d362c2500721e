"""Breast mask: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — the working copy, the
disk erosion and dilation, the largest blob, growing the region, the side on a tie and the area — on drawn images
whose answers are known."""
from __future__ import annotations

import numpy as np

from MammoSynthLogic.breast_mask import (_dilate_disk, _downsample, _erode, _erode_disk, _largest_component,
                                         _upsample, breast_area_fraction, breast_region, breast_side, describe)


def drawn_breast(rows: int = 300, cols: int = 240) -> np.ndarray:
    """A half disc against the left edge (the chest wall), 0.6 bright, on black."""
    y, x = np.mgrid[0:rows, 0:cols]
    return np.where((x / 180) ** 2 + ((y - rows / 2) / 120) ** 2 <= 1, np.float32(0.6), np.float32(0))


def test_the_working_copy_takes_every_kth_pixel_with_k_from_the_longer_side():
    pixels = np.arange(1030 * 600, dtype=np.float64).reshape(1030, 600)
    small = _downsample(pixels)  # ceil(1030 / 512) = 3
    assert small.shape == (344, 200) and small.dtype == np.float32 and small.flags.c_contiguous
    assert small[1, 1] == pixels[3, 3]
    assert _downsample(pixels[:512, :300]).shape == (512, 300)  # up to 512: the image itself


def test_disk_erosion_and_dilation_by_a_radius():
    square = np.zeros((9, 9), bool)
    square[1:8, 1:8] = True
    inner = np.zeros((9, 9), bool)
    inner[3:6, 3:6] = True  # pixels more than 2 px from the background
    np.testing.assert_array_equal(_erode_disk(square, 2), inner)
    dot = np.zeros((9, 9), bool)
    dot[4, 4] = True
    y, x = np.mgrid[0:9, 0:9]
    np.testing.assert_array_equal(_dilate_disk(dot, 2), (y - 4) ** 2 + (x - 4) ** 2 <= 4)  # 13 pixels
    # `_erode`: the radius is the fraction of the longer side, halved, and at least one pixel
    big = np.zeros((100, 40), bool)
    big[10:90, 5:35] = True
    np.testing.assert_array_equal(_erode(big, 0.1), _erode_disk(big, 5.0))
    np.testing.assert_array_equal(_erode(big, 0.001), _erode_disk(big, 1.0))


def test_the_largest_blob_is_kept_never_the_background():
    mask = np.zeros((10, 10), bool)
    mask[0:2, 0:2] = True  # 4 pixels
    mask[5:8, 5:8] = True  # 9 pixels; the background is larger still
    expected = np.zeros((10, 10), bool)
    expected[5:8, 5:8] = True
    np.testing.assert_array_equal(_largest_component(mask), expected)
    empty = np.zeros((4, 4), bool)
    assert not _largest_component(empty).any()
    dot = np.zeros((4, 4), bool)
    dot[2, 2] = True  # one pixel: still the blob, not the background
    np.testing.assert_array_equal(_largest_component(dot), dot)


def test_upsampling_keeps_the_same_size_as_a_copy_and_enlarges_by_halves():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    same = _upsample(mask, (4, 4))
    assert same is not mask and np.array_equal(same, mask)
    np.testing.assert_array_equal(_upsample(mask, (8, 8)), np.kron(mask, np.ones((2, 2), bool)))


def test_region_of_a_drawn_breast_and_its_grown_version():
    pixels = drawn_breast()
    region = breast_region(pixels)
    drawn = pixels > 0
    # blur sigma 1.25 px, threshold 0.175 × Otsu (0.27) of a 0.6 edge: the region reaches 1.8 px beyond a straight
    # edge (0.6 Φ(-d / 1.25) = 0.047), a little more around the curve on the pixel grid
    assert not (_dilate_disk(drawn, 1.5) & ~region).any() and not (region & ~_dilate_disk(drawn, 2.5)).any()
    grown = breast_region(pixels, grow=0.05)  # 0.05 × 300 = 15 px, at full size (below 512 px)
    np.testing.assert_array_equal(grown, _dilate_disk(region, 15.0))
    np.testing.assert_array_equal(breast_region(pixels, grow=0.0), region)


def test_a_film_border_is_cut_from_the_breast():
    pixels = drawn_breast()
    pixels[:, -4:] = 0.6  # a bright 4 px film edge on the far side, touching nothing
    pixels[100:104, 170:240] = 0.6  # and a 4 px strip joining it to the breast
    region = breast_region(pixels)
    assert not region[:, -10:].any() and region[150, :150].all()


def test_area_and_side_from_a_given_region_or_from_the_pixels():
    pixels = drawn_breast()
    side, area = describe(pixels)
    assert side == "left" and breast_side(pixels[:, ::-1]) == "right"
    assert area == float(breast_region(pixels).mean())  # below 512 px the working copy is the image
    assert breast_area_fraction(pixels) == area
    region = np.zeros((300, 240), bool)
    region[:, 200:] = True  # a region given by the caller wins over the pixels
    assert breast_area_fraction(pixels, region) == region.mean() and breast_side(pixels, region) == "right"
    tie = np.zeros((300, 240), bool)  # equal thirds: the brighter third decides (the breast is on the left)
    assert breast_side(pixels, tie) == "left" and breast_side(pixels[:, ::-1], tie) == "right"


def test_describe_breaks_a_tie_of_the_region_with_the_pixels():
    pixels = np.zeros((300, 300), np.float32)
    pixels[50:250, 50:250] = 0.5  # a mirror-symmetric region: its thirds tie
    pixels[120:180, 60:90] = 1.0  # the brighter third is the left one
    assert describe(pixels)[0] == "left" and describe(pixels[:, ::-1])[0] == "right"
    assert describe(pixels)[1] == float(breast_region(pixels).mean())


def test_a_flat_image_has_an_empty_boolean_region():
    region = breast_region(np.full((80, 70), 0.5, np.float32))
    assert region.dtype == bool and not region.any()


def test_the_side_compares_the_outer_thirds_and_a_full_tie_is_left():
    region = np.zeros((10, 12), bool)
    region[:, 3] = True  # in the left third (columns 0-3) but not in its outer quarter
    region[:5, 11] = True  # in the right third and quarter, fewer pixels
    blank = np.zeros((10, 12), np.float32)
    assert breast_side(blank, region) == "left"
    assert breast_side(blank, np.zeros((10, 12), bool)) == "left"  # no region, no brightness: left
