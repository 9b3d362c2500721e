"""Prepared frame (chest wall left, square multiple of 256, background zero) and its exact inverse."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.preparation import PrepareTransform, histogram_match, prepare


@pytest.fixture(scope="module")
def prepared_pair(real_dicoms):
    # one left (stored chest wall left) and one right (stored chest wall right) image
    return [(read_mammogram(p), p) for p in (real_dicoms[0], real_dicoms[2])]


def test_prepared_frame(prepared_pair):
    for image, _ in prepared_pair:
        prepared = prepare(image)
        size = prepared.pixels.shape[0]
        assert prepared.pixels.shape == (size, size) and size % 256 == 0 and size >= max(image.rows, image.columns)
        assert prepared.transform.flipped == (image.laterality == "R")
        cols = prepared.region.any(axis=0)
        assert cols[: size // 20].all(), "chest wall on the left"
        assert not prepared.region[:, image.columns:].any() and not prepared.region[image.rows:].any()
        assert (prepared.pixels[~prepared.region] == 0).all()
        assert prepared.mask.sum() < prepared.region.sum()


def test_to_source_is_the_exact_inverse(prepared_pair):
    for image, path in prepared_pair:
        prepared = prepare(image)
        back = prepared.transform.to_source(prepared.pixels)
        region = prepared.transform.to_source(prepared.region)
        assert back.shape == image.pixels.shape
        assert np.array_equal(back[region], image.pixels[region])
        stored = prepared.to_source_stored(prepared.pixels)
        raw = pydicom.dcmread(path).pixel_array
        assert stored.dtype == raw.dtype and np.array_equal(stored[region], raw[region])


def test_to_source_of_a_low_resolution_result_lands_on_the_source_pixels():
    rows, cols = 300, 200
    source = np.zeros((rows, cols), np.float32)
    source[:, cols - 60:] = 1.0  # breast on the right: it will be flipped
    t = PrepareTransform(source_shape=(rows, cols), flipped=True, size=512)
    prepared = t.to_prepared(source)
    assert prepared[:rows, :60].min() == 1.0 and prepared[:rows, 60:cols].max() == 0.0
    small = prepared.reshape(128, 4, 128, 4).mean(axis=(1, 3))  # a result at a model's size
    back = t.to_source(small)
    assert back.shape == (rows, cols)
    inner = back[: rows - 8]  # the last rows mix with the zero padding at the low resolution
    assert inner[:, cols - 50:].min() > 0.9 and inner[:, : cols - 70].max() < 0.1
    assert PrepareTransform.from_json(t.to_json()) == t


def test_histogram_match_changes_only_the_inside_of_the_mask():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 0.5, (64, 64)).astype(np.float32)
    reference = rng.uniform(0.5, 1.0, (64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    matched = histogram_match(image, reference, mask)
    assert np.array_equal(matched[~mask], image[~mask])
    assert abs(np.median(matched[mask]) - np.median(reference[mask])) < 0.01
    assert matched[mask].min() >= reference[mask].min() - 1e-6
    # order inside the mask is kept: matching is monotonic
    inside = image[mask]
    assert np.all(np.diff(matched[mask][np.argsort(inside)]) >= -1e-7)
