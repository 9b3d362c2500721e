"""Breast masks and chest-wall side on the 8 real CBIS-DDSM images, mirrored and MONOCHROME1 copies."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from MammoSynthLogic.breast_mask import breast_mask, breast_region, breast_side, describe
from MammoSynthLogic.dicom_io import read_mammogram


@pytest.fixture(scope="module")
def real_images(real_dicoms):
    return [read_mammogram(p) for p in real_dicoms]


def _far_side(array: np.ndarray, side: str, fraction: float) -> np.ndarray:
    width = int(array.shape[1] * fraction)
    return array[:, -width:] if side == "left" else array[:, :width]


def test_side_matches_laterality_on_all_real_images_and_mirrors(real_images):
    # CBIS-DDSM stores left breasts with the chest wall on the left and right breasts on the right.
    for image in real_images:
        expected = "left" if image.laterality == "L" else "right"
        assert breast_side(image.pixels) == expected
        assert breast_side(image.pixels[:, ::-1]) == ("right" if expected == "left" else "left")


def test_masks_exclude_burned_in_labels_and_film_edges(real_images):
    for image in real_images:
        side = breast_side(image.pixels)
        region = breast_region(image.pixels)
        rows = image.rows // 4
        label_box = _far_side(image.pixels[:rows], side, 0.45)
        assert (label_box > 0.5).sum() > 200, "the burned-in view label should be in this box"
        assert not _far_side(region[:rows], side, 0.45).any()
        # Film edges: nothing of the region in the outermost 1 % opposite the chest wall.
        assert not _far_side(region, side, 0.01).any()
        assert 0.1 < region.mean() < 0.6


def test_inner_mask_is_the_eroded_region(real_images):
    image = real_images[0]
    region, inner = breast_region(image.pixels), breast_mask(image.pixels)
    assert inner.sum() < region.sum() and not (inner & ~region).any()
    assert inner.sum() > 0.9 * region.sum()


def test_monochrome1_copy_gives_the_same_mask(real_dicoms, tmp_path):
    ds = pydicom.dcmread(real_dicoms[1])
    original = read_mammogram(real_dicoms[1])
    inverted = 65535 - ds.pixel_array
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelData = inverted.astype(np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    path = tmp_path / "mono1.dcm"
    ds.save_as(path, enforce_file_format=True)
    copy = read_mammogram(path)
    assert np.allclose(copy.pixels, original.pixels, atol=1e-6)
    # The inversion changes float rounding by up to 1e-6, which may flip the odd pixel whose blurred value lies on
    # the Otsu threshold; a wrong inversion (dark tissue) would change the whole mask, not a thousandth of it.
    a, b = breast_region(copy.pixels), breast_region(original.pixels)
    assert (a ^ b).sum() <= 1e-3 * b.sum() and b.mean() > 0.1


def test_describe_on_a_preview_agrees_with_the_full_image(real_dicoms):
    for path in real_dicoms[:3]:
        full, preview = read_mammogram(path), read_mammogram(path, max_side=1024)
        side_full, area_full = describe(full.pixels)
        side_preview, area_preview = describe(preview.pixels)
        assert side_full == side_preview
        assert abs(area_full - area_preview) < 0.01


def test_blank_image_has_an_empty_mask():
    assert not breast_region(np.zeros((300, 200), np.float32)).any()


def test_a_breast_narrower_than_the_opening_keeps_its_region():
    """A thin bright strip survives no opening; the region falls back to the largest thresholded blob instead of
    coming out empty (an empty mask's dilation used to be a quarter disc in the corner, hiding the fallback)."""
    from MammoSynthLogic.breast_mask import _dilate_disk

    assert not _dilate_disk(np.zeros((10, 10), bool), 4).any()
    pixels = np.zeros((300, 300), np.float32)
    pixels[100:200, 148:151] = 0.6
    region = breast_region(pixels)
    assert region[100:200, 148:151].mean() > 0.9 and not region[:, :140].any() and not region[:50].any()
