"""MAMBO §3.3 anomaly recipe, step by step on arrays with known answers."""
from __future__ import annotations

import numpy as np

from MammoSynthLogic.anomaly import (AnomalySettings, difference_map, drop_weak, findings, heat_map, insert_mass, iou,
                                     label_map, positive_difference)


def _mask(n=64):
    m = np.zeros((n, n), bool)
    m[8:56, 8:56] = True
    return m


def test_negative_differences_are_removed_and_inversion_flips_them():
    original = np.full((64, 64), 0.5, np.float32)
    recon = original.copy()
    original[20:30, 20:30] = 0.9  # bright lesion the model did not reconstruct
    original[40:45, 40:45] = 0.1  # dark spot
    mask = _mask()
    bright = positive_difference(original, recon, mask)
    assert bright.min() == 0.0 and np.allclose(bright[20:30, 20:30], 0.4) and bright[40:45, 40:45].max() == 0
    dark = positive_difference(original, recon, mask, invert=True)
    assert np.allclose(dark[40:45, 40:45], 0.4) and dark[20:30, 20:30].max() == 0
    original[0:5, 0:5] = 1.0  # outside the mask: ignored
    assert positive_difference(original, recon, mask)[0:5, 0:5].max() == 0


def test_the_30_percent_cut():
    original = np.zeros((64, 64), np.float32)
    original[10:20, 10:20] = 1.0
    original[30:40, 30:40] = 0.25  # 25 % of the peak: dropped
    original[45:50, 45:50] = 0.35  # 35 %: kept
    diff = drop_weak(original, cut=0.3)
    assert np.array_equal(diff[45:50, 45:50], original[45:50, 45:50])
    assert diff[30:40, 30:40].max() == 0 and diff[45:50, 45:50].min() > 0 and diff[10:20, 10:20].min() > 0


def test_the_absolute_floor():
    diff = np.array([[0.01, 0.02, 0.2]], np.float32)
    assert np.allclose(drop_weak(diff, cut=0.0, min_difference=0.05), [[0, 0, 0.2]])


def test_histogram_matching_only_inside_the_mask_removes_global_intensity_changes():
    rng = np.random.default_rng(1)
    original = rng.uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    recon = 0.5 * original + 0.3  # a monotone intensity change everywhere, nothing anomalous
    recon[~_mask()] = 5.0  # outside the mask: must not matter
    diff = difference_map(original, recon, _mask(), cut=0.0)
    assert diff.max() < 1e-3


def test_heat_and_label_maps_find_an_inserted_mass():
    rng = np.random.default_rng(2)
    healthy = np.clip(0.5 + 0.05 * rng.standard_normal((128, 128)), 0, 1).astype(np.float32)
    with_mass, truth = insert_mass(healthy, (60, 70), radius=10, contrast=0.3)
    mask = np.ones((128, 128), bool)
    heat = heat_map(with_mass, healthy, mask, AnomalySettings())
    labels = label_map(heat, 0.3)
    assert iou(labels, truth) > 0.5
    parts = findings(labels)
    assert len(parts) >= 1 and iou(parts[0], truth) > 0.5


def test_a_perfect_reconstruction_gives_an_empty_map_with_a_floor():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (64, 64)).astype(np.float32)
    noisy_recon = np.clip(image + 0.01 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)
    settings = AnomalySettings(min_difference=0.05)
    heat = heat_map(image, noisy_recon, _mask(), settings)
    assert not label_map(heat, 0.3, settings.min_difference).any()


def test_insert_mass_is_bounded_and_its_mask_matches():
    image = np.zeros((100, 100), np.float32)
    out, truth = insert_mass(image, (50, 50), radius=12, contrast=0.4)
    assert out.max() <= 0.4 + 1e-6 and (out[~truth] < 0.2).all()
    assert 0.7 * np.pi * 144 < truth.sum() < 1.3 * np.pi * 144
